//! TLS for interception: cordon's local CA, per-host leaf certificates, and the verifying
//! client configuration used towards origins.

use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// Problems with the CA, leaf minting or trust roots; messages name the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// cordon's local certificate authority: signs short-lived leaves for intercepted hosts.
pub struct LocalCa {}

impl LocalCa {
    /// Loads `ca.crt`/`ca.key` from `dir`, creating them (key mode 0600) if both are absent.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, TlsError> {
        let _ = dir;
        todo!()
    }

    /// The CA certificate, PEM, for trust stores.
    pub fn cert_pem(&self) -> String {
        todo!()
    }

    /// A server config presenting `host`'s leaf, with the given ALPN protocols.
    pub fn server_config(
        &self,
        host: &str,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let _ = (host, alpn);
        todo!()
    }

    /// A leaf for `host` (DNS name or IP literal), minted once and cached until well before
    /// it expires. Never generates a key per host.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        let _ = host;
        todo!()
    }
}

/// The verifying client config towards origins: webpki roots plus `extra_roots`, ALPN h2
/// and http/1.1. Verification is never turned off.
pub fn upstream_client_config(
    extra_roots: &[std::path::PathBuf],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let _ = extra_roots;
    todo!()
}

/// Whether an I/O error from a TLS handshake means the peer's certificate did not verify.
pub fn is_certificate_error(err: &std::io::Error) -> bool {
    let _ = err;
    todo!()
}
