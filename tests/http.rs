//! The HTTP listener on 127.0.0.1: `/metrics` parsed by a strict text-format parser, `/healthz`,
//! the token, escaping on the dashboard, and the dashboard in a real headless Chromium.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use postroom::clock::Clock;
use postroom::config::Config;
use postroom::http::{self, HttpState};
use postroom::metrics::LiveMetrics;
use postroom::store::{
    Commit, Event, EventKind, MessageRecord, MessageState, Quarantined, Store, SyncState,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

fn config(http: &str) -> Config {
    let text = format!(
        r#"
[[server]]
name = "local"
host = "127.0.0.1"
security = "plain"

[[mailbox]]
name = "support"
server = "local"
login = "support"
password = "x"
team = "support"

[[team]]
name = "support"
agents = ["alice", "bob"]

[[agent]]
id = "alice"
name = "Alice"

[[agent]]
id = "bob"
name = "Bob"

[[sla]]
name = "standard"
first_response = "4h"
warn_at = "50%"

{http}
"#
    );
    Config::parse(&text).unwrap_or_else(|p| panic!("config: {p:?}"))
}

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// "Now" for every test: Monday 2025-03-03 12:00 UTC.
const NOW: &str = "2025-03-03T12:00:00Z";

fn arrive(store: &Store, at: &str, owner: Option<&str>, subject: &str) -> String {
    let message = MessageRecord {
        identity: format!("id-{at}"),
        mailbox: "support".into(),
        message_id: None,
        conversation: String::new(),
        owner: owner.map(str::to_string),
        state: MessageState::Left,
        arrived: Some(t(at)),
        decided_at: t(at),
        subject: subject.into(),
        from: Some("customer@example.com".into()),
    };
    let event = Event {
        at: t(at),
        kind: if owner.is_some() {
            EventKind::Assigned
        } else {
            EventKind::Left
        },
        mailbox: "support".into(),
        conversation: None,
        identity: None,
        agent: owner.map(str::to_string),
        detail: "test".into(),
    };
    let commit = Commit {
        message,
        new_conversation: true,
        thread_ids: Vec::new(),
        referenced: Vec::new(),
        rotation: None,
        sla: Some("standard".into()),
        work: true,
        tags: Vec::new(),
        rules: Vec::new(),
        event,
    };
    store.commit(&commit).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Three open conversations at 12:00 under a 4h policy warned at 2h: one from 11:30
/// (running), one from 09:30 (at risk: warned at 11:30), one from 07:00 (breached at 11:00),
/// the last with a hostile subject; and one quarantined message.
fn seed(store: &Store) {
    arrive(
        store,
        "2025-03-03T11:30:00Z",
        Some("alice"),
        "Printer on fire",
    );
    arrive(
        store,
        "2025-03-03T09:30:00Z",
        Some("bob"),
        "Invoice question",
    );
    arrive(store, "2025-03-03T07:00:00Z", None, HOSTILE);
    let q = Quarantined {
        mailbox: "support".into(),
        folder: "INBOX".into(),
        uid_validity: 1,
        uid: 42,
        reason: "<b>unparseable</b>".into(),
        attempts: 0,
        at: t("2025-03-03T10:00:00Z"),
    };
    let e = Event {
        at: t("2025-03-03T10:00:00Z"),
        kind: EventKind::Quarantined,
        mailbox: "support".into(),
        conversation: None,
        identity: None,
        agent: None,
        detail: "quarantined".into(),
    };
    store.quarantine(q, e).unwrap_or_else(|e| panic!("{e:#}"));
    let sync = SyncState {
        last_contact: Some(t("2025-03-03T11:59:00Z")),
        ..SyncState::default()
    };
    store
        .set_sync_state("support", &sync)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

struct Server {
    addr: SocketAddr,
    store: Store,
    live: LiveMetrics,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start(http_section: &str) -> Server {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    seed(&store);
    let config = Arc::new(config(http_section));
    let http_config = config.http.clone().unwrap_or_else(|| panic!("no [http]"));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let live = LiveMetrics::default();
    let clock = Clock::manual(t(NOW));
    let state = HttpState::new(
        config,
        &http_config,
        addr,
        store.clone(),
        live.clone(),
        clock,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(http::serve_on(listener, state, stop_rx));
    Server {
        addr,
        store,
        live,
        _stop: stop,
        _dir: dir,
    }
}

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// One HTTP/1.1 GET over a fresh connection.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8(raw).unwrap_or_else(|e| panic!("{e}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {text}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .unwrap_or_else(|| panic!("bad chunk"));
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|e| panic!("{e}"));
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// A strict parser for the Prometheus/OpenMetrics text format: every sample's family must be
/// declared by `# TYPE` before it, names and labels must be well formed, values must parse, and
/// an OpenMetrics document must end with `# EOF`. Returns samples keyed by `name{labels}`.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut eof = false;
    for line in text.lines() {
        assert!(!eof, "content after # EOF: {line}");
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(valid_name(name), "bad family name in {line}");
            match keyword {
                "TYPE" => {
                    let kind = parts.next().unwrap_or("");
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "unknown",
                        "info",
                        "stateset",
                    ];
                    assert!(known.contains(&kind), "bad type in {line}");
                    assert!(
                        types.insert(name.to_string(), kind.to_string()).is_none(),
                        "type declared twice: {line}"
                    );
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment line {line}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = series.split('{').next().unwrap_or("");
        assert!(valid_name(name), "bad metric name in {line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels: {line}"));
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label {pair} in {line}"));
                assert!(valid_name(k), "bad label name {k} in {line}");
                assert!(
                    !v.trim_end_matches('"').contains('\n'),
                    "raw newline in {line}"
                );
            }
        }
        let family = ["_total", "_bucket", "_count", "_sum", "_created"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.contains_key(*base))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its # TYPE: {line}"
        );
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "duplicate series {series}"
        );
    }
    assert!(eof, "no # EOF at the end");
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_carry_the_store_and_live_values() {
    let server = start("[http]\nlisten = \"127.0.0.1:9187\"").await;
    let support = server.live.mailbox("support");
    support.record_reconnect();
    support.record_reconnect();
    support.set_idle(true);
    support.observe_intake(Duration::from_millis(1500));
    let reply = get(server.addr, "/metrics", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.headers["content-type"].starts_with("application/openmetrics-text"));
    let m = parse_metrics(&reply.body);
    let want = [
        (
            r#"postroom_conversations{mailbox="support",state="open"}"#,
            3.0,
        ),
        (
            r#"postroom_conversations{mailbox="support",state="closed"}"#,
            0.0,
        ),
        (r#"postroom_waiting_conversations{mailbox="support"}"#, 3.0),
        (
            r#"postroom_unassigned_conversations{mailbox="support"}"#,
            1.0,
        ),
        // The 07:00 conversation has waited five hours at 12:00.
        (
            r#"postroom_oldest_waiting_seconds{mailbox="support"}"#,
            18000.0,
        ),
        (r#"postroom_quarantined_messages{mailbox="support"}"#, 1.0),
        (
            r#"postroom_server_contact_age_seconds{mailbox="support"}"#,
            60.0,
        ),
        (r#"postroom_mailbox_healthy{mailbox="support"}"#, 1.0),
        (
            r#"postroom_sla_open_conversations{mailbox="support",policy="standard",state="running"}"#,
            1.0,
        ),
        (
            r#"postroom_sla_open_conversations{mailbox="support",policy="standard",state="at_risk"}"#,
            1.0,
        ),
        (
            r#"postroom_sla_open_conversations{mailbox="support",policy="standard",state="breached"}"#,
            1.0,
        ),
        (r#"postroom_reconnects_total{mailbox="support"}"#, 2.0),
        (r#"postroom_idle{mailbox="support"}"#, 1.0),
        (
            r#"postroom_intake_lag_seconds_count{mailbox="support"}"#,
            1.0,
        ),
        (
            r#"postroom_intake_lag_seconds_bucket{le="1.0",mailbox="support"}"#,
            0.0,
        ),
        (
            r#"postroom_intake_lag_seconds_bucket{le="2.5",mailbox="support"}"#,
            1.0,
        ),
    ];
    for (series, value) in want {
        assert_eq!(m.get(series), Some(&value), "{series} in\n{}", reply.body);
    }
    grafana_uses_only_served_metrics(&m);
}

/// Every `postroom_*` name in docs/grafana-dashboard.json is a series the server exports.
fn grafana_uses_only_served_metrics(samples: &BTreeMap<String, f64>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let served: Vec<&str> = samples
        .keys()
        .map(|k| k.split('{').next().unwrap_or(""))
        .collect();
    let mut checked = 0;
    for (i, _) in text.match_indices("postroom_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            served.contains(&name.as_str()),
            "the Grafana dashboard uses {name}, not served"
        );
        checked += 1;
    }
    assert!(checked >= 10, "the dashboard queries the metrics");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_is_ready_then_names_the_failing_mailbox() {
    let server = start("[http]\nlisten = \"127.0.0.1:9187\"").await;
    let reply = get(server.addr, "/healthz", &[]).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ready\n"));
    let failing = SyncState {
        last_contact: Some(t("2025-03-03T11:59:00Z")),
        last_error: Some("connection refused".into()),
        ..SyncState::default()
    };
    server
        .store
        .set_sync_state("support", &failing)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let reply = get(server.addr, "/healthz", &[]).await;
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .body
            .contains("mailbox support: last connection failed: connection refused"),
        "{}",
        reply.body
    );
    // Silent for two hours: idle_secs 600 and command time-out 60 allow 1260s.
    let stale = SyncState {
        last_contact: Some(t("2025-03-03T10:00:00Z")),
        ..SyncState::default()
    };
    server
        .store
        .set_sync_state("support", &stale)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let reply = get(server.addr, "/healthz", &[]).await;
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .body
            .contains("no contact with the server for 7200s (limit 1260s)"),
        "{}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_token_is_required_on_every_route() {
    let server = start("[http]\nlisten = \"127.0.0.1:9187\"\ntoken = \"s3cret-token\"").await;
    for path in ["/", "/metrics", "/healthz"] {
        let reply = get(server.addr, path, &[]).await;
        assert_eq!(reply.status, 401, "{path} without a token");
        assert_eq!(
            reply.headers.get("www-authenticate").map(String::as_str),
            Some("Bearer")
        );
        let wrong = get(
            server.addr,
            path,
            &[("Authorization", "Bearer s3cret-tokem")],
        )
        .await;
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
    }
    let bearer = get(
        server.addr,
        "/healthz",
        &[("Authorization", "Bearer s3cret-token")],
    )
    .await;
    assert_eq!(bearer.status, 200);
    let query = get(server.addr, "/metrics?token=s3cret-token", &[]).await;
    assert_eq!(query.status, 200);
}

#[test]
fn a_non_loopback_listener_without_a_token_is_refused() {
    let text = "[[server]]\nname = \"s\"\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\n\
                [http]\nlisten = \"0.0.0.0:9187\"\n";
    let problems = Config::parse(text).err().unwrap_or_default();
    assert!(
        problems
            .iter()
            .any(|p| p.key == "http.listen" && p.message.contains("no token")),
        "{problems:?}"
    );
    let config = config("[http]\nlisten = \"127.0.0.1:9187\"");
    let http_config = config.http.clone().unwrap_or_else(|| panic!("no [http]"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    let addr: SocketAddr = "10.1.2.3:9187".parse().unwrap_or_else(|e| panic!("{e}"));
    let state = HttpState::new(
        Arc::new(config),
        &http_config,
        addr,
        store,
        LiveMetrics::default(),
        Clock::System,
    );
    assert!(
        state.is_err(),
        "a state for a non-loopback address without a token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_escapes_mail_text_and_forbids_scripts() {
    let server = start("[http]\nlisten = \"127.0.0.1:9187\"").await;
    let reply = get(server.addr, "/", &[]).await;
    assert_eq!(reply.status, 200);
    let csp = &reply.headers["content-security-policy"];
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe") && !csp.contains("script-src"),
        "{csp}"
    );
    let html = &reply.body;
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "raw markup from mail in the page"
    );
    assert!(html.contains(
        "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"
    ));
    assert!(
        html.contains("&lt;b&gt;unparseable&lt;/b&gt;"),
        "the quarantine reason is escaped"
    );
    assert_eq!(
        html.matches("<svg").count(),
        5,
        "five charts for one mailbox"
    );
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
}

/// The headless browser: Debian's `chromium`, installed by scripts/test. Missing is a failure.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        for dir in ["/usr/bin", "/usr/local/bin"] {
            let path = PathBuf::from(dir).join(name);
            if path.exists() {
                return path;
            }
        }
    }
    panic!("chromium is not installed: run scripts/test, or apt-get install -y chromium");
}

/// Runs Chromium headless on `url` with extra arguments; returns its stdout. Killed after two
/// minutes so a hung browser fails the test instead of the whole run.
fn run_chromium(url: &str, profile: &std::path::Path, extra: &[&str]) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start chromium: {e}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "chromium failed: {:?}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_renders_in_headless_chromium() {
    let server = start("[http]\nlisten = \"127.0.0.1:9187\"").await;
    let url = format!("http://{}/", server.addr);
    let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap_or_else(|e| panic!("{e}"));
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let (dom_url, shot_arg, profile_path) = (
        url.clone(),
        format!("--screenshot={}", shot.display()),
        profile.path().to_path_buf(),
    );
    let (dom, _) = tokio::task::spawn_blocking(move || {
        let dom = run_chromium(&dom_url, &profile_path, &["--dump-dom"]);
        let shot = run_chromium(
            &dom_url,
            &profile_path,
            &[&shot_arg, "--window-size=1280,900", "--hide-scrollbars"],
        );
        (dom, shot)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The browser parsed the page: five charts with their bars, the hostile subject as text.
    assert_eq!(dom.matches("<svg").count(), 5, "{dom}");
    assert!(dom.matches("<rect").count() > 20, "the charts have bars");
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the subject survives as text"
    );
    assert!(!dom.contains("<img"), "no element was injected");
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
}
