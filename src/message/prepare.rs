//! Guards that run over the raw bytes before mail-parser sees them.
//!
//! mail-parser is tolerant, but some inputs cost it more than a message is worth, and a few
//! would take the whole process down rather than panic (which `catch_unwind` could contain):
//!
//! - Nesting: a `message/rfc822` part becomes a nested parsed message, and dropping that tree
//!   recurses once per level, so a few megabytes of nested `message/rfc822` headers overflow the
//!   stack and abort the daemon (a stack overflow is not a panic). We count the container types a
//!   message declares and cut the input before the one that goes past [`MAX_MIME_CONTAINERS`].
//! - Part count: every boundary line starts a part that is decoded and stored, so ten thousand
//!   tiny parts cost ten thousand allocations for an envelope that keeps a hundred attachment
//!   names. We cut before the boundary line past [`MAX_MIME_DELIMITERS`].
//! - Size: the parser keeps part offsets as `u32` and decodes every part it reaches, so the input
//!   is cut at [`MAX_PARSE_BYTES`]. The worker already fetches only the start of the body; this
//!   bounds the header block too, which IMAP hands over whole.
//!
//! Cutting is safe because a cut message is just a truncated MIME message, which the parser
//! already handles (the IMAP fetch truncates bodies the same way). The top-level header block,
//! which is what routing and threading read, comes first and is only lost for inputs whose header
//! block alone is larger than [`MAX_PARSE_BYTES`].
//!
//! Three repairs make real mail parse that otherwise would not: classic Mac OS (CR-only) line
//! endings are turned into LF (mail-parser only splits lines on LF, so such a message reads as one
//! giant header), whitespace-only lines before the first header are skipped (the parser takes them
//! as the blank line that ends an empty header block), and a one- or two-letter time zone at the
//! end of a `Date:` line is padded (the parser's zone reader would swallow the next header).
//!
//! mail-parser itself handled ten thousand parts and a thousand levels of multipart nesting in
//! milliseconds when measured; the part and size caps are there to keep the cost bounded by
//! design rather than by the parser's current behaviour. The nesting cap is not optional: without
//! it, 100,000 nested `message/rfc822` headers (7 MB) overflowed a 2 MiB thread stack, the size
//! tokio gives its worker threads, in a debug build.

use std::borrow::Cow;

/// The most bytes handed to the parser. Far above the default body fetch (64 KiB) plus any real
/// header block, so only hostile or broken input is ever cut; small enough that one message costs
/// at most tens of milliseconds and a few megabytes of memory.
pub const MAX_PARSE_BYTES: usize = 4 * 1024 * 1024;

/// The most MIME boundary lines parsed. Real mail with 300 attachments has about 300; the
/// envelope keeps only [`super::MAX_ATTACHMENTS`] names anyway.
pub const MAX_MIME_DELIMITERS: usize = 1000;

/// The most `multipart/*` and `message/*` declarations parsed, which bounds how deep parts can
/// nest. Real mail nests a handful of levels (a forward of a forward of a signed message).
pub const MAX_MIME_CONTAINERS: usize = 64;

/// How far into the message the line-ending check looks for the first line break.
const LINE_ENDING_PROBE: usize = 64 * 1024;

/// The input as the parser will see it.
pub(super) struct Prepared<'a> {
    /// The bytes to parse.
    pub bytes: Cow<'a, [u8]>,
    /// True when a guard cut the input short.
    pub truncated: bool,
}

/// Applies the repairs and the caps described in the module documentation.
pub(super) fn prepare(raw: &[u8]) -> Prepared<'_> {
    let mut bytes = Cow::Borrowed(raw);
    if uses_bare_cr(raw) {
        bytes = Cow::Owned(bare_cr_to_lf(raw));
    }
    let start = leading_blank_lines(&bytes);
    bytes = cut(bytes, start, usize::MAX);
    if let Some(padded) = pad_obsolete_zones(&bytes) {
        bytes = Cow::Owned(padded);
    }
    let end = safe_len(&bytes);
    let truncated = end < bytes.len();
    Prepared {
        bytes: cut(bytes, 0, end),
        truncated,
    }
}

