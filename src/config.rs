//! The TOML configuration: its types, loading, and validation.
//!
//! This module owns the contract with the admin. Loading is two steps: the file is deserialised
//! into plain types (collecting every unknown key on the way instead of stopping at the first),
//! then `config_check::validate` checks what serde cannot: references between sections,
//! folder names, duplicates. Every problem carries its key path and line so `check-config` can report all of
//! them at once, each with a hint. Nothing here talks to a server or the store.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::assign::availability::{AwayPeriod, WorkingHours};
use crate::assign::{StickyWhenAway, Strategy};
use crate::calendar::CalendarConfig;
use crate::rules::parsed::{Parsed, Zone};
use crate::rules::RuleConfig;
use crate::secret::SecretSource;
use crate::sla::SlaConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// IMAP servers, referenced by name from mailboxes.
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerConfig>,
    /// The shared mailboxes postroom manages.
    #[serde(default, rename = "mailbox")]
    pub mailboxes: Vec<MailboxConfig>,
    /// Teams of agents; each mailbox hands its work to one team.
    #[serde(default, rename = "team")]
    pub teams: Vec<TeamConfig>,
    /// The people who own conversations.
    #[serde(default, rename = "agent")]
    pub agents: Vec<AgentConfig>,
    /// Business calendars SLA clocks count in.
    #[serde(default, rename = "calendar")]
    pub calendars: Vec<CalendarConfig>,
    /// SLA policies.
    #[serde(default, rename = "sla")]
    pub slas: Vec<SlaConfig>,
    /// Routing rules, in the order they are evaluated (see [`crate::rules`]).
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    /// The metrics, health and dashboard listener; off when the section is absent.
    pub http: Option<HttpConfig>,
    /// The submission server escalation mail goes through; without it nothing is sent.
    pub smtp: Option<crate::config_smtp::SmtpConfig>,
}

/// `[daemon]`: process-wide settings.
#[derive(Debug, Clone, Deserialize)]
pub struct DaemonConfig {
    /// Where the sled database lives.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How often SLA clocks are checked for warnings and breaches, in seconds.
    #[serde(default = "default_sla_check_secs")]
    pub sla_check_secs: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_dir: default_state_dir(),
            sla_check_secs: default_sla_check_secs(),
        }
    }
}

fn default_sla_check_secs() -> u64 {
    crate::escalate::TICK.as_secs()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/postroom")
}

/// How the connection to a server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (port 993).
    Tls,
    /// Plain connection upgraded with STARTTLS (port 143).
    Starttls,
    /// No encryption at all; refused unless the host is a loopback address.
    Plain,
}

/// `[[server]]`: an IMAP endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerConfig {
    /// The name mailboxes refer to.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// Port; defaults by `security` (993 for TLS, 143 otherwise).
    pub port: Option<u16>,
    /// Transport security, TLS by default.
    #[serde(default = "default_security")]
    pub security: Security,
    /// An extra trust anchor (PEM) for a server certificate issued by an internal CA.
    pub ca_file: Option<PathBuf>,
    /// Per-command time-out in seconds. A server that says nothing for this long is treated as
    /// dead and the connection is replaced.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_secs: u64,
    /// How long one IDLE may run before it is re-issued. Exchange silently stops pushing on long
    /// IDLEs, so the default stays well under its 30-minute limit.
    #[serde(default = "default_idle_secs")]
    pub idle_secs: u64,
    /// SHA-256 pins (base64 or hex) of the server's certificate or of its public key (SPKI),
    /// for a self-signed on-premises Exchange. With a pin set, the chain and name are not
    /// checked, but the certificate must match one pin.
    #[serde(default)]
    pub pin_sha256: Vec<String>,
    /// How many connections the mailboxes sharing one authenticating account may hold at once
    /// (see [`crate::imap::budget`]). Exchange allows 16 per user by default; the default leaves
    /// room for the people and tools that use the same account.
    #[serde(default = "default_max_connections")]
    pub max_connections_per_login: usize,
}

fn default_max_connections() -> usize {
    12
}

fn default_security() -> Security {
    Security::Tls
}

