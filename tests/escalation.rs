//! Escalation mail end to end: store state, the SLA tick on a manual clock, the outbox, and a
//! real SMTP server (aiosmtpd on 127.0.0.1) receiving what postroom sends.
//!
//! Conversations are written through the public store API, as the worker would write them, so
//! no IMAP server is needed. The calendar is Mon-Fri 09:00-17:00 Europe/Berlin and the policies
//! give 4 business hours; a conversation arriving Friday 2025-03-07 15:00 (14:00Z) therefore
//! breaches on Monday 2025-03-10 11:00 (10:00Z) and, warned at 75 %, is warned at 10:00 (09:00Z).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use mail_parser::MessageParser;
use postroom::clock::Clock;
use postroom::config::Config;
use postroom::escalate::Escalator;
use postroom::notify::Mailer;
use postroom::store::{Commit, Event, EventKind, MessageRecord, MessageState, OutboxState, Store};
use postroom_testkit::SmtpListener;

const LEAD: &str = "nina.lead@ourco.example.test";
const ALICE: &str = "alice@ourco.example.test";
const PASSWORD: &str = "Corr3ct-Horse!";
const BOSS: &str = "boss@ourco.example.test";

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().expect("a test instant")
}

/// Friday 15:00 in Berlin, when every test conversation arrives.
fn arrival() -> DateTime<Utc> {
    utc("2025-03-07T14:00:00Z")
}

fn breach() -> DateTime<Utc> {
    utc("2025-03-10T10:00:00Z")
}

/// A site: config, state directory, manual clock and SMTP listener.
struct Rig {
    dir: tempfile::TempDir,
    config: Arc<Config>,
    clock: Clock,
    listener: SmtpListener,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(SmtpListener::start().expect("SMTP listener"), None)
    }

    /// A rig whose `[smtp]` logs in as `login` with [`PASSWORD`] from a file.
    fn with_login(listener: SmtpListener, login: &str) -> Rig {
        Rig::with(listener, Some(login))
    }

    fn with(listener: SmtpListener, login: Option<&str>) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("smtp.secret");
        std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
        let extra = match login {
            Some(login) => format!(
                "login = \"{login}\"\npassword_file = \"{}\"",
                secret.display()
            ),
            None => String::new(),
        };
        let text = config_text(listener.port(), &extra);
        let config = Config::parse(&text).unwrap_or_else(|p| panic!("config problems: {p:#?}"));
        Rig {
            dir,
            config: Arc::new(config),
            clock: Clock::manual(arrival()),
            listener,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Opens the store and an escalator on it, as the daemon does at start.
    fn open(&self) -> (Store, Escalator) {
        let store = Store::open(&self.state()).expect("store");
        let smtp = self.config.smtp.as_ref().expect("[smtp]");
        let mailer = Mailer::from_config(smtp).expect("mailer");
        let escalator = Escalator::new(
            self.config.clone(),
            store.clone(),
            self.clock.clone(),
            mailer,
        )
        .expect("escalator");
        (store, escalator)
    }

    fn set_clock(&self, at: DateTime<Utc>) {
        let now = self.clock.now();
        self.clock.advance(at - now);
    }

    fn parsed(&self) -> Vec<mail_parser::Message<'static>> {
        self.listener
            .messages()
            .into_iter()
            .map(|raw| {
                MessageParser::default()
                    .parse(&raw)
                    .expect("MIME")
                    .into_owned()
            })
            .collect()
    }
}

fn config_text(port: u16, smtp_extra: &str) -> String {
    format!(
        r#"
[daemon]
state_dir = "/nonexistent"

[[server]]
name = "local"
host = "127.0.0.1"
security = "plain"

[[mailbox]]
name = "support"
server = "local"
login = "support"
password_env = "POSTROOM_TEST_UNUSED"
team = "support"
sla = "plain"
calendar = "office"

[[team]]
name = "support"
agents = ["alice", "bob"]
leads = ["nina"]

[[agent]]
id = "alice"
name = "Alice Example"
email = "{ALICE}"

[[agent]]
id = "bob"
name = "Bob Martin"

[[agent]]
id = "nina"
name = "Nina Lead"
email = "{LEAD}"

[[team]]
name = "leads"
agents = ["nina"]

[[calendar]]
name = "office"
timezone = "Europe/Berlin"
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]

[[sla]]
name = "plain"
first_response = "4h"

[[sla]]
name = "warned"
first_response = "4h"
warn_at = "75%"

[[sla]]
name = "reminded"
first_response = "4h"
reminder = "09:00"

[[sla.escalation]]
after = "0m"
to = ["lead"]

[[sla.escalation]]
after = "8h"
to = ["owner", "{BOSS}"]

[smtp]
host = "127.0.0.1"
port = {port}
security = "plain"
from = "support@ourco.example.test"
from_name = "Support queue"
{smtp_extra}
"#
    )
}

