//! The crash test: real mail delivered while the daemon is killed with SIGKILL at random
//! moments and restarted; at the end every message is handled exactly once.
//!
//! The vendored ham corpus holds about 300 messages; each is delivered in several variants
//! whose Message-ID, In-Reply-To and References are all prefixed alike, so every variant is a
//! separate, still consistent set of threads. The kill moments come from a seeded RNG: the seed
//! is printed, and `POSTROOM_CRASH_SEED=<n>` replays a failing run.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use postroom_testkit::Flavor;

use crate::common::{self, placement, wait_all_filed};
use crate::rig::{assert_decided_once, stop, Rig};

/// How many variants of each corpus message are delivered (about 1,500 messages in all).
const VARIANTS: usize = 5;

/// How many times the daemon is killed; mail is delivered before every other start.
const KILLS: usize = 8;

/// The ham corpus as delivered: variant `v` of each message that parses, has a Message-ID
/// and uses LF line ends (CR-only files cannot be split into header lines).
fn corpus() -> Vec<Vec<u8>> {
    let originals = common::ham(usize::MAX);
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for v in 0..VARIANTS {
        for raw in &originals {
            let Some(variant) = variant(raw, v) else {
                continue;
            };
            let Ok(envelope) = postroom::message::parse(&variant, None) else {
                continue;
            };
            let Some(id) = envelope.message_id.clone() else {
                continue;
            };
            if ids.insert(id) {
                out.push(variant);
            }
        }
    }
    out
}

/// `raw` with every message id in its threading headers prefixed by `v<n>.`.
fn variant(raw: &[u8], v: usize) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(raw);
    let split = text.find("\n\n").or_else(|| text.find("\r\n\r\n"))?;
    let (head, body) = text.split_at(split);
    let mut in_id_header = false;
    let mut lines = Vec::new();
    for line in head.split('\n') {
        let lower = line.to_ascii_lowercase();
        if !line.starts_with([' ', '\t']) {
            in_id_header = ["message-id:", "in-reply-to:", "references:"]
                .iter()
                .any(|h| lower.starts_with(h));
        }
        if in_id_header {
            lines.push(line.replace('<', &format!("<v{v}.")));
        } else {
            lines.push(line.to_owned());
        }
    }
    Some(format!("{}{body}", lines.join("\n")).into_bytes())
}

#[tokio::test]
async fn killed_at_random_while_mail_arrives_every_message_is_handled_once() {
    let seed = std::env::var("POSTROOM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("crash test seed: {seed} (replay with POSTROOM_CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let messages = corpus();
    assert!(
        messages.len() >= 1_200,
        "corpus too small: {}",
        messages.len()
    );

    let rig = Rig::with_mailbox(Flavor::Standard, "crash", "fetch_batch = 50\n");
    let mut client = rig.site.client().await;
    // Mail arrives before every other start, so some kills hit a fresh backlog and some hit
    // the tail of one; the pauses are short enough to land mid-backlog.
    let mut parts = messages.chunks(messages.len().div_ceil(KILLS / 2));
    let mut interrupted = 0;
    for round in 0..KILLS {
        if round % 2 == 0 {
            for raw in parts.next().unwrap_or_default() {
                client.append("INBOX", raw).await.expect("append");
            }
        }
        let before = client.count("INBOX").await.expect("count the inbox");
        let mut daemon = rig.site.start();
        let pause = Duration::from_millis(rng.u64(50..600));
        tokio::time::sleep(pause).await;
        daemon.sigkill().expect("SIGKILL");
        let _ = daemon.wait_exit(Duration::from_secs(10)).await;
        let after = client.count("INBOX").await.expect("count the inbox");
        println!("round {round}: killed after {pause:?}; inbox {before} -> {after}");
        if after > 0 && after < before {
            interrupted += 1;
        }
    }
    assert!(interrupted >= 1, "seed {seed}: no kill landed mid-backlog");
    let mut daemon = rig.site.start();
    wait_all_filed(&mut client, messages.len(), Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", daemon.output()));
    stop(&mut daemon).await;

    let all = placement(&mut client).await.expect("placement");
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for (folder, id) in all {
        seen.entry(id.expect("every message has a Message-ID"))
            .or_default()
            .push(folder);
    }
    let wrong: Vec<_> = seen
        .iter()
        .filter(|(_, f)| f.len() != 1 || f[0] == "INBOX")
        .collect();
    assert!(wrong.is_empty(), "seed {seed}: misplaced: {wrong:?}");
    assert_eq!(seen.len(), messages.len(), "seed {seed}");
    assert_decided_once(&rig.site, messages.len());
}
