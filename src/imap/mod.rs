//! The mailbox side: an IMAP connection that fetches and moves, and nothing more.
//!
//! [`Connection`] wraps an async-imap session with what async-imap leaves to its users: a
//! time-out on every command (a stalled server is detected, not waited on forever), capability
//! checks after login (Exchange Online may only show MOVE then), MOVE with a COPY / `\Deleted` /
//! UID EXPUNGE fallback, folder names in modified UTF-7, and bounded `BODY.PEEK` fetches that
//! never set `\Seen`. Decisions come from elsewhere; this module only applies them.
//!
//! Opening a connection first takes a place in the account's connection budget ([`budget`]),
//! then logs in as the mailbox says ([`auth`]: LOGIN, PLAIN or XOAUTH2). A connection opened
//! with a token knows when to re-authenticate ([`Connection::expires_at`]); a server that ends
//! a session with `* BYE`, on any command, has its reason in the error, so the worker can tell
//! an expired token ([`auth::is_token_expired`]) from an outage.

pub mod auth;
pub mod budget;
pub mod mutf7;
pub mod pin;
pub mod tls;

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use async_imap::extensions::idle::IdleResponse;
use async_imap::types::Flag;
use async_imap::{Client, Session};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::{MailboxConfig, Security, ServerConfig};
use crate::secret::Secret;

/// How many unsolicited responses async-imap queues before it drops the rest (its channel is
/// `bounded(100)`).
const UNSOLICITED_CAPACITY: usize = 100;

/// A socket, with or without TLS.
#[derive(Debug)]
pub enum Stream {
    /// Unencrypted; only ever used towards loopback.
    Plain(TcpStream),
    /// TLS from the start or after STARTTLS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the server can do, read after login.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 6851 MOVE.
    pub moves: bool,
    /// RFC 4315 UIDPLUS (UID EXPUNGE).
    pub uidplus: bool,
    /// RFC 2177 IDLE.
    pub idle: bool,
    /// RFC 5819 LIST-STATUS: the state of many folders in one command.
    pub list_status: bool,
}

/// What SELECT told us about a folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderInfo {
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT, when the server said.
    pub uid_next: Option<u32>,
    /// Number of messages.
    pub exists: u32,
    /// True when PERMANENTFLAGS contains `\*`: custom keywords are kept. Exchange never says so.
    pub keywords: bool,
}

/// One message as fetched for routing.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its UID in the selected folder.
    pub uid: u32,
    /// The server's arrival time.
    pub internal_date: Option<DateTime<Utc>>,
    /// RFC822.SIZE (an estimate on Exchange).
    pub size: Option<u64>,
    /// Headers followed by the first part of the body; empty if the server sent no data.
    pub raw: Vec<u8>,
    /// Its flags and keywords, where the server sent them.
    pub flags: Option<Vec<String>>,
}

/// How IDLE ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleEnd {
    /// The server reported something.
    NewData,
    /// Our own interval ran out.
    Timeout,
    /// We were asked to stop.
    Interrupted,
}

/// A logged-in IMAP session with time-outs on every command.
pub struct Connection {
    session: Session<Stream>,
    /// Capabilities after login.
    pub caps: Capabilities,
    timeout: Duration,
    delimiter: String,
    /// When a token login must be renewed; None for passwords.
    expires_at: Option<Instant>,
    /// The place in the account's budget, freed when the connection is dropped.
    permit: budget::Permit,
    /// When the last IDLE ended with news from the server.
    announced_at: Option<Instant>,
    /// Set when a command's answer carried news of the selected folder (an untagged EXISTS)
    /// or a folder was selected, until [`Connection::take_news`] is called.
    news: bool,
}

/// Runs a command on the connection's session with the command time-out; when it fails, a
/// `* BYE` the server sent first is added to the error, since async-imap only reports
/// "connection lost" and the reason (`AccessTokenExpired`) matters.
macro_rules! command {
    ($self:ident, $what:expr, $fut:expr $(,)?) => {{
        let result = timed($self.timeout, $what, $fut).await;
        $self.with_bye(result)
    }};
}

