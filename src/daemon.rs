//! `postroom run`: supervise one worker per mailbox, tell systemd how it goes, reload on SIGHUP
//! and stop cleanly on SIGTERM.
//!
//! Start-up is a sequence of labelled steps (signals, store, HTTP listener, control socket,
//! workers, escalations); a failure before the workers start is fatal and says which step
//! failed. Once running, a mailbox that cannot connect does not stop the others: its worker
//! retries with back-off on its own. `READY=1` goes to systemd once every mailbox has
//! connected or failed clearly, and the main loop feeds the watchdog, so a wedged runtime is
//! restarted. SIGHUP re-reads the config: an invalid one is refused and the old one kept; a
//! valid one restarts only the workers whose mailbox or server settings changed, while the
//! others take the new rules, agents and calendars without reconnecting.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sd_notify::NotifyState;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::{Config, MailboxConfig, ServerConfig};
use crate::metrics::LiveMetrics;
use crate::store::Store;
use crate::worker::{Links, Worker};

/// How long in-flight work may take to finish after SIGTERM before the process exits anyway.
/// The unit's `TimeoutStopSec=90` leaves room beyond this for the store flush.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long readiness waits for every mailbox's first connection. Exchange Online logins
/// take seconds through its proxy; a mailbox still silent after this is reported as pending
/// rather than holding the whole service in "activating".
const READY_WAIT: Duration = Duration::from_secs(90);

/// A running mailbox worker and what it was started with.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The settings whose change needs a new connection.
    settings: (MailboxConfig, Option<ServerConfig>),
}

/// Everything `run` keeps alive.
struct Supervisor {
    path: PathBuf,
    config: Arc<Config>,
    store: Store,
    configs: watch::Sender<Arc<Config>>,
    stop: watch::Sender<bool>,
    live: LiveMetrics,
    ready_tx: mpsc::UnboundedSender<(String, Result<(), String>)>,
    workers: HashMap<String, Running>,
    escalator: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

/// `postroom rebuild`: ownership from the folders of every mailbox, one after another.
pub async fn rebuild(config: Config) -> Result<()> {
    let config = Arc::new(config);
    let store = Store::open(&config.daemon.state_dir)?;
    let (_stop_tx, stop_rx) = watch::channel(false);
    for mailbox in &config.mailboxes {
        let worker = new_worker(&config, mailbox, &store, stop_rx.clone())?;
        let name = mailbox.name.clone();
        let examined = worker
            .rebuild()
            .await
            .with_context(|| format!("mailbox {name}"))?;
        println!("mailbox {name}: {examined} messages read from its folders");
    }
    Ok(())
}

fn new_worker(
    config: &Arc<Config>,
    mailbox: &MailboxConfig,
    store: &Store,
    stop: watch::Receiver<bool>,
) -> Result<Worker> {
    warn_inline_password(mailbox);
    let password = mailbox_password(mailbox)?;
    let clock = Clock::System;
    Worker::new(
        config.clone(),
        mailbox.clone(),
        password,
        store.clone(),
        clock,
        stop,
    )
}

/// Runs the daemon until SIGINT or SIGTERM; `path` is re-read on SIGHUP.
pub async fn run(config: Config, path: &Path) -> Result<()> {
    // Handlers first: a SIGTERM that arrives during start-up must still stop us cleanly.
    let mut signals = Signals::install()?;
    warn_readable_config(path, &config);
    let config = Arc::new(config);
    let store = Store::open(&config.daemon.state_dir)?;
    let (stop, stop_rx) = watch::channel(false);
    let (configs, configs_rx) = watch::channel(config.clone());
    let live = LiveMetrics::default();
    let http =
        crate::http::start(config.clone(), store.clone(), live.clone(), stop_rx.clone()).await?;
    let control = tokio::spawn(crate::control::serve(configs_rx, store.clone(), stop_rx));
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    let mut supervisor = Supervisor {
        path: path.to_path_buf(),
        config,
        store,
        configs,
        stop,
        live,
        ready_tx,
        workers: HashMap::new(),
        escalator: None,
    };
    supervisor.start_all()?;
    info!(mailboxes = supervisor.workers.len(), "postroom running");
    supervisor.main_loop(&mut signals, ready_rx).await;
    supervisor.shutdown().await?;
    if let Ok(Err(err)) = control.await {
        warn!(error = %format!("{err:#}"), "control socket failed");
    }
    if let Some(Ok(Err(err))) = futures::future::OptionFuture::from(http).await {
        error!(error = %format!("{err:#}"), "the HTTP listener failed");
    }
    info!("stopped");
    Ok(())
}

impl Supervisor {
    fn start_all(&mut self) -> Result<()> {
        for mailbox in self.config.mailboxes.clone() {
            self.start_worker(&mailbox)?;
        }
        self.start_escalator()
    }

