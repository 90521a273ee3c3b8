//! Logging in and securing the channel against real servers on loopback: LOGIN with Exchange's
//! delegated form, AUTHENTICATE PLAIN, XOAUTH2 (a fake at the proxy, see the testkit's
//! `proxy::xoauth2`), token refresh and renewal, TLS with a test CA, pinning, the hints TLS
//! failures carry, and the connection budget per account.

use std::time::{Duration, Instant};

use postroom::config::{MailboxConfig, ServerConfig};
use postroom::imap::{auth, Connection};
use postroom::secret::Secret;
use postroom_testkit::{Dovecot, FaultProxy, Flavor, Options, TestCa};

/// A password with the characters IMAP quoting must escape.
const AWKWARD_PASSWORD: &str = r#"pa\ss"w0rd'x"#;

fn server(port: u16, extra: &str) -> ServerConfig {
    let text = format!(
        "name = \"s\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\n\
         command_timeout_secs = 10\n{extra}"
    );
    toml::from_str(&text).expect("server config")
}

fn tls_server(host: &str, port: u16, extra: &str) -> ServerConfig {
    let text = format!(
        "name = \"s\"\nhost = \"{host}\"\nport = {port}\nsecurity = \"tls\"\n\
         command_timeout_secs = 10\n{extra}"
    );
    toml::from_str(&text).expect("server config")
}

fn mailbox(login: &str, extra: &str) -> MailboxConfig {
    let text = format!("name = \"m\"\nserver = \"s\"\nlogin = '{login}'\nteam = \"t\"\n{extra}");
    toml::from_str(&text).expect("mailbox config")
}

/// A Dovecot whose every user has [`AWKWARD_PASSWORD`], with a proxy in front.
fn awkward_dovecot() -> (Dovecot, FaultProxy) {
    let mut options = Options::new(Flavor::Standard);
    options.password = AWKWARD_PASSWORD.to_string();
    let dovecot = Dovecot::start_with(options).expect("start dovecot");
    let proxy = FaultProxy::in_front_of(&dovecot).expect("start proxy");
    (dovecot, proxy)
}

/// A token_command printing `{"access_token":"<prefix>-N","expires_in":<secs>}`, N counting
/// runs in a file of its own (so tests never share a cache entry).
fn counting_command(dir: &tempfile::TempDir, prefix: &str, expires_in: u64) -> Vec<String> {
    let counter = dir.path().join(format!("{prefix}.count"));
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
         printf '{{\"access_token\":\"{prefix}-%s\",\"expires_in\":{expires_in}}}' $n",
        c = counter.display()
    );
    vec!["sh".into(), "-c".into(), script]
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

#[tokio::test]
async fn a_delegated_login_and_awkward_password_reach_dovecot_unchanged() {
    let (dovecot, proxy) = awkward_dovecot();
    let login = r"CORP\svc-postroom\support";
    let conn = Connection::open(
        &server(proxy.port(), ""),
        login,
        &Secret::new(AWKWARD_PASSWORD),
    )
    .await
    .expect("login with the delegated form");
    conn.logout().await;
    let log = dovecot.log();
    assert!(
        log.to_lowercase()
            .contains(r"user=<corp\svc-postroom\support>"),
        "{log}"
    );
    assert!(proxy.commands().contains(&"LOGIN ***".to_string()));
}

#[tokio::test]
async fn authenticate_plain_is_used_when_configured() {
    let (dovecot, proxy) = awkward_dovecot();
    let mailbox = mailbox("plain-user@example.test", "auth = \"plain\"");
    let password = Secret::new(AWKWARD_PASSWORD);
    let conn = Connection::open_mailbox(&server(proxy.port(), ""), &mailbox, &password)
        .await
        .expect("AUTHENTICATE PLAIN");
    assert_eq!(conn.expires_at(), None, "password logins never expire");
    conn.logout().await;
    let commands = proxy.commands();
    assert!(
        commands.contains(&"AUTHENTICATE PLAIN ***".to_string()),
        "{commands:?}"
    );
    assert!(
        !commands.iter().any(|c| c.starts_with("LOGIN")),
        "{commands:?}"
    );
    assert!(dovecot
        .log()
        .contains("user=<plain-user@example.test>, method=PLAIN"));
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_echoing_it() {
    let (_dovecot, proxy) = awkward_dovecot();
    let err = Connection::open(
        &server(proxy.port(), ""),
        "x@example.test",
        &Secret::new("nope-42"),
    )
    .await
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("LOGIN as x@example.test refused"), "{text}");
    assert!(!text.contains("nope-42"), "{text}");
    assert!(
        !auth::is_connection_limit(&err),
        "no earlier login: a plain refusal"
    );
}

