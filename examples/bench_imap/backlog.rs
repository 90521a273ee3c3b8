//! Benchmark 1, the backlog: the same messages in one inbox, handled three ways on one Dovecot.
//!
//! - the server's ceiling: one UID SEARCH and one UID MOVE of everything (a minimal client),
//!   and imapfilter's bulk form (`select_all():move_messages()`), which copies, flags and
//!   expunges because imapfilter never sends MOVE;
//! - imapfilter per message: fetch each message's header, run ten rules written in Lua, move it;
//! - postroom with ten rules and round robin over five agents, timed from start until the inbox
//!   is empty and every message sits in a destination folder (counted over IMAP).
//!
//! Each contender gets its own user (its own mailbox) loaded with identical messages.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postroom_testkit::{Daemon, Dovecot};

use crate::raw::Raw;
use crate::util::{self, record};

/// Loads `mail` into a fresh user's INBOX and creates the destination folders.
async fn load(dovecot: &Dovecot, user: &str, mail: &[Vec<u8>]) -> Result<Duration> {
    let mut raw = Raw::login(dovecot.port(), user, Dovecot::PASSWORD).await?;
    for folder in util::destination_folders()
        .iter()
        .chain([&"Target".to_string()])
    {
        raw.command(&format!("CREATE \"{folder}\"")).await?;
    }
    let started = Instant::now();
    raw.multiappend("INBOX", mail).await?;
    let took = started.elapsed();
    anyhow::ensure!(
        raw.count("INBOX").await? as usize == mail.len(),
        "load incomplete"
    );
    raw.logout().await;
    Ok(took)
}

/// Runs the whole backlog comparison on `n` messages.
pub async fn run(dovecot: &Dovecot, mail: &[Vec<u8>], work: &Path) -> Result<()> {
    let n = mail.len() as f64;
    let users = ["ceiling", "ifbulk", "ifmsg", "postroom"].map(|u| format!("{u}@bench.test"));
    for user in &users {
        let took = load(dovecot, user, mail).await?;
        println!(
            "loaded {} messages for {user} in {:.2} s",
            mail.len(),
            took.as_secs_f64()
        );
        record(
            "load",
            "MULTIAPPEND+LITERAL+",
            n / took.as_secs_f64(),
            "msg/s",
            "",
        )?;
    }

    let mut raw = Raw::login(dovecot.port(), &users[0], Dovecot::PASSWORD).await?;
    let started = Instant::now();
    let moved = raw.search_and_move_all("INBOX", "Target").await?;
    let ceiling = started.elapsed();
    anyhow::ensure!(moved == mail.len(), "ceiling moved {moved}");
    raw.logout().await;
    record(
        "backlog",
        "ceiling: SEARCH + one UID MOVE",
        n / ceiling.as_secs_f64(),
        "msg/s",
        "",
    )?;

    let bulk = imapfilter(dovecot, &users[1], &bulk_lua(), work)?;
    record(
        "backlog",
        "imapfilter bulk move",
        n / bulk.as_secs_f64(),
        "msg/s",
        "",
    )?;
    let per_msg = imapfilter(dovecot, &users[2], &per_message_lua(), work)?;
    record(
        "backlog",
        "imapfilter per message",
        n / per_msg.as_secs_f64(),
        "msg/s",
        "",
    )?;

    let (filed, watching) = postroom(dovecot, &users[3], mail.len(), work).await?;
    let rate = n / filed.as_secs_f64();
    record("backlog", "postroom: start to all filed", rate, "msg/s", "")?;
    record(
        "backlog",
        "postroom: start to watching",
        n / watching.as_secs_f64(),
        "msg/s",
        "",
    )?;
    let best_ceiling = ceiling.min(bulk).as_secs_f64();
    let vs_imapfilter = per_msg.as_secs_f64() / filed.as_secs_f64();
    record(
        "backlog",
        "ratio postroom / imapfilter per message",
        vs_imapfilter,
        "x",
        ">= 10",
    )?;
    let vs_ceiling = filed.as_secs_f64() / best_ceiling;
    record(
        "backlog",
        "ratio ceiling / postroom (slowdown)",
        vs_ceiling,
        "x",
        "<= 3",
    )?;
    Ok(())
}

/// Runs imapfilter on `lua` (with the server filled in) and returns its wall time.
fn imapfilter(dovecot: &Dovecot, user: &str, lua: &str, work: &Path) -> Result<Duration> {
    let home = work.join(format!("imapfilter-{user}"));
    std::fs::create_dir_all(&home)?;
    let config = home.join("config.lua");
    let header = format!(
        "options.timeout = 120\noptions.subscribe = false\noptions.create = false\n\
         options.expunge = true\n\
         acc = IMAP {{ server = '127.0.0.1', port = {}, username = '{user}', password = '{}' }}\n",
        dovecot.port(),
        Dovecot::PASSWORD
    );
    std::fs::write(&config, header + lua)?;
    let started = Instant::now();
    let out = Command::new("imapfilter")
        .arg("-c")
        .arg(&config)
        .env("HOME", &home)
        .output()
        .context("run imapfilter (apt-get install imapfilter)")?;
    let took = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "imapfilter failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("imapfilter for {user}: {:.2} s", took.as_secs_f64());
    Ok(took)
}

