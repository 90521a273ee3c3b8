//! Turning raw mail into an [`Envelope`]: the facts that routing, threading and SLAs use.
//!
//! Parsing is done by mail-parser on bytes fetched with `BODY.PEEK` (headers whole, the body cut
//! at a configured cap). This module never sees IMAP and never touches the store. It also decides
//! a message's [identity](Envelope::identity): the Message-ID plus a fingerprint of stable
//! headers, never a UID, because Exchange gives a message a new UID when another client revises
//! it (MS-STANXIMAP 2.1.2). A parse that fails, or panics inside the parser, is reported as a
//! [`ParseFailure`] so the caller can quarantine that one message and go on with the rest.

use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How much of the first text part is kept for rules. Rules look at the start of a message;
/// keeping more only costs memory per message in flight.
pub const BODY_EXCERPT_CHARS: usize = 4096;

/// Headers beyond this count are not kept for header rules, so a message with a 200 KB header
/// block cannot make the envelope large.
const MAX_KEPT_HEADERS: usize = 200;

/// Header values longer than this are cut before they are kept.
const MAX_HEADER_VALUE: usize = 2048;

/// What kind of automatic mail a message is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Automated {
    /// Written by a person, as far as the headers tell.
    No,
    /// An out-of-office or other automatic reply (RFC 3834 `Auto-Submitted`, Exchange's
    /// `X-Auto-Response-Suppress` is deliberately NOT a marker).
    AutoReply,
    /// A delivery status notification (RFC 3464) or a mailer-daemon message.
    Bounce,
    /// A read receipt (RFC 8098 message disposition notification).
    ReadReceipt,
    /// Automatically generated but not a reply, such as a notification (`auto-generated`).
    Generated,
}

/// A sender or recipient address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// The display name, with control characters replaced by spaces.
    pub name: Option<String>,
    /// The address, lowercased.
    pub address: String,
}

impl Party {
    /// The domain part of the address.
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

/// The parsed facts of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The stable identity: see the module documentation.
    pub identity: String,
    /// The Message-ID without angle brackets, if the message has one.
    pub message_id: Option<String>,
    /// `X-Microsoft-Original-Message-ID`: the ID before Exchange Online rewrote it.
    pub original_message_id: Option<String>,
    /// In-Reply-To IDs.
    pub in_reply_to: Vec<String>,
    /// References IDs, oldest first.
    pub references: Vec<String>,
    /// The sender.
    pub from: Option<Party>,
    /// To recipients.
    pub to: Vec<Party>,
    /// Cc recipients.
    pub cc: Vec<Party>,
    /// The decoded subject on one line.
    pub subject: String,
    /// The sender's Date header: display only, never a clock start.
    pub date: Option<DateTime<Utc>>,
    /// The message's size in bytes as the server reported it, or as fetched.
    pub size: u64,
    /// Automatic-mail classification.
    pub automated: Automated,
    /// True when list headers (`List-Id`, `List-Unsubscribe`, `Precedence: list`) are present.
    pub mailing_list: bool,
    /// File names of attachments seen within the fetched part of the message.
    pub attachments: Vec<String>,
    /// The start of the first text part, for body rules.
    pub body_excerpt: String,
    /// Headers as (lowercased name, unfolded value), bounded in count and length.
    pub headers: Vec<(String, String)>,
}

/// Why a message could not become an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFailure {
    /// The parser gave up.
    #[error("the message could not be parsed as MIME")]
    Unparseable,
    /// It parsed, but has no From, Subject, Date or Message-ID to work with.
    #[error("no usable headers (no From, Subject, Date or Message-ID)")]
    NoUsableHeaders,
    /// The parser panicked; caught so only this message is affected.
    #[error("the MIME parser panicked on this message")]
    ParserPanicked,
    /// The server answered without the message's data (Exchange's "OK with no data").
    #[error("the server returned no data for this message")]
    NoData,
    /// Exchange replaced the message with its "retrieval failed" placeholder.
    #[error("the server could not convert this message (Exchange retrieval failure)")]
    RetrievalFailed,
}

/// Parses fetched bytes into an envelope. `size` is the server's RFC822.SIZE when known.
pub fn parse(raw: &[u8], size: Option<u64>) -> Result<Envelope, ParseFailure> {
    if raw.is_empty() {
        return Err(ParseFailure::NoData);
    }
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        MessageParser::default()
            .parse(raw)
            .map(|message| envelope_of(&message, raw, size))
    }));
    match parsed {
        Err(_) => Err(ParseFailure::ParserPanicked),
        Ok(None) => Err(ParseFailure::Unparseable),
        Ok(Some(result)) => result,
    }
}