/// `bytes[start..end]`, without copying borrowed input.
fn cut(bytes: Cow<'_, [u8]>, start: usize, end: usize) -> Cow<'_, [u8]> {
    let end = end.min(bytes.len());
    if start == 0 && end == bytes.len() {
        return bytes;
    }
    match bytes {
        Cow::Borrowed(b) => Cow::Borrowed(&b[start..end]),
        Cow::Owned(mut v) => {
            v.truncate(end);
            v.drain(..start);
            Cow::Owned(v)
        }
    }
}

/// True when the first line break is a CR without LF: a classic Mac OS message. Only then are
/// line endings rewritten, so a stray CR inside a normal message can never become a new header.
fn uses_bare_cr(raw: &[u8]) -> bool {
    let probe = &raw[..raw.len().min(LINE_ENDING_PROBE)];
    match probe.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(at) if probe[at] == b'\r' => raw.get(at + 1) != Some(&b'\n'),
        _ => false,
    }
}

fn bare_cr_to_lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            out.push(b'\n');
        } else {
            out.push(b);
        }
    }
    out
}

/// The length of the leading lines that hold only spaces and tabs. A truly empty first line is
/// kept: it means "no headers", and skipping it would read the body as headers.
fn leading_blank_lines(bytes: &[u8]) -> usize {
    let mut start = 0;
    loop {
        let rest = &bytes[start..];
        let blanks = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let after = &rest[blanks..];
        let newline = match after {
            [b'\n', ..] => 1,
            [b'\r', b'\n', ..] => 2,
            _ => 0,
        };
        if blanks == 0 || newline == 0 {
            return start;
        }
        start += blanks + newline;
    }
}

/// Pads a one- or two-letter time zone at the end of a `Date:` or `Received:` line with two
/// spaces. mail-parser reads a letter zone as three bytes whatever its length, so `UT` (valid
/// RFC 5322 §4.3) or a military `Z` at the end of a line eats the line break, and the next header
/// (often `From:`) vanishes into the date. Trailing spaces in a header value mean nothing, so the
/// padding changes no field. Returns `None` when no line needs it (the usual case).
fn pad_obsolete_zones(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut padded: Option<Vec<u8>> = None;
    let mut dated = false;
    let mut pos = 0;
    while pos < bytes.len() {
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |at| pos + at);
        let line = &bytes[pos..end];
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        if content.is_empty() {
            break; // The end of the header block.
        }
        if !matches!(content[0], b' ' | b'\t') {
            let name = content.split(|&b| b == b':').next().unwrap_or_default();
            dated = [&b"date"[..], b"resent-date", b"received"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n));
        }
        if dated && ends_with_short_zone(content) {
            let out = padded.get_or_insert_with(|| bytes[..pos].to_vec());
            out.extend_from_slice(content);
            out.extend_from_slice(b"  ");
            out.extend_from_slice(&line[content.len()..]);
        } else if let Some(out) = padded.as_mut() {
            out.extend_from_slice(line);
        }
        if let Some(out) = padded.as_mut() {
            out.extend_from_slice(&bytes[end..(end + 1).min(bytes.len())]);
        }
        pos = end + 1;
    }
    let mut out = padded?;
    out.extend_from_slice(bytes.get(pos..).unwrap_or_default());
    Some(out)
}

/// True when the line ends in a space and then one or two ASCII letters (`... 06:00:48 UT`).
fn ends_with_short_zone(line: &[u8]) -> bool {
    let letters = line
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    (1..=2).contains(&letters) && line.len() > letters && line[line.len() - letters - 1] == b' '
}

/// How many bytes may be parsed: all of them, unless a line goes past one of the limits or the
/// input is longer than [`MAX_PARSE_BYTES`], in which case the input is cut at a line start.
fn safe_len(bytes: &[u8]) -> usize {
    let limit = bytes.len().min(MAX_PARSE_BYTES);
    let (mut delimiters, mut containers, mut pos) = (0, 0, 0);
    while pos < limit {
        let line_end = bytes[pos..limit]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(limit, |at| pos + at);
        let line = &bytes[pos..line_end];
        if line.starts_with(b"--") {
            delimiters += 1;
        } else if declares_container(line, &bytes[line_end..limit]) {
            containers += 1;
        }
        if delimiters > MAX_MIME_DELIMITERS || containers > MAX_MIME_CONTAINERS {
            return pos;
        }
        pos = line_end + 1;
    }
    if bytes.len() <= MAX_PARSE_BYTES {
        return bytes.len();
    }
    // Cut after the last complete line when there is one, so no header is cut mid-way.
    bytes[..MAX_PARSE_BYTES]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(MAX_PARSE_BYTES, |at| at + 1)
}

