//! `Store::mark_filed_many` records a group as `mark_filed` records each of its messages.

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
    let message = MessageRecord {
        identity: identity.into(),
        mailbox: "support".into(),
        message_id: Some(format!("<{identity}@test>")),
        conversation: String::new(),
        owner: Some("alice".into()),
        state: MessageState::Pending {
            folder: Some("Assigned/Alice".into()),
        },
        arrived: None,
        decided_at: Utc::now(),
        subject: "s".into(),
        from: None,
    };
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
            event: event(EventKind::Assigned, identity),
        })
        .expect("commit");
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
