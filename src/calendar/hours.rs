//! The `[[calendar]]` section as the admin writes it, and its checking into minute spans.
//!
//! Opening hours are written per weekday as a list of `"HH:MM-HH:MM"` spans, so a lunch break is
//! two spans (`mon = ["09:00-12:00", "13:00-17:00"]`). `always = true` says "open 24/7" without
//! listing seven days; `"00:00-24:00"` on a day says "open all of that day". Spans never cross
//! midnight: a night shift is written as `"22:00-24:00"` on one day and `"00:00-06:00"` on the
//! next, which keeps every span inside one local date and lets the arithmetic in
//! [`super::Calendar`] resolve each day on its own.

use std::path::PathBuf;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::config::Problem;

/// Minutes in a local day as written on a clock face; `24:00` is the end of the day.
pub(crate) const DAY_MINUTES: u16 = 24 * 60;

/// The weekday keys, Monday first, matching `chrono::Weekday::num_days_from_monday`.
pub(crate) const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `[[calendar]]`: a business calendar that SLA clocks count in.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CalendarConfig {
    /// The name SLA policies, teams and mailboxes refer to.
    pub name: String,
    /// An IANA time zone such as `Europe/Berlin`; the hours below are local times in it.
    pub timezone: String,
    /// Open around the clock on every day that is not a holiday.
    #[serde(default)]
    pub always: bool,
    /// Monday's spans, such as `["09:00-12:00", "13:00-17:00"]`; empty means closed.
    #[serde(default)]
    pub mon: Vec<String>,
    /// Tuesday's spans.
    #[serde(default)]
    pub tue: Vec<String>,
    /// Wednesday's spans.
    #[serde(default)]
    pub wed: Vec<String>,
    /// Thursday's spans.
    #[serde(default)]
    pub thu: Vec<String>,
    /// Friday's spans.
    #[serde(default)]
    pub fri: Vec<String>,
    /// Saturday's spans.
    #[serde(default)]
    pub sat: Vec<String>,
    /// Sunday's spans.
    #[serde(default)]
    pub sun: Vec<String>,
    /// Closed local dates, `YYYY-MM-DD`.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// An iCalendar file whose events are closed days (read at start).
    pub holidays_file: Option<PathBuf>,
}

impl CalendarConfig {
    /// The spans written for each weekday, Monday first.
    fn days(&self) -> [&[String]; 7] {
        [
            &self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun,
        ]
    }
}

/// An open span within one local date, in minutes after local midnight; `end` may be 1440.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span {
    pub(crate) start: u16,
    pub(crate) end: u16,
}

/// The checked weekly hours: spans per weekday, sorted, non-overlapping, adjacent ones merged.
pub(crate) type Week = [Vec<Span>; 7];

/// Checks the weekly hours, returning every problem with a key relative to the calendar.
pub(crate) fn week(config: &CalendarConfig) -> Result<Week, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut week: Week = Default::default();
    let written = config.days();
    if config.always {
        if let Some(day) = written.iter().position(|spans| !spans.is_empty()) {
            problems.push(problem(
                WEEKDAYS[day],
                "`always = true` and weekday hours are both set",
                "remove the weekday keys for a 24/7 calendar, or remove `always`",
            ));
        }
        let whole = Span {
            start: 0,
            end: DAY_MINUTES,
        };
        week = std::array::from_fn(|_| vec![whole]);
    } else {
        for (day, spans) in written.iter().enumerate() {
            match day_spans(spans) {
                Ok(spans) => week[day] = spans,
                Err((message, hint)) => problems.push(problem(WEEKDAYS[day], message, hint)),
            }
        }
        if problems.is_empty() && week.iter().all(Vec::is_empty) {
            problems.push(problem(
                "mon",
                "the calendar has no opening hours on any day",
                "give spans such as mon = [\"09:00-17:00\"], or set always = true for 24/7",
            ));
        }
    }
    if problems.is_empty() {
        Ok(week)
    } else {
        Err(problems)
    }
}

/// Parses and orders one day's spans; overlapping spans are refused, touching ones merged.
fn day_spans(written: &[String]) -> Result<Vec<Span>, (String, String)> {
    let mut spans = Vec::with_capacity(written.len());
    for text in written {
        spans.push(parse_span(text)?);
    }
    spans.sort();
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start < last.end => {
                return Err((
                    format!("spans {} and {} overlap", show(*last), show(span)),
                    "list each stretch of opening hours once, in spans that do not overlap".into(),
                ));
            }
            // "09:00-12:00" and "12:00-17:00" are one stretch; merging keeps the arithmetic from
            // seeing a zero-length closure.
            Some(last) if span.start == last.end => last.end = span.end,
            _ => merged.push(span),
        }
    }
    Ok(merged)
}

fn show(span: Span) -> String {
    let time = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    format!("\"{}-{}\"", time(span.start), time(span.end))
}

