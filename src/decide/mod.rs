//! The decision: given a parsed message, the config and the stored state, who owns it and where
//! it goes.
//!
//! [`decide`] is a pure function of its inputs. It reads state through [`StateView`] (the store
//! implements it; tests and `explain` can use an in-memory one) and returns a [`Decision`]
//! carrying its own explanation, so `run` and `explain` can never disagree. Nothing here talks
//! IMAP or writes anything.

use anyhow::Result;

use crate::assign;
use crate::config::{Config, MailboxConfig};
use crate::message::{Automated, Envelope};
use crate::store::{Conversation, ConversationState, Store};

/// Read access to the state a decision depends on.
pub trait StateView {
    /// The conversation any of these Message-IDs belongs to in this mailbox.
    fn conversation_for(&self, mailbox: &str, ids: &[String]) -> Result<Option<Conversation>>;
    /// The agent the team's rotation chose last.
    fn rotation(&self, team: &str) -> Result<Option<String>>;
    /// Open conversations owned by an agent.
    fn open_count(&self, agent: &str) -> Result<u64>;
}

impl StateView for Store {
    fn conversation_for(&self, mailbox: &str, ids: &[String]) -> Result<Option<Conversation>> {
        Store::conversation_for(self, mailbox, ids)
    }
    fn rotation(&self, team: &str) -> Result<Option<String>> {
        Store::rotation(self, team)
    }
    fn open_count(&self, agent: &str) -> Result<u64> {
        Store::open_count(self, agent)
    }
}

/// What happens to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It continues a conversation that already has an owner.
    FollowUp,
    /// It starts a conversation and an agent was chosen.
    Assigned,
    /// Automatic mail: recorded and filed, never work for anyone.
    Automated,
    /// Nobody could take it; it stays where it is.
    Unassigned,
}

/// The full decision for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What kind of decision this is.
    pub outcome: Outcome,
    /// The existing conversation it joins, if any.
    pub conversation: Option<String>,
    /// The owner after this message.
    pub owner: Option<String>,
    /// The folder to move it to (decoded, `/`-separated); `None` leaves it in place.
    pub folder: Option<String>,
    /// A rotation step to persist: (team, agent).
    pub rotation: Option<(String, String)>,
    /// Message-IDs that should lead later replies to this conversation.
    pub thread_ids: Vec<String>,
    /// One sentence for the event log, e.g. "assigned to alice by round robin".
    pub summary: String,
    /// Every step of the reasoning, for `explain`.
    pub explanation: Vec<String>,
}

/// Decides one message of one mailbox.
pub fn decide(
    envelope: &Envelope,
    mailbox: &MailboxConfig,
    config: &Config,
    state: &dyn StateView,
) -> Result<Decision> {
    let mut explanation = Vec::new();
    let thread_ids = thread_ids(envelope);
    let related = related_ids(envelope);
    let existing = state.conversation_for(&mailbox.name, &related)?;
    if let Some(conv) = existing.as_ref().filter(|c| c.owner.is_some()) {
        return Ok(follow_up(conv, mailbox, config, thread_ids, explanation));
    }
    if envelope.automated != Automated::No {
        explanation.push(format!("{:?} mail never becomes work", envelope.automated));
        return Ok(Decision {
            outcome: Outcome::Automated,
            conversation: existing.map(|c| c.id),
            owner: None,
            folder: Some(mailbox.automated_folder.clone()),
            rotation: None,
            thread_ids,
            summary: format!(
                "automatic mail ({:?}) filed in {}",
                envelope.automated, mailbox.automated_folder
            ),
            explanation,
        });
    }
    let pick = assign::round_robin(&mailbox.team, config, state, &mut explanation)?;
    let Some(agent) = pick else {
        return Ok(Decision {
            outcome: Outcome::Unassigned,
            conversation: existing.map(|c| c.id),
            owner: None,
            folder: None,
            rotation: None,
            thread_ids,
            summary: "left unassigned: no agent could take it".into(),
            explanation,
        });
    };
    Ok(Decision {
        outcome: Outcome::Assigned,
        conversation: existing.map(|c| c.id),
        owner: Some(agent.clone()),
        folder: Some(agent_folder(mailbox, config, &agent)),
        rotation: Some((mailbox.team.clone(), agent.clone())),
        thread_ids,
        summary: format!("assigned to {agent} by round robin"),
        explanation,
    })
}

fn follow_up(
    conv: &Conversation,
    mailbox: &MailboxConfig,
    config: &Config,
    thread_ids: Vec<String>,
    mut explanation: Vec<String>,
) -> Decision {
    let owner = conv.owner.clone().unwrap_or_default();
    let reopened = conv.state == ConversationState::Closed;
    explanation.push(format!(
        "replies to conversation {} owned by {owner}{}",
        conv.id,
        if reopened { " (closed: reopened)" } else { "" }
    ));
    Decision {
        outcome: Outcome::FollowUp,
        conversation: Some(conv.id.clone()),
        owner: Some(owner.clone()),
        folder: Some(agent_folder(mailbox, config, &owner)),
        rotation: None,
        thread_ids,
        summary: format!("follow-up kept with {owner} (conversation {})", conv.id),
        explanation,
    }
}

/// The folder of an agent in a mailbox: `<assigned_root>/<agent name>`.
pub fn agent_folder(mailbox: &MailboxConfig, config: &Config, agent: &str) -> String {
    let name = config
        .agent(agent)
        .map(|a| a.name.as_str())
        .unwrap_or(agent);
    format!("{}/{}", mailbox.assigned_root, name)
}

/// IDs that identify this message for later replies: its own and Exchange's original.
fn thread_ids(envelope: &Envelope) -> Vec<String> {
    envelope
        .message_id
        .iter()
        .chain(envelope.original_message_id.iter())
        .cloned()
        .collect()
}

/// IDs this message refers to, oldest first: References then In-Reply-To.
fn related_ids(envelope: &Envelope) -> Vec<String> {
    let mut ids = envelope.references.clone();
    for id in &envelope.in_reply_to {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}
