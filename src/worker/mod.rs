//! One task per shared mailbox: connect, catch up, IDLE, and apply decisions.
//!
//! Each pass over new mail runs in this order, per batch: fetch with `BODY.PEEK`, parse, decide,
//! record every decision in the store, make the store durable, then move the messages, then
//! record where they landed. A crash at any point leaves either nothing recorded (the message is
//! still in the inbox and is simply handled on start) or a `Pending` record whose decision is
//! re-applied without deciding again. Connection trouble ends the session; the run loop waits
//! with capped, jittered back-off (longer when Exchange says it is throttling) and starts over.
//!
//! A session starts lean, so hundreds of mailboxes are all watching within seconds: log in
//! (a few at a time), list and create folders, select the inbox, catch up, IDLE. The folder
//! poll and the full reconcile come later, at a random point of the first poll interval, and
//! then on their schedules; where the server names the UIDs of postroom's own moves
//! (`COPYUID`), the poll skips them (see `sync_points.rs`).

mod fetching;
mod filing;
mod sync_points;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::calendar::Calendar;
use crate::clock::Clock;
use crate::config::{Config, MailboxConfig, ServerConfig};
use crate::imap::{auth, Connection, FolderInfo, IdleEnd};
use crate::intake::{Intake, Placement};
use crate::message::{self, ParseFailure};
use crate::outlook::{self, Watcher};
use crate::secret::Secret;
use crate::store::{Event, EventKind, MessageState, Quarantined, Store};

/// How often a message that came back without data is retried before it is quarantined.
/// Exchange sometimes returns fresh mail empty for a short while, so one failure is not enough.
const FETCH_ATTEMPTS: u32 = 3;

/// How long a message that came back without data waits before it is fetched again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// The first wait after a failed session, doubled on each further failure.
const BACKOFF_START: Duration = Duration::from_secs(1);

/// The longest wait between reconnects, so a long outage is noticed within minutes of ending.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// A session that lasted this long counts as healthy and resets the back-off.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

/// How many mailboxes of this process may be connecting and logging in at the same time.
/// Starting hundreds at once makes the server fork and authenticate them all together, and
/// a server under that burst answers every one of them late; Exchange also throttles a host
/// that opens many sessions at once. Sixteen is a judgement, not a measured optimum: enough
/// to keep a server busy, few enough that logins do not pile up (see BENCHMARKS.md, scale).
const STARTING_AT_ONCE: usize = 16;

/// Everything one mailbox task needs.
pub struct Worker {
    config: Arc<Config>,
    mailbox: MailboxConfig,
    server: ServerConfig,
    password: Secret,
    store: Store,
    clock: Clock,
    stop: watch::Receiver<bool>,
    /// UIDs whose batch fetch failed: fetched one at a time so one bad message cannot stall the
    /// others (field case BUG-07).
    suspects: HashSet<u32>,
    /// The mailbox's business calendar (its own, or its team's), rebuilt on reload.
    calendar: Option<Calendar>,
    /// Config updates in, readiness and metrics out.
    links: Links,
    /// `\Answered` flags already looked at (see [`crate::answered`]).
    answered: crate::answered::AnsweredSeen,
    /// When the server last announced news during IDLE, until the next IDLE: moves made in
    /// between count towards postroom's own latency
    /// ([`crate::metrics::MailboxMetrics::observe_handling`]).
    announced: Option<Instant>,
    /// The folders' state at the last full reconcile of this session; unchanged folders are
    /// not listed again.
    reconciled: Option<outlook::Snapshot>,
}

/// How a worker talks to the daemon around it. All optional: `rebuild` and tests need none.
#[derive(Default)]
pub struct Links {
    /// New configs after a reload that kept this mailbox's connection settings: rules,
    /// agents, teams and calendars take effect without reconnecting.
    pub config_updates: Option<watch::Receiver<Arc<Config>>>,
    /// Told once whether the first session connected (`Ok`) or failed (`Err`, with why), so
    /// the daemon can tell systemd it is ready.
    pub ready: Option<tokio::sync::mpsc::UnboundedSender<(String, Result<(), String>)>>,
    /// Live counters for `/metrics`.
    pub metrics: Option<crate::metrics::MailboxMetrics>,
}

