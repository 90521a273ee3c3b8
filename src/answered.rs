//! `\Answered` as a hint that the team responded.
//!
//! When an agent replies in Outlook, Exchange sets `\Answered` on the message replied to. The
//! reply itself is proof only once it shows up in the shared mailbox's sent folder, which
//! Exchange does for delegates only with `MessageCopyForSentAsEnabled` /
//! `MessageCopyForSendOnBehalfEnabled` on; many sites never get that far. So, per mailbox
//! (`answered_flag`, on by default), the flag stops a running first- or next-response clock at
//! the moment postroom sees it, recorded as [`ResponseSource::AnsweredFlag`] so `history` and the
//! report can tell it from a sent reply. A sent reply found later with an earlier time replaces
//! it (see [`Store::record_response_by`](crate::store::Store::record_response_by)).
//!
//! Exchange has no CONDSTORE, so flag changes cannot be asked for. During the folder poll,
//! and only while some conversation of the mailbox has a running clock, each folder that holds
//! one of its messages (the inbox, agent folders) gets one `UID SEARCH ANSWERED`; only UIDs not
//! seen before have their Message-ID fetched. The seen UIDs are kept in memory: after a restart
//! each flagged message of those folders is read once more, which is harmless.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use crate::imap::Connection;
use crate::outlook::Watcher;
use crate::store::{
    Conversation, ConversationState, Event, EventKind, MessageRecord, MessageState, ResponseSource,
};

/// `\Answered` UIDs already looked at, per folder, with the folder's UIDVALIDITY.
#[derive(Debug, Default)]
pub struct AnsweredSeen {
    folders: HashMap<String, (u32, HashSet<u32>)>,
}

/// Which clock of a conversation a flag would stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// No response yet: any of its messages answered counts.
    First,
    /// A follow-up waits since this instant: only a message from then on counts.
    Next(DateTime<Utc>),
}

/// The clock a conversation has running, if a flag could stop it.
fn waiting(conv: &Conversation) -> Option<Waiting> {
    if conv.state != ConversationState::Open {
        return None;
    }
    match (conv.first_response_at, conv.waiting_since) {
        (None, _) => Some(Waiting::First),
        (Some(_), Some(since)) => Some(Waiting::Next(since)),
        (Some(_), None) => None,
    }
}

/// Whether a message that arrived at `arrived` answered stops the clock `waiting`.
fn counts(waiting: Waiting, arrived: Option<DateTime<Utc>>) -> bool {
    match waiting {
        Waiting::First => true,
        Waiting::Next(since) => arrived.is_some_and(|at| at >= since),
    }
}

