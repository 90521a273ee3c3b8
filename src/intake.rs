//! Deciding one message and recording the decision: the step between fetching and moving.
//!
//! [`Intake::place`] looks the message up by identity first: a message already decided is never
//! decided again (a `Pending` decision is finished as it was made), one a person moved back to
//! the inbox is routed afresh within its own conversation, and anything new goes through
//! [`decide_with`]. The decision, its explanation and the rotation step are written in one store
//! transaction before the caller touches the mailbox. Work nobody can take yet is kept as
//! `Waiting` and given out later by [`Intake::redecide_waiting`], oldest first.

use std::fmt::Write;

use anyhow::Result;
use chrono::{DateTime, Utc};
use tracing::{debug, info};

use crate::calendar::Calendar;
use crate::config::{Config, MailboxConfig};
use crate::decide::{decide_with, Context, Decision, Outcome};
use crate::message::Envelope;
use crate::store::{Commit, Event, EventKind, MessageRecord, MessageState, Store};

/// The longest decision event detail: the summary and the matched rules' lines normally fit in a
/// few hundred bytes, but a rule's reasons quote message text, so one decision with long
/// headers is cut here rather than bloating the history.
const MAX_EVENT_DETAIL: usize = 2000;

/// Where a decided message should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Its UID in the inbox.
    pub uid: u32,
    /// Its identity.
    pub identity: String,
    /// The folder to move it to.
    pub folder: String,
    /// Its owner, for the owner keyword.
    pub owner: Option<String>,
    /// The decision's one-line summary and conversation, for the log once the message is
    /// filed: a line written before the decision is durable could tell of one that a crash
    /// then undid. `None` when finishing an earlier decision.
    pub note: Option<Note>,
}

/// What the log says about a placed message once it is filed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The conversation it joined or started.
    pub conversation: String,
    /// The decision in one line, e.g. "assigned to alice by round robin".
    pub summary: String,
}

/// The deciding side of one mailbox.
pub struct Intake<'a> {
    /// The whole config.
    pub config: &'a Config,
    /// This mailbox.
    pub mailbox: &'a MailboxConfig,
    /// The store.
    pub store: &'a Store,
    /// The mailbox's business calendar, if it has one.
    pub calendar: Option<&'a Calendar>,
    /// The clock's time now.
    pub now: DateTime<Utc>,
}

