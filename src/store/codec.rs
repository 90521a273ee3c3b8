//! A compact binary form for conversation records, the records a report reads by the million.
//!
//! JSON spelled out every field name and every instant as RFC 3339 text (about 440 bytes for a
//! typical conversation, and most of a report's time went to parsing it). This form writes the
//! fields in a fixed order: strings as a length and their bytes, numbers as LEB128 varints,
//! instants as seconds (zigzag) and nanoseconds, options and the state as one tag byte. It
//! starts with a version byte, [`VERSION`]; a JSON record starts with `{`, so both can be read
//! and a store written before this form needs no step before it opens (the upgrade rewrites
//! the records anyway, see `upgrade`). A field added later needs a new version byte.

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, Utc};

use super::{Conversation, ConversationState, ResponseSource, Wait, MAX_WAITS};

/// The first byte of a conversation in this form.
const VERSION: u8 = 1;

/// Encodes a conversation.
pub(super) fn encode(conv: &Conversation) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + conv.subject.len());
    out.push(VERSION);
    put_str(&mut out, &conv.id);
    put_str(&mut out, &conv.mailbox);
    put_opt_str(&mut out, conv.owner.as_deref());
    out.push(match conv.state {
        ConversationState::Open => 0,
        ConversationState::Closed => 1,
    });
    put_time(&mut out, conv.started);
    put_time(&mut out, conv.last_message);
    put_varint(&mut out, u64::from(conv.messages));
    put_str(&mut out, &conv.subject);
    put_opt_str(&mut out, conv.from.as_deref());
    for at in [
        conv.closed_at,
        conv.first_response_at,
        conv.last_response_at,
        conv.waiting_since,
    ] {
        match at {
            Some(at) => {
                out.push(1);
                put_time(&mut out, at);
            }
            None => out.push(0),
        }
    }
    put_opt_str(&mut out, conv.sla.as_deref());
    for list in [&conv.tags, &conv.rules] {
        put_varint(&mut out, list.len() as u64);
        for item in list {
            put_str(&mut out, item);
        }
    }
    // Fields after the lists may be absent in a record: a reader takes their defaults then.
    out.push(match conv.first_response_by {
        None => 0,
        Some(ResponseSource::SentFolder) => 1,
        Some(ResponseSource::AnsweredFlag) => 2,
    });
    put_opt_str(&mut out, conv.merged_into.as_deref());
    // Absent when empty, as in records written before waits were kept.
    if !conv.answered_waits.is_empty() {
        put_varint(&mut out, conv.answered_waits.len() as u64);
        for wait in &conv.answered_waits {
            put_time(&mut out, wait.since);
            put_time(&mut out, wait.answered);
        }
    }
    out
}

/// Decodes a conversation in this form or in the JSON of earlier versions.
pub(super) fn decode(bytes: &[u8]) -> Result<Conversation> {
    match bytes.first() {
        Some(b'{') => serde_json::from_slice(bytes).context("decode a stored conversation"),
        Some(&VERSION) => decode_binary(&bytes[1..]).context("decode a stored conversation"),
        Some(other) => bail!("a stored conversation has an unknown form ({other})"),
        None => bail!("a stored conversation is empty"),
    }
}

/// True when a stored conversation is still JSON.
pub(super) fn is_json(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'{')
}

fn decode_binary(mut input: &[u8]) -> Result<Conversation> {
    let r = &mut input;
    let conv = Conversation {
        id: take_str(r)?,
        mailbox: take_str(r)?,
        owner: take_opt_str(r)?,
        state: match take_byte(r)? {
            0 => ConversationState::Open,
            1 => ConversationState::Closed,
            other => bail!("unknown state {other}"),
        },
        started: take_time(r)?,
        last_message: take_time(r)?,
        messages: u32::try_from(take_varint(r)?).context("message count")?,
        subject: take_str(r)?,
        from: take_opt_str(r)?,
        closed_at: take_opt_time(r)?,
        first_response_at: take_opt_time(r)?,
        last_response_at: take_opt_time(r)?,
        waiting_since: take_opt_time(r)?,
        sla: take_opt_str(r)?,
        tags: take_list(r)?,
        rules: take_list(r)?,
        first_response_by: match r.is_empty() {
            true => None,
            false => match take_byte(r)? {
                0 => None,
                1 => Some(ResponseSource::SentFolder),
                2 => Some(ResponseSource::AnsweredFlag),
                other => bail!("unknown response source {other}"),
            },
        },
        merged_into: match r.is_empty() {
            true => None,
            false => take_opt_str(r)?,
        },
        answered_waits: match r.is_empty() {
            true => Vec::new(),
            false => take_waits(r)?,
        },
    };
    ensure!(r.is_empty(), "{} bytes left over", r.len());
    Ok(conv)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            out.push(1);
            put_str(out, text);
        }
        None => out.push(0),
    }
}

/// Seconds zigzag-encoded (an instant before 1970 stays short), then nanoseconds.
fn put_time(out: &mut Vec<u8>, at: DateTime<Utc>) {
    let secs = at.timestamp();
    put_varint(out, ((secs << 1) ^ (secs >> 63)) as u64);
    put_varint(out, u64::from(at.timestamp_subsec_nanos()));
}

fn take_byte(input: &mut &[u8]) -> Result<u8> {
    let (&byte, rest) = input.split_first().context("record cut short")?;
    *input = rest;
    Ok(byte)
}

