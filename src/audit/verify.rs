//! `cordon audit verify`: walks the hash chain (see [`super::chain`] for the canonical form).

use super::chain::{self, GENESIS_PREV};
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// A chain that verified.
#[derive(Debug)]
pub struct VerifyOk {
    /// Number of records in the file.
    pub records: u64,
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The first broken link: the seq the record claims (or the expected one when the line
    /// does not say), its 1-based line number, and what is wrong.
    #[error("record seq {seq} (line {line}): {why}")]
    Broken {
        /// Seq of the offending record.
        seq: u64,
        /// 1-based line number in the file.
        line: u64,
        /// What is wrong.
        why: String,
    },
    /// The file could not be read; the message names the path.
    #[error("{0}")]
    Io(String),
}

/// Verifies every link of the chain in `path`.
pub fn verify_file(path: &Path) -> Result<VerifyOk, VerifyError> {
    verify_each(path, |_| {})
}

/// Verifies every link of the chain in `path`, handing each record whose link holds (its
/// fields without `hash`) to `each` in order; a trail read once, for checking and using.
pub fn verify_each(
    path: &Path,
    mut each: impl FnMut(&Map<String, Value>),
) -> Result<VerifyOk, VerifyError> {
    let io_error = |e: std::io::Error| VerifyError::Io(format!("{}: {e}", path.display()));
    let mut reader = BufReader::new(File::open(path).map_err(io_error)?);
    let mut prev = GENESIS_PREV.to_owned();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io_error)? == 0 {
            return Ok(VerifyOk { records: line_no });
        }
        line_no += 1;
        let expected = line_no;
        let broken = |seq: u64, why: String| VerifyError::Broken {
            seq,
            line: line_no,
            why,
        };
        let Some(body) = buf.strip_suffix(b"\n") else {
            return Err(broken(
                expected,
                "last line has no trailing newline (torn write)".to_owned(),
            ));
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(broken(expected, "empty line".to_owned()));
        }
        let mut record = chain::parse_line(body).map_err(|why| broken(expected, why))?;
        let Some(seq) = record.get("seq").and_then(Value::as_u64) else {
            return Err(broken(
                expected,
                "seq is missing or not a non-negative integer".to_owned(),
            ));
        };
        if seq != expected {
            return Err(broken(
                seq,
                format!("expected seq {expected} (a record is missing, repeated or out of order)"),
            ));
        }
        if record.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(broken(
                seq,
                "prev does not match the hash of the record before it".to_owned(),
            ));
        }
        let Some(Value::String(claimed)) = record.remove("hash") else {
            return Err(broken(seq, "hash is missing or not a string".to_owned()));
        };
        if chain::record_hash(&record) != claimed {
            return Err(broken(
                seq,
                "hash does not match the record's content (the record was altered)".to_owned(),
            ));
        }
        each(&record);
        prev = claimed;
    }
}
