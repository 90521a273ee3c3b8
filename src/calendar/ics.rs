//! A small, tolerant reader of iCalendar (RFC 5545) holiday files.
//!
//! Holiday feeds exported from Outlook, Google or a government site are lists of `VEVENT`s whose
//! days are closed. Only what that needs is read: folded lines are unfolded (§3.1), and for each
//! event `DTSTART`, `DTEND` and `DURATION` give the closed local dates. Every other component and
//! property is skipped, so exotic feeds still load. An event is always taken as whole days: a
//! date-time event closes each local date it touches, because partial-day closures are not part
//! of a calendar's model (its weekly hours are).
//!
//! Recurring events (`RRULE`, `RDATE`) are not expanded and are reported instead of silently
//! dropped, so a yearly "Christmas" rule never leaves the day open. Expanding `FREQ=YEARLY` would
//! be the first step if admins bring feeds that rely on it.

use std::collections::BTreeSet;

use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// The longest single event taken as a closure. A longer one is almost certainly a mistyped year,
/// and accepting it would close the calendar for years and fill memory with dates.
const MAX_EVENT_DAYS: i64 = 366;

/// The closed local dates in an iCalendar text, or one message per unusable event.
pub(crate) fn holidays(text: &str, tz: Tz) -> Result<BTreeSet<NaiveDate>, Vec<String>> {
    let mut dates = BTreeSet::new();
    let mut problems = Vec::new();
    let mut event: Option<Event> = None;
    for (line_no, line) in unfold(text) {
        let Some(prop) = Property::parse(&line) else {
            continue;
        };
        match (prop.name.as_str(), &mut event) {
            ("BEGIN", None) if prop.value.eq_ignore_ascii_case("VEVENT") => {
                event = Some(Event::new(line_no));
            }
            ("END", Some(open)) if prop.value.eq_ignore_ascii_case("VEVENT") => {
                match open.dates(tz) {
                    Ok(days) => dates.extend(days),
                    Err(message) => {
                        problems.push(format!("event at line {}: {message}", open.line))
                    }
                }
                event = None;
            }
            (_, Some(open)) => open.take(prop),
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(dates)
    } else {
        Err(problems)
    }
}

/// Joins folded lines (a line starting with a space or tab continues the previous one) and
/// numbers each logical line by where it starts.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(rest), Some((_, last))) => last.push_str(rest),
            _ => lines.push((i + 1, raw.to_string())),
        }
    }
    lines
}

/// One content line: `NAME;PARAM=VALUE;...:value`.
struct Property {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl Property {
    fn parse(line: &str) -> Option<Property> {
        // The value starts at the first colon outside a quoted parameter value (§3.2), so a
        // TZID such as "Europe/Berlin" or a quoted URI cannot cut it early.
        let mut quoted = false;
        let colon = line.char_indices().find_map(|(i, c)| match c {
            '"' => {
                quoted = !quoted;
                None
            }
            ':' if !quoted => Some(i),
            _ => None,
        })?;
        let (head, value) = (&line[..colon], &line[colon + 1..]);
        let mut parts = head.split(';');
        let name = parts.next()?.trim().to_ascii_uppercase();
        let params = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_uppercase(),
                    v.trim_matches('"').to_string(),
                )
            })
            .collect();
        Some(Property {
            name,
            params,
            value: value.trim().to_string(),
        })
    }

    fn is_date(&self) -> bool {
        self.params
            .iter()
            .any(|(k, v)| k == "VALUE" && v.eq_ignore_ascii_case("DATE"))
    }
}

/// What one VEVENT said about its time.
struct Event {
    line: usize,
    start: Option<Property>,
    end: Option<Property>,
    duration: Option<String>,
    recurs: bool,
}

/// A DTSTART or DTEND value reduced to what holidays need.
enum When {
    Date(NaiveDate),
    DateTime(NaiveDateTime),
}

impl Event {
    fn new(line: usize) -> Event {
        Event {
            line,
            start: None,
            end: None,
            duration: None,
            recurs: false,
        }
    }

    fn take(&mut self, prop: Property) {
        match prop.name.as_str() {
            "DTSTART" => self.start = Some(prop),
            "DTEND" => self.end = Some(prop),
            "DURATION" => self.duration = Some(prop.value),
            "RRULE" | "RDATE" => self.recurs = true,
            _ => {}
        }
    }

    /// The closed local dates of this event.
    fn dates(&self, tz: Tz) -> Result<Vec<NaiveDate>, String> {
        if self.recurs {
            return Err("recurring events (RRULE/RDATE) are not expanded; list each date".into());
        }
        let start_prop = self.start.as_ref().ok_or("no DTSTART")?;
        let start = when(start_prop, tz)?;
        let first = start.date();
        // The day after the last closed one. DTEND is exclusive (§3.6.1): an all-day event on
        // the 25th ends on the 26th, and a date-time event ending at midnight does not touch
        // the day it ends on.
        let after_last = match (&self.end, &self.duration) {
            (Some(end), _) => match when(end, tz)? {
                When::Date(date) => date,
                When::DateTime(at) if at.time() == chrono::NaiveTime::MIN => at.date(),
                When::DateTime(at) => next_day(at.date())?,
            },
            (None, Some(duration)) => end_after(&start, duration)?,
            (None, None) => next_day(first)?,
        };
        let days = (after_last - first).num_days();
        if days > MAX_EVENT_DAYS {
            return Err(format!(
                "it lasts {days} days; at most {MAX_EVENT_DAYS} are accepted"
            ));
        }
        // An end before or at the start still closes the start day: the event exists.
        Ok(first
            .iter_days()
            .take(usize::try_from(days.max(1)).unwrap_or(1))
            .collect())
    }
}

