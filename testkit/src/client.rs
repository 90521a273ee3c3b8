//! A plain IMAP client playing "a person in Outlook" against a test [`Dovecot`].
//!
//! Tests use it to put mail where the daemon will find it, to move things around behind the
//! daemon's back, and to look at the result. It works against both flavors: it never relies
//! on a capability the server did not advertise (no MOVE on the Exchange-like flavor), and its
//! reads never change what it reads (`EXAMINE`, `BODY.PEEK`).
//!
//! Folder names are passed as they go on the wire: the caller encodes non-ASCII names in
//! modified UTF-7 (RFC 3501 section 5.1.3), for example `Assigned/Zo&AOs-`.
//!
//! Every command is bounded by [`COMMAND_TIMEOUT`], so that a test facing a stopped server
//! fails with the command's name instead of hanging.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_imap::imap_proto::{Response, Status};
use async_imap::types::{Capability, Fetch, Flag, Mailbox};
use async_imap::{Client, Session};
use chrono::{DateTime, FixedOffset};
use futures::TryStreamExt;
use tokio::net::TcpStream;

use crate::Dovecot;

/// Upper bound for one command. Dovecot answers in milliseconds; this only limits how long a
/// broken test waits before it says which command never finished.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// An authenticated IMAP session of one user.
#[derive(Debug)]
pub struct ImapClient {
    session: Session<TcpStream>,
    user: String,
    capabilities: BTreeSet<String>,
}

impl ImapClient {
    /// Connects to `dovecot` over plain TCP and logs in as `user` with the shared password.
    pub async fn connect(dovecot: &Dovecot, user: &str) -> Result<ImapClient> {
        let (host, port) = (dovecot.host(), dovecot.port());
        Self::connect_to(host, port, user, dovecot.password()).await
    }

    /// Connects to any IMAP server on `host:port` (a [`crate::Cyrus`], say) over plain TCP.
    pub async fn connect_to(
        host: &str,
        port: u16,
        user: &str,
        password: &str,
    ) -> Result<ImapClient> {
        let what = format!("connect to {host}:{port} as {user}");
        bounded(&what, Self::login(host, port, user, password)).await
    }

    async fn login(host: &str, port: u16, user: &str, password: &str) -> Result<ImapClient> {
        let tcp = TcpStream::connect((host, port)).await?;
        // Without TCP_NODELAY, literal-based commands (APPEND) stall on Nagle's algorithm
        // meeting delayed ACKs.
        tcp.set_nodelay(true)?;
        let mut client = Client::new(tcp);
        client
            .read_response()
            .await?
            .ok_or_else(|| anyhow!("connection closed before the greeting"))?;
        let mut session = client
            .login(user, password)
            .await
            .map_err(|(e, _)| anyhow!(e).context("LOGIN refused"))?;
        let capabilities = session
            .capabilities()
            .await?
            .iter()
            .map(capability_name)
            .collect();
        Ok(ImapClient {
            session,
            user: user.to_owned(),
            capabilities,
        })
    }

    /// The user this session is logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The capabilities advertised after login, as atoms such as `IMAP4rev1`, `MOVE`,
    /// `AUTH=PLAIN`.
    pub fn capabilities(&self) -> &BTreeSet<String> {
        &self.capabilities
    }

    /// Whether the server advertised `name` after login (case-insensitive).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    /// The underlying async-imap session, for what this client does not wrap (IDLE, keyword
    /// STOREs, the unsolicited-response channel).
    pub fn session(&mut self) -> &mut Session<TcpStream> {
        &mut self.session
    }

    /// Creates `folder`.
    pub async fn create(&mut self, folder: &str) -> Result<()> {
        let what = format!("CREATE {folder:?} as {}", self.user);
        bounded(&what, async { Ok(self.session.create(folder).await?) }).await
    }

    /// Appends the raw RFC 5322 message `raw` to `folder`; the server picks INTERNALDATE.
    pub async fn append(&mut self, folder: &str, raw: &[u8]) -> Result<()> {
        let what = format!("APPEND to {folder:?} as {}", self.user);
        bounded(&what, async {
            Ok(self.session.append(folder, None, None, raw).await?)
        })
        .await
    }

    /// Appends `raw` to `folder` with the given INTERNALDATE (the arrival time that SEARCH
    /// SINCE/BEFORE and most clients' sort order use).
    pub async fn append_with_date(
        &mut self,
        folder: &str,
        raw: &[u8],
        internal_date: DateTime<FixedOffset>,
    ) -> Result<()> {
        // RFC 3501 date-time; async-imap puts the argument on the wire as given, so it must
        // carry its own quotes.
        let date = internal_date.format("\"%d-%b-%Y %H:%M:%S %z\"").to_string();
        let what = format!("APPEND to {folder:?} dated {date} as {}", self.user);
        bounded(&what, async {
            Ok(self.session.append(folder, None, Some(&date), raw).await?)
        })
        .await
    }

