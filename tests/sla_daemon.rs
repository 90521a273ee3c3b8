//! SLA clocks through the whole daemon, against Dovecot and a real SMTP listener: a breach is
//! mailed once per level, a reply found in the sent folder stops the clock, a restart sends
//! nothing twice, and an escalation that comes back into the inbox creates no work.

mod common;

use std::time::Duration;

use common::{mail, placement, wait_all_filed, wait_watching, Site};
use postroom_testkit::{wait_for, Flavor, SmtpListener};

const LIMIT: Duration = Duration::from_secs(30);

fn configure(site: &Site, smtp: &SmtpListener) {
    let extra = format!(
        "\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         from = \"support@example.test\"\n\n\
         [[sla]]\nname = \"fast\"\nfirst_response = \"4s\"\nwarn_at = \"50%\"\n",
        smtp.port()
    );
    site.write_config_sections(
        "sla_check_secs = 1",
        "sent_folder = \"Sent Items\"",
        "sla = \"fast\"\nleads = [\"lead@example.test\"]",
        &extra,
    );
}

/// Subjects of the mails the listener got, each with its recipients.
fn sent(smtp: &SmtpListener) -> Vec<(String, Vec<String>)> {
    smtp.deliveries()
        .into_iter()
        .map(|d| {
            let parsed = mail_parser::MessageParser::default()
                .parse(&d.data)
                .expect("MIME");
            (
                parsed.subject().unwrap_or_default().to_string(),
                d.recipients,
            )
        })
        .collect()
}

#[tokio::test]
async fn breaches_are_mailed_once_and_a_sent_reply_stops_the_clock() {
    let smtp = SmtpListener::start().unwrap();
    let site = Site::new(Flavor::Standard, "sla");
    configure(&site, &smtp);
    let mut client = site.client().await;
    client.create("Sent Items").await.unwrap();
    let mut daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    let late = mail("late@c.example.test", "Nobody answers", None);
    client.append("INBOX", &late).await.unwrap();
    // The reply reaches the sent folder before the message it answers reaches the inbox.
    let reply = mail(
        "reply@example.test",
        "Re: Answered fast",
        Some("quick@c.example.test"),
    );
    client.append("Sent Items", &reply).await.unwrap();
    wait_for(
        "the early reply seen",
        LIMIT,
        Duration::from_millis(50),
        async || {
            Ok(daemon
                .output()
                .contains("answers no known conversation yet"))
        },
    )
    .await
    .unwrap();
    let quick = mail("quick@c.example.test", "Answered fast", None);
    client.append("INBOX", &quick).await.unwrap();
    wait_all_filed(&mut client, 2, LIMIT).await.unwrap();

    wait_for(
        "the breach mail",
        LIMIT,
        Duration::from_millis(200),
        async || {
            Ok(sent(&smtp)
                .iter()
                .any(|(s, _)| s.contains("Nobody answers") && s.contains("overdue")))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nmails: {:?}\n{}", sent(&smtp), daemon.output()));
    // Restart: the outbox remembers; a few more checks must send nothing new.
    daemon.sigterm().unwrap();
    assert!(daemon.wait_exit(LIMIT).await.unwrap().success());
    let before = sent(&smtp);
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sent(&smtp);
    assert_eq!(before, after, "nothing is sent twice after a restart");
    assert!(
        after.iter().all(|(s, _)| !s.contains("Answered fast")),
        "the reply stopped the clock: {after:?}"
    );
    let late: Vec<_> = after
        .iter()
        .filter(|(s, _)| s.contains("Nobody answers"))
        .collect();
    assert_eq!(late.len(), 2, "one warning and one breach: {after:?}");
    assert!(
        late.iter()
            .all(|(_, to)| to == &vec!["lead@example.test".to_string()]),
        "{late:?}"
    );

    // The breach mail, delivered back into the shared mailbox, is nobody's work.
    let raw = smtp.messages().pop().unwrap();
    client.append("INBOX", &raw).await.unwrap();
    wait_for(
        "the escalation filed away",
        LIMIT,
        Duration::from_millis(100),
        async || {
            let all = placement(&mut client).await?;
            Ok(all.iter().any(|(f, _)| f == "Automated") && !all.iter().any(|(f, _)| f == "INBOX"))
        },
    )
    .await
    .unwrap();
    let mut daemon = daemon;
    daemon.sigterm().unwrap();
    assert!(daemon.wait_exit(LIMIT).await.unwrap().success());
    assert_eq!(
        site.store().conversations(Some("support")).unwrap().len(),
        2
    );
}

/// A `sent_folder` that does not exist (Exchange calls it "Sent Items") is a mistake to report,
/// not a folder to create: nothing would ever be saved in it.
#[tokio::test]
async fn a_misspelt_sent_folder_is_reported_and_not_created() {
    let smtp = SmtpListener::start().unwrap();
    let site = Site::new(Flavor::Standard, "sent-typo");
    configure(&site, &smtp);
    let mut client = site.client().await;
    client.create("Sent Itmes").await.unwrap();
    let daemon = site.start();
    wait_watching(&daemon).await.unwrap();
    let out = daemon.output();
    assert!(
        out.contains("sent_folder does not exist") && out.contains("Sent Itmes"),
        "{out}"
    );
    client
        .append("INBOX", &mail("m1@c.example.test", "Hello", None))
        .await
        .unwrap();
    wait_all_filed(&mut client, 1, LIMIT).await.unwrap();
    let folders = client.list_folders().await.unwrap();
    assert!(!folders.iter().any(|f| f == "Sent Items"), "{folders:?}");
}
