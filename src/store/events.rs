//! The event log, keyed by time so a report reads only its window, with an index per
//! conversation so one conversation's history is a short range scan.
//!
//! Both live in the `events_by_time` tree, told apart by their first byte:
//!
//! - `T`, then the instant (milliseconds, big-endian with the sign bit flipped so byte order is
//!   time order), then a store-wide sequence number: the event as JSON. Events of the same
//!   millisecond keep the order they were written in.
//! - `C`, the conversation id, a NUL, then the same 16 bytes as the event's key: empty. It
//!   points at the event, and is written in the same transaction.
//!
//! The same tree holds the hourly summaries (`D` and `S`, see `summary`).
//!
//! Stores written before this layout kept events in the `events` tree under a bare sequence
//! number; [`super::Store::open`] moves them over once (see `migrate_events`).

use std::ops::Bound;

use super::*;

/// The tree holding events and their conversation index.
pub(super) const TREE: &str = "events_by_time";

/// The tree of the layout before: events under a bare 8-byte sequence number.
pub(super) const OLD_TREE: &str = "events";

const EVENT: u8 = b'T';
const BY_CONVERSATION: u8 = b'C';

/// Events copied per batch while migrating: large enough that a million events take a few
/// hundred batches, small enough that one batch stays a few megabytes in memory.
const MIGRATE_BATCH: usize = 10_000;

impl Store {
    /// Appends an event on its own.
    pub fn append_event(&self, event: &Event) -> Result<()> {
        let result = self.events.transaction(|events| put_event(events, event));
        unwrap_tx(result).context("write event")
    }

    /// All events, oldest first (events of one millisecond in the order they were written).
    pub fn events(&self) -> Result<Vec<Event>> {
        self.events_iter().collect()
    }

