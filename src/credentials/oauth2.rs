//! The `oauth2` source: the client credentials grant (RFC 6749 §4.4) over HTTP/1.1.

use super::parse::{form_encode, oauth_token_response, Fetched};
use super::{wipe, Secret};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long one token request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest token response read; real ones are a few hundred bytes.
const MAX_RESPONSE: usize = 1024 * 1024;

/// The client TLS setup for `https://` token endpoints: the webpki roots plus
/// `tls.extra_roots`, verification always on. Built once; a broken extra root is reported
/// by every fetch that needs it rather than stopping cordon.
pub(super) type TlsSetup = Result<Arc<rustls::ClientConfig>, String>;

/// Builds the client config for token endpoints.
pub(super) fn tls_setup(extra_roots: &[PathBuf]) -> TlsSetup {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra_roots {
        add_roots(&mut roots, path)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    // The client below speaks HTTP/1.1 only, so that is all it may offer.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn add_roots(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{shown}: {e}"))? {
        let cert = cert.map_err(|e| format!("{shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{shown}: unusable certificate: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err(format!("{shown}: no PEM certificate found"));
    }
    Ok(())
}

/// One token request: POSTs the form to `token_url` and parses the answer.
pub(super) async fn fetch(
    token_url: &str,
    client_id: &str,
    client_secret_file: &Path,
    scopes: &[String],
    tls: &TlsSetup,
) -> Result<Fetched, String> {
    tokio::time::timeout(
        TIMEOUT,
        request(token_url, client_id, client_secret_file, scopes, tls),
    )
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "the token endpoint did not answer within {}",
            humantime::format_duration(TIMEOUT)
        ))
    })
}

async fn request(
    token_url: &str,
    client_id: &str,
    client_secret_file: &Path,
    scopes: &[String],
    tls: &TlsSetup,
) -> Result<Fetched, String> {
    let uri: http::Uri = token_url
        .parse()
        .map_err(|_| "token_url is not a URL".to_string())?;
    let authority = uri
        .authority()
        .ok_or_else(|| "token_url has no host".to_string())?
        .clone();
    let https = uri.scheme_str() == Some("https");
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_string();

    // Read on every request, so a rotated client secret is picked up without a restart.
    let client_secret = read_client_secret(client_secret_file).await?;
    let scope = scopes.join(" ");
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", client_secret.expose()),
    ];
    if !scope.is_empty() {
        pairs.push(("scope", &scope));
    }
    let body = form_encode(&pairs);
    drop(client_secret);

    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::post(path)
        .header(http::header::HOST, authority.as_str())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the token request: {e}"))?;

    let requested_at = SystemTime::now();
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to the token endpoint {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut response_body = if https {
        let config = tls.as_ref().map_err(Clone::clone)?;
        let name = ServerName::try_from(host.clone())
            .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with the token endpoint {authority} failed: {e}"))?;
        exchange(stream, request).await?
    } else {
        exchange(tcp, request).await?
    };
    let result = oauth_token_response(&response_body, requested_at);
    wipe(&mut response_body);
    result
}

/// Sends the request on a fresh connection and returns the body of a 2xx answer. Any
/// other status is reported by its code alone: error bodies can echo what was sent.
async fn exchange<IO>(io: IO, request: http::Request<Full<Bytes>>) -> Result<Vec<u8>, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP with the token endpoint failed: {e}"))?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("the token request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the token endpoint answered {status}"));
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("cannot read the token response: {e}"))?;
        Ok(Vec::from(body.to_bytes()))
    }
    .await;
    driver.abort();
    result
}

async fn read_client_secret(path: &Path) -> Result<Secret, String> {
    let mut bytes = tokio::fs::read(path).await.map_err(|e| {
        format!(
            "cannot read client_secret_file {}: {}",
            path.display(),
            e.kind()
        )
    })?;
    let secret = std::str::from_utf8(&bytes)
        .map(|s| Secret::new(s.trim().to_string()))
        .map_err(|_| format!("client_secret_file {} is not UTF-8", path.display()));
    wipe(&mut bytes);
    let secret = secret?;
    if secret.expose().is_empty() {
        return Err(format!("client_secret_file {} is empty", path.display()));
    }
    Ok(secret)
}
