//! The testkit against the real Dovecot it starts: both flavors, the client's operations, and
//! the server's lifecycle (restart, kick).

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, FixedOffset};
use futures::TryStreamExt;
use postroom_testkit::{wait_for, Dovecot, Flavor, ImapClient};

/// Generous for a loaded two-core machine; Dovecot usually answers within milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

fn message(message_id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Customer <customer@example.test>\r\n\
         To: Support <support@example.test>\r\n\
         Subject: {subject}\r\n\
         Date: Thu, 03 Dec 2026 09:00:00 +0000\r\n\
         Message-ID: {message_id}\r\n\
         \r\n\
         Hello, my order has not arrived.\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn standard_flavor_moves_mail_and_isolates_users() -> Result<()> {
    let dovecot = Dovecot::shared(Flavor::Standard);
    let alice = dovecot.unique_user("alice");
    let bob = dovecot.unique_user("bob");
    let mut a = ImapClient::connect(dovecot, &alice).await?;
    let mut b = ImapClient::connect(dovecot, &bob).await?;
    assert!(a.has_capability("MOVE"), "{:?}", a.capabilities());
    assert!(a.has_capability("CONDSTORE"), "{:?}", a.capabilities());
    assert!(a
        .permanent_flags("INBOX")
        .await?
        .contains(&"\\*".to_owned()));

    a.append(
        "INBOX",
        &message("<order-1@example.test>", "Where is my order"),
    )
    .await?;
    let ids = a.message_ids("INBOX").await?;
    assert_eq!(ids, vec![(1, Some("<order-1@example.test>".to_owned()))]);
    assert!(
        a.flags("INBOX", 1).await?.is_empty(),
        "BODY.PEEK must not set \\Seen"
    );

    a.create("Assigned/Zo&AOs-").await?;
    a.uid_move("INBOX", 1, "Assigned/Zo&AOs-").await?;
    assert_eq!(a.count("INBOX").await?, 0);
    let moved = a.message_ids("Assigned/Zo&AOs-").await?;
    assert_eq!(moved, vec![(1, Some("<order-1@example.test>".to_owned()))]);
    assert!(a
        .list_folders()
        .await?
        .contains(&"Assigned/Zo&AOs-".to_owned()));

    assert_eq!(b.count("INBOX").await?, 0, "bob must not see alice's mail");
    assert!(!b
        .list_folders()
        .await?
        .iter()
        .any(|f| f.starts_with("Assigned")));
    a.logout().await?;
    b.logout().await
}

#[tokio::test]
async fn exchange_like_flavor_hides_move_and_keywords() -> Result<()> {
    let dovecot = Dovecot::shared(Flavor::ExchangeLike);
    let mut c = ImapClient::connect(dovecot, &dovecot.unique_user("exchange")).await?;
    for absent in ["MOVE", "CONDSTORE", "QRESYNC", "ENABLE", "SPECIAL-USE"] {
        assert!(
            !c.has_capability(absent),
            "{absent} in {:?}",
            c.capabilities()
        );
    }
    for present in ["IMAP4rev1", "IDLE", "UIDPLUS", "LITERAL+", "NAMESPACE"] {
        assert!(
            c.has_capability(present),
            "{present} not in {:?}",
            c.capabilities()
        );
    }
    let mut permanent = c.permanent_flags("INBOX").await?;
    permanent.sort();
    assert_eq!(permanent, ["\\Deleted", "\\Seen"]);

    c.append("INBOX", &message("<x-1@example.test>", "Invoice"))
        .await?;
    c.create("Assigned/Bob").await?;
    c.uid_move("INBOX", 1, "Assigned/Bob").await?;
    assert_eq!(c.count("INBOX").await?, 0);
    let moved = c.message_ids("Assigned/Bob").await?;
    assert_eq!(moved, vec![(1, Some("<x-1@example.test>".to_owned()))]);
    assert!(
        c.flags("Assigned/Bob", 1).await?.is_empty(),
        "the fallback leaves no \\Deleted"
    );
    c.logout().await
}

#[tokio::test]
async fn exchange_like_flavor_accepts_but_drops_keywords() -> Result<()> {
    let dovecot = Dovecot::shared(Flavor::ExchangeLike);
    let mut c = ImapClient::connect(dovecot, &dovecot.unique_user("keywords")).await?;
    c.append("INBOX", &message("<k-1@example.test>", "Keyword"))
        .await?;
    c.select("INBOX").await?;
    let store = c
        .session()
        .uid_store("1", "+FLAGS (Postroom-Assigned \\Seen)")
        .await?;
    let _: Vec<_> = store.try_collect().await?;
    assert_eq!(c.flags("INBOX", 1).await?, ["\\Seen"]);
    c.logout().await
}

#[tokio::test]
async fn append_with_date_sets_internaldate() -> Result<()> {
    let dovecot = Dovecot::shared(Flavor::Standard);
    let mut c = ImapClient::connect(dovecot, &dovecot.unique_user("dated")).await?;
    let date: DateTime<FixedOffset> = DateTime::parse_from_rfc3339("2026-11-02T08:30:05+01:00")?;
    c.append_with_date("INBOX", &message("<d-1@example.test>", "Old"), date)
        .await?;
    c.select("INBOX").await?;
    let fetches: Vec<_> = c
        .session()
        .uid_fetch("1", "(UID INTERNALDATE)")
        .await?
        .try_collect()
        .await?;
    assert_eq!(fetches[0].internal_date(), Some(date));
    c.logout().await
}

#[tokio::test]
async fn delete_removes_one_message_and_missing_uids_are_errors() -> Result<()> {
    let dovecot = Dovecot::shared(Flavor::Standard);
    let mut c = ImapClient::connect(dovecot, &dovecot.unique_user("delete")).await?;
    c.append("INBOX", &message("<del-1@example.test>", "One"))
        .await?;
    c.append("INBOX", &message("<del-2@example.test>", "Two"))
        .await?;
    c.delete("INBOX", 1).await?;
    let ids = c.message_ids("INBOX").await?;
    assert_eq!(ids, vec![(2, Some("<del-2@example.test>".to_owned()))]);

    let err = c.uid_move("INBOX", 99, "INBOX").await.unwrap_err();
    assert!(
        format!("{err:#}").contains("no message with UID 99"),
        "{err:#}"
    );
    let err = c.flags("INBOX", 1).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("no message with UID 1"),
        "{err:#}"
    );
    c.logout().await
}

