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
