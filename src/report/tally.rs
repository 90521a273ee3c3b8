//! One pass over the conversations: backlog, first-response times, per-agent workload, SLA
//! outcomes and breakdowns, added up conversation by conversation.
//!
//! Nothing here keeps the conversations themselves, only the counts and the response-time
//! samples the percentiles need, so [`super::compute`] can stream a million conversations from
//! the store without holding them all in memory.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    sender_domain, stats, AgentRow, Backlog, BreakdownRow, Breakdowns, Clocks, Distribution,
    FirstResponse, History, OldestWaiting, Options, SlaRow, Window,
};
use crate::config::Config;
use crate::sla::{Leg, State, Target};
use crate::store::{Conversation, ConversationState, ResponseSource};

/// Response-time samples and counts of one breakdown key.
type Groups = BTreeMap<String, (BreakdownRow, Vec<i64>)>;

/// What one owner's conversations add up to.
#[derive(Default)]
struct Owned {
    open: u64,
    elapsed: Vec<i64>,
    business: Vec<i64>,
}

/// The running totals of the conversation-based parts of a report.
pub(super) struct Tally<'a> {
    clocks: &'a Clocks,
    window: &'a Window,
    now: DateTime<Utc>,
    open: u64,
    waiting: u64,
    unassigned: u64,
    ages: Vec<i64>,
    oldest: Option<OldestWaiting>,
    elapsed: Vec<i64>,
    business: Vec<i64>,
    unanswered: u64,
    answered_by_flag: u64,
    owners: BTreeMap<String, Owned>,
    sla: BTreeMap<(String, String, &'static str), SlaRow>,
    domains: Groups,
    tags: Groups,
    rules: Groups,
}

/// The conversation-based parts of a report.
pub(super) struct Parts {
    pub(super) backlog: Backlog,
    pub(super) first_response: FirstResponse,
    pub(super) agents: Vec<AgentRow>,
    pub(super) sla: Vec<SlaRow>,
    pub(super) breakdowns: Breakdowns,
}

