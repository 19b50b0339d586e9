//! The proxy core through the real binary: allowed traffic arrives intact, every refusal
//! carries the right reason, and each refusal's allowed twin goes through.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A config with one DNS upstream and the given egress/deny YAML (indented list items).
fn config(dns: &DnsServer, egress: &str, deny: &str, mode: &str) -> String {
    format!(
        r#"version: 1
agent: {{ name: test-agent, instance: t-1 }}
mode: {mode}
listen: {{ proxy: "127.0.0.1:0", admin: "127.0.0.1:0" }}
dns: {{ upstream: ["{dns}"] }}
egress:
{egress}
deny:
{deny}
audit: {{ path: "{{dir}}/audit.jsonl", fsync: none }}
"#,
        dns = dns.addr()
    )
}

/// The egress entry that lets tests reach their loopback origin at `origin.test`.
fn origin_rule(port: u16) -> String {
    format!("  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32] }}")
}

fn loopback(name: &str) -> (String, IpAddr) {
    (name.to_string(), "127.0.0.1".parse().unwrap())
}

fn dns_for(names: &[&str]) -> DnsServer {
    let records: Vec<(String, IpAddr)> = names.iter().map(|n| loopback(n)).collect();
    let borrowed: Vec<(&str, IpAddr)> = records.iter().map(|(n, ip)| (n.as_str(), *ip)).collect();
    DnsServer::start(&borrowed)
}

fn get(proxy: SocketAddr, url: &str, extra_headers: &str) -> Vec<u8> {
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    let request = format!(
        "GET {url} HTTP/1.1\r\nHost: {authority}\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    raw_request(proxy, request.as_bytes())
}

fn body_json(response: &[u8]) -> serde_json::Value {
    serde_json::from_slice(raw_body(response))
        .unwrap_or_else(|_| panic!("JSON body in {}", String::from_utf8_lossy(response)))
}

/// Asserts a cordon deny: status, the three headers, the JSON body, and the audit record.
fn assert_denied(cordon: &Cordon, response: &[u8], status: u16, reason: &str) -> String {
    let text = String::from_utf8_lossy(response).to_string();
    assert_eq!(parse_status(response), status, "{text}");
    assert_eq!(
        header(response, "x-cordon-decision").as_deref(),
        Some("deny"),
        "{text}"
    );
    assert_eq!(
        header(response, "x-cordon-reason").as_deref(),
        Some(reason),
        "{text}"
    );
    let id = header(response, "x-cordon-decision-id").expect("decision id header");
    let body = body_json(response);
    assert_eq!(body["reason"], reason);
    assert_eq!(body["decision_id"], id.as_str());
    assert!(body["hint"].as_str().is_some_and(|h| !h.is_empty()));
    let record = cordon.wait_for_records(|r| r["decision_id"] == id.as_str(), WAIT);
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["reason"], reason);
    assert_eq!(record["kind"], "http");
    assert_eq!(record["agent"], "test-agent");
    id
}

