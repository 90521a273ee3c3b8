//! Store-level behaviour without a server: `Store::mark_filed_many` records a group as
//! `mark_filed` records each of its messages, the realign set keeps a newer owner change, and a
//! merge keeps the survivor's running wait.

use chrono::Utc;
use postroom::store::{Commit, Event, EventKind, MessageRecord, MessageState, Store};

fn event(kind: EventKind, identity: &str) -> Event {
    Event {
        at: Utc::now(),
        kind,
        mailbox: "support".into(),
        conversation: None,
        identity: Some(identity.into()),
        agent: Some("alice".into()),
        detail: "test".into(),
    }
}

fn decide(store: &Store, identity: &str) {
    store
        .commit(&commit_of(identity, None, Utc::now(), None))
        .expect("commit");
}

/// The commit of `identity`, decided at `at`: a new conversation, or a follow-up in
/// `conversation`.
fn commit_of(
    identity: &str,
    conversation: Option<&str>,
    at: chrono::DateTime<Utc>,
    arrived: Option<chrono::DateTime<Utc>>,
) -> Commit {
    let mut e = event(EventKind::Assigned, identity);
    e.at = at;
    let message = MessageRecord {
        identity: identity.into(),
        mailbox: "support".into(),
        message_id: Some(format!("<{identity}@test>")),
        conversation: conversation.unwrap_or_default().into(),
        owner: Some("alice".into()),
        state: MessageState::Pending {
            folder: Some("Assigned/Alice".into()),
        },
        arrived,
        decided_at: at,
        subject: "s".into(),
        from: None,
    };
    Commit {
        message,
        new_conversation: conversation.is_none(),
        thread_ids: vec![],
        referenced: vec![],
        rotation: None,
        sla: None,
        work: true,
        tags: Vec::new(),
        rules: Vec::new(),
        event: e,
    }
}

#[test]
fn a_filed_group_is_recorded_like_single_messages_and_unknown_ones_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    decide(&store, "m-1");
    decide(&store, "m-2");
    let filed = MessageState::Filed {
        folder: "Assigned/Alice".into(),
    };
    let group: Vec<(String, MessageState, Event)> = ["m-1", "m-2", "m-unknown"]
        .iter()
        .map(|id| (id.to_string(), filed.clone(), event(EventKind::Filed, id)))
        .collect();
    store
        .mark_filed_many("support", &group)
        .expect("mark_filed_many");
    for id in ["m-1", "m-2"] {
        let record = store.message("support", id).expect("read").expect("record");
        assert_eq!(record.state, filed, "{id}");
    }
    assert!(store
        .message("support", "m-unknown")
        .expect("read")
        .is_none());
    let kinds: Vec<EventKind> = store
        .events()
        .expect("events")
        .iter()
        .map(|e| e.kind)
        .collect();
    let filed_events = kinds.iter().filter(|k| **k == EventKind::Filed).count();
    assert_eq!(
        filed_events, 2,
        "one Filed event per known message: {kinds:?}"
    );
}

/// An owner change recorded while the realign round works on the previous one is not lost
/// when that round takes the conversation off the set.
#[test]
fn a_newer_owner_change_stays_on_the_realign_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    decide(&store, "m1");
    let conv = store
        .message("support", "m1")
        .unwrap()
        .unwrap()
        .conversation;
    store
        .set_owner(&conv, Some("bob"), event(EventKind::Reassigned, "m1"))
        .unwrap();
    let seen = store.misplaced("support").unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].conversation, conv);
    // Meanwhile an admin gives it to carol; then the round that saw bob's change ends.
    store
        .set_owner(&conv, Some("carol"), event(EventKind::Reassigned, "m1"))
        .unwrap();
    store.realigned("support", &seen[0]).unwrap();
    let left = store.misplaced("support").unwrap();
    assert_eq!(left.len(), 1, "carol's change was lost");
    store.realigned("support", &left[0]).unwrap();
    assert!(store.misplaced("support").unwrap().is_empty());
}

/// The commit of `identity` arriving at `at`: a new conversation, or a follow-up in
/// `conversation`.
fn arrival(identity: &str, conversation: Option<&str>, at: &str) -> Commit {
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .with_timezone(&Utc);
    commit_of(identity, conversation, at, Some(at))
}

/// A merge keeps the survivor's running wait: its escalations are keyed by when that wait
/// began, and taking the absorbed conversation's earlier start would mail the wait again.
#[test]
fn a_merge_keeps_the_survivors_running_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
    };
    let kept = store
        .commit(&arrival("k1", None, "2025-03-03T09:00:00Z"))
        .unwrap();
    store
        .record_response(
            &kept,
            t("2025-03-03T09:30:00Z"),
            event(EventKind::Responded, "k1"),
        )
        .unwrap();
    // The absorbed half begins after that response, before the survivor's follow-up.
    let gone = store
        .commit(&arrival("g1", None, "2025-03-03T10:00:00Z"))
        .unwrap();
    store
        .commit(&arrival("k2", Some(&kept), "2025-03-03T11:00:00Z"))
        .unwrap();
    let before = store.conversation(&kept).unwrap().unwrap();
    assert_eq!(before.waiting_since, Some(t("2025-03-03T11:00:00Z")));
    // A message that joins the survivor and links the absorbed one to it.
    let joining = arrival("k3", Some(&kept), "2025-03-03T11:30:00Z");
    store.commit_merging(&joining, Some(&gone)).unwrap();
    let merged = store.conversation(&gone).unwrap().unwrap();
    assert_eq!(merged.id, kept, "the absorbed one resolves to the survivor");
    assert_eq!(merged.waiting_since, Some(t("2025-03-03T11:00:00Z")));
}
