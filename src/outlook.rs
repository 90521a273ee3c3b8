//! Picking up what people do in Outlook: drags between folders become postroom's truth.
//!
//! Agents never open postroom. They drag a message to a colleague's folder (a reassignment), to
//! `Done` (a close), or back to the inbox (route it again), or they delete it. The mailbox is the
//! visible truth, so what is found there wins over the store.
//!
//! Watching costs no extra connection: between IDLEs the worker asks STATUS of each managed
//! folder (cheap; one LIST-STATUS for all of them where the server has it), and only a folder
//! whose UIDNEXT moved is selected and its new messages read.
//! Removals leave no new UID anywhere postroom looks (a delete, a move to an unmanaged folder),
//! so [`Watcher::reconcile`] compares each folder's Message-IDs with the store on start and on a
//! schedule.

mod realign;

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use tracing::{debug, info, warn};

use crate::config::{Config, MailboxConfig};
use crate::imap::Connection;
use crate::message::{self, Envelope};
use crate::store::{
    Commit, ConversationState, Event, EventKind, FolderSync, MessageRecord, MessageState, Store,
};

/// What a managed folder means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `Assigned/<name>`: the agent with this id owns what is in it.
    Agent(String),
    /// Finished conversations.
    Done,
    /// Automatic mail, nobody's work.
    Automated,
    /// The shared mailbox's sent items: replies from the team, which stop SLA clocks.
    Sent,
}

/// A folder postroom watches, with its decoded name.
#[derive(Debug, Clone)]
pub struct Managed {
    /// `/`-separated, decoded.
    pub folder: String,
    /// What a message in it means.
    pub role: Role,
}

/// The managed folders of a mailbox: one per agent who can own its work, Done, Automated, and
/// the sent folder when configured.
pub fn managed_folders(mailbox: &MailboxConfig, config: &Config) -> Vec<Managed> {
    let mut out: Vec<Managed> = config
        .mailbox_agents(mailbox)
        .into_iter()
        .map(|agent| Managed {
            folder: format!("{}/{}", mailbox.assigned_root, agent.name),
            role: Role::Agent(agent.id.clone()),
        })
        .collect();
    out.push(Managed {
        folder: mailbox.done_folder.clone(),
        role: Role::Done,
    });
    out.push(Managed {
        folder: mailbox.automated_folder.clone(),
        role: Role::Automated,
    });
    if let Some(sent) = &mailbox.sent_folder {
        out.push(Managed {
            folder: sent.clone(),
            role: Role::Sent,
        });
    }
    out
}

/// Each folder's STATUS at a full reconcile, in folder order: see [`Watcher::reconcile`].
pub type Snapshot = Vec<(String, crate::imap::FolderInfo)>;

/// What one folder poll found.
#[derive(Debug, Clone)]
pub struct Polled {
    /// How many arrivals in managed folders were examined.
    pub examined: usize,
    /// The inbox's UIDNEXT, UIDVALIDITY and count, where the poll's LIST-STATUS answered for
    /// it; `None` on servers without LIST-STATUS (Exchange).
    pub inbox: Option<crate::imap::FolderInfo>,
}

