//! Escalation mail: what it says, how it is built, how it is sent, and how to recognise it.
//!
//! This module owns the outgoing side of SLA escalations. [`build`] turns a [`Notice`] into the
//! bytes of one MIME message (text and HTML parts) with lettre's header types, so nothing taken
//! from a customer's mail (subject, sender) can start a header line or smuggle in markup (field
//! case BUG-30). [`Mailer`] hands those bytes to the `[smtp]` server on a fresh connection each
//! time and tells transient failures from permanent ones ([`SendError`]); the outbox in the store
//! and the retry policy live in [`crate::escalate`]. [`is_own_mail`] recognises our escalations
//! and any answer to them when they come back into a watched mailbox (BUG-15, BUG-18), so they
//! never become work.
//!
//! Every escalation carries its own Message-ID `<c12.9f3e…@postroom.example.test>`, whose domain
//! is `postroom.` plus the domain of `from`, the same ID in `References` (Exchange Online rewrites
//! Message-ID but leaves References alone), and a subject token `[postroom c12]` naming the
//! conversation.

mod digest;
mod smtp;

use std::time::SystemTime;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;

use crate::message::{one_line, Automated, Envelope};
pub use digest::{build_digest, digest_subject, Digest};
pub use smtp::{Mailer, SendError, LOGIN_REFUSED};

/// The first label of the domain of every Message-ID we generate.
const ID_DOMAIN_LABEL: &str = "postroom.";

/// The word that opens our subject token, as in `[postroom c12]`.
const SUBJECT_TOKEN: &str = "[postroom ";

/// How many characters of the customer's subject are quoted in ours. Enough to recognise the
/// conversation; the whole line stays far below the 998-octet limit of RFC 5322 §2.1.1.
const SUBJECT_QUOTE_CHARS: usize = 120;

/// What kind of notice a mail is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// The owner is warned before the deadline.
    Warning,
    /// The deadline passed; `level` is the escalation level's index.
    Breach {
        /// The escalation level, 0 for the first.
        level: usize,
    },
    /// Nobody has taken the conversation.
    Unassigned,
    /// The daily reminder about a breached clock that is still running.
    Reminder {
        /// Business time since the deadline.
        overdue: Duration,
    },
}

/// Everything one escalation mail says. Text fields may hold anything a customer wrote.
#[derive(Debug, Clone)]
pub struct Notice {
    /// What kind of notice.
    pub kind: NoticeKind,
    /// Which clock: "first response", "next response" or "resolution".
    pub clock: String,
    /// The conversation id, such as `c12`.
    pub conversation: String,
    /// The mailbox it lives in.
    pub mailbox: String,
    /// Its owner, as shown to people, if any.
    pub owner: Option<String>,
    /// The customer, as stored (untrusted text).
    pub sender: Option<String>,
    /// The customer's subject (untrusted text).
    pub subject: String,
    /// When the clock started.
    pub started: DateTime<Utc>,
    /// Business time used so far.
    pub age: Duration,
    /// The deadline (for an unassigned alert: when the alert fell due).
    pub deadline: DateTime<Utc>,
    /// The calendar's zone, for showing times.
    pub timezone: Tz,
}

/// Who an escalation comes from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The address, the shared mailbox.
    pub address: String,
    /// The display name.
    pub name: String,
}

impl Origin {
    /// The origin configured in `[smtp]`.
    pub fn from_config(smtp: &crate::config_smtp::SmtpConfig) -> Origin {
        Origin {
            address: smtp.from.clone(),
            name: smtp.from_name.clone(),
        }
    }

    /// A new Message-ID (without angle brackets) for a mail about `conversation`. Unique per
    /// call: the time and a random part keep two daemons or two runs from colliding.
    pub fn new_message_id(&self, conversation: &str, now: DateTime<Utc>) -> String {
        let domain = self
            .address
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("localhost");
        let stamp = now.timestamp_millis();
        let nonce = fastrand::u64(..);
        let conversation = conversation.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        format!("{conversation}.{stamp:x}.{nonce:016x}@{ID_DOMAIN_LABEL}{domain}")
    }
}

