//! `cordon run` on a terminal: the command gets a pseudo-terminal of its own (a real
//! terminal is provided by util-linux `script`), keys reach it, Ctrl-C interrupts it, and
//! what it prints is still filtered.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// Runs `cordon run -- sh -c SCRIPT` on a terminal made by `script`, typing `keys` (each
/// after a pause); returns everything the terminal showed and the exit code (`script -e`
/// returns cordon's, which is the command's).
fn on_terminal(label: &str, script: &str, keys: &[&[u8]], env: &[(&str, &str)]) -> (String, i32) {
    on_terminal_with(label, "", script, keys, env)
}

/// As [`on_terminal`], with extra `cordon run` options (e.g. `--isolate`).
fn on_terminal_with(
    label: &str,
    options: &str,
    script: &str,
    keys: &[&[u8]],
    env: &[(&str, &str)],
) -> (String, i32) {
    let dir = unique_temp_dir(label);
    let inner = format!(
        "{} run {options} --audit {} -- sh -c {}",
        env!("CARGO_BIN_EXE_cordon"),
        dir.join("audit.jsonl").display(),
        shell_quote(script)
    );
    let mut term = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("XDG_STATE_HOME", &dir)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (bsdutils) runs");
    let mut stdin = term.stdin.take().unwrap();
    let mut stdout = term.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    for key in keys {
        std::thread::sleep(Duration::from_millis(700));
        let _ = stdin.write_all(key);
        let _ = stdin.flush();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = term.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "the terminal session did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let shown = reader.join().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (shown, code)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn the_command_gets_a_terminal_and_the_keys() {
    let (shown, code) = on_terminal(
        "tty",
        "test -t 0 && test -t 1 && test -t 2 && echo all-three-are-terminals; \
         read line; echo \"typed:$line\"",
        &[b"hello cordon\r"],
        &[],
    );
    assert!(shown.contains("all-three-are-terminals"), "{shown}");
    assert!(shown.contains("typed:hello cordon"), "{shown}");
    assert_eq!(code, 0);
}

#[test]
fn ctrl_c_interrupts_the_command_once_and_its_code_comes_back() {
    let (shown, code) = on_terminal(
        "ctrlc",
        "n=0; trap 'n=$((n+1))' INT; sleep 3 & wait; sleep 0.5; echo \"interrupts:$n\"; exit 42",
        &[b"\x03"],
        &[],
    );
    assert!(shown.contains("interrupts:1"), "{shown}");
    assert_eq!(code, 42, "{shown}");
}

#[test]
fn what_the_command_prints_on_its_terminal_is_redacted() {
    let secret = token("ghp");
    // A GitHub token shape is enough for the built-in rule only with a valid checksum, so
    // the value is made a known value instead: the scanner holds it exactly.
    let dir = unique_temp_dir("ttyredact");
    let config = dir.join("cordon.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nagent: {{ name: t }}\naudit: {{ path: \"{}\" }}\nscanning: {{ known_values: [{{ env: TEST_KNOWN }}] }}\n",
            dir.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    let inner = format!(
        "{} run --config {} -- sh -c 'printf \"value=%s\\n\" \"$TEST_KNOWN\"'",
        env!("CARGO_BIN_EXE_cordon"),
        config.display()
    );
    let output = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("TEST_KNOWN", &secret)
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        !shown.contains(&secret),
        "the known value reached the terminal"
    );
    assert!(
        shown.contains("value=[REDACTED:known:TEST_KNOWN]"),
        "{}",
        shown.replace(&secret, "<secret>")
    );
    let trail = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(trail.contains("\"direction\":\"output\""));
    assert!(!trail.contains(&secret));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_isolated_command_gets_its_terminal_too() {
    if !rustix::process::geteuid().is_root() && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPED: --isolate on a terminal is tested as root");
        return;
    }
    let (shown, code) = on_terminal_with(
        "tty-isolate",
        "--isolate",
        "test -t 0 && test -t 1 && test -t 2 && echo all-three-are-terminals; \
         read line; echo \"typed:$line\"; \
         n=0; trap 'n=$((n+1))' INT; sleep 3 & wait; sleep 0.5; echo \"interrupts:$n\"; exit 42",
        &[b"inside\r", b"\x03"],
        &[],
    );
    assert!(shown.contains("all-three-are-terminals"), "{shown}");
    assert!(shown.contains("typed:inside"), "{shown}");
    assert!(shown.contains("interrupts:1"), "{shown}");
    assert_eq!(code, 42, "{shown}");
}

#[test]
fn a_background_job_on_a_terminal_runs_instead_of_stopping() {
    // `cordon run -- cmd &` from an interactive shell: cordon is not in the terminal's
    // foreground group, so it must not take the terminal (raw mode would stop it with
    // SIGTTOU before the command ever ran); the command runs as it would without cordon.
    let dir = unique_temp_dir("tty-background");
    let inner = format!(
        "{} run --audit {} -- sh -c 'echo from-the-command; exit 3' & sleep 3; jobs -l; wait $!; echo \"status:$?\"",
        env!("CARGO_BIN_EXE_cordon"),
        dir.join("audit.jsonl").display(),
    );
    let shell = format!("bash --norc --noprofile -ic {}", shell_quote(&inner));
    let mut term = Command::new("script")
        .args(["-qec", &shell, "/dev/null"])
        .env("XDG_STATE_HOME", &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (bsdutils) runs");
    let mut stdout = term.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if term.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            // A stopped cordon keeps the shell waiting: end it all.
            let _ = term.kill();
            let _ = term.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(term.stdin.take());
    let shown = reader.join().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    assert!(!shown.contains("Stopped"), "{shown}");
    assert!(shown.contains("from-the-command"), "{shown}");
    assert!(shown.contains("status:3"), "{shown}");
}

#[test]
fn with_cordons_stderr_redirected_the_commands_stderr_follows_it() {
    let dir = unique_temp_dir("tty-stderr");
    let errors = dir.join("errors.log");
    let inner = format!(
        "{} run --audit {} -- sh -c {} 2> {}",
        env!("CARGO_BIN_EXE_cordon"),
        dir.join("audit.jsonl").display(),
        shell_quote("test -t 1 && echo stdout-is-a-terminal; test -t 2 || echo to-the-log >&2"),
        errors.display()
    );
    let output = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("XDG_STATE_HOME", &dir)
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.contains("stdout-is-a-terminal"), "{shown}");
    assert!(!shown.contains("to-the-log"), "{shown}");
    let logged = std::fs::read_to_string(&errors).unwrap();
    assert!(logged.contains("to-the-log"), "{logged}");
    let _ = std::fs::remove_dir_all(dir);
}
