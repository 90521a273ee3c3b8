//! The set-up and the final checks shared by the fault tests.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use postroom::store::EventKind;
use postroom_testkit::{Daemon, FaultProxy, Flavor, ImapClient};

use crate::common::{placement, Site, AGENTS};

/// The command time-out the fault tests give the daemon: short, so a stall is detected within
/// the test's budget, and long enough for Dovecot on a loaded two-core machine.
pub const COMMAND_TIMEOUT_SECS: u64 = 3;

/// How long any test waits for mail to be filed after the fault has passed.
pub const FILE_LIMIT: Duration = Duration::from_secs(40);

/// One mailbox whose daemon talks to Dovecot through a [`FaultProxy`].
pub struct Rig {
    pub site: Site,
    pub proxy: FaultProxy,
}

impl Rig {
    /// A fresh mailbox behind a fresh proxy, with the short command time-out.
    pub fn new(flavor: Flavor, prefix: &str) -> Rig {
        Self::with_mailbox(flavor, prefix, "")
    }

    /// Like [`Rig::new`] with extra `[[mailbox]]` keys such as `fetch_batch = 10`.
    pub fn with_mailbox(flavor: Flavor, prefix: &str, mailbox_extra: &str) -> Rig {
        let site = Site::new(flavor, prefix);
        let proxy = FaultProxy::in_front_of(site.dovecot).expect("start the fault proxy");
        let server_extra = format!("command_timeout_secs = {COMMAND_TIMEOUT_SECS}\n");
        site.write_config_full(proxy.port(), &server_extra, mailbox_extra, &AGENTS, "");
        Rig { site, proxy }
    }

    /// Commands the daemon sent whose text starts with `prefix`.
    pub fn count_commands(&self, prefix: &str) -> usize {
        self.proxy
            .commands()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }
}

/// Stops the daemon as a service manager would and insists on a clean exit.
pub async fn stop(daemon: &mut Daemon) {
    daemon.sigterm().expect("SIGTERM");
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("daemon exit");
    assert!(status.success(), "{status}\n{}", daemon.output());
}

/// Appends `n` small messages `<prefix>-<i>@c.example.test`; returns their Message-IDs.
pub async fn deliver(client: &mut ImapClient, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}@c.example.test");
        let raw = crate::common::mail(&id, &format!("Question {prefix} {i}"), None);
        client.append("INBOX", &raw).await.expect("append");
        ids.push(id);
    }
    ids
}

/// Every Message-ID in `expected` sits in exactly one agent folder; nothing else is anywhere.
pub async fn assert_filed_once(client: &mut ImapClient, expected: &[String]) {
    let all = placement(client).await.expect("placement");
    let mut seen: HashMap<&str, Vec<&str>> = HashMap::new();
    for (folder, id) in &all {
        let id = id.as_deref().expect("every test message has a Message-ID");
        seen.entry(id).or_default().push(folder);
    }
    let wrong: Vec<_> = seen
        .iter()
        .filter(|(_, f)| f.len() != 1 || !f[0].starts_with("Assigned/"))
        .collect();
    assert!(
        wrong.is_empty(),
        "not in exactly one agent folder: {wrong:?}"
    );
    for id in expected {
        assert!(seen.contains_key(id.as_str()), "{id} is nowhere: {all:?}");
    }
    assert_eq!(seen.len(), expected.len(), "unexpected messages: {all:?}");
}

/// Each identity was decided exactly once over the store's whole history, and `expected`
/// identities were decided. Opens the store, so the daemon must have stopped.
pub fn assert_decided_once(site: &Site, expected: usize) {
    assert_decided_once_in(&site.state_dir(), expected);
}

/// [`assert_decided_once`] for a state directory that is not a [`Site`]'s.
pub fn assert_decided_once_in(state_dir: &Path, expected: usize) {
    let decisions = decisions(state_dir);
    let repeated: Vec<_> = decisions.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "decided more than once: {repeated:?}");
    assert_eq!(decisions.len(), expected, "identities decided");
}

/// How often each identity was decided (assigned, followed up or left).
pub fn decisions(state_dir: &Path) -> BTreeMap<String, usize> {
    let store = postroom::store::Store::open(state_dir).expect("open store");
    let mut decisions: BTreeMap<String, usize> = BTreeMap::new();
    for event in store.events().expect("events") {
        let decided = matches!(
            event.kind,
            EventKind::Assigned | EventKind::FollowUp | EventKind::Left
        );
        if decided {
            *decisions
                .entry(event.identity.expect("identity"))
                .or_default() += 1;
        }
    }
    decisions
}

/// The gaps between consecutive accepted connections.
pub fn gaps(accepted: &[Instant]) -> Vec<Duration> {
    accepted.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Runs `postroom status` on the site's config and returns its stdout.
pub fn status(site: &Site) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_postroom"))
        .arg("--config")
        .arg(site.config_path())
        .arg("status")
        .output()
        .expect("run postroom status");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