impl Intake<'_> {
    /// Decides (or re-finds the earlier decision for) one inbox message and records it.
    /// Returns where it should be moved, if anywhere.
    pub fn place(
        &self,
        envelope: &Envelope,
        uid: u32,
        arrived: Option<DateTime<Utc>>,
    ) -> Result<Option<Placement>> {
        let mut returned = None;
        if let Some(record) = self.store.message(&self.mailbox.name, &envelope.identity)? {
            match record.state {
                MessageState::Pending { folder } => {
                    // Decided before a crash or a lost connection: finish the same decision.
                    return Ok(folder.map(|folder| Placement {
                        uid,
                        identity: record.identity,
                        folder,
                        owner: record.owner,
                        note: None,
                    }));
                }
                MessageState::Left | MessageState::Waiting => return Ok(None),
                // Recorded as gone (a refused move whose message seemed to have left), yet here
                // it is: it never left, so it is filed with its owner as decided, not decided
                // again.
                MessageState::Gone if record.owner.is_some() => {
                    let owner = record.owner.clone().unwrap_or_default();
                    let folder = crate::decide::agent_folder(self.mailbox, self.config, &owner);
                    return Ok(Some(Placement {
                        uid,
                        identity: record.identity,
                        folder,
                        owner: record.owner,
                        note: None,
                    }));
                }
                // Put back by `postroom release`, which already released the conversation.
                MessageState::Filed { ref folder } if *folder == self.mailbox.inbox => {
                    returned = Some(record.conversation.clone()).filter(|c| !c.is_empty());
                }
                MessageState::Filed { .. } | MessageState::Gone => {
                    if !record.conversation.is_empty() {
                        returned = Some(self.release_returned(&record)?);
                    }
                }
            }
        }
        let decision = self.decide(envelope, arrived)?;
        self.record(envelope, uid, arrived, &decision, returned)
    }

    fn decide(&self, envelope: &Envelope, arrived: Option<DateTime<Utc>>) -> Result<Decision> {
        let at = arrived.unwrap_or(self.now);
        let context = Context {
            now: self.now,
            in_business_hours: self.calendar.map(|c| c.is_open(at)),
        };
        decide_with(envelope, self.mailbox, self.config, self.store, &context)
    }

    /// Writes a decision; `conversation` forces the conversation (routing again keeps it).
    fn record(
        &self,
        envelope: &Envelope,
        uid: u32,
        arrived: Option<DateTime<Utc>>,
        decision: &Decision,
        conversation: Option<String>,
    ) -> Result<Option<Placement>> {
        let name = &self.mailbox.name;
        debug!(mailbox = %name, uid, identity = %envelope.identity, outcome = ?decision.outcome, "decided");
        let waiting = decision.waiting.is_some() && decision.is_work();
        let state = match (&decision.folder, waiting) {
            (Some(folder), _) => MessageState::Pending {
                folder: Some(folder.clone()),
            },
            (None, true) => MessageState::Waiting,
            (None, false) => MessageState::Left,
        };
        let record = MessageRecord {
            identity: envelope.identity.clone(),
            mailbox: name.clone(),
            message_id: envelope.message_id.clone(),
            conversation: conversation
                .clone()
                .or(decision.conversation.clone())
                .unwrap_or_default(),
            owner: decision.owner.clone(),
            state,
            arrived,
            decided_at: self.now,
            subject: envelope.subject.clone(),
            from: envelope.from.as_ref().map(|p| p.address.clone()),
        };
        let commit = Commit {
            new_conversation: record.conversation.is_empty(),
            thread_ids: decision.thread_ids.clone(),
            referenced: referenced(envelope),
            rotation: decision.rotation.clone(),
            sla: decision.sla_policy.clone(),
            work: decision.is_work(),
            tags: decision.tags.clone(),
            rules: decision
                .matched_rules
                .iter()
                .map(|r| r.name.clone())
                .collect(),
            event: self.decision_event(envelope, decision),
            message: record,
        };
        let id = self
            .store
            .commit_merging(&commit, decision.merge_from.as_deref())?;
        if let Some(merged) = &decision.merge_from {
            info!(mailbox = %name, conversation = %id, merged = %merged,
                "conversation {merged} merged into {id}: its messages answer this one");
        }
        if waiting {
            self.store
                .set_waiting(name, arrived.unwrap_or(self.now), envelope)?;
        }
        if !id.is_empty() {
            self.apply_early_response(&id, &decision.thread_ids)?;
        }
        let agent = decision.owner.as_deref().unwrap_or("-");
        if decision.folder.is_none() {
            info!(mailbox = %name, uid, conversation = %id, agent, "{}", decision.summary);
        } else {
            debug!(mailbox = %name, uid, conversation = %id, agent, "decided: {}", decision.summary);
        }
        Ok(decision.folder.clone().map(|folder| Placement {
            uid,
            identity: envelope.identity.clone(),
            folder,
            owner: decision.owner.clone(),
            note: Some(Note {
                conversation: id,
                summary: decision.summary.clone(),
            }),
        }))
    }

    /// A reply to this message that reached the sent folder before the message was decided.
    fn apply_early_response(&self, conversation: &str, ids: &[String]) -> Result<()> {
        let Some(at) = self.store.take_pending_response(&self.mailbox.name, ids)? else {
            return Ok(());
        };
        let event = Event {
            at,
            kind: EventKind::Responded,
            mailbox: self.mailbox.name.clone(),
            conversation: Some(conversation.to_string()),
            identity: None,
            agent: None,
            detail: "response sent (found in the sent folder before this message)".into(),
        };
        self.store.record_response(conversation, at, event)
    }

    fn decision_event(&self, envelope: &Envelope, decision: &Decision) -> Event {
        let kind = match decision.outcome {
            Outcome::FollowUp => EventKind::FollowUp,
            Outcome::Assigned => EventKind::Assigned,
            Outcome::Automated | Outcome::Unassigned => EventKind::Left,
        };
        // The history keeps the outcome and the rules that matched, in the words `explain` uses
        // for them. The rest of the explanation (every rule that did not match, every agent
        // passed over) is what `postroom explain` shows for the message under today's config;
        // stored with each decision it made up most of the bytes written per message.
        let mut detail = decision.summary.clone();
        for rule in &decision.matched_rules {
            let why = rule.reasons.join("; ");
            let _ = write!(
                detail,
                "; rule {} `{}` matched: {why}",
                rule.index + 1,
                rule.name
            );
        }
        if detail.len() > MAX_EVENT_DETAIL {
            let cut = (0..=MAX_EVENT_DETAIL)
                .rev()
                .find(|i| detail.is_char_boundary(*i))
                .unwrap_or(0);
            detail.truncate(cut);
        }
        Event {
            at: self.now,
            kind,
            mailbox: self.mailbox.name.clone(),
            conversation: None,
            identity: Some(envelope.identity.clone()),
            agent: decision.owner.clone(),
            detail,
        }
    }

    /// A person moved a filed message back to the inbox: its conversation loses its owner so
    /// the decision that follows routes it afresh. Returns the conversation id.
    fn release_returned(&self, record: &MessageRecord) -> Result<String> {
        let previous = record.owner.as_deref().unwrap_or("nobody");
        let detail = format!("moved back to the inbox by a person; released from {previous}");
        info!(mailbox = %self.mailbox.name, conversation = %record.conversation, "{detail}");
        let event = Event {
            at: self.now,
            kind: EventKind::Released,
            mailbox: self.mailbox.name.clone(),
            conversation: None,
            identity: Some(record.identity.clone()),
            agent: record.owner.clone(),
            detail,
        };
        self.store.set_owner(&record.conversation, None, event)?;
        Ok(record.conversation.clone())
    }

    /// Decides waiting messages again, oldest first. `uid_of` finds a message's current inbox
    /// UID by Message-ID. Returns placements for those someone can now take.
    pub fn redecide_waiting(&self, uid_of: &dyn Fn(&str) -> Option<u32>) -> Result<Vec<Placement>> {
        let name = &self.mailbox.name;
        let mut placements = Vec::new();
        for envelope in self.store.waiting(name)? {
            let Some(record) = self.store.message(name, &envelope.identity)? else {
                continue;
            };
            let arrived = record.arrived.unwrap_or(record.decided_at);
            let uid = envelope.message_id.as_deref().and_then(uid_of);
            if record.state != MessageState::Waiting || uid.is_none() {
                // Taken by a person meanwhile, or no longer in the inbox.
                self.store
                    .clear_waiting(name, arrived, &envelope.identity)?;
                continue;
            }
            let decision = self.decide(&envelope, record.arrived)?;
            if decision.waiting.is_some() {
                continue;
            }
            self.store
                .clear_waiting(name, arrived, &envelope.identity)?;
            let uid = uid.unwrap_or_default();
            let conversation = Some(record.conversation).filter(|c| !c.is_empty());
            if let Some(p) = self.record(&envelope, uid, record.arrived, &decision, conversation)? {
                placements.push(p);
            }
        }
        Ok(placements)
    }
}

/// The IDs a message refers to: References, then In-Reply-To.
fn referenced(envelope: &Envelope) -> Vec<String> {
    envelope
        .references
        .iter()
        .chain(&envelope.in_reply_to)
        .cloned()
        .collect()
}
