//! Finding every problem in a config file, each with its key path, line and a hint.
//!
//! Split from `config` so the types stay readable. [`deserialize`] collects unknown keys with
//! `serde_ignored` rather than stopping at the first; [`validate`] checks what serde cannot see:
//! references between sections, duplicates, folder names, credentials and transport security.

use std::collections::HashSet;
use std::net::IpAddr;

use toml_edit::{ImDocument, Item, Value};

use crate::calendar::Calendar;
use crate::config::{Config, Problem, Security};
use crate::sla::Policy;

/// Maps key paths such as `mailbox[1].server` to line numbers in the original text.
pub struct Locator {
    text: String,
    doc: Option<ImDocument<String>>,
}

impl Locator {
    /// Parses the text for spans; a syntax error leaves the locator empty.
    pub fn new(text: &str) -> Locator {
        Locator {
            text: text.to_string(),
            doc: ImDocument::parse(text.to_string()).ok(),
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The line of a key path; falls back to the nearest enclosing key that can be found.
    pub fn line(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut best = None;
        let mut item: Option<&Item> = None;
        let mut table = Some(doc.as_table());
        for segment in segments(path) {
            match segment {
                Segment::Key(key) => {
                    if let Some(t) = table {
                        if let Some(span) = t.key(key).and_then(|k| k.span()) {
                            best = Some(span.start);
                        }
                        item = t.get(key);
                        table = item.and_then(Item::as_table);
                    } else if let Some(Item::Value(Value::InlineTable(t))) = item {
                        if let Some(span) = t.key(key).and_then(|k| k.span()) {
                            best = Some(span.start);
                        }
                        item = None;
                    } else {
                        break;
                    }
                }
                Segment::Index(index) => {
                    let Some(array) = item.and_then(Item::as_array_of_tables) else {
                        break;
                    };
                    let Some(t) = array.get(index) else { break };
                    if let Some(span) = t.span() {
                        best = Some(span.start);
                    }
                    table = Some(t);
                }
            }
        }
        best.map(|offset| self.line_of(offset))
    }

    /// The key path (`server[0].port`) whose key or value covers a byte offset, if any.
    pub fn path_at(&self, offset: usize) -> Option<String> {
        let doc = self.doc.as_ref()?;
        path_in_table(doc.as_table(), "", offset)
    }
}

fn covers(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

fn join(prefix: &str, key: &str) -> String {
    match prefix.is_empty() {
        true => key.to_string(),
        false => format!("{prefix}.{key}"),
    }
}

fn path_in_table(table: &toml_edit::Table, prefix: &str, offset: usize) -> Option<String> {
    for (key, item) in table.iter() {
        let path = join(prefix, key);
        let key_span = table.key(key).and_then(|k| k.span());
        match item {
            Item::Value(value) => {
                if let Some(inner) = path_in_value(value, &path, offset) {
                    return Some(inner);
                }
                if covers(key_span, offset) || covers(value.span(), offset) {
                    return Some(path);
                }
            }
            Item::Table(t) => {
                if let Some(inner) = path_in_table(t, &path, offset) {
                    return Some(inner);
                }
            }
            Item::ArrayOfTables(array) => {
                for (i, t) in array.iter().enumerate() {
                    if let Some(inner) = path_in_table(t, &format!("{path}[{i}]"), offset) {
                        return Some(inner);
                    }
                }
            }
            Item::None => {}
        }
    }
    None
}

fn path_in_value(value: &Value, path: &str, offset: usize) -> Option<String> {
    match value {
        Value::InlineTable(t) => t.iter().find_map(|(key, v)| {
            let inner = join(path, key);
            path_in_value(v, &inner, offset)
                .or_else(|| covers(v.span(), offset).then(|| inner.clone()))
        }),
        Value::Array(array) => array.iter().enumerate().find_map(|(i, v)| {
            let inner = format!("{path}[{i}]");
            path_in_value(v, &inner, offset)
                .or_else(|| covers(v.span(), offset).then(|| inner.clone()))
        }),
        _ => None,
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((key, rest)) => {
                out.push(Segment::Key(key));
                if let Ok(index) = rest.trim_end_matches(']').parse() {
                    out.push(Segment::Index(index));
                }
            }
            None => out.push(Segment::Key(part)),
        }
    }
    out
}

/// Turns serde_ignored's path into our `mailbox[0].key` form.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => {
            let parent = key_path(parent);
            let key = match key.as_str() {
                "servers" => "server",
                other => other,
            };
            if parent.is_empty() {
                key.to_string()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

/// Deserialises the text, collecting unknown keys as problems.
pub fn deserialize(text: &str, locator: &Locator) -> Result<(Config, Vec<Problem>), Vec<Problem>> {
    let mut unknown = Vec::new();
    let deserializer = toml::Deserializer::new(text);
    let result: Result<Config, _> =
        serde_ignored::deserialize(deserializer, |path| unknown.push(key_path(&path)));
    match result {
        Ok(config) => {
            let problems = unknown
                .into_iter()
                .map(|key| Problem {
                    line: locator.line(&key),
                    message: "unknown key".into(),
                    hint: unknown_key_hint(&key),
                    key,
                })
                .collect();
            Ok((config, problems))
        }
        Err(err) => {
            let message = err.message().trim().to_string();
            // The text parsed as TOML, so the value under some key has the wrong type or form:
            // name that key, not just the line.
            let key = err
                .span()
                .and_then(|span| locator.path_at(span.start))
                .unwrap_or_else(|| "(syntax)".into());
            Err(vec![Problem {
                key,
                line: err.span().map(|s| locator.line_of(s.start)),
                hint: type_hint(&message),
                message,
            }])
        }
    }
}

/// A fix for a value of the wrong type, from serde's wording.
fn type_hint(message: &str) -> String {
    let hint = if message.starts_with("invalid value: integer") {
        "the number is out of range for this key (a port is 1 to 65535)"
    } else if message.contains("expected u") || message.contains("expected i") {
        "write a whole number without quotes, such as port = 993"
    } else if message.contains("expected a boolean") {
        "write true or false, without quotes"
    } else if message.contains("expected a string") || message.contains("expected a borrowed") {
        "put the value in double quotes, such as name = \"support\""
    } else if message.contains("expected a sequence") {
        "write a list in square brackets, such as agents = [\"alice\", \"bob\"]"
    } else if message.contains("unknown variant") {
        "use one of the values the message lists"
    } else {
        "see config.example.toml for the expected form of each key"
    };
    hint.to_string()
}

fn unknown_key_hint(key: &str) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    let known: &[&str] = &[
        "state_dir",
        "sla_check_secs",
        "name",
        "host",
        "port",
        "security",
        "ca_file",
        "command_timeout_secs",
        "idle_secs",
        "server",
        "login",
        "password",
        "password_file",
        "password_env",
        "password_credential",
        "auth",
        "token_command",
        "oauth_user",
        "pin_sha256",
        "max_connections_per_login",
        "inbox",
        "assigned_root",
        "team",
        "fetch_batch",
        "body_fetch_bytes",
        "poll_secs",
        "agents",
        "id",
        "email",
        "calendar",
        "timezone",
        "always",
        "holidays",
        "holidays_file",
        "first_response",
        "next_response",
        "resolution",
        "warn_at",
        "escalation",
        "after",
        "outside_hours",
        "rule",
        "mailbox",
        "when",
        "assign",
        "unassigned",
        "ignore",
        "priority",
        "sla",
        "tags",
        "folder",
        "stop",
        "strategy",
        "sticky_when_away",
        "max_open",
        "time_zone",
        "away",
        "working_hours",
        "from",
        "from_domain",
        "to",
        "cc",
        "recipient",
        "subject",
        "body",
        "header",
        "attachment",
        "has_attachment",
        "size_above",
        "size_below",
        "automated",
        "mailing_list",
        "spam_score",
        "business_hours",
        "all",
        "any",
        "not",
        "equals",
        "contains",
        "regex",
        "one_of",
        "above",
        "days",
        "start",
        "end",
        "until",
        "listen",
        "token",
        "token_file",
        "refresh_secs",
        "sla",
        "leads",
        "unassigned_alert_after",
        "reminder",
        "digest",
        "answered_flag",
        "smtp",
        "token_command",
        "from",
        "from_name",
        "timeout_secs",
    ];
    match known.iter().find(|k| close_to(last, k)) {
        Some(suggestion) => format!("did you mean `{suggestion}`? unknown keys are refused"),
        None => "remove it, or check the spelling against config.example.toml".into(),
    }
}

/// True when two keys differ by at most two edits: enough to catch typos.
fn close_to(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()] <= 2
}

/// Collects problems as validation walks the config.
struct Report<'a> {
    locator: &'a Locator,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn add(&mut self, key: String, message: impl Into<String>, hint: impl Into<String>) {
        let line = self.locator.line(&key);
        self.problems.push(Problem {
            key,
            line,
            message: message.into(),
            hint: hint.into(),
        });
    }
}

