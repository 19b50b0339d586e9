//! `cordon.yaml`: parsed once, `${VAR}`-expanded, validated with file and key in every error.

use crate::audit::Fsync;
use crate::policy::Policy;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `enforce` denies; `observe` lets everything through and records `would_deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Observe,
}

/// Who this cordon speaks for; named in every record.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub instance: Option<String>,
}

/// Listener addresses.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Agent-facing HTTP proxy (default 127.0.0.1:15001).
    pub proxy: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`; never on the proxy's address.
    pub admin: Option<SocketAddr>,
}

/// Upstream DNS for cordon's own resolver; empty means the system's resolv.conf and hosts.
#[derive(Debug, Clone, Default)]
pub struct Dns {
    pub upstream: Vec<SocketAddr>,
}

/// Where and how the audit trail is written.
#[derive(Debug, Clone)]
pub struct Audit {
    pub path: PathBuf,
    pub fsync: Fsync,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub source: PathBuf,
    pub agent: Agent,
    pub mode: Mode,
    pub listen: Listen,
    pub dns: Dns,
    pub policy: Policy,
    pub audit: Audit,
    /// `sha256:<hex>` of the file's bytes, stamped on every record.
    pub policy_hash: String,
}

/// A config problem; `Display` reads `<file>: <key path>: <problem>`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads, expands and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let _ = path;
    todo!()
}
