//! Calendar arithmetic on instants the tests choose; nothing here reads the system clock.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use proptest::prelude::*;

use super::*;

fn calendar(toml_text: &str) -> Calendar {
    let config: CalendarConfig = toml::from_str(toml_text).expect("test calendar is valid TOML");
    Calendar::from_config(&config).expect("test calendar is valid")
}

/// Mon–Fri 09:00–17:00, the calendar the field cases assume unless they say otherwise.
fn office(tz: &str) -> Calendar {
    let days: String = ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|d| format!("{d} = [\"09:00-17:00\"]\n"))
        .collect();
    calendar(&format!("name = \"office\"\ntimezone = \"{tz}\"\n{days}"))
}

/// Mon–Fri with a lunch break: two spans per day.
fn lunch(tz: &str) -> Calendar {
    let days: String = ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|d| format!("{d} = [\"09:00-12:00\", \"13:00-17:00\"]\n"))
        .collect();
    calendar(&format!("name = \"lunch\"\ntimezone = \"{tz}\"\n{days}"))
}

fn always(tz: &str) -> Calendar {
    calendar(&format!(
        "name = \"24/7\"\ntimezone = \"{tz}\"\nalways = true\n"
    ))
}

/// Spans hugging midnight and 02:00-03:00, where DST changes happen, to exercise gaps and repeats.
fn night(tz: &str) -> Calendar {
    let days: String = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| format!("{d} = [\"00:00-01:00\", \"01:30-02:45\", \"22:00-24:00\"]\n"))
        .collect();
    calendar(&format!("name = \"night\"\ntimezone = \"{tz}\"\n{days}"))
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instant is RFC 3339")
        .with_timezone(&Utc)
}

fn local(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("test local time")
}

fn hours(h: i64) -> Duration {
    Duration::hours(h)
}

#[test]
fn bug_23_deadlines_across_dst_changes_are_exact() {
    let cases = [
        // A: Sao Paulo's midnight of 2018-11-04 does not exist; due 03:00 -02:00, where naive
        // local arithmetic would say 02:00.
        (
            always("America/Sao_Paulo"),
            "2018-11-03T22:00:00-03:00",
            hours(4),
            "2018-11-04T05:00:00Z",
        ),
        // B: 23:00-23:59 on 2019-02-16 happens twice; due 01:00 -03:00, not 02:00.
        (
            always("America/Sao_Paulo"),
            "2019-02-16T22:00:00-02:00",
            hours(4),
            "2019-02-17T04:00:00Z",
        ),
        // C: Berlin leaves summer time over the weekend; Monday 10:00 is CET.
        (
            office("Europe/Berlin"),
            "2024-10-25T16:00:00+02:00",
            hours(2),
            "2024-10-28T09:00:00Z",
        ),
    ];
    for (cal, start, dur, due) in cases {
        let start = utc(start);
        let got = cal.add_business(start, dur).expect("deadline exists");
        assert_eq!(got, utc(due), "{} from {start}", cal.name());
        assert_eq!(
            cal.business_between(start, got),
            dur,
            "{} from {start}",
            cal.name()
        );
    }
}

