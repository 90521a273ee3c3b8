//! Choosing an agent for a new conversation, and saying why each other agent was passed over.
//!
//! Strategies read the team from config and the rotation, loads and away flags through
//! [`StateView`]; they never write. The caller persists the turn the strategy took (the
//! decision's `rotation`), in the same transaction as the decision, so a rotation advances
//! exactly once per conversation even across crashes.
//!
//! Every strategy first drops agents who cannot take work: away (config period, working hours,
//! or the run-time flag) or at their `max_open`. Among the rest:
//!
//! - round robin takes whoever has waited longest since their last turn in this team;
//! - least open takes whoever has the fewest open conversations;
//! - capacity takes whoever is least full relative to their `max_open`.
//!
//! Ties go to whoever has waited longest, then to the team order starting after the agent who
//! had the last turn. "Waited longest" is what keeps round robin fair when the team changes: a
//! newcomer or someone back from leave has the oldest last turn and is next, once, and then
//! rejoins the cycle; nobody is skipped and nobody gets a run of turns.

pub mod availability;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::decide::StateView;

/// How a team picks among agents who can take work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Turns in order: whoever waited longest since their last turn.
    #[default]
    RoundRobin,
    /// Fewest open conversations.
    LeastOpen,
    /// Lowest share of their `max_open` in use.
    Capacity,
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "round_robin" => Ok(Strategy::RoundRobin),
            "least_open" => Ok(Strategy::LeastOpen),
            "capacity" => Ok(Strategy::Capacity),
            _ => Err(format!(
                "`{text}` is not a strategy (round_robin, least_open, capacity)"
            )),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::RoundRobin => "round robin",
            Strategy::LeastOpen => "least open",
            Strategy::Capacity => "capacity",
        })
    }
}

/// What happens to a follow-up whose owner is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StickyWhenAway {
    /// The team's strategy picks a new owner (the default: the customer is not kept waiting).
    #[default]
    Team,
    /// It stays with the owner, who sees it on return.
    Wait,
}

impl FromStr for StickyWhenAway {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "team" => Ok(StickyWhenAway::Team),
            "wait" => Ok(StickyWhenAway::Wait),
            _ => Err(format!("`{text}` is not one of: team, wait")),
        }
    }
}

/// Why nobody was chosen; the daemon gives such conversations out later, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Agents are available but all are at their `max_open`.
    NoCapacity,
    /// Nobody in the team can take work now (away or outside working hours).
    NobodyAvailable,
    /// The team has no agents, or is not configured.
    NoAgents,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Waiting::NoCapacity => "no capacity",
            Waiting::NobodyAvailable => "no eligible agent",
            Waiting::NoAgents => "no agents in the team",
        })
    }
}

/// One agent considered, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Agent id.
    pub agent: String,
    /// Whether this agent was chosen.
    pub chosen: bool,
    /// Why chosen, or why passed over.
    pub reason: String,
}

/// The result of a strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// The chosen agent.
    pub agent: Option<String>,
    /// Why nobody was chosen.
    pub waiting: Option<Waiting>,
    /// The strategy used.
    pub strategy: Strategy,
    /// Every team member with their verdict, in team order.
    pub candidates: Vec<Candidate>,
}

/// An agent who can take work, with what the strategies compare.
struct Eligible {
    agent: String,
    open: u64,
    max_open: Option<u64>,
    last_turn: Option<u64>,
    /// Position in team order counted from just after the agent with the last turn.
    position: usize,
}

/// Picks an agent of `team` by `strategy` (the team's own when `None`) at `now`.
pub fn pick(
    team: &str,
    strategy: Option<Strategy>,
    config: &Config,
    state: &dyn StateView,
    now: DateTime<Utc>,
) -> Result<Pick> {
    let team_config = config.team(team);
    let strategy = strategy
        .or_else(|| team_config.and_then(|t| t.strategy.as_ref()?.get().copied()))
        .unwrap_or_default();
    let agents: &[String] = team_config.map(|t| t.agents.as_slice()).unwrap_or(&[]);
    if agents.is_empty() {
        return Ok(Pick {
            agent: None,
            waiting: Some(Waiting::NoAgents),
            strategy,
            candidates: vec![],
        });
    }
    let last = state.rotation(team)?;
    let start = last
        .as_ref()
        .and_then(|last| agents.iter().position(|a| a == last))
        .map_or(0, |i| i + 1);
    let mut candidates = Vec::new();
    let mut eligible = Vec::new();
    let mut anyone_available = false;
    for (i, id) in agents.iter().enumerate() {
        let position = (i + agents.len() - start % agents.len()) % agents.len();
        match screen(team, id, position, config, state, now)? {
            Screened::Out { reason, available } => {
                anyone_available |= available;
                candidates.push(Candidate {
                    agent: id.clone(),
                    chosen: false,
                    reason,
                });
            }
            Screened::In(e) => {
                anyone_available = true;
                eligible.push(e);
            }
        }
    }
    eligible.sort_by(|a, b| compare(strategy, a, b));
    let Some(best) = eligible.first() else {
        let waiting = if anyone_available {
            Waiting::NoCapacity
        } else {
            Waiting::NobodyAvailable
        };
        return Ok(Pick {
            agent: None,
            waiting: Some(waiting),
            strategy,
            candidates,
        });
    };
    for e in &eligible {
        let chosen = e.agent == best.agent;
        let reason = if chosen {
            chosen_reason(strategy, e)
        } else {
            passed_over(strategy, e, best)
        };
        candidates.push(Candidate {
            agent: e.agent.clone(),
            chosen,
            reason,
        });
    }
    candidates.sort_by_key(|c| agents.iter().position(|a| *a == c.agent));
    Ok(Pick {
        agent: Some(best.agent.clone()),
        waiting: None,
        strategy,
        candidates,
    })
}

