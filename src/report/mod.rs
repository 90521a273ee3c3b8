//! `postroom report`: what leads ask of a queue, computed from the store's history.
//!
//! This module owns the report's numbers and their stable shape ([`Report`], documented in
//! `docs/report-format.md`); [`render`] turns one into a table, JSON or CSV, and the HTTP
//! dashboard draws the same structure. Nothing here talks to a server or writes the store.
//!
//! Inputs are the conversations (their current snapshot) and the event log. [`build`] makes one
//! pass over the events (volume per day and hour, per-agent assignments and closes, and, with
//! `recompute`, each conversation's response and close instants) and one pass over the
//! conversations (backlog, response times, SLA outcomes, breakdowns): O(E + C) plus sorting the
//! response-time samples, O(C log C), and a calendar walk per answered conversation that is
//! proportional to the days it spans. Memory holds the loaded records, one `Vec` each.
//! [`compute`], reading the store itself, replaces the pass over the events by the store's
//! hourly summaries (O(hours in the window)) unless it recomputes.
//!
//! Business time is counted with the calendars of the config the report runs with; the store
//! keeps instants, never business durations, so every report reflects today's calendars.

mod clocks;
mod history;
pub mod render;
mod stats;
mod tally;
mod window;

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::store::{Conversation, Event, Store};
pub use clocks::{Clocks, Standing, ALWAYS};
use history::History;
pub use stats::{human, percentile, Bucket, Distribution};
use tally::Tally;
pub use window::{parse_since, Window};

/// What a report covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// One mailbox, or all of them.
    pub mailbox: Option<String>,
    /// The period for volume, response times, SLA outcomes and breakdowns.
    pub window: Window,
    /// Take response and close instants from the event log instead of the conversations'
    /// snapshot fields (useful after `rebuild`, which cannot recover response history).
    pub recompute: bool,
}

/// The records a report reads, loaded once.
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// Conversations, of the chosen mailbox or all.
    pub conversations: Vec<Conversation>,
    /// The whole event log, oldest first.
    pub events: Vec<Event>,
}

impl Data {
    /// Reads conversations and the whole event log from the store.
    pub fn load(store: &Store, mailbox: Option<&str>) -> Result<Data> {
        Ok(Data {
            conversations: store.conversations(mailbox)?,
            events: store.events()?,
        })
    }

    /// Reads what a report over `options` needs, which gives the same report as [`Data::load`]:
    /// the conversations, the events of the window only (a range read of the time-keyed log),
    /// and for each conversation closed in the window the last event before it that says
    /// whether it was open then, so a repeated close is still told from a first one. With
    /// `recompute` the instants come from the whole log, so all of it is read.
    pub fn load_for(store: &Store, options: &Options) -> Result<Data> {
        let mailbox = options.mailbox.as_deref();
        if options.recompute {
            return Data::load(store, mailbox);
        }
        let window = &options.window;
        let mut events = store.events_between(window.from, window.to)?;
        events.retain(|e| mailbox.is_none_or(|m| e.mailbox == m));
        let before = history::open_state_before(store, &events, window.from)?;
        Ok(Data {
            conversations: store.conversations(mailbox)?,
            events: before.into_iter().chain(events).collect(),
        })
    }
}

/// Received, assigned and closed counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Messages decided on: new conversations, follow-ups and mail left in place.
    pub received: u64,
    /// Conversations given an owner by postroom.
    pub assigned: u64,
    /// Conversations closed (a repeated close of a closed conversation is not counted).
    pub closed: u64,
}

/// One day of volume (UTC date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayVolume {
    /// The UTC date.
    pub date: NaiveDate,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// One hour of the day (UTC), summed over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourVolume {
    /// The hour, 0 to 23.
    pub hour: u32,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// Volume over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The whole window.
    pub total: Counts,
    /// Every date of the window, zeros included.
    pub days: Vec<DayVolume>,
    /// All 24 hours.
    pub hours: Vec<HourVolume>,
}

/// The open conversation that has waited longest for an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldestWaiting {
    /// Its id.
    pub conversation: String,
    /// Its mailbox.
    pub mailbox: String,
    /// Its subject (mail-derived text: escape it before showing it anywhere).
    pub subject: String,
    /// Its owner.
    pub owner: Option<String>,
    /// Since when the customer waits.
    pub waiting_since: DateTime<Utc>,
    /// How long, in seconds, at the report's instant.
    pub age_secs: i64,
}

/// Open conversations now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    /// Open conversations.
    pub open: u64,
    /// Of those, waiting for an answer from the team.
    pub waiting: u64,
    /// Of those, without an owner.
    pub unassigned: u64,
    /// Open conversations by age since their first message.
    pub age: Vec<Bucket>,
    /// The longest wait, if anyone waits.
    pub oldest_waiting: Option<OldestWaiting>,
}

/// Time to first response of the conversations started in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstResponse {
    /// Wall-clock time.
    pub elapsed: Distribution,
    /// Business time, in each conversation's calendar.
    pub business: Distribution,
    /// Started in the window, not answered yet.
    pub unanswered: u64,
    /// Of those answered, how many only as far as Outlook's `\Answered` flag tells (no reply
    /// found in the sent folder): a hint, not proof.
    #[serde(default)]
    pub answered_by_flag: u64,
}

