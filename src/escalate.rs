//! The escalation tick: due SLA levels become mails in the outbox, and the outbox is sent.
//!
//! Every [`TICK`] the [`Escalator`] walks the open conversations. For each it picks the SLA
//! policy (the conversation's own, chosen by a rule, else the mailbox's, else the team's) and the
//! calendar ([`crate::sla::calendar_name`], a 24/7 UTC calendar when none is named), asks
//! [`Policy::levels_due`] which levels may go out now, and enqueues one mail per level that is
//! not yet in the store's outbox. The outbox key is the idempotency key
//! `<conversation>/<clock>/<level>`, so each level is mailed once per conversation and clock,
//! across restarts: the key is written and flushed before any send is attempted, and it stays
//! after the mail is sent or given up.
//!
//! Then it sends what is pending. A transient failure (no connection, 4xx, the server closing
//! on us) is retried with capped exponential back-off; a permanent refusal (5xx) marks the mail
//! failed and is logged at error level, once. A mail is marked sent only after the server's 250
//! to the end of DATA. If postroom dies between that 250 and the store write, or the connection
//! drops after the server took the message but before its 250 arrived, the same bytes (same
//! Message-ID) are sent again on the next tick: plain SMTP cannot do better without the server's
//! help, so a lead may, rarely, see the same message twice, never two different ones.
//!
//! Two kinds of mail go out once a day rather than once per level ([`daily`]): a policy's
//! `reminder` about a breached clock still running, keyed `<conversation>/<clock>/reminder-<date>`,
//! and a team's `digest` to its leads, keyed `digest/<team>/<date>`. While a team has a digest,
//! single mails to its leads are left out; a level that then has nobody left to mail is still
//! recorded in the outbox (as skipped), so it is never sent later when the digest is turned off.
//!
//! What is sent is decided on the [`Clock`], so tests drive it with a manual one.

mod daily;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::calendar::{Calendar, CalendarConfig};
use crate::clock::Clock;
use crate::config::{Config, MailboxConfig, TeamConfig};
use crate::notify::{self, Mailer, Notice, NoticeKind, Origin, SendError, LOGIN_REFUSED};
use crate::sla::{self, DueLevel, Leg, Level, Policy, Recipient, Target, TimeOfDay};
use crate::store::{Conversation, ConversationState, OutboxMail, OutboxState, Store};

/// How often conversations are checked by default (`[daemon] sla_check_secs`). SLA budgets are
/// minutes to hours; half a minute late is invisible to a lead, and a walk over the open
/// conversations every 30 s costs little.
pub const TICK: StdDuration = StdDuration::from_secs(30);

/// The first retry waits this long; each further one twice as long.
const BACKOFF_BASE_SECS: i64 = 30;

/// Retries never wait longer than this. An hour keeps a long outage from becoming a storm of
/// connections while still delivering within the hour once the server is back.
const BACKOFF_CAP_SECS: i64 = 3600;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Mails added to the outbox.
    pub queued: usize,
    /// Mails the server accepted.
    pub sent: usize,
    /// Mails that failed for now and wait for a retry.
    pub retrying: usize,
    /// Mails given up for good.
    pub failed: usize,
}

/// One mail to enqueue, before it is formatted.
struct Planned {
    key: String,
    notice: Notice,
    to: Vec<Recipient>,
}

/// Finds due escalation levels and sends their mails.
pub struct Escalator {
    config: Arc<Config>,
    store: Store,
    clock: Clock,
    mailer: Mailer,
    origin: Origin,
    policies: BTreeMap<String, Policy>,
    calendars: BTreeMap<String, Calendar>,
    always: Calendar,
    /// Teams with a daily digest, by name, with its time of day.
    digests: BTreeMap<String, TimeOfDay>,
}

impl Escalator {
    /// An escalator for `config`, or `None` when it has no `[smtp]` section. Policies and
    /// calendars were checked at load; one that fails now is an error naming it.
    pub fn from_config(config: Arc<Config>, store: Store, clock: Clock) -> Result<Option<Self>> {
        let Some(smtp) = &config.smtp else {
            return Ok(None);
        };
        let mailer = Mailer::from_config(smtp)?;
        Escalator::new(config.clone(), store, clock, mailer).map(Some)
    }

