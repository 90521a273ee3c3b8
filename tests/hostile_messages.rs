//! Messages built to hurt the parser: huge headers, thousands of parts, deep nesting, bad
//! charsets, control characters, odd line endings and header injection through encoded-words.
//!
//! Every case must come back without a panic, within a time budget, with an envelope whose size
//! is bounded, and with no CR, LF or NUL in any field that is meant to be one line (those fields
//! end up in log lines, escalation subjects and HTML).

use std::time::{Duration, Instant};

use postroom::message::{
    self, parse, Envelope, ParseFailure, BODY_EXCERPT_CHARS, MAX_ATTACHMENTS, MAX_HEADER_VALUE,
    MAX_IDS, MAX_KEPT_HEADERS, MAX_SUBJECT_CHARS,
};

/// Generous on purpose: the tests run unoptimised on a shared two-core machine. A parse that
/// goes quadratic or exponential blows far past this; a linear one stays well under.
const BUDGET: Duration = Duration::from_secs(5);

/// An upper bound on the serialized envelope, whatever the input: the caps on subject, headers,
/// attachments, IDs and excerpt add up to well under this.
const MAX_ENVELOPE_JSON: usize = 1024 * 1024;

fn head(extra: &str) -> String {
    format!(
        "From: Ann <ann@customer.example.test>\r\nTo: support@ourco.example.test\r\n\
         Subject: Printer down\r\nDate: Mon, 10 Mar 2025 09:00:00 +0100\r\n\
         Message-ID: <hostile@customer.example.test>\r\n{extra}"
    )
}

/// Parses in the time budget and checks the bounds every result must keep.
fn parse_bounded(name: &str, raw: &[u8]) -> Result<Envelope, ParseFailure> {
    let started = Instant::now();
    let result = parse(raw, None);
    let took = started.elapsed();
    assert!(took < BUDGET, "{name}: parse took {took:?}");
    match &result {
        Ok(envelope) => assert_bounded(name, envelope),
        Err(failure) => assert_ne!(*failure, ParseFailure::ParserPanicked, "{name}"),
    }
    result
}

fn parse_ok(name: &str, raw: &[u8]) -> Envelope {
    match parse_bounded(name, raw) {
        Ok(envelope) => envelope,
        Err(failure) => panic!("{name}: expected an envelope, got {failure:?}"),
    }
}

fn assert_one_line(name: &str, field: &str, text: &str) {
    assert!(
        !text.chars().any(char::is_control),
        "{name}: {field} keeps a control character: {:?}",
        text.chars().take(200).collect::<String>()
    );
}

fn assert_bounded(name: &str, env: &Envelope) {
    let json = serde_json::to_string(env).expect("an envelope always serializes");
    assert!(
        json.len() < MAX_ENVELOPE_JSON,
        "{name}: envelope is {} bytes",
        json.len()
    );
    assert!(
        env.subject.chars().count() <= MAX_SUBJECT_CHARS,
        "{name}: subject"
    );
    assert!(
        env.headers.len() <= MAX_KEPT_HEADERS,
        "{name}: header count"
    );
    assert!(
        env.attachments.len() <= MAX_ATTACHMENTS,
        "{name}: attachment count"
    );
    assert!(
        env.references.len() <= MAX_IDS && env.in_reply_to.len() <= MAX_IDS,
        "{name}"
    );
    assert!(
        env.to.len() <= MAX_IDS && env.cc.len() <= MAX_IDS,
        "{name}: recipients"
    );
    assert!(
        env.body_excerpt.chars().count() <= BODY_EXCERPT_CHARS,
        "{name}: excerpt"
    );
    assert!(
        !env.body_excerpt.contains(['\0', '\r']),
        "{name}: excerpt keeps NUL or CR"
    );
    for (field, text) in one_line_fields(env) {
        assert_one_line(name, &field, &text);
    }
    for (header, value) in &env.headers {
        assert!(
            value.chars().count() <= MAX_HEADER_VALUE,
            "{name}: header {header}"
        );
    }
}

