//! `cordon.yaml`: parsed once, `${VAR}`-expanded, validated with file and key in every error.
//!
//! Loading runs in fixed stages, each one reporting the first problem it finds:
//! read → YAML → keys this release does not support → `${VAR}` expansion → typed
//! deserialisation (key paths from `serde_path_to_error`) → validation → policy compile.

mod compile;
mod describe;
mod expand;
mod raw;

pub use describe::describe;

use crate::audit::Fsync;
use crate::credentials::CredentialSpec;
use crate::policy::Policy;
use sha2::{Digest, Sha256};
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `enforce` denies; `observe` lets everything through and records `would_deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Requests outside the policy are refused.
    Enforce,
    /// Requests outside the policy go through and are recorded as `would_deny`.
    Observe,
}

/// Who this cordon speaks for; named in every record.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Agent name: `[A-Za-z0-9._-]+`.
    pub name: String,
    /// Optional instance label (typically the pod name).
    pub instance: Option<String>,
}

/// Listener addresses.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Agent-facing HTTP proxy (default 127.0.0.1:15001).
    pub proxy: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`; never on the proxy's address.
    pub admin: Option<SocketAddr>,
    /// The filtering DNS resolver (UDP and TCP on the same address).
    pub dns: Option<SocketAddr>,
}

/// Upstream DNS for cordon's own resolver; empty means the system's resolv.conf and hosts.
#[derive(Debug, Clone)]
pub struct Dns {
    /// Upstream servers, in the order given.
    pub upstream: Vec<SocketAddr>,
    /// Drop special-purpose addresses (private, loopback, metadata …) from answers unless an
    /// egress entry for the name lists them in `allow_ips`.
    pub block_private_answers: bool,
    /// Names resolved although no egress entry names them.
    pub allow: Vec<crate::policy::HostPattern>,
    /// Record types answered besides A, AAAA and CNAME (`TXT`, `HTTPS`, `SVCB`).
    pub allow_types: Vec<String>,
    /// Answers are cached at least this long (0: TTL-0 answers are not cached).
    pub min_ttl: std::time::Duration,
    /// Answers are cached at most this long.
    pub max_ttl: std::time::Duration,
}

/// Where and how the audit trail is written.
#[derive(Debug, Clone)]
pub struct Audit {
    /// The JSON Lines file, as written in config.
    pub path: PathBuf,
    /// When the writer calls `fsync`.
    pub fsync: Fsync,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub source: PathBuf,
    /// Who this cordon speaks for.
    pub agent: Agent,
    /// Enforce or observe.
    pub mode: Mode,
    /// Listener addresses.
    pub listen: Listen,
    /// Resolver upstreams.
    pub dns: Dns,
    /// The compiled deny boundary and egress allowlist.
    pub policy: Policy,
    /// Audit trail location and durability.
    pub audit: Audit,
    /// `sha256:<hex>` of the file's bytes, stamped on every record.
    pub policy_hash: String,
    /// Interception: where cordon's CA lives and which extra roots origins may chain to.
    pub tls: Tls,
    /// Credentials injected into requests, in config order.
    pub credentials: Vec<CredentialSpec>,
    /// Secret scanning of traffic.
    pub scanning: Scanning,
}

/// What a scan finding does to the exchange it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanAction {
    /// Refuse the request (`secret_in_request`) or cut the response.
    Block,
    /// Replace each finding with `[REDACTED:<rule-id>]` and go on.
    Redact,
    /// Record the finding and let the bytes through unchanged.
    Log,
}

impl ScanAction {
    /// The name used in config, records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanAction::Block => "block",
            ScanAction::Redact => "redact",
            ScanAction::Log => "log",
        }
    }
}

/// Where a known value (one cordon must never let out) is read from at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownValue {
    /// An environment variable of cordon's own process.
    Env(String),
    /// A file, trimmed.
    File(PathBuf),
}

