//! Field cases from `/work/shared/cases/CASES.md`, with their inputs vendored in
//! `tests/data/field/`: what each case says the message layer must do.

use postroom::message::{parse, Automated, Envelope, ParseFailure};

use super::data;

fn field(name: &str) -> Vec<u8> {
    std::fs::read(data("field").join(name)).expect("field case input is vendored")
}

fn field_envelope(name: &str) -> Envelope {
    let raw = field(name);
    parse(&raw, None).unwrap_or_else(|f| panic!("{name}: {f:?}"))
}

#[test]
fn bug_07_multipart_with_inline_dispositions_parses_normally() {
    let env = field_envelope("BUG-07.eml");
    assert_eq!(
        env.message_id.as_deref(),
        Some("c7a1e2f0.19@customer-c.example.test")
    );
    assert!(
        env.body_excerpt.starts_with("After entering my password"),
        "{}",
        env.body_excerpt
    );
    assert!(env.attachments.is_empty(), "{:?}", env.attachments);
}

#[test]
fn bug_09_empty_disposition_does_not_panic_and_the_image_is_found() {
    let env = field_envelope("BUG-09.eml");
    assert!(
        env.attachments.iter().any(|a| a == "image001.png"),
        "{:?}",
        env.attachments
    );
    assert_eq!(env.subject, "Screenshot of the error dialog");
}

#[test]
fn bug_09b_a_lone_folded_received_line_has_no_usable_headers() {
    assert_eq!(
        parse(&field("BUG-09b.eml"), None),
        Err(ParseFailure::NoUsableHeaders)
    );
}

#[test]
fn bug_11_tnef_message_parses_keeps_winmail_dat_and_is_flagged() {
    let env = field_envelope("BUG-11.eml");
    assert_eq!(env.attachments, vec!["winmail.dat".to_string()]);
    assert!(env.tnef);
    assert_eq!(env.body_excerpt.trim(), "");
    assert_eq!(
        env.from.map(|p| p.address).as_deref(),
        Some("jonas.keller@customer-e.example.test")
    );
}

#[test]
fn bug_13_alerts_without_message_id_get_stable_but_distinct_identities() {
    let raw = String::from_utf8(field("BUG-13.eml")).expect("ASCII input");
    let first = parse(raw.as_bytes(), None).expect("parses");
    let again = parse(raw.as_bytes(), None).expect("parses");
    assert!(first.identity.starts_with("s-"), "{}", first.identity);
    assert_eq!(first.identity, again.identity, "same bytes, same identity");
    let later = raw.replace(
        "Date: Tue, 18 Mar 2025 07:58:01",
        "Date: Tue, 18 Mar 2025 08:13:44",
    );
    assert_ne!(
        parse(later.as_bytes(), None).expect("parses").identity,
        first.identity
    );
    // Same Date but delivered separately: the receiving server's trace tells them apart.
    let resent = raw.replace("07:58:03 +0100", "07:58:09 +0100");
    assert_ne!(
        parse(resent.as_bytes(), None).expect("parses").identity,
        first.identity
    );
}

#[test]
fn bug_14_the_date_header_is_exposed_for_display_and_used_nowhere_else() {
    let env = field_envelope("BUG-14.eml");
    let date = env.date.expect("Date parses").to_rfc3339();
    assert_eq!(date, "2025-03-19T10:05:00+00:00");
    // The newest Received header is the server's clock, kept separately as the arrival fallback.
    let received = env.received.expect("Received has a date").to_rfc3339();
    assert_eq!(received, "2025-03-19T08:00:07+00:00");
    let json = serde_json::to_string(&env).expect("serializes");
    assert_eq!(json.matches("2025-03-19T10:05:00").count(), 1, "{json}");
    let raw = String::from_utf8(field("BUG-14.eml")).expect("ASCII input");
    let old = raw.replace(
        "Date: Wed, 19 Mar 2025 11:05:00",
        "Date: Wed, 19 Mar 2019 11:05:00",
    );
    let old = parse(old.as_bytes(), None).expect("parses");
    assert_eq!(old.received, env.received);
    assert_eq!(
        old.date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2019-03-19T10:05:00+00:00")
    );
}

