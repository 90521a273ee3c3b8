//! Admin commands that act on the mailbox and the store together: assign, release, close,
//! queue, history, and agents away or back.
//!
//! A command that changes where mail is opens its own short IMAP connection to the shared
//! mailbox, moves the message, then records the change, so the mailbox stays the visible truth.
//! If the daemon is running it sees the move in its next folder poll, finds the store already
//! agrees, and does nothing more. Commands run inside the daemon (through the control socket)
//! or on their own when no daemon holds the store; the code is the same.

use std::fmt::Write;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use crate::config::{Config, MailboxConfig};
use crate::decide::agent_folder;
use crate::imap::Connection;
use crate::store::{ConversationState, Event, EventKind, MessageRecord, MessageState, Store};

/// Everything a command needs.
pub struct Admin<'a> {
    /// The config.
    pub config: &'a Config,
    /// The store.
    pub store: &'a Store,
    /// The time now.
    pub now: DateTime<Utc>,
}

impl Admin<'_> {
    /// Marks an agent away (no new work) or back.
    pub fn set_away(&self, agent: &str, away: bool) -> Result<String> {
        if self.config.agent(agent).is_none() {
            bail!("no [[agent]] has id `{agent}`");
        }
        let word = if away { "away" } else { "back" };
        let event = Event {
            at: self.now,
            kind: EventKind::Availability,
            mailbox: String::new(),
            conversation: None,
            identity: None,
            agent: Some(agent.to_string()),
            detail: format!("{agent} marked {word} by an admin"),
        };
        self.store.set_agent_away(agent, away, event)?;
        self.store.flush()?;
        Ok(format!("{agent} is {word}\n"))
    }

    /// The history of the conversation a message belongs to.
    pub fn history(&self, message_id: &str) -> Result<String> {
        let record = self.work_record(message_id)?;
        let mut out = String::new();
        if let Some(conv) = self.store.conversation(&record.conversation)? {
            let owner = conv.owner.as_deref().unwrap_or("(unassigned)");
            writeln!(
                out,
                "conversation {} in {}: {}, owner {owner}",
                conv.id, conv.mailbox, conv.state
            )?;
            writeln!(out, "  subject: {}", conv.subject)?;
        }
        for event in self.store.history(&record.conversation)? {
            let at = event.at.format("%Y-%m-%d %H:%M:%S");
            writeln!(
                out,
                "  {at}  {:<11} {}",
                event.kind.to_string(),
                event.detail
            )?;
        }
        Ok(out)
    }

    /// Open conversations, oldest first, with owner, age and the Message-ID of their first
    /// message (what `assign`, `close`, `release` and `history` take), optionally for one
    /// mailbox or agent.
    pub fn queue(&self, mailbox: Option<&str>, agent: Option<&str>) -> Result<String> {
        if let Some(name) = mailbox.filter(|m| self.config.mailbox(m).is_none()) {
            bail!("no [[mailbox]] is named `{name}`");
        }
        if let Some(id) = agent.filter(|a| self.config.agent(a).is_none()) {
            bail!("no [[agent]] has id `{id}`");
        }
        let mut rows = Vec::new();
        for conv in self.store.conversations(mailbox)? {
            let mine = agent.is_none_or(|a| conv.owner.as_deref() == Some(a));
            if conv.state == ConversationState::Open && mine {
                rows.push(conv);
            }
        }
        rows.sort_by_key(|c| c.started);
        let first_ids = self.first_message_ids(mailbox)?;
        let mut out = String::new();
        writeln!(
            out,
            "{:<14} {:>8}  {:<40} subject",
            "owner", "age", "message-id"
        )?;
        for conv in rows {
            let age = age(self.now - conv.started);
            let owner = conv.owner.as_deref().unwrap_or("(waiting)");
            let id = first_ids
                .get(&conv.id)
                .map(String::as_str)
                .unwrap_or("(none)");
            let subject: String = conv.subject.chars().take(50).collect();
            writeln!(
                out,
                "{owner:<14} {age:>8}  {:<40} {subject}",
                format!("<{id}>")
            )?;
        }
        Ok(out)
    }

    /// The Message-ID of each conversation's earliest message.
    fn first_message_ids(
        &self,
        mailbox: Option<&str>,
    ) -> Result<std::collections::HashMap<String, String>> {
        let mut first: std::collections::HashMap<String, (DateTime<Utc>, String)> =
            std::collections::HashMap::new();
        let names: Vec<&str> = match mailbox {
            Some(m) => vec![m],
            None => self
                .config
                .mailboxes
                .iter()
                .map(|m| m.name.as_str())
                .collect(),
        };
        for name in names {
            for record in self.store.messages(name)? {
                let (Some(id), false) = (record.message_id, record.conversation.is_empty()) else {
                    continue;
                };
                let at = record.arrived.unwrap_or(record.decided_at);
                let entry = first.entry(record.conversation).or_insert((at, id.clone()));
                if at < entry.0 {
                    *entry = (at, id);
                }
            }
        }
        Ok(first
            .into_iter()
            .map(|(conv, (_, id))| (conv, id))
            .collect())
    }

    /// Gives the message's conversation to `agent`, moving the message to their folder.
    pub async fn assign(&self, message_id: &str, agent: &str) -> Result<String> {
        let record = self.work_record(message_id)?;
        let mailbox = self.mailbox_of(&record)?;
        if !self
            .config
            .team(&mailbox.team)
            .is_some_and(|t| t.agents.iter().any(|a| a == agent))
        {
            bail!(
                "`{agent}` is not in team {} of mailbox {}",
                mailbox.team,
                mailbox.name
            );
        }
        let target = agent_folder(mailbox, self.config, agent);
        self.move_message(mailbox, &record, &target).await?;
        let detail = format!("reassigned to {agent} by an admin");
        let mut event = self.event(EventKind::Reassigned, &record, &detail);
        event.agent = Some(agent.to_string());
        self.store
            .set_owner(&record.conversation, Some(agent), event)?;
        let here = MessageState::Filed {
            folder: target.clone(),
        };
        let e = self.event(
            EventKind::Reconciled,
            &record,
            &format!("moved to {target} by an admin"),
        );
        self.store.relocate(
            &mailbox.name,
            &record.identity,
            here,
            Some(agent.to_string()),
            e,
        )?;
        self.store.flush()?;
        Ok(format!(
            "{message_id}: assigned to {agent}, now in {target}\n"
        ))
    }

    /// Moves the message back to the inbox so it is routed again. The store learns first, so
    /// the daemon that sees the message arrive knows an admin put it there, not a person; a
    /// failed move puts the record back as it was.
    pub async fn release(&self, message_id: &str) -> Result<String> {
        let record = self.record(message_id)?;
        let mailbox = self.mailbox_of(&record)?;
        let inbox = mailbox.inbox.clone();
        let conversation = (!record.conversation.is_empty())
            .then(|| self.store.conversation(&record.conversation))
            .transpose()?
            .flatten();
        if let Some(conv) = &conversation {
            let previous = conv.owner.as_deref().unwrap_or("nobody");
            let detail = format!("released from {previous} by an admin; routed again");
            let e = self.event(EventKind::Released, &record, &detail);
            self.store.set_owner(&conv.id, None, e)?;
        }
        let here = MessageState::Filed {
            folder: inbox.clone(),
        };
        let e = self.event(
            EventKind::Reconciled,
            &record,
            &format!("moved to {inbox} by an admin"),
        );
        self.store
            .relocate(&mailbox.name, &record.identity, here, None, e)?;
        self.store.flush()?;
        if let Err(err) = self.move_message(mailbox, &record, &inbox).await {
            let e = self.event(
                EventKind::Reconciled,
                &record,
                "release failed; left in place",
            );
            self.store.relocate(
                &mailbox.name,
                &record.identity,
                record.state.clone(),
                record.owner.clone(),
                e,
            )?;
            if let Some(conv) = &conversation {
                let e = self.event(EventKind::Reassigned, &record, "release failed; owner kept");
                self.store.set_owner(&conv.id, conv.owner.as_deref(), e)?;
            }
            self.store.flush()?;
            return Err(err);
        }
        Ok(format!(
            "{message_id}: back in {inbox}; it will be routed again\n"
        ))
    }

    /// Closes the conversation, moving the message to Done.
    pub async fn close(&self, message_id: &str) -> Result<String> {
        let record = self.work_record(message_id)?;
        let mailbox = self.mailbox_of(&record)?;
        let done = mailbox.done_folder.clone();
        self.move_message(mailbox, &record, &done).await?;
        let e = self.event(EventKind::Closed, &record, "closed by an admin");
        self.store.close(&record.conversation, self.now, e)?;
        let here = MessageState::Filed {
            folder: done.clone(),
        };
        let e = self.event(
            EventKind::Reconciled,
            &record,
            &format!("moved to {done} by an admin"),
        );
        self.store.relocate(
            &mailbox.name,
            &record.identity,
            here,
            record.owner.clone(),
            e,
        )?;
        self.store.flush()?;
        Ok(format!("{message_id}: closed, now in {done}\n"))
    }

    fn record(&self, message_id: &str) -> Result<MessageRecord> {
        self.store
            .message_by_id(message_id)?
            .with_context(|| format!("no handled message has Message-ID {message_id}"))
    }

    /// The record of a message that belongs to a conversation; automatic and ignored mail
    /// belongs to none and is nobody's work.
    fn work_record(&self, message_id: &str) -> Result<MessageRecord> {
        let record = self.record(message_id)?;
        if record.conversation.is_empty() {
            bail!(
                "{message_id} is automatic or ignored mail, not a conversation; drag it into an \
                 agent's folder in Outlook to make it someone's work"
            );
        }
        Ok(record)
    }

    fn mailbox_of(&self, record: &MessageRecord) -> Result<&MailboxConfig> {
        self.config
            .mailbox(&record.mailbox)
            .with_context(|| format!("mailbox {} is no longer configured", record.mailbox))
    }

    /// Finds the message where the store says it is and moves it to `target`.
    async fn move_message(
        &self,
        mailbox: &MailboxConfig,
        record: &MessageRecord,
        target: &str,
    ) -> Result<()> {
        let MessageState::Filed { folder } = &record.state else {
            let why = match record.state {
                MessageState::Pending { .. } => "it is still being filed; try again in a moment",
                MessageState::Waiting => "it waits in the inbox for someone who can take it",
                MessageState::Left => "it was left where it arrived",
                _ => "it is no longer in any folder postroom watches",
            };
            bail!("the message is not in a folder postroom manages: {why}");
        };
        if folder == target {
            return Ok(());
        }
        let server = self
            .config
            .server(&mailbox.server)
            .context("unknown server")?;
        let password = crate::daemon::mailbox_password(mailbox)?;
        let mut conn = Connection::open_mailbox(server, mailbox, &password).await?;
        conn.ensure_folders(&[target.to_string()]).await?;
        conn.select(folder).await?;
        let wanted = record.message_id.as_deref();
        let listing = conn.message_ids().await?;
        let Some((uid, _)) = listing.iter().find(|(_, id)| id.as_deref() == wanted) else {
            conn.logout().await;
            bail!("the message is no longer in {folder}; someone moved it meanwhile");
        };
        conn.move_uids(&[*uid], target).await?;
        conn.logout().await;
        Ok(())
    }

    fn event(&self, kind: EventKind, record: &MessageRecord, detail: &str) -> Event {
        Event {
            at: self.now,
            kind,
            mailbox: record.mailbox.clone(),
            conversation: Some(record.conversation.clone()),
            identity: Some(record.identity.clone()),
            agent: record.owner.clone(),
            detail: detail.to_string(),
        }
    }
}

/// An age as `3d 4h`, `4h 10m` or `12m`.
fn age(d: chrono::Duration) -> String {
    let minutes = d.num_minutes().max(0);
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{mins}m"),
        (0, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}
