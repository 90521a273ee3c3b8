//! `postroom report` against a hand-built history: every number below is worked out by hand in
//! the comments, from the timeline at the top of `history()`.

use chrono::{DateTime, NaiveDate, Utc};
use postroom::config::Config;
use postroom::report::render::{self, Format};
use postroom::report::{self, Clocks, Data, Options, Window};
use postroom::store::{
    Commit, Conversation, ConversationState, Event, EventKind, MessageRecord, MessageState, Store,
};

const CONFIG: &str = r#"
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
calendar = "office"

[[team]]
name = "support"
agents = ["alice", "bob"]

[[agent]]
id = "alice"
name = "Alice"

[[agent]]
id = "bob"
name = "Bob"

[[calendar]]
name = "office"
timezone = "UTC"
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]

[[sla]]
name = "standard"
first_response = "4h"
warn_at = "50%"
"#;

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("bad instant {text}: {e}"))
}

fn event(kind: EventKind, at: &str, agent: Option<&str>) -> Event {
    Event {
        at: t(at),
        kind,
        mailbox: "support".into(),
        conversation: None,
        identity: None,
        agent: agent.map(str::to_string),
        detail: format!("{kind:?}"),
    }
}

/// Records one arriving message; returns its conversation id.
fn arrive(
    store: &Store,
    conv: Option<&str>,
    at: &str,
    owner: Option<&str>,
    from: Option<&str>,
    sla: Option<&str>,
) -> String {
    let kind = match (conv, owner) {
        (Some(_), _) => EventKind::FollowUp,
        (None, Some(_)) => EventKind::Assigned,
        (None, None) => EventKind::Left,
    };
    let identity = format!("id-{at}");
    let message = MessageRecord {
        identity: identity.clone(),
        mailbox: "support".into(),
        message_id: None,
        conversation: conv.unwrap_or_default().to_string(),
        owner: owner.map(str::to_string),
        state: MessageState::Left,
        arrived: Some(t(at)),
        decided_at: t(at),
        subject: format!("subject {at}"),
        from: from.map(str::to_string),
    };
    let commit = Commit {
        message,
        new_conversation: conv.is_none(),
        thread_ids: Vec::new(),
        referenced: Vec::new(),
        rotation: None,
        sla: sla.map(str::to_string),
        work: true,
        tags: Vec::new(),
        rules: Vec::new(),
        event: event(kind, at, owner),
    };
    store
        .commit(&commit)
        .unwrap_or_else(|e| panic!("commit {at}: {e:#}"))
}

fn respond(store: &Store, conv: &str, at: &str) {
    let e = event(EventKind::Responded, at, None);
    store
        .record_response(conv, t(at), e)
        .unwrap_or_else(|e| panic!("respond: {e:#}"));
}

fn close(store: &Store, conv: &str, at: &str, agent: &str) {
    let e = event(EventKind::Closed, at, Some(agent));
    store
        .close(conv, t(at), e)
        .unwrap_or_else(|e| panic!("close: {e:#}"));
}

