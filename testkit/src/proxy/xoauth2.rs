//! A fake XOAUTH2 in front of Dovecot, for testing postroom's token logins.
//!
//! Dovecot offers XOAUTH2 only with an OAuth2 passdb talking to a token introspection service,
//! too heavy for a test. With [`super::FaultProxy::fake_xoauth2`] on, the proxy answers
//! `AUTHENTICATE XOAUTH2` itself: it decodes the SASL string
//! (`user=U\x01auth=Bearer T\x01\x01`, RFC 7628 shape as Google and Microsoft use it), records
//! the user and token, and if the token is one the test accepts, logs in upstream with
//! `LOGIN U <password>` so the session that follows is Dovecot's own. Otherwise it fails the
//! way Exchange Online does: a base64 JSON error as a challenge, then `NO AUTHENTICATE failed.`
//! This is a fake of the server side only; the client side under test is real.

use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex as AsyncMutex;

use super::frame::{self, Reader};
use super::{lock, Shared};

/// What the fake accepts, and what it saw.
#[derive(Default, Clone)]
pub(crate) struct FakeXoauth2 {
    /// Tokens that log in.
    pub(crate) accepted: Vec<String>,
    /// The upstream password used for the LOGIN that replaces an accepted AUTHENTICATE.
    pub(crate) password: String,
}

/// One XOAUTH2 attempt as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xoauth2Attempt {
    /// The `user=` value.
    pub user: String,
    /// The bearer token (a test token, never a real one).
    pub token: String,
    /// Whether the fake accepted it.
    pub accepted: bool,
}

/// Exchange Online's failure challenge: `{"status":"400","schemes":"Bearer","scope":""}`.
const FAILURE_CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiIifQ==";

/// The tag and optional initial response of an `AUTHENTICATE XOAUTH2` command line, if the
/// fake is on and this is one.
pub(crate) fn starts(line: &[u8], shared: &Shared) -> Option<(String, Option<String>)> {
    lock(&shared.faults).xoauth2.as_ref()?;
    let (tag, command) = frame::split_command(line);
    let mut words = command.split_whitespace();
    let verb = words.next()?;
    let mechanism = words.next()?;
    if !verb.eq_ignore_ascii_case("AUTHENTICATE") || !mechanism.eq_ignore_ascii_case("XOAUTH2") {
        return None;
    }
    Some((tag, words.next().map(str::to_owned)))
}

/// Runs the exchange; an error means the client went away.
pub(crate) async fn answer(
    (tag, initial): (String, Option<String>),
    reader: &mut Reader<OwnedReadHalf>,
    server: &mut OwnedWriteHalf,
    client: &AsyncMutex<OwnedWriteHalf>,
    shared: &Shared,
) -> std::io::Result<()> {
    lock(&shared.log).push("AUTHENTICATE XOAUTH2 ***".to_owned());
    let encoded = match initial {
        Some(text) => text,
        None => {
            client.lock().await.write_all(b"+ \r\n").await?;
            let line = reader.line().await?.unwrap_or_default();
            String::from_utf8_lossy(&line).trim().to_owned()
        }
    };
    let (user, token) = decode(&encoded).unwrap_or_default();
    let fake = lock(&shared.faults).xoauth2.clone().unwrap_or_default();
    let accepted = !token.is_empty() && fake.accepted.contains(&token);
    lock(&shared.xoauth2_seen).push(Xoauth2Attempt {
        user: user.clone(),
        token,
        accepted,
    });
    if accepted {
        let login = format!("{tag} LOGIN {} {}\r\n", quote(&user), quote(&fake.password));
        return server.write_all(login.as_bytes()).await;
    }
    let challenge = format!("+ {FAILURE_CHALLENGE}\r\n");
    client.lock().await.write_all(challenge.as_bytes()).await?;
    reader.line().await?;
    let refusal = format!("{tag} NO AUTHENTICATE failed.\r\n");
    client.lock().await.write_all(refusal.as_bytes()).await
}

/// (user, token) from the base64 SASL string.
fn decode(encoded: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut user = None;
    let mut token = None;
    for part in text.split('\x01') {
        if let Some(u) = part.strip_prefix("user=") {
            user = Some(u.to_owned());
        } else if let Some(t) = part.strip_prefix("auth=Bearer ") {
            token = Some(t.to_owned());
        }
    }
    Some((user?, token?))
}

/// An IMAP quoted string.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
