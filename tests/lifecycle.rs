//! The daemon as a service: readiness and watchdog over a real notify socket, SIGHUP reloads
//! that change rules without dropping connections, a bad reload that keeps the running config,
//! and SIGTERM in the middle of a burst.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{agent_folder, mail, placement, wait_all_filed, wait_watching, Site};
use postroom_testkit::{wait_for, Daemon, Flavor};

const LIMIT: Duration = Duration::from_secs(30);

fn signal(daemon: &Daemon, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// A second mailbox on the same server, appended to a site's config.
fn second_mailbox(site: &Site, user: &str) -> String {
    format!(
        "\n[[mailbox]]\nname = \"billing\"\nserver = \"dovecot\"\nlogin = \"{user}\"\n\
         password_file = \"{}\"\nteam = \"support\"\nfolder_poll_secs = 1\n",
        site.dir.path().join("password").display()
    )
}

const URGENT_RULE: &str = "\n[[rule]]\nname = \"urgent to zoe\"\n\
    when.subject = { contains = \"urgent\" }\nassign = { agent = \"zoe\" }\n";

#[tokio::test]
async fn a_reload_changes_rules_without_reconnecting_anyone() {
    let site = Site::new(Flavor::Standard, "reload");
    let other = site.dovecot.unique_user("reload-billing");
    site.write_config(&second_mailbox(&site, &other));
    let mut client = site.client().await;
    let daemon = site.start();
    wait_for(
        "both mailboxes watching",
        LIMIT,
        Duration::from_millis(50),
        async || Ok(count(&daemon.output(), "watching for new mail") == 2),
    )
    .await
    .unwrap();
    site.write_config(&(second_mailbox(&site, &other) + URGENT_RULE));
    signal(&daemon, "HUP");
    wait_for("the reload", LIMIT, Duration::from_millis(50), async || {
        Ok(daemon.output().contains("configuration reloaded"))
    })
    .await
    .unwrap();
    // Round robin would give the first conversation to alice; the new rule says zoe.
    client
        .append(
            "INBOX",
            &mail("u1@c.example.test", "URGENT: line down", None),
        )
        .await
        .unwrap();
    wait_all_filed(&mut client, 1, LIMIT).await.unwrap();
    let all = placement(&mut client).await.unwrap();
    assert_eq!(all[0].0, agent_folder("zoe"), "{}", daemon.output());
    let out = daemon.output();
    assert_eq!(
        count(&out, "connected; ownership"),
        2,
        "nobody reconnected:\n{out}"
    );
    assert!(out.contains("kept=2"), "{out}");
}

#[tokio::test]
async fn a_bad_reload_keeps_the_running_config() {
    let site = Site::new(Flavor::Standard, "bad-reload");
    site.write_config(URGENT_RULE);
    let mut client = site.client().await;
    let mut daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    std::fs::write(site.config_path(), "[[mailbox]]\nname = \n").unwrap();
    signal(&daemon, "HUP");
    wait_for(
        "the refusal",
        LIMIT,
        Duration::from_millis(50),
        async || Ok(daemon.output().contains("reload refused")),
    )
    .await
    .unwrap();
    client
        .append("INBOX", &mail("u2@c.example.test", "urgent again", None))
        .await
        .unwrap();
    wait_all_filed(&mut client, 1, LIMIT).await.unwrap();
    assert_eq!(
        placement(&mut client).await.unwrap()[0].0,
        agent_folder("zoe")
    );
    daemon.sigterm().unwrap();
    assert!(daemon.wait_exit(LIMIT).await.unwrap().success());
}

#[tokio::test]
async fn sigterm_during_a_burst_loses_nothing_and_a_restart_finishes_the_rest() {
    let site = Site::new(Flavor::Standard, "burst");
    let mut client = site.client().await;
    let messages = common::ham(300);
    for raw in &messages {
        client.append("INBOX", raw).await.unwrap();
    }
    let mut daemon = site.start();
    wait_for(
        "the burst under way",
        LIMIT,
        Duration::from_millis(2),
        async || Ok(client.count("INBOX").await? < messages.len() as u32),
    )
    .await
    .unwrap();
    daemon.sigterm().unwrap();
    let status = daemon.wait_exit(LIMIT).await.unwrap();
    assert!(status.success(), "a clean stop: {}", daemon.output());
    let mut daemon = site.start();
    wait_all_filed(&mut client, messages.len(), LIMIT)
        .await
        .unwrap();
    // When the first run filed the whole burst before it stopped, everything is filed at once;
    // a SIGTERM sent before the new process has its handler would end it by the signal.
    wait_watching(&daemon).await.unwrap();
    daemon.sigterm().unwrap();
    assert!(daemon.wait_exit(LIMIT).await.unwrap().success());
    let all = placement(&mut client).await.unwrap();
    let mut ids: Vec<_> = all.iter().map(|(_, id)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), messages.len(), "each message once");
}

#[tokio::test]
async fn systemd_hears_ready_and_the_watchdog() {
    let site = Site::new(Flavor::Standard, "notify");
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = site.config_path();
    let args = ["--config", config.to_str().unwrap(), "run"];
    let env = [
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
        ("RUST_LOG", "postroom=info"),
    ];
    let mut daemon = Daemon::spawn(env!("CARGO_BIN_EXE_postroom"), args, env).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !(seen.contains("READY=1") && seen.matches("WATCHDOG=1").count() >= 2) {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e}: got {seen:?}\n{}", daemon.output()));
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("STATUS=every mailbox connected"), "{seen}");
    daemon.sigterm().unwrap();
    assert!(daemon.wait_exit(LIMIT).await.unwrap().success());
    let rest = {
        let mut rest = String::new();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        while let Ok(n) = socket.recv(&mut buf) {
            rest.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        rest
    };
    assert!(rest.contains("STOPPING=1"), "{rest}");
}
