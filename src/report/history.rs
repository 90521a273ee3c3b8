//! One pass over the event log: volume per day and hour, per-agent assignments and closes, and
//! each conversation's response and close instants for `--recompute`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Timelike, Utc};

use std::collections::HashSet;

use anyhow::Result;

use super::{Counts, DayVolume, HourVolume, Options, Volume, Window};
use crate::store::{Conversation, ConversationState, Event, EventKind, Store};

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
}

impl History {
    pub(super) fn scan(events: &[Event], options: &Options) -> History {
        let mut history = History::default();
        let wanted = |e: &&Event| options.mailbox.as_ref().is_none_or(|m| &e.mailbox == m);
        for event in events.iter().filter(wanted) {
            let closing = history.track(event);
            if options.window.contains(event.at) {
                history.count(event, closing);
            }
        }
        history
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
                self.closed.insert(conv, None);
                false
            }
            EventKind::Responded => {
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
    pub(super) fn apply(&self, conv: &Conversation, recompute: bool) -> Conversation {
        let mut conv = conv.clone();
        if recompute {
            conv.first_response_at = self.first_response.get(&conv.id).copied();
            if let Some(closed) = self.closed.get(&conv.id) {
                conv.closed_at = *closed;
                conv.state = match closed {
                    Some(_) => ConversationState::Closed,
                    None => ConversationState::Open,
                };
            }
        }
        conv
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
