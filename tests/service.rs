//! The service as an admin installs it: the systemd unit passes `systemd-analyze verify` and its
//! hardening rating, the CLI prints its man page and completions, and the configuration
//! reference in `docs/configuration.md` matches the config types key for key.
//!
//! These tests need `systemd-analyze` (package `systemd`); without it they fail rather than
//! skip, so a CI image without systemd is noticed.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::de::{self, Deserialize, Visitor};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/postroom.service");
const BIN: &str = env!("CARGO_BIN_EXE_postroom");

/// The highest `systemd-analyze security` exposure issue 8 accepts.
const MAX_EXPOSURE: f64 = 2.0;

fn run(program: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program} (install the `systemd` package): {err}"))
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// The unit with `/usr/bin/postroom` pointed at the binary under test, so `verify` can check
/// that ExecStart= names an executable without installing anything system-wide.
fn unit_for_verify(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/postroom "), "{unit}");
    let path = dir.join("postroom.service");
    std::fs::write(&path, unit.replace("/usr/bin/postroom", BIN)).unwrap();
    path
}

/// A MANPATH holding the page `postroom man` prints, so the unit's `Documentation=man:` entry
/// resolves the way it does once the package is installed.
fn manpath_with_our_page(dir: &Path) -> PathBuf {
    let man1 = dir.join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    let page = run(BIN, &["man"], &[]);
    assert!(page.status.success(), "{}", text(&page));
    std::fs::write(man1.join("postroom.1"), page.stdout).unwrap();
    dir.join("man")
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_verify(dir.path());
    let manpath = manpath_with_our_page(dir.path());
    let out = run(
        "systemd-analyze",
        &["verify", unit.to_str().unwrap()],
        &[("MANPATH", &manpath)],
    );
    assert!(out.status.success(), "verify failed:\n{}", text(&out));
    assert!(
        text(&out).trim().is_empty(),
        "verify warned:\n{}",
        text(&out)
    );
}

#[test]
fn the_unit_rates_two_or_lower_in_systemd_analyze_security() {
    let out = run(
        "systemd-analyze",
        &["security", "--offline=true", "--no-pager", UNIT],
        &[],
    );
    let report = text(&out);
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating in:\n{report}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the rating in `{line}`"));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn the_unit_keeps_what_the_daemon_relies_on() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=60",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=postroom",
        "StateDirectory=postroom",
        "ConfigurationDirectory=postroom",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "# LoadCredential=",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "missing `{line}`"
        );
    }
}

