//! postroom turns Exchange shared mailboxes into a managed team queue.
//!
//! Mail flows one way through these modules:
//!
//! - [`config`]: the TOML contract with the admin, validated up front (`config_check`).
//! - [`imap`]: talks IMAP to the server: connect, log in, fetch, move. It applies decisions and
//!   never makes them.
//! - [`message`]: raw bytes to an [`message::Envelope`] and a stable identity.
//! - [`rules`]: the admin's ordered routing rules and what they say about a message.
//! - [`decide`] with [`assign`]: the pure decision (conversation, owner, folder), shared by `run`
//!   and `explain`, testable without a server.
//! - [`explain`]: runs a decision on a message file and prints the reasoning.
//! - [`intake`]: decides one message (or re-finds its decision) and records it before any move.
//! - [`store`]: sled behind a narrow API; every decision is recorded before the mailbox changes.
//! - [`outlook`]: what people do in Outlook (drags between folders) becomes the store's truth;
//!   [`answered`] takes Outlook's `\Answered` flag as a hint that the team responded.
//! - [`sla`] on [`calendar`]: pure SLA clocks in business time: deadlines, warnings, due levels.
//! - [`worker`]: one task per mailbox running catch-up and IDLE: fetch, decide, record, move.
//! - [`escalate`] with [`notify`]: the periodic SLA tick turns due levels into mails in the
//!   store's outbox, each sent once over SMTP (`[smtp]` in [`config_smtp`]).
//! - [`daemon`]: supervises the workers, tells systemd it is ready, reloads on SIGHUP and stops
//!   cleanly on SIGTERM.
//!
//! Reading the store, never the mailbox:
//!
//! - [`status`] for `postroom status`; [`admin`] carries out admin commands (assign, release,
//!   close, queue, history, away); [`control`] lets commands reach a running daemon, since
//!   only one process may open the store.
//! - [`report`] computes what leads ask (volume, backlog, response times, workload, SLA
//!   compliance) from the history; [`http`] serves it as a dashboard beside [`metrics`] and a
//!   health check.
//!
//! [`clock`] is the one source of "now", and [`secret`] keeps credentials out of every log;
//! [`oauth`] runs `token_command` for XOAUTH2 logins and caches its tokens until near expiry.

#![forbid(unsafe_code)]

pub mod admin;
pub mod answered;
pub mod assign;
pub mod calendar;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_check;
pub mod config_smtp;
pub mod control;
pub mod daemon;
pub mod decide;
pub mod escalate;
pub mod explain;
pub mod http;
pub mod imap;
pub mod intake;
pub mod message;
pub mod metrics;
pub mod notify;
pub mod oauth;
pub mod outlook;
pub mod report;
pub mod rules;
pub mod secret;
pub mod sla;
pub mod status;
pub mod store;
pub mod worker;
