//! The process helper against small shell scripts standing in for the daemon.

use std::time::Duration;

use anyhow::Result;
use postroom_testkit::{wait_for, Daemon};
use std::os::unix::process::ExitStatusExt;

const PATIENCE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(10);
const SIGKILL: i32 = 9;

/// Prints to both streams, then runs until SIGTERM and exits with 3.
const SERVICE: &str = r#"echo "started $GREETING"; echo "a warning" >&2
trap 'echo stopping; exit 3' TERM
while :; do sleep 0.05; done"#;

#[tokio::test]
async fn sigterm_lets_the_process_stop_itself() -> Result<()> {
    let mut daemon = Daemon::spawn("/bin/sh", ["-c", SERVICE], [("GREETING", "hello")])?;
    wait_for("the greeting on stdout", PATIENCE, POLL, async || {
        Ok(daemon.stdout().contains("started hello"))
    })
    .await?;
    assert!(daemon.try_exit_status()?.is_none());
    daemon.sigterm()?;
    let status = daemon.wait_exit(PATIENCE).await?;
    assert_eq!(status.code(), Some(3), "{}", daemon.output());
    assert!(
        daemon.stdout().ends_with("stopping\n"),
        "{}",
        daemon.output()
    );
    assert_eq!(daemon.stderr(), "a warning\n");
    assert!(
        daemon.sigterm().is_err(),
        "signalling a reaped pid must be refused"
    );
    Ok(())
}

#[tokio::test]
async fn sigkill_ends_the_process_at_once() -> Result<()> {
    let no_env: [(&str, &str); 0] = [];
    let mut daemon = Daemon::spawn("/bin/sh", ["-c", "trap '' TERM; sleep 30"], no_env)?;
    daemon.sigkill()?;
    let status = daemon.wait_exit(PATIENCE).await?;
    assert_eq!(status.signal(), Some(SIGKILL));
    Ok(())
}

#[tokio::test]
async fn wait_exit_times_out_with_the_output() -> Result<()> {
    let no_env: [(&str, &str); 0] = [];
    let mut daemon = Daemon::spawn("/bin/sh", ["-c", "echo busy; sleep 30"], no_env)?;
    wait_for("output", PATIENCE, POLL, async || {
        Ok(daemon.stdout() == "busy\n")
    })
    .await?;
    let err = daemon
        .wait_exit(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("busy"), "{err:#}");
    let pid = daemon.pid();
    drop(daemon);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "drop must kill"
    );
    Ok(())
}

#[test]
fn missing_binary_is_an_error_naming_it() {
    let no_env: [(&str, &str); 0] = [];
    let no_args: [&str; 0] = [];
    let err = Daemon::spawn("/nonexistent/postroom", no_args, no_env).unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent/postroom"),
        "{err:#}"
    );
}
