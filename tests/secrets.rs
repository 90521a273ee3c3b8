//! Secrets never reach a log or a file (field case BUG-29): a full scenario at `RUST_LOG=trace`
//! with IMAP logins whose passwords need quoting (`Corr3ct-Horse!`, and `pä"ss\{w`, which must be
//! escaped or sent as a literal), a wrong password that exercises the error path, and SMTP AUTH
//! for an escalation. Every line the daemon printed and every file it wrote under its state
//! directory are then searched for each secret, in plain text, in the escaped forms a protocol
//! trace would show, and in the base64 forms of SASL PLAIN and LOGIN.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use postroom_testkit::{wait_for, Daemon, Dovecot, Flavor, SmtpListener};

const GOOD: &str = "Corr3ct-Horse!";
const ODD: &str = "pä\"ss\\{w";
/// The password the third mailbox is really given on the server.
const REAL: &str = "Real-Pass-1234";
/// What the config says for the third mailbox instead: logins fail.
const WRONG: &str = "Wr0ng-Guess#7";
const SMTP_USER: &str = "escalator";
const SMTP_SECRET: &str = "Smtp-S3cret!pw";

/// Users on the test's own Dovecot and the passwords the server expects.
const USERS: [(&str, &str); 3] = [("horse", GOOD), ("odd", ODD), ("wrong", REAL)];

/// Starts a Dovecot whose users have their own passwords: the shared instance gives every user
/// the same one, so this instance's passdb is rewritten to a passwd file and reloaded.
fn dovecot(dir: &Path) -> Dovecot {
    let mut dovecot = Dovecot::start(Flavor::Standard).expect("start Dovecot");
    let users = dir.join("users");
    let lines: String = USERS
        .iter()
        .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
        .collect();
    std::fs::write(&users, lines).expect("users file");
    let conf = std::fs::read_to_string(dovecot.config_path()).expect("dovecot.conf");
    let static_passdb = format!("driver = static\n  args = password={}", Dovecot::PASSWORD);
    assert!(
        conf.contains(&static_passdb),
        "the testkit's passdb changed:\n{conf}"
    );
    let file_passdb = format!(
        "driver = passwd-file\n  args = scheme=PLAIN {}",
        users.display()
    );
    std::fs::write(
        dovecot.config_path(),
        conf.replace(&static_passdb, &file_passdb),
    )
    .expect("rewrite dovecot.conf");
    dovecot
        .restart()
        .expect("restart Dovecot with the passwd file");
    dovecot
}

fn config(dir: &Path, imap_port: u16, smtp_port: u16) -> String {
    let secret = |name: &str, value: &str| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("{value}\n")).expect("secret file");
        path
    };
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[[server]]\nname = \"local\"\nhost = \"127.0.0.1\"\n\
         port = {imap_port}\nsecurity = \"plain\"\ncommand_timeout_secs = 5\n",
        dir.join("state").display()
    );
    let given = [GOOD, ODD, WRONG];
    for (i, ((user, _), password)) in USERS.iter().zip(given).enumerate() {
        text += &format!(
            "\n[[mailbox]]\nname = \"{user}\"\nserver = \"local\"\nlogin = \"{user}\"\n\
             password_file = \"{}\"\nteam = \"support\"\npoll_secs = 2\nfolder_poll_secs = 1\n",
            secret(&format!("imap-{i}"), password).display()
        );
    }
    text += &format!(
        "\n[[team]]\nname = \"support\"\nagents = [\"alice\"]\nleads = [\"lead@ourco.example.test\"]\n\
         calendar = \"always\"\nsla = \"fast\"\n\n[[agent]]\nid = \"alice\"\nname = \"Alice\"\n\n\
         [[calendar]]\nname = \"always\"\ntimezone = \"UTC\"\nalways = true\n\n\
         [[sla]]\nname = \"fast\"\nfirst_response = \"1s\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"plain\"\n\
         from = \"support@ourco.example.test\"\nlogin = \"{SMTP_USER}\"\npassword_file = \"{}\"\n",
        secret("smtp", SMTP_SECRET).display()
    );
    text
}

