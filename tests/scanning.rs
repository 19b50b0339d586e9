//! Secret scanning in the request path, through the real binary: a held value never leaves
//! in a request, an echoed credential comes back redacted, and large bodies stream.

mod support;

use base64::Engine;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    origin_ca: TestCa,
    ca_file: PathBuf,
    dns: DnsServer,
}

impl Setup {
    fn new() -> Setup {
        let origin_ca = TestCa::new("origin test CA");
        let scratch = unique_temp_dir("scanning");
        let ca_file = origin_ca.write_pem(&scratch);
        let names = ["origin.test", "plain.test"];
        let records: Vec<(&str, IpAddr)> = names
            .iter()
            .map(|n| (*n, "127.0.0.1".parse().unwrap()))
            .collect();
        Setup {
            origin_ca,
            ca_file,
            dns: DnsServer::start(&records),
        }
    }

    fn config(&self, tls_port: u16, plain_port: u16, scanning: &str) -> String {
        format!(
            r#"version: 1
agent: {{ name: scan-test }}
listen: {{ proxy: "127.0.0.1:0", admin: "127.0.0.1:0" }}
dns: {{ upstream: ["{dns}"] }}
tls: {{ ca_dir: "{{dir}}/ca", extra_roots: ["{roots}"] }}
egress:
  - {{ host: origin.test, ports: [{tls_port}], allow_ips: [127.0.0.1/32], credential: demo }}
  - {{ host: plain.test, ports: [{plain_port}], allow_ips: [127.0.0.1/32] }}
credentials:
  demo: {{ source: {{ env: CORDON_TEST_DEMO }}, inject: {{ header: Authorization, value: "Bearer {{secret}}" }} }}
scanning: {scanning}
audit: {{ path: "{{dir}}/audit.jsonl", fsync: none }}
"#,
            dns = self.dns.addr(),
            roots = self.ca_file.display()
        )
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_held_credential_in_a_request_body_is_blocked_before_the_origin_sees_a_byte() {
    let setup = Setup::new();
    let tls = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let plain = Origin::plain();
    let secret = token("demo");
    let cordon = Cordon::start_with_env(
        &setup.config(tls.port(), plain.port(), "{ outbound: block }"),
        &[("CORDON_TEST_DEMO", &secret)],
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{{\"key\":\"{secret}\"}}"));
    for body in [format!("{{\"note\":\"{secret}\"}}"), b64.clone()] {
        for url in [
            format!("https://origin.test:{}/echo", tls.port()),
            format!("http://plain.test:{}/echo", plain.port()),
        ] {
            let (status, reply, _) = curl_via(&cordon, &["--data-binary", &body, &url]);
            assert_eq!(status, 403, "{url}");
            assert!(contains(&reply, "secret_in_request"));
        }
    }
    assert_eq!(
        tls.count() + plain.count(),
        0,
        "the origins received nothing"
    );
    let record = cordon.wait_for_records(|r| r["kind"] == "scan" && r["decision"] == "deny", WAIT);
    assert_eq!(record["findings"][0]["rule"], "credential:demo");
    assert_eq!(record["findings"][0]["direction"], "outbound");
    // The allowed twin: the same request without the value goes through, injected.
    let (status, _, _) = curl_via(
        &cordon,
        &[
            "--data-binary",
            "{\"note\":\"nothing secret\"}",
            &format!("https://origin.test:{}/echo", tls.port()),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(tls.count(), 1);
    assert_no_secret(cordon, &[&secret, &b64]);
}

#[test]
fn an_origin_echoing_the_injected_credential_reaches_the_agent_redacted() {
    let setup = Setup::new();
    let tls = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let plain = Origin::plain();
    let secret = token("demo");
    let cordon = Cordon::start_with_env(
        &setup.config(tls.port(), plain.port(), "{}"),
        &[("CORDON_TEST_DEMO", &secret)],
    );
    let (status, reply, _) = curl_via(
        &cordon,
        &[&format!("https://origin.test:{}/echo-headers", tls.port())],
    );
    assert_eq!(status, 200);
    let seen = tls.requests().pop().unwrap();
    assert!(
        seen.header("authorization")
            .is_some_and(|v| v.ends_with(secret.as_str())),
        "the origin got the credential"
    );
    assert!(
        !contains(&reply, &secret),
        "the echoed credential did not reach the agent"
    );
    assert!(
        contains(&reply, "[REDACTED:credential:demo]"),
        "{}",
        String::from_utf8_lossy(&reply).replace(&secret, "<secret>")
    );
    let record = cordon.wait_for_records(
        |r| r["kind"] == "scan" && r["findings"][0]["direction"] == "inbound",
        WAIT,
    );
    assert_eq!(record["findings"][0]["rule"], "credential:demo");
    assert_no_secret(cordon, &[&secret]);
}

#[test]
fn redact_and_log_modes_change_what_the_origin_receives() {
    let setup = Setup::new();
    let tls = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let plain = Origin::plain();
    let secret = token("demo");
    let body = format!("before {secret} after");
    let url = format!("http://plain.test:{}/echo", plain.port());

    let cordon = Cordon::start_with_env(
        &setup.config(tls.port(), plain.port(), "{ outbound: redact }"),
        &[("CORDON_TEST_DEMO", &secret)],
    );
    let (status, _, _) = curl_via(&cordon, &["--data-binary", &body, &url]);
    assert_eq!(status, 200);
    let seen = plain.requests().pop().unwrap();
    assert_eq!(seen.body, b"before [REDACTED:credential:demo] after");
    assert_no_secret(cordon, &[&secret]);

    let cordon = Cordon::start_with_env(
        &setup.config(tls.port(), plain.port(), "{ outbound: log, inbound: log }"),
        &[("CORDON_TEST_DEMO", &secret)],
    );
    let (status, _, _) = curl_via(&cordon, &["--data-binary", &body, &url]);
    assert_eq!(status, 200);
    assert!(
        plain.requests().pop().unwrap().body == body.as_bytes(),
        "log mode forwards unchanged"
    );
    let record = cordon.wait_for_records(|r| r["kind"] == "scan", WAIT);
    assert_eq!(record["decision"], "allow");
    assert_no_secret(cordon, &[&secret]);
}

#[test]
fn a_100_mib_body_streams_through_with_bounded_memory() {
    let setup = Setup::new();
    let tls = Origin::tls(&setup.origin_ca, &["origin.test"]);
    let plain = Origin::plain();
    let cordon = Cordon::start_with_env(
        &setup.config(tls.port(), plain.port(), "{}"),
        &[("CORDON_TEST_DEMO", &token("demo"))],
    );
    let file = cordon.dir().join("big.txt");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let line = b"2026-11-26T01:02:03Z INFO request served path=/v1/items status=200 bytes=1024 user=demo\n";
        let mut written = 0usize;
        while written < 100 * 1024 * 1024 {
            f.write_all(line).unwrap();
            written += line.len();
        }
    }
    let size = std::fs::metadata(&file).unwrap().len();
    let data = format!("@{}", file.display());
    let (status, reply, _) = curl_via(
        &cordon,
        &[
            "--data-binary",
            &data,
            "-H",
            "Content-Type: text/plain",
            &format!("http://plain.test:{}/sink", plain.port()),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        size.to_string(),
        "every byte arrived"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", cordon.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        peak_kib < 64 * 1024,
        "cordon's peak RSS was {peak_kib} KiB for a {size}-byte body"
    );
}
