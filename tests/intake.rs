//! The main job against a real Dovecot: catch-up, IDLE, threads, restarts, and a server without
//! MOVE or keywords. Every assertion reads the mailbox over IMAP; the store is checked after the
//! daemon has stopped.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{agent_folder, agent_folders, mail, placement, wait_all_filed, wait_watching, Site};
use postroom::store::EventKind;
use postroom_testkit::{wait_for, Flavor};

const FILE_LIMIT: Duration = Duration::from_secs(60);

/// Asserts every Message-ID sits in exactly one folder, and none in the inbox.
fn assert_each_once(all: &[(String, Option<String>)], expected: usize) {
    let mut seen: HashMap<&str, Vec<&str>> = HashMap::new();
    for (folder, id) in all {
        let id = id.as_deref().expect("every test message has a Message-ID");
        seen.entry(id).or_default().push(folder);
    }
    let twice: Vec<_> = seen.iter().filter(|(_, f)| f.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "messages in more than one place: {twice:?}"
    );
    assert_eq!(seen.len(), expected, "distinct messages");
    assert!(
        all.iter().all(|(f, _)| f != "INBOX"),
        "messages left in the inbox"
    );
}

/// Each identity was decided exactly once across the daemon's whole history.
fn assert_decided_once(site: &Site, expected: usize) {
    let store = site.store();
    let mut decisions: BTreeMap<String, usize> = BTreeMap::new();
    for event in store.events().expect("events") {
        if matches!(
            event.kind,
            EventKind::Assigned | EventKind::FollowUp | EventKind::Left
        ) {
            *decisions
                .entry(event.identity.expect("identity"))
                .or_default() += 1;
        }
    }
    let repeated: Vec<_> = decisions.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "decided more than once: {repeated:?}");
    assert_eq!(decisions.len(), expected, "decisions recorded");
}

#[tokio::test]
async fn a_backlog_of_real_mail_is_filed_once_and_spread_evenly() {
    let site = Site::new(Flavor::Standard, "backlog");
    let mut client = site.client().await;
    let messages = common::ham(120);
    for raw in &messages {
        client.append("INBOX", raw).await.unwrap();
    }
    let mut daemon = site.start();
    wait_all_filed(&mut client, messages.len(), FILE_LIMIT)
        .await
        .unwrap();
    daemon.sigterm().unwrap();
    assert!(
        daemon
            .wait_exit(Duration::from_secs(20))
            .await
            .unwrap()
            .success(),
        "{}",
        daemon.output()
    );

    let all = placement(&mut client).await.unwrap();
    assert_each_once(&all, messages.len());
    assert!(
        !daemon.output().contains("Seen"),
        "postroom must never touch \\Seen"
    );
    let store = site.store();
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    for conv in store.conversations(Some("support")).unwrap() {
        if let Some(owner) = conv.owner {
            *load.entry(owner).or_default() += 1;
        }
    }
    let (min, max) = (load.values().min().unwrap(), load.values().max().unwrap());
    assert!(
        max - min <= 1,
        "round robin must stay within one conversation: {load:?}"
    );
    drop(store);
    assert_decided_once(&site, messages.len());
}

