//! A real Dovecot, started on 127.0.0.1 for one test binary or one test.
//!
//! [`Dovecot::start`] writes a configuration into a fresh temporary directory (see [`conf`]),
//! runs `dovecot -F -c DIR/dovecot.conf` as a child and returns once the IMAP greeting can be
//! read. Any user name logs in with [`Dovecot::PASSWORD`] and gets an empty mailbox of its own,
//! so tests isolate themselves by inventing names with [`Dovecot::unique_user`] instead of
//! starting servers. [`Dovecot::shared`] starts one instance per flavor per test binary.
//!
//! Dropping a [`Dovecot`] stops it and deletes its directory. Shared instances live in statics,
//! which are never dropped: an exit hook stops them and removes their directories when the
//! test binary exits normally, and the parent-death signal set up by [`crate::process`] stops
//! them when it does not.
//!
//! Dovecot must be installed; its absence is a loud panic, never a skipped test.

mod conf;

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::process;

/// What a missing Dovecot says: tests must fail, and say how to get one.
const NOT_INSTALLED: &str = "Dovecot is not installed: run scripts/test (it installs \
                             dovecot-imapd), or apt-get install dovecot-imapd";

/// How long a start may take before we give up. Dovecot greets after about 30 ms on an idle
/// machine; the margin is for a loaded two-core box running several test binaries at once.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long SIGTERM gets before SIGKILL. Dovecot's processes stop within about 100 ms when
/// they are all signalled (see [`stop`]); the margin is for a loaded machine.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How many free ports we try: another process may take the port between our probe and
/// Dovecot's bind.
const PORT_ATTEMPTS: u32 = 5;

/// The shape of server to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Dovecot as installed: MOVE, CONDSTORE, QRESYNC, keywords (`\*` in PERMANENTFLAGS).
    Standard,
    /// Exchange Online's surface: its capability list (no MOVE, no CONDSTORE) and no custom
    /// keywords (PERMANENTFLAGS is `(\Deleted \Seen)`).
    ExchangeLike,
}

/// A running Dovecot that owns a temporary directory.
#[derive(Debug)]
pub struct Dovecot {
    flavor: Flavor,
    port: u16,
    binary: PathBuf,
    dir: TempDir,
    /// The master process; also the leader of the process group of all its helpers.
    child: Mutex<Child>,
    /// The master's pid, readable by the exit hook without taking the lock.
    pgid: AtomicU32,
    next_user: AtomicU32,
    password: String,
    tls_port: Option<u16>,
}

/// How to start an instance beyond its flavor; see [`Dovecot::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The server shape.
    pub flavor: Flavor,
    /// Every user's password.
    pub password: String,
    /// Serve TLS with this certificate and key (PEM), `ssl = required`: an implicit-TLS
    /// listener on [`Dovecot::tls_port`], and plaintext logins refused on the plain port.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Options {
    /// The defaults of [`Dovecot::start`]: no TLS, [`Dovecot::PASSWORD`].
    pub fn new(flavor: Flavor) -> Options {
        Options {
            flavor,
            password: Dovecot::PASSWORD.to_string(),
            tls: None,
        }
    }
}

static SHARED_STANDARD: OnceLock<Dovecot> = OnceLock::new();
static SHARED_EXCHANGE_LIKE: OnceLock<Dovecot> = OnceLock::new();

impl Dovecot {
    /// The password of every user.
    pub const PASSWORD: &'static str = "postroom-test-password";

    /// Starts a new instance in a fresh directory on a free port.
    ///
    /// Panics if Dovecot is not installed; returns an error with the end of Dovecot's log if
    /// it is installed but does not come up.
    pub fn start(flavor: Flavor) -> Result<Dovecot> {
        Self::start_with(Options::new(flavor))
    }