/// `scanning:`.
#[derive(Debug, Clone)]
pub struct Scanning {
    /// Agent → world (default block).
    pub outbound: ScanAction,
    /// World → agent (default redact).
    pub inbound: ScanAction,
    /// The child's stdout and stderr under `cordon run` (default redact).
    pub output: ScanAction,
    /// Custom rules, validated at load.
    pub rules: Vec<crate::scan::CustomRule>,
    /// Values matched exactly (and in their encodings) besides the credentials' own.
    pub known_values: Vec<KnownValue>,
}

impl Default for Scanning {
    fn default() -> Scanning {
        Scanning {
            outbound: ScanAction::Block,
            inbound: ScanAction::Redact,
            output: ScanAction::Redact,
            rules: Vec::new(),
            known_values: Vec::new(),
        }
    }
}

/// Where cordon's local CA lives, and extra trust roots for origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Directory holding `ca.crt` and `ca.key` (created on first use).
    pub ca_dir: PathBuf,
    /// PEM files whose certificates are trusted for origins besides the webpki roots.
    pub extra_roots: Vec<PathBuf>,
}

impl Default for Tls {
    fn default() -> Tls {
        Tls {
            ca_dir: PathBuf::from(DEFAULT_CA_DIR),
            extra_roots: Vec::new(),
        }
    }
}

/// Where the CA lives when `tls.ca_dir` is not set.
pub const DEFAULT_CA_DIR: &str = "/var/lib/cordon/ca";

/// A config problem; `Display` reads `<file>: <key path>: <problem>`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// An error about one key of one file.
    pub(crate) fn at(file: &Path, key: &str, problem: impl Display) -> ConfigError {
        if key.is_empty() {
            ConfigError(format!("{}: {problem}", file.display()))
        } else {
            ConfigError(format!("{}: {key}: {problem}", file.display()))
        }
    }
}

/// Reads, expands and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::at(path, "", format_args!("cannot read: {e}")))?;
    parse(path, &bytes, &|name| std::env::var(name))
}

/// Everything after reading the file; `env` stands in for the process environment so
/// tests can supply variables without mutating global state.
pub(crate) fn parse(
    source: &Path,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Config, ConfigError> {
    // The hash covers the bytes as written, before expansion, so it identifies the policy
    // file that was reviewed rather than the environment it happened to run in.
    let policy_hash = format!("sha256:{}", crate::os::hex(&Sha256::digest(bytes)));

    let text = std::str::from_utf8(bytes)
        .map_err(|e| ConfigError::at(source, "", format_args!("not valid UTF-8: {e}")))?;
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(source, &e))?;
    if value.is_null() {
        return Err(ConfigError::at(
            source,
            "",
            "the file is empty (it needs at least `version`, `agent` and `audit`)",
        ));
    }

    raw::reject_unsupported(&value).map_err(|(key, msg)| ConfigError::at(source, &key, msg))?;

    // Variables are substituted into already-parsed string scalars, never into the YAML
    // text: a value such as "x\nmode: observe" stays one string and cannot add or change
    // keys, so whoever controls the environment cannot rewrite the policy's structure.
    expand::expand_value(&mut value, env)
        .map_err(|(key, msg)| ConfigError::at(source, &key, msg))?;

    let raw: raw::RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        ConfigError::at(source, &key, raw::humanize(&e.into_inner().to_string()))
    })?;

    compile::compile(source, raw, policy_hash)
}

/// A YAML syntax error as `<file>:<line>:<col>: <message>`.
fn yaml_error(source: &Path, err: &serde_yaml_ng::Error) -> ConfigError {
    let message = err.to_string();
    match err.location() {
        Some(loc) => {
            // The crate appends " at line L column C"; the location moves to the front,
            // where editors and terminals recognise it.
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            let message = message.replacen(&suffix, "", 1);
            ConfigError(format!(
                "{}:{}:{}: {message}",
                source.display(),
                loc.line(),
                loc.column()
            ))
        }
        None => ConfigError::at(source, "", message),
    }
}

/// `s` as a YAML string scalar that loads back as exactly `s`: JSON's quoting (valid
/// YAML), with `${` written `$${` so expansion leaves it alone.
pub(crate) fn yaml_string(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_else(|_| "\"\"".to_owned())
        .replace("${", "$${")
}

#[cfg(test)]
mod tests;
