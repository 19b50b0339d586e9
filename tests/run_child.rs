//! `cordon run` through the real binary with real child programs: curl, Python, git and
//! Node reach an in-process TLS origin through cordon's proxy, trusting cordon's per-run CA
//! only through the variables cordon sets, with the credential injected on the way; the
//! child holds placeholders, never the secret; its output is filtered for secrets
//! (redact, log, block; split writes; prompt latency); its exit code, signals and the
//! audit trail behave as a wrapper's should.
//!
//! Every secret is a fresh fake token; no assertion message prints one.

mod support;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustix::process::Signal;
use serde_json::Value;
use support::*;

const CORDON: &str = env!("CARGO_BIN_EXE_cordon");
/// The most any single `cordon run` in these tests may take.
const LIMIT: Duration = Duration::from_secs(15);
/// The environment variable cordon reads the test credential from.
const SOURCE_VAR: &str = "CORDON_TEST_REAL_KEY";
/// Where the child finds the credential's placeholder.
const KEY_VAR: &str = "DEMO_API_KEY";
const PLACEHOLDER: &str = "CORDON_PLACEHOLDER_DEMO";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A test's scratch directory, an origin CA, a DNS server answering `origin.test` with
/// 127.0.0.1, and the secret cordon will hold.
struct Setup {
    dir: PathBuf,
    origin_ca: TestCa,
    origin_ca_file: PathBuf,
    dns: DnsServer,
    secret: String,
}

impl Setup {
    fn new(label: &str) -> Setup {
        let dir = unique_temp_dir(label);
        let origin_ca = TestCa::new("run test origin CA");
        let origin_ca_file = origin_ca.write_pem(&dir);
        let localhost: IpAddr = "127.0.0.1".parse().unwrap();
        Setup {
            dir,
            origin_ca,
            origin_ca_file,
            dns: DnsServer::start(&[("origin.test", localhost)]),
            secret: token("demo"),
        }
    }

    /// Writes a config that allows `origin.test:port` (when given) with the `demo`
    /// credential, and sets `scanning.output`; returns its path. Its `audit.path` is one the
    /// tests expect `--audit` to override.
    fn config(&self, port: Option<u16>, output: &str) -> PathBuf {
        let egress = match port {
            Some(port) => format!(
                "  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32], credential: demo }}"
            ),
            None => "  []".to_owned(),
        };
        let yaml = format!(
            r#"version: 1
agent: {{ name: run-test }}
listen: {{ proxy: "127.0.0.1:1", admin: "127.0.0.1:2" }}
dns: {{ upstream: ["{dns}"] }}
tls: {{ ca_dir: "{dir}/config-ca", extra_roots: ["{roots}"] }}
egress:
{egress}
credentials:
  demo:
    source: {{ env: {SOURCE_VAR} }}
    env: {KEY_VAR}
    inject: {{ header: Authorization, value: "Bearer {{secret}}" }}
scanning: {{ output: {output} }}
audit: {{ path: "{dir}/config-audit.jsonl", fsync: none }}
"#,
            dns = self.dns.addr(),
            dir = self.dir.display(),
            roots = self.origin_ca_file.display(),
        );
        let path = self.dir.join("cordon.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// `text` with the secret (and `extra` values) masked, for failure messages.
    fn scrub(&self, text: &str, extra: &[&str]) -> String {
        let mut text = text.replace(&self.secret, "<secret>");
        for value in extra {
            text = text.replace(value, "<secret>");
        }
        text
    }

    fn audit(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// `cordon run --config C --audit A -- cmd…` with the credential's source variable set.
    fn command(&self, config: &Path, cmd: &[&str]) -> Command {
        let mut command = cordon_run(
            &[
                "--config",
                config.to_str().unwrap(),
                "--audit",
                self.audit().to_str().unwrap(),
            ],
            cmd,
        );
        command.env(SOURCE_VAR, &self.secret);
        command
    }

    /// Runs a command under the config and waits for cordon to exit.
    fn run(&self, config: &Path, cmd: &[&str]) -> Done {
        Running::start(self.command(config, cmd)).finish(LIMIT)
    }

    fn records(&self) -> Vec<Value> {
        records(&self.audit())
    }

    /// Asserts that the secret (and any `extra` value) is in none of cordon's outputs nor in
    /// the trail, and that the trail's chain verifies.
    fn assert_clean(&self, done: &Done, extra: &[&str]) {
        let trail = std::fs::read_to_string(self.audit()).unwrap_or_default();
        assert!(!trail.is_empty(), "the run wrote an audit trail");
        for (name, text) in [
            ("stdout", String::from_utf8_lossy(&done.stdout).into_owned()),
            ("stderr", done.stderr.clone()),
            ("audit trail", trail),
        ] {
            for value in std::iter::once(self.secret.as_str()).chain(extra.iter().copied()) {
                // Never print the value itself, not even in a failure message.
                assert!(!text.contains(value), "a secret appears in cordon's {name}");
            }
        }
        assert_eq!(verify(&self.audit()), 0, "the trail verifies");
        assert!(
            !self.dir.join("config-audit.jsonl").exists(),
            "--audit overrides audit.path"
        );
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("run test files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `cordon run ARGS -- CMD…`, stdin closed (not a terminal), output piped. Proxy settings
/// of the test's own environment are set to values that would send a child elsewhere, so
/// only what cordon sets can make the child's requests work.
fn cordon_run(args: &[&str], cmd: &[&str]) -> Command {
    let mut command = Command::new(CORDON);
    command
        .arg("run")
        .args(args)
        .arg("--")
        .args(cmd)
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .env("CORDON_LOG", "warn")
        // A user's git configuration must not change what git does here.
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Bytes as they arrived on one of cordon's pipes, each chunk with its arrival time.
type Chunks = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

fn collect(mut pipe: impl Read + Send + 'static, into: Chunks) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap()
                    .push((Instant::now(), buf[..n].to_vec())),
            }
        }
    })
}

fn joined(chunks: &Chunks) -> Vec<u8> {
    chunks
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, bytes)| bytes.iter().copied())
        .collect()
}

/// A `cordon run` in progress.
struct Running {
    child: Option<Child>,
    started: Instant,
    stdout: Chunks,
    stderr: Chunks,
    readers: Vec<JoinHandle<()>>,
}

/// A finished `cordon run`.
struct Done {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    /// When cordon's exit was seen.
    exited: Instant,
}

impl Done {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Running {
    fn start(mut command: Command) -> Running {
        let started = Instant::now();
        let mut child = command.spawn().expect("spawn cordon");
        let stdout: Chunks = Arc::default();
        let stderr: Chunks = Arc::default();
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Running {
            child: Some(child),
            started,
            stdout,
            stderr,
            readers,
        }
    }