/// The week of Monday 2025-03-03 in an office open 09:00-17:00 UTC on weekdays, seen on
/// Friday 2025-03-07 at 12:00. Policy "standard": first response within 4 business hours,
/// warning at 50% (2h).
///
/// | conv | arrives       | owner | from            | first response | closed     |
/// | c1   | Mon 09:00     | alice | a@example.com   | Mon 09:30      | Mon 12:00 (and again 12:05) |
/// | c2   | Mon 16:00     | bob   | b@Example.COM   | Tue 10:00      |            |
/// | c3   | Tue 09:00     | alice | c@other.org     | Tue 15:00, follow-up Tue 16:00 |  |
/// | c4   | Wed 10:00     | bob   | d@example.com   | Wed 11:00      | Thu 09:00  |
/// | c5   | Thu 08:00     | alice | e@other.org     | Thu 10:00      |            |
/// | c6   | Fri 09:00     | -     | f@example.com   |                |            |
/// | c7   | Thu 13:00     | bob   | (none)          |                |            |
/// | c8   | Sun 03-02 10:00 | alice | g@old.net (no SLA, before the window) |  |   |
fn history(store: &Store) {
    let std = Some("standard");
    let c1 = arrive(
        store,
        None,
        "2025-03-03T09:00:00Z",
        Some("alice"),
        Some("a@example.com"),
        std,
    );
    respond(store, &c1, "2025-03-03T09:30:00Z");
    close(store, &c1, "2025-03-03T12:00:00Z", "alice");
    close(store, &c1, "2025-03-03T12:05:00Z", "alice");
    let c2 = arrive(
        store,
        None,
        "2025-03-03T16:00:00Z",
        Some("bob"),
        Some("b@Example.COM"),
        std,
    );
    respond(store, &c2, "2025-03-04T10:00:00Z");
    let c3 = arrive(
        store,
        None,
        "2025-03-04T09:00:00Z",
        Some("alice"),
        Some("c@other.org"),
        std,
    );
    respond(store, &c3, "2025-03-04T15:00:00Z");
    arrive(
        store,
        Some(&c3),
        "2025-03-04T16:00:00Z",
        Some("alice"),
        Some("c@other.org"),
        None,
    );
    let c4 = arrive(
        store,
        None,
        "2025-03-05T10:00:00Z",
        Some("bob"),
        Some("d@example.com"),
        std,
    );
    respond(store, &c4, "2025-03-05T11:00:00Z");
    close(store, &c4, "2025-03-06T09:00:00Z", "bob");
    let c5 = arrive(
        store,
        None,
        "2025-03-06T08:00:00Z",
        Some("alice"),
        Some("e@other.org"),
        std,
    );
    respond(store, &c5, "2025-03-06T10:00:00Z");
    arrive(
        store,
        None,
        "2025-03-07T09:00:00Z",
        None,
        Some("f@example.com"),
        std,
    );
    arrive(store, None, "2025-03-06T13:00:00Z", Some("bob"), None, std);
    arrive(
        store,
        None,
        "2025-03-02T10:00:00Z",
        Some("alice"),
        Some("g@old.net"),
        None,
    );
}

fn week_report(recompute: bool) -> report::Report {
    report_over(history, CONFIG, recompute)
}

/// The report over the week of Monday 2025-03-03, seen on Friday at 12:00, of a store that
/// `fill` wrote, under `config`.
fn report_over(fill: fn(&Store), config: &str, recompute: bool) -> report::Report {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("open: {e:#}"));
    fill(&store);
    let config = Config::parse(config).unwrap_or_else(|p| panic!("config: {p:?}"));
    let d = |s: &str| s.parse::<NaiveDate>().unwrap_or_else(|e| panic!("{e}"));
    let window =
        Window::dates_between(d("2025-03-03"), d("2025-03-07")).unwrap_or_else(|e| panic!("{e:#}"));
    let options = Options {
        mailbox: Some("support".into()),
        window,
        recompute,
    };
    report::compute(&config, &store, &options, t("2025-03-07T12:00:00Z"))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn volume_counts_each_day_and_hour_and_closes_once() {
    let r = week_report(false);
    let days: Vec<(String, u64, u64, u64)> = r
        .volume
        .days
        .iter()
        .map(|d| {
            (
                d.date.to_string(),
                d.counts.received,
                d.counts.assigned,
                d.counts.closed,
            )
        })
        .collect();
    // Mon: c1, c2 arrive, c1 closed (twice, counted once). Tue: c3 and its follow-up.
    // Wed: c4. Thu: c5, c7 arrive, c4 closed. Fri: c6 left unassigned. c8 is before the window.
    let want = [
        ("2025-03-03", 2, 2, 1),
        ("2025-03-04", 2, 1, 0),
        ("2025-03-05", 1, 1, 0),
        ("2025-03-06", 2, 2, 1),
        ("2025-03-07", 1, 0, 0),
    ];
    let want: Vec<(String, u64, u64, u64)> = want
        .iter()
        .map(|w| (w.0.to_string(), w.1, w.2, w.3))
        .collect();
    assert_eq!(days, want);
    assert_eq!(
        (
            r.volume.total.received,
            r.volume.total.assigned,
            r.volume.total.closed
        ),
        (8, 6, 2)
    );
    // 09:00: c1, c3, c6 received (c1, c3 assigned), c4 closed.
    let nine = &r.volume.hours[9].counts;
    assert_eq!((nine.received, nine.assigned, nine.closed), (3, 2, 1));
}

