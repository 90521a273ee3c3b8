//! Changes to a conversation after it was created (owner, close, reopen, responses) and its
//! history.

use super::*;

impl Store {
    /// The record of a message by its Message-ID (any mailbox), for admin commands.
    pub fn message_by_id(&self, message_id: &str) -> Result<Option<MessageRecord>> {
        let wanted = crate::message::clean_id(message_id);
        for entry in self.messages.iter() {
            let (_, bytes) = entry.context("scan messages")?;
            let record: MessageRecord = serde_json::from_slice(&bytes)?;
            if record.message_id.is_some() && record.message_id == wanted {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Gives a conversation to `owner` (or to nobody), moving its load; writes `event`.
    pub fn set_owner(&self, conversation: &str, owner: Option<&str>, event: Event) -> Result<()> {
        self.update_conversation(conversation, event, |conv, load| {
            if conv.state == ConversationState::Open {
                adjust_load(load, conv.owner.as_deref(), -1)?;
                adjust_load(load, owner, 1)?;
            }
            conv.owner = owner.map(str::to_string);
            Ok(())
        })
    }

    /// Closes a conversation at `at`; its owner's open count drops. Closing twice is harmless.
    pub fn close(&self, conversation: &str, at: DateTime<Utc>, event: Event) -> Result<()> {
        self.update_conversation(conversation, event, |conv, load| {
            if conv.state == ConversationState::Open {
                adjust_load(load, conv.owner.as_deref(), -1)?;
                conv.state = ConversationState::Closed;
                conv.closed_at = Some(at);
            }
            Ok(())
        })
    }

    /// Records a response from the team at `at`, found in the sent folder: the first one stops
    /// the first-response clock, and any one ends the current wait for an answer.
    pub fn record_response(
        &self,
        conversation: &str,
        at: DateTime<Utc>,
        event: Event,
    ) -> Result<()> {
        self.record_response_by(conversation, at, ResponseSource::SentFolder, event)
    }

    /// Records a response learnt of through `source`. The earliest response is the first one,
    /// whichever way it was learnt of, and its source is kept with it.
    pub fn record_response_by(
        &self,
        conversation: &str,
        at: DateTime<Utc>,
        source: ResponseSource,
        event: Event,
    ) -> Result<()> {
        self.update_conversation(conversation, event, |conv, _| {
            // A wait that began after an earlier response is a next-response clock's run.
            if let (Some(first), Some(since)) = (conv.first_response_at, conv.waiting_since) {
                if first <= since && since <= at {
                    conv.add_wait(Wait {
                        since,
                        answered: at,
                    });
                }
            }
            if conv.first_response_at.is_none_or(|first| at < first) {
                conv.first_response_at = Some(at);
                conv.first_response_by = Some(source);
            }
            conv.last_response_at = Some(conv.last_response_at.map_or(at, |last| last.max(at)));
            if conv.waiting_since.is_some_and(|since| since <= at) {
                conv.waiting_since = None;
            }
            Ok(())
        })
    }

    /// Reopens a closed conversation; its owner's open count rises again.
    pub fn reopen(&self, conversation: &str, event: Event) -> Result<()> {
        self.update_conversation(conversation, event, |conv, load| {
            if conv.state == ConversationState::Closed {
                adjust_load(load, conv.owner.as_deref(), 1)?;
                conv.state = ConversationState::Open;
                conv.closed_at = None;
            }
            Ok(())
        })
    }

    fn update_conversation(
        &self,
        conversation: &str,
        event: Event,
        change: impl Fn(&mut Conversation, &TransactionalTree) -> TxResult<()>,
    ) -> Result<()> {
        let trees = (&self.conversations, &self.load, &self.events, &self.realign);
        let result = trees.transaction(|(conversations, load, events, realign)| {
            let Some(mut conv) = merge::resolve_tx(conversations, conversation)? else {
                return Err(ConflictableTransactionError::Abort(format!(
                    "no conversation {conversation}"
                )));
            };
            let owner = conv.owner.clone();
            change(&mut conv, load)?;
            put_conversation(conversations, &conv)?;
            if conv.owner.is_some() && conv.owner != owner {
                // Its other messages still sit in the previous owner's folder.
                merge::mark_misplaced(realign, &pair(&conv.mailbox, &conv.id))?;
            }
            let mut event = event.clone();
            event.conversation = Some(conv.id.clone());
            put_event(events, &event)
        });
        unwrap_tx(result).with_context(|| format!("update conversation {conversation}"))
    }
}
