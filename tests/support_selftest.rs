//! Checks the shared test fixtures themselves, without cordon in between, so a failing
//! integration test points at cordon and not at its harness.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::*;

#[test]
fn plain_origin_answers_each_path_and_records_requests() {
    let origin = Origin::plain();

    let one_k = raw_request(
        origin.addr(),
        b"GET /1k HTTP/1.1\r\nHost: a.test\r\nX-Dup: 1\r\nX-Dup: 2\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(parse_status(&one_k), 200);
    assert_eq!(raw_body(&one_k), vec![b'x'; 1024].as_slice());

    let echo = raw_request(
        origin.addr(),
        b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Type: text/x-test\r\n\
          Content-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(parse_status(&echo), 200);
    assert_eq!(
        header(&echo, "content-type").as_deref(),
        Some("text/x-test")
    );
    assert_eq!(raw_body(&echo), b"hello");

    let teapot = raw_request(
        origin.addr(),
        b"GET /status/418 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(parse_status(&teapot), 418);

    let chunked = raw_request(
        origin.addr(),
        b"GET /chunked HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        header(&chunked, "transfer-encoding").as_deref(),
        Some("chunked")
    );
    let body = String::from_utf8_lossy(raw_body(&chunked)).into_owned();
    assert!(
        body.contains("chunk-one") && body.contains("chunk-four"),
        "{body}"
    );

    let slow = raw_request(
        origin.addr(),
        b"GET /slow?ms=50 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(parse_status(&slow), 200);

    let other = raw_request(
        origin.addr(),
        b"DELETE /any/thing?q=1 HTTP/1.1\r\nHost: b.test:8080\r\nConnection: close\r\n\r\n",
    );
    let summary: serde_json::Value = serde_json::from_slice(raw_body(&other)).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"method": "DELETE", "path": "/any/thing", "host": "b.test:8080"})
    );

    let seen = origin.requests();
    assert_eq!(origin.count(), 6);
    assert_eq!(seen[0].target, "/1k");
    assert_eq!(seen[0].header_all("x-dup"), vec!["1", "2"]);
    assert_eq!(seen[0].version, http::Version::HTTP_11);
    assert!(!seen[0].tls);
    assert_eq!(seen[1].method, http::Method::POST);
    assert_eq!(seen[1].body, b"hello");
    assert!(seen[1].body_complete);
    assert_eq!(seen[5].target, "/any/thing?q=1");
    assert_eq!(seen[5].path(), "/any/thing");
    assert_eq!(seen[5].header("Host"), Some("b.test:8080"));
}

#[tokio::test]
async fn tls_origin_presents_a_leaf_from_the_test_ca() {
    let ca = TestCa::new("cordon test CA");
    let origin = Origin::tls(&ca, &["origin.test"]);

    for name in ["origin.test", "127.0.0.1"] {
        let tcp = tokio::net::TcpStream::connect(origin.addr()).await.unwrap();
        let tls = tls_connect(tcp, name, ca.client_config()).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get("/1k")
            .header("host", name)
            .body(Empty::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 1024);
        assert!(body.iter().all(|b| *b == b'x'));
    }

    let seen = origin.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.tls && r.target == "/1k"));
    assert_eq!(seen[0].sni.as_deref(), Some("origin.test"));
    // Clients send no SNI for IP literals.
    assert_eq!(seen[1].sni, None);

    // A client trusting another CA must fail: the origin is only as good as its chain.
    let other = TestCa::new("unrelated CA");
    let tcp = tokio::net::TcpStream::connect(origin.addr()).await.unwrap();
    assert!(tls_connect(tcp, "origin.test", other.client_config())
        .await
        .is_err());
    let tcp = tokio::net::TcpStream::connect(origin.addr()).await.unwrap();
    assert!(tls_connect(tcp, "not-listed.test", ca.client_config())
        .await
        .is_err());
}

