//! Per-mailbox bookkeeping: sync points, folder polling, quarantine, agent folders, waiting
//! work and run-time availability.

use super::*;

impl Store {
    /// Sync progress of a mailbox.
    pub fn sync_state(&self, mailbox: &str) -> Result<SyncState> {
        Ok(get_json(&self.sync, mailbox.as_bytes())?.unwrap_or_default())
    }

    /// Updates the sync progress of a mailbox.
    pub fn set_sync_state(&self, mailbox: &str, state: &SyncState) -> Result<()> {
        let bytes = serde_json::to_vec(state)?;
        self.sync
            .insert(mailbox.as_bytes(), bytes)
            .context("write sync state")?;
        Ok(())
    }

    /// Sets a message aside; repeated calls count attempts.
    pub fn quarantine(&self, record: Quarantined, event: Event) -> Result<u32> {
        let key = quarantine_key(&record.mailbox, record.uid_validity, record.uid);
        let previous: Option<Quarantined> = get_json(&self.quarantine, &key)?;
        let attempts = previous.map(|p| p.attempts).unwrap_or(0) + 1;
        let record = Quarantined { attempts, ..record };
        self.quarantine
            .insert(key, serde_json::to_vec(&record)?)
            .context("write quarantine")?;
        self.append_event(&event)?;
        Ok(attempts)
    }

    /// The quarantine entry for a UID, if any.
    pub fn quarantined_uid(
        &self,
        mailbox: &str,
        uid_validity: u32,
        uid: u32,
    ) -> Result<Option<Quarantined>> {
        get_json(
            &self.quarantine,
            &quarantine_key(mailbox, uid_validity, uid),
        )
    }

    /// Forgets a quarantine entry once its message was handled after all.
    pub fn clear_quarantine(&self, mailbox: &str, uid_validity: u32, uid: u32) -> Result<()> {
        self.quarantine
            .remove(quarantine_key(mailbox, uid_validity, uid))
            .context("clear quarantine")?;
        Ok(())
    }

    /// Every quarantined message, optionally of one mailbox.
    pub fn quarantined(&self, mailbox: Option<&str>) -> Result<Vec<Quarantined>> {
        let key = mailbox.map(prefix).unwrap_or_default();
        scan_json(&self.quarantine, &key)
    }

    /// Where folder polling last got to in one folder.
    pub fn folder_sync(&self, mailbox: &str, folder: &str) -> Result<Option<FolderSync>> {
        get_json(&self.sync, &pair(mailbox, folder))
    }

    /// Records folder polling progress.
    pub fn set_folder_sync(&self, mailbox: &str, folder: &str, state: &FolderSync) -> Result<()> {
        let bytes = serde_json::to_vec(state)?;
        self.sync
            .insert(pair(mailbox, folder), bytes)
            .context("write folder sync state")?;
        Ok(())
    }

    /// The folder an agent's work was last filed in, per mailbox.
    pub fn agent_folder(&self, mailbox: &str, agent: &str) -> Result<Option<String>> {
        let value = self
            .agents
            .get(pair(mailbox, agent))
            .context("read agent folder")?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records an agent's folder in a mailbox.
    pub fn set_agent_folder(&self, mailbox: &str, agent: &str, folder: &str) -> Result<()> {
        self.agents
            .insert(pair(mailbox, agent), folder.as_bytes())
            .context("write agent folder")?;
        Ok(())
    }

    /// After a folder was renamed on the server, points every record and the folder's polling
    /// progress at the new name.
    pub fn rename_folder(&self, mailbox: &str, old: &str, new: &str) -> Result<usize> {
        let mut changed = 0;
        for mut record in self.filed(mailbox)? {
            let here = MessageState::Filed {
                folder: old.to_string(),
            };
            if record.state == here {
                record.state = MessageState::Filed {
                    folder: new.to_string(),
                };
                let bytes = serde_json::to_vec(&record)?;
                self.messages
                    .insert(pair(mailbox, &record.identity), bytes)?;
                changed += 1;
            }
        }
        if let Some(sync) = self.folder_sync(mailbox, old)? {
            self.set_folder_sync(mailbox, new, &sync)?;
            self.sync.remove(pair(mailbox, old))?;
        }
        Ok(changed)
    }

    /// Keeps the envelope of a waiting message so it can be decided again without a fetch.
    pub fn set_waiting(
        &self,
        mailbox: &str,
        arrived: DateTime<Utc>,
        envelope: &crate::message::Envelope,
    ) -> Result<()> {
        let key = waiting_key(mailbox, arrived, &envelope.identity);
        self.waiting
            .insert(key, serde_json::to_vec(envelope)?)
            .context("write waiting")?;
        Ok(())
    }

    /// Waiting envelopes of a mailbox, oldest arrival first.
    pub fn waiting(&self, mailbox: &str) -> Result<Vec<crate::message::Envelope>> {
        scan_json(&self.waiting, &prefix(mailbox))
    }

    /// Forgets a waiting message (given out, or gone).
    pub fn clear_waiting(
        &self,
        mailbox: &str,
        arrived: DateTime<Utc>,
        identity: &str,
    ) -> Result<()> {
        self.waiting
            .remove(waiting_key(mailbox, arrived, identity))
            .context("clear waiting")?;
        Ok(())
    }

    /// Marks an agent away (or back) at run time.
    pub fn set_agent_away(&self, agent: &str, away: bool, event: Event) -> Result<()> {
        self.agents
            .insert(agent.as_bytes(), &[u8::from(away)])
            .context("write availability")?;
        self.append_event(&event)
    }

    /// True when an agent was marked away at run time.
    pub fn agent_away(&self, agent: &str) -> Result<bool> {
        let value = self.agents.get(agent).context("read availability")?;
        Ok(value.is_some_and(|v| v.first() == Some(&1)))
    }
}