/// Writes a new conversation as the worker would; returns its id.
fn conversation(
    store: &Store,
    subject: &str,
    from: &str,
    owner: Option<&str>,
    sla: Option<&str>,
) -> String {
    let at = arrival();
    let message = MessageRecord {
        identity: format!("id-{subject}-{}", fastrand_id()),
        mailbox: "support".into(),
        message_id: None,
        conversation: String::new(),
        owner: owner.map(str::to_string),
        state: MessageState::Filed {
            folder: "INBOX".into(),
        },
        arrived: Some(at),
        decided_at: at,
        subject: subject.into(),
        from: Some(from.into()),
    };
    let event = Event {
        at,
        kind: EventKind::Assigned,
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
        sla: sla.map(str::to_string),
        work: true,
        tags: Vec::new(),
        rules: Vec::new(),
        event,
    };
    store.commit(&commit).expect("commit")
}

fn fastrand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn header<'a>(message: &'a mail_parser::Message<'_>, name: &'a str) -> Option<&'a str> {
    message.header_raw(name).map(str::trim)
}

#[tokio::test]
async fn breach_mails_the_lead_once_at_the_breach_instant_and_never_at_the_weekend() {
    let rig = Rig::new();
    let (store, escalator) = rig.open();
    let conv = conversation(
        &store,
        "Order 55821 arrived damaged",
        "anna@customer.test",
        Some("bob"),
        None,
    );

    // Hourly ticks through Friday evening, the weekend and Monday morning: nothing is due.
    while rig.clock.now() < breach() - Duration::seconds(1) {
        escalator.tick().await.unwrap();
        rig.clock.advance(Duration::hours(1));
    }
    rig.set_clock(breach() - Duration::seconds(1));
    escalator.tick().await.unwrap();
    assert!(
        rig.listener.messages().is_empty(),
        "nothing before Monday 11:00 Berlin"
    );

    rig.set_clock(breach());
    let report = escalator.tick().await.unwrap();
    assert_eq!((report.queued, report.sent), (1, 1));
    for _ in 0..5 {
        rig.clock.advance(Duration::minutes(30));
        escalator.tick().await.unwrap();
    }

    let deliveries = rig.listener.deliveries();
    assert_eq!(deliveries.len(), 1, "exactly one breach mail");
    assert_eq!(deliveries[0].recipients, vec![LEAD.to_string()]);
    let mail = &rig.parsed()[0];
    let subject = mail.subject().unwrap();
    assert!(
        subject.starts_with(&format!("[postroom {conv}] first response overdue")),
        "{subject}"
    );
    assert_eq!(header(mail, "Auto-Submitted"), Some("auto-generated"));
    assert_eq!(header(mail, "X-Auto-Response-Suppress"), Some("All"));
    assert_eq!(
        mail.date().map(|d| d.to_timestamp()),
        Some(breach().timestamp())
    );
    let text = mail.body_text(0).unwrap();
    assert!(
        text.contains("Mailbox: support") && text.contains("Owner: Bob Martin (bob)"),
        "{text}"
    );
    assert!(text.contains("Business time used: 4h 00m"), "{text}");
    assert!(text.contains("Mon 2025-03-10 11:00 CET"), "{text}");
}

