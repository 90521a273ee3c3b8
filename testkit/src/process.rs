//! Child processes that cannot outlive the test binary that started them.
//!
//! A test binary keeps its shared Dovecot in a `static`, and statics are never dropped, so
//! nothing in Rust stops that server when the binary exits; a crashed or killed test binary
//! would leave daemons behind too. Every child the testkit starts therefore asks the kernel for a
//! parent-death signal (`prctl(PR_SET_PDEATHSIG)`, set in `pre_exec` between fork and exec).
//!
//! Linux sends that signal when the *thread* that forked the child exits, not when the process
//! does, and libtest runs each test on its own short-lived thread. A child forked from a test
//! thread would be killed as soon as that one test returned. All children are therefore forked
//! from a single spawner thread that lives as long as the process.
//!
//! Each child also gets its own process group, so that Dovecot's helper processes (login,
//! auth, log, one `imap` per connection) can be signalled and waited for as one unit.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// A unit of work for the spawner thread.
type Job = Box<dyn FnOnce() + Send>;

/// The queue of the spawner thread; the thread lives while this sender exists, which is forever.
fn spawner() -> &'static mpsc::Sender<Job> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .expect("the testkit cannot start its spawner thread");
        tx
    })
}

/// Spawns `cmd` in a new process group; the kernel sends it `death_signal` when we die.
pub(crate) fn spawn_tied(mut cmd: Command, death_signal: libc::c_int) -> Result<Child> {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid); the errors it builds from raw OS codes do not allocate.
    unsafe {
        cmd.pre_exec(move || arm_death_signal(parent, death_signal));
    }
    cmd.process_group(0);

    let program = cmd.get_program().to_string_lossy().into_owned();
    let (reply_tx, reply_rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = reply_tx.send(cmd.spawn());
    });
    spawner()
        .send(job)
        .map_err(|_| anyhow!("the spawner thread is gone"))?;
    let spawned = reply_rx
        .recv()
        .context("the spawner thread dropped the request")?;
    spawned.with_context(|| format!("cannot start {program}"))
}

/// Runs in the forked child: requests `signal` on parent death, and closes the race where the
/// parent died before the request was made.
fn arm_death_signal(parent: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() as u32 != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// Sends `signal` to one process.
pub(crate) fn signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    match unsafe { libc::kill(pid as libc::pid_t, signal) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Sends `signal` to every process of the group led by `pgid`.
pub(crate) fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions; a negative pid addresses a group.
    match unsafe { libc::kill(-(pgid as libc::pid_t), signal) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Whether a process of the group `pgid` is still running. Zombies do not count: a stopped
/// master stays a zombie until we reap it, which keeps its pid, and with it the group id,
/// from being reused while we still signal the group.
pub(crate) fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // Without /proc, fall back to asking the kernel, zombies included.
        return signal_group(pgid, 0).is_ok();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .any(|stat| running_in_group(&stat, pgid))
}

/// Reads `/proc/PID/stat` ("pid (comm) state ppid pgrp ..."); comm may contain anything, so
/// the fields are counted from the last parenthesis.
fn running_in_group(stat: &str, pgid: u32) -> bool {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
    group == Some(pgid) && !matches!(state, Some("Z" | "X"))
}

/// Waits until the group `pgid` has no running process; false if it still had one at
/// `timeout`.
pub(crate) fn wait_group_gone(pgid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while group_alive(pgid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Stops the group led by `child` as a service manager does: SIGTERM to every process of the
/// group at once (systemd's default `KillMode=control-group`), SIGKILL for whatever still runs
/// after `grace`. Returns once the whole group is gone and `child` is reaped.
///
/// SIGTERM is repeated while the group lives: a process forked just as the first signal went
/// out (a server that is still starting its helpers) would otherwise miss it. `child` is reaped
/// last, see [`group_alive`].
pub(crate) fn stop_group(child: &mut Child, grace: Duration) {
    let pgid = child.id();
    let deadline = Instant::now() + grace;
    let mut next_signal = Instant::now();
    while group_alive(pgid) {
        let now = Instant::now();
        if now >= deadline {
            let _ = signal_group(pgid, libc::SIGKILL);
            wait_group_gone(pgid, grace);
            break;
        }
        if now >= next_signal {
            let _ = signal_group(pgid, libc::SIGTERM);
            next_signal = now + Duration::from_millis(100);
        }
        thread::sleep(Duration::from_millis(5));
    }
    let _ = child.wait();
}

/// Registers `hook` to run when the process exits normally (`exit` or return from `main`).
pub(crate) fn at_exit(hook: extern "C" fn()) {
    // SAFETY: atexit only stores the function pointer; the hook is a plain `extern "C" fn`.
    unsafe {
        libc::atexit(hook);
    }
}
