//! Inputs that crashed one of the functions the fuzz targets cover (`fuzz/`, run by
//! `scripts/fuzz`), each replayed here on every test run, so a crash found once stays fixed
//! even where no nightly toolchain can fuzz. The inputs live in `tests/data/fuzz/`, named after
//! the function that failed; each test says what went wrong and who found it.

use std::path::Path;

fn input(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `notify::is_own_id` sliced the Message-ID's domain at a byte offset, which panicked when a
/// multi-byte character straddled it (`<x@postroo€.example>`): any customer could have crashed
/// the check for our own escalations with one Message-ID. Seen while writing the
/// `message_parse` target (which calls `is_own_mail` on every envelope); fixed on main at the
/// same time, from the nasty corpus.
#[test]
fn a_message_id_with_a_multibyte_domain_is_not_ours_and_does_not_panic() {
    let envelope = postroom::message::parse(&input("is_own_id-char-boundary.eml"), None)
        .expect("the message parses");
    let id = envelope.message_id.as_deref().expect("a Message-ID");
    assert!(id.ends_with("@postroo€.example"), "{id}");
    assert!(!postroom::notify::is_own_id(id));
    assert!(!postroom::notify::is_own_mail(&envelope));
    for id in ["a@€", "a@postroom€", "a@pöstroom.x", "a@postroom.€"] {
        assert_eq!(
            postroom::notify::is_own_id(id),
            id == "a@postroom.€",
            "{id}"
        );
    }
}

/// mail-parser 0.11.9 panics on this bounce ("Invalid part ID, could not find multipart.", in
/// its `parsers/message.rs`): a `multipart/report` whose boundary is reused inside nested
/// `message/rfc822` parts. Found by the `rules_eval` target. The panic is upstream; what postroom
/// promises is that it stays contained: `message::parse` reports it so the worker quarantines
/// this one message, and the process goes on.
#[test]
fn a_bounce_that_makes_mail_parser_panic_is_reported_not_fatal() {
    let raw = input("mail-parser-invalid-part-id.eml");
    assert_eq!(
        postroom::message::parse(&raw, None),
        Err(postroom::message::ParseFailure::ParserPanicked)
    );
    // The next message parses as usual: nothing was left poisoned.
    let plain = b"From: a@b.example\r\nSubject: next\r\nMessage-ID: <n@b.example>\r\n\r\nx\r\n";
    assert!(postroom::message::parse(plain, None).is_ok());
}

/// A customer subject holding the literal text of an encoded-word (`=?utf-8?B?UHJpbnRlcg==?=`)
/// went into the escalation's ASCII subject unchanged, so the lead's client decoded it and
/// showed "Printer" instead of what the customer wrote. Found by the `escalation_mail` target;
/// the input is its subject, then NUL-separated sender, owner and mailbox.
#[test]
fn an_encoded_word_in_a_customer_subject_arrives_literally() {
    use chrono::TimeZone;
    let raw = input("escalation-encoded-word-subject.bin");
    let text = String::from_utf8_lossy(&raw);
    let subject = text.split('\0').next().unwrap_or_default().to_string();
    assert!(subject.contains("=?utf-8?B?UHJpbnRlcg==?="), "{subject:?}");
    let at = chrono::Utc.with_ymd_and_hms(2025, 3, 7, 14, 0, 0).unwrap();
    let notice = postroom::notify::Notice {
        kind: postroom::notify::NoticeKind::Breach { level: 0 },
        clock: "first response".into(),
        conversation: "c12".into(),
        mailbox: "support".into(),
        owner: None,
        sender: None,
        subject,
        started: at,
        age: chrono::Duration::minutes(5),
        deadline: at,
        timezone: chrono_tz::UTC,
    };
    let origin = postroom::notify::Origin {
        address: "support@ourco.example.test".into(),
        name: "Support".into(),
    };
    let to = ["lead@ourco.example.test".to_string()];
    let mail =
        postroom::notify::build(&notice, &origin, &to, "c12.1@postroom.x.test", at).expect("build");
    let parsed = mail_parser::MessageParser::default()
        .parse(&mail)
        .expect("parse");
    let shown = parsed.subject().expect("a subject").replace('\u{2060}', "");
    assert!(
        shown.contains("=?utf-8?B?UHJpbnRlcg==?="),
        "decoded into {shown:?}"
    );
    assert!(!shown.contains("Printer"), "{shown:?}");
}

/// imap-proto 0.17.0, which async-imap uses to read every server response, panics on a status
/// response whose text starts with a non-ASCII byte right after the response code
/// (`* OK [UIDVALIDITY 3]\xff…`): it slices the text one byte in, inside the character. Found
/// by the `imap_response` target. Only the IMAP server (or whoever sits on a connection that is
/// not TLS) can send it; the panic unwinds inside the mailbox's task rather than aborting, and
/// this test fails once upstream fixes it, so the note can go.
#[test]
fn imap_proto_panics_on_text_right_after_a_response_code() {
    let raw = input("imap-proto-resp-text-after-code.bin");
    let start = raw
        .windows(4)
        .position(|w| w == b"* OK")
        .expect("the OK line");
    let line = raw[start..].to_vec();
    let outcome = std::panic::catch_unwind(|| {
        let _ = imap_proto::Response::parse(&line);
    });
    assert!(
        outcome.is_err(),
        "imap-proto no longer panics: drop this note"
    );
}
