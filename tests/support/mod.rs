//! Shared fixtures for cordon's integration tests: local origins, a test CA, an upstream DNS
//! server, a handle on the real `cordon` binary, raw HTTP helpers and network namespaces.
//!
//! Everything listens on loopback (or inside a private network namespace) on port 0, so tests
//! can run in parallel and nothing ever leaves the machine.

// Each test file compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

// ---------------------------------------------------------------------------------------------
// Background servers
// ---------------------------------------------------------------------------------------------

/// A server loop on its own thread and runtime, so sync and async tests can both use it and a
/// test's own runtime (often current-thread) never has to drive it.
struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// `make` runs inside the new runtime because tokio sockets must be registered there.
    fn spawn<F, Fut>(name: &str, make: F) -> Background
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build fixture runtime");
                runtime.block_on(async move {
                    tokio::select! {
                        _ = make() => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels connection tasks still in flight.
            })
            .expect("spawn fixture thread");
        Background {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Pause after a failed accept/recv (e.g. out of file descriptors) instead of spinning.
async fn back_off() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn std_listener(addr: SocketAddr) -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind(addr)
        .unwrap_or_else(|e| panic!("fixture cannot bind {addr}: {e}"));
    // tokio requires non-blocking sockets when adopting std ones.
    listener.set_nonblocking(true).expect("set_nonblocking");
    listener
}

// ---------------------------------------------------------------------------------------------
// Test CA
// ---------------------------------------------------------------------------------------------

/// A throwaway certificate authority for TLS origins.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    /// A new self-signed CA whose common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("generate CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa { cert, key }
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Writes the CA certificate to `dir/test-ca.pem` (for `tls.extra_roots`, curl `--cacert`).
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, self.cert_pem())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A leaf for `names` (DNS names, or IP literals which become IP SANs) signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().expect("generate leaf key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) => rcgen::SanType::DnsName(
                    (*name)
                        .try_into()
                        .unwrap_or_else(|e| panic!("bad DNS name {name:?}: {e}")),
                ),
            })
            .collect();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone(), self.cert_der()], key_der)
    }

    /// A leaf for `names` that expired yesterday.
    pub fn leaf_expired(
        &self,
        names: &[&str],
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.leaf_valid(names, -10, -1)
    }

    /// A leaf for `names` valid from `from_days` to `to_days` relative to today.
    pub fn leaf_valid(
        &self,
        names: &[&str],
        from_days: i64,
        to_days: i64,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().expect("generate leaf key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let base = now - (now % 86_400);
        // rcgen's date type adds std durations; counting from the epoch avoids naming it.
        let at = |days: i64| {
            rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs((base + days * 86_400) as u64)
        };
        params.not_before = at(from_days);
        params.not_after = at(to_days);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone(), self.cert_der()], key_der)
    }

    /// A rustls client config that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config_with_roots(vec![self.cert_der()])
    }
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    // Explicit provider: the process-wide default may be unset in test binaries.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config_with_roots(roots: Vec<CertificateDer<'static>>) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root).expect("add trust root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A rustls client config trusting every certificate in `pem` (e.g. cordon's exported CA).
pub fn tls_client_config(pem: &str) -> Arc<rustls::ClientConfig> {
    let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("parse PEM roots");
    assert!(!roots.is_empty(), "no certificate in PEM");
    client_config_with_roots(roots)
}

/// Opens a CONNECT tunnel to `host:port` through the proxy and reads its `200` head.
pub async fn open_tunnel(proxy: SocketAddr, host: &str, port: u16) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(proxy)
        .await
        .unwrap_or_else(|e| panic!("connect to proxy {proxy}: {e}"));
    stream
        .write_all(
            format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes(),
        )
        .await
        .expect("send CONNECT");
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "CONNECT {host}:{port}: {head}"
    );
    stream
}

/// Reads one HTTP/1.x response head, byte by byte so nothing after it is consumed.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .await
            .expect("read response head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// TLS-connects over an existing stream (a direct socket, or a CONNECT tunnel).
pub async fn tls_connect<S>(
    stream: S,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

// ---------------------------------------------------------------------------------------------
// Origin
// ---------------------------------------------------------------------------------------------

/// One request as the origin received it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: Method,
    /// The request-target as sent (origin-form `/p?q`, or absolute-form if a proxy forwarded it so).
    pub target: String,
    pub version: Version,
    /// Lower-case names; hyper groups repeated names together (first-appearance order).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False when the client stopped sending mid-body: `body` holds what did arrive.
    pub body_complete: bool,
    pub tls: bool,
    /// SNI the client sent, for TLS origins.
    pub sni: Option<String>,
    /// When the request head arrived (before its body was read).
    pub received: SystemTime,
}

impl SeenRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive), in arrival order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The path part of the target, without the query.
    pub fn path(&self) -> String {
        let uri: http::Uri = self.target.parse().expect("recorded target is a URI");
        uri.path().to_string()
    }
}

