//! The command line: parse arguments, set up logging, and hand over to the library.
//!
//! Exit codes: 0 on success, 1 when the command failed, 2 when the config is invalid.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::control::Request;
use crate::store::Store;

/// Turns Exchange shared mailboxes into a managed team queue.
#[derive(Debug, Parser)]
#[command(name = "postroom", version, about, long_about = None)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/postroom/postroom.toml"
    )]
    pub config: PathBuf,
    /// Log format: `auto` (readable on a terminal, plain lines without colour under systemd),
    /// `text`, or `json` (one object per line).
    #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "text", "json"])]
    pub log_format: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch every configured mailbox and assign new conversations (the daemon).
    Run,
    /// Check the config and report every problem with its key and line.
    CheckConfig,
    /// Show open conversations per mailbox and agent, and each mailbox's last server contact.
    Status,
    /// Rebuild ownership from the mailbox folders alone, after the store was lost. Moves nothing.
    Rebuild,
    /// Show the decision for a message file, with every reason, without touching any mailbox.
    Explain {
        /// The message, as an .eml file.
        message: PathBuf,
        /// The mailbox it arrives in (the first configured one by default).
        #[arg(long)]
        mailbox: Option<String>,
        /// Decide as at this instant (RFC 3339, e.g. 2025-03-10T09:05:00+01:00) instead of now.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::FixedOffset>>,
    },
    /// Every event of the conversation a message belongs to.
    History {
        /// The message's Message-ID (with or without angle brackets).
        message_id: String,
    },
    /// Open conversations with owner and age.
    Queue {
        /// Only this mailbox.
        #[arg(long)]
        mailbox: Option<String>,
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Give a message's conversation to an agent, moving it to their folder.
    Assign {
        /// The message's Message-ID.
        message_id: String,
        /// The agent id.
        agent: String,
    },
    /// Move a message back to the inbox so it is routed again.
    Release {
        /// The message's Message-ID.
        message_id: String,
    },
    /// Close a message's conversation, moving it to Done.
    Close {
        /// The message's Message-ID.
        message_id: String,
    },
    /// Mark an agent away (no new work) or back.
    Agent {
        /// `away` or `back`.
        #[arg(value_parser = ["away", "back"])]
        state: String,
        /// The agent id.
        agent: String,
    },
    /// Print a shell completion script to stdout (bash, zsh, fish, elvish or powershell).
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Print a man page in roff to stdout: postroom(1), or postroom-COMMAND(1) for one command.
    Man {
        /// The command whose page to print, such as `run`; the main page when absent.
        command: Option<String>,
    },
    /// Volume, backlog, response times, workload and SLA compliance from the store's history.
    Report(ReportArgs),
}

/// `postroom report` options.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Only this mailbox.
    #[arg(long)]
    pub mailbox: Option<String>,
    /// The period up to now, such as 7d, 36h or 2w (default 7d).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// First UTC date, YYYY-MM-DD (with --to).
    #[arg(long, requires = "to")]
    pub from: Option<chrono::NaiveDate>,
    /// Last UTC date, included (with --from).
    #[arg(long, requires = "from")]
    pub to: Option<chrono::NaiveDate>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::report::render::Format,
    /// Take response and close instants from the event log rather than the conversations.
    #[arg(long)]
    pub recompute: bool,
}

impl ReportArgs {
    /// The report options at `now`.
    pub fn options(&self, now: chrono::DateTime<chrono::Utc>) -> Result<crate::report::Options> {
        use crate::report::{parse_since, Window};
        let window = match (self.from, self.to) {
            (Some(from), Some(to)) => Window::dates_between(from, to)?,
            _ => Window::since(now, parse_since(self.since.as_deref().unwrap_or("7d"))?),
        };
        Ok(crate::report::Options {
            mailbox: self.mailbox.clone(),
            window,
            recompute: self.recompute,
        })
    }
}

