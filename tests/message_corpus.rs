//! Every vendored real message goes through `message::parse`: the hard cases of
//! `tests/data/nasty/` (indexed in its INDEX.md) and a threaded sample of the SpamAssassin ham
//! corpus in `tests/data/ham/`. Sources and licences are in `tests/data/SOURCES.md`.
//!
//! The parse must never panic (not even a panic caught inside `parse`), must finish in bounded
//! time, and must fail only for a reason that fits what the file is. Ham is ordinary mail: all
//! of it must parse, with a Message-ID and a sender, and its identities must be unique and
//! survive the re-encodings Exchange applies when it regenerates MIME.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postroom::message::{parse, Automated, Envelope, ParseFailure, MAX_ATTACHMENTS};

// Kept in files of their own so each file stays readable; a subdirectory without `main.rs` is
// not a test target of its own.
#[path = "message_corpus/field_cases.rs"]
mod field_cases;
#[path = "message_corpus/reencode.rs"]
mod reencode;

/// Per message, unoptimised, on a shared machine; the slowest file takes tens of milliseconds.
const PER_MESSAGE: Duration = Duration::from_secs(2);

/// Files that cannot become an envelope, with the reason from INDEX.md: each is a MIME entity or
/// a body without a message header block, so "no usable headers" is the right answer.
const EXPECTED_FAILURES: &[(&str, ParseFailure, &str)] = &[
    (
        "charsets/enmime--chardet-success-big-5.raw.eml",
        NO_HEADERS,
        "a bare text part",
    ),
    (
        "dsn-bounces/flanker--delayed-broken.eml",
        NO_HEADERS,
        "delay DSN with no headers",
    ),
    (
        "line-endings/mimekit--octet-stream-with-mixed-line-endings.dat.eml",
        NO_HEADERS,
        "signed entity",
    ),
    (
        "line-endings/rspamd--newlines.eml",
        NO_HEADERS,
        "only a Content-Type header",
    ),
    (
        "malformed-mime/cpython--msg_19.txt.eml",
        NO_HEADERS,
        "body without header block",
    ),
    (
        "malformed-mime/enmime--quoted-printable-invalid.raw.eml",
        NO_HEADERS,
        "a bare QP part",
    ),
    (
        "malformed-mime/enmime--similar-boundary.raw.eml",
        NO_HEADERS,
        "a bare multipart",
    ),
    (
        "malformed-mime/mime4j--bad-newlines-multiple-parts.msg.eml",
        NO_HEADERS,
        "a bare multipart",
    ),
    (
        "malformed-mime/mime4j--infinite.msg.eml",
        NO_HEADERS,
        "starts with part headers",
    ),
    (
        "malformed-mime/mime4j--misplaced-boundary.msg.eml",
        NO_HEADERS,
        "a bare multipart",
    ),
    (
        "malformed-mime/mime4j--very-very-long-boundary.msg.eml",
        NO_HEADERS,
        "a bare multipart",
    ),
    (
        "structure/mimekit--multipart-related-mhtml.txt.eml",
        NO_HEADERS,
        "MHTML entity",
    ),
];

const NO_HEADERS: ParseFailure = ParseFailure::NoUsableHeaders;

/// Real bounces and reports from sisimai that carry no automatic-mail signal in their headers,
/// so they are (correctly, as far as headers can tell) treated as written by a person.
const SISIMAI_HUMAN_LOOKING: &[(&str, &str)] = &[
    (
        "arf-22.eml",
        "complaint forwarded by hotmail staff as ordinary mail",
    ),
    (
        "arf-24.eml",
        "complaint forwarded by hotmail staff as ordinary mail",
    ),
    (
        "lhost-amazonses-09.eml",
        "SNS notification from no-reply@, no auto headers",
    ),
    (
        "lhost-amazonses-10.eml",
        "SNS notification from no-reply@, no auto headers",
    ),
    (
        "lhost-amazonses-11.eml",
        "SNS notification from no-reply@, no auto headers",
    ),
    (
        "lhost-amazonses-12.eml",
        "SNS notification from no-reply@, no auto headers",
    ),
    (
        "lhost-amazonses-13.eml",
        "SNS notification from no-reply@, no auto headers",
    ),
    (
        "lhost-fml-02.eml",
        "list manager's 'not a member' answer from a list address",
    ),
    (
        "lhost-kddi-01.eml",
        "carrier error notice from no-reply@, no auto headers",
    ),
    (
        "lhost-sendmail-14.eml",
        "a person forwarding a bounce ('Fwd: Returned mail')",
    ),
    (
        "lhost-verizon-02.eml",
        "'Re:' from post_master@, an ordinary-looking reply",
    ),
];

