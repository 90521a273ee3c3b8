//! The README's first command: postroom's main job on real mail, end to end.
//!
//! Starts a throwaway Dovecot on loopback, loads real messages (the vendored SpamAssassin ham in
//! `tests/data/ham`) into a shared mailbox in arrival order, runs the real `postroom run` binary,
//! delivers more mail while it watches, and then reads the mailbox back over IMAP to show where
//! every message went. The checks are made against the server, not postroom's own records.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postroom::imap::mutf7;
use postroom::message::{self, Envelope};
use postroom_testkit::{wait_for, Daemon, Dovecot, Flavor, ImapClient};

const AGENTS: [(&str, &str); 4] = [
    ("alice", "Alice Example"),
    ("bob", "Bob Jürgen"),
    ("zoe", "Zoë Lang"),
    ("dmitri", "Dmitri Ivanov"),
];

/// The share of messages that arrive while postroom is already watching.
const LIVE_SHARE: usize = 5;

struct Mail {
    raw: Vec<u8>,
    envelope: Envelope,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("demo failed: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> Result<bool> {
    let mail = load_corpus()?;
    let dovecot = Dovecot::start(Flavor::Standard).context("start Dovecot")?;
    let user = "support";
    println!("postroom demo");
    println!(
        "  Dovecot on 127.0.0.1:{}, shared mailbox \"{user}\"",
        dovecot.port()
    );
    let mut client = ImapClient::connect(&dovecot, user).await?;
    let live = mail.len() / LIVE_SHARE;
    let (backlog, later) = mail.split_at(mail.len() - live);
    for m in backlog {
        client.append("INBOX", &m.raw).await?;
    }
    println!(
        "  loaded {} real messages into INBOX (SpamAssassin ham corpus; see tests/data/SOURCES.md)",
        backlog.len()
    );
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &dovecot, user)?;
    let started = Instant::now();
    let mut daemon = Daemon::spawn(
        postroom_binary()?,
        ["--config", &config, "run"],
        [("RUST_LOG", "postroom=info")],
    )?;
    wait_for(
        "postroom to catch up",
        Duration::from_secs(120),
        Duration::from_millis(100),
        async || Ok(daemon.output().contains("watching for new mail")),
    )
    .await
    .with_context(|| daemon.output())?;
    println!(
        "  postroom caught up with the backlog in {:.1} s and is watching (IDLE)",
        started.elapsed().as_secs_f64()
    );
    for m in later {
        client.append("INBOX", &m.raw).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  delivered {} more messages while postroom watched",
        later.len()
    );
    wait_until_filed(&mut client, mail.len())
        .await
        .with_context(|| daemon.output())?;
    println!(
        "  all {} messages filed, {:.1} s after start",
        mail.len(),
        started.elapsed().as_secs_f64()
    );
    daemon.sigterm()?;
    let status = daemon.wait_exit(Duration::from_secs(30)).await?;
    println!("  postroom stopped on SIGTERM ({status})");
    report(&mut client, &mail, dir.path()).await
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ham")
}

/// Reads the vendored messages and sorts them by their Date header, so they reach the inbox in
/// the order they were once sent and a reply never arrives before the message it answers.
fn load_corpus() -> Result<Vec<Mail>> {
    let dir = corpus_dir();
    let mut mail = Vec::new();
    let mut files = Vec::new();
    collect_files(&dir, &mut files)?;
    for path in files {
        let raw = std::fs::read(&path)?;
        if let Ok(envelope) = message::parse(&raw, None) {
            mail.push(Mail { raw, envelope });
        }
    }
    mail.sort_by_key(|m| m.envelope.date);
    anyhow::ensure!(!mail.is_empty(), "no messages in {}", dir.display());
    Ok(mail)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn postroom_binary() -> Result<PathBuf> {
    // The example runs from target/<profile>/examples/; the binary sits one level up.
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locate the target directory")?;
    let binary = dir.join("postroom");
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: run `cargo build` first",
        binary.display()
    );
    Ok(binary)
}

fn write_config(dir: &Path, dovecot: &Dovecot, user: &str) -> Result<String> {
    let password = dir.join("support.secret");
    std::fs::write(&password, dovecot.password())?;
    let mut text =
        format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[[server]]\nname = \"dovecot\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"plain\"\n\n[[mailbox]]\nname = \"support\"\nserver = \"dovecot\"\n\
         login = \"{user}\"\npassword_file = \"{}\"\nteam = \"support\"\n\n[[team]]\n\
         name = \"support\"\nagents = [{}]\n",
        dir.join("state").display(),
        dovecot.port(),
        password.display(),
        AGENTS.iter().map(|(id, _)| format!("\"{id}\"")).collect::<Vec<_>>().join(", "),
    );
    for (id, name) in AGENTS {
        text += &format!("\n[[agent]]\nid = \"{id}\"\nname = \"{name}\"\n");
    }
    let path = dir.join("postroom.toml");
    std::fs::write(&path, text)?;
    Ok(path.to_string_lossy().into_owned())
}

