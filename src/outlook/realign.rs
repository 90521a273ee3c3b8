//! Keeping a conversation in one folder: after its owner changes, its other messages follow.
//!
//! Ownership belongs to the conversation, and the agent's folder shows it. When a person drags
//! one message to a colleague, an admin runs `assign`, a follow-up goes to someone else because
//! the owner is away, or two conversations are merged, the store puts the conversation in its
//! realign set (see `store::merge`). Here its messages still filed in another agent's folder are
//! moved to the owner's. Messages in Done, the inbox or any folder postroom does not manage are
//! where a person put them and stay there.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use tracing::info;

use super::{managed_folders, Role, Watcher};
use crate::decide::agent_folder;
use crate::imap::Connection;
use crate::store::{ConversationState, Event, EventKind, MessageRecord, MessageState};

impl Watcher<'_> {
    /// Moves the messages of conversations that changed owner into the owner's folder. Leaves
    /// the inbox selected when it selected anything else. Returns how many messages moved.
    pub async fn realign(&self, conn: &mut Connection) -> Result<usize> {
        let name = &self.mailbox.name;
        let due = self.store.misplaced(name)?;
        if due.is_empty() {
            return Ok(0);
        }
        let agent_folders: HashMap<String, String> = managed_folders(self.mailbox, self.config)
            .into_iter()
            .filter_map(|m| match m.role {
                Role::Agent(agent) => Some((m.folder, agent)),
                _ => None,
            })
            .collect();
        // (from, to, owner) -> records to move.
        let mut moves: BTreeMap<(String, String, String), Vec<MessageRecord>> = BTreeMap::new();
        // Conversations with a message decided but not yet moved stay on the set: that message
        // is filed by its own path, maybe into the previous owner's folder, and gathered next.
        let mut unsettled = std::collections::HashSet::new();
        for entry in &due {
            let id = &entry.conversation;
            let Some(conv) = self.store.conversation(id)? else {
                continue;
            };
            let Some(owner) = conv.owner.clone() else {
                continue;
            };
            if conv.state != ConversationState::Open {
                continue;
            }
            let target = agent_folder(self.mailbox, self.config, &owner);
            if !agent_folders.contains_key(&target) {
                // The owner has no folder here (no longer in the team): nowhere to gather.
                continue;
            }
            for record in self.store.conversation_messages(&conv.id)? {
                if matches!(record.state, MessageState::Pending { .. }) {
                    unsettled.insert(id.clone());
                }
                let MessageState::Filed { folder } = &record.state else {
                    continue;
                };
                if *folder != target && agent_folders.contains_key(folder) {
                    let key = (folder.clone(), target.clone(), owner.clone());
                    moves.entry(key).or_default().push(record);
                }
            }
        }
        let mut moved = 0;
        for ((from, to, owner), records) in &moves {
            moved += self.gather(conn, from, to, owner, records).await?;
        }
        if !moves.is_empty() {
            conn.select(&self.mailbox.inbox).await?;
        }
        for entry in due.iter().filter(|e| !unsettled.contains(&e.conversation)) {
            self.store.realigned(name, entry)?;
        }
        self.store.flush()?;
        Ok(moved)
    }

    /// Moves `records` from `from` to `to`, the folder of `owner`, and records their new place.
    /// A message no longer in `from` was moved by someone meanwhile; the folder poll and the
    /// reconciliation see where it went.
    async fn gather(
        &self,
        conn: &mut Connection,
        from: &str,
        to: &str,
        owner: &str,
        records: &[MessageRecord],
    ) -> Result<usize> {
        let info = conn.select(from).await?;
        let listing = conn.message_ids().await?;
        let mut uids = Vec::new();
        let mut found = Vec::new();
        for record in records {
            let Some(id) = record.message_id.as_deref() else {
                continue;
            };
            let matching: Vec<u32> = listing
                .iter()
                .filter(|(_, m)| m.as_deref() == Some(id))
                .map(|(uid, _)| *uid)
                .collect();
            if !matching.is_empty() {
                uids.extend(matching);
                found.push(record);
            }
        }
        if uids.is_empty() {
            return Ok(0);
        }
        if info.keywords {
            let all = crate::worker::owner_keywords(self.config, self.mailbox);
            let keyword = crate::worker::owner_keyword(owner);
            conn.set_owner_keyword(&uids, &keyword, &all).await?;
        }
        conn.move_uids(&uids, to).await?;
        info!(mailbox = %self.mailbox.name, from, to, count = found.len(),
            "moved to the owner's folder with the rest of their conversation");
        for record in found.iter().copied() {
            let event = Event {
                at: self.now,
                kind: EventKind::Reconciled,
                mailbox: self.mailbox.name.clone(),
                conversation: Some(record.conversation.clone()),
                identity: Some(record.identity.clone()),
                agent: Some(owner.to_string()),
                detail: format!("moved from {from} to {to}, with the rest of its conversation"),
            };
            let here = MessageState::Filed {
                folder: to.to_string(),
            };
            self.store.relocate(
                &self.mailbox.name,
                &record.identity,
                here,
                Some(owner.to_string()),
                event,
            )?;
        }
        Ok(found.len())
    }
}