type Seen = Arc<Mutex<Vec<SeenRequest>>>;
type OriginBody = BoxBody<Bytes, Infallible>;

/// An HTTP/1.1 origin on loopback that records every request and answers by path:
/// `/1k` 1024 × `x`; `/echo` the request body and content-type; `/status/NNN` that status;
/// `/chunked` a multi-chunk response; `/slow?ms=N` 200 after N ms; anything else 200 with
/// `{"method","path","host"}` as JSON.
pub struct Origin {
    addr: SocketAddr,
    seen: Seen,
    _server: Background,
}

impl Origin {
    /// A plain HTTP origin on 127.0.0.1, port chosen by the kernel.
    pub fn plain() -> Origin {
        Origin::plain_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// A plain HTTP origin on `addr` (inside a network namespace, e.g. `10.1.2.3:80`).
    pub fn plain_on(addr: SocketAddr) -> Origin {
        Origin::serve(std_listener(addr), None)
    }

    /// A TLS origin (ALPN http/1.1) on 127.0.0.1 whose leaf from `ca` covers `names` + 127.0.0.1.
    pub fn tls(ca: &TestCa, names: &[&str]) -> Origin {
        let mut sans = names.to_vec();
        sans.push("127.0.0.1");
        let (chain, key) = ca.leaf(&sans);
        Origin::tls_with(chain, key, &[b"http/1.1"])
    }

    /// A TLS origin offering HTTP/2 (ALPN h2, then http/1.1).
    pub fn tls_h2(ca: &TestCa, names: &[&str]) -> Origin {
        let mut sans = names.to_vec();
        sans.push("127.0.0.1");
        let (chain, key) = ca.leaf(&sans);
        Origin::tls_with(chain, key, &[b"h2", b"http/1.1"])
    }

    /// A TLS origin presenting exactly `chain` (e.g. an expired or wrong-name leaf).
    pub fn tls_with(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        alpn: &[&[u8]],
    ) -> Origin {
        let mut config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("origin certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Origin::serve(
            std_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            Some(acceptor),
        )
    }

    fn serve(listener: std::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let addr = listener.local_addr().expect("origin local_addr");
        let seen: Seen = Arc::default();
        let recorder = seen.clone();
        let server = Background::spawn("origin", move || async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("adopt listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    back_off().await;
                    continue;
                };
                let seen = recorder.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_http(stream, seen, false, None).await,
                        Some(acceptor) => {
                            // Failed handshakes are expected in tests that present wrong names.
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let sni = stream.get_ref().1.server_name().map(str::to_string);
                            serve_http(stream, seen, true, sni).await;
                        }
                    }
                });
            }
        });
        Origin {
            addr,
            seen,
            _server: server,
        }
    }

    /// Where the origin listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the origin listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn serve_http<S>(stream: S, seen: Seen, tls: bool, sni: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let seen = seen.clone();
        let sni = sni.clone();
        async move { Ok::<_, Infallible>(answer(req, seen, tls, sni).await) }
    });
    // Errors here are clients hanging up, which several tests do on purpose. The auto
    // builder speaks HTTP/2 to clients that start with its preface, HTTP/1.1 otherwise.
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}

