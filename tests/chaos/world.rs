//! The world of the chaos run: one Dovecot of its own (so it can be restarted), a fault proxy
//! in front of it, an SMTP listener, twenty shared mailboxes in one config, the daemon, and the
//! people: a customer delivering mail and agents replying and dragging messages in Outlook.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use postroom_testkit::{Daemon, Dovecot, FaultProxy, Flavor, ImapClient, SmtpListener};

use super::corpus::{self, Mail};

/// The agents: (id, folder name); a non-ASCII name exercises modified UTF-7.
pub const AGENTS: [(&str, &str); 3] = [("alice", "Alice"), ("bob", "Bob"), ("zoe", "Zoë")];

/// The sent folder every mailbox has, where agents' replies are saved.
pub const SENT: &str = "Sent";

/// The SLA: short so that conversations breach within the run; `s` is the smallest unit
/// `sla::parse_duration` accepts.
pub const FIRST_RESPONSE: &str = "20s";

/// The subjects whose conversations run on the fast SLA, chosen by a rule: the tags `[q<n>]`
/// with `n` a multiple of 5. The rest have a day, so the run waits for a fifth of the mail's
/// escalations, not all of them.
pub const FAST_SUBJECTS: &str = r"^\[q[0-9]*[05]\]";

/// True when message `n` is on the fast SLA.
pub fn fast(n: usize) -> bool {
    n.is_multiple_of(5)
}

/// The lead who receives every breach escalation.
pub const LEAD: &str = "lead@ourco.example.test";

/// Everything one chaos run owns.
pub struct World {
    pub dovecot: Dovecot,
    pub proxy: FaultProxy,
    pub smtp: SmtpListener,
    pub dir: tempfile::TempDir,
    pub users: Vec<String>,
    clients: HashMap<usize, ImapClient>,
    pub daemon: Option<Daemon>,
    /// Output of every daemon that was killed, for the failure message.
    pub past_output: String,
}

