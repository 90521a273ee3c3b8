//! `postroom status`: what the store says about each mailbox and agent.
//!
//! Read-only: it opens the store, never a server, so an admin can run it beside the daemon.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Result;

use crate::config::Config;
use crate::store::{ConversationState, Store};

/// Renders the status report as text.
pub fn render(config: &Config, store: &Store) -> Result<String> {
    let mut out = String::new();
    for mailbox in &config.mailboxes {
        let sync = store.sync_state(&mailbox.name)?;
        let contact = sync
            .last_contact
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into());
        writeln!(out, "mailbox {} (team {})", mailbox.name, mailbox.team)?;
        writeln!(out, "  last contact with server: {contact}")?;
        if let Some(err) = &sync.last_error {
            writeln!(out, "  last error: {err}")?;
        }
        let conversations = store.conversations(Some(&mailbox.name))?;
        let mut open: BTreeMap<String, usize> = BTreeMap::new();
        let mut closed = 0;
        for conv in &conversations {
            match conv.state {
                ConversationState::Open => {
                    *open
                        .entry(conv.owner.clone().unwrap_or_else(|| "(unassigned)".into()))
                        .or_default() += 1
                }
                ConversationState::Closed => closed += 1,
            }
        }
        writeln!(
            out,
            "  conversations: {} open, {closed} closed",
            open.values().sum::<usize>()
        )?;
        if let Some(team) = config.team(&mailbox.team) {
            for agent in &team.agents {
                let name = config
                    .agent(agent)
                    .map(|a| a.name.as_str())
                    .unwrap_or(agent);
                writeln!(
                    out,
                    "    {agent:<16} {name:<24} {} open",
                    open.get(agent).copied().unwrap_or(0)
                )?;
            }
        }
        if let Some(n) = open.get("(unassigned)") {
            writeln!(out, "    (unassigned)     {n} open")?;
        }
        let quarantined = store.quarantined(Some(&mailbox.name))?;
        writeln!(out, "  quarantined: {}", quarantined.len())?;
        for q in quarantined {
            writeln!(
                out,
                "    {} UID {} (validity {}): {} [{} attempts]",
                q.folder, q.uid, q.uid_validity, q.reason, q.attempts
            )?;
        }
    }
    Ok(out)
}