async fn answer(
    req: Request<Incoming>,
    seen: Seen,
    tls: bool,
    sni: Option<String>,
) -> Response<OriginBody> {
    let received = SystemTime::now();
    let (mut parts, mut body) = req.into_parts();
    // `/ws`: answer an HTTP/1.1 upgrade with 101, then echo every byte on the upgraded stream.
    let upgrade = (parts.uri.path() == "/ws")
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    // Collect frame by frame so a body cut off mid-way is still recorded: scanning tests need
    // to see exactly which bytes reached the origin.
    let mut bytes = Vec::new();
    let mut body_complete = true;
    // `/sink` counts the body without keeping it, for large-body tests.
    let sink = parts.uri.path() == "/sink";
    let mut sunk = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    if sink {
                        sunk += data.len() as u64;
                    } else {
                        bytes.extend_from_slice(data);
                    }
                }
            }
            Err(_) => {
                body_complete = false;
                break;
            }
        }
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let host = parts
        .headers
        .get(http::header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    seen.lock().unwrap().push(SeenRequest {
        method: parts.method.clone(),
        target: parts.uri.to_string(),
        version: parts.version,
        headers,
        body: bytes.clone(),
        body_complete,
        tls,
        sni,
        received,
    });

    let path = parts.uri.path();
    let mut response = Response::builder();
    if let Some(upgrade) = upgrade {
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            }
        });
        return response
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(http::header::CONNECTION, "upgrade")
            .header(http::header::UPGRADE, "websocket")
            .body(Empty::new().boxed())
            .unwrap();
    }
    if path == "/1k" {
        return response
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(full(vec![b'x'; 1024]))
            .unwrap();
    }
    if sink {
        return response.body(full(sunk.to_string().into_bytes())).unwrap();
    }
    if path == "/echo-headers" {
        // Echoes every request header back in the body, as a careless origin might.
        let text: String = parts
            .headers
            .iter()
            .map(|(n, v)| format!("{}: {}\n", n, String::from_utf8_lossy(v.as_bytes())))
            .collect();
        return response.body(full(text.into_bytes())).unwrap();
    }
    if path == "/echo" {
        if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
            response = response.header(http::header::CONTENT_TYPE, ct);
        }
        return response.body(full(bytes)).unwrap();
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        return response.status(status).body(Empty::new().boxed()).unwrap();
    }
    if path == "/chunked" {
        return response
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(chunked_body(&[
                "chunk-one\n",
                "chunk-two\n",
                "chunk-three\n",
                "chunk-four\n",
            ]))
            .unwrap();
    }
    if path == "/slow" {
        let ms = query_param(parts.uri.query(), "ms")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return response.body(full(b"slow\n".to_vec())).unwrap();
    }
    let summary = serde_json::json!({
        "method": parts.method.as_str(),
        "path": path,
        "host": host,
    });
    response
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(summary.to_string().into_bytes()))
        .unwrap()
}

