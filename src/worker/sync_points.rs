//! Keeping the folder poll from reading back what postroom itself just filed.
//!
//! The folder poll ([`crate::outlook::Watcher::poll`]) reads every managed folder from its
//! stored sync point (the UIDNEXT it last saw) to learn what people dragged there. Without
//! help it would also fetch and parse every message postroom moved there itself: on a backlog
//! that doubles the fetches. So after each move whose destination UIDs the server named
//! (`COPYUID`), the destination's sync point moves past them, as long as no UID in between can
//! be someone else's; and a managed folder that has no sync point yet but is empty gets one
//! before the first catch-up, so a first start does not read back its own backlog either.

use super::*;
use crate::imap::Copied;
use crate::store::FolderSync;

impl Worker {
    /// After a move into `folder` that was recorded as filed: moves the folder's sync point
    /// past our own new UIDs. Nothing changes without `COPYUID`, for a folder without a sync
    /// point (not managed, or not read yet), or after a UIDVALIDITY change; the poll then reads
    /// the folder as before and recognises our messages by their records.
    pub(super) fn pass_own_moves(&self, folder: &str, copied: Option<&Copied>) -> Result<()> {
        let Some(copied) = copied else {
            return Ok(());
        };
        let name = &self.mailbox.name;
        let Some(mut sync) = self.store.folder_sync(name, folder)? else {
            return Ok(());
        };
        if sync.uid_validity != copied.uid_validity {
            return Ok(());
        }
        let next = copied.passed(sync.uid_next);
        if next == sync.uid_next {
            return Ok(());
        }
        sync.uid_next = next;
        self.store.set_folder_sync(name, folder, &sync)
    }

    /// Gives every empty managed folder that has no sync point one at its UIDNEXT: an empty
    /// folder holds nothing to adopt, and whatever lands in it later gets a UID at or above
    /// the UIDNEXT that STATUS reported. Folders with messages are left to the poll, which
    /// reads them from the start.
    pub(super) async fn start_empty_folders(&self, conn: &mut Connection) -> Result<()> {
        let name = &self.mailbox.name;
        let mut unsynced = Vec::new();
        for managed in outlook::managed_folders(&self.mailbox, &self.config) {
            if self.store.folder_sync(name, &managed.folder)?.is_none() {
                unsynced.push(managed.folder);
            }
        }
        let statuses = conn.statuses(&unsynced).await?;
        for (folder, status) in unsynced.iter().zip(statuses) {
            let (Some(uid_next), 0) = (status.uid_next, status.exists) else {
                continue;
            };
            let sync = FolderSync {
                uid_validity: status.uid_validity,
                uid_next,
            };
            self.store.set_folder_sync(name, folder, &sync)?;
        }
        Ok(())
    }
}