/// Checks references, duplicates, names and credentials; returns every problem found.
pub fn validate(config: &Config, locator: &Locator) -> Vec<Problem> {
    let mut report = Report {
        locator,
        problems: Vec::new(),
    };
    check_servers(config, &mut report);
    check_mailboxes(config, &mut report);
    check_teams(config, &mut report);
    check_agents(config, &mut report);
    check_calendars(config, &mut report);
    check_slas(config, &mut report);
    for finding in crate::rules::check::findings(config) {
        report.add(finding.key, finding.message, finding.hint);
    }
    check_http(config, &mut report);
    check_escalation_refs(config, &mut report);
    report.problems
}

fn check_servers(config: &Config, report: &mut Report<'_>) {
    for dup in Config::duplicates(config.servers.iter().map(|s| s.name.as_str())) {
        report.add(
            "server".into(),
            format!("two servers are named `{dup}`"),
            "names must be unique",
        );
    }
    for (i, server) in config.servers.iter().enumerate() {
        if server.host.trim().is_empty() {
            report.add(
                format!("server[{i}].host"),
                "empty host",
                "give the IMAP host name",
            );
        }
        if server.security == Security::Plain && !is_loopback(&server.host) {
            report.add(
                format!("server[{i}].security"),
                format!(
                    "plain IMAP to `{}` would send the password in clear",
                    server.host
                ),
                "use security = \"tls\" or \"starttls\"; plain is only for loopback",
            );
        }
        if let Some(ca) = &server.ca_file {
            if !ca.is_file() {
                report.add(
                    format!("server[{i}].ca_file"),
                    format!("{} does not exist or is not a file", ca.display()),
                    "point it at the PEM file of your internal CA",
                );
            }
        }
        if server.max_connections_per_login == 0 {
            report.add(
                format!("server[{i}].max_connections_per_login"),
                "no connection allowed",
                "at least 1; Exchange allows 16 per account by default",
            );
        }
        for pin in &server.pin_sha256 {
            if let Err(err) = crate::imap::pin::parse_pin(pin) {
                report.add(
                    format!("server[{i}].pin_sha256"),
                    err.to_string(),
                    "the SHA-256 of the certificate's public key, base64 or hex (see docs)",
                );
            }
        }
        if server.command_timeout_secs == 0 || server.idle_secs < 30 {
            report.add(
                format!("server[{i}].idle_secs"),
                "time-outs too short",
                "command_timeout_secs must be > 0 and idle_secs at least 30",
            );
        }
    }
}

