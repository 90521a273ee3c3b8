use super::*;
use crate::config::Config;
use crate::message::parse;

const MESSAGE: &str = "From: Ann Roth <Ann@Customer.example.test>\r\n\
To: Billing <billing@ourco.example.test>, support@ourco.example.test\r\n\
Cc: boss@customer.example.test\r\n\
Subject: Invoice 2025-113 is wrong\r\n\
Message-ID: <a1@customer.example.test>\r\n\
X-Priority: 1\r\n\
X-Spam-Status: No, score=2.5 required=5.0\r\n\
X-Spam-Score: 2.5\r\n\
Date: Mon, 10 Mar 2025 09:00:00 +0100\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nPlease send a credit note for the refund.\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice-113.pdf\"\r\n\r\nJVBERi0=\r\n\
--b--\r\n";

fn envelope() -> Envelope {
    parse(MESSAGE.as_bytes(), None).unwrap()
}

fn holds(condition: &str, env: &Envelope, business: Option<bool>) -> Verdict {
    let cond: Condition = toml::from_str(condition).unwrap_or_else(|e| panic!("{condition}: {e}"));
    cond.evaluate(&Facts {
        envelope: env,
        in_business_hours: business,
    })
}

#[test]
fn each_condition_compares_the_fact_it_names() {
    let table: &[(&str, &str, bool)] = &[
        (
            "from equals, case ignored",
            r#"from = { equals = "ann@customer.example.test" }"#,
            true,
        ),
        (
            "from equals other",
            r#"from = { equals = "bob@customer.example.test" }"#,
            false,
        ),
        (
            "from_domain one_of",
            r#"from_domain = { one_of = ["x.test", "CUSTOMER.example.test"] }"#,
            true,
        ),
        (
            "from_domain contains",
            r#"from_domain = { contains = "vip" }"#,
            false,
        ),
        (
            "to alias",
            r#"to = { equals = "billing@ourco.example.test" }"#,
            true,
        ),
        (
            "to is not cc",
            r#"to = { equals = "boss@customer.example.test" }"#,
            false,
        ),
        ("cc", r#"cc = { contains = "boss@" }"#, true),
        (
            "recipient covers cc",
            r#"recipient = { equals = "boss@customer.example.test" }"#,
            true,
        ),
        (
            "subject contains",
            r#"subject = { contains = "INVOICE" }"#,
            true,
        ),
        (
            "subject regex",
            r#"subject = { regex = '^invoice \d{4}-\d+' }"#,
            true,
        ),
        (
            "subject regex miss",
            r#"subject = { regex = '^re:' }"#,
            false,
        ),
        (
            "subject equals whole",
            r#"subject = { equals = "invoice" }"#,
            false,
        ),
        (
            "body contains",
            r#"body = { contains = "credit note" }"#,
            true,
        ),
        ("body misses", r#"body = { contains = "cancel" }"#, false),
        (
            "header by name",
            r#"header.x-priority = { equals = "1" }"#,
            true,
        ),
        (
            "header name case",
            r#"header."X-Priority" = { one_of = ["1", "2"] }"#,
            true,
        ),
        (
            "absent header",
            r#"header.x-mailer = { contains = "outlook" }"#,
            false,
        ),
        (
            "attachment pattern",
            r#"attachment = { regex = '\.pdf$' }"#,
            true,
        ),
        (
            "attachment other",
            r#"attachment = { regex = '\.xlsx$' }"#,
            false,
        ),
        ("has attachment", "has_attachment = true", true),
        ("has no attachment", "has_attachment = false", false),
        ("size above", "size_above = 100", true),
        ("size below", "size_below = 100", false),
        ("automated no", r#"automated = { equals = "no" }"#, true),
        (
            "automated kinds",
            r#"automated = { one_of = ["auto_reply", "bounce"] }"#,
            false,
        ),
        ("not a list", "mailing_list = false", true),
        ("spam below", "spam_score = { above = 5.0 }", false),
        ("spam above", "spam_score = { above = 2.0 }", true),
        (
            "spam status",
            r#"spam_score = { header = "X-Spam-Status", above = 2.4 }"#,
            true,
        ),
        (
            "all",
            r#"all = [{ subject = { contains = "invoice" } }, { has_attachment = true }]"#,
            true,
        ),
        (
            "all fails",
            r#"all = [{ subject = { contains = "invoice" } }, { has_attachment = false }]"#,
            false,
        ),
        (
            "any",
            r#"any = [{ subject = { contains = "x" } }, { has_attachment = true }]"#,
            true,
        ),
        (
            "any fails",
            r#"any = [{ subject = { contains = "x" } }, { has_attachment = false }]"#,
            false,
        ),
        (
            "not",
            r#"not = { subject = { contains = "refund" } }"#,
            true,
        ),
        (
            "not fails",
            r#"not = { subject = { contains = "invoice" } }"#,
            false,
        ),
        (
            "keys combine with and",
            r#"subject = { contains = "invoice" }
            from_domain = { equals = "other.test" }"#,
            false,
        ),
        ("empty holds", "", true),
    ];
    let env = envelope();
    for (name, condition, want) in table {
        let verdict = holds(condition, &env, None);
        assert_eq!(verdict.holds, *want, "{name}: {verdict:?}");
        assert!(!verdict.reasons.is_empty(), "{name}: no reason given");
    }
}

#[test]
fn business_hours_follow_the_context_and_never_hold_when_unknown() {
    let env = envelope();
    for (context, want_inside, want_outside) in [
        (Some(true), true, false),
        (Some(false), false, true),
        (None, false, false),
    ] {
        assert_eq!(
            holds("business_hours = true", &env, context).holds,
            want_inside
        );
        assert_eq!(
            holds("business_hours = false", &env, context).holds,
            want_outside
        );
    }
}

#[test]
fn reasons_say_what_matched_and_never_quote_the_body() {
    let env = envelope();
    let v = holds(r#"subject = { contains = "invoice" }"#, &env, None);
    assert_eq!(
        v.reasons,
        [r#"subject "Invoice 2025-113 is wrong" contains "invoice""#]
    );
    let v = holds(r#"body = { regex = "refund" }"#, &env, None);
    assert_eq!(v.reasons, ["body matches /refund/"]);
    let v = holds(r#"from_domain = { equals = "vip.test" }"#, &env, None);
    assert_eq!(
        v.reasons,
        [r#"from domain "customer.example.test" does not equal "vip.test""#]
    );
}

fn rules(text: &str) -> Vec<RuleConfig> {
    #[derive(Deserialize)]
    struct File {
        rule: Vec<RuleConfig>,
    }
    toml::from_str::<File>(text).unwrap().rule
}

#[test]
fn actions_apply_in_order_first_setter_wins_and_tags_add_up() {
    let rules = rules(
        r#"
        [[rule]]
        name = "vip"
        when.from_domain = { equals = "customer.example.test" }
        priority = "urgent"
        sla = "vip-2h"
        tags = ["vip"]
        assign = { agent = "alice" }

        [[rule]]
        name = "billing"
        when.subject = { contains = "invoice" }
        priority = "high"
        assign = { team = "billing", strategy = "least_open" }
        tags = ["billing", "vip"]
        folder = "Billing"

        [[rule]]
        name = "other mailbox"
        mailbox = "sales"
        tags = ["never"]
        "#,
    );
    let env = envelope();
    let r = route(
        &rules,
        "support",
        &Facts {
            envelope: &env,
            in_business_hours: None,
        },
    );
    assert_eq!(
        r.matched
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["vip", "billing"]
    );
    assert_eq!(
        r.priority.as_ref().map(|c| (c.value, c.rule.as_str())),
        Some((Priority::Urgent, "vip"))
    );
    assert_eq!(r.sla.as_ref().map(|c| c.value.as_str()), Some("vip-2h"));
    assert_eq!(
        r.target.as_ref().map(|c| &c.value),
        Some(&Target::Agent("alice".into()))
    );
    assert_eq!(r.folder.as_ref().map(|c| c.value.as_str()), Some("Billing"));
    assert_eq!(r.tags, ["vip", "billing"]);
    assert!(
        r.explanation
            .iter()
            .any(|l| l.contains("`vip` set it first")),
        "{:#?}",
        r.explanation
    );
}

#[test]
fn each_ownership_action_becomes_its_target_and_stop_ends_evaluation() {
    let table: &[(&str, Target)] = &[
        ("ignore = true", Target::Ignore),
        ("unassigned = true", Target::Unassigned),
        (r#"assign = { agent = "bob" }"#, Target::Agent("bob".into())),
        (
            r#"assign = { team = "t" }"#,
            Target::Team {
                team: "t".into(),
                strategy: None,
            },
        ),
        (
            r#"assign = { team = "t", strategy = "capacity" }"#,
            Target::Team {
                team: "t".into(),
                strategy: Some(Strategy::Capacity),
            },
        ),
    ];
    let env = envelope();
    for (action, want) in table {
        let text = format!(
            "[[rule]]\nname = \"first\"\n{action}\nstop = true\n\
             [[rule]]\nname = \"second\"\ntags = [\"late\"]\n"
        );
        let r = route(
            &rules(&text),
            "m",
            &Facts {
                envelope: &env,
                in_business_hours: None,
            },
        );
        assert_eq!(r.target.map(|c| c.value), Some(want.clone()), "{action}");
        assert!(r.tags.is_empty(), "{action}: stop did not stop");
    }
}

#[test]
fn a_rule_that_does_not_match_changes_nothing_and_says_why() {
    let rules = rules(
        "[[rule]]\nname = \"x\"\nwhen.subject = { contains = \"zzz\" }\npriority = \"low\"\n",
    );
    let env = envelope();
    let r = route(
        &rules,
        "m",
        &Facts {
            envelope: &env,
            in_business_hours: None,
        },
    );
    assert!(r.matched.is_empty() && r.priority.is_none());
    assert!(
        r.explanation[0].starts_with("rule 1 `x` did not match: subject"),
        "{:?}",
        r.explanation
    );
}

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
[[team]]
name = "t"
agents = ["a"]
[[agent]]
id = "a"
name = "A"
"#;

fn problems(extra: &str) -> Vec<crate::config::Problem> {
    Config::parse(&format!("{BASE}{extra}"))
        .err()
        .unwrap_or_default()
}

#[test]
fn config_problems_name_the_rule_key_and_line() {
    let table: &[(&str, &str, &str)] = &[
        (
            "[[rule]]\nname = \"r\"\nwhen.subject = { regex = \"inv(\" }\ntags = [\"x\"]\n",
            "rule[0].when.subject.regex",
            "invalid regex",
        ),
        (
            "[[rule]]\nname = \"r\"\nassign = { team = \"nobody\" }\n",
            "rule[0].assign.team",
            "no [[team]]",
        ),
        (
            "[[rule]]\nname = \"r\"\nassign = { agent = \"zed\" }\n",
            "rule[0].assign.agent",
            "no [[agent]]",
        ),
        (
            "[[rule]]\nname = \"r\"\nassign = { team = \"t\", strategy = \"random\" }\n",
            "rule[0].assign.strategy",
            "not a strategy",
        ),
        (
            "[[rule]]\nname = \"r\"\npriority = \"asap\"\n",
            "rule[0].priority",
            "not a priority",
        ),
        (
            "[[rule]]\nname = \"r\"\nwhen.subject = { contain = \"x\" }\nstop = true\n",
            "rule[0].when.subject.contain",
            "unknown key",
        ),
        (
            "[[rule]]\nname = \"r\"\nwhen.subjet = { contains = \"x\" }\nstop = true\n",
            "rule[0].when.subjet",
            "unknown key",
        ),
        (
            "[[rule]]\nname = \"r\"\nwhen.automated = { equals = \"ooo\" }\nstop = true\n",
            "rule[0].when.automated",
            "not an automatic-mail kind",
        ),
        (
            "[[rule]]\nname = \"r\"\nwhen.any = [{ subject = { regex = \"(\" } }]\nstop = true\n",
            "rule[0].when.any[0].subject.regex",
            "invalid regex",
        ),
        ("[[rule]]\nname = \"r\"\n", "rule[0].name", "has no action"),
        (
            "[[rule]]\nname = \"r\"\nignore = true\nassign = { team = \"t\" }\n",
            "rule[0].assign",
            "more than one",
        ),
        (
            "[[rule]]\nname = \"r\"\nmailbox = \"sales\"\nstop = true\n",
            "rule[0].mailbox",
            "no [[mailbox]]",
        ),
    ];
    for (extra, key, message) in table {
        let found = problems(extra);
        let p = found
            .iter()
            .find(|p| p.key == *key)
            .unwrap_or_else(|| panic!("{key}: {found:#?}"));
        assert!(p.message.contains(message), "{key}: {}", p.message);
        assert!(
            p.line.is_some_and(|l| l > BASE.lines().count()),
            "{key}: line {:?}",
            p.line
        );
        assert!(!p.hint.is_empty(), "{key}: no hint");
    }
}

#[test]
fn availability_settings_are_checked() {
    let table: &[(&str, &str)] = &[
        ("time_zone = \"Mars/Base\"\n", "agent[0].time_zone"),
        (
            "away = [{ from = 2025-03-14, until = 2025-03-10 }]\n",
            "agent[0].away[0]",
        ),
        (
            "away = [{ from = \"soon\", until = 2025-03-10 }]\n",
            "agent[0].away[0].from",
        ),
        (
            "working_hours = { days = [\"mon\", \"fri\"], start = \"9\", end = \"17:00\" }\n",
            "agent[0].working_hours.start",
        ),
        (
            "working_hours = { days = [\"monday\"], start = \"09:00\", end = \"17:00\" }\n",
            "agent[0].working_hours.days",
        ),
        ("max_open = 0\n", "agent[0].max_open"),
    ];
    for (extra, key) in table {
        let text = BASE.replace("name = \"A\"\n", &format!("name = \"A\"\n{extra}"));
        let found = Config::parse(&text).err().unwrap_or_default();
        assert!(
            found.iter().any(|p| p.key.starts_with(key)),
            "{key}: {found:#?}"
        );
    }
    let good = BASE.replace(
        "name = \"A\"\n",
        "name = \"A\"\nmax_open = 5\ntime_zone = \"Europe/Berlin\"\n\
         away = [{ from = 2025-03-10, until = 2025-03-14 }]\n\
         working_hours = { days = [\"mon\", \"tue\"], start = \"09:00\", end = \"17:00\" }\n",
    );
    assert!(
        Config::parse(&good).is_ok(),
        "{:#?}",
        Config::parse(&good).err()
    );
}

#[test]
fn the_documented_example_is_a_valid_config() {
    let doc = include_str!("../../docs/rules.md");
    let example = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let mailbox = "[[server]]\nname = \"s\"\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\n\
                   [[mailbox]]\nname = \"support\"\nserver = \"s\"\nlogin = \"u\"\n\
                   password_env = \"P\"\nteam = \"support\"\n";
    let config = Config::parse(&format!("{mailbox}{example}")).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(config.rules.len(), 5);
}
