//! `cordon run` as an ordinary user (`nobody`, via util-linux `setpriv`): the command runs as
//! the same user as cordon, yet cannot read cordon's environment (where a credential's real
//! value is). (`--isolate` as an ordinary user is covered in run_isolate.rs.)

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use support::*;

/// Runs `cordon ARGS` as uid/gid 65534 with `env`; `None` when this machine cannot
/// (not root, or no setpriv).
fn as_nobody(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Option<Output> {
    if !rustix::process::geteuid().is_root()
        || Command::new("setpriv").arg("--help").output().is_err()
    {
        eprintln!("SKIPPED: needs root and util-linux setpriv to become nobody");
        return None;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("TMPDIR", dir)
        .envs(env.iter().copied())
        .output()
        .expect("setpriv runs");
    Some(output)
}

fn config(dir: &std::path::Path) -> String {
    let path = dir.join("cordon.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nagent: {{ name: t }}\naudit: {{ path: \"{}\" }}\n\
             credentials:\n  api:\n    source: {{ env: REAL_API_KEY }}\n    env: API_KEY\n",
            dir.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path.display().to_string()
}

#[test]
fn the_command_cannot_read_cordons_environment_or_memory() {
    let dir = unique_temp_dir("nobody");
    let secret = token("real");
    let config = config(&dir);
    // The command tries cordon's environ and memory map (its parent is cordon).
    let Some(output) = as_nobody(
        &dir,
        &[
            "run",
            "--config",
            &config,
            "--",
            "sh",
            "-c",
            "id -u; echo \"key:$API_KEY\"; cat /proc/$PPID/environ > /dev/null && echo environ-readable; \
             cat /proc/$PPID/maps > /dev/null 2>&1 && echo maps-readable; echo done",
        ],
        &[("REAL_API_KEY", &secret)],
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stdout.contains(&secret) && !stderr.contains(&secret),
        "the real value reached the command"
    );
    assert!(stdout.contains("65534"), "{stdout}");
    assert!(stdout.contains("key:CORDON_PLACEHOLDER_API"), "{stdout}");
    assert!(!stdout.contains("environ-readable"), "{stdout}");
    assert!(!stdout.contains("maps-readable"), "{stdout}");
    assert!(stdout.contains("done"), "{stdout}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