/// Every form in which `secret` of `user` could leak: as is, escaped the way an IMAP quoted
/// string or a Rust `Debug` would show it, and base64 as in SASL PLAIN (with and without an
/// authorisation identity) and LOGIN (the password alone).
fn forms(user: &str, secret: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let escaped = secret.replace('\\', "\\\\").replace('"', "\\\"");
    let mut forms = vec![
        secret.to_string(),
        escaped.clone(),
        format!("{secret:?}").trim_matches('"').to_string(),
        // The escaped form as a `Debug` of the command line shows it.
        format!("{escaped:?}").trim_matches('"').to_string(),
        b64(secret),
        b64(&format!("\0{user}\0{secret}")),
        b64(&format!("{user}\0{user}\0{secret}")),
    ];
    // The inner part of a secret is as telling as the whole, for example the unescaped tail.
    forms.push(
        secret
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect(),
    );
    forms.retain(|f| f.len() >= 6);
    forms
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The first line holding `form`, with the form masked, so the report shows where the leak is
/// without repeating the secret.
fn context(bytes: &[u8], form: &str) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .find(|l| l.contains(form))
        .map(|l| format!(": {}", l.replace(form, "<SECRET>")))
        .unwrap_or_default()
}

fn find(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_password_reaches_a_log_line_or_a_state_file_at_trace_level() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dovecot = dovecot(dir.path());
    let smtp = SmtpListener::start_with_login(SMTP_USER, SMTP_SECRET).expect("SMTP listener");
    let config_path = dir.path().join("postroom.toml");
    std::fs::write(
        &config_path,
        config(dir.path(), dovecot.port(), smtp.port()),
    )
    .unwrap();

    let mut daemon = Daemon::spawn(
        env!("CARGO_BIN_EXE_postroom"),
        ["--config".as_ref(), config_path.as_os_str(), "run".as_ref()],
        [("RUST_LOG", "trace"), ("RUST_BACKTRACE", "1")],
    )
    .expect("spawn postroom");
    deliver_one(dovecot.port()).await;
    // The escalation proves SMTP AUTH ran; the filed message proves the odd password logged in.
    wait_for(
        "the escalation mail",
        Duration::from_secs(90),
        Duration::from_millis(200),
        async || Ok(!smtp.messages().is_empty() && daemon.output().contains("refused")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", tail(&daemon.output())));
    daemon.sigterm().expect("SIGTERM");
    let _ = daemon.wait_exit(Duration::from_secs(20)).await;

    let output = daemon.output();
    assert!(
        output.lines().count() > 100,
        "trace logging produced too little:\n{output}"
    );
    let mut written: Vec<(String, Vec<u8>)> = vec![("daemon output".into(), output.into_bytes())];
    for path in files(&dir.path().join("state")) {
        written.push((
            path.display().to_string(),
            std::fs::read(&path).unwrap_or_default(),
        ));
    }
    let secrets = [
        ("horse", GOOD),
        ("odd", ODD),
        ("wrong", WRONG),
        (SMTP_USER, SMTP_SECRET),
    ];
    let mut leaks = Vec::new();
    for (user, secret) in secrets {
        for form in forms(user, secret) {
            for (name, bytes) in &written {
                if find(bytes, &form) {
                    leaks.push(format!(
                        "secret of {user} in {name}{}",
                        context(bytes, &form)
                    ));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// Delivers one message to the odd-password mailbox, logging in as the person would (the
/// testkit's client only knows the shared password), and waits until the daemon has filed it,
/// which proves the daemon logged in with that password.
async fn deliver_one(port: u16) {
    let raw = b"From: Customer <c@example.test>\r\nTo: odd@example.test\r\n\
                Subject: help\r\nMessage-ID: <secrets-1@example.test>\r\n\
                Date: Mon, 10 Mar 2025 09:00:00 +0000\r\n\r\nHello\r\n";
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.expect("greeting");
    let mut session = client
        .login("odd", ODD)
        .await
        .map_err(|(e, _)| e)
        .expect("LOGIN");
    session
        .append("INBOX", None, None, raw)
        .await
        .expect("append");
    wait_for(
        "the message filed",
        Duration::from_secs(60),
        Duration::from_millis(200),
        async || Ok(session.select("INBOX").await?.exists == 0),
    )
    .await
    .expect("the daemon logs in with the odd password and files the message");
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}
