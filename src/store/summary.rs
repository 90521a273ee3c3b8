//! Hourly summaries of the event log: what a report counts per hour (messages received,
//! conversations assigned and closed, per agent assigned and closed), kept up to date in the
//! transaction that writes each event, so a report over a year reads some 9,000 small records
//! instead of millions of events.
//!
//! They live in the event tree beside the events (see `events`), under two more first bytes:
//!
//! - `D`, the hour (hours since 1970, big-endian with the sign bit flipped), then the mailbox:
//!   that hour's counts in that mailbox, encoded by `encode`.
//! - `S`, then a conversation id: present (one byte, 1) while the event log says the
//!   conversation is closed. A close counts only when it closes an open conversation, exactly
//!   as the report's own pass over the log decides it, except for the order: here it is the
//!   order events are written in, there the order of their instants. The two differ only for a
//!   close or reopen written with an instant before one already recorded for the conversation.

use std::collections::HashMap;

use chrono::TimeZone;

use super::codec::{put_varint, take_varint};

use super::*;

const SUMMARY: u8 = b'D';
const CLOSED_STATE: u8 = b'S';

/// The counts of one hour in one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourSummary {
    /// The hour's first instant.
    pub hour: DateTime<Utc>,
    /// The mailbox.
    pub mailbox: String,
    /// Messages decided on (`assigned`, `follow_up` and `left` events).
    pub received: u64,
    /// `assigned` events.
    pub assigned: u64,
    /// `closed` events that closed an open conversation.
    pub closed: u64,
    /// Per agent: conversations given to them (`assigned`, `reassigned`) and closes of open
    /// conversations attributed to them, in agent order.
    pub agents: Vec<AgentCounts>,
}

/// One agent's counts within an [`HourSummary`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentCounts {
    /// The agent id.
    pub agent: String,
    /// Conversations given to them.
    pub assigned: u64,
    /// Open conversations closed while theirs.
    pub closed: u64,
}

impl HourSummary {
    fn add(&mut self, event: &Event, closing: bool) {
        let received = matches!(
            event.kind,
            EventKind::Assigned | EventKind::FollowUp | EventKind::Left
        );
        let closed = event.kind == EventKind::Closed && closing;
        self.received += u64::from(received);
        self.assigned += u64::from(event.kind == EventKind::Assigned);
        self.closed += u64::from(closed);
        let Some(agent) = &event.agent else { return };
        let assigned = matches!(event.kind, EventKind::Assigned | EventKind::Reassigned);
        if !assigned && !closed {
            return;
        }
        let at = match self.agents.binary_search_by(|a| a.agent.cmp(agent)) {
            Ok(at) => at,
            Err(at) => {
                let counts = AgentCounts {
                    agent: agent.clone(),
                    ..AgentCounts::default()
                };
                self.agents.insert(at, counts);
                at
            }
        };
        self.agents[at].assigned += u64::from(assigned);
        self.agents[at].closed += u64::from(closed);
    }
}

