//! The four ways a decision ends: automatic mail, a follow-up, new work, or no work. Split from
//! `decide` so each path reads as one short function.

use anyhow::Result;

use super::{agent_folder, explain_pick, thread_ids, Context, Decision, Outcome, StateView};
use crate::assign::{self, availability, StickyWhenAway};
use crate::config::{Config, MailboxConfig};
use crate::message::{Automated, Envelope};
use crate::rules::parsed::Parsed;
use crate::rules::{Routing, Target};
use crate::store::{Conversation, ConversationState};

/// A decision carrying what the rules said, before the outcome is known.
pub(super) fn start(envelope: &Envelope, routing: &Routing) -> Decision {
    let mut explanation = Vec::new();
    if routing.explanation.is_empty() {
        explanation.push("no rules apply to this mailbox".into());
    }
    explanation.extend(routing.explanation.iter().cloned());
    Decision {
        outcome: Outcome::Unassigned,
        conversation: None,
        owner: None,
        previous_owner: None,
        folder: None,
        rotation: None,
        thread_ids: thread_ids(envelope),
        refers_to: None,
        merge_from: None,
        ignored: false,
        waiting: None,
        priority: routing.priority.as_ref().map(|c| c.value),
        sla_policy: routing.sla.as_ref().map(|c| c.value.clone()),
        tags: routing.tags.clone(),
        matched_rules: routing.matched.clone(),
        candidates: Vec::new(),
        summary: String::new(),
        explanation,
    }
}

/// Automatic mail is recorded and filed, never work; a conversation it joins keeps its owner.
pub(super) fn automated(
    mut d: Decision,
    existing: Option<Conversation>,
    mailbox: &MailboxConfig,
    routing: &Routing,
    kind: Automated,
) -> Decision {
    let name = crate::rules::condition::automated_name(kind);
    d.explanation
        .push(format!("{name} mail never becomes work: no owner, no SLA"));
    if let Some(target) = &routing.target {
        d.explanation.push(format!(
            "assignment from rule `{}` not applied to automatic mail",
            target.rule
        ));
    }
    let folder = routing
        .folder
        .as_ref()
        .map_or(mailbox.automated_folder.clone(), |c| c.value.clone());
    d.outcome = Outcome::Automated;
    // The store writes the message's owner onto the conversation, so the owner is carried
    // through unchanged rather than cleared by an out-of-office reply.
    d.owner = existing.as_ref().and_then(|c| c.owner.clone());
    d.conversation = existing.map(|c| c.id);
    d.sla_policy = None;
    d.summary = format!("automatic mail ({name}) filed in {folder}");
    d.folder = Some(folder);
    d
}

/// A reply to an owned conversation: stays with its owner, unless the owner is away.
pub(super) fn follow_up(
    mut d: Decision,
    conv: &Conversation,
    mailbox: &MailboxConfig,
    config: &Config,
    state: &dyn StateView,
    context: &Context,
    routing: &Routing,
) -> Result<Decision> {
    let owner = conv.owner.clone().unwrap_or_default();
    let reopened = if conv.state == ConversationState::Closed {
        " (closed: reopened)"
    } else {
        ""
    };
    d.explanation.push(format!(
        "replies to conversation {} owned by {owner}{reopened}",
        conv.id
    ));
    if let Some(target) = &routing.target {
        d.explanation.push(format!(
            "assignment from rule `{}` applies to new conversations only",
            target.rule
        ));
    }
    d.conversation = Some(conv.id.clone());
    let absence = match config.agent(&owner) {
        Some(agent) => availability::unavailable(agent, context.now, state)?,
        None => Some("no longer configured".into()),
    };
    let Some(absence) = absence else {
        return Ok(keep_with_owner(d, owner, mailbox, config));
    };
    d.explanation.push(format!("owner {owner} is {absence}"));
    if sticky_when_away(mailbox, config) == StickyWhenAway::Wait && config.agent(&owner).is_some() {
        d.explanation
            .push("sticky_when_away = \"wait\": it waits for the owner".into());
        return Ok(keep_with_owner(d, owner, mailbox, config));
    }
    d.previous_owner = Some(owner.clone());
    let team = mailbox.team.clone();
    // A rule's folder is for new conversations; the new owner's folder is where this belongs.
    let mut d = by_team(
        d,
        &team,
        None,
        mailbox,
        config,
        state,
        context,
        &Routing::default(),
    )?;
    if d.owner.is_some() {
        d.summary = format!("{} (owner {owner} is away)", d.summary);
    }
    Ok(d)
}

