//! The origin-facing TLS client: always verifying, webpki roots plus configured extra roots.

use super::{ring_provider, TlsError, ALPN_H2_HTTP1, PROTOCOL_VERSIONS};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{AlertDescription, RootCertStore};
use std::path::PathBuf;
use std::sync::Arc;

/// The verifying client config towards origins: webpki roots plus `extra_roots`, ALPN h2
/// and http/1.1. Verification is never turned off.
pub fn upstream_client_config(
    extra_roots: &[PathBuf],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    upstream_client_config_with_alpn(extra_roots, &ALPN_H2_HTTP1)
}

/// Like [`upstream_client_config`], offering `alpn` instead (e.g. only `http/1.1` when the
/// agent side negotiated HTTP/1.1 and cordon wants the same towards the origin).
pub fn upstream_client_config_with_alpn(
    extra_roots: &[PathBuf],
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = root_store(extra_roots)?;
    let mut config = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError(format!("TLS client set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn root_store(extra_roots: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in extra_roots {
        let file = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError(format!("{file}: cannot read trust roots: {e}")))?;
        if certs.is_empty() {
            return Err(TlsError(format!("{file}: no certificate in this PEM file")));
        }
        for (i, cert) in certs.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                TlsError(format!(
                    "{file}: certificate {} is not a usable trust root: {e}",
                    i + 1
                ))
            })?;
        }
    }
    Ok(roots)
}

/// True when a TLS handshake failed over a certificate (ours rejecting the origin's, or a
/// certificate alert from the peer), so the proxy can answer 502 `upstream_tls`.
pub fn is_certificate_error(err: &std::io::Error) -> bool {
    // tokio-rustls wraps the rustls::Error in the io::Error; layers above (hyper, our own
    // connectors) may wrap once more, so walk the whole source chain.
    let mut next: Option<&(dyn std::error::Error + 'static)> = err
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(current) = next {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return is_certificate_tls_error(tls);
        }
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    false
}

fn is_certificate_tls_error(err: &rustls::Error) -> bool {
    match err {
        rustls::Error::InvalidCertificate(_) => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateRequired
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let dir = crate::tls::ca::tests::temp_dir("roots");
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn extra_roots_errors_name_the_file() {
        let missing = PathBuf::from("/nonexistent/cordon-roots.pem");
        let err = upstream_client_config(&[missing]).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cordon-roots.pem"), "{err}");

        let empty = temp_file("empty.pem", "no certificates here\n");
        let err = upstream_client_config(std::slice::from_ref(&empty))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&empty.display().to_string()), "{err}");
        assert!(err.contains("no certificate"), "{err}");
    }

    #[test]
    fn extra_roots_are_added_to_webpki_roots() {
        let dir = crate::tls::ca::tests::temp_dir("roots-ok");
        let ca = crate::tls::LocalCa::load_or_create(&dir.join("ca")).unwrap();
        let pem = temp_file("extra.pem", &ca.cert_pem());
        let config = upstream_client_config(&[pem]).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let bare = root_store(&[]).unwrap();
        assert!(!bare.is_empty(), "webpki roots are always present");
    }

    #[test]
    fn certificate_errors_are_recognised_through_wrapping() {
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let direct = io::Error::new(io::ErrorKind::InvalidData, cert.clone());
        assert!(is_certificate_error(&direct));
        let wrapped = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, cert));
        assert!(is_certificate_error(&wrapped));
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        );
        assert!(is_certificate_error(&alert));

        let other_tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
        );
        assert!(!is_certificate_error(&other_tls));
        assert!(!is_certificate_error(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
    }
}