mod fetch;
mod moves;
mod statuses;
pub use moves::Copied;

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

/// Runs a future with the command time-out, naming the command when it expires.
async fn timed<T, E>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.with_context(|| what.to_string()),
        Err(_) => bail!(
            "{what}: the server did not answer within {}s",
            limit.as_secs()
        ),
    }
}

impl Connection {
    /// Connects, secures the channel as configured, and logs in with LOGIN. The login string is
    /// passed through unchanged, so Exchange's delegated forms work.
    pub async fn open(server: &ServerConfig, login: &str, password: &Secret) -> Result<Connection> {
        let permit = budget::acquire(server, login).await?;
        let credentials = auth::Credentials::Login(login, password);
        Self::establish(server, permit, &credentials).await
    }

    /// Connects and logs in as `mailbox` says (`auth`: LOGIN, PLAIN or XOAUTH2). `password` is
    /// not used for XOAUTH2, whose token comes from `token_command` through [`crate::oauth`].
    pub async fn open_mailbox(
        server: &ServerConfig,
        mailbox: &MailboxConfig,
        password: &Secret,
    ) -> Result<Connection> {
        // The budget is the token owner's (login), not the shared mailbox's (oauth_user).
        let permit = budget::acquire(server, &mailbox.login).await?;
        Self::open_with_permit(server, mailbox, password, permit).await
    }

    /// [`Connection::open_mailbox`] with a place in the account's connection budget already
    /// held (from [`budget::acquire`]), for a caller that must not wait for one while it
    /// holds something else.
    pub async fn open_with_permit(
        server: &ServerConfig,
        mailbox: &MailboxConfig,
        password: &Secret,
        permit: budget::Permit,
    ) -> Result<Connection> {
        let credentials = auth::credentials(mailbox, password).await?;
        Self::establish(server, permit, &credentials).await
    }

    async fn establish(
        server: &ServerConfig,
        permit: budget::Permit,
        credentials: &auth::Credentials<'_>,
    ) -> Result<Connection> {
        let limit = server.command_timeout();
        let client = match tokio::time::timeout(limit, connect(server)).await {
            Ok(client) => client?,
            Err(_) => bail!(
                "connect to {}: no greeting within {}s",
                server.host,
                limit.as_secs()
            ),
        };
        let login = auth::log_in(client, credentials, permit.budget());
        let session = match tokio::time::timeout(limit, login).await {
            Err(_) => bail!(
                "{}: the server did not answer within {}s",
                credentials.mechanism(),
                limit.as_secs()
            ),
            Ok(result) => result?,
        };
        let mut connection = Connection {
            session,
            caps: Capabilities::default(),
            timeout: limit,
            delimiter: "/".into(),
            expires_at: credentials.expires_at(),
            permit,
            announced_at: None,
            news: false,
        };
        connection.read_capabilities().await?;
        connection.read_delimiter().await?;
        Ok(connection)
    }

    /// When this connection must be replaced because its OAuth token is about to expire; None
    /// for password logins. The worker reconnects at this instant (a new connection fetches a
    /// fresh token); Exchange Online would otherwise end the session with
    /// `* BYE Session invalidated - AccessTokenExpired`.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// When the last IDLE ended because the server reported something (new mail, mostly):
    /// where postroom's own part of the latency starts.
    pub fn announced_at(&self) -> Option<Instant> {
        self.announced_at
    }

    /// `limit`, shortened to end at the renewal deadline; an error once that has passed.
    fn renewal_bound(&self, limit: Duration) -> Result<Duration> {
        let Some(deadline) = self.expires_at else {
            return Ok(limit);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(anyhow!(auth::RenewalDue));
        }
        Ok(limit.min(left))
    }