/// Every field that must hold a single line, with a label for the failure message.
fn one_line_fields(env: &Envelope) -> Vec<(String, String)> {
    let mut fields = vec![
        ("identity".to_string(), env.identity.clone()),
        ("subject".to_string(), env.subject.clone()),
    ];
    let ids = env.message_id.iter().chain(&env.original_message_id);
    let ids = ids.chain(&env.in_reply_to).chain(&env.references);
    fields.extend(ids.map(|id| ("id".to_string(), id.clone())));
    for party in env.from.iter().chain(&env.to).chain(&env.cc) {
        fields.push(("address".to_string(), party.address.clone()));
        fields.extend(party.name.iter().map(|n| ("name".to_string(), n.clone())));
    }
    fields.extend(
        env.attachments
            .iter()
            .map(|a| ("attachment".to_string(), a.clone())),
    );
    for (header, value) in &env.headers {
        fields.push(("header name".to_string(), header.clone()));
        fields.push((format!("header {header}"), value.clone()));
    }
    fields
}

#[test]
fn a_200_kb_header_block_is_parsed_and_capped() {
    let mut raw = head("");
    for i in 0..5000 {
        raw.push_str(&format!(
            "X-Trace-{i}: relay{i}.example.test hop {i} ok\r\n"
        ));
    }
    raw.push_str("\r\nbody\r\n");
    assert!(raw.len() > 200_000);
    let env = parse_ok("many headers", raw.as_bytes());
    assert_eq!(env.subject, "Printer down");
    assert_eq!(env.headers.len(), MAX_KEPT_HEADERS);
}

#[test]
fn a_200_kb_subject_is_cut_to_the_subject_cap() {
    let long = "spam ".repeat(42_000);
    let raw = head("").replace("Subject: Printer down", &format!("Subject: {long}"));
    let env = parse_ok("long subject", format!("{raw}\r\nbody\r\n").as_bytes());
    assert_eq!(env.subject.chars().count(), MAX_SUBJECT_CHARS);
    let folded = raw.replace("spam spam", "spam\r\n spam");
    let refolded = parse_ok(
        "long folded subject",
        format!("{folded}\r\nbody\r\n").as_bytes(),
    );
    assert_eq!(refolded.identity, env.identity);
}

fn many_parts(count: usize) -> String {
    let mut raw =
        head("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n");
    for i in 0..count {
        raw.push_str(&format!(
            "--b\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename=\"part{i}.bin\"\r\n\r\nQUJD\r\n"
        ));
    }
    raw.push_str("--b--\r\n");
    raw
}

#[test]
fn ten_thousand_mime_parts_keep_the_attachment_list_bounded() {
    let env = parse_ok("10k parts", many_parts(10_000).as_bytes());
    assert_eq!(env.subject, "Printer down");
    assert_eq!(
        env.attachments.first().map(String::as_str),
        Some("part0.bin")
    );
    assert_eq!(env.attachments.len(), MAX_ATTACHMENTS);
}

fn nested_multiparts(depth: usize) -> String {
    let mut raw = head("MIME-Version: 1.0\r\n");
    for level in 0..depth {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"level{level}\"\r\n\r\n--level{level}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\ninnermost text\r\n");
    for level in (0..depth).rev() {
        raw.push_str(&format!("--level{level}--\r\n"));
    }
    raw
}

fn nested_messages(depth: usize) -> String {
    let mut raw = head("MIME-Version: 1.0\r\n");
    for level in 0..depth {
        raw.push_str(&format!(
            "Content-Type: message/rfc822\r\n\r\n\
             Subject: level {level}\r\nFrom: x{level}@x.test\r\n"
        ));
    }
    raw.push_str("\r\ninnermost text\r\n");
    raw
}

#[test]
fn multiparts_nested_a_thousand_deep_parse_in_time() {
    let env = parse_ok("nested multiparts", nested_multiparts(1_000).as_bytes());
    assert_eq!(env.subject, "Printer down");
}

#[test]
fn messages_nested_a_thousand_deep_parse_in_time() {
    let env = parse_ok("nested messages", nested_messages(1_000).as_bytes());
    assert_eq!(env.from.unwrap().address, "ann@customer.example.test");
}

/// Dropping a parsed tree recurses once per nesting level, so this depth would overflow the
/// stack (an abort, which `catch_unwind` cannot catch) if the nesting were not capped first.
#[test]
fn messages_nested_a_hundred_thousand_deep_do_not_overflow_the_stack() {
    let raw = nested_messages(100_000);
    let env = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || parse(raw.as_bytes(), None))
        .expect("spawn a parse thread")
        .join()
        .expect("the parse thread did not die");
    assert_eq!(env.unwrap().subject, "Printer down");
}

