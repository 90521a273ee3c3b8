//! Business calendars and exact business-time arithmetic.
//!
//! This module owns the `[[calendar]]` section (its types and checks live in `hours`, the
//! holiday-file reader in `ics`) and answers the questions the SLA clock ([`crate::sla`]) and the
//! escalation sender ask: when is a deadline, how much business time lies between two instants,
//! is the calendar open now, and when does it next open.
//!
//! All instants in and out are UTC. Internally the walk goes by *local dates*: for each date the
//! weekly spans are resolved to UTC instants with the calendar's zone, so a 23- or 25-hour day, or
//! a day whose midnight does not exist (America/Sao_Paulo until 2019), is just a date whose spans
//! map to fewer or more UTC seconds. No step ever assumes a day lasts 24 hours or starts at 00:00.
//! Resolution is monotonic in local time (see [`resolve_local`]), so the resolved intervals never
//! overlap and business time sums exactly.

mod hours;
mod ics;

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::Problem;
pub use hours::CalendarConfig;
use hours::{Span, Week};

/// Consecutive local dates without any opening after which a search gives up. A year and a
/// month: a calendar with hours that are all eaten by holidays for that long is misconfigured,
/// and the bound keeps a calendar with no reachable hours from looping forever.
const MAX_CLOSED_DAYS: u32 = 400;

/// Local dates one computation may walk in total, about 110 years. SLA budgets are capped far
/// below this (see `sla::MAX_BUDGET`), so it only bounds absurd inputs.
const MAX_WALK_DAYS: u32 = 40_000;

/// Why a calendar computation has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// No opening was found within `MAX_CLOSED_DAYS` local dates: the calendar has no reachable
    /// hours (every span falls on a holiday, or the hours are empty).
    #[error("calendar `{0}` has no opening hours within {MAX_CLOSED_DAYS} days")]
    NeverOpen(String),
    /// The answer lies beyond the dates chrono can represent or the walk bound.
    #[error("calendar `{0}`: the answer lies too far in the future")]
    OutOfRange(String),
    /// Business time cannot be subtracted.
    #[error("calendar `{0}`: a negative business duration was asked for")]
    Negative(String),
}

/// A checked business calendar, ready for arithmetic.
#[derive(Debug, Clone)]
pub struct Calendar {
    name: String,
    tz: Tz,
    week: Week,
    holidays: BTreeSet<NaiveDate>,
    /// Every day open from midnight to midnight and no holiday: business time is elapsed time
    /// (local days join up even across a DST change), so arithmetic needs no walk.
    round_the_clock: bool,
}

/// A stretch of open business time, as UTC instants `[start, end)`.
type Interval = (DateTime<Utc>, DateTime<Utc>);

impl Calendar {
    /// Checks a `[[calendar]]` entry and reads its holiday file. Problems carry keys relative to
    /// the entry (`timezone`, `mon`, `holidays[2]`, `holidays_file`).
    pub fn from_config(config: &CalendarConfig) -> Result<Calendar, Vec<Problem>> {
        let mut problems = Vec::new();
        let tz = config.timezone.trim().parse::<Tz>().map_err(|_| {
            hours::problem(
                "timezone",
                format!("`{}` is not a known time zone", config.timezone),
                "use an IANA zone name such as \"Europe/Berlin\" or \"America/New_York\"",
            )
        });
        let week = hours::week(config).map_err(|p| problems.extend(p));
        let mut holidays: BTreeSet<NaiveDate> = match hours::holiday_dates(config) {
            Ok(dates) => dates.into_iter().collect(),
            Err(p) => {
                problems.extend(p);
                BTreeSet::new()
            }
        };
        match &tz {
            Ok(tz) => match read_holiday_file(config, *tz) {
                Ok(dates) => holidays.extend(dates),
                Err(p) => problems.extend(p),
            },
            Err(p) => problems.push(p.clone()),
        }
        match (tz, week) {
            (Ok(tz), Ok(week)) if problems.is_empty() => Ok(Calendar {
                name: config.name.clone(),
                tz,
                round_the_clock: holidays.is_empty()
                    && week.iter().all(|day| {
                        matches!(day.as_slice(), [span] if span.start == 0
                            && span.end == hours::DAY_MINUTES)
                    }),
                week,
                holidays,
            }),
            _ => Err(problems),
        }
    }

