//! Test harness for postroom: real servers and processes on loopback, never mocks.
//!
//! - [`dovecot`]: a throwaway Dovecot on 127.0.0.1, in a standard and an Exchange-like
//!   [`Flavor`], shared per test binary or owned by one test.
//! - [`daemon`]: [`Daemon`], the postroom binary as a child process with captured output.
//! - [`wait`]: [`wait_for`], polling a condition with a deadline instead of sleeping.
//! - `process` (private): children that die with the test binary, even when statics hold them.
#![deny(unsafe_code)]

pub mod daemon;
pub mod dovecot;
mod process;
pub mod wait;

pub use daemon::Daemon;
pub use dovecot::{Dovecot, Flavor};
pub use wait::wait_for;
