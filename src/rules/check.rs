//! Validation of the routing part of the config: `[[rule]]`, team strategies and agents'
//! availability settings.
//!
//! Returns every [`Finding`] with its key path (`rule[3].when.subject.regex`); `config_check`
//! adds the line and reports them with the rest, all at once.

use super::condition::{Condition, Matcher, AUTOMATED_NAMES};
use super::parsed::Parsed;
use super::RuleConfig;
use crate::assign::availability::{toml_date, weekday};
use crate::assign::Strategy;
use crate::config::{AgentConfig, Config};

/// One problem in the routing config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The key path, such as `rule[0].assign.team`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// Every problem in rules, team strategies and agent availability.
pub fn findings(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for dup in Config::duplicates(config.rules.iter().map(|r| r.name.as_str())) {
        push(
            &mut out,
            "rule".into(),
            format!("two rules are named `{dup}`"),
            "names must be unique: explanations refer to rules by name",
        );
    }
    for (i, rule) in config.rules.iter().enumerate() {
        check_rule(config, &format!("rule[{i}]"), rule, &mut out);
    }
    for (i, team) in config.teams.iter().enumerate() {
        let key = format!("team[{i}]");
        parsed(
            &mut out,
            &format!("{key}.strategy"),
            team.strategy.as_ref(),
            "use round_robin, least_open or capacity",
        );
        parsed(
            &mut out,
            &format!("{key}.sticky_when_away"),
            team.sticky_when_away.as_ref(),
            "use \"team\" or \"wait\"",
        );
        if team.strategy.as_ref().and_then(Parsed::get) == Some(&Strategy::Capacity) {
            capacity_needs_max(config, &key, &team.agents, &mut out);
        }
    }
    for (i, agent) in config.agents.iter().enumerate() {
        check_agent(&format!("agent[{i}]"), agent, &mut out);
    }
    out
}

fn push(out: &mut Vec<Finding>, key: String, message: impl Into<String>, hint: impl Into<String>) {
    out.push(Finding {
        key,
        message: message.into(),
        hint: hint.into(),
    });
}

fn parsed<T>(out: &mut Vec<Finding>, key: &str, value: Option<&Parsed<T>>, hint: &str) {
    if let Some(error) = value.and_then(Parsed::error) {
        push(out, key.to_string(), error, hint);
    }
}

fn capacity_needs_max(config: &Config, key: &str, agents: &[String], out: &mut Vec<Finding>) {
    for id in agents {
        if config.agent(id).is_some_and(|a| a.max_open.is_none()) {
            push(
                out,
                format!("{key}.strategy"),
                format!("capacity strategy, but agent `{id}` has no max_open"),
                "give every agent of the team a max_open",
            );
        }
    }
}

fn check_rule(config: &Config, key: &str, rule: &RuleConfig, out: &mut Vec<Finding>) {
    if rule.name.trim().is_empty() {
        push(
            out,
            format!("{key}.name"),
            "empty rule name",
            "name each rule: explanations refer to it",
        );
    }
    if let Some(mailbox) = &rule.mailbox {
        if config.mailbox(mailbox).is_none() {
            push(
                out,
                format!("{key}.mailbox"),
                format!("no [[mailbox]] is named `{mailbox}`"),
                "use a mailbox name, or remove the key to apply to every mailbox",
            );
        }
    }
    check_condition(&format!("{key}.when"), &rule.when, out);
    check_actions(config, key, rule, out);
}

fn check_actions(config: &Config, key: &str, rule: &RuleConfig, out: &mut Vec<Finding>) {
    let targets = [rule.assign.is_some(), rule.unassigned, rule.ignore]
        .iter()
        .filter(|t| **t)
        .count();
    if targets > 1 {
        push(
            out,
            format!("{key}.assign"),
            "more than one of assign, unassigned and ignore",
            "keep one: a rule gives one answer about ownership",
        );
    }
    let does_something = targets > 0
        || rule.priority.is_some()
        || rule.sla.is_some()
        || !rule.tags.is_empty()
        || rule.folder.is_some()
        || rule.stop;
    if !does_something {
        push(
            out,
            format!("{key}.name"),
            format!("rule `{}` has no action", rule.name),
            "add assign, unassigned, ignore, priority, sla, tags, folder or stop",
        );
    }
    parsed(
        out,
        &format!("{key}.priority"),
        rule.priority.as_ref(),
        "use low, normal, high or urgent",
    );
    if let Some(folder) = &rule.folder {
        let bad = folder.trim().is_empty()
            || folder.starts_with('/')
            || folder.ends_with('/')
            || folder
                .chars()
                .any(|c| c.is_control() || c == '*' || c == '%');
        if bad {
            push(
                out,
                format!("{key}.folder"),
                format!("`{folder}` is not a usable folder name"),
                "a plain name without control characters, `*`, `%` or a leading/trailing `/`",
            );
        }
    }
    if let Some(assign) = &rule.assign {
        check_assign(config, &format!("{key}.assign"), assign, out);
    }
}