#[tokio::test]
async fn warning_at_75_percent_goes_to_the_owner_once_then_the_breach_to_the_lead() {
    let rig = Rig::new();
    let (store, escalator) = rig.open();
    conversation(
        &store,
        "Invoice question",
        "carl@customer.test",
        Some("alice"),
        Some("warned"),
    );
    let warn = utc("2025-03-10T09:00:00Z");

    rig.set_clock(warn - Duration::seconds(1));
    escalator.tick().await.unwrap();
    assert!(rig.listener.messages().is_empty());
    rig.set_clock(warn);
    escalator.tick().await.unwrap();
    rig.clock.advance(Duration::minutes(30));
    escalator.tick().await.unwrap();
    let deliveries = rig.listener.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].recipients, vec![ALICE.to_string()]);
    assert!(rig.parsed()[0]
        .subject()
        .unwrap()
        .contains("first response due soon"));

    rig.set_clock(breach());
    escalator.tick().await.unwrap();
    escalator.tick().await.unwrap();
    let deliveries = rig.listener.deliveries();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[1].recipients, vec![LEAD.to_string()]);
}

#[tokio::test]
async fn a_response_before_the_deadline_stops_every_mail() {
    let rig = Rig::new();
    let (store, escalator) = rig.open();
    let conv = conversation(
        &store,
        "Quick one",
        "dora@customer.test",
        Some("alice"),
        Some("warned"),
    );
    let event = Event {
        at: utc("2025-03-10T08:30:00Z"),
        kind: EventKind::Responded,
        mailbox: "support".into(),
        conversation: None,
        identity: None,
        agent: None,
        detail: "reply in Sent Items".into(),
    };
    store
        .record_response(&conv, utc("2025-03-10T08:30:00Z"), event)
        .unwrap();
    for hour in 0..48 {
        rig.set_clock(utc("2025-03-10T08:00:00Z") + Duration::hours(hour));
        escalator.tick().await.unwrap();
    }
    assert!(rig.listener.messages().is_empty());
}

#[tokio::test]
async fn a_restart_sends_nothing_twice() {
    let rig = Rig::new();
    {
        let (store, escalator) = rig.open();
        conversation(
            &store,
            "Sent before the restart",
            "e@customer.test",
            None,
            None,
        );
        conversation(
            &store,
            "Also sent before the restart",
            "f@customer.test",
            None,
            None,
        );
        rig.set_clock(breach());
        escalator.tick().await.unwrap();
    }
    assert_eq!(rig.listener.messages().len(), 2);

    let (store, escalator) = rig.open();
    rig.clock.advance(Duration::minutes(1));
    let report = escalator.tick().await.unwrap();
    assert_eq!((report.queued, report.sent), (0, 0));
    drop((store, escalator));

    // A crash between enqueue and send: the mail is sent after the restart, once, as stored.
    let (store, escalator) = rig.open();
    let conv = conversation(&store, "Crash in between", "g@customer.test", None, None);
    assert_eq!(escalator.enqueue_due().unwrap(), 1);
    let stored = store
        .mail(&format!("{conv}/first/escalation-0"))
        .unwrap()
        .unwrap();
    drop((store, escalator));
    let (store, escalator) = rig.open();
    escalator.tick().await.unwrap();
    escalator.tick().await.unwrap();
    let messages = rig.parsed();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[2].message_id(), Some(stored.message_id.as_str()));
    let states: Vec<OutboxState> = store
        .outbox()
        .unwrap()
        .into_iter()
        .map(|m| m.state)
        .collect();
    assert_eq!(states, vec![OutboxState::Sent; 3]);
}

#[tokio::test]
async fn an_smtp_outage_is_retried_with_back_off_and_delivered_once() {
    let rig = Rig::new();
    let (store, escalator) = rig.open();
    let conv = conversation(&store, "During the outage", "h@customer.test", None, None);
    let key = format!("{conv}/first/escalation-0");
    rig.set_clock(breach());

    for (code, attempts) in [("421", 1), ("450", 2), ("drop", 3)] {
        rig.listener.refuse(code);
        let report = escalator.tick().await.unwrap();
        assert_eq!(report.retrying, 1, "{code}");
        // Before the back-off has passed nothing is tried.
        escalator.tick().await.unwrap();
        let mail = store.mail(&key).unwrap().unwrap();
        assert_eq!(
            (mail.state, mail.attempts),
            (OutboxState::Pending, attempts),
            "{code}"
        );
        assert_eq!(
            mail.next_attempt,
            rig.clock.now() + postroom::escalate::backoff(attempts)
        );
        rig.set_clock(mail.next_attempt);
    }
    assert!(rig.listener.messages().is_empty());

    rig.listener.accept();
    let report = escalator.tick().await.unwrap();
    assert_eq!(report.sent, 1);
    rig.clock.advance(Duration::hours(2));
    escalator.tick().await.unwrap();
    let messages = rig.parsed();
    assert_eq!(messages.len(), 1, "delivered exactly once");
    let mail = store.mail(&key).unwrap().unwrap();
    assert_eq!(mail.state, OutboxState::Sent);
    assert_eq!(
        messages[0].message_id(),
        Some(mail.message_id.as_str()),
        "same Message-ID"
    );
}