impl World {
    /// Starts the servers and writes the config for `mailboxes` mailboxes.
    pub fn new(mailboxes: usize) -> World {
        let dovecot = Dovecot::start(Flavor::Standard).expect("start Dovecot");
        let proxy = FaultProxy::start(dovecot.port()).expect("start the fault proxy");
        let smtp = SmtpListener::start().expect("start the SMTP listener");
        let users = (0..mailboxes)
            .map(|i| dovecot.unique_user(&format!("chaos{i}")))
            .collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let world = World {
            dovecot,
            proxy,
            smtp,
            dir,
            users,
            clients: HashMap::new(),
            daemon: None,
            past_output: String::new(),
        };
        std::fs::write(world.password_file(), world.dovecot.password()).expect("password file");
        std::fs::write(world.config_path(), world.config_text()).expect("config file");
        world
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("postroom.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// The name of mailbox `i` in the config.
    pub fn mailbox_name(i: usize) -> String {
        format!("mb{i:02}")
    }

    fn config_text(&self) -> String {
        let mut text = format!(
            "[daemon]\nstate_dir = \"{}\"\n\n[[server]]\nname = \"dovecot\"\n\
             host = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\ncommand_timeout_secs = 3\n",
            self.state_dir().display(),
            self.proxy.port()
        );
        for (i, user) in self.users.iter().enumerate() {
            text += &format!(
                "\n[[mailbox]]\nname = \"{}\"\nserver = \"dovecot\"\nlogin = \"{user}\"\n\
                 password_file = \"{}\"\nteam = \"support\"\nsent_folder = \"{SENT}\"\n\
                 poll_secs = 5\nfolder_poll_secs = 1\nreconcile_secs = 3\nfetch_batch = 25\n",
                Self::mailbox_name(i),
                self.password_file().display()
            );
        }
        text += &format!(
            "\n[[team]]\nname = \"support\"\nagents = [\"alice\", \"bob\", \"zoe\"]\n\
             leads = [\"{LEAD}\"]\ncalendar = \"always\"\nsla = \"slow\"\n"
        );
        for (id, name) in AGENTS {
            text += &format!("\n[[agent]]\nid = \"{id}\"\nname = \"{name}\"\n");
        }
        text += &format!(
            "\n[[calendar]]\nname = \"always\"\ntimezone = \"UTC\"\nalways = true\n\n\
             [[sla]]\nname = \"fast\"\nfirst_response = \"{FIRST_RESPONSE}\"\n\n\
             [[sla.escalation]]\nafter = \"0m\"\nto = [\"lead\"]\n\n\
             [[sla]]\nname = \"slow\"\nfirst_response = \"1d\"\n\n\
             [[rule]]\nname = \"fast lane\"\nwhen.subject = {{ regex = '{FAST_SUBJECTS}' }}\n\
             sla = \"fast\"\n\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
             from = \"support@ourco.example.test\"\ntimeout_secs = 5\n",
            self.smtp.port()
        );
        text
    }

    /// Starts the daemon unless it runs.
    pub fn start_daemon(&mut self) {
        if self.daemon.is_some() {
            return;
        }
        let config = self.config_path();
        let args = ["--config".as_ref(), config.as_os_str(), "run".as_ref()];
        let env = [("RUST_LOG", "postroom=info")];
        let daemon = Daemon::spawn(env!("CARGO_BIN_EXE_postroom"), args, env).expect("spawn");
        self.daemon = Some(daemon);
    }

    /// SIGKILLs the daemon, keeping its output.
    pub async fn kill_daemon(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.sigkill().expect("SIGKILL");
            let _ = daemon.wait_exit(Duration::from_secs(10)).await;
            self.past_output += &format!("--- killed daemon ---\n{}", tail(&daemon.output()));
            keep_log(&daemon.stderr(), "killed");
        }
    }

    /// Stops the daemon with SIGTERM and insists on a clean exit.
    pub async fn stop_daemon(&mut self) {
        let Some(mut daemon) = self.daemon.take() else {
            return;
        };
        daemon.sigterm().expect("SIGTERM");
        let status = daemon
            .wait_exit(Duration::from_secs(30))
            .await
            .expect("daemon exit");
        keep_log(&daemon.stderr(), "stopped");
        assert!(status.success(), "{status}\n{}", tail(&daemon.output()));
    }

    /// How many mailboxes the running daemon has reported watching, counting each once.
    pub fn watching(&self) -> usize {
        let Some(daemon) = &self.daemon else {
            return 0;
        };
        let text = daemon.stderr();
        (0..self.users.len())
            .filter(|i| {
                let name = format!("mailbox={}", Self::mailbox_name(*i));
                text.lines()
                    .any(|l| l.contains("watching for new mail") && l.contains(&name))
            })
            .count()
    }

    /// The end of every daemon's output so far.
    pub fn output(&self) -> String {
        let live = self
            .daemon
            .as_ref()
            .map(|d| tail(&d.output()))
            .unwrap_or_default();
        format!("{}--- live daemon ---\n{live}", self.past_output)
    }

    /// Restarts Dovecot; every test connection is dropped and made again on next use.
    pub fn restart_dovecot(&mut self) {
        self.clients.clear();
        self.dovecot.restart().expect("restart Dovecot");
    }

    /// Runs one person's IMAP operation on mailbox `i`, reconnecting once if the connection
    /// was lost (a Dovecot restart).
    pub async fn client(&mut self, i: usize) -> Result<&mut ImapClient> {
        if !self.clients.contains_key(&i) {
            let client = ImapClient::connect(&self.dovecot, &self.users[i]).await?;
            self.clients.insert(i, client);
        }
        Ok(self.clients.get_mut(&i).expect("inserted above"))
    }

    /// Forgets the connection to mailbox `i` after an error.
    pub fn drop_client(&mut self, i: usize) {
        self.clients.remove(&i);
    }

    /// Creates the sent folder of every mailbox, as Exchange has it from the start.
    pub async fn create_sent_folders(&mut self) {
        for i in 0..self.users.len() {
            self.client(i)
                .await
                .expect("connect")
                .create(SENT)
                .await
                .expect("create Sent");
        }
    }

    /// Appends `mail` to its mailbox's inbox, retrying through a restart of Dovecot.
    pub async fn deliver(&mut self, mail: &Mail) {
        self.append(mail.mailbox, "INBOX", &mail.raw).await;
    }

    /// Saves an agent's reply to `mail` in its mailbox's sent folder.
    pub async fn reply(&mut self, mail: &Mail) {
        self.append(mail.mailbox, SENT, &corpus::reply(mail)).await;
    }

    async fn append(&mut self, i: usize, folder: &str, raw: &[u8]) {
        for attempt in 0.. {
            let result = async { self.client(i).await?.append(folder, raw).await }.await;
            match result {
                Ok(()) => return,
                Err(e) if attempt < 20 => {
                    eprintln!("chaos: append to mailbox {i} failed, retrying: {e:#}");
                    self.drop_client(i);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("append to mailbox {i}: {e:#}"),
            }
        }
    }

    /// Moves the message `id` of mailbox `i` from `from` to `to`, as a person drags it;
    /// false when it is not (or no longer) in `from`.
    pub async fn drag(&mut self, i: usize, id: &str, from: &str, to: &str) -> Result<bool> {
        let client = self.client(i).await?;
        let ids = client
            .message_ids(from)
            .await
            .with_context(|| from.to_string())?;
        let Some((uid, _)) = ids
            .into_iter()
            .find(|(_, m)| clean(m.as_deref()) == Some(id))
        else {
            return Ok(false);
        };
        client.uid_move(from, uid, to).await?;
        Ok(true)
    }
}

/// A Message-ID as postroom cleans it.
pub fn clean(id: Option<&str>) -> Option<&str> {
    id.map(|i| {
        i.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim()
    })
}

/// The wire name of an agent's folder.
pub fn agent_folder(name: &str) -> String {
    format!("Assigned/{}", postroom::imap::mutf7::encode(name))
}

/// Where every daemon's whole log goes, one after another: `target/test-artifacts/chaos.log`,
/// kept after the run so a failure can be read to the end.
pub fn log_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts/chaos.log")
}

fn keep_log(text: &str, how: &str) {
    use std::io::Write;
    let path = log_path();
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(&path));
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = writeln!(file, "=== daemon {how} ===\n{text}");
    }
}

/// The last 60 lines of a daemon's output.
pub fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n") + "\n"
}
