//! Prometheus metrics: a snapshot of the store per scrape, plus live counters the workers feed.
//!
//! This module owns the metric names (all prefixed `postroom_`) and the health rule shared by
//! `/metrics` and `/healthz`. Store-derived gauges (open conversations, quarantine, SLA clocks,
//! server contact) are computed afresh at each scrape from the store, so they are right even
//! after a restart. What only a running worker knows (reconnects, IDLE state, intake lag) lives
//! in [`LiveMetrics`], an `Arc`-shared set of counters the daemon hands to each worker as a
//! [`MailboxMetrics`].
//!
//! Escalation mail is counted from the store's outbox: `postroom_outbox_depth` (mails waiting
//! to be sent), `postroom_escalations_sent` and `postroom_escalations_failed` per mailbox.

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::{Config, MailboxConfig};
use crate::report::Clocks;
use crate::sla::State;
use crate::store::{ConversationState, OutboxState, Store, SyncState};

/// The content type of [`encode`]'s output (OpenMetrics text, which Prometheus reads natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the intake-lag histogram, seconds: from an IDLE push (about a second) to a
/// missed push caught by the poll or the reconcile (minutes).
const INTAKE_BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0];

/// Upper bounds of the handling histogram, seconds: postroom's own part of the latency, from
/// the server's news (IDLE ends) to the last move of that round answered. The goal is a p99
/// under 5 ms (issue 9), so the buckets are fine around it.
const HANDLING_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// The shortest silence from a server that counts as stale: catch-up and reconnects update the
/// last contact, and a quiet IDLE may legitimately say nothing for up to `idle_secs`.
const MIN_STALE: Duration = Duration::from_secs(300);

/// A mailbox label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailboxLabel {
    mailbox: String,
}

/// A mailbox and a state label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    mailbox: String,
    state: String,
}

/// A mailbox, an SLA policy and a clock state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlaLabel {
    mailbox: String,
    policy: String,
    state: String,
}

type HistogramFamily = Family<MailboxLabel, Histogram, fn() -> Histogram>;

fn intake_histogram() -> Histogram {
    Histogram::new(INTAKE_BUCKETS)
}

fn handling_histogram() -> Histogram {
    Histogram::new(HANDLING_BUCKETS)
}

/// Counters only a running daemon knows; clone freely, every clone shares the same values.
#[derive(Debug, Clone)]
pub struct LiveMetrics {
    reconnects: Family<MailboxLabel, Counter>,
    idle: Family<MailboxLabel, Gauge>,
    intake: HistogramFamily,
    handling: HistogramFamily,
}

impl Default for LiveMetrics {
    fn default() -> Self {
        LiveMetrics {
            reconnects: Family::default(),
            idle: Family::default(),
            intake: Family::new_with_constructor(intake_histogram),
            handling: Family::new_with_constructor(handling_histogram),
        }
    }
}

impl LiveMetrics {
    /// The handle one mailbox's worker updates.
    pub fn mailbox(&self, name: &str) -> MailboxMetrics {
        let label = MailboxLabel {
            mailbox: name.to_string(),
        };
        MailboxMetrics {
            reconnects: self.reconnects.get_or_create_owned(&label),
            idle: self.idle.get_or_create_owned(&label),
            intake: self.intake.get_or_create_owned(&label),
            handling: self.handling.get_or_create_owned(&label),
        }
    }
}

/// One mailbox's live metrics, as handed to its worker.
#[derive(Debug, Clone)]
pub struct MailboxMetrics {
    reconnects: Counter,
    idle: Gauge,
    intake: Histogram,
    handling: Histogram,
}

impl MailboxMetrics {
    /// A connection was lost and is being replaced.
    pub fn record_reconnect(&self) {
        self.reconnects.inc();
    }

    /// The inbox connection entered (`true`) or left (`false`) IDLE.
    pub fn set_idle(&self, idle: bool) {
        self.idle.set(i64::from(idle));
    }