#[test]
fn deadlines_on_office_calendars() {
    let berlin = office("Europe/Berlin");
    let cases = [
        // BUG-21: Friday 15:00 arrival, 4 business hours: 2 on Friday, 2 on Monday.
        (
            "bug-21",
            &berlin,
            "2025-03-07T15:00:00+01:00",
            hours(4),
            "2025-03-10T11:00:00+01:00",
        ),
        // BUG-14: the clock starts at INTERNALDATE and keeps its seconds.
        (
            "bug-14",
            &berlin,
            "2025-03-19T09:00:08+01:00",
            hours(4),
            "2025-03-19T13:00:08+01:00",
        ),
        // BUG-25: two business hours from Tuesday 09:00.
        (
            "bug-25",
            &berlin,
            "2025-03-11T09:00:00+01:00",
            hours(2),
            "2025-03-11T11:00:00+01:00",
        ),
        // Arrival at night counts from the next opening.
        (
            "night",
            &berlin,
            "2025-03-11T23:30:00+01:00",
            hours(1),
            "2025-03-12T10:00:00+01:00",
        ),
        // A deadline that uses the day up exactly is the closing time, not tomorrow's opening.
        (
            "close",
            &berlin,
            "2025-03-11T13:00:00+01:00",
            hours(4),
            "2025-03-11T17:00:00+01:00",
        ),
        // Weekend arrival.
        (
            "weekend",
            &berlin,
            "2025-03-08T12:00:00+01:00",
            hours(9),
            "2025-03-11T10:00:00+01:00",
        ),
        // Spring forward on Sunday 2025-03-30 moves Monday's opening to 07:00Z.
        (
            "spring",
            &berlin,
            "2025-03-28T16:30:00+01:00",
            hours(1),
            "2025-03-31T09:30:00+02:00",
        ),
    ];
    for (label, cal, start, dur, due) in cases {
        assert_eq!(cal.add_business(utc(start), dur), Ok(utc(due)), "{label}");
    }
}

#[test]
fn two_spans_per_day_skip_the_lunch_break() {
    let cal = lunch("Europe/Berlin");
    let cases = [
        (
            "2025-03-11T11:00:00+01:00",
            hours(2),
            "2025-03-11T14:00:00+01:00",
        ),
        (
            "2025-03-11T12:30:00+01:00",
            Duration::minutes(30),
            "2025-03-11T13:30:00+01:00",
        ),
        (
            "2025-03-11T11:00:00+01:00",
            hours(1),
            "2025-03-11T12:00:00+01:00",
        ),
        (
            "2025-03-11T16:00:00+01:00",
            hours(3),
            "2025-03-12T11:00:00+01:00",
        ),
    ];
    for (start, dur, due) in cases {
        assert_eq!(
            cal.add_business(utc(start), dur),
            Ok(utc(due)),
            "{start} + {dur}"
        );
    }
    let a = utc("2025-03-11T08:00:00+01:00");
    assert_eq!(
        cal.business_between(a, utc("2025-03-12T08:00:00+01:00")),
        hours(7)
    );
}

#[test]
fn holidays_are_closed_days() {
    let cal = calendar(
        "name = \"h\"\ntimezone = \"Europe/Berlin\"\nmon = [\"09:00-17:00\"]\n\
         tue = [\"09:00-17:00\"]\nwed = [\"09:00-17:00\"]\nthu = [\"09:00-17:00\"]\n\
         fri = [\"09:00-17:00\"]\nholidays = [\"2025-12-24\", \"2025-12-25\", \"2025-12-26\"]\n",
    );
    let start = utc("2025-12-23T16:00:00+01:00");
    // 1 h on Tuesday, Wednesday to Friday closed, the weekend closed, 1 h on Monday the 29th.
    let due = utc("2025-12-29T10:00:00+01:00");
    assert_eq!(cal.add_business(start, hours(2)), Ok(due));
    assert!(!cal.is_open(utc("2025-12-24T10:00:00+01:00")));
    assert_eq!(
        cal.next_open(utc("2025-12-24T10:00:00+01:00")),
        Ok(utc("2025-12-29T09:00:00+01:00"))
    );
}

#[test]
fn a_holiday_file_closes_its_dates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holidays.ics");
    std::fs::write(&path, include_str!("testdata/holidays.ics")).unwrap();
    let mut config: CalendarConfig = toml::from_str(
        "name = \"f\"\ntimezone = \"Europe/Berlin\"\nthu = [\"09:00-17:00\"]\n\
         fri = [\"09:00-17:00\"]\n",
    )
    .unwrap();
    config.holidays_file = Some(path);
    let cal = Calendar::from_config(&config).unwrap();
    // Christmas 2025 is Thursday and Friday; the next open day is Thursday 2026-01-01, which is
    // also in the file, so Friday 2026-01-02 it is.
    assert_eq!(
        cal.next_open(utc("2025-12-24T18:00:00+01:00")),
        Ok(utc("2026-01-02T09:00:00+01:00"))
    );
}

