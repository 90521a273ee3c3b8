//! The SLA clock on instants the tests choose; nothing here reads the system clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::calendar::CalendarConfig;
use crate::config::Config;

fn berlin_office() -> Calendar {
    let config: CalendarConfig = toml::from_str(
        "name = \"office\"\ntimezone = \"Europe/Berlin\"\nmon = [\"09:00-17:00\"]\n\
         tue = [\"09:00-17:00\"]\nwed = [\"09:00-17:00\"]\nthu = [\"09:00-17:00\"]\n\
         fri = [\"09:00-17:00\"]\n",
    )
    .unwrap();
    Calendar::from_config(&config).unwrap()
}

fn policy(toml_text: &str) -> Policy {
    let config: SlaConfig = toml::from_str(toml_text).expect("test policy is valid TOML");
    Policy::from_config(&config).expect("test policy is valid")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instant is RFC 3339")
        .with_timezone(&Utc)
}

fn first(started: &str, stopped: Option<&str>) -> Leg {
    Leg {
        target: Target::FirstResponse,
        started: at(started),
        stopped: stopped.map(at),
    }
}

const FOUR_HOURS: &str = "name = \"std\"\nfirst_response = \"4h\"\nwarn_at = \"75%\"\n";

#[test]
fn bug_14_clock_starts_at_internaldate_and_breaches_four_business_hours_later() {
    let (cal, sla) = (berlin_office(), policy(FOUR_HOURS));
    // INTERNALDATE 09:00:08; the Date header (11:05, or 2019 in the variant) is never passed in.
    let leg = first("2025-03-19T09:00:08+01:00", None);
    let eval = sla
        .evaluate(&cal, &leg, at("2025-03-19T09:00:10+01:00"))
        .unwrap()
        .unwrap();
    assert_eq!(eval.state, State::Running);
    assert_eq!(eval.breach_at, at("2025-03-19T13:00:08+01:00"));
    assert_eq!(eval.warn_at, Some(at("2025-03-19T12:00:08+01:00")));
    assert_eq!(eval.used, Duration::seconds(2));
}

#[test]
fn states_follow_the_clock_and_the_stop() {
    let (cal, sla) = (berlin_office(), policy(FOUR_HOURS));
    let start = "2025-03-11T09:00:00+01:00";
    let cases = [
        (None, "2025-03-11T11:59:59+01:00", State::Running),
        (None, "2025-03-11T12:00:00+01:00", State::Warned),
        (None, "2025-03-11T13:00:00+01:00", State::Breached),
        (
            Some("2025-03-11T09:30:00+01:00"),
            "2025-03-11T17:00:00+01:00",
            State::Met,
        ),
        // A response at the deadline itself meets it.
        (
            Some("2025-03-11T13:00:00+01:00"),
            "2025-03-11T14:00:00+01:00",
            State::Met,
        ),
        // A late response stops the clock but does not undo the breach.
        (
            Some("2025-03-11T13:00:01+01:00"),
            "2025-03-11T14:00:00+01:00",
            State::Breached,
        ),
        // A stop after `now` has not happened yet.
        (
            Some("2025-03-11T12:30:00+01:00"),
            "2025-03-11T12:10:00+01:00",
            State::Warned,
        ),
    ];
    for (stop, now, expected) in cases {
        let eval = sla
            .evaluate(&cal, &first(start, stop), at(now))
            .unwrap()
            .unwrap();
        assert_eq!(eval.state, expected, "stop {stop:?} now {now}");
    }
}

#[test]
fn used_time_stops_at_the_response() {
    let (cal, sla) = (berlin_office(), policy(FOUR_HOURS));
    let leg = first(
        "2025-03-07T16:00:00+01:00",
        Some("2025-03-10T09:30:00+01:00"),
    );
    let eval = sla
        .evaluate(&cal, &leg, at("2025-03-12T12:00:00+01:00"))
        .unwrap()
        .unwrap();
    assert_eq!(eval.used, Duration::minutes(90));
}

/// Walks a clock in 60-second ticks and records the first tick each level was due, as a caller
/// that de-duplicates by level would send it.
fn sent_mails(
    sla: &Policy,
    cal: &Calendar,
    leg: &Leg,
    from: &str,
    to: &str,
) -> BTreeMap<String, DateTime<Utc>> {
    let mut sent = BTreeMap::new();
    let mut now = at(from);
    while now <= at(to) {
        for due in sla.levels_due(cal, leg, now).unwrap() {
            assert!(
                cal.within_hours(now),
                "{} sent at {now}, outside hours",
                due.level.key()
            );
            sent.entry(due.level.key()).or_insert(now);
        }
        now += Duration::seconds(60);
    }
    sent
}