/// True for `localhost` and loopback addresses.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_mailboxes(config: &Config, report: &mut Report<'_>) {
    if config.mailboxes.is_empty() {
        report.add(
            "mailbox".into(),
            "no [[mailbox]] is configured",
            "add one per shared mailbox",
        );
    }
    for dup in Config::duplicates(config.mailboxes.iter().map(|m| m.name.as_str())) {
        report.add(
            "mailbox".into(),
            format!("two mailboxes are named `{dup}`"),
            "names must be unique",
        );
    }
    for (i, mailbox) in config.mailboxes.iter().enumerate() {
        if config.server(&mailbox.server).is_none() {
            let known: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
            report.add(
                format!("mailbox[{i}].server"),
                format!("no [[server]] is named `{}`", mailbox.server),
                format!("known servers: {}", list_or_none(&known)),
            );
        }
        if config.team(&mailbox.team).is_none() {
            let known: Vec<&str> = config.teams.iter().map(|t| t.name.as_str()).collect();
            report.add(
                format!("mailbox[{i}].team"),
                format!("no [[team]] is named `{}`", mailbox.team),
                format!("known teams: {}", list_or_none(&known)),
            );
        }
        check_password(i, mailbox, report);
        for problem in crate::imap::auth::check(mailbox) {
            let key = format!("mailbox[{i}].{}", problem.key);
            report.add(key, problem.message, problem.hint);
        }
        check_folder_name(
            &format!("mailbox[{i}].assigned_root"),
            &mailbox.assigned_root,
            report,
        );
        if mailbox.fetch_batch == 0 || mailbox.body_fetch_bytes < 1024 || mailbox.poll_secs == 0 {
            report.add(
                format!("mailbox[{i}].fetch_batch"),
                "fetch_batch, body_fetch_bytes or poll_secs is too small",
                "fetch_batch >= 1, body_fetch_bytes >= 1024, poll_secs >= 1",
            );
        }
        // Zero would poll the server in a tight loop, which Exchange answers with throttling.
        if mailbox.folder_poll_secs == 0 || mailbox.reconcile_secs == 0 {
            report.add(
                format!("mailbox[{i}].folder_poll_secs"),
                "folder_poll_secs and reconcile_secs must be at least 1",
                "the defaults (30 and 600) suit Exchange",
            );
        }
    }
}