impl Watcher<'_> {
    /// Looks for `\Answered` on the messages of conversations with a running response clock,
    /// and records each such conversation as answered now. Leaves the inbox selected again.
    /// Returns how many conversations were recorded.
    pub async fn answered(&self, conn: &mut Connection, seen: &mut AnsweredSeen) -> Result<usize> {
        if !self.mailbox.answered_flag {
            return Ok(0);
        }
        let wanted = self.wanted()?;
        if wanted.is_empty() {
            return Ok(0);
        }
        let mut recorded: HashSet<String> = HashSet::new();
        for (folder, ids) in &wanted {
            // A folder the store still names may be gone (an agent's folder deleted or renamed
            // in Outlook before reconciliation saw it): that is reconciliation's to sort out,
            // and must not stop the folder poll that comes before it.
            let info = match conn.select(folder).await {
                Ok(info) => info,
                Err(err) if crate::imap::is_refusal(&err) => {
                    warn!(mailbox = %self.mailbox.name, folder, error = %format!("{err:#}"),
                          "cannot look for \\Answered in a folder; skipped");
                    continue;
                }
                Err(err) => return Err(err),
            };
            let (validity, known) = seen
                .folders
                .entry(folder.clone())
                .or_insert_with(|| (info.uid_validity, HashSet::new()));
            if *validity != info.uid_validity {
                (*validity, *known) = (info.uid_validity, HashSet::new());
            }
            let fresh: Vec<u32> = conn
                .answered_uids()
                .await?
                .into_iter()
                .filter(|uid| !known.contains(uid))
                .collect();
            for (uid, id) in conn.message_ids_of(&fresh).await? {
                known.insert(uid);
                let Some(conversation) = id.and_then(|id| ids.get(&id)) else {
                    continue;
                };
                if recorded.insert(conversation.clone()) {
                    self.record_answered(conversation, folder, uid)?;
                }
            }
        }
        conn.select(&self.mailbox.inbox).await?;
        Ok(recorded.len())
    }

    /// Per folder (the inbox or an agent folder), the Message-IDs whose `\Answered` would stop
    /// a running clock, each with its conversation.
    ///
    /// Only what sits in those folders now is read: the filed index and the waiting list of
    /// this mailbox, and the conversation of each message found there (once each). A year of
    /// history in the store, or other mailboxes', costs this nothing. Messages a rule left in
    /// the inbox are not looked at.
    fn wanted(&self) -> Result<HashMap<String, HashMap<String, String>>> {
        let name = &self.mailbox.name;
        let agent_folder = format!("{}/", self.mailbox.assigned_root);
        let mut records: Vec<MessageRecord> = self
            .store
            .filed(name)?
            .into_iter()
            .filter(|r| match &r.state {
                MessageState::Filed { folder } => {
                    folder.starts_with(&agent_folder) || *folder == self.mailbox.inbox
                }
                _ => false,
            })
            .collect();
        for envelope in self.store.waiting(name)? {
            records.extend(self.store.message(name, &envelope.identity)?);
        }
        let mut clocks: HashMap<String, Option<(String, Waiting)>> = HashMap::new();
        let mut wanted: HashMap<String, HashMap<String, String>> = HashMap::new();
        for record in records {
            let clock = match clocks.get(&record.conversation) {
                Some(clock) => clock.clone(),
                None => {
                    // The store resolves a merged conversation to the one it joined.
                    let clock = self
                        .store
                        .conversation(&record.conversation)?
                        .and_then(|c| waiting(&c).map(|w| (c.id, w)));
                    clocks.insert(record.conversation.clone(), clock.clone());
                    clock
                }
            };
            let Some((conversation, waiting)) = clock else {
                continue;
            };
            let folder = match &record.state {
                MessageState::Filed { folder } => folder.clone(),
                _ => self.mailbox.inbox.clone(),
            };
            if let (Some(id), true) = (&record.message_id, counts(waiting, record.arrived)) {
                wanted
                    .entry(folder)
                    .or_default()
                    .insert(id.clone(), conversation);
            }
        }
        Ok(wanted)
    }

    fn record_answered(&self, conversation: &str, folder: &str, uid: u32) -> Result<()> {
        let Some(conv) = self.store.conversation(conversation)? else {
            return Ok(());
        };
        let detail = if conv.first_response_at.is_none() {
            format!(
                "first response: \\Answered flag seen in {folder} (a hint from Outlook; no reply \
                 found in the sent folder)"
            )
        } else {
            format!("response: \\Answered flag seen in {folder} on the customer's follow-up")
        };
        info!(mailbox = %self.mailbox.name, conversation, uid, "{detail}");
        let event = Event {
            at: self.now,
            kind: EventKind::Responded,
            mailbox: self.mailbox.name.clone(),
            conversation: Some(conversation.to_string()),
            identity: None,
            agent: conv.owner.clone(),
            detail,
        };
        debug!(mailbox = %self.mailbox.name, conversation, "clock stopped by the answered flag");
        self.store
            .record_response_by(conversation, self.now, ResponseSource::AnsweredFlag, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn conversation(first: Option<&str>, since: Option<&str>, open: bool) -> Conversation {
        let started = at("2025-03-10T08:00:00Z");
        Conversation {
            id: "c1".into(),
            mailbox: "support".into(),
            owner: None,
            state: if open {
                ConversationState::Open
            } else {
                ConversationState::Closed
            },
            started,
            last_message: started,
            messages: 1,
            subject: String::new(),
            from: None,
            closed_at: None,
            first_response_at: first.map(at),
            first_response_by: None,
            merged_into: None,
            answered_waits: Vec::new(),
            last_response_at: first.map(at),
            waiting_since: since.map(at),
            sla: None,
            tags: Vec::new(),
            rules: Vec::new(),
        }
    }

    #[test]
    fn only_open_conversations_waiting_for_an_answer_are_looked_at() {
        let answered = Some("2025-03-10T09:00:00Z");
        let follow_up = Some("2025-03-11T09:15:00Z");
        let cases = [
            (
                conversation(None, Some("2025-03-10T08:00:00Z"), true),
                Some(Waiting::First),
            ),
            (conversation(None, None, false), None),
            (conversation(answered, None, true), None),
            (
                conversation(answered, follow_up, true),
                Some(Waiting::Next(at("2025-03-11T09:15:00Z"))),
            ),
        ];
        for (conv, expected) in cases {
            assert_eq!(waiting(&conv), expected, "{conv:?}");
        }
    }

    #[test]
    fn a_flag_counts_only_for_a_running_clock_and_a_message_it_waits_on() {
        let since = at("2025-03-11T09:15:00Z");
        let cases = [
            (Waiting::First, None, true),
            (Waiting::First, Some("2025-03-01T00:00:00Z"), true),
            (Waiting::Next(since), Some("2025-03-11T09:15:00Z"), true),
            (Waiting::Next(since), Some("2025-03-11T09:14:59Z"), false),
            (Waiting::Next(since), None, false),
        ];
        for (waiting, arrived, expected) in cases {
            assert_eq!(
                counts(waiting, arrived.map(at)),
                expected,
                "{waiting:?} {arrived:?}"
            );
        }
    }
}