    /// Starts a new instance with a password and TLS of the caller's choice.
    pub fn start_with(options: Options) -> Result<Dovecot> {
        let flavor = options.flavor;
        let binary = dovecot_binary();
        let dir = prepare_dir(flavor)?;
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let mut conf = conf::render(dir.path(), flavor, port, &options.password);
            let tls_port = match &options.tls {
                Some((cert, key)) => {
                    let tls_port = free_port()?;
                    conf = conf::with_tls(&conf, cert, key, tls_port);
                    Some(tls_port)
                }
                None => None,
            };
            fs::write(conf_path(dir.path()), conf).context("cannot write dovecot.conf")?;
            match launch(&binary, dir.path(), port) {
                Ok(child) => {
                    let mut dovecot = Self::new(flavor, port, binary, dir, child);
                    dovecot.password = options.password;
                    dovecot.tls_port = tls_port;
                    return Ok(dovecot);
                }
                Err(e) if attempt < PORT_ATTEMPTS && port_was_taken(dir.path()) => {
                    eprintln!("testkit: port {port} was taken, trying another: {e:#}");
                    // The next attempt must not be judged by this attempt's log.
                    let _ = fs::remove_file(dir.path().join("dovecot.log"));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The instance of `flavor` shared by all tests of this test binary, started on first use.
    ///
    /// Tests sharing it must use their own users ([`Dovecot::unique_user`]), and must not
    /// restart it or kick users they did not invent. Panics if it cannot start.
    pub fn shared(flavor: Flavor) -> &'static Dovecot {
        static EXIT_HOOK: Once = Once::new();
        EXIT_HOOK.call_once(|| process::at_exit(stop_shared_instances));
        let cell = match flavor {
            Flavor::Standard => &SHARED_STANDARD,
            Flavor::ExchangeLike => &SHARED_EXCHANGE_LIKE,
        };
        cell.get_or_init(|| {
            Dovecot::start(flavor)
                .unwrap_or_else(|e| panic!("cannot start the shared {flavor:?} Dovecot: {e:#}"))
        })
    }

    fn new(flavor: Flavor, port: u16, binary: PathBuf, dir: TempDir, child: Child) -> Dovecot {
        Dovecot {
            flavor,
            port,
            binary,
            dir,
            pgid: AtomicU32::new(child.id()),
            child: Mutex::new(child),
            next_user: AtomicU32::new(1),
            password: Self::PASSWORD.to_string(),
            tls_port: None,
        }
    }

    /// The flavor this instance was started with.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The address Dovecot listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The IMAP port (plain text, no TLS).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of every user: [`Dovecot::PASSWORD`] unless started with another.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The implicit-TLS (imaps) port, when started with TLS.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// Dovecot's log so far, whole: successful logins appear as
    /// `imap-login: Login: user=<...>, method=...`.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// A user name no other caller of this instance has been given, such as
    /// `catchup-3@example.test`. Its mailbox is created empty on first login.
    ///
    /// The name is lowercase because Dovecot lowercases logins (`auth_username_format = %Lu`),
    /// and characters other than ASCII letters, digits, `.` and `-` in `prefix` become `-`.
    pub fn unique_user(&self, prefix: &str) -> String {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{}-{n}@example.test", prefix.to_ascii_lowercase())
    }

    /// The path of the configuration file, for running Dovecot tools against this instance.
    pub fn config_path(&self) -> PathBuf {
        conf_path(self.dir.path())
    }

    /// The last lines of Dovecot's log (and of its stderr, where early failures go).
    pub fn log_tail(&self) -> String {
        log_tail(self.dir.path())
    }

    /// Disconnects every session of `user` with `doveadm kick`; clients see `* BYE`.
    ///
    /// Returns false if `user` had no session to kick.
    pub fn kick(&self, user: &str) -> Result<bool> {
        let doveadm = find_binary("doveadm", &["/usr/bin/doveadm"])
            .ok_or_else(|| anyhow!("doveadm not found. {NOT_INSTALLED}"))?;
        let output = Command::new(doveadm)
            .arg("-c")
            .arg(self.config_path())
            .args(["kick", user])
            .output()
            .with_context(|| format!("cannot run doveadm kick {user}"))?;
        // doveadm exits with EX_NOUSER (67/68 depending on the build) when nobody was kicked.
        match output.status.code() {
            Some(0) => Ok(true),
            Some(67 | 68) => Ok(false),
            _ => bail!(
                "doveadm kick {user} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Stops the server (SIGTERM, as a service manager would) and starts it again on the same
    /// port with the same mail. Open sessions see `* BYE Server shutting down.`
    pub fn restart(&mut self) -> Result<()> {
        let child = self
            .child
            .get_mut()
            .map_err(|_| anyhow!("dovecot child lock poisoned"))?;
        stop(child);
        // A master killed with SIGKILL leaves its pid file; Dovecot only refuses to start if
        // that pid is alive, but a stale file is confusing when reading the directory.
        let _ = fs::remove_file(self.dir.path().join("run/master.pid"));
        let new_child = launch(&self.binary, self.dir.path(), self.port)
            .with_context(|| format!("cannot restart Dovecot on port {}", self.port))?;
        self.pgid.store(new_child.id(), Ordering::Relaxed);
        *child = new_child;
        Ok(())
    }

    /// Stops the server and deletes its directory, for the exit hook of shared instances.
    fn stop_at_exit(&self) {
        match self.child.try_lock() {
            Ok(mut child) => stop(&mut child),
            // Another thread is inside `restart`, which shared instances do not allow; the
            // process is ending, so a hard kill is all that is left to do.
            Err(_) => {
                let pgid = self.pgid.load(Ordering::Relaxed);
                let _ = process::signal_group(pgid, libc::SIGKILL);
                process::wait_group_gone(pgid, STOP_GRACE);
            }
        }
        let _ = fs::remove_dir_all(self.dir.path());
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            stop(child);
        }
    }
}

/// The exit hook for the shared instances (see the module documentation).
extern "C" fn stop_shared_instances() {
    for cell in [&SHARED_STANDARD, &SHARED_EXCHANGE_LIKE] {
        if let Some(dovecot) = cell.get() {
            dovecot.stop_at_exit();
        }
    }
}

/// Stops the server with SIGTERM to all its processes, SIGKILL after [`STOP_GRACE`], and
/// returns once all are gone, so the port and the directory are free.
///
/// Signalling only the master is not enough: it takes about 1.1 s to exit, and it leaves the
/// `imap` processes of open sessions running (with the log and stats processes they write to)
/// until their clients disconnect. Each Dovecot process handles SIGTERM by finishing cleanly;
/// sessions see `* BYE Server shutting down.`
fn stop(child: &mut Child) {
    process::stop_group(child, STOP_GRACE);
}

/// Runs the master and waits for its greeting; on failure the master is gone again.
fn launch(binary: &Path, dir: &Path, port: u16) -> Result<Child> {
    let stderr = fs::File::create(dir.join("dovecot.stderr")).context("cannot create stderr")?;
    let mut cmd = Command::new(binary);
    cmd.arg("-F")
        .arg("-c")
        .arg(conf_path(dir))
        .stdin(Stdio::null())
        .stdout(stderr.try_clone().context("cannot share the stderr file")?)
        .stderr(stderr);
    // SIGTERM rather than SIGKILL on our death, so the master takes its helpers down with it.
    let mut child = process::spawn_tied(cmd, libc::SIGTERM)?;
    if let Err(e) = wait_ready(&mut child, port) {
        stop(&mut child);
        return Err(e.context(format!(
            "Dovecot did not start; log tail:\n{}",
            log_tail(dir)
        )));
    }
    Ok(child)
}

/// Polls until an IMAP greeting can be read on `port`, or the master exits.
fn wait_ready(child: &mut Child, port: u16) -> Result<()> {
    wait_greeting(child, port, READY_TIMEOUT)
}

/// Polls until an IMAP greeting can be read on `port`, or the server process `child` exits;
/// shared with the Cyrus harness.
pub(crate) fn wait_greeting(child: &mut Child, port: u16, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("cannot poll the server process")? {
            bail!("the server exited ({status}) before greeting on port {port}");
        }
        match read_greeting(port) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                bail!("no IMAP greeting on port {port} within {limit:?}: {e:#}")
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Connects once and reads the first line, which must be `* OK ...`.
fn read_greeting(port: u16) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    // Short, because the caller retries, and because a port taken by another program may
    // accept the connection and never greet.
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    while !line.ends_with(b"\r\n") && line.len() < 4096 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed before the greeting");
        }
        line.extend_from_slice(&buf[..n]);
    }
    if !line.starts_with(b"* OK") {
        bail!("unexpected greeting {:?}", String::from_utf8_lossy(&line));
    }
    Ok(())
}

/// Creates the instance directory: readable by the mail user, with a mail root it owns.
fn prepare_dir(flavor: Flavor) -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("postroom-dovecot-")
        .tempdir()
        .context("cannot create a temporary directory for Dovecot")?;
    // Mail processes run as MAIL_UID and must traverse this directory to reach their homes.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .context("cannot open the Dovecot directory to the mail user")?;
    fs::create_dir(dir.path().join("state")).context("cannot create state_dir")?;
    let mail = dir.path().join("mail");
    fs::create_dir(&mail).context("cannot create the mail root")?;
    std::os::unix::fs::chown(&mail, Some(conf::MAIL_UID), Some(conf::MAIL_UID))
        .context("cannot give the mail root to the mail user (the testkit must run as root)")?;
    if flavor == Flavor::ExchangeLike {
        fs::write(dir.path().join("dovecot-acl"), conf::EXCHANGE_ACL)
            .context("cannot write the global ACL file")?;
    }
    Ok(dir)
}

/// A port that was free a moment ago; Dovecot may still lose a race for it (see
/// [`PORT_ATTEMPTS`]).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot probe a port")?;
    Ok(listener
        .local_addr()
        .context("cannot read the probed port")?
        .port())
}