#[test]
fn first_response_percentiles_match_the_hand_computation() {
    let r = week_report(false);
    let fr = &r.first_response;
    // Elapsed: c1 30m=1800, c2 Mon16->Tue10 18h=64800, c3 6h=21600, c4 1h=3600, c5 2h=7200.
    // Sorted [1800, 3600, 7200, 21600, 64800], n=5: median rank ceil(2.5)=3 -> 7200,
    // p90 rank ceil(4.5)=5 -> 64800, p99 rank ceil(4.95)=5 -> 64800.
    assert_eq!(fr.elapsed.count, 5);
    assert_eq!(
        (
            fr.elapsed.median_secs,
            fr.elapsed.p90_secs,
            fr.elapsed.p99_secs
        ),
        (Some(7200), Some(64800), Some(64800))
    );
    // Business: c1 1800; c2 Mon 16-17 + Tue 9-10 = 7200; c3 21600; c4 3600;
    // c5 arrived before opening, 9-10 = 3600. Sorted [1800, 3600, 3600, 7200, 21600].
    assert_eq!(
        (
            fr.business.median_secs,
            fr.business.p90_secs,
            fr.business.p99_secs
        ),
        (Some(3600), Some(21600), Some(21600))
    );
    let counts: Vec<u64> = fr.elapsed.histogram.iter().map(|b| b.count).collect();
    // <=15m 0, <=30m c1, <=1h c4, <=2h c5, <=4h 0, <=8h c3, <=1d c2, <=2d 0, >2d 0.
    assert_eq!(counts, [0, 1, 1, 1, 0, 1, 1, 0, 0]);
    assert_eq!(fr.unanswered, 2, "c6 and c7; c8 started before the window");
}

#[test]
fn sla_outcomes_match_the_hand_computation() {
    let r = week_report(false);
    assert_eq!(r.sla.len(), 1, "{:?}", r.sla);
    let row = &r.sla[0];
    assert_eq!(
        (
            row.mailbox.as_str(),
            row.policy.as_str(),
            row.target.as_str()
        ),
        ("support", "standard", "first_response")
    );
    // Deadlines: c1 Mon 13:00 (answered 09:30, met); c2 Tue 12:00 (10:00, met);
    // c3 Tue 13:00 (15:00, breached); c4 Wed 14:00 (11:00, met); c5 Thu 13:00 (10:00, met);
    // c7 Thu 17:00, unanswered at Fri 12:00: breached; c6 Fri 13:00 with the warning at
    // 11:00, unanswered at 12:00: at risk. Compliance 4 / (4 + 2) = 66.7%.
    assert_eq!(
        (
            row.met,
            row.breached,
            row.at_risk,
            row.running,
            row.unevaluated
        ),
        (4, 2, 1, 0, 0)
    );
    assert_eq!(row.compliance_percent, Some(66.7));
}

