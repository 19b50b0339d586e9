//! Address classification (SSRF defence) and dialing of checked addresses.

pub mod classify;

pub use classify::{classify, permitted, AddrClass};