    fn pid(&self) -> rustix::process::Pid {
        let id = self.child.as_ref().unwrap().id();
        rustix::process::Pid::from_raw(id as i32).unwrap()
    }

    fn signal(&self, sig: Signal) {
        rustix::process::kill_process(self.pid(), sig).expect("signal cordon");
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .unwrap()
            .try_wait()
            .expect("poll cordon")
            .is_none()
    }

    /// Waits until cordon's stdout holds `needle`; returns when the chunk completing it
    /// arrived. The panic message shows stderr only (stdout may carry a test secret).
    fn wait_stdout(&mut self, needle: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let chunks = self.stdout.lock().unwrap();
                let mut seen = Vec::new();
                for (at, bytes) in chunks.iter() {
                    seen.extend_from_slice(bytes);
                    if String::from_utf8_lossy(&seen).contains(needle) {
                        return *at;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "cordon's stdout did not show {needle:?} within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&joined(&self.stderr))
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for cordon to exit (killing it after `timeout`) and for its pipes to close.
    fn finish(mut self, timeout: Duration) -> Done {
        let mut child = self.child.take().unwrap();
        let deadline = self.started + timeout;
        let (status, exited) = loop {
            if let Some(status) = child.try_wait().expect("wait for cordon") {
                break (status, Instant::now());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cordon run did not exit within {timeout:?}; stderr:\n{}",
                    String::from_utf8_lossy(&joined(&self.stderr))
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1);
        Done {
            code,
            stdout: joined(&self.stdout),
            stderr: strip_ansi(&String::from_utf8_lossy(&joined(&self.stderr))),
            exited,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every record of a trail.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("an audit line is JSON"))
        .collect()
}

/// `cordon audit verify F`'s exit code.
fn verify(path: &Path) -> i32 {
    let status = Command::new(CORDON)
        .args(["audit", "verify"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run cordon audit verify");
    status.code().unwrap_or(-1)
}

/// The `scan` records whose findings are all output findings, as (rule, decision, detail).
fn output_findings(records: &[Value]) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for record in records.iter().filter(|r| r["kind"] == "scan") {
        let findings = record["findings"].as_array().cloned().unwrap_or_default();
        for finding in findings {
            assert_eq!(finding["direction"], "output", "a child output finding");
            found.push((
                finding["rule"].as_str().unwrap_or("").to_owned(),
                record["decision"].as_str().unwrap_or("").to_owned(),
                record["detail"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    found
}

fn last_detail(records: &[Value]) -> String {
    let last = records.last().expect("the trail has records");
    assert_eq!(last["kind"], "config");
    last["detail"].as_str().unwrap_or("").to_owned()
}

/// A GitHub classic token in GitHub's format: 30 random characters and the base62 form of
/// their CRC-32, so the built-in `github-pat` rule (which checks the sum) accepts it.
fn github_token() -> String {
    const ALNUM: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut random = [0u8; 30];
    getrandom::fill(&mut random).unwrap();
    let body: Vec<u8> = random.iter().map(|b| ALNUM[*b as usize % 62]).collect();
    let mut crc = 0xFFFF_FFFFu32;
    for byte in &body {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut sum = !crc;
    let mut digits = [b'0'; 6];
    for digit in digits.iter_mut().rev() {
        *digit = ALNUM[(sum % 62) as usize];
        sum /= 62;
    }
    format!(
        "ghp_{}{}",
        String::from_utf8(body).unwrap(),
        String::from_utf8(digits.to_vec()).unwrap()
    )
}

/// Whether `program` can be run (for the optional interpreters).
fn available(program: &str, probe: &[&str]) -> bool {
    Command::new(program)
        .args(probe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The origin saw exactly one request for `path`, carrying the injected credential and no
/// placeholder.
fn assert_injected(origin: &Origin, path: &str, secret: &str) {
    let seen: Vec<SeenRequest> = origin
        .requests()
        .into_iter()
        .filter(|r| r.path() == path)
        .collect();
    assert_eq!(seen.len(), 1, "the origin received one request for {path}");
    let seen = &seen[0];
    assert!(seen.tls, "the request reached the origin over TLS");
    assert_eq!(seen.sni.as_deref(), Some("origin.test"));
    let expected = format!("Bearer {secret}");
    assert!(
        seen.header_all("authorization") == vec![expected.as_str()],
        "the origin received the injected credential (and only it)"
    );
    assert!(
        seen.headers.iter().all(|(_, v)| !v.contains(PLACEHOLDER)),
        "no placeholder reached the origin"
    );
}

/// Asserts that the child's request was decided with the credential injected.
fn assert_injection_recorded(records: &[Value], path: &str) {
    assert!(
        records.iter().any(|r| r["path"] == path
            && r["decision"] == "allow"
            && r["credential"]["id"] == "demo"),
        "an allow record with the injected credential for {path}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Real clients through cordon, trusting its CA only through the environment it sets
// ---------------------------------------------------------------------------------------------

#[test]
fn curl_child_reaches_the_origin_with_the_credential_injected() {
    let setup = Setup::new("run-curl");
    let origin = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let config = setup.config(Some(origin.port()), "redact");
    let url = format!("https://origin.test:{}/v1/curl", origin.port());
    // The agent sends its placeholder, as it would send the key it believes it has.
    let script = format!(
        "curl -q --silent --show-error --max-time 10 -w '\\nstatus=%{{http_code}}\\n' \
         -H \"Authorization: Bearer ${KEY_VAR}\" {url}"
    );
    let done = setup.run(&config, &["sh", "-c", &script]);
    let out = setup.scrub(&done.stdout_text(), &[]);
    let err = setup.scrub(&done.stderr, &[]);
    assert_eq!(done.code, 0, "curl succeeded: {out}\nstderr:\n{err}");
    assert!(out.contains("status=200"), "curl got 200: {out}");
    assert!(
        out.contains("\"path\":\"/v1/curl\""),
        "curl got the body: {out}"
    );
    assert_injected(&origin, "/v1/curl", &setup.secret);
    let records = setup.records();
    assert_injection_recorded(&records, "/v1/curl");
    assert_eq!(last_detail(&records), "cordon run stopped");
    setup.assert_clean(&done, &[]);
}

#[test]
fn python_urllib_child_reaches_the_origin_with_the_credential_injected() {
    if !available("python3", &["-c", "import urllib.request"]) {
        eprintln!("SKIPPED: python3 is not available");
        return;
    }
    let setup = Setup::new("run-python");
    let origin = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let config = setup.config(Some(origin.port()), "redact");
    let url = format!("https://origin.test:{}/v1/python", origin.port());
    let script = "import sys, urllib.request\n\
                  with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n\
                  \x20   print('status', r.status)\n\
                  \x20   print(r.read().decode())\n";
    let done = setup.run(&config, &["python3", "-c", script, &url]);
    assert_client_succeeded(&setup, &origin, &done, "python", "/v1/python");
}

#[test]
fn node_child_reaches_the_origin_through_an_explicit_connect() {
    if !available("node", &["--version"]) {
        eprintln!("SKIPPED: node is not on PATH");
        return;
    }
    let setup = Setup::new("run-node");
    let origin = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let config = setup.config(Some(origin.port()), "redact");
    // Node 20's fetch ignores the proxy variables: CONNECT by hand to the proxy cordon
    // named, then TLS inside, trusting cordon's CA only via NODE_EXTRA_CA_CERTS.
    let script = r#"
const http = require('http'), https = require('https'), tls = require('tls');
const port = Number(process.argv[1]);
const proxy = new URL(process.env.HTTPS_PROXY);
const target = `origin.test:${port}`;
const auth = 'Basic ' + Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64');
const connect = http.request({ method: 'CONNECT', host: '127.0.0.1', port: Number(proxy.port),
                               path: target, headers: { host: target, 'proxy-authorization': auth } });
connect.on('connect', (res, socket) => {
  if (res.statusCode !== 200) { console.log('CONNECT status', res.statusCode); process.exit(3); }
  https.get({ host: 'origin.test', port, path: '/v1/node',
              createConnection: () => tls.connect({ socket, servername: 'origin.test' }) },
    (r) => {
      let body = '';
      r.on('data', (d) => body += d);
      r.on('end', () => { console.log('status', r.statusCode); console.log(body); process.exit(0); });
    }).on('error', (e) => { console.log('TLS/HTTP error:', e.message); process.exit(4); });
});
connect.on('error', (e) => { console.log('proxy error:', e.message); process.exit(5); });
connect.end();
"#;
    let port = origin.port().to_string();
    let done = setup.run(&config, &["node", "-e", script, &port]);
    assert_client_succeeded(&setup, &origin, &done, "node", "/v1/node");
}

#[test]
fn git_ls_remote_child_lists_the_refs_of_a_smart_http_origin() {
    let setup = Setup::new("run-git");
    let repos = setup.dir.join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    let commit = bare_repo_with_commit(&repos.join("repo.git"));
    let origin = GitOrigin::start(&setup.origin_ca, &repos);
    let config = setup.config(Some(origin.addr.port()), "redact");
    let url = format!("https://origin.test:{}/repo.git", origin.addr.port());
    let done = setup.run(&config, &["git", "ls-remote", &url]);
    let out = setup.scrub(&done.stdout_text(), &[]);
    let err = setup.scrub(&done.stderr, &[]);
    assert_eq!(
        done.code, 0,
        "git ls-remote succeeded: {out}\nstderr:\n{err}"
    );
    assert!(
        out.lines()
            .any(|l| l == format!("{commit}\trefs/heads/main")),
        "ls-remote listed the branch: {out}"
    );
    let seen = origin.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(p, _)| p == "/repo.git/info/refs"),
        "git asked for the refs: {:?}",
        seen.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let expected = format!("Bearer {}", setup.secret);
    assert!(
        seen.iter().all(|(_, auth)| *auth == expected),
        "every request git made carried the injected credential"
    );
    assert_injection_recorded(&setup.records(), "/repo.git/info/refs");
    setup.assert_clean(&done, &[]);
}

/// `git init --bare -b main` at `path` with one empty commit on `main`; returns its id.
fn bare_repo_with_commit(path: &Path) -> String {
    let git = |args: &[&str], stdin: Option<&[u8]>| -> String {
        let mut child = Command::new("git")
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "run test")
            .env("GIT_AUTHOR_EMAIL", "run@test.invalid")
            .env("GIT_COMMITTER_NAME", "run test")
            .env("GIT_COMMITTER_EMAIL", "run@test.invalid")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run git");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default()).unwrap();
        drop(input);
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let repo = path.to_str().unwrap();
    git(&["init", "-q", "--bare", "-b", "main", repo], None);
    let tree = git(&["-C", repo, "mktree"], Some(b""));
    let commit = git(&["-C", repo, "commit-tree", &tree, "-m", "initial"], None);
    git(
        &["-C", repo, "update-ref", "refs/heads/main", &commit],
        None,
    );
    commit
}

/// An HTTPS git smart-HTTP origin: each request runs `git http-backend` as a CGI program
/// over the repositories under a directory. Records (path, Authorization) per request.
struct GitOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GitOrigin {
    fn start(ca: &TestCa, root: &Path) -> GitOrigin {
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let backend = PathBuf::from(String::from_utf8(exec_path.stdout).unwrap().trim())
            .join("git-http-backend");
        assert!(backend.is_file(), "{} exists", backend.display());

        let (chain, key) = ca.leaf(&["origin.test", "127.0.0.1"]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let root = root.to_path_buf();
        let record = seen.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, root, backend, record) = (
                            acceptor.clone(),
                            root.clone(),
                            backend.clone(),
                            record.clone(),
                        );
                        tokio::spawn(async move {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let service = hyper::service::service_fn(move |req| {
                                cgi(req, root.clone(), backend.clone(), record.clone())
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        GitOrigin {
            addr,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for GitOrigin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One CGI request to `git http-backend`.
async fn cgi(
    req: Request<Incoming>,
    root: PathBuf,
    backend: PathBuf,
    seen: Arc<Mutex<Vec<(String, String)>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    seen.lock()
        .unwrap()
        .push((parts.uri.path().to_owned(), header("authorization")));
    let mut command = Command::new(backend);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn()?;
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let output = child.wait_with_output();
        let _ = writer.join();
        output
    })
    .await
    .expect("CGI task");
    let failed = |why: String| {
        Ok(Response::builder()
            .status(500)
            .body(Full::new(Bytes::from(why)))
            .unwrap())
    };
    let output = match output {
        Ok(output) => output,
        Err(err) => return failed(format!("cannot run git http-backend: {err}")),
    };
    let text = &output.stdout;
    let (head, rest) = match text.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&text[..i], &text[i + 4..]),
        None => match text.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&text[..i], &text[i + 2..]),
            None => {
                return failed(format!(
                    "no CGI head; stderr: {}",
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        },
    };
    let mut response = Response::builder().status(200);
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            response = response.status(code.parse::<u16>().unwrap_or(500));
        } else {
            response = response.header(name.trim(), value);
        }
    }
    Ok(response
        .body(Full::new(Bytes::copy_from_slice(rest)))
        .unwrap())
}

// ---------------------------------------------------------------------------------------------
// 2. The child's environment and its output
// ---------------------------------------------------------------------------------------------

#[test]
fn the_child_holds_the_placeholder_and_never_the_secret() {
    let setup = Setup::new("run-env");
    let config = setup.config(None, "redact");
    // The child writes its environment to a file of its own: what it holds, unfiltered.
    let dump = setup.dir.join("child-env");
    let script = format!(
        "env > '{}'; printf '%s|%s' \"${KEY_VAR}\" \"${{{SOURCE_VAR}-unset}}\"",
        dump.display()
    );
    let done = setup.run(&config, &["sh", "-c", &script]);
    let out = setup.scrub(&done.stdout_text(), &[]);
    assert_eq!(done.code, 0, "stderr:\n{}", setup.scrub(&done.stderr, &[]));
    assert_eq!(out, format!("{PLACEHOLDER}|unset"));

    let env = std::fs::read_to_string(&dump).unwrap();
    let vars: Vec<(&str, &str)> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    assert!(
        !env.contains(&setup.secret),
        "the child's environment holds no secret"
    );
    assert_eq!(
        get(SOURCE_VAR),
        None,
        "the secret's source variable is gone"
    );
    assert_eq!(get(KEY_VAR), Some(PLACEHOLDER));
    assert_eq!(get("NO_PROXY"), None);
    assert_eq!(get("no_proxy"), None);
    let proxy = get("HTTPS_PROXY").expect("HTTPS_PROXY is set");
    // http://cordon:<per-run token>@127.0.0.1:<port> (the token is not printed).
    let token = proxy
        .strip_prefix("http://cordon:")
        .and_then(|rest| rest.split_once("@127.0.0.1:"))
        .map(|(token, _)| token);
    assert!(
        token.is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
        "HTTPS_PROXY names cordon's loopback proxy with a per-run token"
    );
    for name in [
        "HTTP_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        assert_eq!(get(name), Some(proxy), "{name}");
    }
    let bundle = get("SSL_CERT_FILE").expect("SSL_CERT_FILE is set");
    for name in [
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
        "PIP_CERT",
    ] {
        assert_eq!(get(name), Some(bundle), "{name}");
    }
    // The per-run bundle lives only as long as the run.
    assert!(
        !Path::new(bundle).exists(),
        "the per-run CA bundle is removed when cordon exits"
    );

    // stdout and stderr are two pipes, and the child holds no other end of either (cordon's
    // read ends and its own copies of the write ends close on exec).
    let listing = setup.run(&config, &["ls", "-l", "/proc/self/fd"]);
    assert_eq!(listing.code, 0, "{}", listing.stderr);
    let fds = listing.stdout_text();
    let fds: Vec<(&str, &str)> = fds
        .lines()
        .filter_map(|line| line.split_once(" -> "))
        .map(|(left, target)| (left.rsplit(' ').next().unwrap_or(""), target))
        .collect();
    let target = |fd: &str| fds.iter().find(|(n, _)| *n == fd).map(|(_, t)| *t);
    let (out, err) = (target("1").unwrap(), target("2").unwrap());
    assert!(
        out.starts_with("pipe:") && err.starts_with("pipe:") && out != err,
        "{fds:?}"
    );
    assert!(
        fds.iter()
            .all(|(n, t)| ["1", "2"].contains(n) || (*t != out && *t != err)),
        "the child holds no other end of its output pipes: {fds:?}"
    );
    setup.assert_clean(&done, &[]);
}

#[test]
fn an_exec_plugin_does_not_carry_the_real_values_of_env_credentials() {
    // An exec plug-in runs as the same user as the command and is dumpable, so while it
    // runs (at start and at every refresh) its /proc/<pid>/environ is open to the command.
    // The real values cordon read from its environment must therefore not be in it.
    let setup = Setup::new("run-exec-env");
    let seen = setup.dir.join("plugin-saw");
    let plugin = setup.dir.join("plugin.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\n\
             if [ -n \"${{{SOURCE_VAR}+set}}\" ]; then echo present; else echo absent; fi > '{seen}'\n\
             echo '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"plugin-token\"}}}}'\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = format!(
        r#"version: 1
agent: {{ name: run-test }}
dns: {{ upstream: ["{dns}"] }}
egress: []
credentials:
  demo:
    source: {{ env: {SOURCE_VAR} }}
    inject: {{ header: Authorization, value: "Bearer {{secret}}" }}
  plugged:
    source: {{ exec: {{ command: ["{plugin}"], timeout: 5s }} }}
    inject: {{ header: X-Plugged, value: "{{secret}}" }}
audit: {{ path: "{trail}", fsync: none }}
"#,
        dns = setup.dns.addr(),
        plugin = plugin.display(),
        trail = setup.audit().display(),
    );
    let config = setup.dir.join("plugged.yaml");
    std::fs::write(&config, yaml).unwrap();
    let done = setup.run(&config, &["true"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap_or_default().trim(),
        "absent",
        "the plug-in ran without the env credential's variable"
    );
}

#[test]
fn secrets_in_the_childs_output_are_redacted_and_recorded() {
    let setup = Setup::new("run-redact");
    let config = setup.config(None, "redact");
    let github = github_token();
    let file = setup.dir.join("leaky.txt");
    std::fs::write(
        &file,
        format!("start\nkey: {}\ngh: {github}\nend\n", setup.secret),
    )
    .unwrap();
    // stdout and stderr are both filtered.
    let script = format!("cat '{0}'; cat '{0}' >&2", file.display());
    let done = setup.run(&config, &["sh", "-c", &script]);
    assert_eq!(done.code, 0);
    let expected =
        "start\nkey: [REDACTED:credential:demo]\ngh: [REDACTED:github-pat]\nend\n".to_owned();
    assert!(
        done.stdout_text() == expected,
        "stdout is the file with both secrets redacted"
    );
    assert!(
        done.stderr.contains(&expected),
        "stderr is the file with both secrets redacted"
    );
    let found = output_findings(&setup.records());
    for rule in ["credential:demo", "github-pat"] {
        let hits: Vec<_> = found.iter().filter(|(r, _, _)| r == rule).collect();
        assert_eq!(
            hits.len(),
            2,
            "one {rule} finding on each stream: {found:?}"
        );
        assert!(hits.iter().all(|(_, decision, _)| decision == "allow"));
        assert!(
            hits.iter().any(|(_, _, d)| d.contains("stdout")),
            "{found:?}"
        );
        assert!(
            hits.iter().any(|(_, _, d)| d.contains("stderr")),
            "{found:?}"
        );
    }
    setup.assert_clean(&done, &[&github]);
}

#[test]
fn a_rotated_credential_in_the_childs_output_is_redacted() {
    // A `file` credential changes while the command runs; the value it changed to is what
    // the command prints (the README admits the command can read what the user can). The
    // output filter must know the value cordon now holds, not only the one from the start.
    let setup = Setup::new("run-rotate");
    let key_file = setup.dir.join("rotating.key");
    let first = token("first");
    let second = token("second");
    std::fs::write(&key_file, &first).unwrap();
    let trail = setup.audit();
    let yaml = format!(
        r#"version: 1
agent: {{ name: run-test }}
dns: {{ upstream: ["{dns}"] }}
egress: []
credentials:
  rotating:
    source: {{ file: "{key}", refresh: 100ms }}
    inject: {{ header: Authorization, value: "Bearer {{secret}}" }}
scanning: {{ output: redact }}
audit: {{ path: "{trail}", fsync: none }}
"#,
        dns = setup.dns.addr(),
        key = key_file.display(),
        trail = trail.display(),
    );
    let config = setup.dir.join("rotating.yaml");
    std::fs::write(&config, yaml).unwrap();
    let go = setup.dir.join("go");
    // Waits for the rotation, then prints the file between two quiet pauses.
    let script = format!(
        "echo waiting; while [ ! -e '{go}' ]; do sleep 0.05; done; sleep 1.5; \
         cat '{key}'; echo; sleep 0.5; echo done",
        go = go.display(),
        key = key_file.display()
    );
    let mut run = Running::start(cordon_run(
        &["--config", config.to_str().unwrap()],
        &["sh", "-c", &script],
    ));
    run.wait_stdout("waiting", LIMIT);
    std::fs::write(&key_file, &second).unwrap();
    std::fs::write(&go, "").unwrap();
    let done = run.finish(LIMIT);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let stdout = done.stdout_text();
    assert!(
        !stdout.contains(&second) && !stdout.contains(&first),
        "the rotated value is redacted: {}",
        stdout
            .replace(&second, "<second>")
            .replace(&first, "<first>")
    );
    assert!(
        stdout.contains("[REDACTED:credential:rotating]"),
        "{}",
        stdout.replace(&second, "<second>")
    );
}

#[test]
fn a_secret_split_across_two_quick_writes_is_still_redacted() {
    let setup = Setup::new("run-split");
    let config = setup.config(None, "redact");
    let github = github_token();
    let (a, b) = setup.secret.split_at(setup.secret.len() / 2);
    let (c, d) = github.split_at(17);
    // Four separate writes (printf is a shell builtin: one write each).
    let done = setup.run(
        &config,
        &[
            "sh",
            "-c",
            "printf 'x %s' \"$1\"; printf '%s y ' \"$2\"; printf '%s' \"$3\"; printf '%s z\\n' \"$4\"",
            "sh",
            a,
            b,
            c,
            d,
        ],
    );
    assert_eq!(done.code, 0);
    assert!(
        done.stdout_text() == "x [REDACTED:credential:demo] y [REDACTED:github-pat] z\n",
        "both split secrets are redacted whole"
    );
    let rules: Vec<String> = output_findings(&setup.records())
        .into_iter()
        .map(|(rule, _, _)| rule)
        .collect();
    assert_eq!(rules, vec!["credential:demo", "github-pat"]);
    setup.assert_clean(&done, &[&github, a, b, c, d]);
}

#[test]
fn output_log_passes_the_output_unchanged_and_records_the_finding() {
    let setup = Setup::new("run-log");
    let config = setup.config(None, "log");
    let github = github_token();
    let file = setup.dir.join("leaky.txt");
    let content = format!("one\ngh: {github}\ntwo\n");
    std::fs::write(&file, &content).unwrap();
    let done = setup.run(&config, &["cat", file.to_str().unwrap()]);
    assert_eq!(done.code, 0);
    assert!(
        done.stdout == content.as_bytes(),
        "log passes the output unchanged"
    );
    let found = output_findings(&setup.records());
    assert_eq!(found.len(), 1, "{found:?}");
    let (rule, decision, detail) = &found[0];
    assert_eq!(rule, "github-pat");
    assert_eq!(decision, "allow");
    assert!(
        detail.contains("stdout") && detail.contains("log"),
        "{detail}"
    );
    // The trail and cordon's stderr never hold the token, even when the output did.
    let trail = std::fs::read_to_string(setup.audit()).unwrap();
    assert!(!trail.contains(&github), "the trail holds no token");
    assert!(
        !done.stderr.contains(&github),
        "cordon's stderr holds no token"
    );
    assert_eq!(verify(&setup.audit()), 0);
}

#[test]
fn output_block_cuts_the_stream_after_the_finding() {
    let setup = Setup::new("run-block");
    let config = setup.config(None, "block");
    let github = github_token();
    // The child goes on writing after the secret; none of it may pass.
    let script = "printf 'before\\n'; sleep 0.2; printf 'gh: %s\\n' \"$1\"; sleep 0.2; \
                  printf 'after-the-cut\\n'; echo on-stderr >&2; exit 3";
    let done = setup.run(&config, &["sh", "-c", script, "sh", &github]);
    assert_eq!(
        done.code, 3,
        "the child ran to its end; its code is cordon's"
    );
    let out = done.stdout_text();
    assert!(
        out.starts_with("before\n"),
        "output before the secret passes"
    );
    assert!(out.contains("cut off here"), "the cut is announced");
    assert!(
        !out.contains("after-the-cut"),
        "nothing after the finding passes"
    );
    assert!(
        done.stderr.contains("on-stderr"),
        "the other stream is not cut: {}",
        setup.scrub(&done.stderr, &[&github])
    );
    let found = output_findings(&setup.records());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "github-pat");
    assert_eq!(found[0].1, "deny");
    setup.assert_clean(&done, &[&github]);
}

#[test]
fn a_partial_prompt_line_reaches_cordons_stdout_before_the_child_exits() {
    let setup = Setup::new("run-prompt");
    let config = setup.config(None, "redact");
    let mut run = Running::start(setup.command(
        &config,
        &["sh", "-c", "printf 'prompt> '; sleep 2; printf 'done\\n'"],
    ));
    let prompt = run.wait_stdout("prompt> ", Duration::from_secs(10));
    assert!(run.is_running(), "the child is still sleeping");
    let done = run.finish(LIMIT);
    assert_eq!(done.code, 0);
    assert_eq!(done.stdout_text(), "prompt> done\n");
    let lead = done.exited.duration_since(prompt);
    assert!(
        lead >= Duration::from_millis(1500),
        "the prompt arrived only {lead:?} before cordon exited"
    );
}

#[test]
fn output_a_slow_reader_has_not_taken_yet_is_delivered_after_the_child_exits() {
    // `cordon run -- cmd | less`: the child writes everything into the pipes and exits
    // while whatever reads cordon's stdout is still looking at the first page. What cordon
    // holds then is still the child's output and must be delivered once it is read.
    const SIZE: usize = 100_000;
    let setup = Setup::new("run-slow-reader");
    let config = setup.config(None, "redact");
    let marker = setup.dir.join("child-exited");
    let script = format!(
        "head -c {SIZE} /dev/zero | tr '\\0' x; : > '{}'",
        marker.display()
    );
    let mut child = setup
        .command(&config, &["sh", "-c", &script])
        .spawn()
        .expect("spawn cordon");
    let stderr = collect(child.stderr.take().unwrap(), Chunks::default());
    let deadline = Instant::now() + LIMIT;
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "the child never finished writing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The reader comes back well after the child has gone.
    std::thread::sleep(Duration::from_secs(4));
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .expect("read cordon's stdout");
    let status = child.wait().expect("wait for cordon");
    let _ = stderr.join();
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout.len(), SIZE, "every byte the child wrote arrives");
    assert!(stdout.iter().all(|&b| b == b'x'));
}

#[test]
fn a_background_process_holding_the_pipes_does_not_keep_cordon_running() {
    let setup = Setup::new("run-background");
    let config = setup.config(None, "redact");
    for (script, quiet) in [
        ("sleep 60 & echo started; exit 3", true),
        // One that keeps printing, to a reader that keeps up.
        (
            "(i=0; while [ $i -lt 300 ]; do echo tick; sleep 0.2; i=$((i+1)); done) & echo started; exit 3",
            false,
        ),
    ] {
        let run = Running::start(setup.command(&config, &["sh", "-c", script]));
        let started = run.started;
        let done = run.finish(LIMIT);
        assert_eq!(done.code, 3, "{}", done.stderr);
        let stdout = done.stdout_text();
        assert!(stdout.starts_with("started\n"), "{stdout}");
        if quiet {
            assert_eq!(stdout, "started\n");
        }
        let took = done.exited.duration_since(started);
        assert!(took < Duration::from_secs(8), "{script}: cordon took {took:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Exit codes and signals
// ---------------------------------------------------------------------------------------------

#[test]
fn the_childs_exit_code_is_cordons() {
    let setup = Setup::new("run-exit");
    let config = setup.config(None, "redact");
    for (cmd, code) in [
        (vec!["sh", "-c", "exit 7"], 7),
        (vec!["true"], 0),
        (vec!["sh", "-c", "kill -KILL $$"], 137),
        (vec!["sh", "-c", "kill -TERM $$"], 143),
    ] {
        let done = setup.run(&config, &cmd);
        assert_eq!(done.code, code, "{cmd:?}; stderr:\n{}", done.stderr);
        assert_eq!(last_detail(&setup.records()), "cordon run stopped");
    }
    let done = setup.run(&config, &["cordon-test-no-such-command"]);
    assert_eq!(done.code, 127, "a missing command is 127");
    assert!(
        done.stderr.contains("cordon-test-no-such-command"),
        "cordon says what it could not start: {}",
        done.stderr
    );
}

#[test]
fn observe_mode_passes_the_exit_code_and_prints_an_inventory() {
    let setup = Setup::new("run-observe");
    let audit = setup.audit();
    let done = Running::start(cordon_run(
        &["--audit", audit.to_str().unwrap()],
        &["sh", "-c", "echo hello; exit 5"],
    ))
    .finish(LIMIT);
    assert_eq!(done.code, 5);
    assert_eq!(done.stdout_text(), "hello\n");
    assert!(done.stderr.contains("inventory"), "{}", done.stderr);
    assert_eq!(verify(&audit), 0);
    assert_eq!(last_detail(&records(&audit)), "cordon run stopped");
}

/// A child that handles `sig` by printing `got-<name>` and exiting with `code`, and says
/// `ready` once its handler is in place. The background sleep keeps the shell waiting in
/// `wait`, which a trapped signal interrupts.
fn trapping_child(sig: &str, code: i32) -> String {
    let name = sig.to_lowercase();
    format!(
        "trap 'kill $pid 2>/dev/null; echo got-{name}; exit {code}' {sig}; \
         sleep 10 >/dev/null 2>&1 & pid=$!; echo ready; wait $pid; echo not-signalled"
    )
}

#[test]
fn signals_to_cordon_reach_the_child_and_cordon_exits_with_its_code() {
    for (signal, name, code) in [
        (Signal::INT, "INT", 42),
        (Signal::TERM, "TERM", 43),
        (Signal::HUP, "HUP", 44),
        (Signal::WINCH, "WINCH", 45),
    ] {
        let setup = Setup::new("run-signal");
        let config = setup.config(None, "redact");
        let mut run =
            Running::start(setup.command(&config, &["sh", "-c", &trapping_child(name, code)]));
        run.wait_stdout("ready", Duration::from_secs(10));
        run.signal(signal);
        let done = run.finish(LIMIT);
        assert_eq!(done.code, code, "{name}: stderr:\n{}", done.stderr);
        assert_eq!(
            done.stdout_text(),
            format!("ready\ngot-{}\n", name.to_ascii_lowercase())
        );
        assert_eq!(verify(&setup.audit()), 0);
        assert_eq!(last_detail(&setup.records()), "cordon run stopped");
    }
}

#[test]
fn a_child_ignoring_sigterm_keeps_cordon_running_until_it_exits() {
    let setup = Setup::new("run-hung");
    let config = setup.config(None, "redact");
    // The child ignores TERM (so does its sleep, which inherits that) and finishes on its
    // own about 3 s later.
    let script = "trap '' TERM; echo ready; sleep 3; echo child-finished; exit 9";
    let mut run = Running::start(setup.command(&config, &["sh", "-c", script]));
    let ready = run.wait_stdout("ready", Duration::from_secs(10));
    run.signal(Signal::TERM);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(run.is_running(), "cordon waits for the child after SIGTERM");
    // A second TERM changes nothing either.
    run.signal(Signal::TERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        run.is_running(),
        "cordon still waits after a second SIGTERM"
    );
    let finished = run.wait_stdout("child-finished", Duration::from_secs(10));
    let done = run.finish(LIMIT);
    assert_eq!(done.code, 9, "stderr:\n{}", done.stderr);
    assert_eq!(done.stdout_text(), "ready\nchild-finished\n");
    assert!(
        finished.duration_since(ready) >= Duration::from_millis(2500),
        "the child ran its course"
    );
    assert!(done.exited >= finished, "cordon exited after the child");
    assert_eq!(verify(&setup.audit()), 0, "the trail verifies");
    let records = setup.records();
    assert_eq!(last_detail(&records), "cordon run stopped");
    assert!(
        records.iter().any(|r| r["detail"] == "cordon run started"),
        "the trail starts with the run"
    );
}

/// A client child that printed `status 200` and the origin's body for `path`: exit 0, the
/// credential injected and recorded, no secret anywhere cordon wrote.
fn assert_client_succeeded(setup: &Setup, origin: &Origin, done: &Done, client: &str, path: &str) {
    let out = setup.scrub(&done.stdout_text(), &[]);
    let err = setup.scrub(&done.stderr, &[]);
    assert_eq!(done.code, 0, "{client} succeeded: {out}\nstderr:\n{err}");
    assert!(out.contains("status 200"), "{client} got 200: {out}");
    assert!(
        out.contains(&format!("\"path\":\"{path}\"")),
        "{client} got the body: {out}"
    );
    assert_injected(origin, path, &setup.secret);
    assert_injection_recorded(&setup.records(), path);
    setup.assert_clean(done, &[]);
}

#[test]
fn the_proxy_answers_only_requests_carrying_the_runs_token() {
    let setup = Setup::new("run-proxy-token");
    let origin = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let config = setup.config(Some(origin.port()), "redact");
    let url = format!("https://origin.test:{}/v1/token", origin.port());
    // The same proxy without the token (as another local user would reach it), with a
    // wrong one, and as given.
    let script = format!(
        "bare=\"http://${{HTTPS_PROXY##*@}}\"; \
         curl -s -o /dev/null -w 'plain-bare:%{{http_code}}\\n' -x \"$bare\" http://origin.test:{port}/v1/token; \
         curl -s -o /dev/null -w 'connect-bare:%{{http_connect}}\\n' -x \"$bare\" {url}; \
         curl -s -o /dev/null -w 'wrong:%{{http_code}}\\n' -x \"http://cordon:0000@${{HTTPS_PROXY##*@}}\" http://origin.test:{port}/v1/token; \
         curl -s -o /dev/null -w 'given:%{{http_code}}\\n' {url}; \
         printf '%s' \"$HTTPS_PROXY\" > '{saved}'",
        port = origin.port(),
        saved = setup.dir.join("proxy-url").display()
    );
    let done = setup.run(&config, &["sh", "-c", &script]);
    let out = setup.scrub(&done.stdout_text(), &[]);
    for line in [
        "plain-bare:407",
        "connect-bare:407",
        "wrong:407",
        "given:200",
    ] {
        assert!(out.contains(line), "{line} in {out}");
    }
    let refused = setup
        .records()
        .iter()
        .filter(|r| r["reason"] == "proxy_auth_required")
        .count();
    assert_eq!(refused, 3, "each refusal is recorded");
    assert_eq!(origin.count(), 1, "only the request with the token arrived");
    // The token itself is in no record, log line or output of cordon's.
    let saved = std::fs::read_to_string(setup.dir.join("proxy-url")).unwrap();
    let token = saved
        .strip_prefix("http://cordon:")
        .and_then(|rest| rest.split_once('@'))
        .map(|(token, _)| token.to_owned())
        .expect("the child saw a proxy URL with a token");
    let trail = std::fs::read_to_string(setup.audit()).unwrap();
    assert!(
        !trail.contains(&token) && !done.stderr.contains(&token) && !out.contains(&token),
        "the proxy token appears in cordon's trail or output"
    );
    setup.assert_clean(&done, &[]);
}