#[test]
fn agents_backlog_and_domains_match_the_hand_computation() {
    let r = week_report(false);
    let agents: Vec<_> = r
        .agents
        .iter()
        .map(|a| {
            (
                a.agent.as_str(),
                a.assigned,
                a.open,
                a.closed,
                a.median_first_response_secs,
                a.median_first_response_business_secs,
            )
        })
        .collect();
    // alice: assigned c1 c3 c5 (c8 is before the window); owns open c3 c5 c8; closed c1;
    // elapsed [1800, 7200, 21600] -> 7200; business [1800, 3600, 21600] -> 3600.
    // bob: assigned c2 c4 c7; open c2 c7; closed c4; elapsed [3600, 64800] -> rank 1 -> 3600;
    // business [3600, 7200] -> 3600.
    assert_eq!(
        agents,
        [
            ("alice", 3, 3, 1, Some(7200), Some(3600)),
            ("bob", 3, 2, 1, Some(3600), Some(3600))
        ]
    );
    let b = &r.backlog;
    // Open: c2 c3 c5 c6 c7 c8. Waiting: c3 (follow-up), c6, c7, c8. Unassigned: c6.
    assert_eq!((b.open, b.waiting, b.unassigned), (6, 4, 1));
    // Ages at Fri 12:00: c6 3h, c7 23h, c5 28h, c3 75h, c2 92h, c8 122h.
    let ages: Vec<u64> = b.age.iter().map(|x| x.count).collect();
    assert_eq!(ages, [0, 1, 1, 1, 3, 0]);
    let oldest = b
        .oldest_waiting
        .as_ref()
        .map(|o| (o.subject.as_str(), o.age_secs));
    assert_eq!(
        oldest,
        Some(("subject 2025-03-02T10:00:00Z", 439_200)),
        "c8, 5d2h"
    );
    let domains: Vec<_> = r
        .breakdowns
        .sender_domain
        .iter()
        .map(|d| {
            (
                d.key.as_str(),
                d.conversations,
                d.open,
                d.answered,
                d.median_first_response_secs,
            )
        })
        .collect();
    // example.com: c1 c2 c4 c6, open c2 c6, answered [1800, 64800, 3600] -> 3600.
    // other.org: c3 c5, both open, [21600, 7200] -> 7200. (none): c7.
    assert_eq!(
        domains,
        [
            ("example.com", 4, 2, 3, Some(3600)),
            ("other.org", 2, 2, 2, Some(7200)),
            ("(none)", 1, 1, 0, None)
        ]
    );
    assert!(r.breakdowns.tag.is_empty() && r.breakdowns.rule.is_empty());
}

#[test]
fn recompute_from_the_log_agrees_with_the_snapshot() {
    let (snapshot, recomputed) = (week_report(false), week_report(true));
    assert!(recomputed.recomputed);
    assert_eq!(snapshot.first_response, recomputed.first_response);
    assert_eq!(snapshot.sla, recomputed.sla);
    assert_eq!(snapshot.backlog, recomputed.backlog);
}

/// One conversation, built by hand, so the whole output can be pinned.
fn tiny() -> report::Report {
    let config = Config::parse(CONFIG).unwrap_or_else(|p| panic!("config: {p:?}"));
    let clocks = Clocks::from_config(&config).unwrap_or_else(|e| panic!("{e:#}"));
    let conv = Conversation {
        id: "c1".into(),
        mailbox: "support".into(),
        owner: Some("alice".into()),
        state: ConversationState::Open,
        started: t("2025-03-03T09:00:00Z"),
        last_message: t("2025-03-03T09:00:00Z"),
        messages: 1,
        subject: "Invoice, \"urgent\"".into(),
        from: Some("a@example.com".into()),
        closed_at: None,
        first_response_at: None,
        first_response_by: None,
        last_response_at: None,
        waiting_since: Some(t("2025-03-03T09:00:00Z")),
        sla: Some("standard".into()),
        tags: Vec::new(),
        rules: Vec::new(),
        merged_into: None,
        answered_waits: Vec::new(),
    };
    // c2 from bob's side: arrived 09:15, answered 09:45 (1800s elapsed and business), met.
    let answered = Conversation {
        id: "c2".into(),
        owner: Some("bob".into()),
        started: t("2025-03-03T09:15:00Z"),
        last_message: t("2025-03-03T09:15:00Z"),
        subject: "Hello".into(),
        from: Some("x@b.example".into()),
        first_response_at: Some(t("2025-03-03T09:45:00Z")),
        last_response_at: Some(t("2025-03-03T09:45:00Z")),
        waiting_since: None,
        ..conv.clone()
    };
    let mut events = Vec::new();
    for (id, at, agent) in [
        ("c1", "2025-03-03T09:00:00Z", "alice"),
        ("c2", "2025-03-03T09:15:00Z", "bob"),
    ] {
        let mut assigned = event(EventKind::Assigned, at, Some(agent));
        assigned.conversation = Some(id.into());
        events.push(assigned);
    }
    let data = Data {
        conversations: vec![conv, answered],
        events,
    };
    let window = Window {
        from: t("2025-03-03T00:00:00Z"),
        to: t("2025-03-04T00:00:00Z"),
    };
    let options = Options {
        mailbox: Some("support".into()),
        window,
        recompute: false,
    };
    report::build(&config, &clocks, &data, &options, t("2025-03-03T12:00:00Z"))
}

