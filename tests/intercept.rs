//! Interception and credential injection through the real binary: the agent trusts only
//! cordon's CA, the origin sees the injected credential, and the agent never holds it.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    origin_ca: TestCa,
    ca_file: PathBuf,
    dns: DnsServer,
    scratch: PathBuf,
}

impl Setup {
    fn new(names: &[&str]) -> Setup {
        let origin_ca = TestCa::new("origin test CA");
        let scratch = unique_temp_dir("intercept");
        let ca_file = origin_ca.write_pem(&scratch);
        let records: Vec<(&str, IpAddr)> = names
            .iter()
            .map(|n| (*n, "127.0.0.1".parse().unwrap()))
            .collect();
        Setup {
            origin_ca,
            ca_file,
            dns: DnsServer::start(&records),
            scratch,
        }
    }

    /// A config with interception, the given egress entries and credentials.
    fn config(&self, egress: &str, credentials: &str) -> String {
        format!(
            r#"version: 1
agent: {{ name: test-agent }}
listen: {{ proxy: "127.0.0.1:0", admin: "127.0.0.1:0" }}
dns: {{ upstream: ["{dns}"] }}
tls: {{ ca_dir: "{{dir}}/ca", extra_roots: ["{roots}"] }}
egress:
{egress}
credentials:
{credentials}
audit: {{ path: "{{dir}}/audit.jsonl", fsync: none }}
"#,
            dns = self.dns.addr(),
            roots = self.ca_file.display()
        )
    }
}

fn bearer(seen: &SeenRequest) -> String {
    seen.header("authorization")
        .unwrap_or("")
        .trim_start_matches("Bearer ")
        .to_owned()
}

fn reqwest_client(cordon: &Cordon) -> reqwest::Client {
    let pem = std::fs::read(cordon.dir().join("ca/ca.crt")).unwrap();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", cordon.proxy_addr())).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .use_rustls_tls()
        .build()
        .unwrap()
}

#[test]
fn intercepted_requests_carry_the_injected_credential_over_http1_and_http2() {
    let setup = Setup::new(&["origin.test"]);
    let origin = Origin::tls_h2(&setup.origin_ca, &["origin.test"]);
    let port = origin.port();
    let secret = token("demo");
    let yaml = setup.config(
        &format!(
            "  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32], credential: demo,\n      rules: [ {{ methods: [GET, POST], paths: [\"/v1/**\"] }} ] }}"
        ),
        "  demo: { source: { env: CORDON_TEST_DEMO }, inject: { header: Authorization, value: \"Bearer {secret}\" } }",
    );
    let cordon = Cordon::start_with_env(&yaml, &[("CORDON_TEST_DEMO", &secret)]);
    let url = format!("https://origin.test:{port}/v1/models");

    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (status, body, seen_version) = curl_via(&cordon, &[flag, &url]);
        assert_eq!(status, 200);
        assert_eq!(seen_version, version, "agent side negotiated {version}");
        assert!(
            !String::from_utf8_lossy(&body).contains(&secret),
            "the response does not carry the credential"
        );
        let seen = origin.requests().pop().unwrap();
        assert!(
            bearer(&seen) == secret,
            "the origin received the injected credential"
        );
        assert_eq!(
            seen.version,
            http::Version::HTTP_2,
            "cordon spoke HTTP/2 to an origin offering it"
        );
    }

    // A Rust client, trusting only cordon's CA, over HTTP/2 through the proxy.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest_client(&cordon);
    let (status, version) = runtime.block_on(async {
        let response = client.get(&url).send().await.unwrap();
        (response.status().as_u16(), response.version())
    });
    assert_eq!(status, 200);
    assert_eq!(version, http::Version::HTTP_2);
    assert!(bearer(&origin.requests().pop().unwrap()) == secret);

    // cordon's CA is trusted nowhere else: without --cacert curl refuses it.
    let proxy = format!("http://{}", cordon.proxy_addr());
    let (code, _, _) = curl(&["-x", &proxy, &url]);
    assert_ne!(code, 0, "the system trust store does not hold cordon's CA");

    let record = cordon.wait_for_records(
        |r| r["path"] == "/v1/models" && r["credential"]["id"] == "demo",
        WAIT,
    );
    assert_eq!(record["credential"]["version"], 1);
    assert_eq!(record["sni"], "origin.test");
    // Close the client's pooled connection so cordon stops without waiting out its drain.
    drop(runtime);
    assert_no_secret(cordon, &[&secret]);
}

