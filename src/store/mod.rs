//! postroom's memory: decisions, conversations, rotations, sync points and events, in sled.
//!
//! No sled type leaves this module: callers see plain records and a handful of operations, so
//! the engine's crash safety can be proven by tests and the engine replaced if it ever fails.
//!
//! The write that matters is [`Store::commit`]: the message record (in state `Pending`, naming
//! the folder it is about to be moved to), its conversation, the agent's open count, the team's
//! rotation and the event are written in one sled transaction *before* the mailbox is touched.
//! [`Store::flush`] makes that durable. After the move, [`Store::mark_filed`] records where the
//! message landed. A crash between the two leaves a `Pending` record that the mailbox side
//! finishes on start, so a message is never decided twice and never forgotten.

mod codec;
mod conversations;
mod events;
mod mailbox;
mod merge;
mod outbox;
mod summary;
mod threads;
mod upgrade;

pub use merge::Misplaced;
pub use outbox::{OutboxMail, OutboxState};
pub use summary::{AgentCounts, HourSummary};

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use events::put_event;

/// Where a message stands in postroom's handling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MessageState {
    /// Decided; the move to `folder` may not have happened yet.
    Pending {
        /// The folder it is being moved to (decoded name); `None` leaves it where it is.
        folder: Option<String>,
    },
    /// In `folder` (decoded name), as far as postroom knows.
    Filed {
        /// The folder it was filed in.
        folder: String,
    },
    /// Decided to stay where it arrived (ignored or left unassigned).
    Left,
    /// No longer in any folder postroom watches: deleted, or moved out of its sight.
    Gone,
    /// Work nobody could take (everyone away or at capacity): it stays in the inbox and is
    /// given out, oldest first, as soon as someone can take it.
    Waiting,
}

/// One handled message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Stable identity (see `message::Envelope::identity`).
    pub identity: String,
    /// The mailbox it arrived in.
    pub mailbox: String,
    /// The Message-ID, if it had one.
    pub message_id: Option<String>,
    /// The conversation it belongs to.
    pub conversation: String,
    /// Its owner when decided, if any.
    pub owner: Option<String>,
    /// Handling state.
    pub state: MessageState,
    /// Server arrival time (INTERNALDATE).
    pub arrived: Option<DateTime<Utc>>,
    /// When postroom decided.
    pub decided_at: DateTime<Utc>,
    /// Subject, one line.
    pub subject: String,
    /// Sender address.
    pub from: Option<String>,
}

/// Whether a conversation still needs work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    /// Waiting for or with its owner.
    Open,
    /// Done.
    Closed,
}

impl std::fmt::Display for ConversationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConversationState::Open => "open",
            ConversationState::Closed => "closed",
        })
    }
}

/// A thread of messages with one owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Store-assigned id, `c` followed by a number.
    pub id: String,
    /// The mailbox it lives in.
    pub mailbox: String,
    /// The owning agent id, if assigned.
    pub owner: Option<String>,
    /// Open or closed.
    pub state: ConversationState,
    /// Arrival of its first message.
    pub started: DateTime<Utc>,
    /// Arrival of its latest message.
    pub last_message: DateTime<Utc>,
    /// How many messages it holds.
    pub messages: u32,
    /// Subject of its first message.
    pub subject: String,
    /// Sender of its first message.
    pub from: Option<String>,
    /// When it was last closed, if it is closed.
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    /// When the team first answered (a reply in the sent folder), if it has.
    #[serde(default)]
    pub first_response_at: Option<DateTime<Utc>>,
    /// How postroom learnt of that first response; `None` (records written before this was
    /// kept) means the sent folder.
    #[serde(default)]
    pub first_response_by: Option<ResponseSource>,
    /// When the team last answered.
    #[serde(default)]
    pub last_response_at: Option<DateTime<Utc>>,
    /// Arrival of the latest customer message after the last response: the next-response
    /// clock's start. `None` while nothing waits for an answer.
    #[serde(default)]
    pub waiting_since: Option<DateTime<Utc>>,
    /// The SLA policy chosen for it, by name.
    #[serde(default)]
    pub sla: Option<String>,
    /// Tags from the rules that matched its messages.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Names of the rules that matched its messages.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Set when this conversation was folded into another (its replies had arrived before
    /// the message linking it to an older conversation); it then counts nowhere, and looking
    /// it up finds the one it was merged into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// The customer's waits that the team answered after its first response (each a run of
    /// the next-response clock), oldest first; at most [`MAX_WAITS`], the latest kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answered_waits: Vec<Wait>,
}

