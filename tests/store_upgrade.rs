//! The store's layout 2 (events keyed by time, filed messages indexed): a store written in the
//! layout before opens with all its history, an upgrade cut short by a crash finishes on the
//! next open without duplicates, the filed index follows every state change, and a report
//! that reads only its window gives the numbers of one that reads the whole log.

use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use postroom::config::Config;
use postroom::report::{self, Data, Options, Window};
use postroom::store::{
    Commit, Conversation, ConversationState, Event, EventKind, MessageRecord, MessageState, Store,
};

fn t(text: &str) -> DateTime<Utc> {
    text.parse()
        .unwrap_or_else(|e| panic!("bad instant {text}: {e}"))
}

fn event(kind: EventKind, at: DateTime<Utc>, conversation: Option<&str>) -> Event {
    Event {
        at,
        kind,
        mailbox: "support".into(),
        conversation: conversation.map(str::to_string),
        identity: None,
        agent: Some("alice".into()),
        detail: format!("{kind:?} at {at}"),
    }
}

fn record(identity: &str, state: MessageState) -> MessageRecord {
    MessageRecord {
        identity: identity.into(),
        mailbox: "support".into(),
        message_id: Some(format!("<{identity}@test>")),
        conversation: "c1".into(),
        owner: Some("alice".into()),
        state,
        arrived: Some(t("2025-03-03T09:00:00Z")),
        decided_at: t("2025-03-03T09:00:00Z"),
        subject: "s".into(),
        from: None,
    }
}

fn filed_in(folder: &str) -> MessageState {
    MessageState::Filed {
        folder: folder.into(),
    }
}

/// The old layout's events, written out of time order as the old code could (a response found
/// later in the sent folder carries the reply's earlier instant).
fn old_events() -> Vec<Event> {
    vec![
        event(EventKind::Assigned, t("2025-03-03T09:00:00Z"), Some("c1")),
        event(EventKind::Closed, t("2025-03-03T12:00:00Z"), Some("c1")),
        event(EventKind::Responded, t("2025-03-03T10:00:00Z"), Some("c1")),
        event(EventKind::Availability, t("2025-03-03T11:00:00Z"), None),
    ]
}

/// A conversation as the version before layout 2 wrote it (JSON).
fn old_conversation() -> Conversation {
    Conversation {
        id: "c1".into(),
        mailbox: "support".into(),
        owner: Some("alice".into()),
        state: ConversationState::Closed,
        started: t("2025-03-03T09:00:00.123456789Z"),
        last_message: t("2025-03-03T09:00:00Z"),
        messages: 1,
        subject: "s".into(),
        from: Some("a@example.com".into()),
        closed_at: Some(t("2025-03-03T12:00:00Z")),
        first_response_at: Some(t("2025-03-03T10:00:00Z")),
        last_response_at: Some(t("2025-03-03T10:00:00Z")),
        waiting_since: None,
        sla: None,
        tags: vec!["vip".into()],
        rules: Vec::new(),
        first_response_by: None,
        merged_into: None,
        answered_waits: Vec::new(),
    }
}

/// Writes a store as the version before layout 2 did: events under a bare sequence number in
/// the `events` tree, message records as JSON, no `meta` tree. Returns the events' keys.
fn write_old_store(dir: &Path) -> Vec<u64> {
    let db = sled::Config::new()
        .path(dir.join("db"))
        .open()
        .expect("sled");
    let mut ids = Vec::new();
    let events = db.open_tree("events").expect("tree");
    for e in old_events() {
        let id = db.generate_id().expect("id");
        let json = serde_json::to_vec(&e).expect("json");
        events.insert(id.to_be_bytes(), json).expect("insert");
        ids.push(id);
    }
    let conversations = db.open_tree("conversations").expect("tree");
    let json = serde_json::to_vec(&old_conversation()).expect("json");
    conversations.insert("c1", json).expect("insert");
    let messages = db.open_tree("messages").expect("tree");
    for (identity, state) in [
        ("m-filed", filed_in("Assigned/Alice")),
        ("m-gone", MessageState::Gone),
    ] {
        let json = serde_json::to_vec(&record(identity, state)).expect("json");
        messages
            .insert(format!("support\0{identity}"), json)
            .expect("insert");
    }
    db.flush().expect("flush");
    ids
}

