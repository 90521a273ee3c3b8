//! The `[smtp]` section: how escalation mail leaves postroom.
//!
//! Split from `config` because it is only read by [`crate::notify`]. The section names one
//! submission server, how to protect the connection (verified TLS unless the host is loopback),
//! how to log in (a password from the same sources as mailboxes, or an XOAUTH2 token printed by
//! `token_command`), and the shared mailbox address the mail is sent from. Checks live in
//! [`check`], called by `config_check::validate`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Problem, Security};
use crate::secret::SecretSource;

/// `[smtp]`: the submission server escalations are sent through.
#[derive(Debug, Clone, Deserialize)]
pub struct SmtpConfig {
    /// Host name or address.
    pub host: String,
    /// Port; defaults by `security` (465 for TLS, 587 for STARTTLS, 25 for plain).
    pub port: Option<u16>,
    /// Transport security, TLS by default; plain only to a loopback address.
    #[serde(default = "default_security")]
    pub security: Security,
    /// An extra trust anchor (PEM) for a certificate issued by an internal CA.
    pub ca_file: Option<PathBuf>,
    /// The login; no AUTH is attempted without one (an internal relay that trusts our address).
    pub login: Option<String>,
    /// Inline password (flagged at start: prefer a file or a credential).
    pub password: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// A systemd credential name (read from `$CREDENTIALS_DIRECTORY`).
    pub password_credential: Option<String>,
    /// A command (program and arguments, no shell) whose standard output is an OAuth2 access
    /// token, used with XOAUTH2 instead of a password. It is run before every connection and its
    /// output is never cached by postroom: the command owns caching and refreshing the token
    /// (the usual OAuth helpers keep a refresh token and print a fresh access token on demand).
    pub token_command: Option<Vec<String>>,
    /// The address escalations are sent from: the shared mailbox, so replies land in it.
    pub from: String,
    /// The display name on `From`.
    #[serde(default = "default_from_name")]
    pub from_name: String,
    /// Time-out for each SMTP command, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_security() -> Security {
    Security::Tls
}

fn default_from_name() -> String {
    "postroom".to_string()
}

fn default_timeout() -> u64 {
    // Long enough for a slow Exchange front end, short enough that a dead server does not hold
    // the escalation loop for minutes; the outbox retries anyway.
    60
}

