//! The `exec` source: runs a credential plug-in the way kubectl does, without a shell.

use super::parse::{exec_credential, Fetched};
use super::wipe;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The most stdout a plug-in may print; more is refused rather than buffered.
const MAX_OUTPUT: u64 = 1024 * 1024;

/// What kubectl passes in `KUBERNETES_EXEC_INFO`: cordon never has a terminal to offer.
const EXEC_INFO: &str = r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#;

/// Runs `command` (argv, `command[0]` an absolute path) and parses its ExecCredential.
///
/// stderr goes nowhere: a plug-in may print the token there, and cordon's own stderr is
/// its log. Errors report the exit status only, never any output. The variables named in
/// `hidden` (where other credentials' real values are) are removed from its environment.
pub(super) async fn run(
    command: &[String],
    timeout: Duration,
    hidden: &[String],
) -> Result<Fetched, String> {
    let program = &command[0];
    let mut cmd = tokio::process::Command::new(program);
    for var in hidden {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .args(&command[1..])
        .env("KUBERNETES_EXEC_INFO", EXEC_INFO)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // A plug-in abandoned on timeout (or with its cache) is killed, not left running.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(format!("cannot read the output of {program}"));
    };

    let mut output = Vec::new();
    let outcome = tokio::time::timeout(timeout, async {
        let read = stdout.take(MAX_OUTPUT + 1).read_to_end(&mut output).await;
        let status = child.wait().await;
        (read, status)
    })
    .await;
    let result = match outcome {
        Err(_) => {
            let _ = child.start_kill();
            Err(format!(
                "{program} did not finish within {} and was killed",
                humantime::format_duration(timeout)
            ))
        }
        Ok((Err(e), _)) => Err(format!("cannot read the output of {program}: {e}")),
        Ok((_, Err(e))) => Err(format!("cannot wait for {program}: {e}")),
        Ok(_) if output.len() as u64 > MAX_OUTPUT => {
            let _ = child.start_kill();
            Err(format!("{program} printed more than 1 MiB"))
        }
        Ok((Ok(_), Ok(status))) if !status.success() => Err(match status.code() {
            Some(code) => format!("{program} exited with status {code}"),
            None => format!("{program} was ended by a signal"),
        }),
        Ok(_) => exec_credential(&output).map_err(|e| format!("{program}: {e}")),
    };
    wipe(&mut output);
    result
}