pub(super) fn take_varint(input: &mut &[u8]) -> Result<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take_byte(input)?;
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(n);
        }
    }
    bail!("number too long")
}

fn take_str(input: &mut &[u8]) -> Result<String> {
    let len = usize::try_from(take_varint(input)?)?;
    ensure!(input.len() >= len, "text cut short");
    let (text, rest) = input.split_at(len);
    *input = rest;
    String::from_utf8(text.to_vec()).context("text is not UTF-8")
}

fn take_opt_str(input: &mut &[u8]) -> Result<Option<String>> {
    match take_byte(input)? {
        0 => Ok(None),
        1 => take_str(input).map(Some),
        other => bail!("unknown option tag {other}"),
    }
}

fn take_time(input: &mut &[u8]) -> Result<DateTime<Utc>> {
    let zigzag = take_varint(input)?;
    let secs = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
    let nanos = u32::try_from(take_varint(input)?).context("nanoseconds")?;
    DateTime::from_timestamp(secs, nanos).context("instant out of range")
}

fn take_opt_time(input: &mut &[u8]) -> Result<Option<DateTime<Utc>>> {
    match take_byte(input)? {
        0 => Ok(None),
        1 => take_time(input).map(Some),
        other => bail!("unknown option tag {other}"),
    }
}

fn take_list(input: &mut &[u8]) -> Result<Vec<String>> {
    let n = take_varint(input)?;
    // Each item takes at least its length byte: a count beyond what is left is corruption,
    // not a reason to reserve memory for it.
    ensure!(n <= input.len() as u64, "list longer than the record");
    (0..n).map(|_| take_str(input)).collect()
}

fn take_waits(input: &mut &[u8]) -> Result<Vec<Wait>> {
    let n = take_varint(input)?;
    // Two instants take at least four bytes; the store never writes more than MAX_WAITS.
    ensure!(
        n <= MAX_WAITS as u64 && n * 4 <= input.len() as u64,
        "wait list longer than the record"
    );
    (0..n)
        .map(|_| {
            Ok(Wait {
                since: take_time(input)?,
                answered: take_time(input)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, nanos).unwrap_or_default()
    }

    fn full() -> Conversation {
        Conversation {
            id: "c42".into(),
            mailbox: "support".into(),
            owner: Some("alice".into()),
            state: ConversationState::Closed,
            started: at(1_741_000_000, 785_844_072),
            last_message: at(1_741_003_600, 1),
            messages: 3,
            subject: "Größe — ärger 💥".into(),
            from: Some("a@example.com".into()),
            closed_at: Some(at(-86_401, 999_999_999)),
            first_response_at: Some(at(0, 0)),
            last_response_at: None,
            waiting_since: Some(at(1_741_000_000, 0)),
            sla: Some("standard".into()),
            tags: vec!["vip".into(), "billing".into()],
            rules: vec!["vip customers".into()],
            first_response_by: Some(ResponseSource::AnsweredFlag),
            merged_into: Some("c7".into()),
            answered_waits: vec![
                Wait {
                    since: at(1_741_100_000, 0),
                    answered: at(1_741_103_600, 5),
                },
                Wait {
                    since: at(1_741_200_000, 0),
                    answered: at(1_741_200_060, 0),
                },
            ],
        }
    }

    #[test]
    fn a_record_without_the_later_fields_reads_with_their_defaults() {
        let conv = Conversation {
            answered_waits: Vec::new(),
            ..full()
        };
        let mut bytes = encode(&conv);
        // Drop the response source byte and the merged-into option written after the lists.
        bytes.truncate(bytes.len() - 1 - 1 - 1 - conv.merged_into.as_ref().map_or(0, |m| m.len()));
        let read = decode(&bytes).unwrap();
        assert_eq!(read.first_response_by, None);
        assert_eq!(read.merged_into, None);
        assert_eq!(read.rules, conv.rules);
    }

    #[test]
    fn conversations_round_trip_and_are_smaller_than_json() {
        let empty = Conversation {
            owner: None,
            state: ConversationState::Open,
            from: None,
            closed_at: None,
            first_response_at: None,
            waiting_since: None,
            sla: None,
            tags: Vec::new(),
            rules: Vec::new(),
            subject: String::new(),
            first_response_by: None,
            merged_into: None,
            answered_waits: Vec::new(),
            ..full()
        };
        for conv in [full(), empty] {
            let bytes = encode(&conv);
            assert_eq!(decode(&bytes).ok(), Some(conv.clone()));
            let json = serde_json::to_vec(&conv).unwrap_or_default();
            assert!(
                bytes.len() * 2 < json.len(),
                "{} vs {}",
                bytes.len(),
                json.len()
            );
        }
    }

    #[test]
    fn json_records_of_earlier_versions_still_read() {
        let json = serde_json::to_vec(&full()).unwrap_or_default();
        assert!(is_json(&json));
        assert_eq!(decode(&json).ok(), Some(full()));
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bytes = encode(&full());
        // The response source byte, the merged-into option ("c7") and the wait list close the
        // record, and each may be absent with what follows it; any other cut is damage.
        let without_waits = encode(&Conversation {
            answered_waits: Vec::new(),
            ..full()
        })
        .len();
        let without_merged = without_waits - (1 + 1 + 2);
        let endings = [without_merged - 1, without_merged, without_waits];
        for cut in (0..bytes.len()).filter(|cut| !endings.contains(cut)) {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for cut in endings {
            assert!(decode(&bytes[..cut]).is_ok(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
    }
}