/// Upgrades an old store, then puts the last `left` of the old events back in the old tree and
/// forgets the format: what a crash part-way through moving them leaves behind (all of them:
/// after the move was flushed but before the old tree was dropped).
fn write_half_upgraded_store(dir: &Path, left: usize) {
    let ids = write_old_store(dir);
    drop(Store::open(dir).expect("open"));
    let db = sled::Config::new()
        .path(dir.join("db"))
        .open()
        .expect("sled");
    db.drop_tree("meta").expect("drop meta");
    let events = db.open_tree("events").expect("tree");
    let skip = ids.len() - left;
    for (id, e) in ids.iter().zip(old_events()).skip(skip) {
        let json = serde_json::to_vec(&e).expect("json");
        events.insert(id.to_be_bytes(), json).expect("insert");
    }
    db.flush().expect("flush");
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn a_store_of_the_old_layout_opens_with_all_its_events_in_time_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_old_store(dir.path());
    let store = Store::open(dir.path()).expect("open");
    let all = store.events().expect("events");
    assert_eq!(
        kinds(&all),
        [
            EventKind::Assigned,
            EventKind::Responded,
            EventKind::Availability,
            EventKind::Closed
        ]
    );
    assert_eq!(all[0], old_events()[0], "events keep every field");
    let history = store.history("c1").expect("history");
    assert_eq!(
        kinds(&history),
        [EventKind::Assigned, EventKind::Responded, EventKind::Closed]
    );
    let filed: Vec<String> = store
        .filed("support")
        .expect("filed")
        .into_iter()
        .map(|r| r.identity)
        .collect();
    assert_eq!(filed, ["m-filed"], "the filed index is built on upgrade");
    assert_eq!(
        store.conversation("c1").expect("read"),
        Some(old_conversation())
    );
    drop(store);
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .open()
        .expect("sled");
    let raw = db.open_tree("conversations").expect("tree").get("c1");
    let first = raw.expect("read").and_then(|v| v.first().copied());
    assert_ne!(first, Some(b'{'), "rewritten in the compact form");
    drop(db);
    let again = Store::open(dir.path()).expect("open twice");
    assert_eq!(
        again.conversations(None).expect("all"),
        [old_conversation()]
    );
    assert_eq!(
        again.events().expect("events").len(),
        4,
        "upgraded only once"
    );
}

#[test]
fn an_upgrade_cut_short_finishes_without_duplicates() {
    for left in [1, 4] {
        let dir = tempfile::tempdir().expect("tempdir");
        write_half_upgraded_store(dir.path(), left);
        let store = Store::open(dir.path()).expect("open");
        let all = store.events().expect("events");
        assert_eq!(all.len(), 4, "{left} left: {:?}", kinds(&all));
        assert_eq!(store.history("c1").expect("history").len(), 3);
    }
}

#[test]
fn new_events_land_after_migrated_ones_and_are_found_by_window_and_conversation() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_old_store(dir.path());
    let store = Store::open(dir.path()).expect("open");
    store
        .append_event(&event(
            EventKind::Reopened,
            t("2025-03-04T08:00:00Z"),
            Some("c1"),
        ))
        .expect("append");
    let day = store
        .events_between(t("2025-03-03T10:00:00Z"), t("2025-03-03T12:00:00Z"))
        .expect("window");
    assert_eq!(
        kinds(&day),
        [EventKind::Responded, EventKind::Availability],
        "from included, to excluded"
    );
    let last = store
        .last_event_before("c1", t("2025-03-04T08:00:00Z"), |e| {
            e.kind != EventKind::Responded
        })
        .expect("last");
    assert_eq!(last.map(|e| e.kind), Some(EventKind::Closed));
    assert_eq!(store.history("c1").expect("history").len(), 4);
}

