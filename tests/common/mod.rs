//! Shared set-up for integration tests: a site is one shared mailbox on the test binary's
//! Dovecot, a config file pointing postroom at it, and a state directory, all in a temp dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use postroom_testkit::{wait_for, Daemon, Dovecot, FaultProxy, Flavor, ImapClient};

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
    /// The pass-through proxy when the suite runs with `POSTROOM_TEST_VIA_PROXY` set.
    pub proxy: Option<FaultProxy>,
    /// The port written into the config instead of Dovecot's, if any.
    pub port_override: Option<u16>,
}

impl Site {
    /// A fresh mailbox on the shared Dovecot of this flavour.
    pub fn new(flavor: Flavor, prefix: &str) -> Site {
        let dovecot = Dovecot::shared(flavor);
        let user = dovecot.unique_user(prefix);
        let dir = tempfile::tempdir().expect("temp dir");
        // POSTROOM_TEST_VIA_PROXY=1 runs every site through a fault proxy that injects
        // nothing, proving the proxy transparent with the whole suite.
        let proxy = std::env::var_os("POSTROOM_TEST_VIA_PROXY")
            .map(|_| FaultProxy::in_front_of(dovecot).expect("start pass-through proxy"));
        let port_override = proxy.as_ref().map(FaultProxy::port);
        let site = Site {
            dovecot,
            user,
            dir,
            proxy,
            port_override,
        };
        site.write_config("");
        site
    }

    /// Writes the config, with `extra` TOML appended.
    pub fn write_config(&self, extra: &str) {
        self.write_config_with("", &AGENTS, extra);
    }

    /// Writes the config with extra keys for `[daemon]`, the mailbox and the team, and extra
    /// TOML appended.
    pub fn write_config_sections(&self, daemon: &str, mailbox: &str, team: &str, extra: &str) {
        let port = self.port_override.unwrap_or(self.dovecot.port());
        let text = config_text(&ConfigParts {
            state_dir: &self.state_dir(),
            port,
            user: &self.user,
            password_file: &self.password_file(),
            server_extra: "command_timeout_secs = 10\n",
            mailbox_extra: mailbox,
            agents: &AGENTS,
            agent_extra: "",
            daemon_extra: daemon,
            team_extra: team,
            extra,
        });
        std::fs::write(self.password_file(), self.dovecot.password()).expect("password file");
        std::fs::write(self.config_path(), text).expect("config file");
    }

    /// Writes the config with `agent_extra` keys added to every `[[agent]]`.
    pub fn write_config_agents(&self, agent_extra: &str) {
        let port = self.port_override.unwrap_or(self.dovecot.port());
        let text = config_text(&ConfigParts {
            state_dir: &self.state_dir(),
            port,
            user: &self.user,
            password_file: &self.password_file(),
            server_extra: "command_timeout_secs = 10\n",
            mailbox_extra: "",
            agents: &AGENTS,
            agent_extra,
            daemon_extra: "",
            team_extra: "",
            extra: "",
        });
        std::fs::write(self.password_file(), self.dovecot.password()).expect("password file");
        std::fs::write(self.config_path(), text).expect("config file");
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
        let port = self.port_override.unwrap_or(self.dovecot.port());
        let server_extra = "command_timeout_secs = 10\n";
        self.write_config_full(port, server_extra, mailbox_extra, agents, extra);
    }

    /// Writes the config pointing at `port` on 127.0.0.1 (a [`FaultProxy`] rather than
    /// Dovecot), with extra `[[server]]` keys (which must include `command_timeout_secs`),
    /// extra `[[mailbox]]` keys, the given agents and `extra` TOML appended.
    pub fn write_config_full(
        &self,
        port: u16,
        server_extra: &str,
        mailbox_extra: &str,
        agents: &[(&str, &str)],
        extra: &str,
    ) {
        let text = config_text(&ConfigParts {
            state_dir: &self.state_dir(),
            port,
            user: &self.user,
            password_file: &self.password_file(),
            server_extra,
            mailbox_extra,
            agents,
            agent_extra: "",
            daemon_extra: "",
            team_extra: "",
            extra,
        });
        std::fs::write(self.password_file(), self.dovecot.password()).expect("password file");
        std::fs::write(self.config_path(), text).expect("config file");
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("postroom.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn password_file(&self) -> PathBuf {
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

/// Vendored real messages from the ham corpus (all its sub-folders), sorted by path.
pub fn ham(limit: usize) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ham");
    let mut files = Vec::new();
    files_under(&dir, &mut files);
    files.sort();
    // A limit above what is vendored means "all of it"; an empty result would make every test
    // that loads mail pass without testing anything.
    assert!(
        files.len() >= limit.min(300),
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

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for path in entries.map(|e| e.expect("dir entry").path()) {
        if path.is_dir() {
            files_under(&path, out);
        } else if path.is_file() && path.extension().is_none_or(|e| e != "md") {
            out.push(path);
        }
    }
}

/// What [`config_text`] needs to write a one-mailbox config.
pub struct ConfigParts<'a> {
    pub state_dir: &'a Path,
    /// The IMAP port on 127.0.0.1: Dovecot's, or a proxy's.
    pub port: u16,
    pub user: &'a str,
    pub password_file: &'a Path,
    /// Extra `[[server]]` keys; must set `command_timeout_secs`.
    pub server_extra: &'a str,
    pub mailbox_extra: &'a str,
    pub agents: &'a [(&'a str, &'a str)],
    /// Keys added to every `[[agent]]`.
    pub agent_extra: &'a str,
    /// Keys added to `[daemon]` and to the `support` team.
    pub daemon_extra: &'a str,
    pub team_extra: &'a str,
    pub extra: &'a str,
}

/// The config text of one site: one plain-text server on loopback, one mailbox of team
/// `support`, the given agents, fast folder polling and reconciliation.
pub fn config_text(parts: &ConfigParts<'_>) -> String {
    let mut text = format!(
        "[daemon]\nstate_dir = \"{state}\"\n{daemon_extra}\n\
         [[server]]\nname = \"dovecot\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         security = \"plain\"\n{server_extra}\n\
         [[mailbox]]\nname = \"support\"\nserver = \"dovecot\"\nlogin = \"{user}\"\n\
         password_file = \"{pw}\"\nteam = \"support\"\npoll_secs = 5\n\
         folder_poll_secs = 1\nreconcile_secs = 2\n{mailbox_extra}\n\
         [[team]]\nname = \"support\"\nagents = [\"alice\", \"bob\", \"zoe\"]\n{team_extra}\n",
        state = parts.state_dir.display(),
        daemon_extra = parts.daemon_extra,
        team_extra = parts.team_extra,
        port = parts.port,
        user = parts.user,
        pw = parts.password_file.display(),
        server_extra = parts.server_extra,
        mailbox_extra = parts.mailbox_extra,
    );
    for (id, name) in parts.agents {
        let extra = parts.agent_extra;
        text += &format!("\n[[agent]]\nid = \"{id}\"\nname = \"{name}\"\n{extra}\n");
    }
    text += parts.extra;
    text
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

/// The folder a Message-ID sits in, from a [`placement`] listing.
pub fn folder_of(all: &[(String, Option<String>)], id: &str) -> Option<String> {
    all.iter()
        .find(|(_, m)| m.as_deref() == Some(id))
        .map(|(f, _)| f.clone())
}
