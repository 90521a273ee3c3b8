use std::collections::HashMap;

use chrono::TimeZone;
use proptest::prelude::{prop_assert, prop_assert_eq, prop_oneof, proptest, Just, ProptestConfig};
use proptest::strategy::Strategy as PropStrategy;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::decide::memory::MemoryState;

/// A team `t` of `agents`; `extra` is appended to every `[[agent]]` by id.
fn config_with(agents: &[&str], team_extra: &str, extra: &[(&str, &str)]) -> Config {
    let list = agents
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(",");
    let mut text = format!("[[team]]\nname = \"t\"\nagents = [{list}]\n{team_extra}\n");
    for a in agents {
        let more = extra.iter().find(|(id, _)| id == a).map_or("", |(_, e)| *e);
        text += &format!("[[agent]]\nid = \"{a}\"\nname = \"{a}\"\n{more}\n");
    }
    toml::from_str(&text).unwrap()
}

fn config(agents: &[&str]) -> Config {
    config_with(agents, "", &[])
}

fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 10, 8, 5, 0).unwrap()
}

/// Picks and records `n` times, as the daemon would.
fn run(config: &Config, state: &mut MemoryState, strategy: Strategy, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let pick = pick("t", Some(strategy), config, state, monday()).unwrap();
            let agent = pick.agent.unwrap();
            state.take_turn("t", &agent);
            let open = state.open_count(&agent).unwrap();
            state.set_open(&agent, open + 1);
            agent
        })
        .collect()
}

#[test]
fn turns_go_round_in_team_order() {
    let mut state = MemoryState::new();
    assert_eq!(
        run(
            &config(&["a", "b", "c"]),
            &mut state,
            Strategy::RoundRobin,
            4
        ),
        ["a", "b", "c", "a"]
    );
}

#[test]
fn a_new_agent_joins_the_rotation_without_skipping_anyone() {
    let mut state = MemoryState::new();
    run(&config(&["a", "b"]), &mut state, Strategy::RoundRobin, 2);
    assert_eq!(
        run(
            &config(&["a", "new", "b"]),
            &mut state,
            Strategy::RoundRobin,
            3
        ),
        ["new", "a", "b"]
    );
}

#[test]
fn a_departed_last_agent_restarts_from_the_top() {
    let mut state = MemoryState::new();
    state.take_turn("t", "gone");
    assert_eq!(
        run(&config(&["a", "b"]), &mut state, Strategy::RoundRobin, 2),
        ["a", "b"]
    );
}

#[test]
fn without_turn_numbers_the_order_follows_the_last_chosen_agent() {
    // A state that only knows the last chosen agent (the trait's default `last_turn`).
    struct LastOnly(Option<String>);
    impl StateView for LastOnly {
        fn conversation_for(
            &self,
            _: &str,
            _: &[String],
        ) -> Result<Option<crate::store::Conversation>> {
            Ok(None)
        }
        fn rotation(&self, _: &str) -> Result<Option<String>> {
            Ok(self.0.clone())
        }
        fn open_count(&self, _: &str) -> Result<u64> {
            Ok(0)
        }
    }
    let cfg = config(&["a", "b", "c"]);
    let pick = pick("t", None, &cfg, &LastOnly(Some("b".into())), monday()).unwrap();
    assert_eq!(pick.agent.as_deref(), Some("c"));
}

#[test]
fn least_open_takes_the_lightest_load_and_breaks_ties_by_turn() {
    let cfg = config(&["a", "b", "c"]);
    let mut state = MemoryState::new();
    state.set_open("a", 3);
    state.set_open("b", 1);
    state.set_open("c", 1);
    state.take_turn("t", "b");
    let p = pick("t", Some(Strategy::LeastOpen), &cfg, &state, monday()).unwrap();
    assert_eq!(p.agent.as_deref(), Some("c"));
    let reasons: HashMap<_, _> = p
        .candidates
        .iter()
        .map(|c| (c.agent.as_str(), c.reason.as_str()))
        .collect();
    assert!(
        reasons["a"].starts_with("more open conversations (3 against 1"),
        "{reasons:?}"
    );
    assert!(
        reasons["b"].starts_with("same load, not their turn"),
        "{reasons:?}"
    );
}

#[test]
fn capacity_skips_full_agents_and_waits_when_all_are_full() {
    let cfg = config_with(
        &["a", "b"],
        "",
        &[("a", "max_open = 2"), ("b", "max_open = 10")],
    );
    let mut state = MemoryState::new();
    state.set_open("a", 1);
    state.set_open("b", 4);
    let p = pick("t", Some(Strategy::Capacity), &cfg, &state, monday()).unwrap();
    assert_eq!(
        p.agent.as_deref(),
        Some("b"),
        "a is half full, b is 40% full"
    );
    state.set_open("a", 2);
    let p = pick("t", Some(Strategy::RoundRobin), &cfg, &state, monday()).unwrap();
    assert_eq!(p.agent.as_deref(), Some("b"));
    assert_eq!(p.candidates[0].reason, "at capacity (2 of 2 open)");
    state.set_open("b", 10);
    let p = pick("t", None, &cfg, &state, monday()).unwrap();
    assert_eq!((p.agent, p.waiting), (None, Some(Waiting::NoCapacity)));
}

