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

// ---------------------------------------------------------------------------------------------
// The worker and the escalation tick in this process, on a manual clock, against Dovecot and
// the SMTP listener: days of business time pass in seconds. Mails are told apart by their
// `Date:` header, which is the manual clock's time when they were queued.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use futures::TryStreamExt;
use postroom::clock::Clock;
use postroom::config::Config;
use postroom::escalate::Escalator;
use postroom::notify::Mailer;
use postroom::store::{ResponseSource, Store};
use postroom::worker::Worker;
use tokio::sync::watch;

const LEAD: &str = "nina.lead@example.test";
const MANAGER: &str = "manager@example.test";

fn berlin(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).expect("a test instant")
}

fn utc(text: &str) -> DateTime<Utc> {
    berlin(text).with_timezone(&Utc)
}

/// A Mon-Fri 09:00-17:00 Berlin office, policy `std` (4h) on it, and `[smtp]`.
fn configure_office(site: &Site, smtp: &SmtpListener, mailbox: &str, team: &str, sla: &str) {
    let extra = format!(
        "\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         from = \"support@example.test\"\n\n\
         [[calendar]]\nname = \"office\"\ntimezone = \"Europe/Berlin\"\n\
         mon = [\"09:00-17:00\"]\ntue = [\"09:00-17:00\"]\nwed = [\"09:00-17:00\"]\n\
         thu = [\"09:00-17:00\"]\nfri = [\"09:00-17:00\"]\n\n\
         [[sla]]\nname = \"std\"\nfirst_response = \"4h\"\ncalendar = \"office\"\n{sla}\n",
        smtp.port()
    );
    site.write_config_sections(
        "",
        &format!("sent_folder = \"Sent Items\"\nsla = \"std\"\n{mailbox}"),
        &format!("leads = [\"{LEAD}\"]\n{team}"),
        &extra,
    );
}

