//! IMAP framing for the fault proxy: just enough of RFC 3501 section 4.3 (literals) and RFC 7888
//! (`{n+}`) to cut the byte stream into commands and responses without ever mis-framing, plus
//! the small rewrites the proxy applies to whole responses.
//!
//! A physical line ends in CRLF. When it ends in `{n}` or `{n+}` before the CRLF, exactly n
//! bytes of literal follow, and the same logical command or response continues on the next
//! physical line. Those n bytes may contain anything, CRLF included, so they are read by count,
//! never by scanning.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// The largest line we accept before calling the peer broken; Dovecot's own limit is 64 KiB.
const MAX_LINE: usize = 1 << 20;

/// Reads physical lines and literals from one direction of a connection.
pub(crate) struct Reader<R> {
    inner: BufReader<R>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(inner: R) -> Reader<R> {
        Reader {
            inner: BufReader::new(inner),
        }
    }

    /// One physical line including its CRLF, or `None` at end of stream.
    pub(crate) async fn line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let n = (&mut self.inner)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long or stream cut mid-line",
            ));
        }
        Ok(Some(line))
    }

    /// Exactly `n` bytes of literal.
    pub(crate) async fn literal(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.inner.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// One whole logical response (server side: servers never wait before sending a literal),
    /// or `None` at end of stream.
    pub(crate) async fn response(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let Some(mut whole) = self.line().await? else {
            return Ok(None);
        };
        let mut last = whole.clone();
        while let Some(literal) = literal_announced(&last) {
            whole.extend(self.literal(literal.len).await?);
            let Some(next) = self.line().await? else {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            };
            whole.extend_from_slice(&next);
            last = next;
        }
        Ok(Some(whole))
    }
}

/// A literal announced at the end of a physical line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Literal {
    /// Its length in bytes.
    pub(crate) len: usize,
    /// `{n}`: the client waits for a `+` continuation before sending the bytes.
    pub(crate) synchronizing: bool,
}

/// The literal announced by `line` (`... {12}\r\n` or `... {12+}\r\n`), if any.
pub(crate) fn literal_announced(line: &[u8]) -> Option<Literal> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let mut digits = &inner[open + 1..];
    let synchronizing = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(Literal { len, synchronizing })
}

/// Splits a command line into its tag and the command text after it, without the CRLF.
pub(crate) fn split_command(line: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    match text.split_once(' ') {
        Some((tag, rest)) => (tag.to_owned(), rest.to_owned()),
        None => (text.to_owned(), String::new()),
    }
}

/// The command text as the proxy logs it: LOGIN and AUTHENTICATE arguments are masked, so a
/// password never reaches the log, and long lines are cut.
pub(crate) fn masked(command: &str) -> String {
    let verb = command.split(' ').next().unwrap_or_default();
    if verb.eq_ignore_ascii_case("LOGIN") {
        return "LOGIN ***".to_owned();
    }
    if verb.eq_ignore_ascii_case("AUTHENTICATE") {
        let mechanism = command.split(' ').nth(1).unwrap_or_default();
        return format!("AUTHENTICATE {mechanism} ***");
    }
    command.chars().take(200).collect()
}

/// Removes the capabilities in `strip` (compared case-insensitively) from a `* CAPABILITY`
/// response and from `[CAPABILITY ...]` response codes; other lines come back unchanged.
pub(crate) fn strip_capabilities(line: &str, strip: &[String]) -> String {
    let keep = |atom: &&str| !strip.iter().any(|s| s.eq_ignore_ascii_case(atom));
    if let Some(rest) = line.strip_prefix("* CAPABILITY ") {
        let body = rest.trim_end_matches(['\r', '\n']);
        let atoms: Vec<&str> = body.split(' ').filter(keep).collect();
        return format!("* CAPABILITY {}\r\n", atoms.join(" "));
    }
    let Some(start) = line.find("[CAPABILITY ") else {
        return line.to_owned();
    };
    let Some(len) = line[start..].find(']') else {
        return line.to_owned();
    };
    let inner = &line[start + "[CAPABILITY ".len()..start + len];
    let atoms: Vec<&str> = inner.split(' ').filter(keep).collect();
    format!(
        "{}[CAPABILITY {}{}",
        &line[..start],
        atoms.join(" "),
        &line[start + len..]
    )
}

