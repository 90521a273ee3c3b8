//! Routing rules: the admin's ordered `[[rule]]` list, and what it says about one message.
//!
//! This module owns the rule syntax, its evaluation, and its validation ([`check`]). It reads a
//! parsed [`Envelope`] and a little context ([`Facts`]) and returns a [`Routing`]: which rules
//! matched and why, and the actions they chose. It never picks an agent (that is
//! [`assign`](crate::assign)) and never touches the store; [`decide`](crate::decide) combines
//! the two. The full reference with examples is in `docs/rules.md`.
//!
//! # Shape
//!
//! ```toml
//! [[rule]]
//! name = "billing"                       # shown in explanations and the history
//! mailbox = "support"                    # optional: only mail of this mailbox
//! when.recipient = { equals = "billing@ourco.example" }
//! when.any = [
//!   { subject = { regex = "invoice|rechnung|facture" } },
//!   { attachment = { regex = "\\.pdf$" } },
//! ]
//! assign = { team = "billing", strategy = "least_open" }
//! priority = "high"
//! sla = "billing-1d"
//! tags = ["billing"]
//! stop = true
//! ```
//!
//! Rules run in file order. Every rule whose `when` holds applies its actions; for a single
//! value (assignment, priority, SLA policy, folder) the first rule that sets it wins and later
//! ones are noted as overridden in the explanation, while tags add up. `stop = true` ends
//! evaluation after that rule. When no rule chooses an assignment, the mailbox's team takes it
//! with the team's strategy.

pub mod check;
pub mod condition;
pub mod parsed;

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

pub use condition::{Condition, Matcher, SpamScore, Verdict};
use parsed::Parsed;

use crate::assign::Strategy;
use crate::message::Envelope;

/// `[[rule]]`: a condition and what to do when it holds.
#[derive(Debug, Clone, Deserialize)]
pub struct RuleConfig {
    /// A short name, shown in explanations and recorded with each decision.
    pub name: String,
    /// Only mail of this `[[mailbox]]` (by name); every mailbox when absent.
    pub mailbox: Option<String>,
    /// The condition; absent or empty means every message.
    #[serde(default)]
    pub when: Condition,
    /// Give new conversations to a team (with an optional strategy) or to one agent.
    pub assign: Option<AssignConfig>,
    /// Leave new conversations unassigned in the inbox, still recorded and timed by SLA.
    #[serde(default)]
    pub unassigned: bool,
    /// Not work at all: no owner and no SLA. The message is recorded and filed per `folder`.
    #[serde(default)]
    pub ignore: bool,
    /// `low`, `normal`, `high` or `urgent`.
    pub priority: Option<Parsed<Priority>>,
    /// The name of the SLA policy to time the conversation by.
    pub sla: Option<String>,
    /// Tags recorded with the decision (and set as keywords where the server keeps them).
    #[serde(default)]
    pub tags: Vec<String>,
    /// File the message in this folder (decoded, `/`-separated) instead of the owner's folder.
    pub folder: Option<String>,
    /// Evaluate no further rules after this one when it matches.
    #[serde(default)]
    pub stop: bool,
}

/// `assign = { team = "billing", strategy = "least_open" }` or `assign = { agent = "alice" }`.
#[derive(Debug, Clone, Deserialize)]
pub struct AssignConfig {
    /// A `[[team]]` name.
    pub team: Option<String>,
    /// An `[[agent]]` id.
    pub agent: Option<String>,
    /// Overrides the team's own strategy: `round_robin`, `least_open` or `capacity`.
    pub strategy: Option<Parsed<Strategy>>,
}

/// How urgent a conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Can wait.
    Low,
    /// The default.
    Normal,
    /// Ahead of normal work.
    High,
    /// Drop everything.
    Urgent,
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            "urgent" => Ok(Priority::Urgent),
            _ => Err(format!("`{text}` is not a priority")),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        })
    }
}

/// What a rule can do about who owns a new conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A team picks an agent, by this strategy or the team's own.
    Team {
        /// The team name.
        team: String,
        /// The strategy, when the rule overrides the team's.
        strategy: Option<Strategy>,
    },
    /// One named agent.
    Agent(String),
    /// Nobody for now; the conversation still counts as work.
    Unassigned,
    /// Not work: no owner, no SLA.
    Ignore,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Team {
                team,
                strategy: Some(strategy),
            } => write!(f, "team {team} by {strategy}"),
            Target::Team { team, .. } => write!(f, "team {team}"),
            Target::Agent(agent) => write!(f, "agent {agent}"),
            Target::Unassigned => f.write_str("nobody for now (unassigned work)"),
            Target::Ignore => f.write_str("ignored (not work)"),
        }
    }
}

