//! `cordon run`'s parts: the child's environment, the output filter, isolation, and the
//! child process itself (signals in, exit code out).

pub mod env;
pub mod isolate;
pub mod output;
pub mod terminal;

use std::ffi::OsStr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use tokio::signal::unix::{signal, SignalKind};

/// A private (0700) directory for one run's CA, bundle and sockets; removed on drop.
pub struct RunDir(PathBuf);

impl RunDir {
    /// Creates `$TMPDIR/cordon-run-<pid>-<random>`.
    pub fn create() -> Result<RunDir, String> {
        let suffix = crate::os::random_hex(6)?;
        let path = std::env::temp_dir().join(format!("cordon-run-{}-{suffix}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(RunDir(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `cmd`; on failure prints why and returns the shell's code (127 not found,
/// 126 not executable).
pub fn spawn(
    cmd: &mut tokio::process::Command,
    program: &OsStr,
) -> Result<tokio::process::Child, i32> {
    cmd.kill_on_drop(false);
    cmd.spawn().map_err(|err| {
        eprintln!(
            "cordon run: cannot start {}: {err}",
            Path::new(program).display()
        );
        if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        }
    })
}

/// The signals cordon passes on, caught from before the child starts (so one arriving
/// while it starts is passed on, not fatal to cordon).
pub struct Signals {
    rx: tokio::sync::mpsc::UnboundedReceiver<rustix::process::Signal>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Signals {
    /// Starts catching INT, TERM, HUP and WINCH.
    pub fn catch() -> Signals {
        let kinds = [
            (SignalKind::interrupt(), rustix::process::Signal::INT),
            (SignalKind::terminate(), rustix::process::Signal::TERM),
            (SignalKind::hangup(), rustix::process::Signal::HUP),
            (SignalKind::window_change(), rustix::process::Signal::WINCH),
        ];
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut listeners = Vec::new();
        for (kind, sig) in kinds {
            let Ok(mut stream) = signal(kind) else {
                continue;
            };
            let tx = tx.clone();
            listeners.push(tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(sig).is_err() {
                        break;
                    }
                }
            }));
        }
        Signals { rx, listeners }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// Waits for the child, passing on the signals `signals` caught; returns its exit code
/// (128 + the signal's number when a signal ended it, as shells report it). With `pty`,
/// the child has a terminal of its own: WINCH resizes it, and the other signals are
/// always passed on (cordon's terminal, in raw mode, sends the child none).
pub async fn wait_forwarding(
    child: &mut tokio::process::Child,
    pty: Option<&terminal::Pty>,
    mut signals: Signals,
) -> i32 {
    let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    else {
        return exit_code(child.wait().await);
    };
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(sig) = signals.rx.recv() => {
                if let Some(pty) = pty {
                    if sig == rustix::process::Signal::WINCH {
                        pty.copy_size();
                        continue;
                    }
                } else if terminal_delivers(sig) {
                    // The terminal sent it to the whole foreground group, the child too.
                    continue;
                }
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    };
    exit_code(status)
}

/// Whether the terminal has already delivered `sig` to the child: INT (Ctrl-C) and WINCH
/// go to the terminal's whole foreground process group, which the child shares with
/// cordon. Forwarding them again would deliver them twice (and a second Ctrl-C often
/// means "quit now").
fn terminal_delivers(sig: rustix::process::Signal) -> bool {
    if sig != rustix::process::Signal::INT && sig != rustix::process::Signal::WINCH {
        return false;
    }
    rustix::termios::tcgetpgrp(std::io::stdin())
        .is_ok_and(|group| group == rustix::process::getpgrp())
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    match status {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|sig| 128 + sig))
            .unwrap_or(1),
        Err(err) => {
            eprintln!("cordon run: waiting for the child: {err}");
            1
        }
    }
}

/// Runs `cmd` with inherited stdio and returns its exit code (used inside the namespace).
pub async fn run_child(mut cmd: tokio::process::Command) -> i32 {
    let program = cmd.as_std().get_program().to_owned();
    let signals = Signals::catch();
    match spawn(&mut cmd, &program) {
        Ok(mut child) => wait_forwarding(&mut child, None, signals).await,
        Err(code) => code,
    }
}

/// `cordon session -- CMD`: CMD as the leader of a new session on the terminal it is given.
pub fn session_command(child: &[std::ffi::OsString]) -> Result<tokio::process::Command, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find cordon's own executable: {e}"))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("session").arg("--").args(child);
    Ok(cmd)
}