#[test]
fn bad_charsets_decode_to_something_or_nothing_but_never_panic() {
    let cases: [&[u8]; 8] = [
        b"Subject: =?x-unknown-42?B?UHJpbnRlcg==?= down\r\n",
        b"Subject: =?utf-7?Q?+AGEAYgBj-?= =?utf-7?B?+++++?=\r\n",
        b"Subject: =?utf-8?B?////?= =?utf-8?Q?=FF=FE=00?=\r\n",
        b"Subject: =?y?Q?x?= =?eucgb2312_cn?B?1eLKx9bQzsQ=?=\r\n",
        b"Subject: raw \xff\xfe\xc3 bytes are not UTF-8\r\n",
        b"X-\xff\xfe: raw bytes in a header name\r\n",
        b"Content-Type: text/plain; charset=\"../../../etc/passwd\"\r\n",
        b"Content-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: base64\r\n",
    ];
    for (i, extra) in cases.iter().enumerate() {
        let mut raw = head("").into_bytes();
        raw.extend_from_slice(extra);
        raw.extend_from_slice(b"\r\n\xff\xfe\x00b\x00o\x00d\x00y\r\n");
        let env = parse_ok(&format!("charset case {i}"), &raw);
        assert_eq!(
            env.message_id.as_deref(),
            Some("hostile@customer.example.test")
        );
    }
}

#[test]
fn nul_bytes_anywhere_never_survive_into_one_line_fields() {
    let raw = "From: A\0nn <ann\0@customer.example.test>\r\nTo: sup\0port@ourco.example.test\r\n\
               Subject: Printer\0down\r\nMessage-ID: <nul\0id@x.test>\r\nX-\0Evil: a\0b\r\n\
               References: <a\0b@x.test> <c@x.test>\r\n\r\nbody\0with\0nuls\r\n";
    let env = parse_ok("nul bytes", raw.as_bytes());
    assert_eq!(env.subject, "Printer down");
    assert!(!env.body_excerpt.contains('\0'));
    let only_nuls = vec![0u8; 100_000];
    parse_bounded("only nuls", &only_nuls).unwrap_err();
}

#[test]
fn cr_only_and_lf_only_messages_give_the_same_envelope_as_crlf() {
    let crlf = head("Subject: Printer down\r\n on floor 2\r\n\r\nline one\r\nline two\r\n")
        .replace("Subject: Printer down\r\nDate", "Date");
    let lf = crlf.replace("\r\n", "\n");
    let cr = crlf.replace("\r\n", "\r");
    let reference = parse_ok("crlf", crlf.as_bytes());
    for (name, raw) in [("lf", lf), ("cr", cr)] {
        let env = parse_ok(name, raw.as_bytes());
        assert_eq!(env.identity, reference.identity, "{name}");
        assert_eq!(env.subject, "Printer down on floor 2", "{name}");
        assert_eq!(env.from, reference.from, "{name}");
        assert_eq!(env.body_excerpt.trim_end(), "line one\nline two", "{name}");
    }
}

#[test]
fn a_subject_with_bare_line_breaks_and_html_stays_one_inert_line() {
    let raw = head("").replace(
        "Subject: Printer down\r\n",
        "Subject: <b>Printer</b> down\rBcc: evil@x.test\r\n <script>alert(1)</script>\r\n",
    );
    let env = parse_ok("subject with CR", format!("{raw}\r\nbody\r\n").as_bytes());
    assert!(
        env.subject.starts_with("<b>Printer</b> down"),
        "{}",
        env.subject
    );
    assert!(!env.headers.iter().any(|(name, _)| name == "bcc"));
    // The HTML survives as text: escaping is the job of whoever renders it (the notifier).
    assert!(env.subject.contains("<script>"));
}

#[test]
fn an_encoded_word_that_decodes_to_a_header_injection_stays_in_the_subject() {
    // "Printer down" CRLF "Bcc: attacker@evil.example.test" CRLF "X-Priority: 1", base64.
    let word = concat!(
        "=?utf-8?B?UHJpbnRlciBkb3duDQpCY2M6IGF0dGFja2VyQGV2aWwuZXhhbXBsZS50ZXN0",
        "DQpYLVByaW9yaXR5OiAx?="
    );
    let raw = head("").replace("Subject: Printer down", &format!("Subject: {word}"));
    let env = parse_ok("injection", format!("{raw}\r\nbody\r\n").as_bytes());
    assert_eq!(
        env.subject,
        "Printer down Bcc: attacker@evil.example.test X-Priority: 1"
    );
    assert!(!env
        .headers
        .iter()
        .any(|(name, _)| name == "bcc" || name == "x-priority"));
}

