//! Choosing an agent for a new conversation.
//!
//! Strategies read the team from config and the rotation and loads through
//! [`StateView`](crate::decide::StateView); they never write. The caller persists the step the
//! strategy took, in the same transaction as the decision, so a rotation advances exactly once
//! per conversation even across crashes.

use anyhow::Result;

use crate::config::Config;
use crate::decide::StateView;

/// Round robin: the next agent in the team's order after the one chosen last.
///
/// The rotation remembers an agent, not a position, so adding or removing agents neither skips
/// nor favours anyone: the turn passes to whoever follows the last chosen agent in the current
/// order. When the last chosen agent has left the team, the turn starts from the top.
pub fn round_robin(
    team: &str,
    config: &Config,
    state: &dyn StateView,
    explanation: &mut Vec<String>,
) -> Result<Option<String>> {
    let Some(team_config) = config.team(team) else {
        explanation.push(format!("team {team} is not configured"));
        return Ok(None);
    };
    let agents = &team_config.agents;
    if agents.is_empty() {
        explanation.push(format!("team {team} has no agents"));
        return Ok(None);
    }
    let last = state.rotation(team)?;
    let start = last
        .as_ref()
        .and_then(|last| agents.iter().position(|a| a == last))
        .map(|i| i + 1)
        .unwrap_or(0);
    let next = agents[start % agents.len()].clone();
    match &last {
        Some(last) => explanation.push(format!(
            "round robin: {last} had the last turn, next is {next}"
        )),
        None => explanation.push(format!(
            "round robin: first turn in team {team} goes to {next}"
        )),
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Conversation;
    use std::cell::RefCell;

    struct Rotation(RefCell<Option<String>>);

    impl StateView for Rotation {
        fn conversation_for(&self, _: &str, _: &[String]) -> Result<Option<Conversation>> {
            Ok(None)
        }
        fn rotation(&self, _: &str) -> Result<Option<String>> {
            Ok(self.0.borrow().clone())
        }
        fn open_count(&self, _: &str) -> Result<u64> {
            Ok(0)
        }
    }

    fn config(agents: &[&str]) -> Config {
        let mut text = String::from("[[team]]\nname = \"t\"\nagents = [");
        text += &agents
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(",");
        text += "]\n";
        for a in agents {
            text += &format!("[[agent]]\nid = \"{a}\"\nname = \"{a}\"\n");
        }
        toml::from_str(&text).unwrap()
    }

    fn run(config: &Config, state: &Rotation, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let pick = round_robin("t", config, state, &mut Vec::new())
                    .unwrap()
                    .unwrap();
                *state.0.borrow_mut() = Some(pick.clone());
                pick
            })
            .collect()
    }

    #[test]
    fn turns_go_round_in_team_order() {
        let state = Rotation(RefCell::new(None));
        assert_eq!(
            run(&config(&["a", "b", "c"]), &state, 4),
            ["a", "b", "c", "a"]
        );
    }

    #[test]
    fn a_new_agent_joins_the_rotation_without_skipping_anyone() {
        let state = Rotation(RefCell::new(Some("a".into())));
        assert_eq!(
            run(&config(&["a", "new", "b"]), &state, 3),
            ["new", "b", "a"]
        );
    }

    #[test]
    fn a_departed_last_agent_restarts_from_the_top() {
        let state = Rotation(RefCell::new(Some("gone".into())));
        assert_eq!(run(&config(&["a", "b"]), &state, 2), ["a", "b"]);
    }
}
