//! SLA policies and the pure SLA clock.
//!
//! This module owns the `[[sla]]` section and answers, for one conversation, "where does its
//! clock stand at this instant, and which escalation levels are due?". It is pure: the caller
//! passes the policy, the [`Calendar`] to count in, the instant the clock started (the server's
//! INTERNALDATE of the first message, never the sender's `Date:` header, which the sender
//! controls, see field case BUG-14), the instant it stopped if it did, and `now` from
//! [`crate::clock`]. Nothing here reads a clock, the store, IMAP or SMTP; sending and
//! de-duplicating the mails (one per conversation and [`Level::key`]) is the caller's job.

mod daily;
mod parse;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;

use crate::calendar::{Calendar, CalendarError};
use crate::config::{MailboxConfig, Problem, TeamConfig};
pub use daily::{local_date, reminder_due, slot_due, TimeOfDay};
pub use parse::{parse_duration, parse_percent, Percent, MAX_BUDGET_SECS};

/// `[[sla]]`: a promise to customers, counted in business time.
#[derive(Debug, Clone, Deserialize)]
pub struct SlaConfig {
    /// The name mailboxes, teams and rules refer to.
    pub name: String,
    /// Business time until the first response, such as `"4h"` or `"1h30m"`.
    pub first_response: String,
    /// Business time for each response after a customer follows up.
    pub next_response: Option<String>,
    /// Business time until the conversation is done.
    pub resolution: Option<String>,
    /// The share of a budget after which the owner is warned, such as `"75%"`.
    pub warn_at: Option<String>,
    /// The `[[calendar]]` to count in; defaults to the mailbox's, then the team's.
    pub calendar: Option<String>,
    /// Escalation levels after a breach; one level to the team lead at breach if none is given.
    #[serde(default, rename = "escalation")]
    pub escalations: Vec<EscalationConfig>,
    /// A local time of day, `"HH:MM"` on the policy's calendar, at which a breached clock that
    /// is still running is reminded of once per business day; no reminders when unset.
    pub reminder: Option<String>,
}

/// `[[sla.escalation]]`: who hears about a breach, and when.
#[derive(Debug, Clone, Deserialize)]
pub struct EscalationConfig {
    /// Business time after the breach, such as `"0m"` (at breach) or `"4h"`.
    pub after: String,
    /// Addresses, or the roles `owner` and `lead`.
    pub to: Vec<String>,
    /// Send even when the calendar is closed. Off by default: nobody wants a breach mail at
    /// midnight or on Sunday (field case BUG-21).
    #[serde(default)]
    pub outside_hours: bool,
}

/// Who an escalation goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// The conversation's owner.
    Owner,
    /// The lead of the team working the mailbox.
    Lead,
    /// A fixed address.
    Address(String),
}

/// A checked escalation level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// Business time after the breach.
    pub after: Duration,
    /// Who receives it.
    pub to: Vec<Recipient>,
    /// Whether it may go out while the calendar is closed.
    pub outside_hours: bool,
}

/// A checked SLA policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// Budget for the first response.
    pub first_response: Duration,
    /// Budget for each next response, if tracked.
    pub next_response: Option<Duration>,
    /// Budget for resolution, if tracked.
    pub resolution: Option<Duration>,
    /// When the owner is warned, as a share of the budget.
    pub warn_at: Option<Percent>,
    /// The calendar named by the policy itself, if any.
    pub calendar: Option<String>,
    /// Levels after breach, in the order written; never empty.
    pub escalations: Vec<Escalation>,
    /// The daily reminder's local time of day, if reminders are on.
    pub reminder: Option<TimeOfDay>,
}

/// Which clock of a conversation is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// From the first customer message to the first response.
    FirstResponse,
    /// From a customer follow-up (after a response) to the next response.
    NextResponse,
    /// From the first customer message to done.
    Resolution,
}

/// One run of a clock: when it started and, if it did, when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    /// The clock this leg runs.
    pub target: Target,
    /// Arrival of the message that started it (INTERNALDATE).
    pub started: DateTime<Utc>,
    /// The response (or done) that stopped it.
    pub stopped: Option<DateTime<Utc>>,
}

/// Where a clock stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running, before the warning point.
    Running,
    /// Running, past the warning point.
    Warned,
    /// Stopped at or before the deadline.
    Met,
    /// The deadline passed without a stop (a late stop does not undo it).
    Breached,
}

/// A clock evaluated at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The state at the instant asked about.
    pub state: State,
    /// When the owner is (or was) to be warned.
    pub warn_at: Option<DateTime<Utc>>,
    /// The deadline.
    pub breach_at: DateTime<Utc>,
    /// Business time used so far, up to the stop if there was one.
    pub used: Duration,
    /// When each escalation level falls due, in policy order (its hours rule not yet applied).
    pub escalation_at: Vec<DateTime<Utc>>,
}

/// A notification a clock calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The warning to the owner at `warn_at`.
    Warning,
    /// The escalation level at this index of the policy.
    Escalation(usize),
}

