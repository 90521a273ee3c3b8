//! `postroom explain` must never panic: every vendored hard message and field case is explained
//! (or reported as "would be quarantined") against a config that uses every kind of condition.

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use postroom::config::Config;
use postroom::decide::memory::MemoryState;
use postroom::decide::Context;
use postroom::explain::explain;

const CONFIG: &str = r#"
[[server]]
name = "s"
host = "127.0.0.1"
security = "plain"
[[mailbox]]
name = "support"
server = "s"
login = "u"
password_env = "P"
team = "t"
[[team]]
name = "t"
agents = ["a", "b"]
strategy = "least_open"
[[agent]]
id = "a"
name = "Anna"
max_open = 3
[[agent]]
id = "b"
name = "Ben"
[[rule]]
name = "everything"
when.any = [
  { subject = { regex = "(?i)invoice|rechnung" } },
  { body = { contains = "refund" } },
  { header.x-priority = { one_of = ["1", "2"] } },
  { attachment = { regex = '\.(pdf|dat)$' } },
  { spam_score = { above = 5.0 } },
  { not = { from_domain = { equals = "example.test" } } },
  { all = [{ size_above = 10 }, { mailing_list = true }, { business_hours = false }] },
  { recipient = { contains = "@" } },
]
tags = ["seen"]
[[rule]]
name = "bounces"
when.automated = { one_of = ["bounce", "read_receipt", "auto_reply"] }
folder = "Automated/Bounces"
stop = true
"#;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "eml") {
            out.push(path);
        }
    }
}

#[test]
fn explain_never_panics_on_the_nasty_corpus_or_the_field_cases() {
    let config = Config::parse(CONFIG).unwrap_or_else(|p| panic!("{p:#?}"));
    let mailbox = &config.mailboxes[0];
    let context = Context::at(Utc.with_ymd_and_hms(2025, 3, 10, 9, 0, 0).unwrap());
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut all = Vec::new();
    files(&data.join("nasty"), &mut all);
    files(&data.join("cases"), &mut all);
    assert!(
        all.len() > 600,
        "the vendored corpus is missing: {} files",
        all.len()
    );
    let (mut explained, mut quarantined) = (0, 0);
    for path in &all {
        let raw = std::fs::read(path).unwrap();
        let text = explain(&raw, mailbox, &config, &MemoryState::new(), &context);
        if text.starts_with("would be quarantined: ") {
            quarantined += 1;
        } else {
            assert!(text.contains("\nresult:\n"), "{}: {text}", path.display());
            explained += 1;
        }
    }
    assert!(
        explained > quarantined,
        "{explained} explained, {quarantined} quarantined"
    );
}

#[test]
fn a_headerless_fixture_would_be_quarantined_with_the_reason() {
    let config = Config::parse(CONFIG).unwrap();
    let raw =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cases/BUG-09b.eml"))
            .unwrap();
    let context = Context::at(Utc::now());
    let text = explain(
        &raw,
        &config.mailboxes[0],
        &config,
        &MemoryState::new(),
        &context,
    );
    assert_eq!(
        text,
        "would be quarantined: no usable headers (no From, Subject, Date or Message-ID)\n"
    );
}

#[test]
fn the_explanation_names_the_rules_and_every_candidate() {
    let config = Config::parse(CONFIG).unwrap();
    let raw =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cases/BUG-18c.eml"))
            .unwrap();
    let mut state = MemoryState::new();
    state.set_open("a", 3);
    let context = Context::at(Utc.with_ymd_and_hms(2025, 3, 25, 11, 5, 0).unwrap());
    let text = explain(&raw, &config.mailboxes[0], &config, &state, &context);
    for needle in [
        "rule 1 `everything` matched: any[5]: not (from domain \"customer-l.example.test\" does not equal \"example.test\")",
        "rule 2 `bounces` did not match: automated kind \"no\" is not one of 3 listed values",
        "team t by least open:",
        "a: passed over: at capacity (3 of 3 open)",
        "b: chosen: fewest open conversations (0); has not had a turn yet",
        "folder:     Assigned/Ben",
        "tags:       seen",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
