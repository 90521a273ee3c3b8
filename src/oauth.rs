//! OAuth2 access tokens for XOAUTH2 logins: running `token_command` and caching what it prints.
//!
//! A mailbox with `auth = "xoauth2"` names a command (program and arguments, run without a
//! shell) that prints an access token, either bare on its first line or as JSON
//! `{"access_token": "...", "expires_in": 3599}` (the shape identity providers answer with).
//! Tokens are cached per command until shortly before they expire, so twenty mailboxes behind
//! one service account run the helper once, not twenty times, and a reconnect storm never turns
//! into a storm of token requests. The IMAP side ([`crate::imap`]) asks [`token`] before each
//! XOAUTH2 login and re-authenticates each connection before [`Token::refresh_at`].
//!
//! Expiry is measured on the monotonic clock (`Instant`), not [`crate::clock`]: a token's life
//! is a duration from when it was printed, and a wall-clock jump must not stretch it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tokio::process::Command;

use crate::secret::Secret;

/// How long a token whose helper printed no lifetime is assumed to live. Entra ID access tokens
/// live 60 to 90 minutes; 50 minutes stays safely under the shortest.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(50 * 60);

/// How long before expiry a cached token is replaced, and connections using it are
/// re-authenticated: ten minutes leaves time for a slow helper and a slow Exchange Online login
/// (which takes seconds by design), or half the lifetime for tokens shorter than 20 minutes.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);

/// How long `token_command` may run: one HTTPS round trip to the identity provider, with room
/// for a slow one, without holding a mailbox for ever.
pub const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// An access token and when it stops being handed out.
#[derive(Debug, Clone)]
pub struct Token {
    /// The bearer token; its `Debug` is redacted.
    pub value: Secret,
    /// When the cache replaces it; a connection authenticated with it should reconnect then.
    pub refresh_at: Instant,
}

/// Per-command cache. The async mutex per entry makes concurrent callers wait for one run of
/// the helper instead of starting their own.
type Cache = Mutex<HashMap<Vec<String>, Arc<tokio::sync::Mutex<Option<Token>>>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

/// The token for `command`: the cached one while it is fresh, otherwise a new one from the
/// command. Errors name the program, never the output.
pub async fn token(command: &[String]) -> Result<Token> {
    let slot = {
        let mut map = cache().lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(command.to_vec()).or_default())
    };
    let mut cached = slot.lock().await;
    if let Some(token) = cached.as_ref().filter(|t| t.refresh_at > Instant::now()) {
        return Ok(token.clone());
    }
    let started = Instant::now();
    let (value, lifetime) = run(command).await?;
    let lifetime = lifetime.unwrap_or(DEFAULT_LIFETIME);
    let token = Token {
        value,
        refresh_at: started + lifetime - margin(lifetime),
    };
    tracing::debug!(
        program = %command.first().map(String::as_str).unwrap_or(""),
        lifetime_secs = lifetime.as_secs(),
        "fetched a new access token"
    );
    *cached = Some(token.clone());
    Ok(token)
}

/// Drops every cached token, so the next login runs the helper again. Called when the server
/// says a token expired early (`* BYE Session invalidated - AccessTokenExpired`), which happens
/// when it was revoked or the helper's own cache handed out an old one.
pub fn forget_all() {
    cache().lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// How long before expiry a token of `lifetime` is replaced (see [`REFRESH_MARGIN`]).
pub fn margin(lifetime: Duration) -> Duration {
    REFRESH_MARGIN.min(lifetime / 2)
}

/// Runs the command and reads its output.
async fn run(command: &[String]) -> Result<(Secret, Option<Duration>)> {
    let Some((program, args)) = command.split_first() else {
        bail!("token_command is empty");
    };
    // Standard error is not captured: helpers sometimes print tokens there when debugging.
    let run = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TOKEN_COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| anyhow::anyhow!("token_command {program} timed out"))?
        .with_context(|| format!("cannot run token_command {program}"))?;
    if !output.status.success() {
        bail!("token_command {program} failed: {}", output.status);
    }
    parse_output(&String::from_utf8_lossy(&output.stdout))
        .with_context(|| format!("token_command {program}"))
}

/// The helper's JSON answer; other fields (`token_type`, `scope`) are ignored.
#[derive(Deserialize)]
struct TokenJson {
    access_token: String,
    expires_in: Option<u64>,
}

/// Reads a token from a helper's output: JSON with `access_token` (and optionally
/// `expires_in` seconds), or the token alone on the first line.
pub fn parse_output(text: &str) -> Result<(Secret, Option<Duration>)> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        // serde_json's error names a position, never the text, so no token leaks through it.
        let json: TokenJson =
            serde_json::from_str(trimmed).context("printed JSON without a usable access_token")?;
        if json.access_token.trim().is_empty() {
            bail!("printed an empty access_token");
        }
        let lifetime = json.expires_in.map(Duration::from_secs);
        return Ok((Secret::new(json.access_token.trim()), lifetime));
    }
    let line = trimmed.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        bail!("printed nothing");
    }
    Ok((Secret::new(line), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_output_is_read_in_both_shapes() {
        let cases = [
            ("tok-1\n", Some(("tok-1", None))),
            ("  tok-2  \nignored\n", Some(("tok-2", None))),
            (
                r#"{"access_token":"tok-3","expires_in":3599,"token_type":"Bearer"}"#,
                Some(("tok-3", Some(3599))),
            ),
            (r#"{"access_token":"tok-4"}"#, Some(("tok-4", None))),
            (r#"{"access_token":""}"#, None),
            (r#"{"error":"invalid_grant"}"#, None),
            ("\n\n", None),
        ];
        for (text, expected) in cases {
            let got = parse_output(text).ok();
            let got = got
                .as_ref()
                .map(|(s, l)| (s.expose(), l.map(|d| d.as_secs())));
            assert_eq!(got, expected, "for {text:?}");
        }
    }

    #[test]
    fn errors_never_echo_the_output() {
        let err = parse_output(r#"{"access_tokn":"s3cr3t-value"}"#).unwrap_err();
        assert!(!format!("{err:#}").contains("s3cr3t"), "{err:#}");
    }

    #[test]
    fn short_tokens_refresh_at_half_their_life() {
        let cases = [
            (Duration::from_secs(3600), REFRESH_MARGIN),
            (Duration::from_secs(20 * 60), REFRESH_MARGIN),
            (Duration::from_secs(4), Duration::from_secs(2)),
        ];
        for (lifetime, expected) in cases {
            assert_eq!(margin(lifetime), expected, "for {lifetime:?}");
        }
    }

    #[tokio::test]
    async fn a_fresh_token_is_reused_and_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("n");
        let script = format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
             printf '{{\"access_token\":\"tok-%s\",\"expires_in\":2}}' $n",
            c = counter.display()
        );
        let command = vec!["sh".to_string(), "-c".to_string(), script];
        let first = token(&command).await.unwrap();
        let again = token(&command).await.unwrap();
        assert_eq!(first.value.expose(), "tok-1");
        assert_eq!(again.value.expose(), "tok-1", "fresh token reused");
        tokio::time::sleep(first.refresh_at.saturating_duration_since(Instant::now())).await;
        let later = token(&command).await.unwrap();
        assert_eq!(later.value.expose(), "tok-2", "stale token replaced");
    }
}