impl SmtpConfig {
    /// The port to connect to, defaulted by the security mode.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            Security::Tls => 465,
            Security::Starttls => 587,
            Security::Plain => 25,
        })
    }

    /// Where the password comes from, if one is configured.
    pub fn password_source(&self) -> Option<SecretSource> {
        SecretSource::pick(
            self.password.as_deref(),
            self.password_file.as_deref(),
            self.password_env.as_deref(),
            self.password_credential.as_deref(),
        )
    }

    /// The per-command time-out.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The domain of `from`, used for our Message-IDs.
    pub fn from_domain(&self) -> &str {
        self.from.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

/// Checks `[smtp]`; problems carry keys relative to the section (`security`, `from`).
pub fn check(smtp: &SmtpConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut add = |key: &str, message: String, hint: &str| {
        problems.push(Problem {
            key: key.to_string(),
            line: None,
            message,
            hint: hint.to_string(),
        })
    };
    if smtp.host.trim().is_empty() {
        add("host", "empty host".into(), "give the SMTP submission host");
    }
    if smtp.security == Security::Plain && !crate::config_check::is_loopback(&smtp.host) {
        add(
            "security",
            format!(
                "plain SMTP to `{}` would send the password in clear",
                smtp.host
            ),
            "use security = \"tls\" or \"starttls\"; plain is only for loopback",
        );
    }
    if !plain_address(&smtp.from) {
        add(
            "from",
            format!("`{}` is not a plain address", smtp.from),
            "the shared mailbox's address, such as support@example.test",
        );
    }
    if smtp.from_name.chars().any(char::is_control) {
        add(
            "from_name",
            "contains control characters".into(),
            "one line of text",
        );
    }
    check_credentials(smtp, &mut add);
    if let Some(ca) = &smtp.ca_file {
        if !ca.is_file() {
            let message = format!("{} does not exist or is not a file", ca.display());
            add(
                "ca_file",
                message,
                "point it at the PEM file of your internal CA",
            );
        }
    }
    if smtp.timeout_secs == 0 {
        add("timeout_secs", "must be more than 0".into(), "such as 60");
    }
    problems
}

fn check_credentials(smtp: &SmtpConfig, add: &mut impl FnMut(&str, String, &str)) {
    let passwords = [
        smtp.password.is_some(),
        smtp.password_file.is_some(),
        smtp.password_env.is_some(),
        smtp.password_credential.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    let token = smtp.token_command.is_some();
    let hint = "keep exactly one of password_file, password_env, password_credential, password \
                or token_command";
    if passwords + usize::from(token) > 1 {
        add(
            "password_file",
            "more than one credential source is set".into(),
            hint,
        );
    }
    if smtp.login.is_none() && (passwords > 0 || token) {
        add(
            "login",
            "a credential is set but no login".into(),
            "set login, the SMTP user",
        );
    }
    if smtp.login.is_some() && passwords == 0 && !token {
        add("login", "a login is set but no credential".into(), hint);
    }
    if smtp.token_command.as_ref().is_some_and(|c| c.is_empty()) {
        add(
            "token_command",
            "empty command".into(),
            "such as [\"/usr/local/bin/get-token\"]",
        );
    }
    if let Some(file) = &smtp.password_file {
        if !file.is_file() {
            let message = format!("{} does not exist or is not a file", file.display());
            add(
                "password_file",
                message,
                "create it with the password on one line",
            );
        }
    }
}

/// A plain `local@domain` with nothing that could break a header line.
pub(crate) fn plain_address(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let clean = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_graphic() && !"@<>()[]\\,;:\"".contains(c))
    };
    clean(local) && clean(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "support@example.test";

    fn parse(from: &str, extra: &str) -> SmtpConfig {
        let text = format!("host = \"smtp.example.test\"\nfrom = \"{from}\"\n{extra}");
        toml::from_str(&text).unwrap()
    }

    fn smtp(extra: &str) -> SmtpConfig {
        parse(FROM, extra)
    }

    #[test]
    fn problems_are_found_by_key() {
        let cases = [
            (FROM, "", vec![]),
            (FROM, "security = \"plain\"", vec!["security"]),
            (FROM, "login = \"svc\"", vec!["login"]),
            (FROM, "password_env = \"X\"", vec!["login"]),
            (FROM, "login = \"svc\"\npassword_env = \"X\"", vec![]),
            (FROM, "login = \"svc\"\ntoken_command = [\"t\"]", vec![]),
            (
                FROM,
                "login = \"s\"\npassword_env = \"X\"\ntoken_command = [\"t\"]",
                vec!["password_file"],
            ),
            ("a@b\\r\\nBcc: x@y", "", vec!["from"]),
            ("support", "", vec!["from"]),
            (FROM, "timeout_secs = 0", vec!["timeout_secs"]),
        ];
        for (from, extra, keys) in cases {
            let found: Vec<String> = check(&parse(from, extra))
                .into_iter()
                .map(|p| p.key)
                .collect();
            assert_eq!(found, keys, "for {from:?} {extra:?}");
        }
    }

    #[test]
    fn plain_is_allowed_to_loopback_only() {
        let mut config = smtp("security = \"plain\"");
        config.host = "127.0.0.1".into();
        assert!(check(&config).is_empty());
        assert_eq!(config.effective_port(), 25);
    }

    #[test]
    fn ports_default_by_security() {
        assert_eq!(smtp("").effective_port(), 465);
        assert_eq!(smtp("security = \"starttls\"").effective_port(), 587);
        assert_eq!(smtp("port = 2525").effective_port(), 2525);
    }
}