fn default_command_timeout() -> u64 {
    60
}

fn default_idle_secs() -> u64 {
    // Ten minutes: a tester of Exchange Online reported IDLE pushes stopping after longer idles,
    // and re-issuing every ten minutes kept them flowing (see docs/exchange.md).
    600
}

impl ServerConfig {
    /// The port to connect to, defaulted by the security mode.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            Security::Tls => 993,
            Security::Starttls | Security::Plain => 143,
        })
    }

    /// The per-command time-out.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }

    /// The longest single IDLE.
    pub fn idle_interval(&self) -> Duration {
        Duration::from_secs(self.idle_secs)
    }
}

/// `[[mailbox]]`: one shared mailbox.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MailboxConfig {
    /// A short name, used in logs, the store and commands.
    pub name: String,
    /// The `[[server]]` it lives on.
    pub server: String,
    /// The login, passed through unchanged (Exchange's delegated forms `DOMAIN\user\shared` and
    /// `user@domain\shared` included).
    pub login: String,
    /// Inline password (flagged at start: prefer a file or a credential).
    pub password: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// A systemd credential name (read from `$CREDENTIALS_DIRECTORY`).
    pub password_credential: Option<String>,
    /// How to authenticate: `login` (default; Exchange's delegated forms need it), `plain`
    /// (AUTHENTICATE PLAIN) or `xoauth2` (with `token_command`).
    #[serde(default)]
    pub auth: AuthMethod,
    /// For `auth = "xoauth2"`: a command (program and arguments, no shell) printing an access
    /// token, bare or as JSON with `access_token` and `expires_in` (see [`crate::oauth`]).
    pub token_command: Option<Vec<String>>,
    /// For `auth = "xoauth2"`: the shared mailbox's address, sent as `user=`; `login` (the
    /// account the token belongs to) when unset.
    pub oauth_user: Option<String>,
    /// The folder new mail arrives in.
    #[serde(default = "default_inbox")]
    pub inbox: String,
    /// The parent of the per-agent folders.
    #[serde(default = "default_assigned_root")]
    pub assigned_root: String,
    /// The team that works this mailbox.
    pub team: String,
    /// Where automatic mail (out-of-office replies, bounces, read receipts) is filed: recorded,
    /// never work for an agent.
    #[serde(default = "default_automated_folder")]
    pub automated_folder: String,
    /// The shared mailbox's sent folder (Exchange: "Sent Items", localised). Replies found here
    /// stop the first-response clock; Exchange only saves delegates' replies here when
    /// `MessageCopyForSentAsEnabled` / `MessageCopyForSendOnBehalfEnabled` are on.
    pub sent_folder: Option<String>,
    /// Where agents drag finished conversations; a message moved here closes its conversation.
    #[serde(default = "default_done_folder")]
    pub done_folder: String,
    /// How often the managed folders are checked for what people moved, in seconds. Each IDLE
    /// needs its own connection, so folders other than the inbox are polled, cheaply (STATUS,
    /// or one LIST-STATUS for all). This poll is most of an idle mailbox's cost: a longer
    /// interval saves CPU and server load, and notices drags that much later.
    #[serde(default = "default_folder_poll_secs")]
    pub folder_poll_secs: u64,
    /// How often every managed folder is compared with the store in full, in seconds; this is
    /// how deletions and moves out of sight are noticed.
    #[serde(default = "default_reconcile_secs")]
    pub reconcile_secs: u64,
    /// How many messages to fetch per round trip during catch-up.
    #[serde(default = "default_batch")]
    pub fetch_batch: u32,
    /// How many bytes of a message body are fetched for routing. Headers are always fetched
    /// whole; the body is cut here so a 50 MB attachment never sits in memory.
    #[serde(default = "default_body_cap")]
    pub body_fetch_bytes: u32,
    /// How often the inbox is polled for UIDNEXT as a safety net under IDLE, in seconds.
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
    /// The `[[calendar]]` SLA clocks count in for this mailbox, over the team's.
    pub calendar: Option<String>,
    /// The `[[sla]]` policy for this mailbox's conversations, over the team's.
    pub sla: Option<String>,
    /// Business time a conversation may wait without an owner before the team's leads are
    /// alerted, such as `"30m"`; no alert when unset.
    pub unassigned_alert_after: Option<String>,
    /// Whether the `\Answered` flag Outlook sets on a message it replied to counts as a
    /// response while no reply was found in the sent folder. A hint, not proof, so it can be
    /// turned off; on by default because many sites never see delegates' replies in Sent Items.
    #[serde(default = "default_true")]
    pub answered_flag: bool,
}

