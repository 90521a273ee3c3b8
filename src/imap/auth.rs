//! Logging in: LOGIN, AUTHENTICATE PLAIN and XOAUTH2, and what a refused login means.
//!
//! The mechanism is chosen per mailbox (`auth`). LOGIN passes the login string through
//! unchanged, which is what Exchange's delegated forms need (Exchange 2013 refuses them over
//! PLAIN). XOAUTH2 puts the shared mailbox (`oauth_user`) in `user=` and a token from
//! [`crate::oauth`] in `auth=Bearer`. The SASL strings exist only inside the authenticators,
//! whose `Debug` is redacted, and async-imap base64-encodes them on the way out.
//!
//! Refusals are sorted for the worker: an expired token ([`is_token_expired`]) means "fetch a
//! new token and reconnect now"; a login refused for too many connections
//! ([`is_connection_limit`]) means "wait", never "retry at once".

use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use async_imap::{Client, Session};

use super::budget::Budget;
use super::Stream;
use crate::config::{AuthMethod, MailboxConfig, Problem};
use crate::secret::Secret;

/// Exchange Online's text when it ends a session whose token expired.
pub const TOKEN_EXPIRED: &str = "AccessTokenExpired";

/// A login refused because the account holds too many connections. Exchange answers such a
/// login `NO LOGIN failed.`, like a wrong password; once a login on the same account worked in
/// this process, that answer is read as the limit. Dovecot says `[LIMIT]`.
#[derive(Debug, thiserror::Error)]
#[error(
    "login as {account} refused, probably for too many connections ({reply}); lower \
     max_connections_per_login or close other sessions of this account"
)]
pub struct ConnectionLimit {
    /// The authenticating account.
    pub account: String,
    /// The server's reply text.
    pub reply: String,
}

/// A token login reached its renewal time: the session should end and a new one log in with
/// a fresh token. An expected end, not trouble: reconnect at once, without back-off.
#[derive(Debug, thiserror::Error)]
#[error("the access token is due for renewal; reconnecting with a fresh one")]
pub struct RenewalDue;

/// True when the session ended because its token is due for renewal: reconnect at once.
pub fn is_renewal_due(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<RenewalDue>())
}

/// How to log in, resolved for one connection.
pub enum Credentials<'a> {
    /// LOGIN with this login string and password.
    Login(&'a str, &'a Secret),
    /// AUTHENTICATE PLAIN.
    Plain(&'a str, &'a Secret),
    /// AUTHENTICATE XOAUTH2 as `user` with a token.
    Xoauth2 {
        /// The `user=` value: the shared mailbox's address.
        user: &'a str,
        /// The access token.
        token: Secret,
        /// When the token is replaced, and the connection should re-authenticate.
        refresh_at: Instant,
    },
}

impl Credentials<'_> {
    /// The mechanism, for messages.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Credentials::Login(..) => "LOGIN",
            Credentials::Plain(..) => "AUTHENTICATE PLAIN",
            Credentials::Xoauth2 { .. } => "AUTHENTICATE XOAUTH2",
        }
    }

    /// The deadline for re-authenticating, for token logins.
    pub fn expires_at(&self) -> Option<Instant> {
        match self {
            Credentials::Xoauth2 { refresh_at, .. } => Some(*refresh_at),
            _ => None,
        }
    }
}

/// Resolves a mailbox's credentials, running `token_command` (through the cache) for XOAUTH2.
pub async fn credentials<'a>(
    mailbox: &'a MailboxConfig,
    password: &'a Secret,
) -> Result<Credentials<'a>> {
    Ok(match mailbox.auth {
        AuthMethod::Login => Credentials::Login(&mailbox.login, password),
        AuthMethod::Plain => Credentials::Plain(&mailbox.login, password),
        AuthMethod::Xoauth2 => {
            let Some(command) = &mailbox.token_command else {
                bail!(
                    "mailbox {}: auth = \"xoauth2\" needs token_command",
                    mailbox.name
                );
            };
            let token = crate::oauth::token(command).await?;
            Credentials::Xoauth2 {
                user: mailbox.oauth_user.as_deref().unwrap_or(&mailbox.login),
                token: token.value,
                refresh_at: token.refresh_at,
            }
        }
    })
}

/// SASL PLAIN: `\0login\0password`, sent on the first (empty) challenge.
struct PlainAuth<'a> {
    login: &'a str,
    password: &'a Secret,
}

