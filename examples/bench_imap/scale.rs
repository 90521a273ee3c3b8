//! Benchmark 3, scale: one postroom watching many shared mailboxes on one Dovecot with IDLE.
//!
//! Each watched mailbox holds one IMAP connection, and Dovecot runs one `imap` process per
//! connection, so Dovecot's process and client limits are raised first (appended to the
//! testkit's configuration, then a restart). Measured: time from start until every mailbox
//! logged "watching for new mail", on a cold start (folders created) and a warm one; then
//! postroom's resident memory and its CPU time over an idle period.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postroom_testkit::{Daemon, Dovecot};

use crate::util::{self, record};

/// Raises Dovecot's limits so `n` concurrent IMAP sessions fit, and restarts it.
pub fn raise_limits(dovecot: &mut Dovecot, n: usize) -> Result<()> {
    let limit = n * 2 + 100;
    let extra = format!(
        "\n# Added by the scale benchmark: one imap process per watched mailbox.\n\
         default_process_limit = {limit}\ndefault_client_limit = {}\n\
         service imap {{\n  process_limit = {limit}\n}}\n\
         service anvil {{\n  client_limit = {}\n}}\n\
         service auth {{\n  client_limit = {}\n}}\n",
        limit * 2,
        limit * 3,
        limit * 3
    );
    let path = dovecot.config_path();
    let mut conf = std::fs::read_to_string(&path)?;
    conf.push_str(&extra);
    std::fs::write(&path, conf)?;
    dovecot
        .restart()
        .context("restart Dovecot with raised limits")
}

/// Runs the scale benchmark over `n` mailboxes, idling `idle_secs` for the CPU figure.
pub async fn run(dovecot: &Dovecot, n: usize, idle_secs: u64, work: &Path) -> Result<()> {
    let users: Vec<String> = (0..n).map(|i| format!("scale{i}@bench.test")).collect();
    let dir = work.join("postroom-scale");
    std::fs::create_dir_all(&dir)?;
    // `BENCH_MAILBOX_EXTRA` (e.g. `folder_poll_secs = 300`) tries settings without a rebuild.
    let extra = std::env::var("BENCH_MAILBOX_EXTRA").unwrap_or_default();
    let config = util::write_config(&dir, dovecot.port(), Dovecot::PASSWORD, &users, &extra)?;
    let config = config.to_string_lossy().into_owned();
    for (label, cold) in [
        ("cold start (creates folders)", true),
        ("warm start", false),
    ] {
        let started = Instant::now();
        let mut daemon = Daemon::spawn(
            util::postroom_binary()?,
            ["--config", &config, "run"],
            [("RUST_LOG", "postroom=info")],
        )?;
        let limit = Duration::from_secs(600);
        util::until(
            "all watching",
            limit,
            Duration::from_millis(50),
            async || Ok(daemon.stderr().matches("watching for new mail").count() >= n),
        )
        .await
        .with_context(|| tail(&daemon.output()))?;
        let took = started.elapsed().as_secs_f64();
        println!("scale {n}: {label}: all watching after {took:.2} s");
        let goal = if cold { "" } else { "< 10 s" };
        record(
            "scale",
            &format!("{n} mailboxes: {label} to all watching"),
            took,
            "s",
            goal,
        )?;
        if !cold {
            idle(&daemon, n, idle_secs).await?;
        }
        daemon.sigterm()?;
        daemon.wait_exit(Duration::from_secs(60)).await?;
    }
    Ok(())
}

async fn idle(daemon: &Daemon, n: usize, secs: u64) -> Result<()> {
    // Let the start's burst settle before measuring the quiet state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Each mailbox's first folder poll and full reconcile come at a random point of its first
    // poll interval (30 s) after it started watching, so the first window holds them all; the
    // second is the steady state, polls only.
    let first = cpu_share(daemon, secs).await?;
    let steady = cpu_share(daemon, secs).await?;
    let rss = util::proc_mib(daemon.pid(), "VmRSS")?;
    let threads = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    println!(
        "scale {n}: idle {secs} s after start: CPU {first:.2}% of a core; the next {secs} s: \
         {steady:.2}%; RSS {rss:.1} MiB, {threads} threads"
    );
    record(
        "scale",
        &format!("{n} mailboxes: RSS while watching"),
        rss,
        "MiB",
        "< 100 MiB",
    )?;
    record(
        "scale",
        &format!(
            "{n} mailboxes: CPU over the first {secs} s watching (first polls and reconciles)"
        ),
        first,
        "% core",
        "",
    )?;
    record(
        "scale",
        &format!("{n} mailboxes: CPU idle over the next {secs} s (steady)"),
        steady,
        "% core",
        "< 1%",
    )?;
    Ok(())
}

/// The daemon's CPU time over the next `secs` seconds, as a share of one core.
async fn cpu_share(daemon: &Daemon, secs: u64) -> Result<f64> {
    let before = util::cpu_time(daemon.pid())?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = util::cpu_time(daemon.pid())? - before;
    Ok(cpu.as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0)
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
