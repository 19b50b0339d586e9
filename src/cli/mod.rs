//! Subcommands, one file each, and the logging set-up they share.

pub mod audit;
pub mod ca;
pub mod check;
pub mod policy;
pub mod run;
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
    init_logging_at(format, tracing::Level::INFO)
}

/// Installs the stderr logger; `CORDON_LOG` sets the level (default `default`).
pub fn init_logging_at(format: LogFormat, default: tracing::Level) {
    let level = std::env::var("CORDON_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(default);
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

/// The `scanning.known_values`, read once at start (id `known:<VAR>` or `known:<file>`).
pub fn known_values(config: &crate::config::Config) -> Result<Vec<(String, String)>, String> {
    let mut known = Vec::new();
    for (i, source) in config.scanning.known_values.iter().enumerate() {
        let at = format!("{}: scanning.known_values[{i}]", config.source.display());
        let (id, value) = match source {
            crate::config::KnownValue::Env(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => (format!("known:{name}"), value),
                _ => return Err(format!("{at}: environment variable {name} is not set")),
            },
            crate::config::KnownValue::File(path) => match std::fs::read_to_string(path) {
                Ok(value) if !value.trim().is_empty() => {
                    (format!("known:{}", path.display()), value.trim().to_owned())
                }
                Ok(_) => return Err(format!("{at}: {} is empty", path.display())),
                Err(err) => return Err(format!("{at}: cannot read {}: {err}", path.display())),
            },
        };
        known.push((id, value));
    }
    Ok(known)
}
