//! The SLA policies and calendars of a config, checked once and looked up per conversation.
//!
//! Building a [`Calendar`] reads holiday files, so the HTTP server builds [`Clocks`] once at
//! start and every report or page reuses it. Business time is always counted with the calendars
//! in the config given here: the store keeps instants, never business durations, which is what
//! lets a changed calendar recompute the past.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};

use crate::calendar::{Calendar, CalendarConfig};
use crate::config::Config;
use crate::sla::{self, Evaluation, Leg, Policy, Target};
use crate::store::Conversation;

/// The name of the around-the-clock UTC calendar used where the config names none.
pub const ALWAYS: &str = "(always)";

/// Checked policies and calendars.
#[derive(Debug, Clone)]
pub struct Clocks {
    policies: BTreeMap<String, Policy>,
    calendars: BTreeMap<String, Calendar>,
    /// Per mailbox: the calendar its conversations count in when their policy names none.
    mailbox_calendar: BTreeMap<String, String>,
    always: Calendar,
}

/// Where the clock of an open conversation stands now.
#[derive(Debug, Clone)]
pub struct Standing {
    /// The policy's name.
    pub policy: String,
    /// Which clock runs.
    pub target: Target,
    /// Its evaluation at `now`.
    pub evaluation: Evaluation,
}

impl Clocks {
    /// Checks every `[[sla]]` and `[[calendar]]`; fails on the first one that does not check
    /// (config validation has normally refused such a file already).
    pub fn from_config(config: &Config) -> Result<Clocks> {
        let mut policies = BTreeMap::new();
        for entry in &config.slas {
            let policy = Policy::from_config(entry)
                .map_err(|p| anyhow!("sla `{}`: {}", entry.name, describe(&p)))?;
            policies.insert(entry.name.clone(), policy);
        }
        let mut calendars = BTreeMap::new();
        for entry in &config.calendars {
            let calendar = Calendar::from_config(entry)
                .map_err(|p| anyhow!("calendar `{}`: {}", entry.name, describe(&p)))?;
            calendars.insert(entry.name.clone(), calendar);
        }
        let mailbox_calendar = config
            .mailboxes
            .iter()
            .filter_map(|m| {
                let team = config.team(&m.team);
                let name = m
                    .calendar
                    .as_ref()
                    .or(team.and_then(|t| t.calendar.as_ref()));
                name.map(|n| (m.name.clone(), n.clone()))
            })
            .collect();
        Ok(Clocks {
            policies,
            calendars,
            mailbox_calendar,
            always: always_open()?,
        })
    }

    /// A policy by name.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    /// The calendar a conversation's business time is counted in: its policy's, else its
    /// mailbox's, else its team's, else around the clock (business time = elapsed time).
    pub fn calendar_for(&self, conv: &Conversation) -> &Calendar {
        let policy_calendar = conv
            .sla
            .as_deref()
            .and_then(|name| self.policies.get(name))
            .and_then(|p| sla::calendar_name(p, None, None));
        policy_calendar
            .or_else(|| self.mailbox_calendar.get(&conv.mailbox).map(String::as_str))
            .and_then(|name| self.calendars.get(name))
            .unwrap_or(&self.always)
    }

    /// Business seconds between two instants in the conversation's calendar.
    pub fn business_secs(&self, conv: &Conversation, a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
        self.calendar_for(conv).business_between(a, b).num_seconds()
    }

    /// Evaluates one clock of a conversation under its policy at `now`. `None` when the
    /// conversation has no known policy, the policy does not track `target`, or the calendar
    /// cannot answer.
    pub fn evaluate(
        &self,
        conv: &Conversation,
        leg: &Leg,
        now: DateTime<Utc>,
    ) -> Option<Evaluation> {
        let policy = self.policies.get(conv.sla.as_deref()?)?;
        policy
            .evaluate(self.calendar_for(conv), leg, now)
            .ok()
            .flatten()
    }

    /// The clock that runs now for an open conversation: the first response while it is
    /// unanswered, else the next response while a customer waits (if the policy tracks it).
    pub fn standing(&self, conv: &Conversation, now: DateTime<Utc>) -> Option<Standing> {
        let policy = conv.sla.clone()?;
        let leg = match (conv.first_response_at, conv.waiting_since) {
            (None, _) => Leg {
                target: Target::FirstResponse,
                started: conv.started,
                stopped: None,
            },
            (Some(_), Some(since)) => Leg {
                target: Target::NextResponse,
                started: since,
                stopped: None,
            },
            (Some(_), None) => return None,
        };
        let evaluation = self.evaluate(conv, &leg, now)?;
        Some(Standing {
            policy,
            target: leg.target,
            evaluation,
        })
    }
}

/// The around-the-clock UTC calendar.
fn always_open() -> Result<Calendar> {
    let config = CalendarConfig {
        name: ALWAYS.into(),
        timezone: "UTC".into(),
        always: true,
        ..CalendarConfig::default()
    };
    Calendar::from_config(&config).map_err(|p| anyhow!("the built-in calendar: {}", describe(&p)))
}

fn describe(problems: &[crate::config::Problem]) -> String {
    let texts: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    texts.join("; ")
}
