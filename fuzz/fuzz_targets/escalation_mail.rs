//! The escalation mail builder with hostile text in every field taken from a customer's mail
//! (field case BUG-30): the result parses, has exactly one Subject and no header the input named
//! (Bcc, X-Priority), goes only to the configured lead, and its HTML part holds only our tags.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use mail_parser::{MessageParser, PartType};
use postroom::notify::{self, Notice, NoticeKind, Origin};

const LEAD: &str = "lead@ourco.example.test";

/// The only tags our HTML part uses.
const OUR_TAGS: [&str; 8] = ["!DOCTYPE", "html", "body", "p", "table", "tr", "th", "td"];

/// The input is split on NUL into subject, sender, owner and mailbox.
fn notice(data: &[u8]) -> Notice {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\0');
    let mut next = || fields.next().unwrap_or("").to_string();
    let (subject, sender, owner, mailbox) = (next(), next(), next(), next());
    let at = Utc.with_ymd_and_hms(2025, 3, 7, 14, 0, 0).unwrap();
    Notice {
        kind: NoticeKind::Breach {
            level: data.len() % 3,
        },
        clock: "first response".into(),
        conversation: "c12".into(),
        mailbox,
        owner: Some(owner),
        sender: Some(sender),
        subject,
        started: at,
        age: chrono::Duration::minutes(245),
        deadline: at,
        timezone: chrono_tz::Europe::Berlin,
    }
}

fn html_tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .map(|t| {
            let t = t.trim_start_matches('/');
            t.split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let notice = notice(data);
    let origin = Origin {
        address: "support@ourco.example.test".into(),
        name: "Support".into(),
    };
    let date = notice.started;
    let raw = notify::build(
        &notice,
        &origin,
        &[LEAD.to_string()],
        "c12.1.2@postroom.ourco.example.test",
        date,
    )
    .expect("the builder accepts any customer text");
    let text = String::from_utf8_lossy(&raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    for line in head.split("\r\n") {
        assert!(line.len() <= 998, "header line over 998 octets");
    }
    let names: Vec<String> = head
        .split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
        .collect();
    assert_eq!(
        names.iter().filter(|n| *n == "subject").count(),
        1,
        "{head}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n == "bcc" || n == "cc" || n == "x-priority"),
        "{head}"
    );
    let message = MessageParser::default()
        .parse(&raw)
        .expect("our own mail parses");
    let to: Vec<_> = message.to().into_iter().flat_map(|a| a.iter()).collect();
    assert_eq!(to.len(), 1);
    assert_eq!(to[0].address.as_deref(), Some(LEAD));
    // A strict parser gives back our subject exactly, but for trailing white space, which it
    // trims (an empty customer subject leaves ours ending in ": ").
    let expected = notify::subject(&notice);
    assert_eq!(
        message.subject().map(str::trim_end),
        Some(expected.trim_end())
    );
    for part in &message.parts {
        if let PartType::Html(html) = &part.body {
            for tag in html_tags(html) {
                assert!(
                    OUR_TAGS.contains(&tag.as_str()),
                    "tag <{tag}> from mail text: {html}"
                );
            }
        }
    }
});