#[test]
fn bug_21_breach_mail_goes_out_once_on_monday_at_eleven() {
    let (cal, sla) = (
        berlin_office(),
        policy("name = \"s\"\nfirst_response = \"4h\"\n"),
    );
    // The agent replies Wednesday 10:30; ticks run over the weekend to Wednesday 12:00.
    let leg = first(
        "2025-03-07T15:00:00+01:00",
        Some("2025-03-12T10:30:00+01:00"),
    );
    let sent = sent_mails(
        &sla,
        &cal,
        &leg,
        "2025-03-07T15:00:00+01:00",
        "2025-03-12T12:00:00+01:00",
    );
    let expected = BTreeMap::from([("escalation-0".to_string(), at("2025-03-10T11:00:00+01:00"))]);
    assert_eq!(sent, expected);
    // After the reply nothing is due, and nothing will be.
    let after = at("2025-03-12T10:30:00+01:00");
    assert_eq!(sla.levels_due(&cal, &leg, after).unwrap(), []);
    assert_eq!(sla.next_check(&cal, &leg, after).unwrap(), None);
}

#[test]
fn bug_25_a_response_at_half_past_nine_means_no_escalation() {
    let (cal, sla) = (
        berlin_office(),
        policy("name = \"s\"\nfirst_response = \"2h\"\n"),
    );
    let answered = first(
        "2025-03-11T09:00:00+01:00",
        Some("2025-03-11T09:30:00+01:00"),
    );
    let sent = sent_mails(
        &sla,
        &cal,
        &answered,
        "2025-03-11T09:00:00+01:00",
        "2025-03-11T17:00:00+01:00",
    );
    assert!(sent.is_empty(), "{sent:?}");
    // The variant: a customer's colleague replied, which is no response; breach at 11:00.
    let unanswered = first("2025-03-11T09:00:00+01:00", None);
    let sent = sent_mails(
        &sla,
        &cal,
        &unanswered,
        "2025-03-11T09:00:00+01:00",
        "2025-03-11T17:00:00+01:00",
    );
    assert_eq!(
        sent.get("escalation-0"),
        Some(&at("2025-03-11T11:00:00+01:00"))
    );
}

#[test]
fn warning_then_levels_each_at_their_business_instant() {
    let cal = berlin_office();
    let sla = policy(
        "name = \"s\"\nfirst_response = \"4h\"\nwarn_at = \"50%\"\n\
         [[escalation]]\nafter = \"0m\"\nto = [\"lead\"]\n\
         [[escalation]]\nafter = \"2h\"\nto = [\"head@example.test\", \"owner\"]\n\
         [[escalation]]\nafter = \"3h\"\nto = [\"oncall@example.test\"]\noutside_hours = true\n",
    );
    // Thursday 13:00 + 4 h: breach Thursday 17:00 sharp, level 1 Friday 11:00, level 2 Friday
    // 12:00. The warning is due at 15:00.
    let leg = first("2025-03-13T13:00:00+01:00", None);
    let sent = sent_mails(
        &sla,
        &cal,
        &leg,
        "2025-03-13T13:00:00+01:00",
        "2025-03-14T13:00:00+01:00",
    );
    let expected = BTreeMap::from([
        ("warning".to_string(), at("2025-03-13T15:00:00+01:00")),
        ("escalation-0".to_string(), at("2025-03-13T17:00:00+01:00")),
        ("escalation-1".to_string(), at("2025-03-14T11:00:00+01:00")),
        ("escalation-2".to_string(), at("2025-03-14T12:00:00+01:00")),
    ]);
    assert_eq!(sent, expected);
    let due = sla
        .levels_due(&cal, &leg, at("2025-03-14T12:00:00+01:00"))
        .unwrap();
    let level_1 = due
        .iter()
        .find(|d| d.level == Level::Escalation(1))
        .unwrap();
    let to = vec![
        Recipient::Address("head@example.test".into()),
        Recipient::Owner,
    ];
    assert_eq!(level_1.to, to);
}

#[test]
fn levels_held_back_by_the_hours_wait_for_the_opening_unless_allowed() {
    let cal = berlin_office();
    let sla = policy(
        "name = \"s\"\nfirst_response = \"1h\"\n\
         [[escalation]]\nafter = \"0m\"\nto = [\"lead\"]\n\
         [[escalation]]\nafter = \"0m\"\nto = [\"pager@example.test\"]\noutside_hours = true\n",
    );
    // Breach Friday 17:00; the daemon looks again at 20:00 (it was down, or just ticking).
    let leg = first("2025-03-14T16:00:00+01:00", None);
    let evening = at("2025-03-14T20:00:00+01:00");
    let due: Vec<Level> = sla
        .levels_due(&cal, &leg, evening)
        .unwrap()
        .into_iter()
        .map(|d| d.level)
        .collect();
    assert_eq!(due, [Level::Escalation(1)]);
    assert_eq!(
        sla.next_check(&cal, &leg, evening).unwrap(),
        Some(at("2025-03-17T09:00:00+01:00"))
    );
    let monday = at("2025-03-17T09:00:00+01:00");
    assert_eq!(sla.levels_due(&cal, &leg, monday).unwrap().len(), 2);
    // Before anything is due the next check is the breach.
    let early = at("2025-03-14T16:10:00+01:00");
    assert_eq!(
        sla.next_check(&cal, &leg, early).unwrap(),
        Some(at("2025-03-14T17:00:00+01:00"))
    );
}