    /// Turns a `* BYE` the server sent during a command into an error naming its text.
    /// async-imap sends an untagged BYE to the unsolicited channel and then reports either
    /// "connection lost" or, for NOOP and the FETCH family, success at end of stream: the
    /// reason (`AccessTokenExpired`) and even the failure would be lost. Other unsolicited
    /// responses are discarded here, as everywhere (see [`Connection::drain_unsolicited`]).
    fn with_bye<T>(&mut self, result: Result<T>) -> Result<T> {
        use async_imap::types::UnsolicitedResponse;
        let mut count = 0usize;
        while let Ok(response) = self.session.unsolicited_responses.try_recv() {
            count += 1;
            let data = match response {
                UnsolicitedResponse::Exists(_) => {
                    self.news = true;
                    continue;
                }
                UnsolicitedResponse::Other(data) => data,
                _ => continue,
            };
            if let Some(text) = bye_text(data.parsed()) {
                let bye = format!("the server closed the connection: BYE {text}");
                return Err(match result {
                    Err(err) => err.context(bye),
                    Ok(_) => anyhow!(bye),
                });
            }
        }
        // A full queue dropped what did not fit, which may have been an EXISTS.
        self.news |= count >= UNSOLICITED_CAPACITY;
        result
    }

    async fn read_capabilities(&mut self) -> Result<()> {
        let caps = command!(self, "CAPABILITY", self.session.capabilities())?;
        self.caps = Capabilities {
            moves: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
            idle: caps.has_str("IDLE"),
            list_status: caps.has_str("LIST-STATUS"),
        };
        Ok(())
    }

    async fn read_delimiter(&mut self) -> Result<()> {
        let names = command!(self, "LIST \"\" \"\"", async {
            self.session
                .list(Some(""), Some(""))
                .await?
                .try_collect::<Vec<_>>()
                .await
        })?;
        if let Some(delimiter) = names.first().and_then(|n| n.delimiter()) {
            self.delimiter = delimiter.to_string();
        }
        Ok(())
    }

    /// The wire name of a `/`-separated folder path: the server's delimiter, modified UTF-7.
    pub fn wire_name(&self, folder: &str) -> String {
        folder
            .split('/')
            .map(mutf7::encode)
            .collect::<Vec<_>>()
            .join(&self.delimiter)
    }

    /// Creates every folder (and parent) in `folders` that does not exist yet.
    pub async fn ensure_folders(&mut self, folders: &[String]) -> Result<Vec<String>> {
        let existing = self.folder_names().await?;
        self.ensure_listed(&existing, folders).await
    }

    /// [`Connection::ensure_folders`] with the wire names of every folder already listed
    /// ([`Connection::folder_names`]), which saves a LIST when the caller has one.
    pub async fn ensure_listed(
        &mut self,
        existing: &[String],
        folders: &[String],
    ) -> Result<Vec<String>> {
        let mut created = Vec::new();
        for folder in folders {
            let parts: Vec<&str> = folder.split('/').collect();
            for depth in 1..=parts.len() {
                let path = parts[..depth].join("/");
                let wire = self.wire_name(&path);
                if existing.contains(&wire) || created.contains(&path) {
                    continue;
                }
                command!(self, &format!("CREATE {path}"), self.session.create(&wire),)?;
                created.push(path);
            }
        }
        Ok(created)
    }

    /// The wire names of every folder.
    pub async fn folder_names(&mut self) -> Result<Vec<String>> {
        command!(self, "LIST", async {
            let names = self
                .session
                .list(Some(""), Some("*"))
                .await?
                .try_collect::<Vec<_>>()
                .await?;
            Ok::<_, async_imap::error::Error>(names.iter().map(|n| n.name().to_string()).collect())
        })
    }