fn check_password(i: usize, mailbox: &crate::config::MailboxConfig, report: &mut Report<'_>) {
    let set = [
        mailbox.password.is_some(),
        mailbox.password_file.is_some(),
        mailbox.password_env.is_some(),
        mailbox.password_credential.is_some(),
    ];
    match set.iter().filter(|s| **s).count() {
        // A token login needs no password; `imap::auth::check` wants its token_command.
        0 if !mailbox.uses_password() => {}
        0 => report.add(
            format!("mailbox[{i}].login"),
            "no password is configured",
            "set one of password_file, password_env, password_credential or password",
        ),
        1 => {}
        _ => report.add(
            format!("mailbox[{i}].password_file"),
            "more than one password source is set",
            "keep exactly one of password_file, password_env, password_credential, password",
        ),
    }
    if let Some(file) = &mailbox.password_file {
        if !file.is_file() {
            report.add(
                format!("mailbox[{i}].password_file"),
                format!("{} does not exist or is not a file", file.display()),
                "create it with the password on one line, readable only by postroom",
            );
        }
    }
}

fn check_folder_name(key: &str, name: &str, report: &mut Report<'_>) {
    let bad = name.trim().is_empty()
        || name.starts_with('/')
        || name.ends_with('/')
        || name.chars().any(|c| c.is_control() || c == '*' || c == '%');
    if bad {
        report.add(
            key.to_string(),
            format!("`{name}` is not a usable folder name"),
            "use a plain name without control characters, `*`, `%` or a leading/trailing `/`",
        );
    }
}

fn check_teams(config: &Config, report: &mut Report<'_>) {
    for dup in Config::duplicates(config.teams.iter().map(|t| t.name.as_str())) {
        report.add(
            "team".into(),
            format!("two teams are named `{dup}`"),
            "names must be unique",
        );
    }
    for (i, team) in config.teams.iter().enumerate() {
        if team.agents.is_empty() {
            report.add(
                format!("team[{i}].agents"),
                "the team has no agents",
                "list agent ids",
            );
        }
        for id in &team.agents {
            if config.agent(id).is_none() {
                report.add(
                    format!("team[{i}].agents"),
                    format!("no [[agent]] has id `{id}`"),
                    "add an [[agent]] with that id, or fix the spelling",
                );
            }
        }
        for dup in Config::duplicates(team.agents.iter().map(String::as_str)) {
            report.add(
                format!("team[{i}].agents"),
                format!("`{dup}` is listed twice"),
                "list each agent once",
            );
        }
    }
}

/// The longest agent name: an agent's folder is `<assigned_root>/<name>`, and Exchange and
/// Dovecot refuse folder paths of a few hundred bytes once modified UTF-7 has widened them.
const MAX_AGENT_NAME: usize = 64;

