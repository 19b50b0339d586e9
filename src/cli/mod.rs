//! Subcommands, one file each.

pub mod audit;
pub mod check;
pub mod serve;
