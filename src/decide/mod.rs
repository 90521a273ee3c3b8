//! The decision: given a parsed message, the config and the stored state, who owns it and where
//! it goes.
//!
//! [`decide_with`] is a pure function of its inputs. It reads state through [`StateView`] (the
//! store implements it; tests and `explain` use [`memory::MemoryState`]) and returns a
//! [`Decision`] carrying its own explanation, so `run` and `explain` can never disagree. Nothing
//! here talks IMAP or writes anything.
//!
//! The order of reasoning: the rules run first (they may tag or file even mail that is not
//! work); automatic mail then stops, never becoming work; a reply to an owned conversation stays
//! with its owner unless the owner is away; everything else is new work for the rule's target or
//! the mailbox's team.

pub mod memory;
mod outcome;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::assign::{self, Candidate, Waiting};
use crate::config::{Config, MailboxConfig};
use crate::message::{Automated, Envelope};
use crate::rules::{self, Facts, Priority, RuleMatch};
use crate::store::{Conversation, Store};

/// Read access to the state a decision depends on.
pub trait StateView {
    /// The conversation any of these Message-IDs belongs to in this mailbox.
    fn conversation_for(&self, mailbox: &str, ids: &[String]) -> Result<Option<Conversation>>;
    /// The agent the team's rotation chose last.
    fn rotation(&self, team: &str) -> Result<Option<String>>;
    /// Open conversations owned by an agent.
    fn open_count(&self, agent: &str) -> Result<u64>;
    /// The number of the agent's latest turn in the team's rotation: a counter per team that
    /// grows by one with each persisted rotation step. `None` when the agent never had a turn.
    ///
    /// The default suits a state that does not count turns: strategies then fall back to the
    /// team order after [`StateView::rotation`], which is fair while the team is unchanged but
    /// cannot give a returning agent the turn they missed.
    fn last_turn(&self, _team: &str, _agent: &str) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Whether `postroom agent away ID` marked the agent away (until `postroom agent back ID`).
    ///
    /// The default suits a state without run-time flags: nobody is marked away, and only the
    /// away periods and working hours in the config apply.
    fn agent_away(&self, _agent: &str) -> Result<bool> {
        Ok(false)
    }
    /// The conversation a sender last started with this normalised subject, if any.
    fn conversation_by_subject(
        &self,
        _mailbox: &str,
        _from: &str,
        _subject: &str,
    ) -> Result<Option<Conversation>> {
        Ok(None)
    }
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
    fn last_turn(&self, team: &str, agent: &str) -> Result<Option<u64>> {
        Store::last_turn(self, team, agent)
    }
    fn agent_away(&self, agent: &str) -> Result<bool> {
        Store::agent_away(self, agent)
    }
    fn conversation_by_subject(
        &self,
        mailbox: &str,
        from: &str,
        subject: &str,
    ) -> Result<Option<Conversation>> {
        Store::conversation_by_subject(self, mailbox, from, subject)
    }
}

/// What a decision depends on besides the message, the config and the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The clock's time at decision: who is away or working is judged at this instant.
    pub now: DateTime<Utc>,
    /// Whether the message arrived inside the mailbox's business hours, from its calendar;
    /// `None` when no calendar applies.
    pub in_business_hours: Option<bool>,
}

impl Context {
    /// A context at `now` with no calendar.
    pub fn at(now: DateTime<Utc>) -> Context {
        Context {
            now,
            in_business_hours: None,
        }
    }
}

/// What happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It continues a conversation that already has an owner.
    FollowUp,
    /// It starts a conversation (or takes over one whose owner is away) and an agent was chosen.
    Assigned,
    /// Automatic mail: recorded and filed, never work for anyone.
    Automated,
    /// Nobody owns it: a rule said so, it is ignored, or nobody could take it (see `waiting`).
    Unassigned,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::FollowUp => "follow-up",
            Outcome::Assigned => "assigned",
            Outcome::Automated => "automatic mail",
            Outcome::Unassigned => "unassigned",
        })
    }
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
    /// The owner before, when a follow-up was given to someone else because they are away.
    pub previous_owner: Option<String>,
    /// The folder to move it to (decoded, `/`-separated); `None` leaves it in place.
    pub folder: Option<String>,
    /// A rotation step to persist: (team, agent).
    pub rotation: Option<(String, String)>,
    /// Message-IDs that should lead later replies to this conversation.
    pub thread_ids: Vec<String>,
    /// A conversation this one refers to without joining it (a forward of it).
    pub refers_to: Option<String>,
    /// A conversation to fold into the one this message joins: replies to this message arrived
    /// before it and started a conversation of their own, while this message itself continues
    /// an older one. Only set for work.
    pub merge_from: Option<String>,
    /// A rule said this is not work: no owner, no SLA.
    pub ignored: bool,
    /// Why nobody was chosen, when nobody could be; the daemon gives it out later, oldest first.
    pub waiting: Option<Waiting>,
    /// Priority chosen by a rule.
    pub priority: Option<Priority>,
    /// SLA policy chosen by a rule (by name); `None` means the mailbox's default.
    pub sla_policy: Option<String>,
    /// Tags from the matching rules.
    pub tags: Vec<String>,
    /// Rules that matched, with why.
    pub matched_rules: Vec<RuleMatch>,
    /// The agents considered for a new owner, with why each was chosen or passed over.
    pub candidates: Vec<Candidate>,
    /// One sentence for the event log, e.g. "assigned to alice by round robin".
    pub summary: String,
    /// Every step of the reasoning, for `explain`.
    pub explanation: Vec<String>,
}