    /// The calendar's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The calendar's time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The instant at which `dur` of business time has passed since `start`: the deadline.
    ///
    /// A zero duration returns `start` itself, even outside hours, so an escalation "0m after
    /// breach" is due at the breach. A deadline that uses up a span exactly is that span's
    /// closing time, not the next opening.
    pub fn add_business(
        &self,
        start: DateTime<Utc>,
        dur: Duration,
    ) -> Result<DateTime<Utc>, CalendarError> {
        if dur < Duration::zero() {
            return Err(CalendarError::Negative(self.name.clone()));
        }
        if dur.is_zero() {
            return Ok(start);
        }
        let mut left = dur;
        let mut found = None;
        self.walk_from(start, |(open, close)| {
            let from = open.max(start);
            let available = close - from;
            if available >= left {
                found = Some(from + left);
                return true;
            }
            left -= available;
            false
        })?;
        found.ok_or_else(|| CalendarError::OutOfRange(self.name.clone()))
    }

    /// The business time between `a` and `b`; zero when `b` is not after `a`.
    ///
    /// Stretches longer than about 110 years (the walk bound) are counted only up to it.
    pub fn business_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> Duration {
        let mut total = Duration::zero();
        if b <= a {
            return total;
        }
        if self.round_the_clock {
            return b - a;
        }
        let (Some(mut date), Some(last)) =
            (self.local_date(a).pred_opt(), self.local_date(b).succ_opt())
        else {
            return total;
        };
        for _ in 0..MAX_WALK_DAYS {
            for (open, close) in self.intervals(date) {
                let (from, to) = (open.max(a), close.min(b));
                if to > from {
                    total += to - from;
                }
            }
            match date.succ_opt() {
                Some(next) if next <= last => date = next,
                _ => break,
            }
        }
        total
    }

    /// True when `t` lies inside opening hours; a closing instant itself is closed.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        self.around(t).any(|(open, close)| open <= t && t < close)
    }

    /// True when `t` lies inside opening hours or is exactly a closing time. Used to decide if a
    /// mail may go out now: a deadline that runs out at 17:00 sharp is told at 17:00, not the
    /// next morning.
    pub fn within_hours(&self, t: DateTime<Utc>) -> bool {
        self.around(t).any(|(open, close)| open <= t && t <= close)
    }

    /// Whether a daily mail at local time `minute` of the day (minutes since midnight) could
    /// ever go out: true when some weekday has hours that have not all closed before it. A
    /// time after the last closing of every open day names no instant inside hours.
    pub fn reaches(&self, minute: u16) -> bool {
        self.week
            .iter()
            .any(|day| day.last().is_some_and(|span| minute <= span.end))
    }

    /// `t` if the calendar is open then, otherwise its next opening.
    pub fn next_open(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, CalendarError> {
        let mut found = None;
        self.walk_from(t, |(open, _)| {
            found = Some(open.max(t));
            true
        })?;
        found.ok_or_else(|| CalendarError::OutOfRange(self.name.clone()))
    }

    /// Visits, in order, every interval that ends after `start`, until `visit` returns true.
    /// Fails after `MAX_CLOSED_DAYS` dates in a row without such an interval.
    fn walk_from(
        &self,
        start: DateTime<Utc>,
        mut visit: impl FnMut(Interval) -> bool,
    ) -> Result<(), CalendarError> {
        let out_of_range = || CalendarError::OutOfRange(self.name.clone());
        // The day before the local date of `start`: harmless, and it makes sure an interval that
        // began on the previous local date is seen however the zone maps `start`.
        let mut date = self.local_date(start).pred_opt().ok_or_else(out_of_range)?;
        let mut closed_streak = 0;
        for _ in 0..MAX_WALK_DAYS {
            let mut any = false;
            for interval in self.intervals(date) {
                if interval.1 <= start {
                    continue;
                }
                any = true;
                if visit(interval) {
                    return Ok(());
                }
            }
            closed_streak = if any { 0 } else { closed_streak + 1 };
            if closed_streak > MAX_CLOSED_DAYS {
                return Err(CalendarError::NeverOpen(self.name.clone()));
            }
            date = date.succ_opt().ok_or_else(out_of_range)?;
        }
        Err(out_of_range())
    }

    /// The intervals of the local dates on either side of `t`.
    fn around(&self, t: DateTime<Utc>) -> impl Iterator<Item = Interval> + '_ {
        let date = self.local_date(t);
        [date.pred_opt(), Some(date), date.succ_opt()]
            .into_iter()
            .flatten()
            .flat_map(|d| self.intervals(d))
    }

    /// The open intervals of one local date, in order; none on a holiday.
    fn intervals(&self, date: NaiveDate) -> Vec<Interval> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        let day = date.weekday().num_days_from_monday() as usize;
        self.week[day]
            .iter()
            .filter_map(|span| self.resolve_span(date, *span))
            .collect()
    }

    /// A span of one local date as UTC instants; `None` when the zone leaves nothing of it (a
    /// span that lies wholly inside a DST gap).
    fn resolve_span(&self, date: NaiveDate, span: Span) -> Option<Interval> {
        let midnight = date.and_time(chrono::NaiveTime::MIN);
        let at = |minute: u16| {
            let local = midnight.checked_add_signed(Duration::minutes(minute.into()))?;
            resolve_local(self.tz, local)
        };
        let (open, close) = (at(span.start)?, at(span.end)?);
        (open < close).then_some((open, close))
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }
}