/// Whether the last launch failed because the port was in use.
fn port_was_taken(dir: &Path) -> bool {
    log_tail(dir).contains("Address already in use")
}

fn conf_path(dir: &Path) -> PathBuf {
    dir.join("dovecot.conf")
}

/// The last 40 lines of the log, followed by stderr if Dovecot wrote anything there.
fn log_tail(dir: &Path) -> String {
    let log = fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(40)..].join("\n");
    let stderr = fs::read_to_string(dir.join("dovecot.stderr")).unwrap_or_default();
    if !stderr.trim().is_empty() {
        tail.push_str("\n--- stderr ---\n");
        tail.push_str(stderr.trim_end());
    }
    tail
}

/// The Dovecot binary, from `PATH` or `/usr/sbin` (which is often missing from `PATH`).
fn dovecot_binary() -> PathBuf {
    require_installed(find_binary(
        "dovecot",
        &["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"],
    ))
}

/// Panics with install instructions when Dovecot was not found: a test that needs a real
/// server must fail where it cannot have one, never skip.
fn require_installed(found: Option<PathBuf>) -> PathBuf {
    found.unwrap_or_else(|| panic!("{NOT_INSTALLED}"))
}

fn find_binary(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    on_path
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "Dovecot is not installed: run scripts/test (it installs \
                               dovecot-imapd), or apt-get install dovecot-imapd")]
    fn missing_dovecot_is_a_loud_failure() {
        require_installed(None);
    }

    #[test]
    fn a_taken_port_is_recognised() -> Result<()> {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = taken.local_addr()?.port();
        let dir = prepare_dir(Flavor::Standard)?;
        let conf = conf::render(dir.path(), Flavor::Standard, port, Dovecot::PASSWORD);
        fs::write(conf_path(dir.path()), conf)?;
        let err = launch(&dovecot_binary(), dir.path(), port).unwrap_err();
        assert!(port_was_taken(dir.path()), "{err:#}");
        Ok(())
    }

    #[test]
    fn binaries_are_found_through_fallback_paths() {
        assert_eq!(
            find_binary("no-such-tool-xyz", &["/bin/sh"]),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_binary("no-such-tool-xyz", &["/nonexistent"]), None);
    }

    #[test]
    fn unique_users_differ_and_are_safe_for_paths() {
        let dovecot = Dovecot::shared(Flavor::Standard);
        let a = dovecot.unique_user("Catch up/x");
        let b = dovecot.unique_user("Catch up/x");
        assert_ne!(a, b);
        assert!(a.starts_with("catch-up-x-"), "{a}");
        assert!(!a.contains('/'));
    }
}
