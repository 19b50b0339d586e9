//! `cordon audit verify F`.

use std::path::Path;

/// Runs `audit verify`; returns the process exit code.
pub fn verify(path: &Path) -> i32 {
    let _ = path;
    todo!()
}
