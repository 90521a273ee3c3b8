//! The benchmark's mail: the vendored ham corpus (`tests/data/ham`, 314 real messages),
//! multiplied into as many distinct messages as a benchmark needs.
//!
//! Copy `k` of every message gets `.bk<k>` appended inside each id of its `Message-ID`,
//! `In-Reply-To` and `References` headers, so every copy has its own identity while replies in
//! copy `k` still point at their parents in copy `k`: threads stay threads, just `k` times over.
//! A message without a Message-ID gets one. Line endings are normalised to CRLF, as IMAP
//! APPEND expects (the corpus has LF, CRLF and CR-only files).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The original messages, CRLF-normalised, in Date order so a reply follows its parent.
pub fn originals() -> Result<Vec<Vec<u8>>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ham");
    let mut files = Vec::new();
    collect(&dir, &mut files)?;
    files.sort();
    let mut mail = Vec::new();
    for path in files {
        let raw = crlf(&std::fs::read(&path)?);
        let date = postroom::message::parse(&raw, None)
            .ok()
            .and_then(|e| e.date);
        mail.push((date, raw));
    }
    mail.sort_by_key(|(d, _)| *d);
    anyhow::ensure!(!mail.is_empty(), "no messages in {}", dir.display());
    Ok(mail.into_iter().map(|(_, m)| m).collect())
}

/// `n` distinct messages: copy 0 of every original, then copy 1, and so on.
pub fn distinct(originals: &[Vec<u8>], n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| rewrite(&originals[i % originals.len()], i / originals.len(), i))
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// CRLF line endings whatever the file used.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if raw.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Copy `k` of a CRLF message (see the module documentation); `serial` names a missing id.
fn rewrite(raw: &[u8], k: usize, serial: usize) -> Vec<u8> {
    let split = find(raw, b"\r\n\r\n").map(|p| p + 2).unwrap_or(raw.len());
    let (head, body) = raw.split_at(split);
    let head = String::from_utf8_lossy(head);
    let suffix = format!(".bk{k}>");
    let mut out = String::with_capacity(head.len() + 64);
    let mut in_id_header = false;
    let mut has_id = false;
    for line in head.split_inclusive("\r\n") {
        let folded = line.starts_with(' ') || line.starts_with('\t');
        if !folded {
            let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
            in_id_header = matches!(name.as_str(), "message-id" | "in-reply-to" | "references");
            has_id |= name == "message-id";
        }
        if in_id_header {
            out.push_str(&line.replace('>', &suffix));
        } else {
            out.push_str(line);
        }
    }
    let mut msg = Vec::with_capacity(raw.len() + 80);
    if !has_id {
        msg.extend_from_slice(format!("Message-ID: <bench-{serial}@bench.example>\r\n").as_bytes());
    }
    msg.extend_from_slice(out.as_bytes());
    msg.extend_from_slice(body);
    msg
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