fn check_agents(config: &Config, report: &mut Report<'_>) {
    for dup in Config::duplicates(config.agents.iter().map(|a| a.id.as_str())) {
        report.add(
            "agent".into(),
            format!("two agents have id `{dup}`"),
            "ids must be unique",
        );
    }
    let in_teams: HashSet<&str> = config
        .teams
        .iter()
        .flat_map(|t| t.agents.iter().map(String::as_str))
        .collect();
    for dup in Config::duplicates(config.agents.iter().map(|a| a.name.as_str())) {
        report.add(
            "agent".into(),
            format!("two agents are named `{dup}`: they would share one folder"),
            "folder names must be unique; add a surname or an initial",
        );
    }
    for (i, agent) in config.agents.iter().enumerate() {
        if agent.name.chars().count() > MAX_AGENT_NAME {
            report.add(
                format!("agent[{i}].name"),
                format!("the name is {} characters long", agent.name.chars().count()),
                format!(
                    "keep folder names to {MAX_AGENT_NAME} characters; servers refuse longer ones"
                ),
            );
        }
        if agent.name.contains('/') {
            report.add(
                format!("agent[{i}].name"),
                format!("`{}` contains `/`, the folder separator", agent.name),
                "Exchange cannot show a folder whose name contains `/`; pick another name",
            );
        } else {
            check_folder_name(&format!("agent[{i}].name"), &agent.name, report);
        }
        if !in_teams.contains(agent.id.as_str()) {
            report.add(
                format!("agent[{i}].id"),
                format!("agent `{}` is not in any team", agent.id),
                "add the id to a [[team]]'s agents, or remove the agent",
            );
        }
    }
}

fn check_calendars(config: &Config, report: &mut Report<'_>) {
    for dup in Config::duplicates(config.calendars.iter().map(|c| c.name.as_str())) {
        report.add(
            "calendar".into(),
            format!("two calendars are named `{dup}`"),
            "names must be unique",
        );
    }
    for (i, calendar) in config.calendars.iter().enumerate() {
        if let Err(problems) = Calendar::from_config(calendar) {
            for p in problems {
                report.add(format!("calendar[{i}].{}", p.key), p.message, p.hint);
            }
        }
    }
    let mailboxes = config.mailboxes.iter().enumerate();
    let uses = mailboxes
        .map(|(i, m)| (format!("mailbox[{i}].calendar"), &m.calendar))
        .chain(
            (config.teams.iter().enumerate())
                .map(|(i, t)| (format!("team[{i}].calendar"), &t.calendar)),
        );
    for (key, name) in uses {
        check_calendar_ref(config, key, name.as_deref(), report);
    }
}

fn check_calendar_ref(config: &Config, key: String, name: Option<&str>, report: &mut Report<'_>) {
    let Some(name) = name else { return };
    if config.calendar(name).is_none() {
        let known: Vec<&str> = config.calendars.iter().map(|c| c.name.as_str()).collect();
        report.add(
            key,
            format!("no [[calendar]] is named `{name}`"),
            format!("known calendars: {}", list_or_none(&known)),
        );
    }
}

fn check_slas(config: &Config, report: &mut Report<'_>) {
    for dup in Config::duplicates(config.slas.iter().map(|s| s.name.as_str())) {
        report.add(
            "sla".into(),
            format!("two SLA policies are named `{dup}`"),
            "names must be unique",
        );
    }
    for (i, sla) in config.slas.iter().enumerate() {
        if let Err(problems) = Policy::from_config(sla) {
            for p in problems {
                report.add(format!("sla[{i}].{}", p.key), p.message, p.hint);
            }
        }
        let key = format!("sla[{i}].calendar");
        check_calendar_ref(config, key, sla.calendar.as_deref(), report);
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The listener must parse, and anything but loopback needs a token: the dashboard shows
/// subjects and senders, which are not for the whole network.
fn check_http(config: &Config, report: &mut Report<'_>) {
    let Some(http) = &config.http else { return };
    let addr = match http.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            report.add(
                "http.listen".into(),
                format!("`{}` is not an address and port", http.listen),
                "such as listen = \"127.0.0.1:9187\" or \"[::1]:9187\"",
            );
            return;
        }
    };
    if http.token.is_some() && http.token_file.is_some() {
        report.add(
            "http.token".into(),
            "both token and token_file are set",
            "keep one; token_file keeps the secret out of the config file",
        );
    }
    if http.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        report.add(
            "http.token".into(),
            "the token is empty",
            "set a long random token",
        );
    }
    if !addr.ip().is_loopback() && http.token_source().is_none() {
        report.add(
            "http.listen".into(),
            format!("{addr} is not a loopback address but no token is set"),
            "set token_file (or token), or listen on 127.0.0.1",
        );
    }
    if http.refresh_secs == 0 {
        report.add(
            "http.refresh_secs".into(),
            "zero would reload the dashboard without pause",
            "such as refresh_secs = 30",
        );
    }
}

