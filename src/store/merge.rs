//! Conversations that turn out to be one, and messages that must follow their conversation's
//! owner.
//!
//! A reply can reach the inbox before the message it answers. It then starts a conversation of
//! its own; when the parent arrives and itself continues an older conversation, the two are one
//! thread, and [`Store::commit_merging`] folds the younger into the older in the same
//! transaction that records the parent. The absorbed conversation stays behind as a tombstone
//! naming the survivor, so every old reference to it still finds the right conversation.
//!
//! Whenever a conversation changes owner (a merge, a drag in Outlook, an admin's `assign`, a
//! follow-up given to someone else because the owner is away), its id goes into the realign
//! set in that same transaction. The mailbox side drains the set with
//! [`Store::misplaced`] and [`Store::realigned`], moving the conversation's other messages into
//! the new owner's folder. The set survives a crash, so no move is forgotten.
//!
//! The member index (`conversation`, `identity`) → mailbox lists a conversation's messages
//! without a scan of the whole mailbox; stores written before it existed are indexed once on
//! open.

use super::*;

/// Marks a member index that is complete; no conversation id starts with NUL.
const INDEXED: &[u8] = b"\0indexed-v1";

/// What a merge needs to know before its transaction: the conversation and its messages.
pub(super) struct MergePlan {
    pub id: String,
    members: Vec<(String, String)>,
}

/// The trees a merge writes, borrowed from the enclosing transaction.
pub(super) struct MergeTrees<'a> {
    pub messages: &'a TransactionalTree,
    pub conversations: &'a TransactionalTree,
    pub load: &'a TransactionalTree,
    pub events: &'a TransactionalTree,
    pub members: &'a TransactionalTree,
    pub realign: &'a TransactionalTree,
}

/// Reads a conversation inside a transaction, following merges.
pub(super) fn resolve_tx(
    conversations: &TransactionalTree,
    id: &str,
) -> TxResult<Option<Conversation>> {
    let mut id = id.to_string();
    for _ in 0..MAX_MERGE_HOPS {
        match get_conversation(conversations, id.as_bytes())? {
            Some(Conversation {
                merged_into: Some(into),
                ..
            }) => id = into,
            found => return Ok(found),
        }
    }
    Ok(None)
}

/// Folds `plan`'s conversation into `into`: counts, times, tags and messages move over; the
/// absorbed one becomes a tombstone. A no-op when either is missing or already merged.
pub(super) fn fold(
    trees: &MergeTrees<'_>,
    plan: &MergePlan,
    into: &str,
    at: DateTime<Utc>,
) -> TxResult<()> {
    let Some(mut gone) = get_conversation(trees.conversations, plan.id.as_bytes())? else {
        return Ok(());
    };
    let Some(mut kept) = resolve_tx(trees.conversations, into)? else {
        return Ok(());
    };
    if gone.merged_into.is_some() || kept.id == gone.id {
        return Ok(());
    }
    if gone.state == ConversationState::Open {
        adjust_load(trees.load, gone.owner.as_deref(), -1)?;
        if kept.state == ConversationState::Closed {
            adjust_load(trees.load, kept.owner.as_deref(), 1)?;
            kept.state = ConversationState::Open;
            kept.closed_at = None;
        }
    }
    kept.started = kept.started.min(gone.started);
    kept.last_message = kept.last_message.max(gone.last_message);
    kept.messages += gone.messages;
    let gone_answered_first = match (kept.first_response_at, gone.first_response_at) {
        (Some(k), Some(g)) => g < k,
        (None, Some(_)) => true,
        _ => false,
    };
    if gone_answered_first {
        kept.first_response_at = gone.first_response_at;
        kept.first_response_by = gone.first_response_by;
    }
    kept.last_response_at = kept.last_response_at.max(gone.last_response_at);
    for wait in &gone.answered_waits {
        kept.add_wait(*wait);
    }
    let answered = kept.last_response_at;
    let unanswered = |since: &DateTime<Utc>| answered.is_none_or(|at| *since > at);
    // The survivor's running wait stays the one that runs: its escalations are keyed by when it
    // began, and an earlier start taken from the absorbed half would mail the same wait again.
    kept.waiting_since = kept
        .waiting_since
        .filter(unanswered)
        .or(gone.waiting_since.filter(unanswered));
    // The policy stays the survivor's: its first message's rules chose it (`None` is the
    // mailbox's default, a choice as well), and its subject is the one mails quote.
    for (have, new) in [(&mut kept.tags, &gone.tags), (&mut kept.rules, &gone.rules)] {
        for item in new {
            if !have.contains(item) {
                have.push(item.clone());
            }
        }
    }
    for (mailbox, identity) in &plan.members {
        let key = pair(mailbox, identity);
        if let Some(mut record) = get_tx::<MessageRecord>(trees.messages, &key)? {
            if record.conversation == gone.id {
                record.conversation = kept.id.clone();
                record.owner = kept.owner.clone();
                put_json(trees.messages, &key, &record)?;
            }
        }
        trees.members.remove(member_key(&gone.id, identity))?;
        trees
            .members
            .insert(member_key(&kept.id, identity), mailbox.as_bytes())?;
    }
    let event = Event {
        at,
        kind: EventKind::Merged,
        mailbox: kept.mailbox.clone(),
        conversation: Some(kept.id.clone()),
        identity: None,
        agent: kept.owner.clone(),
        detail: format!(
            "conversation {} merged into {}: its {} message(s) answer this thread and had \
             arrived first",
            gone.id,
            kept.id,
            plan.members.len()
        ),
    };
    gone.merged_into = Some(kept.id.clone());
    gone.state = ConversationState::Closed;
    gone.closed_at = Some(at);
    put_conversation(trees.conversations, &gone)?;
    put_conversation(trees.conversations, &kept)?;
    mark_misplaced(trees.realign, &pair(&kept.mailbox, &kept.id))?;
    trees.members.insert(merged_key(&kept.id, &gone.id), &[])?;
    put_event(trees.events, &event)
}

