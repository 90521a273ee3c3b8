use super::*;

fn notice(subject: &str, sender: &str) -> Notice {
    Notice {
        kind: NoticeKind::Breach { level: 0 },
        clock: "first response".into(),
        conversation: "c7".into(),
        mailbox: "support".into(),
        owner: Some("Alice Example (alice)".into()),
        sender: Some(sender.into()),
        subject: subject.into(),
        started: "2025-03-07T14:00:00Z".parse().unwrap(),
        age: Duration::minutes(245),
        deadline: "2025-03-10T10:00:00Z".parse().unwrap(),
        timezone: chrono_tz::Europe::Berlin,
    }
}

fn origin() -> Origin {
    Origin {
        address: "support@ourco.example.test".into(),
        name: "Support (postroom)".into(),
    }
}

fn built(subject: &str, sender: &str) -> (String, Vec<u8>) {
    let origin = origin();
    let at = "2025-03-10T10:00:00Z".parse().unwrap();
    let id = origin.new_message_id("c7", at);
    let to = vec!["nina.lead@ourco.example.test".to_string()];
    (
        id.clone(),
        build(&notice(subject, sender), &origin, &to, &id, at).unwrap(),
    )
}

fn parsed(raw: &[u8]) -> Envelope {
    crate::message::parse(raw, None).unwrap()
}

#[test]
fn subject_carries_token_and_kind() {
    let cases = [
        (
            NoticeKind::Warning,
            "[postroom c7] first response due soon: Hi",
        ),
        (
            NoticeKind::Breach { level: 0 },
            "[postroom c7] first response overdue: Hi",
        ),
        (
            NoticeKind::Breach { level: 1 },
            "[postroom c7] first response overdue (level 2): Hi",
        ),
        (
            NoticeKind::Unassigned,
            "[postroom c7] waiting without an owner: Hi",
        ),
    ];
    for (kind, expected) in cases {
        let n = Notice {
            kind,
            ..notice("Hi", "a@b.test")
        };
        assert_eq!(subject(&n), expected);
    }
}

#[test]
fn injected_subject_and_name_stay_inert() {
    let evil =
        "Printer down\r\nBcc: attacker@evil.example.test\r\nX-Priority: 1\r\n\r\n<b>fake body</b>";
    let name = "Eve <script>alert(1)</script> \"Admin\" <eve@customer-n.example.test>";
    let (_, raw) = built(evil, name);
    let text = String::from_utf8_lossy(&raw);
    let head = &text[..text.find("\r\n\r\n").unwrap()];
    assert_eq!(
        head.matches("\r\nSubject:").count() + usize::from(head.starts_with("Subject:")),
        1
    );
    assert!(!head.to_ascii_lowercase().contains("\r\nbcc:"));
    assert!(!head.to_ascii_lowercase().contains("\r\nx-priority:"));
    let env = parsed(&raw);
    assert_eq!(env.subject, "[postroom c7] first response overdue: Printer down Bcc: attacker@evil.example.test X-Priority: 1 <b>fake body</b>");
    let html = html_body(&notice(evil, name));
    assert!(!html.contains("<script>") && !html.contains("<b>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &quot;Admin&quot;"));
    let plain = text_body(&notice(evil, name));
    assert!(plain.contains("Eve <script>alert(1)</script> \"Admin\""));
    assert!(!plain.contains('\r'));
}

#[test]
fn french_subject_decodes_exactly() {
    let original = "Livraison retardée. Arrivée prévue : 5 août, 11h48";
    let (_, raw) = built(original, "rene.girard@customer-o.example.test");
    let env = parsed(&raw);
    assert_eq!(
        env.subject,
        format!("[postroom c7] first response overdue: {original}")
    );
    let text = String::from_utf8_lossy(&raw);
    for word in text
        .split(|c: char| c.is_whitespace())
        .filter(|w| w.starts_with("=?"))
    {
        assert!(word.len() <= 75, "encoded word too long: {word}");
    }
    assert!(text.split("\r\n").all(|line| line.len() <= 998));
}

#[test]
fn mails_are_marked_automatic_and_reference_themselves() {
    let (id, raw) = built("Hi", "a@b.test");
    let env = parsed(&raw);
    assert_eq!(env.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(env.references, vec![id.clone()]);
    assert_eq!(env.automated, Automated::Generated);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("\r\nAuto-Submitted: auto-generated\r\n"));
    assert!(text.contains("\r\nX-Auto-Response-Suppress: All\r\n"));
    assert!(text.contains("\r\nPrecedence: bulk\r\n"));
    assert!(id.ends_with("@postroom.ourco.example.test"));
    assert!(is_own_mail(&env));
}

