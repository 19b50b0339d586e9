//! Credential sources against real counterparts: a token file rewritten in place and by
//! atomic rename, an exec plug-in script emitting ExecCredential JSON with a 2-second
//! lifetime, and an in-process OAuth2 token endpoint answering `expires_in: 2`.
//!
//! Values are random per run and never printed: assertions compare them without echoing
//! them, and report versions, counts and fingerprints instead. Every test also checks that
//! no value it saw reached cordon's log output or `/metrics`.

mod support;

use bytes::Bytes;
use cordon::credentials::{CredentialSpec, Credentials, InjectSpec, Issued, SourceSpec};
use cordon::metrics::Metrics;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Everything cordon logs during the tests, captured so it can be searched for values.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Asserts that none of `values` appears in the logs or the metrics, without saying which.
fn assert_not_leaked(values: &HashSet<String>, metrics: &Metrics) {
    assert!(!values.is_empty(), "the test saw no values to look for");
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    let rendered = String::from_utf8_lossy(&metrics.render()).into_owned();
    let in_logs = values.iter().filter(|v| logs.contains(v.as_str())).count();
    let in_metrics = values
        .iter()
        .filter(|v| rendered.contains(v.as_str()))
        .count();
    assert_eq!(in_logs, 0, "credential values found in the log output");
    assert_eq!(in_metrics, 0, "credential values found in /metrics");
}

/// A fresh directory for one test.
fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cordon-credentials-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A random token, so no value is ever fixed in the test source.
fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

fn spec(id: &str, source: SourceSpec) -> CredentialSpec {
    CredentialSpec {
        id: id.to_string(),
        source,
        inject: Some(InjectSpec {
            header: "Authorization".to_string(),
            value: "Bearer {secret}".to_string(),
        }),
        placeholder: format!("CORDON_PLACEHOLDER_{}", id.to_ascii_uppercase()),
        env: None,
        require_placeholder: false,
    }
}

