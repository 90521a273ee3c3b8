//! Benchmark 2, latency: steady arrivals spread over many mailboxes while postroom watches them
//! all with IDLE, through the timing proxy of [`crate::proxy`].
//!
//! Reported per message: end to end (APPEND sent to the server's OK for postroom's MOVE of that
//! UID, which is when the message is in the agent folder), Dovecot's notification delay (APPEND
//! answered to the next EXISTS during IDLE on postroom's connection) and, from the proxy alone,
//! postroom's own part (that EXISTS to the MOVE's OK). Postroom's own histogram of that part
//! (`postroom_handling_seconds`, IDLE's end to the move answered) is read from its `/metrics`
//! at the end and reported beside the proxy's figures.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postroom_testkit::Daemon;
use tokio::sync::Mutex;

use crate::raw::Raw;
use crate::util::{self, record};

/// One appended message: login, UID, APPEND sent, APPEND answered.
type Sent = (String, u32, Instant, Instant);

/// The server the mail arrives at and its mailboxes' logins.
pub struct Server<'a> {
    /// Its name in the results, such as `Dovecot`.
    pub name: &'static str,
    /// The part the results are recorded under, such as `latency`.
    pub part: &'static str,
    /// Its IMAP port on 127.0.0.1.
    pub port: u16,
    /// Every login's password.
    pub password: &'a str,
    /// One login per mailbox.
    pub users: Vec<String>,
}

/// Runs `rate` messages/s over the server's mailboxes for `secs` seconds.
pub async fn run(
    server: &Server<'_>,
    mail: &[Vec<u8>],
    rate: f64,
    secs: u64,
    work: &Path,
) -> Result<()> {
    let users = &server.users;
    let mailboxes = users.len();
    let (port, timings) = crate::proxy::start(server.port).await?;
    let dir = work.join(format!("postroom-{}", server.part));
    std::fs::create_dir_all(&dir)?;
    // `BENCH_MAILBOX_EXTRA` (e.g. `folder_poll_secs = 600`) tries settings without a rebuild.
    let extra = std::env::var("BENCH_MAILBOX_EXTRA").unwrap_or_default();
    let config = util::write_config(&dir, port, server.password, users, &extra)?;
    let http = free_port()?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!("\n[http]\nlisten = \"127.0.0.1:{http}\"\n"));
    std::fs::write(&config, text)?;
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

    let sent = arrivals(server, mail, rate, secs).await?;
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
    report(server, &sent, &lock(&timings))?;
    match scrape(http).await {
        Ok(metrics) => report_histogram(server.part, &metrics)?,
        Err(err) => println!("warning: could not read postroom's /metrics: {err:#}"),
    }
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
            Path::new(&out).join(format!("{}-postroom.log", server.part)),
            daemon.output(),
        )?;
    }
    daemon.sigterm()?;
    daemon.wait_exit(Duration::from_secs(30)).await?;
    Ok(())
}

/// Sends messages round robin over the mailboxes at a steady `rate`.
async fn arrivals(
    server: &Server<'_>,
    mail: &[Vec<u8>],
    rate: f64,
    secs: u64,
) -> Result<Vec<Sent>> {
    let users = &server.users;
    let mut conns = Vec::new();
    for user in users {
        conns.push(Arc::new(Mutex::new(
            Raw::login(server.port, user, server.password).await?,
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

fn report(server: &Server<'_>, sent: &[Sent], t: &crate::proxy::Timings) -> Result<()> {
    let part = server.part;
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
        "{part}: {} sent, {} moved, {} notifications, {} own samples",
        sent.len(),
        e2e.len(),
        notify.len(),
        t.own.len()
    );
    record(
        part,
        "messages moved / sent",
        e2e.len() as f64 / sent.len() as f64,
        "",
        "1",
    )?;
    let own = t.own.clone();
    let own_client = t.own_client.clone();
    let notify_name = format!("{} notify delay (APPEND OK to EXISTS)", server.name);
    for (name, mut v, goal) in [
        ("postroom own part (EXISTS to MOVE OK)", own, "p99 < 5 ms"),
        (
            "postroom own part less the server's answering time",
            own_client,
            "",
        ),
        (notify_name.as_str(), notify, ""),
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
        record(part, &format!("{name} p50"), pick(0.5), "ms", "")?;
        record(part, &format!("{name} p99"), pick(0.99), "ms", goal)?;
        record(part, &format!("{name} max"), pick(1.0), "ms", "")?;
    }
    Ok(())
}

/// Locks the proxy's timings, shrugging off poisoning: the benchmark only reads them.
fn lock(
    m: &std::sync::Mutex<crate::proxy::Timings>,
) -> std::sync::MutexGuard<'_, crate::proxy::Timings> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// `GET /metrics` from postroom's listener on loopback.
async fn scrape(port: u16) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// Postroom's own handling histogram, summed over every mailbox: the share of rounds handled
/// within 5 ms and the bucket bounds that hold the median and the 99th percentile.
fn report_histogram(part: &str, metrics: &str) -> Result<()> {
    let mut buckets: std::collections::BTreeMap<u64, f64> = Default::default();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("postroom_handling_seconds_bucket{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let le = labels
            .split(',')
            .find_map(|l| l.strip_prefix("le=\""))
            .map(|v| v.trim_end_matches('"'));
        let (Some(le), Ok(count)) = (le, value.trim().parse::<f64>()) else {
            continue;
        };
        // Bounds in microseconds as the key, "+Inf" last.
        let key = le
            .parse::<f64>()
            .map(|v| (v * 1e6).round() as u64)
            .unwrap_or(u64::MAX);
        *buckets.entry(key).or_default() += count;
    }
    let total = buckets.get(&u64::MAX).copied().unwrap_or(0.0);
    if total == 0.0 {
        println!("warning: postroom's handling histogram is empty");
        return Ok(());
    }
    let within = |us: u64| buckets.get(&us).copied().unwrap_or(0.0) / total;
    let bound = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| **c >= q * total)
            .map(|(us, _)| *us as f64 / 1e3)
            .unwrap_or(f64::INFINITY)
    };
    println!("{part}: postroom's own histogram holds {total} rounds");
    let name = "postroom histogram (IDLE end to MOVE OK)";
    record(
        part,
        &format!("{name}: share within 5 ms"),
        within(5_000) * 100.0,
        "%",
        ">= 99%",
    )?;
    record(
        part,
        &format!("{name}: bucket holding p50"),
        bound(0.5),
        "ms <=",
        "",
    )?;
    record(
        part,
        &format!("{name}: bucket holding p99"),
        bound(0.99),
        "ms <=",
        "< 5 ms",
    )?;
    Ok(())
}