/// Where the member index notes that `gone` was merged into `kept`, so the survivor's history
/// can include the absorbed one's. No conversation id starts with NUL.
fn merged_key(kept: &str, gone: &str) -> Vec<u8> {
    let mut key = b"\0merged\0".to_vec();
    key.extend_from_slice(&pair(kept, gone));
    key
}

impl Store {
    /// What merging conversation `id` away needs, read before the transaction; `None` when it
    /// does not exist or was merged already.
    pub(super) fn merge_plan(&self, id: &str) -> Result<Option<MergePlan>> {
        let stored = self.conversations.get(id).context("read the database")?;
        match stored.map(|bytes| codec::decode(&bytes)).transpose()? {
            Some(conv) if conv.merged_into.is_none() => Ok(Some(MergePlan {
                id: conv.id.clone(),
                members: self.member_list(&conv.id)?,
            })),
            _ => Ok(None),
        }
    }

    /// (mailbox, identity) of each message of a conversation.
    fn member_list(&self, conversation: &str) -> Result<Vec<(String, String)>> {
        let start = prefix(conversation);
        self.members
            .scan_prefix(&start)
            .map(|entry| {
                let (key, mailbox) = entry.context("scan the member index")?;
                let identity = String::from_utf8_lossy(&key[start.len()..]).into_owned();
                Ok((String::from_utf8_lossy(&mailbox).into_owned(), identity))
            })
            .collect()
    }

    /// The records of every message of a conversation (following merges).
    pub fn conversation_messages(&self, conversation: &str) -> Result<Vec<MessageRecord>> {
        let Some(conv) = self.conversation(conversation)? else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        for (mailbox, identity) in self.member_list(&conv.id)? {
            if let Some(record) = self.message(&mailbox, &identity)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Every conversation merged into `id`, directly or through others.
    pub(super) fn merged_into(&self, id: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut todo = vec![id.to_string()];
        while let Some(next) = todo.pop() {
            if out.len() > 1000 {
                break;
            }
            let start = merged_key(&next, "");
            for key in self.members.scan_prefix(&start).keys() {
                let key = key.context("scan the member index")?;
                let gone = String::from_utf8_lossy(&key[start.len()..]).into_owned();
                todo.push(gone.clone());
                out.push(gone);
            }
        }
        Ok(out)
    }

    /// Conversations of a mailbox whose messages may sit in another agent's folder than their
    /// owner's: each changed owner since it was last realigned.
    pub fn misplaced(&self, mailbox: &str) -> Result<Vec<Misplaced>> {
        let start = prefix(mailbox);
        self.realign
            .scan_prefix(&start)
            .map(|entry| {
                let (key, mark) = entry.context("scan the realign set")?;
                Ok(Misplaced {
                    conversation: String::from_utf8_lossy(&key[start.len()..]).into_owned(),
                    mark: mark.to_vec(),
                })
            })
            .collect()
    }

    /// Takes a conversation off the realign set: its messages are with its owner. An owner
    /// change recorded since `misplaced` read it leaves it on the set for the next round.
    pub fn realigned(&self, mailbox: &str, entry: &Misplaced) -> Result<()> {
        // A mark that differs is a newer owner change, and stays on the set.
        let _newer = self
            .realign
            .compare_and_swap(
                pair(mailbox, &entry.conversation),
                Some(entry.mark.as_slice()),
                None::<&[u8]>,
            )
            .context("update the realign set")?;
        Ok(())
    }

    /// Builds the member index of a store written before it existed. Runs once: the marker is
    /// written only after every record is indexed, so a crash midway starts over.
    pub(super) fn index_members_once(&self) -> Result<()> {
        if self
            .members
            .contains_key(INDEXED)
            .context("read the member index")?
        {
            return Ok(());
        }
        for entry in self.messages.iter() {
            let (_, bytes) = entry.context("scan messages")?;
            let record: MessageRecord =
                serde_json::from_slice(&bytes).context("decode a stored record")?;
            if !record.conversation.is_empty() {
                self.members
                    .insert(
                        member_key(&record.conversation, &record.identity),
                        record.mailbox.as_bytes(),
                    )
                    .context("write the member index")?;
            }
        }
        self.members
            .insert(INDEXED, &[])
            .context("write the member index")?;
        Ok(())
    }
}

/// A conversation on the realign set, with the mark of the owner change that put it there.
#[derive(Debug, Clone)]
pub struct Misplaced {
    /// The conversation's id.
    pub conversation: String,
    mark: Vec<u8>,
}

/// Puts a conversation on the realign set with a fresh mark, so that taking it off
/// ([`Store::realigned`]) cannot undo an owner change recorded meanwhile.
pub(super) fn mark_misplaced(realign: &TransactionalTree, key: &[u8]) -> TxResult<()> {
    let mark = realign.generate_id()?.to_be_bytes();
    realign.insert(key, &mark)?;
    Ok(())
}
