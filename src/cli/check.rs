//! `cordon check --config F`.

use crate::config::{self, Config};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

/// Validates the config and prints the effective policy; returns the exit code.
pub fn run(config: &Path) -> i32 {
    let result = config::load(config)
        .map_err(|e| e.to_string())
        .and_then(|cfg| check_environment(&cfg).map(|()| cfg));
    match result {
        Ok(cfg) => {
            print!("{}", config::describe(&cfg));
            println!("config ok");
            0
        }
        Err(message) => {
            eprintln!("cordon check: {message}");
            2
        }
    }
}

/// What the file alone cannot tell: that `serve` could bind its listeners and open its
/// audit file on this machine right now.
fn check_environment(cfg: &Config) -> Result<(), String> {
    let file = cfg.source.display();
    // Both listeners are held at once so a clash between them shows up here too.
    let _proxy = bind("listen.proxy", cfg.listen.proxy).map_err(|e| format!("{file}: {e}"))?;
    let _admin = cfg
        .listen
        .admin
        .map(|addr| bind("listen.admin", addr))
        .transpose()
        .map_err(|e| format!("{file}: {e}"))?;

    let path = &cfg.audit.path;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "{file}: audit.path: directory {} does not exist",
            parent.display()
        ));
    }
    if path.is_dir() {
        return Err(format!(
            "{file}: audit.path: {} is a directory, not a file",
            path.display()
        ));
    }
    Ok(())
}

fn bind(key: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| {
        let reason = match e.kind() {
            ErrorKind::AddrInUse => "address in use".to_string(),
            ErrorKind::AddrNotAvailable => "address not available on this host".to_string(),
            ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        format!("{key}: cannot bind {addr}: {reason}")
    })
}