    /// Renames a folder (decoded names); its messages go with it.
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (old, new) = (self.wire_name(from), self.wire_name(to));
        let what = format!("RENAME {from} to {to}");
        command!(self, &what, self.session.rename(&old, &new))
    }

    /// Selects a folder read-write.
    pub async fn select(&mut self, folder: &str) -> Result<FolderInfo> {
        let wire = self.wire_name(folder);
        let mailbox = command!(
            self,
            &format!("SELECT {folder}"),
            self.session.select(&wire),
        )?;
        // SELECT reports the folder's message count as data, not as news: mail that reached
        // the inbox while another folder was selected is announced by nothing later.
        self.news = true;
        // async-imap answers a SELECT whose connection closed before the tagged OK with an
        // empty folder; every server sends UIDVALIDITY (RFC 3501 section 6.3.1).
        let Some(uid_validity) = mailbox.uid_validity else {
            bail!("SELECT {folder}: no UIDVALIDITY in the answer (the connection was lost)");
        };
        Ok(FolderInfo {
            uid_validity,
            uid_next: mailbox.uid_next,
            exists: mailbox.exists,
            keywords: mailbox
                .permanent_flags
                .iter()
                .any(|f| matches!(f, Flag::MayCreate)),
        })
    }

    /// UIDs in the selected folder at or above `from`, ascending.
    pub async fn uids_from(&mut self, from: u32) -> Result<Vec<u32>> {
        let set = format!("{}:*", from.max(1));
        let fetches = self
            .uid_fetch_checked(&set, "(UID)", "UID FETCH (UID)")
            .await?;
        // `n:*` always includes the highest UID, even when it is below n (RFC 3501 6.4.8).
        Ok(fetches
            .iter()
            .map(|f| f.uid)
            .filter(|u| *u >= from)
            .collect())
    }

    /// Fetches headers plus at most `body_cap` bytes of body for each UID, never setting `\Seen`.
    pub async fn fetch_for_routing(&mut self, uids: &[u32], body_cap: u32) -> Result<Vec<Fetched>> {
        let set = uid_set(uids);
        let query = format!(
            "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.{body_cap}>)"
        );
        let fetches = self
            .uid_fetch_checked(&set, &query, "UID FETCH (BODY.PEEK)")
            .await?;
        Ok(fetches.into_iter().map(fetched).collect())
    }

    /// Adds a keyword to messages; only call where [`FolderInfo::keywords`] is true.
    pub async fn add_keyword(&mut self, uids: &[u32], keyword: &str) -> Result<()> {
        let set = uid_set(uids);
        command!(self, "UID STORE +FLAGS", async {
            self.session
                .uid_store(&set, format!("+FLAGS.SILENT ({keyword})"))
                .await?
                .try_collect::<Vec<_>>()
                .await
        })?;
        Ok(())
    }

    /// Marks messages as owned by `owner` alone: every other owner keyword in `all` is removed
    /// and the owner's set, so a message that changed hands never carries two owners. Only
    /// for folders where [`FolderInfo::keywords`] is true.
    pub async fn set_owner_keyword(
        &mut self,
        uids: &[u32],
        owner: &str,
        all: &[String],
    ) -> Result<()> {
        let others: Vec<&str> = all
            .iter()
            .map(String::as_str)
            .filter(|k| *k != owner)
            .collect();
        self.replace_keywords(uids, &others, Some(owner)).await
    }

    /// Removes the keywords `remove` from messages and adds `add`: one STORE for each that
    /// has something to do. Only for folders where [`FolderInfo::keywords`] is true.
    pub async fn replace_keywords(
        &mut self,
        uids: &[u32],
        remove: &[&str],
        add: Option<&str>,
    ) -> Result<()> {
        if !remove.is_empty() {
            let set = uid_set(uids);
            let list = remove.join(" ");
            command!(self, "UID STORE -FLAGS", async {
                self.session
                    .uid_store(&set, format!("-FLAGS.SILENT ({list})"))
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })?;
        }
        match add {
            Some(keyword) => self.add_keyword(uids, keyword).await,
            None => Ok(()),
        }
    }

    /// UIDNEXT, UIDVALIDITY and message count of a folder by STATUS, without selecting it.
    pub async fn status(&mut self, folder: &str) -> Result<FolderInfo> {
        let wire = self.wire_name(folder);
        let what = format!("STATUS {folder}");
        let query = "(UIDNEXT UIDVALIDITY MESSAGES)";
        let mailbox = command!(self, &what, self.session.status(&wire, query))?;
        // As with SELECT, a cut connection reads as an answer without the asked-for values.
        let Some(uid_validity) = mailbox.uid_validity else {
            bail!("{what}: no UIDVALIDITY in the answer (the connection was lost)");
        };
        Ok(FolderInfo {
            uid_validity,
            uid_next: mailbox.uid_next,
            exists: mailbox.exists,
            keywords: false,
        })
    }

    /// Message-IDs of every message in the selected folder, by UID: the cheap listing that
    /// reconciliation compares with the store.
    pub async fn message_ids(&mut self) -> Result<Vec<(u32, Option<String>)>> {
        self.message_ids_in("1:*").await
    }

    /// NOOP: a cheap way to hear pending news and prove the connection lives. Fails with
    /// [`auth::RenewalDue`] once a token login is due for renewal.
    pub async fn noop(&mut self) -> Result<()> {
        self.renewal_bound(Duration::ZERO)?;
        command!(self, "NOOP", self.session.noop())
    }

    /// Whether the server may have told of new mail in the selected folder since the last
    /// call: an untagged EXISTS came with some command's answer (or while DONE was answered,
    /// after an IDLE our own timer ended: Dovecot sends a pending EXISTS then), async-imap's
    /// queue overflowed and may have dropped one, or a folder was selected. Clears the mark
    /// and the queue; a `* BYE` found in the queue is the error.
    ///
    /// An IMAP server tells a client of new mail once (RFC 3501 section 7.3.1): an EXISTS
    /// that is thrown away is never repeated, and IDLE then waits for the next message
    /// (field case BUG-04). So whoever sees news must list the inbox before the next IDLE.
    pub fn take_news(&mut self) -> Result<bool> {
        self.with_bye(Ok(()))?;
        Ok(std::mem::take(&mut self.news))
    }

    /// IDLE until the server reports something, `limit` passes, or `stop` fires.
    /// A `* BYE` or a closed stream during IDLE is an error: a disconnect, never "no news".
    /// A token login's IDLE also ends at [`Connection::expires_at`]; once that has passed,
    /// IDLE fails with [`auth::RenewalDue`] so the session is replaced with a fresh login.
    pub async fn idle(
        self,
        limit: Duration,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<(Connection, IdleEnd)> {
        let limit = self.renewal_bound(limit)?;
        let Connection {
            session,
            caps,
            timeout,
            delimiter,
            expires_at,
            permit,
            announced_at,
            news,
        } = self;
        let mut handle = session.idle();
        timed(timeout, "IDLE", handle.init()).await?;
        let (wait, interrupt) = handle.wait_with_timeout(limit);
        let mut stop = stop.clone();
        // async-imap's own timer restarts on every keep-alive, so a server that says "still here"
        // every two minutes would keep one IDLE going for ever; this bound is absolute.
        let response = tokio::select! {
            response = wait => Some(response),
            _ = tokio::time::sleep(limit) => Some(Ok(IdleResponse::Timeout)),
            _ = stop.wait_for(|s| *s) => None,
        };
        drop(interrupt);
        let woke = Instant::now();
        let mut announced_at = announced_at;
        let end = match response {
            None => IdleEnd::Interrupted,
            Some(Ok(IdleResponse::Timeout)) => IdleEnd::Timeout,
            Some(Ok(IdleResponse::NewData(data))) => {
                if let Some(text) = bye_text(data.parsed()) {
                    bail!("the server closed the connection during IDLE: BYE {text}");
                }
                announced_at = Some(woke);
                IdleEnd::NewData
            }
            // async-imap reports end-of-stream as a manual interrupt; we never interrupt
            // through its stop source, so this can only be the server going away.
            Some(Ok(IdleResponse::ManualInterrupt)) => {
                bail!("the server closed the connection during IDLE")
            }
            Some(Err(err)) => return Err(anyhow!(err).context("IDLE")),
        };
        // DONE gets its own bound: a server that never confirms it is treated as dead.
        let session = timed(timeout, "DONE", handle.done()).await?;
        Ok((
            Connection {
                session,
                caps,
                timeout,
                delimiter,
                expires_at,
                permit,
                announced_at,
                news,
            },
            end,
        ))
    }

    /// Logs out politely, bounded by the command time-out.
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.session.logout()).await;
    }
}

