//! Rule evaluation on parsed messages: a fixed config with rules of every kind (regexes,
//! headers, nested any/all/not, sizes, spam scores) runs on whatever the parser makes of the
//! input. Never a crash, and every explanation line stays one line.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postroom::config::Config;
use postroom::rules::{self, Facts};

const RULES: &str = r#"
[[server]]
name = "local"
host = "127.0.0.1"
security = "plain"

[[mailbox]]
name = "support"
server = "local"
login = "support"
password = "x"
team = "support"

[[team]]
name = "support"
agents = ["alice", "bob"]

[[agent]]
id = "alice"
name = "Alice"

[[agent]]
id = "bob"
name = "Bob"

[[rule]]
name = "billing"
when.recipient = { equals = "billing@ourco.example" }
when.any = [
  { subject = { regex = "(?i)invoice|rechnung|facture" } },
  { attachment = { regex = "\\.pdf$" } },
]
assign = { agent = "alice" }
priority = "high"
tags = ["billing"]

[[rule]]
name = "vip"
when.from_domain = { one_of = ["vip.example", "big.example"] }
when.not = { automated = { equals = "no" } }
priority = "urgent"

[[rule]]
name = "headers"
when.header.x-priority = { equals = "1" }
when.header.x-mailer = { contains = "Outlook" }
tags = ["flagged"]

[[rule]]
name = "spam"
when.spam_score = { header = "X-Spam-Score", above = 5.0 }
ignore = true
folder = "Junk"

[[rule]]
name = "big"
when.size_above = 100
when.has_attachment = true
when.all = [{ body = { contains = "urgent" } }, { not = { mailing_list = true } }]
tags = ["big"]

[[rule]]
name = "body"
when.body = { regex = "(?s)order\\s+#?[0-9]{4,}" }
when.cc = { contains = "@" }
when.to = { regex = "^support" }
assign = { team = "support", strategy = "least_open" }
stop = true

[[rule]]
name = "after stop"
tags = ["never"]
"#;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::parse(RULES).expect("the fuzz rules parse"))
}

/// Panics inside mail-parser are caught by `message::parse` by design (the message is
/// quarantined, see `tests/fuzz_regressions.rs`); only panics elsewhere count here.
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

fuzz_target!(init: contain_parser_panics(), |data: &[u8]| {
    let Ok(envelope) = postroom::message::parse(data, None) else {
        return;
    };
    for in_business_hours in [None, Some(true), Some(false)] {
        let facts = Facts {
            envelope: &envelope,
            in_business_hours,
        };
        let routing = rules::route(&config().rules, "support", &facts);
        for line in &routing.explanation {
            assert!(
                !line.contains(['\r', '\n']),
                "explanation line breaks: {line:?}"
            );
        }
    }
});