/// Entry point for the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    if let Some(code) = without_config(&cli.command)? {
        return Ok(code);
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return Ok(ExitCode::from(2));
        }
    };
    match cli.command {
        Command::CheckConfig => {
            println!(
                "{}: ok ({} mailboxes, {} agents)",
                cli.config.display(),
                config.mailboxes.len(),
                config.agents.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => request(&config, &Request::Status),
        Command::History { message_id } => request(&config, &Request::History { message_id }),
        Command::Queue { mailbox, agent } => request(&config, &Request::Queue { mailbox, agent }),
        Command::Assign { message_id, agent } => {
            request(&config, &Request::Assign { message_id, agent })
        }
        Command::Release { message_id } => request(&config, &Request::Release { message_id }),
        Command::Close { message_id } => request(&config, &Request::Close { message_id }),
        Command::Agent { state, agent } => {
            let away = state == "away";
            request(&config, &Request::Agent { agent, away })
        }
        Command::Report(args) => {
            let options = args.options(chrono::Utc::now())?;
            if let Some(name) = &options.mailbox {
                if config.mailbox(name).is_none() {
                    anyhow::bail!("no [[mailbox]] is named `{name}`");
                }
            }
            let format = args.format;
            request(
                &config,
                &crate::control::Request::Report { options, format },
            )
        }
        Command::Rebuild => {
            if crate::control::ask(&config.daemon.state_dir, &crate::control::Request::Status)?
                .is_some()
            {
                anyhow::bail!(
                    "postroom is running on this state directory; stop it before a rebuild"
                );
            }
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            runtime.block_on(crate::daemon::rebuild(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            message,
            mailbox,
            at,
        } => {
            let at = at.map(|t| t.with_timezone(&chrono::Utc));
            print!(
                "{}",
                crate::explain::run(&config, &message, mailbox.as_deref(), at)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { .. } | Command::Man { .. } => Ok(ExitCode::SUCCESS),
        Command::Run => {
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            runtime.block_on(crate::daemon::run(config, &cli.config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Carries out the commands that describe the program itself and need no config: they run at
/// package build time, where no `/etc/postroom/postroom.toml` exists.
fn without_config(command: &Command) -> Result<Option<ExitCode>> {
    use std::io::Write;
    let output = match command {
        Command::Completions { shell } => completions(*shell),
        Command::Man { command } => man_page(command.as_deref())?,
        _ => return Ok(None),
    };
    std::io::stdout()
        .write_all(&output)
        .context("write to stdout")?;
    Ok(Some(ExitCode::SUCCESS))
}

/// The completion script for one shell.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "postroom", &mut out);
    out
}

/// The roff man page of the program, or of one of its commands (`postroom-run(1)`).
pub fn man_page(command: Option<&str>) -> Result<Vec<u8>> {
    use clap::CommandFactory;
    let mut program = Cli::command();
    // Building fills in each command's display name (`postroom-run`) and usage line.
    program.build();
    let page = match command {
        None => program,
        Some(name) => program
            .find_subcommand(name)
            .cloned()
            .with_context(|| format!("no command is named `{name}`"))?,
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .manual("postroom manual")
        .source(concat!("postroom ", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .context("render the man page")?;
    Ok(out)
}

/// Sends a request to the running daemon, or carries it out on the store when none runs.
fn request(config: &Config, request: &crate::control::Request) -> Result<ExitCode> {
    let reply = match crate::control::ask(&config.daemon.state_dir, request)? {
        Some(reply) => reply,
        None => {
            let store = open_store(&config.daemon.state_dir)?;
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            runtime.block_on(crate::control::handle(request, config, &store))
        }
    };
    if reply.ok {
        print!("{}", reply.output);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {}", reply.output);
        Ok(ExitCode::from(1))
    }
}

fn open_store(dir: &Path) -> Result<Store> {
    // Opening creates a missing store; a command must not answer from an empty one made on
    // the spot (a wrong --config, a lost disk) as if the queue were empty.
    if !dir.join("db").exists() {
        anyhow::bail!(
            "no store in {}: postroom has not run with this config yet (or --config names the \
             wrong file); start `postroom run` first, or `postroom rebuild` after a lost disk",
            dir.display()
        );
    }
    Store::open(dir).with_context(|| {
        format!(
            "cannot open the store in {} (is `postroom run` holding it? stop it first)",
            dir.display()
        )
    })
}

/// Logs go to stderr; `RUST_LOG` chooses the level (default `info`).
///
/// Under systemd (`JOURNAL_STREAM` set) lines carry no colour codes and no timestamp, since the
/// journal stamps each line itself.
fn init_logging(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // async-imap traces every command it writes, LOGIN and AUTHENTICATE arguments included;
        // no level a user sets may let those through (field case BUG-29).
        .add_directive("async_imap=off".parse().expect("a constant directive"))
        .add_directive("imap_proto=off".parse().expect("a constant directive"))
        .add_directive("lettre=warn".parse().expect("a constant directive"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        "json" => builder.json().try_init(),
        _ if journal && format == "auto" => builder.with_ansi(false).without_time().try_init(),
        _ => builder.with_ansi(terminal).try_init(),
    };
}
