//! Benchmark 5 of `bench/run` (issue 9), history: a store holding a year of work, built through
//! the public [`Store`] API, then postroom's start-up time on it and `postroom report` over it.
//!
//! Each conversation is one decision ([`Store::commit`], an `assigned` event) spread evenly
//! over the last 365 days; every second one gets a team response two hours later, and every
//! one older than two weeks is closed a day after it started, so the report has response times
//! and closes to compute. Messages are recorded as `Gone` (archived out of the watched
//! folders): the test server's folders are empty, and a `Filed` record of a message the server
//! does not hold would make start-up's reconciliation close it, which is not what a real site
//! with a year of history sees.
//!
//! Usage: `bench_history [--quick]` (100,000 conversations instead of 1,000,000). With
//! `BENCH_HISTORY_DIR` set, the work directory is kept there and a store already generated in
//! it is reused, so a change to reading can be timed again without writing the store anew (and
//! a store written by an older build tests the upgrade on open).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use postroom::store::{Commit, Event, EventKind, MessageRecord, MessageState, Store};
use postroom_testkit::{Daemon, Dovecot, Flavor};

const AGENTS: [&str; 5] = ["alice", "bob", "carol", "dmitri", "erin"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench_history failed: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: usize = if quick { 100_000 } else { 1_000_000 };
    let temp = tempfile::Builder::new()
        .prefix("postroom-history-")
        .tempdir()?;
    let kept = std::env::var_os("BENCH_HISTORY_DIR").map(std::path::PathBuf::from);
    let work = kept.as_deref().unwrap_or(temp.path());
    let state = work.join("state");
    if state.exists() {
        println!("history: reusing the store in {}", state.display());
    } else {
        let took = generate(&state, n)?;
        println!(
            "history: {n} conversations written in {:.1} s",
            took.as_secs_f64()
        );
        record(
            "history",
            &format!("{n} conversations: generate"),
            took.as_secs_f64(),
            "s",
            "",
        )?;
    }
    let bytes = dir_size(&state)?;
    println!("history: store is {:.0} MiB", bytes as f64 / 1048576.0);
    record(
        "history",
        "store size on disk",
        bytes as f64 / 1048576.0,
        "MiB",
        "",
    )?;
    record(
        "history",
        "store bytes per conversation",
        bytes as f64 / n as f64,
        "B",
        "",
    )?;
    // A store written by an older version is upgraded by this first open: its time is then
    // the upgrade's.
    let opened = Instant::now();
    let store = Store::open(&state)?;
    let open = opened.elapsed().as_secs_f64();
    let read = Instant::now();
    let filed = store.filed("hist")?.len();
    let filed_secs = read.elapsed().as_secs_f64();
    let read = Instant::now();
    let scanned = store.messages("hist")?.len();
    let scan = read.elapsed().as_secs_f64();
    drop(store);
    println!(
        "Store::open {open:.2} s; filed() {filed} records in {filed_secs:.2} s; \
         messages() {scanned} records in {scan:.2} s"
    );
    record("history", "Store::open", open, "s", "")?;
    record(
        "history",
        "filed() read (start-up reconcile)",
        filed_secs,
        "s",
        "",
    )?;
    record("history", "messages() scan of every record", scan, "s", "")?;
    let config = write_config(work)?;
    report_time(&config)?;
    startup_time(&config, work)
}

fn event(at: DateTime<Utc>, kind: EventKind, agent: &str, detail: &str) -> Event {
    Event {
        at,
        kind,
        mailbox: "hist".into(),
        conversation: None,
        identity: None,
        agent: Some(agent.into()),
        detail: detail.into(),
    }
}