fn full(bytes: Vec<u8>) -> OriginBody {
    Full::new(Bytes::from(bytes)).boxed()
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A body fed by a task that pauses between chunks, so each chunk leaves as its own write and
/// streaming code in between sees real chunk boundaries.
struct ChunkedBody(mpsc::Receiver<Bytes>);

impl Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

fn chunked_body(chunks: &[&'static str]) -> OriginBody {
    let (tx, rx) = mpsc::channel(1);
    let chunks = chunks.to_vec();
    tokio::spawn(async move {
        for chunk in chunks {
            if tx.send(Bytes::from_static(chunk.as_bytes())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    ChunkedBody(rx).boxed()
}

// ---------------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------------

/// Normalised form used for matching and counting: lower case, no trailing dot.
fn dns_key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[derive(Default)]
struct DnsState {
    records: Vec<(String, IpAddr)>,
    /// name → target, answered as CNAME records followed by the target's addresses.
    cnames: Vec<(String, String)>,
    /// TTL of every answer (0 means the default, 60).
    ttl: u32,
    total: usize,
    per_name: HashMap<String, usize>,
}

/// An authoritative DNS server for a fixed zone, on 127.0.0.1 over UDP and TCP (same port).
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<Mutex<DnsState>>,
    _server: Background,
}

impl DnsServer {
    /// Serves `records` (A for IPv4, AAAA for IPv6, TTL 60; repeat a name for several answers).
    pub fn start(records: &[(&str, IpAddr)]) -> DnsServer {
        let (udp, tcp) = bind_udp_and_tcp();
        let addr = udp.local_addr().expect("dns local_addr");
        let state = Arc::new(Mutex::new(DnsState::default()));
        DnsServer::set_records_in(&state, records);
        let shared = state.clone();
        let server = Background::spawn("dns", move || async move {
            let udp = tokio::net::UdpSocket::from_std(udp).expect("adopt udp");
            let tcp = tokio::net::TcpListener::from_std(tcp).expect("adopt tcp");
            tokio::join!(serve_udp(udp, shared.clone()), serve_tcp(tcp, shared));
        });
        DnsServer {
            addr,
            state,
            _server: server,
        }
    }

    /// Replaces the zone (for tests where answers change between lookups).
    pub fn set_records(&self, records: &[(&str, IpAddr)]) {
        DnsServer::set_records_in(&self.state, records);
    }

    fn set_records_in(state: &Mutex<DnsState>, records: &[(&str, IpAddr)]) {
        state.lock().unwrap().records = records
            .iter()
            .map(|(name, ip)| (dns_key(name), *ip))
            .collect();
    }

    /// Answers `name` with a CNAME to `target` (then `target`'s own records).
    pub fn set_cname(&self, name: &str, target: &str) {
        self.state
            .lock()
            .unwrap()
            .cnames
            .push((dns_key(name), dns_key(target)));
    }

    /// Sets the TTL of every answer from now on.
    pub fn set_ttl(&self, ttl: u32) {
        self.state.lock().unwrap().ttl = ttl;
    }

    /// UDP and TCP address (same port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received so far, over both transports.
    pub fn queries(&self) -> usize {
        self.state.lock().unwrap().total
    }

    /// Queries received so far for `name` (case-insensitive, trailing dot optional).
    pub fn queries_for(&self, name: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.per_name.get(&dns_key(name)).copied().unwrap_or(0)
    }
}

fn bind_udp_and_tcp() -> (std::net::UdpSocket, std::net::TcpListener) {
    // The kernel picks a free UDP port; TCP on the same number may be taken by someone else,
    // in which case we start over with a fresh UDP port.
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind dns udp");
        let port = udp.local_addr().expect("udp local_addr").port();
        if let Ok(tcp) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            udp.set_nonblocking(true).expect("set_nonblocking");
            tcp.set_nonblocking(true).expect("set_nonblocking");
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

async fn serve_udp(socket: tokio::net::UdpSocket, state: Arc<Mutex<DnsState>>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            back_off().await;
            continue;
        };
        if let Some(reply) = dns_reply(&buf[..n], &state) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, state: Arc<Mutex<DnsState>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            back_off().await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            // RFC 1035 §4.2.2: each message is prefixed by its 16-bit length; a connection may
            // carry several queries.
            loop {
                let Ok(len) = stream.read_u16().await else {
                    return;
                };
                let mut query = vec![0u8; usize::from(len)];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                let Some(reply) = dns_reply(&query, &state) else {
                    return;
                };
                let Ok(len) = u16::try_from(reply.len()) else {
                    return;
                };
                if stream.write_u16(len).await.is_err() || stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn dns_reply(query: &[u8], state: &Mutex<DnsState>) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired());
    let Some(question) = request.queries().first() else {
        reply.set_response_code(ResponseCode::FormErr);
        return reply.to_vec().ok();
    };
    reply.add_query(question.clone());

    let mut key = dns_key(&question.name().to_ascii());
    let mut state = state.lock().unwrap();
    state.total += 1;
    *state.per_name.entry(key.clone()).or_default() += 1;
    let ttl = if state.ttl == 0 { 60 } else { state.ttl };
    let mut owner = question.name().clone();
    // Follow CNAMEs (a few hops at most), answering each link.
    for _ in 0..8 {
        let Some((_, target)) = state.cnames.iter().find(|(name, _)| *name == key).cloned() else {
            break;
        };
        let target_name =
            hickory_proto::rr::Name::from_ascii(format!("{target}.")).expect("CNAME target");
        reply.add_answer(Record::from_rdata(
            owner.clone(),
            ttl,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(target_name.clone())),
        ));
        owner = target_name;
        key = target;
    }
    let addresses: Vec<IpAddr> = state
        .records
        .iter()
        .filter(|(name, _)| *name == key)
        .map(|(_, ip)| *ip)
        .collect();
    drop(state);

    if addresses.is_empty() && reply.answers().is_empty() {
        reply.set_response_code(ResponseCode::NXDomain);
        return reply.to_vec().ok();
    }
    for ip in addresses {
        let rdata = match (question.query_type(), ip) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(v4)),
            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(v6)),
            // The name exists but has no record of the asked type: NOERROR, no answer.
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(owner.clone(), ttl, rdata));
    }
    reply.to_vec().ok()
}

// ---------------------------------------------------------------------------------------------
// The cordon binary
// ---------------------------------------------------------------------------------------------

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, unique across processes and calls.
pub fn unique_temp_dir(label: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("cordon-{label}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn write_config(dir: &Path, config_yaml: &str) -> PathBuf {
    let path = dir.join("cordon.yaml");
    let text = config_yaml.replace("{dir}", &dir.display().to_string());
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Removes terminal colour codes so log matching works whether or not the logger colours.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Copies a child's output line by line into `file` and `buffer` until the pipe closes.
fn pump(source: impl Read + Send + 'static, file: PathBuf, buffer: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut log = std::fs::File::create(&file).ok();
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let mut line = strip_ansi(&String::from_utf8_lossy(&raw));
            if !line.ends_with('\n') {
                line.push('\n');
            }
            if let Some(log) = log.as_mut() {
                let _ = log.write_all(line.as_bytes());
            }
            buffer.lock().unwrap().push_str(&line);
        }
    });
}

