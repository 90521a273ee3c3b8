//! The IMAP data postroom reads: server responses through imap-proto (`Response::parse`, as
//! async-imap 0.12 parses them), and the Message-ID header split postroom does on
//! `BODY[HEADER.FIELDS (MESSAGE-ID)]`, whose result must be one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // A stream of responses, as they follow each other on one connection.
    while let Ok((next, _response)) = imap_proto::Response::parse(rest) {
        if next.len() >= rest.len() {
            break;
        }
        rest = next;
    }
    let header = String::from_utf8_lossy(data);
    let id = header
        .split_once(':')
        .and_then(|(_, v)| postroom::message::clean_id(&v.replace(['\r', '\n'], " ")));
    if let Some(id) = id {
        assert!(
            !id.is_empty() && !id.chars().any(char::is_control),
            "{id:?}"
        );
    }
});
