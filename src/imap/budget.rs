//! The connection budget: how many IMAP connections one authenticating account may hold.
//!
//! Exchange counts connections per *authenticating* account (`MaxConnectionsPerUser`, 16 by
//! default on premises), and a login over the limit fails exactly like a wrong password. One
//! service account that logs in to many shared mailboxes with the delegated forms therefore
//! spends one budget for all of them. Every [`crate::imap::Connection`] takes a permit from the
//! budget of its account before it connects and returns it when dropped; a connection that
//! finds the budget spent waits for a permit instead of being refused by the server.
//!
//! The account is what [`account_of`] derives from the login string:
//! - `DOMAIN\user\shared`, `domain/user/shared` → `DOMAIN\user`, `domain/user`;
//! - `user@domain\shared`, `user@domain/shared@domain` → `user@domain`;
//! - anything else (`user@domain`, `DOMAIN\user`) is its own account.
//!
//! The budget is per process: an admin command run as a separate process (`postroom rebuild`
//! beside a running daemon) has its own, so the default stays below Exchange's 16.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServerConfig;

/// One account's budget on one server.
#[derive(Debug)]
pub struct Budget {
    key: String,
    permits: Arc<Semaphore>,
    /// Set once a login on this account succeeded: a later `NO LOGIN failed.` is then far more
    /// likely the connection limit than a wrong password.
    logged_in: AtomicBool,
}

/// A held place in a budget; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    budget: Arc<Budget>,
}

impl Permit {
    /// The budget this place belongs to.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }
}

impl Budget {
    /// The budget's key: `host:port account`, lowercase.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Remembers that a login on this account worked.
    pub fn note_login(&self) {
        self.logged_in.store(true, Ordering::Relaxed);
    }

    /// True once any login on this account worked in this process.
    pub fn had_login(&self) -> bool {
        self.logged_in.load(Ordering::Relaxed)
    }

    /// Free places right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The authenticating account within a login string (see the module documentation).
pub fn account_of(login: &str) -> &str {
    let Some(cut) = login.rfind(['\\', '/']) else {
        return login;
    };
    let head = &login[..cut];
    // `DOMAIN\user` has one separator and no `@` before it: the domain alone is no account.
    if head.contains('@') || head.contains(['\\', '/']) {
        head
    } else {
        login
    }
}

type Registry = Mutex<HashMap<String, Arc<Budget>>>;

fn registry() -> &'static Registry {
    static BUDGETS: OnceLock<Registry> = OnceLock::new();
    BUDGETS.get_or_init(Registry::default)
}

/// The budget of `login`'s account on `server`, created with the server's
/// `max_connections_per_login` on first use.
pub fn budget_for(server: &ServerConfig, login: &str) -> Arc<Budget> {
    let key = format!(
        "{}:{} {}",
        server.host,
        server.effective_port(),
        account_of(login)
    )
    .to_lowercase();
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    let budget = map.entry(key.clone()).or_insert_with(|| {
        Arc::new(Budget {
            key,
            permits: Arc::new(Semaphore::new(server.max_connections_per_login.max(1))),
            logged_in: AtomicBool::new(false),
        })
    });
    Arc::clone(budget)
}

/// Takes a place in the budget of `login`'s account, waiting while all are in use.
pub async fn acquire(server: &ServerConfig, login: &str) -> anyhow::Result<Permit> {
    let budget = budget_for(server, login);
    let permit = match Arc::clone(&budget.permits).try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            tracing::warn!(
                account = account_of(login),
                limit = server.max_connections_per_login,
                "connection budget of this account is spent; waiting for a connection to close"
            );
            Arc::clone(&budget.permits).acquire_owned().await?
        }
    };
    Ok(Permit {
        _permit: permit,
        budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_read_from_delegated_forms() {
        let cases = [
            (r"CORP\svc-postroom\support", r"CORP\svc-postroom"),
            ("corp/svc/support", "corp/svc"),
            (r"svc@corp.example\support@corp.example", "svc@corp.example"),
            ("svc@corp.example/support", "svc@corp.example"),
            (r"CORP\svc-postroom", r"CORP\svc-postroom"),
            ("svc@corp.example", "svc@corp.example"),
            ("plainuser", "plainuser"),
        ];
        for (login, account) in cases {
            assert_eq!(account_of(login), account, "for {login}");
        }
    }
}
