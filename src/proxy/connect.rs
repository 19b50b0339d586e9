//! CONNECT tunnels: decide on the authority, dial the checked address, answer 200, then
//! read the agent's TLS ClientHello and require its SNI to name the same host before a
//! single byte reaches the origin.

use super::exchange::{Exchange, ProxyBody};
use super::handler::{checked_addresses, parse_authority, printable};
use super::Drain;
use crate::policy::{DenyReason, TunnelDecision};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the agent may take to send its ClientHello after the tunnel opens.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The most cordon buffers while waiting for a complete ClientHello.
const MAX_HELLO: usize = 32 * 1024;
/// A TLS alert record: fatal, access_denied. The agent's TLS stack reports it clearly.
const ALERT_ACCESS_DENIED: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31];

/// Handles a CONNECT request.
pub async fn handle(mut ex: Exchange, req: Request<Incoming>) -> Response<ProxyBody> {
    // 1. Canonical destination: the CONNECT authority, which must carry a port.
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    if req.uri().scheme().is_some()
        || req
            .uri()
            .path_and_query()
            .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
        || authority.is_empty()
    {
        return ex.deny(
            DenyReason::MalformedRequest,
            "CONNECT needs an authority-form target (host:port)",
        );
    }
    if !authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    {
        return ex.deny(
            DenyReason::MalformedRequest,
            format!("CONNECT target {:?} has no port", printable(&authority)),
        );
    }
    let dest = match parse_authority(&authority, 443) {
        Ok(dest) => dest,
        Err(hint) => return ex.deny(DenyReason::MalformedRequest, hint),
    };
    ex.record.host = Some(dest.host.clone());
    ex.record.port = Some(dest.port);
    if let Some(response) =
        super::handler::check_host_header(&mut ex, req.headers(), &dest, dest.port)
    {
        return response;
    }

    // 3. Policy on the tunnel: the first entry for host and port says whether cordon
    // relays it untouched or intercepts it and decides each request inside.
    let (intercept, allow_ips) = match ex.state().policy.decide_tunnel(&dest.host, dest.port) {
        TunnelDecision::Passthrough { rule } => {
            (false, ex.state().policy.egress()[rule].allow_ips.clone())
        }
        TunnelDecision::Intercept { rule } => {
            (true, ex.state().policy.egress()[rule].allow_ips.clone())
        }
        TunnelDecision::Deny { reason, hint } => {
            if let Some(response) = ex.refuse(reason, hint) {
                return response;
            }
            // Observe mode let it through; intercepting shows the requests inside.
            let intercept = ex.state().observe_intercept && ex.state().ca.is_some();
            (intercept, Vec::new())
        }
    };
    // 4. Resolve, classify, dial the checked address before answering, so a failure is
    // still a readable HTTP response.
    let addrs = match checked_addresses(&mut ex, &dest.host, &allow_ips).await {
        Ok(addrs) => addrs,
        Err(response) => return response,
    };
    let (upstream, addr) = match crate::net::dial(&addrs, dest.port).await {
        Ok(pair) => pair,
        Err(err) => {
            tracing::debug!(error = %err, "tunnel dial failed");
            return ex.deny(
                DenyReason::UpstreamUnreachable,
                format!("cannot connect to {}:{}", dest.host, dest.port),
            );
        }
    };
    ex.record.ip = Some(addr.ip().to_string());

    let state = ex.state().clone();
    tokio::spawn(async move {
        let _guard = Drain::enter(&state);
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let agent = TokioIo::new(upgraded);
                let tunnel = Tunnel {
                    host: dest.host,
                    port: dest.port,
                    addrs,
                    intercept,
                };
                relay(ex, agent, upstream, tunnel).await
            }
            Err(err) => {
                tracing::debug!(error = %err, "tunnel upgrade failed");
                ex.close_forwarded(Some(200), 0, 0);
            }
        }
    });
    let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::OK;
    response
}

/// Where an opened tunnel goes and how it is carried.
struct Tunnel {
    host: String,
    port: u16,
    addrs: Vec<IpAddr>,
    intercept: bool,
}