async fn connect(server: &ServerConfig) -> Result<Client<Stream>> {
    let address = (server.host.as_str(), server.effective_port());
    let tcp = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot reach {}:{}", server.host, server.effective_port()))?;
    // Without TCP_NODELAY, literal-based commands stall on Nagle and delayed ACKs.
    tcp.set_nodelay(true)?;
    let stream = match server.security {
        Security::Plain => {
            if !crate::config_check::is_loopback(&server.host) {
                bail!("plain IMAP is only allowed to a loopback address");
            }
            Stream::Plain(tcp)
        }
        Security::Tls => {
            let tls = tls::wrap(tcp, &server.host, tls::client_config(server)?).await?;
            Stream::Tls(Box::new(tls))
        }
        Security::Starttls => return starttls(tcp, server).await,
    };
    greeted(Client::new(stream)).await
}

async fn greeted(mut client: Client<Stream>) -> Result<Client<Stream>> {
    // async-imap does not read the greeting itself.
    match client.read_response().await? {
        Some(_) => Ok(client),
        None => bail!("the server closed the connection before its greeting"),
    }
}

async fn starttls(tcp: TcpStream, server: &ServerConfig) -> Result<Client<Stream>> {
    let mut client = greeted(Client::new(Stream::Plain(tcp))).await?;
    client
        .run_command_and_check_ok("STARTTLS", None)
        .await
        .context("STARTTLS refused")?;
    let Stream::Plain(tcp) = client.into_inner() else {
        bail!("STARTTLS on a TLS stream")
    };
    let tls = tls::wrap(tcp, &server.host, tls::client_config(server)?).await?;
    Ok(Client::new(Stream::Tls(Box::new(tls))))
}

