//! Request path normalisation and `*`/`**` segment patterns.

/// Why a path is refused as ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

/// Normalises a request path (no query): decodes unreserved percent-escapes, resolves `.`
/// and `..`; refuses encodings that servers disagree on.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    let _ = raw;
    todo!()
}

/// A path pattern: `/` separated segments, `*` one segment, `**` any number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    raw: String,
}

impl PathPattern {
    /// Parses a config path pattern.
    pub fn parse(raw: &str) -> Result<PathPattern, PathError> {
        let _ = raw;
        todo!()
    }

    /// The pattern as written in config.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether a normalised path matches.
    pub fn matches(&self, path: &str) -> bool {
        let _ = path;
        todo!()
    }
}