fn data(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir)
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("vendored data is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "eml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .expect("under root")
        .to_string_lossy()
        .replace('\\', "/")
}

/// Parses one file in the time budget; a panic caught inside `parse` is a failure here too.
fn parse_file(path: &Path) -> Result<Envelope, ParseFailure> {
    let raw = std::fs::read(path).expect("vendored message is readable");
    let started = Instant::now();
    let result = parse(&raw, None);
    let took = started.elapsed();
    assert!(
        took < PER_MESSAGE,
        "{}: parse took {took:?}",
        path.display()
    );
    assert_ne!(
        result,
        Err(ParseFailure::ParserPanicked),
        "{}",
        path.display()
    );
    if let Ok(envelope) = &result {
        assert!(!envelope.identity.is_empty(), "{}", path.display());
    }
    result
}

/// The files INDEX.md lists, with what it says is special about each.
fn index() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(data("nasty/INDEX.md")).expect("INDEX.md is vendored");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let (file, rest) = rest.split_once('`')?;
            let what = rest.trim_start_matches(" | ").split(" | ").next()?;
            Some((file.to_string(), what.to_string()))
        })
        .collect()
}

/// True when the top header block (up to the first empty line) names none of the headers an
/// envelope can stand on.
fn has_no_usable_header_lines(path: &Path) -> bool {
    let raw = std::fs::read(path).expect("readable");
    let text = String::from_utf8_lossy(&raw)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let head = text.split("\n\n").next().unwrap_or("").to_ascii_lowercase();
    !head.lines().any(|line| {
        ["from:", "subject:", "date:", "message-id:"]
            .iter()
            .any(|h| line.starts_with(h))
    })
}

#[test]
fn every_nasty_message_parses_or_fails_for_a_reason_that_fits_it() {
    let root = data("nasty");
    let index = index();
    let expected: HashMap<&str, &ParseFailure> = EXPECTED_FAILURES
        .iter()
        .map(|(file, failure, _)| (*file, failure))
        .collect();
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let files = eml_files(&root);
    for path in &files {
        let name = relative(path, &root);
        let top_level = !name.starts_with("dsn-bounces/sisimai-all/");
        assert!(
            !top_level || index.contains_key(&name),
            "{name} is not in INDEX.md"
        );
        match parse_file(path) {
            Ok(_) => assert!(!expected.contains_key(name.as_str()), "{name} parsed now"),
            Err(failure) => {
                assert_eq!(
                    expected.get(name.as_str()),
                    Some(&&failure),
                    "{name}: {failure:?}"
                );
                assert!(
                    has_no_usable_header_lines(path),
                    "{name} has headers: {failure:?}"
                );
                failures
                    .entry(format!("{failure:?}"))
                    .or_default()
                    .push(name);
            }
        }
    }
    for file in index.keys() {
        assert!(
            root.join(file).is_file(),
            "INDEX.md lists {file}, which is not vendored"
        );
    }
    assert!(files.len() >= 650, "only {} nasty files found", files.len());
    let counts: BTreeMap<_, _> = failures.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    println!(
        "{} nasty files, failures by reason: {counts:?}",
        files.len()
    );
}

fn nasty(name: &str) -> Envelope {
    let path = data("nasty").join(name);
    parse_file(&path).unwrap_or_else(|f| panic!("{name}: {f:?}"))
}

#[test]
fn auto_replies_bounces_and_reports_in_the_index_are_recognised() {
    let root = data("nasty");
    for (file, what) in index() {
        let category = file.split('/').next().unwrap_or("");
        let wanted: &[Automated] = match category {
            "auto-replies" => &[Automated::AutoReply],
            "dsn-bounces" => &[Automated::Bounce],
            "reports-mdn-arf" if what.contains("disposition-notification") => {
                &[Automated::ReadReceipt]
            }
            "reports-mdn-arf" => &[Automated::Generated],
            _ => continue,
        };
        if let Ok(envelope) = parse_file(&root.join(&file)) {
            assert!(
                wanted.contains(&envelope.automated),
                "{file} ({what}): {:?}",
                envelope
            );
        }
    }
}