/// How many answered waits a conversation record keeps: a thread with more follow-ups than
/// this is reported on its latest ones.
pub const MAX_WAITS: usize = 64;

/// A customer's wait for an answer after the first response: one run of the next-response
/// clock, from the follow-up's arrival to the response that ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    /// Arrival of the follow-up that started the wait.
    pub since: DateTime<Utc>,
    /// The response that ended it.
    pub answered: DateTime<Utc>,
}

impl Conversation {
    /// Records a wait answered at `answered`, keeping the list in order and bounded.
    pub(crate) fn add_wait(&mut self, wait: Wait) {
        if self.answered_waits.contains(&wait) {
            return;
        }
        self.answered_waits.push(wait);
        self.answered_waits.sort_by_key(|w| (w.since, w.answered));
        let excess = self.answered_waits.len().saturating_sub(MAX_WAITS);
        self.answered_waits.drain(..excess);
    }
}

/// How postroom learnt that the team responded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseSource {
    /// A reply found in the shared mailbox's sent folder: proof.
    SentFolder,
    /// The `\Answered` flag Outlook sets on a message it replied to: a hint, taken when no
    /// reply was found in the sent folder, and replaced by one with an earlier time.
    AnsweredFlag,
}

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A conversation got an owner.
    Assigned,
    /// A follow-up joined a conversation and kept its owner.
    FollowUp,
    /// A message was moved to its folder.
    Filed,
    /// A message was left where it arrived.
    Left,
    /// A message could not be handled and was set aside.
    Quarantined,
    /// Something was found different from the record and put right.
    Reconciled,
    /// A person (or an admin command) gave a conversation to another agent.
    Reassigned,
    /// A person took a conversation away from its owner (moved back to the inbox, released).
    Released,
    /// The conversation was closed (moved to Done, deleted, or closed by command).
    Closed,
    /// A closed conversation got a follow-up and is open again.
    Reopened,
    /// An agent was marked away or back at run time.
    Availability,
    /// The team answered (a reply found in the sent folder).
    Responded,
    /// Two conversations turned out to be one thread and were merged.
    Merged,
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EventKind::Assigned => "assigned",
            EventKind::FollowUp => "follow-up",
            EventKind::Filed => "filed",
            EventKind::Left => "left",
            EventKind::Quarantined => "quarantined",
            EventKind::Reconciled => "reconciled",
            EventKind::Reassigned => "reassigned",
            EventKind::Released => "released",
            EventKind::Closed => "closed",
            EventKind::Reopened => "reopened",
            EventKind::Availability => "availability",
            EventKind::Responded => "responded",
            EventKind::Merged => "merged",
        })
    }
}

/// One line of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its kind.
    pub kind: EventKind,
    /// The mailbox.
    pub mailbox: String,
    /// The conversation, if any.
    pub conversation: Option<String>,
    /// The message identity, if any.
    pub identity: Option<String>,
    /// The agent concerned, if any.
    pub agent: Option<String>,
    /// A human sentence, e.g. "assigned to alice by round robin".
    pub detail: String,
}

/// Where the mailbox side last got to in one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// UIDVALIDITY of the inbox when `last_uid` was recorded.
    pub uid_validity: Option<u32>,
    /// The highest inbox UID examined.
    pub last_uid: u32,
    /// When the server last answered.
    pub last_contact: Option<DateTime<Utc>>,
    /// The last connection error, cleared on success.
    pub last_error: Option<String>,
}

