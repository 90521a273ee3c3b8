//! Waiting for a condition instead of sleeping.
//!
//! The daemon under test reacts to IDLE pushes, which Dovecot sends about 500 ms after a change,
//! and to its own timers; a fixed sleep is either too short on a loaded machine or wastes time
//! on an idle one. Tests poll a condition with [`wait_for`] and fail with a message that names
//! the condition.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::time::Instant;

/// Polls `check` every `poll_interval` until it returns `Ok(true)`, for at most `timeout`.
///
/// `what` describes the awaited condition ("INBOX of catchup-1 is empty") and appears in the
/// time-out error. An `Err` from `check` ends the wait at once, with `what` as context: a
/// failing probe is a broken test, not a condition that may still come true. Map expected
/// transient errors to `Ok(false)` inside `check` if needed.
///
/// ```no_run
/// # async fn demo(daemon: &postroom_testkit::Daemon) -> anyhow::Result<()> {
/// use std::time::Duration;
/// postroom_testkit::wait_for(
///     "the daemon to report its first pass",
///     Duration::from_secs(5),
///     Duration::from_millis(50),
///     async || Ok(daemon.stderr().contains("first pass done")),
/// )
/// .await?;
/// # Ok(()) }
/// ```
///
/// `check` may borrow mutably from the test (an `async ||` closure can hold `&mut client`
/// across its await points), which a closure returning a future could not.
pub async fn wait_for<F>(
    what: &str,
    timeout: Duration,
    poll_interval: Duration,
    mut check: F,
) -> Result<()>
where
    F: AsyncFnMut() -> Result<bool>,
{
    let started = Instant::now();
    let mut polls = 0u32;
    loop {
        polls += 1;
        if check()
            .await
            .with_context(|| format!("while waiting for {what}"))?
        {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            bail!("timed out after {timeout:?} ({polls} checks) waiting for {what}");
        }
        tokio::time::sleep(poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let mut calls = 0;
        let short = Duration::from_millis(1);
        wait_for("third call", Duration::from_secs(5), short, async || {
            calls += 1;
            Ok(calls == 3)
        })
        .await
        .unwrap();
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn timeout_names_the_condition() {
        let short = Duration::from_millis(1);
        let err = wait_for(
            "the impossible",
            Duration::from_millis(20),
            short,
            async || Ok(false),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("waiting for the impossible"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn probe_error_ends_the_wait_with_context() {
        let err = wait_for(
            "a probe",
            Duration::from_secs(5),
            Duration::from_millis(1),
            async || bail!("server gone"),
        )
        .await
        .unwrap_err();
        assert_eq!(format!("{err:#}"), "while waiting for a probe: server gone");
    }
}
