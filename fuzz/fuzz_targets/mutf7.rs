//! Modified UTF-7 folder names: any Unicode name survives encode then decode, the encoding is
//! printable ASCII, and decoding any wire text (a server's folder list) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom::imap::mutf7;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let decoded = mutf7::decode(&text);
    assert!(
        decoded.len() <= text.len() * 3 + 4,
        "decoding grew {text:?}"
    );
    let wire = mutf7::encode(&text);
    assert!(wire.bytes().all(|b| (0x20..0x7f).contains(&b)), "{wire:?}");
    assert_eq!(
        mutf7::decode(&wire),
        text,
        "round trip of {text:?} via {wire:?}"
    );
});