#[test]
fn rules_hold_inside_the_tunnel_on_kept_alive_connections_and_http2_streams() {
    let setup = Setup::new(&["origin.test", "other.test"]);
    let origin = Origin::tls_h2(&setup.origin_ca, &["origin.test", "other.test"]);
    let port = origin.port();
    let yaml = setup.config(
        &format!(
            "  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32],\n      rules: [ {{ methods: [GET], paths: [\"/v1/**\"] }} ] }}\n  - {{ host: other.test, ports: [{port}], allow_ips: [127.0.0.1/32], tls: intercept }}"
        ),
        "  {}",
    );
    let cordon = Cordon::start(&yaml);
    let base = format!("https://origin.test:{port}");

    // HTTP/1.1, one kept-alive connection, three requests.
    let ca = cordon.dir().join("ca/ca.crt");
    let proxy = format!("http://{}", cordon.proxy_addr());
    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        "--cacert",
        ca.to_str().unwrap(),
        "--http1.1",
        "-w",
        "%{http_code} %{num_connects}\n",
        "-o",
        "/dev/null",
        &format!("{base}/v1/a"),
        "-o",
        "/dev/null",
        &format!("{base}/admin"),
        "-o",
        "/dev/null",
        &format!("{base}/v1/b"),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        vec!["200 1", "403 0", "200 0"],
        "one connection, the middle request refused"
    );

    // HTTP/2 streams on one connection: the rules apply to each stream.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest_client(&cordon);
    let statuses = runtime.block_on(async {
        let mut statuses = Vec::new();
        for (method, path) in [
            ("GET", "/v1/x"),
            ("DELETE", "/v1/x"),
            ("GET", "/v2/x"),
            ("GET", "/v1/y"),
        ] {
            let response = client
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            let reason = response
                .headers()
                .get("x-cordon-reason")
                .map(|v| v.to_str().unwrap().to_owned());
            statuses.push((response.status().as_u16(), reason));
        }
        statuses
    });
    assert_eq!(
        statuses,
        vec![
            (200, None),
            (403, Some("not_allowed".to_owned())),
            (403, Some("not_allowed".to_owned())),
            (200, None)
        ]
    );

    // Another :authority (HTTP/2) or Host (HTTP/1.1) inside the origin.test tunnel.
    let cordon_ca = std::fs::read_to_string(&ca).unwrap();
    let proxy_addr = cordon.proxy_addr();
    let (h2_status, h1_status) = runtime.block_on(async move {
        let h2 = request_in_tunnel(
            proxy_addr,
            "origin.test",
            port,
            &cordon_ca,
            true,
            &format!("https://other.test:{port}/v1/x"),
            None,
        )
        .await;
        let h1 = request_in_tunnel(
            proxy_addr,
            "origin.test",
            port,
            &cordon_ca,
            false,
            "/v1/x",
            Some(&format!("other.test:{port}")),
        )
        .await;
        (h2, h1)
    });
    assert_eq!(h2_status, (403, Some("host_mismatch".to_owned())));
    assert_eq!(h1_status, (403, Some("host_mismatch".to_owned())));
    assert!(origin
        .requests()
        .iter()
        .all(|r| r.path() != "/admin" && r.method != http::Method::DELETE));
}