impl Decision {
    /// Whether this message starts or continues work that an SLA should time.
    pub fn is_work(&self) -> bool {
        !self.ignored && self.outcome != Outcome::Automated
    }
}

/// Decides one message of one mailbox: a pure function of its arguments.
pub fn decide_with(
    envelope: &Envelope,
    mailbox: &MailboxConfig,
    config: &Config,
    state: &dyn StateView,
    context: &Context,
) -> Result<Decision> {
    let facts = Facts {
        envelope,
        in_business_hours: context.in_business_hours,
    };
    let routing = rules::route(&config.rules, &mailbox.name, &facts);
    let mut decision = outcome::start(envelope, &routing);
    let existing = find_conversation(envelope, mailbox, state, context, &mut decision)?;
    if decision.merge_from.is_some() && is_automatic(envelope) {
        decision.merge_from = None;
    }
    if crate::notify::is_own_mail(envelope) {
        decision.explanation.push(
            "postroom's own escalation mail, or an answer to one: never work, never mailed back"
                .into(),
        );
        return Ok(outcome::automated(
            decision,
            None,
            mailbox,
            &routing,
            Automated::Generated,
        ));
    }
    if envelope.automated != Automated::No {
        return Ok(outcome::automated(
            decision,
            existing,
            mailbox,
            &routing,
            envelope.automated,
        ));
    }
    if let Some(conv) = existing.as_ref().filter(|c| c.owner.is_some()) {
        return outcome::follow_up(decision, conv, mailbox, config, state, context, &routing);
    }
    decision.conversation = existing.map(|c| c.id);
    outcome::new_work(decision, mailbox, config, state, context, &routing)
}

/// The conversation this message continues, if any. A forward never continues one: it is sent
/// on to someone new, so it starts its own and only refers to the original (field case BUG-17).
fn find_conversation(
    envelope: &Envelope,
    mailbox: &MailboxConfig,
    state: &dyn StateView,
    context: &Context,
    decision: &mut Decision,
) -> Result<Option<Conversation>> {
    let related = related_ids(envelope);
    let own = thread_ids(envelope);
    let parents: Vec<String> = related
        .iter()
        .filter(|id| !own.contains(id))
        .cloned()
        .collect();
    let by_parent = match parents.is_empty() {
        true => None,
        false => state.conversation_for(&mailbox.name, &parents)?,
    };
    let by_own = match own.is_empty() {
        true => None,
        false => state.conversation_for(&mailbox.name, &own)?,
    };
    if envelope.in_reply_to.is_empty() && is_forward(&envelope.subject) {
        if let Some(conv) = by_parent.or(by_own) {
            decision.explanation.push(format!(
                "a forward (subject {:?}) of conversation {}: starts its own conversation",
                forward_word(&envelope.subject).unwrap_or_default(),
                conv.id
            ));
            decision.refers_to = Some(conv.id);
        }
        return Ok(None);
    }
    match (by_parent, by_own) {
        (Some(parent), Some(child)) if parent.id != child.id => {
            decision.explanation.push(format!(
                "continues conversation {}; replies to this message arrived before it and \
                 started conversation {}, which is merged into {}",
                parent.id, child.id, parent.id
            ));
            decision.merge_from = Some(child.id);
            Ok(Some(parent))
        }
        (Some(found), _) | (None, Some(found)) => Ok(Some(found)),
        (None, None) => subject_fallback(envelope, mailbox, state, context, decision),
    }
}