impl Worker {
    /// Prepares a worker; nothing connects until [`Worker::run`].
    pub fn new(
        config: Arc<Config>,
        mailbox: MailboxConfig,
        password: Secret,
        store: Store,
        clock: Clock,
        stop: watch::Receiver<bool>,
    ) -> Result<Worker> {
        let server = config
            .server(&mailbox.server)
            .cloned()
            .with_context(|| format!("mailbox {} names an unknown server", mailbox.name))?;
        let calendar = crate::calendar::for_mailbox(&config, &mailbox)?;
        Ok(Worker {
            config,
            mailbox,
            server,
            password,
            store,
            clock,
            stop,
            suspects: HashSet::new(),
            calendar,
            links: Links::default(),
            answered: Default::default(),
            announced: None,
            reconciled: None,
        })
    }

    /// Connects the worker to the daemon around it.
    pub fn with_links(mut self, links: Links) -> Worker {
        self.links = links;
        self
    }

    /// Time from each message's arrival on the server to the end of its handling.
    fn observe_intake(&self, fetched: &[crate::imap::Fetched]) {
        let Some(metrics) = &self.links.metrics else {
            return;
        };
        let now = self.clock.now();
        for item in fetched {
            if let Some(lag) = item.internal_date.and_then(|at| (now - at).to_std().ok()) {
                metrics.observe_intake(lag);
            }
        }
    }

    fn set_idle(&self, idle: bool) {
        if let Some(metrics) = &self.links.metrics {
            metrics.set_idle(idle);
        }
    }

    fn report_ready(&mut self, outcome: Result<(), String>) {
        if let Some(ready) = self.links.ready.take() {
            let _ = ready.send((self.mailbox.name.clone(), outcome));
        }
    }

    /// Takes a config published by a reload, if there is one; re-applies what depends on it.
    async fn refresh_config(&mut self, conn: &mut Connection) -> Result<()> {
        let Some(updates) = self.links.config_updates.as_mut() else {
            return Ok(());
        };
        if !updates.has_changed().unwrap_or(false) {
            return Ok(());
        }
        let config = updates.borrow_and_update().clone();
        if let Some(mailbox) = config.mailbox(&self.mailbox.name).cloned() {
            self.calendar = crate::calendar::for_mailbox(&config, &mailbox)?;
            self.mailbox = mailbox;
        }
        self.config = config;
        let existing = self.follow_renames(conn).await?;
        self.check_sent_folder(conn, &existing);
        conn.ensure_listed(&existing, &self.folders()).await?;
        conn.select(&self.mailbox.inbox).await?;
        info!(mailbox = %self.mailbox.name, "configuration reloaded");
        Ok(())
    }

    /// The name of the mailbox this worker serves.
    pub fn mailbox_name(&self) -> &str {
        &self.mailbox.name
    }

    /// Runs sessions until asked to stop, backing off between failures.
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_START;
        let mut sessions = 0u64;
        while !*self.stop.borrow() {
            let started = Instant::now();
            if sessions > 0 {
                if let Some(metrics) = &self.links.metrics {
                    metrics.record_reconnect();
                }
            }
            sessions += 1;
            let result = self.contained_session().await;
            if let Err(err) = &result {
                self.report_ready(Err(format!("{err:#}")));
            }
            if *self.stop.borrow() {
                break;
            }
            if started.elapsed() >= HEALTHY_SESSION {
                backoff = BACKOFF_START;
            }
            let wait = match &result {
                Ok(()) => BACKOFF_START,
                // A token about to expire, or expired: renew and reconnect at once. This is
                // planned, not trouble, so it is neither a warning nor a reason to back off.
                Err(err) if auth::is_renewal_due(err) || auth::is_token_expired(err) => {
                    info!(mailbox = %self.mailbox.name, "renewing the OAuth2 token and reconnecting");
                    Duration::ZERO
                }
                Err(err) => {
                    self.note_error(err);
                    let hinted = throttle_hint(err);
                    let wait = jitter(hinted.unwrap_or(backoff).max(backoff));
                    warn!(mailbox = %self.mailbox.name, error = %format!("{err:#}"), retry_in_secs = wait.as_secs(), "mailbox session failed");
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                    wait
                }
            };
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        info!(mailbox = %self.mailbox.name, "mailbox stopped");
    }

