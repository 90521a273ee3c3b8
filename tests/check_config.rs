//! `postroom check-config` reports every mistake at once, each with its key and line.

use std::process::Command;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postroom.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_postroom"))
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn several_mistakes_are_named_at_once_with_key_and_line() {
    let (code, out) = check(
        "[[server]]\nname = \"exchange\"\nhost = \"mail.example.test\"\nsecurity = \"plain\"\n\n\
         [[mailbox]]\nname = \"support\"\nserver = \"exchnage\"\nlogin = 'EX\\svc\\support'\n\
         pasword = \"x\"\nteam = \"support\"\n\n\
         [[team]]\nname = \"support\"\nagents = [\"alice\", \"bobb\"]\n\n\
         [[agent]]\nid = \"alice\"\nname = \"Alice/Example\"\n\n\
         [[agent]]\nid = \"carol\"\nname = \"Carol\"\n",
    );
    assert_eq!(code, 2, "{out}");
    for expected in [
        "line 4: server[0].security",
        "line 8: mailbox[0].server: no [[server]] is named `exchnage`",
        "line 10: mailbox[0].pasword: unknown key (hint: did you mean `password`?",
        "mailbox[0].login: no password is configured",
        "line 15: team[0].agents: no [[agent]] has id `bobb`",
        "line 19: agent[0].name",
        "line 22: agent[1].id: agent `carol` is not in any team",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn a_syntax_error_names_its_line() {
    let (code, out) = check("[daemon]\nstate_dir = \n");
    assert_eq!(code, 2);
    assert!(out.contains("line 2"), "{out}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_key_and_the_fix() {
    let (code, out) = check(
        "[[server]]\nname = \"s\"\nhost = \"127.0.0.1\"\n\n[[server]]\nname = \"t\"\n\
         host = \"127.0.0.1\"\nport = \"31430\"\n",
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("line 8: server[1].port: invalid type"),
        "{out}"
    );
    assert!(out.contains("without quotes"), "{out}");
    let (_, out) = check("[[team]]\nname = \"t\"\nagents = \"alice\"\n");
    assert!(out.contains("line 3: team[0].agents"), "{out}");
    assert!(out.contains("square brackets"), "{out}");
    let (_, out) = check("[daemon]\nsla_check_secs = true\n");
    assert!(out.contains("line 2: daemon.sla_check_secs"), "{out}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_postroom"))
        .args(["--config", example, "check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shared_folder_names_zero_poll_intervals_and_long_names_are_refused() {
    let long = "x".repeat(100);
    let (code, out) = check(&format!(
        "[[server]]\nname = \"s\"\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\n\n\
         [[mailbox]]\nname = \"support\"\nserver = \"s\"\nlogin = \"u\"\npassword = \"p\"\n\
         team = \"t\"\nfolder_poll_secs = 0\n\n\
         [[team]]\nname = \"t\"\nagents = [\"a\", \"b\", \"c\"]\n\n\
         [[agent]]\nid = \"a\"\nname = \"Alice\"\n\n[[agent]]\nid = \"b\"\nname = \"Alice\"\n\n\
         [[agent]]\nid = \"c\"\nname = \"{long}\"\n"
    ));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("two agents are named `Alice`"), "{out}");
    assert!(out.contains("mailbox[0].folder_poll_secs"), "{out}");
    assert!(
        out.contains("agent[2].name: the name is 100 characters long"),
        "{out}"
    );
}

#[test]
fn a_digest_or_reminder_after_every_closing_is_refused() {
    let (code, out) = check(
        "[[server]]\nname = \"s\"\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\n\n\
         [[mailbox]]\nname = \"support\"\nserver = \"s\"\nlogin = \"support\"\n\
         password = \"x\"\nteam = \"support\"\n\n\
         [[team]]\nname = \"support\"\nagents = [\"alice\"]\nleads = [\"lead@example.test\"]\n\
         calendar = \"office\"\nsla = \"standard\"\ndigest = \"18:00\"\n\n\
         [[agent]]\nid = \"alice\"\nname = \"Alice\"\n\n\
         [[calendar]]\nname = \"office\"\ntimezone = \"UTC\"\nmon = [\"09:00-17:00\"]\n\
         fri = [\"09:00-15:00\"]\n\n\
         [[sla]]\nname = \"standard\"\nfirst_response = \"4h\"\nreminder = \"17:30\"\n",
    );
    assert_eq!(code, 2, "{out}");
    for expected in [
        "line 19: team[0].digest: calendar `office` has closed on every day it opens",
        "sla[0].reminder: calendar `office` has closed on every day it opens",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    // At closing time itself it goes out just after; that is accepted.
    let (code, out) = check(
        "[[server]]\nname = \"s\"\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\n\n\
          [[mailbox]]\nname = \"support\"\nserver = \"s\"\nlogin = \"support\"\n\
          password = \"x\"\nteam = \"support\"\n\n\
          [[team]]\nname = \"support\"\nagents = [\"alice\"]\nleads = [\"lead@example.test\"]\n\
          calendar = \"office\"\ndigest = \"17:00\"\n\n\
          [[agent]]\nid = \"alice\"\nname = \"Alice\"\n\n\
          [[calendar]]\nname = \"office\"\ntimezone = \"UTC\"\nmon = [\"09:00-17:00\"]\n",
    );
    assert!(!out.contains("team[0].digest"), "{code}: {out}");
}
