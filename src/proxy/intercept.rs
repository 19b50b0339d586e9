//! Intercepted tunnels: cordon ends the agent's TLS with a leaf from its own CA, decides
//! every request inside the tunnel (HTTP/1.1 or HTTP/2, as the agent's ALPN chose), injects
//! the credential of the rule that allowed it, and forwards it over verified TLS to the
//! address checked when the tunnel opened.

use super::exchange::{Counted, Exchange, Metered, Outbound, ProxyBody};
use super::handler::{checked_path, decide, parse_authority, strip_request_headers};
use super::State;
use crate::policy::{DenyReason, Target};
use http::header::{HeaderValue, CONNECTION, HOST, UPGRADE};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// ALPN cordon offers the agent: HTTP/2 first, HTTP/1.1 for clients without it.
const AGENT_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// One intercepted tunnel: its fixed destination and its own connections to it.
pub struct Tunnel {
    state: Arc<State>,
    host: String,
    port: u16,
    sni: Option<String>,
    ip: IpAddr,
    client: Client<OriginConnector, Counted<super::scan::OutboundBody>>,
}

/// Terminates the agent's TLS and serves the requests inside until either side is done.
/// `agent` still holds the ClientHello, which was read for the SNI check.
pub async fn serve<A>(
    mut ex: Exchange,
    agent: A,
    upstream: TcpStream,
    addrs: Vec<IpAddr>,
    host: String,
    port: u16,
) where
    A: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = ex.state().clone();
    let Some(ca) = state.ca.clone() else {
        return ex.close_denied(
            DenyReason::UpstreamTls,
            None,
            "interception needs cordon's CA, which is not loaded",
        );
    };
    let config = match ca.server_config(&host, &AGENT_ALPN) {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, host = %host, "cannot mint a leaf certificate");
            return ex.close_denied(
                DenyReason::UpstreamTls,
                None,
                "cordon could not mint a certificate for this host",
            );
        }
    };
    let tls = match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsAcceptor::from(config).accept(agent),
    )
    .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            // Most often the agent does not trust cordon's CA: say so in the record.
            ex.record.detail = Some(format!("the agent's TLS handshake failed: {err}"));
            return ex.close_forwarded(Some(200), 0, 0);
        }
        Err(_) => {
            ex.record.detail = Some("the agent's TLS handshake timed out".to_owned());
            return ex.close_forwarded(Some(200), 0, 0);
        }
    };
    let name = match ServerName::try_from(host.clone()) {
        Ok(name) => name,
        Err(_) => {
            return ex.close_denied(
                DenyReason::MalformedRequest,
                None,
                "the host is not a valid TLS server name",
            )
        }
    };
    let connector = OriginConnector {
        inner: Arc::new(OriginInner {
            addrs,
            port,
            name,
            tls: state.upstream_tls.clone(),
            first: Mutex::new(Some(upstream)),
        }),
    };
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .http1_preserve_header_case(true)
        .build(connector);
    let tunnel = Arc::new(Tunnel {
        state: state.clone(),
        host,
        port,
        sni: ex.record.sni.clone(),
        ip: ex
            .record
            .ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        client,
    });
    ex.record.detail = Some("intercepted".to_owned());
    let service = hyper::service::service_fn(move |req| handle(tunnel.clone(), req));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(error = %err, "intercepted connection ended");
            }
        }
        _ = state.drain.aborted() => {}
    }
    ex.close_forwarded(Some(200), 0, 0);
}

/// One request inside an intercepted tunnel, decided like a plain request.
async fn handle(
    tunnel: Arc<Tunnel>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut ex = Exchange::new(tunnel.state.clone(), req.method().as_str());
    ex.record.host = Some(tunnel.host.clone());
    ex.record.port = Some(tunnel.port);
    ex.record.sni = tunnel.sni.clone();
    ex.record.ip = Some(tunnel.ip.to_string());
    ex.record.intent = super::handler::intent(req.headers());
    if !tunnel.state.audit.healthy() {
        return Ok(ex.deny(
            DenyReason::AuditUnavailable,
            "the audit trail cannot be written; cordon refuses all traffic until it can",
        ));
    }
    Ok(forward(tunnel, ex, req).await)
}

