//! A fault-injecting IMAP proxy that sits between the daemon under test and Dovecot.
//!
//! Dovecot is a well-behaved server; Exchange is not. [`FaultProxy`] listens on a free loopback
//! port, forwards every connection to Dovecot, and on request misbehaves the way Exchange does
//! in the field (see `shared/research/exchange-imap.md` section 4): it drops or stalls
//! connections, answers commands with Exchange's exact error lines, sends `* BYE` instead of
//! accepting IDLE, hides capabilities, and returns "OK with no data" or unparseable FETCH data
//! for chosen messages. The test points the daemon at [`FaultProxy::port`] and keeps using
//! [`crate::ImapClient`] directly against Dovecot for what "a person" does.
//!
//! The proxy frames the stream by IMAP rules ([`frame`]), so a literal containing CRLF or a
//! command-like text is never mistaken for a command. Commands are forwarded physical line by
//! physical line (a client sending a synchronizing literal waits for the server's `+`, so a
//! whole command cannot be buffered first); faults are decided on the first line of a command.
//! Responses are forwarded whole, which is what lets the proxy drop or rewrite one.
//!
//! It runs on its own thread and runtime, so it keeps forwarding while a test blocks its own
//! thread (a Dovecot restart, a `doveadm` call), and every control is a plain method usable
//! from any thread. Faults armed with `*_next` fire once; settings such as [`FaultProxy::stall`]
//! last until changed. The command log masks LOGIN and AUTHENTICATE arguments and SASL
//! exchanges: a password never reaches it.

mod frame;
mod xoauth2;

pub use xoauth2::Xoauth2Attempt;

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use regex::Regex;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex as AsyncMutex};

use crate::Dovecot;
use frame::Reader;

/// Exchange's `* BYE` when it ends a session it no longer serves (MailKit #1496).
pub const EXCHANGE_BYE: &str = "* BYE Connection closed. 14";

/// Exchange's answer to a login over the per-user connection limit: it looks like a wrong
/// password (deltachat-desktop #1527).
pub const EXCHANGE_LOGIN_FAILED: &str = "NO LOGIN failed.";

/// A running proxy; dropping it closes every connection and stops the thread.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// State shared by the handle and every connection task.
struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    /// Bumped by [`FaultProxy::cut_all`]; every connection ends when it changes.
    cut: watch::Sender<u64>,
    stalled: watch::Sender<bool>,
    connections: AtomicUsize,
    /// Connections open now, and the most ever open at once.
    open: AtomicUsize,
    peak: AtomicUsize,
    xoauth2_seen: Mutex<Vec<Xoauth2Attempt>>,
    accepted: Mutex<Vec<Instant>>,
    log: Mutex<Vec<String>>,
}

/// What a matching command gets instead of being forwarded.
#[derive(Clone)]
enum Action {
    /// Answer with `<tag> <line>`, then close the connection if `close`.
    Reply { line: String, close: bool },
    /// Answer with this untagged `* BYE` line and close, leaving the tag unanswered.
    Bye(String),
    /// Forward only once the test releases it.
    Hold(Hold),
}

/// A one-shot fault on the next command whose text (after the tag) matches `pattern`.
struct Rule {
    pattern: Regex,
    action: Action,
}

/// Faults that apply to all connections.
#[derive(Default)]
struct Faults {
    rules: Vec<Rule>,
    refuse_logins: usize,
    bye_on_idle: bool,
    /// Drop the server's news (see [`FaultProxy::mute_news`]).
    mute_news: bool,
    strip: Vec<String>,
    no_data_uids: Vec<u32>,
    poison_uids: Vec<u32>,
    xoauth2: Option<xoauth2::FakeXoauth2>,
}

