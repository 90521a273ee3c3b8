//! Bringing a store written by an earlier version up to the current layout, once, on open.
//!
//! The `meta` tree holds the layout's number under `format`; a store without it is format 1,
//! the layout before the event log was keyed by time. Every step below can run again after a
//! crash part-way and reach the same result, and the new number is written only after the
//! steps' writes are durable, so an interrupted upgrade simply runs again on the next open.

use tracing::info;

use super::*;

/// The layout this version writes: 2 keys events by time (with a per-conversation index and
/// hourly summaries), keeps an index of filed messages per mailbox, and writes conversations
/// in the compact form of `codec`.
const FORMAT: u64 = 2;

const META: &str = "meta";
const FORMAT_KEY: &str = "format";

/// Runs the steps from the store's format up to [`FORMAT`].
pub(super) fn run(store: &Store) -> Result<()> {
    let meta = store.db.open_tree(META).context("open tree meta")?;
    let format = meta
        .get(FORMAT_KEY)
        .context("read the store format")?
        .map_or(1, |v| decode_u64(&v));
    if format > FORMAT {
        anyhow::bail!(
            "the store was written by a newer postroom (format {format}); this version reads \
             format {FORMAT} and older"
        );
    }
    if format == FORMAT {
        return Ok(());
    }
    let moved = events::migrate_events(&store.db, &store.events)?;
    let filed = rebuild_filed_index(store)?;
    let hours = summary::rebuild(store)?;
    let rewritten = rewrite_conversations(store)?;
    store.db.flush().context("flush the upgraded store")?;
    meta.insert(FORMAT_KEY, &FORMAT.to_be_bytes())
        .context("write the store format")?;
    store.db.flush().context("flush the store format")?;
    if moved > 0 || filed > 0 || rewritten > 0 {
        info!(
            events = moved,
            filed,
            hours,
            conversations = rewritten,
            "store upgraded: events keyed by time and summarised per hour, filed messages \
             indexed, conversations in the compact form"
        );
    }
    Ok(())
}

/// Fills the filed index from the message records (clearing it first, so a second run after a
/// crash gives the same index). Returns how many records are filed.
fn rebuild_filed_index(store: &Store) -> Result<usize> {
    store.filed.clear().context("clear the filed index")?;
    let mut count = 0;
    for entry in store.messages.iter() {
        let (key, bytes) = entry.context("read the message records")?;
        let record: MessageRecord =
            serde_json::from_slice(&bytes).context("decode a stored record")?;
        if matches!(record.state, MessageState::Filed { .. }) {
            store
                .filed
                .insert(key, &[])
                .context("write the filed index")?;
            count += 1;
        }
    }
    Ok(count)
}

/// Rewrites conversations still stored as JSON in the compact form, a batch at a time; those
/// already rewritten are skipped, so an interrupted run loses none of its work. Returns how
/// many were rewritten.
fn rewrite_conversations(store: &Store) -> Result<usize> {
    const BATCH: usize = 10_000;
    let mut batch = sled::Batch::default();
    let (mut count, mut in_batch) = (0, 0);
    for entry in store.conversations.iter() {
        let (key, bytes) = entry.context("read the conversations")?;
        if !codec::is_json(&bytes) {
            continue;
        }
        batch.insert(key, codec::encode(&codec::decode(&bytes)?));
        in_batch += 1;
        if in_batch == BATCH {
            store
                .conversations
                .apply_batch(std::mem::take(&mut batch))?;
            count += in_batch;
            in_batch = 0;
        }
    }
    store.conversations.apply_batch(batch)?;
    Ok(count + in_batch)
}