/// A message set aside because it could not be fetched or parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The mailbox.
    pub mailbox: String,
    /// The folder it was left in.
    pub folder: String,
    /// UIDVALIDITY at the time.
    pub uid_validity: u32,
    /// Its UID there.
    pub uid: u32,
    /// Why.
    pub reason: String,
    /// How many attempts failed.
    pub attempts: u32,
    /// When it was last tried.
    pub at: DateTime<Utc>,
}

/// Everything decided about one message, written atomically by [`Store::commit`].
#[derive(Debug, Clone)]
pub struct Commit {
    /// The message record to write; its `conversation` is ignored when `new_conversation` is set.
    pub message: MessageRecord,
    /// Set when the message starts a conversation; the store assigns the id.
    pub new_conversation: bool,
    /// Message-IDs under which later replies should find this conversation.
    pub thread_ids: Vec<String>,
    /// Message-IDs this message refers to (References, In-Reply-To). Those not known yet are
    /// pointed at this conversation, so a parent arriving after its reply joins it.
    pub referenced: Vec<String>,
    /// A rotation step to persist: (team, agent chosen).
    pub rotation: Option<(String, String)>,
    /// The SLA policy for a new conversation, by name.
    pub sla: Option<String>,
    /// True when the message is work (not automatic mail, not ignored): only work reopens a
    /// closed conversation or starts a wait for an answer.
    pub work: bool,
    /// Tags the rules gave this message; added to the conversation's.
    pub tags: Vec<String>,
    /// Names of the rules that matched this message; added to the conversation's.
    pub rules: Vec<String>,
    /// The event describing the decision.
    pub event: Event,
}

/// The sled-backed store.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    messages: sled::Tree,
    threads: sled::Tree,
    conversations: sled::Tree,
    load: sled::Tree,
    rotation: sled::Tree,
    sync: sled::Tree,
    events: sled::Tree,
    filed: sled::Tree,
    quarantine: sled::Tree,
    agents: sled::Tree,
    waiting: sled::Tree,
    outbox: sled::Tree,
    members: sled::Tree,
    realign: sled::Tree,
}

type TxResult<T> = Result<T, ConflictableTransactionError<String>>;

/// How many merges a conversation lookup follows; a chain longer than this is a loop.
const MAX_MERGE_HOPS: usize = 16;