    /// An escalator sending through `mailer`.
    pub fn new(config: Arc<Config>, store: Store, clock: Clock, mailer: Mailer) -> Result<Self> {
        let smtp = config.smtp.as_ref().context("no [smtp] section")?;
        let origin = Origin::from_config(smtp);
        let mut policies = BTreeMap::new();
        for sla in &config.slas {
            let policy = Policy::from_config(sla)
                .map_err(|p| anyhow::anyhow!("sla {}: {}", sla.name, problems(&p)))?;
            policies.insert(sla.name.clone(), policy);
        }
        let mut calendars = BTreeMap::new();
        for cal in &config.calendars {
            let calendar = Calendar::from_config(cal)
                .map_err(|p| anyhow::anyhow!("calendar {}: {}", cal.name, problems(&p)))?;
            calendars.insert(cal.name.clone(), calendar);
        }
        let always = CalendarConfig {
            name: "always".into(),
            timezone: "UTC".into(),
            always: true,
            ..CalendarConfig::default()
        };
        let always = Calendar::from_config(&always)
            .map_err(|p| anyhow::anyhow!("the built-in 24/7 calendar: {}", problems(&p)))?;
        let mut digests = BTreeMap::new();
        for team in &config.teams {
            if let Some(text) = &team.digest {
                let time = TimeOfDay::parse(text)
                    .map_err(|e| anyhow::anyhow!("team {}: digest: {e}", team.name))?;
                digests.insert(team.name.clone(), time);
            }
        }
        Ok(Escalator {
            config,
            store,
            clock,
            mailer,
            origin,
            policies,
            calendars,
            always,
            digests,
        })
    }