/// Every command, as clap names it, from `--help`'s command list.
fn commands() -> Vec<String> {
    let out = run(BIN, &["--help"], &[]);
    let help = text(&out);
    let list = help.split("Commands:").nth(1).expect("a command list");
    let list = list.split("Options:").next().unwrap();
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_man_page_is_roff_and_names_every_command() {
    let out = run(BIN, &["man"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH postroom 1"), "{page}");
    let names = commands();
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        let roff_name = format!("postroom\\-{}(1)", name.replace('-', "\\-"));
        assert!(
            page.contains(&roff_name),
            "`{roff_name}` missing from:\n{page}"
        );
        let sub = run(BIN, &["man", name], &[]);
        assert!(sub.status.success(), "man {name}: {}", text(&sub));
        let expected = format!(".TH postroom-{name} 1");
        assert!(String::from_utf8_lossy(&sub.stdout).contains(&expected));
    }
}

#[test]
fn man_and_completions_need_no_config_file() {
    let missing = "/nonexistent/postroom.toml";
    for args in [vec!["man"], vec!["completions", "bash"]] {
        let mut full = vec!["--config", missing];
        full.extend(args.iter().copied());
        let out = run(BIN, &full, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let out = run(BIN, &["man", "no-such-command"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn completions_are_produced_for_each_shell() {
    let cases = [
        ("bash", "complete -F _postroom"),
        ("zsh", "#compdef postroom"),
        ("fish", "complete -c postroom"),
    ];
    for (shell, marker) in cases {
        let out = run(BIN, &["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains(marker),
            "{shell}: no `{marker}` in:\n{script}"
        );
        assert!(
            script.contains("check-config"),
            "{shell} script lacks commands"
        );
    }
    let bash = run(BIN, &["completions", "bash"], &[]).stdout;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postroom.bash");
    std::fs::write(&path, bash).unwrap();
    let syntax = run("bash", &["-n", path.to_str().unwrap()], &[]);
    assert!(syntax.status.success(), "{}", text(&syntax));
}

// ---------------------------------------------------------------------------------------------
// The configuration reference

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");

/// The error a [`FieldNames`] deserialiser stops with: the field list serde's derive passed in.
#[derive(Debug)]
struct Fields(Vec<&'static str>);

impl fmt::Display for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Fields {}

impl de::Error for Fields {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Fields(Vec::new())
    }
}

/// A deserialiser that only answers `deserialize_struct`, by reporting the names of every field
/// the type accepts (after `rename`). This is the config types' own list of keys, so the
/// reference cannot fall behind a field added to them.
struct FieldNames;

impl<'de> de::Deserializer<'de> for FieldNames {
    type Error = Fields;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
        Err(Fields(Vec::new()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Fields> {
        Err(Fields(fields.to_vec()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

fn fields_of<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    match T::deserialize(FieldNames) {
        Ok(_) => panic!("a struct cannot be built from nothing"),
        Err(Fields(fields)) => {
            assert!(
                !fields.is_empty(),
                "{} is not a plain struct",
                std::any::type_name::<T>()
            );
            fields
        }
    }
}

/// Each heading of the reference with the config type whose keys its table lists.
fn sections() -> Vec<(&'static str, Vec<&'static str>)> {
    use postroom::{assign::availability as av, calendar, config, rules, sla};
    vec![
        ("## `[daemon]`", fields_of::<config::DaemonConfig>()),
        ("## `[[server]]`", fields_of::<config::ServerConfig>()),
        ("## `[[mailbox]]`", fields_of::<config::MailboxConfig>()),
        ("## `[[team]]`", fields_of::<config::TeamConfig>()),
        ("## `[[agent]]`", fields_of::<config::AgentConfig>()),
        ("### `away`", fields_of::<av::AwayPeriod>()),
        ("### `working_hours`", fields_of::<av::WorkingHours>()),
        ("## `[[calendar]]`", fields_of::<calendar::CalendarConfig>()),
        ("## `[[sla]]`", fields_of::<sla::SlaConfig>()),
        (
            "### `[[sla.escalation]]`",
            fields_of::<sla::EscalationConfig>(),
        ),
        ("## `[[rule]]`", fields_of::<rules::RuleConfig>()),
        ("### `assign`", fields_of::<rules::AssignConfig>()),
        ("### `when`", fields_of::<rules::Condition>()),
        ("### Matchers", fields_of::<rules::Matcher>()),
        ("### `spam_score`", fields_of::<rules::SpamScore>()),
        (
            "## `[smtp]`",
            fields_of::<postroom::config_smtp::SmtpConfig>(),
        ),
        ("## `[http]`", fields_of::<config::HttpConfig>()),
    ]
}

/// The keys in the first column of the tables under each heading of the reference.
fn documented_keys(doc: &str) -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut heading = String::new();
    for line in doc.lines() {
        if line.starts_with('#') {
            heading = line.trim().to_string();
            out.entry(heading.clone()).or_default();
        } else if let Some(cell) = line.strip_prefix("| `") {
            if let Some((key, _)) = cell.split_once('`') {
                out.entry(heading.clone())
                    .or_default()
                    .insert(key.to_string());
            }
        }
    }
    out
}

#[test]
fn the_reference_documents_exactly_the_keys_each_section_accepts() {
    let doc = std::fs::read_to_string(REFERENCE).unwrap();
    let documented = documented_keys(&doc);
    for (heading, fields) in sections() {
        let keys = documented
            .get(heading)
            .unwrap_or_else(|| panic!("no heading `{heading}` in docs/configuration.md"));
        let accepted: BTreeSet<String> = fields.iter().map(|f| f.to_string()).collect();
        let missing: Vec<_> = accepted.difference(keys).collect();
        let invented: Vec<_> = keys.difference(&accepted).collect();
        assert!(
            missing.is_empty(),
            "{heading}: undocumented keys {missing:?}"
        );
        assert!(
            invented.is_empty(),
            "{heading}: keys the config refuses {invented:?}"
        );
    }
}

#[test]
fn the_reference_has_a_section_for_every_top_level_table() {
    let doc = std::fs::read_to_string(REFERENCE).unwrap();
    for table in fields_of::<postroom::config::Config>() {
        let single = format!("## `[{table}]`");
        let array = format!("## `[[{table}]]`");
        assert!(
            doc.lines().any(|l| l == single || l == array),
            "docs/configuration.md has no section for `{table}`"
        );
    }
}

/// The TOML blocks of a Markdown text.
fn toml_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Points `/etc/postroom/...` at files made in `dir`, so checks that open files pass.
fn with_files_in(block: &str, dir: &Path) -> String {
    let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20251224\r\n\
               SUMMARY:Closed\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    for (name, content) in [
        ("internal-ca.pem", "-----BEGIN CERTIFICATE-----\n"),
        ("support.secret", "secret\n"),
        ("billing.secret", "secret\n"),
        ("holidays.ics", ics),
    ] {
        std::fs::write(dir.join(name), content).unwrap();
    }
    block.replace("/etc/postroom/", &format!("{}/", dir.display()))
}

#[test]
fn every_toml_block_in_the_reference_is_a_valid_config() {
    let doc = std::fs::read_to_string(REFERENCE).unwrap();
    let blocks = toml_blocks(&doc);
    assert!(
        blocks.len() >= 2,
        "expected a minimal and a complete example"
    );
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let text = with_files_in(block, dir.path());
        if let Err(problems) = postroom::config::Config::parse(&text) {
            let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            panic!("block {i} is refused:\n{}\n{text}", list.join("\n"));
        }
    }
}

/// Every key name used anywhere in a TOML value, at any depth.
fn keys_in(value: &toml::Value, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                out.insert(key.clone());
                keys_in(inner, out);
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|item| keys_in(item, out)),
        _ => {}
    }
}

#[test]
fn the_complete_example_uses_every_key() {
    let doc = std::fs::read_to_string(REFERENCE).unwrap();
    // Keys that exclude each other (a password or a token command) cannot all stand in one
    // config, so every example block of the reference counts.
    let mut used = BTreeSet::new();
    for block in toml_blocks(&doc) {
        keys_in(&block.parse::<toml::Value>().unwrap(), &mut used);
    }
    let unused: Vec<&str> = (sections().into_iter())
        .flat_map(|(_, fields)| fields)
        .filter(|f| !used.contains(*f))
        .collect();
    assert!(
        unused.is_empty(),
        "the complete example never sets {unused:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The troubleshooting page

/// All Rust source text of the crate.
fn source_text(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_text(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn troubleshooting_headings_quote_messages_postroom_still_prints() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/troubleshooting.md"
    ))
    .unwrap();
    let ours = doc
        .split("## Messages from postroom")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a `Messages from postroom` section");
    let mut source = String::new();
    source_text(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut source,
    );
    // A heading quotes one message, or several as `one` / `another`.
    let headings: Vec<&str> = ours
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .flat_map(|l| l.split("` / `"))
        .collect();
    assert!(headings.len() >= 15, "{headings:?}");
    for heading in headings {
        for fragment in heading.split('…').map(str::trim).filter(|f| !f.is_empty()) {
            assert!(
                source.contains(fragment),
                "troubleshooting.md quotes `{fragment}`, which no longer occurs in src/"
            );
        }
    }
}
