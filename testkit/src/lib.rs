//! Test harness for postroom: real servers and processes on loopback, never mocks.
//!
//! - [`dovecot`]: a throwaway Dovecot on 127.0.0.1, in a standard and an Exchange-like
//!   [`Flavor`], shared per test binary or owned by one test.
//! - [`cyrus`]: [`Cyrus`], a throwaway Cyrus IMAP 3.6, the second real server.
//! - [`client`]: [`ImapClient`], a plain IMAP user that puts mail in and looks at the result.
//! - [`daemon`]: [`Daemon`], the postroom binary as a child process with captured output.
//! - [`smtp`]: [`SmtpListener`], a real SMTP server (aiosmtpd) that stores what it accepts and
//!   can be told to refuse.
//! - [`tls`]: [`TestCa`], a throwaway CA and server certificate made with openssl.
//! - [`wait`]: [`wait_for`], polling a condition with a deadline instead of sleeping.
//! - [`proxy`]: [`FaultProxy`], a proxy in front of Dovecot that misbehaves like Exchange.
//! - `process` (private): children that die with the test binary, even when statics hold them.
//!
//! A typical integration test takes [`Dovecot::shared`], invents users with
//! [`Dovecot::unique_user`], loads mail with an [`ImapClient`], starts the daemon with
//! [`Daemon::spawn`] and waits with [`wait_for`] until the folders look right.
#![deny(unsafe_code)]

pub mod client;
pub mod cyrus;
pub mod daemon;
pub mod dovecot;
mod process;
pub mod proxy;
pub mod smtp;
pub mod tls;
pub mod wait;

/// The IMAP library the client is built on, re-exported so tests name the same version.
pub use async_imap;
pub use client::ImapClient;
pub use cyrus::Cyrus;
pub use daemon::Daemon;
pub use dovecot::{Dovecot, Flavor, Options};
pub use proxy::{FaultProxy, Hold};
pub use smtp::SmtpListener;
pub use tls::TestCa;
pub use wait::wait_for;
