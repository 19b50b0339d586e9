//! Short-lived credentials: where they come from (env, file, exec, oauth2), a cache per
//! credential that refreshes ahead of expiry, and the secret type that never prints itself.

use std::path::PathBuf;
use std::time::Duration;

/// Where a credential's value comes from (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// An environment variable of cordon's own process, read once at start.
    Env(String),
    /// A file holding the raw token, or JSON `{"token": …, "expires_at": …}`; re-read on change.
    File { path: PathBuf, refresh: Duration },
    /// A plug-in printing kubectl ExecCredential v1 JSON; run without a shell.
    Exec {
        command: Vec<String>,
        timeout: Duration,
    },
    /// OAuth2 client credentials grant.
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret_file: PathBuf,
        scopes: Vec<String>,
    },
}

/// How the value is put into an outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectSpec {
    /// Header name, e.g. `Authorization`.
    pub header: String,
    /// Template with one `{secret}` slot, e.g. `Bearer {secret}`.
    pub value: String,
}

/// One validated `credentials.<id>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSpec {
    pub id: String,
    pub source: SourceSpec,
    /// Absent: only the placeholder swap injects the value.
    pub inject: Option<InjectSpec>,
    /// What the agent holds instead of the secret (default `CORDON_PLACEHOLDER_<ID>`).
    pub placeholder: String,
    /// The variable `cordon run` exports the placeholder under.
    pub env: Option<String>,
    /// A request carrying the real value is denied (`real_secret_used`).
    pub require_placeholder: bool,
}

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// A secret value. `Debug` and `Display` show a short fingerprint, never the value; the
/// bytes are overwritten when it is dropped.
pub struct Secret {
    value: String,
}

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Secret {
        Secret { value }
    }

    /// The value, for injection and exact-match scanning only.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// `sha256:` + the first 12 hex digits of the value's SHA-256.
    pub fn fingerprint(&self) -> String {
        todo!()
    }
}

/// One issued value of a credential.
pub struct Issued {
    pub secret: Secret,
    /// Starts at 1 and grows by one with every new value.
    pub version: u64,
    /// When the value stops being valid, if the source says.
    pub expires_at: Option<SystemTime>,
}

/// Why no value can be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("credential {id}: {message}")]
pub struct CredentialError {
    pub id: String,
    /// Never contains the secret.
    pub message: String,
}

/// The live value of one credential, refreshed in the background ahead of expiry.
pub struct CredentialCache {}

impl CredentialCache {
    /// The current value; never one that has expired.
    pub fn current(&self) -> Result<Arc<Issued>, CredentialError> {
        todo!()
    }

    /// Fetches a new value now and drops the old one at once (anomaly action `rotate`).
    pub async fn rotate_now(&self, reason: &str) -> Result<Arc<Issued>, CredentialError> {
        let _ = reason;
        todo!()
    }

    /// The spec this cache serves.
    pub fn spec(&self) -> &CredentialSpec {
        todo!()
    }
}

/// Every configured credential, by id.
#[derive(Default)]
pub struct Credentials {
    by_id: HashMap<String, Arc<CredentialCache>>,
}

impl Credentials {
    /// Starts one cache (and its refresher task) per spec; must run inside a tokio runtime.
    /// A source that fails now is logged and retried; requests needing it are refused.
    pub async fn start(specs: &[CredentialSpec], metrics: &crate::metrics::Metrics) -> Credentials {
        let _ = (specs, metrics);
        todo!()
    }

    /// The cache for `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<CredentialCache>> {
        self.by_id.get(id)
    }

    /// All caches, in no particular order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<CredentialCache>> {
        self.by_id.values()
    }
}