#[test]
fn test_ca_pem_round_trips_into_a_client_config() {
    let ca = TestCa::new("pem CA");
    let dir = unique_temp_dir("selftest");
    let path = ca.write_pem(&dir);
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(pem, ca.cert_pem());
    let _ = tls_client_config(&pem);
    let (chain, _key) = ca.leaf(&["leaf.test"]);
    assert_eq!(chain.len(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}

fn dns_query(name: &str, record_type: RecordType) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(0x4242)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    message.to_vec().unwrap()
}

fn ask_udp(server: SocketAddr, name: &str, record_type: RecordType) -> Message {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
        .send_to(&dns_query(name, record_type), server)
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

fn ask_tcp(server: SocketAddr, name: &str, record_type: RecordType) -> Message {
    let mut stream = std::net::TcpStream::connect(server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let query = dns_query(name, record_type);
    stream
        .write_all(&u16::try_from(query.len()).unwrap().to_be_bytes())
        .unwrap();
    stream.write_all(&query).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).unwrap();
    Message::from_vec(&reply).unwrap()
}

fn answer_ips(reply: &Message) -> Vec<IpAddr> {
    reply
        .answers()
        .iter()
        .map(|r| match r.data() {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            other => panic!("unexpected answer {other:?}"),
        })
        .collect()
}

#[test]
fn dns_server_answers_over_udp_and_tcp_and_counts() {
    let v4a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let v4b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let dns = DnsServer::start(&[
        ("api.example.test", v4a),
        ("API.example.test.", v4b),
        ("api.example.test", v6),
        ("v4only.example.test", v4a),
    ]);

    for ask in [ask_udp, ask_tcp] {
        let reply = ask(dns.addr(), "Api.Example.Test.", RecordType::A);
        assert_eq!(reply.id(), 0x4242);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert!(reply.authoritative());
        assert_eq!(answer_ips(&reply), vec![v4a, v4b]);
        assert!(reply.answers().iter().all(|r| r.ttl() == 60));

        let reply = ask(dns.addr(), "api.example.test", RecordType::AAAA);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(answer_ips(&reply), vec![v6]);

        let reply = ask(dns.addr(), "v4only.example.test.", RecordType::AAAA);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert!(reply.answers().is_empty());

        let reply = ask(dns.addr(), "nowhere.example.test.", RecordType::A);
        assert_eq!(reply.response_code(), ResponseCode::NXDomain);
        assert!(reply.answers().is_empty());
    }

    assert_eq!(dns.queries(), 8);
    assert_eq!(dns.queries_for("api.example.test."), 4);
    assert_eq!(dns.queries_for("V4ONLY.example.test"), 2);
    assert_eq!(dns.queries_for("nowhere.example.test"), 2);
    assert_eq!(dns.queries_for("never.asked"), 0);

    dns.set_records(&[("api.example.test", v4b)]);
    let reply = ask_udp(dns.addr(), "api.example.test", RecordType::A);
    assert_eq!(answer_ips(&reply), vec![v4b]);
}

#[test]
fn curl_reaches_the_plain_origin_directly() {
    let origin = Origin::plain();
    let url = format!("http://127.0.0.1:{}/1k", origin.port());
    let (code, stdout, stderr) = curl(&[&url]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, vec![b'x'; 1024]);
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0]
        .header("user-agent")
        .is_some_and(|ua| ua.starts_with("curl/")));
}

#[tokio::test]
async fn proxy_get_sends_absolute_form() {
    // The origin accepts absolute-form too, so it stands in for a proxy here.
    let origin = Origin::plain();
    let (status, headers, body) = proxy_get(
        origin.addr(),
        "http://service.test:8080/v1/items?x=1",
        &[("x-cordon-intent", "list items")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let summary: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(summary["host"], "service.test:8080");

    let (status, _, _) = proxy_get(
        origin.addr(),
        "http://service.test/x",
        &[("host", "elsewhere.test")],
    )
    .await;
    assert_eq!(status, 200);

    let seen = origin.requests();
    assert_eq!(seen[0].target, "http://service.test:8080/v1/items?x=1");
    assert_eq!(seen[0].header("x-cordon-intent"), Some("list items"));
    assert_eq!(seen[1].header_all("host"), vec!["elsewhere.test"]);
}

#[test]
fn netns_reexec_runs_the_test_in_a_private_namespace() {
    if !netns_reexec(
        "netns_reexec_runs_the_test_in_a_private_namespace",
        &["ip addr add 10.1.2.3/32 dev lo"],
    ) {
        return;
    }
    // Only reachable inside the namespace, where 10.1.2.3 lives on lo.
    let origin = Origin::plain_on("10.1.2.3:80".parse().unwrap());
    let (code, stdout, stderr) = curl(&["http://10.1.2.3/1k"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.len(), 1024);
    assert_eq!(origin.count(), 1);
}

/// The `Cordon` fixture finds the listeners, reads the trail and stops the binary cleanly.
#[test]
fn cordon_fixture_starts_and_stops() {
    let yaml = "version: 1\nagent: { name: fixture }\nlisten: { proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }\n\
                audit: { path: \"{dir}/audit.jsonl\" }\n";
    let cordon = Cordon::start(yaml);
    assert_ne!(cordon.proxy_addr(), cordon.admin_addr());
    let record = cordon.wait_for_records(|r| r["kind"] == "config", Duration::from_secs(5));
    assert_eq!(record["agent"], "fixture");
    assert_eq!(cordon.stop(), 0);
    let (code, stdout, _) = Cordon::check(yaml);
    assert_eq!(code, 0);
    assert!(stdout.contains("config ok"));
    let (code, _, stderr) = Cordon::check("version: 1\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("agent"), "{stderr}");
}

#[test]
fn listener_lines_are_found_in_coloured_and_plain_logs() {
    let coloured = "\u{1b}[2m2026-11-26T01:02:03Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
                    \u{1b}[2mcordon::cli::serve\u{1b}[0m\u{1b}[2m:\u{1b}[0m listening \
                    \u{1b}[3mlistener\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"proxy\" \
                    \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:41234";
    let line = strip_ansi(coloured);
    assert_eq!(
        listening_addr(&line, "proxy"),
        Some("127.0.0.1:41234".parse().unwrap())
    );
    assert_eq!(listening_addr(&line, "admin"), None);
    assert_eq!(
        listening_addr(
            " INFO cordon: listening listener=admin addr=[::1]:9090",
            "admin"
        ),
        Some("[::1]:9090".parse().unwrap())
    );
    assert_eq!(
        listening_addr(
            "INFO cordon: not yet listener=proxy addr=1.2.3.4:5",
            "proxy"
        ),
        None
    );
}
