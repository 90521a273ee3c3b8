//! `message::parse` on arbitrary bytes: never a crash, and every envelope keeps the promises of
//! its documentation (one-line fields, bounded sizes), whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom::message::{self, Envelope, MAX_ATTACHMENTS, MAX_IDS, MAX_KEPT_HEADERS};

/// Panics inside mail-parser are caught by `message::parse` by design (the message is
/// quarantined); libFuzzer's own hook would abort on them, so only panics elsewhere count.
fn contain_parser_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_parser = info
            .location()
            .is_some_and(|l| l.file().contains("mail-parser"));
        if !in_parser {
            default(info);
            std::process::abort();
        }
    }));
}

fn one_line(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
        "{what} is not one line: {text:?}"
    );
}

fn check(envelope: &Envelope) {
    one_line("subject", &envelope.subject);
    assert!(envelope.subject.chars().count() <= message::MAX_SUBJECT_CHARS);
    for party in envelope.from.iter().chain(&envelope.to).chain(&envelope.cc) {
        one_line("address", &party.address);
        one_line("name", party.name.as_deref().unwrap_or(""));
    }
    assert!(envelope.to.len() <= MAX_IDS && envelope.cc.len() <= MAX_IDS);
    assert!(envelope.references.len() <= MAX_IDS && envelope.in_reply_to.len() <= MAX_IDS);
    for id in envelope.message_id.iter().chain(&envelope.references) {
        assert!(!id.is_empty());
        one_line("id", id);
    }
    assert!(envelope.attachments.len() <= MAX_ATTACHMENTS);
    assert!(envelope.headers.len() <= MAX_KEPT_HEADERS);
    for (name, value) in &envelope.headers {
        one_line("header name", name);
        one_line("header value", value);
        assert!(value.chars().count() <= message::MAX_HEADER_VALUE);
    }
    assert!(envelope.body_excerpt.chars().count() <= message::BODY_EXCERPT_CHARS);
    assert!(envelope.identity.starts_with("m-") || envelope.identity.starts_with("s-"));
}

fuzz_target!(init: contain_parser_panics(), |data: &[u8]| {
    if let Ok(envelope) = message::parse(data, None) {
        check(&envelope);
        // Intake asks this of every message before deciding it.
        let _ = postroom::notify::is_own_mail(&envelope);
        // The same bytes give the same identity: the store relies on it across restarts.
        let again = message::parse(data, None).expect("a second parse of the same bytes");
        assert_eq!(envelope.identity, again.identity);
    }
});