fn envelope_of(
    message: &Message<'_>,
    raw: &[u8],
    size: Option<u64>,
) -> Result<Envelope, ParseFailure> {
    let message_id = message.message_id().and_then(clean_id);
    let subject = message.subject().map(one_line).unwrap_or_default();
    let from = message.from().and_then(first_party);
    let date = message
        .date()
        .and_then(|d| Utc.timestamp_opt(d.to_timestamp(), 0).single());
    if message_id.is_none() && from.is_none() && subject.is_empty() && date.is_none() {
        return Err(ParseFailure::NoUsableHeaders);
    }
    if is_retrieval_failure(&subject, from.as_ref()) {
        return Err(ParseFailure::RetrievalFailed);
    }
    let headers = kept_headers(message);
    let automated = classify(message, &headers, &subject, from.as_ref());
    let mut envelope = Envelope {
        identity: String::new(),
        original_message_id: header_text(message, "X-Microsoft-Original-Message-ID")
            .and_then(|v| clean_id(&v)),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        to: parties(message.to()),
        cc: parties(message.cc()),
        mailing_list: is_list(&headers),
        attachments: attachment_names(message),
        body_excerpt: message
            .body_text(0)
            .map(|text| text.chars().take(BODY_EXCERPT_CHARS).collect())
            .unwrap_or_default(),
        size: size.unwrap_or(raw.len() as u64),
        message_id,
        from,
        subject,
        date,
        automated,
        headers,
    };
    envelope.identity = identity(&envelope);
    Ok(envelope)
}

/// Exchange's placeholder for an item it cannot convert to MIME carries this subject line.
fn is_retrieval_failure(subject: &str, from: Option<&Party>) -> bool {
    subject.starts_with("Retrieval using the IMAP4 protocol failed")
        || (from.is_none() && subject.contains("Retrieval using the IMAP4 protocol failed"))
}

/// The identity: a hash over the Message-ID and headers that survive Exchange regenerating the
/// MIME. Without a Message-ID, the Received trace joins in so two identical appliance alerts
/// delivered separately stay two messages (field case BUG-13).
fn identity(envelope: &Envelope) -> String {
    let mut hasher = Sha256::new();
    let mut feed = |part: &str| {
        hasher.update(squash(part).as_bytes());
        hasher.update([0u8]);
    };
    feed(envelope.message_id.as_deref().unwrap_or(""));
    feed(
        envelope
            .from
            .as_ref()
            .map(|p| p.address.as_str())
            .unwrap_or(""),
    );
    feed(
        &envelope
            .date
            .map(|d| d.timestamp().to_string())
            .unwrap_or_default(),
    );
    feed(&envelope.subject);
    if envelope.message_id.is_none() {
        for (name, value) in &envelope.headers {
            if name == "received" || name == "to" {
                feed(value);
            }
        }
        feed(&envelope.body_excerpt);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    match &envelope.message_id {
        Some(_) => format!("m-{hex}"),
        None => format!("s-{hex}"),
    }
}

/// Collapses runs of white space so refolded headers hash the same.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Replaces control characters (CR, LF, NUL...) with spaces and trims: mail text must never be
/// able to start a new header line anywhere we reuse it.
pub fn one_line(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    squash(&cleaned)
}

/// Strips angle brackets and white space from a Message-ID; empty becomes `None`.
pub fn clean_id(raw: &str) -> Option<String> {
    let id = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty() && !id.chars().any(char::is_control)).then(|| id.to_string())
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(text) => text.split_whitespace().filter_map(clean_id).collect(),
        HeaderValue::TextList(list) => list.iter().filter_map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    }
}

fn header_text(message: &Message<'_>, name: &str) -> Option<String> {
    message.header_raw(name).map(|raw| raw.trim().to_string())
}

fn first_party(address: &Address<'_>) -> Option<Party> {
    address.iter().find_map(party)
}

fn parties(address: Option<&Address<'_>>) -> Vec<Party> {
    address
        .map(|a| a.iter().filter_map(party).take(100).collect())
        .unwrap_or_default()
}

fn party(addr: &mail_parser::Addr<'_>) -> Option<Party> {
    let address = addr
        .address
        .as_deref()
        .map(|a| one_line(a).to_lowercase())?;
    if address.is_empty() {
        return None;
    }
    let name = addr.name.as_deref().map(one_line).filter(|n| !n.is_empty());
    Some(Party { name, address })
}

