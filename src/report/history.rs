//! One pass over the event log: volume per day and hour, per-agent assignments and closes, and
//! each conversation's response and close instants for `--recompute`.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Timelike, Utc};

use anyhow::Result;

use super::{Counts, DayVolume, HourVolume, Options, Volume, Window};
use crate::store::{Conversation, ConversationState, Event, EventKind, HourSummary, Store, Wait};

fn floor_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    let secs = at.timestamp().div_euclid(3600) * 3600;
    DateTime::from_timestamp(secs, 0).unwrap_or(at)
}

fn ceil_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = floor_hour(at);
    if floor == at {
        floor
    } else {
        floor + chrono::Duration::hours(1)
    }
}

/// True for the kinds [`History::track`] follows a conversation's open or closed state by.
fn sets_open_state(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Closed | EventKind::Reopened | EventKind::FollowUp
    )
}

/// For a window's events (oldest first), the events from before `from` that [`History::track`]
/// needs to tell whether a close in the window closed an open conversation: for each
/// conversation whose first open-or-closed event in the window is a close, its last such event
/// before the window, if any. Reads only those conversations' index entries.
pub(super) fn open_state_before(
    store: &Store,
    events: &[Event],
    from: DateTime<Utc>,
) -> Result<Vec<Event>> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut before = Vec::new();
    for event in events.iter().filter(|e| sets_open_state(e.kind)) {
        let Some(conv) = event.conversation.as_deref() else {
            continue;
        };
        if !seen.insert(conv) || event.kind != EventKind::Closed {
            continue;
        }
        if let Some(last) = store.last_event_before(conv, from, |e| sets_open_state(e.kind))? {
            before.push(last);
        }
    }
    before.sort_by_key(|e| e.at);
    Ok(before)
}

/// What one pass over the event log found.
#[derive(Default)]
pub(super) struct History {
    days: BTreeMap<NaiveDate, Counts>,
    hours: [Counts; 24],
    pub(super) assigned_to: HashMap<String, u64>,
    pub(super) closed_by: HashMap<String, u64>,
    first_response: HashMap<String, DateTime<Utc>>,
    /// Per conversation: the instant of its last closing, `None` once reopened.
    closed: HashMap<String, Option<DateTime<Utc>>>,
    /// Per answered conversation: the follow-up that waits for the next response.
    waiting: HashMap<String, DateTime<Utc>>,
    /// Per conversation: its waits answered after the first response.
    waits: HashMap<String, Vec<Wait>>,
}

impl History {
    pub(super) fn scan(events: &[Event], options: &Options) -> History {
        let mut history = History::default();
        history.scan_into(events, options.mailbox.as_deref(), &options.window);
        history
    }

    /// Counts the events inside `window` (those before it only set conversations' state).
    fn scan_into(&mut self, events: &[Event], mailbox: Option<&str>, window: &Window) {
        let wanted = |e: &&Event| mailbox.is_none_or(|m| e.mailbox == m);
        for event in events.iter().filter(wanted) {
            let closing = self.track(event);
            if window.contains(event.at) {
                self.count(event, closing);
            }
        }
    }

    /// The same counts as [`History::scan`] over the store's whole log, for a report that
    /// does not recompute: the whole hours inside the window come from the store's hourly
    /// summaries, and only the parts of an hour at either end are read as events (with what
    /// came before each part, as [`open_state_before`] finds it).
    pub(super) fn from_store(store: &Store, options: &Options) -> Result<History> {
        let window = &options.window;
        let mailbox = options.mailbox.as_deref();
        let mut history = History::default();
        let first_hour = ceil_hour(window.from);
        let end_hour = floor_hour(window.to);
        if first_hour >= end_hour {
            history.read_events(store, mailbox, window)?;
            return Ok(history);
        }
        for part in [
            Window {
                from: window.from,
                to: first_hour,
            },
            Window {
                from: end_hour,
                to: window.to,
            },
        ] {
            if part.from < part.to {
                history.read_events(store, mailbox, &part)?;
            }
        }
        for summary in store.hour_summaries(first_hour, end_hour)? {
            if mailbox.is_none_or(|m| summary.mailbox == m) {
                history.add_summary(&summary);
            }
        }
        Ok(history)
    }