#[tokio::test]
async fn a_permanent_refusal_marks_the_mail_failed_and_is_not_retried() {
    let rig = Rig::new();
    let (store, escalator) = rig.open();
    let conv = conversation(&store, "Too big", "i@customer.test", None, None);
    rig.set_clock(breach());
    rig.listener.refuse("550");
    let report = escalator.tick().await.unwrap();
    assert_eq!(report.failed, 1);
    rig.listener.accept();
    for _ in 0..10 {
        rig.clock.advance(Duration::hours(1));
        escalator.tick().await.unwrap();
    }
    assert!(rig.listener.messages().is_empty());
    let mail = store
        .mail(&format!("{conv}/first/escalation-0"))
        .unwrap()
        .unwrap();
    match mail.state {
        OutboxState::Failed { reason } => assert!(reason.contains("550"), "{reason}"),
        other => panic!("expected failed, got {other:?}"),
    }
    assert_eq!(mail.attempts, 1);
}

#[tokio::test]
async fn injected_subject_and_name_arrive_inert() {
    let rig = Rig::new();
    let (store, escalator) = rig.open();
    // BUG-30: what the field case's encoded subject and display name decode to, stored raw.
    let subject =
        "Printer down\r\nBcc: attacker@evil.example.test\r\nX-Priority: 1\r\n\r\n<b>fake body</b>";
    let from = "Eve <script>alert(1)</script> \"Admin\" <eve@customer-n.example.test>";
    conversation(&store, subject, from, None, None);
    rig.set_clock(breach());
    escalator.tick().await.unwrap();

    let deliveries = rig.listener.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].recipients, vec![LEAD.to_string()]);
    let raw = String::from_utf8_lossy(&deliveries[0].data).into_owned();
    let head = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    let names: Vec<&str> = head
        .split("\r\n")
        .filter(|line| !line.starts_with([' ', '\t']))
        .filter_map(|line| line.split(':').next())
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "subject").count(),
        1,
        "{head}"
    );
    assert!(
        !names.contains(&"bcc") && !names.contains(&"x-priority"),
        "{head}"
    );
    let mail = &rig.parsed()[0];
    assert!(mail
        .subject()
        .unwrap()
        .ends_with("Printer down Bcc: attacker@evil.example.test X-Priority: 1 <b>fake body</b>"));
    let html = mail.body_html(0).unwrap();
    assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &quot;Admin&quot;"),
        "{html}"
    );
    let text = mail.body_text(0).unwrap();
    assert!(
        text.contains(from) && text.contains("<b>fake body</b>"),
        "{text}"
    );
}

#[tokio::test]
async fn a_french_subject_from_the_field_case_decodes_exactly() {
    let rig = Rig::new();
    let (store, escalator) = rig.open();
    let raw = std::fs::read("/work/shared/cases/inputs/BUG-30b.eml").expect("field case BUG-30b");
    let envelope = postroom::message::parse(&raw, None).unwrap();
    let original = "Livraison retardée. Arrivée prévue : 5 août, 11h48";
    assert_eq!(envelope.subject, original);
    let conv = conversation(
        &store,
        &envelope.subject,
        "rene.girard@customer-o.example.test",
        None,
        None,
    );
    rig.set_clock(breach());
    escalator.tick().await.unwrap();
    let mail = &rig.parsed()[0];
    let expected = format!("[postroom {conv}] first response overdue: {original}");
    assert_eq!(mail.subject(), Some(expected.as_str()));
    let data = String::from_utf8(rig.listener.messages()[0].clone()).unwrap();
    for word in data.split_whitespace().filter(|w| w.starts_with("=?")) {
        assert!(word.len() <= 75, "{word}");
    }
    assert!(postroom::notify::is_own_mail(
        &postroom::message::parse(data.as_bytes(), None).unwrap()
    ));
}