/// The UTC instant of a local wall-clock time in `tz`.
///
/// A time that happens twice (the hour repeated when DST ends) is its earlier occurrence. A time
/// that does not exist (skipped when DST starts) is the first instant after the gap, i.e. the
/// transition itself. Both choices keep the mapping monotonic: a later local time never resolves
/// to an earlier instant, which is what keeps intervals from overlapping.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => first_after_gap(tz, local),
    }
}

/// The transition instant that skips over `local`: the first UTC second whose local time is at
/// or past it, found by bisection.
fn first_after_gap(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    // UTC offsets in tzdata stay within ±16 hours (historic local mean times included), so the
    // transition lies within 36 hours of the local time read as UTC; this also covers Samoa's
    // skipped day in 2011, whose gap is 24 hours long.
    const BRACKET_SECS: i64 = 36 * 3600;
    let guess = local.and_utc().timestamp();
    let reached = |secs: i64| {
        DateTime::from_timestamp(secs, 0).map(|t| t.with_timezone(&tz).naive_local() >= local)
    };
    let (mut before, mut after) = (guess - BRACKET_SECS, guess + BRACKET_SECS);
    if reached(before)? || !reached(after)? {
        return None;
    }
    // Invariant: `before` has not reached `local`, `after` has. 17 halvings of 72 hours.
    while after - before > 1 {
        let mid = before + (after - before) / 2;
        if reached(mid)? {
            after = mid;
        } else {
            before = mid;
        }
    }
    DateTime::from_timestamp(after, 0)
}

/// Reads the optional holiday file; problems are keyed `holidays_file`.
fn read_holiday_file(config: &CalendarConfig, tz: Tz) -> Result<Vec<NaiveDate>, Vec<Problem>> {
    let Some(path) = &config.holidays_file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path).map_err(|err| {
        vec![hours::problem(
            "holidays_file",
            format!("cannot read {}: {err}", path.display()),
            "point it at an iCalendar (.ics) file readable by postroom",
        )]
    })?;
    ics::holidays(&text, tz)
        .map(|dates| dates.into_iter().collect())
        .map_err(|messages| {
            messages
                .into_iter()
                .map(|message| {
                    hours::problem(
                        "holidays_file",
                        format!("{}: {message}", path.display()),
                        "fix or remove that event; each event closes whole local dates",
                    )
                })
                .collect()
        })
}

#[cfg(test)]
mod tests;

/// The business calendar of a mailbox: its own `calendar`, else its team's; `None` when neither
/// names one.
pub fn for_mailbox(
    config: &crate::config::Config,
    mailbox: &crate::config::MailboxConfig,
) -> anyhow::Result<Option<Calendar>> {
    let team = config
        .team(&mailbox.team)
        .and_then(|t| t.calendar.as_deref());
    let Some(name) = mailbox.calendar.as_deref().or(team) else {
        return Ok(None);
    };
    let Some(calendar) = config.calendar(name) else {
        anyhow::bail!("mailbox {}: no [[calendar]] is named {name}", mailbox.name)
    };
    let built = Calendar::from_config(calendar).map_err(|problems| {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("calendar {name}: {}", text.join("; "))
    })?;
    Ok(Some(built))
}