#[tokio::test]
async fn xoauth2_sends_the_shared_mailbox_as_user_with_the_commands_token() {
    let (dovecot, proxy) = awkward_dovecot();
    let dir = tempfile::tempdir().unwrap();
    let command = counting_command(&dir, "xo", 3600);
    proxy.fake_xoauth2(&["xo-1"], AWKWARD_PASSWORD);
    let extra = format!(
        "auth = \"xoauth2\"\noauth_user = \"support@example.test\"\ntoken_command = {}",
        toml_list(&command)
    );
    let mailbox = mailbox("svc@example.test", &extra);
    let opened = Instant::now();
    let conn = Connection::open_mailbox(&server(proxy.port(), ""), &mailbox, &Secret::new(""))
        .await
        .expect("XOAUTH2 login");
    let renew_in = conn.expires_at().expect("token login has a deadline") - opened;
    // 3600 s lifetime minus the 10-minute margin.
    assert!(
        renew_in <= Duration::from_secs(3001) && renew_in > Duration::from_secs(2980),
        "{renew_in:?}"
    );
    conn.logout().await;
    let attempts = proxy.xoauth2_attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].user, "support@example.test");
    assert_eq!(attempts[0].token, "xo-1");
    assert!(dovecot.log().contains("user=<support@example.test>"));
    assert!(!format!("{mailbox:?}").contains("xo-1"));
}

#[tokio::test]
async fn a_refused_token_fails_the_login_with_the_mechanism_named() {
    let (_dovecot, proxy) = awkward_dovecot();
    let dir = tempfile::tempdir().unwrap();
    let command = counting_command(&dir, "bad", 3600);
    proxy.fake_xoauth2(&["something-else"], AWKWARD_PASSWORD);
    let extra = format!(
        "auth = \"xoauth2\"\ntoken_command = {}",
        toml_list(&command)
    );
    let mailbox = mailbox("svc@example.test", &extra);
    let err = Connection::open_mailbox(&server(proxy.port(), ""), &mailbox, &Secret::new(""))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("AUTHENTICATE XOAUTH2 as svc@example.test refused"),
        "{text}"
    );
    assert!(!text.contains("bad-1"), "{text}");
}