/// Opens CONNECT to `host:port`, TLS trusting `ca_pem`, and sends one GET for `target`.
async fn request_in_tunnel(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    ca_pem: &str,
    h2: bool,
    target: &str,
    host_header: Option<&str>,
) -> (u16, Option<String>) {
    use bytes::Bytes;
    use http_body_util::Empty;
    let stream = open_tunnel(proxy, host, port).await;
    let mut config = (*tls_client_config(ca_pem)).clone();
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let tls = tls_connect(stream, host, Arc::new(config)).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(tls);
    let mut request = http::Request::get(target);
    if let Some(value) = host_header {
        request = request.header("host", value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    };
    let reason = response
        .headers()
        .get("x-cordon-reason")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), reason)
}

#[test]
fn placeholders_are_swapped_and_never_leave_for_unbound_hosts() {
    let setup = Setup::new(&["origin.test", "swap.test", "other.test"]);
    let origin = Origin::tls(
        &setup.origin_ca,
        &["origin.test", "swap.test", "other.test"],
    );
    let port = origin.port();
    let demo = token("demo");
    let swap = token("swap");
    let yaml = setup.config(
        &format!(
            "  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32], credential: demo }}\n  - {{ host: swap.test, ports: [{port}], allow_ips: [127.0.0.1/32], credential: swap }}\n  - {{ host: other.test, ports: [{port}], allow_ips: [127.0.0.1/32], tls: intercept }}"
        ),
        "  demo: { source: { env: CORDON_TEST_DEMO }, inject: { header: Authorization, value: \"Bearer {secret}\" }, placeholder: CORDON_PLACEHOLDER_DEMO, require_placeholder: true }\n  swap: { source: { env: CORDON_TEST_SWAP }, placeholder: CORDON_PLACEHOLDER_SWAP }",
    );
    let cordon = Cordon::start_with_env(
        &yaml,
        &[("CORDON_TEST_DEMO", &demo), ("CORDON_TEST_SWAP", &swap)],
    );
    let swap_url = format!("https://swap.test:{port}/q?key=CORDON_PLACEHOLDER_SWAP&x=1");

    // In a header, in Basic auth, in the query.
    let (status, _, _) = curl_via(
        &cordon,
        &[
            "-H",
            "X-Api-Key: CORDON_PLACEHOLDER_SWAP",
            "-u",
            "me:CORDON_PLACEHOLDER_SWAP",
            &swap_url,
        ],
    );
    assert_eq!(status, 200);
    let seen = origin.requests().pop().unwrap();
    assert!(
        seen.header("x-api-key") == Some(swap.as_str()),
        "header placeholder swapped"
    );
    let basic = seen
        .header("authorization")
        .unwrap()
        .trim_start_matches("Basic ")
        .to_owned();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic)
        .unwrap();
    assert!(
        decoded == format!("me:{swap}").into_bytes(),
        "Basic credential swapped"
    );
    assert!(
        seen.target == format!("/q?key={swap}&x=1"),
        "query placeholder swapped"
    );

    // The real value sent directly, where the placeholder is required.
    let before = origin.count();
    let (status, body, _) = curl_via(
        &cordon,
        &[
            "-H",
            &format!("X-Api-Key: {demo}"),
            &format!("https://origin.test:{port}/x"),
        ],
    );
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("real_secret_used"));
    // A placeholder sent to a host its credential is not bound to.
    let (status, body, _) = curl_via(
        &cordon,
        &[
            "-H",
            "X-Api-Key: CORDON_PLACEHOLDER_DEMO",
            &format!("https://other.test:{port}/x"),
        ],
    );
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("placeholder_misuse"));
    let (status, _, _) = curl_via(
        &cordon,
        &[&format!(
            "https://swap.test:{port}/x?leak=CORDON_PLACEHOLDER_DEMO"
        )],
    );
    assert_eq!(
        status, 403,
        "a placeholder of another credential is refused even on a bound host"
    );
    // And a real value sent to another credential's host.
    let (status, body, _) = curl_via(
        &cordon,
        &[
            "-H",
            &format!("X-Leak: {demo}"),
            &format!("https://swap.test:{port}/x"),
        ],
    );
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("real_secret_used"));
    assert_eq!(origin.count(), before, "nothing refused reached the origin");
    // The allowed twin: the placeholder on its own host gets the value injected.
    let (status, _, _) = curl_via(
        &cordon,
        &[
            "-H",
            "X-Api-Key: CORDON_PLACEHOLDER_DEMO",
            &format!("https://origin.test:{port}/x"),
        ],
    );
    assert_eq!(status, 200);
    let seen = origin.requests().pop().unwrap();
    assert!(seen.header("x-api-key") == Some(demo.as_str()) && bearer(&seen) == demo);
    cordon.wait_for_records(|r| r["reason"] == "placeholder_misuse", WAIT);
    cordon.wait_for_records(|r| r["reason"] == "real_secret_used", WAIT);
    assert_no_secret(cordon, &[&demo, &swap]);
}