/// A command held back by [`FaultProxy::hold_next`] until [`Hold::release`].
#[derive(Clone)]
pub struct Hold {
    held: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl Hold {
    /// Waits until a matching command has arrived and is being held; fails after `timeout`.
    pub async fn wait_held(&self, timeout: Duration) -> Result<()> {
        let mut held = self.held.subscribe();
        tokio::time::timeout(timeout, held.wait_for(|h| *h))
            .await
            .context("no matching command arrived to hold")?
            .context("the proxy is gone")?;
        Ok(())
    }

    /// Lets the held command through.
    pub fn release(&self) {
        self.released.send_replace(true);
    }
}

impl FaultProxy {
    /// A proxy in front of `dovecot`.
    pub fn in_front_of(dovecot: &Dovecot) -> Result<FaultProxy> {
        Self::start(dovecot.port())
    }

    /// A proxy on a free loopback port forwarding to `127.0.0.1:upstream_port`, which need not
    /// be listening yet (a connection made while it is down is closed at once).
    pub fn start(upstream_port: u16) -> Result<FaultProxy> {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind proxy")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
            faults: Mutex::default(),
            cut: watch::Sender::new(0),
            stalled: watch::Sender::new(false),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            xoauth2_seen: Mutex::default(),
            accepted: Mutex::default(),
            log: Mutex::default(),
        });
        let (shutdown, stop) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the proxy runtime")?;
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || runtime.block_on(accept_loop(listener, for_thread, stop)))
            .context("cannot start the proxy thread")?;
        Ok(FaultProxy {
            port,
            shared,
            shutdown,
            thread: Some(thread),
        })
    }

    /// The port to point the daemon at.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every open connection at once, as a dead NAT or a server crash would. New
    /// connections are accepted as usual.
    pub fn cut_all(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// While `on`, nothing is forwarded in either direction and nothing is closed: a server
    /// that went silent. Data read meanwhile is delivered once the stall ends.
    pub fn stall(&self, on: bool) {
        self.shared.stalled.send_replace(on);
    }

    /// Answers the next command matching `command` (a regex over the command text after the
    /// tag, e.g. `^UID FETCH`) with Exchange's throttling line and closes the connection.
    pub fn throttle_next(&self, command: &str, millis: u64) {
        let line =
            format!("BAD Request is throttled. Suggested Backoff Time: {millis} milliseconds");
        self.push_rule(command, Action::Reply { line, close: true });
    }

    /// Answers the next command matching `command` with `<tag> <line>` (e.g.
    /// `NO Server Unavailable. 15`) and keeps the connection open.
    pub fn reply_next(&self, command: &str, line: &str) {
        let line = line.to_owned();
        self.push_rule(command, Action::Reply { line, close: false });
    }

    /// Like [`FaultProxy::reply_next`], then sends [`EXCHANGE_BYE`] and closes, as Exchange
    /// does after `BAD User is authenticated but not connected.`
    pub fn reply_next_and_close(&self, command: &str, line: &str) {
        let line = line.to_owned();
        self.push_rule(command, Action::Reply { line, close: true });
    }

    /// Holds the next command matching `command` until the returned [`Hold`] is released, so
    /// a test can change the mailbox between the daemon's decision and its effect.
    pub fn hold_next(&self, command: &str) -> Hold {
        let hold = Hold {
            held: watch::Sender::new(false),
            released: watch::Sender::new(false),
        };
        self.push_rule(command, Action::Hold(hold.clone()));
        hold
    }

    /// Answers the next command matching `command` with the untagged `line` (such as
    /// `* BYE Session invalidated - AccessTokenExpired`) and closes the connection.
    pub fn bye_next(&self, command: &str, line: &str) {
        self.push_rule(command, Action::Bye(line.to_owned()));
    }

    /// From now on (`true`) the server tells of new mail only when a folder is selected:
    /// every untagged response from a client's IDLE to the answer to its DONE is dropped
    /// (except `* BYE`), which is Exchange's way of silently no longer pushing, and so is
    /// every `* n EXISTS` and `* n RECENT` outside a SELECT or EXAMINE. A client then learns
    /// of new mail only by asking: a UID listing, or a STATUS of the folder.
    pub fn mute_news(&self, on: bool) {
        self.faults().mute_news = on;
    }

    /// Answers the next IDLE with [`EXCHANGE_BYE`] instead of `+ idling`, and closes.
    pub fn bye_on_idle(&self) {
        self.faults().bye_on_idle = true;
    }

    /// Removes these capabilities from every CAPABILITY response and `[CAPABILITY]` code from
    /// now on (e.g. `&["MOVE", "IDLE"]`); an empty list restores them.
    pub fn strip_capabilities(&self, names: &[&str]) {
        self.faults().strip = names.iter().map(|s| s.to_string()).collect();
    }

    /// From now on, FETCH responses carrying content of message `uid` are dropped while the
    /// tagged `OK` still comes: Exchange's "OK with no data" for an unconvertible item.
    pub fn drop_fetch_data_for(&self, uid: u32) {
        self.faults().no_data_uids.push(uid);
    }

    /// From now on, FETCH responses carrying content of message `uid` are replaced by a
    /// well-framed line that no IMAP parser accepts (a non-numeric RFC822.SIZE): a poison
    /// message in the sense of field case BUG-07.
    pub fn poison_fetch_for(&self, uid: u32) {
        self.faults().poison_uids.push(uid);
    }

    /// Ends [`FaultProxy::drop_fetch_data_for`] and [`FaultProxy::poison_fetch_for`]: every
    /// message's data comes through again.
    pub fn restore_fetch_data(&self) {
        let mut faults = self.faults();
        faults.no_data_uids.clear();
        faults.poison_uids.clear();
    }

    /// Answers the next `n` LOGINs with [`EXCHANGE_LOGIN_FAILED`].
    pub fn refuse_logins(&self, n: usize) {
        self.faults().refuse_logins = n;
    }

    /// From now on, answers `AUTHENTICATE XOAUTH2` itself (see the `xoauth2` module): a
    /// token in `accepted` logs in upstream as the `user=` it names with `password`.
    pub fn fake_xoauth2(&self, accepted: &[&str], password: &str) {
        self.faults().xoauth2 = Some(xoauth2::FakeXoauth2 {
            accepted: accepted.iter().map(|t| t.to_string()).collect(),
            password: password.to_owned(),
        });
    }

    /// Every XOAUTH2 attempt the fake answered, in order.
    pub fn xoauth2_attempts(&self) -> Vec<Xoauth2Attempt> {
        lock(&self.shared.xoauth2_seen).clone()
    }

    /// How many client connections are open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// The most client connections ever open at the same time.
    pub fn peak_connections(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// How many client connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// When each connection was accepted, in order.
    pub fn accepted_at(&self) -> Vec<Instant> {
        lock(&self.shared.accepted).clone()
    }

    /// Every command seen so far, without tags, LOGIN/AUTHENTICATE arguments masked, e.g.
    /// `UID FETCH 1:* (UID)`, `IDLE`, `DONE`, `LOGIN ***`.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }

    fn push_rule(&self, command: &str, action: Action) {
        let pattern = Regex::new(command).unwrap_or_else(|e| panic!("bad pattern {command}: {e}"));
        self.faults().rules.push(Rule { pattern, action });
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.shared.faults)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        // Held commands would keep their tasks waiting; the runtime drops them anyway.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .field("upstream", &self.shared.upstream)
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept_loop(listener: StdListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
                shared.peak.fetch_max(open, Ordering::SeqCst);
                lock(&shared.accepted).push(Instant::now());
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    serve(client, &shared).await;
                    shared.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Per-connection state both directions look at.
#[derive(Default)]
struct Session {
    /// The tag of an AUTHENTICATE in progress: client lines are SASL data until it completes.
    sasl_tag: Option<String>,
    /// IDLE is running: the next client line is `DONE`.
    idling: bool,
    /// The tag of an IDLE not yet completed: from the command until the server's tagged
    /// answer to DONE.
    idle_tag: Option<String>,
    /// The tag of a SELECT or EXAMINE not yet answered.
    select_tag: Option<String>,
}

/// One client connection: forwards both ways until either side closes, a fault closes it, or
/// [`FaultProxy::cut_all`] is called.
async fn serve(client: TcpStream, shared: &Shared) {
    let mut cut = shared.cut.subscribe();
    cut.mark_unchanged();
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let client_write = Arc::new(AsyncMutex::new(client_write));
    let session = Arc::new(Mutex::new(Session::default()));
    let up = commands(client_read, server_write, &client_write, shared, &session);
    let down = responses(server_read, &client_write, shared, &session);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {}
    }
    let _ = client_write.lock().await.shutdown().await;
}

/// Waits while the proxy is stalled.
async fn unstalled(shared: &Shared) {
    let mut stalled = shared.stalled.subscribe();
    let _ = stalled.wait_for(|s| !*s).await;
}

/// Client to server: one physical line (and its literal) at a time.
async fn commands(
    client: OwnedReadHalf,
    mut server: OwnedWriteHalf,
    client_write: &AsyncMutex<OwnedWriteHalf>,
    shared: &Shared,
    session: &Mutex<Session>,
) {
    let mut reader = Reader::new(client);
    let mut continues = false;
    loop {
        let Ok(Some(line)) = reader.line().await else {
            return;
        };
        if !continues {
            if let Some(start) = xoauth2::starts(&line, shared) {
                let answered =
                    xoauth2::answer(start, &mut reader, &mut server, client_write, shared);
                if answered.await.is_err() {
                    return;
                }
                continue;
            }
            if let Some(reply) = intercept(&line, shared, session).await {
                let mut out = client_write.lock().await;
                let _ = out.write_all(reply.text.as_bytes()).await;
                if reply.close {
                    return;
                }
                continue;
            }
        }
        unstalled(shared).await;
        if server.write_all(&line).await.is_err() {
            return;
        }
        let literal = frame::literal_announced(&line);
        if let Some(literal) = literal {
            let Ok(bytes) = reader.literal(literal.len).await else {
                return;
            };
            unstalled(shared).await;
            if server.write_all(&bytes).await.is_err() {
                return;
            }
        }
        continues = literal.is_some();
    }
}

/// What the proxy answers in the server's place.
struct Reply {
    text: String,
    close: bool,
}

/// Logs the command starting with `line` and decides whether a fault answers it instead of
/// the server. Held commands wait here.
async fn intercept(line: &[u8], shared: &Shared, session: &Mutex<Session>) -> Option<Reply> {
    let (tag, command) = frame::split_command(line);
    {
        let mut state = lock(session);
        if state.sasl_tag.is_some() {
            lock(&shared.log).push("<sasl data>".to_owned());
            return None;
        }
        if state.idling {
            state.idling = false;
            lock(&shared.log).push(tag);
            return None;
        }
        let verb = command.split(' ').next().unwrap_or_default();
        if verb.eq_ignore_ascii_case("AUTHENTICATE") {
            state.sasl_tag = Some(tag.clone());
        }
        state.idling = verb.eq_ignore_ascii_case("IDLE");
        if state.idling {
            state.idle_tag = Some(tag.clone());
        }
        if verb.eq_ignore_ascii_case("SELECT") || verb.eq_ignore_ascii_case("EXAMINE") {
            state.select_tag = Some(tag.clone());
        }
    }
    lock(&shared.log).push(frame::masked(&command));
    let action = take_fault(&command, shared)?;
    match action {
        Action::Reply { line, close } => {
            let mut text = format!("{tag} {line}\r\n");
            if close && line.starts_with("BAD User is authenticated") {
                text.push_str(EXCHANGE_BYE);
                text.push_str("\r\n");
            }
            Some(Reply { text, close })
        }
        Action::Bye(line) => Some(Reply {
            text: format!("{line}\r\n"),
            close: true,
        }),
        Action::Hold(hold) => {
            hold.held.send_replace(true);
            let mut released = hold.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
            None
        }
    }
}

/// The fault armed for this command, consuming one-shot faults.
fn take_fault(command: &str, shared: &Shared) -> Option<Action> {
    let mut faults = lock(&shared.faults);
    let verb = command.split(' ').next().unwrap_or_default();
    if verb.eq_ignore_ascii_case("LOGIN") && faults.refuse_logins > 0 {
        faults.refuse_logins -= 1;
        let line = EXCHANGE_LOGIN_FAILED.to_owned();
        return Some(Action::Reply { line, close: false });
    }
    if verb.eq_ignore_ascii_case("IDLE") && faults.bye_on_idle {
        faults.bye_on_idle = false;
        return Some(Action::Bye(EXCHANGE_BYE.to_owned()));
    }
    let index = faults
        .rules
        .iter()
        .position(|rule| rule.pattern.is_match(command))?;
    Some(faults.rules.remove(index).action)
}

/// Server to client: whole responses, rewritten or dropped as the faults say.
async fn responses(
    server: OwnedReadHalf,
    client: &AsyncMutex<OwnedWriteHalf>,
    shared: &Shared,
    session: &Mutex<Session>,
) {
    let mut reader = Reader::new(server);
    loop {
        let Ok(Some(response)) = reader.response().await else {
            return;
        };
        note_completion(&response, session);
        if silenced(&response, shared, session) {
            continue;
        }
        let Some(response) = rewrite(response, shared) else {
            continue;
        };
        unstalled(shared).await;
        if client.lock().await.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// Whether [`FaultProxy::mute_news`] swallows this response.
fn silenced(response: &[u8], shared: &Shared, session: &Mutex<Session>) -> bool {
    if !lock(&shared.faults).mute_news || !response.starts_with(b"* ") {
        return false;
    }
    let state = lock(session);
    if state.idle_tag.is_some() {
        return !response.starts_with(b"* BYE");
    }
    let text = String::from_utf8_lossy(response);
    let words: Vec<&str> = text.split_whitespace().collect();
    let news = words.len() == 3
        && words[1].bytes().all(|b| b.is_ascii_digit())
        && (words[2].eq_ignore_ascii_case("EXISTS") || words[2].eq_ignore_ascii_case("RECENT"));
    news && state.select_tag.is_none()
}

/// Ends a SASL exchange when the server answers its AUTHENTICATE, and an IDLE when the
/// server answers its DONE.
fn note_completion(response: &[u8], session: &Mutex<Session>) {
    let mut state = lock(session);
    let answers = |tag: &Option<String>| {
        tag.as_ref()
            .is_some_and(|tag| response.starts_with(format!("{tag} ").as_bytes()))
    };
    if answers(&state.sasl_tag) {
        state.sasl_tag = None;
    }
    if answers(&state.idle_tag) {
        state.idle_tag = None;
    }
    if answers(&state.select_tag) {
        state.select_tag = None;
    }
}

/// Applies capability stripping and per-UID FETCH faults to one response.
fn rewrite(response: Vec<u8>, shared: &Shared) -> Option<Vec<u8>> {
    let faults = lock(&shared.faults);
    let first_end = response
        .iter()
        .position(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let first = String::from_utf8_lossy(&response[..first_end]).into_owned();
    if let Some((seq, uid)) = frame::body_fetch(&first) {
        if faults.no_data_uids.contains(&uid) {
            return None;
        }
        if faults.poison_uids.contains(&uid) {
            return Some(format!("* {seq} FETCH (UID {uid} RFC822.SIZE 12x4)\r\n").into_bytes());
        }
    }
    if !faults.strip.is_empty() && first_end == response.len() {
        return Some(frame::strip_capabilities(&first, &faults.strip).into_bytes());
    }
    Some(response)
}
