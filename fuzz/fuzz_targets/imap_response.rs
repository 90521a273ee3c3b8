//! The IMAP data postroom reads: server responses through imap-proto (`Response::parse`, as
//! async-imap 0.12 parses them), and the Message-ID header split postroom does on
//! `BODY[HEADER.FIELDS (MESSAGE-ID)]`, whose result must be one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// imap-proto 0.17.0 panics on some server text (pinned in `tests/fuzz_regressions.rs`); that
/// is upstream's to fix, so panics inside it are caught here and only others count.
fn contain_imap_proto_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let upstream = info
            .location()
            .is_some_and(|l| l.file().contains("imap-proto"));
        if !upstream {
            default(info);
            std::process::abort();
        }
    }));
}

fuzz_target!(init: contain_imap_proto_panics(), |data: &[u8]| {
    // A stream of responses, as they follow each other on one connection.
    let _ = std::panic::catch_unwind(|| {
        let mut rest = data;
        while let Ok((next, _response)) = imap_proto::Response::parse(rest) {
            if next.len() >= rest.len() {
                break;
            }
            rest = next;
        }
    });
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
