//! The configuration text of a throwaway Dovecot.
//!
//! Everything lives under one temporary directory so that instances never meet: sockets in
//! `run/`, state in `state/`, the log in `dovecot.log`, mail in `mail/<user>/`. Values that
//! differ from Dovecot's defaults are explained next to them; the rest is left at the defaults
//! on purpose, so that tests see the server behaviour our users will see.

use std::path::Path;

use super::Flavor;

/// Owner and group of the mail processes. Dovecot refuses to run them as root; any non-zero
/// id works and needs no `/etc/passwd` entry.
pub(crate) const MAIL_UID: u32 = 20000;

/// Exchange Online's capability list after login, as far as a client can rely on it: no MOVE,
/// no CONDSTORE/QRESYNC, no ENABLE, no SPECIAL-USE.
const EXCHANGE_CAPABILITIES: &str =
    "IMAP4 IMAP4rev1 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+";

/// Global ACL for the Exchange-like flavor: every right except `w` (write flags other than
/// `\Seen` and `\Deleted`). Without `w`, PERMANENTFLAGS drops `\*`, so keywords cannot be
/// stored, as on Exchange. `\Flagged`, `\Answered` and `\Draft` are lost too, which Exchange
/// would keep; tests must not rely on them in this flavor.
pub(crate) const EXCHANGE_ACL: &str = "* owner lrsitekxpa\n* anyone lrsitekxpa\n";

/// Renders `dovecot.conf` for an instance rooted at `dir`, listening on `port`.
pub(crate) fn render(dir: &Path, flavor: Flavor, port: u16, password: &str) -> String {
    let dir = dir.display();
    let mut conf = format!(
        r#"# Written by postroom-testkit for one test run; deleted with it.
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
ssl = no

# Loopback only, so plaintext LOGIN is acceptable and what the daemon under test uses.
disable_plaintext_auth = no
auth_mechanisms = plain login

# Any character in user names: Exchange's delegated forms (`DOMAIN\user\shared`) contain a
# backslash, which Dovecot refuses by default.
auth_username_chars =

# sdbox keeps per-message work fast on big folders; fsync buys nothing for throwaway mail.
mail_location = sdbox:~/sdbox
mail_fsync = never

# The default of 10 connections per user and IP is far below what parallel tests open.
mail_max_userip_connections = 500

# Any user name logs in with the one password, and gets a fresh home on first login.
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={dir}/mail/%u allow_all_users=yes
}}

service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"#
    );
    if flavor == Flavor::ExchangeLike {
        conf.push_str(&exchange_like(&dir.to_string()));
    }
    conf
}

/// `conf` changed to require TLS: the certificate and key, and an imaps listener on `port`.
pub(crate) fn with_tls(conf: &str, cert: &Path, key: &Path, port: u16) -> String {
    let ssl = format!(
        "ssl = required\nssl_cert = <{}\nssl_key = <{}\n",
        cert.display(),
        key.display()
    );
    let imaps = format!("inet_listener imaps {{\n    port = {port}\n");
    conf.replacen("ssl = no\n", &ssl, 1).replacen(
        "inet_listener imaps {\n    port = 0\n",
        &imaps,
        1,
    )
}

/// The settings that make Dovecot advertise and enforce what Exchange Online offers.
fn exchange_like(dir: &str) -> String {
    format!(
        r#"
# Exchange-like: advertise only Exchange's capabilities. Dovecot would still execute MOVE if
# a client sent it, so clients under test must honour the advertisement.
imap_capability = {EXCHANGE_CAPABILITIES}

# Exchange-like: no custom keywords, through an ACL without the `w` right.
mail_plugins = $mail_plugins acl
protocol imap {{
  mail_plugins = $mail_plugins imap_acl
}}
plugin {{
  acl = vfile:{dir}/dovecot-acl
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_config_has_no_exchange_settings() {
        let conf = render(Path::new("/t"), Flavor::Standard, 1234, "pw");
        assert!(conf.contains("port = 1234"));
        assert!(conf.contains("base_dir = /t/run"));
        assert!(conf.contains("args = password=pw"));
        assert!(!conf.contains("imap_capability"));
        assert!(!conf.contains("acl"));
    }

    #[test]
    fn tls_config_requires_tls_and_listens_for_imaps() {
        let conf = render(Path::new("/t"), Flavor::Standard, 1234, "pw");
        let conf = with_tls(&conf, Path::new("/c.pem"), Path::new("/k.pem"), 4321);
        assert!(conf.contains("ssl = required\nssl_cert = </c.pem\nssl_key = </k.pem\n"));
        assert!(conf.contains("inet_listener imaps {\n    port = 4321\n"));
        assert!(!conf.contains("ssl = no"));
    }

    #[test]
    fn exchange_like_config_limits_capabilities_and_rights() {
        let conf = render(Path::new("/t"), Flavor::ExchangeLike, 1234, "pw");
        assert!(conf.contains(&format!("imap_capability = {EXCHANGE_CAPABILITIES}")));
        assert!(conf.contains("acl = vfile:/t/dovecot-acl"));
        assert!(!EXCHANGE_CAPABILITIES.contains("MOVE"));
        for line in EXCHANGE_ACL.lines() {
            let rights = line
                .split_whitespace()
                .nth(2)
                .expect("pattern, identifier, rights");
            assert!(!rights.contains('w'), "{line}");
        }
    }
}