/// Polls `id` until `accept` holds, for at most `within`.
async fn wait_for(
    credentials: &Credentials,
    id: &str,
    within: Duration,
    accept: impl Fn(&Issued) -> bool,
) -> Arc<Issued> {
    let cache = credentials.get(id).unwrap();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(issued) = cache.current() {
            if accept(&issued) {
                return issued;
            }
        }
        assert!(
            Instant::now() < deadline,
            "credential {id} did not reach the expected state within {within:?} (now at {:?})",
            cache.current().map(|i| i.version)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Reads `id` from 32 tasks for `duration`; every read must succeed with an unexpired
/// value. Returns (reads, distinct values seen, highest version).
async fn hammer(
    credentials: &Arc<Credentials>,
    id: &str,
    duration: Duration,
) -> (usize, HashSet<String>, u64) {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let credentials = Arc::clone(credentials);
        let id = id.to_string();
        tasks.push(tokio::spawn(async move {
            let cache = credentials.get(&id).unwrap();
            let (mut reads, mut seen, mut max_version) = (0usize, HashSet::new(), 0u64);
            while Instant::now() < deadline {
                for _ in 0..100 {
                    let issued = match cache.current() {
                        Ok(issued) => issued,
                        Err(e) => panic!("read {reads} failed: {e}"),
                    };
                    let now = SystemTime::now();
                    assert!(
                        issued.expires_at.is_some_and(|e| e > now),
                        "an expired value was served (version {})",
                        issued.version
                    );
                    assert!(issued.version >= max_version, "the version went backwards");
                    max_version = issued.version;
                    if !seen.contains(issued.secret.expose()) {
                        seen.insert(issued.secret.expose().to_string());
                    }
                    reads += 1;
                }
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (reads, seen, max_version)
        }));
    }
    let (mut reads, mut seen, mut max_version) = (0, HashSet::new(), 0);
    for task in tasks {
        let (r, s, v) = task.await.unwrap();
        reads += r;
        seen.extend(s);
        max_version = max_version.max(v);
    }
    (reads, seen, max_version)
}

/// An in-process OAuth2 token endpoint on 127.0.0.1:0.
struct TokenEndpoint {
    addr: SocketAddr,
    state: Arc<EndpointState>,
}

struct EndpointState {
    client_secret: String,
    expires_in: u64,
    hits: AtomicUsize,
    bad_requests: AtomicUsize,
    failing: AtomicBool,
    issued: Mutex<HashSet<String>>,
}

impl TokenEndpoint {
    async fn start(client_secret: &str, expires_in: u64) -> TokenEndpoint {
        TokenEndpoint::start_with(client_secret, expires_in, None).await
    }

    /// Serves HTTPS with a leaf for 127.0.0.1 from `ca`.
    async fn start_tls(
        client_secret: &str,
        expires_in: u64,
        ca: &support::TestCa,
    ) -> TokenEndpoint {
        let (chain, key) = ca.leaf(&["127.0.0.1"]);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        TokenEndpoint::start_with(client_secret, expires_in, Some(acceptor)).await
    }

    async fn start_with(
        client_secret: &str,
        expires_in: u64,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> TokenEndpoint {
        let state = Arc::new(EndpointState {
            client_secret: client_secret.to_string(),
            expires_in,
            hits: AtomicUsize::new(0),
            bad_requests: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            issued: Mutex::new(HashSet::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&served);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, std::convert::Infallible>(state.answer(req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(acceptor) => {
                            // A client that refuses the certificate ends here.
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        TokenEndpoint { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    fn https_url(&self) -> String {
        format!("https://{}/oauth/token", self.addr)
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

impl EndpointState {
    async fn answer(&self, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let respond = |status: u16, body: String| {
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        let form_ok = req.method() == http::Method::POST
            && req.uri().path() == "/oauth/token"
            && req.headers().get("content-type").map(|v| v.as_bytes())
                == Some(b"application/x-www-form-urlencoded");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let fields = parse_form(&String::from_utf8_lossy(&body));
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let valid = form_ok
            && field("grant_type") == Some("client_credentials")
            && field("client_id") == Some("cordon test")
            && field("client_secret") == Some(self.client_secret.as_str())
            && field("scope") == Some("deploy read:all");
        if !valid {
            self.bad_requests.fetch_add(1, Ordering::SeqCst);
            return respond(400, r#"{"error":"invalid_client"}"#.to_string());
        }
        if self.failing.load(Ordering::SeqCst) {
            return respond(500, r#"{"error":"temporarily_unavailable"}"#.to_string());
        }
        let token = random_token("oauth");
        self.issued.lock().unwrap().insert(token.clone());
        respond(
            200,
            format!(
                r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{}}}"#,
                self.expires_in
            ),
        )
    }
}

/// Decodes `application/x-www-form-urlencoded`, independently of cordon's encoder.
fn parse_form(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn oauth_spec(id: &str, endpoint: &TokenEndpoint, secret_file: &Path) -> CredentialSpec {
    spec(
        id,
        SourceSpec::OAuth2 {
            token_url: endpoint.url(),
            client_id: "cordon test".to_string(),
            client_secret_file: secret_file.to_path_buf(),
            scopes: vec!["deploy".to_string(), "read:all".to_string()],
        },
    )
}

/// A client secret with characters that need form encoding, in a file with a newline.
fn client_secret_file(dir: &Path) -> (PathBuf, String) {
    let secret = format!("{} &=+/%", random_token("client"));
    let path = dir.join("client-secret");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    (path, secret)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_follows_rewrites_in_place_and_atomic_renames() {
    captured_logs();
    let dir = temp_dir("file");
    let path = dir.join("token");
    let (a, b, c) = (random_token("a"), random_token("b"), random_token("c"));
    std::fs::write(&path, format!("{a}\n")).unwrap();
    let metrics = Metrics::new();
    let credentials = Credentials::start(
        &[spec(
            "filecred",
            SourceSpec::File {
                path: path.clone(),
                refresh: Duration::from_millis(50),
            },
        )],
        &metrics,
    )
    .await;

    let first = credentials.get("filecred").unwrap().current().unwrap();
    assert_eq!(first.version, 1);
    assert!(
        first.secret.expose() == a,
        "version 1 is not the file's first value"
    );
    assert_eq!(first.expires_at, None);

    // In place: same inode, new content.
    std::fs::write(&path, format!("{b}\n")).unwrap();
    let second = wait_for(&credentials, "filecred", Duration::from_secs(3), |i| {
        i.version >= 2
    })
    .await;
    assert_eq!(second.version, 2);
    assert!(
        second.secret.expose() == b,
        "version 2 is not the rewritten value"
    );

    // Atomic rename: a new inode under the same name, JSON form with an expiry.
    let expires = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600));
    let staging = dir.join("token.new");
    std::fs::write(
        &staging,
        format!(r#"{{"token": "{c}", "expires_at": "{expires}"}}"#),
    )
    .unwrap();
    std::fs::rename(&staging, &path).unwrap();
    let third = wait_for(&credentials, "filecred", Duration::from_secs(3), |i| {
        i.version >= 3
    })
    .await;
    assert_eq!(third.version, 3);
    assert!(
        third.secret.expose() == c,
        "version 3 is not the renamed file's value"
    );
    assert!(third.expires_at.is_some());

    // Touching the file without changing its value is not a new version.
    std::fs::write(
        &path,
        format!(r#"{{"token": "{c}", "expires_at": "{expires}"}}"#),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        credentials
            .get("filecred")
            .unwrap()
            .current()
            .unwrap()
            .version,
        3
    );

    // A broken file keeps the last good value.
    std::fs::write(&path, "{\"token\": ").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        credentials
            .get("filecred")
            .unwrap()
            .current()
            .unwrap()
            .version,
        3
    );

    let rendered = String::from_utf8(metrics.render()).unwrap();
    assert!(rendered.contains(
        r#"cordon_credential_rotations_total{credential="filecred",reason="initial"} 1"#
    ));
    assert!(rendered.contains(
        r#"cordon_credential_rotations_total{credential="filecred",reason="file_changed"} 2"#
    ));
    assert!(rendered.contains(r#"cordon_credential_expiry_seconds{credential="filecred"} 3"#));

    assert_not_leaked(&[a, b, c].into_iter().collect(), &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_source_rotates_ahead_of_expiry() {
    captured_logs();
    let dir = temp_dir("exec");
    let count = dir.join("invocations");
    let script = write_script(
        &dir,
        "get-token",
        r#"echo run >> "$1"
case "$KUBERNETES_EXEC_INFO" in *'"interactive":false'*) ;; *) exit 7 ;; esac
token="exec-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
expires="$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%S.%3NZ)"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "$token" "$expires"
"#,
    );
    let metrics = Metrics::new();
    let credentials = Arc::new(
        Credentials::start(
            &[spec(
                "cloud",
                SourceSpec::Exec {
                    command: vec![script.display().to_string(), count.display().to_string()],
                    timeout: Duration::from_secs(5),
                },
            )],
            &metrics,
        )
        .await,
    );
    let first = credentials.get("cloud").unwrap().current().unwrap();
    assert_eq!(first.version, 1);
    let started = line_count(&count);
    assert_eq!(
        started, 1,
        "the initial fetch ran the plug-in {started} times"
    );

    let (reads, mut seen, max_version) =
        hammer(&credentials, "cloud", Duration::from_secs(5)).await;
    let runs = line_count(&count);
    assert!(reads >= 10_000, "only {reads} reads");
    // A 2-second lifetime refreshed at 75 %: one run per ~1.5 s, plus the first.
    assert!(
        (2..=6).contains(&runs),
        "the plug-in ran {runs} times in 5 s"
    );
    assert!(max_version >= 3, "only reached version {max_version}");
    assert!(seen.len() as u64 >= max_version - 1);

    let rendered = String::from_utf8(metrics.render()).unwrap();
    assert!(rendered
        .contains(r#"cordon_credential_rotations_total{credential="cloud",reason="scheduled"}"#));
    assert!(rendered.contains(r#"cordon_credential_expiry_seconds{credential="cloud"}"#));

    // A forced rotation runs the plug-in at once and takes the new value into use.
    let before = credentials.get("cloud").unwrap().current().unwrap().version;
    let rotated = credentials
        .get("cloud")
        .unwrap()
        .rotate_now("test")
        .await
        .unwrap();
    assert!(rotated.version > before);
    seen.insert(rotated.secret.expose().to_string());
    assert_not_leaked(&seen, &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauth2_endpoint_is_hit_once_per_lifetime_not_per_read() {
    captured_logs();
    let dir = temp_dir("oauth");
    let (secret_file, client_secret) = client_secret_file(&dir);
    let endpoint = TokenEndpoint::start(&client_secret, 2).await;
    let metrics = Metrics::new();
    let credentials = Arc::new(
        Credentials::start(&[oauth_spec("internal", &endpoint, &secret_file)], &metrics).await,
    );
    let first = credentials.get("internal").unwrap().current().unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(endpoint.hits(), 1);
    assert_eq!(
        endpoint.state.bad_requests.load(Ordering::SeqCst),
        0,
        "the token request was malformed"
    );

    let (reads, seen, max_version) = hammer(&credentials, "internal", Duration::from_secs(5)).await;
    let hits = endpoint.hits();
    assert!(reads >= 10_000, "only {reads} reads");
    assert!(
        (2..=6).contains(&hits),
        "the token endpoint was hit {hits} times in 5 s"
    );
    assert_eq!(endpoint.state.bad_requests.load(Ordering::SeqCst), 0);
    assert!(max_version >= 3, "only reached version {max_version}");
    let issued = endpoint.state.issued.lock().unwrap().clone();
    assert!(
        seen.is_subset(&issued),
        "a value was served that the endpoint never issued"
    );

    let mut secrets = issued;
    secrets.insert(client_secret);
    assert_not_leaked(&secrets, &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_refresh_keeps_the_valid_value_then_refuses_then_recovers() {
    captured_logs();
    let dir = temp_dir("oauth-fail");
    let (secret_file, client_secret) = client_secret_file(&dir);
    let endpoint = TokenEndpoint::start(&client_secret, 2).await;
    let metrics = Metrics::new();
    let credentials =
        Credentials::start(&[oauth_spec("flaky", &endpoint, &secret_file)], &metrics).await;
    let cache = credentials.get("flaky").unwrap();
    let first = cache.current().unwrap();
    endpoint.state.failing.store(true, Ordering::SeqCst);
    let expires = first.expires_at.unwrap();

    // The refresh at ~1.5 s fails; the old value is still served until it expires.
    tokio::time::sleep(Duration::from_millis(1750)).await;
    let still = cache.current().unwrap();
    assert_eq!(still.version, 1);
    assert!(
        endpoint.hits() >= 2,
        "no refresh was attempted before expiry"
    );

    // After expiry: refused, with a reason and without the value.
    let wait = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        + Duration::from_millis(100);
    tokio::time::sleep(wait).await;
    let err = cache.current().unwrap_err();
    assert_eq!(err.id, "flaky");
    assert!(
        err.message.contains("expired") || err.message.contains("no value"),
        "{err}"
    );
    assert!(err.message.contains("500"), "{err}");
    let rendered = String::from_utf8(metrics.render()).unwrap();
    assert!(rendered.contains(r#"cordon_credential_expiry_seconds{credential="flaky"} 0"#));

    // The endpoint recovers: so does the credential, with a new version.
    endpoint.state.failing.store(false, Ordering::SeqCst);
    let recovered = wait_for(&credentials, "flaky", Duration::from_secs(10), |i| {
        i.version >= 2
    })
    .await;
    assert_eq!(recovered.version, 2);

    // The failures were logged (so the leak check below has something to search).
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(logs
        .lines()
        .any(|l| l.contains("credential refresh failed") && l.contains("credential=flaky")));

    let mut secrets = endpoint.state.issued.lock().unwrap().clone();
    secrets.insert(client_secret);
    assert_not_leaked(&secrets, &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_over_https_verifies_the_endpoint() {
    captured_logs();
    let dir = temp_dir("oauth-tls");
    let (secret_file, client_secret) = client_secret_file(&dir);
    let ca = support::TestCa::new("cordon credentials test CA");
    let ca_file = ca.write_pem(&dir);
    let endpoint = TokenEndpoint::start_tls(&client_secret, 60, &ca).await;
    let mut https = oauth_spec("secure", &endpoint, &secret_file);
    if let SourceSpec::OAuth2 { token_url, .. } = &mut https.source {
        *token_url = endpoint.https_url();
    }
    let metrics = Metrics::new();

    // Trusting the endpoint's CA through extra_roots: a value.
    let trusted =
        Credentials::start_with_roots(std::slice::from_ref(&https), &[ca_file], &metrics).await;
    let issued = trusted.get("secure").unwrap().current().unwrap();
    assert_eq!(issued.version, 1);
    assert_eq!(endpoint.state.bad_requests.load(Ordering::SeqCst), 0);
    drop(trusted);

    // The public roots alone do not know the test CA: no value, and a TLS error.
    let untrusted = Credentials::start(std::slice::from_ref(&https), &metrics).await;
    let err = untrusted.get("secure").unwrap().current().unwrap_err();
    assert!(err.message.contains("TLS with the token endpoint"), "{err}");
    assert_eq!(
        endpoint.hits(),
        1,
        "a request was sent over an unverified connection"
    );

    let mut secrets = endpoint.state.issued.lock().unwrap().clone();
    secrets.insert(client_secret);
    assert_not_leaked(&secrets, &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_failures_are_reported_without_output() {
    captured_logs();
    let dir = temp_dir("exec-fail");
    let marker = random_token("printed");
    let exits = write_script(
        &dir,
        "exits",
        &format!("echo '{marker}'\necho '{marker}' >&2\nexit 3\n"),
    );
    let bad_json = write_script(
        &dir,
        "bad-json",
        &format!("echo '{{\"token\": \"{marker}\"'\n"),
    );
    let not_exec_credential = write_script(
        &dir,
        "wrong-kind",
        &format!(r#"echo '{{"apiVersion":"v1","kind":"Secret","status":{{"token":"{marker}"}}}}'"#),
    );
    let hangs = write_script(&dir, "hangs", &format!("echo '{marker}'\nexec sleep 5\n"));
    let exec = |id: &str, script: &Path, timeout: Duration| {
        spec(
            id,
            SourceSpec::Exec {
                command: vec![script.display().to_string()],
                timeout,
            },
        )
    };
    let metrics = Metrics::new();
    let started = Instant::now();
    let credentials = Credentials::start(
        &[
            exec("exits", &exits, Duration::from_secs(5)),
            exec("bad-json", &bad_json, Duration::from_secs(5)),
            exec("wrong-kind", &not_exec_credential, Duration::from_secs(5)),
            exec("hangs", &hangs, Duration::from_millis(200)),
        ],
        &metrics,
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "start waited {took:?} for a 200 ms timeout"
    );

    for (id, expected) in [
        ("exits", "exited with status 3"),
        ("bad-json", "is not valid JSON"),
        ("wrong-kind", "has no apiVersion"),
        ("hangs", "did not finish within 200ms"),
    ] {
        let cache = credentials.get(id).unwrap();
        let err = cache.current().unwrap_err();
        assert!(
            !err.to_string().contains(&marker),
            "{id}: the error quotes the plug-in's output"
        );
        assert!(err.message.contains(expected), "{id}: {err}");
        let forced = cache.rotate_now("test").await.unwrap_err();
        assert!(
            !forced.to_string().contains(&marker),
            "{id}: the error quotes the plug-in's output"
        );
        assert!(forced.message.contains(expected), "{id}: {forced}");
    }
    assert_not_leaked(&[marker].into_iter().collect(), &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_source_is_read_once_at_start() {
    captured_logs();
    let value = random_token("env");
    let var = format!("CORDON_TEST_CREDENTIAL_{}", std::process::id());
    std::env::set_var(&var, format!("{value}\n"));
    let metrics = Metrics::new();
    let credentials = Credentials::start(
        &[
            spec("fromenv", SourceSpec::Env(var.clone())),
            spec("missing", SourceSpec::Env(format!("{var}_UNSET"))),
        ],
        &metrics,
    )
    .await;
    let issued = credentials.get("fromenv").unwrap().current().unwrap();
    assert_eq!(issued.version, 1);
    assert!(
        issued.secret.expose() == value,
        "the env value was not taken as set (trimmed)"
    );
    assert_eq!(issued.expires_at, None);
    // Same value again: same version.
    let again = credentials
        .get("fromenv")
        .unwrap()
        .rotate_now("test")
        .await
        .unwrap();
    assert_eq!(again.version, 1);

    let err = credentials.get("missing").unwrap().current().unwrap_err();
    assert!(err.message.contains("is not set"), "{err}");

    let mut placeholders: Vec<_> = credentials.placeholders().collect();
    placeholders.sort();
    assert_eq!(
        placeholders,
        [
            ("fromenv", "CORDON_PLACEHOLDER_FROMENV"),
            ("missing", "CORDON_PLACEHOLDER_MISSING")
        ]
    );
    // A value without expiry has no expiry series; one without a value shows 0.
    let rendered = String::from_utf8(metrics.render()).unwrap();
    assert!(!rendered.contains(r#"cordon_credential_expiry_seconds{credential="fromenv"}"#));
    assert!(rendered.contains(r#"cordon_credential_expiry_seconds{credential="missing"} 0"#));
    std::env::remove_var(&var);
    assert_not_leaked(&[value].into_iter().collect(), &metrics);
}