impl<'a> Tally<'a> {
    pub(super) fn new(clocks: &'a Clocks, window: &'a Window, now: DateTime<Utc>) -> Tally<'a> {
        Tally {
            clocks,
            window,
            now,
            open: 0,
            waiting: 0,
            unassigned: 0,
            ages: Vec::new(),
            oldest: None,
            elapsed: Vec::new(),
            business: Vec::new(),
            unanswered: 0,
            answered_by_flag: 0,
            owners: BTreeMap::new(),
            sla: BTreeMap::new(),
            domains: Groups::new(),
            tags: Groups::new(),
            rules: Groups::new(),
        }
    }

    /// Adds one conversation (already as the report sees it, see `History::apply`).
    pub(super) fn add(&mut self, conv: &Conversation) {
        let in_window = self.window.contains(conv.started);
        let answered = in_window.then(|| self.answered(conv)).flatten();
        if conv.state == ConversationState::Open {
            self.add_open(conv);
        }
        if let Some((elapsed, business)) = answered {
            self.elapsed.push(elapsed);
            self.business.push(business);
            if conv.first_response_by == Some(ResponseSource::AnsweredFlag) {
                self.answered_by_flag += 1;
            }
        }
        self.unanswered += u64::from(in_window && conv.first_response_at.is_none());
        if let Some(owner) = &conv.owner {
            if !self.owners.contains_key(owner) {
                self.owners.insert(owner.clone(), Owned::default());
            }
            if let Some(owned) = self.owners.get_mut(owner) {
                owned.open += u64::from(conv.state == ConversationState::Open);
                if let Some((elapsed, business)) = answered {
                    owned.elapsed.push(elapsed);
                    owned.business.push(business);
                }
            }
        }
        if in_window {
            self.add_sla(conv);
            let elapsed = answered.map(|a| a.0);
            let domain = domain_key(conv.from.as_deref());
            add_to_group(&mut self.domains, &domain, conv, elapsed);
            for tag in &conv.tags {
                add_to_group(&mut self.tags, tag, conv, elapsed);
            }
            for rule in &conv.rules {
                add_to_group(&mut self.rules, rule, conv, elapsed);
            }
        }
    }

    /// Elapsed and business first-response seconds, when the conversation was answered.
    fn answered(&self, conv: &Conversation) -> Option<(i64, i64)> {
        let at = conv.first_response_at?;
        let elapsed = (at - conv.started).num_seconds().max(0);
        Some((elapsed, self.clocks.business_secs(conv, conv.started, at)))
    }

    fn add_open(&mut self, conv: &Conversation) {
        self.open += 1;
        self.waiting += u64::from(conv.waiting_since.is_some());
        self.unassigned += u64::from(conv.owner.is_none());
        self.ages.push((self.now - conv.started).num_seconds());
        let Some(since) = conv.waiting_since else {
            return;
        };
        let longer = self
            .oldest
            .as_ref()
            .is_none_or(|o| (since, conv.id.as_str()) < (o.waiting_since, o.conversation.as_str()));
        if longer {
            self.oldest = Some(OldestWaiting {
                conversation: conv.id.clone(),
                mailbox: conv.mailbox.clone(),
                subject: conv.subject.clone(),
                owner: conv.owner.clone(),
                waiting_since: since,
                age_secs: (self.now - since).num_seconds(),
            });
        }
    }

    /// SLA outcomes of a conversation started in the window, per policy and clock: its first
    /// response, its resolution, and each wait for an answer after the first response (the
    /// answered ones, and the one running now).
    fn add_sla(&mut self, conv: &Conversation) {
        let Some(policy_name) = &conv.sla else {
            return;
        };
        let leg = |target, started, stopped| Leg {
            target,
            started,
            stopped,
        };
        let mut legs = vec![
            (
                "first_response",
                leg(Target::FirstResponse, conv.started, conv.first_response_at),
            ),
            (
                "resolution",
                leg(Target::Resolution, conv.started, conv.closed_at),
            ),
        ];
        for wait in &conv.answered_waits {
            let answered = Some(wait.answered);
            legs.push((
                "next_response",
                leg(Target::NextResponse, wait.since, answered),
            ));
        }
        let open = conv.state == ConversationState::Open;
        if let (true, Some(_), Some(since)) = (open, conv.first_response_at, conv.waiting_since) {
            legs.push(("next_response", leg(Target::NextResponse, since, None)));
        }
        let policy = self.clocks.policy(policy_name);
        for (label, leg) in legs {
            let target = leg.target;
            if policy.is_some_and(|p| p.budget(target).is_none()) {
                continue;
            }
            if policy.is_none() && target != Target::FirstResponse {
                continue;
            }
            let key = (conv.mailbox.clone(), policy_name.clone(), label);
            let row = self.sla.entry(key).or_insert_with(|| SlaRow {
                mailbox: conv.mailbox.clone(),
                policy: policy_name.clone(),
                target: label.to_string(),
                met: 0,
                breached: 0,
                at_risk: 0,
                running: 0,
                unevaluated: 0,
                compliance_percent: None,
            });
            match self.clocks.evaluate(conv, &leg, self.now).map(|e| e.state) {
                Some(State::Met) => row.met += 1,
                Some(State::Breached) => row.breached += 1,
                Some(State::Warned) => row.at_risk += 1,
                Some(State::Running) => row.running += 1,
                None => row.unevaluated += 1,
            }
        }
    }

    /// The totals as report parts; `history` gives the per-agent counts over time.
    pub(super) fn finish(mut self, config: &Config, options: &Options, history: &History) -> Parts {
        Parts {
            backlog: Backlog {
                open: self.open,
                waiting: self.waiting,
                unassigned: self.unassigned,
                age: stats::histogram(&self.ages, &stats::AGE_BOUNDS, stats::AGE_REST, false),
                oldest_waiting: self.oldest.take(),
            },
            first_response: FirstResponse {
                elapsed: Distribution::of(&mut self.elapsed),
                business: Distribution::of(&mut self.business),
                unanswered: self.unanswered,
                answered_by_flag: self.answered_by_flag,
            },
            agents: agents(config, options, history, self.owners),
            sla: self
                .sla
                .into_values()
                .map(|mut row| {
                    row.compliance_percent = stats::percent(row.met, row.met + row.breached);
                    row
                })
                .collect(),
            breakdowns: Breakdowns {
                sender_domain: rows(self.domains),
                tag: rows(self.tags),
                rule: rows(self.rules),
            },
        }
    }
}