impl Level {
    /// A stable key for de-duplication: send each (conversation, leg, key) at most once.
    pub fn key(self) -> String {
        match self {
            Level::Warning => "warning".into(),
            Level::Escalation(i) => format!("escalation-{i}"),
        }
    }
}

/// A level that may be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueLevel {
    /// Which level.
    pub level: Level,
    /// When it fell due (the warning or escalation instant).
    pub due_at: DateTime<Utc>,
    /// Who receives it.
    pub to: Vec<Recipient>,
}

impl Policy {
    /// Checks an `[[sla]]` entry. Problems carry keys relative to it (`first_response`,
    /// `escalation[1].to`); `config_check` adds the prefix and the line.
    pub fn from_config(config: &SlaConfig) -> Result<Policy, Vec<Problem>> {
        let mut problems = Vec::new();
        let first_response = budget("first_response", &config.first_response, &mut problems);
        let mut optional = |key: &str, text: &Option<String>| {
            text.as_ref().and_then(|t| budget(key, t, &mut problems))
        };
        let next_response = optional("next_response", &config.next_response);
        let resolution = optional("resolution", &config.resolution);
        let warn_at = config.warn_at.as_ref().and_then(|text| {
            parse_percent(text)
                .map_err(|msg| problems.push(problem("warn_at", msg, "such as warn_at = \"75%\"")))
                .ok()
        });
        let escalations = escalations(&config.escalations, &mut problems);
        let reminder = config.reminder.as_ref().and_then(|text| {
            let hint = "the local time on the policy's calendar, such as reminder = \"09:00\"";
            TimeOfDay::parse(text)
                .map_err(|msg| problems.push(problem("reminder", msg, hint)))
                .ok()
        });
        match first_response {
            Some(first_response) if problems.is_empty() => Ok(Policy {
                name: config.name.clone(),
                first_response,
                next_response,
                resolution,
                warn_at,
                calendar: config.calendar.clone(),
                escalations,
                reminder,
            }),
            _ => Err(problems),
        }
    }

    /// The budget of one clock, if the policy tracks it.
    pub fn budget(&self, target: Target) -> Option<Duration> {
        match target {
            Target::FirstResponse => Some(self.first_response),
            Target::NextResponse => self.next_response,
            Target::Resolution => self.resolution,
        }
    }

    /// Where `leg`'s clock stands at `now`; `None` when the policy does not track that clock.
    /// A stop later than `now` has not happened yet and is ignored.
    pub fn evaluate(
        &self,
        calendar: &Calendar,
        leg: &Leg,
        now: DateTime<Utc>,
    ) -> Result<Option<Evaluation>, CalendarError> {
        let Some(budget) = self.budget(leg.target) else {
            return Ok(None);
        };
        let breach_at = calendar.add_business(leg.started, budget)?;
        let warn_at = match self.warn_at {
            Some(share) => Some(calendar.add_business(leg.started, share.of(budget))?),
            None => None,
        };
        let escalation_at = self
            .escalations
            .iter()
            .map(|level| calendar.add_business(breach_at, level.after))
            .collect::<Result<Vec<_>, _>>()?;
        let stopped = leg.stopped.filter(|at| *at <= now);
        let state = match stopped {
            // A response at the deadline itself still meets it.
            Some(at) if at <= breach_at => State::Met,
            _ if now >= breach_at => State::Breached,
            _ if warn_at.is_some_and(|w| now >= w) => State::Warned,
            _ => State::Running,
        };
        Ok(Some(Evaluation {
            state,
            warn_at,
            breach_at,
            used: calendar.business_between(leg.started, stopped.unwrap_or(now)),
            escalation_at,
        }))
    }

    /// The levels that may be sent at `now`: fallen due, the clock still running or breached
    /// without a stop, and inside the calendar's hours unless the level allows otherwise.
    ///
    /// A level stays in this list for as long as it holds, so a daemon that was down at the
    /// due instant still sends it later; the caller sends each (conversation, leg, level) once.
    /// Once the clock has stopped nothing is due, even levels that fell due before the stop and
    /// were never sent: the news would be stale.
    pub fn levels_due(
        &self,
        calendar: &Calendar,
        leg: &Leg,
        now: DateTime<Utc>,
    ) -> Result<Vec<DueLevel>, CalendarError> {
        let Some(eval) = self.evaluate(calendar, leg, now)? else {
            return Ok(Vec::new());
        };
        let in_hours = calendar.within_hours(now);
        let mut due = Vec::new();
        if let (State::Warned, Some(warn_at), true) = (eval.state, eval.warn_at, in_hours) {
            due.push(DueLevel {
                level: Level::Warning,
                due_at: warn_at,
                to: vec![Recipient::Owner],
            });
        }
        if eval.state == State::Breached && leg.stopped.is_none_or(|at| at > now) {
            let levels = self.escalations.iter().zip(&eval.escalation_at).enumerate();
            for (i, (level, at)) in levels {
                if *at <= now && (level.outside_hours || in_hours) {
                    due.push(DueLevel {
                        level: Level::Escalation(i),
                        due_at: *at,
                        to: level.to.clone(),
                    });
                }
            }
        }
        Ok(due)
    }

