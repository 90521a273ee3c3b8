//! Fetching for routing, and setting aside what cannot be fetched or parsed.

use super::*;

impl Worker {
    /// UIDs below `from` that came back without data and are due another try on this
    /// connection: Exchange returns fresh mail empty for a while, so waiting for the next
    /// reconnect could leave it unhandled for hours.
    pub(super) fn due_retries(&self, info: &FolderInfo, from: u32) -> Result<Vec<u32>> {
        let now = self.clock.now();
        let retry_after = chrono::Duration::from_std(RETRY_DELAY).unwrap_or_default();
        Ok(self
            .store
            .quarantined(Some(&self.mailbox.name))?
            .into_iter()
            .filter(|q| q.uid_validity == info.uid_validity && q.uid < from)
            .filter(|q| q.attempts < FETCH_ATTEMPTS && now - q.at >= retry_after)
            .map(|q| q.uid)
            .collect())
    }

    pub(super) fn given_up(&self, uid_validity: u32, uid: u32) -> Result<bool> {
        let entry = self
            .store
            .quarantined_uid(&self.mailbox.name, uid_validity, uid)?;
        Ok(entry.is_some_and(|q| q.attempts >= FETCH_ATTEMPTS))
    }

    /// Fetches a batch; suspects are fetched one by one so a poison message only costs itself.
    pub(super) async fn fetch(
        &mut self,
        conn: &mut Connection,
        info: &FolderInfo,
        uids: &[u32],
    ) -> Result<Vec<crate::imap::Fetched>> {
        let cap = self.mailbox.body_fetch_bytes;
        if !uids.iter().any(|u| self.suspects.contains(u)) {
            match conn.fetch_for_routing(uids, cap).await {
                Ok(fetched) => return Ok(fetched),
                Err(err) => {
                    self.suspects.extend(uids);
                    return Err(err.context("batch fetch failed; retrying its messages one by one"));
                }
            }
        }
        let mut out = Vec::new();
        for &uid in uids {
            match conn.fetch_for_routing(&[uid], cap).await {
                Ok(fetched) => out.extend(fetched),
                Err(err) => {
                    let failure = format!("fetch failed: {err:#}");
                    self.record_quarantine(info, uid, &failure)?;
                    return Err(err.context(format!("fetching UID {uid}")));
                }
            }
        }
        self.suspects.retain(|u| !uids.contains(u));
        Ok(out)
    }

    pub(super) fn quarantine(
        &self,
        info: &FolderInfo,
        uid: u32,
        failure: &ParseFailure,
    ) -> Result<()> {
        let retryable = matches!(
            failure,
            ParseFailure::NoData | ParseFailure::RetrievalFailed
        );
        let attempts = self.record_quarantine(info, uid, &failure.to_string())?;
        if !retryable && attempts < FETCH_ATTEMPTS {
            // A parse failure is a property of the bytes: retrying cannot help, so it is final.
            let entry = self
                .store
                .quarantined_uid(&self.mailbox.name, info.uid_validity, uid)?;
            if let Some(entry) = entry {
                let final_entry = Quarantined {
                    attempts: FETCH_ATTEMPTS - 1,
                    ..entry
                };
                self.store.quarantine(
                    final_entry,
                    self.event(
                        EventKind::Quarantined,
                        None,
                        None,
                        "final: unparseable".into(),
                    ),
                )?;
            }
        }
        Ok(())
    }

    pub(super) fn record_quarantine(
        &self,
        info: &FolderInfo,
        uid: u32,
        reason: &str,
    ) -> Result<u32> {
        let record = Quarantined {
            mailbox: self.mailbox.name.clone(),
            folder: self.mailbox.inbox.clone(),
            uid_validity: info.uid_validity,
            uid,
            reason: reason.to_string(),
            attempts: 0,
            at: self.clock.now(),
        };
        let detail = format!("UID {uid} set aside: {reason}");
        let attempts = self.store.quarantine(
            record,
            self.event(EventKind::Quarantined, None, None, detail),
        )?;
        warn!(mailbox = %self.mailbox.name, uid, reason, attempts, "message quarantined");
        Ok(attempts)
    }
}
