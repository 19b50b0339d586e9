//! `cordon check --config F`.

use crate::config::{self, Config};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

/// Validates the config and prints the effective policy; returns the exit code. Unless
/// `no_fetch`, every credential source is asked for a value once, as `serve` would at start.
pub fn run(config: &Path, no_fetch: bool) -> i32 {
    let result = config::load(config)
        .map_err(|e| e.to_string())
        .and_then(|cfg| check_environment(&cfg).map(|()| cfg))
        .and_then(|cfg| {
            let fetched = if no_fetch {
                Vec::new()
            } else {
                fetch_credentials(&cfg)?
            };
            Ok((cfg, fetched))
        });
    match result {
        Ok((cfg, fetched)) => {
            print!("{}", config::describe(&cfg));
            for line in fetched {
                println!("{line}");
            }
            if no_fetch && !cfg.credentials.is_empty() {
                println!("credentials: not fetched (--no-fetch)");
            }
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
    let _dns = cfg
        .listen
        .dns
        .map(|addr| {
            let tcp = bind("listen.dns", addr)?;
            let udp = std::net::UdpSocket::bind(addr)
                .map_err(|e| format!("listen.dns: cannot bind {addr}/udp: {e}"))?;
            Ok::<_, String>((tcp, udp))
        })
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

/// Asks every credential source for a value once (the checks `serve` makes at start);
/// returns one line per credential naming its version and expiry, never its value.
fn fetch_credentials(cfg: &Config) -> Result<Vec<String>, String> {
    if cfg.credentials.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let metrics = crate::metrics::Metrics::new();
        let credentials = crate::credentials::Credentials::start_with_roots(
            &cfg.credentials,
            &cfg.tls.extra_roots,
            &metrics,
        )
        .await;
        let mut lines = Vec::new();
        for spec in &cfg.credentials {
            let Some(cache) = credentials.get(&spec.id) else {
                continue;
            };
            match cache.current() {
                Ok(issued) => {
                    let expiry = match issued.expires_at {
                        Some(at) => match at.duration_since(std::time::SystemTime::now()) {
                            Ok(left) => format!(
                                "expires in {}",
                                humantime::format_duration(std::time::Duration::from_secs(
                                    left.as_secs()
                                ))
                            ),
                            Err(_) => "expired".to_owned(),
                        },
                        None => "no expiry given".to_owned(),
                    };
                    lines.push(format!("credential {}: fetched ({expiry})", spec.id));
                }
                Err(err) => {
                    return Err(format!(
                        "{}: credentials.{}: {} (--no-fetch skips this check)",
                        cfg.source.display(),
                        spec.id,
                        err.message
                    ))
                }
            }
        }
        Ok(lines)
    })
}