impl Store {
    /// Opens (creating if needed) the database under `dir`, bringing a store written by an
    /// earlier version up to the current layout first (see `upgrade`).
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .open()
            .map_err(|err| open_error(dir, err))?;
        let tree = |name: &str| {
            db.open_tree(name)
                .with_context(|| format!("open tree {name}"))
        };
        let store = Store {
            messages: tree("messages")?,
            threads: tree("threads")?,
            conversations: tree("conversations")?,
            load: tree("load")?,
            rotation: tree("rotation")?,
            sync: tree("sync")?,
            events: tree(events::TREE)?,
            filed: tree("filed")?,
            quarantine: tree("quarantine")?,
            agents: tree("agents")?,
            waiting: tree("waiting")?,
            outbox: tree("outbox")?,
            members: tree("members")?,
            realign: tree("realign")?,
            db,
        };
        upgrade::run(&store).with_context(|| {
            format!("cannot bring the database in {} up to date", dir.display())
        })?;
        store.index_members_once()?;
        Ok(store)
    }

    /// Makes everything written so far durable (fsync).
    pub fn flush(&self) -> Result<()> {
        self.db.flush().context("flush the database")?;
        Ok(())
    }

    /// The record of a message, by mailbox and identity.
    pub fn message(&self, mailbox: &str, identity: &str) -> Result<Option<MessageRecord>> {
        get_json(&self.messages, &pair(mailbox, identity))
    }

    /// Messages of a mailbox still `Pending`: decided, maybe not yet moved.
    pub fn pending(&self, mailbox: &str) -> Result<Vec<MessageRecord>> {
        let all: Vec<MessageRecord> = scan_json(&self.messages, &prefix(mailbox))?;
        Ok(all
            .into_iter()
            .filter(|m| matches!(m.state, MessageState::Pending { .. }))
            .collect())
    }

    /// All message records of a mailbox.
    pub fn messages(&self, mailbox: &str) -> Result<Vec<MessageRecord>> {
        scan_json(&self.messages, &prefix(mailbox))
    }

    /// The message records of a mailbox in state `Filed`, read through the filed index: the
    /// cost follows the mail that sits in folders now, not the mailbox's whole history.
    pub fn filed(&self, mailbox: &str) -> Result<Vec<MessageRecord>> {
        let mut out = Vec::new();
        for entry in self.filed.scan_prefix(prefix(mailbox)) {
            let (key, _) = entry.context("scan the filed index")?;
            if let Some(record) = get_json::<MessageRecord>(&self.messages, &key)? {
                if matches!(record.state, MessageState::Filed { .. }) {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    /// A conversation by id; for one merged into another, the one it was merged into.
    pub fn conversation(&self, id: &str) -> Result<Option<Conversation>> {
        let mut id = id.to_string();
        for _ in 0..MAX_MERGE_HOPS {
            let Some(bytes) = self.conversations.get(&id).context("read the database")? else {
                return Ok(None);
            };
            match codec::decode(&bytes)? {
                Conversation {
                    merged_into: Some(into),
                    ..
                } => id = into,
                found => return Ok(Some(found)),
            }
        }
        Ok(None)
    }

    /// Every conversation, optionally of one mailbox (merged ones are part of another).
    pub fn conversations(&self, mailbox: Option<&str>) -> Result<Vec<Conversation>> {
        self.conversations_iter(mailbox).collect()
    }

    /// Every conversation, optionally of one mailbox, one at a time: for a pass over a large
    /// store that need not hold them all.
    pub fn conversations_iter<'a>(
        &'a self,
        mailbox: Option<&'a str>,
    ) -> impl Iterator<Item = Result<Conversation>> + 'a {
        self.conversations
            .iter()
            .map(|entry| {
                let (_, bytes) = entry.context("scan the database")?;
                codec::decode(&bytes)
            })
            .filter(move |conv| match conv {
                Ok(conv) => conv.merged_into.is_none() && mailbox.is_none_or(|m| conv.mailbox == m),
                Err(_) => true,
            })
    }

    /// The last agent the team's rotation chose.
    pub fn rotation(&self, team: &str) -> Result<Option<String>> {
        let value = self.rotation.get(team).context("read rotation")?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The turn number of an agent's latest round-robin turn in a team.
    pub fn last_turn(&self, team: &str, agent: &str) -> Result<Option<u64>> {
        let value = self
            .rotation
            .get(pair(team, agent))
            .context("read rotation")?;
        Ok(value.map(|v| decode_u64(&v)))
    }

    /// How many open conversations an agent owns.
    pub fn open_count(&self, agent: &str) -> Result<u64> {
        let value = self.load.get(agent).context("read agent load")?;
        Ok(value.map(|v| decode_u64(&v)).unwrap_or(0))
    }

    /// Writes a decision atomically; returns the conversation id used.
    pub fn commit(&self, commit: &Commit) -> Result<String> {
        self.commit_merging(commit, None)
    }

    /// Writes a decision as [`Store::commit`] does and, in the same transaction, folds the
    /// conversation `merge_from` into the one the message joins: its messages move over, its
    /// owner's open count drops, and lookups of it find the survivor from then on.
    pub fn commit_merging(&self, commit: &Commit, merge_from: Option<&str>) -> Result<String> {
        let absorbed = match merge_from {
            Some(id) => self.merge_plan(id)?,
            None => None,
        };
        let trees = (
            &self.messages,
            &self.filed,
            &self.threads,
            &self.conversations,
            &self.load,
            &self.rotation,
            &self.events,
            &self.members,
            &self.realign,
        );
        let result = trees.transaction(
            |(
                messages,
                filed,
                threads,
                conversations,
                load,
                rotation,
                events,
                members,
                realign,
            )| {
                let mut message = commit.message.clone();
                if !commit.work && commit.new_conversation {
                    // Automatic or ignored mail that joins nothing starts no conversation: it
                    // is nobody's work and must not show as backlog.
                    message.conversation = String::new();
                    put_message(
                        messages,
                        filed,
                        &pair(&message.mailbox, &message.identity),
                        &message,
                    )?;
                    put_event(events, &commit.event)?;
                    return Ok(String::new());
                }
                let (conv_id, owner_changed) = write_conversation(conversations, load, commit)?;
                message.conversation = conv_id.clone();
                put_message(
                    messages,
                    filed,
                    &pair(&message.mailbox, &message.identity),
                    &message,
                )?;
                members.insert(
                    member_key(&conv_id, &message.identity),
                    message.mailbox.as_bytes(),
                )?;
                if owner_changed {
                    merge::mark_misplaced(realign, &pair(&message.mailbox, &conv_id))?;
                }
                for id in &commit.thread_ids {
                    threads.insert(pair(&message.mailbox, id), conv_id.as_bytes())?;
                }
                for id in &commit.referenced {
                    let key = pair(&message.mailbox, id);
                    if threads.get(&key)?.is_none() {
                        threads.insert(key, conv_id.as_bytes())?;
                    }
                }
                if let Some((team, agent)) = &commit.rotation {
                    take_turn(rotation, team, agent)?;
                }
                if let Some(key) = threads::subject_key(&message) {
                    threads.insert(key, conv_id.as_bytes())?;
                }
                let mut event = commit.event.clone();
                event.conversation = Some(conv_id.clone());
                put_event(events, &event)?;
                if let Some(plan) = absorbed.as_ref().filter(|p| p.id != conv_id) {
                    let trees = merge::MergeTrees {
                        messages,
                        conversations,
                        load,
                        events,
                        members,
                        realign,
                    };
                    merge::fold(&trees, plan, &conv_id, commit.event.at)?;
                }
                Ok(conv_id)
            },
        );
        unwrap_tx(result).context("record the decision")
    }

    /// Records that a message now sits in `folder`; `event` is written with it.
    pub fn mark_filed(
        &self,
        mailbox: &str,
        identity: &str,
        state: MessageState,
        event: Event,
    ) -> Result<()> {
        let key = pair(mailbox, identity);
        let trees = (&self.messages, &self.filed, &self.events);
        let result = trees.transaction(|(messages, filed, events)| {
            let Some(mut record) = get_tx::<MessageRecord>(messages, &key)? else {
                return Ok(());
            };
            record.state = state.clone();
            put_message(messages, filed, &key, &record)?;
            put_event(events, &event)?;
            Ok(())
        });
        unwrap_tx(result).context("record where the message was filed")
    }

    /// Records where a whole group of messages landed, as [`Store::mark_filed`] does for each,
    /// in one transaction: after one group MOVE the worker pays one sled transaction instead of
    /// one per message (about 30 µs each on the benchmark machine, see BENCHMARKS.md).
    /// Identities without a record are skipped, as in `mark_filed`.
    pub fn mark_filed_many(
        &self,
        mailbox: &str,
        filed: &[(String, MessageState, Event)],
    ) -> Result<()> {
        let trees = (&self.messages, &self.filed, &self.events);
        let result = trees.transaction(|(messages, index, events)| {
            for (identity, state, event) in filed {
                let key = pair(mailbox, identity);
                let Some(mut record) = get_tx::<MessageRecord>(messages, &key)? else {
                    continue;
                };
                record.state = state.clone();
                put_message(messages, index, &key, &record)?;
                put_event(events, event)?;
            }
            Ok(())
        });
        unwrap_tx(result).context("record where the messages were filed")
    }

    /// Records a message's new place and owner, as found in the mailbox; `event` is written
    /// with it.
    pub fn relocate(
        &self,
        mailbox: &str,
        identity: &str,
        state: MessageState,
        owner: Option<String>,
        event: Event,
    ) -> Result<()> {
        let key = pair(mailbox, identity);
        let trees = (&self.messages, &self.filed, &self.events);
        let result = trees.transaction(|(messages, filed, events)| {
            let Some(mut record) = get_tx::<MessageRecord>(messages, &key)? else {
                return Ok(());
            };
            record.state = state.clone();
            record.owner = owner.clone();
            put_message(messages, filed, &key, &record)?;
            put_event(events, &event)
        });
        unwrap_tx(result).context("record where the message is")
    }
}

/// Polling progress of one managed folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderSync {
    /// UIDVALIDITY when `uid_next` was recorded.
    pub uid_validity: u32,
    /// The UIDNEXT up to which arrivals have been examined.
    pub uid_next: u32,
}

/// Creates or updates the conversation inside the commit transaction; keeps agent loads right.
/// Returns the conversation's id, and whether an existing conversation changed owner.
fn write_conversation(
    conversations: &TransactionalTree,
    load: &TransactionalTree,
    commit: &Commit,
) -> TxResult<(String, bool)> {
    let message = &commit.message;
    let arrived = message.arrived.unwrap_or(message.decided_at);
    let existing = if commit.new_conversation {
        None
    } else {
        merge::resolve_tx(conversations, &message.conversation)?
    };
    let mut owner_changed = false;
    let conversation = match existing {
        Some(mut conv) => {
            owner_changed = message.owner.is_some() && conv.owner != message.owner;
            if conv.state == ConversationState::Open && conv.owner != message.owner {
                adjust_load(load, conv.owner.as_deref(), -1)?;
                adjust_load(load, message.owner.as_deref(), 1)?;
            }
            conv.owner = message.owner.clone();
            conv.messages += 1;
            conv.last_message = conv.last_message.max(arrived);
            for (have, new) in [
                (&mut conv.tags, &commit.tags),
                (&mut conv.rules, &commit.rules),
            ] {
                for item in new {
                    if !have.contains(item) {
                        have.push(item.clone());
                    }
                }
            }
            if !commit.work {
                put_conversation(conversations, &conv)?;
                return Ok((conv.id, owner_changed));
            }
            if conv.waiting_since.is_none() {
                conv.waiting_since = Some(arrived);
            }
            if conv.state == ConversationState::Closed {
                // A closed conversation holds no load; reopening gives its owner one again.
                adjust_load(load, conv.owner.as_deref(), 1)?;
                conv.state = ConversationState::Open;
                conv.closed_at = None;
            }
            conv
        }
        None => {
            adjust_load(load, message.owner.as_deref(), 1)?;
            Conversation {
                id: format!("c{}", conversations.generate_id()?),
                mailbox: message.mailbox.clone(),
                owner: message.owner.clone(),
                state: ConversationState::Open,
                started: arrived,
                last_message: arrived,
                messages: 1,
                subject: message.subject.clone(),
                from: message.from.clone(),
                closed_at: None,
                first_response_at: None,
                first_response_by: None,
                last_response_at: None,
                waiting_since: Some(arrived),
                sla: commit.sla.clone(),
                tags: commit.tags.clone(),
                rules: commit.rules.clone(),
                merged_into: None,
                answered_waits: Vec::new(),
            }
        }
    };
    put_conversation(conversations, &conversation)?;
    Ok((conversation.id, owner_changed))
}

/// Reads a conversation inside a transaction.
fn get_conversation(tree: &TransactionalTree, key: &[u8]) -> TxResult<Option<Conversation>> {
    match tree.get(key)? {
        Some(bytes) => codec::decode(&bytes)
            .map(Some)
            .map_err(|e| ConflictableTransactionError::Abort(format!("{e:#}"))),
        None => Ok(None),
    }
}

/// Writes a conversation, in the compact form, inside a transaction.
fn put_conversation(tree: &TransactionalTree, conv: &Conversation) -> TxResult<()> {
    tree.insert(conv.id.as_bytes(), codec::encode(conv))?;
    Ok(())
}

/// Records an agent's turn: the team's last chosen agent, and a per-team turn number that
/// round robin uses to find who has waited longest.
fn take_turn(rotation: &TransactionalTree, team: &str, agent: &str) -> TxResult<()> {
    let counter_key = pair(team, "#");
    let turn = rotation
        .get(&counter_key)?
        .map(|v| decode_u64(&v))
        .unwrap_or(0)
        + 1;
    rotation.insert(counter_key, &turn.to_be_bytes())?;
    rotation.insert(pair(team, agent), &turn.to_be_bytes())?;
    rotation.insert(team.as_bytes(), agent.as_bytes())?;
    Ok(())
}

fn adjust_load(load: &TransactionalTree, agent: Option<&str>, delta: i64) -> TxResult<()> {
    let Some(agent) = agent else { return Ok(()) };
    let current = load.get(agent)?.map(|v| decode_u64(&v)).unwrap_or(0);
    let next = current.saturating_add_signed(delta);
    load.insert(agent.as_bytes(), &next.to_be_bytes())?;
    Ok(())
}

fn decode_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Writes a message record and keeps the filed index in step with its state, in the caller's
/// transaction: the index holds exactly the records whose state is `Filed`.
fn put_message(
    messages: &TransactionalTree,
    filed: &TransactionalTree,
    key: &[u8],
    record: &MessageRecord,
) -> TxResult<()> {
    if matches!(record.state, MessageState::Filed { .. }) {
        filed.insert(key, &[])?;
    } else {
        filed.remove(key)?;
    }
    put_json(messages, key, record)
}

fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut key = prefix(a);
    key.extend_from_slice(b.as_bytes());
    key
}

