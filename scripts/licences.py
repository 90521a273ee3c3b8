#!/usr/bin/env python3
"""Writes docs/licences.md from `cargo metadata --format-version 1 --locked` on stdin: every
crate in Cargo.lock except our own, with the licence expression it declares."""
import collections
import json
import sys

HEADER = """# Dependency licences

Every crate in `Cargo.lock` (runtime, build and test dependencies) with the licence it declares.
`deny.toml` allows only permissive licences, and `cargo deny check licenses` in CI fails when a
new dependency brings another. Regenerate this file after changing dependencies:

```sh
cargo metadata --format-version 1 --locked | python3 scripts/licences.py > docs/licences.md
```
"""


def main():
    meta = json.load(sys.stdin)
    ours = set(meta["workspace_members"])
    crates = sorted(
        (p for p in meta["packages"] if p["id"] not in ours),
        key=lambda p: (p["name"], p["version"]),
    )
    print(HEADER)
    counts = collections.Counter(p.get("license") or "(licence file only)" for p in crates)
    print("## Summary\n")
    print("| licence expression | crates |")
    print("|---|---|")
    for expr, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"| {expr} | {n} |")
    print("\n## Crates\n")
    print("| crate | version | licence |")
    print("|---|---|---|")
    for p in crates:
        print(f"| {p['name']} | {p['version']} | {p.get('license') or '(licence file only)'} |")


main()
