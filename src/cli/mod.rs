//! Subcommands, one file each, and the logging set-up they share.

pub mod audit;
pub mod ca;
pub mod check;
pub mod scan;
pub mod serve;

use std::io::IsTerminal;

/// How long-running commands write their log lines to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the stderr logger; `CORDON_LOG` sets the level (default `info`).
pub fn init_logging(format: LogFormat) {
    let level = std::env::var("CORDON_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
