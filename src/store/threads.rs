//! The thread index: which conversation a Message-ID, a sender and subject, or an early
//! reply from the sent folder belongs to.

use super::*;

impl Store {
    /// The conversation a set of Message-IDs points to (In-Reply-To, References), newest first.
    pub fn conversation_for(&self, mailbox: &str, ids: &[String]) -> Result<Option<Conversation>> {
        for id in ids.iter().rev() {
            if let Some(conv) = self
                .threads
                .get(pair(mailbox, id))
                .context("read thread index")?
            {
                let conv = String::from_utf8_lossy(&conv).into_owned();
                return self.conversation(&conv);
            }
        }
        Ok(None)
    }

    /// Remembers that the team answered `ids` at `at` before postroom decided on the message
    /// answered (the reply reached the sent folder first).
    pub fn pend_response(&self, mailbox: &str, ids: &[String], at: DateTime<Utc>) -> Result<()> {
        for id in ids {
            let key = pending_response_key(mailbox, id);
            self.threads
                .insert(key, &at.timestamp_millis().to_be_bytes())
                .context("write pending response")?;
        }
        Ok(())
    }

    /// Takes the earliest pending response to any of `ids`, if there is one.
    pub fn take_pending_response(
        &self,
        mailbox: &str,
        ids: &[String],
    ) -> Result<Option<DateTime<Utc>>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        for id in ids {
            let Some(bytes) = self.threads.remove(pending_response_key(mailbox, id))? else {
                continue;
            };
            let millis = bytes
                .as_ref()
                .try_into()
                .map(i64::from_be_bytes)
                .unwrap_or(0);
            if let Some(at) = DateTime::<Utc>::from_timestamp_millis(millis) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        Ok(earliest)
    }

    /// Points more Message-IDs at a conversation, so replies quoting them find it.
    pub fn link_thread_ids(&self, mailbox: &str, conversation: &str, ids: &[String]) -> Result<()> {
        for id in ids {
            self.threads
                .insert(pair(mailbox, id), conversation.as_bytes())
                .context("write thread index")?;
        }
        Ok(())
    }

    /// The conversation a sender last wrote in with this normalised subject.
    pub fn conversation_by_subject(
        &self,
        mailbox: &str,
        from: &str,
        subject: &str,
    ) -> Result<Option<Conversation>> {
        let key = subject_key_of(mailbox, from, subject);
        match self.threads.get(key).context("read subject index")? {
            Some(conv) => self.conversation(&String::from_utf8_lossy(&conv)),
            None => Ok(None),
        }
    }
}

/// The subject-index key of a message: kept in the thread tree under a prefix no Message-ID
/// can have (a NUL-separated sender and normalised subject).
pub(super) fn subject_key(message: &MessageRecord) -> Option<Vec<u8>> {
    let from = message.from.as_deref()?;
    let subject = crate::message::normalized_subject(&message.subject);
    (!subject.is_empty()).then(|| subject_key_of(&message.mailbox, from, &subject))
}

fn pending_response_key(mailbox: &str, id: &str) -> Vec<u8> {
    let mut key = pair(mailbox, "\u{0}response");
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

fn subject_key_of(mailbox: &str, from: &str, subject: &str) -> Vec<u8> {
    let mut key = pair(mailbox, "\u{0}subject");
    key.push(0);
    key.extend_from_slice(from.to_lowercase().as_bytes());
    key.push(0);
    key.extend_from_slice(subject.as_bytes());
    key
}