#[test]
fn the_filed_index_follows_each_state_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let pending = MessageState::Pending {
        folder: Some("Assigned/Alice".into()),
    };
    let mut message = record("m-1", pending);
    message.conversation = String::new();
    store
        .commit(&Commit {
            message,
            new_conversation: true,
            thread_ids: vec![],
            referenced: vec![],
            rotation: None,
            sla: None,
            work: true,
            tags: Vec::new(),
            rules: Vec::new(),
            event: event(EventKind::Assigned, Utc::now(), None),
        })
        .expect("commit");
    let filed = |s: &Store| -> Vec<MessageState> {
        s.filed("support")
            .expect("filed")
            .into_iter()
            .map(|r| r.state)
            .collect()
    };
    assert!(filed(&store).is_empty(), "pending is not filed");
    let e = || event(EventKind::Filed, Utc::now(), None);
    store
        .mark_filed("support", "m-1", filed_in("Assigned/Alice"), e())
        .expect("mark");
    assert_eq!(filed(&store), [filed_in("Assigned/Alice")]);
    store
        .rename_folder("support", "Assigned/Alice", "Alice")
        .expect("rename");
    assert_eq!(filed(&store), [filed_in("Alice")]);
    store
        .relocate("support", "m-1", MessageState::Gone, None, e())
        .expect("relocate");
    assert!(filed(&store).is_empty(), "gone leaves the index");
    store
        .mark_filed_many("support", &[("m-1".into(), filed_in("Done"), e())])
        .expect("mark many");
    assert_eq!(filed(&store), [filed_in("Done")]);
    assert!(filed(&store).len() <= store.messages("support").expect("all").len());
    drop(store);
    let reopened = Store::open(dir.path()).expect("reopen");
    assert_eq!(filed(&reopened), [filed_in("Done")], "the index is durable");
}