/// The subject of an escalation: our token, what happened, and the customer's subject on one
/// line and shortened.
pub fn subject(notice: &Notice) -> String {
    let quoted: String = one_line(&notice.subject)
        .chars()
        .take(SUBJECT_QUOTE_CHARS)
        .collect();
    // Text shaped like an RFC 2047 encoded-word (`=?utf-8?B?…?=`) would go out as it is in an
    // ASCII subject, and the lead's mail client would decode it into other words than the
    // customer wrote. A word joiner after `=` keeps what is shown, and makes the subject
    // non-ASCII, so it is sent encoded and the characters arrive literally (found by fuzzing).
    let quoted = quoted.replace("=?", "=\u{2060}?");
    let what = match notice.kind {
        NoticeKind::Warning => format!("{} due soon", notice.clock),
        NoticeKind::Breach { level: 0 } => format!("{} overdue", notice.clock),
        NoticeKind::Breach { level } => format!("{} overdue (level {})", notice.clock, level + 1),
        NoticeKind::Unassigned => "waiting without an owner".to_string(),
        NoticeKind::Reminder { .. } => format!("reminder: {} still overdue", notice.clock),
    };
    let token = one_line(&notice.conversation);
    format!("{SUBJECT_TOKEN}{token}] {what}: {quoted}")
}

/// Builds the complete message. `message_id` is without angle brackets.
pub fn build(
    notice: &Notice,
    origin: &Origin,
    to: &[String],
    message_id: &str,
    date: DateTime<Utc>,
) -> Result<Vec<u8>> {
    let body = MultiPart::alternative_plain_html(text_body(notice), html_body(notice));
    assemble(&subject(notice), body, origin, to, message_id, date)
}

/// The headers every mail of ours carries, around `body`. `subject` must already be one line.
fn assemble(
    subject: &str,
    body: MultiPart,
    origin: &Origin,
    to: &[String],
    message_id: &str,
    date: DateTime<Utc>,
) -> Result<Vec<u8>> {
    let from_address = origin.address.parse().context("the [smtp] from address")?;
    let mut builder = Message::builder()
        .from(Mailbox::new(Some(one_line(&origin.name)), from_address))
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .references(format!("<{message_id}>"))
        .date(SystemTime::from(date))
        // RFC 3834 §5: a generated message; responders must not answer it (BUG-18).
        .raw_header(fixed_header("Auto-Submitted", "auto-generated"))
        // Exchange's own switch: no out-of-office or other automatic reply to this message.
        .raw_header(fixed_header("X-Auto-Response-Suppress", "All"))
        .raw_header(fixed_header("Precedence", "bulk"));
    for address in to {
        let mailbox = address
            .parse()
            .with_context(|| format!("recipient `{}`", one_line(address)))?;
        builder = builder.to(Mailbox::new(None, mailbox));
    }
    let message = builder
        .multipart(body)
        .context("build the escalation mail")?;
    Ok(message.formatted())
}

fn fixed_header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

/// The facts of a notice as (label, value) lines, shared by both parts and by the digest.
fn facts(notice: &Notice) -> Vec<(&'static str, String)> {
    let when = |t: DateTime<Utc>| {
        t.with_timezone(&notice.timezone)
            .format("%a %Y-%m-%d %H:%M %Z")
    };
    let deadline_label = match notice.kind {
        NoticeKind::Warning => "Deadline",
        NoticeKind::Breach { .. } | NoticeKind::Reminder { .. } => "Deadline was",
        NoticeKind::Unassigned => "Alert due",
    };
    let mut facts = vec![
        ("Mailbox", one_line(&notice.mailbox)),
        ("Conversation", one_line(&notice.conversation)),
        (
            "Owner",
            notice.owner.as_deref().map_or("nobody".into(), one_line),
        ),
        (
            "From",
            notice.sender.as_deref().map_or("unknown".into(), one_line),
        ),
        ("Subject", one_line(&notice.subject)),
        ("Waiting since", when(notice.started).to_string()),
        ("Business time used", business_time(notice.age)),
        (deadline_label, when(notice.deadline).to_string()),
    ];
    if let NoticeKind::Reminder { overdue } = notice.kind {
        facts.push(("Overdue by (business time)", business_time(overdue)));
    }
    facts
}

