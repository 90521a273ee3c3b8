//! Deciding whether a message was written by a person or sent automatically.
//!
//! Automatic mail never becomes work (see `decide`), so a false "automatic" silently drops a
//! customer's message while a false "person" at worst opens a thread for an out-of-office. Every
//! signal used here is therefore one a person's mail client does not produce: RFC 3834
//! `Auto-Submitted`, report MIME types (RFC 6522), a null return path (RFC 5321 §4.5.5), the
//! mailer-daemon sender, and the subject prefixes Exchange and other servers put on automatic
//! replies. Exchange's `X-Auto-Response-Suppress` is deliberately not a signal: Outlook adds it
//! to ordinary mail to ask servers not to answer (field case BUG-18c). Subjects that merely sound
//! like a bounce ("Delivery failure", "Undeliverable") are not a signal either: customers write
//! those about parcels.

use mail_parser::{Message, MimeHeaders};

use super::{header, Automated, Party};

/// Subject prefixes of automatic replies, lowercased, in the languages Exchange and common
/// clients localise them into.
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "automatic reply:",
    "auto reply:",
    "autoreply:",
    "auto-reply:",
    "out of office",
    "automatische antwort:",
    "abwesenheitsnotiz",
    "réponse automatique",
    "respuesta automática:",
    "risposta automatica:",
    "automatisch antwoord:",
    "autosvar:",
    "automatisk svar:",
    "automatiskt svar:",
    "automaattinen vastaus:",
    "automatyczna odpowiedź:",
    "automatická odpověď:",
    "automatikus válasz:",
    "resposta automática:",
    "otomatik yanıt:",
    "автоматический ответ:",
    "自動応答:",
    "自动回复:",
];

/// Classifies a message from its MIME structure and its top-level headers.
pub(super) fn classify(
    message: &Message<'_>,
    headers: &[(String, String)],
    subject: &str,
    from: Option<&Party>,
    from_name: Option<&str>,
) -> Automated {
    if let Some(kind) = report_kind(message) {
        return kind;
    }
    // A bounce from an MTA often also says `Auto-Submitted: auto-replied` (Exim does); the
    // sender tells the two apart better than the header does.
    if is_daemon(from, from_name) {
        return Automated::Bounce;
    }
    if let Some(kind) = auto_submitted(headers) {
        return kind;
    }
    if is_auto_reply(headers, subject) {
        return Automated::AutoReply;
    }
    if has_null_return_path(headers) || has_part_of_type(message, "message/delivery-status") {
        return Automated::Bounce;
    }
    Automated::No
}

fn auto_submitted(headers: &[(String, String)]) -> Option<Automated> {
    let value = header(headers, "auto-submitted")?.to_ascii_lowercase();
    if value.starts_with("auto-replied") {
        Some(Automated::AutoReply)
    } else if value.starts_with("auto-generated") || value.starts_with("auto-notified") {
        Some(Automated::Generated)
    } else {
        // "no" is the explicit "a person wrote this" of RFC 3834 §5.
        None
    }
}

fn is_auto_reply(headers: &[(String, String)], subject: &str) -> bool {
    let marker = ["x-autoreply", "x-autorespond", "x-auto-reply"]
        .iter()
        .any(|name| header(headers, name).is_some());
    let precedence = header(headers, "precedence").map(str::to_ascii_lowercase);
    let subject = subject.to_lowercase();
    marker
        || precedence.as_deref() == Some("auto_reply")
        || AUTO_REPLY_SUBJECTS.iter().any(|p| subject.starts_with(p))
}

/// `MAILER-DAEMON` and `postmaster` by address, or by display name when the address is empty
/// (`From: MAILER-DAEMON <>`, as DragonFly and others send it).
fn is_daemon(from: Option<&Party>, from_name: Option<&str>) -> bool {
    let daemon =
        |s: &str| s.eq_ignore_ascii_case("mailer-daemon") || s.eq_ignore_ascii_case("postmaster");
    match from {
        Some(party) => daemon(party.address.split('@').next().unwrap_or("")),
        None => from_name.is_some_and(|name| daemon(name.trim())),
    }
}

/// `Return-Path: <>` is the null reverse path, which RFC 5321 §4.5.5 reserves for notifications
/// that must never be answered: bounces and the like. A person's mail always has a sender.
fn has_null_return_path(headers: &[(String, String)]) -> bool {
    header(headers, "return-path").is_some_and(|v| v.replace(' ', "") == "<>")
}

/// Delivery reports and read receipts by their MIME type (RFC 6522 `multipart/report`). When the
/// `report-type` parameter is missing or unknown, the parts inside tell.
fn report_kind(message: &Message<'_>) -> Option<Automated> {
    let ctype = message.root_part().content_type()?;
    let is_report = ctype.ctype().eq_ignore_ascii_case("multipart")
        && ctype
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"));
    if !is_report {
        return None;
    }
    let report_type = ctype.attribute("report-type").map(str::to_ascii_lowercase);
    Some(match report_type.as_deref() {
        Some("disposition-notification") => Automated::ReadReceipt,
        Some("delivery-status") | Some("delivery-status-notification") => Automated::Bounce,
        _ if has_part_of_type(message, "message/disposition-notification") => {
            Automated::ReadReceipt
        }
        _ if has_part_of_type(message, "message/delivery-status") => Automated::Bounce,
        _ => Automated::Generated,
    })
}

/// True when any part of the message (not of nested messages) has this `type/subtype`.
fn has_part_of_type(message: &Message<'_>, wanted: &str) -> bool {
    let (wanted_type, wanted_subtype) = wanted.split_once('/').unwrap_or((wanted, ""));
    message.parts.iter().any(|part| {
        part.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case(wanted_type)
                && c.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case(wanted_subtype))
        })
    })
}
