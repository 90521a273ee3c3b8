//! The mail of the chaos run: variants of the vendored ham corpus, each tagged so that the
//! final checks can name it in the mailbox and in escalation mail.
//!
//! Variant `v` prefixes every id in Message-ID, In-Reply-To and References with `x<v>.`, so each
//! variant is a separate, still consistent set of threads, and puts `[q<n>]` at the start of the
//! Subject, so an escalation quoting the subject names the message it is about.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// One message as the test delivers it.
pub struct Mail {
    /// Its number, as in the subject tag `[q<n>]`.
    pub n: usize,
    /// The mailbox it goes to, by index.
    pub mailbox: usize,
    /// Its Message-ID as postroom cleans it.
    pub id: String,
    /// The bytes appended to the inbox.
    pub raw: Vec<u8>,
    /// True when it neither refers to nor is referred to by another delivered message, so it
    /// is a conversation of its own whatever order the mail arrives in.
    pub single: bool,
}

/// Every vendored ham message, sorted by path.
fn ham() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ham");
    let mut files = Vec::new();
    walk(&dir, &mut files);
    files.sort();
    assert!(files.len() >= 300, "only {} ham messages", files.len());
    files
        .iter()
        .map(|p| std::fs::read(p).expect("read ham"))
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the ham directory") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_none_or(|e| e != "md") {
            out.push(path);
        }
    }
}

/// `raw` as variant `v` tagged `[q<n>]`; `None` when it has no header/body split.
fn variant(raw: &[u8], v: usize, n: usize) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(raw);
    let split = text.find("\n\n")?;
    let (head, body) = text.split_at(split);
    let mut in_ids = false;
    let mut tagged = false;
    let mut lines = Vec::new();
    for line in head.split('\n') {
        let lower = line.to_ascii_lowercase();
        if !line.starts_with([' ', '\t']) {
            in_ids = ["message-id:", "in-reply-to:", "references:"]
                .iter()
                .any(|h| lower.starts_with(h));
        }
        if in_ids {
            lines.push(line.replace('<', &format!("<x{v}.")));
        } else if !tagged && lower.starts_with("subject:") {
            tagged = true;
            lines.push(format!(
                "Subject: [q{n}] {}",
                line["subject:".len()..].trim_start()
            ));
        } else {
            lines.push(line.to_owned());
        }
    }
    if !tagged {
        lines.insert(0, format!("Subject: [q{n}]"));
    }
    Some(format!("{}{body}", lines.join("\n")).into_bytes())
}

/// At least `want` messages spread over `mailboxes` mailboxes, each thread in one mailbox. Only messages that parse, carry a
/// Message-ID and are not automatic are kept, so every one is work for an agent.
pub fn build(want: usize, mailboxes: usize) -> Vec<Mail> {
    let originals = ham();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut refs: HashMap<String, Vec<String>> = HashMap::new();
    'variants: for v in 0.. {
        for (i, raw) in originals.iter().enumerate() {
            if out.len() >= want {
                break 'variants;
            }
            let n = out.len();
            let Some(raw) = variant(raw, v, n) else {
                continue;
            };
            let Ok(envelope) = postroom::message::parse(&raw, None) else {
                continue;
            };
            let Some(id) = envelope.message_id.clone() else {
                continue;
            };
            let work = envelope.automated == postroom::message::Automated::No;
            if !work || !seen.insert(id.clone()) {
                continue;
            }
            let linked: Vec<String> = envelope
                .in_reply_to
                .iter()
                .chain(&envelope.references)
                .cloned()
                .collect();
            refs.insert(id.clone(), linked);
            out.push(Mail {
                n,
                mailbox: (i + v) % mailboxes,
                id,
                raw,
                single: false,
            });
        }
    }
    mark_singles(&mut out, &refs);
    same_mailbox_per_thread(&mut out, &refs, mailboxes);
    out
}

/// Puts every message of a thread (messages linked by In-Reply-To or References, directly or
/// not) into the mailbox of the thread's first message: conversations never span mailboxes.
fn same_mailbox_per_thread(mail: &mut [Mail], refs: &HashMap<String, Vec<String>>, boxes: usize) {
    let index: HashMap<String, usize> = mail
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.clone(), i))
        .collect();
    let mut parent: Vec<usize> = (0..mail.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, m) in mail.iter().enumerate() {
        for id in &refs[&m.id] {
            if let Some(&j) = index.get(id) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let first: Vec<usize> = (0..mail.len()).map(|i| root(&mut parent, i)).collect();
    let homes: Vec<usize> = first.iter().map(|&r| mail[r].mailbox).collect();
    for (m, home) in mail.iter_mut().zip(homes) {
        m.mailbox = home % boxes;
    }
}

fn mark_singles(mail: &mut [Mail], refs: &HashMap<String, Vec<String>>) {
    let delivered: HashSet<&str> = mail.iter().map(|m| m.id.as_str()).collect();
    let referenced: HashSet<&str> = refs
        .values()
        .flatten()
        .map(String::as_str)
        .filter(|id| delivered.contains(id))
        .collect();
    let singles: HashSet<String> = mail
        .iter()
        .filter(|m| {
            !referenced.contains(m.id.as_str())
                && refs[&m.id].iter().all(|r| !delivered.contains(r.as_str()))
        })
        .map(|m| m.id.clone())
        .collect();
    for m in mail.iter_mut() {
        m.single = singles.contains(&m.id);
    }
}

/// Pairs (message, the delivered message it replies to) within one mailbox: after the run both
/// must sit in the same agent's folder unless a person moved one.
pub fn thread_pairs(mail: &[Mail]) -> Vec<(String, String)> {
    let ids: HashSet<&str> = mail.iter().map(|m| m.id.as_str()).collect();
    let mut pairs = Vec::new();
    for m in mail {
        let envelope = postroom::message::parse(&m.raw, None).expect("kept mail parses");
        if let Some(parent) = envelope
            .in_reply_to
            .iter()
            .find(|p| ids.contains(p.as_str()))
        {
            pairs.push((m.id.clone(), parent.clone()));
        }
    }
    pairs
}

/// Pairs (message, a delivered message it names in In-Reply-To or References): the order the
/// mail must arrive in for a thread to stay one conversation.
pub fn links(mail: &[Mail]) -> Vec<(String, String)> {
    let ids: HashSet<&str> = mail.iter().map(|m| m.id.as_str()).collect();
    let mut pairs = Vec::new();
    for m in mail {
        let envelope = postroom::message::parse(&m.raw, None).expect("kept mail parses");
        for id in envelope.in_reply_to.iter().chain(&envelope.references) {
            if ids.contains(id.as_str()) && *id != m.id {
                pairs.push((m.id.clone(), id.clone()));
            }
        }
    }
    pairs
}

/// An agent's reply to `mail`, as Outlook saves it in the shared mailbox's sent folder.
pub fn reply(mail: &Mail) -> Vec<u8> {
    format!(
        "From: Alice Example <alice@ourco.example.test>\r\nTo: customer@example.test\r\n\
         Subject: Re: [q{n}] answered\r\nMessage-ID: <reply-{n}@ourco.example.test>\r\n\
         In-Reply-To: <{id}>\r\nReferences: <{id}>\r\nDate: {date}\r\n\r\nThanks, done.\r\n",
        n = mail.n,
        id = mail.id,
        date = chrono::Utc::now().to_rfc2822(),
    )
    .into_bytes()
}