fn kept_headers(message: &Message<'_>) -> Vec<(String, String)> {
    message
        .headers_raw()
        .take(MAX_KEPT_HEADERS)
        .map(|(name, value)| {
            let value: String = one_line(value).chars().take(MAX_HEADER_VALUE).collect();
            (name.to_ascii_lowercase(), value)
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn is_list(headers: &[(String, String)]) -> bool {
    header(headers, "list-id").is_some()
        || header(headers, "list-unsubscribe").is_some()
        || header(headers, "precedence").is_some_and(|p| p.eq_ignore_ascii_case("list"))
}

/// Subject prefixes of automatic replies in the languages Exchange and common clients use.
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "automatic reply:",
    "auto reply:",
    "autoreply:",
    "out of office",
    "automatische antwort:",
    "abwesenheitsnotiz",
    "réponse automatique",
    "respuesta automática:",
    "risposta automatica:",
    "automatisch antwoord:",
    "autosvar:",
    "automaattinen vastaus:",
];

fn classify(
    message: &Message<'_>,
    headers: &[(String, String)],
    subject: &str,
    from: Option<&Party>,
) -> Automated {
    if let Some(kind) = report_kind(message) {
        return kind;
    }
    let auto_submitted = header(headers, "auto-submitted").map(str::to_ascii_lowercase);
    match auto_submitted.as_deref() {
        Some(v) if v.starts_with("auto-replied") => return Automated::AutoReply,
        Some(v) if v.starts_with("auto-generated") || v.starts_with("auto-notified") => {
            return Automated::Generated
        }
        _ => {}
    }
    let autoreply_header = ["x-autoreply", "x-autorespond", "x-auto-reply"]
        .iter()
        .any(|name| header(headers, name).is_some());
    let precedence = header(headers, "precedence").map(str::to_ascii_lowercase);
    let lower_subject = subject.to_lowercase();
    if autoreply_header
        || precedence.as_deref() == Some("auto_reply")
        || AUTO_REPLY_SUBJECTS
            .iter()
            .any(|p| lower_subject.starts_with(p))
    {
        return Automated::AutoReply;
    }
    let daemon = from.is_some_and(|p| {
        let local = p.address.split('@').next().unwrap_or("");
        local.eq_ignore_ascii_case("mailer-daemon") || local.eq_ignore_ascii_case("postmaster")
    });
    if daemon {
        return Automated::Bounce;
    }
    Automated::No
}

/// Delivery reports and read receipts by their MIME type (RFC 6522 multipart/report).
fn report_kind(message: &Message<'_>) -> Option<Automated> {
    let ctype = message.root_part().content_type()?;
    if !ctype.ctype().eq_ignore_ascii_case("multipart")
        || !ctype
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    {
        return None;
    }
    match ctype
        .attribute("report-type")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("disposition-notification") => Some(Automated::ReadReceipt),
        Some("delivery-status") | Some("delivery-status-notification") => Some(Automated::Bounce),
        _ => Some(Automated::Generated),
    }
}

fn attachment_names(message: &Message<'_>) -> Vec<String> {
    message
        .attachments()
        .take(100)
        .filter_map(|part| part.attachment_name().map(one_line))
        .filter(|name| !name.is_empty())
        .collect()
}

/// Lowercases a subject and strips reply and forward prefixes in the languages Outlook uses
/// (Re, Fwd, FW, AW, WG, SV, VS, TR, RV, Doorst, VB, I), including counted forms like `RE[2]:`.
pub fn normalized_subject(subject: &str) -> String {
    let mut rest = subject.trim();
    while let Some(stripped) = strip_prefix(rest) {
        rest = stripped.trim_start();
    }
    squash(rest).to_lowercase()
}

const PREFIXES: &[&str] = &[
    "re", "fwd", "fw", "aw", "wg", "sv", "vs", "tr", "rv", "doorst", "vb", "i", "antw", "r",
];

fn strip_prefix(text: &str) -> Option<&str> {
    let head_len = text.find(':')?;
    let head = &text[..head_len];
    let word = head.split('[').next().unwrap_or(head).trim();
    let counted = head[word.len()..].trim();
    let counted_ok = counted.is_empty()
        || (counted.starts_with('[')
            && counted.ends_with(']')
            && counted[1..counted.len() - 1]
                .chars()
                .all(|c| c.is_ascii_digit()));
    let known = PREFIXES.iter().any(|p| word.eq_ignore_ascii_case(p));
    (known && counted_ok).then(|| &text[head_len + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(headers: &str) -> Vec<u8> {
        format!("{headers}\r\n\r\nHello there.\r\n").into_bytes()
    }

    #[test]
    fn ordinary_message_gives_its_ids_and_sender() {
        let raw = msg(
            "From: Ann Customer <Ann@Customer.example.test>\r\nTo: support@example.test\r\n\
                       Subject: Printer down\r\nMessage-ID: <abc@customer.example.test>\r\n\
                       In-Reply-To: <p1@x.test>\r\nReferences: <p0@x.test> <p1@x.test>\r\n\
                       Date: Mon, 10 Mar 2025 09:00:00 +0100",
        );
        let env = parse(&raw, None).unwrap();
        assert_eq!(env.message_id.as_deref(), Some("abc@customer.example.test"));
        assert_eq!(
            env.from.as_ref().unwrap().address,
            "ann@customer.example.test"
        );
        assert_eq!(env.from.as_ref().unwrap().domain(), "customer.example.test");
        assert_eq!(env.in_reply_to, vec!["p1@x.test"]);
        assert_eq!(env.references, vec!["p0@x.test", "p1@x.test"]);
        assert_eq!(env.automated, Automated::No);
        assert!(env.identity.starts_with("m-"));
    }

    #[test]
    fn identity_survives_refolding_but_not_a_new_message_id() {
        let a = parse(
            &msg("From: a@x.test\r\nSubject: one two\r\nMessage-ID: <1@x>"),
            None,
        )
        .unwrap();
        let b = parse(
            &msg("From: a@x.test\r\nSubject: one\r\n two\r\nMessage-ID: <1@x>"),
            None,
        )
        .unwrap();
        let c = parse(
            &msg("From: a@x.test\r\nSubject: one two\r\nMessage-ID: <2@x>"),
            None,
        )
        .unwrap();
        assert_eq!(a.identity, b.identity);
        assert_ne!(a.identity, c.identity);
    }

    #[test]
    fn alerts_without_message_id_differ_by_date() {
        let a = parse(
            &msg("From: scanner@x.test\r\nSubject: Scan\r\nDate: Mon, 10 Mar 2025 09:00:00 +0000"),
            None,
        )
        .unwrap();
        let b = parse(
            &msg("From: scanner@x.test\r\nSubject: Scan\r\nDate: Mon, 10 Mar 2025 09:05:00 +0000"),
            None,
        )
        .unwrap();
        assert!(a.identity.starts_with("s-"));
        assert_ne!(a.identity, b.identity);
    }

    #[test]
    fn automatic_mail_is_recognised_but_suppress_header_is_not_a_marker() {
        let ooo = msg("From: lead@x.test\r\nSubject: Automatic reply: Escalation\r\nAuto-Submitted: auto-replied");
        assert_eq!(parse(&ooo, None).unwrap().automated, Automated::AutoReply);
        let human = msg("From: a@x.test\r\nSubject: Question\r\nX-Auto-Response-Suppress: All");
        assert_eq!(parse(&human, None).unwrap().automated, Automated::No);
        let daemon = msg("From: MAILER-DAEMON@x.test\r\nSubject: Undeliverable");
        assert_eq!(parse(&daemon, None).unwrap().automated, Automated::Bounce);
    }

    #[test]
    fn subject_text_never_keeps_line_breaks() {
        let raw =
            msg("From: a@x.test\r\nSubject: =?utf-8?B?UHJpbnRlciBkb3duDQpCY2M6IGV2aWxAeC50ZXN0?=");
        let env = parse(&raw, None).unwrap();
        assert!(!env.subject.contains('\n') && !env.subject.contains('\r'));
        assert_eq!(env.subject, "Printer down Bcc: evil@x.test");
    }

    #[test]
    fn empty_or_headerless_input_is_a_failure_not_a_panic() {
        assert_eq!(parse(b"", None), Err(ParseFailure::NoData));
        assert!(parse(b"Received: from a\r\n by b", None).is_err());
        assert!(parse(&[0u8, 159, 146, 150], None).is_err());
    }

    #[test]
    fn reply_and_forward_prefixes_are_stripped_in_many_languages() {
        for subject in [
            "Re: Invoice 7",
            "AW: WG: Invoice 7",
            "RE[2]: invoice 7",
            "Fwd:Invoice 7",
            "SV: VS: Invoice  7",
            "TR: Invoice 7",
            "Doorst: Invoice 7",
        ] {
            assert_eq!(normalized_subject(subject), "invoice 7", "{subject}");
        }
        assert_eq!(normalized_subject("Reminder: pay"), "reminder: pay");
    }
}