impl Store {
    /// The summaries of the hours starting in `[from, to)`, oldest first, of every mailbox.
    pub fn hour_summaries(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<HourSummary>> {
        let start = summary_prefix(hour_of(from) + i64::from(!on_the_hour(from)));
        let end = summary_prefix(hour_of(to) + i64::from(!on_the_hour(to)));
        let mut out = Vec::new();
        for entry in self.events.range(start..end) {
            let (key, bytes) = entry.context("scan the hourly summaries")?;
            out.push(decode(&key, &bytes).context("decode an hourly summary")?);
        }
        Ok(out)
    }
}

/// Counts an event into its hour's summary and follows its conversation's closed state, in
/// the transaction that writes the event.
pub(super) fn count_event(events: &TransactionalTree, event: &Event) -> TxResult<()> {
    let closing = match (event.kind, &event.conversation) {
        (EventKind::Closed, Some(conv)) => {
            let key = closed_key(conv);
            let was_open = events.get(&key)?.is_none();
            events.insert(key, &[1])?;
            was_open
        }
        (EventKind::Reopened | EventKind::FollowUp, Some(conv)) => {
            events.remove(closed_key(conv))?;
            false
        }
        _ => false,
    };
    if !counted(event, closing) {
        return Ok(());
    }
    let key = summary_key(hour_of(event.at), &event.mailbox);
    let mut summary = match events.get(&key)? {
        Some(bytes) => decode(&key, &bytes).map_err(|e| {
            ConflictableTransactionError::Abort(format!("decode an hourly summary: {e:#}"))
        })?,
        None => HourSummary {
            hour: start_of(hour_of(event.at)),
            mailbox: event.mailbox.clone(),
            ..HourSummary::default()
        },
    };
    summary.add(event, closing);
    events.insert(key, encode(&summary))?;
    Ok(())
}

/// Whether an event changes any count of its hour.
fn counted(event: &Event, closing: bool) -> bool {
    match event.kind {
        EventKind::Assigned | EventKind::FollowUp | EventKind::Left => true,
        EventKind::Reassigned => event.agent.is_some(),
        EventKind::Closed => closing,
        _ => false,
    }
}

/// Builds every summary and closed state again from the event log, oldest event first
/// (clearing the old ones first, so a second run after a crash gives the same result).
/// Returns how many hours have a summary.
pub(super) fn rebuild(store: &Store) -> Result<usize> {
    for first in [SUMMARY, CLOSED_STATE] {
        let mut batch = sled::Batch::default();
        for entry in store.events.scan_prefix([first]) {
            let (key, _) = entry.context("read the hourly summaries")?;
            batch.remove(key);
        }
        store.events.apply_batch(batch)?;
    }
    let mut hours: HashMap<Vec<u8>, HourSummary> = HashMap::new();
    let mut closed: HashMap<String, bool> = HashMap::new();
    for event in store.events_iter() {
        let event = event?;
        let closing = match (event.kind, &event.conversation) {
            (EventKind::Closed, Some(conv)) => !closed.insert(conv.clone(), true).unwrap_or(false),
            (EventKind::Reopened | EventKind::FollowUp, Some(conv)) => {
                closed.insert(conv.clone(), false);
                false
            }
            _ => false,
        };
        if counted(&event, closing) {
            let key = summary_key(hour_of(event.at), &event.mailbox);
            let summary = hours.entry(key).or_insert_with(|| HourSummary {
                hour: start_of(hour_of(event.at)),
                mailbox: event.mailbox.clone(),
                ..HourSummary::default()
            });
            summary.add(&event, closing);
        }
    }
    let mut batch = sled::Batch::default();
    let count = hours.len();
    for (key, summary) in hours {
        batch.insert(key, encode(&summary));
    }
    for (conv, _) in closed.into_iter().filter(|(_, c)| *c) {
        batch.insert(closed_key(&conv), &[1]);
    }
    store.events.apply_batch(batch)?;
    Ok(count)
}

/// Hours since 1970 (negative before), rounding down.
fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

fn on_the_hour(at: DateTime<Utc>) -> bool {
    at.timestamp().rem_euclid(3600) == 0 && at.timestamp_subsec_nanos() == 0
}

fn start_of(hour: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(hour * 3600, 0)
        .single()
        .unwrap_or_default()
}

fn summary_prefix(hour: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(24);
    key.push(SUMMARY);
    key.extend_from_slice(&((hour as u64) ^ (1 << 63)).to_be_bytes());
    key
}

fn summary_key(hour: i64, mailbox: &str) -> Vec<u8> {
    let mut key = summary_prefix(hour);
    key.extend_from_slice(mailbox.as_bytes());
    key
}

fn closed_key(conversation: &str) -> Vec<u8> {
    let mut key = vec![CLOSED_STATE];
    key.extend_from_slice(conversation.as_bytes());
    key
}

/// Counts as varints: received, assigned, closed, the number of agents, then per agent the
/// id's length and bytes, assigned and closed. The hour and mailbox are in the key.
fn encode(summary: &HourSummary) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 12 * summary.agents.len());
    for n in [summary.received, summary.assigned, summary.closed] {
        put_varint(&mut out, n);
    }
    put_varint(&mut out, summary.agents.len() as u64);
    for a in &summary.agents {
        put_varint(&mut out, a.agent.len() as u64);
        out.extend_from_slice(a.agent.as_bytes());
        put_varint(&mut out, a.assigned);
        put_varint(&mut out, a.closed);
    }
    out
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<HourSummary> {
    let hour_bytes: [u8; 8] = key
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .context("summary key too short")?;
    let hour = (u64::from_be_bytes(hour_bytes) ^ (1 << 63)) as i64;
    let mut input = bytes;
    let mut summary = HourSummary {
        hour: start_of(hour),
        mailbox: String::from_utf8(key[9..].to_vec()).context("mailbox name")?,
        received: take_varint(&mut input)?,
        assigned: take_varint(&mut input)?,
        closed: take_varint(&mut input)?,
        agents: Vec::new(),
    };
    let agents = take_varint(&mut input)?;
    for _ in 0..agents {
        let len = usize::try_from(take_varint(&mut input)?)?;
        anyhow::ensure!(input.len() >= len, "agent id cut short");
        let (name, rest) = input.split_at(len);
        input = rest;
        summary.agents.push(AgentCounts {
            agent: String::from_utf8(name.to_vec()).context("agent id")?,
            assigned: take_varint(&mut input)?,
            closed: take_varint(&mut input)?,
        });
    }
    anyhow::ensure!(input.is_empty(), "trailing bytes");
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[test]
    fn summaries_round_trip() {
        let summary = HourSummary {
            hour: start_of(491_234),
            mailbox: "support".into(),
            received: 300,
            assigned: 2,
            closed: 0,
            agents: vec![AgentCounts {
                agent: "alice".into(),
                assigned: 2,
                closed: 130_000,
            }],
        };
        let key = summary_key(491_234, "support");
        assert_eq!(decode(&key, &encode(&summary)).ok(), Some(summary));
    }

    #[test]
    fn hours_round_down_before_and_after_1970() {
        let at = |s: i64| Utc.timestamp_opt(s, 0).single().unwrap_or_default();
        assert_eq!(hour_of(at(3599)), 0);
        assert_eq!(hour_of(at(-1)), -1);
        assert!(on_the_hour(at(7200)) && !on_the_hour(at(7201)));
        assert!(summary_prefix(-1) < summary_prefix(0));
    }

    #[test]
    fn only_the_hour_of_the_day_is_used_of_an_instant() {
        let at = Utc
            .timestamp_opt(5 * 3600 + 59, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(start_of(hour_of(at)).hour(), 5);
    }
}
