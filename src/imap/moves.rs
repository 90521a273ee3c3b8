//! Moving messages, and learning where they landed.
//!
//! async-imap's `uid_mv` and `uid_copy` throw away the tagged response, and with it the
//! `COPYUID` code (RFC 4315 section 3) that names the new UIDs in the destination. The worker
//! uses those UIDs to move the destination folder's sync point past the messages it placed
//! there itself, so the folder poll does not fetch and parse them a second time. So MOVE and
//! COPY are sent here as raw commands and their responses read one by one.
//!
//! Dovecot sends `COPYUID` for MOVE in an untagged `OK` before the expunges (RFC 6851
//! section 4.3); a server may also put it in the tagged `OK`, as it must for COPY. Both are
//! read. A server without UIDPLUS, or one that leaves the code out, gives `None`, and callers
//! fall back to reading the folder.

use std::ops::RangeInclusive;

use anyhow::{anyhow, bail, Result};
use futures::TryStreamExt;
use imap_proto::{MailboxDatum, Response, ResponseCode, Status};

use super::{bye_text, timed, uid_set, Connection};

/// Where a MOVE or COPY put the messages, from the server's `COPYUID` response code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The destination folder's UIDVALIDITY.
    pub uid_validity: u32,
    /// The new UIDs in the destination, as the server listed them.
    pub destination: Vec<RangeInclusive<u32>>,
}

impl Copied {
    /// The UID a folder's sync point may move to, starting at `from`, when every UID from
    /// `from` up to it is one of ours: the destination ranges are followed while they join up
    /// with `from` without a gap. A gap means someone else's message may sit in it (a person's
    /// drag that landed between two of ours, or before them), so the point stops there and the
    /// folder poll reads from it.
    pub fn passed(&self, from: u32) -> u32 {
        let mut ranges = self.destination.clone();
        ranges.sort_by_key(|r| *r.start());
        let mut next = from;
        for range in ranges {
            if *range.start() > next {
                break;
            }
            next = next.max(range.end().saturating_add(1));
        }
        next
    }
}

impl Connection {
    /// Moves messages from the selected folder to `folder`: MOVE where advertised, otherwise
    /// COPY, `\Deleted` and UID EXPUNGE of exactly these UIDs. Returns where they landed when
    /// the server said (`COPYUID`).
    pub async fn move_uids(&mut self, uids: &[u32], folder: &str) -> Result<Option<Copied>> {
        let set = uid_set(uids);
        let wire = quoted(&self.wire_name(folder))?;
        if self.caps.moves {
            let what = format!("UID MOVE to {folder}");
            return self
                .run_copying(format!("UID MOVE {set} {wire}"), &what)
                .await;
        }
        let what = format!("UID COPY to {folder}");
        let copied = self
            .run_copying(format!("UID COPY {set} {wire}"), &what)
            .await?;
        command!(self, "UID STORE +FLAGS (\\Deleted)", async {
            self.session
                .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })?;
        if self.caps.uidplus {
            command!(self, "UID EXPUNGE", async {
                self.session
                    .uid_expunge(&set)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })?;
        } else {
            // Without UIDPLUS a plain EXPUNGE would also remove messages someone else marked
            // \Deleted; leaving ours marked is the lesser harm, and Outlook hides them.
            tracing::warn!(
                folder,
                "server lacks MOVE and UIDPLUS; moved copies left marked \\Deleted"
            );
        }
        Ok(copied)
    }

    /// Sends a MOVE or COPY and reads its responses up to the tagged one, keeping `COPYUID`.
    async fn run_copying(&mut self, command: String, what: &str) -> Result<Option<Copied>> {
        let mut copied = None;
        self.run_reading(command, what, |response| {
            let outcome = match response {
                Response::Done { outcome, .. } => outcome,
                Response::Data {
                    status: Status::Ok,
                    outcome,
                } => outcome,
                _ => return,
            };
            if let Some(found) = copied_from(outcome.code.as_ref()) {
                copied = Some(found);
            }
        })
        .await?;
        Ok(copied)
    }