    fn start_worker(&mut self, mailbox: &MailboxConfig) -> Result<()> {
        let (stop, stop_rx) = watch::channel(false);
        let links = Links {
            config_updates: Some(self.configs.subscribe()),
            ready: Some(self.ready_tx.clone()),
            metrics: Some(self.live.mailbox(&mailbox.name)),
        };
        let worker = new_worker(&self.config, mailbox, &self.store, stop_rx)?.with_links(links);
        let settings = (
            mailbox.clone(),
            self.config.server(&mailbox.server).cloned(),
        );
        let task = tokio::spawn(worker.run());
        self.workers.insert(
            mailbox.name.clone(),
            Running {
                stop,
                task,
                settings,
            },
        );
        Ok(())
    }

    fn start_escalator(&mut self) -> Result<()> {
        let (stop, stop_rx) = watch::channel(false);
        let escalator = crate::escalate::Escalator::from_config(
            self.config.clone(),
            self.store.clone(),
            Clock::System,
        )
        .context("prepare escalations")?;
        match escalator {
            Some(escalator) => self.escalator = Some((stop, tokio::spawn(escalator.run(stop_rx)))),
            None => info!("no [smtp] section: SLA escalations are not mailed"),
        }
        Ok(())
    }

    /// Waits for signals, feeds the watchdog, and reports readiness once every mailbox spoke.
    async fn main_loop(
        &mut self,
        signals: &mut Signals,
        mut ready_rx: mpsc::UnboundedReceiver<(String, Result<(), String>)>,
    ) {
        let mut pending: Vec<String> = self.workers.keys().cloned().collect();
        let mut failed = Vec::new();
        let mut announced = false;
        let ready_deadline = tokio::time::sleep(READY_WAIT);
        tokio::pin!(ready_deadline);
        let watchdog = sd_notify::watchdog_enabled()
            .map(|d| d / 2)
            .unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval(watchdog);
        loop {
            tokio::select! {
                signal = signals.next() => match signal {
                    Signal::Stop => break,
                    Signal::Reload => self.reload(),
                },
                Some((name, outcome)) = ready_rx.recv() => {
                    // Workers restarted by a reload report too; only the first round counts.
                    if announced {
                        continue;
                    }
                    pending.retain(|m| *m != name);
                    if let Err(why) = outcome {
                        failed.push(format!("{name}: {why}"));
                    }
                    if pending.is_empty() {
                        notify_ready(&failed, &[]);
                        announced = true;
                    }
                }
                _ = &mut ready_deadline, if !announced => {
                    notify_ready(&failed, &pending);
                    announced = true;
                }
                _ = tick.tick() => {
                    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                }
            }
        }
    }

    /// SIGHUP: re-read the config; keep the old one if the new one has problems.
    fn reload(&mut self) {
        let _ = sd_notify::notify(&[NotifyState::Reloading, monotonic()]);
        match Config::load(&self.path) {
            Err(err) => error!("reload refused, the running config stays in force: {err}"),
            Ok(config) => {
                if let Err(err) = self.apply(Arc::new(config)) {
                    error!(error = %format!("{err:#}"), "reload failed part-way");
                }
            }
        }
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }

