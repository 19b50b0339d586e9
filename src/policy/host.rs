//! Host patterns (`api.example.com`, `*.example.com`, IP literals) and host canonicalisation.

/// A host pattern from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exact canonical host (name or IP literal text).
    Exact(String),
    /// `*.suffix`: one or more labels before `suffix` (stored with its leading dot).
    Wildcard(String),
}

/// Why a host (pattern) is unacceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

impl HostPattern {
    /// Parses a config host pattern; rejects bare `*`, empty, over-broad and malformed hosts.
    pub fn parse(raw: &str) -> Result<HostPattern, HostError> {
        let _ = raw;
        todo!()
    }

    /// Whether a canonical host matches.
    pub fn matches(&self, host: &str) -> bool {
        let _ = host;
        todo!()
    }
}

/// Canonical form of a request host: ASCII lower-case, no trailing dot, IPv6 without brackets.
pub fn canonical_host(raw: &str) -> Result<String, HostError> {
    let _ = raw;
    todo!()
}
