//! `postroom explain`: the full decision for one message file, printed with its reasons, without
//! touching any mailbox.
//!
//! It parses the file with [`message::parse`], reads the store when one exists (otherwise an
//! empty [`MemoryState`]), runs [`decide_with`] exactly as the daemon would, and renders the
//! [`Decision`]: which rules matched and why, who would get the conversation and why each other
//! agent was passed over, and where the message would be filed. It never writes: not to the
//! store, not to a server.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};

use crate::config::{Config, MailboxConfig};
use crate::decide::memory::MemoryState;
use crate::decide::{decide_with, Context, Decision, StateView};
use crate::message::{self, Envelope};
use crate::rules::condition::automated_name;
use crate::store::Store;

/// Explains the message in `file` for `mailbox` (the first configured when `None`) at `at`
/// (now when `None`).
pub fn run(
    config: &Config,
    file: &Path,
    mailbox: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> Result<String> {
    let raw = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    let request = crate::control::Request::Explain {
        message: raw.clone(),
        mailbox: mailbox.map(str::to_string),
        at,
    };
    // A running daemon holds the store: ask it, so the answer uses the live rotation and loads.
    if let Some(reply) = crate::control::ask(&config.daemon.state_dir, &request)? {
        anyhow::ensure!(reply.ok, "{}", reply.output);
        return Ok(reply.output);
    }
    let dir = &config.daemon.state_dir;
    // Store::open creates a missing directory; explain must not, so only an existing one is read.
    if dir.is_dir() {
        match Store::open(dir) {
            Ok(store) => return explain_at(&raw, mailbox, config, &store, at),
            Err(err) => {
                let note = format!(
                    "note: the store in {} could not be opened ({err:#}); \
                     explaining against an empty state\n",
                    dir.display()
                );
                return Ok(note + &explain_at(&raw, mailbox, config, &MemoryState::new(), at)?);
            }
        }
    }
    explain_at(&raw, mailbox, config, &MemoryState::new(), at)
}

/// Explains raw bytes for a mailbox (by name, or the first) at an instant (or now), judging
/// business hours with the mailbox's calendar as the daemon does.
pub fn explain_at(
    raw: &[u8],
    mailbox: Option<&str>,
    config: &Config,
    state: &dyn StateView,
    at: Option<DateTime<Utc>>,
) -> Result<String> {
    let mailbox = pick_mailbox(config, mailbox)?;
    let now = at.unwrap_or_else(Utc::now);
    let calendar = crate::calendar::for_mailbox(config, mailbox)?;
    let context = Context {
        now,
        in_business_hours: calendar.map(|c| c.is_open(now)),
    };
    Ok(explain(raw, mailbox, config, state, &context))
}

fn pick_mailbox<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a MailboxConfig> {
    let known = || {
        config
            .mailboxes
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => match config.mailbox(name) {
            Some(m) => Ok(m),
            None => bail!("no mailbox is named `{name}` (known: {})", known()),
        },
        None => match config.mailboxes.first() {
            Some(m) => Ok(m),
            None => bail!("the config has no [[mailbox]] to explain for"),
        },
    }
}

/// Explains raw message bytes; never panics and never fails: a message that does not parse is
/// reported as the daemon would quarantine it.
pub fn explain(
    raw: &[u8],
    mailbox: &MailboxConfig,
    config: &Config,
    state: &dyn StateView,
    context: &Context,
) -> String {
    let envelope = match message::parse(raw, None) {
        Ok(envelope) => envelope,
        Err(failure) => return format!("would be quarantined: {failure}\n"),
    };
    match decide_with(&envelope, mailbox, config, state, context) {
        Ok(decision) => render(&envelope, mailbox, &decision, context),
        Err(err) => format!(
            "{}decision failed: {err:#}\n",
            header(&envelope, mailbox, context)
        ),
    }
}

fn header(env: &Envelope, mailbox: &MailboxConfig, context: &Context) -> String {
    let mut out = String::new();
    let from = env.from.as_ref().map_or("(none)", |p| p.address.as_str());
    let _ = writeln!(out, "mailbox:    {} (team {})", mailbox.name, mailbox.team);
    let _ = writeln!(out, "at:         {}", context.now.to_rfc3339());
    let _ = writeln!(
        out,
        "message-id: {}",
        env.message_id.as_deref().unwrap_or("(none)")
    );
    let _ = writeln!(out, "from:       {from}");
    let _ = writeln!(out, "subject:    {:?}", message::one_line(&env.subject));
    let _ = writeln!(out, "automatic:  {}", automated_name(env.automated));
    out
}

/// The decision as text: header, reasoning, then the result.
pub fn render(env: &Envelope, mailbox: &MailboxConfig, d: &Decision, context: &Context) -> String {
    let mut out = header(env, mailbox, context);
    out.push_str("\nreasoning:\n");
    for line in &d.explanation {
        let _ = writeln!(out, "  {line}");
    }
    out.push_str("\nresult:\n");
    let _ = writeln!(out, "  outcome:    {}", d.outcome);
    let _ = writeln!(out, "  summary:    {}", d.summary);
    let _ = writeln!(
        out,
        "  owner:      {}",
        d.owner.as_deref().unwrap_or("nobody")
    );
    let _ = writeln!(
        out,
        "  folder:     {}",
        d.folder.as_deref().unwrap_or("(stays where it is)")
    );
    if let Some(conv) = &d.conversation {
        let _ = writeln!(out, "  joins:      conversation {conv}");
    }
    if let Some(conv) = &d.refers_to {
        let _ = writeln!(out, "  refers to:  conversation {conv}");
    }
    if let Some(priority) = d.priority {
        let _ = writeln!(out, "  priority:   {priority}");
    }
    let sla = match (&d.sla_policy, d.is_work()) {
        (_, false) => "none (not work)".to_string(),
        (Some(name), true) => name.clone(),
        (None, true) => "mailbox default".to_string(),
    };
    let _ = writeln!(out, "  sla:        {sla}");
    if !d.tags.is_empty() {
        let _ = writeln!(out, "  tags:       {}", d.tags.join(", "));
    }
    let rules: Vec<&str> = d.matched_rules.iter().map(|r| r.name.as_str()).collect();
    let matched = if rules.is_empty() {
        "none".to_string()
    } else {
        rules.join(", ")
    };
    let _ = writeln!(out, "  rules:      {matched}");
    out
}