/// `[smtp]`, the `sla` keys of mailboxes and teams, team leads and unassigned alerts.
fn check_escalation_refs(config: &Config, report: &mut Report<'_>) {
    if let Some(smtp) = &config.smtp {
        for p in crate::config_smtp::check(smtp) {
            report.add(format!("smtp.{}", p.key), p.message, p.hint);
        }
    }
    let mailboxes = config.mailboxes.iter().enumerate();
    let slas = mailboxes
        .map(|(i, m)| (format!("mailbox[{i}].sla"), &m.sla))
        .chain((config.teams.iter().enumerate()).map(|(i, t)| (format!("team[{i}].sla"), &t.sla)));
    for (key, name) in slas {
        let Some(name) = name else { continue };
        if !config.slas.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = config.slas.iter().map(|s| s.name.as_str()).collect();
            let hint = format!("known SLA policies: {}", list_or_none(&known));
            report.add(key, format!("no [[sla]] is named `{name}`"), hint);
        }
    }
    for (i, team) in config.teams.iter().enumerate() {
        for lead in &team.leads {
            let known = config.agent(lead).is_some_and(|a| a.email.is_some());
            if !known && !crate::config_smtp::plain_address(lead) {
                report.add(
                    format!("team[{i}].leads"),
                    format!("`{lead}` is neither an agent with an email nor an address"),
                    "list agent ids that have `email`, or plain addresses",
                );
            }
        }
    }
    for (i, team) in config.teams.iter().enumerate() {
        if let Some(Err(message)) = team.digest.as_deref().map(crate::sla::TimeOfDay::parse) {
            let hint = "the local time on the team's calendar, such as digest = \"08:30\"";
            report.add(format!("team[{i}].digest"), message, hint);
        }
        if team.digest.is_some() && team.calendar.is_none() {
            report.add(
                format!("team[{i}].digest"),
                "a digest needs the team's calendar: it goes out on business days only",
                "set `calendar` on this team (a calendar with `always = true` for every day)",
            );
        }
        if let (Some(digest), Some(calendar)) = (&team.digest, &team.calendar) {
            daily_time_reached(
                config,
                report,
                &format!("team[{i}].digest"),
                digest,
                calendar,
            );
        }
    }
    for (i, policy) in config.slas.iter().enumerate() {
        let Some(reminder) = &policy.reminder else {
            continue;
        };
        // The policy's own calendar, else that of each team whose policy it is.
        let calendars: Vec<&String> = match &policy.calendar {
            Some(calendar) => vec![calendar],
            None => config
                .teams
                .iter()
                .filter(|t| t.sla.as_deref() == Some(policy.name.as_str()))
                .filter_map(|t| t.calendar.as_ref())
                .collect(),
        };
        for calendar in calendars {
            daily_time_reached(
                config,
                report,
                &format!("sla[{i}].reminder"),
                reminder,
                calendar,
            );
        }
    }
    for (i, mailbox) in config.mailboxes.iter().enumerate() {
        if let Some(after) = &mailbox.unassigned_alert_after {
            if let Err(message) = crate::sla::parse_duration(after) {
                let hint = "business time such as \"30m\" or \"2h\"";
                report.add(
                    format!("mailbox[{i}].unassigned_alert_after"),
                    message,
                    hint,
                );
            }
        }
    }
}

/// Reports a daily mail time (a digest, a reminder) that falls after the last closing of every
/// open day of `calendar`: such a mail would never go out, while leads left out of single mails
/// for their digest would hear of nothing. Unparseable times and calendars are reported
/// elsewhere.
fn daily_time_reached(
    config: &Config,
    report: &mut Report<'_>,
    key: &str,
    time: &str,
    calendar: &str,
) {
    let Ok(time) = crate::sla::TimeOfDay::parse(time) else {
        return;
    };
    let Some(entry) = config.calendar(calendar) else {
        return;
    };
    let Ok(checked) = crate::calendar::Calendar::from_config(entry) else {
        return;
    };
    if !checked.reaches(time.minute()) {
        report.add(
            key.to_string(),
            format!(
                "calendar `{calendar}` has closed on every day it opens by then, so this mail \
                 would never go out"
            ),
            "choose a time within the calendar's hours; one at closing time itself goes out \
             just after it",
        );
    }
}
