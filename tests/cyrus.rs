//! The core intake behaviour against Cyrus IMAP 3.6, so nothing depends on Dovecot's habits:
//! a backlog filed once, IDLE delivery, a reply following its owner, and a restart. Each test
//! has its own Cyrus user on the binary's shared instance.
//!
//! The tests run one at a time ([`SERIAL`]): Cyrus 3.6 as run here gives mailboxes created at
//! the same moment by freshly forked `imapd` processes the same MAILBOXID, so two users
//! created (or two daemons creating their folders) in parallel end up sharing storage, each
//! seeing the other's mail. Seen with four parallel `CREATE user/uN`: all four answered
//! `[MAILBOXID (64v305umde2n0undb5y36dz5)]`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{agent_folder, agent_folders, mail, placement, wait_all_filed, ConfigParts, AGENTS};
use postroom::store::EventKind;
use postroom_testkit::{wait_for, Cyrus, Daemon, ImapClient};

const FILE_LIMIT: Duration = Duration::from_secs(60);

/// Held by each test for its whole run (see the module documentation).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One shared mailbox on Cyrus with its own config and state.
struct CyrusSite {
    cyrus: &'static Cyrus,
    user: String,
    dir: tempfile::TempDir,
}

impl CyrusSite {
    async fn new(prefix: &str) -> CyrusSite {
        let cyrus = Cyrus::shared();
        let user = cyrus.unique_user(prefix).await.expect("create Cyrus user");
        let dir = tempfile::tempdir().expect("temp dir");
        let site = CyrusSite { cyrus, user, dir };
        let password_file = site.dir.path().join("password");
        std::fs::write(&password_file, cyrus.password()).expect("password file");
        let text = common::config_text(&ConfigParts {
            state_dir: &site.dir.path().join("state"),
            port: cyrus.port(),
            user: &site.user,
            password_file: &password_file,
            server_extra: "command_timeout_secs = 10\n",
            mailbox_extra: "",
            agents: &AGENTS,
            agent_extra: "",
            daemon_extra: "",
            team_extra: "",
            extra: "",
        });
        std::fs::write(site.config_path(), text).expect("config file");
        site
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("postroom.toml")
    }

    fn start(&self) -> Daemon {
        let config = self.config_path();
        let args = ["--config", config.to_str().expect("utf-8 path"), "run"];
        Daemon::spawn(
            env!("CARGO_BIN_EXE_postroom"),
            args,
            [("RUST_LOG", "postroom=debug")],
        )
        .expect("spawn postroom")
    }

    async fn client(&self) -> ImapClient {
        let (host, port) = (self.cyrus.host(), self.cyrus.port());
        ImapClient::connect_to(host, port, &self.user, self.cyrus.password())
            .await
            .expect("connect test client to Cyrus")
    }

    fn store(&self) -> postroom::store::Store {
        postroom::store::Store::open(&self.dir.path().join("state")).expect("open store")
    }
}

async fn stop(mut daemon: Daemon) {
    daemon.sigterm().unwrap();
    let status = daemon.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{}", daemon.output());
}

/// Waits until every message is filed; on failure shows the daemon's log and the folders.
async fn filed(daemon: &Daemon, client: &mut ImapClient, expected: usize) {
    if let Err(e) = wait_all_filed(client, expected, FILE_LIMIT).await {
        let all = placement(client).await;
        panic!("{e:#}\nfolders: {all:?}\ndaemon:\n{}", daemon.output());
    }
}

async fn wait_watching(daemon: &Daemon) {
    wait_for(
        "postroom to enter IDLE on Cyrus",
        Duration::from_secs(20),
        Duration::from_millis(50),
        async || Ok(daemon.output().contains("watching for new mail (IDLE)")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
}

/// Every Message-ID in exactly one folder, none in the inbox, `expected` in all.
fn assert_each_once(all: &[(String, Option<String>)], expected: usize) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, id) in all {
        *seen.entry(id.as_deref().expect("Message-ID")).or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "{all:?}");
    assert_eq!(seen.len(), expected);
    assert!(all.iter().all(|(f, _)| f != "INBOX"), "{all:?}");
}