    /// Runs a tick every [`TICK`] until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let every = StdDuration::from_secs(self.config.daemon.sla_check_secs.max(1));
        info!(every_secs = every.as_secs(), "escalations running");
        loop {
            if let Err(err) = self.tick().await {
                warn!(error = %format!("{err:#}"), "escalation tick failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
        }
        debug!("escalations stopped");
    }

    /// One pass: enqueue what fell due, then send what is pending.
    pub async fn tick(&self) -> Result<TickReport> {
        let queued = self.enqueue_due()?;
        let mut report = self.deliver_due().await?;
        report.queued = queued;
        Ok(report)
    }

    /// Adds a mail to the outbox for every level that fell due and has none yet.
    pub fn enqueue_due(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut queued = 0;
        for conv in self.store.conversations(None)? {
            if conv.state != ConversationState::Open {
                continue;
            }
            for planned in self.plan(&conv, now)? {
                if self.store.mail_known(&planned.key)? {
                    continue;
                }
                if self.enqueue(&conv, planned, now)? {
                    queued += 1;
                }
            }
        }
        queued += self.enqueue_digests(now)?;
        Ok(queued)
    }

    /// The mails one conversation calls for at `now`, before de-duplication.
    fn plan(&self, conv: &Conversation, now: DateTime<Utc>) -> Result<Vec<Planned>> {
        let Some(mailbox) = self.config.mailbox(&conv.mailbox) else {
            return Ok(Vec::new());
        };
        let team = self.config.team(&mailbox.team);
        let mut planned = Vec::new();
        if let Some(policy) = self.policy_for(conv, mailbox, team) {
            let calendar = self.calendar(sla::calendar_name(policy, Some(mailbox), team));
            for (tag, leg) in legs(policy, conv) {
                let context = || format!("conversation {}: sla {}", conv.id, policy.name);
                let due = policy
                    .levels_due(calendar, &leg, now)
                    .with_context(context)?;
                let Some(eval) = policy.evaluate(calendar, &leg, now).with_context(context)? else {
                    continue;
                };
                for level in due {
                    let deadline = eval.breach_at;
                    planned
                        .push(self.planned_level(conv, &tag, &leg, level, deadline, calendar, now));
                }
                let view = daily::ClockView {
                    policy,
                    calendar,
                    tag: &tag,
                    leg,
                    breach_at: eval.breach_at,
                };
                planned.extend(self.planned_reminder(conv, &view, now)?);
            }
        }
        if let Some(alert) = self.unassigned_alert(conv, mailbox, team, now)? {
            planned.push(alert);
        }
        Ok(planned)
    }

    #[allow(clippy::too_many_arguments)]
    fn planned_level(
        &self,
        conv: &Conversation,
        tag: &str,
        leg: &Leg,
        due: DueLevel,
        deadline: DateTime<Utc>,
        calendar: &Calendar,
        now: DateTime<Utc>,
    ) -> Planned {
        let kind = match due.level {
            Level::Warning => NoticeKind::Warning,
            Level::Escalation(level) => NoticeKind::Breach { level },
        };
        Planned {
            key: format!("{}/{tag}/{}", conv.id, due.level.key()),
            notice: self.notice(conv, kind, leg, deadline, calendar, now),
            to: due.to,
        }
    }

    fn notice(
        &self,
        conv: &Conversation,
        kind: NoticeKind,
        leg: &Leg,
        deadline: DateTime<Utc>,
        calendar: &Calendar,
        now: DateTime<Utc>,
    ) -> Notice {
        let clock = match leg.target {
            Target::FirstResponse => "first response",
            Target::NextResponse => "next response",
            Target::Resolution => "resolution",
        };
        Notice {
            kind,
            clock: clock.to_string(),
            conversation: conv.id.clone(),
            mailbox: conv.mailbox.clone(),
            owner: conv.owner.as_deref().map(|id| self.agent_label(id)),
            sender: conv.from.clone(),
            subject: conv.subject.clone(),
            started: leg.started,
            age: calendar.business_between(leg.started, now),
            deadline,
            timezone: calendar.timezone(),
        }
    }

    /// An alert to the leads when a conversation has waited without an owner for longer than
    /// the mailbox's `unassigned_alert_after`, counted in business time, inside business hours.
    fn unassigned_alert(
        &self,
        conv: &Conversation,
        mailbox: &MailboxConfig,
        team: Option<&TeamConfig>,
        now: DateTime<Utc>,
    ) -> Result<Option<Planned>> {
        let (Some(after), None, Some(since)) = (
            mailbox.unassigned_alert_after.as_deref(),
            &conv.owner,
            conv.waiting_since,
        ) else {
            return Ok(None);
        };
        let after = sla::parse_duration(after).map_err(|e| {
            anyhow::anyhow!("mailbox {}: unassigned_alert_after: {e}", mailbox.name)
        })?;
        let policy = self.policy_for(conv, mailbox, team);
        let name = match policy {
            Some(p) => sla::calendar_name(p, Some(mailbox), team),
            None => mailbox
                .calendar
                .as_deref()
                .or(team.and_then(|t| t.calendar.as_deref())),
        };
        let calendar = self.calendar(name);
        let due_at = calendar.add_business(since, after)?;
        if now < due_at || !calendar.within_hours(now) {
            return Ok(None);
        }
        let leg = Leg {
            target: Target::FirstResponse,
            started: since,
            stopped: None,
        };
        let notice = self.notice(conv, NoticeKind::Unassigned, &leg, due_at, calendar, now);
        Ok(Some(Planned {
            key: format!("{}/unassigned@{}/alert", conv.id, since.timestamp()),
            notice,
            to: vec![Recipient::Lead],
        }))
    }

    /// The policy for a conversation: a rule's choice, else the mailbox's, else the team's.
    fn policy_for(
        &self,
        conv: &Conversation,
        mailbox: &MailboxConfig,
        team: Option<&TeamConfig>,
    ) -> Option<&Policy> {
        let name = conv
            .sla
            .as_deref()
            .or(mailbox.sla.as_deref())
            .or(team.and_then(|t| t.sla.as_deref()))?;
        self.policies.get(name)
    }

    fn calendar(&self, name: Option<&str>) -> &Calendar {
        name.and_then(|n| self.calendars.get(n))
            .unwrap_or(&self.always)
    }

    fn agent_label(&self, id: &str) -> String {
        match self.config.agent(id) {
            Some(agent) => format!("{} ({})", agent.name, agent.id),
            None => id.to_string(),
        }
    }

    /// Formats and stores one mail. A mail nobody can receive is stored as failed, so the
    /// problem is logged once rather than on every tick; one whose only reader is a lead who
    /// gets the daily digest is stored as skipped.
    fn enqueue(&self, conv: &Conversation, planned: Planned, now: DateTime<Utc>) -> Result<bool> {
        // The digest lists warned and breached clocks; an unowned conversation is news now.
        let digest = planned.notice.kind != NoticeKind::Unassigned && self.digest_covers(conv);
        let (to, left_out) = self.addresses(conv, &planned.to, digest);
        let message_id = self.origin.new_message_id(&conv.id, now);
        let (raw, state) = if to.is_empty() && left_out {
            let reason = "the team's leads hear of it in their daily digest".to_string();
            (Vec::new(), OutboxState::Skipped { reason })
        } else if to.is_empty() {
            let reason = "nobody to send it to: no owner email and no team leads".to_string();
            (Vec::new(), OutboxState::Failed { reason })
        } else {
            let raw = notify::build(&planned.notice, &self.origin, &to, &message_id, now)
                .with_context(|| format!("conversation {}: build the mail", conv.id))?;
            (raw, OutboxState::Pending)
        };
        let mail = OutboxMail {
            key: planned.key,
            conversation: conv.id.clone(),
            mailbox: conv.mailbox.clone(),
            message_id,
            to,
            raw,
            state,
            attempts: 0,
            created: now,
            next_attempt: now,
            sent_at: None,
            last_error: None,
        };
        let added = self.store.enqueue_mail(&mail)?;
        if added {
            log_enqueued(&mail);
        }
        Ok(added)
    }

    /// The addresses for a level's recipients. The owner falls back to the leads when the
    /// conversation has no owner or the owner has no address, so a warning is never lost.
    /// With `digest`, the leads are left out (they get the daily digest); the flag returned
    /// says whether anyone was.
    fn addresses(
        &self,
        conv: &Conversation,
        to: &[Recipient],
        digest: bool,
    ) -> (Vec<String>, bool) {
        let mut out = Vec::new();
        let mut leads = false;
        for recipient in to {
            match recipient {
                Recipient::Owner => match self.owner_address(conv) {
                    Some(address) => out.push(address),
                    None => leads = true,
                },
                Recipient::Lead => leads = true,
                Recipient::Address(address) => out.push(address.clone()),
            }
        }
        let lead_addresses = if leads {
            self.lead_addresses(conv)
        } else {
            Vec::new()
        };
        let left_out = digest && !lead_addresses.is_empty();
        if !digest {
            out.extend(lead_addresses);
        }
        out.sort();
        out.dedup();
        (out, left_out)
    }

    /// True when the team working the conversation's mailbox has a daily digest.
    fn digest_covers(&self, conv: &Conversation) -> bool {
        self.config
            .mailbox(&conv.mailbox)
            .is_some_and(|m| self.digests.contains_key(&m.team))
    }

    fn owner_address(&self, conv: &Conversation) -> Option<String> {
        let owner = conv.owner.as_deref()?;
        self.config.agent(owner)?.email.clone()
    }

    fn lead_addresses(&self, conv: &Conversation) -> Vec<String> {
        let team = self
            .config
            .mailbox(&conv.mailbox)
            .and_then(|m| self.config.team(&m.team));
        team.map(|t| self.team_lead_addresses(t))
            .unwrap_or_default()
    }

    fn team_lead_addresses(&self, team: &TeamConfig) -> Vec<String> {
        team.leads
            .iter()
            .filter_map(|lead| match self.config.agent(lead) {
                Some(agent) => agent.email.clone(),
                None => Some(lead.clone()),
            })
            .collect()
    }

    /// Sends every pending mail whose attempt is due.
    pub async fn deliver_due(&self) -> Result<TickReport> {
        let mut report = TickReport::default();
        for mail in self.store.mail_due(self.clock.now())? {
            self.deliver(mail, &mut report).await?;
        }
        Ok(report)
    }

    async fn deliver(&self, mut mail: OutboxMail, report: &mut TickReport) -> Result<()> {
        let result = self.mailer.send(&mail.to, &mail.raw).await;
        let now = self.clock.now();
        match result {
            Ok(()) => {
                mail.state = OutboxState::Sent;
                mail.sent_at = Some(now);
                mail.last_error = None;
                report.sent += 1;
            }
            Err(SendError::Transient(reason)) => {
                mail.attempts += 1;
                mail.next_attempt = now + backoff(mail.attempts);
                mail.last_error = Some(reason);
                report.retrying += 1;
            }
            Err(SendError::Permanent(reason)) => {
                mail.attempts += 1;
                mail.last_error = Some(reason.clone());
                mail.state = OutboxState::Failed { reason };
                report.failed += 1;
            }
        }
        self.store
            .update_mail(&mail)
            .with_context(|| format!("record the outcome of mail {}", mail.key))?;
        log_outcome(&mail);
        Ok(())
    }
}

/// The clocks of a conversation that the policy tracks, each with its part of the key.
fn legs(policy: &Policy, conv: &Conversation) -> Vec<(String, Leg)> {
    let mut legs = vec![(
        "first".to_string(),
        Leg {
            target: Target::FirstResponse,
            started: conv.started,
            stopped: conv.first_response_at,
        },
    )];
    if let (Some(_), Some(_), Some(since)) = (
        policy.next_response,
        conv.first_response_at,
        conv.waiting_since,
    ) {
        // Each follow-up starts a new next-response clock with its own levels.
        let leg = Leg {
            target: Target::NextResponse,
            started: since,
            stopped: None,
        };
        legs.push((format!("next@{}", since.timestamp()), leg));
    }
    if policy.resolution.is_some() {
        let leg = Leg {
            target: Target::Resolution,
            started: conv.started,
            stopped: conv.closed_at,
        };
        legs.push(("resolution".to_string(), leg));
    }
    legs
}

/// Capped exponential back-off after `attempts` failures: 30 s, 1 min, 2 min ... 1 h.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    let secs = BACKOFF_BASE_SECS.saturating_mul(1 << doublings);
    Duration::seconds(secs.min(BACKOFF_CAP_SECS))
}