/// Turns what is found in managed folders into store updates for one mailbox.
pub struct Watcher<'a> {
    /// The mailbox's config.
    pub mailbox: &'a MailboxConfig,
    /// The whole config, for agent names.
    pub config: &'a Config,
    /// The store.
    pub store: &'a Store,
    /// The current time.
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Watcher<'_> {
    /// Reads new arrivals in every managed folder whose UIDNEXT moved. Leaves the inbox
    /// selected again if anything else was selected. Returns how many arrivals were examined,
    /// and the inbox's state where the server told it in the same command (LIST-STATUS).
    pub async fn poll(&self, conn: &mut Connection) -> Result<Polled> {
        let mut examined = 0;
        let managed_all = managed_folders(self.mailbox, self.config);
        let names: Vec<String> = managed_all.iter().map(|m| m.folder.clone()).collect();
        let (statuses, inbox) = conn
            .statuses_with_selected(&names, &self.mailbox.inbox)
            .await?;
        for (managed, status) in managed_all.into_iter().zip(statuses) {
            let previous = self
                .store
                .folder_sync(&self.mailbox.name, &managed.folder)?;
            let from = match previous {
                Some(p) if p.uid_validity == status.uid_validity => p.uid_next,
                _ => 1,
            };
            let next = status.uid_next.unwrap_or(0);
            if next <= from {
                continue;
            }
            debug!(mailbox = %self.mailbox.name, folder = %managed.folder, from, next, "new arrivals in a managed folder");
            let info = conn.select(&managed.folder).await?;
            let (uids, unanswered) = self.arrivals(conn, &managed, from).await?;
            examined += uids.len();
            if let (Role::Agent(agent), true, false) =
                (&managed.role, info.keywords, uids.is_empty())
            {
                // A person's drag carries the previous owner's keyword along; the folder says
                // who owns it now.
                let all = crate::worker::owner_keywords(self.config, self.mailbox);
                let owner = crate::worker::owner_keyword(agent);
                conn.set_owner_keyword(&uids, &owner, &all).await?;
            }
            // A message the server listed but did not return is read again next time; the
            // sync point never passes what was not examined.
            let sync = FolderSync {
                uid_validity: status.uid_validity,
                uid_next: unanswered.map_or(next, |uid| uid.min(next)),
            };
            self.store
                .set_folder_sync(&self.mailbox.name, &managed.folder, &sync)?;
        }
        if examined > 0 {
            conn.select(&self.mailbox.inbox).await?;
        }
        Ok(Polled { examined, inbox })
    }

    /// Examines every message from UID `from` on; returns their UIDs and the lowest UID the
    /// server listed but returned no data for (expunged meanwhile, or a response lost).
    async fn arrivals(
        &self,
        conn: &mut Connection,
        managed: &Managed,
        from: u32,
    ) -> Result<(Vec<u32>, Option<u32>)> {
        let uids = conn.uids_from(from).await?;
        let mut answered = HashSet::with_capacity(uids.len());
        for chunk in uids.chunks(self.mailbox.fetch_batch as usize) {
            for fetched in conn
                .fetch_for_routing(chunk, self.mailbox.body_fetch_bytes)
                .await?
            {
                answered.insert(fetched.uid);
                match message::parse(&fetched.raw, fetched.size) {
                    Ok(envelope) => self.found(managed, &envelope, fetched.internal_date)?,
                    Err(err) => warn!(mailbox = %self.mailbox.name, folder = %managed.folder,
                        uid = fetched.uid, "unreadable message in a managed folder: {err}"),
                }
            }
        }
        let unanswered = uids.iter().copied().find(|uid| !answered.contains(uid));
        if let Some(uid) = unanswered {
            debug!(mailbox = %self.mailbox.name, folder = %managed.folder, uid,
                "listed but not returned; read again at the next poll");
        }
        Ok((uids, unanswered))
    }

    /// A message is in `managed`: make the store agree.
    fn found(
        &self,
        managed: &Managed,
        envelope: &Envelope,
        arrived: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<()> {
        if managed.role == Role::Sent {
            return self.response(envelope, arrived);
        }
        let Some(record) = self.store.message(&self.mailbox.name, &envelope.identity)? else {
            return self.adopt(managed, envelope, arrived);
        };
        let here = MessageState::Filed {
            folder: managed.folder.clone(),
        };
        let ours = record.state == here
            || record.state
                == MessageState::Pending {
                    folder: Some(managed.folder.clone()),
                };
        if ours {
            if record.state != here {
                let event = self.event(EventKind::Filed, &record, "move confirmed in the mailbox");
                self.store.relocate(
                    &self.mailbox.name,
                    &record.identity,
                    here,
                    record.owner,
                    event,
                )?;
            }
            return Ok(());
        }
        self.moved_by_person(managed, record, here)
    }

    fn moved_by_person(
        &self,
        managed: &Managed,
        record: MessageRecord,
        here: MessageState,
    ) -> Result<()> {
        if record.conversation.is_empty() {
            return self.made_work(managed, record, here);
        }
        let name = &self.mailbox.name;
        let conv = self.store.conversation(&record.conversation)?;
        let previous = conv.as_ref().and_then(|c| c.owner.clone());
        match &managed.role {
            Role::Agent(agent) => {
                if conv
                    .as_ref()
                    .is_some_and(|c| c.state == ConversationState::Closed)
                {
                    let e = self.event(
                        EventKind::Reopened,
                        &record,
                        "moved out of Done by a person",
                    );
                    self.store.reopen(&record.conversation, e)?;
                }
                if previous.as_deref() != Some(agent) {
                    let detail = format!(
                        "reassigned from {} to {agent}: moved by a person in Outlook",
                        previous.as_deref().unwrap_or("nobody")
                    );
                    info!(mailbox = %name, conversation = %record.conversation, agent, "{detail}");
                    let mut e = self.event(EventKind::Reassigned, &record, &detail);
                    e.agent = Some(agent.clone());
                    self.store.set_owner(&record.conversation, Some(agent), e)?;
                }
                let e = self.event(
                    EventKind::Reconciled,
                    &record,
                    &format!("now in {}", managed.folder),
                );
                self.store
                    .relocate(name, &record.identity, here, Some(agent.clone()), e)
            }
            Role::Done => {
                info!(mailbox = %name, conversation = %record.conversation, "closed: moved to Done");
                let e = self.event(
                    EventKind::Closed,
                    &record,
                    "closed: moved to Done by a person",
                );
                self.store.close(&record.conversation, self.now, e)?;
                let e = self.event(
                    EventKind::Reconciled,
                    &record,
                    &format!("now in {}", managed.folder),
                );
                self.store
                    .relocate(name, &record.identity, here, previous, e)
            }
            // Sent items never reach here: `found` treats them as responses.
            Role::Automated | Role::Sent => {
                let e = self.event(
                    EventKind::Reconciled,
                    &record,
                    "moved to the automated folder by a person",
                );
                self.store
                    .relocate(name, &record.identity, here, record.owner.clone(), e)
            }
        }
    }

    /// Mail that was nobody's work (automatic, ignored) moved by a person: into an agent's
    /// folder it becomes that agent's conversation; anywhere else only its place is noted.
    fn made_work(
        &self,
        managed: &Managed,
        mut record: MessageRecord,
        here: MessageState,
    ) -> Result<()> {
        let Role::Agent(agent) = &managed.role else {
            let e = self.event(
                EventKind::Reconciled,
                &record,
                &format!("now in {}", managed.folder),
            );
            return self
                .store
                .relocate(&self.mailbox.name, &record.identity, here, None, e);
        };
        let detail = format!("given to {agent} by a person in Outlook");
        info!(mailbox = %self.mailbox.name, agent, "{detail}");
        record.owner = Some(agent.clone());
        record.state = here;
        let mut event = self.event(EventKind::Assigned, &record, &detail);
        event.agent = Some(agent.clone());
        self.store.commit(&Commit {
            new_conversation: true,
            thread_ids: record.message_id.iter().cloned().collect(),
            referenced: Vec::new(),
            rotation: None,
            sla: None,
            work: true,
            tags: Vec::new(),
            rules: Vec::new(),
            message: record,
            event,
        })?;
        Ok(())
    }

    /// A reply from the team: it answers the conversation its In-Reply-To or References name.
    /// Its server arrival time is when it was sent (the sender's Date header is not trusted).
    fn response(
        &self,
        envelope: &Envelope,
        arrived: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<()> {
        let related: Vec<String> = envelope
            .references
            .iter()
            .chain(envelope.in_reply_to.iter())
            .cloned()
            .collect();
        let at = arrived.unwrap_or(self.now);
        let Some(conv) = self.store.conversation_for(&self.mailbox.name, &related)? else {
            // The reply can reach the sent folder before postroom decides on the message it
            // answers; kept, it stops that conversation's clock the moment it is created.
            debug!(mailbox = %self.mailbox.name, "a sent message answers no known conversation yet");
            return self.store.pend_response(&self.mailbox.name, &related, at);
        };
        // Learn the reply's own IDs (Exchange may rewrite them), so a customer's answer to it
        // finds the conversation even when it quotes only the reply.
        let ids: Vec<String> = envelope
            .message_id
            .iter()
            .chain(&envelope.original_message_id)
            .cloned()
            .collect();
        self.store
            .link_thread_ids(&self.mailbox.name, &conv.id, &ids)?;
        let first = conv.first_response_at.is_none();
        let detail = if first {
            "first response sent"
        } else {
            "response sent"
        };
        info!(mailbox = %self.mailbox.name, conversation = %conv.id, "{detail}");
        let event = Event {
            at,
            kind: EventKind::Responded,
            mailbox: self.mailbox.name.clone(),
            conversation: Some(conv.id.clone()),
            identity: Some(envelope.identity.clone()),
            agent: conv.owner.clone(),
            detail: detail.to_string(),
        };
        self.store.record_response(&conv.id, at, event)
    }

    /// A message postroom never decided on was put in a managed folder by a person (or the
    /// store was lost): record it as the folder says.
    fn adopt(
        &self,
        managed: &Managed,
        envelope: &Envelope,
        arrived: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<()> {
        let related: Vec<String> = envelope
            .references
            .iter()
            .chain(envelope.in_reply_to.iter())
            .cloned()
            .collect();
        let existing = self.store.conversation_for(&self.mailbox.name, &related)?;
        let owner = match &managed.role {
            Role::Agent(agent) => Some(agent.clone()),
            _ => existing.as_ref().and_then(|c| c.owner.clone()),
        };
        let record = MessageRecord {
            identity: envelope.identity.clone(),
            mailbox: self.mailbox.name.clone(),
            message_id: envelope.message_id.clone(),
            conversation: existing.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
            owner: owner.clone(),
            state: MessageState::Filed {
                folder: managed.folder.clone(),
            },
            arrived,
            decided_at: self.now,
            subject: envelope.subject.clone(),
            from: envelope.from.as_ref().map(|p| p.address.clone()),
        };
        let detail = format!("found in {}; recorded as the folder says", managed.folder);
        let mut event = self.event(EventKind::Assigned, &record, &detail);
        event.agent = owner;
        let conv = self.store.commit(&Commit {
            new_conversation: existing.is_none(),
            thread_ids: envelope
                .message_id
                .iter()
                .chain(&envelope.original_message_id)
                .cloned()
                .collect(),
            referenced: related.clone(),
            rotation: None,
            sla: None,
            work: true,
            tags: Vec::new(),
            rules: Vec::new(),
            message: record.clone(),
            event,
        })?;
        if managed.role == Role::Done {
            let e = self.event(EventKind::Closed, &record, "found in Done");
            self.store.close(&conv, self.now, e)?;
        }
        Ok(())
    }

    /// Compares every managed folder and the inbox with the store. A filed message found
    /// nowhere was deleted or moved out of postroom's sight, so its conversation is closed; one
    /// found only in another managed folder was moved there by a person, which the folder poll
    /// normally sees first, and is taken as such here if the poll missed it.
    ///
    /// `last` is what the folders' STATUS said at the previous full comparison. When every
    /// folder still has the same UIDVALIDITY, UIDNEXT and message count, nothing arrived (the
    /// UIDNEXT would have moved) and so nothing left (the count would have dropped), and the
    /// listing is skipped: an idle mailbox's reconcile costs one LIST-STATUS, or a STATUS per
    /// folder, instead of a SELECT and a Message-ID fetch per folder.
    pub async fn reconcile(
        &self,
        conn: &mut Connection,
        last: &mut Option<Snapshot>,
    ) -> Result<()> {
        let mut folders: Vec<String> = managed_folders(self.mailbox, self.config)
            .into_iter()
            .map(|m| m.folder)
            .collect();
        folders.push(self.mailbox.inbox.clone());
        let states = conn.statuses(&folders).await?;
        let now: Snapshot = folders.iter().cloned().zip(states).collect();
        if last.as_ref() == Some(&now) {
            return Ok(());
        }
        self.compare(conn, &folders).await?;
        *last = Some(now);
        Ok(())
    }

    async fn compare(&self, conn: &mut Connection, folders: &[String]) -> Result<()> {
        let managed = managed_folders(self.mailbox, self.config);
        let mut places: HashMap<String, Vec<String>> = HashMap::new();
        for folder in folders {
            conn.select(folder).await?;
            for id in conn
                .message_ids()
                .await?
                .into_iter()
                .filter_map(|(_, id)| id)
            {
                places.entry(id).or_default().push(folder.clone());
            }
        }
        conn.select(&self.mailbox.inbox).await?;
        let mut gone: HashMap<String, MessageRecord> = HashMap::new();
        let mut moved = Vec::new();
        for record in self.store.filed(&self.mailbox.name)? {
            let (MessageState::Filed { folder }, Some(id)) = (&record.state, &record.message_id)
            else {
                continue;
            };
            match places.get(id) {
                None => {
                    gone.insert(record.identity.clone(), record);
                }
                Some(found) if found.contains(folder) => {}
                Some(found) => {
                    // Only a single, unambiguous place counts; the inbox is intake's to handle.
                    let elsewhere: Vec<&Managed> = managed
                        .iter()
                        .filter(|m| m.role != Role::Sent && found.contains(&m.folder))
                        .collect();
                    if let [there] = elsewhere.as_slice() {
                        moved.push(((*there).clone(), record));
                    }
                }
            }
        }
        for record in gone.into_values() {
            self.vanished(record)?;
        }
        for (there, record) in moved {
            info!(mailbox = %self.mailbox.name, folder = %there.folder,
                conversation = %record.conversation, "found in another folder than recorded");
            let here = MessageState::Filed {
                folder: there.folder.clone(),
            };
            self.moved_by_person(&there, record, here)?;
        }
        Ok(())
    }

    fn vanished(&self, record: MessageRecord) -> Result<()> {
        let name = &self.mailbox.name;
        let open = self
            .store
            .conversation(&record.conversation)?
            .is_some_and(|c| c.state == ConversationState::Open);
        if open {
            info!(mailbox = %name, conversation = %record.conversation, "closed: message deleted or moved away");
            let e = self.event(
                EventKind::Closed,
                &record,
                "closed: deleted or moved out of the managed folders",
            );
            self.store.close(&record.conversation, self.now, e)?;
        }
        let e = self.event(
            EventKind::Reconciled,
            &record,
            "no longer in any managed folder",
        );
        self.store.relocate(
            name,
            &record.identity,
            MessageState::Gone,
            record.owner.clone(),
            e,
        )
    }

    fn event(&self, kind: EventKind, record: &MessageRecord, detail: &str) -> Event {
        Event {
            at: self.now,
            kind,
            mailbox: self.mailbox.name.clone(),
            conversation: Some(record.conversation.clone()).filter(|c| !c.is_empty()),
            identity: Some(record.identity.clone()),
            agent: record.owner.clone(),
            detail: detail.to_string(),
        }
    }
}