#[tokio::test]
async fn mail_appended_during_idle_is_filed_within_three_seconds() {
    let site = Site::new(Flavor::Standard, "idle");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    let appended = Instant::now();
    client
        .append(
            "INBOX",
            &mail("idle-1@customer.example.test", "Printer down", None),
        )
        .await
        .unwrap();
    wait_for(
        "the message in an agent folder",
        Duration::from_secs(3),
        Duration::from_millis(20),
        async || {
            let all = placement(&mut client).await?;
            Ok(all.iter().any(|(f, _)| agent_folders().contains(f)))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    assert!(appended.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_reply_follows_its_threads_owner() {
    let site = Site::new(Flavor::Standard, "thread");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    // Three new conversations put the rotation past the first one's owner.
    for i in 0..3 {
        let raw = mail(
            &format!("root-{i}@c.example.test"),
            &format!("Question {i}"),
            None,
        );
        client.append("INBOX", &raw).await.unwrap();
    }
    wait_all_filed(&mut client, 3, FILE_LIMIT).await.unwrap();
    let reply = mail(
        "reply-0@c.example.test",
        "Re: Question 0",
        Some("root-0@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    wait_all_filed(&mut client, 4, FILE_LIMIT).await.unwrap();
    let all = placement(&mut client).await.unwrap();
    let folder_of = |id: &str| common::folder_of(&all, id);
    assert_eq!(
        folder_of("reply-0@c.example.test"),
        folder_of("root-0@c.example.test")
    );
    assert_eq!(
        folder_of("root-0@c.example.test"),
        Some(agent_folder("alice")),
        "{all:?}"
    );
}

#[tokio::test]
async fn a_restart_neither_reassigns_nor_misses_mail_that_came_meanwhile() {
    let site = Site::new(Flavor::Standard, "restart");
    let mut client = site.client().await;
    for i in 0..10 {
        client
            .append(
                "INBOX",
                &mail(&format!("before-{i}@c.example.test"), "Before", None),
            )
            .await
            .unwrap();
    }
    let mut daemon = site.start();
    wait_all_filed(&mut client, 10, FILE_LIMIT).await.unwrap();
    daemon.sigterm().unwrap();
    assert!(daemon
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap()
        .success());
    let before = placement(&mut client).await.unwrap();

    for i in 0..5 {
        client
            .append(
                "INBOX",
                &mail(&format!("during-{i}@c.example.test"), "While down", None),
            )
            .await
            .unwrap();
    }
    let reply = mail(
        "during-reply@c.example.test",
        "Re: Before",
        Some("before-3@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    let mut daemon = site.start();
    wait_all_filed(&mut client, 16, FILE_LIMIT).await.unwrap();
    daemon.sigterm().unwrap();
    assert!(daemon
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap()
        .success());

    let after = placement(&mut client).await.unwrap();
    assert_each_once(&after, 16);
    for entry in &before {
        assert!(after.contains(entry), "{entry:?} moved after the restart");
    }
    let folder_of = |id: &str| {
        after
            .iter()
            .find(|(_, m)| m.as_deref() == Some(id))
            .map(|(f, _)| f.clone())
    };
    assert_eq!(
        folder_of("during-reply@c.example.test"),
        folder_of("before-3@c.example.test")
    );
    assert_decided_once(&site, 16);
}

#[tokio::test]
async fn a_server_without_move_or_keywords_still_gets_every_message_filed() {
    let site = Site::new(Flavor::ExchangeLike, "exchange");
    let mut client = site.client().await;
    assert!(!client.has_capability("MOVE"));
    let messages = common::ham(40);
    for raw in &messages {
        client.append("INBOX", raw).await.unwrap();
    }
    let mut daemon = site.start();
    wait_all_filed(&mut client, messages.len(), FILE_LIMIT)
        .await
        .unwrap();
    daemon.sigterm().unwrap();
    assert!(daemon
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap()
        .success());
    assert!(
        daemon.output().contains("folder only"),
        "mode must be logged: {}",
        daemon.output()
    );
    let all = placement(&mut client).await.unwrap();
    assert_each_once(&all, messages.len());
    for folder in agent_folders() {
        for (uid, _) in client.message_ids(&folder).await.unwrap() {
            let flags = client.flags(&folder, uid).await.unwrap();
            assert!(
                flags.iter().all(|f| !f.starts_with("postroom")),
                "keyword stored: {flags:?}"
            );
        }
    }
}

#[tokio::test]
async fn killed_mid_backlog_and_restarted_every_message_is_handled_once() {
    let site = Site::new(Flavor::Standard, "sigkill");
    let mut client = site.client().await;
    let messages = common::ham(300);
    for raw in &messages {
        client.append("INBOX", raw).await.unwrap();
    }
    // Kill at set points of progress, so every kill really lands mid-backlog.
    for round in 1..=3u32 {
        let daemon_left = messages.len() as u32 - 50 * round;
        let mut daemon = site.start();
        wait_for(
            "progress before the kill",
            FILE_LIMIT,
            Duration::from_millis(2),
            async || Ok(client.count("INBOX").await? <= daemon_left),
        )
        .await
        .unwrap();
        daemon.sigkill().unwrap();
        let _ = daemon.wait_exit(Duration::from_secs(10)).await;
        let left = client.count("INBOX").await.unwrap();
        assert!(
            left > 0,
            "round {round}: the backlog finished before the kill"
        );
    }
    let mut daemon = site.start();
    wait_all_filed(&mut client, messages.len(), FILE_LIMIT)
        .await
        .unwrap();
    common::wait_watching(&daemon).await.unwrap();
    daemon.sigterm().unwrap();
    let status = daemon.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{}", daemon.output());
    let all = placement(&mut client).await.unwrap();
    assert_each_once(&all, messages.len());
    assert_decided_once(&site, messages.len());
}

#[tokio::test]
async fn a_parent_arriving_after_its_reply_joins_the_replys_conversation() {
    let site = Site::new(Flavor::Standard, "late-parent");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    let reply = mail(
        "kid@c.example.test",
        "Re: Screw stuck",
        Some("parent@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    wait_all_filed(&mut client, 1, FILE_LIMIT).await.unwrap();
    client
        .append("INBOX", &mail("other@c.example.test", "Unrelated", None))
        .await
        .unwrap();
    client
        .append("INBOX", &mail("parent@c.example.test", "Screw stuck", None))
        .await
        .unwrap();
    wait_all_filed(&mut client, 3, FILE_LIMIT).await.unwrap();
    let all = placement(&mut client).await.unwrap();
    let folder_of = |id: &str| common::folder_of(&all, id);
    assert_eq!(
        folder_of("parent@c.example.test"),
        folder_of("kid@c.example.test")
    );
    assert_ne!(
        folder_of("other@c.example.test"),
        folder_of("kid@c.example.test")
    );
}

/// The split that out-of-order delivery used to leave: a reply arrives before its parent and
/// starts a conversation with another agent; the parent then arrives and continues an older
/// conversation. The two are one thread: merged in the store, and gathered in one folder.
#[tokio::test]
async fn a_late_parent_that_continues_an_older_thread_merges_the_replys_conversation() {
    let site = Site::new(Flavor::Standard, "merge");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    client
        .append("INBOX", &mail("old@c.example.test", "Pump leaks", None))
        .await
        .unwrap();
    wait_all_filed(&mut client, 1, FILE_LIMIT).await.unwrap();
    // The reply to a follow-up nobody has seen yet: round robin gives it to the next agent.
    let kid = raw(
        "ann@c.example.test",
        "kid@c.example.test",
        "Re: Re: Pump leaks",
        "In-Reply-To: <middle@c.example.test>\r\nReferences: <middle@c.example.test>\r\n",
    );
    client.append("INBOX", &kid).await.unwrap();
    wait_all_filed(&mut client, 2, FILE_LIMIT).await.unwrap();
    let all = placement(&mut client).await.unwrap();
    let before = common::folder_of(&all, "kid@c.example.test");
    assert_ne!(
        before,
        common::folder_of(&all, "old@c.example.test"),
        "{all:?}"
    );
    let middle = raw(
        "ann@c.example.test",
        "middle@c.example.test",
        "Re: Pump leaks",
        "In-Reply-To: <old@c.example.test>\r\nReferences: <old@c.example.test>\r\n",
    );
    client.append("INBOX", &middle).await.unwrap();
    wait_all_filed(&mut client, 3, FILE_LIMIT).await.unwrap();
    let owner_folder = common::folder_of(&all, "old@c.example.test");
    wait_for(
        "the thread gathered in one folder",
        FILE_LIMIT,
        Duration::from_millis(100),
        async || {
            let all = placement(&mut client).await?;
            let kid = common::folder_of(&all, "kid@c.example.test");
            let middle = common::folder_of(&all, "middle@c.example.test");
            Ok(kid == owner_folder && middle == owner_folder)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}: want {owner_folder:?}\n{}", daemon.output()));
    drop(daemon);
    let store = site.store();
    let live = store.conversations(None).unwrap();
    assert_eq!(live.len(), 1, "one conversation left: {live:?}");
    assert_eq!(live[0].messages, 3);
    let owner = live[0].owner.clone().unwrap();
    assert_eq!(
        store.open_count(&owner).unwrap(),
        1,
        "the merged one holds no load"
    );
    let merged: Vec<_> = store
        .events()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::Merged)
        .collect();
    assert_eq!(merged.len(), 1, "{merged:?}");
    for record in store.messages("support").unwrap() {
        assert_eq!(record.conversation, live[0].id, "{record:?}");
        assert_eq!(record.owner.as_deref(), Some(owner.as_str()), "{record:?}");
    }
}

fn raw(from: &str, id: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 10 Mar 2025 09:00:00 +0100\r\n{extra}\r\nBody.\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_reply_without_threading_headers_joins_only_its_senders_conversation() {
    let site = Site::new(Flavor::Standard, "subject");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    let ann = "Ann <ann@customer.example.test>";
    client
        .append(
            "INBOX",
            &raw(ann, "s1@c.example.test", "Invoice 7 wrong", ""),
        )
        .await
        .unwrap();
    wait_all_filed(&mut client, 1, FILE_LIMIT).await.unwrap();
    // Ann's client dropped In-Reply-To and References; only the subject links it.
    client
        .append(
            "INBOX",
            &raw(ann, "s2@c.example.test", "RE: Invoice 7 wrong", ""),
        )
        .await
        .unwrap();
    // Somebody else with the same subject is not Ann's conversation.
    let bob = "bob@other.example.test";
    client
        .append(
            "INBOX",
            &raw(bob, "s3@c.example.test", "Re: Invoice 7 wrong", ""),
        )
        .await
        .unwrap();
    // Two scanner alerts with one subject and no reply prefix stay apart (field case BUG-13).
    let scanner = "scanner@printers.example.test";
    client
        .append("INBOX", &raw(scanner, "a1@c.example.test", "Toner low", ""))
        .await
        .unwrap();
    client
        .append("INBOX", &raw(scanner, "a2@c.example.test", "Toner low", ""))
        .await
        .unwrap();
    wait_all_filed(&mut client, 5, FILE_LIMIT).await.unwrap();
    let mut daemon = daemon;
    daemon.sigterm().unwrap();
    assert!(daemon
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap()
        .success());
    let store = site.store();
    let conv = |id: &str| store.message_by_id(id).unwrap().unwrap().conversation;
    assert_eq!(conv("s1@c.example.test"), conv("s2@c.example.test"));
    assert_ne!(conv("s1@c.example.test"), conv("s3@c.example.test"));
    assert_ne!(conv("a1@c.example.test"), conv("a2@c.example.test"));
}

#[tokio::test]
async fn escalations_coming_back_into_the_inbox_create_no_work() {
    let site = Site::new(Flavor::Standard, "own-mail");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    let ours = "<e1.c7@postroom.example.test>";
    // Our escalation itself, a lead's reply to it, and an out-of-office answer to it.
    let escalation = raw(
        "support@example.test",
        "e1.c7@postroom.example.test",
        "[postroom c7] First response overdue",
        "Auto-Submitted: auto-generated\r\n",
    );
    let lead = raw(
        "lead@example.test",
        "l1@example.test",
        "Re: [postroom c7] First response overdue",
        &format!("In-Reply-To: {ours}\r\nReferences: {ours}\r\n"),
    );
    let ooo = raw(
        "lead@example.test",
        "o1@example.test",
        "Automatic reply: First response overdue",
        &format!("Auto-Submitted: auto-replied\r\nIn-Reply-To: {ours}\r\n"),
    );
    for m in [escalation, lead, ooo] {
        client.append("INBOX", &m).await.unwrap();
    }
    wait_all_filed(&mut client, 3, FILE_LIMIT).await.unwrap();
    let all = placement(&mut client).await.unwrap();
    assert!(all.iter().all(|(f, _)| f == "Automated"), "{all:?}");
    let mut daemon = daemon;
    daemon.sigterm().unwrap();
    assert!(daemon
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap()
        .success());
    let store = site.store();
    assert!(
        store.conversations(Some("support")).unwrap().is_empty(),
        "no conversation, no SLA"
    );
}
