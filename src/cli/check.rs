//! `cordon check --config F`.

use std::path::Path;

/// Validates the config and prints the effective policy; returns the exit code.
pub fn run(config: &Path) -> i32 {
    let _ = config;
    todo!()
}