#[test]
fn a_five_megabyte_single_line_body_is_parsed_in_time() {
    let mut raw = head("Content-Type: text/html\r\n\r\n");
    raw.push_str(&"<p>x".repeat(5 * 1024 * 1024 / 4));
    let env = parse_ok("5 MB line", raw.as_bytes());
    assert_eq!(env.subject, "Printer down");
    let mut header_line = head("X-Long: ");
    header_line.push_str(&"y".repeat(5 * 1024 * 1024));
    header_line.push_str("\r\n\r\nbody\r\n");
    parse_bounded("5 MB header line", header_line.as_bytes()).ok();
}

#[test]
fn huge_address_and_reference_lists_are_capped() {
    let to: Vec<String> = (0..20_000).map(|i| format!("u{i}@x.test")).collect();
    let refs: Vec<String> = (0..20_000).map(|i| format!("<r{i}@x.test>")).collect();
    let extra = format!(
        "Cc: {}\r\nReferences: {}\r\n",
        to.join(", "),
        refs.join(" ")
    );
    let env = parse_ok(
        "huge lists",
        format!("{}\r\nbody\r\n", head(&extra)).as_bytes(),
    );
    assert_eq!(env.cc.len(), MAX_IDS);
    assert_eq!(env.references.len(), MAX_IDS);
    // The root of the thread and the direct parent are what threading needs most.
    assert_eq!(
        env.references.first().map(String::as_str),
        Some("r0@x.test")
    );
    assert_eq!(
        env.references.last().map(String::as_str),
        Some("r19999@x.test")
    );
}

#[test]
fn an_absurd_message_id_is_not_an_identity() {
    let id = "a".repeat(100_000);
    let raw = head("").replace("hostile@customer.example.test", &format!("{id}@x.test"));
    let env = parse_ok("long id", format!("{raw}\r\nbody\r\n").as_bytes());
    assert_eq!(env.message_id, None);
    assert!(env.identity.starts_with("s-"));
}

#[test]
fn dates_out_of_any_range_are_dropped_not_rolled_over() {
    let cases = [
        ("Mon, 10 Mar 99999 09:00:00 +0100", None),
        ("Mon, 99 Mar 2025 99:99:99 +9999", None),
        ("Mon, 10 Mar 2025 24:00:00 +0100", None),
        ("18446744073709551616", None),
        (
            "Mon, 10 Mar 25 09:00:00 +0100",
            Some("2025-03-10T08:00:00+00:00"),
        ),
    ];
    for (date, expected) in cases {
        let raw = head("").replace("Mon, 10 Mar 2025 09:00:00 +0100", date);
        let env = parse_ok(date, format!("{raw}\r\nbody\r\n").as_bytes());
        assert_eq!(
            env.date.map(|d| d.to_rfc3339()).as_deref(),
            expected,
            "{date}"
        );
    }
}

#[test]
fn random_bytes_and_mutated_messages_never_panic() {
    let template = many_parts(3);
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for round in 0..400 {
        let mut raw = template.clone().into_bytes();
        for _ in 0..rng.usize(1..40) {
            if raw.is_empty() {
                break;
            }
            let at = rng.usize(..raw.len());
            match rng.u8(..4) {
                0 => raw[at] = rng.u8(..),
                1 => raw.insert(at, *rng.choice(b"\r\n\0-:;=?\"<>\t ").unwrap()),
                2 => {
                    raw.remove(at);
                }
                _ => raw.truncate(at.max(1)),
            }
        }
        let _ = parse_bounded(&format!("mutation round {round}"), &raw);
        let noise: Vec<u8> = (0..rng.usize(..4096)).map(|_| rng.u8(..)).collect();
        let _ = parse_bounded(&format!("noise round {round}"), &noise);
    }
}

#[test]
fn one_line_replaces_every_control_character() {
    let text = "a\r\nb\rc\nd\0e\u{7}f\u{1b}[31mg\u{85}h\u{2028}i";
    let line = message::one_line(text);
    assert!(!line.chars().any(char::is_control), "{line:?}");
    assert!(!line.contains(['\u{2028}', '\u{2029}']), "{line:?}");
}
