//! The escalation outbox: each mail under its idempotency key, formatted once.

use super::*;

/// Where an outbox mail stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OutboxState {
    /// Not yet accepted by the SMTP server; tried again at `next_attempt`.
    Pending,
    /// The server answered 250 to the end of DATA.
    Sent,
    /// Given up: a permanent refusal, or nobody to send it to.
    Failed {
        /// Why, for the operator.
        reason: String,
    },
    /// Handled without a mail: everyone it was for hears of it another way (the leads' daily
    /// digest), or there was nothing to tell (a digest with nothing in it). The key stays
    /// taken, so turning the digest off later sends nothing already handled.
    Skipped {
        /// Why, for the operator.
        reason: String,
    },
}

/// One escalation mail in the outbox, formatted once at enqueue so every retry sends the same
/// bytes with the same Message-ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMail {
    /// The idempotency key: conversation, clock and level (see `escalate`).
    pub key: String,
    /// The conversation it is about.
    pub conversation: String,
    /// The mailbox of that conversation.
    pub mailbox: String,
    /// Our Message-ID, without angle brackets.
    pub message_id: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The complete message as it goes over the wire.
    pub raw: Vec<u8>,
    /// Handling state.
    #[serde(flatten)]
    pub state: OutboxState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub created: DateTime<Utc>,
    /// When it may be tried next.
    pub next_attempt: DateTime<Utc>,
    /// When the server accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// The last error, for `status` and logs.
    pub last_error: Option<String>,
}

impl Store {
    // The outbox: escalation mail, one record per idempotency key, kept after sending so the
    // key stays taken for good.

    /// Adds a mail to the outbox unless its key is already there (pending, sent or failed), and
    /// makes it durable before returning, so no send is ever attempted for an unrecorded mail.
    /// Returns true when the mail was added.
    pub fn enqueue_mail(&self, mail: &OutboxMail) -> Result<bool> {
        let bytes = serde_json::to_vec(mail).context("encode an outbox mail")?;
        let swapped = self
            .outbox
            .compare_and_swap(mail.key.as_bytes(), None as Option<&[u8]>, Some(bytes))
            .context("write the outbox")?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.outbox.flush().context("flush the outbox")?;
        Ok(true)
    }

    /// True when a mail with this key was ever enqueued.
    pub fn mail_known(&self, key: &str) -> Result<bool> {
        self.outbox
            .contains_key(key.as_bytes())
            .context("read the outbox")
    }

    /// One outbox mail by key.
    pub fn mail(&self, key: &str) -> Result<Option<OutboxMail>> {
        get_json(&self.outbox, key.as_bytes())
    }

    /// Every outbox mail, in key order.
    pub fn outbox(&self) -> Result<Vec<OutboxMail>> {
        scan_json(&self.outbox, b"")
    }

    /// Pending mails whose next attempt is due at `now`.
    pub fn mail_due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxMail>> {
        let all = self.outbox()?;
        Ok(all
            .into_iter()
            .filter(|m| m.state == OutboxState::Pending && m.next_attempt <= now)
            .collect())
    }

    /// Writes a mail's new state (after an attempt) and makes it durable: a mail marked sent
    /// must stay sent across a crash, or it would go out twice.
    pub fn update_mail(&self, mail: &OutboxMail) -> Result<()> {
        let bytes = serde_json::to_vec(mail).context("encode an outbox mail")?;
        self.outbox
            .insert(mail.key.as_bytes(), bytes)
            .context("write the outbox")?;
        self.outbox.flush().context("flush the outbox")?;
        Ok(())
    }
}