/// For an untagged FETCH response that carries message content (`BODY[`), its sequence number
/// and UID, read from its first physical line.
pub(crate) fn body_fetch(first_line: &str) -> Option<(u32, u32)> {
    let rest = first_line.strip_prefix("* ")?;
    let (seq, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("FETCH (")?;
    if !first_line.contains("BODY[") {
        return None;
    }
    let mut tokens = rest.split([' ', '(', ')']);
    while let Some(token) = tokens.next() {
        if token.eq_ignore_ascii_case("UID") {
            let uid = tokens.next()?.parse().ok()?;
            return Some((seq.parse().ok()?, uid));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_recognised_in_both_forms() {
        let table: [(&[u8], Option<Literal>); 6] = [
            (
                b"a1 APPEND INBOX {12}\r\n",
                Some(Literal {
                    len: 12,
                    synchronizing: true,
                }),
            ),
            (
                b"a1 APPEND INBOX {7+}\r\n",
                Some(Literal {
                    len: 7,
                    synchronizing: false,
                }),
            ),
            (
                b"* 1 FETCH (BODY[] {0}\r\n",
                Some(Literal {
                    len: 0,
                    synchronizing: true,
                }),
            ),
            (b"a1 NOOP\r\n", None),
            (b"* OK {x}\r\n", None),
            (b"* OK {}\r\n", None),
        ];
        for (line, expected) in table {
            assert_eq!(
                literal_announced(line),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[tokio::test]
    async fn a_literal_containing_crlf_and_braces_does_not_misframe() {
        let body = b"x {5}\r\n\r\nhi";
        let mut wire = format!("* 1 FETCH (UID 4 BODY[] {{{}}}\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        wire.extend_from_slice(b")\r\n* 2 EXISTS\r\n");
        let mut reader = Reader::new(&wire[..]);
        let first = reader.response().await.unwrap().unwrap();
        assert!(first.ends_with(b"hi)\r\n"));
        assert_eq!(reader.response().await.unwrap().unwrap(), b"* 2 EXISTS\r\n");
        assert_eq!(reader.response().await.unwrap(), None);
    }

    #[test]
    fn login_and_authenticate_arguments_are_masked() {
        assert_eq!(masked("LOGIN \"u@x\" \"secret\""), "LOGIN ***");
        assert_eq!(
            masked("authenticate PLAIN AGZvbwBiYXI="),
            "AUTHENTICATE PLAIN ***"
        );
        assert_eq!(masked("UID FETCH 1:* (UID)"), "UID FETCH 1:* (UID)");
    }

    #[test]
    fn capabilities_are_stripped_from_lists_and_codes() {
        let strip = vec!["MOVE".to_owned(), "idle".to_owned()];
        assert_eq!(
            strip_capabilities("* CAPABILITY IMAP4rev1 IDLE MOVE UIDPLUS\r\n", &strip),
            "* CAPABILITY IMAP4rev1 UIDPLUS\r\n"
        );
        assert_eq!(
            strip_capabilities(
                "a1 OK [CAPABILITY IMAP4rev1 MOVE IDLE] Logged in\r\n",
                &strip
            ),
            "a1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"
        );
        assert_eq!(
            strip_capabilities("* 3 EXISTS\r\n", &strip),
            "* 3 EXISTS\r\n"
        );
    }

    #[test]
    fn body_fetches_name_their_uid() {
        let table = [
            (
                "* 3 FETCH (UID 7 RFC822.SIZE 10 BODY[HEADER] {5}\r\n",
                Some((3, 7)),
            ),
            (
                "* 3 FETCH (INTERNALDATE \"x\" UID 9 BODY[TEXT]<0> {5}\r\n",
                Some((3, 9)),
            ),
            ("* 3 FETCH (UID 7)\r\n", None),
            ("* 3 EXISTS\r\n", None),
        ];
        for (line, expected) in table {
            assert_eq!(body_fetch(line), expected, "{line}");
        }
    }
}