#[test]
fn a_file_credential_follows_rewrites_in_place_and_atomic_renames() {
    let setup = Setup::new(&["origin.test"]);
    let origin = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let port = origin.port();
    let file = setup.scratch.join("token");
    let values = [token("file-a"), token("file-b"), token("file-c")];
    std::fs::write(&file, format!("{}\n", values[0])).unwrap();
    let yaml = setup.config(
        &format!("  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32], credential: filecred }}"),
        &format!(
            "  filecred: {{ source: {{ file: \"{}\", refresh: 50ms }}, inject: {{ header: Authorization, value: \"Bearer {{secret}}\" }} }}",
            file.display()
        ),
    );
    let cordon = Cordon::start(&yaml);
    let url = format!("https://origin.test:{port}/x");
    let wait_for = |expected: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, _, _) = curl_via(&cordon, &[&url]);
            assert_eq!(status, 200);
            if bearer(&origin.requests().pop().unwrap()) == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the new file value was not picked up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(&values[0]);
    // Rewritten in place (same inode).
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&file)
            .unwrap();
        f.write_all(values[1].as_bytes()).unwrap();
    }
    wait_for(&values[1]);
    // Replaced by an atomic rename (new inode).
    let tmp = setup.scratch.join("token.new");
    std::fs::write(&tmp, &values[2]).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_for(&values[2]);
    // Records are written after the response; wait for the last one before reading them all.
    cordon.wait_for_records(|r| r["credential"]["version"] == 3, WAIT);
    let versions: Vec<u64> = cordon
        .audit_records()
        .iter()
        .filter_map(|r| r["credential"]["version"].as_u64())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]) && versions.last() >= Some(&3),
        "{versions:?}"
    );
    assert_no_secret(cordon, &[&values[0], &values[1], &values[2]]);
}

/// Issued tokens and when each stops being valid.
type Issued = Arc<Mutex<HashMap<String, SystemTime>>>;

/// 32 clients for `secs` seconds through cordon; returns (ok, failed).
fn load(cordon: &Cordon, url: &str, secs: u64) -> (usize, usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pem = std::fs::read(cordon.dir().join("ca/ca.crt")).unwrap();
    let proxy = format!("http://{}", cordon.proxy_addr());
    let url = url.to_owned();
    runtime.block_on(async move {
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let client = reqwest::Client::builder()
                .proxy(reqwest::Proxy::all(&proxy).unwrap())
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .use_rustls_tls()
                .http1_only()
                .build()
                .unwrap();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(secs);
                let (mut ok, mut failed) = (0, 0);
                while Instant::now() < deadline {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            ok += 1
                        }
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            }));
        }
        let mut total = (0, 0);
        for task in tasks {
            let (ok, failed) = task.await.unwrap();
            total.0 += ok;
            total.1 += failed;
        }
        total
    })
}