fn default_true() -> bool {
    true
}

fn default_inbox() -> String {
    "INBOX".to_string()
}

fn default_assigned_root() -> String {
    "Assigned".to_string()
}

fn default_automated_folder() -> String {
    "Automated".to_string()
}

fn default_done_folder() -> String {
    "Done".to_string()
}

fn default_folder_poll_secs() -> u64 {
    30
}

fn default_reconcile_secs() -> u64 {
    600
}

fn default_batch() -> u32 {
    200
}

fn default_body_cap() -> u32 {
    64 * 1024
}

fn default_poll_secs() -> u64 {
    60
}

/// How a mailbox logs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// IMAP LOGIN, the login string passed through unchanged.
    #[default]
    Login,
    /// AUTHENTICATE PLAIN.
    Plain,
    /// AUTHENTICATE XOAUTH2 with a token from `token_command`.
    Xoauth2,
}

impl MailboxConfig {
    /// True unless the mailbox logs in with a token: only then is no password needed.
    pub fn uses_password(&self) -> bool {
        self.auth != AuthMethod::Xoauth2
    }

    /// Where the password comes from.
    pub fn password_source(&self) -> Option<SecretSource> {
        SecretSource::pick(
            self.password.as_deref(),
            self.password_file.as_deref(),
            self.password_env.as_deref(),
            self.password_credential.as_deref(),
        )
    }
}

/// `[[team]]`: agents working a queue together.
#[derive(Debug, Clone, Deserialize)]
pub struct TeamConfig {
    /// The team's name.
    pub name: String,
    /// Agent ids, in rotation order.
    pub agents: Vec<String>,
    /// The `[[calendar]]` SLA clocks count in for this team's mailboxes.
    pub calendar: Option<String>,
    /// How new conversations are given out: `round_robin` (default), `least_open` or
    /// `capacity`.
    pub strategy: Option<Parsed<Strategy>>,
    /// A follow-up whose owner is away goes to the `team` (default) or waits for the owner
    /// (`wait`).
    pub sticky_when_away: Option<Parsed<StickyWhenAway>>,
    /// The `[[sla]]` policy for this team's mailboxes, unless a mailbox names its own.
    pub sla: Option<String>,
    /// Who receives breach escalations and unassigned alerts: agent ids (their `email`) or
    /// plain addresses.
    #[serde(default)]
    pub leads: Vec<String>,
    /// A local time of day, `"HH:MM"` on the team's calendar, at which the leads get one digest
    /// of the team's warned and breached conversations per business day, instead of single
    /// escalation mails; off when unset.
    pub digest: Option<String>,
}

/// `[[agent]]`: a person.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentConfig {
    /// A stable id, used in the store and in commands.
    pub id: String,
    /// The name shown as the folder in Outlook.
    pub name: String,
    /// Where their notices go.
    pub email: Option<String>,
    /// The most open conversations they take; at this count they get no new ones.
    pub max_open: Option<u64>,
    /// The time zone their away dates and working hours are in (IANA name, UTC by default).
    pub time_zone: Option<Parsed<Zone>>,
    /// Days off: `away = [{ from = 2025-03-10, until = 2025-03-14 }]`, both days included.
    #[serde(default)]
    pub away: Vec<AwayPeriod>,
    /// Weekly working hours; outside them they get no new conversations.
    pub working_hours: Option<WorkingHours>,
}