/// What the evaluation looks at besides the message itself.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The parsed message.
    pub envelope: &'a Envelope,
    /// Whether it arrived inside the mailbox's business hours; `None` when no calendar applies,
    /// in which case a `business_hours` condition never holds.
    pub in_business_hours: Option<bool>,
}

/// One rule that matched, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    /// Its position in the config, from 0.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// What in the message made its condition hold.
    pub reasons: Vec<String>,
}

/// A value chosen by a rule, with the rule's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen<T> {
    /// The value.
    pub value: T,
    /// The rule that chose it.
    pub rule: String,
}

/// Everything the rules said about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// Rules that matched, in order.
    pub matched: Vec<RuleMatch>,
    /// Who should own a new conversation; `None` leaves it to the mailbox's defaults.
    pub target: Option<Chosen<Target>>,
    /// Priority chosen.
    pub priority: Option<Chosen<Priority>>,
    /// SLA policy name chosen.
    pub sla: Option<Chosen<String>>,
    /// Tags from every matching rule, without repeats.
    pub tags: Vec<String>,
    /// Folder chosen.
    pub folder: Option<Chosen<String>>,
    /// The evaluation in words: each rule, matched or not and why, and what it changed.
    pub explanation: Vec<String>,
}

/// Runs the rules for one message of one mailbox.
pub fn route(rules: &[RuleConfig], mailbox: &str, facts: &Facts<'_>) -> Routing {
    let mut routing = Routing::default();
    for (index, rule) in rules.iter().enumerate() {
        if rule.mailbox.as_deref().is_some_and(|m| m != mailbox) {
            continue;
        }
        let verdict = rule.when.evaluate(facts);
        let label = format!("rule {} `{}`", index + 1, rule.name);
        if !verdict.holds {
            let why = verdict.reasons.join("; ");
            routing
                .explanation
                .push(format!("{label} did not match: {why}"));
            continue;
        }
        let why = verdict.reasons.join("; ");
        routing.explanation.push(format!("{label} matched: {why}"));
        routing.matched.push(RuleMatch {
            index,
            name: rule.name.clone(),
            reasons: verdict.reasons,
        });
        apply(rule, &mut routing);
        if rule.stop {
            routing
                .explanation
                .push(format!("{label} says stop: later rules not evaluated"));
            break;
        }
    }
    routing
}

/// Applies one matching rule's actions; first setter wins.
fn apply(rule: &RuleConfig, routing: &mut Routing) {
    let name = &rule.name;
    if let Some(target) = rule.target() {
        set(
            &mut routing.target,
            target,
            name,
            "assignment",
            &mut routing.explanation,
        );
    }
    if let Some(priority) = rule.priority.as_ref().and_then(Parsed::get) {
        set(
            &mut routing.priority,
            *priority,
            name,
            "priority",
            &mut routing.explanation,
        );
    }
    if let Some(sla) = &rule.sla {
        set(
            &mut routing.sla,
            sla.clone(),
            name,
            "SLA policy",
            &mut routing.explanation,
        );
    }
    if let Some(folder) = &rule.folder {
        set(
            &mut routing.folder,
            folder.clone(),
            name,
            "folder",
            &mut routing.explanation,
        );
    }
    for tag in &rule.tags {
        if !routing.tags.contains(tag) {
            routing.tags.push(tag.clone());
        }
    }
}

fn set<T: PartialEq + fmt::Display>(
    slot: &mut Option<Chosen<T>>,
    value: T,
    rule: &str,
    what: &str,
    explanation: &mut Vec<String>,
) {
    match slot {
        Some(earlier) if earlier.value != value => explanation.push(format!(
            "  {what} `{value}` from `{rule}` ignored: `{}` set it first",
            earlier.rule
        )),
        Some(_) => {}
        None => {
            explanation.push(format!("  {what}: {value}"));
            *slot = Some(Chosen {
                value,
                rule: rule.to_string(),
            });
        }
    }
}

impl RuleConfig {
    /// The assignment this rule asks for, if any. Validation guarantees at most one is set.
    pub fn target(&self) -> Option<Target> {
        if self.ignore {
            return Some(Target::Ignore);
        }
        if self.unassigned {
            return Some(Target::Unassigned);
        }
        let assign = self.assign.as_ref()?;
        if let Some(agent) = &assign.agent {
            return Some(Target::Agent(agent.clone()));
        }
        assign.team.as_ref().map(|team| Target::Team {
            team: team.clone(),
            strategy: assign.strategy.as_ref().and_then(Parsed::get).copied(),
        })
    }
}

#[cfg(test)]
mod tests;