/// Every request the origin saw carried a token that was valid when it arrived.
fn assert_tokens_were_valid(origin: &Origin, issued: &Issued) {
    let issued = issued.lock().unwrap();
    let seen = origin.requests();
    assert!(!seen.is_empty());
    for request in &seen {
        let token = bearer(request);
        let expiry = issued.get(&token).copied();
        assert!(
            expiry.is_some(),
            "the origin saw a token the issuer never issued"
        );
        assert!(
            request.received < expiry.unwrap(),
            "the origin saw an expired token"
        );
    }
}

#[test]
fn an_exec_credential_rotates_under_load_without_a_failed_request() {
    let setup = Setup::new(&["origin.test"]);
    let origin = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let port = origin.port();
    let log = setup.scratch.join("issued.log");
    let script = setup.scratch.join("plugin.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nt=exec-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \\n')\ne=$(date -u -d '+2 seconds' +%s)\nexp=$(date -u -d @$e +%Y-%m-%dT%H:%M:%SZ)\necho \"$t $e\" >> {log}\nprintf '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"%s\",\"expirationTimestamp\":\"%s\"}}}}' \"$t\" \"$exp\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = setup.config(
        &format!("  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32], credential: plugin }}"),
        &format!(
            "  plugin: {{ source: {{ exec: {{ command: [\"{}\"], timeout: 5s }} }}, inject: {{ header: Authorization, value: \"Bearer {{secret}}\" }} }}",
            script.display()
        ),
    );
    let cordon = Cordon::start(&yaml);
    let (ok, failed) = load(&cordon, &format!("https://origin.test:{port}/1k"), 10);
    assert_eq!(failed, 0, "{ok} requests succeeded");
    assert!(ok > 100, "{ok}");
    let lines = std::fs::read_to_string(&log).unwrap();
    let issued: Issued = Arc::default();
    for line in lines.lines() {
        let (token, expiry) = line.split_once(' ').unwrap();
        // `date +%s` has whole seconds while the timestamp cordon reads is the same second.
        let expiry = UNIX_EPOCH + Duration::from_secs(expiry.parse().unwrap());
        issued.lock().unwrap().insert(token.to_owned(), expiry);
    }
    let runs = issued.lock().unwrap().len();
    // 10 s of load at a 2 s lifetime refreshed at ~75 %: about 7 runs, never one per request.
    assert!(
        (4..=14).contains(&runs),
        "the plug-in ran {runs} times for {ok} requests"
    );
    assert_tokens_were_valid(&origin, &issued);
    let secrets: Vec<String> = issued.lock().unwrap().keys().cloned().collect();
    assert_no_secret(
        cordon,
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

/// An OAuth2 token endpoint on loopback issuing 2-second tokens.
fn token_endpoint(
    issued: Issued,
    hits: Arc<Mutex<usize>>,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let issued = issued.clone();
                let hits = hits.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let issued = issued.clone();
                        let hits = hits.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let form = req.into_body().collect().await.unwrap().to_bytes();
                            let form = String::from_utf8_lossy(&form).to_string();
                            let good = form.contains("grant_type=client_credentials") && form.contains("client_id=cordon") && form.contains("client_secret=shh-test-client-secret");
                            *hits.lock().unwrap() += 1;
                            let response = if good {
                                let t = token("oauth");
                                issued.lock().unwrap().insert(t.clone(), SystemTime::now() + Duration::from_secs(2));
                                http::Response::new(http_body_util::Full::new(bytes::Bytes::from(format!(
                                    "{{\"access_token\":\"{t}\",\"token_type\":\"Bearer\",\"expires_in\":2}}"
                                ))))
                            } else {
                                let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from("{}")));
                                *r.status_mut() = http::StatusCode::UNAUTHORIZED;
                                r
                            };
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                });
            }
        });
    });
    (addr, handle)
}

