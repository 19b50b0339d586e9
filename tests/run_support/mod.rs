//! Helpers shared by the `cordon run` tests: running a process to completion with a time
//! limit, and reading audit trails.

// Each test file compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::strip_ansi;

pub const CORDON: &str = env!("CARGO_BIN_EXE_cordon");
/// Generous: a debug build on a busy machine, several curls, maybe a namespace.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// What a finished process left behind.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Both streams, for failure messages (these tests put no secret in either).
    pub fn both(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }

    /// The rest of the first stdout line that starts with `key `.
    pub fn line(&self, key: &str) -> Option<String> {
        let prefix = format!("{key} ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned())
    }

    /// The rest of every stdout line that starts with `key `.
    pub fn lines(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key} ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned())
            .collect()
    }
}

/// `OsString`s from string literals.
pub fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// Runs `program args` with `env` added (stdin closed, in `cwd` if given); kills it after
/// `RUN_LIMIT`.
pub fn run(program: &str, args: &[OsString], env: &[(&str, OsString)], cwd: Option<&Path>) -> Ran {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            strip_ansi(&String::from_utf8_lossy(&bytes))
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    Ran {
        code: status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// `cordon ARGS` with `env` added, in `cwd` if given.
pub fn cordon(args: &[OsString], env: &[(&str, OsString)], cwd: Option<&Path>) -> Ran {
    run(CORDON, args, env, cwd)
}

/// Every record of the trail at `path`.
pub fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// A string field of a record, `""` when absent.
pub fn field<'a>(record: &'a Value, key: &str) -> &'a str {
    record.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `cordon audit verify TRAIL`.
pub fn verify(trail: &Path) -> Ran {
    let mut args = os(&["audit", "verify"]);
    args.push(trail.into());
    cordon(&args, &[], None)
}

/// Asserts that the chain of the trail at `trail` is intact.
pub fn assert_trail_verifies(trail: &Path) {
    let verified = verify(trail);
    assert_eq!(verified.code, 0, "the trail verifies: {}", verified.both());
}