enum Screened {
    /// Cannot take work; `available` is true when only capacity stood in the way.
    Out {
        reason: String,
        available: bool,
    },
    In(Eligible),
}

fn screen(
    team: &str,
    id: &str,
    position: usize,
    config: &Config,
    state: &dyn StateView,
    now: DateTime<Utc>,
) -> Result<Screened> {
    let Some(agent) = config.agent(id) else {
        let reason = "not configured as an [[agent]]".into();
        return Ok(Screened::Out {
            reason,
            available: false,
        });
    };
    if let Some(reason) = availability::unavailable(agent, now, state)? {
        return Ok(Screened::Out {
            reason,
            available: false,
        });
    }
    let open = state.open_count(id)?;
    if let Some(max) = agent.max_open.filter(|max| open >= *max) {
        let reason = format!("at capacity ({open} of {max} open)");
        return Ok(Screened::Out {
            reason,
            available: true,
        });
    }
    Ok(Screened::In(Eligible {
        agent: id.to_string(),
        open,
        max_open: agent.max_open,
        last_turn: state.last_turn(team, id)?,
        position,
    }))
}

/// Strategy order, then who waited longest (never-chosen first), then team order after the last.
fn compare(strategy: Strategy, a: &Eligible, b: &Eligible) -> Ordering {
    let primary = match strategy {
        Strategy::RoundRobin => Ordering::Equal,
        Strategy::LeastOpen => a.open.cmp(&b.open),
        Strategy::Capacity => fullness(a).cmp(&fullness(b)),
    };
    primary
        .then(a.last_turn.cmp(&b.last_turn))
        .then(a.position.cmp(&b.position))
}

/// `open / max_open` as a fraction that sorts exactly: compared by cross-multiplying.
#[derive(PartialEq, Eq)]
struct Fullness(u64, u64);

impl Ord for Fullness {
    fn cmp(&self, other: &Self) -> Ordering {
        (u128::from(self.0) * u128::from(other.1)).cmp(&(u128::from(other.0) * u128::from(self.1)))
    }
}

impl PartialOrd for Fullness {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Without a `max_open` an agent counts as having unlimited room.
fn fullness(e: &Eligible) -> Fullness {
    Fullness(e.open, e.max_open.unwrap_or(u64::MAX))
}

fn chosen_reason(strategy: Strategy, e: &Eligible) -> String {
    let turn = match e.last_turn {
        None => "has not had a turn yet".to_string(),
        Some(_) => "waited longest since their last turn".to_string(),
    };
    match strategy {
        Strategy::RoundRobin => format!("their turn: {turn}"),
        Strategy::LeastOpen => format!("fewest open conversations ({}); {turn}", e.open),
        Strategy::Capacity => format!("most room ({} of {} open); {turn}", e.open, max_text(e)),
    }
}

fn passed_over(strategy: Strategy, e: &Eligible, best: &Eligible) -> String {
    let not_turn = format!(
        "not their turn ({} is before them in the rotation)",
        best.agent
    );
    match strategy {
        Strategy::RoundRobin => not_turn,
        Strategy::LeastOpen if e.open > best.open => format!(
            "more open conversations ({} against {} for {})",
            e.open, best.open, best.agent
        ),
        Strategy::Capacity if fullness(e) > fullness(best) => format!(
            "fuller ({} of {} open against {} of {} for {})",
            e.open,
            max_text(e),
            best.open,
            max_text(best),
            best.agent
        ),
        Strategy::LeastOpen | Strategy::Capacity => format!("same load, {not_turn}"),
    }
}

fn max_text(e: &Eligible) -> String {
    e.max_open.map_or("unlimited".into(), |m| m.to_string())
}

/// Why one named agent cannot take a new conversation now, or `None` when they can.
pub fn agent_blocked(
    id: &str,
    config: &Config,
    state: &dyn StateView,
    now: DateTime<Utc>,
) -> Result<Option<(String, Waiting)>> {
    let Some(agent) = config.agent(id) else {
        return Ok(Some(("not configured".into(), Waiting::NoAgents)));
    };
    if let Some(reason) = availability::unavailable(agent, now, state)? {
        return Ok(Some((reason, Waiting::NobodyAvailable)));
    }
    let open = state.open_count(id)?;
    Ok(agent.max_open.filter(|max| open >= *max).map(|max| {
        (
            format!("at capacity ({open} of {max} open)"),
            Waiting::NoCapacity,
        )
    }))
}

#[cfg(test)]
mod tests;
