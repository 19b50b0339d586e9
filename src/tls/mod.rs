//! TLS for interception: cordon's local CA, per-host leaf certificates, and the verifying
//! client configuration used towards origins.
//!
//! The agent-facing side presents a leaf minted by [`LocalCa`] (one key for every leaf,
//! certificates cached per host); the origin-facing side always verifies against the webpki
//! roots plus `tls.extra_roots` ([`upstream_client_config`]). Nothing here can turn
//! verification off.

mod ca;
mod leaf;
mod upstream;

pub use ca::{read_cert_pem, LocalCa};
pub use upstream::{
    is_certificate_error, upstream_client_config, upstream_client_config_with_alpn,
};

use std::sync::Arc;

/// Problems with the CA, leaf minting or trust roots; messages name the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The ALPN protocols cordon offers and accepts, most preferred first.
pub const ALPN_H2_HTTP1: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// rustls' ring provider, built explicitly: a process-wide default provider may be unset (or
/// a different one) in whatever binary links cordon, and TLS must not depend on that.
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2: 1.2 stays because agents and origins behind older stacks still need it.
static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