    /// All events, oldest first, one at a time.
    pub(super) fn events_iter(&self) -> impl Iterator<Item = Result<Event>> + '_ {
        self.events.scan_prefix([EVENT]).map(|entry| {
            let (_, bytes) = entry.context("scan the event log")?;
            serde_json::from_slice(&bytes).context("decode a stored event")
        })
    }

    /// Events with `from <= at < to`, oldest first: a range read of only that period.
    pub fn events_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Event>> {
        let start = time_prefix(from.timestamp_millis());
        // The key keeps milliseconds only: read through `to`'s millisecond and check the exact
        // bounds on the decoded instants.
        let end = time_prefix(to.timestamp_millis() + 1);
        let range = (Bound::Included(start), Bound::Excluded(end));
        let mut out = Vec::new();
        for entry in self.events.range::<Vec<u8>, _>(range) {
            let (_, bytes) = entry.context("scan the event log")?;
            let event: Event = serde_json::from_slice(&bytes).context("decode a stored event")?;
            if from <= event.at && event.at < to {
                out.push(event);
            }
        }
        Ok(out)
    }

    /// Events about one conversation, oldest first, with those of conversations merged into it.
    pub fn history(&self, conversation: &str) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        let mut ids = vec![conversation.to_string()];
        ids.extend(self.merged_into(conversation)?);
        for id in &ids {
            for entry in self.events.scan_prefix(conversation_prefix(id)) {
                let (key, _) = entry.context("scan the conversation index")?;
                if let Some(event) = self.event_at(&key[key.len() - 16..])? {
                    out.push(event);
                }
            }
        }
        if ids.len() > 1 {
            out.sort_by_key(|e| e.at);
        }
        Ok(out)
    }

    /// The conversation's latest event before `before` that satisfies `wanted`, walking back
    /// from `before`; reads only that conversation's index.
    pub fn last_event_before(
        &self,
        conversation: &str,
        before: DateTime<Utc>,
        wanted: impl Fn(&Event) -> bool,
    ) -> Result<Option<Event>> {
        let start = conversation_prefix(conversation);
        let mut end = start.clone();
        end.extend_from_slice(&time_prefix(before.timestamp_millis() + 1)[1..]);
        for entry in self.events.range(start..end).rev() {
            let (key, _) = entry.context("scan the conversation index")?;
            let Some(event) = self.event_at(&key[key.len() - 16..])? else {
                continue;
            };
            if event.at < before && wanted(&event) {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// The event under its 16-byte time-and-sequence key.
    fn event_at(&self, stamp: &[u8]) -> Result<Option<Event>> {
        let mut key = Vec::with_capacity(17);
        key.push(EVENT);
        key.extend_from_slice(stamp);
        get_json(&self.events, &key)
    }
}

/// Writes an event, its conversation index entry and its hour's summary inside a transaction.
pub(super) fn put_event(events: &TransactionalTree, event: &Event) -> TxResult<()> {
    summary::count_event(events, event)?;
    let seq = events.generate_id()?;
    let bytes = serde_json::to_vec(event)
        .map_err(|e| ConflictableTransactionError::Abort(format!("encode an event: {e}")))?;
    let key = event_key(event.at, seq);
    if let Some(index) = index_key(event, &key) {
        events.insert(index, &[])?;
    }
    events.insert(key, bytes)?;
    Ok(())
}

/// Moves events from the layout before (the `events` tree, keyed by sequence number) into
/// [`TREE`], keeping each event's sequence number and bytes. Each batch is taken out of the old
/// tree in the transaction that puts it in the new one, so an interrupted run keeps what it
/// moved and the next one goes on from there. Returns how many events were moved.
pub(super) fn migrate_events(db: &sled::Db, events: &sled::Tree) -> Result<usize> {
    let names = db.tree_names();
    if !names.iter().any(|n| n.as_ref() == OLD_TREE.as_bytes()) {
        return Ok(0);
    }
    let old = db.open_tree(OLD_TREE).context("open the old event tree")?;
    let mut moved = 0;
    loop {
        let chunk = old
            .iter()
            .take(MIGRATE_BATCH)
            .collect::<Result<Vec<_>, _>>()
            .context("read the old event tree")?;
        if chunk.is_empty() {
            break;
        }
        let result = (&old, events).transaction(|(old, events)| {
            for (key, bytes) in &chunk {
                let event: Event = serde_json::from_slice(bytes).map_err(|e| {
                    ConflictableTransactionError::Abort(format!("decode a stored event: {e}"))
                })?;
                let new_key = event_key(event.at, decode_u64(key));
                if let Some(index) = index_key(&event, &new_key) {
                    events.insert(index, &[])?;
                }
                events.insert(new_key, bytes.clone())?;
                old.remove(key.clone())?;
            }
            Ok(())
        });
        unwrap_tx(result).context("move a batch of events")?;
        moved += chunk.len();
    }
    db.flush().context("flush the migrated events")?;
    db.drop_tree(OLD_TREE).context("drop the old event tree")?;
    db.flush().context("flush the database")?;
    Ok(moved)
}

/// `T`, the instant, then the sequence number.
fn event_key(at: DateTime<Utc>, seq: u64) -> Vec<u8> {
    let mut key = time_prefix(at.timestamp_millis());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `T` and the instant in milliseconds, ordered as bytes: the sign bit is flipped so an
/// instant before 1970 still sorts before one after.
fn time_prefix(millis: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(EVENT);
    key.extend_from_slice(&((millis as u64) ^ (1 << 63)).to_be_bytes());
    key
}

fn conversation_prefix(conversation: &str) -> Vec<u8> {
    let mut key = vec![BY_CONVERSATION];
    key.extend_from_slice(conversation.as_bytes());
    key.push(0);
    key
}

/// The index entry of an event about a conversation: `C`, the id, NUL, the event's stamp.
fn index_key(event: &Event, event_key: &[u8]) -> Option<Vec<u8>> {
    let conversation = event.conversation.as_deref().filter(|c| !c.is_empty())?;
    let mut key = conversation_prefix(conversation);
    key.extend_from_slice(&event_key[1..]);
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_in_time_order_across_1970() {
        let instants = [-86_400_000_i64, -1, 0, 1, 1_700_000_000_000];
        let keys: Vec<Vec<u8>> = instants.iter().map(|m| time_prefix(*m)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}