    /// A message was decided `lag` after the server received it (INTERNALDATE to decision).
    pub fn observe_intake(&self, lag: Duration) {
        self.intake.observe(lag.as_secs_f64());
    }

    /// New mail was handled `took` after the server announced it: from the end of IDLE to
    /// the last move of that round answered.
    pub fn observe_handling(&self, took: Duration) {
        self.handling.observe(took.as_secs_f64());
    }
}

/// Why a mailbox is not healthy, or `Ok` when it is: the last connection attempt failed, the
/// server has never answered, or it has been silent for longer than the mailbox's IDLE and
/// polling should allow.
pub fn mailbox_health(
    mailbox: &MailboxConfig,
    config: &Config,
    sync: &SyncState,
    now: DateTime<Utc>,
) -> Result<(), String> {
    if let Some(error) = &sync.last_error {
        return Err(format!("last connection failed: {error}"));
    }
    let Some(contact) = sync.last_contact else {
        return Err("no contact with the server yet".into());
    };
    let stale = stale_after(mailbox, config);
    let silence = (now - contact).to_std().unwrap_or_default();
    if silence > stale {
        return Err(format!(
            "no contact with the server for {}s (limit {}s)",
            silence.as_secs(),
            stale.as_secs()
        ));
    }
    Ok(())
}

/// Twice the longest quiet a healthy connection may have (an IDLE round or a poll interval),
/// plus one command time-out, and never under [`MIN_STALE`].
fn stale_after(mailbox: &MailboxConfig, config: &Config) -> Duration {
    let server = config.server(&mailbox.server);
    let idle = server.map_or(0, |s| s.idle_secs);
    let timeout = server.map_or(0, |s| s.command_timeout_secs);
    let quiet = idle.max(mailbox.poll_secs);
    Duration::from_secs(quiet.saturating_mul(2).saturating_add(timeout)).max(MIN_STALE)
}

/// The store-derived families of one scrape.
#[derive(Default)]
struct Snapshot {
    conversations: Family<StateLabel, Gauge>,
    waiting: Family<MailboxLabel, Gauge>,
    unassigned: Family<MailboxLabel, Gauge>,
    oldest_waiting: Family<MailboxLabel, Gauge>,
    quarantined: Family<MailboxLabel, Gauge>,
    contact_age: Family<MailboxLabel, Gauge>,
    healthy: Family<MailboxLabel, Gauge>,
    sla: Family<SlaLabel, Gauge>,
    outbox: Family<MailboxLabel, Gauge>,
    sent: Family<MailboxLabel, Gauge>,
    failed: Family<MailboxLabel, Gauge>,
}