fn keep_with_owner(
    mut d: Decision,
    owner: String,
    mailbox: &MailboxConfig,
    config: &Config,
) -> Decision {
    d.outcome = Outcome::FollowUp;
    d.folder = Some(agent_folder(mailbox, config, &owner));
    d.summary = format!(
        "follow-up kept with {owner} (conversation {})",
        d.conversation.as_deref().unwrap_or("?")
    );
    d.owner = Some(owner);
    d
}

fn sticky_when_away(mailbox: &MailboxConfig, config: &Config) -> StickyWhenAway {
    config
        .team(&mailbox.team)
        .and_then(|t| t.sticky_when_away.as_ref())
        .and_then(Parsed::get)
        .copied()
        .unwrap_or_default()
}

/// A new conversation: the rules' target, or the mailbox's team by its strategy.
pub(super) fn new_work(
    mut d: Decision,
    mailbox: &MailboxConfig,
    config: &Config,
    state: &dyn StateView,
    context: &Context,
    routing: &Routing,
) -> Result<Decision> {
    let (target, by) = match &routing.target {
        Some(chosen) => (chosen.value.clone(), format!("rule `{}`", chosen.rule)),
        None => {
            let team = mailbox.team.clone();
            d.explanation.push(format!(
                "no rule chose an assignment: mailbox default, team {team}"
            ));
            (
                Target::Team {
                    team,
                    strategy: None,
                },
                "mailbox default".into(),
            )
        }
    };
    match target {
        Target::Ignore => {
            d.ignored = true;
            d.sla_policy = None;
            d.folder = rule_folder(routing);
            d.summary = format!("ignored by {by}: not work, no SLA");
            Ok(d)
        }
        Target::Unassigned => {
            d.folder = rule_folder(routing);
            d.summary = format!("left unassigned by {by}");
            Ok(d)
        }
        Target::Agent(agent) => to_agent(d, &agent, &by, mailbox, config, state, context, routing),
        Target::Team { team, strategy } => {
            by_team(d, &team, strategy, mailbox, config, state, context, routing)
        }
    }
}

fn rule_folder(routing: &Routing) -> Option<String> {
    routing.folder.as_ref().map(|c| c.value.clone())
}

#[allow(clippy::too_many_arguments)]
fn to_agent(
    mut d: Decision,
    agent: &str,
    by: &str,
    mailbox: &MailboxConfig,
    config: &Config,
    state: &dyn StateView,
    context: &Context,
    routing: &Routing,
) -> Result<Decision> {
    if let Some((reason, waiting)) = assign::agent_blocked(agent, config, state, context.now)? {
        d.explanation
            .push(format!("{by} names {agent}, who is {reason}"));
        d.waiting = Some(waiting);
        d.folder = rule_folder(routing);
        d.summary = format!("left unassigned: {agent} is {reason} ({waiting})");
        return Ok(d);
    }
    d.explanation.push(format!("{by} assigns it to {agent}"));
    d.outcome = Outcome::Assigned;
    d.folder = Some(rule_folder(routing).unwrap_or_else(|| agent_folder(mailbox, config, agent)));
    d.summary = format!("assigned to {agent} by {by}");
    d.owner = Some(agent.to_string());
    Ok(d)
}

#[allow(clippy::too_many_arguments)]
fn by_team(
    mut d: Decision,
    team: &str,
    strategy: Option<assign::Strategy>,
    mailbox: &MailboxConfig,
    config: &Config,
    state: &dyn StateView,
    context: &Context,
    routing: &Routing,
) -> Result<Decision> {
    let pick = assign::pick(team, strategy, config, state, context.now)?;
    explain_pick(&pick, team, &mut d.explanation);
    d.candidates = pick.candidates.clone();
    let Some(agent) = pick.agent else {
        let waiting = pick.waiting.unwrap_or(assign::Waiting::NoAgents);
        d.outcome = Outcome::Unassigned;
        d.owner = None;
        d.waiting = Some(waiting);
        d.folder = rule_folder(routing);
        d.summary = format!("left unassigned: {waiting} in team {team}");
        return Ok(d);
    };
    d.outcome = Outcome::Assigned;
    d.folder = Some(rule_folder(routing).unwrap_or_else(|| agent_folder(mailbox, config, &agent)));
    d.rotation = Some((team.to_string(), agent.clone()));
    d.summary = format!("assigned to {agent} by {}", pick.strategy);
    d.owner = Some(agent);
    Ok(d)
}
