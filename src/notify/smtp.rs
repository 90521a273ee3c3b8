//! Handing one formatted message to the `[smtp]` server.
//!
//! Every send opens its own connection and closes it after QUIT. No connection is ever kept: a
//! pooled connection that the server closed while idle made the next send fail instead of
//! reconnecting (BUG-26, lettre#743), and escalations are rare enough that a TLS handshake per
//! mail costs nothing.

use std::time::Duration;

use lettre::address::Envelope as SmtpEnvelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
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

    /// Sends `raw` from the configured address to `to`, on a new connection. Returns as soon as
    /// the server answered 250 to the end of DATA: QUIT and the close happen afterwards, in the
    /// background, so the caller records the mail as sent without waiting another round trip.
    /// That keeps the one window SMTP cannot close (accepted by the server, not yet recorded)
    /// as short as a store write: a crash inside it is the only way a lead gets a mail twice.
    pub async fn send(&self, to: &[String], raw: &[u8]) -> Result<(), SendError> {
        let envelope = self.envelope(to)?;
        let limit = self.config.timeout();
        let mut conn = match tokio::time::timeout(limit * 3, self.open()).await {
            Ok(conn) => conn?,
            Err(_) => return Err(SendError::Transient("no answer while connecting".into())),
        };
        match tokio::time::timeout(limit, conn.send(&envelope, raw)).await {
            Ok(Ok(_)) => {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(limit, conn.quit()).await;
                });
                Ok(())
            }
            Ok(Err(err)) => {
                tokio::spawn(async move { conn.abort().await });
                Err(classify(err))
            }
            Err(_) => Err(SendError::Transient("no answer to DATA".into())),
        }
    }

    /// Connects, secures and authenticates a fresh connection.
    async fn open(&self) -> Result<AsyncSmtpConnection, SendError> {
        let config = &self.config;
        let hello = ClientId::Domain(config.from_domain().to_string());
        let tls = self.tls()?;
        let wrapped = match &tls {
            Tls::Wrapper(params) => Some(params.clone()),
            _ => None,
        };
        let address = (config.host.as_str(), config.effective_port());
        let timeout = Some(config.timeout());
        let mut conn = AsyncSmtpConnection::connect_tokio1(address, timeout, &hello, wrapped, None)
            .await
            .map_err(classify)?;
        if let Tls::Required(params) = tls {
            if !conn.can_starttls() {
                return Err(SendError::Transient("the server offers no STARTTLS".into()));
            }
            conn.starttls(params, &hello).await.map_err(classify)?;
        }
        match &self.credential {
            Credential::None => {}
            Credential::Password { login, secret } => {
                let credentials = Credentials::new(login.clone(), secret.expose().to_string());
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                    .await
                    .map_err(classify)?;
            }
            Credential::Token { login, command } => {
                let token = run_token_command(command).await?;
                let credentials = Credentials::new(login.clone(), token.expose().to_string());
                conn.auth(&[Mechanism::Xoauth2], &credentials)
                    .await
                    .map_err(classify)?;
            }
        }
        Ok(conn)
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
