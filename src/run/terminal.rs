//! When cordon itself runs on a terminal, the child gets a terminal too: a pseudo-terminal
//! whose output cordon filters on its way to the real one, so interactive agents (line
//! editing, colours, full-screen interfaces, Ctrl-C) behave as they would without cordon.
//!
//! cordon's terminal is put in raw mode for the run, so every key (Ctrl-C included) goes to
//! the pseudo-terminal, whose own line discipline turns it into the child's signal or
//! input. The child runs as the leader of a new session with the pseudo-terminal as its
//! controlling terminal (`cordon session`, see [`become_session_leader`]).

use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, Termios};
use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Whether the child should get a terminal: cordon's stdin and stdout are both one, and
/// cordon is in its foreground (a background job that took the terminal into raw mode
/// would be stopped by SIGTTOU before the command ever ran).
pub fn wanted() -> bool {
    std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && rustix::termios::tcgetpgrp(std::io::stdin())
            .is_ok_and(|group| group == rustix::process::getpgrp())
}

/// The cordon side of a pseudo-terminal, and the path of the child's side.
pub struct Pty {
    master: OwnedFd,
    slave: PathBuf,
}

impl Pty {
    /// Opens a pseudo-terminal with the size and settings of cordon's own terminal.
    pub fn open() -> std::io::Result<Pty> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let slave = PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
                ptsname(&master, Vec::new())?.as_bytes(),
            ),
        );
        let pty = Pty { master, slave };
        if let Ok(settings) = tcgetattr(std::io::stdin()) {
            let slave = pty.open_slave()?;
            let _ = tcsetattr(&slave, OptionalActions::Now, &settings);
        }
        pty.copy_size();
        Ok(pty)
    }

    /// A new handle on the child's side (for its stdin, stdout and stderr).
    pub fn open_slave(&self) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.slave)
    }

    /// Gives the pseudo-terminal the size of cordon's terminal (the kernel then sends the
    /// child SIGWINCH).
    pub fn copy_size(&self) {
        if let Ok(size) = tcgetwinsize(std::io::stdout()) {
            let _ = tcsetwinsize(&self.master, size);
        }
    }

    /// A reader of what the child writes.
    pub fn reader(&self) -> std::io::Result<File> {
        Ok(File::from(self.master.try_clone()?))
    }

    /// A writer of what the child reads.
    pub fn writer(&self) -> std::io::Result<File> {
        Ok(File::from(self.master.try_clone()?))
    }
}

/// Puts cordon's terminal in raw mode; restores the saved settings when dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin's terminal.
    pub fn enter() -> std::io::Result<RawMode> {
        let saved = tcgetattr(std::io::stdin())?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(std::io::stdin(), OptionalActions::Flush, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Drain, &self.saved);
    }
}

/// Copies cordon's stdin to the child's terminal until either side ends (its own thread).
pub fn forward_input(mut to: File) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to);
    });
}

/// `cordon session -- CMD`: makes this process the leader of a new session whose
/// controlling terminal is its stdin, then becomes CMD. Returns only on failure.
pub fn become_session_leader(command: &[std::ffi::OsString]) -> i32 {
    use std::os::unix::process::CommandExt;
    if let Err(err) = rustix::process::setsid() {
        eprintln!("cordon run: cannot start a session for the command: {err}");
        return 126;
    }
    if let Err(err) = rustix::process::ioctl_tiocsctty(std::io::stdin()) {
        eprintln!("cordon run: cannot give the command its terminal: {err}");
        return 126;
    }
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    eprintln!(
        "cordon run: cannot start {}: {err}",
        std::path::Path::new(&command[0]).display()
    );
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}