/// Checks the ClientHello, then either copies bytes both ways until a side closes, or hands
/// the tunnel to interception.
async fn relay<A>(mut ex: Exchange, mut agent: A, mut upstream: TcpStream, tunnel: Tunnel)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let host = &tunnel.host;
    let hello = match read_client_hello(&mut agent).await {
        Ok(hello) => hello,
        Err(problem) => {
            let _ = agent.write_all(&ALERT_ACCESS_DENIED).await;
            let _ = agent.shutdown().await;
            return close_refused(&mut ex, DenyReason::TlsRequired, problem);
        }
    };
    ex.record.sni = hello.sni.clone();
    if let Some(sni) = &hello.sni {
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        if sni != *host {
            let hint = format!(
                "TLS server name {} does not match the CONNECT host {host}",
                printable(&sni)
            );
            if !ex.observe_only(DenyReason::SniMismatch, &hint) {
                let _ = agent.write_all(&ALERT_ACCESS_DENIED).await;
                let _ = agent.shutdown().await;
                return close_refused(&mut ex, DenyReason::SniMismatch, hint);
            }
        }
    }
    if tunnel.intercept {
        let agent = super::intercept::Prefixed::new(hello.bytes, agent);
        return super::intercept::serve(
            ex,
            agent,
            upstream,
            tunnel.addrs,
            tunnel.host,
            tunnel.port,
        )
        .await;
    }
    if upstream.write_all(&hello.bytes).await.is_err() {
        return ex.close_forwarded(Some(200), 0, 0);
    }
    let state = ex.state().clone();
    // Counted on the upstream side so that a tunnel ending in an error (a reset, the drain
    // limit) still records what it carried.
    let counts = Arc::new(TunnelCounts::default());
    let mut upstream = CountingIo {
        inner: upstream,
        counts: counts.clone(),
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut agent, &mut upstream) => {}
        _ = state.drain.aborted() => {
            ex.record.detail = Some("tunnel closed at shutdown".to_owned());
        }
    }
    let out = counts.written.load(Ordering::Relaxed) + hello.bytes.len() as u64;
    ex.close_forwarded(Some(200), out, counts.read.load(Ordering::Relaxed));
}

/// Bytes relayed through a tunnel, each way.
#[derive(Default)]
struct TunnelCounts {
    /// Towards the origin.
    written: AtomicU64,
    /// From the origin.
    read: AtomicU64,
}

/// The origin side of a passthrough tunnel, counting bytes as they pass.
struct CountingIo<S> {
    inner: S,
    counts: Arc<TunnelCounts>,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.counts.read.fetch_add(n, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.counts.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn close_refused(ex: &mut Exchange, reason: DenyReason, hint: String) {
    tracing::info!(reason = reason.as_str(), hint = %hint, "tunnel refused");
    ex.close_denied(reason, None, &hint);
}

/// The first bytes of a tunnel, and the server name they ask for.
struct ClientHello {
    bytes: Vec<u8>,
    sni: Option<String>,
}

/// Reads until rustls has a complete ClientHello (it may span several records and reads).
async fn read_client_hello<A: tokio::io::AsyncRead + Unpin>(
    agent: &mut A,
) -> Result<ClientHello, String> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut bytes = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    loop {
        let n = match tokio::time::timeout_at(deadline, agent.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err("the tunnel closed before a TLS ClientHello arrived".into()),
            Ok(Ok(n)) => n,
            Ok(Err(err)) => return Err(format!("reading the ClientHello: {err}")),
            Err(_) => return Err("no TLS ClientHello within 10 s".into()),
        };
        bytes.extend_from_slice(&chunk[..n]);
        let mut fresh = &chunk[..n];
        while !fresh.is_empty() {
            if acceptor.read_tls(&mut fresh).is_err() {
                return Err("the tunnel does not carry TLS".into());
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok(ClientHello { bytes, sni });
            }
            Ok(None) if bytes.len() < MAX_HELLO => continue,
            Ok(None) => return Err("the ClientHello is too large".into()),
            Err(_) => return Err("the tunnel does not carry a valid TLS ClientHello".into()),
        }
    }
}
