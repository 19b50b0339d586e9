//! `cordon serve --config F`.

use std::path::Path;

/// Runs the listeners until SIGTERM/SIGINT; returns the exit code.
pub fn run(config: &Path) -> i32 {
    let _ = config;
    todo!()
}
