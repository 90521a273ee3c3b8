//! Finding messages by flag, and reading the Message-IDs of a few of them.
//!
//! Exchange has no CONDSTORE, so "which flags changed since last time" cannot be asked; a
//! `UID SEARCH ANSWERED` in a selected folder is the cheap way to learn where Outlook set
//! `\Answered`, and only the UIDs not seen before need their Message-ID fetched.

use anyhow::Result;

use super::{uid_set, Connection};

impl Connection {
    /// UIDs of the messages in the selected folder that carry `\Answered`, ascending.
    pub async fn answered_uids(&mut self) -> Result<Vec<u32>> {
        self.uid_search_checked("ANSWERED", "UID SEARCH ANSWERED")
            .await
    }

    /// Message-IDs of the given UIDs of the selected folder (see [`Connection::message_ids`]).
    pub async fn message_ids_of(&mut self, uids: &[u32]) -> Result<Vec<(u32, Option<String>)>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        self.message_ids_in(&uid_set(uids)).await
    }

    /// Message-IDs of the messages in a UID set of the selected folder, by UID.
    pub(super) async fn message_ids_in(&mut self, set: &str) -> Result<Vec<(u32, Option<String>)>> {
        let query = "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])";
        let fetches = self
            .uid_fetch_checked(set, query, "UID FETCH (MESSAGE-ID)")
            .await?;
        Ok(fetches
            .iter()
            .map(|f| {
                let header = f
                    .header
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let id = header
                    .split_once(':')
                    .and_then(|(_, v)| crate::message::clean_id(&v.replace(['\r', '\n'], " ")));
                (f.uid, id)
            })
            .collect())
    }
}