fn bulk_lua() -> String {
    "acc.INBOX:select_all():move_messages(acc['Target'])\n".into()
}

/// The ten rules of [`util::RULES`], as far as headers tell, in imapfilter's Lua; unmatched
/// messages go round robin over the five agents. Tag-only rules are evaluated and discarded,
/// as they would be in a real script that records them.
fn per_message_lua() -> String {
    let mut lua = String::from("local agents = {");
    for (_, name) in util::AGENTS {
        let _ = write!(lua, "'{name}',");
    }
    lua.push_str(
        r#"}
local turn = 0
local function has(h, pat) return string.find(h, pat) ~= nil end
local function route(raw)
  local h = '\n' .. string.lower(raw)
  local tags = 0
  if has(h, '\nauto%-submitted: auto%-replied') or has(h, '\nfrom:[^\n]*mailer%-daemon')
     or has(h, 'multipart/report') then return 'Automated' end
  local score = string.match(h, '\nx%-spam%-score: ([%d%.]+)') or string.match(h, 'score=([%d%.]+)')
  if score and tonumber(score) and tonumber(score) > 6 then return 'Low priority' end
  if has(h, '\nx%-priority: 1') then tags = tags + 1 end
  if has(h, '\nsubject:[^\n]*urgent') or has(h, '\nsubject:[^\n]*outage') then tags = tags + 1 end
  if has(h, '\nlist%-id:') or has(h, '\nlist%-unsubscribe:') then tags = tags + 1 end
  if has(h, '\nfrom:[^\n]*@bigcustomer%.example') or has(h, '\nfrom:[^\n]*@keyaccount%.example')
     then return 'Assigned/Alice' end
  if has(h, '\nto:[^\n]*billing@example%.test') or has(h, '\nsubject:[^\n]*invoice')
     or has(h, '\nsubject:[^\n]*rechnung') then return 'Assigned/Bob' end
  turn = turn % #agents + 1
  return 'Assigned/' .. agents[turn]
end
for _, m in ipairs(acc.INBOX:select_all()) do
  local mbox, uid = table.unpack(m)
  local dest = route(mbox[uid]:fetch_header())
  Set({ { mbox, uid } }):move_messages(acc[dest])
end
"#,
    );
    lua
}

/// Runs postroom on `user`'s inbox; returns (start to all filed, start to watching).
async fn postroom(
    dovecot: &Dovecot,
    user: &str,
    n: usize,
    work: &Path,
) -> Result<(Duration, Duration)> {
    let dir = work.join("postroom-backlog");
    std::fs::create_dir_all(&dir)?;
    let config = util::write_config(
        &dir,
        dovecot.port(),
        Dovecot::PASSWORD,
        &[user.to_string()],
        "",
    )?;
    let mut raw = Raw::login(dovecot.port(), user, Dovecot::PASSWORD).await?;
    let config = config.to_string_lossy().into_owned();
    let started = Instant::now();
    let mut daemon = Daemon::spawn(
        util::postroom_binary()?,
        ["--config", &config, "run"],
        [("RUST_LOG", "postroom=info")],
    )?;
    let folders = util::destination_folders();
    let filed = util::until("all filed", Duration::from_secs(600), ms(50), async || {
        if raw.count("INBOX").await? != 0 {
            return Ok(false);
        }
        let mut sum = 0;
        for f in &folders {
            sum += raw.count(f).await?;
        }
        Ok(sum as usize == n)
    })
    .await
    .with_context(|| daemon.output())?;
    let cpu_filed = util::cpu_time(daemon.pid())?;
    let watching = util::until("watching", Duration::from_secs(600), ms(20), async || {
        Ok(daemon.stderr().contains("watching for new mail"))
    })
    .await?
        + filed;
    let cpu_watching = util::cpu_time(daemon.pid())?;
    let peak = util::proc_mib(daemon.pid(), "VmHWM")?;
    println!(
        "postroom: all filed after {:.2} s (CPU {:.2} s), watching after {:.2} s (CPU {:.2} s), peak RSS {peak:.1} MiB",
        filed.as_secs_f64(),
        cpu_filed.as_secs_f64(),
        watching.as_secs_f64(),
        cpu_watching.as_secs_f64()
    );
    record(
        "backlog",
        "postroom CPU per message (to filed)",
        cpu_filed.as_secs_f64() * 1e6 / n as f64,
        "us",
        "",
    )?;
    record("backlog", "postroom peak RSS", peak, "MiB", "")?;
    let _ = started;
    daemon.sigterm()?;
    daemon.wait_exit(Duration::from_secs(30)).await?;
    raw.logout().await;
    Ok((filed, watching))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