    /// The names of all folders, as the server spells them (modified UTF-7, `/` separated).
    pub async fn list_folders(&mut self) -> Result<Vec<String>> {
        let what = format!("LIST as {}", self.user);
        bounded(&what, async {
            let names: Vec<_> = self
                .session
                .list(Some(""), Some("*"))
                .await?
                .try_collect()
                .await?;
            Ok(names.iter().map(|n| n.name().to_owned()).collect())
        })
        .await
    }

    /// Every message of `folder` as (UID, Message-ID header value), in UID order. The value
    /// is trimmed and unfolded but otherwise as written, angle brackets included; `None` when
    /// the header is missing. Never sets `\Seen`.
    pub async fn message_ids(&mut self, folder: &str) -> Result<Vec<(u32, Option<String>)>> {
        let query = "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])";
        let fetches = self.fetch_all(folder, "1:*", query).await?;
        let mut ids: Vec<_> = fetches
            .iter()
            .filter_map(|f| Some((f.uid?, parse_message_id(f.header()?))))
            .collect();
        ids.sort_by_key(|(uid, _)| *uid);
        Ok(ids)
    }

    /// The number of messages in `folder`.
    pub async fn count(&mut self, folder: &str) -> Result<u32> {
        Ok(self.examine(folder).await?.exists)
    }

    /// The flags of message `uid` in `folder`, such as `\Seen` or a keyword. `\Recent` is left
    /// out: it depends on which session looked first, not on anything a user did.
    pub async fn flags(&mut self, folder: &str, uid: u32) -> Result<Vec<String>> {
        let fetches = self
            .fetch_all(folder, &uid.to_string(), "(UID FLAGS)")
            .await?;
        let fetch = fetches
            .iter()
            .find(|f| f.uid == Some(uid))
            .ok_or_else(|| anyhow!("no message with UID {uid} in {folder:?}"))?;
        Ok(fetch
            .flags()
            .filter(|f| *f != Flag::Recent)
            .map(|f| flag_name(&f))
            .collect())
    }

    /// Moves message `uid` from `from` to `to`, the way the server allows: UID MOVE where
    /// advertised, otherwise UID COPY, `\Deleted` and UID EXPUNGE (RFC 4315), which expunges
    /// only this message even if others in `from` are marked `\Deleted`.
    pub async fn uid_move(&mut self, from: &str, uid: u32, to: &str) -> Result<()> {
        let what = format!("move UID {uid} from {from:?} to {to:?} as {}", self.user);
        let use_move = self.has_capability("MOVE");
        bounded(&what, async {
            self.select_with_uid(from, uid).await?;
            if use_move {
                self.session.uid_mv(uid.to_string(), to).await?;
                return Ok(());
            }
            self.session.uid_copy(uid.to_string(), to).await?;
            self.expunge_uid(uid).await
        })
        .await
    }

    /// Deletes message `uid` from `folder` for good (`\Deleted`, then UID EXPUNGE).
    pub async fn delete(&mut self, folder: &str, uid: u32) -> Result<()> {
        let what = format!("delete UID {uid} from {folder:?} as {}", self.user);
        bounded(&what, async {
            self.select_with_uid(folder, uid).await?;
            self.expunge_uid(uid).await
        })
        .await
    }

    /// Selects `folder` read-write and returns what the server said about it, including
    /// PERMANENTFLAGS (`\*` appears as [`Flag::MayCreate`]).
    pub async fn select(&mut self, folder: &str) -> Result<Mailbox> {
        let what = format!("SELECT {folder:?} as {}", self.user);
        bounded(&what, async { Ok(self.session.select(folder).await?) }).await
    }

    /// The PERMANENTFLAGS of `folder` as names (`\Seen`, `\*`), from a read-write SELECT.
    pub async fn permanent_flags(&mut self, folder: &str) -> Result<Vec<String>> {
        let mailbox = self.select(folder).await?;
        Ok(mailbox.permanent_flags.iter().map(flag_name).collect())
    }

    /// Sends NOOP; fails once the server has closed the session (after a kick or a restart).
    pub async fn noop(&mut self) -> Result<()> {
        let what = format!("NOOP as {}", self.user);
        bounded(&what, async { Ok(self.session.noop().await?) }).await
    }