    fn apply(&mut self, config: Arc<Config>) -> Result<()> {
        let old = std::mem::replace(&mut self.config, config.clone());
        let (mut kept, mut restarted, mut added, mut removed) = (0, 0, 0, 0);
        for name in old.mailboxes.iter().map(|m| m.name.clone()) {
            if config.mailbox(&name).is_none() {
                self.stop_worker(&name);
                removed += 1;
            }
        }
        self.configs.send_replace(config.clone());
        for mailbox in config.mailboxes.clone() {
            let settings = (mailbox.clone(), config.server(&mailbox.server).cloned());
            match self.workers.get(&mailbox.name) {
                Some(running) if running.settings == settings => kept += 1,
                Some(_) => {
                    self.stop_worker(&mailbox.name);
                    self.start_worker(&mailbox)?;
                    restarted += 1;
                }
                None => {
                    self.start_worker(&mailbox)?;
                    added += 1;
                }
            }
        }
        if let Some((stop, _)) = self.escalator.take() {
            let _ = stop.send(true);
        }
        self.start_escalator()?;
        info!(kept, restarted, added, removed, "configuration reloaded");
        Ok(())
    }

    fn stop_worker(&mut self, name: &str) {
        if let Some(running) = self.workers.remove(name) {
            let _ = running.stop.send(true);
            info!(mailbox = name, "mailbox stopping for a reload");
        }
    }

    /// SIGTERM: stop taking new work, let in-flight batches finish, flush the store.
    async fn shutdown(self) -> Result<()> {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        info!("stopping: finishing in-flight messages");
        let _ = self.stop.send(true);
        let mut tasks = Vec::new();
        for (_, running) in self.workers {
            let _ = running.stop.send(true);
            tasks.push(running.task);
        }
        if let Some((stop, task)) = self.escalator {
            let _ = stop.send(true);
            tasks.push(task);
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            warn!(
                "some mailboxes did not stop within {}s",
                SHUTDOWN_GRACE.as_secs()
            );
        }
        self.store.flush()
    }
}

fn notify_ready(failed: &[String], pending: &[String]) {
    let status = match (failed.is_empty(), pending.is_empty()) {
        (true, true) => "every mailbox connected".to_string(),
        _ => {
            let mut parts = Vec::new();
            if !failed.is_empty() {
                parts.push(format!("failing: {}", failed.join("; ")));
            }
            if !pending.is_empty() {
                parts.push(format!("still connecting: {}", pending.join(", ")));
            }
            parts.join("; ")
        }
    };
    for line in failed {
        error!("mailbox could not start: {line}");
    }
    info!(status, "ready");
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// systemd wants the monotonic time with RELOADING=1 (Type=notify-reload); older ones ignore it.
fn monotonic() -> NotifyState<'static> {
    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Custom("MONOTONIC_USEC=0"))
}

/// The mailbox's password; XOAUTH2 mailboxes have none (their token comes from a command).
pub fn mailbox_password(mailbox: &MailboxConfig) -> Result<crate::secret::Secret> {
    if !mailbox.uses_password() {
        return Ok(crate::secret::Secret::new(""));
    }
    let source = mailbox
        .password_source()
        .context("no password configured")?;
    source
        .resolve()
        .with_context(|| format!("mailbox {}: cannot read its password", mailbox.name))
}

fn warn_inline_password(mailbox: &MailboxConfig) {
    if mailbox.password.is_some() {
        warn!(
            mailbox = %mailbox.name,
            "the password is written in the config file; prefer password_file or password_credential"
        );
    }
}

/// A config that holds a secret and is readable by everyone gets a warning at start.
fn warn_readable_config(path: &Path, config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    let inline = config.mailboxes.iter().any(|m| m.password.is_some())
        || config.smtp.as_ref().is_some_and(|s| s.password.is_some())
        || config.http.as_ref().is_some_and(|h| h.token.is_some());
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if inline && mode & 0o004 != 0 {
        warn!(
            path = %path.display(),
            "the config holds a password or token and is readable by every user; chmod o-r it"
        );
    }
}

/// What the main loop is told.
enum Signal {
    Stop,
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, installed before anything else starts.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("install the SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => { info!("SIGTERM received"); Signal::Stop }
            _ = self.int.recv() => { info!("SIGINT received"); Signal::Stop }
            _ = self.hup.recv() => {
                info!("SIGHUP received: reloading the configuration");
                Signal::Reload
            }
        }
    }
}
