//! Benchmark 2, latency: steady arrivals spread over many mailboxes while postroom watches them
//! all with IDLE, through the timing proxy of [`crate::proxy`].
//!
//! Reported per message: end to end (APPEND sent to the server's OK for postroom's MOVE of that
//! UID, which is when the message is in the agent folder), Dovecot's notification delay (APPEND
//! answered to the next EXISTS during IDLE on postroom's connection) and, from the proxy alone,
//! postroom's own part (that EXISTS to the MOVE's OK).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postroom_testkit::{Daemon, Dovecot};
use tokio::sync::Mutex;

use crate::raw::Raw;
use crate::util::{self, record};

/// One appended message: login, UID, APPEND sent, APPEND answered.
type Sent = (String, u32, Instant, Instant);

/// Runs `rate` messages/s over `mailboxes` mailboxes for `secs` seconds.
pub async fn run(
    dovecot: &Dovecot,
    mail: &[Vec<u8>],
    mailboxes: usize,
    rate: f64,
    secs: u64,
    work: &Path,
) -> Result<()> {
    let users: Vec<String> = (0..mailboxes)
        .map(|i| format!("lat{i}@bench.test"))
        .collect();
    let (port, timings) = crate::proxy::start(dovecot.port()).await?;
    let dir = work.join("postroom-latency");
    std::fs::create_dir_all(&dir)?;
    let config = util::write_config(&dir, port, &users, "")?;
    let config = config.to_string_lossy().into_owned();
    let mut daemon = Daemon::spawn(
        util::postroom_binary()?,
        ["--config", &config, "run"],
        [("RUST_LOG", "postroom=info")],
    )?;
    util::until(
        "all watching",
        Duration::from_secs(120),
        Duration::from_millis(50),
        async || Ok(daemon.stderr().matches("watching for new mail").count() >= mailboxes),
    )
    .await
    .with_context(|| daemon.output())?;

    let sent = arrivals(dovecot, &users, mail, rate, secs).await?;
    let done = util::until(
        "all moved",
        Duration::from_secs(30),
        Duration::from_millis(50),
        async || {
            let t = lock(&timings);
            Ok(sent
                .iter()
                .all(|(u, uid, _, _)| t.moved.contains_key(&(u.clone(), *uid))))
        },
    )
    .await;
    if let Err(err) = done {
        println!("warning: {err:#}");
    }
    report(&sent, &lock(&timings))?;
    let unmoved: Vec<String> = {
        let t = lock(&timings);
        sent.iter()
            .filter(|(u, uid, _, _)| !t.moved.contains_key(&(u.clone(), *uid)))
            .map(|(u, uid, _, _)| format!("{u} UID {uid}"))
            .collect()
    };
    if !unmoved.is_empty() {
        println!("not moved: {}", unmoved.join(", "));
    }
    if let Ok(out) = std::env::var("BENCH_OUT") {
        std::fs::write(
            Path::new(&out).join("latency-postroom.log"),
            daemon.output(),
        )?;
    }
    daemon.sigterm()?;
    daemon.wait_exit(Duration::from_secs(30)).await?;
    Ok(())
}

/// Sends messages round robin over the mailboxes at a steady `rate`.
async fn arrivals(
    dovecot: &Dovecot,
    users: &[String],
    mail: &[Vec<u8>],
    rate: f64,
    secs: u64,
) -> Result<Vec<Sent>> {
    let mut conns = Vec::new();
    for user in users {
        conns.push(Arc::new(Mutex::new(
            Raw::login(dovecot.port(), user, Dovecot::PASSWORD).await?,
        )));
    }
    let total = (rate * secs as f64) as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(period);
    let mut tasks = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let conn = conns[i % users.len()].clone();
        let user = users[i % users.len()].clone();
        let raw = mail[i % mail.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = conn.lock().await;
            let sent = Instant::now();
            let uid = conn.append_uid("INBOX", &raw).await?;
            anyhow::Ok((user, uid, sent, Instant::now()))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

fn report(sent: &[Sent], t: &crate::proxy::Timings) -> Result<()> {
    let mut e2e = Vec::new();
    let mut notify = Vec::new();
    for (user, uid, start, appended) in sent {
        if let Some(moved) = t.moved.get(&(user.clone(), *uid)) {
            e2e.push(*moved - *start);
        }
        let next = t
            .exists
            .get(user)
            .and_then(|v| v.iter().find(|x| *x >= appended).copied());
        if let Some(x) = next {
            notify.push(x - *appended);
        }
    }
    println!(
        "latency: {} sent, {} moved, {} notifications, {} own samples",
        sent.len(),
        e2e.len(),
        notify.len(),
        t.own.len()
    );
    record(
        "latency",
        "messages moved / sent",
        e2e.len() as f64 / sent.len() as f64,
        "",
        "1",
    )?;
    let own = t.own.clone();
    for (name, mut v, goal) in [
        ("postroom own part (EXISTS to MOVE OK)", own, "p99 < 5 ms"),
        ("Dovecot notify delay (APPEND OK to EXISTS)", notify, ""),
        (
            "end to end (APPEND to MOVE OK)",
            e2e,
            "within 20 ms of notify",
        ),
    ] {
        v.sort();
        if v.is_empty() {
            continue;
        }
        let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        record("latency", &format!("{name} p50"), pick(0.5), "ms", "")?;
        record("latency", &format!("{name} p99"), pick(0.99), "ms", goal)?;
        record("latency", &format!("{name} max"), pick(1.0), "ms", "")?;
    }
    Ok(())
}

/// Locks the proxy's timings, shrugging off poisoning: the benchmark only reads them.
fn lock(
    m: &std::sync::Mutex<crate::proxy::Timings>,
) -> std::sync::MutexGuard<'_, crate::proxy::Timings> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
