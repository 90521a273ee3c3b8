//! UID FETCH and UID SEARCH that fail unless the server completes them.
//!
//! async-imap's `uid_fetch` and `uid_search` end their results at the tagged answer *or at the
//! end of the stream*, and never look at the tagged status: a connection cut mid-answer, or a
//! `NO`, comes back as a short or empty success. A short listing read as the truth is how
//! reconciliation once closed every conversation of a mailbox whose connection was cut while
//! it listed a folder ("deleted or moved away"). Everything here goes through
//! [`Connection::run_reading`], which succeeds only on the tagged `OK`.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use imap_proto::{AttributeValue, MailboxDatum, MessageSection, Response, SectionPath};

use super::Connection;

/// One message's attributes from a UID FETCH, owned. A server may split them over several
/// FETCH responses (or add an unsolicited one with new flags); they are joined by UID.
#[derive(Debug, Default, Clone)]
pub(super) struct FetchData {
    pub uid: u32,
    pub internal_date: Option<DateTime<Utc>>,
    pub size: Option<u32>,
    pub header: Option<Vec<u8>>,
    pub text: Option<Vec<u8>>,
    pub flags: Option<Vec<String>>,
}

/// INTERNALDATE's form (RFC 3501 `date-time`).
const INTERNAL_DATE: &str = "%d-%b-%Y %H:%M:%S %z";

impl FetchData {
    fn absorb(&mut self, attributes: &[AttributeValue<'_>]) {
        for attribute in attributes {
            match attribute {
                AttributeValue::InternalDate(text) => {
                    let parsed = DateTime::parse_from_str(text.trim(), INTERNAL_DATE);
                    if let Ok(at) = parsed {
                        self.internal_date = Some(at.with_timezone(&Utc));
                    }
                }
                AttributeValue::Rfc822Size(size) => self.size = Some(*size),
                AttributeValue::Flags(flags) => {
                    self.flags = Some(flags.iter().map(|f| f.to_string()).collect());
                }
                AttributeValue::BodySection {
                    section: Some(SectionPath::Full(MessageSection::Header)),
                    data: Some(data),
                    ..
                }
                | AttributeValue::Rfc822Header(Some(data)) => {
                    self.header = Some(data.to_vec());
                }
                AttributeValue::BodySection {
                    section: Some(SectionPath::Full(MessageSection::Text)),
                    data: Some(data),
                    ..
                }
                | AttributeValue::Rfc822Text(Some(data)) => {
                    self.text = Some(data.to_vec());
                }
                _ => {}
            }
        }
    }
}

/// The UID among a FETCH response's attributes.
fn uid_of(attributes: &[AttributeValue<'_>]) -> Option<u32> {
    attributes.iter().find_map(|a| match a {
        AttributeValue::Uid(uid) => Some(*uid),
        _ => None,
    })
}

impl Connection {
    /// `UID FETCH <set> <query>` in the selected folder, by UID ascending. Fails on a `NO` or
    /// `BAD`, a cut connection, or the command time-out, never with a short answer.
    pub(super) async fn uid_fetch_checked(
        &mut self,
        set: &str,
        query: &str,
        what: &str,
    ) -> Result<Vec<FetchData>> {
        let mut found: BTreeMap<u32, FetchData> = BTreeMap::new();
        let command = format!("UID FETCH {set} {query}");
        self.run_reading(command, what, |response| {
            let Response::Fetch(_, attributes) = response else {
                return;
            };
            // A FETCH without a UID is news about flags, not part of the answer.
            let Some(uid) = uid_of(attributes) else {
                return;
            };
            let entry = found.entry(uid).or_insert_with(|| FetchData {
                uid,
                ..FetchData::default()
            });
            entry.absorb(attributes);
        })
        .await?;
        Ok(found.into_values().collect())
    }

    /// `UID SEARCH <criteria>` in the selected folder, ascending; fails unless completed.
    pub(super) async fn uid_search_checked(
        &mut self,
        criteria: &str,
        what: &str,
    ) -> Result<Vec<u32>> {
        let mut uids = Vec::new();
        self.run_reading(format!("UID SEARCH {criteria}"), what, |response| {
            if let Response::MailboxData(MailboxDatum::Search(found)) = response {
                uids.extend_from_slice(found);
            }
        })
        .await?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }
}
