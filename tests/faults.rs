//! Intake against a server that misbehaves like Exchange (issue 3): a [`FaultProxy`] between
//! the daemon and Dovecot cuts, stalls, throttles and answers with Exchange's exact lines, and
//! a person moves mail behind the daemon's back. Every test ends by reading the mailbox (each
//! message in exactly one agent folder, none parseable left in the inbox) and, once the daemon
//! has stopped, the store (each identity decided once). Field cases are named where pinned.

mod common;
#[path = "faults/crash.rs"]
mod crash;
#[path = "faults/rig.rs"]
mod rig;

use std::time::{Duration, Instant};

use common::{mail, placement, wait_all_filed, wait_watching, AGENTS};
use postroom::store::MessageState;
use postroom_testkit::{wait_for, Daemon, Dovecot, FaultProxy, Flavor};
use rig::{assert_decided_once, assert_filed_once, deliver, gaps, status, stop, Rig, FILE_LIMIT};

const POLL: Duration = Duration::from_millis(100);

#[tokio::test]
async fn the_proxy_is_transparent_and_never_logs_a_password() {
    let rig = Rig::new(Flavor::Standard, "passthrough");
    let mut client = rig.site.client().await;
    let mut ids = deliver(&mut client, "pass", 30).await;
    let mut daemon = rig.site.start();
    wait_watching(&daemon).await.unwrap();
    ids.extend(deliver(&mut client, "pass-live", 5).await);
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap();
    stop(&mut daemon).await;

    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
    let log = rig.proxy.commands();
    assert!(log.iter().any(|c| c == "LOGIN ***"), "{log:?}");
    // New mail carries no owner keyword, and the fetch says so: one STORE adds the owner's,
    // none removes the others'.
    assert!(
        log.iter()
            .any(|c| c.starts_with("UID STORE") && c.contains("+FLAGS")),
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|c| c.starts_with("UID STORE") && c.contains("-FLAGS")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|c| c == "IDLE") && log.iter().any(|c| c == "DONE"),
        "{log:?}"
    );
    assert!(
        log.iter().all(|c| !c.contains(Dovecot::PASSWORD)),
        "{log:?}"
    );
    assert_eq!(rig.proxy.connections(), 1, "{log:?}");
}

