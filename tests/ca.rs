//! cordon's local CA through the real binary (`cordon ca init|export`), and both TLS sides
//! over loopback: the agent-facing leaf a client trusting only the exported CA accepts, and
//! the origin-facing client that accepts a good origin and refuses every bad certificate.

mod support;

use cordon::tls::{self, LocalCa, ALPN_H2_HTTP1};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use support::unique_temp_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn cordon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .output()
        .expect("run cordon")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `cordon ca init --dir DIR`, asserting success; returns stdout.
fn ca_init(dir: &Path) -> String {
    let out = cordon(&["ca", "init", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `cordon ca export --dir DIR`, asserting success; returns the PEM.
fn ca_export(dir: &Path) -> String {
    let out = cordon(&["ca", "export", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting only the certificates in `pem`, offering `alpn`.
fn client_trusting(pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(cert.expect("PEM certificate"))
            .expect("usable root");
    }
    assert!(!roots.is_empty(), "no certificate in {pem}");
    let mut config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS server on 127.0.0.1:0 that completes handshakes and answers a minimal HTTP/1.1
/// response, so both the handshake and a real exchange over it can be checked.
async fn tls_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Handshakes that the client aborts are the point of several tests.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

async fn get_ok(stream: &mut tokio_rustls::client::TlsStream<TcpStream>) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    assert!(
        text(&response).ends_with("\r\n\r\nok"),
        "{}",
        text(&response)
    );
}

#[test]
fn init_creates_private_files_once_and_reports_a_present_ca() {
    let dir = unique_temp_dir("ca-init").join("ca");
    let first = ca_init(&dir);
    assert!(
        first.contains(&format!("created CA in {}", dir.display())),
        "{first}"
    );
    assert!(first.contains("SHA-256 fingerprint: "), "{first}");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.crt")) & 0o600, 0o600);
    let cert = std::fs::read(dir.join("ca.crt")).unwrap();

    let second = ca_init(&dir);
    assert!(
        second.contains(&format!("CA already present in {}", dir.display())),
        "{second}"
    );
    let fingerprint = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("SHA-256 fingerprint: "))
            .map(str::to_string)
    };
    assert_eq!(fingerprint(&first), fingerprint(&second));
    assert_eq!(
        std::fs::read(dir.join("ca.crt")).unwrap(),
        cert,
        "not rewritten"
    );
}

#[test]
fn init_refuses_a_key_readable_by_others() {
    let dir = unique_temp_dir("ca-loose");
    ca_init(&dir);
    std::fs::set_permissions(dir.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cordon(&["ca", "init", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ca.key must not be readable by others (mode 0600)"),
        "{stderr}"
    );
}

#[test]
fn export_prints_a_ca_certificate_that_leaves_from_a_reloaded_ca_chain_to() {
    let dir = unique_temp_dir("ca-export").join("ca");
    ca_init(&dir);
    let pem = ca_export(&dir);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("exported PEM parses");
    assert_eq!(certs.len(), 1);

    // The CA was written by another process; this one reloads it from disk, and its leaves
    // must verify against exactly what `export` printed.
    let ca = LocalCa::load_or_create(&dir).unwrap();
    assert!(!ca.created());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs[0].clone()).expect("a usable trust anchor");
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), ring())
            .build()
            .unwrap();
    use rustls::client::danger::ServerCertVerifier;
    for host in ["api.example.com", "10.1.2.3"] {
        let leaf = ca.leaf(host).unwrap();
        let name = ServerName::try_from(host.to_string()).unwrap();
        verifier
            .verify_server_cert(
                leaf.end_entity_cert().unwrap(),
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{host}: {e}"));
    }
}

#[test]
fn export_never_creates_a_ca() {
    let dir = unique_temp_dir("ca-missing").join("absent");
    let out = cordon(&["ca", "export", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&dir.join("ca.crt").display().to_string()),
        "{stderr}"
    );
    assert!(!dir.exists(), "export must not create the directory");
}

#[test]
fn a_bad_config_or_conflicting_flags_exit_2() {
    let out = cordon(&["ca", "init", "--config", "/nonexistent/cordon.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/cordon.yaml"));
    let out = cordon(&["ca", "export", "--dir", "/tmp", "--config", "/tmp/c.yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn intercepted_host_handshake_trusting_only_the_exported_ca() {
    let dir = unique_temp_dir("ca-e2e");
    ca_init(&dir);
    let pem = ca_export(&dir);
    let ca = LocalCa::load_or_create(&dir).unwrap();
    let addr = tls_server(
        ca.server_config("intercepted.test", &ALPN_H2_HTTP1)
            .unwrap(),
    )
    .await;

    let h2 = client_trusting(&pem, &ALPN_H2_HTTP1);
    let stream = connect(addr, "intercepted.test", h2).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let h1 = client_trusting(&pem, &[b"http/1.1"]);
    let mut stream = connect(addr, "intercepted.test", h1.clone()).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    get_ok(&mut stream).await;

    // The leaf names exactly its host.
    let err = connect(addr, "other.test", h1).await.unwrap_err();
    assert!(tls::is_certificate_error(&err), "{err:?}");
    assert_eq!(ca.leaves_minted(), 1, "every handshake reused one leaf");
}

#[tokio::test]
async fn curl_accepts_the_leaf_with_only_the_exported_ca() {
    // curl verifies with OpenSSL, which also matches issuer name and key identifier; this
    // is the client the interception acceptance tests use.
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP curl_accepts_the_leaf_with_only_the_exported_ca: curl is not installed");
        return;
    }
    let dir = unique_temp_dir("ca-curl");
    ca_init(&dir);
    let ca = LocalCa::load_or_create(&dir).unwrap();
    let addr = tls_server(
        ca.server_config("intercepted.test", &[b"http/1.1"])
            .unwrap(),
    )
    .await;
    let url = format!("https://intercepted.test:{}/", addr.port());
    let resolve = format!("intercepted.test:{}:127.0.0.1", addr.port());
    let cacert = dir.join("ca.crt");
    // Blocking curl runs off the runtime thread so the in-process server keeps serving.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--http1.1", "--noproxy", "*", "--max-time", "10"])
            .args(["--resolve", &resolve])
            .arg("--cacert")
            .arg(&cacert)
            .arg(&url)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok");
}

/// An origin's CA, unknown to cordon except through `tls.extra_roots`.
struct OriginCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl OriginCa {
    fn new(name: &str) -> OriginCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        OriginCa { cert, key }
    }

    /// A server config presenting a leaf for `name`, expired if `expired`.
    fn server(&self, name: &str, expired: bool) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

#[tokio::test]
async fn upstream_client_accepts_extra_roots_and_refuses_bad_certificates() {
    let dir = unique_temp_dir("upstream");
    let origin_ca = OriginCa::new("origin test CA");
    let roots = dir.join("origin-ca.pem");
    std::fs::write(&roots, origin_ca.cert.pem()).unwrap();
    let client = tls::upstream_client_config(&[roots]).unwrap();

    let good = tls_server(origin_ca.server("origin.test", false)).await;
    let mut stream = connect(good, "origin.test", client.clone()).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(stream);
    // The same origin over HTTP/1.1 to prove the connection carries traffic.
    let h1 = tls::upstream_client_config_with_alpn(&[dir.join("origin-ca.pem")], &[b"http/1.1"])
        .unwrap();
    stream = connect(good, "origin.test", h1).await.unwrap();
    get_ok(&mut stream).await;

    let wrong_name = tls_server(origin_ca.server("elsewhere.test", false)).await;
    let unknown_ca = tls_server(OriginCa::new("stranger CA").server("origin.test", false)).await;
    let expired = tls_server(origin_ca.server("origin.test", true)).await;
    for (what, addr) in [
        ("wrong name", wrong_name),
        ("unknown CA", unknown_ca),
        ("expired", expired),
    ] {
        let err = connect(addr, "origin.test", client.clone())
            .await
            .expect_err(what);
        assert!(tls::is_certificate_error(&err), "{what}: {err:?}");
    }

    // An IP-literal origin is checked against IP SANs the same way.
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let by_ip = tls_server(origin_ca.server(&ip.to_string(), false)).await;
    connect(by_ip, "127.0.0.1", client.clone()).await.unwrap();
    let err = connect(good, "127.0.0.1", client).await.unwrap_err();
    assert!(tls::is_certificate_error(&err), "{err:?}");
}
