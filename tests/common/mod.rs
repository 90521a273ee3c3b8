//! Shared set-up for integration tests: a site is one shared mailbox on the test binary's
//! Dovecot, a config file pointing postroom at it, and a state directory, all in a temp dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use postroom_testkit::{wait_for, Daemon, Dovecot, Flavor, ImapClient};

/// Agents of every test site: (id, folder name). Names with non-ASCII letters exercise modified
/// UTF-7 on every run.
pub const AGENTS: [(&str, &str); 3] = [
    ("alice", "Alice Example"),
    ("bob", "Bob Jürgen"),
    ("zoe", "Zoë"),
];

/// One shared mailbox with its own config and state.
pub struct Site {
    pub dovecot: &'static Dovecot,
    pub user: String,
    pub dir: tempfile::TempDir,
}

impl Site {
    /// A fresh mailbox on the shared Dovecot of this flavour.
    pub fn new(flavor: Flavor, prefix: &str) -> Site {
        let dovecot = Dovecot::shared(flavor);
        let user = dovecot.unique_user(prefix);
        let dir = tempfile::tempdir().expect("temp dir");
        let site = Site { dovecot, user, dir };
        site.write_config("");
        site
    }

    /// Writes the config, with `extra` TOML appended.
    pub fn write_config(&self, extra: &str) {
        self.write_config_with("", &AGENTS, extra);
    }

    /// Writes the config with `agent_extra` keys added to every `[[agent]]`.
    pub fn write_config_agents(&self, agent_extra: &str) {
        self.write_config_full("", &AGENTS, agent_extra, "");
    }

    /// Runs a postroom command against this site and returns (success, stdout + stderr).
    pub fn command(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_postroom"))
            .args(["--config", path_str(&self.config_path())])
            .args(args)
            .output()
            .expect("run postroom");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// Writes the config with extra `[[mailbox]]` keys, the given agents (id, folder name) and
    /// `extra` TOML appended.
    pub fn write_config_with(&self, mailbox_extra: &str, agents: &[(&str, &str)], extra: &str) {
        self.write_config_full(mailbox_extra, agents, "", extra);
    }

    /// Writes the config: extra mailbox keys, agents, keys for every agent, and extra TOML.
    pub fn write_config_full(
        &self,
        mailbox_extra: &str,
        agents: &[(&str, &str)],
        agent_extra: &str,
        extra: &str,
    ) {
        let mut text = format!(
            "[daemon]\nstate_dir = \"{state}\"\n\n\
             [[server]]\nname = \"dovecot\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             security = \"plain\"\ncommand_timeout_secs = 10\n\n\
             [[mailbox]]\nname = \"support\"\nserver = \"dovecot\"\nlogin = \"{user}\"\n\
             password_file = \"{pw}\"\nteam = \"support\"\npoll_secs = 5\n\
             folder_poll_secs = 1\nreconcile_secs = 2\n{mailbox_extra}\n\
             [[team]]\nname = \"support\"\nagents = [\"alice\", \"bob\", \"zoe\"]\n",
            state = self.state_dir().display(),
            port = self.dovecot.port(),
            user = self.user,
            pw = self.password_file().display(),
        );
        for (id, name) in agents {
            text += &format!("\n[[agent]]\nid = \"{id}\"\nname = \"{name}\"\n{agent_extra}\n");
        }
        text += extra;
        std::fs::write(self.password_file(), self.dovecot.password()).expect("password file");
        std::fs::write(self.config_path(), text).expect("config file");
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

    /// Starts `postroom run` on this site.
    pub fn start(&self) -> Daemon {
        let config = self.config_path();
        let args = ["--config", path_str(&config), "run"];
        Daemon::spawn(
            env!("CARGO_BIN_EXE_postroom"),
            args,
            [("RUST_LOG", "postroom=debug")],
        )
        .expect("spawn postroom")
    }

    /// A plain IMAP client for this mailbox: the person in Outlook.
    pub async fn client(&self) -> ImapClient {
        ImapClient::connect(self.dovecot, &self.user)
            .await
            .expect("connect test client")
    }

    /// Opens the store; only while no daemon runs on it.
    pub fn store(&self) -> postroom::store::Store {
        postroom::store::Store::open(&self.state_dir()).expect("open store")
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The wire name of an agent's folder.
pub fn agent_folder(id: &str) -> String {
    let name = AGENTS
        .iter()
        .find(|(a, _)| *a == id)
        .map(|(_, n)| *n)
        .expect("known agent");
    format!("Assigned/{}", postroom::imap::mutf7::encode(name))
}

/// Every agent folder's wire name.
pub fn agent_folders() -> Vec<String> {
    AGENTS.iter().map(|(id, _)| agent_folder(id)).collect()
}

/// A small message with a Message-ID and, optionally, a parent.
pub fn mail(id: &str, subject: &str, parent: Option<&str>) -> Vec<u8> {
    let mut text = format!(
        "From: Customer <customer@example.test>\r\nTo: support@example.test\r\n\
         Subject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 10 Mar 2025 09:00:00 +0100\r\n"
    );
    if let Some(parent) = parent {
        text += &format!("In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n");
    }
    text += "\r\nHello, this is a test message.\r\n";
    text.into_bytes()
}

/// Vendored real messages from the ham corpus (all its subfolders), sorted by path.
pub fn ham(limit: usize) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ham");
    let mut files = Vec::new();
    collect_files(&dir, &mut files);
    files.sort();
    assert!(
        files.len() >= limit,
        "only {} messages in {}",
        files.len(),
        dir.display()
    );
    files
        .into_iter()
        .take(limit)
        .map(|p| std::fs::read(p).expect("read ham"))
        .collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

/// Where each Message-ID sits: (folder, message-id) for every message in the inbox and in the
/// agent folders.
pub async fn placement(client: &mut ImapClient) -> Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    let mut folders = vec![
        "INBOX".to_string(),
        "Automated".to_string(),
        "Done".to_string(),
    ];
    folders.extend(agent_folders());
    let existing = client.list_folders().await?;
    for folder in folders.into_iter().filter(|f| existing.contains(f)) {
        for (_, id) in client
            .message_ids(&folder)
            .await
            .with_context(|| folder.clone())?
        {
            out.push((
                folder.clone(),
                id.as_deref().and_then(postroom::message::clean_id),
            ));
        }
    }
    Ok(out)
}

/// Waits until the inbox is empty and `expected` messages sit outside it.
pub async fn wait_all_filed(
    client: &mut ImapClient,
    expected: usize,
    limit: Duration,
) -> Result<()> {
    wait_for(
        "every message filed",
        limit,
        Duration::from_millis(100),
        async || {
            let all = placement(client).await?;
            let inbox = all.iter().filter(|(f, _)| f == "INBOX").count();
            Ok(inbox == 0 && all.len() == expected)
        },
    )
    .await
}

/// Waits until the daemon's log says it is watching (in IDLE).
pub async fn wait_watching(daemon: &Daemon) -> Result<()> {
    wait_for(
        "postroom to enter IDLE",
        Duration::from_secs(20),
        Duration::from_millis(50),
        async || Ok(daemon.output().contains("watching for new mail")),
    )
    .await
}
