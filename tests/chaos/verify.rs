//! The final checks of the chaos run, made from what the mailboxes and the SMTP listener hold;
//! the store is only compared with them.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Result;
use mail_parser::MessageParser;
use postroom::store::{EventKind, MessageState, Store};

use super::corpus::Mail;
use super::world::{agent_folder, clean, World, AGENTS, SENT};

/// Where a message was found: (mailbox index, wire folder name).
pub type Place = (usize, String);

/// What the people did during the run.
#[derive(Default)]
pub struct Deeds {
    /// Message-ID to the folder a person last dragged it to (wire name).
    pub dragged: HashMap<String, String>,
    /// Numbers of the messages an agent answered.
    pub replied: HashSet<usize>,
    /// One-message conversations delivered so far, with when: what a person may drag.
    pub delivered_singles: Vec<(usize, std::time::Instant)>,
}

/// Every managed folder of every mailbox: Message-ID to the places it was found.
pub async fn placement(world: &mut World) -> Result<HashMap<String, Vec<Place>>> {
    let mut folders = vec![
        "INBOX".to_string(),
        "Automated".into(),
        "Done".into(),
        SENT.into(),
    ];
    folders.extend(AGENTS.iter().map(|(_, name)| agent_folder(name)));
    let mut found: HashMap<String, Vec<Place>> = HashMap::new();
    for i in 0..world.users.len() {
        let client = world.client(i).await?;
        let existing = client.list_folders().await?;
        for folder in folders.iter().filter(|f| existing.contains(f)) {
            for (_, id) in client.message_ids(folder).await? {
                let id = clean(id.as_deref()).unwrap_or("<none>").to_string();
                found.entry(id).or_default().push((i, folder.clone()));
            }
        }
    }
    Ok(found)
}

/// True once every delivered message has left the inbox and nothing is missing.
pub fn settled(found: &HashMap<String, Vec<Place>>, mail: &[Mail]) -> bool {
    mail.iter().all(|m| {
        found
            .get(&m.id)
            .is_some_and(|places| places.iter().all(|(_, f)| f != "INBOX"))
    })
}

/// Every delivered message sits in exactly one folder of its own mailbox: the one a person
/// dragged it to, or else one agent's folder; every reply sits once in the sent folder; nothing
/// else is anywhere.
pub fn check_placement(found: &HashMap<String, Vec<Place>>, mail: &[Mail], deeds: &Deeds) {
    let mut wrong = Vec::new();
    for m in mail {
        let places = found.get(&m.id).cloned().unwrap_or_default();
        let ok = match (places.as_slice(), deeds.dragged.get(&m.id)) {
            ([(i, folder)], Some(target)) => *i == m.mailbox && folder == target,
            ([(i, folder)], None) => *i == m.mailbox && folder.starts_with("Assigned/"),
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "[q{}] {}: {places:?} (dragged: {:?})",
                m.n,
                m.id,
                deeds.dragged.get(&m.id)
            ));
        }
    }
    let known: HashSet<&str> = mail.iter().map(|m| m.id.as_str()).collect();
    for (id, places) in found {
        let reply = id.starts_with("reply-") && places.len() == 1 && places[0].1 == SENT;
        if !known.contains(id.as_str()) && !reply {
            wrong.push(format!("unexpected {id}: {places:?}"));
        }
    }
    let replies = found.keys().filter(|id| id.starts_with("reply-")).count();
    assert_eq!(replies, deeds.replied.len(), "replies in the sent folders");
    assert!(
        wrong.is_empty(),
        "{} misplaced:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A message and the one it replies to sit in the same agent's folder (one owner per
/// conversation), unless a person dragged either.
pub fn check_threads(
    found: &HashMap<String, Vec<Place>>,
    pairs: &[(String, String)],
    deeds: &Deeds,
) {
    let mut split = Vec::new();
    for (child, parent) in pairs {
        if deeds.dragged.contains_key(child) || deeds.dragged.contains_key(parent) {
            continue;
        }
        let (a, b) = (&found[child][0].1, &found[parent][0].1);
        if a != b {
            split.push(format!("{child} in {a}, its parent {parent} in {b}"));
        }
    }
    assert!(
        split.is_empty(),
        "{} threads split across owners:\n{}",
        split.len(),
        split.join("\n")
    );
}

/// The store agrees with the mailboxes: each delivered message was decided exactly once, is
/// recorded as filed where it was found, and nothing is left in quarantine (every delivered
/// message parses).
pub fn check_store(world: &World, found: &HashMap<String, Vec<Place>>, mail: &[Mail]) {
    let store = Store::open(&world.state_dir()).expect("open the store");
    let mut decided: BTreeMap<String, usize> = BTreeMap::new();
    for event in store.events().expect("events") {
        if matches!(
            event.kind,
            EventKind::Assigned | EventKind::FollowUp | EventKind::Left
        ) {
            *decided
                .entry(event.identity.unwrap_or_default())
                .or_default() += 1;
        }
    }
    let twice: Vec<&String> = decided
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, _)| i)
        .collect();
    let history: Vec<String> = store
        .events()
        .expect("events")
        .into_iter()
        .filter(|e| e.identity.as_ref().is_some_and(|i| twice.contains(&i)))
        .map(|e| {
            format!(
                "{} {:?} {} {:?} {:?}: {}",
                e.at, e.kind, e.mailbox, e.conversation, e.agent, e.detail
            )
        })
        .collect();
    assert!(
        twice.is_empty(),
        "decided more than once: {twice:?}\n{}",
        history.join("\n")
    );
    assert_eq!(decided.len(), mail.len(), "identities decided");
    let mut disagree = Vec::new();
    for i in 0..world.users.len() {
        let name = World::mailbox_name(i);
        for record in store.messages(&name).expect("messages") {
            let Some(id) = record.message_id.as_deref() else {
                continue;
            };
            let actual = found
                .get(id)
                .map(|p| postroom::imap::mutf7::decode(&p[0].1));
            let recorded = match &record.state {
                MessageState::Filed { folder } => Some(folder.clone()),
                _ => None,
            };
            if actual.is_none() || actual != recorded {
                disagree.push(format!(
                    "{name} {id}: store {:?}, mailbox {actual:?}",
                    record.state
                ));
            }
        }
    }
    assert!(
        disagree.is_empty(),
        "store and mailbox disagree:\n{}",
        disagree.join("\n")
    );
    let quarantined = store.quarantined(None).expect("quarantine");
    assert!(
        quarantined.is_empty(),
        "parseable mail in quarantine: {quarantined:?}"
    );
}