#[test]
fn an_oauth2_credential_rotates_under_load_once_per_lifetime() {
    let setup = Setup::new(&["origin.test"]);
    let origin = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let port = origin.port();
    let issued: Issued = Arc::default();
    let hits = Arc::new(Mutex::new(0usize));
    let (endpoint, _server) = token_endpoint(issued.clone(), hits.clone());
    let secret_file = setup.scratch.join("client-secret");
    std::fs::write(&secret_file, "shh-test-client-secret\n").unwrap();
    let yaml = setup.config(
        &format!("  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32], credential: api }}"),
        &format!(
            "  api: {{ source: {{ oauth2: {{ token_url: \"http://{endpoint}/token\", client_id: cordon, client_secret_file: \"{}\", scopes: [deploy] }} }}, inject: {{ header: Authorization, value: \"Bearer {{secret}}\" }} }}",
            secret_file.display()
        ),
    );
    let cordon = Cordon::start(&yaml);
    let (ok, failed) = load(&cordon, &format!("https://origin.test:{port}/1k"), 10);
    assert_eq!(failed, 0, "{ok} requests succeeded");
    let hits = *hits.lock().unwrap();
    assert!(
        (4..=14).contains(&hits),
        "the token endpoint was hit {hits} times for {ok} requests"
    );
    assert_tokens_were_valid(&origin, &issued);
    let secrets: Vec<String> = issued.lock().unwrap().keys().cloned().collect();
    let mut all: Vec<&str> = secrets.iter().map(String::as_str).collect();
    all.push("shh-test-client-secret");
    let (_, metrics, _) = curl(&[&format!("http://{}/metrics", cordon.admin_addr())]);
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    assert!(
        metrics.contains("cordon_credential_rotations_total{credential=\"api\""),
        "{metrics}"
    );
    assert!(metrics.contains("cordon_credential_expiry_seconds{credential=\"api\"}"));
    assert_no_secret(cordon, &all);
}

