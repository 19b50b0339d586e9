//! The single writer of the audit file.

use super::Record;
use std::path::Path;

/// When the writer calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Every,
    Batch,
    None,
}

/// Errors opening or continuing an audit file.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {message}")]
    Open { path: String, message: String },
}

/// Cheap, cloneable, non-blocking handle used on the request path.
#[derive(Clone)]
pub struct AuditHandle {}

impl AuditHandle {
    /// Queues a record; never blocks.
    pub fn record(&self, record: Record) {
        let _ = record;
        todo!()
    }

    /// False once a write has failed: callers must then deny (`audit_unavailable`).
    pub fn healthy(&self) -> bool {
        todo!()
    }
}

/// Owns the writer thread; `shutdown` flushes and joins it.
pub struct AuditWriter {}

impl AuditWriter {
    /// Opens (or continues) the chain in `path` and starts the writer thread.
    pub fn open(
        path: &Path,
        fsync: Fsync,
        written: prometheus::IntCounter,
    ) -> Result<(AuditHandle, AuditWriter), AuditError> {
        let _ = (path, fsync, written);
        todo!()
    }

    /// Writes every queued record, fsyncs, and stops the thread. Blocking.
    pub fn shutdown(self) {
        todo!()
    }
}