impl When {
    fn date(&self) -> NaiveDate {
        match self {
            When::Date(date) => *date,
            When::DateTime(at) => at.date(),
        }
    }
}

fn next_day(date: NaiveDate) -> Result<NaiveDate, String> {
    date.succ_opt()
        .ok_or_else(|| format!("{date} is out of range"))
}

/// Reads `YYYYMMDD` or `YYYYMMDDTHHMMSS[Z]`. UTC times become local times in the calendar's
/// zone; times with a TZID or none (floating) are taken as written, since a holiday feed's TZID
/// is the region the holiday belongs to.
fn when(prop: &Property, tz: Tz) -> Result<When, String> {
    let value = prop.value.as_str();
    let bad = || format!("{} `{value}` is neither a date nor a date-time", prop.name);
    if prop.is_date() || value.len() == 8 {
        return NaiveDate::parse_from_str(value, "%Y%m%d")
            .map(When::Date)
            .map_err(|_| bad());
    }
    let (local, utc) = match value.strip_suffix(['Z', 'z']) {
        Some(rest) => (rest, true),
        None => (value, false),
    };
    let at = NaiveDateTime::parse_from_str(local, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
    if utc {
        Ok(When::DateTime(tz.from_utc_datetime(&at).naive_local()))
    } else {
        Ok(When::DateTime(at))
    }
}

/// The exclusive end date of an event given by DTSTART and a `P<n>D` or `P<n>W` duration, the
/// forms holiday feeds use.
fn end_after(start: &When, duration: &str) -> Result<NaiveDate, String> {
    let unsupported = || format!("DURATION `{duration}` is not a whole number of days or weeks");
    let body = duration.strip_prefix(['P', 'p']).ok_or_else(unsupported)?;
    let (count, unit) = body.split_at(body.len().saturating_sub(1));
    let count: i64 = count.parse().map_err(|_| unsupported())?;
    let days = match unit {
        "D" | "d" => count,
        "W" | "w" => count.saturating_mul(7),
        _ => return Err(unsupported()),
    };
    if days > MAX_EVENT_DAYS {
        return Err(format!(
            "it lasts {days} days; at most {MAX_EVENT_DAYS} are accepted"
        ));
    }
    start
        .date()
        .checked_add_signed(Duration::days(days))
        .ok_or_else(unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feed in the shapes real exports take: CRLF endings, a folded SUMMARY, a quoted TZID,
    /// a VTIMEZONE block with its own DTSTART that must not be read as a holiday, and lowercase
    /// property names.
    const FEED: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//postroom test//EN\r\n\
BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n\
END:STANDARD\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nUID:1@test\r\nDTSTART;VALUE=DATE:20251225\r\nDTEND;VALUE=DATE:20251227\r\n\
SUMMARY:Christmas Day and\r\n  Boxing Day\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:2@test\r\nDTSTART;TZID=\"Europe/Berlin\":20251231T000000\r\n\
DTEND;TZID=\"Europe/Berlin\":20260101T000000\r\nSUMMARY:New Year's Eve\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:3@test\r\nDTSTART:20260101T230000Z\r\nDTEND:20260102T010000Z\r\n\
END:VEVENT\r\n\
begin:vevent\r\ndtstart;value=date:20260406\r\nduration:P1D\r\nend:vevent\r\n\
BEGIN:VEVENT\r\nDTSTART:20260501\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_realistic_feed_yields_its_closed_local_dates() {
        let dates = holidays(FEED, chrono_tz::Europe::Berlin).unwrap();
        let expected: BTreeSet<NaiveDate> = [
            "2025-12-25",
            "2025-12-26",
            "2025-12-31",
            // 23:00Z on the 1st is midnight on the 2nd in Berlin; 01:00Z is 02:00 there.
            "2026-01-02",
            "2026-04-06",
            "2026-05-01",
        ]
        .into_iter()
        .map(day)
        .collect();
        assert_eq!(dates, expected);
    }

    #[test]
    fn unusable_events_are_reported_with_their_line() {
        let cases: &[(&str, &str)] = &[
            (
                "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20251224\nRRULE:FREQ=YEARLY\nEND:VEVENT\n",
                "line 1: recurring events",
            ),
            ("BEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\n", "no DTSTART"),
            (
                "X\nBEGIN:VEVENT\nDTSTART:2025-12-24\nEND:VEVENT\n",
                "line 2: DTSTART `2025",
            ),
            (
                "BEGIN:VEVENT\nDTSTART:20250101\nDTEND:20990101\nEND:VEVENT\n",
                "at most 366",
            ),
            (
                "BEGIN:VEVENT\nDTSTART:20250101\nDURATION:PT8H\nEND:VEVENT\n",
                "DURATION",
            ),
        ];
        for (text, expected) in cases {
            let problems = holidays(text, chrono_tz::UTC).expect_err(text);
            assert!(problems[0].contains(expected), "{text:?}: {problems:?}");
        }
    }

    #[test]
    fn the_checked_in_sample_file_parses() {
        let text = include_str!("testdata/holidays.ics");
        let dates = holidays(text, chrono_tz::Europe::Berlin).unwrap();
        assert!(dates.contains(&day("2025-12-25")));
        assert!(dates.contains(&day("2025-12-26")));
        assert_eq!(dates.len(), 4);
    }
}
