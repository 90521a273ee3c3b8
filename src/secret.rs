//! Credentials: where they come from, and a type that never prints them.
//!
//! A [`Secret`] has a redacting `Debug` and no `Display`, so a password cannot reach a log line by
//! accident. Sources are a file, an environment variable, a systemd credential
//! (`LoadCredential=`, found in `$CREDENTIALS_DIRECTORY`) or, flagged at start, the config itself.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A password or token. Its `Debug` prints `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the config file.
    Inline(Secret),
    /// The first line of a file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A systemd credential name.
    Credential(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(***)"),
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Env(name) => write!(f, "Env({name})"),
            SecretSource::Credential(name) => write!(f, "Credential({name})"),
        }
    }
}

impl SecretSource {
    /// The first configured source, in order inline, file, env, credential.
    pub fn pick(
        inline: Option<&str>,
        file: Option<&Path>,
        env: Option<&str>,
        credential: Option<&str>,
    ) -> Option<SecretSource> {
        inline
            .map(|s| SecretSource::Inline(Secret::new(s)))
            .or_else(|| file.map(|p| SecretSource::File(p.to_path_buf())))
            .or_else(|| env.map(|e| SecretSource::Env(e.to_string())))
            .or_else(|| credential.map(|c| SecretSource::Credential(c.to_string())))
    }

    /// Reads the secret. Errors name the source, never the value.
    pub fn resolve(&self) -> Result<Secret> {
        match self {
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::File(path) => read_first_line(path),
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
                _ => bail!("environment variable {name} is not set or empty"),
            },
            SecretSource::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").context(
                    "a password_credential is configured but $CREDENTIALS_DIRECTORY is not set \
                     (add LoadCredential= to the unit)",
                )?;
                read_first_line(&Path::new(&dir).join(name))
            }
        }
    }
}

fn read_first_line(path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        bail!("the secret file {} is empty", path.display());
    }
    Ok(Secret::new(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("Corr3ct-Horse!");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        let source = SecretSource::Inline(secret);
        assert!(!format!("{source:?}").contains("Corr3ct"));
    }

    #[test]
    fn file_source_reads_the_first_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "pä\"ss\\{w\nsecond line\n").unwrap();
        let secret = SecretSource::File(path).resolve().unwrap();
        assert_eq!(secret.expose(), "pä\"ss\\{w");
    }

    #[test]
    fn missing_env_names_the_variable_not_a_value() {
        let err = SecretSource::Env("POSTROOM_TEST_UNSET_VAR".into())
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("POSTROOM_TEST_UNSET_VAR"));
    }
}