    /// The local date whose daily reminder about `leg` may go out at `now`: reminders are on,
    /// the clock is breached and still running, and [`reminder_due`] allows it. `last_mail` is
    /// when the latest escalation mail about this clock was queued, if any.
    pub fn reminder_due(
        &self,
        calendar: &Calendar,
        leg: &Leg,
        last_mail: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<NaiveDate>, CalendarError> {
        let Some(time) = self.reminder else {
            return Ok(None);
        };
        let Some(eval) = self.evaluate(calendar, leg, now)? else {
            return Ok(None);
        };
        let running = leg.stopped.is_none_or(|at| at > now);
        if eval.state != State::Breached || !running {
            return Ok(None);
        }
        let news = last_mail.map_or(eval.breach_at, |at| at.max(eval.breach_at));
        Ok(reminder_due(calendar, time, news, now))
    }

    /// The next instant after `now` at which [`Policy::levels_due`] may grow: a warning or
    /// escalation instant still ahead, or the next opening for a level held back by the hours.
    /// `None` when nothing more can fall due. Lets the caller sleep instead of polling.
    pub fn next_check(
        &self,
        calendar: &Calendar,
        leg: &Leg,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, CalendarError> {
        let Some(eval) = self.evaluate(calendar, leg, now)? else {
            return Ok(None);
        };
        if let Some(stop) = leg.stopped {
            // Nothing falls due after a stop; before it, only instants up to the stop count.
            if stop <= now {
                return Ok(None);
            }
        }
        let ahead = eval
            .warn_at
            .into_iter()
            .chain(eval.escalation_at.iter().copied())
            .filter(|at| *at > now);
        let held_back = self
            .escalations
            .iter()
            .zip(&eval.escalation_at)
            .any(|(level, at)| *at <= now && !level.outside_hours)
            || eval.state == State::Warned;
        let reopen = if held_back && !calendar.within_hours(now) {
            Some(calendar.next_open(now)?)
        } else {
            None
        };
        let next = ahead.chain(reopen).min();
        Ok(next.filter(|at| leg.stopped.is_none_or(|stop| *at < stop)))
    }
}

/// The calendar a policy counts in: its own, else the mailbox's, else the team's.
pub fn calendar_name<'a>(
    policy: &'a Policy,
    mailbox: Option<&'a MailboxConfig>,
    team: Option<&'a TeamConfig>,
) -> Option<&'a str> {
    policy
        .calendar
        .as_deref()
        .or_else(|| mailbox.and_then(|m| m.calendar.as_deref()))
        .or_else(|| team.and_then(|t| t.calendar.as_deref()))
}

/// Parses one budget, which must be more than zero.
fn budget(key: &str, text: &str, problems: &mut Vec<Problem>) -> Option<Duration> {
    let hint = "business time such as \"4h\", \"30m\" or \"1h30m\"; 1d is 24 business hours";
    match parse_duration(text) {
        Ok(d) if d > Duration::zero() => Some(d),
        Ok(_) => {
            problems.push(problem(key, format!("`{text}` is zero"), hint));
            None
        }
        Err(message) => {
            problems.push(problem(key, message, hint));
            None
        }
    }
}

/// Checks the escalation levels; with none written, one to the team lead at breach.
fn escalations(written: &[EscalationConfig], problems: &mut Vec<Problem>) -> Vec<Escalation> {
    if written.is_empty() {
        return vec![Escalation {
            after: Duration::zero(),
            to: vec![Recipient::Lead],
            outside_hours: false,
        }];
    }
    let mut levels = Vec::with_capacity(written.len());
    for (i, level) in written.iter().enumerate() {
        let after = parse_duration(&level.after).map_err(|message| {
            let hint = "business time after the breach, such as \"0m\" or \"2h\"";
            problems.push(problem(&format!("escalation[{i}].after"), message, hint));
        });
        let to = recipients(&level.to).map_err(|message| {
            let hint = "list addresses, or the roles \"owner\" and \"lead\"";
            problems.push(problem(&format!("escalation[{i}].to"), message, hint));
        });
        if let (Ok(after), Ok(to)) = (after, to) {
            levels.push(Escalation {
                after,
                to,
                outside_hours: level.outside_hours,
            });
        }
    }
    levels
}

fn recipients(written: &[String]) -> Result<Vec<Recipient>, String> {
    if written.is_empty() {
        return Err("no recipients".into());
    }
    written
        .iter()
        .map(|entry| match entry.trim() {
            "owner" => Ok(Recipient::Owner),
            "lead" => Ok(Recipient::Lead),
            address if looks_like_address(address) => Ok(Recipient::Address(address.into())),
            other => Err(format!("`{other}` is neither a role nor an address")),
        })
        .collect()
}

/// A plain `local@domain` with nothing that could break a header line or a mail address list.
fn looks_like_address(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let clean = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_graphic() && !"@<>()[]\\,;:\"".contains(c))
    };
    clean(local) && clean(domain) && domain.contains('.')
}

fn problem(key: &str, message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem {
        key: key.to_string(),
        line: None,
        message: message.into(),
        hint: hint.into(),
    }
}

#[cfg(test)]
mod tests;
