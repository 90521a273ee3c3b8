//! A real SMTP server on 127.0.0.1 for escalation tests: Debian's `python3-aiosmtpd`.
//!
//! [`SmtpListener::start`] writes a small handler script into a temporary directory and runs it
//! with `/usr/bin/python3` (the system interpreter, which has the Debian package; a `python3`
//! found on `PATH` may be a pyenv shim without it). The server binds port 0 and reports the port
//! it got through a file, so two tests never race for a port. Each accepted message is saved as
//! one file, with its envelope recipients beside it.
//!
//! The listener can be told to refuse: [`SmtpListener::refuse`] writes a reply code into a
//! control file that the script reads at the end of every DATA, so `421` (the server drops us
//! mid-DATA), `450` (try later) and `550` (permanent refusal) can be switched on and off while
//! the client keeps sending. `drop` closes the connection without any answer. With
//! [`SmtpListener::start_with_login`] it offers AUTH PLAIN and LOGIN over the plain loopback
//! connection and refuses unauthenticated mail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process;

/// The interpreter that has the Debian `python3-aiosmtpd` package.
const PYTHON: &str = "/usr/bin/python3";

/// How long the server may take to report its port; it is usually ready in a tenth of a second.
const START_TIMEOUT: Duration = Duration::from_secs(15);

const SCRIPT: &str = r#"
import asyncio, os, sys
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

STATE = sys.argv[1]
USER = os.environ.get("TESTKIT_SMTP_USER", "")
PASSWORD = os.environ.get("TESTKIT_SMTP_PASSWORD", "")
REPLIES = {
    "421": "421 4.4.2 Connection dropped",
    "450": "450 4.2.0 Mailbox busy, try again later",
    "550": "550 5.3.4 Message size exceeds limit",
}

def control():
    try:
        with open(os.path.join(STATE, "refuse")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""

class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        code = control()
        if code == "drop":
            server.transport.close()
            return "421 4.4.2 closing"
        if code:
            return REPLIES.get(code, code + " refused by the test")
        self.count += 1
        base = os.path.join(STATE, "messages", "%06d" % self.count)
        with open(base + ".rcpt", "w") as f:
            f.write("\n".join(envelope.rcpt_tos))
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".tmp", base + ".eml")
        return "250 2.0.0 OK queued"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == USER
          and auth_data.password.decode() == PASSWORD)
    # handled=False: aiosmtpd then answers 235 or 535 itself.
    return AuthResult(success=ok, handled=False)

def make(handler):
    options = dict(hostname="localhost", auth_require_tls=False)
    if USER:
        options.update(authenticator=authenticator, auth_required=True)
    return SMTP(handler, **options)

async def main():
    handler = Handler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: make(handler), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(os.path.join(STATE, "port.tmp"), "w") as f:
        f.write(str(port))
    os.rename(os.path.join(STATE, "port.tmp"), os.path.join(STATE, "port"))
    await server.serve_forever()

asyncio.run(main())
"#;

/// One message the listener accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The envelope recipients (RCPT TO), in order.
    pub recipients: Vec<String>,
    /// The message as received after DATA.
    pub data: Vec<u8>,
}

/// An SMTP server on 127.0.0.1 that stores what it accepts; stopped when dropped.
pub struct SmtpListener {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl SmtpListener {
    /// Starts a listener that accepts mail without authentication.
    pub fn start() -> Result<SmtpListener> {
        SmtpListener::spawn(None)
    }

    /// Starts a listener that requires AUTH PLAIN or LOGIN with these credentials.
    pub fn start_with_login(login: &str, password: &str) -> Result<SmtpListener> {
        SmtpListener::spawn(Some((login, password)))
    }

    fn spawn(login: Option<(&str, &str)>) -> Result<SmtpListener> {
        check_installed()?;
        let dir = tempfile::Builder::new().prefix("testkit-smtp").tempdir()?;
        std::fs::create_dir(dir.path().join("messages"))?;
        let script = dir.path().join("smtpd.py");
        std::fs::write(&script, SCRIPT)?;
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?);
        if let Some((user, password)) = login {
            cmd.env("TESTKIT_SMTP_USER", user);
            cmd.env("TESTKIT_SMTP_PASSWORD", password);
        }
        let mut child = process::spawn_tied(cmd, libc::SIGTERM)?;
        match wait_for_port(&mut child, dir.path()) {
            Ok(port) => Ok(SmtpListener { child, dir, port }),
            Err(err) => {
                process::stop_group(&mut child, Duration::from_secs(2));
                let log =
                    std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                Err(err.context(format!(
                    "the SMTP listener did not start; its stderr:\n{log}"
                )))
            }
        }
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.deliveries().into_iter().map(|d| d.data).collect()
    }

    /// Every message accepted so far with its envelope recipients, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("messages")) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .filter_map(|path| {
                let data = std::fs::read(&path).ok()?;
                let rcpt = std::fs::read_to_string(path.with_extension("rcpt")).unwrap_or_default();
                let recipients = rcpt.lines().map(str::to_string).collect();
                Some(Delivery { recipients, data })
            })
            .collect()
    }

    /// From now on every message is refused at the end of DATA with `code` (`"421"`, `"450"`,
    /// `"550"`, any other three digits), or the connection is closed unanswered (`"drop"`).
    pub fn refuse(&self, code: &str) {
        std::fs::write(self.dir.path().join("refuse"), code)
            .expect("the testkit cannot write the SMTP listener's control file");
    }

    /// From now on messages are accepted again.
    pub fn accept(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("refuse"));
    }
}

impl Drop for SmtpListener {
    fn drop(&mut self) {
        process::stop_group(&mut self.child, Duration::from_secs(2));
    }
}

/// Fails with an install hint when the Debian package is missing.
fn check_installed() -> Result<()> {
    let status = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "{PYTHON} cannot import aiosmtpd: the SMTP tests need Debian's package \
             (apt-get install -y python3-aiosmtpd; scripts/test installs it)"
        ),
    }
}

/// Waits until the script has written its port, or has died.
fn wait_for_port(child: &mut Child, dir: &Path) -> Result<u16> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("port")) {
            return text.trim().parse().context("the listener wrote a bad port");
        }
        if let Some(status) = child.try_wait()? {
            bail!("the SMTP listener exited with {status}");
        }
        if Instant::now() >= deadline {
            bail!("the SMTP listener reported no port within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
