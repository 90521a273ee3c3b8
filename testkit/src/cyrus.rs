//! A real Cyrus IMAP 3.6, the second server the integration suite runs against.
//!
//! Debian's `cyrus-imapd` package conflicts with `dovecot-imapd`, so it is never installed:
//! `scripts/test` installs `cyrus-common` and `sasl2-bin` (with `--no-install-recommends`,
//! since cyrus-common recommends cyrus-imapd and apt would then remove Dovecot), downloads the
//! `cyrus-imapd` package and unpacks it into `target/cyrus` (or `$POSTROOM_CYRUS_ROOT`). Only
//! its `imapd` is used; the `master` process and tools come from cyrus-common.
//!
//! [`Cyrus::start`] writes `imapd.conf` and `cyrus.conf` into a fresh temporary directory and
//! runs `master` in the foreground on a free loopback port. Logins are checked against a
//! sasldb of the instance's own; [`Cyrus::unique_user`] adds a user there and has the admin
//! create its mailbox (Cyrus never creates one on first login). `altnamespace` and
//! `unixhierarchysep` make folders look as they do on Dovecot and Exchange: `INBOX`,
//! `Assigned/Bob`, separator `/`.
//!
//! Cyrus must be installed; its absence is a loud panic, never a skipped test.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::process;

/// What a missing Cyrus says.
const NOT_INSTALLED: &str = "Cyrus IMAP is not installed: run scripts/test (it installs \
                             cyrus-common and sasl2-bin and unpacks cyrus-imapd into \
                             target/cyrus; never apt-get install cyrus-imapd, which removes \
                             Dovecot)";

/// Where cyrus-common puts `master` and its tools.
const CYRUS_BIN: &str = "/usr/lib/cyrus/bin";

/// How long a start may take; Cyrus greets within a second, the rest is for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running Cyrus that owns a temporary directory.
#[derive(Debug)]
pub struct Cyrus {
    port: u16,
    dir: TempDir,
    child: Mutex<Child>,
    pgid: u32,
    next_user: AtomicU32,
    sasl_lock: Mutex<()>,
}

static SHARED: OnceLock<Cyrus> = OnceLock::new();

impl Cyrus {
    /// Every user's password, the admin's included.
    pub const PASSWORD: &'static str = "postroom-cyrus-password";

    /// The administrator, who creates mailboxes.
    pub const ADMIN: &'static str = "cyrus";

    /// Starts a new instance on a free port.
    pub fn start() -> Result<Cyrus> {
        let imapd = imapd_binary();
        let dir = tempfile::Builder::new()
            .prefix("postroom-cyrus-")
            .tempdir()?;
        for sub in ["lib", "lib/socket", "spool", "run"] {
            fs::create_dir(dir.path().join(sub))?;
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        fs::write(dir.path().join("imapd.conf"), imapd_conf(dir.path()))?;
        fs::write(
            dir.path().join("cyrus.conf"),
            cyrus_conf(dir.path(), &imapd, port),
        )?;
        add_sasl_user(dir.path(), Self::ADMIN)?;
        give_to_cyrus(dir.path())?;
        let log = fs::File::create(dir.path().join("master.log"))?;
        let mut cmd = Command::new(Path::new(CYRUS_BIN).join("master"));
        cmd.arg("-C")
            .arg(dir.path().join("imapd.conf"))
            .arg("-M")
            .arg(dir.path().join("cyrus.conf"))
            .arg("-p")
            .arg(dir.path().join("run/master.pid"))
            .arg("-D")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = process::spawn_tied(cmd, libc::SIGTERM)?;
        if let Err(e) = crate::dovecot::wait_greeting(&mut child, port, READY_TIMEOUT) {
            process::stop_group(&mut child, Duration::from_secs(5));
            let log = fs::read_to_string(dir.path().join("master.log")).unwrap_or_default();
            return Err(e.context(format!("Cyrus did not start; master log:\n{log}")));
        }
        Ok(Cyrus {
            port,
            pgid: child.id(),
            dir,
            child: Mutex::new(child),
            next_user: AtomicU32::new(1),
            sasl_lock: Mutex::new(()),
        })
    }

    /// The instance shared by all tests of this test binary, started on first use.
    pub fn shared() -> &'static Cyrus {
        static EXIT_HOOK: Once = Once::new();
        EXIT_HOOK.call_once(|| process::at_exit(stop_shared));
        SHARED.get_or_init(|| {
            Cyrus::start().unwrap_or_else(|e| panic!("cannot start the shared Cyrus: {e:#}"))
        })
    }