fn check_assign(config: &Config, key: &str, assign: &super::AssignConfig, out: &mut Vec<Finding>) {
    parsed(
        out,
        &format!("{key}.strategy"),
        assign.strategy.as_ref(),
        "use round_robin, least_open or capacity",
    );
    match (&assign.team, &assign.agent) {
        (Some(_), Some(_)) | (None, None) => {
            push(
                out,
                key.to_string(),
                "set exactly one of team and agent",
                "assign = { team = \"billing\" } or assign = { agent = \"alice\" }",
            );
        }
        (Some(team), None) => {
            let Some(team_config) = config.team(team) else {
                let known: Vec<&str> = config.teams.iter().map(|t| t.name.as_str()).collect();
                push(
                    out,
                    format!("{key}.team"),
                    format!("no [[team]] is named `{team}`"),
                    format!("known teams: {}", known.join(", ")),
                );
                return;
            };
            if assign.strategy.as_ref().and_then(Parsed::get) == Some(&Strategy::Capacity) {
                capacity_needs_max(config, key, &team_config.agents, out);
            }
        }
        (None, Some(agent)) => {
            if config.agent(agent).is_none() {
                push(
                    out,
                    format!("{key}.agent"),
                    format!("no [[agent]] has id `{agent}`"),
                    "use an agent id from an [[agent]] section",
                );
            }
            if assign.strategy.is_some() {
                push(
                    out,
                    format!("{key}.strategy"),
                    "a strategy only applies to a team",
                    "remove strategy, or assign to a team",
                );
            }
        }
    }
}

fn check_condition(key: &str, cond: &Condition, out: &mut Vec<Finding>) {
    let matchers = [
        ("from", &cond.from),
        ("from_domain", &cond.from_domain),
        ("to", &cond.to),
        ("cc", &cond.cc),
        ("recipient", &cond.recipient),
        ("subject", &cond.subject),
        ("body", &cond.body),
        ("attachment", &cond.attachment),
        ("automated", &cond.automated),
    ];
    for (name, matcher) in matchers {
        if let Some(m) = matcher {
            check_matcher(&format!("{key}.{name}"), m, out);
        }
    }
    if let Some(m) = &cond.automated {
        for value in m.literals() {
            if !AUTOMATED_NAMES.contains(&value) {
                push(
                    out,
                    format!("{key}.automated"),
                    format!("`{value}` is not an automatic-mail kind"),
                    format!("use one of {}", AUTOMATED_NAMES.join(", ")),
                );
            }
        }
    }
    for (name, m) in &cond.header {
        if name.trim().is_empty() || name.contains(':') {
            push(
                out,
                format!("{key}.header"),
                format!("`{name}` is not a header name"),
                "write the name without the colon, e.g. header.x-priority",
            );
        }
        check_matcher(&format!("{key}.header.{name}"), m, out);
    }
    if let Some(spam) = &cond.spam_score {
        if !spam.above.is_finite() {
            push(
                out,
                format!("{key}.spam_score.above"),
                "not a number",
                "give the threshold, e.g. 5.0",
            );
        }
    }
    for (i, c) in cond.all.iter().enumerate() {
        check_condition(&format!("{key}.all[{i}]"), c, out);
    }
    for (i, c) in cond.any.iter().enumerate() {
        check_condition(&format!("{key}.any[{i}]"), c, out);
    }
    if let Some(c) = &cond.not {
        check_condition(&format!("{key}.not"), c, out);
    }
}

fn check_matcher(key: &str, m: &Matcher, out: &mut Vec<Finding>) {
    if m.operator_count() != 1 {
        push(
            out,
            key.to_string(),
            "set exactly one of equals, contains, regex and one_of",
            "e.g. { contains = \"invoice\" }",
        );
    }
    if let Some(regex) = &m.regex {
        if let Some(error) = regex.error() {
            push(
                out,
                format!("{key}.regex"),
                format!("invalid regex `{}`: {error}", regex.text),
                "check the pattern; backslashes must be doubled inside \"...\", or use '...'",
            );
        }
    }
    if m.one_of.as_ref().is_some_and(Vec::is_empty) {
        push(
            out,
            format!("{key}.one_of"),
            "empty list",
            "list at least one value",
        );
    }
}

fn check_agent(key: &str, agent: &AgentConfig, out: &mut Vec<Finding>) {
    parsed(
        out,
        &format!("{key}.time_zone"),
        agent.time_zone.as_ref(),
        "use an IANA name such as Europe/Berlin",
    );
    if agent.max_open == Some(0) {
        push(
            out,
            format!("{key}.max_open"),
            "max_open = 0 means no work ever",
            "remove the agent from its teams instead, or raise it",
        );
    }
    for (j, period) in agent.away.iter().enumerate() {
        let from = toml_date(&period.from);
        let until = toml_date(&period.until);
        let pkey = format!("{key}.away[{j}]");
        match (from, until) {
            (Some(from), Some(until)) if from > until => {
                push(
                    out,
                    pkey,
                    format!("away period ends ({until}) before it starts ({from})"),
                    "swap from and until",
                );
            }
            (Some(_), Some(_)) => {}
            _ => push(
                out,
                pkey,
                "away dates must be plain dates",
                "write from = 2025-03-10, until = 2025-03-14 (no time, no quotes)",
            ),
        }
    }
    if let Some(hours) = &agent.working_hours {
        let hkey = format!("{key}.working_hours");
        for day in &hours.days {
            if weekday(day).is_none() {
                push(
                    out,
                    format!("{hkey}.days"),
                    format!("`{day}` is not a day"),
                    "use mon, tue, wed, thu, fri, sat, sun",
                );
            }
        }
        parsed(
            out,
            &format!("{hkey}.start"),
            Some(&hours.start),
            "write HH:MM, e.g. 09:00",
        );
        parsed(
            out,
            &format!("{hkey}.end"),
            Some(&hours.end),
            "write HH:MM, e.g. 17:00",
        );
        if let (Some(start), Some(end)) = (hours.start.get(), hours.end.get()) {
            if start >= end {
                push(
                    out,
                    format!("{hkey}.end"),
                    "working hours end before they start",
                    "overnight shifts are not supported; end must be later than start",
                );
            }
        }
    }
}