fn prefix(a: &str) -> Vec<u8> {
    let mut key = a.as_bytes().to_vec();
    key.push(0);
    key
}

/// Says why the database cannot be opened in words, not as the engine's debug output.
fn open_error(dir: &Path, err: sled::Error) -> anyhow::Error {
    let dir = dir.display();
    match err {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => anyhow::anyhow!(
            "the database in {dir} is in use by another postroom process that does not answer \
             on its control socket (state_dir/control.sock); wait for it to finish starting, \
             or stop it"
        ),
        sled::Error::Io(io) => anyhow::anyhow!("cannot open the database in {dir}: {io}"),
        sled::Error::Corruption { .. } => anyhow::anyhow!(
            "the database in {dir} is damaged; `postroom rebuild` recreates it from the mailboxes"
        ),
        other => anyhow::anyhow!("cannot open the database in {dir}: {other}"),
    }
}

/// The member-index key of a message in a conversation.
fn member_key(conversation: &str, identity: &str) -> Vec<u8> {
    pair(conversation, identity)
}

fn waiting_key(mailbox: &str, arrived: DateTime<Utc>, identity: &str) -> Vec<u8> {
    let mut key = prefix(mailbox);
    key.extend_from_slice(&arrived.timestamp_millis().to_be_bytes());
    key.extend_from_slice(identity.as_bytes());
    key
}

