//! `postroom run`: start a worker per mailbox and stop them cleanly on a signal.
//!
//! Start-up is a short sequence of labelled steps (config, secrets, store, workers); any failure
//! before the workers start is fatal and says which step failed. Once running, a mailbox that
//! cannot connect does not stop the others: its worker retries with back-off on its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;
use crate::worker::Worker;

/// How long in-flight work may take to finish after SIGTERM before the process exits anyway.
/// systemd's default stop time-out is 90 s; this leaves room for the store flush.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Creates one worker per mailbox, reading each password; fails naming the mailbox.
fn workers(
    config: &Arc<Config>,
    store: &Store,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<Worker>> {
    let mut workers = Vec::new();
    for mailbox in &config.mailboxes {
        warn_inline_password(mailbox);
        let source = mailbox
            .password_source()
            .context("no password configured")?;
        let password = source
            .resolve()
            .with_context(|| format!("mailbox {}: cannot read its password", mailbox.name))?;
        let clock = Clock::System;
        let worker = Worker::new(
            config.clone(),
            mailbox.clone(),
            password,
            store.clone(),
            clock,
            stop.clone(),
        )?;
        workers.push(worker);
    }
    Ok(workers)
}

/// `postroom rebuild`: ownership from the folders of every mailbox, one after another.
pub async fn rebuild(config: Config) -> Result<()> {
    let config = Arc::new(config);
    let store = Store::open(&config.daemon.state_dir)?;
    let (_stop_tx, stop_rx) = watch::channel(false);
    for worker in workers(&config, &store, &stop_rx)? {
        let name = worker.mailbox_name().to_string();
        let examined = worker
            .rebuild()
            .await
            .with_context(|| format!("mailbox {name}"))?;
        println!("mailbox {name}: {examined} messages read from its folders");
    }
    Ok(())
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    // Handlers first: a SIGTERM that arrives during start-up must still stop us cleanly.
    let signals = Signals::install()?;
    let config = Arc::new(config);
    let store = Store::open(&config.daemon.state_dir)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // TODO: hand `live.mailbox(name)` to each worker once worker.rs takes a MailboxMetrics.
    let live = crate::metrics::LiveMetrics::default();
    let http = crate::http::start(config.clone(), store.clone(), live, stop_rx.clone()).await?;
    let mut tasks = Vec::new();
    for worker in workers(&config, &store, &stop_rx)? {
        tasks.push(tokio::spawn(worker.run()));
    }
    match crate::escalate::Escalator::from_config(config.clone(), store.clone(), Clock::System)
        .context("prepare escalations")?
    {
        Some(escalator) => tasks.push(tokio::spawn(escalator.run(stop_rx.clone()))),
        None => info!("no [smtp] section: SLA escalations are not mailed"),
    }
    let control = tokio::spawn(crate::control::serve(
        config.clone(),
        store.clone(),
        stop_rx.clone(),
    ));
    info!(mailboxes = tasks.len(), "postroom running");
    signals.wait().await;
    info!("stopping: finishing in-flight messages");
    let _ = stop_tx.send(true);
    let all = futures::future::join_all(tasks);
    if let Ok(Err(err)) = control.await {
        warn!(error = %format!("{err:#}"), "control socket failed");
    }
    if let Some(Ok(Err(err))) = futures::future::OptionFuture::from(http).await {
        error!(error = %format!("{err:#}"), "the HTTP listener failed");
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        warn!(
            "some mailboxes did not stop within {}s",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    store.flush()?;
    info!("stopped");
    Ok(())
}

fn warn_inline_password(mailbox: &crate::config::MailboxConfig) {
    if mailbox.password.is_some() {
        warn!(
            mailbox = %mailbox.name,
            "the password is written in the config file; prefer password_file or password_credential"
        );
    }
}

/// SIGTERM and SIGINT, installed before anything else starts.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install the SIGINT handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => info!("SIGTERM received"),
            _ = self.int.recv() => info!("SIGINT received"),
        }
    }
}