#[test]
fn origins_with_invalid_certificates_get_502_upstream_tls() {
    let setup = Setup::new(&["wrong.test", "expired.test", "unknown.test", "good.test"]);
    let stranger = TestCa::new("a CA nobody trusts");
    let (chain, key) = setup.origin_ca.leaf(&["somewhere-else.test"]);
    let wrong_name = Origin::tls_with(chain, key, &[b"http/1.1"]);
    let (chain, key) = setup.origin_ca.leaf_expired(&["expired.test"]);
    let expired = Origin::tls_with(chain, key, &[b"http/1.1"]);
    let unknown = Origin::tls(&stranger, &["unknown.test"]);
    let good = Origin::tls(&setup.origin_ca, &["good.test"]);
    let entry = |host: &str, port: u16| {
        format!(
            "  - {{ host: {host}, ports: [{port}], allow_ips: [127.0.0.1/32], tls: intercept }}\n"
        )
    };
    let egress = [
        entry("wrong.test", wrong_name.port()),
        entry("expired.test", expired.port()),
        entry("unknown.test", unknown.port()),
        entry("good.test", good.port()),
    ]
    .concat();
    let cordon = Cordon::start(&setup.config(egress.trim_end(), "  {}"));
    for (host, origin) in [
        ("wrong.test", &wrong_name),
        ("expired.test", &expired),
        ("unknown.test", &unknown),
    ] {
        let (status, body, _) =
            curl_via(&cordon, &[&format!("https://{host}:{}/x", origin.port())]);
        assert_eq!(status, 502, "{host}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["reason"], "upstream_tls", "{host}");
        assert_eq!(origin.count(), 0);
        cordon.wait_for_records(|r| r["host"] == host && r["reason"] == "upstream_tls", WAIT);
    }
    // The twin: a certificate that verifies.
    let (status, _, _) = curl_via(&cordon, &[&format!("https://good.test:{}/x", good.port())]);
    assert_eq!(status, 200);
    assert_eq!(good.count(), 1);
}

#[test]
fn credentials_never_travel_in_plain_http() {
    let setup = Setup::new(&["origin.test", "open.test"]);
    let origin = Origin::plain();
    let port = origin.port();
    let secret = token("demo");
    let yaml = setup.config(
        &format!(
            "  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32], credential: demo }}\n  - {{ host: open.test, ports: [{port}], allow_ips: [127.0.0.1/32] }}"
        ),
        "  demo: { source: { env: CORDON_TEST_DEMO }, inject: { header: Authorization, value: \"Bearer {secret}\" }, placeholder: CORDON_PLACEHOLDER_DEMO }",
    );
    let cordon = Cordon::start_with_env(&yaml, &[("CORDON_TEST_DEMO", &secret)]);
    let proxy = format!("http://{}", cordon.proxy_addr());
    let fetch = |url: &str, header: &str| {
        let (code, out, err) = curl(&["-x", &proxy, "-H", header, "-w", "\n%{http_code}", url]);
        assert_eq!(code, 0, "{err}");
        let text = String::from_utf8_lossy(&out).to_string();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.parse::<u16>().unwrap(), body.to_owned())
    };
    // The credential's own host over http://: refused rather than sent in clear text.
    let (status, body) = fetch(&format!("http://origin.test:{port}/x"), "X-A: 1");
    assert_eq!(status, 403);
    assert!(body.contains("insecure_credential"), "{body}");
    // Another host over http:// with the placeholder or the value: refused.
    let (status, body) = fetch(
        &format!("http://open.test:{port}/x"),
        "X-A: CORDON_PLACEHOLDER_DEMO",
    );
    assert_eq!(status, 403);
    assert!(body.contains("placeholder_misuse"), "{body}");
    let (status, body) = fetch(
        &format!("http://open.test:{port}/x"),
        &format!("X-A: {secret}"),
    );
    assert_eq!(status, 403);
    assert!(body.contains("real_secret_used"));
    assert_eq!(origin.count(), 0);
    // The twin: a plain request without either goes through.
    let (status, _) = fetch(&format!("http://open.test:{port}/x"), "X-A: 1");
    assert_eq!(status, 200);
    assert_eq!(origin.count(), 1);
    assert_no_secret(cordon, &[&secret]);
}

#[test]
fn websocket_upgrades_pass_after_the_decision() {
    let setup = Setup::new(&["origin.test"]);
    let origin = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let port = origin.port();
    let yaml = setup.config(
        &format!(
            "  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32],\n      rules: [ {{ methods: [GET], paths: [\"/ws\"] }} ] }}"
        ),
        "  {}",
    );
    let cordon = Cordon::start(&yaml);
    let proxy = cordon.proxy_addr();
    let ca = std::fs::read_to_string(cordon.dir().join("ca/ca.crt")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (allowed, echoed, refused) = runtime.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let open = |path: &'static str| {
            let ca = ca.clone();
            async move {
                let stream = open_tunnel(proxy, "origin.test", port).await;
                let mut tls = tls_connect(stream, "origin.test", tls_client_config(&ca)).await.unwrap();
                tls.write_all(
                    format!(
                        "GET {path} HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await
                .unwrap();
                (read_head(&mut tls).await, tls)
            }
        };
        let (head, mut tls) = open("/ws").await;
        tls.write_all(b"ping through cordon").await.unwrap();
        let mut echo = [0u8; 19];
        tls.read_exact(&mut echo).await.unwrap();
        let (refused, _) = open("/other").await;
        (head, echo.to_vec(), refused)
    });
    assert!(allowed.starts_with("HTTP/1.1 101"), "{allowed}");
    assert_eq!(echoed, b"ping through cordon");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused
        .to_lowercase()
        .contains("x-cordon-reason: not_allowed"));
    assert_eq!(
        origin.count(),
        1,
        "only the allowed upgrade reached the origin"
    );
}