    fn note_error(&self, err: &anyhow::Error) {
        if let Ok(mut state) = self.store.sync_state(&self.mailbox.name) {
            state.last_error = Some(format!("{err:#}"));
            let _ = self.store.set_sync_state(&self.mailbox.name, &state);
        }
    }

    /// A session whose panic costs only that session: imap-proto has panicked on odd bytes in
    /// server text, and a panic must not end the mailbox's task for good. The store is only
    /// ever changed in whole transactions, so nothing is left half-written.
    async fn contained_session(&mut self) -> Result<()> {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(self.session())
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into());
                anyhow::bail!("the session panicked ({what}); reconnecting")
            }
        }
    }

    /// One connection's life: set up, catch up, then IDLE until stopped or broken.
    async fn session(&mut self) -> Result<()> {
        self.reconciled = None;
        // A place in the account's connection budget first: waiting for one (an account with
        // more mailboxes than its server allows connections) must not hold one of the few
        // starting places, which every other account's mailboxes need to start or reconnect.
        let permit = crate::imap::budget::acquire(&self.server, &self.mailbox.login).await?;
        let starting = starting_permit().await;
        let mut conn =
            Connection::open_with_permit(&self.server, &self.mailbox, &self.password, permit)
                .await?;
        let existing = self.follow_renames(&mut conn).await?;
        self.check_sent_folder(&conn, &existing);
        let created = conn.ensure_listed(&existing, &self.folders()).await?;
        for folder in &created {
            info!(mailbox = %self.mailbox.name, folder, "created folder");
        }
        let info = conn.select(&self.mailbox.inbox).await?;
        drop(starting);
        let marked = if info.keywords {
            "folder and keyword"
        } else {
            "folder only"
        };
        info!(
            mailbox = %self.mailbox.name,
            moves = conn.caps.moves, idle = conn.caps.idle, keywords = info.keywords,
            "connected; ownership marked by {marked}"
        );
        self.check_uid_validity(&info)?;
        self.start_empty_folders(&mut conn).await?;
        self.catch_up(&mut conn, &info, 1).await?;
        // The folder poll and the reconcile run at the first wake from IDLE, not here: the
        // mailbox watches its inbox sooner, and many mailboxes do not all poll at once.
        self.watch(conn, info).await
    }

    /// The live phase: IDLE (or poll), then fetch everything above the last UID seen; poll
    /// the managed folders and reconcile on their schedules.
    async fn watch(&mut self, mut conn: Connection, info: FolderInfo) -> Result<()> {
        let folder_poll = Duration::from_secs(self.mailbox.folder_poll_secs);
        let reconcile_every = Duration::from_secs(self.mailbox.reconcile_secs);
        let interval = self
            .server
            .idle_interval()
            .min(Duration::from_secs(self.mailbox.poll_secs))
            .min(folder_poll);
        // The first round comes at a random point of the first poll interval, so mailboxes
        // started together spread their polls and reconciles over it.
        let first = Instant::now() + first_round_delay(folder_poll);
        let (mut next_poll, mut next_reconcile) = (first, first);
        let mut announced = false;
        let mut must_list = true;
        loop {
            self.refresh_config(&mut conn).await?;
            // Anything that arrived between the last fetch and now is caught here, before
            // IDLE, so no message waits for the next one to wake us (field case BUG-04). The
            // inbox is listed unless the last folder poll saw that nothing is new there and
            // no command since brought news of it.
            let news = conn.take_news()?;
            if must_list || news {
                self.catch_up_from_last(&mut conn, &info).await?;
            }
            // A conversation that changed owner (a drag, a merge, an absent owner's follow-up)
            // gathers its messages in the new owner's folder.
            self.watcher().realign(&mut conn).await?;
            self.settle(&mut conn, &info).await?;
            if !announced {
                self.report_ready(Ok(()));
                let how = if conn.caps.idle { "IDLE" } else { "polling" };
                info!(mailbox = %self.mailbox.name, "caught up; watching for new mail ({how})");
                announced = true;
            }

            let until_poll = next_poll.saturating_duration_since(Instant::now());
            let mut news = true;
            if !until_poll.is_zero() {
                let end;
                (conn, end) = self.wait_for_news(conn, interval.min(until_poll)).await?;
                if end == IdleEnd::Interrupted || *self.stop.borrow() {
                    conn.logout().await;
                    return Ok(());
                }
                // A timed-out IDLE still brought news if the server announced mail while
                // DONE was being answered.
                news = end != IdleEnd::Timeout || !conn.caps.idle || conn.take_news()?;
            }

            // Without fresh word from the server that the inbox holds nothing new, the next
            // turn lists it: this is also the safety net for a server that stops pushing.
            must_list = true;
            if Instant::now() >= next_poll {
                must_list = !self.folder_round(&mut conn, &info, news).await?;
                next_poll = Instant::now() + folder_poll;
            }
            if Instant::now() >= next_reconcile {
                let mut last = self.reconciled.take();
                self.watcher().reconcile(&mut conn, &mut last).await?;
                self.reconciled = last;
                next_reconcile = Instant::now() + reconcile_every;
            }
        }
    }

    /// Handles the inbox from the UID after the last one handled.
    async fn catch_up_from_last(&mut self, conn: &mut Connection, info: &FolderInfo) -> Result<()> {
        let from = self
            .store
            .sync_state(&self.mailbox.name)?
            .last_uid
            .saturating_add(1);
        self.catch_up(conn, info, from).await
    }

    /// Lists the inbox again for as long as commands bring news of it (an EXISTS in some
    /// command's answer, a folder selected), so that nothing the server announced outside
    /// IDLE waits for the next round. Each listing handles everything up to its answer, so
    /// this ends as soon as mail stops arriving during it.
    async fn settle(&mut self, conn: &mut Connection, info: &FolderInfo) -> Result<()> {
        while conn.take_news()? {
            self.catch_up_from_last(conn, info).await?;
        }
        Ok(())
    }

    /// IDLE (or sleep, then NOOP, on a server without IDLE) for at most `limit`.
    async fn wait_for_news(
        &mut self,
        mut conn: Connection,
        limit: Duration,
    ) -> Result<(Connection, IdleEnd)> {
        if !conn.caps.idle {
            let end = self.poll_wait(limit).await;
            if end != IdleEnd::Interrupted {
                conn.noop().await?;
            }
            return Ok((conn, end));
        }
        self.set_idle(true);
        self.announced = None;
        let idled = conn.idle(limit, &self.stop).await;
        self.set_idle(false);
        let (conn, end) = idled?;
        if end == IdleEnd::NewData {
            self.announced = conn.announced_at();
        }
        Ok((conn, end))
    }

    /// One folder poll: what people dragged or sent, then waiting work given out. Returns
    /// true when the poll's own LIST-STATUS showed the inbox holds nothing past the last UID
    /// handled (and no retry is due), so the inbox need not be listed before the next IDLE.
    async fn folder_round(
        &mut self,
        conn: &mut Connection,
        info: &FolderInfo,
        news: bool,
    ) -> Result<bool> {
        // New inbox mail first: a reply found in the sent folder, or a message dragged into a
        // folder, can only be matched to a conversation that already exists. After an IDLE
        // that ended with no news there is none to take first; the catch-up before the next
        // IDLE still looks unless this round proves there is nothing, so unannounced mail
        // waits no longer than this round.
        if news {
            self.catch_up_from_last(conn, info).await?;
        }
        let polled = self.watcher().poll(conn).await?;
        self.check_answered(conn).await?;
        self.give_out_waiting(conn, info).await?;
        let clear = self.inbox_clear(info, polled.inbox.as_ref())?;
        if clear {
            // The server answered: that is contact, as a listing would have recorded.
            let mut state = self.store.sync_state(&self.mailbox.name)?;
            state.last_contact = Some(self.clock.now());
            self.store.set_sync_state(&self.mailbox.name, &state)?;
        }
        Ok(clear)
    }

    /// Whether the inbox's state, as the server just reported it, shows no message past the
    /// last UID handled: UIDs only grow, so a new message (or one dragged back) would have
    /// moved UIDNEXT past it. A UIDVALIDITY change or a retry that is due needs the listing.
    fn inbox_clear(&self, info: &FolderInfo, inbox: Option<&FolderInfo>) -> Result<bool> {
        let Some(inbox) = inbox else {
            return Ok(false);
        };
        let next = self
            .store
            .sync_state(&self.mailbox.name)?
            .last_uid
            .saturating_add(1);
        let unchanged = inbox.uid_validity == info.uid_validity;
        let nothing_new = inbox.uid_next.is_some_and(|uid_next| uid_next <= next);
        Ok(unchanged && nothing_new && self.due_retries(info, next)?.is_empty())
    }

    async fn poll_wait(&mut self, interval: Duration) -> IdleEnd {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(interval) => IdleEnd::Timeout,
            _ = stop.wait_for(|s| *s) => IdleEnd::Interrupted,
        }
    }

    /// A `sent_folder` that does not exist is a typo or a folder Exchange names differently
    /// (`Sent Items`); creating it would hide the mistake, since nothing is ever saved there. It
    /// is reported, with the folders that look like one, and not watched this session.
    fn check_sent_folder(&mut self, conn: &Connection, names: &[String]) {
        let Some(sent) = self.mailbox.sent_folder.clone() else {
            return;
        };
        if names.contains(&conn.wire_name(&sent)) {
            return;
        }
        let alike: Vec<String> = names
            .iter()
            .map(|n| {
                n.split('/')
                    .map(crate::imap::mutf7::decode)
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .filter(|n| {
                let lower = n.to_lowercase();
                lower.contains("sent") || lower.contains("gesendet") || lower.contains("envoy")
            })
            .collect();
        let hint = match alike.is_empty() {
            true => "no folder here looks like a sent folder".to_string(),
            false => format!("folders that look like one: {}", alike.join(", ")),
        };
        error!(mailbox = %self.mailbox.name, folder = %sent,
            "sent_folder does not exist in this mailbox, so replies cannot stop SLA clocks; \
             fix `sent_folder` and reload ({hint})");
        self.mailbox.sent_folder = None;
    }

    /// Folders this mailbox needs: one per agent of its team, Done, and the automated folder.
    /// The sent folder is the server's own and is never created.
    fn folders(&self) -> Vec<String> {
        let mut folders: Vec<String> = outlook::managed_folders(&self.mailbox, &self.config)
            .into_iter()
            .filter(|m| m.role != outlook::Role::Sent)
            .map(|m| m.folder)
            .collect();
        // Folders rules file into must exist before the first MOVE, or the move would fail.
        for rule in self.config.rules_for(&self.mailbox.name) {
            if let Some(folder) = rule.folder.as_ref().filter(|f| !folders.contains(f)) {
                folders.push(folder.clone());
            }
        }
        folders
    }

    /// An agent renamed in config gets its folder renamed on the server, contents intact, so
    /// Outlook shows the new name over the same work.
    /// Returns the wire names of every folder, as they are after the renames.
    async fn follow_renames(&self, conn: &mut Connection) -> Result<Vec<String>> {
        let mut existing = conn.folder_names().await?;
        for managed in outlook::managed_folders(&self.mailbox, &self.config) {
            let outlook::Role::Agent(agent) = &managed.role else {
                continue;
            };
            let previous = self.store.agent_folder(&self.mailbox.name, agent)?;
            if let Some(old) = previous.filter(|old| *old != managed.folder) {
                let old_there = existing.contains(&conn.wire_name(&old));
                let new_there = existing.contains(&conn.wire_name(&managed.folder));
                if old_there && !new_there {
                    conn.rename(&old, &managed.folder).await?;
                    // Children move with a renamed folder, so list again rather than patch.
                    existing = conn.folder_names().await?;
                    let records =
                        self.store
                            .rename_folder(&self.mailbox.name, &old, &managed.folder)?;
                    let (mailbox, to) = (&self.mailbox.name, &managed.folder);
                    info!(%mailbox, agent, from = %old, %to, records,
                          "agent renamed: folder renamed with its contents");
                } else if old_there {
                    warn!(mailbox = %self.mailbox.name, agent, old = %old, new = %managed.folder,
                          "agent renamed but both folders exist; leaving the old one for a person to empty");
                }
            }
            self.store
                .set_agent_folder(&self.mailbox.name, agent, &managed.folder)?;
        }
        Ok(existing)
    }

    /// Rebuilds the store's view of this mailbox from its folders alone (a lost disk, a new
    /// host): every message in an agent's folder is that agent's, every one in Done is closed.
    /// Nothing in the mailbox is moved. Returns how many messages were examined.
    pub async fn rebuild(&self) -> Result<usize> {
        let mut conn =
            Connection::open_mailbox(&self.server, &self.mailbox, &self.password).await?;
        let existing = self.follow_renames(&mut conn).await?;
        conn.ensure_listed(&existing, &self.folders()).await?;
        conn.select(&self.mailbox.inbox).await?;
        let examined = self.watcher().poll(&mut conn).await?.examined;
        self.store.flush()?;
        conn.logout().await;
        Ok(examined)
    }

    /// Replies seen only as Outlook's `\Answered` flag; borrows fields one by one so the
    /// seen-set can be updated while the watcher reads the rest.
    async fn check_answered(&mut self, conn: &mut Connection) -> Result<()> {
        let watcher = Watcher {
            mailbox: &self.mailbox,
            config: &self.config,
            store: &self.store,
            now: self.clock.now(),
        };
        watcher.answered(conn, &mut self.answered).await?;
        Ok(())
    }

    fn watcher(&self) -> Watcher<'_> {
        Watcher {
            mailbox: &self.mailbox,
            config: &self.config,
            store: &self.store,
            now: self.clock.now(),
        }
    }

    /// Records the inbox's UIDVALIDITY; a change only means UIDs are renumbered. Identities,
    /// not UIDs, say what was handled, so a full rescan finds the truth (field case BUG-02).
    fn check_uid_validity(&self, info: &FolderInfo) -> Result<()> {
        let mut state = self.store.sync_state(&self.mailbox.name)?;
        if state.uid_validity.is_some_and(|v| v != info.uid_validity) {
            warn!(mailbox = %self.mailbox.name, old = ?state.uid_validity, new = info.uid_validity,
                  "UIDVALIDITY changed; resynchronising by message identity");
            state.last_uid = 0;
        }
        state.uid_validity = Some(info.uid_validity);
        state.last_contact = Some(self.clock.now());
        state.last_error = None;
        self.store.set_sync_state(&self.mailbox.name, &state)
    }

    /// Handles every inbox message with UID >= `from`, in batches, oldest first.
    async fn catch_up(
        &mut self,
        conn: &mut Connection,
        info: &FolderInfo,
        from: u32,
    ) -> Result<()> {
        let mut uids = conn.uids_from(from).await?;
        uids.extend(self.due_retries(info, from)?);
        uids.sort_unstable();
        uids.dedup();
        let mut todo = Vec::with_capacity(uids.len());
        for uid in uids {
            if !self.given_up(info.uid_validity, uid)? {
                todo.push(uid);
            }
        }
        for chunk in todo.chunks(self.mailbox.fetch_batch as usize) {
            self.batch(conn, info, chunk).await?;
            if *self.stop.borrow() {
                break;
            }
        }
        let mut state = self.store.sync_state(&self.mailbox.name)?;
        state.last_contact = Some(self.clock.now());
        self.store.set_sync_state(&self.mailbox.name, &state)
    }

    /// One batch: fetch, decide and record all, make durable, then move.
    async fn batch(
        &mut self,
        conn: &mut Connection,
        info: &FolderInfo,
        uids: &[u32],
    ) -> Result<()> {
        let fetched = self.fetch(conn, info, uids).await?;
        let mut placements = Vec::new();
        let mut seen = HashSet::new();
        for item in &fetched {
            seen.insert(item.uid);
            match message::parse(&item.raw, item.size) {
                Ok(envelope) => {
                    self.store
                        .clear_quarantine(&self.mailbox.name, info.uid_validity, item.uid)?;
                    let intake = self.intake();
                    if let Some(p) = intake.place(&envelope, item.uid, item.internal_date)? {
                        placements.push(p);
                    }
                }
                Err(failure) => self.quarantine(info, item.uid, &failure)?,
            }
        }
        for uid in uids.iter().filter(|u| !seen.contains(u)) {
            self.quarantine(info, *uid, &ParseFailure::NoData)?;
        }
        self.store.flush()?;
        let moving = !placements.is_empty();
        let flags: HashMap<u32, Vec<String>> = fetched
            .iter()
            .filter_map(|f| Some((f.uid, f.flags.clone()?)))
            .collect();
        self.apply(conn, info, placements, &flags).await?;
        self.observe_intake(&fetched);
        if let (true, Some(at), Some(metrics)) = (moving, self.announced, &self.links.metrics) {
            metrics.observe_handling(at.elapsed());
        }
        let mut state = self.store.sync_state(&self.mailbox.name)?;
        state.last_uid = state.last_uid.max(uids.iter().copied().max().unwrap_or(0));
        self.store.set_sync_state(&self.mailbox.name, &state)
    }

    fn intake(&self) -> Intake<'_> {
        Intake {
            config: &self.config,
            mailbox: &self.mailbox,
            store: &self.store,
            calendar: self.calendar.as_ref(),
            now: self.clock.now(),
        }
    }

    /// Gives out waiting work, oldest first, once someone can take it (an agent is back, a
    /// conversation was closed and freed capacity).
    async fn give_out_waiting(&self, conn: &mut Connection, info: &FolderInfo) -> Result<()> {
        if self.store.waiting(&self.mailbox.name)?.is_empty() {
            return Ok(());
        }
        let listing = conn.message_ids().await?;
        let uid_of = |id: &str| {
            listing
                .iter()
                .find(|(_, m)| m.as_deref() == Some(id))
                .map(|(u, _)| *u)
        };
        let placements = self.intake().redecide_waiting(&uid_of)?;
        if !placements.is_empty() {
            self.store.flush()?;
            self.apply(conn, info, placements, &HashMap::new()).await?;
        }
        Ok(())
    }

    fn event(
        &self,
        kind: EventKind,
        identity: Option<String>,
        agent: Option<String>,
        detail: String,
    ) -> Event {
        Event {
            at: self.clock.now(),
            kind,
            mailbox: self.mailbox.name.clone(),
            conversation: None,
            identity,
            agent,
            detail,
        }
    }
}

