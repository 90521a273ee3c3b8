//! Assignment against a real Dovecot with the daemon running: capacity waits given out oldest
//! first, agents away at run time, follow-ups to an away owner, and the admin commands that act
//! on the mailbox and the store together.

mod common;

use std::time::Duration;

use common::{agent_folder, mail, placement, wait_all_filed, wait_watching, Site};
use postroom_testkit::{wait_for, Daemon, Flavor, ImapClient};

const LIMIT: Duration = Duration::from_secs(30);

async fn folder_of(client: &mut ImapClient, id: &str) -> Option<String> {
    let all = placement(client).await.unwrap();
    all.into_iter()
        .find(|(_, m)| m.as_deref() == Some(id))
        .map(|(f, _)| f)
}

async fn wait_in(client: &mut ImapClient, id: &str, folder: &str, daemon: &Daemon) {
    wait_for(
        &format!("{id} in {folder}"),
        LIMIT,
        Duration::from_millis(50),
        async || Ok(folder_of(client, id).await.as_deref() == Some(folder)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
}

async fn stop(mut daemon: Daemon) {
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
}

fn new_case(n: u32) -> Vec<u8> {
    mail(
        &format!("case{n}@c.example.test"),
        &format!("Case {n}"),
        None,
    )
}

#[tokio::test]
async fn at_capacity_work_waits_and_is_given_out_oldest_first() {
    let site = Site::new(Flavor::Standard, "capacity");
    site.write_config_agents("max_open = 1");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    for n in 1..=5 {
        client.append("INBOX", &new_case(n)).await.unwrap();
    }
    wait_in(
        &mut client,
        "case3@c.example.test",
        &agent_folder("zoe"),
        &daemon,
    )
    .await;
    assert_eq!(
        folder_of(&mut client, "case4@c.example.test")
            .await
            .as_deref(),
        Some("INBOX")
    );
    assert_eq!(
        folder_of(&mut client, "case5@c.example.test")
            .await
            .as_deref(),
        Some("INBOX")
    );

    // Bob finishes case 2: the oldest waiting conversation (case 4) is his now, case 5 waits.
    let ids = client.message_ids(&agent_folder("bob")).await.unwrap();
    client
        .uid_move(&agent_folder("bob"), ids[0].0, "Done")
        .await
        .unwrap();
    wait_in(
        &mut client,
        "case4@c.example.test",
        &agent_folder("bob"),
        &daemon,
    )
    .await;
    assert_eq!(
        folder_of(&mut client, "case5@c.example.test")
            .await
            .as_deref(),
        Some("INBOX")
    );
    stop(daemon).await;
    let (ok, queue) = site.command(&["queue"]);
    assert!(ok, "{queue}");
    assert!(
        queue.contains("(waiting)") && queue.contains("Case 5"),
        "{queue}"
    );
}

#[tokio::test]
async fn an_agent_marked_away_gets_no_new_work_until_back() {
    let site = Site::new(Flavor::Standard, "away");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    let (ok, out) = site.command(&["agent", "away", "bob"]);
    assert!(ok, "{out}");
    for n in 1..=4 {
        client.append("INBOX", &new_case(n)).await.unwrap();
    }
    wait_all_filed(&mut client, 4, LIMIT).await.unwrap();
    let in_bob = client.message_ids(&agent_folder("bob")).await.unwrap();
    assert!(in_bob.is_empty(), "bob is away but got {in_bob:?}");
    let (ok, out) = site.command(&["agent", "back", "bob"]);
    assert!(ok, "{out}");
    client.append("INBOX", &new_case(5)).await.unwrap();
    // Bob waited longest since his last turn, so the next conversation is his.
    wait_in(
        &mut client,
        "case5@c.example.test",
        &agent_folder("bob"),
        &daemon,
    )
    .await;
    stop(daemon).await;
}

#[tokio::test]
async fn a_follow_up_to_an_away_owner_goes_to_the_team() {
    let site = Site::new(Flavor::Standard, "sticky-away");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    client.append("INBOX", &new_case(1)).await.unwrap();
    wait_in(
        &mut client,
        "case1@c.example.test",
        &agent_folder("alice"),
        &daemon,
    )
    .await;
    let (ok, out) = site.command(&["agent", "away", "alice"]);
    assert!(ok, "{out}");
    let reply = mail(
        "re1@c.example.test",
        "Re: Case 1",
        Some("case1@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    wait_all_filed(&mut client, 2, LIMIT).await.unwrap();
    let folder = folder_of(&mut client, "re1@c.example.test").await.unwrap();
    assert_ne!(
        folder,
        agent_folder("alice"),
        "a follow-up must not wait on an away owner"
    );
    // The new owner gets the whole conversation, not only its latest message.
    wait_in(&mut client, "case1@c.example.test", &folder, &daemon).await;
    stop(daemon).await;
}

#[tokio::test]
async fn admin_commands_move_mail_and_record_it_while_the_daemon_runs() {
    let site = Site::new(Flavor::ExchangeLike, "admin");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    for n in 1..=3 {
        client.append("INBOX", &new_case(n)).await.unwrap();
    }
    wait_all_filed(&mut client, 3, LIMIT).await.unwrap();

    let (ok, out) = site.command(&["assign", "case1@c.example.test", "zoe"]);
    assert!(ok, "{out}");
    assert_eq!(
        folder_of(&mut client, "case1@c.example.test").await,
        Some(agent_folder("zoe"))
    );
    let (ok, out) = site.command(&["close", "<case2@c.example.test>"]);
    assert!(ok, "{out}");
    assert_eq!(
        folder_of(&mut client, "case2@c.example.test")
            .await
            .as_deref(),
        Some("Done")
    );
    let (ok, out) = site.command(&["queue", "--agent", "zoe"]);
    assert!(
        ok && out.contains("Case 1") && out.contains("Case 3"),
        "{out}"
    );
    assert!(
        !out.contains("Case 2"),
        "closed conversations are not queued: {out}"
    );
    let (ok, out) = site.command(&["history", "case1@c.example.test"]);
    assert!(ok && out.contains("reassigned to zoe by an admin"), "{out}");
    let (ok, out) = site.command(&["assign", "case3@c.example.test", "nobody"]);
    assert!(!ok && out.contains("not in team"), "{out}");
    // Released, it is routed again and lands with someone; the history says an admin did it.
    let (ok, out) = site.command(&["release", "case3@c.example.test"]);
    assert!(ok, "{out}");
    wait_all_filed(&mut client, 3, LIMIT).await.unwrap();
    let (ok, out) = site.command(&["history", "case3@c.example.test"]);
    assert!(ok && out.contains("by an admin"), "{out}");
    assert!(!out.contains("by a person"), "{out}");
    // Give the daemon a folder poll: it must find the store already agrees and not re-route.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(daemon).await;
    assert_eq!(
        folder_of(&mut client, "case1@c.example.test").await,
        Some(agent_folder("zoe"))
    );
    let store = site.store();
    let load: u64 = ["zoe", "alice", "bob"]
        .iter()
        .map(|a| store.open_count(a).unwrap())
        .sum();
    assert_eq!(
        load, 2,
        "case 1 and the released case 3 are open, case 2 is closed"
    );
}

#[tokio::test]
async fn explain_while_the_daemon_runs_uses_the_live_rotation() {
    let site = Site::new(Flavor::Standard, "explain-live");
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    client.append("INBOX", &new_case(1)).await.unwrap();
    wait_in(
        &mut client,
        "case1@c.example.test",
        &agent_folder("alice"),
        &daemon,
    )
    .await;
    let eml = site.dir.path().join("next.eml");
    std::fs::write(&eml, new_case(2)).unwrap();
    let (ok, out) = site.command(&["explain", eml.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("owner:      bob"),
        "the daemon's rotation says bob is next:\n{out}"
    );
    assert!(!out.contains("could not be opened"), "{out}");
    // Explaining changes nothing: the real next conversation still goes to bob.
    client.append("INBOX", &new_case(2)).await.unwrap();
    wait_in(
        &mut client,
        "case2@c.example.test",
        &agent_folder("bob"),
        &daemon,
    )
    .await;
    stop(daemon).await;
}
