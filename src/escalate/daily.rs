//! The once-a-day mails of the escalation tick: a policy's daily reminder about a breached clock,
//! and a team's daily digest to its leads. When they are due is decided by the pure functions in
//! [`crate::sla`] ([`Policy::reminder_due`], [`sla::slot_due`]); this part picks recipients,
//! gathers what a digest lists, and puts the mails into the outbox under per-day keys.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::{Escalator, Planned};
use crate::calendar::Calendar;
use crate::config::TeamConfig;
use crate::notify::{self, Digest, Notice, NoticeKind};
use crate::sla::{self, Leg, Level, Policy, Recipient, State};
use crate::store::{Conversation, ConversationState, OutboxMail, OutboxState};

/// One clock of one conversation, as the reminder planner sees it.
pub(super) struct ClockView<'a> {
    /// The conversation's policy.
    pub policy: &'a Policy,
    /// The calendar the policy counts in.
    pub calendar: &'a Calendar,
    /// The clock's part of the outbox key (`first`, `next@…`, `resolution`).
    pub tag: &'a str,
    /// The clock.
    pub leg: Leg,
    /// Its deadline.
    pub breach_at: DateTime<Utc>,
}

impl Escalator {
    /// Today's reminder about a breached clock, if one is due. It goes to the recipients of the
    /// latest escalation level that was queued for this clock, or to the lead when none was.
    pub(super) fn planned_reminder(
        &self,
        conv: &Conversation,
        view: &ClockView<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Planned>> {
        if view.policy.reminder.is_none() {
            return Ok(None);
        }
        let last = self.last_level_mail(conv, view)?;
        let due = view
            .policy
            .reminder_due(view.calendar, &view.leg, last.map(|(_, at)| at), now)
            .with_context(|| format!("conversation {}: sla {}", conv.id, view.policy.name))?;
        let Some(day) = due else {
            return Ok(None);
        };
        let to = match last {
            Some((level, _)) => view.policy.escalations[level].to.clone(),
            None => vec![Recipient::Lead],
        };
        let overdue = view.calendar.business_between(view.breach_at, now);
        let kind = NoticeKind::Reminder { overdue };
        let notice = self.notice(conv, kind, &view.leg, view.breach_at, view.calendar, now);
        Ok(Some(Planned {
            key: format!("{}/{}/reminder-{day}", conv.id, view.tag),
            notice,
            to,
        }))
    }

    /// The highest escalation level of this clock that is in the outbox, with when it was
    /// queued.
    fn last_level_mail(
        &self,
        conv: &Conversation,
        view: &ClockView<'_>,
    ) -> Result<Option<(usize, DateTime<Utc>)>> {
        for level in (0..view.policy.escalations.len()).rev() {
            let key = format!(
                "{}/{}/{}",
                conv.id,
                view.tag,
                Level::Escalation(level).key()
            );
            if let Some(mail) = self.store.mail(&key)? {
                return Ok(Some((level, mail.created)));
            }
        }
        Ok(None)
    }

    /// Queues today's digest of every team that has one and whose digest time has come.
    pub(super) fn enqueue_digests(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut queued = 0;
        for team in &self.config.teams {
            let Some(time) = self.digests.get(&team.name) else {
                continue;
            };
            let calendar = self.calendar(team.calendar.as_deref());
            let Some(day) = sla::slot_due(calendar, *time, now) else {
                continue;
            };
            let key = format!("digest/{}/{day}", team.name);
            if self.store.mail_known(&key)? {
                continue;
            }
            let entries = self.digest_entries(team, now)?;
            let digest = Digest {
                team: team.name.clone(),
                date: day,
                entries,
            };
            if self.enqueue_digest(team, key, &digest, now)? {
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// The team's open conversations with a clock past its warning point or deadline and still
    /// running, one notice each (its most pressing clock), oldest first.
    fn digest_entries(&self, team: &TeamConfig, now: DateTime<Utc>) -> Result<Vec<Notice>> {
        let mut entries = Vec::new();
        for conv in self.store.conversations(None)? {
            if conv.state != ConversationState::Open {
                continue;
            }
            let Some(mailbox) = self.config.mailbox(&conv.mailbox) else {
                continue;
            };
            if mailbox.team != team.name {
                continue;
            }
            let Some(policy) = self.policy_for(&conv, mailbox, Some(team)) else {
                continue;
            };
            let calendar = self.calendar(sla::calendar_name(policy, Some(mailbox), Some(team)));
            let mut pressing: Option<Notice> = None;
            for (_, leg) in super::legs(policy, &conv) {
                let eval = policy
                    .evaluate(calendar, &leg, now)
                    .with_context(|| format!("conversation {}: sla {}", conv.id, policy.name))?;
                let Some(eval) = eval else { continue };
                let running = leg.stopped.is_none_or(|at| at > now);
                let kind = match eval.state {
                    State::Warned => NoticeKind::Warning,
                    State::Breached if running => NoticeKind::Breach { level: 0 },
                    _ => continue,
                };
                let notice = self.notice(&conv, kind, &leg, eval.breach_at, calendar, now);
                if pressing
                    .as_ref()
                    .is_none_or(|p| notice.deadline < p.deadline)
                {
                    pressing = Some(notice);
                }
            }
            entries.extend(pressing);
        }
        entries.sort_by(|a, b| (a.started, &a.conversation).cmp(&(b.started, &b.conversation)));
        Ok(entries)
    }

    /// Stores one digest: a mail when it lists anything and the team has leads to send it to,
    /// otherwise a record that the day was handled.
    fn enqueue_digest(
        &self,
        team: &TeamConfig,
        key: String,
        digest: &Digest,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let to = self.team_lead_addresses(team);
        let message_id = self
            .origin
            .new_message_id(&format!("digest-{}", team.name), now);
        let (raw, state) = if digest.entries.is_empty() {
            let reason = "nothing to report".to_string();
            (Vec::new(), OutboxState::Skipped { reason })
        } else if to.is_empty() {
            let reason = "nobody to send it to: the team has no leads with an address".to_string();
            (Vec::new(), OutboxState::Failed { reason })
        } else {
            let raw = notify::build_digest(digest, &self.origin, &to, &message_id, now)
                .with_context(|| format!("team {}: build the digest", team.name))?;
            (raw, OutboxState::Pending)
        };
        let mailbox = self
            .config
            .mailboxes
            .iter()
            .find(|m| m.team == team.name)
            .map_or_else(|| team.name.clone(), |m| m.name.clone());
        let mail = OutboxMail {
            key,
            conversation: String::new(),
            mailbox,
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
            super::log_enqueued(&mail);
        }
        Ok(added)
    }
}