/// Reads the store and renders every metric in OpenMetrics text.
pub fn encode(
    config: &Config,
    clocks: &Clocks,
    store: &Store,
    live: &LiveMetrics,
    now: DateTime<Utc>,
) -> Result<String> {
    let snapshot = Snapshot::default();
    for mailbox in &config.mailboxes {
        snapshot.fill(config, clocks, store, mailbox, now)?;
    }
    snapshot.fill_outbox(config, store)?;
    let mut registry = Registry::with_prefix("postroom");
    snapshot.register(&mut registry);
    registry.register(
        "reconnects",
        "Connections replaced after a failure",
        live.reconnects.clone(),
    );
    registry.register(
        "idle",
        "1 while the inbox connection is in IDLE",
        live.idle.clone(),
    );
    registry.register(
        "intake_lag_seconds",
        "Time from server arrival to postroom's decision",
        live.intake.clone(),
    );
    registry.register(
        "handling_seconds",
        "Time from the server announcing new mail to postroom's move of it answered",
        live.handling.clone(),
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

impl Snapshot {
    fn fill(
        &self,
        config: &Config,
        clocks: &Clocks,
        store: &Store,
        mailbox: &MailboxConfig,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let name = mailbox.name.clone();
        let label = MailboxLabel {
            mailbox: name.clone(),
        };
        let state = |s: &str| StateLabel {
            mailbox: name.clone(),
            state: s.into(),
        };
        let (mut open, mut closed, mut waiting, mut unassigned) = (0, 0, 0, 0);
        let mut oldest: Option<DateTime<Utc>> = None;
        for conv in store.conversations(Some(&name))? {
            if conv.state == ConversationState::Closed {
                closed += 1;
                continue;
            }
            open += 1;
            unassigned += i64::from(conv.owner.is_none());
            if let Some(since) = conv.waiting_since {
                waiting += 1;
                oldest = Some(oldest.map_or(since, |o| o.min(since)));
            }
            if let Some(standing) = clocks.standing(&conv, now) {
                let clock = match standing.evaluation.state {
                    State::Warned => "at_risk",
                    State::Breached => "breached",
                    State::Running | State::Met => "running",
                };
                let label = SlaLabel {
                    mailbox: name.clone(),
                    policy: standing.policy,
                    state: clock.into(),
                };
                self.sla.get_or_create(&label).inc();
            }
        }
        self.conversations.get_or_create(&state("open")).set(open);
        self.conversations
            .get_or_create(&state("closed"))
            .set(closed);
        self.waiting.get_or_create(&label).set(waiting);
        self.unassigned.get_or_create(&label).set(unassigned);
        let oldest_secs = oldest.map_or(0, |o| (now - o).num_seconds().max(0));
        self.oldest_waiting.get_or_create(&label).set(oldest_secs);
        let quarantined = store.quarantined(Some(&name))?.len() as i64;
        self.quarantined.get_or_create(&label).set(quarantined);
        let sync = store.sync_state(&name)?;
        if let Some(contact) = sync.last_contact {
            self.contact_age
                .get_or_create(&label)
                .set((now - contact).num_seconds().max(0));
        }
        let healthy = mailbox_health(mailbox, config, &sync, now).is_ok();
        self.healthy.get_or_create(&label).set(i64::from(healthy));
        Ok(())
    }

    /// Escalation mail per mailbox, by outbox state.
    fn fill_outbox(&self, config: &Config, store: &Store) -> Result<()> {
        for mailbox in &config.mailboxes {
            let label = MailboxLabel {
                mailbox: mailbox.name.clone(),
            };
            self.outbox.get_or_create(&label).set(0);
            self.sent.get_or_create(&label).set(0);
            self.failed.get_or_create(&label).set(0);
        }
        for mail in store.outbox()? {
            let label = MailboxLabel {
                mailbox: mail.mailbox.clone(),
            };
            let family = match mail.state {
                OutboxState::Pending => &self.outbox,
                OutboxState::Sent => &self.sent,
                OutboxState::Failed { .. } => &self.failed,
                OutboxState::Skipped { .. } => continue,
            };
            family.get_or_create(&label).inc();
        }
        Ok(())
    }

    fn register(self, registry: &mut Registry) {
        registry.register(
            "outbox_depth",
            "Escalation mails waiting to be sent",
            self.outbox,
        );
        registry.register(
            "escalations_sent",
            "Escalation mails the server accepted",
            self.sent,
        );
        registry.register(
            "escalations_failed",
            "Escalation mails refused for good (see the log for why)",
            self.failed,
        );
        registry.register(
            "conversations",
            "Conversations by state",
            self.conversations,
        );
        registry.register(
            "waiting_conversations",
            "Open conversations waiting for an answer",
            self.waiting,
        );
        registry.register(
            "unassigned_conversations",
            "Open conversations without an owner",
            self.unassigned,
        );
        registry.register(
            "oldest_waiting_seconds",
            "Longest current wait for an answer",
            self.oldest_waiting,
        );
        registry.register(
            "quarantined_messages",
            "Messages set aside as unreadable",
            self.quarantined,
        );
        registry.register(
            "server_contact_age_seconds",
            "Time since the server last answered",
            self.contact_age,
        );
        registry.register(
            "mailbox_healthy",
            "1 when the mailbox passes the /healthz rule",
            self.healthy,
        );
        registry.register(
            "sla_open_conversations",
            "Open conversations by SLA clock state",
            self.sla,
        );
    }
}
