//! A minimal IMAP client for the benchmarks: bulk loading with MULTIAPPEND and LITERAL+, and the
//! server's ceiling (one SEARCH, one MOVE). It speaks the protocol directly so that its own cost
//! stays negligible next to the server's: no parsing beyond what each command needs.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Messages per MULTIAPPEND command: large enough that round trips vanish, small enough that
/// one command stays a few megabytes.
const APPEND_BATCH: usize = 500;

/// One logged-in connection.
pub struct Raw {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    next_tag: u32,
}

impl Raw {
    /// Connects to 127.0.0.1:`port` and logs in.
    pub async fn login(port: u16, user: &str, password: &str) -> Result<Raw> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connect to port {port}"))?;
        // Literal-heavy traffic stalls on Nagle meeting delayed ACKs without this.
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        let mut raw = Raw {
            reader: BufReader::new(r),
            writer: w,
            next_tag: 1,
        };
        let mut greeting = String::new();
        raw.reader.read_line(&mut greeting).await?;
        raw.command(&format!("LOGIN \"{user}\" \"{password}\""))
            .await
            .with_context(|| format!("LOGIN {user}"))?;
        Ok(raw)
    }

    /// Sends one command line and returns its untagged lines and the tagged line.
    pub async fn command(&mut self, line: &str) -> Result<(Vec<String>, String)> {
        let tag = self.send(line.as_bytes()).await?;
        self.finish(&tag).await
    }

    async fn send(&mut self, line: &[u8]) -> Result<String> {
        let tag = format!("b{}", self.next_tag);
        self.next_tag += 1;
        let mut buf = Vec::with_capacity(line.len() + 16);
        buf.extend_from_slice(tag.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(line);
        buf.extend_from_slice(b"\r\n");
        self.writer.write_all(&buf).await?;
        Ok(tag)
    }

    /// Reads until the tagged reply; skips literals inside untagged data.
    async fn finish(&mut self, tag: &str) -> Result<(Vec<String>, String)> {
        let mut untagged = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                bail!("connection closed while waiting for {tag}");
            }
            if let Some(n) = literal_len(&line) {
                let mut skip = vec![0u8; n];
                self.reader.read_exact(&mut skip).await?;
            }
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                if !rest.starts_with("OK") {
                    bail!("{tag} failed: {}", line.trim_end());
                }
                return Ok((untagged, line));
            }
            untagged.push(line);
        }
    }

    /// Appends all `messages` to `folder`, `APPEND_BATCH` per MULTIAPPEND command.
    pub async fn multiappend(&mut self, folder: &str, messages: &[Vec<u8>]) -> Result<()> {
        for chunk in messages.chunks(APPEND_BATCH) {
            let mut cmd = format!("APPEND \"{folder}\"").into_bytes();
            for m in chunk {
                cmd.extend_from_slice(format!(" {{{}+}}\r\n", m.len()).as_bytes());
                cmd.extend_from_slice(m);
            }
            let tag = self.send(&cmd).await?;
            self.finish(&tag).await.context("MULTIAPPEND")?;
        }
        Ok(())
    }

    /// Appends one message and returns its UID from APPENDUID (RFC 4315).
    pub async fn append_uid(&mut self, folder: &str, message: &[u8]) -> Result<u32> {
        let mut cmd = format!("APPEND \"{folder}\" {{{}+}}\r\n", message.len()).into_bytes();
        cmd.extend_from_slice(message);
        let tag = self.send(&cmd).await?;
        let (_, done) = self.finish(&tag).await?;
        let uid = done
            .split("APPENDUID ")
            .nth(1)
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|u| u.trim_end_matches(']').parse().ok())
            .ok_or_else(|| anyhow!("no APPENDUID in {done:?}"))?;
        Ok(uid)
    }

    /// STATUS MESSAGES of a folder (0 when it does not exist yet).
    pub async fn count(&mut self, folder: &str) -> Result<u32> {
        let tag = self
            .send(format!("STATUS \"{folder}\" (MESSAGES)").as_bytes())
            .await?;
        let (lines, _) = match self.finish(&tag).await {
            Ok(r) => r,
            Err(e) if format!("{e}").contains("NO") => return Ok(0),
            Err(e) => return Err(e),
        };
        let n = lines
            .iter()
            .find_map(|l| l.split("MESSAGES ").nth(1))
            .and_then(|r| r.trim_end().trim_end_matches(')').parse().ok())
            .unwrap_or(0);
        Ok(n)
    }

    /// The server's ceiling: select `from`, one UID SEARCH ALL, one UID MOVE of everything.
    /// Returns how many messages the search found.
    pub async fn search_and_move_all(&mut self, from: &str, to: &str) -> Result<usize> {
        self.command(&format!("SELECT \"{from}\"")).await?;
        let (lines, _) = self.command("UID SEARCH ALL").await?;
        let uids: Vec<u32> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|r| r.split_whitespace().filter_map(|u| u.parse().ok()))
            .collect();
        let (Some(first), Some(last)) = (uids.first(), uids.last()) else {
            return Ok(0);
        };
        // The UIDs of a freshly loaded folder are contiguous, so a range names them all.
        self.command(&format!("UID MOVE {first}:{last} \"{to}\""))
            .await?;
        Ok(uids.len())
    }

    /// Logs out, ignoring a server that already went away.
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.command("LOGOUT")).await;
    }
}

/// The length of a literal announced at the end of `line` (`{123}` or `{123+}`).
fn literal_len(line: &str) -> Option<usize> {
    let line = line.trim_end();
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}