#[test]
fn allowed_requests_reach_the_origin_intact() {
    let origin = Origin::plain();
    let dns = dns_for(&["origin.test"]);
    let port = origin.port();
    let cordon = Cordon::start(&config(&dns, &origin_rule(port), "  []", "enforce"));
    let proxy = cordon.proxy_addr();

    // GET with repeated and oddly cased headers, plus cordon's own headers to strip.
    let request = format!(
        "GET http://origin.test:{port}/a/b?q=1&r=%2F HTTP/1.1\r\nHost: origin.test:{port}\r\nX-Trace: one\r\nx-trace: two\r\nAccept: */*\r\nProxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\nX-Cordon-Intent: list things\r\nConnection: close\r\n\r\n"
    );
    let response = raw_request(proxy, request.as_bytes());
    assert_eq!(
        parse_status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    let seen = origin.requests().pop().expect("origin saw the request");
    assert_eq!(seen.method, http::Method::GET);
    assert_eq!(
        seen.target, "/a/b?q=1&r=%2F",
        "origin-form target with the query untouched"
    );
    assert_eq!(
        seen.header("host"),
        Some(format!("origin.test:{port}").as_str())
    );
    assert_eq!(seen.header_all("x-trace"), vec!["one", "two"]);
    assert_eq!(seen.header("proxy-authorization"), None);
    assert_eq!(seen.header("x-cordon-intent"), None);
    let record = cordon.wait_for_records(|r| r["decision"] == "allow" && r["path"] == "/a/b", WAIT);
    assert_eq!(record["intent"], "list things");
    assert_eq!(record["status"], 200);
    assert_eq!(record["ip"], "127.0.0.1");
    assert!(
        record.get("query").is_none() && !record.to_string().contains("q=1"),
        "the query is not recorded"
    );

    // POST with content-length, then chunked, then 100-continue.
    let body = b"{\"k\":\"v\",\"bin\":\"\x01\x02\xff\"}";
    let mut request = format!(
        "POST http://origin.test:{port}/echo HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let response = raw_request(proxy, &request);
    assert_eq!(parse_status(&response), 200);
    assert_eq!(raw_body(&response), body, "echoed back byte for byte");
    assert_eq!(origin.requests().pop().unwrap().body, body);

    let chunked = format!(
        "POST http://origin.test:{port}/echo HTTP/1.1\r\nHost: origin.test:{port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    );
    let response = raw_request(proxy, chunked.as_bytes());
    assert_eq!(parse_status(&response), 200);
    let seen = origin.requests().pop().unwrap();
    assert_eq!(seen.body, b"hello, world");
    assert!(seen.body_complete);

    let mut stream = std::net::TcpStream::connect(proxy).unwrap();
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "PUT http://origin.test:{port}/echo HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    stream.write_all(b"data").unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert_eq!(
        parse_status(&rest),
        200,
        "{}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(raw_body(&rest), b"data");

    // A real client: curl through the proxy.
    let (code, out, err) = curl(&[
        "-x",
        &format!("http://{proxy}"),
        &format!("http://origin.test:{port}/1k"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), 1024);
}

#[test]
fn connect_tunnels_carry_tls_end_to_end() {
    let ca = TestCa::new("origin test CA");
    let origin = Origin::tls(&ca, &["origin.test"]);
    let dns = dns_for(&["origin.test"]);
    let port = origin.port();
    let cordon = Cordon::start(&config(
        &dns,
        &format!("  - {{ host: origin.test, ports: [{port}], allow_ips: [127.0.0.1/32], tls: passthrough }}"),
        "  []",
        "enforce",
    ));
    let ca_file = ca.write_pem(cordon.dir());
    let (code, out, err) = curl(&[
        "-x",
        &format!("http://{}", cordon.proxy_addr()),
        "--cacert",
        ca_file.to_str().unwrap(),
        &format!("https://origin.test:{port}/1k"),
    ]);
    assert_eq!(
        code, 0,
        "curl verified the origin's own certificate through the tunnel: {err}"
    );
    assert_eq!(out.len(), 1024);
    let seen = origin.requests().pop().unwrap();
    assert!(seen.tls);
    assert_eq!(seen.sni.as_deref(), Some("origin.test"));
    let record = cordon.wait_for_records(
        |r| r["method"] == "CONNECT" && r["decision"] == "allow",
        WAIT,
    );
    assert_eq!(record["sni"], "origin.test");
    assert_eq!(record["port"], port);
    assert!(record["bytes_in"].as_u64().unwrap() > 1024);

    // The allowed twin of the SNI check above: a mismatched SNI never reaches the origin.
    let before = origin.count();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = cordon.proxy_addr();
    let config = ca.client_config();
    let outcome = runtime.block_on(async move {
        let stream = open_tunnel(proxy, "origin.test", port).await;
        tls_connect(stream, "other.test", config).await.map(|_| ())
    });
    let err = outcome.expect_err("a ClientHello for another name is refused");
    assert!(
        err.to_string().to_lowercase().contains("denied") || err.to_string().contains("alert"),
        "{err}"
    );
    let record = cordon.wait_for_records(|r| r["reason"] == "sni_mismatch", WAIT);
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["sni"], "other.test");
    assert_eq!(origin.count(), before, "nothing reached the origin");
}

#[test]
fn refusals_carry_their_reason_and_allowed_twins_pass() {
    let origin = Origin::plain();
    let dns = dns_for(&[
        "origin.test",
        "other.test",
        "a.example.com",
        "a.b.example.com",
        "example.com",
        "evilexample.com",
    ]);
    let port = origin.port();
    let egress = format!(
        r#"  - host: origin.test
    ports: [{port}]
    allow_ips: [127.0.0.1/32]
    tls: passthrough
    rules:
      - {{ methods: [GET, POST], paths: ["/repos/acme/**"] }}
  - {{ host: "*.example.com", ports: [{port}], allow_ips: [127.0.0.1/32] }}"#
    );
    let cordon = Cordon::start(&config(&dns, &egress, "  []", "enforce"));
    let proxy = cordon.proxy_addr();
    let base = format!("http://origin.test:{port}");

    // Allowed twin first: the rules let this through.
    let ok = get(proxy, &format!("{base}/repos/acme/web"), "");
    assert_eq!(parse_status(&ok), 200, "{}", String::from_utf8_lossy(&ok));

    // A host not in the list.
    let r = get(
        proxy,
        &format!("http://other.test:{port}/repos/acme/web"),
        "",
    );
    assert_denied(&cordon, &r, 403, "not_allowed");

    // A denied method, and its twin.
    let del = raw_request(proxy, format!("DELETE {base}/repos/acme/web HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: close\r\n\r\n").as_bytes());
    assert_denied(&cordon, &del, 403, "not_allowed");
    let post = raw_request(proxy, format!("POST {base}/repos/acme/web HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
    assert_eq!(parse_status(&post), 200);

    // A path outside the rules, and segment alignment.
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos/other"), ""),
        403,
        "not_allowed",
    );
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos/acme-private/x"), ""),
        403,
        "not_allowed",
    );

    // Dot segments are resolved before matching, so climbing out is outside the rules.
    let before = origin.count();
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos/acme/../other"), ""),
        403,
        "not_allowed",
    );
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos/acme/%2e%2e/other"), ""),
        403,
        "not_allowed",
    );
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos/acme/%2E%2E/%2e%2e/x"), ""),
        403,
        "not_allowed",
    );
    // Ambiguous encodings are refused as such.
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos/acme%2Fweb"), ""),
        403,
        "ambiguous_path",
    );
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos/acme/%2f"), ""),
        403,
        "ambiguous_path",
    );
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos//acme/web"), ""),
        403,
        "ambiguous_path",
    );
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos/acme/..;/web"), ""),
        403,
        "ambiguous_path",
    );
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/repos/acme/%c0%ae%c0%ae/x"), ""),
        403,
        "ambiguous_path",
    );
    assert_eq!(
        origin.count(),
        before,
        "no refused request reached the origin"
    );
    // Their twin: dot segments that stay inside the rules are resolved and forwarded.
    let ok = get(proxy, &format!("{base}/repos/acme/x/../%77eb"), "");
    assert_eq!(parse_status(&ok), 200);
    assert_eq!(
        origin.requests().pop().unwrap().target,
        "/repos/acme/web",
        "the origin sees the normalised path"
    );

    // Host header that differs from the absolute URI.
    let r = raw_request(proxy, format!("GET {base}/repos/acme/web HTTP/1.1\r\nHost: other.test:{port}\r\nConnection: close\r\n\r\n").as_bytes());
    assert_denied(&cordon, &r, 403, "host_mismatch");
    let r = raw_request(
        proxy,
        format!(
            "GET {base}/repos/acme/web HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_denied(&cordon, &r, 403, "host_mismatch");

    // Wildcards: one or more labels, never the apex or a look-alike.
    assert_eq!(
        parse_status(&get(proxy, &format!("http://a.example.com:{port}/"), "")),
        200
    );
    assert_eq!(
        parse_status(&get(proxy, &format!("http://a.b.example.com:{port}/"), "")),
        200
    );
    assert_denied(
        &cordon,
        &get(proxy, &format!("http://example.com:{port}/"), ""),
        403,
        "not_allowed",
    );
    assert_denied(
        &cordon,
        &get(proxy, &format!("http://evilexample.com:{port}/"), ""),
        403,
        "not_allowed",
    );

    // An IP literal is matched as written: no rule names 127.0.0.1.
    assert_denied(
        &cordon,
        &get(
            proxy,
            &format!("http://127.0.0.1:{port}/repos/acme/web"),
            "",
        ),
        403,
        "not_allowed",
    );

    // Ports: only the listed one, for plain requests and for CONNECT.
    assert_denied(
        &cordon,
        &get(proxy, "http://origin.test:8081/repos/acme/web", ""),
        403,
        "not_allowed",
    );
    let r = raw_request(
        proxy,
        format!(
            "CONNECT a.example.com:{} HTTP/1.1\r\nHost: a.example.com:{}\r\n\r\n",
            port + 1,
            port + 1
        )
        .as_bytes(),
    );
    assert_denied(&cordon, &r, 403, "not_allowed");
    let r = raw_request(
        proxy,
        format!("CONNECT a.example.com:{port} HTTP/1.1\r\nHost: a.example.com:{port}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(parse_status(&r), 200, "{}", String::from_utf8_lossy(&r));
    // Method/path rules cannot be enforced inside a passthrough tunnel: refused. (Without
    // `tls: passthrough` such an entry is intercepted; tests/intercept.rs covers that.)
    let r = raw_request(
        proxy,
        format!("CONNECT origin.test:{port} HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n")
            .as_bytes(),
    );
    assert_denied(&cordon, &r, 403, "not_allowed");
    // An IP literal CONNECT with no rule for it.
    let r = raw_request(
        proxy,
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
    );
    assert_denied(&cordon, &r, 403, "not_allowed");
}

#[test]
fn a_changed_host_on_a_kept_alive_connection_is_refused() {
    let origin = Origin::plain();
    let dns = dns_for(&["origin.test"]);
    let port = origin.port();
    let cordon = Cordon::start(&config(&dns, &origin_rule(port), "  []", "enforce"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = cordon.proxy_addr();
    let (first, second, third) = runtime.block_on(async move {
        use bytes::Bytes;
        use http_body_util::{BodyExt, Empty};
        let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut statuses = Vec::new();
        for host in [
            format!("origin.test:{port}"),
            format!("evil.test:{port}"),
            format!("origin.test:{port}"),
        ] {
            let req = http::Request::get(format!("http://origin.test:{port}/x"))
                .header("host", host)
                .body(Empty::new())
                .unwrap();
            sender.ready().await.unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let reason = resp
                .headers()
                .get("x-cordon-reason")
                .map(|v| v.to_str().unwrap().to_owned());
            let _ = resp.into_body().collect().await;
            statuses.push((status, reason));
        }
        (
            statuses[0].clone(),
            statuses[1].clone(),
            statuses[2].clone(),
        )
    });
    assert_eq!(first, (200, None));
    assert_eq!(second, (403, Some("host_mismatch".to_owned())));
    assert_eq!(
        third,
        (200, None),
        "the same connection keeps serving its allowed twin"
    );
    assert_eq!(origin.count(), 2);
}

#[test]
fn special_addresses_are_refused_unless_listed() {
    // 127.0.0.2 and the IPv4-mapped ::ffff:127.0.0.1 are loopback: both stay on this host.
    let origin = Origin::plain_on("127.0.0.2:0".parse().unwrap());
    let port = origin.port();
    let dns = DnsServer::start(&[
        ("loop2.test", "127.0.0.2".parse().unwrap()),
        ("listed.test", "127.0.0.2".parse().unwrap()),
        ("mapped.test", "::ffff:127.0.0.2".parse().unwrap()),
        ("mapped1.test", "::ffff:127.0.0.1".parse().unwrap()),
        ("mixed.test", "127.0.0.2".parse().unwrap()),
        ("mixed.test", "127.0.0.3".parse().unwrap()),
    ]);
    let egress = format!(
        r#"  - {{ host: loop2.test, ports: [{port}] }}
  - {{ host: listed.test, ports: [{port}], allow_ips: ["127.0.0.2"] }}
  - {{ host: mapped.test, ports: [{port}], allow_ips: ["127.0.0.2"] }}
  - {{ host: mapped1.test, ports: [{port}], allow_ips: [127.0.0.0/8] }}
  - {{ host: mixed.test, ports: [{port}], allow_ips: ["127.0.0.2"] }}
  - {{ host: "127.0.0.2", ports: [{port}] }}"#
    );
    let cordon = Cordon::start(&config(&dns, &egress, "  []", "enforce"));
    let proxy = cordon.proxy_addr();

    let r = get(proxy, &format!("http://loop2.test:{port}/"), "");
    assert_denied(&cordon, &r, 403, "forbidden_address");
    assert!(body_json(&r)["hint"].as_str().unwrap().contains("loopback"));
    // allow_ips is literal: listing the IPv4 address does not allow its IPv6-mapped form.
    let r = get(proxy, &format!("http://mapped.test:{port}/"), "");
    assert_denied(&cordon, &r, 403, "forbidden_address");
    let r = get(proxy, &format!("http://mapped1.test:{port}/"), "");
    assert_denied(&cordon, &r, 403, "forbidden_address");
    let r = get(proxy, &format!("http://127.0.0.2:{port}/"), "");
    assert_denied(&cordon, &r, 403, "forbidden_address");
    // One unlisted address among the answers refuses the name (no picking between them).
    let r = get(proxy, &format!("http://mixed.test:{port}/"), "");
    assert_denied(&cordon, &r, 403, "forbidden_address");
    let r = raw_request(
        proxy,
        format!("CONNECT loop2.test:{port} HTTP/1.1\r\nHost: loop2.test:{port}\r\n\r\n").as_bytes(),
    );
    assert_denied(&cordon, &r, 403, "forbidden_address");
    assert_eq!(origin.count(), 0, "nothing reached the loopback origin");

    // The twin: the same address listed in allow_ips goes through.
    let r = get(proxy, &format!("http://listed.test:{port}/"), "");
    assert_eq!(parse_status(&r), 200, "{}", String::from_utf8_lossy(&r));
    assert_eq!(origin.count(), 1);
}

#[test]
fn deny_rules_beat_egress_rules() {
    let origin = Origin::plain();
    let dns = dns_for(&["origin.test"]);
    let port = origin.port();
    let cordon = Cordon::start(&config(
        &dns,
        &origin_rule(port),
        "  - { host: origin.test, methods: [DELETE] }\n  - { host: origin.test, paths: [\"/admin/**\"] }",
        "enforce",
    ));
    let proxy = cordon.proxy_addr();
    let base = format!("http://origin.test:{port}");
    let r = raw_request(
        proxy,
        format!(
            "DELETE {base}/x HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_denied(&cordon, &r, 403, "boundary");
    assert_denied(
        &cordon,
        &get(proxy, &format!("{base}/admin/users"), ""),
        403,
        "boundary",
    );
    assert_eq!(parse_status(&get(proxy, &format!("{base}/x"), "")), 200);
    assert_eq!(
        parse_status(&get(proxy, &format!("{base}/administrator"), "")),
        200
    );
    assert_eq!(origin.count(), 2);
}

#[test]
fn observe_mode_allows_and_records_would_deny() {
    let origin = Origin::plain();
    let dns = dns_for(&["origin.test", "other.test"]);
    let port = origin.port();
    let cordon = Cordon::start(&config(
        &dns,
        &origin_rule(port),
        "  - { host: origin.test, methods: [DELETE] }",
        "observe",
    ));
    let proxy = cordon.proxy_addr();
    let r = get(proxy, &format!("http://other.test:{port}/x"), "");
    assert_eq!(parse_status(&r), 200, "observe mode lets it through");
    let record = cordon.wait_for_records(|r| r["host"] == "other.test", WAIT);
    assert_eq!(record["decision"], "would_deny");
    // other.test has no rule, so it is not_allowed first (its address would be refused too).
    assert_eq!(record["reason"], "not_allowed");
    let r = raw_request(proxy, format!("DELETE http://origin.test:{port}/x HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: close\r\n\r\n").as_bytes());
    assert_eq!(parse_status(&r), 200);
    let record = cordon.wait_for_records(|r| r["method"] == "DELETE", WAIT);
    assert_eq!(record["decision"], "would_deny");
    assert_eq!(record["reason"], "boundary");
    assert_eq!(origin.count(), 2);
    // An allowed request is plainly allowed.
    assert_eq!(
        parse_status(&get(proxy, &format!("http://origin.test:{port}/ok"), "")),
        200
    );
    let record = cordon.wait_for_records(|r| r["path"] == "/ok", WAIT);
    assert_eq!(record["decision"], "allow");
    assert!(record.get("reason").is_none());
}

#[test]
fn malformed_requests_get_400_a_record_and_the_proxy_keeps_serving() {
    let origin = Origin::plain();
    let dns = dns_for(&["origin.test"]);
    let port = origin.port();
    let cordon = Cordon::start(&config(&dns, &origin_rule(port), "  []", "enforce"));
    let proxy = cordon.proxy_addr();
    let base = format!("http://origin.test:{port}");
    let count_malformed = || {
        cordon
            .audit_records()
            .iter()
            .filter(|r| r["reason"] == "malformed_request")
            .count()
    };

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage", b"\x16\x03\x01\x00\xffgarbage\r\n\r\n".to_vec(), 400),
        ("no request line", b"\r\n\r\nHello there\r\n\r\n".to_vec(), 400),
        ("oversized head", format!("GET {base}/ HTTP/1.1\r\nHost: origin.test:{port}\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024)).into_bytes(), 400),
        ("huge head", format!("GET {base}/ HTTP/1.1\r\nHost: origin.test:{port}\r\nX-Big: {}\r\n\r\n", "a".repeat(600 * 1024)).into_bytes(), 431),
        ("bad chunk size", format!("POST {base}/echo HTTP/1.1\r\nHost: origin.test:{port}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n").into_bytes(), 400),
        ("CL then TE", format!("POST {base}/echo HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: origin.test\r\n\r\n").into_bytes(), 400),
        ("TE then CL", format!("POST {base}/echo HTTP/1.1\r\nHost: origin.test:{port}\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n").into_bytes(), 400),
        ("two different lengths", format!("POST {base}/echo HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab").into_bytes(), 400),
        ("origin-form to a proxy", format!("GET /x HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n").into_bytes(), 400),
        ("https in absolute form", format!("GET https://origin.test:{port}/ HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n").into_bytes(), 400),
        ("userinfo", format!("GET http://user:pw@origin.test:{port}/ HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n").into_bytes(), 400),
        ("two Host headers", format!("GET {base}/ HTTP/1.1\r\nHost: origin.test:{port}\r\nHost: origin.test:{port}\r\n\r\n").into_bytes(), 400),
        ("alternate IPv4 spelling", format!("GET http://2130706433:{port}/ HTTP/1.1\r\nHost: 2130706433:{port}\r\n\r\n").into_bytes(), 400),
    ];
    for (i, (name, bytes, status)) in cases.iter().enumerate() {
        let response = raw_request(proxy, bytes);
        assert_eq!(
            parse_status(&response),
            *status,
            "{name}: {}",
            String::from_utf8_lossy(&response)
        );
        let deadline = std::time::Instant::now() + WAIT;
        while count_malformed() < i + 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: no malformed_request record"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // After each, another client is served normally.
        let ok = get(proxy, &format!("{base}/1k"), "");
        assert_eq!(parse_status(&ok), 200, "after {name}");
    }
    assert!(
        origin
            .requests()
            .iter()
            .all(|r| r.path() != "/smuggled" && r.path() != "/echo"),
        "nothing malformed was forwarded"
    );
}

#[test]
fn metrics_health_and_a_verifiable_trail_after_shutdown() {
    let origin = Origin::plain();
    let dns = dns_for(&["origin.test"]);
    let port = origin.port();
    let cordon = Cordon::start(&config(&dns, &origin_rule(port), "  []", "enforce"));
    let proxy = cordon.proxy_addr();
    let admin = cordon.admin_addr();
    assert_eq!(
        parse_status(&get(proxy, &format!("http://origin.test:{port}/1k"), "")),
        200
    );
    assert_eq!(
        parse_status(&get(proxy, &format!("http://nope.test:{port}/"), "")),
        403
    );
    cordon.wait_for_records(|r| r["host"] == "nope.test", WAIT);

    let (code, out, _) = curl(&[&format!("http://{admin}/metrics")]);
    assert_eq!(code, 0);
    let metrics = String::from_utf8(out).unwrap();
    assert!(
        metrics.contains(r#"cordon_requests_total{decision="allow",reason=""} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"cordon_requests_total{decision="deny",reason="not_allowed"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("cordon_request_duration_seconds_bucket"));
    assert!(metrics.contains("cordon_audit_records_total"));
    let (_, out, _) = curl(&[&format!("http://{admin}/healthz")]);
    assert_eq!(out, b"ok\n");
    let (_, out, _) = curl(&[&format!("http://{admin}/readyz")]);
    assert_eq!(out, b"ready\n");
    // The admin endpoints are not reachable through the proxy (no rule, loopback).
    assert_eq!(
        parse_status(&get(proxy, &format!("http://{admin}/metrics"), "")),
        403
    );

    // A slow request in flight when SIGTERM arrives still completes.
    let slow = std::thread::spawn(move || {
        get(
            proxy,
            &format!("http://origin.test:{port}/slow?ms=1500"),
            "",
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let dir = cordon.dir().to_path_buf();
    assert_eq!(cordon.stop(), 0);
    let slow = slow.join().unwrap();
    assert_eq!(parse_status(&slow), 200, "in-flight request drained");
    let trail = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(trail.contains("/slow"), "the drained request was recorded");
    assert!(trail.contains("serve stopped"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["audit", "verify"])
        .arg(dir.join("audit.jsonl"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unwritable_audit_trail_refuses_all_traffic() {
    let origin = Origin::plain();
    let dns = dns_for(&["origin.test"]);
    let port = origin.port();
    let yaml = config(&dns, &origin_rule(port), "  []", "enforce")
        .replace("{dir}/audit.jsonl", "/dev/full");
    let cordon = Cordon::start(&yaml);
    let proxy = cordon.proxy_addr();
    // The first records fail to write; from then on every request is refused.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = get(proxy, &format!("http://origin.test:{port}/1k"), "");
        if parse_status(&r) == 503 {
            assert_eq!(
                header(&r, "x-cordon-reason").as_deref(),
                Some("audit_unavailable")
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "audit failure never refused traffic"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, out, _) = curl(&[&format!("http://{}/readyz", cordon.admin_addr())]);
    assert_eq!(out, b"audit trail unavailable\n");
}

#[test]
fn a_tunnel_open_past_the_drain_limit_is_closed_and_recorded() {
    let ca = TestCa::new("origin test CA");
    let origin = Origin::tls(&ca, &["origin.test"]);
    let dns = dns_for(&["origin.test"]);
    let port = origin.port();
    let cordon = Cordon::start(&config(&dns, &origin_rule(port), "  []", "enforce"));
    let proxy = cordon.proxy_addr();
    let client = ca.client_config();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // An idle TLS session through a tunnel, held open across SIGTERM.
    let _tls = runtime.block_on(async move {
        let stream = open_tunnel(proxy, "origin.test", port).await;
        tls_connect(stream, "origin.test", client)
            .await
            .expect("TLS through the tunnel")
    });
    let dir = cordon.dir().to_path_buf();
    let started = std::time::Instant::now();
    assert_eq!(cordon.stop(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown is bounded"
    );
    let trail = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let tunnel: serde_json::Value = trail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["method"] == "CONNECT")
        .expect("the cut tunnel has its record");
    assert_eq!(tunnel["decision"], "allow");
    assert_eq!(tunnel["detail"], "tunnel closed at shutdown");
    assert!(trail.contains("serve stopped"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plain_requests_fall_back_to_the_next_checked_address() {
    // origin.test resolves to two loopback addresses; nothing listens on the first.
    let origin = Origin::plain();
    let dns = DnsServer::start(&[
        ("origin.test", "127.0.0.3".parse().unwrap()),
        ("origin.test", "127.0.0.1".parse().unwrap()),
    ]);
    let cordon = Cordon::start(&config(
        &dns,
        &format!(
            "  - {{ host: origin.test, ports: [{}], allow_ips: [127.0.0.0/8] }}",
            origin.port()
        ),
        "  []",
        "enforce",
    ));
    let url = format!("http://origin.test:{}/fallback", origin.port());
    let response = get(cordon.proxy_addr(), &url, "");
    assert_eq!(
        parse_status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("host"),
        Some(format!("origin.test:{}", origin.port()).as_str())
    );
    let record = cordon.wait_for_records(|r| r["kind"] == "http" && r["path"] == "/fallback", WAIT);
    assert_eq!(
        record["ip"], "127.0.0.1",
        "the record names the address dialled"
    );
    // A name resolving only to addresses nobody listens on is still a readable 502.
    let dead = DnsServer::start(&[("origin.test", "127.0.0.3".parse().unwrap())]);
    let cordon = Cordon::start(&config(
        &dead,
        &format!(
            "  - {{ host: origin.test, ports: [{}], allow_ips: [127.0.0.0/8] }}",
            origin.port()
        ),
        "  []",
        "enforce",
    ));
    let response = get(cordon.proxy_addr(), &url, "");
    assert_denied(&cordon, &response, 502, "upstream_unreachable");
}

#[test]
fn a_pinned_address_name_from_the_agent_is_resolved_like_any_other_never_decoded() {
    // cordon writes the addresses it checked into the upstream URI as
    // `4-a-b-c-d.cordon-pinned.invalid`; an agent writing such a name itself gets it
    // resolved (here: it does not resolve) and checked like any name, even in observe mode
    // and even where the policy allows the name.
    let origin = Origin::plain();
    let dns = dns_for(&["origin.test"]);
    let port = origin.port();
    let pinned = "4-127-0-0-1.cordon-pinned.invalid";
    let cordon = Cordon::start(&config(
        &dns,
        &format!("  - {{ host: \"{pinned}\", ports: [{port}], allow_ips: [127.0.0.1/32] }}"),
        "  []",
        "observe",
    ));
    let proxy = cordon.proxy_addr();
    let r = get(proxy, &format!("http://{pinned}:{port}/pinned"), "");
    assert_denied(&cordon, &r, 502, "dns_failure");
    assert!(
        dns.queries_for(pinned) > 0,
        "the name was asked about, not decoded"
    );
    // Named only in Host, it is a host mismatch (let through in observe mode to the URI's
    // destination, which cordon checked), never a destination of its own.
    let r = raw_request(
        proxy,
        format!(
            "GET http://origin.test:{port}/host-only HTTP/1.1\r\nHost: {pinned}:{port}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(parse_status(&r), 200, "{}", String::from_utf8_lossy(&r));
    let seen: Vec<String> = origin.requests().iter().map(|r| r.path()).collect();
    assert!(seen.iter().all(|p| p != "/pinned"), "{seen:?}");
    let record = cordon.wait_for_records(|r| r["path"] == "/host-only", WAIT);
    assert_eq!(
        record["host"],
        "origin.test",
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert_eq!(record["reason"], "host_mismatch");
}

#[test]
fn observe_mode_records_the_deny_boundary_even_behind_an_earlier_refusal() {
    // A request the deny boundary refuses, made to look like something else first (a Host
    // header that does not match): its record must still say `boundary`, or a policy
    // suggested from the trail would allow what the boundary forbids.
    let origin = Origin::plain();
    let dns = dns_for(&["origin.test", "other.test"]);
    let port = origin.port();
    let cordon = Cordon::start(&config(
        &dns,
        &origin_rule(port),
        "  - { host: origin.test, methods: [DELETE] }",
        "observe",
    ));
    let proxy = cordon.proxy_addr();
    let r = raw_request(
        proxy,
        format!(
            "DELETE http://origin.test:{port}/forbidden HTTP/1.1\r\nHost: other.test:{port}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(parse_status(&r), 200, "observe mode lets it through");
    let record = cordon.wait_for_records(|r| r["path"] == "/forbidden", WAIT);
    assert_eq!(record["decision"], "would_deny");
    assert_eq!(record["reason"], "boundary", "{record}");
    let trail = cordon.audit_path();
    assert_eq!(cordon.stop(), 0);
    let suggested = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["policy", "suggest", "--from"])
        .arg(&trail)
        .output()
        .expect("cordon policy suggest runs");
    assert!(suggested.status.success(), "{suggested:?}");
    let yaml = String::from_utf8_lossy(&suggested.stdout);
    assert!(!yaml.contains("/forbidden\""), "{yaml}");
}
