//! `Config::parse` on arbitrary text: it returns a config or a list of problems, never panics,
//! and each problem it reports names what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => {
            // A config that parses is also checked at start: that must not panic either.
            let _ = postroom::rules::check::findings(&config);
        }
        Err(problems) => assert!(!problems.is_empty(), "an error without problems"),
    }
});