#[test]
fn json_format_is_stable() {
    let json = render::render(&tiny(), Format::Json).unwrap_or_else(|e| panic!("{e:#}"));
    let want = include_str!("report/tiny.json");
    assert_eq!(
        json, want,
        "docs/report-format.md describes this shape; bump `format` to change it"
    );
}

#[test]
fn csv_format_is_stable() {
    let csv = render::render(&tiny(), Format::Csv).unwrap_or_else(|e| panic!("{e:#}"));
    let want = include_str!("report/tiny.csv");
    assert_eq!(csv, want, "docs/report-format.md describes this shape");
}

#[test]
fn csv_quotes_mail_derived_keys() {
    assert_eq!(render::csv_field("a,b"), "\"a,b\"");
    assert_eq!(render::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(render::csv_field("plain.example"), "plain.example");
}

#[test]
fn table_strips_terminal_escapes_from_subjects() {
    let mut r = tiny();
    if let Some(o) = r.backlog.oldest_waiting.as_mut() {
        o.subject = "\u{1b}[2J\u{1b}]0;owned\u{7}hello".into();
    }
    let text = render::render(&r, Format::Table).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text}"
    );
    assert!(text.contains("hello"));
}

/// A new conversation carrying the tags and rule names its first message's rules gave it.
fn arrive_tagged(store: &Store, at: &str, tags: &[&str], rules: &[&str]) -> String {
    let message = MessageRecord {
        identity: format!("tagged-{at}"),
        mailbox: "support".into(),
        message_id: None,
        conversation: String::new(),
        owner: Some("alice".into()),
        state: MessageState::Left,
        arrived: Some(t(at)),
        decided_at: t(at),
        subject: "tagged".into(),
        from: Some("a@vip.example.test".into()),
    };
    let commit = Commit {
        message,
        new_conversation: true,
        thread_ids: Vec::new(),
        referenced: Vec::new(),
        rotation: None,
        sla: None,
        work: true,
        tags: tags.iter().map(|s| s.to_string()).collect(),
        rules: rules.iter().map(|s| s.to_string()).collect(),
        event: event(EventKind::Assigned, at, Some("alice")),
    };
    store
        .commit(&commit)
        .unwrap_or_else(|e| panic!("commit {at}: {e:#}"))
}