#[tokio::test]
async fn message_without_message_id_reports_none() -> Result<()> {
    let dovecot = Dovecot::shared(Flavor::Standard);
    let mut c = ImapClient::connect(dovecot, &dovecot.unique_user("noid")).await?;
    c.append("INBOX", b"Subject: no id\r\n\r\nbody\r\n").await?;
    assert_eq!(c.message_ids("INBOX").await?, vec![(1, None)]);
    c.logout().await
}

#[tokio::test]
async fn kick_closes_open_sessions() -> Result<()> {
    let dovecot = Dovecot::shared(Flavor::Standard);
    let user = dovecot.unique_user("kicked");
    let mut idle_reader = ImapClient::connect(dovecot, &user).await?;
    let mut commander = ImapClient::connect(dovecot, &user).await?;
    idle_reader.select("INBOX").await?;
    assert!(
        dovecot.kick(&user)?,
        "the open sessions should have been kicked"
    );

    let bye = idle_reader.wait_closed(PATIENCE).await?;
    // doveadm kick signals the session's process, which says what it says on shutdown.
    assert_eq!(bye.as_deref(), Some("Server shutting down."));
    wait_for(
        "the kicked session to refuse NOOP",
        PATIENCE,
        POLL,
        async || Ok(commander.noop().await.is_err()),
    )
    .await?;
    assert!(!dovecot.kick(&user)?, "nobody is left to kick");
    Ok(())
}

#[tokio::test]
async fn restart_keeps_port_and_mail() -> Result<()> {
    let started = Instant::now();
    let mut dovecot = Dovecot::start(Flavor::ExchangeLike)?;
    eprintln!("Dovecot::start took {:?}", started.elapsed());
    let user = dovecot.unique_user("restart");
    let mut before = ImapClient::connect(&dovecot, &user).await?;
    before
        .append("INBOX", &message("<r-1@example.test>", "Survives"))
        .await?;
    let port = dovecot.port();

    let restarted = Instant::now();
    dovecot.restart()?;
    eprintln!("Dovecot::restart took {:?}", restarted.elapsed());
    assert_eq!(dovecot.port(), port);
    let bye = before.wait_closed(PATIENCE).await?;
    assert_eq!(bye.as_deref(), Some("Server shutting down."));

    let mut after = ImapClient::connect(&dovecot, &user).await?;
    let ids = after.message_ids("INBOX").await?;
    assert_eq!(ids, vec![(1, Some("<r-1@example.test>".to_owned()))]);
    assert!(
        !after.has_capability("MOVE"),
        "the flavor survives the restart"
    );
    after.logout().await?;

    let dropped = Instant::now();
    drop(dovecot);
    eprintln!("dropping Dovecot took {:?}", dropped.elapsed());
    Ok(())
}

#[test]
fn dropping_an_instance_stops_it_and_removes_its_directory() -> Result<()> {
    let dovecot = Dovecot::start(Flavor::Standard)?;
    let port = dovecot.port();
    let config = dovecot.config_path();
    assert!(
        dovecot.log_tail().contains("starting up"),
        "{}",
        dovecot.log_tail()
    );
    let t = Instant::now();
    drop(dovecot);
    eprintln!("DEBUG drop {:?}", t.elapsed());
    assert!(!config.exists(), "{} survived", config.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}
