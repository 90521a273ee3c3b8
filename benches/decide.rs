//! Criterion benchmarks of the CPU side of one message (issue 9, benchmark 5): parsing the
//! fetched bytes, and `decide_with` against 10 and 100 rules, over the vendored ham corpus.
//! Run with `cargo bench --bench decide`; `bench/run` does.

use std::path::{Path, PathBuf};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use postroom::config::Config;
use postroom::decide::{decide_with, memory::MemoryState, Context};
use postroom::message::{self, Envelope};

const BASE: &str = r#"
[daemon]
state_dir = "/tmp/postroom-bench-unused"

[[server]]
name = "s"
host = "127.0.0.1"
port = 143
security = "plain"

[[mailbox]]
name = "support"
server = "s"
login = "support"
password_env = "UNUSED"
team = "support"

[[team]]
name = "support"
agents = ["alice", "bob", "carol", "dmitri", "erin"]

[[agent]]
id = "alice"
name = "alice"
[[agent]]
id = "bob"
name = "bob"
[[agent]]
id = "carol"
name = "carol"
[[agent]]
id = "dmitri"
name = "dmitri"
[[agent]]
id = "erin"
name = "erin"
"#;

/// `n` rules: the ten of BENCHMARKS.md first, then variants that rarely match, so that every
/// message is tested against all of them (the worst case for a rule list).
fn rules(n: usize) -> String {
    let ten = include_str!("../bench/rules.toml");
    let mut text = ten.to_string();
    for i in 10..n {
        let rule = match i % 5 {
            0 => format!("when.from_domain = {{ one_of = [\"cust{i}.example\", \"partner{i}.example\"] }}\nassign = {{ agent = \"carol\" }}"),
            1 => format!("when.subject = {{ regex = '\\b(order|ticket) #?{i}\\b' }}\ntags = [\"t{i}\"]"),
            2 => format!("when.header.x-customer-id = {{ equals = \"{i}\" }}\npriority = \"high\""),
            3 => format!("when.all = [ {{ to = {{ contains = \"team{i}@\" }} }}, {{ has_attachment = true }} ]\ntags = [\"a{i}\"]"),
            _ => format!("when.body = {{ contains = \"reference {i}-\" }}\ntags = [\"b{i}\"]"),
        };
        text.push_str(&format!("\n[[rule]]\nname = \"variant {i}\"\n{rule}\n"));
    }
    text
}

fn corpus() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    collect(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ham"),
        &mut files,
    );
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn bench(c: &mut Criterion) {
    let raw = corpus();
    let envelopes: Vec<Envelope> = raw
        .iter()
        .filter_map(|m| message::parse(m, None).ok())
        .collect();
    let mut group = c.benchmark_group("per message");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("parse (whole message)", |b| {
        b.iter(|| {
            i = (i + 1) % raw.len();
            message::parse(&raw[i], None)
        })
    });
    for n in [10, 100] {
        let config = Config::parse(&format!("{BASE}{}", rules(n)))
            .unwrap_or_else(|p| panic!("bench config with {n} rules is invalid: {p:?}"));
        let mailbox = config.mailbox("support").expect("mailbox support").clone();
        let state = MemoryState::new();
        let context = Context {
            now: Utc::now(),
            in_business_hours: Some(true),
        };
        let mut j = 0;
        group.bench_function(format!("decide_with, {n} rules"), |b| {
            b.iter(|| {
                j = (j + 1) % envelopes.len();
                decide_with(&envelopes[j], &mailbox, &config, &state, &context)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