/// The address in a `listening listener=<name> addr=<addr>` log line, if `line` is one.
pub fn listening_addr(line: &str, listener: &str) -> Option<SocketAddr> {
    let mut tokens = line.split_whitespace();
    tokens.clone().find(|t| *t == "listening")?;
    let wanted = format!("listener={listener}");
    // Quotes appear when the value is logged with Debug rather than Display.
    tokens.clone().find(|t| t.replace('"', "") == wanted)?;
    let addr = tokens.find_map(|t| t.strip_prefix("addr="))?;
    addr.trim_matches('"').parse().ok()
}

/// A running `cordon serve` with its own config, audit file and logs in a temp directory.
pub struct Cordon {
    child: Option<Child>,
    dir: PathBuf,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    proxy: SocketAddr,
    admin: Option<SocketAddr>,
    /// Set by `stop`: the test may still read the files through a saved `dir()` path.
    keep_dir: bool,
}

impl Cordon {
    /// Starts `cordon serve` on `config_yaml` (`{dir}` → the temp dir) and waits for its listeners.
    pub fn start(config_yaml: &str) -> Cordon {
        Cordon::start_with_env(config_yaml, &[])
    }

    /// As `start`, with extra environment variables for the child (credential sources, `${VAR}`).
    pub fn start_with_env(config_yaml: &str, env: &[(&str, &str)]) -> Cordon {
        let dir = unique_temp_dir("test");
        let config = write_config(&dir, config_yaml);
        let mut child = Command::new(env!("CARGO_BIN_EXE_cordon"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cordon");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        pump(
            child.stderr.take().unwrap(),
            dir.join("stderr.log"),
            stderr.clone(),
        );
        // Drained too, or a chatty child would block on a full pipe.
        pump(
            child.stdout.take().unwrap(),
            dir.join("stdout.log"),
            stdout.clone(),
        );

        let wants_admin = config_yaml.contains("admin:");
        let deadline = Instant::now() + Duration::from_secs(20);
        let (proxy, admin) = loop {
            let text = stderr.lock().unwrap().clone();
            let proxy = text.lines().find_map(|l| listening_addr(l, "proxy"));
            let admin = text.lines().find_map(|l| listening_addr(l, "admin"));
            if let Some(proxy) = proxy {
                if !wants_admin || admin.is_some() {
                    break (proxy, admin);
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Give the pump a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "cordon exited ({status}) before listening; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cordon did not report its listeners within 20 s; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Cordon {
            child: Some(child),
            dir,
            stderr,
            stdout,
            proxy,
            admin,
            keep_dir: false,
        }
    }

    /// Runs `cordon check --config` on `config_yaml`; returns (exit code, stdout, stderr).
    pub fn check(config_yaml: &str) -> (i32, String, String) {
        let dir = unique_temp_dir("check");
        let config = write_config(&dir, config_yaml);
        let output = Command::new(env!("CARGO_BIN_EXE_cordon"))
            .arg("check")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .expect("run cordon check");
        let _ = std::fs::remove_dir_all(&dir);
        (
            exit_code(output.status),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            strip_ansi(&String::from_utf8_lossy(&output.stderr)),
        )
    }

    /// The cordon process id (for reading its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("cordon is running").id()
    }

    /// The agent-facing proxy listener.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy
    }

    /// The admin listener; panics if the config had none.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("config has no admin listener")
    }

