//! A [`StateView`] held in memory: the empty state `explain` uses when there is no store, and
//! the state tests drive through many decisions.
//!
//! [`MemoryState::record`] applies a decision the way the store's commit does (conversation,
//! thread IDs, owner load, rotation turn), so tests of sequences exercise the same bookkeeping
//! the daemon relies on.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::{Decision, StateView};
use crate::store::{Conversation, ConversationState};

/// Conversations, rotations, loads and away flags in plain maps.
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    conversations: HashMap<String, Conversation>,
    threads: HashMap<(String, String), String>,
    rotation: HashMap<String, String>,
    turns: HashMap<String, u64>,
    last_turn: HashMap<(String, String), u64>,
    open: HashMap<String, u64>,
    away: HashSet<String>,
}

impl MemoryState {
    /// An empty state: no conversations, no turns taken, nobody away.
    pub fn new() -> MemoryState {
        MemoryState::default()
    }

    /// Sets the run-time away flag.
    pub fn set_away(&mut self, agent: &str, away: bool) {
        if away {
            self.away.insert(agent.to_string());
        } else {
            self.away.remove(agent);
        }
    }

    /// Sets an agent's open count directly.
    pub fn set_open(&mut self, agent: &str, open: u64) {
        self.open.insert(agent.to_string(), open);
    }

    /// Records a turn for `agent` in `team`, as a persisted rotation step would.
    pub fn take_turn(&mut self, team: &str, agent: &str) {
        let counter = self.turns.entry(team.to_string()).or_insert(0);
        *counter += 1;
        self.last_turn
            .insert((team.to_string(), agent.to_string()), *counter);
        self.rotation.insert(team.to_string(), agent.to_string());
    }

    /// Adds a conversation reachable under `ids`.
    pub fn add_conversation(&mut self, conversation: Conversation, ids: &[&str]) {
        for id in ids {
            let key = (conversation.mailbox.clone(), id.to_string());
            self.threads.insert(key, conversation.id.clone());
        }
        if let Some(owner) = &conversation.owner {
            *self.open.entry(owner.clone()).or_insert(0) += 1;
        }
        self.conversations
            .insert(conversation.id.clone(), conversation);
    }

    /// Closes a conversation, releasing its owner's load.
    pub fn close(&mut self, id: &str) {
        if let Some(conv) = self.conversations.get_mut(id) {
            if conv.state == ConversationState::Open {
                if let Some(owner) = &conv.owner {
                    self.open
                        .entry(owner.clone())
                        .and_modify(|n| *n = n.saturating_sub(1));
                }
            }
            conv.state = ConversationState::Closed;
        }
    }

    /// Applies a decision as the store's commit would; returns the conversation id.
    pub fn record(&mut self, mailbox: &str, decision: &Decision, at: DateTime<Utc>) -> String {
        let id = match &decision.conversation {
            Some(id) => {
                self.reown(id, decision.owner.clone());
                id.clone()
            }
            None => {
                let id = format!("c{}", self.conversations.len() + 1);
                let conv = new_conversation(&id, mailbox, decision.owner.clone(), at);
                self.add_conversation(conv, &[]);
                id
            }
        };
        for thread_id in &decision.thread_ids {
            let key = (mailbox.to_string(), thread_id.clone());
            self.threads.insert(key, id.clone());
        }
        if let Some((team, agent)) = &decision.rotation {
            self.take_turn(team, agent);
        }
        id
    }

    fn reown(&mut self, id: &str, owner: Option<String>) {
        let Some(conv) = self.conversations.get_mut(id) else {
            return;
        };
        if conv.owner != owner {
            if let Some(old) = &conv.owner {
                self.open
                    .entry(old.clone())
                    .and_modify(|n| *n = n.saturating_sub(1));
            }
            if let Some(new) = &owner {
                *self.open.entry(new.clone()).or_insert(0) += 1;
            }
            conv.owner = owner;
        }
        conv.state = ConversationState::Open;
    }
}

/// A one-message open conversation.
pub fn new_conversation(
    id: &str,
    mailbox: &str,
    owner: Option<String>,
    at: DateTime<Utc>,
) -> Conversation {
    Conversation {
        id: id.to_string(),
        mailbox: mailbox.to_string(),
        owner,
        state: ConversationState::Open,
        started: at,
        last_message: at,
        messages: 1,
        subject: String::new(),
        from: None,
        closed_at: None,
        first_response_at: None,
        first_response_by: None,
        last_response_at: None,
        waiting_since: Some(at),
        sla: None,
        tags: Vec::new(),
        rules: Vec::new(),
        merged_into: None,
        answered_waits: Vec::new(),
    }
}

impl StateView for MemoryState {
    fn conversation_for(&self, mailbox: &str, ids: &[String]) -> Result<Option<Conversation>> {
        // The last ID is the most trusted, as in the store.
        Ok(ids.iter().rev().find_map(|id| {
            let conv = self.threads.get(&(mailbox.to_string(), id.clone()))?;
            self.conversations.get(conv).cloned()
        }))
    }
    fn rotation(&self, team: &str) -> Result<Option<String>> {
        Ok(self.rotation.get(team).cloned())
    }
    fn open_count(&self, agent: &str) -> Result<u64> {
        Ok(self.open.get(agent).copied().unwrap_or(0))
    }
    fn last_turn(&self, team: &str, agent: &str) -> Result<Option<u64>> {
        Ok(self
            .last_turn
            .get(&(team.to_string(), agent.to_string()))
            .copied())
    }
    fn agent_away(&self, agent: &str) -> Result<bool> {
        Ok(self.away.contains(agent))
    }
}
