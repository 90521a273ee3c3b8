//! Identity must survive what Exchange does when it regenerates a message's MIME: CRLF line
//! endings, refolded headers, a different Content-Transfer-Encoding of the body.

use postroom::message::parse;

use super::{data, eml_files, relative};

/// How Exchange may hand the same message back after regenerating its MIME.
#[derive(Debug, Clone, Copy)]
enum Reencoding {
    Crlf,
    RefoldedSubject,
    Base64Body,
    All,
}

fn split_message(raw: &str) -> (&str, &str) {
    raw.split_once("\n\n").unwrap_or((raw, ""))
}

/// Folds the Subject line at every space, as a client with a narrow line limit would.
fn refold_subject(head: &str) -> String {
    let lines: Vec<String> = head
        .split('\n')
        .map(|line| match line.strip_prefix("Subject: ") {
            Some(value) => format!("Subject: {}", value.replace(' ', "\n\t")),
            None => line.to_string(),
        })
        .collect();
    lines.join("\n")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (j, b)| n | u32::from(*b) << (16 - 8 * j));
        for k in 0..4 {
            let sextet = (n >> (18 - 6 * k)) & 63;
            out.push(if k <= chunk.len() {
                char::from(ALPHABET[sextet as usize])
            } else {
                '='
            });
        }
    }
    out
}

/// The body re-sent in base64, for single-part plain text whose encoding is the identity.
fn base64_body(head: &str, body: &str) -> Option<(String, String)> {
    let lower = head.to_ascii_lowercase();
    let plain = !lower.contains("content-type:") || lower.contains("content-type: text/plain");
    let encoded = ["base64", "quoted-printable"]
        .iter()
        .any(|e| lower.contains(e));
    if !plain || encoded || lower.contains("multipart") {
        return None;
    }
    let head: Vec<&str> = head
        .split('\n')
        .filter(|l| {
            !l.to_ascii_lowercase()
                .starts_with("content-transfer-encoding:")
        })
        .collect();
    let head = format!("{}\nContent-Transfer-Encoding: base64", head.join("\n"));
    Some((head, base64(body.as_bytes())))
}

fn reencode(raw: &str, how: Reencoding) -> Option<String> {
    let (head, body) = split_message(raw);
    let (head, body) = match how {
        Reencoding::Crlf => (head.to_string(), body.to_string()),
        Reencoding::RefoldedSubject => (refold_subject(head), body.to_string()),
        Reencoding::Base64Body => base64_body(head, body)?,
        Reencoding::All => {
            let (head, body) = base64_body(&refold_subject(head), body)?;
            (head, body)
        }
    };
    let message = format!("{head}\n\n{body}");
    let crlf = matches!(how, Reencoding::Crlf | Reencoding::All);
    Some(if crlf {
        message.replace('\n', "\r\n")
    } else {
        message
    })
}

fn without_message_id(raw: &str) -> String {
    let (head, body) = split_message(raw);
    let head: Vec<&str> = head
        .split('\n')
        .filter(|l| !l.to_ascii_lowercase().starts_with("message-id:"))
        .collect();
    format!("{}\n\n{body}", head.join("\n"))
}

#[test]
fn identity_survives_exchange_style_reencoding_of_ham() {
    let root = data("ham");
    let mut checked = [0usize; 4];
    for path in eml_files(&root) {
        let Ok(raw) = String::from_utf8(std::fs::read(&path).expect("readable")) else {
            continue;
        };
        if raw.contains('\r') || !raw.contains("\nSubject: ") {
            continue;
        }
        for (variant, original) in [raw.clone(), without_message_id(&raw)].iter().enumerate() {
            let before = parse(original.as_bytes(), None).expect("ham parses");
            for (slot, how) in [
                Reencoding::Crlf,
                Reencoding::RefoldedSubject,
                Reencoding::Base64Body,
                Reencoding::All,
            ]
            .into_iter()
            .enumerate()
            {
                let Some(changed) = reencode(original, how) else {
                    continue;
                };
                let after = parse(changed.as_bytes(), None).expect("re-encoded ham parses");
                let name = format!("{} ({how:?}, variant {variant})", relative(&path, &root));
                assert_eq!(after.subject, before.subject, "{name}");
                assert_eq!(after.identity, before.identity, "{name}");
                checked[slot] += 1;
            }
        }
        if checked.iter().all(|&n| n >= 40) {
            break;
        }
    }
    assert!(
        checked.iter().all(|&n| n >= 40),
        "too few re-encodable messages: {checked:?}"
    );
}

#[test]
fn identity_changes_when_a_stable_header_changes() {
    let root = data("ham");
    let path = eml_files(&root).into_iter().next().expect("ham");
    let raw = String::from_utf8_lossy(&std::fs::read(path).expect("readable")).into_owned();
    let base = parse(raw.as_bytes(), None).expect("ham parses");
    let subject = raw.replacen("\nSubject: ", "\nSubject: X ", 1);
    let id = raw
        .replacen("\nMessage-Id: <", "\nMessage-Id: <x", 1)
        .replacen("\nMessage-ID: <", "\nMessage-ID: <x", 1);
    for changed in [subject, id] {
        assert_ne!(
            parse(changed.as_bytes(), None).expect("parses").identity,
            base.identity
        );
    }
}