    fn read_events(&mut self, store: &Store, mailbox: Option<&str>, part: &Window) -> Result<()> {
        let mut events = store.events_between(part.from, part.to)?;
        events.retain(|e| mailbox.is_none_or(|m| e.mailbox == m));
        let before = open_state_before(store, &events, part.from)?;
        self.scan_into(&before, mailbox, part);
        self.scan_into(&events, mailbox, part);
        Ok(())
    }

    fn add_summary(&mut self, summary: &HourSummary) {
        let counts = Counts {
            received: summary.received,
            assigned: summary.assigned,
            closed: summary.closed,
        };
        for target in [
            self.days.entry(summary.hour.date_naive()).or_default(),
            &mut self.hours[summary.hour.hour() as usize],
        ] {
            target.received += counts.received;
            target.assigned += counts.assigned;
            target.closed += counts.closed;
        }
        for a in &summary.agents {
            if a.assigned > 0 {
                *self.assigned_to.entry(a.agent.clone()).or_default() += a.assigned;
            }
            if a.closed > 0 {
                *self.closed_by.entry(a.agent.clone()).or_default() += a.closed;
            }
        }
    }

    /// Follows a conversation's open/closed state; true when `event` closes an open one.
    fn track(&mut self, event: &Event) -> bool {
        let Some(conv) = event.conversation.clone() else {
            return false;
        };
        match event.kind {
            EventKind::Closed => {
                let was_open = !matches!(self.closed.get(&conv), Some(Some(_)));
                if was_open {
                    self.closed.insert(conv, Some(event.at));
                }
                was_open
            }
            EventKind::Reopened | EventKind::FollowUp => {
                if event.kind == EventKind::FollowUp && self.first_response.contains_key(&conv) {
                    self.waiting.entry(conv.clone()).or_insert(event.at);
                }
                self.closed.insert(conv, None);
                false
            }
            EventKind::Responded => {
                if let Some(since) = self.waiting.remove(&conv) {
                    let wait = Wait {
                        since,
                        answered: event.at,
                    };
                    self.waits.entry(conv.clone()).or_default().push(wait);
                }
                let first = self.first_response.entry(conv).or_insert(event.at);
                *first = (*first).min(event.at);
                false
            }
            _ => false,
        }
    }

    fn count(&mut self, event: &Event, closing: bool) {
        let day = self.days.entry(event.at.date_naive()).or_default();
        let hour = &mut self.hours[event.at.hour() as usize];
        let agent = event.agent.clone();
        match event.kind {
            EventKind::Assigned | EventKind::FollowUp | EventKind::Left => {
                day.received += 1;
                hour.received += 1;
            }
            _ => {}
        }
        match event.kind {
            EventKind::Assigned => {
                day.assigned += 1;
                hour.assigned += 1;
            }
            EventKind::Closed if closing => {
                day.closed += 1;
                hour.closed += 1;
            }
            _ => {}
        }
        let Some(agent) = agent else { return };
        match event.kind {
            EventKind::Assigned | EventKind::Reassigned => {
                *self.assigned_to.entry(agent).or_default() += 1
            }
            EventKind::Closed if closing => *self.closed_by.entry(agent).or_default() += 1,
            _ => {}
        }
    }

    /// The conversation as the report sees it: with `recompute`, its response and close
    /// instants come from the log.
    pub(super) fn apply(&self, conv: &mut Conversation, recompute: bool) {
        if recompute {
            conv.first_response_at = self.first_response.get(&conv.id).copied();
            conv.answered_waits.clear();
            for wait in self.waits.get(&conv.id).into_iter().flatten() {
                conv.add_wait(*wait);
            }
            if let Some(closed) = self.closed.get(&conv.id) {
                conv.closed_at = *closed;
                conv.state = match closed {
                    Some(_) => ConversationState::Closed,
                    None => ConversationState::Open,
                };
            }
        }
    }

    pub(super) fn volume(&self, window: &Window) -> Volume {
        let mut total = Counts::default();
        let days = window
            .dates()
            .into_iter()
            .map(|date| {
                let counts = self.days.get(&date).copied().unwrap_or_default();
                total.received += counts.received;
                total.assigned += counts.assigned;
                total.closed += counts.closed;
                DayVolume { date, counts }
            })
            .collect();
        let hours = (0..24)
            .map(|hour| HourVolume {
                hour,
                counts: self.hours[hour as usize],
            })
            .collect();
        Volume { total, days, hours }
    }
}
