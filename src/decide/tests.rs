use chrono::TimeZone;

use super::memory::{new_conversation, MemoryState};
use super::*;
use crate::message::parse;

const BASE: &str = r#"
[[server]]
name = "s"
host = "127.0.0.1"
security = "plain"
[[mailbox]]
name = "support"
server = "s"
login = "u"
password_env = "P"
team = "t"
[[mailbox]]
name = "billing"
server = "s"
login = "u"
password_env = "P"
team = "t"
[[team]]
name = "t"
agents = ["a", "b", "c"]
"#;

const AGENTS: &str = r#"
[[agent]]
id = "a"
name = "Anna"
time_zone = "Europe/Berlin"
away = [{ from = 2025-03-10, until = 2025-03-14 }]
[[agent]]
id = "b"
name = "Ben"
[[agent]]
id = "c"
name = "Cleo"
"#;

fn config(extra: &str) -> Config {
    Config::parse(&format!("{BASE}{AGENTS}{extra}")).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn berlin(d: u32, h: u32, m: u32) -> Context {
    let local = chrono_tz::Europe::Berlin
        .with_ymd_and_hms(2025, 3, d, h, m, 0)
        .unwrap();
    Context::at(local.with_timezone(&Utc))
}

fn message(id: &str, extra: &str) -> Envelope {
    let raw = format!(
        "From: someone@customer.example.test\r\nTo: support@ourco.example.test\r\n\
         Subject: Printer\r\nMessage-ID: <{id}>\r\n{extra}\r\nHello.\r\n"
    );
    parse(raw.as_bytes(), None).unwrap()
}

fn case(name: &str) -> Envelope {
    let path = format!("{}/tests/data/cases/{name}", env!("CARGO_MANIFEST_DIR"));
    parse(&std::fs::read(&path).unwrap(), None).unwrap()
}

/// Decides and records, as the daemon does.
fn handle(
    cfg: &Config,
    state: &mut MemoryState,
    mailbox: &str,
    env: &Envelope,
    ctx: Context,
) -> Decision {
    let mb = cfg.mailbox(mailbox).unwrap();
    let d = decide_with(env, mb, cfg, state, &ctx).unwrap();
    state.record(mailbox, &d, ctx.now);
    d
}

/// Field case BUG-28: A away Mon–Fri, pointer at A.
#[test]
fn bug_28_away_agent_is_skipped_and_gets_the_first_turn_back() {
    let cfg = config("");
    let mut state = MemoryState::new();
    for agent in ["b", "c", "a"] {
        state.take_turn("t", agent);
    }
    let mut owners = Vec::new();
    for (i, ctx) in [
        berlin(10, 9, 5),
        berlin(10, 9, 10),
        berlin(10, 9, 15),
        berlin(17, 9, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let d = handle(
            &cfg,
            &mut state,
            "support",
            &message(&format!("t{i}@x"), ""),
            ctx,
        );
        owners.push(d.owner.unwrap());
    }
    assert_eq!(owners, ["b", "c", "b", "a"]);
}

#[test]
fn bug_28_variant_nobody_available_leaves_it_waiting_with_reasons() {
    let cfg = config("");
    let mut state = MemoryState::new();
    state.set_away("b", true);
    state.set_away("c", true);
    let d = handle(
        &cfg,
        &mut state,
        "support",
        &message("t5@x", ""),
        berlin(11, 10, 0),
    );
    assert_eq!((d.outcome, d.owner.clone()), (Outcome::Unassigned, None));
    assert_eq!(d.waiting, Some(Waiting::NobodyAvailable));
    assert!(d.is_work(), "a waiting conversation still needs an SLA");
    assert_eq!(d.summary, "left unassigned: no eligible agent in team t");
    let reasons: Vec<&str> = d.candidates.iter().map(|c| c.reason.as_str()).collect();
    assert_eq!(reasons[0], "away from 2025-03-10 until 2025-03-14");
}

#[test]
fn bug_28_variant_reply_to_an_away_owner_goes_to_the_team_or_waits() {
    for (sticky, want_owner, want_outcome) in [
        ("", "b", Outcome::Assigned),
        ("sticky_when_away = \"wait\"", "a", Outcome::FollowUp),
    ] {
        let text = BASE.replace(
            "agents = [\"a\", \"b\", \"c\"]",
            &format!("agents = [\"a\", \"b\", \"c\"]\n{sticky}"),
        );
        let cfg = Config::parse(&format!("{text}{AGENTS}")).unwrap();
        let mut state = MemoryState::new();
        let at = berlin(7, 9, 0).now;
        state.add_conversation(
            new_conversation("c1", "support", Some("a".into()), at),
            &["old@x"],
        );
        let reply = message("r1@x", "In-Reply-To: <old@x>\r\n");
        let d = handle(&cfg, &mut state, "support", &reply, berlin(12, 9, 0));
        assert_eq!(
            (d.outcome, d.owner.as_deref()),
            (want_outcome, Some(want_owner)),
            "{sticky}"
        );
        assert_eq!(d.conversation.as_deref(), Some("c1"));
        if want_owner == "b" {
            assert_eq!(d.previous_owner.as_deref(), Some("a"));
            assert_eq!(d.folder.as_deref(), Some("Assigned/Ben"));
        }
    }
}

#[test]
fn a_follow_up_stays_with_an_available_owner_and_reopens() {
    let cfg = config("");
    let mut state = MemoryState::new();
    let at = berlin(17, 9, 0).now;
    state.add_conversation(
        new_conversation("c1", "support", Some("a".into()), at),
        &["old@x"],
    );
    state.close("c1");
    let d = handle(
        &cfg,
        &mut state,
        "support",
        &message("r@x", "References: <old@x>\r\n"),
        berlin(17, 10, 0),
    );
    assert_eq!(
        (d.outcome, d.owner.as_deref()),
        (Outcome::FollowUp, Some("a"))
    );
    assert!(d
        .explanation
        .iter()
        .any(|l| l.contains("(closed: reopened)")));
}

/// Field case BUG-17 (a): a ticket token of someone else's conversation in the subject.
#[test]
fn bug_17a_a_subject_token_from_another_sender_is_not_merged() {
    let cfg = config("");
    let mut state = MemoryState::new();
    let at = berlin(21, 9, 15).now;
    let mut anna = new_conversation("c412", "support", Some("c".into()), at);
    anna.subject = "[T-000412] Printer offline after firmware update".into();
    anna.from = Some("anna.roth@customer-a.example.test".into());
    state.add_conversation(anna, &["anna-0321-0915@customer-a.example.test"]);
    let d = handle(
        &cfg,
        &mut state,
        "support",
        &case("BUG-17a.eml"),
        berlin(24, 10, 12),
    );
    assert_eq!(d.outcome, Outcome::Assigned);
    assert_eq!(
        d.conversation, None,
        "Bob's message must start its own conversation"
    );
    assert_eq!(
        state.open_count("c").unwrap(),
        1,
        "T-000412's owner gained nothing"
    );
}

/// Field case BUG-17 (b): a German `WG:` forward with References to the original.
#[test]
fn bug_17b_a_forward_starts_a_new_conversation_in_either_mailbox() {
    let cfg = config("[[rule]]\nname = \"billing\"\nmailbox = \"billing\"\ntags = [\"billing\"]\n");
    for mailbox in ["support", "billing"] {
        let mut state = MemoryState::new();
        let at = berlin(21, 9, 15).now;
        let anna = new_conversation("c412", "support", Some("c".into()), at);
        state.add_conversation(anna, &["anna-0321-0915@customer-a.example.test"]);
        let d = handle(
            &cfg,
            &mut state,
            mailbox,
            &case("BUG-17b.eml"),
            berlin(24, 11, 3),
        );
        assert_eq!(d.conversation, None, "{mailbox}");
        assert_eq!(d.outcome, Outcome::Assigned, "{mailbox}");
        let linked = if mailbox == "support" {
            Some("c412")
        } else {
            None
        };
        assert_eq!(d.refers_to.as_deref(), linked, "{mailbox}");
        assert_eq!(d.tags.is_empty(), mailbox == "support");
    }
}

/// Field case BUG-18: out-of-office and acknowledgements never create work; a human message
/// carrying `X-Auto-Response-Suppress` does.
#[test]
fn bug_18_automatic_replies_never_create_work() {
    let cfg = config("[[rule]]\nname = \"all\"\nassign = { agent = \"b\" }\nsla = \"std\"\n");
    let mut state = MemoryState::new();
    let ooo = handle(
        &cfg,
        &mut state,
        "support",
        &case("BUG-18a.eml"),
        berlin(25, 12, 0),
    );
    assert_eq!((ooo.outcome, ooo.owner.clone()), (Outcome::Automated, None));
    assert!(!ooo.is_work() && ooo.sla_policy.is_none() && ooo.rotation.is_none());
    assert_eq!(ooo.folder.as_deref(), Some("Automated"));
    let human = handle(
        &cfg,
        &mut state,
        "support",
        &case("BUG-18c.eml"),
        berlin(25, 12, 5),
    );
    assert_eq!(
        (human.outcome, human.owner.as_deref()),
        (Outcome::Assigned, Some("b"))
    );
    assert_eq!(human.sla_policy.as_deref(), Some("std"));
    assert_eq!(
        state.open_count("b").unwrap(),
        1,
        "only the human message is work"
    );
}

#[test]
fn an_out_of_office_reply_in_a_conversation_keeps_its_owner() {
    let cfg = config("");
    let mut state = MemoryState::new();
    let at = berlin(17, 9, 0).now;
    state.add_conversation(
        new_conversation("c1", "support", Some("b".into()), at),
        &["old@x"],
    );
    let ooo = message(
        "o@x",
        "In-Reply-To: <old@x>\r\nAuto-Submitted: auto-replied\r\n",
    );
    let d = handle(&cfg, &mut state, "support", &ooo, berlin(17, 10, 0));
    assert_eq!(d.outcome, Outcome::Automated);
    assert_eq!(
        (d.conversation.as_deref(), d.owner.as_deref()),
        (Some("c1"), Some("b"))
    );
    assert_eq!(state.open_count("b").unwrap(), 1);
}

#[test]
fn rule_targets_become_outcomes() {
    // (action, outcome, owner, folder, is work)
    type Row = (
        &'static str,
        Outcome,
        Option<&'static str>,
        Option<&'static str>,
        bool,
    );
    let table: &[Row] = &[
        (
            "ignore = true\nfolder = \"Junk\"",
            Outcome::Unassigned,
            None,
            Some("Junk"),
            false,
        ),
        ("unassigned = true", Outcome::Unassigned, None, None, true),
        (
            "assign = { agent = \"c\" }",
            Outcome::Assigned,
            Some("c"),
            Some("Assigned/Cleo"),
            true,
        ),
        (
            "assign = { agent = \"a\" }",
            Outcome::Unassigned,
            None,
            None,
            true,
        ),
        (
            "assign = { team = \"t\" }\nfolder = \"Queue/Printers\"",
            Outcome::Assigned,
            Some("b"),
            Some("Queue/Printers"),
            true,
        ),
    ];
    for (action, outcome, owner, folder, work) in table {
        let cfg = config(&format!(
            "[[rule]]\nname = \"r\"\nwhen.subject = {{ contains = \"printer\" }}\n{action}\n"
        ));
        let mut state = MemoryState::new();
        let d = handle(
            &cfg,
            &mut state,
            "support",
            &message("m@x", ""),
            berlin(12, 9, 0),
        );
        assert_eq!(&d.outcome, outcome, "{action}");
        assert_eq!(d.owner.as_deref(), *owner, "{action}");
        assert_eq!(d.folder.as_deref(), *folder, "{action}");
        assert_eq!(d.is_work(), *work, "{action}");
        assert_eq!(d.matched_rules.len(), 1, "{action}");
    }
}

#[test]
fn business_hours_rules_read_the_context() {
    let cfg = config("[[rule]]\nname = \"after hours\"\nwhen.business_hours = false\npriority = \"high\"\ntags = [\"after-hours\"]\n");
    let mut state = MemoryState::new();
    let mut ctx = berlin(17, 22, 0);
    ctx.in_business_hours = Some(false);
    let d = handle(&cfg, &mut state, "support", &message("n@x", ""), ctx);
    assert_eq!(
        (d.priority, d.tags.clone()),
        (Some(Priority::High), vec!["after-hours".to_string()])
    );
    ctx.in_business_hours = Some(true);
    let d = handle(&cfg, &mut state, "support", &message("d@x", ""), ctx);
    assert_eq!((d.priority, d.tags.len()), (None, 0));
}

#[test]
fn forward_prefixes_are_recognised_and_replies_are_not() {
    for s in [
        "WG: x",
        "Fwd: x",
        "FW[2]: x",
        "TR: x",
        "RV: x",
        "I: x",
        "Doorst: x",
        "VS: x",
        "VB: x",
    ] {
        assert!(is_forward(s), "{s}");
    }
    for s in ["Re: x", "AW: x", "SV: x", "Invoice: x", "x"] {
        assert!(!is_forward(s), "{s}");
    }
}

#[test]
fn a_late_parent_continuing_an_older_thread_merges_its_replys_conversation() {
    let config = config("");
    let mailbox = config.mailbox("support").unwrap();
    let mut state = MemoryState::new();
    let at = berlin(17, 10, 0).now;
    state.add_conversation(
        new_conversation("c1", "support", Some("b".into()), at),
        &["old@x.test"],
    );
    // The reply to `middle` arrived first and pointed `middle` at its own conversation.
    state.add_conversation(
        new_conversation("c2", "support", Some("c".into()), at),
        &["kid@x.test", "middle@x.test"],
    );
    let middle = message(
        "middle@x.test",
        "In-Reply-To: <old@x.test>\r\nReferences: <old@x.test>\r\n",
    );
    let d = decide_with(&middle, mailbox, &config, &state, &berlin(17, 11, 0)).unwrap();
    assert_eq!(d.conversation.as_deref(), Some("c1"));
    assert_eq!(d.owner.as_deref(), Some("b"));
    assert_eq!(d.merge_from.as_deref(), Some("c2"));
    assert!(d.explanation.iter().any(|l| l.contains("merged into c1")));

    // Without a known parent the message simply joins its reply's conversation.
    let alone = message("middle@x.test", "In-Reply-To: <unknown@x.test>\r\n");
    let d = decide_with(&alone, mailbox, &config, &state, &berlin(17, 11, 0)).unwrap();
    assert_eq!(d.conversation.as_deref(), Some("c2"));
    assert_eq!(d.merge_from, None);

    // Automatic mail never merges work.
    let bounce = message(
        "middle@x.test",
        "In-Reply-To: <old@x.test>\r\nAuto-Submitted: auto-replied\r\n",
    );
    let d = decide_with(&bounce, mailbox, &config, &state, &berlin(17, 11, 0)).unwrap();
    assert_eq!(d.merge_from, None);
}