#[tokio::test]
async fn reminders_follow_the_latest_level_and_stop_at_the_response() {
    let rig = Rig::new();
    let (store, escalator) = rig.open();
    let conv = conversation(
        &store,
        "Still broken",
        "k@customer.test",
        Some("alice"),
        Some("reminded"),
    );
    // Half-hour ticks from Friday 15:00 to Thursday 10:00, when the team answers.
    let answered = utc("2025-03-13T09:00:00Z");
    while rig.clock.now() < answered {
        rig.clock.advance(Duration::minutes(30));
        escalator.tick().await.unwrap();
    }
    let event = Event {
        at: answered,
        kind: EventKind::Responded,
        mailbox: "support".into(),
        conversation: None,
        identity: None,
        agent: None,
        detail: "reply in Sent Items".into(),
    };
    store.record_response(&conv, answered, event).unwrap();
    for _ in 0..48 {
        rig.clock.advance(Duration::minutes(30));
        escalator.tick().await.unwrap();
    }

    let got: Vec<(i64, String, Vec<String>)> = rig
        .parsed()
        .iter()
        .zip(rig.listener.deliveries())
        .map(|(m, d)| {
            let what = m.subject().unwrap().split(": ").next().unwrap().to_string();
            (m.date().unwrap().to_timestamp(), what, d.recipients)
        })
        .collect();
    let lead = vec![LEAD.to_string()];
    let level_two = vec![ALICE.to_string(), BOSS.to_string()];
    let token = format!("[postroom {conv}]");
    let expected = [
        ("2025-03-10T10:00:00Z", "first response overdue", &lead),
        ("2025-03-11T08:00:00Z", "reminder", &lead),
        (
            "2025-03-11T10:00:00Z",
            "first response overdue (level 2)",
            &level_two,
        ),
        ("2025-03-12T08:00:00Z", "reminder", &level_two),
        ("2025-03-13T08:00:00Z", "reminder", &level_two),
    ];
    let expected: Vec<(i64, String, Vec<String>)> = expected
        .iter()
        .map(|(at, what, to)| {
            (
                utc(at).timestamp(),
                format!("{token} {what}"),
                (*to).clone(),
            )
        })
        .collect();
    assert_eq!(got, expected);
}

/// Collects everything a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        out.push_str(&"=".repeat(3 - chunk.len()));
    }
    out
}

/// Installs a process-wide TRACE subscriber writing into a buffer, once. A thread-local one
/// (`set_default`) is not enough: tests running in parallel threads without it make tracing
/// cache "nobody listens" for the shared call sites, and lines would go missing.
fn captured_logs() -> Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
            captured
        })
        .clone()
}

#[tokio::test]
async fn the_smtp_password_never_reaches_a_log_even_at_trace() {
    let captured = captured_logs();

    // A wrong password first (the error path), then the right one.
    let listener = SmtpListener::start_with_login("svc-postroom", "something-else").unwrap();
    let rig = Rig::with_login(listener, "svc-postroom");
    let (store, escalator) = rig.open();
    let conv = conversation(&store, "Secret test", "j@customer.test", None, None);
    rig.set_clock(breach());
    escalator.tick().await.unwrap();
    assert!(rig.listener.messages().is_empty());
    let mail = store
        .mail(&format!("{conv}/first/escalation-0"))
        .unwrap()
        .unwrap();
    assert_eq!(
        mail.state,
        OutboxState::Pending,
        "a refused login is retried, not failed"
    );
    drop((store, escalator));

    let listener = SmtpListener::start_with_login("svc-postroom", PASSWORD).unwrap();
    let rig = Rig::with_login(listener, "svc-postroom");
    let (store, escalator) = rig.open();
    conversation(&store, "Secret test", "j@customer.test", None, None);
    rig.set_clock(breach());
    escalator.tick().await.unwrap();
    assert_eq!(rig.listener.messages().len(), 1, "AUTH worked");

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("refused our login") && logs.contains("escalated"),
        "{logs}"
    );
    let forms = [
        PASSWORD.to_string(),
        base64(PASSWORD.as_bytes()),
        base64(format!("\0svc-postroom\0{PASSWORD}").as_bytes()),
    ];
    for form in forms {
        assert!(!logs.contains(&form), "{form} appears in the logs:\n{logs}");
    }
}
