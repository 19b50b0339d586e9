//! `cordon audit verify F`.

use crate::audit::{verify_file, VerifyError};
use std::path::Path;

/// Runs `audit verify`; returns the process exit code.
pub fn verify(path: &Path) -> i32 {
    let shown = path.display();
    match verify_file(path) {
        Ok(ok) => {
            println!(
                "audit verify: {shown}: ok, {} records, chain intact",
                ok.records
            );
            0
        }
        Err(VerifyError::Broken { seq, line, why }) => {
            eprintln!("audit verify: {shown}: broken at seq {seq} (line {line}): {why}");
            1
        }
        Err(VerifyError::Io(message)) => {
            eprintln!("audit verify: {message}");
            2
        }
    }
}
