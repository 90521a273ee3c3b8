//! Test harness for postroom: real servers and processes on loopback, never mocks.
//!
//! - [`dovecot`]: a throwaway Dovecot on 127.0.0.1, in a standard and an Exchange-like
//!   [`Flavor`], shared per test binary or owned by one test.
//! - `process` (private): children that die with the test binary, even when statics hold them.
#![deny(unsafe_code)]

pub mod dovecot;
mod process;

pub use dovecot::{Dovecot, Flavor};