    /// Waits, without sending anything, until the server closes the connection (after a kick,
    /// a restart, or an idle time-out), and returns the text of its `* BYE` if it sent one.
    /// Fails if the connection is still open after `timeout`.
    ///
    /// Sending a command instead (see [`ImapClient::noop`]) also fails on a closed session,
    /// but may lose the BYE: writing to a closed socket draws a TCP reset, and Linux then
    /// discards unread data.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<Option<String>> {
        let mut bye = None;
        let read_to_end = async {
            while let Some(response) = self.session.read_response().await? {
                if let Response::Data {
                    status: Status::Bye,
                    outcome,
                } = response.parsed()
                {
                    bye = Some(
                        outcome
                            .information
                            .as_deref()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
            anyhow::Ok(())
        };
        match tokio::time::timeout(timeout, read_to_end).await {
            Ok(read) => read.with_context(|| format!("reading until close as {}", self.user))?,
            Err(_) => bail!(
                "the session of {} is still open after {timeout:?}",
                self.user
            ),
        }
        Ok(bye)
    }

    /// Logs out and closes the connection.
    pub async fn logout(mut self) -> Result<()> {
        let what = format!("LOGOUT as {}", self.user);
        bounded(&what, async { Ok(self.session.logout().await?) }).await
    }

    /// EXAMINEs `folder` (read-only, so `\Recent` and `\Seen` stay as they are).
    async fn examine(&mut self, folder: &str) -> Result<Mailbox> {
        let what = format!("EXAMINE {folder:?} as {}", self.user);
        bounded(&what, async { Ok(self.session.examine(folder).await?) }).await
    }

    /// EXAMINEs `folder` and runs UID FETCH `uids` `query`, collecting every FETCH response.
    /// Unsolicited FETCH responses about other messages may be among them.
    async fn fetch_all(&mut self, folder: &str, uids: &str, query: &str) -> Result<Vec<Fetch>> {
        self.examine(folder).await?;
        let what = format!("UID FETCH {uids} {query} in {folder:?} as {}", self.user);
        bounded(&what, async {
            Ok(self
                .session
                .uid_fetch(uids, query)
                .await?
                .try_collect()
                .await?)
        })
        .await
    }

    /// SELECTs `folder` and makes sure `uid` is in it: the UID commands used to change mail
    /// answer OK for a UID that does not exist, which would hide a wrong test.
    async fn select_with_uid(&mut self, folder: &str, uid: u32) -> Result<()> {
        self.session.select(folder).await.context("SELECT failed")?;
        let fetches: Vec<Fetch> = self
            .session
            .uid_fetch(uid.to_string(), "(UID)")
            .await?
            .try_collect()
            .await?;
        if !fetches.iter().any(|f| f.uid == Some(uid)) {
            bail!("no message with UID {uid} in {folder:?}");
        }
        Ok(())
    }

    /// Marks `uid` in the selected folder `\Deleted` and expunges exactly that message.
    async fn expunge_uid(&mut self, uid: u32) -> Result<()> {
        let set = uid.to_string();
        let _: Vec<Fetch> = self
            .session
            .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
            .await?
            .try_collect()
            .await?;
        let _: Vec<u32> = self.session.uid_expunge(&set).await?.try_collect().await?;
        Ok(())
    }
}

/// Runs `fut` with [`COMMAND_TIMEOUT`], naming `what` in any error.
async fn bounded<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
        Ok(result) => result.with_context(|| what.to_owned()),
        Err(_) => bail!("{what}: no answer within {COMMAND_TIMEOUT:?}"),
    }
}

fn capability_name(capability: &Capability) -> String {
    match capability {
        Capability::Imap4rev1 => "IMAP4rev1".to_owned(),
        Capability::Auth(mechanism) => format!("AUTH={mechanism}"),
        Capability::Atom(atom) => atom.clone(),
    }
}

/// A flag as it is written on the wire.
fn flag_name(flag: &Flag<'_>) -> String {
    match flag {
        Flag::Seen => "\\Seen".to_owned(),
        Flag::Answered => "\\Answered".to_owned(),
        Flag::Flagged => "\\Flagged".to_owned(),
        Flag::Deleted => "\\Deleted".to_owned(),
        Flag::Draft => "\\Draft".to_owned(),
        Flag::Recent => "\\Recent".to_owned(),
        Flag::MayCreate => "\\*".to_owned(),
        Flag::Custom(name) => name.to_string(),
    }
}

/// The unfolded value of the first Message-ID header in `header`, if any.
fn parse_message_id(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let first = lines.find(|l| {
        l.get(..11)
            .is_some_and(|name| name.eq_ignore_ascii_case("message-id:"))
    })?;
    let mut value = first[11..].trim().to_owned();
    // RFC 5322 section 2.2.3: a header continues on lines that start with white space.
    for continuation in lines.take_while(|l| l.starts_with([' ', '\t'])) {
        value.push_str(continuation.trim());
    }
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::parse_message_id;

    #[test]
    fn message_id_is_found_case_insensitively() {
        let header = b"message-ID: <a@b>\r\n\r\n";
        assert_eq!(parse_message_id(header).as_deref(), Some("<a@b>"));
    }

    #[test]
    fn folded_message_id_is_unfolded() {
        let header = b"Message-ID:\r\n <long@example.test>\r\n\r\n";
        assert_eq!(
            parse_message_id(header).as_deref(),
            Some("<long@example.test>")
        );
    }

    #[test]
    fn missing_or_empty_message_id_is_none() {
        assert_eq!(parse_message_id(b"\r\n"), None);
        assert_eq!(parse_message_id(b"Message-ID:   \r\n\r\n"), None);
    }
}