#[test]
fn tags_and_rules_break_the_conversations_down() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("open: {e:#}"));
    let first = arrive_tagged(&store, "2025-03-04T09:00:00Z", &["vip"], &["vip customers"]);
    arrive_tagged(
        &store,
        "2025-03-04T10:00:00Z",
        &["vip", "billing"],
        &["vip customers", "billing"],
    );
    arrive_tagged(&store, "2025-03-04T11:00:00Z", &[], &[]);
    respond(&store, &first, "2025-03-04T09:30:00Z");
    let config = Config::parse(CONFIG).unwrap_or_else(|p| panic!("config: {p:?}"));
    let d = |s: &str| s.parse::<NaiveDate>().unwrap_or_else(|e| panic!("{e}"));
    let window =
        Window::dates_between(d("2025-03-03"), d("2025-03-07")).unwrap_or_else(|e| panic!("{e:#}"));
    let options = Options {
        mailbox: Some("support".into()),
        window,
        recompute: false,
    };
    let r = report::compute(&config, &store, &options, t("2025-03-07T12:00:00Z"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let rows = |rows: &[report::BreakdownRow]| -> Vec<(String, u64, u64)> {
        rows.iter()
            .map(|r| (r.key.clone(), r.conversations, r.answered))
            .collect()
    };
    assert_eq!(
        rows(&r.breakdowns.tag),
        [("vip".into(), 2, 1), ("billing".into(), 1, 0)]
    );
    assert_eq!(
        rows(&r.breakdowns.rule),
        [("vip customers".into(), 2, 1), ("billing".into(), 1, 0)]
    );
    let table = render::render(&r, Format::Table).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(table.contains("tags:") && table.contains("vip"), "{table}");
}

/// The same office and policy with a next-response target of one business hour, seen on
/// Friday 2025-03-07 at 12:00 (warning at 50%, 30 minutes).
///
/// | conv | first message, response | follow-ups and answers                               | next-response outcome |
/// | d1   | Mon 09:00, 09:30        | Mon 10:00 → 10:45                                    | met (due 11:00)       |
/// |      |                         | Mon 16:30 → Tue 09:45 (30 + 45 business minutes)     | breached (due Tue 09:30) |
/// |      |                         | Tue 11:00 and 11:10 → 11:50 (the wait starts 11:00)  | met (due 12:00)       |
/// | d2   | Thu 09:00, 09:10        | Fri 11:15, unanswered (45 of 60 minutes)             | at risk               |
/// | d3   | Thu 10:00, 10:05        | Fri 10:30, unanswered (due 11:30)                    | breached              |
/// | d4   | Wed 09:00, 09:05        | Wed 10:00, then closed 10:30 without an answer       | none: nothing waits   |
/// | d5   | Wed 13:00, 14:00        | Wed 13:30, before the first response                 | none: the first response's clock |
fn next_response_history(store: &Store) {
    let policy = Some("standard");
    let new = |at: &str| {
        arrive(
            store,
            None,
            at,
            Some("alice"),
            Some("x@example.com"),
            policy,
        )
    };
    let follow = |conv: &str, at: &str| {
        arrive(
            store,
            Some(conv),
            at,
            Some("alice"),
            Some("x@example.com"),
            None,
        );
    };
    let d1 = new("2025-03-03T09:00:00Z");
    respond(store, &d1, "2025-03-03T09:30:00Z");
    follow(&d1, "2025-03-03T10:00:00Z");
    respond(store, &d1, "2025-03-03T10:45:00Z");
    follow(&d1, "2025-03-03T16:30:00Z");
    respond(store, &d1, "2025-03-04T09:45:00Z");
    follow(&d1, "2025-03-04T11:00:00Z");
    follow(&d1, "2025-03-04T11:10:00Z");
    respond(store, &d1, "2025-03-04T11:50:00Z");
    let d2 = new("2025-03-06T09:00:00Z");
    respond(store, &d2, "2025-03-06T09:10:00Z");
    follow(&d2, "2025-03-07T11:15:00Z");
    let d3 = new("2025-03-06T10:00:00Z");
    respond(store, &d3, "2025-03-06T10:05:00Z");
    follow(&d3, "2025-03-07T10:30:00Z");
    let d4 = new("2025-03-05T09:00:00Z");
    respond(store, &d4, "2025-03-05T09:05:00Z");
    follow(&d4, "2025-03-05T10:00:00Z");
    close(store, &d4, "2025-03-05T10:30:00Z", "alice");
    let d5 = new("2025-03-05T13:00:00Z");
    follow(&d5, "2025-03-05T13:30:00Z");
    respond(store, &d5, "2025-03-05T14:00:00Z");
}

fn next_response_report(recompute: bool) -> report::Report {
    let config = CONFIG.replace(
        "warn_at = \"50%\"",
        "warn_at = \"50%\"\nnext_response = \"1h\"",
    );
    report_over(next_response_history, &config, recompute)
}

#[test]
fn next_response_outcomes_match_the_hand_computation() {
    for recompute in [false, true] {
        let r = next_response_report(recompute);
        let rows: Vec<_> = r
            .sla
            .iter()
            .filter(|row| row.target == "next_response")
            .collect();
        assert_eq!(rows.len(), 1, "recompute {recompute}: {:?}", r.sla);
        let row = rows[0];
        assert_eq!(
            (
                row.met,
                row.breached,
                row.at_risk,
                row.running,
                row.unevaluated
            ),
            (2, 2, 1, 0, 0),
            "recompute {recompute}"
        );
        assert_eq!(row.compliance_percent, Some(50.0));
        // The first-response clock is still counted once per conversation: all five met.
        let first = r.sla.iter().find(|row| row.target == "first_response");
        assert_eq!(first.map(|row| (row.met, row.breached)), Some((5, 0)));
    }
}
