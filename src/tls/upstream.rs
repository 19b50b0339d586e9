//! The origin-facing TLS client: always verifying, webpki roots plus configured extra roots.

use super::{ring_provider, TlsError, ALPN_H2_HTTP1, PROTOCOL_VERSIONS};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{AlertDescription, DigitallySignedStruct, RootCertStore, SignatureScheme};
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
    let pinned = pinned_certificates(extra_roots)?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), ring_provider())
        .build()
        .map_err(|e| TlsError(format!("TLS client set-up: {e}")))?;
    let verifier = Arc::new(Verifier { webpki, pinned });
    let mut config = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError(format!("TLS client set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Verifies origins against the roots; in addition, an origin presenting exactly a
/// certificate listed in `extra_roots` is accepted for the names that certificate carries.
/// A self-signed server certificate is often its own CA (`CA:TRUE`, as `openssl req -x509`
/// makes it), which path validation refuses as an end entity; an exact match is pinning,
/// stricter than trusting a CA. Its validity dates are not checked (there is no issuer to
/// renew it; the operator listed this very certificate).
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(err)
                if self
                    .pinned
                    .iter()
                    .any(|pin| pin.as_ref() == end_entity.as_ref()) =>
            {
                // The name must still match; the handshake signature is checked as always.
                let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| err.clone())?;
                cert.verify_is_valid_for_subject_name(server_name)
                    .map_err(|_| err)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Every certificate in `extra_roots`, for exact matching against what an origin presents.
fn pinned_certificates(extra_roots: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut pinned = Vec::new();
    for path in extra_roots {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError(format!("{}: cannot read trust roots: {e}", path.display())))?;
        pinned.extend(certs);
    }
    Ok(pinned)
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
    fn a_listed_self_signed_server_certificate_is_pinned_for_its_names() {
        use rustls::client::danger::ServerCertVerifier;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["pinned.test".to_owned()]).unwrap();
        // What `openssl req -x509` makes: a server certificate that is its own CA.
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let pem = temp_file("pinned.pem", &cert.pem());
        let other = rcgen::CertificateParams::new(vec!["pinned.test".to_owned()])
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let verifier = |roots: &[PathBuf]| {
            let roots_store = root_store(roots).unwrap();
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots_store), ring_provider())
                    .build()
                    .unwrap();
            Verifier {
                webpki,
                pinned: pinned_certificates(roots).unwrap(),
            }
        };
        let name = |n: &str| ServerName::try_from(n.to_owned()).unwrap();
        let now = UnixTime::now();
        let pinned = verifier(std::slice::from_ref(&pem));
        assert!(pinned
            .verify_server_cert(cert.der(), &[], &name("pinned.test"), &[], now)
            .is_ok());
        assert!(pinned
            .verify_server_cert(cert.der(), &[], &name("other.test"), &[], now)
            .is_err());
        assert!(pinned
            .verify_server_cert(other.der(), &[], &name("pinned.test"), &[], now)
            .is_err());
        let unlisted = verifier(&[]);
        assert!(unlisted
            .verify_server_cert(cert.der(), &[], &name("pinned.test"), &[], now)
            .is_err());
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