#[tokio::test]
async fn connections_cut_mid_backlog_lose_nothing_and_repeat_nothing() {
    // Small batches, so the cuts land between a batch's decisions and its MOVE (BUG-01 variant).
    let rig = Rig::with_mailbox(Flavor::Standard, "cut", "fetch_batch = 10\n");
    let mut client = rig.site.client().await;
    let ids = deliver(&mut client, "cut", 150).await;
    let mut daemon = rig.site.start();
    for round in 1..=3 {
        wait_for(
            "more moves",
            FILE_LIMIT,
            Duration::from_millis(5),
            async || Ok(rig.count_commands("UID MOVE") >= round * 3),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
        rig.proxy.cut_all();
    }
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    assert!(
        rig.proxy.connections() >= 4,
        "the daemon must reconnect after each cut"
    );
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}

#[tokio::test]
async fn a_stalled_server_is_detected_by_the_command_timeout() {
    // BUG-05 A and B: a path that goes silent without closing.
    let rig = Rig::new(Flavor::Standard, "stall");
    let mut client = rig.site.client().await;
    let mut ids = deliver(&mut client, "stall-before", 5).await;
    let mut daemon = rig.site.start();
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap();
    wait_watching(&daemon).await.unwrap();

    rig.proxy.stall(true);
    ids.extend(deliver(&mut client, "stall-during", 3).await);
    wait_for("the time-out to be noticed", FILE_LIMIT, POLL, async || {
        Ok(daemon.output().contains("did not answer within 3s")
            || daemon.output().contains("no greeting within 3s"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    let stalled_connections = rig.proxy.connections();
    rig.proxy.stall(false);
    // The stalled connection's command is still in flight; only a new session may file mail.
    rig.proxy.cut_all();
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    assert!(rig.proxy.connections() > stalled_connections.min(1));
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}

#[tokio::test]
async fn exchange_throttling_is_waited_out_without_a_reconnect_storm() {
    // BUG-06: the suggested back-off is honoured, measured between connections.
    const HINT_MS: u64 = 3000;
    let rig = Rig::new(Flavor::Standard, "throttle");
    let mut client = rig.site.client().await;
    let ids = deliver(&mut client, "throttle", 10).await;
    rig.proxy.throttle_next("^SELECT", HINT_MS);
    rig.proxy.throttle_next("^SELECT", HINT_MS);
    let mut daemon = rig.site.start();
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    let accepted = rig.proxy.accepted_at();
    assert_eq!(accepted.len(), 3, "two throttled sessions, then one good");
    for gap in gaps(&accepted) {
        assert!(
            gap >= Duration::from_millis(HINT_MS),
            "reconnected after {gap:?}"
        );
    }
    assert!(
        daemon.output().contains("Request is throttled"),
        "the reason must be logged"
    );
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}

#[tokio::test]
async fn bye_instead_of_idle_means_reconnect_and_mail_still_arrives() {
    // BUG-05 C: `* BYE` where `+ idling` was expected.
    let rig = Rig::new(Flavor::Standard, "bye");
    let mut client = rig.site.client().await;
    let daemon = rig.site.start();
    wait_watching(&daemon).await.unwrap();
    rig.proxy.bye_on_idle();
    wait_for("a second connection", FILE_LIMIT, POLL, async || {
        Ok(rig.proxy.connections() >= 2)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    let ids = deliver(&mut client, "bye", 2).await;
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    let mut daemon = daemon;
    stop(&mut daemon).await;

    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
    assert!(
        rig.proxy.connections() <= 4,
        "no storm: {}",
        rig.proxy.connections()
    );
}

#[tokio::test]
async fn server_unavailable_and_authenticated_but_not_connected_are_backed_off() {
    // Exchange Online's two "come back later" answers, then a working session.
    let rig = Rig::new(Flavor::Standard, "unavailable");
    let mut client = rig.site.client().await;
    let ids = deliver(&mut client, "unavail", 4).await;
    rig.proxy.reply_next("^LOGIN", "NO Server Unavailable. 15");
    rig.proxy
        .reply_next_and_close("^SELECT", "BAD User is authenticated but not connected.");
    let mut daemon = rig.site.start();
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    let accepted = rig.proxy.accepted_at();
    assert_eq!(accepted.len(), 3, "one refused, one dropped, one good");
    let gaps = gaps(&accepted);
    assert!(gaps[0] >= Duration::from_secs(1), "{gaps:?}");
    assert!(
        gaps[1] >= Duration::from_secs(2),
        "back-off must grow: {gaps:?}"
    );
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}

#[tokio::test]
async fn refused_logins_over_the_connection_limit_are_waited_out() {
    // Exchange's per-user connection limit shows as `NO LOGIN failed.` (research 4.3).
    let rig = Rig::new(Flavor::Standard, "refused");
    let mut client = rig.site.client().await;
    let ids = deliver(&mut client, "refused", 3).await;
    rig.proxy.refuse_logins(2);
    let mut daemon = rig.site.start();
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    assert_eq!(rig.proxy.connections(), 3);
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}

/// What an idle mailbox costs (issue 9): each folder poll asks all managed folders with one
/// LIST-STATUS on a server that has it, and never selects a folder whose only new messages
/// are the ones postroom filed itself (COPYUID).
#[tokio::test]
async fn idle_folder_polls_are_one_command_and_skip_own_moves() {
    let rig = Rig::new(Flavor::Standard, "leanpoll");
    let mut client = rig.site.client().await;
    let mut daemon = rig.site.start();
    wait_watching(&daemon).await.unwrap();
    let ids = deliver(&mut client, "leanpoll", 6).await;
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap();
    let filed_at = rig.proxy.commands().len();
    // A few folder polls (every second in the tests' config) after everything was filed.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    stop(&mut daemon).await;

    let log = rig.proxy.commands();
    let is_poll = |c: &&String| c.starts_with("LIST \"\" (") && c.contains("RETURN (STATUS");
    let polls = log.iter().filter(is_poll).count();
    assert!(polls >= 2, "no LIST-STATUS polls: {log:?}");
    // The poll's LIST-STATUS also tells the inbox's UIDNEXT, so a quiet round does not list
    // the inbox again before IDLE.
    let quiet = &log[filed_at..];
    let listings = quiet
        .iter()
        .filter(|c| c.starts_with("UID FETCH") && c.ends_with(":* (UID)"))
        .count();
    let quiet_polls = quiet.iter().filter(is_poll).count();
    assert!(
        quiet_polls >= 2 && listings < quiet_polls,
        "{listings} inbox listings in {quiet_polls} quiet rounds: {quiet:?}"
    );
    assert!(
        !log.iter().any(|c| c.starts_with("STATUS ")),
        "a STATUS per folder on a server with LIST-STATUS: {log:?}"
    );
    // The reconcile selects agent folders too, but lists only Message-IDs; reading arrivals
    // fetches bodies.
    let mut selected = "";
    for command in &log {
        if let Some(folder) = command.strip_prefix("SELECT ") {
            selected = folder;
        } else if command.contains("BODY.PEEK[TEXT]") {
            assert!(
                !selected.contains("Assigned"),
                "an agent folder was read back after postroom's own moves: {log:?}"
            );
        }
    }
    assert_filed_once(&mut client, &ids).await;
}

/// Exchange silently stops pushing on long IDLEs (research notes, section on IDLE). With a
/// server that never tells of new mail unasked, mail still arrives: the folder poll's view of
/// the inbox's UIDNEXT sends the worker to list it (field case BUG-04: nothing waits for a
/// later message), and a quiet round's shortcut never skips mail the poll saw.
#[tokio::test]
async fn a_server_that_tells_of_new_mail_only_when_asked_still_gets_every_message_filed() {
    let rig = Rig::new(Flavor::Standard, "mute");
    // No full reconcile during the test: it would find the mail by listing every folder, and
    // the poll's own view of the inbox is what is tested here.
    let path = rig.site.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        // No `\Answered` check either: its SELECTs of agent folders end with the inbox
        // selected again, and a SELECT tells the inbox's message count.
        text.replace(
            "reconcile_secs = 2",
            "reconcile_secs = 600\nanswered_flag = false",
        ),
    )
    .unwrap();
    let mut client = rig.site.client().await;
    let mut daemon = rig.site.start();
    wait_watching(&daemon).await.unwrap();
    rig.proxy.mute_news(true);
    let mut ids = Vec::new();
    for round in 0..3 {
        let batch = deliver(&mut client, &format!("mute{round}"), 2).await;
        ids.extend(batch);
        wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
            .await
            .unwrap();
    }
    stop(&mut daemon).await;
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}

#[tokio::test]
async fn without_move_and_idle_the_daemon_polls_and_still_files_everything() {
    let rig = Rig::new(Flavor::Standard, "nocaps");
    rig.proxy.strip_capabilities(&["MOVE", "IDLE"]);
    let mut client = rig.site.client().await;
    let mut ids = deliver(&mut client, "nocaps-before", 8).await;
    let mut daemon = rig.site.start();
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap();
    ids.extend(deliver(&mut client, "nocaps-live", 3).await);
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    let log = rig.proxy.commands();
    assert!(
        !log.iter().any(|c| c.starts_with("UID MOVE") || c == "IDLE"),
        "{log:?}"
    );
    assert!(log.iter().any(|c| c.starts_with("UID COPY")), "{log:?}");
    assert!(daemon.output().contains("(polling)"), "{}", daemon.output());
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}

#[tokio::test]
async fn ok_with_no_data_quarantines_that_message_and_files_the_rest() {
    // Exchange answers `OK FETCH completed.` with no FETCH data for an unconvertible item.
    let rig = Rig::new(Flavor::Standard, "nodata");
    let mut client = rig.site.client().await;
    let ids = deliver(&mut client, "nodata", 6).await;
    let bad = client.message_ids("INBOX").await.unwrap()[2].0;
    rig.proxy.drop_fetch_data_for(bad);
    let mut daemon = rig.site.start();
    let good: Vec<String> = ids
        .iter()
        .filter(|id| !id.ends_with("-2@c.example.test"))
        .cloned()
        .collect();
    wait_for("the others filed", FILE_LIMIT, POLL, async || {
        let all = placement(&mut client).await?;
        Ok(all
            .iter()
            .filter(|(f, _)| f.starts_with("Assigned/"))
            .count()
            == good.len())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    let report = status(&rig.site);
    stop(&mut daemon).await;

    assert!(report.contains(&format!("INBOX UID {bad} ")), "{report}");
    let inbox = client.message_ids("INBOX").await.unwrap();
    assert_eq!(inbox.len(), 1, "the empty one stays where it is: {inbox:?}");
    assert_decided_once(&rig.site, good.len());
}

#[tokio::test]
async fn a_message_that_was_empty_once_is_retried_without_waiting_for_a_reconnect() {
    // Exchange returns freshly arrived mail empty for a while (research section 8): the
    // message must be fetched again, not left until the connection happens to drop.
    let rig = Rig::new(Flavor::Standard, "nodata-once");
    let mut client = rig.site.client().await;
    let mut daemon = rig.site.start();
    wait_watching(&daemon).await.unwrap();
    rig.proxy.drop_fetch_data_for(1);
    let ids = deliver(&mut client, "empty-once", 1).await;
    wait_for("the empty fetch", FILE_LIMIT, POLL, async || {
        Ok(daemon.output().contains("message quarantined"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    rig.proxy.restore_fetch_data();
    wait_all_filed(&mut client, ids.len(), Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    assert_eq!(rig.proxy.connections(), 1, "no reconnect was needed");
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}

#[tokio::test]
async fn a_poison_fetch_response_does_not_block_the_rest() {
    // BUG-07: one FETCH response no parser accepts, in the middle of the inbox.
    let rig = Rig::new(Flavor::Standard, "poison");
    let mut client = rig.site.client().await;
    let ids = deliver(&mut client, "poison", 5).await;
    let bad = client.message_ids("INBOX").await.unwrap()[1].0;
    rig.proxy.poison_fetch_for(bad);
    let mut daemon = rig.site.start();
    let good: Vec<String> = ids
        .iter()
        .filter(|id| !id.ends_with("-1@c.example.test"))
        .cloned()
        .collect();
    wait_for(
        "the others filed",
        Duration::from_secs(45),
        POLL,
        async || {
            let all = placement(&mut client).await?;
            Ok(all
                .iter()
                .filter(|(f, _)| f.starts_with("Assigned/"))
                .count()
                == good.len())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    let report = status(&rig.site);
    stop(&mut daemon).await;

    assert!(report.contains(&format!("INBOX UID {bad} ")), "{report}");
    assert!(
        report.contains("fetch failed"),
        "the reason is recorded: {report}"
    );
    assert!(
        rig.proxy.connections() <= 6,
        "no tight reconnect loop: {}",
        rig.proxy.connections()
    );
    assert_eq!(client.message_ids("INBOX").await.unwrap().len(), 1);
    assert_decided_once(&rig.site, good.len());
}

#[tokio::test]
async fn a_uidvalidity_change_reassigns_nothing_and_skips_nothing() {
    // BUG-02: the inbox is rebuilt while the daemon is cut off; new mail gets low UIDs.
    let rig = Rig::new(Flavor::Standard, "uidvalidity");
    let mut client = rig.site.client().await;
    let mut ids = deliver(&mut client, "known", 6).await;
    let mut daemon = rig.site.start();
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap();
    wait_watching(&daemon).await.unwrap();
    let before = placement(&mut client).await.unwrap();
    let old_validity = client.select("INBOX").await.unwrap().uid_validity;

    // The daemon is cut off (its session ends, and reconnects get no greeting) while the
    // inbox is rebuilt; the test client leaves INBOX before renaming it.
    rig.proxy.stall(true);
    rig.proxy.cut_all();
    client.select("Assigned").await.unwrap();
    // RFC 3501 6.3.5: renaming INBOX moves its messages and leaves a new, empty INBOX; the
    // new one must be created before mail can be appended.
    client
        .session()
        .rename("INBOX", "Inbox-before-rebuild")
        .await
        .unwrap();
    client.create("INBOX").await.unwrap();
    ids.extend(deliver(&mut client, "new", 2).await);
    let new_validity = client.select("INBOX").await.unwrap().uid_validity;
    assert_ne!(
        old_validity, new_validity,
        "the rebuild must change UIDVALIDITY"
    );
    rig.proxy.stall(false);

    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;
    assert!(
        daemon.output().contains("UIDVALIDITY changed"),
        "{}",
        daemon.output()
    );
    let after = placement(&mut client).await.unwrap();
    for entry in &before {
        assert!(after.contains(entry), "{entry:?} moved after the rebuild");
    }
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}

#[tokio::test]
async fn a_message_moved_by_a_person_during_the_move_is_recorded_not_duplicated() {
    // BUG-01: the person wins the race; the daemon's MOVE finds nothing.
    let rig = Rig::new(Flavor::Standard, "race");
    let mut client = rig.site.client().await;
    client.create("Billing").await.unwrap();
    let id = "20250310091355.4411@customer-a.example.test";
    client
        .append("INBOX", &mail(id, "Invoice 4411 wrong", None))
        .await
        .unwrap();
    let hold = rig.proxy.hold_next("^UID (MOVE|COPY)");
    let mut daemon = rig.site.start();
    hold.wait_held(FILE_LIMIT).await.unwrap();
    let uid = client.message_ids("INBOX").await.unwrap()[0].0;
    client.uid_move("INBOX", uid, "Billing").await.unwrap();
    hold.release();
    let noticed = Duration::from_secs(15);
    wait_for(
        "the person's move to be recorded",
        noticed,
        POLL,
        async || Ok(daemon.output().contains("moved away")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    let later = deliver(&mut client, "race-later", 1).await;
    wait_all_filed(&mut client, 1, FILE_LIMIT).await.unwrap();
    stop(&mut daemon).await;

    assert_eq!(client.count("Billing").await.unwrap(), 1);
    assert_filed_once(&mut client, &later).await;
    assert_decided_once(&rig.site, 2);
    let store = rig.site.store();
    let record = store.message_by_id(id).unwrap().expect("recorded");
    assert_eq!(record.state, MessageState::Gone, "{record:?}");
    assert_eq!(store.conversations(Some("support")).unwrap().len(), 2);
}

#[tokio::test]
async fn a_dovecot_restart_is_a_reconnect_and_work_goes_on() {
    let mut dovecot = Dovecot::start(Flavor::Standard).unwrap();
    let proxy = FaultProxy::in_front_of(&dovecot).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let user = dovecot.unique_user("restart");
    let (state, password) = (dir.path().join("state"), dir.path().join("password"));
    std::fs::write(&password, Dovecot::PASSWORD).unwrap();
    let config = dir.path().join("postroom.toml");
    let text = common::config_text(&common::ConfigParts {
        state_dir: &state,
        port: proxy.port(),
        user: &user,
        password_file: &password,
        server_extra: "command_timeout_secs = 3\n",
        mailbox_extra: "",
        agents: &AGENTS,
        agent_extra: "",
        daemon_extra: "",
        team_extra: "",
        extra: "",
    });
    std::fs::write(&config, text).unwrap();
    let mut client = postroom_testkit::ImapClient::connect(&dovecot, &user)
        .await
        .unwrap();
    let mut ids = deliver(&mut client, "before-restart", 4).await;
    let args = ["--config", config.to_str().unwrap(), "run"];
    let mut daemon = Daemon::spawn(
        env!("CARGO_BIN_EXE_postroom"),
        args,
        [("RUST_LOG", "postroom=debug")],
    )
    .unwrap();
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap();
    wait_watching(&daemon).await.unwrap();

    let restarted = Instant::now();
    // The proxy has its own thread, so blocking this one for the restart stalls nothing else.
    dovecot.restart().unwrap();
    let mut client = postroom_testkit::ImapClient::connect(&dovecot, &user)
        .await
        .unwrap();
    ids.extend(deliver(&mut client, "after-restart", 3).await);
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    assert!(proxy.connections() >= 2, "reconnected after the restart");
    assert!(restarted.elapsed() < FILE_LIMIT);
    assert_filed_once(&mut client, &ids).await;
    rig::assert_decided_once_in(&state, ids.len());
}

#[tokio::test]
async fn a_message_without_message_id_delivered_twice_makes_two_conversations() {
    // BUG-13: two scanner alerts, same text, different Date, no Message-ID.
    let rig = Rig::new(Flavor::Standard, "no-id");
    let mut client = rig.site.client().await;
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/field/BUG-13.eml"
    ))
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let second = text.replace("07:58:01 +0100", "08:14:37 +0100");
    assert_ne!(text, second, "the fixture's Date changed");
    client.append("INBOX", text.as_bytes()).await.unwrap();
    client.append("INBOX", second.as_bytes()).await.unwrap();
    let mut daemon = rig.site.start();
    wait_all_filed(&mut client, 2, FILE_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    let all = placement(&mut client).await.unwrap();
    assert!(
        all.iter()
            .all(|(f, id)| f.starts_with("Assigned/") && id.is_none()),
        "{all:?}"
    );
    assert_decided_once(&rig.site, 2);
    let conversations = rig.site.store().conversations(Some("support")).unwrap();
    assert_eq!(conversations.len(), 2, "{conversations:?}");
}

/// A folder listing the server refuses is no evidence that the folder's messages are gone.
/// async-imap reports a refused UID FETCH, and one whose connection is cut mid-answer, as a
/// short success; reconciliation once took that for the truth and closed every conversation
/// filed in the folder as "deleted or moved away" (seen in the chaos run).
#[tokio::test]
async fn a_refused_folder_listing_closes_nothing() {
    let rig = Rig::new(Flavor::Standard, "shortlist");
    let mut client = rig.site.client().await;
    let ids = deliver(&mut client, "short", 6).await;
    let mut daemon = rig.site.start();
    wait_all_filed(&mut client, ids.len(), FILE_LIMIT)
        .await
        .unwrap();
    stop(&mut daemon).await;

    // The reconciliation after the restart lists each folder by Message-ID; the first few
    // such listings are refused.
    const REFUSED: usize = 3;
    let listing = r"^UID FETCH 1:\* \(UID BODY\.PEEK\[HEADER\.FIELDS \(MESSAGE-ID\)\]\)";
    let is_listing = |c: &&String| c.starts_with("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS");
    let before = rig.proxy.commands().iter().filter(is_listing).count();
    for _ in 0..REFUSED {
        rig.proxy.reply_next(listing, "NO Server Unavailable. 15");
    }
    let mut daemon = rig.site.start();
    // One reconciliation lists six folders. Each refusal now ends the session, and the next
    // one lists again; taking the refusals as empty folders, it would go on to the end.
    wait_for(
        "a reconciliation's listings",
        FILE_LIMIT,
        POLL,
        async || {
            let now = rig.proxy.commands().iter().filter(is_listing).count();
            Ok(now >= before + 6)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    let store = rig.site.store();
    let closed: Vec<_> = store
        .conversations(None)
        .unwrap()
        .into_iter()
        .filter(|c| c.state == postroom::store::ConversationState::Closed)
        .map(|c| c.id)
        .collect();
    assert!(closed.is_empty(), "closed on a refused listing: {closed:?}");
    drop(store);
    assert_filed_once(&mut client, &ids).await;
    assert_decided_once(&rig.site, ids.len());
}
