//! Turning raw mail into an [`Envelope`]: the facts that routing, threading and SLAs use.
//!
//! Parsing is done by mail-parser on bytes fetched with `BODY.PEEK` (headers whole, the body cut
//! at a configured cap). This module never sees IMAP and never touches the store. It also decides
//! a message's [identity](Envelope::identity): the Message-ID plus a fingerprint of stable
//! headers, never a UID, because Exchange gives a message a new UID when another client revises
//! it (MS-STANXIMAP 2.1.2). A parse that fails, or panics inside the parser, is reported as a
//! [`ParseFailure`] so the caller can quarantine that one message and go on with the rest.
//!
//! Mail is hostile input. Before the parser runs, `prepare` caps what it is given (size, number
//! of parts, nesting depth) and repairs CR-only line endings; after it runs, every field of the
//! envelope is capped in length and count, and every field meant to be one line has its control
//! characters replaced, because subjects and names end up in log lines, escalation subjects and
//! HTML (field case BUG-30). `classify` decides whether a message was sent automatically.

mod classify;
mod parts;
mod prepare;

use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{Address, HeaderValue, Message, MessageParser};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use prepare::{MAX_MIME_CONTAINERS, MAX_MIME_DELIMITERS, MAX_PARSE_BYTES};

/// How much of the first text part is kept for rules. Rules look at the start of a message;
/// keeping more only costs memory per message in flight.
pub const BODY_EXCERPT_CHARS: usize = 4096;

/// Headers beyond this count are not kept for header rules, so a message with a 200 KB header
/// block cannot make the envelope large.
pub const MAX_KEPT_HEADERS: usize = 200;

/// Header values longer than this (in characters) are cut before they are kept.
pub const MAX_HEADER_VALUE: usize = 2048;

/// Subjects are cut to this many characters. Outlook stops at 255, so no real subject is cut; a
/// 200 KB subject costs nothing downstream.
pub const MAX_SUBJECT_CHARS: usize = 1000;

/// The most attachment names kept.
pub const MAX_ATTACHMENTS: usize = 100;

/// The most entries kept in each list of IDs (References, In-Reply-To) and of recipients (To,
/// Cc). Threading needs the first and the last References entries (the thread's root and the
/// direct parent); a real list is a few dozen long.
pub const MAX_IDS: usize = 100;

/// Longer Message-IDs are not IDs: RFC 5322 lines end at 998 characters, and an ID is matched
/// against the store, where a megabyte key does no good.
const MAX_ID_CHARS: usize = 998;

/// Addresses, display names and attachment names are cut to this many characters; an address
/// is at most 254 (RFC 5321 §4.5.3.1), a file name 255 on common file systems.
const MAX_NAME_CHARS: usize = 256;

/// Header names are cut to this many characters: real ones are under 80.
const MAX_HEADER_NAME: usize = 128;

