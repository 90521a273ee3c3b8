//! Handing one formatted message to the `[smtp]` server.
//!
//! Every send opens its own connection and closes it after QUIT. lettre's connection pool is
//! deliberately not used (its `pool` feature is off): a pooled connection that the server closed
//! while idle made the next send fail instead of reconnecting (BUG-26, lettre#743), and
//! escalations are rare enough that a TLS handshake per mail costs nothing.

use std::time::Duration;

use lettre::address::Envelope as SmtpEnvelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::process::Command;

use crate::config::Security;
use crate::config_smtp::SmtpConfig;
use crate::secret::Secret;

/// How long `token_command` may run. An OAuth helper that refreshes its token makes one HTTPS
/// round trip; a minute covers a slow identity provider without hanging the outbox.
const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The start of a [`SendError::Transient`] text when the server refused our login.
pub const LOGIN_REFUSED: &str = "login refused: ";

/// Why a send failed, as the outbox needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later: no connection, a 4xx reply, the server closing on us (421),
    /// a time-out, or a refused login (the mail is not at fault; the operator must fix it).
    #[error("{0}")]
    Transient(String),
    /// The server refused this message for good (5xx other than authentication).
    #[error("{0}")]
    Permanent(String),
}

/// How we prove who we are.
#[derive(Clone)]
enum Credential {
    /// No AUTH: a relay that trusts our address.
    None,
    /// AUTH PLAIN or LOGIN with a password.
    Password { login: String, secret: Secret },
    /// XOAUTH2 with a token printed by a command, run before each connection.
    Token { login: String, command: Vec<String> },
}

/// Sends escalation mail through the `[smtp]` server.
#[derive(Clone)]
pub struct Mailer {
    config: SmtpConfig,
    credential: Credential,
    ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = &self.config.host;
        write!(f, "Mailer({host}:{})", self.config.effective_port())
    }
}

impl Mailer {
    /// Prepares a mailer: reads the password (or checks the token command is set) and the CA file.
    /// Errors name the source, never a value.
    pub fn from_config(config: &SmtpConfig) -> anyhow::Result<Mailer> {
        use anyhow::Context;
        let credential = match (
            &config.login,
            &config.token_command,
            config.password_source(),
        ) {
            (Some(login), Some(command), _) => Credential::Token {
                login: login.clone(),
                command: command.clone(),
            },
            (Some(login), None, Some(source)) => Credential::Password {
                login: login.clone(),
                secret: source
                    .resolve()
                    .context("[smtp]: cannot read its password")?,
            },
            _ => Credential::None,
        };
        let ca = match &config.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("[smtp]: cannot read ca_file {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Mailer {
            config: config.clone(),
            credential,
            ca,
        })
    }

    /// Sends `raw` from the configured address to `to`, on a new connection. Returns once the
    /// server answered 250 to the end of DATA.
    pub async fn send(&self, to: &[String], raw: &[u8]) -> Result<(), SendError> {
        let envelope = self.envelope(to)?;
        let transport = self.transport().await?;
        let result = transport.send_raw(&envelope, raw).await;
        result.map(|_| ()).map_err(classify)
    }

    fn envelope(&self, to: &[String]) -> Result<SmtpEnvelope, SendError> {
        let bad = |e: lettre::address::AddressError| SendError::Permanent(format!("address: {e}"));
        let from = self.config.from.parse().map_err(bad)?;
        let to = to
            .iter()
            .map(|a| a.parse())
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        SmtpEnvelope::new(Some(from), to)
            .map_err(|e| SendError::Permanent(format!("envelope: {e}")))
    }

    async fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let config = &self.config;
        let hello = ClientId::Domain(config.from_domain().to_string());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.effective_port())
            .timeout(Some(config.timeout()))
            .hello_name(hello)
            .tls(self.tls()?);
        match &self.credential {
            Credential::None => {}
            Credential::Password { login, secret } => {
                builder = builder
                    .credentials(Credentials::new(login.clone(), secret.expose().to_string()))
                    .authentication(vec![Mechanism::Plain, Mechanism::Login]);
            }
            Credential::Token { login, command } => {
                let token = run_token_command(command).await?;
                builder = builder
                    .credentials(Credentials::new(login.clone(), token.expose().to_string()))
                    .authentication(vec![Mechanism::Xoauth2]);
            }
        }
        Ok(builder.build())
    }

    /// TLS as configured, verified against the system roots plus `ca_file`.
    fn tls(&self) -> Result<Tls, SendError> {
        if self.config.security == Security::Plain {
            return Ok(Tls::None);
        }
        let tls_error =
            |e: lettre::transport::smtp::Error| SendError::Transient(format!("tls: {e}"));
        let mut params = TlsParameters::builder(self.config.host.clone());
        if let Some(pem) = &self.ca {
            params = params.add_root_certificate(Certificate::from_pem(pem).map_err(tls_error)?);
        }
        let params = params.build_rustls().map_err(tls_error)?;
        Ok(match self.config.security {
            Security::Tls => Tls::Wrapper(params),
            _ => Tls::Required(params),
        })
    }
}

/// Runs `token_command` and takes its first line of output as the token. Its standard error is
/// not captured into any log, since helpers sometimes print tokens there when debugging.
async fn run_token_command(command: &[String]) -> Result<Secret, SendError> {
    let Some((program, args)) = command.split_first() else {
        return Err(SendError::Transient("token_command is empty".into()));
    };
    let run = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TOKEN_COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| SendError::Transient(format!("token_command {program} timed out")))?
        .map_err(|e| SendError::Transient(format!("token_command {program}: {e}")))?;
    if !output.status.success() {
        let status = output.status;
        return Err(SendError::Transient(format!(
            "token_command {program} failed: {status}"
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(SendError::Transient(format!(
            "token_command {program} printed nothing"
        )));
    }
    Ok(Secret::new(token))
}

/// Sorts a lettre error into retry or give up. Authentication refusals (530-539) are permanent
/// codes but say nothing about the mail: the operator fixes the credential and the mail still
/// goes, so they are retried (and logged at error level by the caller, see `escalate`).
fn classify(err: lettre::transport::smtp::Error) -> SendError {
    let text = format!("{err}");
    match err.status().map(|code| code.to_string()) {
        Some(code) if err.is_permanent() && code.starts_with("53") => {
            SendError::Transient(format!("{LOGIN_REFUSED}{text}"))
        }
        Some(_) if err.is_permanent() => SendError::Permanent(text),
        _ => SendError::Transient(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn token_command_output_becomes_the_token_and_failures_are_retried() {
        let token = run_token_command(&sh("printf 'ya29.EXAMPLE-TOKEN\\nextra\\n'")).await;
        assert_eq!(token.unwrap().expose(), "ya29.EXAMPLE-TOKEN");
        let cases = [
            sh("exit 3"),
            sh("true"),
            vec!["/nonexistent/get-token".into()],
        ];
        for command in cases {
            let err = run_token_command(&command).await.unwrap_err();
            assert!(
                matches!(err, SendError::Transient(_)),
                "{command:?}: {err:?}"
            );
        }
    }
}