fn problems(list: &[crate::config::Problem]) -> String {
    let texts: Vec<String> = list.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

fn log_enqueued(mail: &OutboxMail) {
    match &mail.state {
        OutboxState::Failed { reason } => error!(
            key = %mail.key, conversation = %mail.conversation, %reason,
            "escalation cannot be sent"
        ),
        OutboxState::Skipped { reason } => debug!(key = %mail.key, %reason, "escalation skipped"),
        _ => debug!(key = %mail.key, message_id = %mail.message_id, "escalation queued"),
    }
}

fn log_outcome(mail: &OutboxMail) {
    let error = mail.last_error.as_deref().unwrap_or("");
    match &mail.state {
        OutboxState::Sent => info!(
            key = %mail.key, conversation = %mail.conversation, to = %mail.to.join(", "),
            "escalated"
        ),
        OutboxState::Pending if error.starts_with(LOGIN_REFUSED) => error!(
            key = %mail.key, attempts = mail.attempts, %error,
            "the SMTP server refused our login; fix [smtp] credentials, the mail will be retried"
        ),
        OutboxState::Pending => warn!(
            key = %mail.key, attempts = mail.attempts, next = %mail.next_attempt, %error,
            "escalation not sent, will retry"
        ),
        OutboxState::Failed { reason } => error!(
            key = %mail.key, conversation = %mail.conversation, %reason,
            "escalation refused by the SMTP server, giving up"
        ),
        OutboxState::Skipped { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cases = [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (50, 3600)];
        for (attempts, secs) in cases {
            assert_eq!(
                backoff(attempts),
                Duration::seconds(secs),
                "after {attempts}"
            );
        }
    }
}