/// Parses `"HH:MM-HH:MM"`; the end may be `24:00`.
fn parse_span(text: &str) -> Result<Span, (String, String)> {
    let form_hint = "write spans as \"HH:MM-HH:MM\", such as \"09:00-17:00\"";
    let Some((from, to)) = text.split_once('-') else {
        return Err((format!("`{text}` is not a span"), form_hint.into()));
    };
    let (Some(start), Some(end)) = (parse_clock(from), parse_clock(to)) else {
        return Err((
            format!("`{text}` is not a span of clock times"),
            form_hint.into(),
        ));
    };
    if start == DAY_MINUTES {
        return Err((
            format!("`{text}` starts at 24:00"),
            "start the span at 00:00".into(),
        ));
    }
    if end < start {
        return Err((
            format!("`{text}` crosses midnight or ends before it starts"),
            "split a night span at midnight: \"22:00-24:00\" on one day, \"00:00-06:00\" on \
             the next"
                .into(),
        ));
    }
    if end == start {
        return Err((
            format!("`{text}` is empty"),
            "remove it, or give it a length".into(),
        ));
    }
    Ok(Span { start, end })
}

/// `H:MM` or `HH:MM` as minutes after midnight, `24:00` included.
fn parse_clock(text: &str) -> Option<u16> {
    let (hours, minutes) = text.trim().split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours) || minutes.len() != 2 || !digits(minutes) {
        return None;
    }
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    let total = hours * 60 + minutes;
    (minutes < 60 && total <= DAY_MINUTES).then_some(total)
}

/// Parses the `holidays` list of `YYYY-MM-DD` dates.
pub(crate) fn holiday_dates(config: &CalendarConfig) -> Result<Vec<NaiveDate>, Vec<Problem>> {
    let mut dates = Vec::with_capacity(config.holidays.len());
    let mut problems = Vec::new();
    for (i, text) in config.holidays.iter().enumerate() {
        match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
            Ok(date) => dates.push(date),
            Err(_) => problems.push(problem(
                &format!("holidays[{i}]"),
                format!("`{text}` is not a date"),
                "write holidays as \"YYYY-MM-DD\", such as \"2025-12-25\"",
            )),
        }
    }
    if problems.is_empty() {
        Ok(dates)
    } else {
        Err(problems)
    }
}

/// A problem whose key is relative to the `[[calendar]]` entry; `config_check` adds the prefix
/// and the line.
pub(crate) fn problem(key: &str, message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem {
        key: key.to_string(),
        line: None,
        message: message.into(),
        hint: hint.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(spans: &[&str]) -> Result<Vec<(u16, u16)>, String> {
        let written: Vec<String> = spans.iter().map(|s| s.to_string()).collect();
        day_spans(&written)
            .map(|v| v.into_iter().map(|s| (s.start, s.end)).collect())
            .map_err(|(message, _)| message)
    }

    /// Written spans and the minute spans they check into.
    type SpanCase<'a> = (&'a [&'a str], &'a [(u16, u16)]);

    #[test]
    fn spans_parse_sort_and_merge() {
        let cases: &[SpanCase<'_>] = &[
            (&["09:00-17:00"], &[(540, 1020)]),
            (&["13:00-17:00", "9:00-12:00"], &[(540, 720), (780, 1020)]),
            (&["09:00-12:00", "12:00-17:00"], &[(540, 1020)]),
            (&["00:00-24:00"], &[(0, 1440)]),
            (
                &["22:00-24:00", " 00:00 - 06:00 "],
                &[(0, 360), (1320, 1440)],
            ),
            (&[], &[]),
        ];
        for (input, expected) in cases {
            assert_eq!(parsed(input).as_deref(), Ok(*expected), "{input:?}");
        }
    }

    #[test]
    fn bad_spans_are_refused_with_a_reason() {
        let cases: &[(&[&str], &str)] = &[
            (&["09:00-12:00", "11:00-17:00"], "overlap"),
            (&["22:00-06:00"], "crosses midnight"),
            (&["09:00"], "is not a span"),
            (&["9-17"], "not a span of clock times"),
            (&["09:60-17:00"], "not a span of clock times"),
            (&["09:00-24:01"], "not a span of clock times"),
            (&["24:00-24:00"], "starts at 24:00"),
            (&["10:00-10:00"], "is empty"),
        ];
        for (input, reason) in cases {
            let err = parsed(input).expect_err(&format!("{input:?} should fail"));
            assert!(err.contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn always_conflicts_with_weekday_hours_and_empty_weeks_are_refused() {
        let both = CalendarConfig {
            always: true,
            tue: vec!["09:00-17:00".into()],
            ..Default::default()
        };
        let problems = week(&both).expect_err("always plus tue");
        assert_eq!(problems[0].key, "tue");
        let empty = CalendarConfig::default();
        let problems = week(&empty).expect_err("no hours");
        assert!(problems[0].message.contains("no opening hours"));
        let always = CalendarConfig {
            always: true,
            ..Default::default()
        };
        let full = week(&always).expect("24/7");
        assert!(full.iter().all(|d| d
            == &[Span {
                start: 0,
                end: 1440
            }]));
    }

    #[test]
    fn holiday_dates_report_each_bad_entry_by_index() {
        let config = CalendarConfig {
            holidays: vec![
                "2025-12-25".into(),
                "25.12.2025".into(),
                "2025-02-30".into(),
            ],
            ..Default::default()
        };
        let problems = holiday_dates(&config).expect_err("two bad dates");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["holidays[1]", "holidays[2]"]);
    }
}
