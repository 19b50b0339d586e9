//! Secret scanning: exact matching of the values cordon holds (in their common encodings),
//! a built-in rule set for token formats with a keyword prefilter, custom rules, a
//! streaming interface that finds secrets across chunk boundaries with bounded memory, and
//! redaction. Findings carry the rule id and location, never the value.

use std::sync::Arc;

/// One secret found: which rule, and where (absolute byte offsets, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Finding {
    pub rule: Arc<str>,
    pub start: u64,
    pub end: u64,
}

/// A custom rule from config.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomRule {
    pub id: String,
    pub regex: String,
    /// Literal anchors for the prefilter; at least one must occur near a match.
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy (bits per byte) of the match, if set.
    pub entropy: Option<f64>,
}

/// A configuration or rule error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ScanError(pub String);

/// The compiled scanner: immutable and cheap to share; rebuild it to change known values.
pub struct Scanner {}

impl Scanner {
    /// Compiles the built-in rules, `custom` rules, and exact matchers for `known` values
    /// (each also in base64, base64url, percent- and hex-encoded form; `id` names the rule
    /// reported for it, e.g. `credential:openai`).
    pub fn new(custom: &[CustomRule], known: &[(String, String)]) -> Result<Scanner, ScanError> {
        let _ = (custom, known);
        todo!()
    }

    /// Every finding in `data`, by start offset, overlapping findings merged.
    pub fn scan(&self, data: &[u8]) -> Vec<Finding> {
        let _ = data;
        todo!()
    }

    /// A streaming scan; memory stays bounded whatever the stream's length.
    pub fn stream(self: &Arc<Self>) -> ScanStream {
        todo!()
    }

    /// A streaming redactor replacing each finding with `[REDACTED:<rule-id>]`.
    pub fn redactor(self: &Arc<Self>) -> Redactor {
        todo!()
    }

    /// The longest secret any rule can match; the stream keeps this much of a tail.
    pub fn window(&self) -> usize {
        todo!()
    }
}

/// Feed chunks, get findings with absolute offsets, each exactly once.
pub struct ScanStream {}

impl ScanStream {
    /// Scans the next chunk; returns the findings that are now complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Finding> {
        let _ = chunk;
        todo!()
    }

    /// Ends the stream; returns what the tail still held.
    pub fn finish(&mut self) -> Vec<Finding> {
        todo!()
    }
}

/// Feed chunks, get redacted bytes (a tail is held back until it cannot hold a secret).
pub struct Redactor {}

impl Redactor {
    /// Redacts the next chunk; returns the bytes that are safe to pass on now, and the
    /// findings that were redacted.
    pub fn feed(&mut self, chunk: &[u8]) -> (Vec<u8>, Vec<Finding>) {
        let _ = chunk;
        todo!()
    }

    /// Ends the stream; returns the held-back tail, redacted.
    pub fn finish(&mut self) -> (Vec<u8>, Vec<Finding>) {
        todo!()
    }
}
