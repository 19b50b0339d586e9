//! `cordon ca init|export [--dir D | --config F]`: the local CA that intercepted hosts'
//! certificates chain to.

use crate::config;
use crate::tls::{self, LocalCa};
use std::path::{Path, PathBuf};

/// Where the CA lives: `--dir`, else `tls.ca_dir` of `--config`, else the default.
#[derive(Debug, clap::Args)]
pub struct CaLocation {
    /// Directory holding ca.crt and ca.key.
    #[arg(long, conflicts_with = "config")]
    pub dir: Option<PathBuf>,
    /// Take the directory from this config's `tls.ca_dir`.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

impl CaLocation {
    fn resolve(&self) -> Result<PathBuf, String> {
        match (&self.dir, &self.config) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(file)) => config::load(file)
                .map(|cfg| cfg.tls.ca_dir)
                .map_err(|e| e.to_string()),
            (None, None) => Ok(PathBuf::from(config::DEFAULT_CA_DIR)),
        }
    }
}

/// Creates the CA if absent and prints where it is and its fingerprint; returns the exit code.
pub fn init(location: &CaLocation) -> i32 {
    match location.resolve().and_then(|dir| init_in(&dir)) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("cordon ca init: {message}");
            2
        }
    }
}

fn init_in(dir: &Path) -> Result<(), String> {
    let ca = LocalCa::load_or_create(dir).map_err(|e| e.to_string())?;
    if ca.created() {
        println!("created CA in {}", dir.display());
    } else {
        println!("CA already present in {}", dir.display());
    }
    println!("SHA-256 fingerprint: {}", ca.fingerprint_sha256());
    Ok(())
}

/// Prints the CA certificate (PEM) to stdout; never creates one. Returns the exit code.
pub fn export(location: &CaLocation) -> i32 {
    let pem = location
        .resolve()
        .and_then(|dir| tls::read_cert_pem(&dir).map_err(|e| e.to_string()));
    match pem {
        Ok(pem) => {
            print!("{pem}");
            0
        }
        Err(message) => {
            eprintln!("cordon ca export: {message} (run `cordon ca init` first)");
            2
        }
    }
}
