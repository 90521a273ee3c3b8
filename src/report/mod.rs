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
mod window;

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::sla::{Leg, State, Target};
use crate::store::{Conversation, ConversationState, Event, Store};
pub use clocks::{Clocks, Standing, ALWAYS};
use history::History;
pub use stats::{human, percentile, Bucket, Distribution};
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
    let conversations = data
        .conversations
        .iter()
        .filter(|c| options.mailbox.as_ref().is_none_or(|m| &c.mailbox == m))
        .cloned()
        .collect();
    assemble(config, clocks, conversations, &history, options, now)
}

/// The report from the conversations (those of other mailboxes are dropped) and what the pass
/// over the events found.
fn assemble(
    config: &Config,
    clocks: &Clocks,
    mut conversations: Vec<Conversation>,
    history: &History,
    options: &Options,
    now: DateTime<Utc>,
) -> Report {
    conversations.retain(|c| options.mailbox.as_ref().is_none_or(|m| &c.mailbox == m));
    for conv in &mut conversations {
        history.apply(conv, options.recompute);
    }
    let answered = answered_times(clocks, &conversations, &options.window);
    Report {
        format: FORMAT_VERSION,
        generated_at: now,
        mailbox: options.mailbox.clone(),
        window: options.window.clone(),
        recomputed: options.recompute,
        volume: history.volume(&options.window),
        backlog: backlog(&conversations, now),
        first_response: first_response(&answered, &conversations, &options.window),
        agents: agents(config, options, history, &conversations, &answered),
        sla: sla_rows(clocks, &conversations, &options.window, now),
        breakdowns: Breakdowns {
            sender_domain: breakdown(&conversations, &answered, &options.window, |c| {
                vec![sender_domain(c.from.as_deref())]
            }),
            tag: breakdown(&conversations, &answered, &options.window, |c| {
                c.tags.clone()
            }),
            rule: breakdown(&conversations, &answered, &options.window, |c| {
                c.rules.clone()
            }),
        },
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
    let conversations = store.conversations(options.mailbox.as_deref())?;
    let history = History::from_store(store, options)?;
    Ok(assemble(
        config,
        &clocks,
        conversations,
        &history,
        options,
        now,
    ))
}

/// Elapsed and business first-response seconds by conversation id.
type Answered<'a> = HashMap<&'a str, (i64, i64)>;

/// Elapsed and business first-response seconds of the conversations started in the window
/// and answered, by conversation id.
fn answered_times<'a>(
    clocks: &Clocks,
    conversations: &'a [Conversation],
    window: &Window,
) -> Answered<'a> {
    conversations
        .iter()
        .filter(|c| window.contains(c.started))
        .filter_map(|c| {
            let at = c.first_response_at?;
            let elapsed = (at - c.started).num_seconds().max(0);
            Some((
                c.id.as_str(),
                (elapsed, clocks.business_secs(c, c.started, at)),
            ))
        })
        .collect()
}

fn backlog(conversations: &[Conversation], now: DateTime<Utc>) -> Backlog {
    let open: Vec<&Conversation> = conversations
        .iter()
        .filter(|c| c.state == ConversationState::Open)
        .collect();
    let ages: Vec<i64> = open
        .iter()
        .map(|c| (now - c.started).num_seconds())
        .collect();
    let oldest = open
        .iter()
        .filter_map(|c| c.waiting_since.map(|since| (since, *c)))
        .min_by_key(|(since, c)| (*since, c.id.clone()));
    Backlog {
        open: open.len() as u64,
        waiting: open.iter().filter(|c| c.waiting_since.is_some()).count() as u64,
        unassigned: open.iter().filter(|c| c.owner.is_none()).count() as u64,
        age: stats::histogram(&ages, &stats::AGE_BOUNDS, stats::AGE_REST, false),
        oldest_waiting: oldest.map(|(since, c)| OldestWaiting {
            conversation: c.id.clone(),
            mailbox: c.mailbox.clone(),
            subject: c.subject.clone(),
            owner: c.owner.clone(),
            waiting_since: since,
            age_secs: (now - since).num_seconds(),
        }),
    }
}

fn first_response(
    answered: &Answered<'_>,
    conversations: &[Conversation],
    window: &Window,
) -> FirstResponse {
    let mut elapsed: Vec<i64> = answered.values().map(|t| t.0).collect();
    let mut business: Vec<i64> = answered.values().map(|t| t.1).collect();
    let unanswered = conversations
        .iter()
        .filter(|c| window.contains(c.started) && c.first_response_at.is_none())
        .count() as u64;
    FirstResponse {
        elapsed: Distribution::of(&mut elapsed),
        business: Distribution::of(&mut business),
        unanswered,
    }
}