#[test]
fn bug_15_the_original_message_id_is_captured_and_the_reply_points_at_the_rewrite() {
    let escalation = field_envelope("BUG-15a.eml");
    let original = "esc.T-000318.1.1742468401@slad.ourco.example.test";
    assert_eq!(escalation.original_message_id.as_deref(), Some(original));
    assert_eq!(escalation.references, vec![original.to_string()]);
    assert_eq!(escalation.automated, Automated::Generated);
    let reply = field_envelope("BUG-15b.eml");
    assert_eq!(
        reply.in_reply_to,
        vec![escalation.message_id.clone().expect("has an ID")]
    );
    assert_eq!(reply.automated, Automated::No);
}

#[test]
fn bug_18_auto_replies_are_told_from_people_by_headers_only() {
    let ooo = field_envelope("BUG-18a.eml");
    assert_eq!(ooo.automated, Automated::AutoReply);
    assert_eq!(
        ooo.in_reply_to,
        vec!["esc.T-000318.2.1742900401@slad.ourco.example.test"]
    );
    // The vendor's acknowledgement carries no automatic-mail header, so the headers say "a
    // person". Recognising it as an answer to our own mail (its In-Reply-To is one of our IDs)
    // and limiting the loop is the decide layer's job; the envelope hands it the IDs.
    let ack = field_envelope("BUG-18b.eml");
    assert_eq!(ack.automated, Automated::No);
    assert_eq!(
        ack.in_reply_to,
        vec!["ack-reply.T-000420.3@slad.ourco.example.test"]
    );
    assert!(ack
        .references
        .contains(&"ack-reply.T-000420.3@slad.ourco.example.test".into()));
    let human = field_envelope("BUG-18c.eml");
    assert_eq!(
        human.automated,
        Automated::No,
        "X-Auto-Response-Suppress is not a marker"
    );
}

#[test]
fn bug_30_an_injected_subject_and_name_stay_one_line_with_no_extra_headers() {
    let env = field_envelope("BUG-30.eml");
    assert_eq!(
        env.subject,
        "Printer down Bcc: attacker@evil.example.test X-Priority: 1 <b>fake body</b>"
    );
    let names: Vec<&str> = env.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        !names.contains(&"bcc") && !names.contains(&"x-priority"),
        "{names:?}"
    );
    let from = env.from.expect("has a sender");
    assert_eq!(
        from.name.as_deref(),
        Some("Eve <script>alert(1)</script> \"Admin\"")
    );
    assert_eq!(from.address, "eve@customer-n.example.test");
}

#[test]
fn bug_30b_a_french_subject_split_mid_word_decodes_exactly() {
    let env = field_envelope("BUG-30b.eml");
    assert_eq!(
        env.subject,
        "Livraison retardée. Arrivée prévue : 5 août, 11h48"
    );
    assert_eq!(
        env.from.and_then(|p| p.name).as_deref(),
        Some("René Girard")
    );
}

/// Exchange's stand-in for an item it cannot convert (exchange-imap.md §8), as reported in
/// FreeScout and Mailspring issues: sent by "Microsoft Exchange Server" with no usable address.
#[test]
fn exchange_retrieval_failure_placeholder_is_a_retryable_failure_not_a_message() {
    let by_subject = "From: Microsoft Exchange Server\r\n\
        Subject: Retrieval using the IMAP4 protocol failed for the following message: 752\r\n\r\n\
        The server couldn't retrieve the following message:\r\n";
    let by_body =
        "From: Microsoft Exchange Server\r\nDate: Mon, 10 Mar 2025 09:00:00 +0000\r\n\r\n\
        Retrieval using the IMAP4 protocol failed for the following message: 752\r\n";
    for raw in [by_subject, by_body] {
        assert_eq!(
            parse(raw.as_bytes(), None),
            Err(ParseFailure::RetrievalFailed),
            "{raw}"
        );
    }
    // A person quoting the text is still a person.
    let quoted = "From: ann@customer.example.test\r\nSubject: Re: odd error\r\n\r\n\
        Retrieval using the IMAP4 protocol failed for the following message: 752\r\n";
    assert!(parse(quoted.as_bytes(), None).is_ok());
    assert_eq!(parse(b"", None), Err(ParseFailure::NoData));
}