/// `[http]`: where `/metrics`, `/healthz` and the dashboard are served.
#[derive(Clone, Deserialize)]
pub struct HttpConfig {
    /// The address to listen on, such as `127.0.0.1:9187`. Anything but a loopback address
    /// needs a token.
    pub listen: String,
    /// The bearer token, written inline (prefer `token_file`).
    pub token: Option<String>,
    /// A file whose first line is the bearer token.
    pub token_file: Option<PathBuf>,
    /// How often the dashboard reloads itself, in seconds.
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
}

fn default_refresh_secs() -> u64 {
    // Half a minute: fresh enough to watch a queue, rare enough that a wall screen left open
    // all day costs the store a few thousand reads.
    30
}

impl HttpConfig {
    /// Where the token comes from, if one is configured.
    pub fn token_source(&self) -> Option<SecretSource> {
        SecretSource::pick(
            self.token.as_deref(),
            self.token_file.as_deref(),
            None,
            None,
        )
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("token_source", &self.token_source())
            .field("refresh_secs", &self.refresh_secs)
            .finish()
    }
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key path, such as `mailbox[0].server`.
    pub key: String,
    /// The 1-based line the key is on, when it can be found.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message)?,
            None => write!(f, "{}: {}", self.key, self.message)?,
        }
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file that was read.
    pub path: PathBuf,
    /// The problems, in file order where lines are known.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        write!(f, "{}: {count} {noun}", self.path.display())?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a config file, returning every problem at once.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            path: path.to_path_buf(),
            problems: vec![Problem {
                key: "(file)".into(),
                line: None,
                message: format!("cannot read the file: {err}"),
                hint: "check the path given with --config and its permissions".into(),
            }],
        })?;
        Config::parse(&text).map_err(|problems| ConfigError {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        let locator = crate::config_check::Locator::new(text);
        let (config, mut problems) = crate::config_check::deserialize(text, &locator)?;
        problems.extend(crate::config_check::validate(&config, &locator));
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// The server a mailbox refers to. Validation guarantees it exists.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// A team by name.
    pub fn team(&self, name: &str) -> Option<&TeamConfig> {
        self.teams.iter().find(|t| t.name == name)
    }

    /// An agent by id.
    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// A calendar by name.
    pub fn calendar(&self, name: &str) -> Option<&CalendarConfig> {
        self.calendars.iter().find(|c| c.name == name)
    }

    /// A mailbox by name.
    pub fn mailbox(&self, name: &str) -> Option<&MailboxConfig> {
        self.mailboxes.iter().find(|m| m.name == name)
    }

    /// Every agent who can own work in a mailbox: its team's, and those that rules for this
    /// mailbox assign to (by team or by name). Each gets a folder in that mailbox.
    pub fn mailbox_agents(&self, mailbox: &MailboxConfig) -> Vec<&AgentConfig> {
        let team_agents = |team: &str| -> Vec<&str> {
            let team = self.teams.iter().find(|t| t.name == team);
            team.map(|t| t.agents.iter().map(String::as_str).collect())
                .unwrap_or_default()
        };
        let mut ids: Vec<&str> = team_agents(&mailbox.team);
        for rule in self.rules_for(&mailbox.name) {
            if let Some(assign) = &rule.assign {
                if let Some(team) = &assign.team {
                    ids.extend(team_agents(team));
                }
                if let Some(agent) = &assign.agent {
                    ids.push(agent);
                }
            }
        }
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(*id));
        ids.into_iter().filter_map(|id| self.agent(id)).collect()
    }

    /// Rules that apply to a mailbox.
    pub fn rules_for<'a>(&'a self, mailbox: &'a str) -> impl Iterator<Item = &'a RuleConfig> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.mailbox.as_deref().is_none_or(|m| m == mailbox))
    }

    /// Agent ids by the folder name shown for them, for one team.
    pub fn team_folders(&self, team: &str) -> BTreeMap<String, String> {
        let Some(team) = self.team(team) else {
            return BTreeMap::new();
        };
        team.agents
            .iter()
            .filter_map(|id| self.agent(id).map(|a| (a.name.clone(), a.id.clone())))
            .collect()
    }

    /// Names used more than once in a list, for duplicate checks.
    pub(crate) fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut seen = HashSet::new();
        names.filter(|n| !seen.insert(*n)).collect()
    }
}
