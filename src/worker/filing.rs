//! Applying decisions to the mailbox: moves grouped by folder, owner keywords, and what to do
//! when a person moved a message first.

use super::*;

impl Worker {
    /// Moves placed messages, grouped by folder, and records where they landed. `flags` holds
    /// the flags the server just reported for some of them (see [`Worker::mark_owner`]).
    pub(super) async fn apply(
        &self,
        conn: &mut Connection,
        info: &FolderInfo,
        placements: Vec<Placement>,
        flags: &HashMap<u32, Vec<String>>,
    ) -> Result<()> {
        let mut by_folder: BTreeMap<String, Vec<Placement>> = BTreeMap::new();
        for p in placements {
            by_folder.entry(p.folder.clone()).or_default().push(p);
        }
        for (folder, group) in by_folder {
            let uids: Vec<u32> = group.iter().map(|p| p.uid).collect();
            if info.keywords {
                self.mark_owner(conn, &group, flags).await?;
            }
            match conn.move_uids(&uids, &folder).await {
                Ok(copied) => {
                    self.filed(&group, &folder)?;
                    self.pass_own_moves(&folder, copied.as_ref())?;
                }
                Err(err) if crate::imap::is_refusal(&err) => {
                    warn!(mailbox = %self.mailbox.name, folder, error = %format!("{err:#}"),
                          "move refused; checking message by message");
                    self.move_one_by_one(conn, &group, &folder).await?;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Records a moved group in one store transaction.
    pub(super) fn filed(&self, group: &[Placement], folder: &str) -> Result<()> {
        let filed: Vec<(String, MessageState, Event)> = group
            .iter()
            .map(|p| {
                let detail = format!("filed in {folder}");
                let event = self.event(
                    EventKind::Filed,
                    Some(p.identity.clone()),
                    p.owner.clone(),
                    detail,
                );
                let state = MessageState::Filed {
                    folder: folder.to_string(),
                };
                (p.identity.clone(), state, event)
            })
            .collect();
        self.store.mark_filed_many(&self.mailbox.name, &filed)?;
        for p in group {
            let agent = p.owner.as_deref().unwrap_or("-");
            match &p.note {
                Some(note) => info!(mailbox = %self.mailbox.name, uid = p.uid,
                    conversation = %note.conversation, agent, folder, "{}", note.summary),
                None => info!(mailbox = %self.mailbox.name, uid = p.uid, agent, folder,
                    "filed as decided before the restart"),
            }
        }
        Ok(())
    }

    /// After a refused group move (Exchange: "Some of the requested messages no longer
    /// exist"), each message still in the inbox is moved on its own; one that is gone was moved
    /// by a person meanwhile (field case BUG-01). It is recorded as gone, never decided again,
    /// and a folder poll re-finds it by identity if it landed in a managed folder.
    pub(super) async fn move_one_by_one(
        &self,
        conn: &mut Connection,
        group: &[Placement],
        folder: &str,
    ) -> Result<()> {
        let first = group.iter().map(|p| p.uid).min().unwrap_or(1);
        let present: HashSet<u32> = conn.uids_from(first).await?.into_iter().collect();
        for p in group {
            if present.contains(&p.uid) {
                match conn.move_uids(&[p.uid], folder).await {
                    Ok(copied) => {
                        self.filed(std::slice::from_ref(p), folder)?;
                        self.pass_own_moves(folder, copied.as_ref())?;
                    }
                    Err(err) if crate::imap::is_refusal(&err) => {
                        // Left Pending: the next catch-up finishes the same decision.
                        warn!(mailbox = %self.mailbox.name, uid = p.uid, error = %format!("{err:#}"), "move refused again");
                    }
                    Err(err) => return Err(err),
                }
                continue;
            }
            warn!(mailbox = %self.mailbox.name, uid = p.uid, "message moved away by someone else while being filed");
            let detail = "moved away by someone else while postroom was filing it".to_string();
            let event = self.event(
                EventKind::Reconciled,
                Some(p.identity.clone()),
                p.owner.clone(),
                detail,
            );
            self.store.relocate(
                &self.mailbox.name,
                &p.identity,
                MessageState::Gone,
                p.owner.clone(),
                event,
            )?;
        }
        Ok(())
    }

    /// Adds an owner keyword where the server keeps keywords; folders stay the primary mark.
    /// Where the fetch just told every message's flags (`flags`), only what differs is stored:
    /// new mail carries no owner keyword, so it costs one STORE instead of two.
    pub(super) async fn mark_owner(
        &self,
        conn: &mut Connection,
        group: &[Placement],
        flags: &HashMap<u32, Vec<String>>,
    ) -> Result<()> {
        let mut by_owner: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for p in group {
            if let Some(owner) = &p.owner {
                by_owner.entry(owner).or_default().push(p.uid);
            }
        }
        let all = owner_keywords(&self.config, &self.mailbox);
        for (owner, uids) in by_owner {
            let keyword = owner_keyword(owner);
            let known: Option<Vec<&Vec<String>>> = uids.iter().map(|u| flags.get(u)).collect();
            let Some(known) = known else {
                conn.set_owner_keyword(&uids, &keyword, &all).await?;
                continue;
            };
            // Keywords are case-insensitive (RFC 3501 section 2.3.2).
            let has = |f: &Vec<String>, k: &str| f.iter().any(|x| x.eq_ignore_ascii_case(k));
            let remove: Vec<&str> = all
                .iter()
                .map(String::as_str)
                .filter(|k| *k != keyword && known.iter().any(|f| has(f, k)))
                .collect();
            let add = known.iter().any(|f| !has(f, &keyword));
            conn.replace_keywords(&uids, &remove, add.then_some(keyword.as_str()))
                .await?;
        }
        Ok(())
    }
}