/// One escalation as received: its Message-ID, conversation token, level and the tag of the
/// message whose subject it quotes.
#[derive(Debug)]
pub struct Escalation {
    pub message_id: String,
    pub key: (String, String),
    pub tag: Option<usize>,
}

/// Every mail the SMTP listener accepted, parsed strictly.
pub fn escalations(world: &World) -> Vec<Escalation> {
    world
        .smtp
        .messages()
        .iter()
        .map(|raw| escalation_of(raw))
        .collect()
}

/// Escalations still waiting in the daemon's outbox (a retry not yet due): not lost, and sent
/// on a later tick. Read after the daemon stopped, since only one process may open the store.
pub fn queued(world: &World) -> Vec<Escalation> {
    let store = Store::open(&world.state_dir()).expect("open the store");
    let outbox = store.outbox().expect("read the outbox");
    outbox
        .iter()
        .filter(|m| m.state == postroom::store::OutboxState::Pending)
        .map(|m| escalation_of(&m.raw))
        .collect()
}

fn escalation_of(raw: &[u8]) -> Escalation {
    let message = MessageParser::default()
        .parse(raw)
        .expect("our escalation parses");
    let subject = message.subject().unwrap_or_default().to_string();
    let token = between(&subject, "[postroom ", "]").unwrap_or_default();
    let what = subject.split_once("] ").map(|(_, w)| w).unwrap_or_default();
    let level = between(what, "(level ", ")").unwrap_or("1");
    let kind = what.split(':').next().unwrap_or_default();
    let kind = kind.split(" (level").next().unwrap_or_default();
    Escalation {
        message_id: message.message_id().unwrap_or_default().to_string(),
        key: (token.to_string(), format!("{kind} level {level}")),
        tag: between(&subject, "[q", "]").and_then(|n| n.parse().ok()),
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let (_, rest) = text.split_once(open)?;
    rest.split_once(close).map(|(inner, _)| inner)
}

/// Tags of the messages that must have been escalated: conversations of one message on the
/// fast SLA that nobody answered or dragged.
pub fn breached(mail: &[Mail], deeds: &Deeds) -> Vec<usize> {
    mail.iter()
        .filter(|m| m.single && super::world::fast(m.n))
        .filter(|m| !deeds.replied.contains(&m.n) && !deeds.dragged.contains_key(&m.id))
        .map(|m| m.n)
        .collect()
}

/// No escalation twice, none missing. Plain SMTP leaves one window postroom cannot close: the
/// server accepted a mail (250) and the daemon died before recording it, or the 250 came after
/// our time-out. The mail is then sent again with the same bytes and Message-ID, which
/// Exchange's duplicate detection drops at delivery. So a repeat of the *same* Message-ID is
/// allowed at most once per SIGKILL; two different mails for one conversation and level never.
pub fn check_escalations(
    sent: &[Escalation],
    queued: &[Escalation],
    expected: &[usize],
    kills: usize,
) {
    let mut ids = HashSet::new();
    let dup_ids: Vec<_> = sent.iter().filter(|e| !ids.insert(&e.message_id)).collect();
    assert!(
        dup_ids.len() <= kills,
        "escalation Message-IDs sent twice more often than the daemon was killed ({kills}): {dup_ids:?}"
    );
    if !dup_ids.is_empty() {
        println!("same-Message-ID resends after kills: {dup_ids:?}");
    }
    let mut keys: HashMap<_, HashSet<&str>> = HashMap::new();
    for e in sent {
        keys.entry(&e.key)
            .or_default()
            .insert(e.message_id.as_str());
    }
    let two: Vec<_> = keys.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        two.is_empty(),
        "different mails for one conversation and level: {two:?}"
    );
    // The quoted subject is the conversation's first message, whose rule chose its SLA.
    let slow: Vec<_> = sent
        .iter()
        .filter(|e| e.tag.is_none_or(|n| !super::world::fast(n)))
        .collect();
    assert!(slow.is_empty(), "escalated on the one-day SLA: {slow:?}");
    // "None missing" means none lost: a mail refused during the SMTP outage may still be
    // waiting out its back-off in the outbox when the run ends, and is sent later.
    let tags: HashSet<usize> = sent.iter().chain(queued).filter_map(|e| e.tag).collect();
    let missing: Vec<_> = expected.iter().filter(|n| !tags.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "breached but neither escalated nor waiting in the outbox: {missing:?}"
    );
    if !queued.is_empty() {
        println!(
            "{} escalations still waiting in the outbox for a retry",
            queued.len()
        );
    }
}
