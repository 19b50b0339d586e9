//! The audit trail: one hash-chained JSON Lines record per decision, written by one thread.
//!
//! [`chain`] defines the canonical form each record's hash is computed over, so that
//! trails can be checked with other tools as well as with `cordon audit verify`.

pub mod chain;
pub mod record;
pub mod sink;
pub mod stamp;
pub mod summary;
pub mod verify;

pub use record::{CredentialUse, FindingRecord, Record};
pub use sink::{AuditError, AuditHandle, AuditWriter, Fsync};
pub use stamp::Stamp;
pub use verify::{verify_file, VerifyError, VerifyOk};
