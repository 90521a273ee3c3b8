//! Every message of the vendored nasty corpus goes through intake on a real Dovecot: those that
//! parse are filed, the rest are quarantined with a reason and left in the inbox, and none of
//! them stops the mailbox. Checked from the mailbox and from `postroom status`.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{placement, Site};
use postroom_testkit::{wait_for, Flavor};

fn nasty_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nasty");
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|e| e != "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn the_nasty_corpus_is_filed_or_quarantined_and_never_blocks() {
    let site = Site::new(Flavor::Standard, "nasty");
    let mut client = site.client().await;
    let (mut appended, mut refused) = (0usize, Vec::new());
    for path in nasty_files() {
        let raw = std::fs::read(&path).unwrap();
        match client.append("INBOX", &raw).await {
            Ok(()) => appended += 1,
            // Dovecot refuses a few byte sequences outright (the server's call, not ours).
            Err(err) => refused.push(format!("{}: {err:#}", path.display())),
        }
    }
    assert!(
        refused.len() * 20 < appended,
        "Dovecot refused too many: {refused:#?}"
    );
    let last = common::mail("last@c.example.test", "After the corpus", None);
    client.append("INBOX", &last).await.unwrap();

    let mut daemon = site.start();
    wait_for(
        "the last message filed",
        Duration::from_secs(120),
        Duration::from_millis(200),
        async || {
            let all = placement(&mut client).await?;
            Ok(all
                .iter()
                .any(|(f, id)| f != "INBOX" && id.as_deref() == Some("last@c.example.test")))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    daemon.sigterm().unwrap();
    assert!(
        daemon
            .wait_exit(Duration::from_secs(30))
            .await
            .unwrap()
            .success(),
        "{}",
        daemon.output()
    );
    assert!(!daemon.output().contains("panicked"), "{}", daemon.output());

    let left = client.message_ids("INBOX").await.unwrap();
    let (ok, status) = site.command(&["status"]);
    assert!(ok, "{status}");
    let quarantined: HashSet<u32> = site
        .store()
        .quarantined(Some("support"))
        .unwrap()
        .into_iter()
        .map(|q| {
            assert!(!q.reason.is_empty());
            q.uid
        })
        .collect();
    // Whatever stayed in the inbox is exactly what was quarantined, each with a reason.
    let left_uids: HashSet<u32> = left.iter().map(|(uid, _)| *uid).collect();
    assert_eq!(left_uids, quarantined, "{status}");
    assert!(
        status.contains(&format!("quarantined: {}", quarantined.len())),
        "{status}"
    );
    let filed = placement(&mut client)
        .await
        .unwrap()
        .iter()
        .filter(|(f, _)| f != "INBOX")
        .count();
    assert_eq!(filed + left.len(), appended + 1);
    assert!(
        filed > appended * 9 / 10,
        "most of the corpus parses: {filed} of {appended}"
    );
}
