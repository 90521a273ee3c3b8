//! The IMAP benchmarks of `bench/run` (issue 9): backlog, latency, scale and a big message,
//! against a throwaway Dovecot (sdbox) started with the testkit, and latency again against a
//! throwaway Cyrus. Results are printed as `RESULT` lines and appended to
//! `$BENCH_OUT/results.tsv`; see BENCHMARKS.md.
//!
//! Usage: `bench_imap [--quick] [backlog] [latency] [latency-cyrus] [scale] [big]` (no names:
//! all of them).

mod backlog;
mod bigmsg;
mod corpus;
mod latency;
mod proxy;
mod raw;
mod scale;
mod util;

use std::process::ExitCode;

use anyhow::{Context, Result};
use postroom_testkit::{Cyrus, Dovecot, Flavor};

/// The sizes of one run: full, or `--quick` for a check that the benchmarks work.
struct Sizes {
    backlog: usize,
    latency_secs: u64,
    scale: usize,
    idle_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench_imap failed: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let chosen: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.as_str())
        .collect();
    let wants = |name: &str| chosen.is_empty() || chosen.contains(&name);
    let sizes = if quick {
        Sizes {
            backlog: 2_000,
            latency_secs: 15,
            scale: 200,
            idle_secs: 15,
        }
    } else {
        Sizes {
            backlog: 10_000,
            latency_secs: 60,
            scale: 1_000,
            idle_secs: 60,
        }
    };
    let work = tempfile::Builder::new()
        .prefix("postroom-bench-")
        .tempdir()?;
    let originals = corpus::originals()?;
    let dovecot = Dovecot::start(Flavor::Standard).context("start Dovecot")?;
    println!(
        "Dovecot on 127.0.0.1:{} ({})",
        dovecot.port(),
        dovecot.config_path().display()
    );
    if wants("backlog") {
        let mail = corpus::distinct(&originals, sizes.backlog);
        backlog::run(&dovecot, &mail, work.path())
            .await
            .context("backlog")?;
    }
    if wants("latency") {
        let mail = corpus::distinct(&originals, 2_000);
        let server = latency::Server {
            name: "Dovecot",
            part: "latency",
            port: dovecot.port(),
            password: Dovecot::PASSWORD,
            users: (0..50).map(|i| format!("lat{i}@bench.test")).collect(),
        };
        latency::run(&server, &mail, 20.0, sizes.latency_secs, work.path())
            .await
            .context("latency")?;
    }
    if wants("latency-cyrus") {
        // Cyrus tells an IDLE client of new mail within milliseconds (with idled), where
        // Dovecot waits about half a second: postroom's part is easier to see against it.
        let cyrus = Cyrus::start().context("start Cyrus")?;
        println!("Cyrus on 127.0.0.1:{}", cyrus.port());
        let mut users = Vec::new();
        for _ in 0..50 {
            users.push(cyrus.unique_user("lat").await?);
        }
        let mail = corpus::distinct(&originals, 2_000);
        let server = latency::Server {
            name: "Cyrus",
            part: "latency-cyrus",
            port: cyrus.port(),
            password: cyrus.password(),
            users,
        };
        latency::run(&server, &mail, 20.0, sizes.latency_secs, work.path())
            .await
            .context("latency against Cyrus")?;
    }
    if wants("big") {
        bigmsg::run(&dovecot, 50, work.path())
            .await
            .context("big message")?;
    }
    drop(dovecot);
    if wants("scale") {
        let mut dovecot = Dovecot::start(Flavor::Standard).context("start Dovecot for scale")?;
        scale::raise_limits(&mut dovecot, sizes.scale)?;
        scale::run(&dovecot, sizes.scale, sizes.idle_secs, work.path())
            .await
            .with_context(|| format!("scale; Dovecot log:\n{}", dovecot.log_tail()))?;
    }
    Ok(())
}