/// What kind of automatic mail a message is, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Automated {
    /// Written by a person, as far as the headers tell.
    #[default]
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
///
/// Every text field except `body_excerpt` is one line (no control characters), and every field
/// is bounded in size by the `MAX_*` constants of this module, whatever the input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The stable identity: see the module documentation.
    pub identity: String,
    /// The Message-ID without angle brackets, if the message has one.
    pub message_id: Option<String>,
    /// `X-Microsoft-Original-Message-ID`: the ID before Exchange Online rewrote it.
    pub original_message_id: Option<String>,
    /// In-Reply-To IDs.
    pub in_reply_to: Vec<String>,
    /// References IDs, oldest first; at most [`MAX_IDS`], keeping the first and the newest.
    pub references: Vec<String>,
    /// The sender.
    pub from: Option<Party>,
    /// To recipients.
    pub to: Vec<Party>,
    /// Cc recipients.
    pub cc: Vec<Party>,
    /// The decoded subject on one line.
    pub subject: String,
    /// The sender's Date header: display only, never a clock start. The sender's clock can be
    /// wrong by hours or years (field case BUG-14).
    pub date: Option<DateTime<Utc>>,
    /// The date of the newest `Received:` header, written by the receiving server rather than
    /// the sender: the arrival time to use when the server reports no INTERNALDATE.
    #[serde(default)]
    pub received: Option<DateTime<Utc>>,
    /// The message's size in bytes as the server reported it, or as fetched.
    pub size: u64,
    /// Automatic-mail classification.
    pub automated: Automated,
    /// True when list headers (`List-Id`, `List-Unsubscribe`, `Precedence: list`) are present.
    pub mailing_list: bool,
    /// File names of attachments seen within the fetched part of the message.
    pub attachments: Vec<String>,
    /// True when the message carries an Outlook TNEF part (`application/ms-tnef`, usually
    /// `winmail.dat`): its real body and attachments are inside that part, which postroom does
    /// not decode, so agents must open the message in Outlook (field case BUG-11).
    #[serde(default)]
    pub tnef: bool,
    /// True when the parse guards cut the message (see [`MAX_PARSE_BYTES`]): the envelope then
    /// describes only the start of the message.
    #[serde(default)]
    pub truncated: bool,
    /// The start of the first text part, for body rules: line breaks are `\n`, other control
    /// characters except tab are replaced by spaces.
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
///
/// Never panics: the input is first cut to what the parser handles in bounded time and stack
/// (see `prepare`), and a panic inside the parser is caught and reported as
/// [`ParseFailure::ParserPanicked`].
pub fn parse(raw: &[u8], size: Option<u64>) -> Result<Envelope, ParseFailure> {
    if raw.is_empty() {
        return Err(ParseFailure::NoData);
    }
    let prepared = prepare::prepare(raw);
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        MessageParser::default()
            .parse(prepared.bytes.as_ref())
            .map(|message| envelope_of(&message))
    }));
    let mut envelope = match parsed {
        Err(_) => return Err(ParseFailure::ParserPanicked),
        Ok(None) => return Err(ParseFailure::Unparseable),
        Ok(Some(result)) => result?,
    };
    envelope.size = size.unwrap_or(raw.len() as u64);
    envelope.truncated = prepared.truncated;
    Ok(envelope)
}

fn envelope_of(message: &Message<'_>) -> Result<Envelope, ParseFailure> {
    let message_id = message.message_id().and_then(clean_id);
    let subject = capped(
        &one_line(message.subject().unwrap_or_default()),
        MAX_SUBJECT_CHARS,
    );
    let from = message.from().and_then(first_party);
    let date = message.date().and_then(valid_utc);
    if message_id.is_none() && from.is_none() && subject.is_empty() && date.is_none() {
        return Err(ParseFailure::NoUsableHeaders);
    }
    let body_excerpt = parts::excerpt(message);
    if is_retrieval_failure(&subject, &body_excerpt, from.as_ref()) {
        return Err(ParseFailure::RetrievalFailed);
    }
    let headers = kept_headers(message);
    let from_name = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.name.as_deref());
    let automated = classify::classify(message, &headers, &subject, from.as_ref(), from_name);
    let (attachments, tnef) = parts::attachments(message);
    let mut envelope = Envelope {
        original_message_id: message
            .header_raw("X-Microsoft-Original-Message-ID")
            .and_then(first_bracketed_id),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        to: parties(message.to()),
        cc: parties(message.cc()),
        // mail-parser's single-header accessors return the last occurrence; the newest Received is
        // the first.
        received: message
            .received_all()
            .next()
            .and_then(|r| r.date())
            .as_ref()
            .and_then(valid_utc),
        mailing_list: is_list(&headers),
        message_id,
        from,
        subject,
        date,
        automated,
        attachments,
        tnef,
        body_excerpt,
        headers,
        ..Envelope::default()
    };
    envelope.identity = identity(&envelope);
    Ok(envelope)
}

/// A header date as UTC, unless a field is out of range ("99 Mar 2025 99:99:99 +9999"), which
/// mail-parser would otherwise roll over into a plausible-looking but made-up instant.
fn valid_utc(date: &mail_parser::DateTime) -> Option<DateTime<Utc>> {
    let valid = date.is_valid();
    valid
        .then(|| Utc.timestamp_opt(date.to_timestamp(), 0).single())
        .flatten()
}