/// The worker of mailbox `support` and the escalation tick, running in this process.
struct InProcess {
    store: Store,
    escalator: Escalator,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl InProcess {
    fn start(site: &Site, clock: &Clock) -> InProcess {
        let config = Arc::new(Config::load(&site.config_path()).expect("config"));
        let store = Store::open(&site.state_dir()).expect("store");
        let mailbox = config.mailbox("support").expect("mailbox").clone();
        let password = postroom::daemon::mailbox_password(&mailbox).expect("password");
        let (stop, stop_rx) = watch::channel(false);
        let worker = Worker::new(
            config.clone(),
            mailbox,
            password,
            store.clone(),
            clock.clone(),
            stop_rx,
        )
        .expect("worker");
        let worker = tokio::spawn(worker.run());
        let mailer = Mailer::from_config(config.smtp.as_ref().expect("[smtp]")).expect("mailer");
        let escalator = Escalator::new(config, store.clone(), clock.clone(), mailer).unwrap();
        InProcess {
            store,
            escalator,
            stop,
            worker,
        }
    }

    /// Ends everything at once, as `kill -9` would: the worker task is dropped wherever it is
    /// and nothing is flushed on the way out.
    async fn kill(self) {
        self.worker.abort();
        let _ = self.worker.await;
        drop(self.stop);
    }

    /// Ticks every `step` of the manual clock until it reaches `until` (inclusive).
    async fn tick_until(&self, clock: &Clock, step: chrono::Duration, until: DateTime<Utc>) {
        while clock.now() < until {
            clock.advance(step.min(until - clock.now()));
            self.escalator.tick().await.expect("tick");
        }
    }

    /// Waits until conversation `id` has a first response recorded.
    async fn wait_response(&self, id: &str) -> postroom::store::Conversation {
        let mut found = None;
        wait_for(
            "the response recorded",
            LIMIT,
            Duration::from_millis(50),
            async || {
                found = self
                    .store
                    .conversation(id)?
                    .filter(|c| c.first_response_at.is_some());
                Ok(found.is_some())
            },
        )
        .await
        .unwrap();
        found.unwrap()
    }
}

/// Every mail the listener got: (Date, subject, recipients).
fn mails(smtp: &SmtpListener) -> Vec<(DateTime<Utc>, String, Vec<String>)> {
    smtp.deliveries()
        .into_iter()
        .map(|d| {
            let parsed = mail_parser::MessageParser::default()
                .parse(&d.data)
                .expect("MIME");
            let date = parsed.date().expect("a Date header").to_timestamp();
            (
                DateTime::from_timestamp(date, 0).unwrap(),
                parsed.subject().unwrap_or_default().to_string(),
                d.recipients,
            )
        })
        .collect()
}

/// The conversation of the message with this Message-ID, once it is filed.
async fn filed(run: &InProcess, client: &mut postroom_testkit::ImapClient, id: &str) -> String {
    wait_for(
        "the message filed",
        LIMIT,
        Duration::from_millis(50),
        async || {
            let all = placement(client).await?;
            Ok(common::folder_of(&all, id).is_some_and(|f| f != "INBOX"))
        },
    )
    .await
    .unwrap();
    let record = run.store.message_by_id(id).unwrap().expect("recorded");
    record.conversation
}

#[tokio::test]
async fn bug_21_one_breach_mail_then_one_reminder_each_business_morning_across_a_kill() {
    let smtp = SmtpListener::start().unwrap();
    let site = Site::new(Flavor::Standard, "remind");
    configure_office(&site, &smtp, "", "", "reminder = \"09:00\"");
    let mut client = site.client().await;
    client.create("Sent Items").await.unwrap();
    let clock = Clock::manual(utc("2025-03-07T15:00:00+01:00"));
    let run = InProcess::start(&site, &clock);

    // Friday 15:00: the field case's message arrives (INTERNALDATE 15:00).
    let raw = std::fs::read("/work/shared/cases/inputs/BUG-01.eml").expect("field case BUG-01");
    let arrival = berlin("2025-03-07T15:00:00+01:00");
    client
        .append_with_date("INBOX", &raw, arrival)
        .await
        .unwrap();
    let conv = filed(
        &run,
        &mut client,
        "20250310091355.4411@customer-a.example.test",
    )
    .await;

    // Minute ticks through the weekend to Monday 11:00:30, 30 s after the breach mail.
    let minute = chrono::Duration::minutes(1);
    run.tick_until(&clock, minute, utc("2025-03-10T11:00:00+01:00"))
        .await;
    run.tick_until(
        &clock,
        chrono::Duration::seconds(30),
        utc("2025-03-10T11:00:30+01:00"),
    )
    .await;
    assert_eq!(mails(&smtp).len(), 1, "the breach mail went out at 11:00");
    run.kill().await;

    // Back up at once; minute ticks to Wednesday 10:30, when the agent's reply is sent.
    let run = InProcess::start(&site, &clock);
    let half = chrono::Duration::seconds(30);
    run.tick_until(&clock, half, utc("2025-03-10T11:01:00+01:00"))
        .await;
    run.tick_until(&clock, minute, utc("2025-03-12T10:30:00+01:00"))
        .await;
    let reply = mail(
        "reply-bug21@example.test",
        "Re: Order 55821 arrived damaged",
        Some("20250310091355.4411@customer-a.example.test"),
    );
    let sent_at = berlin("2025-03-12T10:30:00+01:00");
    client
        .append_with_date("Sent Items", &reply, sent_at)
        .await
        .unwrap();
    let answered = run.wait_response(&conv).await;
    assert_eq!(
        answered.first_response_at,
        Some(sent_at.with_timezone(&Utc))
    );
    assert_eq!(answered.first_response_by, Some(ResponseSource::SentFolder));
    run.tick_until(&clock, minute, utc("2025-03-13T12:00:00+01:00"))
        .await;

    let got = mails(&smtp);
    let when: Vec<DateTime<Utc>> = got.iter().map(|(at, _, _)| *at).collect();
    assert_eq!(
        when,
        [
            utc("2025-03-10T11:00:00+01:00"),
            utc("2025-03-11T09:00:00+01:00"),
            utc("2025-03-12T09:00:00+01:00"),
        ],
        "{got:#?}"
    );
    assert!(got[0].1.contains("first response overdue"), "{got:?}");
    for (_, subject, to) in &got[1..] {
        assert!(
            subject.contains("reminder: first response still overdue"),
            "{subject}"
        );
        assert_eq!(to, &vec![LEAD.to_string()]);
    }
    let text = mail_parser::MessageParser::default()
        .parse(&smtp.messages()[2])
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned();
    // Monday 11:00-17:00 and Tuesday 09:00-17:00 are 14 business hours overdue.
    assert!(
        text.contains("Overdue by (business time): 14h 00m"),
        "{text}"
    );
    run.kill().await;
}

#[tokio::test]
async fn the_lead_gets_one_digest_per_business_day_instead_of_single_mails() {
    let smtp = SmtpListener::start().unwrap();
    let site = Site::new(Flavor::Standard, "digest");
    let levels = format!(
        "warn_at = \"50%\"\n[[sla.escalation]]\nafter = \"0m\"\nto = [\"lead\", \"{MANAGER}\"]\n"
    );
    let team = "digest = \"09:30\"\ncalendar = \"office\"";
    configure_office(&site, &smtp, "", team, &levels);
    let mut client = site.client().await;
    let clock = Clock::manual(utc("2025-03-07T15:00:00+01:00"));
    let run = InProcess::start(&site, &clock);

    // A arrives Friday 15:00 (breach Monday 11:00); B Monday 15:00 (warned Monday 17:00,
    // breach Tuesday 11:00). B's subject tries to inject a header.
    let a = mail("digest-a@c.example.test", "Printer down", None);
    client
        .append_with_date("INBOX", &a, berlin("2025-03-07T15:00:00+01:00"))
        .await
        .unwrap();
    let conv_a = filed(&run, &mut client, "digest-a@c.example.test").await;
    let quarter = chrono::Duration::minutes(15);
    run.tick_until(&clock, quarter, utc("2025-03-10T15:00:00+01:00"))
        .await;
    let b = mail(
        "digest-b@c.example.test",
        "=?utf-8?B?TGl2cmFpc29uIHJldGFyZMOpZQ0KQmNjOiBldmlsQGV2aWwuZXhhbXBsZS50ZXN0?=",
        None,
    );
    client
        .append_with_date("INBOX", &b, berlin("2025-03-10T15:00:00+01:00"))
        .await
        .unwrap();
    let conv_b = filed(&run, &mut client, "digest-b@c.example.test").await;

    // Through Tuesday 12:00, then a restart and the rest of Tuesday: one digest.
    run.tick_until(&clock, quarter, utc("2025-03-11T12:00:00+01:00"))
        .await;
    run.kill().await;
    let run = InProcess::start(&site, &clock);
    run.tick_until(&clock, quarter, utc("2025-03-11T23:00:00+01:00"))
        .await;

    let got = mails(&smtp);
    let summary: Vec<(DateTime<Utc>, Vec<String>)> =
        got.iter().map(|(at, _, to)| (*at, to.clone())).collect();
    assert_eq!(
        summary,
        [
            (utc("2025-03-10T09:30:00+01:00"), vec![LEAD.to_string()]),
            (utc("2025-03-10T11:00:00+01:00"), vec![MANAGER.to_string()]),
            (utc("2025-03-11T09:30:00+01:00"), vec![LEAD.to_string()]),
            (utc("2025-03-11T11:00:00+01:00"), vec![MANAGER.to_string()]),
        ],
        "the lead gets no single mail, the manager still does: {got:#?}"
    );
    assert_eq!(
        got[0].1,
        "[postroom digest] support: 1 conversation needs attention on Mon 2025-03-10"
    );
    assert_eq!(
        got[2].1,
        "[postroom digest] support: 2 conversations need attention on Tue 2025-03-11"
    );
    let raw = &smtp.messages()[2];
    let head = String::from_utf8_lossy(raw);
    let head = head.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(!head.contains("\r\nbcc:"), "{head}");
    let digest = mail_parser::MessageParser::default().parse(raw).unwrap();
    let text = digest.body_text(0).unwrap();
    let (pos_a, pos_b) = (
        text.find(&format!("Conversation: {conv_a}"))
            .expect("A listed"),
        text.find(&format!("Conversation: {conv_b}"))
            .expect("B listed"),
    );
    assert!(pos_a < pos_b, "oldest first: {text}");
    assert!(text.contains("1. first response overdue"), "{text}");
    assert!(text.contains("2. first response due soon"), "{text}");
    assert!(
        text.contains("Subject: Livraison retardée Bcc: evil@evil.example.test"),
        "{text}"
    );

    // The warning to B's owner (no address: the leads) and the lead's share of each level
    // were recorded as handled: with the digest turned off nothing of it is sent late.
    let skipped = run
        .store
        .outbox()
        .unwrap()
        .into_iter()
        .filter(|m| matches!(m.state, postroom::store::OutboxState::Skipped { .. }))
        .map(|m| m.key)
        .collect::<Vec<_>>();
    for key in [
        format!("{conv_a}/first/warning"),
        format!("{conv_b}/first/warning"),
    ] {
        assert!(skipped.contains(&key), "{key} in {skipped:?}");
    }
    run.kill().await;
    configure_office(&site, &smtp, "", "calendar = \"office\"", &levels);
    let run = InProcess::start(&site, &clock);
    run.tick_until(&clock, quarter, utc("2025-03-12T10:00:00+01:00"))
        .await;
    assert_eq!(mails(&smtp).len(), 4, "{:#?}", mails(&smtp));
    run.kill().await;
}

/// Sets `\Answered` on the message with this Message-ID in `folder`, as Outlook does on reply.
async fn set_answered(client: &mut postroom_testkit::ImapClient, folder: &str, id: &str) {
    let uid = client
        .message_ids(folder)
        .await
        .unwrap()
        .into_iter()
        .find(|(_, m)| m.as_deref() == Some(&format!("<{id}>")))
        .map(|(uid, _)| uid)
        .expect("the message is in the folder");
    let session = client.session();
    session.select(folder).await.unwrap();
    session
        .uid_store(uid.to_string(), "+FLAGS (\\Answered)")
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_answered_flag_stops_the_clock_until_a_sent_reply_with_an_earlier_time() {
    let smtp = SmtpListener::start().unwrap();
    let site = Site::new(Flavor::Standard, "answered");
    configure_office(&site, &smtp, "", "", "");
    let mut client = site.client().await;
    client.create("Sent Items").await.unwrap();
    let nine = berlin("2025-03-10T09:00:00+01:00");
    let clock = Clock::manual(nine.with_timezone(&Utc));
    let run = InProcess::start(&site, &clock);
    for id in ["flagged@c.example.test", "unflagged@c.example.test"] {
        let raw = mail(id, &format!("Question {id}"), None);
        client.append_with_date("INBOX", &raw, nine).await.unwrap();
    }
    let flagged = filed(&run, &mut client, "flagged@c.example.test").await;
    filed(&run, &mut client, "unflagged@c.example.test").await;

    // 10:00: an agent replies in Outlook; only the flag shows it.
    clock.advance(chrono::Duration::hours(1));
    let all = placement(&mut client).await.unwrap();
    let folder = common::folder_of(&all, "flagged@c.example.test").unwrap();
    set_answered(&mut client, &folder, "flagged@c.example.test").await;
    let conv = run.wait_response(&flagged).await;
    assert_eq!(
        conv.first_response_at,
        Some(utc("2025-03-10T10:00:00+01:00"))
    );
    assert_eq!(conv.first_response_by, Some(ResponseSource::AnsweredFlag));
    let history = run.store.history(&flagged).unwrap();
    assert!(
        history
            .iter()
            .any(|e| e.detail.contains("\\Answered flag seen")),
        "{history:#?}"
    );

    // Past both deadlines (13:00): only the unflagged conversation is escalated.
    run.tick_until(
        &clock,
        chrono::Duration::minutes(10),
        utc("2025-03-10T14:00:00+01:00"),
    )
    .await;
    let got = mails(&smtp);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].1.contains("Question unflagged"), "{got:?}");