impl async_imap::Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        format!("\0{}\0{}", self.login, self.password.expose()).into_bytes()
    }
}

impl std::fmt::Debug for PlainAuth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlainAuth({}, ***)", self.login)
    }
}

/// SASL XOAUTH2: `user=U\x01auth=Bearer T\x01\x01` first; after a failure the server sends a
/// JSON error as a challenge, which is answered with an empty line so it sends its `NO`.
struct XOauth2<'a> {
    user: &'a str,
    token: &'a Secret,
    sent: bool,
}

impl async_imap::Authenticator for XOauth2<'_> {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if std::mem::replace(&mut self.sent, true) {
            return Vec::new();
        }
        format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.user,
            self.token.expose()
        )
        .into_bytes()
    }
}

impl std::fmt::Debug for XOauth2<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XOauth2(user={}, ***)", self.user)
    }
}

/// Logs in with `credentials`; a refusal names the mechanism and login, never the secret.
pub async fn log_in(
    client: Client<Stream>,
    credentials: &Credentials<'_>,
    budget: &Budget,
) -> Result<Session<Stream>> {
    let result = match credentials {
        Credentials::Login(login, password) => client.login(login, password.expose()).await,
        Credentials::Plain(login, password) => {
            let auth = PlainAuth { login, password };
            client.authenticate("PLAIN", auth).await
        }
        Credentials::Xoauth2 { user, token, .. } => {
            let auth = XOauth2 {
                user,
                token,
                sent: false,
            };
            client.authenticate("XOAUTH2", auth).await
        }
    };
    match result {
        Ok(session) => {
            budget.note_login();
            Ok(session)
        }
        // The error carries only the server's reply text, never our arguments.
        Err((err, _client)) => Err(refused(err, credentials, budget)),
    }
}

fn refused(
    err: async_imap::error::Error,
    credentials: &Credentials<'_>,
    budget: &Budget,
) -> anyhow::Error {
    let (login, account) = match credentials {
        Credentials::Login(login, _) | Credentials::Plain(login, _) => {
            (*login, super::budget::account_of(login))
        }
        Credentials::Xoauth2 { user, .. } => (*user, *user),
    };
    let reply = err.to_string();
    let limit = reply.contains("[LIMIT]")
        || reply.contains("Maximum number of connections")
        || (budget.had_login() && reply.contains("LOGIN failed"));
    if limit {
        let account = account.to_string();
        return anyhow!(ConnectionLimit { account, reply });
    }
    let mechanism = credentials.mechanism();
    anyhow!(err).context(format!("{mechanism} as {login} refused"))
}

/// True when the server ended the session because the OAuth token expired: reconnect at once
/// instead of backing off (the token cache was already emptied when the BYE was read).
pub fn is_token_expired(err: &anyhow::Error) -> bool {
    format!("{err:#}").contains(TOKEN_EXPIRED)
}

/// True when a login was refused for too many connections on the account: back off.
pub fn is_connection_limit(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<ConnectionLimit>())
}

/// Checks a mailbox's `auth`, `token_command` and `oauth_user`; keys are relative to the
/// mailbox (`auth`, `token_command`).
pub fn check(mailbox: &MailboxConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut add = |key: &str, message: String, hint: &str| {
        problems.push(Problem {
            key: key.to_string(),
            line: None,
            message,
            hint: hint.to_string(),
        })
    };
    match (mailbox.auth, &mailbox.token_command) {
        (AuthMethod::Xoauth2, None) => add(
            "token_command",
            "auth = \"xoauth2\" needs a token_command".into(),
            "such as [\"/usr/local/bin/get-token\", \"--account\", \"svc\"]",
        ),
        (AuthMethod::Xoauth2, Some(command)) if command.is_empty() => add(
            "token_command",
            "empty command".into(),
            "give the program and its arguments",
        ),
        (AuthMethod::Login | AuthMethod::Plain, Some(_)) => add(
            "token_command",
            "token_command is only used with auth = \"xoauth2\"".into(),
            "set auth = \"xoauth2\" or remove token_command",
        ),
        _ => {}
    }
    if mailbox.oauth_user.is_some() && mailbox.auth != AuthMethod::Xoauth2 {
        add(
            "oauth_user",
            "oauth_user is only used with auth = \"xoauth2\"".into(),
            "for LOGIN, write the delegated form in login instead",
        );
    }
    problems
}