/// Exchange's placeholder for an item it cannot convert to MIME: sent by "Microsoft Exchange
/// Server", subject and body "Retrieval using the IMAP4 protocol failed for the following
/// message: <n>".
fn is_retrieval_failure(subject: &str, body: &str, from: Option<&Party>) -> bool {
    const MARKER: &str = "Retrieval using the IMAP4 protocol failed";
    subject.starts_with(MARKER)
        || (from.is_none() && (subject.contains(MARKER) || body.trim_start().starts_with(MARKER)))
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
    feed(envelope.from.as_ref().map_or("", |p| p.address.as_str()));
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

/// The first `max` characters of `text`.
fn capped(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Replaces control characters (CR, LF, NUL, C1 controls...) and the Unicode line and paragraph
/// separators with spaces, collapses white space and trims: mail text must never be able to
/// start a new header line, or a new line in a log, anywhere we reuse it.
pub fn one_line(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            '\u{2028}' | '\u{2029}' => ' ',
            c => c,
        })
        .collect();
    squash(&cleaned)
}

/// Strips angle brackets and white space from a Message-ID; empty, over-long or
/// control-character IDs become `None`.
pub fn clean_id(raw: &str) -> Option<String> {
    let id = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let valid = !id.is_empty() && id.len() <= MAX_ID_CHARS && !id.chars().any(char::is_control);
    valid.then(|| id.to_string())
}

/// The ID in a raw header value such as `\r\n <a@b>`: the first bracketed token, or the whole
/// trimmed value when there are no brackets.
fn first_bracketed_id(raw: &str) -> Option<String> {
    let inner = raw
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or(raw, |(id, _)| id);
    clean_id(inner)
}

/// The IDs of an In-Reply-To or References header: at most [`MAX_IDS`], keeping the first (the
/// thread's root) and the newest ones.
fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let ids: Vec<String> = match value {
        HeaderValue::Text(text) => text.split_whitespace().filter_map(clean_id).collect(),
        HeaderValue::TextList(list) => list.iter().filter_map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    };
    if ids.len() <= MAX_IDS {
        return ids;
    }
    let newest = &ids[ids.len() - (MAX_IDS - 1)..];
    std::iter::once(&ids[0]).chain(newest).cloned().collect()
}

fn first_party(address: &Address<'_>) -> Option<Party> {
    address.iter().find_map(party)
}

fn parties(address: Option<&Address<'_>>) -> Vec<Party> {
    address
        .map(|a| a.iter().filter_map(party).take(MAX_IDS).collect())
        .unwrap_or_default()
}

fn party(addr: &mail_parser::Addr<'_>) -> Option<Party> {
    let address = capped(&one_line(addr.address.as_deref()?), MAX_NAME_CHARS).to_lowercase();
    if address.is_empty() {
        return None;
    }
    let name = addr
        .name
        .as_deref()
        .map(|n| capped(&one_line(n), MAX_NAME_CHARS));
    let name = name.filter(|n| !n.is_empty());
    Some(Party { name, address })
}

fn kept_headers(message: &Message<'_>) -> Vec<(String, String)> {
    message
        .headers_raw()
        .take(MAX_KEPT_HEADERS)
        .map(|(name, value)| {
            let name = capped(&one_line(name), MAX_HEADER_NAME).to_ascii_lowercase();
            (name, capped(&one_line(value), MAX_HEADER_VALUE))
        })
        .collect()
}

/// The value of the first kept header with this (lowercase) name.
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
    let (head, rest) = text.split_once(':')?;
    // Split at the ASCII `[` (a boundary in any string) before trimming, so no offset taken
    // from a trimmed string is ever used to slice the untrimmed one.
    let (word, counted) = head.split_once('[').map_or((head, ""), |(w, c)| (w, c));
    let counted_ok = counted.is_empty()
        || counted
            .trim_end()
            .strip_suffix(']')
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    let known = PREFIXES.iter().any(|p| word.trim().eq_ignore_ascii_case(p));
    (known && counted_ok).then_some(rest)
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