    // The reply shows up in Sent Items later, sent at 09:40: it replaces the hint.
    let reply = mail(
        "re-flagged@example.test",
        "Re: Question",
        Some("flagged@c.example.test"),
    );
    let sent = berlin("2025-03-10T09:40:00+01:00");
    client
        .append_with_date("Sent Items", &reply, sent)
        .await
        .unwrap();
    wait_for(
        "the sent reply taken",
        LIMIT,
        Duration::from_millis(50),
        async || {
            let conv = run.store.conversation(&flagged)?.unwrap();
            Ok(conv.first_response_by == Some(ResponseSource::SentFolder))
        },
    )
    .await
    .unwrap();
    let conv = run.store.conversation(&flagged).unwrap().unwrap();
    assert_eq!(conv.first_response_at, Some(sent.with_timezone(&Utc)));
    run.kill().await;
}

#[tokio::test]
async fn with_answered_flag_off_the_flag_is_ignored() {
    let smtp = SmtpListener::start().unwrap();
    let site = Site::new(Flavor::Standard, "noflag");
    configure_office(&site, &smtp, "answered_flag = false", "", "");
    let mut client = site.client().await;
    let nine = berlin("2025-03-10T09:00:00+01:00");
    let clock = Clock::manual(nine.with_timezone(&Utc));
    let run = InProcess::start(&site, &clock);
    let raw = mail("ignored@c.example.test", "Flag ignored", None);
    client.append_with_date("INBOX", &raw, nine).await.unwrap();
    let conv = filed(&run, &mut client, "ignored@c.example.test").await;
    let all = placement(&mut client).await.unwrap();
    let folder = common::folder_of(&all, "ignored@c.example.test").unwrap();
    set_answered(&mut client, &folder, "ignored@c.example.test").await;
    // Several folder polls (one a second) go by.
    tokio::time::sleep(Duration::from_secs(4)).await;
    run.tick_until(
        &clock,
        chrono::Duration::minutes(10),
        utc("2025-03-10T13:00:00+01:00"),
    )
    .await;
    assert_eq!(
        run.store
            .conversation(&conv)
            .unwrap()
            .unwrap()
            .first_response_at,
        None
    );
    assert_eq!(mails(&smtp).len(), 1, "the breach is mailed");
    run.kill().await;
}
