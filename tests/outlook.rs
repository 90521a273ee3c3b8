//! What people do in Outlook, done with plain IMAP from a second connection, becomes postroom's
//! truth: drags between agents, to Done, back to the inbox, deletes, renamed agents, and a
//! store rebuilt from the folders alone. Each test runs on both a full Dovecot and one that
//! behaves like Exchange (no MOVE, no keywords).

mod common;

use std::time::Duration;

use common::{agent_folder, mail, placement, wait_all_filed, wait_watching, Site};
use postroom::store::{ConversationState, EventKind};
use postroom_testkit::{wait_for, Daemon, Flavor, ImapClient};

const LIMIT: Duration = Duration::from_secs(30);

async fn folder_of(client: &mut ImapClient, id: &str) -> Option<String> {
    let all = placement(client).await.unwrap();
    all.into_iter()
        .find(|(_, m)| m.as_deref() == Some(id))
        .map(|(f, _)| f)
}

async fn holds(client: &mut ImapClient, folder: &str, id: &str) -> bool {
    let wanted = format!("<{id}>");
    let ids = client.message_ids(folder).await.unwrap();
    ids.iter().any(|(_, m)| m.as_deref() == Some(&wanted))
}

async fn uid_in(client: &mut ImapClient, folder: &str, id: &str) -> u32 {
    let ids = client.message_ids(folder).await.unwrap();
    let wanted = format!("<{id}>");
    ids.into_iter()
        .find(|(_, m)| m.as_deref() == Some(&wanted))
        .map(|(u, _)| u)
        .expect("message present")
}

/// Message `id`, in `owner`'s folder, carries `owner`'s keyword and not `previous`'s.
async fn assert_owner_keyword(client: &mut ImapClient, id: &str, owner: &str, previous: &str) {
    let uid = uid_in(client, &agent_folder(owner), id).await;
    let flags = client.flags(&agent_folder(owner), uid).await.unwrap();
    let has = |agent: &str| {
        flags
            .iter()
            .any(|f| *f == format!("postroom_owner_{agent}"))
    };
    assert!(has(owner) && !has(previous), "{flags:?}");
}

async fn stop(mut daemon: Daemon) {
    daemon.sigterm().unwrap();
    let status = daemon.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{}", daemon.output());
}

/// Starts a site with one conversation filed to alice; returns the running daemon.
async fn with_one_conversation(site: &Site, client: &mut ImapClient) -> Daemon {
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    client
        .append("INBOX", &mail("t1@c.example.test", "Broken invoice", None))
        .await
        .unwrap();
    wait_all_filed(client, 1, LIMIT).await.unwrap();
    assert_eq!(
        folder_of(client, "t1@c.example.test").await,
        Some(agent_folder("alice"))
    );
    daemon
}