async fn forward(
    tunnel: Arc<Tunnel>,
    mut ex: Exchange,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    // 1. Every name the request gives (`:authority`, absolute URI, `Host`) must be the tunnel's.
    let mut named = Vec::new();
    if let Some(authority) = req.uri().authority() {
        named.push(authority.as_str().to_owned());
    }
    for value in req.headers().get_all(HOST) {
        named.push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    if named.is_empty() {
        return ex.deny(
            DenyReason::MalformedRequest,
            "the request names no host (no :authority or Host)",
        );
    }
    for name in &named {
        // Inside https, a name without a port means 443.
        match parse_authority(name, 443) {
            Ok(dest) if dest.host == tunnel.host && dest.port == tunnel.port => {}
            Ok(dest) => {
                let hint = format!(
                    "{}:{} is not this tunnel's destination {}:{}",
                    dest.host, dest.port, tunnel.host, tunnel.port
                );
                if let Some(response) = ex.refuse(DenyReason::HostMismatch, hint) {
                    return response;
                }
            }
            Err(hint) => {
                if let Some(response) = ex.refuse(DenyReason::HostMismatch, hint) {
                    return response;
                }
            }
        }
    }

    // 2. Path normalisation.
    let path = match checked_path(&mut ex, req.uri().path()) {
        Ok(path) => path,
        Err(response) => return response,
    };

    // 3. Deny boundary, then egress rules, for this request.
    let target = Target {
        host: &tunnel.host,
        port: tunnel.port,
        method: Some(req.method().as_str()),
        path: Some(&path),
    };
    let state = tunnel.state.clone();
    let credential = match decide(&mut ex, &target) {
        Ok(rule) => rule.and_then(|rule| state.policy.egress()[rule].credential.clone()),
        Err(response) => return response,
    };

    // 6. Credentials, then what must not leave.
    let (mut parts, body) = req.into_parts();
    let agent_upgrade = wants_upgrade(&parts)
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    let upgrade_to = parts.headers.get(UPGRADE).cloned();
    // 7. Outbound scan, before injection so cordon's own values are not findings.
    let body = match super::scan::scan_request(&mut ex, &mut parts, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    match super::inject::inject(&state.credentials, credential.as_deref(), &mut parts) {
        Ok(used) => ex.record.credential = used,
        Err((reason, hint)) => return ex.deny(reason, hint),
    }
    strip_request_headers(&mut parts.headers);
    if let (Some(_), Some(protocol)) = (&agent_upgrade, upgrade_to) {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(UPGRADE, protocol);
    }
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let authority = if tunnel.port == 443 {
        host_for_uri(&tunnel.host)
    } else {
        format!("{}:{}", host_for_uri(&tunnel.host), tunnel.port)
    };
    parts.uri = match format!("https://{authority}{path}{query}").parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => {
            return ex.deny(
                DenyReason::MalformedRequest,
                "the request target cannot be forwarded",
            )
        }
    };
    if parts.version == http::Version::HTTP_2 {
        // The upstream side picks its own protocol; hyper sets the version it speaks.
        parts.version = http::Version::HTTP_11;
        parts.headers.remove(HOST);
    }

    let outbound = Arc::new(Outbound::default());
    let upstream_req = Request::from_parts(parts, Counted::new(body, outbound.clone()));
    match tunnel.client.request(upstream_req).await {
        Ok(mut response) => {
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(agent_upgrade) = agent_upgrade {
                    let upstream_upgrade = hyper::upgrade::on(&mut response);
                    bridge_upgrade(agent_upgrade, upstream_upgrade);
                    let (parts, body) = response.into_parts();
                    let status = parts.status.as_u16();
                    let body = super::scan::InboundBody::Plain(body);
                    return Response::from_parts(
                        parts,
                        Either::Right(Metered::new(body, status, outbound, ex)),
                    );
                }
            }
            super::handler::respond(ex, response, outbound).await
        }
        Err(err) => {
            tracing::debug!(error = %err, "intercepted upstream request failed");
            if let Some(response) = super::handler::agent_fault(&mut ex, &outbound) {
                return response;
            }
            if is_certificate_error(&err) {
                return ex.deny(
                    DenyReason::UpstreamTls,
                    format!(
                        "the certificate of {}:{} did not verify",
                        tunnel.host, tunnel.port
                    ),
                );
            }
            ex.deny(
                DenyReason::UpstreamUnreachable,
                format!("the exchange with {}:{} failed", tunnel.host, tunnel.port),
            )
        }
    }
}

fn host_for_uri(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// HTTP/1.1 `Connection: upgrade` with an `Upgrade` header (WebSocket and the like).
fn wants_upgrade(parts: &http::request::Parts) -> bool {
    parts.version == http::Version::HTTP_11
        && parts.headers.contains_key(UPGRADE)
        && parts
            .headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// After a 101, copies bytes both ways between the upgraded agent and origin connections.
fn bridge_upgrade(agent: hyper::upgrade::OnUpgrade, origin: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        if let (Ok(agent), Ok(origin)) = tokio::join!(agent, origin) {
            let mut agent = TokioIo::new(agent);
            let mut origin = TokioIo::new(origin);
            let _ = tokio::io::copy_bidirectional(&mut agent, &mut origin).await;
        }
    });
}

/// Whether a client error came from the origin's certificate failing verification.
fn is_certificate_error(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if crate::tls::is_certificate_error(io) {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// Connects a tunnel's client to the checked addresses only, over verified TLS for the
/// tunnel's host; the first connection reuses the one dialed before the tunnel opened.
#[derive(Clone)]
pub struct OriginConnector {
    inner: Arc<OriginInner>,
}

struct OriginInner {
    addrs: Vec<IpAddr>,
    port: u16,
    name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    first: Mutex<Option<TcpStream>>,
}

impl tower_service::Service<Uri> for OriginConnector {
    type Response = OriginStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<OriginStream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let first = inner
                .first
                .lock()
                .map(|mut slot| slot.take())
                .unwrap_or(None);
            let tcp = match first {
                Some(tcp) => tcp,
                None => crate::net::dial(&inner.addrs, inner.port).await?.0,
            };
            let tls = tokio_rustls::TlsConnector::from(inner.tls.clone())
                .connect(inner.name.clone(), tcp)
                .await?;
            Ok(OriginStream {
                io: TokioIo::new(tls),
            })
        })
    }
}

/// A verified TLS connection to an origin, as hyper's client sees it.
pub struct OriginStream {
    io: TokioIo<TlsStream<TcpStream>>,
}

impl Connection for OriginStream {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.io.inner().get_ref().1.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl hyper::rt::Read for OriginStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for OriginStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The agent's side of a tunnel with the bytes already read (the ClientHello) put back in
/// front, so the TLS acceptor sees the stream from its first byte.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Replays `prefix` before reading from `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
