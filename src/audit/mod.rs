//! The audit trail: one hash-chained JSON Lines record per decision, written by one task.

pub mod record;
pub mod sink;
pub mod verify;

pub use record::Record;
pub use sink::{AuditError, AuditHandle, AuditWriter, Fsync};
pub use verify::{verify_file, VerifyError, VerifyOk};