/// One agent's workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRow {
    /// The agent id.
    pub agent: String,
    /// Conversations given to them in the window (by postroom or by a person).
    pub assigned: u64,
    /// Open conversations they own now.
    pub open: u64,
    /// Conversations closed in the window while they owned them.
    pub closed: u64,
    /// Median elapsed first response of the conversations they own that started in the window.
    pub median_first_response_secs: Option<i64>,
    /// The same in business time.
    pub median_first_response_business_secs: Option<i64>,
}

/// SLA outcomes of one policy's clock in one mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaRow {
    /// The mailbox.
    pub mailbox: String,
    /// The policy's name.
    pub policy: String,
    /// `first_response` or `resolution`.
    pub target: String,
    /// Stopped in time.
    pub met: u64,
    /// Past the deadline (answered late, or not at all).
    pub breached: u64,
    /// Running and past the policy's warning point.
    pub at_risk: u64,
    /// Running, before the warning point.
    pub running: u64,
    /// Could not be evaluated (policy no longer configured, calendar without hours).
    pub unevaluated: u64,
    /// `met / (met + breached)` in percent, one decimal.
    pub compliance_percent: Option<f64>,
}

/// One row of a breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakdownRow {
    /// The tag, rule or sender domain.
    pub key: String,
    /// Conversations started in the window.
    pub conversations: u64,
    /// Of those, open now.
    pub open: u64,
    /// Of those, answered.
    pub answered: u64,
    /// Their median elapsed first response.
    pub median_first_response_secs: Option<i64>,
}

/// Breakdowns of the conversations started in the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdowns {
    /// By the first message's sender domain, most conversations first.
    pub sender_domain: Vec<BreakdownRow>,
    /// By tag (a conversation with several tags counts under each).
    pub tag: Vec<BreakdownRow>,
    /// By the routing rules that matched its messages.
    pub rule: Vec<BreakdownRow>,
}

/// The whole report. Its JSON form is the stable format of `docs/report-format.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The format's version; bumped only when a field changes meaning or goes away.
    pub format: u32,
    /// The instant the report describes ("now").
    pub generated_at: DateTime<Utc>,
    /// The mailbox, or `None` for all.
    pub mailbox: Option<String>,
    /// The period.
    pub window: Window,
    /// Whether instants came from the event log.
    pub recomputed: bool,
    /// Volume.
    pub volume: Volume,
    /// Backlog now.
    pub backlog: Backlog,
    /// First-response times.
    pub first_response: FirstResponse,
    /// Per agent.
    pub agents: Vec<AgentRow>,
    /// SLA compliance.
    pub sla: Vec<SlaRow>,
    /// Breakdowns.
    pub breakdowns: Breakdowns,
}

/// The current [`Report::format`].
pub const FORMAT_VERSION: u32 = 1;

/// Computes a report over loaded records at `now`.
pub fn build(
    config: &Config,
    clocks: &Clocks,
    data: &Data,
    options: &Options,
    now: DateTime<Utc>,
) -> Report {
    let history = History::scan(&data.events, options);
    let mut tally = Tally::new(clocks, &options.window, now);
    let wanted = |c: &&Conversation| options.mailbox.as_ref().is_none_or(|m| &c.mailbox == m);
    for conv in data.conversations.iter().filter(wanted) {
        if options.recompute {
            let mut conv = conv.clone();
            history.apply(&mut conv, true);
            tally.add(&conv);
        } else {
            tally.add(conv);
        }
    }
    assemble(config, tally, &history, options, now)
}

/// The report from the conversations' tally and what the pass over the events found.
fn assemble(
    config: &Config,
    tally: Tally<'_>,
    history: &History,
    options: &Options,
    now: DateTime<Utc>,
) -> Report {
    let parts = tally.finish(config, options, history);
    Report {
        format: FORMAT_VERSION,
        generated_at: now,
        mailbox: options.mailbox.clone(),
        window: options.window.clone(),
        recomputed: options.recompute,
        volume: history.volume(&options.window),
        backlog: parts.backlog,
        first_response: parts.first_response,
        agents: parts.agents,
        sla: parts.sla,
        breakdowns: parts.breakdowns,
    }
}

/// Loads the records and builds the report: the entry point of `postroom report`. Without
/// `recompute` the counts over time come from the store's hourly summaries, which give the
/// numbers a pass over the whole log gives, without reading it.
pub fn compute(
    config: &Config,
    store: &Store,
    options: &Options,
    now: DateTime<Utc>,
) -> Result<Report> {
    let clocks = Clocks::from_config(config)?;
    if options.recompute {
        let data = Data::load(store, options.mailbox.as_deref())?;
        return Ok(build(config, &clocks, &data, options, now));
    }
    let history = History::from_store(store, options)?;
    let mut tally = Tally::new(&clocks, &options.window, now);
    for conv in store.conversations_iter(options.mailbox.as_deref()) {
        tally.add(&conv?);
    }
    Ok(assemble(config, tally, &history, options, now))
}

/// The lower-cased domain of an address, `(none)` when there is no usable one.
pub fn sender_domain(from: Option<&str>) -> String {
    from.and_then(|a| a.rsplit_once('@'))
        .map(|(_, domain)| domain.trim().trim_end_matches('>').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "(none)".into())
}