fn headline(notice: &Notice) -> String {
    match notice.kind {
        NoticeKind::Warning => format!(
            "The {} deadline for this conversation is near. Please answer it, or hand it to a \
             colleague who can.",
            notice.clock
        ),
        NoticeKind::Breach { .. } => format!(
            "The {} deadline for this conversation has passed. Please make sure someone \
             answers it now, or reassign it in Outlook by moving it to another agent's folder.",
            notice.clock
        ),
        NoticeKind::Unassigned => "This conversation is waiting without an owner. Please \
             assign it by moving it into an agent's folder under Assigned."
            .to_string(),
        NoticeKind::Reminder { overdue } => format!(
            "Reminder: the {} deadline for this conversation passed {} of business time ago \
             and it is still unanswered. Please make sure someone answers it today, or \
             reassign it in Outlook by moving it to another agent's folder.",
            notice.clock,
            business_time(overdue)
        ),
    }
}

fn text_body(notice: &Notice) -> String {
    let mut text = headline(notice);
    text.push_str("\n\n");
    for (label, value) in facts(notice) {
        text.push_str(&format!("{label}: {value}\n"));
    }
    text.push_str("\nThis message was sent automatically by postroom; replies are not tracked.\n");
    text
}

fn html_body(notice: &Notice) -> String {
    let mut html = String::from("<!DOCTYPE html><html><body>\n");
    html.push_str(&format!(
        "<p>{}</p>\n<table>\n",
        escape_html(&headline(notice))
    ));
    for (label, value) in facts(notice) {
        let row = format!(
            "<tr><th align=\"left\">{label}</th><td>{}</td></tr>\n",
            escape_html(&value)
        );
        html.push_str(&row);
    }
    html.push_str("</table>\n<p>This message was sent automatically by postroom; replies are not ");
    html.push_str("tracked.</p>\n</body></html>\n");
    html
}

/// Escapes the five characters that carry meaning in HTML text and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Business time as `3h 05m`.
fn business_time(age: Duration) -> String {
    let minutes = age.num_minutes().max(0);
    format!("{}h {:02}m", minutes / 60, minutes % 60)
}

/// True for one of our escalations or anything answering one: its Message-ID (or the ID before
/// Exchange rewrote it), In-Reply-To or References holds an ID in our domain, or its subject
/// carries our token. Such mail must never become work or start an SLA clock; an out-of-office
/// reply from a lead (BUG-18a) and a vendor's acknowledgement of our mail (BUG-18b) are caught
/// by the ID, a lead's reply through Exchange (BUG-15b) by the token.
///
/// The token alone is trusted only when the message also looks like a reply or is automatic,
/// so a customer who pastes `[postroom c1]` into a new mail's subject is still served.
pub fn is_own_mail(envelope: &Envelope) -> bool {
    let ids = envelope
        .message_id
        .iter()
        .chain(&envelope.original_message_id)
        .chain(&envelope.in_reply_to)
        .chain(&envelope.references);
    if ids.into_iter().any(|id| is_own_id(id)) {
        return true;
    }
    let replying = !envelope.in_reply_to.is_empty()
        || !envelope.references.is_empty()
        || envelope.automated != Automated::No;
    replying && has_token(&envelope.subject)
}

/// True for a Message-ID whose domain is ours (`…@postroom.<domain>`).
pub fn is_own_id(id: &str) -> bool {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    id.rsplit_once('@').is_some_and(|(_, domain)| {
        // `get` rather than indexing: mail text is not ours, and a multi-byte character across
        // the label's end must give "no", not a panic.
        domain.len() > ID_DOMAIN_LABEL.len()
            && domain
                .get(..ID_DOMAIN_LABEL.len())
                .is_some_and(|label| label.eq_ignore_ascii_case(ID_DOMAIN_LABEL))
    })
}

/// True when a subject carries `[postroom c<digits>]`, in any letter case.
fn has_token(subject: &str) -> bool {
    let lower = subject.to_ascii_lowercase();
    lower.match_indices(SUBJECT_TOKEN).any(|(at, _)| {
        let rest = &lower[at + SUBJECT_TOKEN.len()..];
        let Some(id) = rest.split(']').next().filter(|_| rest.contains(']')) else {
            return false;
        };
        id.strip_prefix('c')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests;