fn quarantine_key(mailbox: &str, uid_validity: u32, uid: u32) -> Vec<u8> {
    let mut key = prefix(mailbox);
    key.extend_from_slice(&uid_validity.to_be_bytes());
    key.extend_from_slice(&uid.to_be_bytes());
    key
}

fn get_json<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>> {
    match tree.get(key).context("read the database")? {
        Some(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).context("decode a stored record")?,
        )),
        None => Ok(None),
    }
}

fn scan_json<T: DeserializeOwned>(tree: &sled::Tree, key_prefix: &[u8]) -> Result<Vec<T>> {
    tree.scan_prefix(key_prefix)
        .map(|entry| {
            let (_, bytes) = entry.context("scan the database")?;
            serde_json::from_slice(&bytes).context("decode a stored record")
        })
        .collect()
}

fn get_tx<T: DeserializeOwned>(tree: &TransactionalTree, key: &[u8]) -> TxResult<Option<T>> {
    match tree.get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ConflictableTransactionError::Abort(format!("decode a stored record: {e}"))
        }),
        None => Ok(None),
    }
}

fn put_json<T: Serialize>(tree: &TransactionalTree, key: &[u8], value: &T) -> TxResult<()> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| ConflictableTransactionError::Abort(format!("encode a record: {e}")))?;
    tree.insert(key, bytes)?;
    Ok(())
}

fn unwrap_tx<T>(result: Result<T, TransactionError<String>>) -> Result<T> {
    result.map_err(|err| match err {
        TransactionError::Abort(reason) => anyhow::anyhow!(reason),
        TransactionError::Storage(err) => anyhow::Error::new(err),
    })
}