fn assert_decided_once(site: &CyrusSite, expected: usize) {
    let mut decisions: BTreeMap<String, usize> = BTreeMap::new();
    for event in site.store().events().expect("events") {
        if matches!(
            event.kind,
            EventKind::Assigned | EventKind::FollowUp | EventKind::Left
        ) {
            *decisions
                .entry(event.identity.expect("identity"))
                .or_default() += 1;
        }
    }
    assert!(decisions.values().all(|n| *n == 1), "{decisions:?}");
    assert_eq!(decisions.len(), expected);
}

/// `raw` with every line ending as CRLF.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for (i, byte) in raw.iter().enumerate() {
        if *byte == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(*byte);
    }
    out
}

#[tokio::test]
async fn cyrus_a_backlog_of_real_mail_is_filed_once() {
    let _serial = SERIAL.lock().await;
    let site = CyrusSite::new("backlog").await;
    let mut client = site.client().await;
    let messages = common::ham(60);
    for raw in &messages {
        // Cyrus refuses bare LF ("Message contains bare newlines"), as RFC 5322 allows it to;
        // the corpus files are stored with LF endings.
        client.append("INBOX", &crlf(raw)).await.unwrap();
    }
    let daemon = site.start();
    wait_all_filed(&mut client, messages.len(), FILE_LIMIT)
        .await
        .unwrap();
    stop(daemon).await;
    assert_each_once(&placement(&mut client).await.unwrap(), messages.len());
    assert_decided_once(&site, messages.len());
}

#[tokio::test]
async fn cyrus_mail_appended_during_idle_is_filed_within_three_seconds() {
    let _serial = SERIAL.lock().await;
    let site = CyrusSite::new("idle").await;
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await;
    let appended = Instant::now();
    let raw = mail("idle-1@customer.example.test", "Printer down", None);
    client.append("INBOX", &raw).await.unwrap();
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
    stop(daemon).await;
}

#[tokio::test]
async fn cyrus_a_reply_follows_its_threads_owner() {
    let _serial = SERIAL.lock().await;
    let site = CyrusSite::new("thread").await;
    let mut client = site.client().await;
    let daemon = site.start();
    wait_watching(&daemon).await;
    for i in 0..3 {
        let raw = mail(&format!("root-{i}@c.example.test"), &format!("Q {i}"), None);
        client.append("INBOX", &raw).await.unwrap();
    }
    filed(&daemon, &mut client, 3).await;
    let reply = mail(
        "reply-0@c.example.test",
        "Re: Q 0",
        Some("root-0@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    filed(&daemon, &mut client, 4).await;
    let all = placement(&mut client).await.unwrap();
    let folder_of = |id: &str| {
        all.iter()
            .find(|(_, m)| m.as_deref() == Some(id))
            .map(|(f, _)| f)
    };
    assert_eq!(
        folder_of("reply-0@c.example.test"),
        folder_of("root-0@c.example.test")
    );
    assert_eq!(
        folder_of("root-0@c.example.test"),
        Some(&agent_folder("alice")),
        "{all:?}"
    );
    stop(daemon).await;
}

#[tokio::test]
async fn cyrus_a_restart_neither_reassigns_nor_misses_mail() {
    let _serial = SERIAL.lock().await;
    let site = CyrusSite::new("restart").await;
    let mut client = site.client().await;
    for i in 0..10 {
        let raw = mail(&format!("before-{i}@c.example.test"), "Before", None);
        client.append("INBOX", &raw).await.unwrap();
    }
    let daemon = site.start();
    filed(&daemon, &mut client, 10).await;
    stop(daemon).await;
    let before = placement(&mut client).await.unwrap();
    for i in 0..5 {
        let raw = mail(&format!("during-{i}@c.example.test"), "While down", None);
        client.append("INBOX", &raw).await.unwrap();
    }
    let reply = mail(
        "during-reply@c.example.test",
        "Re: Before",
        Some("before-3@c.example.test"),
    );
    client.append("INBOX", &reply).await.unwrap();
    let daemon = site.start();
    filed(&daemon, &mut client, 16).await;
    stop(daemon).await;
    let after = placement(&mut client).await.unwrap();
    assert_each_once(&after, 16);
    for entry in &before {
        assert!(after.contains(entry), "{entry:?} moved after the restart");
    }
    let folder_of = |id: &str| {
        after
            .iter()
            .find(|(_, m)| m.as_deref() == Some(id))
            .map(|(f, _)| f)
    };
    assert_eq!(
        folder_of("during-reply@c.example.test"),
        folder_of("before-3@c.example.test")
    );
    assert_decided_once(&site, 16);
}