#[test]
fn a_24_7_calendar_is_plain_utc_arithmetic_across_every_change() {
    let starts = [
        "2018-11-03T23:59:00-03:00",
        "2019-02-16T23:30:00-02:00",
        "2024-10-26T23:00:00Z",
        "2024-03-31T00:30:00Z",
    ];
    for tz in ["America/Sao_Paulo", "Europe/Berlin", "Australia/Lord_Howe"] {
        let cal = always(tz);
        for start in starts {
            for dur in [Duration::minutes(1), hours(1), hours(25), Duration::days(9)] {
                let start = utc(start);
                assert_eq!(
                    cal.add_business(start, dur),
                    Ok(start + dur),
                    "{tz} {start}"
                );
                assert_eq!(
                    cal.business_between(start, start + dur),
                    dur,
                    "{tz} {start}"
                );
            }
        }
    }
}

#[test]
fn open_and_next_open_on_the_edges() {
    let cal = office("Europe/Berlin");
    // (instant, is_open, within_hours, next_open)
    let cases = [
        (
            "2025-03-11T09:00:00+01:00",
            true,
            true,
            "2025-03-11T09:00:00+01:00",
        ),
        (
            "2025-03-11T08:59:59+01:00",
            false,
            false,
            "2025-03-11T09:00:00+01:00",
        ),
        (
            "2025-03-11T17:00:00+01:00",
            false,
            true,
            "2025-03-12T09:00:00+01:00",
        ),
        (
            "2025-03-14T17:00:01+01:00",
            false,
            false,
            "2025-03-17T09:00:00+01:00",
        ),
        (
            "2025-03-16T00:00:00+01:00",
            false,
            false,
            "2025-03-17T09:00:00+01:00",
        ),
    ];
    for (t, open, within, next) in cases {
        let t = utc(t);
        assert_eq!(cal.is_open(t), open, "is_open {t}");
        assert_eq!(cal.within_hours(t), within, "within_hours {t}");
        assert_eq!(cal.next_open(t), Ok(utc(next)), "next_open {t}");
    }
}

#[test]
fn business_between_counts_only_open_time() {
    let cal = office("Europe/Berlin");
    let cases = [
        (
            "2025-03-07T16:00:00+01:00",
            "2025-03-10T10:00:00+01:00",
            hours(2),
        ),
        (
            "2025-03-10T10:00:00+01:00",
            "2025-03-07T16:00:00+01:00",
            Duration::zero(),
        ),
        (
            "2025-03-08T10:00:00+01:00",
            "2025-03-09T10:00:00+01:00",
            Duration::zero(),
        ),
        (
            "2025-03-03T00:00:00+01:00",
            "2025-03-10T00:00:00+01:00",
            hours(40),
        ),
        // The week of the autumn change still has exactly 40 business hours.
        (
            "2024-10-21T00:00:00+02:00",
            "2024-10-28T00:00:00+01:00",
            hours(40),
        ),
    ];
    for (a, b, expected) in cases {
        assert_eq!(cal.business_between(utc(a), utc(b)), expected, "{a} .. {b}");
    }
}

#[test]
fn local_times_in_gaps_and_repeats_resolve_monotonically() {
    let cases = [
        // Berlin spring gap 02:00 -> 03:00: the first instant after it is 01:00Z.
        ("Europe/Berlin", "2025-03-30 02:30", "2025-03-30T01:00:00Z"),
        // Berlin's repeated 02:30 in autumn: the earlier, still CEST.
        ("Europe/Berlin", "2025-10-26 02:30", "2025-10-26T00:30:00Z"),
        // Sao Paulo's missing midnight.
        (
            "America/Sao_Paulo",
            "2018-11-04 00:00",
            "2018-11-04T03:00:00Z",
        ),
        // Sao Paulo's repeated 23:30.
        (
            "America/Sao_Paulo",
            "2019-02-16 23:30",
            "2019-02-17T01:30:00Z",
        ),
        // Lord Howe moves by half an hour: 02:00 -> 02:30 at +10:30.
        (
            "Australia/Lord_Howe",
            "2024-10-06 02:15",
            "2024-10-05T15:30:00Z",
        ),
        // Samoa skipped the whole of 2011-12-30.
        ("Pacific/Apia", "2011-12-30 12:00", "2011-12-30T10:00:00Z"),
        ("Asia/Kolkata", "2024-10-06 02:15", "2024-10-05T20:45:00Z"),
    ];
    for (tz, at, expected) in cases {
        let tz: Tz = tz.parse().unwrap();
        assert_eq!(
            resolve_local(tz, local(at)),
            Some(utc(expected)),
            "{tz} {at}"
        );
    }
}