/// True for a `Content-Type:` line whose value (possibly on the folded next line) is a
/// `multipart/*` or `message/*` type, the two kinds that open a new nesting level.
fn declares_container(line: &[u8], following: &[u8]) -> bool {
    const NAME: &[u8] = b"content-type:";
    if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return false;
    }
    let value = line[NAME.len()..].iter().chain(following.iter().take(256));
    let value: Vec<u8> = value
        .filter(|b| !b.is_ascii_whitespace() && **b != b'"')
        .take(10)
        .map(u8::to_ascii_lowercase)
        .collect();
    value.starts_with(b"multipart") || value.starts_with(b"message")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(raw: &[u8]) -> (Vec<u8>, bool) {
        let p = prepare(raw);
        (p.bytes.into_owned(), p.truncated)
    }

    #[test]
    fn ordinary_input_passes_through_untouched_and_unbuffered() {
        let raw = b"From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let p = prepare(raw);
        assert!(matches!(p.bytes, Cow::Borrowed(_)));
        assert_eq!(&*p.bytes, raw);
        assert!(!p.truncated);
    }

    #[test]
    fn line_endings_are_rewritten_only_for_cr_only_messages() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"From: a\rSubject: b\r\rbody\r",
                b"From: a\nSubject: b\n\nbody\n",
            ),
            (
                b"From: a\r\nSubject: b\rBcc: c\r\n",
                b"From: a\r\nSubject: b\rBcc: c\r\n",
            ),
            (b"From: a\nSubject: b\r\n", b"From: a\nSubject: b\r\n"),
            (b"From: a\r", b"From: a\n"),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                prepared(raw).0,
                *expected,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn whitespace_lines_before_the_headers_are_skipped_but_an_empty_line_is_not() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"   \nFrom: a\n", b"From: a\n"),
            (b" \t \r\n  \nFrom: a\n", b"From: a\n"),
            (b"\r\nbody only\r\n", b"\r\nbody only\r\n"),
            (b"   ", b"   "),
            (b" From: folded?\n", b" From: folded?\n"),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                prepared(raw).0,
                *expected,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn short_letter_zones_on_date_lines_are_padded_and_nothing_else_is() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"Date: 1 Jan 2002 06:00:48 UT\nFrom: a\n\nb UT\n",
                b"Date: 1 Jan 2002 06:00:48 UT  \nFrom: a\n\nb UT\n",
            ),
            (
                b"Received: by x;\r\n 1 Jan 2002 06:00 Z\r\nFrom: a\r\n",
                b"Received: by x;\r\n 1 Jan 2002 06:00 Z  \r\nFrom: a\r\n",
            ),
            (
                b"Date: 1 Jan 2002 06:00:48 GMT\nFrom: a\n",
                b"Date: 1 Jan 2002 06:00:48 GMT\nFrom: a\n",
            ),
            (b"Subject: Plan B\nFrom: a\n", b"Subject: Plan B\nFrom: a\n"),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                prepared(raw).0,
                *expected,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn boundary_lines_past_the_limit_are_cut_off() {
        let mut raw = b"Content-Type: multipart/mixed; boundary=b\n\n".to_vec();
        for _ in 0..MAX_MIME_DELIMITERS + 5 {
            raw.extend_from_slice(b"--b\n\nx\n");
        }
        let (bytes, truncated) = prepared(&raw);
        assert!(truncated);
        let kept = bytes
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"--"))
            .count();
        assert_eq!(kept, MAX_MIME_DELIMITERS);
    }

    #[test]
    fn container_declarations_past_the_limit_are_cut_off_even_when_folded() {
        let mut raw = b"From: a\n".to_vec();
        for i in 0..MAX_MIME_CONTAINERS + 5 {
            let line: &[u8] = match i % 3 {
                0 => b"Content-Type: message/rfc822\n\n",
                1 => b"content-type:\n \"Multipart/Mixed\"; boundary=q\n\n",
                _ => b"CONTENT-TYPE: text/plain\nContent-Type: MESSAGE/global\n\n",
            };
            raw.extend_from_slice(line);
        }
        let (bytes, truncated) = prepared(&raw);
        assert!(truncated);
        let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
        let kept = text.matches("message/").count() + text.matches("multipart/").count();
        assert_eq!(kept, MAX_MIME_CONTAINERS);
    }

    #[test]
    fn oversized_input_is_cut_after_a_whole_line() {
        let mut raw = b"From: a\nSubject: b\n\n".to_vec();
        raw.extend(std::iter::repeat_n(b"0123456789abcde\n", MAX_PARSE_BYTES / 16 + 10).flatten());
        let (bytes, truncated) = prepared(&raw);
        assert!(truncated && bytes.len() <= MAX_PARSE_BYTES);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let one_line = vec![b'y'; MAX_PARSE_BYTES + 10];
        assert_eq!(prepared(&one_line).0.len(), MAX_PARSE_BYTES);
    }
}