/// The owner keywords of every agent who can own work in a mailbox.
pub fn owner_keywords(config: &Config, mailbox: &MailboxConfig) -> Vec<String> {
    config
        .mailbox_agents(mailbox)
        .into_iter()
        .map(|a| owner_keyword(&a.id))
        .collect()
}

/// The IMAP keyword naming an owner: an atom, so anything outside `[A-Za-z0-9_-]` becomes `_`.
pub fn owner_keyword(agent: &str) -> String {
    let atom: String = agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("postroom_owner_{atom}")
}

/// Exchange's throttling reply names how long to wait:
/// `Request is throttled. Suggested Backoff Time: 299961 milliseconds`.
fn throttle_hint(err: &anyhow::Error) -> Option<Duration> {
    let text = format!("{err:#}");
    let rest = text.split("Suggested Backoff Time:").nth(1)?;
    let millis: u64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_millis(millis))
}

/// A place among the sessions being set up ([`STARTING_AT_ONCE`]); held from connecting
/// until the inbox is selected.
async fn starting_permit() -> Option<tokio::sync::SemaphorePermit<'static>> {
    static STARTING: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let starting = STARTING.get_or_init(|| tokio::sync::Semaphore::new(STARTING_AT_ONCE));
    // The semaphore is never closed, so acquiring only fails if that changes; then no limit.
    starting.acquire().await.ok()
}

/// When a new session's first folder poll and reconcile come: at a random point within the
/// first poll interval, so mailboxes that start together do not poll in step for ever after.
fn first_round_delay(folder_poll: Duration) -> Duration {
    let millis = folder_poll.as_millis().min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(fastrand::u64(0..=millis))
}

/// Adds up to 25% random jitter so many mailboxes behind one server do not reconnect in step.
fn jitter(wait: Duration) -> Duration {
    let extra = wait.as_millis() as u64 / 4;
    wait + Duration::from_millis(fastrand::u64(0..=extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_throttle_hint_is_read() {
        let err = anyhow::anyhow!(
            "BAD Request is throttled. Suggested Backoff Time: 120000 milliseconds"
        );
        assert_eq!(throttle_hint(&err), Some(Duration::from_secs(120)));
        assert_eq!(throttle_hint(&anyhow::anyhow!("connection reset")), None);
    }

    #[test]
    fn owner_keywords_are_atoms() {
        assert_eq!(owner_keyword("alice"), "postroom_owner_alice");
        assert_eq!(owner_keyword("zoë (x)"), "postroom_owner_zo___x_");
    }
}
