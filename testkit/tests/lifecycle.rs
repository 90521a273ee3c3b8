//! Shared Dovecots live in statics, which are never dropped. These tests re-run this test
//! binary as a child that takes the shared instance, and check that the server and its
//! directory go away both when that child exits normally (exit hook) and when it is killed
//! (parent-death signal).

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use postroom_testkit::{wait_for, Daemon, Dovecot, Flavor};

const PATIENCE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// Set for the re-run of this binary; says how that run ends: `exit` or `hang`.
const HOLDER_MODE: &str = "POSTROOM_TESTKIT_HOLDER_MODE";

/// Not a test of its own: the body of the child run started by the tests below. Without
/// [`HOLDER_MODE`] in the environment it returns at once.
#[test]
fn shared_instance_holder() {
    let Some(mode) = std::env::var_os(HOLDER_MODE) else {
        return;
    };
    let dovecot = Dovecot::shared(Flavor::Standard);
    println!("port={}", dovecot.port());
    println!("config={}", dovecot.config_path().display());
    if mode == "hang" {
        std::thread::sleep(Duration::from_secs(120));
    }
}

#[tokio::test]
async fn shared_instance_is_removed_when_the_test_binary_exits() -> Result<()> {
    let (mut holder, port, config) = run_holder("exit").await?;
    let status = holder.wait_exit(PATIENCE).await?;
    assert!(status.success(), "{}", holder.output());
    assert!(!master_running(&config), "Dovecot survived its test binary");
    assert!(
        !config.exists(),
        "{} survived its test binary",
        config.display()
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}

#[tokio::test]
async fn shared_instance_dies_with_a_killed_test_binary() -> Result<()> {
    let (mut holder, port, config) = run_holder("hang").await?;
    holder.sigkill()?;
    holder.wait_exit(PATIENCE).await?;
    wait_for("the orphaned Dovecot to stop", PATIENCE, POLL, async || {
        Ok(!master_running(&config) && TcpStream::connect(("127.0.0.1", port)).is_err())
    })
    .await?;
    // A killed binary runs no exit hook, so its directory is left for us to remove.
    let dir = config.parent().context("config path has no directory")?;
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Runs this test binary's holder and returns it with the port and config path it printed.
async fn run_holder(mode: &str) -> Result<(Daemon, u16, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find this test binary")?;
    let args = ["--exact", "shared_instance_holder", "--nocapture"];
    let mut holder = Daemon::spawn(exe, args, [(HOLDER_MODE, mode)])?;
    wait_for(
        "the holder to report its Dovecot",
        PATIENCE,
        POLL,
        async || Ok(holder.stdout().contains("config=") || holder.try_exit_status()?.is_some()),
    )
    .await?;
    let stdout = holder.stdout();
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .map(str::to_owned)
            .with_context(|| format!("no {key} in the holder's output:\n{}", holder.output()))
    };
    let port = value("port=")?.parse().context("bad port")?;
    let config = PathBuf::from(value("config=")?);
    Ok((holder, port, config))
}

/// Whether a Dovecot master started with `config` is running (zombies excluded).
fn master_running(config: &Path) -> bool {
    let needle = config.as_os_str().as_encoded_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(|entry| entry.ok()).any(|entry| {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        cmdline.windows(needle.len()).any(|window| window == needle)
    })
}