#[test]
fn untracked_clocks_evaluate_to_nothing_and_tracked_ones_use_their_budget() {
    let cal = berlin_office();
    let plain = policy("name = \"s\"\nfirst_response = \"4h\"\n");
    let full = policy(
        "name = \"s\"\nfirst_response = \"4h\"\nnext_response = \"1h30m\"\nresolution = \"2d\"\n",
    );
    let started = at("2025-03-11T09:00:00+01:00");
    let leg = |target| Leg {
        target,
        started,
        stopped: None,
    };
    assert_eq!(
        plain
            .evaluate(&cal, &leg(Target::NextResponse), started)
            .unwrap(),
        None
    );
    assert_eq!(
        plain
            .levels_due(&cal, &leg(Target::Resolution), started)
            .unwrap(),
        []
    );
    let cases = [
        (Target::NextResponse, "2025-03-11T10:30:00+01:00"),
        // 2d is 48 business hours: six eight-hour days, Tuesday 09:00 to Tuesday 17:00.
        (Target::Resolution, "2025-03-18T17:00:00+01:00"),
    ];
    for (target, breach) in cases {
        let eval = full.evaluate(&cal, &leg(target), started).unwrap().unwrap();
        assert_eq!(eval.breach_at, at(breach), "{target:?}");
    }
}

#[test]
fn a_policy_on_a_calendar_without_reachable_hours_is_an_error_not_a_hang() {
    let mut config: CalendarConfig =
        toml::from_str("name = \"x\"\ntimezone = \"Europe/Berlin\"\nwed = [\"09:00-17:00\"]\n")
            .unwrap();
    config.holidays = (0..60)
        .map(|w| {
            (chrono::NaiveDate::from_ymd_opt(2025, 3, 12).unwrap() + Duration::weeks(w)).to_string()
        })
        .collect();
    let cal = Calendar::from_config(&config).unwrap();
    let sla = policy(FOUR_HOURS);
    let leg = first("2025-03-11T09:00:00+01:00", None);
    assert!(matches!(
        sla.evaluate(&cal, &leg, at("2025-03-11T10:00:00+01:00")),
        Err(CalendarError::NeverOpen(_))
    ));
}

#[test]
fn policy_problems_are_keyed_inside_the_entry() {
    let config: SlaConfig = toml::from_str(
        "name = \"bad\"\nfirst_response = \"4x\"\nnext_response = \"0m\"\nwarn_at = \"75\"\n\
         [[escalation]]\nafter = \"soon\"\nto = [\"boss\"]\n\
         [[escalation]]\nafter = \"1h\"\nto = []\n",
    )
    .unwrap();
    let problems = Policy::from_config(&config).expect_err("many problems");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "first_response",
            "next_response",
            "warn_at",
            "escalation[0].after",
            "escalation[0].to",
            "escalation[1].to"
        ]
    );
    assert!(
        problems[0].message.contains("unknown unit `x`"),
        "{:?}",
        problems[0]
    );
}

#[test]
fn the_calendar_comes_from_the_policy_then_the_mailbox_then_the_team() {
    let config = Config::parse(&valid_config("calendar = \"office\"", "", "")).unwrap();
    let (mailbox, team) = (config.mailboxes.first(), config.teams.first());
    let mut sla = policy(FOUR_HOURS);
    assert_eq!(calendar_name(&sla, mailbox, team), Some("office"));
    sla.calendar = Some("other".into());
    assert_eq!(calendar_name(&sla, mailbox, team), Some("other"));
    sla.calendar = None;
    assert_eq!(calendar_name(&sla, None, team), None);
    let config = Config::parse(&valid_config("", "calendar = \"office\"", "")).unwrap();
    assert_eq!(
        calendar_name(&sla, None, config.teams.first()),
        Some("office")
    );
}

/// A minimal valid config with extra lines in the mailbox, the team, and at the end.
fn valid_config(mailbox: &str, team: &str, tail: &str) -> String {
    format!(
        "[[server]]\nname = \"ex\"\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\n\n\
         [[mailbox]]\nname = \"support\"\nserver = \"ex\"\nlogin = \"support\"\n\
         password = \"x\"\nteam = \"t\"\n{mailbox}\n\n\
         [[team]]\nname = \"t\"\nagents = [\"a\"]\n{team}\n\n\
         [[agent]]\nid = \"a\"\nname = \"Anna\"\n\n\
         [[calendar]]\nname = \"office\"\ntimezone = \"Europe/Berlin\"\nmon = [\"09:00-17:00\"]\n\n\
         [[sla]]\nname = \"std\"\nfirst_response = \"4h\"\ncalendar = \"office\"\n{tail}"
    )
}