fn agents(
    config: &Config,
    options: &Options,
    history: &History,
    conversations: &[Conversation],
    answered: &Answered<'_>,
) -> Vec<AgentRow> {
    let mut ids: Vec<String> = config
        .mailboxes
        .iter()
        .filter(|m| options.mailbox.as_ref().is_none_or(|n| &m.name == n))
        .filter_map(|m| config.team(&m.team))
        .flat_map(|t| t.agents.iter().cloned())
        .chain(history.assigned_to.keys().cloned())
        .chain(history.closed_by.keys().cloned())
        .chain(conversations.iter().filter_map(|c| c.owner.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|agent| {
            let owned = || {
                conversations
                    .iter()
                    .filter(|c| c.owner.as_ref() == Some(&agent))
            };
            let times: Vec<(i64, i64)> = owned()
                .filter_map(|c| answered.get(c.id.as_str()).copied())
                .collect();
            let (mut elapsed, mut business): (Vec<i64>, Vec<i64>) = times.into_iter().unzip();
            AgentRow {
                assigned: history.assigned_to.get(&agent).copied().unwrap_or(0),
                open: owned()
                    .filter(|c| c.state == ConversationState::Open)
                    .count() as u64,
                closed: history.closed_by.get(&agent).copied().unwrap_or(0),
                median_first_response_secs: stats::median(&mut elapsed),
                median_first_response_business_secs: stats::median(&mut business),
                agent,
            }
        })
        .collect()
}

/// SLA outcomes of the conversations started in the window, per mailbox, policy and clock.
fn sla_rows(
    clocks: &Clocks,
    conversations: &[Conversation],
    window: &Window,
    now: DateTime<Utc>,
) -> Vec<SlaRow> {
    let mut rows: BTreeMap<(String, String, &'static str), SlaRow> = BTreeMap::new();
    for conv in conversations.iter().filter(|c| window.contains(c.started)) {
        let Some(policy_name) = &conv.sla else {
            continue;
        };
        let legs = [
            (
                Target::FirstResponse,
                "first_response",
                conv.first_response_at,
            ),
            (Target::Resolution, "resolution", conv.closed_at),
        ];
        let policy = clocks.policy(policy_name);
        for (target, label, stopped) in legs {
            if policy.is_some_and(|p| p.budget(target).is_none()) {
                continue;
            }
            if policy.is_none() && target != Target::FirstResponse {
                continue;
            }
            let key = (conv.mailbox.clone(), policy_name.clone(), label);
            let row = rows.entry(key).or_insert_with(|| SlaRow {
                mailbox: conv.mailbox.clone(),
                policy: policy_name.clone(),
                target: label.to_string(),
                met: 0,
                breached: 0,
                at_risk: 0,
                running: 0,
                unevaluated: 0,
                compliance_percent: None,
            });
            let leg = Leg {
                target,
                started: conv.started,
                stopped,
            };
            match clocks.evaluate(conv, &leg, now).map(|e| e.state) {
                Some(State::Met) => row.met += 1,
                Some(State::Breached) => row.breached += 1,
                Some(State::Warned) => row.at_risk += 1,
                Some(State::Running) => row.running += 1,
                None => row.unevaluated += 1,
            }
        }
    }
    rows.into_values()
        .map(|mut row| {
            row.compliance_percent = stats::percent(row.met, row.met + row.breached);
            row
        })
        .collect()
}

/// Conversations started in the window, grouped by the keys `keys` gives each (a
/// conversation with two tags counts under both).
fn breakdown(
    conversations: &[Conversation],
    answered: &Answered<'_>,
    window: &Window,
    keys: impl Fn(&Conversation) -> Vec<String>,
) -> Vec<BreakdownRow> {
    let mut groups: BTreeMap<String, (BreakdownRow, Vec<i64>)> = BTreeMap::new();
    for conv in conversations.iter().filter(|c| window.contains(c.started)) {
        for key in keys(conv) {
            add_to_group(&mut groups, key, conv, answered);
        }
    }
    let mut rows: Vec<BreakdownRow> = groups
        .into_values()
        .map(|(mut row, mut times)| {
            row.median_first_response_secs = stats::median(&mut times);
            row
        })
        .collect();
    rows.sort_by(|a, b| {
        b.conversations
            .cmp(&a.conversations)
            .then(a.key.cmp(&b.key))
    });
    rows
}

fn add_to_group(
    groups: &mut BTreeMap<String, (BreakdownRow, Vec<i64>)>,
    key: String,
    conv: &Conversation,
    answered: &Answered<'_>,
) {
    // Looked up before inserting: most conversations join a group that exists, and the key
    // need not be copied for them.
    if !groups.contains_key(&key) {
        let row = BreakdownRow {
            key: key.clone(),
            conversations: 0,
            open: 0,
            answered: 0,
            median_first_response_secs: None,
        };
        groups.insert(key.clone(), (row, Vec::new()));
    }
    let Some((row, times)) = groups.get_mut(&key) else {
        return;
    };
    row.conversations += 1;
    row.open += u64::from(conv.state == ConversationState::Open);
    if let Some((elapsed, _)) = answered.get(conv.id.as_str()) {
        row.answered += 1;
        times.push(*elapsed);
    }
}

/// The lower-cased domain of an address, `(none)` when there is no usable one.
pub fn sender_domain(from: Option<&str>) -> String {
    from.and_then(|a| a.rsplit_once('@'))
        .map(|(_, domain)| domain.trim().trim_end_matches('>').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "(none)".into())
}
