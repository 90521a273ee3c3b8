//! The local control socket: how admin commands reach a running daemon.
//!
//! sled lets one process open a database, so while `postroom run` holds the store, commands such
//! as `postroom status` cannot open it themselves. The daemon listens on a Unix socket in the
//! state directory (mode 0600, so only the service user and root can use it); a command first
//! tries the socket and opens the store directly only when no daemon answers. One JSON request
//! per connection, one JSON reply.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::admin::Admin;
use crate::config::Config;
use crate::store::Store;

/// The longest request: `explain` carries a whole message, and a message is routed on its first
/// part anyway, so anything longer is refused rather than buffered.
const MAX_REQUEST: usize = 64 * 1024 * 1024;

/// How long a command waits for the daemon before giving up; moves open their own IMAP
/// connection, which on Exchange Online can take several seconds to log in.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a command asks the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// The `postroom status` report.
    Status,
    /// The history of a message's conversation.
    History {
        /// Its Message-ID.
        message_id: String,
    },
    /// Open conversations.
    Queue {
        /// Only this mailbox.
        mailbox: Option<String>,
        /// Only this agent's.
        agent: Option<String>,
    },
    /// Give a conversation to an agent.
    Assign {
        /// A message of it.
        message_id: String,
        /// The agent id.
        agent: String,
    },
    /// Route a message again.
    Release {
        /// Its Message-ID.
        message_id: String,
    },
    /// Close a conversation.
    Close {
        /// A message of it.
        message_id: String,
    },
    /// Explain the decision for a message, against the live state.
    Explain {
        /// The raw message.
        message: Vec<u8>,
        /// The mailbox it arrives in.
        mailbox: Option<String>,
        /// Decide as at this instant.
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Mark an agent away or back.
    Agent {
        /// The agent id.
        agent: String,
        /// True for away.
        away: bool,
    },
    /// The `postroom report` analytics.
    Report {
        /// What to cover.
        options: crate::report::Options,
        /// How to print it.
        format: crate::report::render::Format,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// True when the request was carried out.
    pub ok: bool,
    /// Text to print.
    pub output: String,
}

/// The socket's path under a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// Carries out one request against the store. Shared by the daemon and by commands run
/// without a daemon, so both give the same answer.
pub async fn handle(request: &Request, config: &Config, store: &Store) -> Reply {
    let admin = Admin {
        config,
        store,
        now: chrono::Utc::now(),
    };
    let result = match request {
        Request::Status => crate::status::render(config, store),
        Request::History { message_id } => admin.history(message_id),
        Request::Queue { mailbox, agent } => admin.queue(mailbox.as_deref(), agent.as_deref()),
        Request::Assign { message_id, agent } => admin.assign(message_id, agent).await,
        Request::Release { message_id } => admin.release(message_id).await,
        Request::Close { message_id } => admin.close(message_id).await,
        Request::Agent { agent, away } => admin.set_away(agent, *away),
        Request::Explain {
            message,
            mailbox,
            at,
        } => crate::explain::explain_at(message, mailbox.as_deref(), config, store, *at),
        Request::Report { options, format } => {
            crate::report::compute(config, store, options, crate::clock::Clock::System.now())
                .and_then(|report| crate::report::render::render(&report, *format))
        }
    };
    match result {
        Ok(output) => Reply { ok: true, output },
        Err(err) => Reply {
            ok: false,
            output: format!("{err:#}"),
        },
    }
}

/// Serves the socket until `stop` fires.
pub async fn serve(
    configs: watch::Receiver<Arc<Config>>,
    store: Store,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let path = socket_path(&configs.borrow().daemon.state_dir);
    // A socket left by a crashed daemon would make bind fail; the store's lock already proves
    // no other daemon uses this state directory.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Each request sees the config in force when it arrives, reloads included.
                    let (config, store) = (configs.borrow().clone(), store.clone());
                    tokio::spawn(async move {
                        if let Err(err) = answer(stream, &config, &store).await {
                            debug!(error = %format!("{err:#}"), "control request failed");
                        }
                    });
                }
                Err(err) => warn!(error = %err, "control socket accept failed"),
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn answer(stream: UnixStream, config: &Config, store: &Store) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    reader.read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(request) => handle(&request, config, store).await,
        Err(err) => Reply {
            ok: false,
            output: format!("bad request: {err}"),
        },
    };
    write
        .write_all(serde_json::to_string(&reply)?.as_bytes())
        .await?;
    write.write_all(b"\n").await?;
    Ok(())
}

/// Asks a running daemon. `Ok(None)` means no daemon listens, so the caller may open the
/// store itself.
pub fn ask(state_dir: &Path, request: &Request) -> Result<Option<Reply>> {
    use std::io::{BufRead, Write};
    let path = socket_path(state_dir);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(_) => return Ok(None),
    };
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.write_all(serde_json::to_string(request)?.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    if line.is_empty() {
        bail!("the daemon closed the control socket without answering");
    }
    Ok(Some(
        serde_json::from_str(&line).context("decode the daemon's reply")?,
    ))
}