#[test]
fn config_check_reports_calendar_and_sla_problems_with_lines() {
    let tail = "warn_at = \"75%\"\n[[sla.escalation]]\nafter = \"4x\"\nto = [\"lead\"]\n\n\
                [[calendar]]\nname = \"broken\"\ntimezone = \"Mars/Olympus\"\n\
                tue = [\"09:00-12:00\", \"11:00-17:00\"]\n";
    let problems = Config::parse(&valid_config("calendar = \"nope\"", "", tail)).unwrap_err();
    let found: Vec<(&str, Option<usize>)> =
        problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        found,
        [
            ("mailbox[0].calendar", Some(12)),
            ("sla[0].escalation[0].after", Some(34)),
            ("calendar[1].timezone", Some(39)),
            ("calendar[1].tue", Some(40)),
        ]
    );
    assert!(problems.iter().all(|p| !p.hint.is_empty()));
    assert!(Config::parse(&valid_config("", "", "")).is_ok());
}

#[test]
fn a_misspelt_calendar_key_is_refused_with_a_suggestion() {
    let tail = "\n[[calendar]]\nname = \"x\"\ntimezone = \"UTC\"\nalways = true\n\
                holiday = [\"2025-12-25\"]\n";
    let problems = Config::parse(&valid_config("", "", tail)).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "calendar[1].holiday");
    assert_eq!(problems[0].line, Some(37));
    assert!(problems[0].hint.contains("`holidays`"), "{:?}", problems[0]);
}

#[test]
fn bug_21_reminders_only_while_breached_and_running() {
    let cal = berlin_office();
    let sla = policy("name = \"std\"\nfirst_response = \"4h\"\nreminder = \"09:00\"\n");
    // Friday 15:00 arrival, breach Monday 11:00, breach mail queued 11:00.
    let leg = first("2025-03-07T15:00:00+01:00", None);
    let mail = Some(at("2025-03-10T11:00:00+01:00"));
    let due = |leg: &Leg, now: &str| sla.reminder_due(&cal, leg, mail, at(now)).unwrap();
    assert_eq!(due(&leg, "2025-03-10T11:00:00+01:00"), None);
    assert_eq!(due(&leg, "2025-03-11T08:59:00+01:00"), None);
    let tuesday = "2025-03-11".parse().ok();
    assert_eq!(due(&leg, "2025-03-11T09:00:00+01:00"), tuesday);
    // Not breached yet on a later morning's slot: a clock that started on Monday 16:00.
    let young = first("2025-03-10T16:00:00+01:00", None);
    assert_eq!(due(&young, "2025-03-11T09:00:00+01:00"), None);
    // The reply on Wednesday 10:30 ends the reminders; a later stop does not yet.
    let answered = first(
        "2025-03-07T15:00:00+01:00",
        Some("2025-03-12T10:30:00+01:00"),
    );
    assert_eq!(due(&answered, "2025-03-13T09:00:00+01:00"), None);
    assert_eq!(
        due(&answered, "2025-03-12T09:00:00+01:00"),
        "2025-03-12".parse().ok()
    );
    // A policy without `reminder` never reminds.
    let plain = policy(FOUR_HOURS);
    assert_eq!(
        plain
            .reminder_due(&cal, &leg, mail, at("2025-03-11T09:00:00+01:00"))
            .unwrap(),
        None
    );
}

#[test]
fn a_bad_reminder_or_digest_time_is_named_with_key_line_and_fix() {
    let problems = Config::parse(&valid_config(
        "",
        "digest = \"8.30\"\ncalendar = \"office\"",
        "reminder = \"9am\"\n",
    ))
    .unwrap_err();
    let found: Vec<(&str, Option<usize>)> =
        problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        found,
        [("team[0].digest", Some(17)), ("sla[0].reminder", Some(33))]
    );
    assert!(problems[1].message.contains("`9am` is not a time of day"));
    assert!(problems[1].hint.contains("reminder = \"09:00\""));
    assert!(problems[0].hint.contains("digest = \"08:30\""));
}

#[test]
fn a_digest_needs_the_team_calendar() {
    let problems = Config::parse(&valid_config("", "digest = \"08:30\"", "")).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "team[0].digest");
    assert!(problems[0].message.contains("needs the team's calendar"));
    let fixed = valid_config("", "digest = \"08:30\"\ncalendar = \"office\"", "");
    assert!(Config::parse(&fixed).is_ok());
}