/// Writes `n` conversations through the public API and flushes; returns the time taken.
fn generate(state: &Path, n: usize) -> Result<Duration> {
    let store = Store::open(state)?;
    let now = Utc::now();
    let year = chrono::Duration::days(365);
    let started = Instant::now();
    for i in 0..n {
        let at = now - year + year * i as i32 / n as i32;
        let agent = AGENTS[i % AGENTS.len()];
        let id = format!("<h{i}@bench.example>");
        let message = MessageRecord {
            identity: format!("m-h{i}"),
            mailbox: "hist".into(),
            message_id: Some(id.clone()),
            conversation: String::new(),
            owner: Some(agent.into()),
            state: MessageState::Gone,
            arrived: Some(at),
            decided_at: at,
            subject: format!("Question number {i} about an order"),
            from: Some(format!("customer{}@example.org", i % 5000)),
        };
        let detail = format!("assigned to {agent} by round robin; rule \"default\"");
        let conv = store.commit(&Commit {
            message,
            new_conversation: true,
            thread_ids: vec![id],
            referenced: vec![],
            rotation: Some(("support".into(), agent.into())),
            sla: None,
            work: true,
            tags: Vec::new(),
            rules: Vec::new(),
            event: event(at, EventKind::Assigned, agent, &detail),
        })?;
        if i % 2 == 0 {
            let when = at + chrono::Duration::hours(2);
            let e = event(
                when,
                EventKind::Responded,
                agent,
                "reply found in Sent Items",
            );
            store.record_response(&conv, when, e)?;
        }
        if at < now - chrono::Duration::days(14) {
            let when = at + chrono::Duration::days(1);
            store.close(
                &conv,
                when,
                event(when, EventKind::Closed, agent, "moved to Done"),
            )?;
        }
        if i % 100_000 == 99_999 {
            println!(
                "  {} conversations after {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    store.flush()?;
    Ok(started.elapsed())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn write_config(dir: &Path) -> Result<(String, Dovecot)> {
    let dovecot = Dovecot::start(Flavor::Standard)?;
    let secret = dir.join("password.secret");
    std::fs::write(&secret, Dovecot::PASSWORD)?;
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[[server]]\nname = \"dovecot\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"plain\"\n\n[[mailbox]]\nname = \"hist\"\nserver = \"dovecot\"\n\
         login = \"hist@bench.test\"\npassword_file = \"{}\"\nteam = \"support\"\n\n[[team]]\n\
         name = \"support\"\nagents = [\"alice\", \"bob\", \"carol\", \"dmitri\", \"erin\"]\n",
        dir.join("state").display(),
        dovecot.port(),
        secret.display()
    );
    for a in AGENTS {
        text.push_str(&format!("\n[[agent]]\nid = \"{a}\"\nname = \"{a}\"\n"));
    }
    let path = dir.join("postroom.toml");
    std::fs::write(&path, text)?;
    Ok((path.to_string_lossy().into_owned(), dovecot))
}

/// `postroom report` over the whole year, with no daemon running (it reads the store itself).
fn report_time(config: &(String, Dovecot)) -> Result<()> {
    let to = Utc::now().date_naive();
    let from = to - chrono::Duration::days(365);
    let started = Instant::now();
    let out = Command::new(postroom_binary()?)
        .args(["--config", &config.0, "report", "--from"])
        .arg(from.to_string())
        .arg("--to")
        .arg(to.to_string())
        .output()
        .context("run postroom report")?;
    let took = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    println!(
        "report over a year in {took:.2} s:\n{}",
        text.lines().take(12).collect::<Vec<_>>().join("\n")
    );
    record("history", "postroom report over a year", took, "s", "< 2 s")
}

/// From spawning `postroom run` on the big store to its one mailbox watching.
fn startup_time(config: &(String, Dovecot), _dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let started = Instant::now();
        let mut daemon = Daemon::spawn(
            postroom_binary()?,
            ["--config", &config.0, "run"],
            [("RUST_LOG", "postroom=info")],
        )?;
        loop {
            if daemon.stderr().contains("watching for new mail") {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "never watching: {}",
                daemon.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = started.elapsed().as_secs_f64();
        let rss = rss_mib(daemon.pid())?;
        println!("start-up on the big store: watching after {took:.2} s, RSS {rss:.1} MiB");
        record("history", "start-up to watching", took, "s", "< 2 s")?;
        record("history", "RSS after start-up on big store", rss, "MiB", "")?;
        daemon.sigterm()?;
        daemon.wait_exit(Duration::from_secs(60)).await?;
        Ok(())
    })
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

fn postroom_binary() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locate the target directory")?;
    Ok(dir.join("postroom"))
}

fn record(bench: &str, metric: &str, value: f64, unit: &str, goal: &str) -> Result<()> {
    let line = format!("{bench}\t{metric}\t{value:.3}\t{unit}\t{goal}\n");
    print!("RESULT {line}");
    if let Some(out) = std::env::var("BENCH_OUT").ok().filter(|o| !o.is_empty()) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&out).join("results.tsv"))?;
        f.write_all(line.as_bytes())?;
    }
    Ok(())
}