/// Whether the message is automatic mail or postroom's own: such mail never merges work.
fn is_automatic(envelope: &Envelope) -> bool {
    envelope.automated != Automated::No || crate::notify::is_own_mail(envelope)
}

/// How recent a conversation must be for a reply without threading headers to join it by
/// subject: long enough for a customer's "Re:" after a week away, short enough that a
/// recurring subject ("Monthly report") starts fresh each time.
const SUBJECT_WINDOW_DAYS: i64 = 14;

/// The guarded fallback for replies whose client dropped In-Reply-To and References: only
/// for a message with neither header, the subject must carry a reply prefix, and sender,
/// normalised subject and recency must all match. Alerts that repeat a subject without "Re:" (field case BUG-13) never merge, and
/// Outlook's Thread-Index is never used.
fn subject_fallback(
    envelope: &Envelope,
    mailbox: &MailboxConfig,
    state: &dyn StateView,
    context: &Context,
    decision: &mut Decision,
) -> Result<Option<Conversation>> {
    // Threading headers, even ones naming nothing known yet, are trusted over the subject: a
    // reply that arrives before its parent is linked to it when the parent comes.
    if !envelope.in_reply_to.is_empty() || !envelope.references.is_empty() {
        return Ok(None);
    }
    let Some(from) = &envelope.from else {
        return Ok(None);
    };
    let normalized = crate::message::normalized_subject(&envelope.subject);
    let as_written = crate::message::one_line(&envelope.subject).to_lowercase();
    if normalized.chars().count() < 3 || normalized == as_written {
        return Ok(None);
    }
    let Some(conv) = state.conversation_by_subject(&mailbox.name, &from.address, &normalized)?
    else {
        return Ok(None);
    };
    let age = context.now - conv.last_message;
    if age > chrono::Duration::days(SUBJECT_WINDOW_DAYS) {
        decision.explanation.push(format!(
            "same sender and subject as conversation {}, but its last message is {} days old: \
             starts a new conversation",
            conv.id,
            age.num_days()
        ));
        return Ok(None);
    }
    decision.explanation.push(format!(
        "no threading headers matched; joins conversation {} by subject (same sender, \
         same subject, last message {} days ago)",
        conv.id,
        age.num_days()
    ));
    Ok(Some(conv))
}

/// Forward prefixes of the clients our users run: English, German (WG), French (TR), Spanish
/// (RV), Italian (I), Dutch (Doorst), Nordic (VS, VB). Reply prefixes are deliberately absent.
const FORWARD_PREFIXES: &[&str] = &["fwd", "fw", "wg", "tr", "rv", "i", "doorst", "vs", "vb"];

/// The first subject prefix, when it is a forward prefix (counted forms like `FW[2]:` too).
fn forward_word(subject: &str) -> Option<&str> {
    let (head, _) = subject.trim_start().split_once(':')?;
    let word = head.split('[').next().unwrap_or(head).trim();
    FORWARD_PREFIXES
        .iter()
        .any(|p| word.eq_ignore_ascii_case(p))
        .then_some(word)
}

fn is_forward(subject: &str) -> bool {
    forward_word(subject).is_some()
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

/// IDs to look a message's conversation up by, in reverse order of trust, because the lookup
/// tries the last first: In-Reply-To (the direct parent) is tried first, then References
/// newest to oldest, and the message's own IDs last. Own IDs matter when a reply arrived
/// before its parent (a sender's clock running behind, or delivery order): the reply has
/// already named the parent, and the parent then joins the conversation its reply started.
fn related_ids(envelope: &Envelope) -> Vec<String> {
    let mut ids: Vec<String> = envelope
        .message_id
        .iter()
        .chain(&envelope.original_message_id)
        .cloned()
        .collect();
    let parents = &envelope.in_reply_to;
    ids.extend(
        envelope
            .references
            .iter()
            .filter(|id| !parents.contains(id))
            .cloned(),
    );
    ids.extend(parents.iter().cloned());
    ids
}

/// Turns a strategy's pick into explanation lines.
fn explain_pick(pick: &assign::Pick, team: &str, explanation: &mut Vec<String>) {
    explanation.push(format!("team {team} by {}:", pick.strategy));
    for c in &pick.candidates {
        let mark = if c.chosen { "chosen" } else { "passed over" };
        explanation.push(format!("  {}: {mark}: {}", c.agent, c.reason));
    }
    if let Some(waiting) = pick.waiting {
        explanation.push(format!("  nobody chosen: {waiting}"));
    }
}

#[cfg(test)]
mod tests;