async fn wait_event(site_daemon: &Daemon, text: &str) {
    wait_for(text, LIMIT, Duration::from_millis(50), async || {
        Ok(site_daemon.output().contains(text))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", site_daemon.output()));
}

async fn drag_to_another_agent(flavor: Flavor) {
    let site = Site::new(flavor, "drag");
    let mut client = site.client().await;
    let daemon = with_one_conversation(&site, &mut client).await;
    let uid = uid_in(&mut client, &agent_folder("alice"), "t1@c.example.test").await;
    client
        .uid_move(&agent_folder("alice"), uid, &agent_folder("bob"))
        .await
        .unwrap();
    wait_event(&daemon, "reassigned from alice to bob").await;
    if flavor == Flavor::Standard {
        // Where keywords are kept, the drag must not leave the previous owner's mark behind.
        wait_for(
            "the owner keyword",
            LIMIT,
            Duration::from_millis(50),
            async || {
                let uid = uid_in(&mut client, &agent_folder("bob"), "t1@c.example.test").await;
                let flags = client.flags(&agent_folder("bob"), uid).await?;
                Ok(flags.iter().any(|f| f == "postroom_owner_bob")
                    && !flags.iter().any(|f| f == "postroom_owner_alice"))
            },
        )
        .await
        .unwrap();
    }
    // The customer's follow-up goes to the new owner.
    let reply = mail(
        "t1-re@c.example.test",
        "Re: Broken invoice",
        Some("t1@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    wait_all_filed(&mut client, 2, LIMIT).await.unwrap();
    assert_eq!(
        folder_of(&mut client, "t1-re@c.example.test").await,
        Some(agent_folder("bob"))
    );
    stop(daemon).await;
    let store = site.store();
    let conv = &store.conversations(Some("support")).unwrap()[0];
    assert_eq!(conv.owner.as_deref(), Some("bob"));
    let history = store.history(&conv.id).unwrap();
    let moved: Vec<_> = history
        .iter()
        .filter(|e| e.kind == EventKind::Reassigned)
        .collect();
    assert_eq!(moved.len(), 1, "{history:#?}");
    assert_eq!(store.open_count("alice").unwrap(), 0);
    assert_eq!(store.open_count("bob").unwrap(), 1);
}

/// Ownership is the conversation's: dragging one of its messages to a colleague takes the
/// rest along, and the first owner's folder keeps nothing of it.
async fn dragging_one_message_moves_its_whole_conversation(flavor: Flavor) {
    let site = Site::new(flavor, "drag-thread");
    let mut client = site.client().await;
    let daemon = with_one_conversation(&site, &mut client).await;
    let reply = mail(
        "t1-re@c.example.test",
        "Re: Broken invoice",
        Some("t1@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    wait_all_filed(&mut client, 2, LIMIT).await.unwrap();
    assert_eq!(
        folder_of(&mut client, "t1-re@c.example.test").await,
        Some(agent_folder("alice"))
    );
    let uid = uid_in(&mut client, &agent_folder("alice"), "t1-re@c.example.test").await;
    client
        .uid_move(&agent_folder("alice"), uid, &agent_folder("bob"))
        .await
        .unwrap();
    wait_for(
        "the first message follows to bob",
        LIMIT,
        Duration::from_millis(100),
        async || Ok(holds(&mut client, &agent_folder("bob"), "t1@c.example.test").await),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    assert!(!holds(&mut client, &agent_folder("alice"), "t1@c.example.test").await);
    assert_eq!(
        folder_of(&mut client, "t1-re@c.example.test").await,
        Some(agent_folder("bob"))
    );
    if flavor == Flavor::Standard {
        assert_owner_keyword(&mut client, "t1@c.example.test", "bob", "alice").await;
    }
    stop(daemon).await;
    let store = site.store();
    let conv = &store.conversations(Some("support")).unwrap()[0];
    assert_eq!(conv.owner.as_deref(), Some("bob"));
    for record in store.messages("support").unwrap() {
        let bob = postroom::store::MessageState::Filed {
            folder: postroom::imap::mutf7::decode(&agent_folder("bob")),
        };
        assert_eq!(record.state, bob, "{record:?}");
        assert_eq!(record.owner.as_deref(), Some("bob"), "{record:?}");
    }
    let reassigned = store
        .history(&conv.id)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::Reassigned)
        .count();
    assert_eq!(reassigned, 1, "one reassignment, not one per message");
}

async fn drag_to_done_then_follow_up(flavor: Flavor) {
    let site = Site::new(flavor, "done");
    let mut client = site.client().await;
    let daemon = with_one_conversation(&site, &mut client).await;
    let uid = uid_in(&mut client, &agent_folder("alice"), "t1@c.example.test").await;
    client
        .uid_move(&agent_folder("alice"), uid, "Done")
        .await
        .unwrap();
    wait_event(&daemon, "closed: moved to Done").await;
    // Another conversation takes bob's turn, so a reopened thread must not follow the rotation.
    client
        .append("INBOX", &mail("t2@c.example.test", "Other", None))
        .await
        .unwrap();
    let reply = mail(
        "t1-re@c.example.test",
        "Re: Broken invoice",
        Some("t1@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    wait_for(
        "both new messages filed",
        LIMIT,
        Duration::from_millis(50),
        async || {
            let all = placement(&mut client).await?;
            Ok(all
                .iter()
                .filter(|(f, _)| f.starts_with("Assigned/"))
                .count()
                == 2)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        folder_of(&mut client, "t1-re@c.example.test").await,
        Some(agent_folder("alice"))
    );
    stop(daemon).await;
    let store = site.store();
    let record = store.message_by_id("t1@c.example.test").unwrap().unwrap();
    let conv = store.conversation(&record.conversation).unwrap().unwrap();
    assert_eq!(
        conv.state,
        ConversationState::Open,
        "a follow-up reopens the conversation"
    );
    assert_eq!(conv.owner.as_deref(), Some("alice"));
    let kinds: Vec<_> = store
        .history(&conv.id)
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::Closed), "{kinds:?}");
}

async fn drag_back_to_inbox_routes_again(flavor: Flavor) {
    let site = Site::new(flavor, "back");
    let mut client = site.client().await;
    let daemon = with_one_conversation(&site, &mut client).await;
    let uid = uid_in(&mut client, &agent_folder("alice"), "t1@c.example.test").await;
    client
        .uid_move(&agent_folder("alice"), uid, "INBOX")
        .await
        .unwrap();
    wait_event(&daemon, "moved back to the inbox by a person").await;
    wait_for("re-filed", LIMIT, Duration::from_millis(50), async || {
        Ok(folder_of(&mut client, "t1@c.example.test").await == Some(agent_folder("bob")))
    })
    .await
    .unwrap();
    if flavor == Flavor::Standard {
        // It came back carrying alice's keyword: the fetch saw it, and the re-filing took it
        // off as it put bob's on.
        assert_owner_keyword(&mut client, "t1@c.example.test", "bob", "alice").await;
    }
    stop(daemon).await;
    let store = site.store();
    let convs = store.conversations(Some("support")).unwrap();
    assert_eq!(
        convs.len(),
        1,
        "routing again keeps the conversation: {convs:#?}"
    );
    assert_eq!(convs[0].owner.as_deref(), Some("bob"));
    assert_eq!(store.open_count("alice").unwrap(), 0);
}

async fn delete_closes(flavor: Flavor) {
    let site = Site::new(flavor, "delete");
    let mut client = site.client().await;
    let daemon = with_one_conversation(&site, &mut client).await;
    let uid = uid_in(&mut client, &agent_folder("alice"), "t1@c.example.test").await;
    client.delete(&agent_folder("alice"), uid).await.unwrap();
    wait_event(&daemon, "closed: message deleted or moved away").await;
    stop(daemon).await;
    let store = site.store();
    let conv = &store.conversations(Some("support")).unwrap()[0];
    assert_eq!(conv.state, ConversationState::Closed);
    assert!(conv.closed_at.is_some());
    assert_eq!(store.open_count("alice").unwrap(), 0);
}

async fn wiped_store_is_rebuilt_from_folders(flavor: Flavor) {
    let site = Site::new(flavor, "rebuild");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    for i in 0..6 {
        let raw = mail(&format!("r{i}@c.example.test"), &format!("Case {i}"), None);
        client.append("INBOX", &raw).await.unwrap();
    }
    wait_all_filed(&mut client, 6, LIMIT).await.unwrap();
    let uid = uid_in(&mut client, &agent_folder("bob"), "r1@c.example.test").await;
    client
        .uid_move(&agent_folder("bob"), uid, "Done")
        .await
        .unwrap();
    wait_event(&daemon, "closed: moved to Done").await;
    stop(daemon).await;
    let before = placement(&mut client).await.unwrap();

    std::fs::remove_dir_all(site.state_dir()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postroom"))
        .args(["--config", site.config_path().to_str().unwrap(), "rebuild"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        placement(&mut client).await.unwrap(),
        before,
        "rebuild must not move mail"
    );
    let store = site.store();
    let convs = store.conversations(Some("support")).unwrap();
    assert_eq!(convs.len(), 6);
    for (id, owner) in [
        ("r0", "alice"),
        ("r2", "zoe"),
        ("r3", "alice"),
        ("r4", "bob"),
    ] {
        let record = store
            .message_by_id(&format!("{id}@c.example.test"))
            .unwrap()
            .unwrap();
        let conv = store.conversation(&record.conversation).unwrap().unwrap();
        assert_eq!(conv.owner.as_deref(), Some(owner), "{id}");
        assert_eq!(conv.state, ConversationState::Open);
    }
    let done = store.message_by_id("r1@c.example.test").unwrap().unwrap();
    let conv = store.conversation(&done.conversation).unwrap().unwrap();
    assert_eq!(conv.state, ConversationState::Closed);
    assert_eq!(store.open_count("alice").unwrap(), 2);
}

async fn renamed_agent_keeps_folder_contents(flavor: Flavor) {
    let site = Site::new(flavor, "rename");
    let mut client = site.client().await;
    let daemon = with_one_conversation(&site, &mut client).await;
    stop(daemon).await;
    let renamed = [
        ("alice", "Alice Smith"),
        ("bob", "Bob Jürgen"),
        ("zoe", "Zoë"),
    ];
    site.write_config_with("", &renamed, "");
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    let folders = client.list_folders().await.unwrap();
    assert!(
        folders.contains(&"Assigned/Alice Smith".to_string()),
        "{folders:?}"
    );
    assert!(
        !folders.contains(&agent_folder("alice")),
        "old folder left behind: {folders:?}"
    );
    assert!(holds(&mut client, "Assigned/Alice Smith", "t1@c.example.test").await);
    let reply = mail(
        "t1-re@c.example.test",
        "Re: Broken invoice",
        Some("t1@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    wait_for(
        "the follow-up filed",
        LIMIT,
        Duration::from_millis(50),
        async || Ok(holds(&mut client, "Assigned/Alice Smith", "t1-re@c.example.test").await),
    )
    .await
    .unwrap();
    stop(daemon).await;
}

/// The folder poll reads only new UIDs; if it ever misses a drag (here its sync point is moved
/// past the message by hand, as a lost response would), the reconciliation finds the message
/// in another folder than recorded and takes it as the drag it was.
#[tokio::test]
async fn a_drag_the_folder_poll_missed_is_found_by_reconciliation() {
    let site = Site::new(Flavor::Standard, "missed-drag");
    let mut client = site.client().await;
    let daemon = with_one_conversation(&site, &mut client).await;
    stop(daemon).await;
    let uid = uid_in(&mut client, &agent_folder("alice"), "t1@c.example.test").await;
    client
        .uid_move(&agent_folder("alice"), uid, "Done")
        .await
        .unwrap();
    {
        let store = site.store();
        let mut sync = store
            .folder_sync("support", "Done")
            .unwrap()
            .unwrap_or_default();
        sync.uid_next += 1000;
        store.set_folder_sync("support", "Done", &sync).unwrap();
        store.flush().unwrap();
    }
    let daemon = site.start();
    wait_event(&daemon, "closed: moved to Done").await;
    stop(daemon).await;
    let store = site.store();
    let conv = &store.conversations(Some("support")).unwrap()[0];
    assert_eq!(conv.state, ConversationState::Closed);
    let record = &store.messages("support").unwrap()[0];
    assert_eq!(
        record.state,
        postroom::store::MessageState::Filed {
            folder: "Done".into()
        }
    );
}

/// Files three conversations (alice, bob, zoe in round robin) on a fresh site.
async fn with_three_conversations(site: &Site, client: &mut ImapClient) -> Daemon {
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    for i in 0..3 {
        let raw = mail(&format!("o{i}@c.example.test"), &format!("Case {i}"), None);
        client.append("INBOX", &raw).await.unwrap();
    }
    wait_all_filed(client, 3, LIMIT).await.unwrap();
    daemon
}

/// What postroom files itself is not read back by the folder poll: the server names the new
/// UIDs (COPYUID) and the folders' sync points move past them.
async fn own_moves_are_not_read_back(flavor: Flavor) {
    let site = Site::new(flavor, "ownmoves");
    let mut client = site.client().await;
    let daemon = with_three_conversations(&site, &mut client).await;
    // Several folder polls (every second here) after the filing.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let output = daemon.output();
    stop(daemon).await;
    assert!(
        !output.contains("new arrivals in a managed folder"),
        "the poll read postroom's own moves back:\n{output}"
    );
}

/// A person's drag into a folder right after postroom filed a message there is still a drag:
/// only postroom's own new UIDs are skipped, never one that lands after them.
async fn drag_right_after_own_move(flavor: Flavor) {
    let site = Site::new(flavor, "afterown");
    let mut client = site.client().await;
    let daemon = with_three_conversations(&site, &mut client).await;
    // The fourth conversation goes to alice; the moment it is there, bob's is dragged after it.
    let raw = mail("o3@c.example.test", "Case 3", None);
    client.append("INBOX", &raw).await.unwrap();
    let alice = agent_folder("alice");
    wait_for("o3 filed", LIMIT, Duration::from_millis(5), async || {
        Ok(holds(&mut client, &alice, "o3@c.example.test").await)
    })
    .await
    .unwrap();
    let uid = uid_in(&mut client, &agent_folder("bob"), "o1@c.example.test").await;
    client
        .uid_move(&agent_folder("bob"), uid, &alice)
        .await
        .unwrap();
    wait_event(&daemon, "reassigned from bob to alice").await;
    stop(daemon).await;
    let store = site.store();
    let record = store.message_by_id("o1@c.example.test").unwrap().unwrap();
    let conv = store.conversation(&record.conversation).unwrap().unwrap();
    assert_eq!(conv.owner.as_deref(), Some("alice"));
    assert_eq!(store.open_count("alice").unwrap(), 3);
    assert_eq!(store.open_count("bob").unwrap(), 0);
    let own = store.message_by_id("o3@c.example.test").unwrap().unwrap();
    let history = store.history(&own.conversation).unwrap();
    assert!(
        history.iter().all(|e| e.kind != EventKind::Reassigned),
        "postroom's own move was taken for a drag: {history:#?}"
    );
}

macro_rules! on_both_servers {
    ($($name:ident),*) => {
        mod dovecot {
            $(#[tokio::test] async fn $name() { super::$name(postroom_testkit::Flavor::Standard).await })*
        }
        mod exchange_like {
            $(#[tokio::test] async fn $name() { super::$name(postroom_testkit::Flavor::ExchangeLike).await })*
        }
    };
}

on_both_servers!(
    drag_to_another_agent,
    dragging_one_message_moves_its_whole_conversation,
    drag_to_done_then_follow_up,
    drag_back_to_inbox_routes_again,
    delete_closes,
    wiped_store_is_rebuilt_from_folders,
    renamed_agent_keeps_folder_contents,
    own_moves_are_not_read_back,
    drag_right_after_own_move
);
