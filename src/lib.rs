//! postroom turns Exchange shared mailboxes into a managed team queue.
//!
//! Mail flows one way through these modules:
//!
//! - [`config`]: the TOML contract with the admin, validated up front (`config_check`).
//! - [`imap`]: talks IMAP to the server: connect, log in, fetch, move. It applies decisions and
//!   never makes them.
//! - [`message`]: raw bytes to an [`message::Envelope`] and a stable identity.
//! - [`decide`] with [`assign`]: the pure decision (conversation, owner, folder), shared by `run`
//!   and `explain`, testable without a server.
//! - [`store`]: sled behind a narrow API; every decision is recorded before the mailbox changes.
//! - [`outlook`]: what people do in Outlook (drags between folders) becomes the store's truth.
//! - [`sla`] on [`calendar`]: pure SLA clocks in business time: deadlines, warnings, due levels.
//! - [`worker`]: one task per mailbox running catch-up and IDLE: fetch, decide, record, move.
//! - [`escalate`] with [`notify`]: the periodic SLA tick turns due levels into mails in the
//!   store's outbox, sent over SMTP exactly once each (`[smtp]` in [`config_smtp`]).
//! - [`daemon`]: starts the workers and stops them cleanly on a signal.
//! - [`status`]: reads the store for `postroom status`; [`control`] lets commands reach a running
//!   daemon, since only one process may open the store.
//!
//! [`clock`] is the one source of "now", and [`secret`] keeps credentials out of every log.

#![forbid(unsafe_code)]

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
pub mod imap;
pub mod message;
pub mod notify;
pub mod outlook;
pub mod secret;
pub mod sla;
pub mod status;
pub mod store;
pub mod worker;