    /// Sends a command async-imap has no method for (or one whose answer it drops) and hands
    /// every response up to and including the tagged one to `seen`, under the command
    /// time-out. A refusal comes back as async-imap's `No` or `Bad`, so [`super::is_refusal`]
    /// sees it like any other command's; a `* BYE` before the connection drops is named in
    /// the error.
    pub(super) async fn run_reading(
        &mut self,
        command: String,
        what: &str,
        mut seen: impl FnMut(&Response<'_>),
    ) -> Result<()> {
        let session = &mut self.session;
        let news = &mut self.news;
        let exchange = async {
            let tag = session.run_command(&command).await?;
            let mut bye = None;
            loop {
                let Some(response) = session.read_response().await? else {
                    let lost = anyhow!(async_imap::error::Error::ConnectionLost);
                    return Err(match bye {
                        Some(text) => {
                            lost.context(format!("the server closed the connection: BYE {text}"))
                        }
                        None => lost,
                    });
                };
                let parsed = response.parsed();
                if let Some(text) = bye_text(parsed) {
                    bye = Some(text);
                    continue;
                }
                if matches!(parsed, Response::MailboxData(MailboxDatum::Exists(_))) {
                    *news = true;
                }
                seen(parsed);
                let Response::Done {
                    tag: done,
                    status,
                    outcome,
                } = parsed
                else {
                    continue;
                };
                if *done != tag {
                    continue;
                }
                let text = outcome.information.as_deref().unwrap_or("").to_string();
                return match status {
                    Status::Ok => Ok(()),
                    Status::No => Err(anyhow!(async_imap::error::Error::No(text))),
                    _ => Err(anyhow!(async_imap::error::Error::Bad(text))),
                };
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result.map_err(|err| err.context(what.to_string())),
            Err(_) => bail!(
                "{what}: the server did not answer within {}s",
                self.timeout.as_secs()
            ),
        }
    }
}

fn copied_from(code: Option<&ResponseCode<'_>>) -> Option<Copied> {
    let Some(ResponseCode::CopyUid(uid_validity, _, destination)) = code else {
        return None;
    };
    Some(Copied {
        uid_validity: *uid_validity,
        destination: destination
            .iter()
            .map(|member| match member {
                imap_proto::rfc4315::UidSetMember::Uid(uid) => *uid..=*uid,
                imap_proto::rfc4315::UidSetMember::UidRange(range) => range.clone(),
            })
            .collect(),
    })
}

/// A folder's wire name as an IMAP quoted string. Wire names are modified UTF-7, so only
/// printable ASCII reaches here; a line break could end the command early, so it is refused.
pub(super) fn quoted(wire: &str) -> Result<String> {
    if wire.contains(['\r', '\n']) {
        bail!("folder name {wire} contains a line break");
    }
    Ok(format!(
        "\"{}\"",
        wire.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(ranges: &[(u32, u32)]) -> Copied {
        Copied {
            uid_validity: 7,
            destination: ranges.iter().map(|(a, b)| *a..=*b).collect(),
        }
    }

    #[test]
    fn sync_point_passes_our_own_contiguous_moves() {
        assert_eq!(copied(&[(10, 19)]).passed(10), 20);
        assert_eq!(copied(&[(15, 19), (10, 14)]).passed(10), 20);
        assert_eq!(copied(&[(10, 10), (11, 12)]).passed(10), 13);
    }

    #[test]
    fn sync_point_stops_at_a_gap_someone_else_may_fill() {
        // UID 10 went to someone else's message before ours.
        assert_eq!(copied(&[(11, 19)]).passed(10), 10);
        // UID 15 is not ours: the poll must read from it.
        assert_eq!(copied(&[(10, 14), (16, 19)]).passed(10), 15);
    }

    #[test]
    fn sync_point_never_goes_back() {
        assert_eq!(copied(&[(3, 5)]).passed(10), 10);
        assert_eq!(copied(&[(8, 12)]).passed(10), 13);
    }

    #[test]
    fn folder_names_are_quoted() {
        assert_eq!(quoted("Assigned/Bob").unwrap(), "\"Assigned/Bob\"");
        assert_eq!(quoted("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert!(quoted("a\r\nb").is_err());
    }
}