#[test]
fn spans_inside_a_gap_vanish_and_midnight_spans_shrink() {
    let berlin = calendar(
        "name = \"g\"\ntimezone = \"Europe/Berlin\"\nsun = [\"02:00-03:00\", \"09:00-10:00\"]\n",
    );
    let week = |from: &str, to: &str| berlin.business_between(utc(from), utc(to));
    // On the change day the 02:00-03:00 span does not exist; a week later it does.
    assert_eq!(
        week("2025-03-29T00:00:00Z", "2025-03-31T00:00:00Z"),
        hours(1)
    );
    assert_eq!(
        week("2025-04-05T00:00:00Z", "2025-04-07T00:00:00Z"),
        hours(2)
    );
    let sao_paulo =
        calendar("name = \"m\"\ntimezone = \"America/Sao_Paulo\"\nsun = [\"00:00-02:00\"]\n");
    // 2018-11-04 starts at 01:00, so only one hour of the span exists.
    let start = utc("2018-11-04T00:00:00Z");
    assert_eq!(sao_paulo.next_open(start), Ok(utc("2018-11-04T03:00:00Z")));
    assert_eq!(
        sao_paulo.add_business(start, hours(1)),
        Ok(utc("2018-11-04T04:00:00Z"))
    );
    // The second hour comes a week later, at 00:00-01:00 -02:00 = 02:00-03:00Z.
    assert_eq!(
        sao_paulo.add_business(start, hours(2)),
        Ok(utc("2018-11-11T03:00:00Z"))
    );
}

#[test]
fn calendars_without_reachable_hours_fail_instead_of_looping() {
    let config: CalendarConfig =
        toml::from_str("name = \"none\"\ntimezone = \"Europe/Berlin\"\n").unwrap();
    let problems = Calendar::from_config(&config).expect_err("no hours");
    assert!(
        problems[0].message.contains("no opening hours"),
        "{problems:?}"
    );

    // Hours that exist only on a day that is always a holiday: valid config, never open.
    let eaten = calendar(
        "name = \"eaten\"\ntimezone = \"Europe/Berlin\"\nwed = [\"09:00-17:00\"]\n\
         holidays = [\"2025-12-24\"]\n",
    );
    let start = utc("2025-12-23T12:00:00Z");
    assert!(eaten.add_business(start, hours(1)).is_ok());
    let every_wednesday: Vec<String> = (0..60)
        .map(|w| (NaiveDate::from_ymd_opt(2025, 12, 24).unwrap() + Duration::weeks(w)).to_string())
        .collect();
    let mut config: CalendarConfig =
        toml::from_str("name = \"eaten\"\ntimezone = \"Europe/Berlin\"\nwed = [\"09:00-17:00\"]\n")
            .unwrap();
    config.holidays = every_wednesday;
    let eaten = Calendar::from_config(&config).unwrap();
    let err = CalendarError::NeverOpen("eaten".into());
    assert_eq!(eaten.add_business(start, hours(1)), Err(err.clone()));
    assert_eq!(eaten.next_open(start), Err(err));
    assert_eq!(
        eaten.add_business(start, hours(-1)),
        Err(CalendarError::Negative("eaten".into()))
    );
}