#[tokio::test]
async fn a_token_is_refreshed_before_expiry_and_its_connection_renewed() {
    let (_dovecot, proxy) = awkward_dovecot();
    let dir = tempfile::tempdir().unwrap();
    // Four seconds of life: cached for two, then replaced.
    let command = counting_command(&dir, "short", 4);
    proxy.fake_xoauth2(&["short-1", "short-2"], AWKWARD_PASSWORD);
    let extra = format!(
        "auth = \"xoauth2\"\ntoken_command = {}",
        toml_list(&command)
    );
    let mailbox = mailbox("svc@example.test", &extra);
    let server = server(proxy.port(), "");
    let mut first = Connection::open_mailbox(&server, &mailbox, &Secret::new(""))
        .await
        .unwrap();
    let mut second = Connection::open_mailbox(&server, &mailbox, &Secret::new(""))
        .await
        .unwrap();
    first.select("INBOX").await.unwrap();
    second.noop().await.unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    // IDLE ends at the renewal deadline, well before its own 60 s.
    let (mut first, end) = first.idle(Duration::from_secs(60), &stop).await.unwrap();
    assert_eq!(end, postroom::imap::IdleEnd::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let err = first.noop().await.unwrap_err();
    assert!(auth::is_renewal_due(&err), "{err:#}");
    let third = Connection::open_mailbox(&server, &mailbox, &Secret::new(""))
        .await
        .unwrap();
    let tokens: Vec<String> = proxy
        .xoauth2_attempts()
        .into_iter()
        .map(|a| a.token)
        .collect();
    assert_eq!(
        tokens,
        ["short-1", "short-1", "short-2"],
        "cached once, then refreshed"
    );
    third.logout().await;
    drop(stop_tx);
}

#[tokio::test]
async fn access_token_expired_bye_is_recognised_and_drops_the_cached_token() {
    let (_dovecot, proxy) = awkward_dovecot();
    let dir = tempfile::tempdir().unwrap();
    let command = counting_command(&dir, "rev", 3600);
    proxy.fake_xoauth2(&["rev-1", "rev-2"], AWKWARD_PASSWORD);
    let extra = format!(
        "auth = \"xoauth2\"\ntoken_command = {}",
        toml_list(&command)
    );
    let mailbox = mailbox("svc@example.test", &extra);
    let server = server(proxy.port(), "");
    let mut conn = Connection::open_mailbox(&server, &mailbox, &Secret::new(""))
        .await
        .unwrap();
    proxy.bye_next("^NOOP", "* BYE Session invalidated - AccessTokenExpired");
    let err = conn.noop().await.unwrap_err();
    assert!(auth::is_token_expired(&err), "{err:#}");
    Connection::open_mailbox(&server, &mailbox, &Secret::new(""))
        .await
        .unwrap();
    let tokens: Vec<String> = proxy
        .xoauth2_attempts()
        .into_iter()
        .map(|a| a.token)
        .collect();
    assert_eq!(
        tokens,
        ["rev-1", "rev-2"],
        "the revoked token is not reused"
    );
}

fn tls_dovecot(ca: &TestCa) -> Dovecot {
    let mut options = Options::new(Flavor::Standard);
    options.tls = Some((ca.leaf_pem(), ca.leaf_key()));
    Dovecot::start_with(options).expect("start TLS dovecot")
}

#[tokio::test]
async fn tls_and_starttls_verify_against_ca_file() {
    let ca = TestCa::new().unwrap();
    let dovecot = tls_dovecot(&ca);
    let password = Secret::new(dovecot.password());
    let ca_file = format!("ca_file = \"{}\"", ca.ca_pem().display());
    let tls = tls_server("127.0.0.1", dovecot.tls_port().unwrap(), &ca_file);
    let conn = Connection::open(&tls, "tls@example.test", &password)
        .await
        .expect("TLS");
    conn.logout().await;
    let mut starttls = tls_server("127.0.0.1", dovecot.port(), &ca_file);
    starttls.security = postroom::config::Security::Starttls;
    let conn = Connection::open(&starttls, "tls@example.test", &password)
        .await
        .expect("STARTTLS");
    conn.logout().await;
}

#[tokio::test]
async fn tls_failures_say_what_to_fix() {
    let ca = TestCa::new().unwrap();
    let dovecot = tls_dovecot(&ca);
    let password = Secret::new(dovecot.password());
    let port = dovecot.tls_port().unwrap();
    let ca_file = format!("ca_file = \"{}\"", ca.ca_pem().display());
    let wrong_pin = format!("pin_sha256 = [\"{}\"]", "ab".repeat(32));
    let pin = ca.spki_pin().unwrap();
    let cases = [
        (
            "127.0.0.1",
            String::new(),
            vec!["unknown CA", "set ca_file", "pin_sha256"],
        ),
        (
            "localhost",
            ca_file,
            vec!["imap.postroom.test", "not localhost"],
        ),
        (
            "127.0.0.1",
            wrong_pin,
            vec!["matches no pin_sha256", pin.as_str()],
        ),
    ];
    for (host, extra, expected) in cases {
        let err = Connection::open(&tls_server(host, port, &extra), "t@example.test", &password)
            .await
            .unwrap_err();
        let text = format!("{err:#}");
        for part in expected {
            assert!(text.contains(part), "{host} {extra}: {text}");
        }
    }
}

#[tokio::test]
async fn a_pinned_certificate_is_trusted_without_its_ca() {
    let ca = TestCa::new().unwrap();
    let dovecot = tls_dovecot(&ca);
    let password = Secret::new(dovecot.password());
    let port = dovecot.tls_port().unwrap();
    // Pins as openssl computes them: the key's in base64, the certificate's in hex.
    for pin in [ca.spki_pin().unwrap(), ca.cert_sha256_hex().unwrap()] {
        // A wrong host name too: with a pin, the name is not what is trusted.
        let extra = format!("pin_sha256 = [\"{pin}\"]");
        let conn = Connection::open(
            &tls_server("localhost", port, &extra),
            "p@x.test",
            &password,
        )
        .await
        .unwrap_or_else(|e| panic!("pin {pin}: {e:#}"));
        conn.logout().await;
    }
}

#[tokio::test]
async fn the_budget_makes_a_connection_wait_until_another_closes() {
    let (_dovecot, proxy) = awkward_dovecot();
    let server = server(proxy.port(), "max_connections_per_login = 2");
    let password = Secret::new(AWKWARD_PASSWORD);
    let login = |shared: &str| format!(r"svc@example.test\{shared}");
    let a = Connection::open(&server, &login("a"), &password)
        .await
        .unwrap();
    let _b = Connection::open(&server, &login("b"), &password)
        .await
        .unwrap();
    let (server_c, password_c, login_c) = (server.clone(), password.clone(), login("c"));
    let mut c =
        tokio::spawn(async move { Connection::open(&server_c, &login_c, &password_c).await });
    let waited = tokio::time::timeout(Duration::from_secs(1), &mut c).await;
    assert!(
        waited.is_err(),
        "a third connection on a budget of 2 must wait"
    );
    assert_eq!(proxy.open_connections(), 2);
    // Another account is not held up by this one's budget.
    Connection::open(&server, "other@example.test", &password)
        .await
        .unwrap()
        .logout()
        .await;
    a.logout().await;
    let third = tokio::time::timeout(Duration::from_secs(10), c).await;
    third
        .expect("the waiting connection proceeds")
        .unwrap()
        .unwrap();
    assert_eq!(
        proxy.peak_connections(),
        3,
        "two of the budget plus the other account"
    );
}

#[tokio::test]
async fn a_login_refused_after_an_earlier_success_is_read_as_the_connection_limit() {
    let (_dovecot, proxy) = awkward_dovecot();
    let server = server(proxy.port(), "");
    let password = Secret::new(AWKWARD_PASSWORD);
    let first = Connection::open(&server, r"CORP\svc\one", &password)
        .await
        .unwrap();
    proxy.refuse_logins(1);
    let err = Connection::open(&server, r"CORP\svc\two", &password)
        .await
        .unwrap_err();
    assert!(auth::is_connection_limit(&err), "{err:#}");
    assert!(
        format!("{err:#}").contains("max_connections_per_login"),
        "{err:#}"
    );
    first.logout().await;
}

/// An account with more mailboxes than its server allows connections makes its extra mailboxes
/// wait for a place in its budget; that wait must not hold the daemon's few starting places
/// (16), which every other account's mailboxes need to start or reconnect.
#[tokio::test]
async fn an_oversubscribed_account_does_not_keep_other_accounts_from_starting() {
    let (_dovecot, proxy) = awkward_dovecot();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("password.secret");
    std::fs::write(&secret, AWKWARD_PASSWORD).unwrap();
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[[server]]\nname = \"s\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"plain\"\nmax_connections_per_login = 1\n",
        dir.path().join("state").display(),
        proxy.port()
    );
    // One service account for 20 shared mailboxes, with room for one connection; then the
    // mailbox of another account, started last.
    let mut logins: Vec<String> = (0..20)
        .map(|i| format!(r"svc@example.test\shared{i}"))
        .collect();
    logins.push("other@example.test".into());
    for (i, login) in logins.iter().enumerate() {
        text += &format!(
            "\n[[mailbox]]\nname = \"m{i:02}\"\nserver = \"s\"\nlogin = '{login}'\n\
             password_file = \"{}\"\nteam = \"t\"\n",
            secret.display()
        );
    }
    text += "\n[[team]]\nname = \"t\"\nagents = [\"a\"]\n\n[[agent]]\nid = \"a\"\nname = \"A\"\n";
    let config = dir.path().join("postroom.toml");
    std::fs::write(&config, text).unwrap();
    let args = ["--config".as_ref(), config.as_os_str(), "run".as_ref()];
    let mut daemon = postroom_testkit::Daemon::spawn(
        env!("CARGO_BIN_EXE_postroom"),
        args,
        [("RUST_LOG", "postroom=info")],
    )
    .unwrap();
    let watching = |who: &str| {
        daemon
            .stderr()
            .lines()
            .any(|l| l.contains("watching for new mail") && l.contains(&format!("mailbox={who}")))
    };
    postroom_testkit::wait_for(
        "the other account's mailbox watching",
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || Ok(watching("m20") && (0..20).any(|i| watching(&format!("m{i:02}")))),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.output()));
    daemon.sigterm().unwrap();
    let _ = daemon.wait_exit(Duration::from_secs(20)).await;
}