    /// The temp dir holding cordon.yaml, stderr.log, stdout.log and whatever the config put there.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `dir/audit.jsonl`, the conventional audit path for test configs.
    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// The complete audit records written so far (a trailing line still being written is skipped).
    pub fn audit_records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.audit_path()).unwrap_or_default();
        // Only newline-terminated lines are complete; the writer may be mid-record.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Polls the audit file until a record satisfies `pred` and returns it; panics with the
    /// file's content after `timeout` (audit writing is asynchronous).
    pub fn wait_for_records(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(record) = self.audit_records().into_iter().find(|r| pred(r)) {
                return record;
            }
            if Instant::now() > deadline {
                panic!(
                    "no matching audit record within {timeout:?}; {}:\n{}\nstderr:\n{}",
                    self.audit_path().display(),
                    std::fs::read_to_string(self.audit_path()).unwrap_or_default(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Everything cordon wrote to stderr so far (colour codes removed).
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything cordon wrote to stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends SIGTERM, waits up to 20 s (cordon's drain limit is 10 s) and returns the exit code (128 + signal if killed).
    /// The temp dir is kept so the test can inspect it through a path saved from `dir()`.
    pub fn stop(mut self) -> i32 {
        self.keep_dir = true;
        let mut child = self.child.take().expect("cordon already stopped");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait for cordon") {
                return exit_code(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cordon did not exit within 20 s of SIGTERM; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cordon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // Keep the evidence of a failed test.
            eprintln!("cordon test files kept in {}", self.dir.display());
        } else if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

/// Sends `bytes` as-is to `addr` and returns whatever comes back: until EOF, 500 ms of quiet
/// after the first byte (kept-alive connections), or 5 s with nothing.
pub fn raw_request(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.write_all(bytes).expect("write request");
    let start = Instant::now();
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let wait = if response.is_empty() {
            match Duration::from_secs(5).checked_sub(start.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => break,
            }
        } else {
            Duration::from_millis(500)
        };
        stream.set_read_timeout(Some(wait)).expect("set timeout");
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !response.is_empty() {
                    break;
                }
            }
            // A reset after the response is a normal way for a proxy to refuse more.
            Err(_) => break,
        }
    }
    response
}

/// The status code of a raw HTTP/1.x response; panics with the bytes if there is none.
pub fn parse_status(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"))
}

fn split_head(response: &[u8]) -> (&[u8], &[u8]) {
    match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&response[..i], &response[i + 4..]),
        None => (response, &[]),
    }
}

/// The first value of header `name` (case-insensitive) in a raw response's head.
pub fn header(response: &[u8], name: &str) -> Option<String> {
    let (head, _) = split_head(response);
    String::from_utf8_lossy(head)
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// The bytes after a raw response's head, as sent (not de-chunked).
pub fn raw_body(response: &[u8]) -> &[u8] {
    split_head(response).1
}

/// Runs curl with `--silent --show-error --max-time 10` before `args`; returns
/// (exit code, stdout, stderr). Proxy variables from the environment are removed so only an
/// explicit `--proxy`/`-x` routes through cordon.
pub fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let output = Command::new("curl")
        // -q must come first: ignore any ~/.curlrc.
        .args(["-q", "--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    (
        exit_code(output.status),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An absolute-form GET through the proxy at `proxy`; returns (status, headers, body).
pub async fn proxy_get(
    proxy: SocketAddr,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Vec<u8>) {
    proxy_request(proxy, Method::GET, url, headers, Vec::new()).await
}

/// An absolute-form request through the proxy at `proxy`. `Host` is set from the URL unless
/// `headers` has one (host-mismatch tests set their own).
pub async fn proxy_request(
    proxy: SocketAddr,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, HeaderMap, Vec<u8>) {
    let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
    let stream = tokio::net::TcpStream::connect(proxy)
        .await
        .unwrap_or_else(|e| panic!("connect to proxy {proxy}: {e}"));
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .expect("HTTP handshake with proxy");
    tokio::spawn(connection);

    let mut request = Request::builder().method(method).uri(uri.clone());
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        let authority = uri.authority().expect("absolute URL").as_str().to_string();
        request = request.header(http::header::HOST, authority);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .expect("build request");
    let response = sender.send_request(request).await.expect("send request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("read response body")
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

// ---------------------------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------------------------

const NETNS_ENV: &str = "CORDON_TEST_NETNS";

/// Runs the calling test inside a fresh network namespace (only `lo`, so nothing can leave
/// the machine and private or metadata addresses can be bound locally).
///
/// Returns true when already inside (after running `setup` with `sh -c`): the caller goes on
/// with its body. Returns false in the outer process, after the inner run passed or the test
/// was skipped because namespaces are unavailable: the caller returns at once. `test_name` is
/// the test's full libtest path (for `fn foo` at the root of `tests/x.rs`, just `foo`).
pub fn netns_reexec(test_name: &str, setup: &[&str]) -> bool {
    if std::env::var(NETNS_ENV).as_deref() == Ok("1") {
        // A new namespace's loopback starts down.
        for command in std::iter::once("ip link set lo up").chain(setup.iter().copied()) {
            let output = Command::new("sh")
                .arg("-c")
                .arg(command)
                .output()
                .expect("run sh");
            assert!(
                output.status.success(),
                "netns setup `{command}` failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        return true;
    }

    if let Err(reason) = netns_available() {
        // CI runs as root: a skip there would hide a broken test behind a green run.
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !in_ci,
            "{test_name}: network namespaces unavailable in CI: {reason}"
        );
        eprintln!("SKIPPED {test_name}: network namespaces unavailable: {reason}");
        return false;
    }

    let exe = std::env::current_exe().expect("current test binary");
    let mut child = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn unshare");
    // Re-printed from this process so libtest's capture shows it with the outer test.
    let stdout = Arc::new(Mutex::new(String::new()));
    let out_thread = echo_lines(child.stdout.take().unwrap(), Some(stdout.clone()));
    let err_thread = echo_lines(child.stderr.take().unwrap(), None);
    let status = child.wait().expect("wait for unshare");
    let _ = out_thread.join();
    let _ = err_thread.join();
    assert!(
        status.success(),
        "{test_name} failed inside its network namespace ({status})"
    );
    // A misspelt name makes libtest run nothing and exit 0; that must not pass.
    let stdout = stdout.lock().unwrap();
    assert!(
        stdout.contains(&format!("test {test_name} ... ok")),
        "{test_name} did not run inside the namespace (is the name its full libtest path?)"
    );
    false
}

fn netns_available() -> Result<(), String> {
    match Command::new("unshare")
        .args(["--net", "true"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "`unshare --net true` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    }
}

fn echo_lines(
    source: impl Read + Send + 'static,
    keep: Option<Arc<Mutex<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { return };
            eprintln!("[netns] {line}");
            if let Some(keep) = &keep {
                let mut keep = keep.lock().unwrap();
                keep.push_str(&line);
                keep.push('\n');
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Secrets in tests
// ---------------------------------------------------------------------------------------------

/// Runs curl through cordon, trusting only cordon's CA; returns (status, body, http version).
pub fn curl_via(cordon: &Cordon, args: &[&str]) -> (u16, Vec<u8>, String) {
    let ca = cordon.dir().join("ca/ca.crt");
    let proxy = format!("http://{}", cordon.proxy_addr());
    let mut full = vec![
        "-x",
        &proxy,
        "--cacert",
        ca.to_str().unwrap(),
        "-w",
        "\n%{http_code} %{http_version}",
    ];
    full.extend_from_slice(args);
    let (code, out, err) = curl(&full);
    // Not the arguments: they may carry a test secret.
    assert_eq!(code, 0, "curl failed: {err}");
    // Split on the last newline in bytes: bodies need not be UTF-8.
    let cut = out.iter().rposition(|b| *b == b'\n').unwrap();
    let tail = String::from_utf8_lossy(&out[cut + 1..]).into_owned();
    let (status, version) = tail.split_once(' ').unwrap();
    (
        status.parse().unwrap(),
        out[..cut].to_vec(),
        version.to_owned(),
    )
}

/// A fresh random token; tests never use real secrets.
pub fn token(prefix: &str) -> String {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// Asserts that no secret appears in anything cordon wrote. Stops cordon first, so the trail
/// and the logs are complete when they are read.
pub fn assert_no_secret(cordon: Cordon, secrets: &[&str]) {
    let (_, metrics, _) = curl(&[&format!("http://{}/metrics", cordon.admin_addr())]);
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    let dir = cordon.dir().to_path_buf();
    assert_eq!(cordon.stop(), 0);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let trail = read("audit.jsonl");
    assert!(!trail.is_empty());
    for (name, text) in [
        ("audit trail", trail),
        ("stderr", read("stderr.log")),
        ("stdout", read("stdout.log")),
        ("metrics", metrics),
    ] {
        for secret in secrets {
            // Never print the secret itself, not even in a failure message.
            assert!(
                !text.contains(secret),
                "a credential value appears in cordon's {name}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
