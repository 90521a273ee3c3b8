//! A timing proxy between postroom and Dovecot: it forwards bytes unchanged and notes, per
//! connection, when the server announced new mail during IDLE (`* N EXISTS`) and when a
//! `UID MOVE` it had sent was answered `OK`. That interval is postroom's own part of the
//! latency (notification in, decision, store commit, move out), measured on the wire without
//! touching postroom's code; the UIDs of each move tie it to the benchmark's appends. The
//! server's own share of that interval (from each command passing the proxy to its tagged
//! answer coming back) is summed per round, so what is left is postroom's alone.
//! `BENCH_PROXY_LOG=FILE` writes every command and response line (not literals) to FILE, for
//! checking what the proxy saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy saw, over all connections.
#[derive(Default)]
pub struct Timings {
    /// (login, UID) -> when the move that carried it was answered OK.
    pub moved: HashMap<(String, u32), Instant>,
    /// Notification (first EXISTS during IDLE) to move OK, one sample per move that followed one.
    pub own: Vec<Duration>,
    /// The same intervals less the time the server took to answer the commands inside them.
    pub own_client: Vec<Duration>,
    /// login -> instants of EXISTS announcements during IDLE.
    pub exists: HashMap<String, Vec<Instant>>,
}

#[derive(Default)]
struct Conn {
    user: String,
    idle: bool,
    first_exists: Option<Instant>,
    /// The tag of the IDLE in progress: DONE is answered with it.
    idle_tag: String,
    /// Commands passed on and not yet answered, by tag, with when they passed.
    pending: HashMap<String, Instant>,
    /// The server's answering time inside the current round (since `first_exists`).
    server_busy: Duration,
    moves: HashMap<String, Vec<u32>>,
    /// Tagged OKs seen before the proxy had parsed the command they answer: the two directions
    /// run on separate tasks, so a reply can be handled first (observed with UID MOVE).
    answered: HashMap<String, Instant>,
}

/// Splits a byte stream into lines, skipping literals (`{n}` / `{n+}` at a line's end).
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    skip: usize,
}

impl Lines {
    fn feed(&mut self, data: &[u8], mut each: impl FnMut(&str)) {
        self.buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            if self.skip > 0 {
                let take = self.skip.min(self.buf.len() - at);
                at += take;
                self.skip -= take;
                if self.skip > 0 {
                    break;
                }
            }
            let Some(end) = self.buf[at..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = String::from_utf8_lossy(&self.buf[at..at + end]).into_owned();
            at += end + 2;
            self.skip = literal_len(&line).unwrap_or(0);
            each(&line);
        }
        self.buf.drain(..at);
    }
}

fn literal_len(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

/// Starts the proxy in front of `upstream`; returns its port and the shared timings.
pub async fn start(upstream: u16) -> Result<(u16, Arc<Mutex<Timings>>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let timings = Arc::new(Mutex::new(Timings::default()));
    let shared = timings.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let timings = shared.clone();
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                    let _ = relay(client, server, timings).await;
                }
            });
        }
    });
    Ok((port, timings))
}

async fn relay(client: TcpStream, server: TcpStream, timings: Arc<Mutex<Timings>>) -> Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let conn = Arc::new(Mutex::new(Conn::default()));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up_conn = conn.clone();
    let up_timings = timings.clone();
    let up = tokio::spawn(async move {
        let mut lines = Lines::default();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let now = Instant::now();
            lines.feed(&buf[..n], |l| from_client(&up_conn, &up_timings, l, now));
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut lines = Lines::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sr.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let now = Instant::now();
        lines.feed(&buf[..n], |l| from_server(&conn, &timings, l, now));
        cw.write_all(&buf[..n]).await?;
    }
    up.abort();
    Ok(())
}

fn from_client(conn: &Mutex<Conn>, timings: &Mutex<Timings>, line: &str, now: Instant) {
    let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
    let mut words = line.split_whitespace();
    let (Some(tag), Some(cmd)) = (words.next(), words.next()) else {
        debug_line(&conn.user, ">", line);
        if line.eq_ignore_ascii_case("DONE") {
            conn.idle = false;
            let tag = conn.idle_tag.clone();
            conn.pending.insert(tag, now);
        }
        return;
    };
    if cmd.eq_ignore_ascii_case("LOGIN") {
        debug_line(&conn.user, ">", &format!("{tag} LOGIN ***"));
    } else {
        debug_line(&conn.user, ">", line);
    }
    if !cmd.eq_ignore_ascii_case("IDLE") {
        conn.pending.insert(tag.to_string(), now);
    }
    match cmd.to_ascii_uppercase().as_str() {
        "LOGIN" => conn.user = words.next().unwrap_or("").trim_matches('"').to_string(),
        "IDLE" => {
            // A new IDLE means postroom handled what was announced before it. An announcement
            // that led to no move (the message was already handled by the catch-up that runs
            // before each IDLE, Dovecot's notice arriving ~500 ms late) must not be paired
            // with a later, unrelated move.
            conn.idle = true;
            conn.idle_tag = tag.to_string();
            conn.first_exists = None;
            conn.server_busy = Duration::ZERO;
        }
        "UID" if words.next().is_some_and(|w| w.eq_ignore_ascii_case("MOVE")) => {
            let uids = parse_set(words.next().unwrap_or(""));
            match conn.answered.remove(tag) {
                Some(at) => moved(&mut conn, timings, uids, at),
                None => {
                    conn.moves.insert(tag.to_string(), uids);
                }
            }
        }
        _ => {}
    }
}

fn from_server(conn: &Mutex<Conn>, timings: &Mutex<Timings>, line: &str, now: Instant) {
    let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
    debug_line(&conn.user, "<", line);
    if line.starts_with("* ") && line.ends_with(" EXISTS") {
        if conn.idle {
            if conn.first_exists.is_none() {
                conn.server_busy = Duration::ZERO;
            }
            conn.first_exists.get_or_insert(now);
            let user = conn.user.clone();
            let mut t = timings.lock().unwrap_or_else(|e| e.into_inner());
            t.exists.entry(user).or_default().push(now);
        }
        return;
    }
    let Some((tag, rest)) = line.split_once(' ') else {
        return;
    };
    if let Some(sent) = conn.pending.remove(tag) {
        if conn.first_exists.is_some() {
            conn.server_busy += now.saturating_duration_since(sent);
        }
    }
    if !rest.starts_with("OK") {
        return;
    }
    match conn.moves.remove(tag) {
        Some(uids) => moved(&mut conn, timings, uids, now),
        None => {
            conn.answered.insert(tag.to_string(), now);
        }
    }
}

/// Records a move of `uids` answered OK at `at`, and postroom's own part if IDLE announced it.
fn moved(conn: &mut Conn, timings: &Mutex<Timings>, uids: Vec<u32>, at: Instant) {
    let mut t = timings.lock().unwrap_or_else(|e| e.into_inner());
    for uid in uids {
        t.moved.insert((conn.user.clone(), uid), at);
    }
    if let Some(first) = conn.first_exists.take() {
        let own = at.saturating_duration_since(first);
        t.own.push(own);
        t.own_client.push(own.saturating_sub(conn.server_busy));
    }
}

/// A UID set such as `5`, `5:7` or `5,9,11:12`.
fn parse_set(set: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in set.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a.min(b)..=a.max(b));
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

fn debug_line(user: &str, dir: &str, line: &str) {
    if let Ok(path) = std::env::var("BENCH_PROXY_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{user} {dir} {}", &line[..line.len().min(200)]);
        }
    }
}
