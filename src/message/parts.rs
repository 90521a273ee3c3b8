//! What the body parts tell: the start of the text for body rules, the attachment names, and
//! whether the real content is hidden in Outlook TNEF.

use mail_parser::{HeaderName, Message, MessagePart, MimeHeaders};

use super::{capped, one_line, BODY_EXCERPT_CHARS, MAX_ATTACHMENTS, MAX_NAME_CHARS};

/// The start of the first text part, with line breaks normalised to `\n`.
pub(super) fn excerpt(message: &Message<'_>) -> String {
    let Some(text) = message.body_text(0) else {
        return String::new();
    };
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    let mut kept = 0;
    while kept < BODY_EXCERPT_CHARS {
        let Some(c) = chars.next() else { break };
        let c = match c {
            // CRLF and LF must give the same excerpt: it feeds the identity of ID-less mail.
            '\r' if chars.peek() == Some(&'\n') => continue,
            '\r' => '\n',
            '\n' | '\t' => c,
            c if c.is_control() => ' ',
            c => c,
        };
        out.push(c);
        kept += 1;
    }
    out
}

/// Attachment names (bounded in count and length) and whether one of them is Outlook TNEF.
pub(super) fn attachments(message: &Message<'_>) -> (Vec<String>, bool) {
    let mut names = Vec::new();
    let mut tnef = false;
    for part in message.attachments() {
        let name = part
            .attachment_name()
            .map(str::to_string)
            .or_else(|| raw_filename(message, part));
        let name = name.map(|n| capped(&one_line(&n), MAX_NAME_CHARS));
        tnef |= part.is_content_type("application", "ms-tnef")
            || part.is_content_type("application", "vnd.ms-tnef")
            || name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case("winmail.dat"));
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            if names.len() < MAX_ATTACHMENTS {
                names.push(name);
            }
        }
    }
    (names, tnef)
}

/// The `filename=` of a Content-Disposition the parser could not read, such as Outlook's
/// `Content-Disposition: ;` followed by a folded `filename="image001.png"` (field case BUG-09).
fn raw_filename(message: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    let header = part
        .headers
        .iter()
        .find(|h| h.name == HeaderName::ContentDisposition)?;
    let raw = message
        .raw_message
        .get(header.offset_start as usize..header.offset_end as usize)?;
    let raw = String::from_utf8_lossy(raw);
    let at = raw.to_ascii_lowercase().find("filename=")? + "filename=".len();
    let value = raw[at..].trim_start();
    let name = match value.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or_default(),
        None => value
            .split([';', ' ', '\t', '\r', '\n'])
            .next()
            .unwrap_or_default(),
    };
    (!name.is_empty()).then(|| name.to_string())
}
