//! Shared pieces of the IMAP benchmarks: postroom's config, the binary, process statistics,
//! and the results file that `bench/run` turns into a table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The five agents of every benchmark team, round robin in this order.
pub const AGENTS: [(&str, &str); 5] = [
    ("alice", "Alice"),
    ("bob", "Bob"),
    ("carol", "Carol"),
    ("dmitri", "Dmitri"),
    ("erin", "Erin"),
];

/// Every folder a message can end up in, as named on the wire.
pub fn destination_folders() -> Vec<String> {
    let mut out: Vec<String> = AGENTS
        .iter()
        .map(|(_, n)| format!("Assigned/{n}"))
        .collect();
    out.push("Automated".into());
    out.push("Low priority".into());
    out
}

/// Ten rules of the kind a support desk writes: automatic mail and spam out of the way, a VIP
/// and a billing route, tags from headers, subject, body and size, and after-hours marking.
pub const RULES: &str = include_str!("../../bench/rules.toml");

/// A postroom config for `mailboxes` (shared-mailbox logins) on one Dovecot. `extra` goes into
/// every `[[mailbox]]` table (e.g. `fetch_batch = 500`).
pub fn write_config(
    dir: &Path,
    port: u16,
    password: &str,
    mailboxes: &[String],
    extra: &str,
) -> Result<PathBuf> {
    let secret = dir.join("password.secret");
    std::fs::write(&secret, password)?;
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[[server]]\nname = \"dovecot\"\nhost = \"127.0.0.1\"\n\
         port = {port}\nsecurity = \"plain\"\n",
        dir.join("state").display()
    );
    for login in mailboxes {
        let name = login.split('@').next().unwrap_or(login);
        write!(
            text,
            "\n[[mailbox]]\nname = \"{name}\"\nserver = \"dovecot\"\nlogin = \"{login}\"\n\
             password_file = \"{}\"\nteam = \"support\"\n{extra}\n",
            secret.display()
        )?;
    }
    let agents: Vec<String> = AGENTS.iter().map(|(id, _)| format!("\"{id}\"")).collect();
    write!(
        text,
        "\n[[team]]\nname = \"support\"\nagents = [{}]\nstrategy = \"round_robin\"\n\
         calendar = \"office\"\n",
        agents.join(", ")
    )?;
    for (id, name) in AGENTS {
        write!(text, "\n[[agent]]\nid = \"{id}\"\nname = \"{name}\"\n")?;
    }
    text.push_str(
        "\n[[calendar]]\nname = \"office\"\ntimezone = \"Europe/Berlin\"\n\
         mon = [\"09:00-17:00\"]\ntue = [\"09:00-17:00\"]\nwed = [\"09:00-17:00\"]\n\
         thu = [\"09:00-17:00\"]\nfri = [\"09:00-17:00\"]\n",
    );
    text.push_str(RULES);
    let path = dir.join("postroom.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The release `postroom` binary next to this example's directory.
pub fn postroom_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locate the target directory")?;
    let binary = dir.join("postroom");
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: build it first",
        binary.display()
    );
    Ok(binary)
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB.
pub fn proc_mib(pid: u32, key: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} for pid {pid}"))?;
    Ok(kb / 1024.0)
}

/// User plus system CPU time of a process so far (`/proc/PID/stat` fields 14 and 15).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 1000 / clock_ticks()))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Polls `check` every `every` until it returns true; errors after `limit`.
pub async fn until<F>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> Result<Duration>
where
    F: AsyncFnMut() -> Result<bool>,
{
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "{what}: not reached within {limit:?}"
        );
        tokio::time::sleep(every).await;
    }
}

/// One line of the results table, appended to `$BENCH_OUT/results.tsv` (or printed).
pub fn record(bench: &str, metric: &str, value: f64, unit: &str, goal: &str) -> Result<()> {
    let line = format!("{bench}\t{metric}\t{value:.3}\t{unit}\t{goal}\n");
    print!("RESULT {line}");
    if let Some(out) = std::env::var("BENCH_OUT").ok().filter(|o| !o.is_empty()) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&out).join("results.tsv"))?;
        f.write_all(line.as_bytes())?;
    }
    Ok(())
}