/// Conversations closed before a report's window and closed again, or reopened and closed, in
/// it: the windowed read must still count only closes of open conversations.
#[test]
fn a_report_reading_its_window_agrees_with_one_reading_the_whole_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let base = t("2025-03-01T09:00:00Z");
    let mut convs = Vec::new();
    for i in 0..4 {
        let at = base + Duration::hours(i);
        let mut message = record(&format!("m-{i}"), MessageState::Gone);
        message.conversation = String::new();
        message.arrived = Some(at);
        let conv = store
            .commit(&Commit {
                message,
                new_conversation: true,
                thread_ids: vec![],
                referenced: vec![],
                rotation: None,
                sla: None,
                work: true,
                tags: Vec::new(),
                rules: Vec::new(),
                event: event(EventKind::Assigned, at, None),
            })
            .expect("commit");
        convs.push(conv);
    }
    let write = |conv: &str, kind: EventKind, at: &str| {
        let mut e = event(kind, t(at), Some(conv));
        e.agent = Some("bob".into());
        store.append_event(&e).expect("append");
    };
    // c0: closed before, closed again inside (not counted). c1: closed before, reopened and
    // closed inside (counted). c2: closed only inside (counted). c3: closed before only.
    write(&convs[0], EventKind::Closed, "2025-03-02T10:00:00Z");
    write(&convs[0], EventKind::Closed, "2025-03-04T10:00:00Z");
    write(&convs[1], EventKind::Closed, "2025-03-02T10:00:00Z");
    write(&convs[1], EventKind::Reopened, "2025-03-04T09:00:00Z");
    write(&convs[1], EventKind::Closed, "2025-03-05T10:00:00Z");
    write(&convs[2], EventKind::Closed, "2025-03-05T11:00:00Z");
    write(&convs[3], EventKind::Closed, "2025-03-02T11:00:00Z");
    let config = Config::parse(
        "[[server]]\nname = \"l\"\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\n\n\
         [[mailbox]]\nname = \"support\"\nserver = \"l\"\nlogin = \"s\"\npassword = \"x\"\n\
         team = \"t\"\n\n[[team]]\nname = \"t\"\nagents = [\"alice\", \"bob\"]\n\n\
         [[agent]]\nid = \"alice\"\nname = \"A\"\n\n[[agent]]\nid = \"bob\"\nname = \"B\"\n",
    )
    .unwrap_or_else(|p| panic!("config: {p:?}"));
    let clocks = report::Clocks::from_config(&config).expect("clocks");
    let d = |s: &str| s.parse::<NaiveDate>().expect("date");
    let options = Options {
        mailbox: Some("support".into()),
        window: Window::dates_between(d("2025-03-03"), d("2025-03-06")).expect("window"),
        recompute: false,
    };
    let now = t("2025-03-07T12:00:00Z");
    let whole = Data::load(&store, Some("support")).expect("load");
    let windowed = Data::load_for(&store, &options).expect("load window");
    assert!(windowed.events.len() < whole.events.len(), "reads less");
    let a = report::build(&config, &clocks, &whole, &options, now);
    let b = report::build(&config, &clocks, &windowed, &options, now);
    assert_eq!(a, b);
    assert_eq!(
        b.volume.total.closed, 2,
        "c1's and c2's closes in the window"
    );
    let bob = b.agents.iter().find(|r| r.agent == "bob").map(|r| r.closed);
    assert_eq!(bob, Some(2));
    // The store's own path takes whole hours from the hourly summaries; windows that start and
    // end inside an hour read the parts at both ends as events.
    let windows = [
        options.window.clone(),
        Window {
            from: t("2025-03-04T09:30:00Z"),
            to: t("2025-03-05T10:30:00.5Z"),
        },
        Window {
            from: t("2025-03-05T10:00:00Z"),
            to: t("2025-03-05T10:59:00Z"),
        },
        Window::since(now, Duration::days(30)),
    ];
    for window in windows {
        for mailbox in [Some("support".to_string()), None] {
            let options = Options {
                mailbox,
                window: window.clone(),
                recompute: false,
            };
            let whole = Data::load(&store, options.mailbox.as_deref()).expect("load");
            let want = report::build(&config, &clocks, &whole, &options, now);
            let got = report::compute(&config, &store, &options, now).expect("compute");
            assert_eq!(got, want, "{window:?}");
        }
    }
}

#[test]
fn an_upgraded_store_reports_as_the_whole_log_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_old_store(dir.path());
    let store = Store::open(dir.path()).expect("open");
    let config = Config::parse(
        "[[server]]\nname = \"l\"\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\n\n\
         [[mailbox]]\nname = \"support\"\nserver = \"l\"\nlogin = \"s\"\npassword = \"x\"\n\
         team = \"t\"\n\n[[team]]\nname = \"t\"\nagents = [\"alice\"]\n\n\
         [[agent]]\nid = \"alice\"\nname = \"A\"\n",
    )
    .unwrap_or_else(|p| panic!("config: {p:?}"));
    let clocks = report::Clocks::from_config(&config).expect("clocks");
    let d = |s: &str| s.parse::<NaiveDate>().expect("date");
    let options = Options {
        mailbox: None,
        window: Window::dates_between(d("2025-03-03"), d("2025-03-03")).expect("window"),
        recompute: false,
    };
    let now = t("2025-03-04T12:00:00Z");
    let whole = Data::load(&store, None).expect("load");
    let want = report::build(&config, &clocks, &whole, &options, now);
    let got = report::compute(&config, &store, &options, now).expect("compute");
    assert_eq!(got, want);
    assert_eq!(
        (got.volume.total.received, got.volume.total.closed),
        (1, 1),
        "c1's assignment and close, from the summaries built on upgrade"
    );
}
