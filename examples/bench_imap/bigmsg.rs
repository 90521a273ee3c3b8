//! Benchmark 4, a big message: a 50 MB message with two attachments arrives while postroom
//! watches; its peak resident memory (VmHWM) before and after routing shows whether anything
//! beyond headers and the `body_fetch_bytes` cap was held.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine as _;
use postroom_testkit::{Daemon, Dovecot};

use crate::raw::Raw;
use crate::util::{self, record};

/// A multipart message of about `mib` MiB: a short text part and two base64 attachments.
fn big_message(mib: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    let raw_len = mib * 1024 * 1024 * 3 / 4 / 2;
    let mut msg = String::from(
        "From: Big Customer <ops@bigcustomer.example>\r\nTo: support@example.test\r\n\
         Subject: logs and a disk image for the outage\r\nMessage-ID: <big-1@bench.example>\r\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nPlease see the attached files.\r\n",
    );
    for name in ["logs.tar.gz", "disk.img"] {
        let data: Vec<u8> = (0..raw_len).map(|_| rng.u8(..)).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        msg.push_str(&format!(
            "--b1\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        ));
        for line in b64.as_bytes().chunks(76) {
            msg.push_str(std::str::from_utf8(line).unwrap_or_default());
            msg.push_str("\r\n");
        }
    }
    msg.push_str("--b1--\r\n");
    msg.into_bytes()
}

/// Routes one message of about `mib` MiB and reports postroom's peak RSS rise.
pub async fn run(dovecot: &Dovecot, mib: usize, work: &Path) -> Result<()> {
    let user = "big@bench.test".to_string();
    let dir = work.join("postroom-big");
    std::fs::create_dir_all(&dir)?;
    let config = util::write_config(
        &dir,
        dovecot.port(),
        Dovecot::PASSWORD,
        std::slice::from_ref(&user),
        "",
    )?;
    let config = config.to_string_lossy().into_owned();
    let mut daemon = Daemon::spawn(
        util::postroom_binary()?,
        ["--config", &config, "run"],
        [("RUST_LOG", "postroom=info")],
    )?;
    util::until(
        "watching",
        Duration::from_secs(60),
        Duration::from_millis(50),
        async || Ok(daemon.stderr().contains("watching for new mail")),
    )
    .await
    .with_context(|| daemon.output())?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = util::proc_mib(daemon.pid(), "VmHWM")?;
    let msg = big_message(mib);
    let size = msg.len() as f64 / 1048576.0;
    let mut raw = Raw::login(dovecot.port(), &user, Dovecot::PASSWORD).await?;
    let started = Instant::now();
    raw.append_uid("INBOX", &msg).await?;
    drop(msg);
    let folders = util::destination_folders();
    let took = util::until(
        "moved",
        Duration::from_secs(120),
        Duration::from_millis(20),
        async || {
            let mut filed = 0;
            for f in &folders {
                filed += raw.count(f).await?;
            }
            Ok(filed == 1 && raw.count("INBOX").await? == 0)
        },
    )
    .await?;
    let _ = started;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = util::proc_mib(daemon.pid(), "VmHWM")?;
    println!(
        "big message {size:.1} MiB routed in {:.2} s; peak RSS {before:.1} -> {after:.1} MiB",
        took.as_secs_f64()
    );
    record(
        "big",
        &format!("{size:.0} MiB message: time to filed"),
        took.as_secs_f64(),
        "s",
        "",
    )?;
    record(
        "big",
        "peak RSS rise while routing it",
        after - before,
        "MiB",
        "~ body_fetch_bytes (64 KiB)",
    )?;
    daemon.sigterm()?;
    daemon.wait_exit(Duration::from_secs(30)).await?;
    raw.logout().await;
    Ok(())
}