fn folders() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = AGENTS
        .iter()
        .map(|(_, name)| {
            (
                format!("Assigned/{name}"),
                format!("Assigned/{}", mutf7::encode(name)),
            )
        })
        .collect();
    out.push(("Automated".into(), "Automated".into()));
    out.push(("INBOX".into(), "INBOX".into()));
    out
}

/// Message-ID -> folder (display name), for every message in the managed folders.
async fn where_is(client: &mut ImapClient) -> Result<Vec<(String, Option<String>)>> {
    let existing = client.list_folders().await?;
    let mut out = Vec::new();
    for (name, wire) in folders() {
        if existing.contains(&wire) {
            for (_, id) in client.message_ids(&wire).await? {
                out.push((name.clone(), id.as_deref().and_then(message::clean_id)));
            }
        }
    }
    Ok(out)
}

async fn wait_until_filed(client: &mut ImapClient, total: usize) -> Result<()> {
    wait_for(
        "every message filed",
        Duration::from_secs(120),
        Duration::from_millis(200),
        async || {
            let all = where_is(client).await?;
            Ok(all.len() == total && all.iter().all(|(f, _)| f != "INBOX"))
        },
    )
    .await
}

async fn report(client: &mut ImapClient, mail: &[Mail], state: &Path) -> Result<bool> {
    let all = where_is(client).await?;
    let mut per_folder: BTreeMap<&str, usize> = BTreeMap::new();
    let mut folder_of: HashMap<String, Vec<String>> = HashMap::new();
    for (folder, id) in &all {
        *per_folder.entry(folder).or_default() += 1;
        if let Some(id) = id {
            folder_of
                .entry(id.clone())
                .or_default()
                .push(folder.clone());
        }
    }
    let owners = conversations_per_owner(&state.join("state"))?;
    println!("\nwhere every message went (read back from the server):");
    println!(
        "  {:<28} {:>8} {:>14}",
        "folder", "messages", "conversations"
    );
    for (name, _) in folders() {
        let agent = AGENTS
            .iter()
            .find(|(_, n)| format!("Assigned/{n}") == name)
            .map(|(id, _)| *id);
        let convs = agent
            .map(|a| owners.get(a).copied().unwrap_or(0).to_string())
            .unwrap_or_default();
        println!(
            "  {:<28} {:>8} {:>14}",
            name,
            per_folder.get(name.as_str()).copied().unwrap_or(0),
            convs
        );
    }
    println!("\nchecks:");
    let mut ok = true;
    ok &= check(
        folder_of.len() == mail.len() && folder_of.values().all(|f| f.len() == 1),
        &format!(
            "every message is in exactly one folder ({} of {})",
            folder_of.len(),
            mail.len()
        ),
    );
    ok &= check(
        !per_folder.contains_key("INBOX"),
        "none is left in the inbox",
    );
    let loads: Vec<usize> = AGENTS
        .iter()
        .map(|(id, _)| owners.get(*id).copied().unwrap_or(0))
        .collect();
    let spread = loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0);
    ok &= check(
        spread <= 1,
        &format!("agents within one conversation of each other ({loads:?})"),
    );
    let (replies, with_owner) = replies_with_owner(mail, &folder_of);
    ok &= check(
        replies == with_owner,
        &format!("{with_owner} of {replies} replies sit with their thread's owner"),
    );
    Ok(ok)
}

fn check(pass: bool, what: &str) -> bool {
    println!("  [{}] {what}", if pass { "ok" } else { "FAILED" });
    pass
}

/// Replies whose parent is in the set, and how many of them share the parent's folder. A parent
/// filed as automatic mail has no owner to follow, so it does not count.
fn replies_with_owner(mail: &[Mail], folder_of: &HashMap<String, Vec<String>>) -> (usize, usize) {
    let known: HashSet<&str> = mail
        .iter()
        .filter_map(|m| m.envelope.message_id.as_deref())
        .collect();
    let (mut replies, mut with_owner) = (0, 0);
    for m in mail {
        let Some(own) = m
            .envelope
            .message_id
            .as_ref()
            .and_then(|id| folder_of.get(id))
        else {
            continue;
        };
        let parent = m
            .envelope
            .in_reply_to
            .iter()
            .chain(m.envelope.references.iter().rev())
            .find(|id| known.contains(id.as_str()));
        let Some(parent_folder) = parent.and_then(|p| folder_of.get(p)) else {
            continue;
        };
        if parent_folder[0] == "Automated" {
            continue;
        }
        replies += 1;
        if own[0] == parent_folder[0] {
            with_owner += 1;
        } else {
            println!(
                "    reply {:?} ({:?}) is in {}, its parent in {}",
                m.envelope.subject, m.envelope.message_id, own[0], parent_folder[0]
            );
        }
    }
    (replies, with_owner)
}

fn conversations_per_owner(state: &Path) -> Result<HashMap<String, usize>> {
    let store = postroom::store::Store::open(state)?;
    let mut owners = HashMap::new();
    for conv in store.conversations(Some("support"))? {
        if let Some(owner) = conv.owner {
            *owners.entry(owner).or_default() += 1;
        }
    }
    Ok(owners)
}
