//! cordon: a sidecar that is an AI agent's only way out.
//!
//! The request path reads top to bottom: `proxy` accepts a connection and resolves the
//! destination, `policy` decides, `net` classifies and dials the checked address, and
//! `audit` writes one hash-chained record per decision.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod dns;
pub mod metrics;
pub mod net;
pub mod os;
pub mod policy;
pub mod proxy;
pub mod run;
pub mod scan;
pub mod tls;