fn field_case(name: &str) -> String {
    let path = format!("/work/shared/cases/inputs/{name}.eml");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{path} is missing"))
        // The field cases use another tool's ID and token; ours take their place.
        .replace("esc.T-000318.1.1742468401@slad.", "c318.1.2@postroom.")
        .replace("esc.T-000318.2.1742900401@slad.", "c318.2.3@postroom.")
        .replace("ack-reply.T-000420.3@slad.", "c420.4.5@postroom.")
        .replace("[ESC T-000318]", "[postroom c318]")
}

#[test]
fn own_mail_and_answers_to_it_are_recognised() {
    let cases = [
        // The escalation as Exchange stored it, Message-ID rewritten.
        ("BUG-15a", true),
        // The lead's reply quoting only the rewritten ID: the subject token tells.
        ("BUG-15b", true),
        // An out-of-office from the lead, In-Reply-To our ID.
        ("BUG-18a", true),
        // A vendor's acknowledgement without auto headers, In-Reply-To our ID.
        ("BUG-18b", true),
        // A person who happens to send X-Auto-Response-Suppress: real work.
        ("BUG-18c", false),
        ("BUG-30", false),
    ];
    for (name, own) in cases {
        let env = parsed(field_case(name).as_bytes());
        assert_eq!(is_own_mail(&env), own, "{name}");
    }
}

#[test]
fn a_pasted_token_in_a_new_mail_is_still_work() {
    let raw = "From: a@customer.test\r\nTo: support@ourco.example.test\r\nSubject: about \
               [postroom c12] again\r\nMessage-ID: <x1@customer.test>\r\n\r\nhello\r\n";
    assert!(!is_own_mail(&parsed(raw.as_bytes())));
}

#[test]
fn own_ids_are_told_by_their_domain() {
    let cases = [
        ("c1.2.3@postroom.ourco.example.test", true),
        ("<c1.2.3@POSTROOM.ourco.example.test>", true),
        ("c1@postroom.", false),
        ("postroom.c1@ourco.example.test", false),
        ("abc@mail.postroom.example.test", false),
    ];
    for (id, own) in cases {
        assert_eq!(is_own_id(id), own, "{id}");
    }
}

#[test]
fn html_escapes_all_five() {
    assert_eq!(
        escape_html(r#"<a href="x">'&'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

#[test]
fn a_reminder_says_so_and_how_long_it_is_overdue() {
    let n = Notice {
        kind: NoticeKind::Reminder {
            overdue: Duration::minutes(8 * 60 + 5),
        },
        ..notice("Hi", "a@b.test")
    };
    assert_eq!(
        subject(&n),
        "[postroom c7] reminder: first response still overdue: Hi"
    );
    let text = text_body(&n);
    assert!(
        text.starts_with("Reminder: the first response deadline"),
        "{text}"
    );
    assert!(
        text.contains("passed 8h 05m of business time ago"),
        "{text}"
    );
    assert!(
        text.contains("Overdue by (business time): 8h 05m"),
        "{text}"
    );
}

#[test]
fn a_digest_lists_each_conversation_inert_and_encoded() {
    let evil = "Printer down\r\nBcc: attacker@evil.example.test\r\n\r\n<b>fake body</b>";
    let french = "Livraison retardée. Arrivée prévue : 5 août, 11h48";
    let digest = Digest {
        team: "support".into(),
        date: "2025-03-11".parse().unwrap(),
        entries: vec![
            notice(
                evil,
                "Eve <script>alert(1)</script> <eve@customer-n.example.test>",
            ),
            Notice {
                kind: NoticeKind::Warning,
                conversation: "c9".into(),
                ..notice(french, "rene@customer-o.example.test")
            },
        ],
    };
    let origin = origin();
    let at = "2025-03-11T07:30:00Z".parse().unwrap();
    let id = origin.new_message_id("digest-support", at);
    let to = vec!["nina.lead@ourco.example.test".to_string()];
    let raw = build_digest(&digest, &origin, &to, &id, at).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let head = &text[..text.find("\r\n\r\n").unwrap()];
    assert!(!head.to_ascii_lowercase().contains("\r\nbcc:"), "{head}");
    let env = parsed(&raw);
    assert_eq!(
        env.subject,
        "[postroom digest] support: 2 conversations need attention on Tue 2025-03-11"
    );
    assert!(is_own_mail(&env), "a digest coming back is ours");
    let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let plain = message.body_text(0).unwrap();
    assert!(plain.contains("1. first response overdue"), "{plain}");
    assert!(plain.contains("2. first response due soon"), "{plain}");
    assert!(plain.contains(&format!("Subject: {french}")), "{plain}");
    assert!(
        plain.contains("Subject: Printer down Bcc: attacker@evil.example.test <b>fake body</b>")
    );
    let html = message.body_html(0).unwrap();
    assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
}