/// One row per agent of the mailbox's teams, and per anyone who was given, closed or owns
/// work, in id order.
fn agents(
    config: &Config,
    options: &Options,
    history: &History,
    mut owners: BTreeMap<String, Owned>,
) -> Vec<AgentRow> {
    let mut ids: Vec<String> = config
        .mailboxes
        .iter()
        .filter(|m| options.mailbox.as_ref().is_none_or(|n| &m.name == n))
        .filter_map(|m| config.team(&m.team))
        .flat_map(|t| t.agents.iter().cloned())
        .chain(history.assigned_to.keys().cloned())
        .chain(history.closed_by.keys().cloned())
        .chain(owners.keys().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|agent| {
            let mut owned = owners.remove(&agent).unwrap_or_default();
            AgentRow {
                assigned: history.assigned_to.get(&agent).copied().unwrap_or(0),
                open: owned.open,
                closed: history.closed_by.get(&agent).copied().unwrap_or(0),
                median_first_response_secs: stats::median(&mut owned.elapsed),
                median_first_response_business_secs: stats::median(&mut owned.business),
                agent,
            }
        })
        .collect()
}

/// [`sender_domain`] without a copy when the domain is already lower case, as nearly all are.
fn domain_key(from: Option<&str>) -> Cow<'_, str> {
    let domain = from
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, domain)| domain.trim().trim_end_matches('>'))
        .filter(|d| !d.is_empty());
    match domain {
        Some(d) if !d.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(d),
        _ => Cow::Owned(sender_domain(from)),
    }
}

fn add_to_group(groups: &mut Groups, key: &str, conv: &Conversation, elapsed: Option<i64>) {
    // Looked up before inserting: most conversations join a group that exists, and the key
    // need not be copied for them.
    if !groups.contains_key(key) {
        let row = BreakdownRow {
            key: key.to_string(),
            conversations: 0,
            open: 0,
            answered: 0,
            median_first_response_secs: None,
        };
        groups.insert(key.to_string(), (row, Vec::new()));
    }
    let Some((row, times)) = groups.get_mut(key) else {
        return;
    };
    row.conversations += 1;
    row.open += u64::from(conv.state == ConversationState::Open);
    if let Some(elapsed) = elapsed {
        row.answered += 1;
        times.push(elapsed);
    }
}

/// A breakdown's rows, most conversations first, then by key.
fn rows(groups: Groups) -> Vec<BreakdownRow> {
    let mut rows: Vec<BreakdownRow> = groups
        .into_values()
        .map(|(mut row, mut times)| {
            row.median_first_response_secs = stats::median(&mut times);
            row
        })
        .collect();
    rows.sort_by(|a, b| {
        b.conversations
            .cmp(&a.conversations)
            .then(a.key.cmp(&b.key))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_keys_agree_with_sender_domain() {
        for from in [
            None,
            Some("a@example.org"),
            Some("b@Example.COM"),
            Some("<c@x.example> "),
            Some("no-at-sign"),
            Some("d@"),
        ] {
            assert_eq!(domain_key(from), sender_domain(from), "{from:?}");
        }
    }
}