/// The text of a `* BYE` response. A BYE saying the access token expired also empties the
/// token cache: the token was revoked or shorter-lived than announced, and the next login
/// must not reuse it.
fn bye_text(response: &imap_proto::Response<'_>) -> Option<String> {
    let imap_proto::Response::Data {
        status: imap_proto::Status::Bye,
        outcome,
    } = response
    else {
        return None;
    };
    let text = outcome.information.as_deref().unwrap_or("").to_string();
    if text.contains(auth::TOKEN_EXPIRED) {
        crate::oauth::forget_all();
    }
    Some(text)
}

fn fetched(fetch: fetch::FetchData) -> Fetched {
    let mut raw = fetch.header.unwrap_or_default();
    if let Some(text) = fetch.text {
        raw.extend_from_slice(&text);
    }
    Fetched {
        uid: fetch.uid,
        internal_date: fetch.internal_date,
        size: fetch.size.map(u64::from),
        raw,
        flags: fetch.flags,
    }
}

/// True when the server refused a command (`NO` or `BAD`) on a connection that still works,
/// as opposed to a broken connection or a time-out.
pub fn is_refusal(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<async_imap::error::Error>(),
            Some(async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_))
        )
    })
}

/// A compact UID set (`1:5,8,10:12`), kept short because Exchange refuses long command lines
/// (`BAD Command Error. 10`).
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

mod search;

#[cfg(test)]
mod tests {
    use super::uid_set;

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 8, 10, 11, 12]), "1:3,5,8,10:12");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[]), "");
    }
}