    /// The address Cyrus listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The IMAP port (plain text).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every user's password.
    pub fn password(&self) -> &'static str {
        Self::PASSWORD
    }

    /// A new user with an empty mailbox, such as `backlog-3`. Cyrus user names are kept to
    /// lowercase letters, digits and `-`.
    pub async fn unique_user(&self, prefix: &str) -> Result<String> {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let user = format!("{prefix}-{n}");
        {
            // The sasldb is one file; parallel tests writing it at once lose users.
            let _only_writer = self.sasl_lock.lock().unwrap_or_else(|e| e.into_inner());
            add_sasl_user(self.dir.path(), &user)?;
        }
        let mut admin =
            crate::ImapClient::connect_to(self.host(), self.port, Self::ADMIN, Self::PASSWORD)
                .await?;
        admin
            .create(&format!("user/{user}"))
            .await
            .with_context(|| format!("admin CREATE user/{user}"))?;
        admin.logout().await?;
        self.wait_login(&user).await?;
        Ok(user)
    }

    /// Waits until `user` can log in: imapd reads the sasldb while other tests write it, and
    /// a read that meets a write in progress fails.
    async fn wait_login(&self, user: &str) -> Result<()> {
        let mut last = None;
        for _ in 0..50 {
            match crate::ImapClient::connect_to(self.host(), self.port, user, Self::PASSWORD).await
            {
                Ok(client) => return client.logout().await,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
            .with_context(|| format!("{user} cannot log in to Cyrus"))
    }

    fn stop(&self) {
        match self.child.try_lock() {
            Ok(mut child) => process::stop_group(&mut child, Duration::from_secs(5)),
            Err(_) => {
                let _ = process::signal_group(self.pgid, libc::SIGKILL);
                process::wait_group_gone(self.pgid, Duration::from_secs(5));
            }
        }
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        self.stop();
    }
}

extern "C" fn stop_shared() {
    if let Some(cyrus) = SHARED.get() {
        cyrus.stop();
        let _ = fs::remove_dir_all(cyrus.dir.path());
    }
}

fn imapd_conf(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "# Written by postroom-testkit for one test run.\n\
         configdirectory: {dir}/lib\npartition-default: {dir}/spool\nadmins: cyrus\n\
         sasl_pwcheck_method: auxprop\nsasl_auxprop_plugin: sasldb\n\
         sasl_sasldb_path: {dir}/sasldb2\nsasl_mech_list: PLAIN LOGIN\n\
         # Loopback only: plaintext LOGIN is what the daemon under test uses.\n\
         allowplaintext: yes\n\
         # Folders as Exchange and Dovecot show them: INBOX/..., separator `/`.\n\
         altnamespace: yes\nunixhierarchysep: yes\nvirtdomains: off\n\
         notifysocket: {dir}/run/notify\n\
         lmtpsocket: {dir}/run/lmtp\nproc_path: {dir}/run/proc\n\
         mboxname_lockpath: {dir}/run/lock\nsyslog_prefix: postroom-cyrus\n"
    )
}

fn cyrus_conf(dir: &Path, imapd: &Path, port: u16) -> String {
    // The master does not pass -C on to its services: each command line needs its own.
    let conf = dir.join("imapd.conf");
    // idled, unpacked beside imapd, tells IDLE sessions of new mail within milliseconds;
    // without it Cyrus looks every `imapidlepoll` seconds (60 by default). It and every imapd
    // in IDLE meet in `{configdirectory}/socket/` (the `idlesocket` default): an `idlesocket`
    // elsewhere leaves the sessions' own sockets without a directory, and IDLE falls back to
    // the poll.
    let idled = imapd.with_file_name("idled");
    format!(
        "START {{\n  recover cmd=\"{CYRUS_BIN}/ctl_cyrusdb -C {conf} -r\"\n}}\n\
         SERVICES {{\n  imap cmd=\"{imapd} -C {conf}\" listen=\"127.0.0.1:{port}\" prefork=0\n}}\n\
         EVENTS {{\n}}\nDAEMON {{\n  idled cmd=\"{idled} -C {conf}\"\n}}\n",
        conf = conf.display(),
        imapd = imapd.display(),
        idled = idled.display(),
    )
}

/// The master runs its services as the `cyrus` user (created by cyrus-common), which must be
/// able to enter the directory and own its databases, spool and sockets.
fn give_to_cyrus(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    let status = Command::new("chown")
        .args(["-R", "cyrus:mail"])
        .arg(dir)
        .status()
        .context("cannot run chown")?;
    if !status.success() {
        bail!(
            "chown -R cyrus:mail {} failed (is cyrus-common installed?)",
            dir.display()
        );
    }
    Ok(())
}

/// Adds a user with [`Cyrus::PASSWORD`] to the instance's sasldb.
fn add_sasl_user(dir: &Path, user: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("saslpasswd2")
        .args(["-p", "-c", "-f"])
        .arg(dir.join("sasldb2"))
        .arg(user)
        .stdin(Stdio::piped())
        .spawn()
        .context("cannot run saslpasswd2 (apt-get install sasl2-bin)")?;
    child
        .stdin
        .take()
        .context("saslpasswd2 stdin")?
        .write_all(Cyrus::PASSWORD.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("saslpasswd2 {user} failed: {status}");
    }
    Ok(())
}

/// The unpacked `imapd`: `$POSTROOM_CYRUS_ROOT` or `target/cyrus` of the workspace.
fn imapd_binary() -> PathBuf {
    let root = std::env::var_os("POSTROOM_CYRUS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cyrus"));
    let imapd = root.join("usr/lib/cyrus/bin/imapd");
    let master = Path::new(CYRUS_BIN).join("master");
    let saslpasswd = ["/usr/sbin/saslpasswd2", "/usr/bin/saslpasswd2"];
    let idled = imapd.with_file_name("idled");
    if !imapd.is_file()
        || !idled.is_file()
        || !master.is_file()
        || !saslpasswd.iter().any(|p| Path::new(p).is_file())
    {
        panic!("{NOT_INSTALLED} (looked for {})", imapd.display());
    }
    imapd
}
