//! The binary under test, run as a child process with its output kept in files.
//!
//! Integration tests start `postroom` with [`Daemon::spawn`] (passing
//! `env!("CARGO_BIN_EXE_postroom")`), signal it as a service manager would, and read what it
//! printed. The output goes to files rather than pipes so that a chatty daemon never blocks on
//! a full pipe nobody reads, and so that it can be read at any moment, also after a crash.
//! When the test panics, dropping the [`Daemon`] prints that output, which is usually what
//! explains the failure.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;
use tokio::time::Instant;

use crate::process;

/// A running (or exited) child process.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    program: String,
    /// Set once the child has been reaped; its pid may then belong to someone else.
    exit_status: Option<ExitStatus>,
    dir: TempDir,
}

impl Daemon {
    /// Starts `binary` with `args` and, on top of the inherited environment, `env`.
    /// stdin is empty; stdout and stderr go to files read by [`Daemon::output`].
    pub fn spawn<A, K, V>(
        binary: impl AsRef<Path>,
        args: impl IntoIterator<Item = A>,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Daemon>
    where
        A: AsRef<OsStr>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let binary = binary.as_ref();
        let program = binary
            .file_name()
            .unwrap_or(binary.as_os_str())
            .to_string_lossy();
        let dir = tempfile::Builder::new()
            .prefix("postroom-daemon-")
            .tempdir()
            .context("cannot create a directory for the daemon's output")?;
        let stdout = fs::File::create(dir.path().join("stdout")).context("cannot create stdout")?;
        let stderr = fs::File::create(dir.path().join("stderr")).context("cannot create stderr")?;
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // SIGKILL on our death: there is nobody left to wait for a graceful stop.
        let child = process::spawn_tied(cmd, libc::SIGKILL)?;
        Ok(Daemon {
            child,
            program: program.into_owned(),
            exit_status: None,
            dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.dir.path().join("stdout"))
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.path().join("stderr"))
    }

    /// stdout and stderr so far, each under a heading.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Asks the process to stop, as a service manager would.
    pub fn sigterm(&mut self) -> Result<()> {
        self.send(libc::SIGTERM, "SIGTERM")
    }

    /// Kills the process without letting it clean up, as a crash or an OOM kill would.
    pub fn sigkill(&mut self) -> Result<()> {
        self.send(libc::SIGKILL, "SIGKILL")
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit_status.is_none() {
            self.exit_status = self.child.try_wait().context("cannot poll the daemon")?;
        }
        Ok(self.exit_status)
    }

    /// Waits up to `timeout` for the process to exit and returns its status; the error on
    /// time-out includes its output. Polls, so it does not block the async runtime.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} (pid {}) still running after {timeout:?}\n{}",
                    self.program,
                    self.pid(),
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The directory holding the output files.
    pub fn output_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn send(&mut self, signal: libc::c_int, name: &str) -> Result<()> {
        // Once reaped, the pid may have been reused by an unrelated process.
        if let Some(status) = self.try_exit_status()? {
            bail!(
                "cannot send {name} to {}: it already exited ({status})",
                self.program
            );
        }
        process::signal(self.pid(), signal).with_context(|| {
            format!(
                "cannot send {name} to {} (pid {})",
                self.program,
                self.pid()
            )
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} (pid {}) output:\n{}",
                self.program,
                self.pid(),
                self.output()
            );
        }
        if matches!(self.try_exit_status(), Ok(None)) {
            let _ = process::signal_group(self.pid(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
