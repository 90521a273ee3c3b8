//! The CPU side of the backlog without a server (issue 9): for each of N corpus messages, parse,
//! decide and record ([`Intake::place`]), make each batch durable, and record it filed, exactly
//! the store calls the worker makes per message. Prints the time of each phase per message, so
//! a profile (`perf record -e cpu-clock -- bench_cpu 10000`) can say where the backlog's CPU goes.

#[path = "bench_imap/corpus.rs"]
mod corpus;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postroom::config::Config;
use postroom::intake::Intake;
use postroom::store::{Event, EventKind, MessageState, Store};

/// The worker's default `fetch_batch`: one flush per this many messages (`BENCH_BATCH`).
const BATCH: usize = 200;

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let batch: usize = std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(BATCH);
    // `BENCH_FILED=many` records a batch's placements with `Store::mark_filed_many`.
    let many = std::env::var("BENCH_FILED").is_ok_and(|v| v == "many");
    let dir = tempfile::tempdir()?;
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[[server]]\nname = \"s\"\nhost = \"127.0.0.1\"\nport = 143\n\
         security = \"plain\"\n\n[[mailbox]]\nname = \"support\"\nserver = \"s\"\nlogin = \"x\"\n\
         password_env = \"UNUSED\"\nteam = \"support\"\n\n[[team]]\nname = \"support\"\n\
         agents = [\"alice\", \"bob\", \"carol\", \"dmitri\", \"erin\"]\n\
         [[agent]]\nid = \"alice\"\nname = \"alice\"\n[[agent]]\nid = \"bob\"\nname = \"bob\"\n[[agent]]\nid = \"carol\"\nname = \"carol\"\n\
         [[agent]]\nid = \"dmitri\"\nname = \"dmitri\"\n[[agent]]\nid = \"erin\"\nname = \"erin\"\n{}",
        dir.path().join("state").display(),
        include_str!("../bench/rules.toml")
    );
    let config = Config::parse(&text).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let mailbox = config.mailbox("support").context("mailbox")?.clone();
    let store = Store::open(&dir.path().join("state"))?;
    let mail = corpus::distinct(&corpus::originals()?, n);
    let (mut parse, mut place, mut flush, mut filed) = Default::default();
    for (b, chunk) in mail.chunks(batch).enumerate() {
        let mut placements = Vec::new();
        for (i, raw) in chunk.iter().enumerate() {
            let t = Instant::now();
            let envelope = postroom::message::parse(raw, Some(raw.len() as u64))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            parse += t.elapsed();
            let t = Instant::now();
            let intake = Intake {
                config: &config,
                mailbox: &mailbox,
                store: &store,
                calendar: None,
                now: chrono::Utc::now(),
            };
            placements.extend(intake.place(&envelope, (b * batch + i + 1) as u32, None)?);
            place += t.elapsed();
        }
        let t = Instant::now();
        store.flush()?;
        flush += t.elapsed();
        let t = Instant::now();
        let mut group = Vec::new();
        for p in &placements {
            let event = Event {
                at: chrono::Utc::now(),
                kind: EventKind::Filed,
                mailbox: "support".into(),
                conversation: None,
                identity: Some(p.identity.clone()),
                agent: p.owner.clone(),
                detail: format!("filed in {}", p.folder),
            };
            let state = MessageState::Filed {
                folder: p.folder.clone(),
            };
            if many {
                group.push((p.identity.clone(), state, event));
            } else {
                store.mark_filed("support", &p.identity, state, event)?;
            }
        }
        if many {
            store.mark_filed_many("support", &group)?;
        }
        filed += t.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("{n} messages, per message: parse {:.1} us, decide+commit {:.1} us, flush {:.1} us, mark_filed {:.1} us",
        per(parse), per(place), per(flush), per(filed));
    println!(
        "RESULT\tcpu\tin-process pipeline per message\t{:.1}\tus\t",
        per(parse + place + flush + filed)
    );
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let written = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .unwrap_or("?");
    println!(
        "bytes passed to write(2) by this process: {written} ({} per message)",
        written
            .parse::<f64>()
            .map(|w| format!("{:.0}", w / n as f64))
            .unwrap_or_default()
    );
    Ok(())
}