#[test]
fn away_agents_get_no_work_whatever_the_reason() {
    let away = "time_zone = \"Europe/Berlin\"\naway = [{ from = 2025-03-10, until = 2025-03-14 }]";
    let hours = "working_hours = { days = [\"sat\"], start = \"09:00\", end = \"17:00\" }";
    let cfg = config_with(&["a", "b", "c"], "", &[("a", away), ("b", hours)]);
    let mut state = MemoryState::new();
    state.set_away("c", true);
    let p = pick("t", None, &cfg, &state, monday()).unwrap();
    assert_eq!((p.agent, p.waiting), (None, Some(Waiting::NobodyAvailable)));
    let reasons: Vec<&str> = p.candidates.iter().map(|c| c.reason.as_str()).collect();
    assert_eq!(reasons[0], "away from 2025-03-10 until 2025-03-14");
    assert!(
        reasons[1].starts_with("outside working hours (sat 09:00-17:00 UTC)"),
        "{reasons:?}"
    );
    assert_eq!(reasons[2], "marked away (`postroom agent away`)");
    state.set_away("c", false);
    let p = pick("t", None, &cfg, &state, monday()).unwrap();
    assert_eq!(p.agent.as_deref(), Some("c"));
}

#[test]
fn away_dates_are_read_in_the_agents_time_zone() {
    let away = "time_zone = \"Europe/Berlin\"\naway = [{ from = 2025-03-10, until = 2025-03-10 }]";
    let cfg = config_with(&["a"], "", &[("a", away)]);
    let state = MemoryState::new();
    // 23:30 UTC on the 9th is already the 10th in Berlin; 23:30 UTC on the 10th is the 11th.
    let before = Utc.with_ymd_and_hms(2025, 3, 9, 23, 30, 0).unwrap();
    let after = Utc.with_ymd_and_hms(2025, 3, 10, 23, 30, 0).unwrap();
    assert_eq!(pick("t", None, &cfg, &state, before).unwrap().agent, None);
    assert_eq!(
        pick("t", None, &cfg, &state, after)
            .unwrap()
            .agent
            .as_deref(),
        Some("a")
    );
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Assign,
    Toggle(usize),
    Away(usize),
}

fn steps() -> impl PropStrategy<Value = Vec<Step>> {
    let step = prop_oneof![
        8 => Just(Step::Assign),
        1 => (0usize..6).prop_map(Step::Toggle),
        1 => (0usize..6).prop_map(Step::Away),
    ];
    proptest::collection::vec(step, 1..400)
}

const POOL: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// Runs the steps; checks after each assignment, within the current epoch (a stretch in which
/// the set of agents who can take work does not change), that `balanced` holds.
fn check_run(strategy: Strategy, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut members: Vec<bool> = vec![true, true, true, false, false, false];
    let mut state = MemoryState::new();
    let mut away = [false; 6];
    let mut epoch: HashMap<String, u64> = HashMap::new();
    for step in steps {
        match step {
            Step::Toggle(i) => members[*i] = !members[*i],
            Step::Away(i) => {
                away[*i] = !away[*i];
                state.set_away(POOL[*i], away[*i]);
            }
            Step::Assign => {}
        }
        if !matches!(step, Step::Assign) {
            epoch.clear();
            continue;
        }
        let team: Vec<&str> = POOL
            .iter()
            .zip(&members)
            .filter(|(_, m)| **m)
            .map(|(a, _)| *a)
            .collect();
        let cfg = config(&team);
        let eligible: Vec<&str> = team
            .iter()
            .copied()
            .filter(|a| !state.agent_away(a).unwrap())
            .collect();
        let before: Vec<u64> = eligible
            .iter()
            .map(|a| state.open_count(a).unwrap())
            .collect();
        let p = pick("t", Some(strategy), &cfg, &state, monday()).unwrap();
        let Some(agent) = p.agent else {
            prop_assert!(eligible.is_empty());
            continue;
        };
        prop_assert!(
            eligible.contains(&agent.as_str()),
            "{agent} was not eligible"
        );
        state.take_turn("t", &agent);
        let open = state.open_count(&agent).unwrap();
        state.set_open(&agent, open + 1);
        *epoch.entry(agent.clone()).or_insert(0) += 1;
        match strategy {
            Strategy::RoundRobin => {
                let counts: Vec<u64> = eligible
                    .iter()
                    .map(|a| epoch.get(*a).copied().unwrap_or(0))
                    .collect();
                let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
                prop_assert!(
                    spread <= 1,
                    "round robin out of balance: {eligible:?} {counts:?}"
                );
            }
            _ => {
                let min = *before.iter().min().unwrap();
                prop_assert_eq!(open, min, "least open chose a busier agent");
                let after: Vec<u64> = eligible
                    .iter()
                    .map(|a| state.open_count(a).unwrap())
                    .collect();
                let spread = |v: &[u64]| v.iter().max().unwrap() - v.iter().min().unwrap();
                prop_assert!(
                    spread(&after) <= spread(&before).max(1),
                    "{before:?} -> {after:?}"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_robin_stays_within_one_of_perfect_balance(steps in steps()) {
        check_run(Strategy::RoundRobin, &steps)?;
    }

    #[test]
    fn least_open_stays_within_one_of_perfect_balance(steps in steps()) {
        check_run(Strategy::LeastOpen, &steps)?;
    }
}
