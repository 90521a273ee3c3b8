//! The state of many folders at once, for the folder poll.
//!
//! The folder poll asks every managed folder for UIDNEXT, UIDVALIDITY and MESSAGES each round:
//! with one STATUS per folder that is most of what an idle mailbox costs. Where the server
//! has LIST-STATUS (RFC 5819; Dovecot does, Exchange does not), one `LIST ... RETURN
//! (STATUS ...)` answers for all of them; elsewhere each folder gets its own STATUS, as
//! before.

use anyhow::Result;
use imap_proto::{MailboxDatum, Response, StatusAttribute};

use super::moves::quoted;
use super::{Connection, FolderInfo};

impl Connection {
    /// UIDNEXT, UIDVALIDITY and message count of each folder (decoded names), in order. A
    /// folder that LIST-STATUS left out (it does not exist, or the server skipped it) is asked
    /// with its own STATUS, which reports the problem as it always did.
    pub async fn statuses(&mut self, folders: &[String]) -> Result<Vec<FolderInfo>> {
        let found = self.list_statuses(folders).await?;
        let mut out = Vec::with_capacity(folders.len());
        for (folder, info) in folders.iter().zip(found) {
            out.push(match info {
                Some(info) => info,
                None => self.status(folder).await?,
            });
        }
        Ok(out)
    }

    /// [`Connection::statuses`] of `folders`, and the state of the selected folder `selected`
    /// where the same LIST-STATUS answers for it; it never gets a STATUS of its own, which
    /// RFC 3501 section 6.3.10 advises against for the selected folder.
    pub async fn statuses_with_selected(
        &mut self,
        folders: &[String],
        selected: &str,
    ) -> Result<(Vec<FolderInfo>, Option<FolderInfo>)> {
        let mut asked = folders.to_vec();
        asked.push(selected.to_string());
        let mut found = self.list_statuses(&asked).await?;
        let selected_info = found.pop().flatten();
        let mut out = Vec::with_capacity(folders.len());
        for (folder, info) in folders.iter().zip(found) {
            out.push(match info {
                Some(info) => info,
                None => self.status(folder).await?,
            });
        }
        Ok((out, selected_info))
    }

    /// What one LIST-STATUS tells of each folder, in order; all `None` on a server without
    /// LIST-STATUS.
    async fn list_statuses(&mut self, folders: &[String]) -> Result<Vec<Option<FolderInfo>>> {
        let mut found: Vec<Option<FolderInfo>> = vec![None; folders.len()];
        // `*` and `%` are LIST wildcards: a folder whose name holds one is left to STATUS.
        let wires: Vec<Option<String>> = folders
            .iter()
            .map(|f| Some(self.wire_name(f)).filter(|w| !w.contains(['*', '%'])))
            .collect();
        let patterns = wires
            .iter()
            .flatten()
            .map(|w| quoted(w))
            .collect::<Result<Vec<_>>>()?;
        if !self.caps.list_status || patterns.is_empty() {
            return Ok(found);
        }
        let command = format!(
            "LIST \"\" ({}) RETURN (STATUS (UIDNEXT UIDVALIDITY MESSAGES))",
            patterns.join(" ")
        );
        self.run_reading(command, "LIST-STATUS", |response| {
            let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = response else {
                return;
            };
            let at = wires.iter().position(|w| w.as_deref() == Some(mailbox));
            if let Some(at) = at {
                found[at] = Some(folder_info(status));
            }
        })
        .await?;
        Ok(found)
    }
}

fn folder_info(status: &[StatusAttribute]) -> FolderInfo {
    let mut info = FolderInfo::default();
    for attribute in status {
        match attribute {
            StatusAttribute::UidNext(n) => info.uid_next = Some(*n),
            StatusAttribute::UidValidity(n) => info.uid_validity = *n,
            StatusAttribute::Messages(n) => info.exists = *n,
            _ => {}
        }
    }
    info
}