#[test]
fn every_sisimai_bounce_is_automatic_unless_its_headers_look_human() {
    let root = data("nasty/dsn-bounces/sisimai-all");
    let human: HashSet<&str> = SISIMAI_HUMAN_LOOKING
        .iter()
        .map(|(file, _)| *file)
        .collect();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for path in eml_files(&root) {
        let name = relative(&path, &root);
        let envelope = parse_file(&path).unwrap_or_else(|f| panic!("{name}: {f:?}"));
        let automatic = envelope.automated != Automated::No;
        assert_eq!(
            automatic,
            !human.contains(name.as_str()),
            "{name}: {:?}",
            envelope.automated
        );
        if name.starts_with("rfc3834-") {
            assert_eq!(envelope.automated, Automated::AutoReply, "{name}");
        }
        *kinds
            .entry(format!("{:?}", envelope.automated))
            .or_default() += 1;
    }
    println!("sisimai-all classified as {kinds:?}");
}

#[test]
fn special_nasty_cases_keep_what_matters() {
    // CR-only line endings (classic Mac OS) used to read as one giant header.
    for file in [
        "line-endings/sisimai--mac-lhost-exim-01.eml",
        "dsn-bounces/sisimai--mac-lhost-postfix-01.eml",
        "dsn-bounces/sisimai--mac-lhost-office365-01.eml",
    ] {
        let mac = nasty(file);
        assert!(mac.from.is_some() && mac.message_id.is_some(), "{file}");
        assert_eq!(mac.automated, Automated::Bounce, "{file}");
    }
    // A whitespace-only line before the headers used to end the header block at once.
    let enclosed = nasty("malformed-mime/flanker--enclosed-broken.eml");
    assert!(enclosed.from.is_some() && enclosed.message_id.is_some());
    // Thousands of parts: cut by the guard, still an envelope.
    let endless = nasty("malformed-mime/flanker--enclosed-endless.eml");
    assert!(endless.truncated && endless.from.is_some());
    // TNEF from real Outlook: flagged so agents know the content is in winmail.dat.
    for file in [
        "outlook-exchange/mimekit--rich-text.eml",
        "outlook-exchange/mimekit--ukr.eml",
    ] {
        assert!(nasty(file).tnef, "{file}");
    }
    assert!(!nasty("outlook-exchange/zbateson--m0022.txt.eml").tnef);
    let many = nasty("structure/phpmmp--issue408.eml");
    assert_eq!(many.attachments.len(), MAX_ATTACHMENTS);
    let polish = nasty("auto-replies/phpmmp--issue212.eml");
    assert!(
        polish
            .subject
            .starts_with("Automatyczna odpowiedź: Piotrze"),
        "{}",
        polish.subject
    );
    let japanese = nasty("charsets/rubymail--japanese_iso_2022.eml");
    assert_eq!(japanese.subject, "まみむめも");
    let hebrew = nasty("charsets/phpmmp--issue149.eml");
    assert!(
        hebrew.subject.ends_with("Invoice 02722027"),
        "{}",
        hebrew.subject
    );
}

fn ham() -> Vec<(String, Envelope)> {
    let root = data("ham");
    let files = eml_files(&root);
    assert!(files.len() >= 300, "only {} ham files", files.len());
    files
        .iter()
        .map(|path| {
            let name = relative(path, &root);
            let envelope = parse_file(path).unwrap_or_else(|f| panic!("{name}: {f:?}"));
            (name, envelope)
        })
        .collect()
}

#[test]
fn all_ham_parses_with_a_message_id_a_sender_and_a_unique_identity() {
    let ham = ham();
    let mut identities = HashSet::new();
    for (name, envelope) in &ham {
        assert!(envelope.message_id.is_some(), "{name}");
        assert!(envelope.from.is_some(), "{name}");
        assert!(envelope.identity.starts_with("m-"), "{name}");
        assert!(
            identities.insert(envelope.identity.clone()),
            "{name}: identity repeats"
        );
        assert_eq!(
            envelope.automated,
            Automated::No,
            "{name}: mailing-list mail by people"
        );
    }
}

#[test]
fn ham_holds_replies_whose_parents_are_vendored_too() {
    let ham = ham();
    let ids: HashSet<&str> = ham
        .iter()
        .filter_map(|(_, e)| e.message_id.as_deref())
        .collect();
    let linked = ham
        .iter()
        .filter(|(_, e)| {
            e.in_reply_to
                .iter()
                .chain(&e.references)
                .any(|p| ids.contains(p.as_str()))
        })
        .count();
    assert!(
        linked >= 150,
        "only {linked} replies have their parent in the sample"
    );
}