#[test]
fn config_problems_name_the_key() {
    let config: CalendarConfig = toml::from_str(
        "name = \"bad\"\ntimezone = \"Europe/Berln\"\nmon = [\"09:00-12:00\", \"11:00-13:00\"]\n\
         holidays = [\"2025-13-01\"]\nholidays_file = \"/nonexistent/postroom.ics\"\n",
    )
    .unwrap();
    let problems = Calendar::from_config(&config).expect_err("three problems");
    let mut keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["holidays[0]", "mon", "timezone"]);
}

/// The zones BUG-23 asks for: DST at 02:00/03:00, at midnight, US rules, a 30-minute change,
/// and none at all.
const ZONES: [&str; 5] = [
    "Europe/Berlin",
    "America/Sao_Paulo",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
];

/// Checks that a deadline exists, is not before the start, and gives back its duration.
fn round_trip(cal: &Calendar, start: DateTime<Utc>, dur: Duration) {
    let due = cal.add_business(start, dur).expect("calendar has hours");
    assert!(due >= start, "{} {start} + {dur}: {due}", cal.name());
    assert_eq!(
        cal.business_between(start, due),
        dur,
        "{} {start} + {dur}",
        cal.name()
    );
}

#[test]
fn every_transition_2000_to_2030_round_trips() {
    let mut transitions = 0;
    for tz_name in ZONES {
        let tz: Tz = tz_name.parse().unwrap();
        let cals = [always(tz_name), lunch(tz_name), night(tz_name)];
        let offset = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local() - t.naive_utc();
        let mut noon = utc("2000-01-01T12:00:00Z");
        while noon < utc("2031-01-01T00:00:00Z") {
            let next = noon + Duration::days(1);
            if offset(noon) != offset(next) {
                transitions += 1;
                for step in 0..8 {
                    let start = noon + Duration::hours(3 * step) + Duration::minutes(7);
                    for dur in [Duration::minutes(30), hours(2), hours(7), hours(25)] {
                        cals.iter().for_each(|cal| round_trip(cal, start, dur));
                    }
                }
            }
            noon = next;
        }
    }
    // Berlin, New York and Lord Howe change twice a year for 31 years; Sao Paulo until 2019.
    assert!(transitions > 3 * 60, "found only {transitions} transitions");
}

proptest! {
    #[test]
    fn add_then_measure_gives_back_the_duration(
        zone in 0..ZONES.len(),
        kind in 0..3usize,
        start in 946_684_800i64..1_924_992_000,
        minutes in 1i64..(30 * 24 * 60),
    ) {
        let tz = ZONES[zone];
        let cal = match kind {
            0 => always(tz),
            1 => lunch(tz),
            _ => night(tz),
        };
        let start = DateTime::from_timestamp(start, 0).unwrap();
        round_trip(&cal, start, Duration::minutes(minutes));
        let due = cal.add_business(start, Duration::minutes(minutes)).unwrap();
        prop_assert!(cal.within_hours(due));
    }
}

#[test]
fn round_the_clock_calendars_count_elapsed_time_as_the_day_walk_does() {
    // A holiday years away keeps the second calendar on the day-by-day walk.
    let walked = |tz: &str| {
        let days: String = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|d| format!("{d} = [\"00:00-24:00\"]\n"))
            .collect();
        calendar(&format!(
            "name = \"walked\"\ntimezone = \"{tz}\"\nholidays = [\"2099-01-01\"]\n{days}"
        ))
    };
    let at = |s: &str| s.parse::<DateTime<Utc>>().expect("instant");
    let spans = [
        ("2025-03-29T22:00:00Z", "2025-03-31T05:30:00Z"),
        ("2025-10-25T23:59:59Z", "2025-10-27T00:00:01Z"),
        ("2025-01-01T00:00:00Z", "2025-12-31T12:00:00.5Z"),
    ];
    for tz in ["Europe/Berlin", "America/Santiago", "UTC"] {
        let (fast, slow) = (always(tz), walked(tz));
        assert!(fast.round_the_clock && !slow.round_the_clock);
        for (a, b) in spans {
            let (a, b) = (at(a), at(b));
            assert_eq!(fast.business_between(a, b), b - a, "{tz} {a}");
            assert_eq!(slow.business_between(a, b), b - a, "{tz} {a}");
        }
    }
}
