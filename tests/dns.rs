//! The filtering resolver through the real binary: allowed names are forwarded and
//! answered, everything else is refused without a single upstream query.

mod support;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

fn start(dns: &DnsServer, egress: &str, deny: &str, extra_dns: &str) -> (Cordon, SocketAddr) {
    start_in(dns, "enforce", egress, deny, extra_dns)
}

fn start_in(
    dns: &DnsServer,
    mode: &str,
    egress: &str,
    deny: &str,
    extra_dns: &str,
) -> (Cordon, SocketAddr) {
    let yaml = format!(
        r#"version: 1
agent: {{ name: dns-test }}
mode: {mode}
listen: {{ proxy: "127.0.0.1:0", admin: "127.0.0.1:0", dns: "127.0.0.1:0" }}
dns: {{ upstream: ["{upstream}"]{extra_dns} }}
egress:
{egress}
deny:
{deny}
audit: {{ path: "{{dir}}/audit.jsonl", fsync: none }}
"#,
        upstream = dns.addr()
    );
    let cordon = Cordon::start(&yaml);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(addr) = cordon
            .stderr_text()
            .lines()
            .find_map(|l| listening_addr(&strip_ansi(l), "dns"))
        {
            return (cordon, addr);
        }
        assert!(
            Instant::now() < deadline,
            "no dns listener: {}",
            cordon.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn query_bytes(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(0x4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message.to_vec().unwrap()
}

/// One query over UDP, or over TCP when `tcp`.
fn ask(server: SocketAddr, name: &str, qtype: RecordType, tcp: bool) -> Message {
    use std::io::{Read, Write};
    let bytes = query_bytes(name, qtype);
    let reply = if tcp {
        let mut stream = std::net::TcpStream::connect(server).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
            .write_all(&(bytes.len() as u16).to_be_bytes())
            .unwrap();
        stream.write_all(&bytes).unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).unwrap();
        buf
    } else {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        socket.send_to(&bytes, server).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    };
    let message = Message::from_vec(&reply).unwrap();
    assert_eq!(message.id(), 0x4242);
    message
}

fn addresses(message: &Message) -> Vec<IpAddr> {
    message
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn allowed_names_are_answered_and_everything_else_refused_without_asking_upstream() {
    let dns = DnsServer::start(&[
        ("api.example.com", "93.184.216.34".parse().unwrap()),
        ("api.example.com", "2606:2800:220:1::1".parse().unwrap()),
        ("denied.example.com", "93.184.216.35".parse().unwrap()),
        ("intranet", "93.184.216.36".parse().unwrap()),
    ]);
    let (cordon, server) = start(
        &dns,
        "  - { host: api.example.com, ports: [443] }",
        "  []",
        "",
    );
    for tcp in [false, true] {
        let a = ask(server, "api.example.com.", RecordType::A, tcp);
        assert_eq!(a.response_code(), ResponseCode::NoError);
        assert_eq!(
            addresses(&a),
            vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
    }
    let aaaa = ask(server, "API.Example.com.", RecordType::AAAA, false);
    assert_eq!(
        addresses(&aaaa),
        vec!["2606:2800:220:1::1".parse::<IpAddr>().unwrap()]
    );
    let asked = dns.queries();

    for (name, qtype) in [
        ("denied.example.com.", RecordType::A),
        ("intranet.", RecordType::A),
        ("printer.local.", RecordType::A),
        ("db.corp.internal.", RecordType::AAAA),
        ("34.216.184.93.in-addr.arpa.", RecordType::PTR),
        ("api.example.com.", RecordType::ANY),
        ("api.example.com.", RecordType::TXT),
        ("api.example.com.", RecordType::MX),
        ("exa_mple.com.", RecordType::A),
    ] {
        for tcp in [false, true] {
            let reply = ask(server, name, qtype, tcp);
            assert_eq!(
                reply.response_code(),
                ResponseCode::Refused,
                "{name} {qtype}"
            );
            assert!(reply.answers().is_empty());
        }
    }
    assert_eq!(dns.queries(), asked, "no refused name reached the upstream");
    assert_eq!(dns.queries_for("denied.example.com"), 0);

    let record = cordon.wait_for_records(
        |r| r["kind"] == "dns" && r["host"] == "denied.example.com",
        WAIT,
    );
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["reason"], "not_allowed");
    assert_eq!(record["qtype"], "A");
    assert_eq!(
        record["count"], 2,
        "UDP and TCP collapse into one record for the second"
    );
    let record = cordon.wait_for_records(
        |r| r["kind"] == "dns" && r["host"] == "api.example.com" && r["qtype"] == "A",
        WAIT,
    );
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["answers"], 1);
    let (_, metrics, _) = curl(&[&format!("http://{}/metrics", cordon.admin_addr())]);
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    assert!(
        metrics.contains("cordon_dns_queries_total{decision=\"deny\"} 18"),
        "{metrics}"
    );
}

#[test]
fn wildcards_cover_subdomains_only_and_deny_wins() {
    let ip: IpAddr = "93.184.216.34".parse().unwrap();
    let dns = DnsServer::start(&[
        ("a.example.com", ip),
        ("a.b.example.com", ip),
        ("example.com", ip),
        ("evil-example.com", ip),
        ("blocked.example.com", ip),
        ("extra.test", ip),
    ]);
    let (_cordon, server) = start(
        &dns,
        "  - { host: \"*.example.com\" }",
        "  - { host: blocked.example.com }\n  - { host: a.example.com, methods: [DELETE] }",
        ", allow: [extra.test]",
    );
    for name in ["a.example.com.", "a.b.example.com.", "extra.test."] {
        let reply = ask(server, name, RecordType::A, false);
        assert_eq!(reply.response_code(), ResponseCode::NoError, "{name}");
        assert_eq!(addresses(&reply), vec![ip], "{name}");
    }
    let before = dns.queries();
    for name in ["example.com.", "evil-example.com.", "blocked.example.com."] {
        let reply = ask(server, name, RecordType::A, false);
        assert_eq!(reply.response_code(), ResponseCode::Refused, "{name}");
    }
    assert_eq!(dns.queries(), before);
}

#[test]
fn cnames_to_unlisted_names_and_special_addresses_are_cut() {
    let dns = DnsServer::start(&[
        ("target.example.com", "93.184.216.34".parse().unwrap()),
        ("elsewhere.test", "93.184.216.35".parse().unwrap()),
        ("private.example.com", "10.0.0.1".parse().unwrap()),
        ("loop.example.com", "127.0.0.1".parse().unwrap()),
        ("listed.example.com", "10.0.0.1".parse().unwrap()),
        ("mixed.example.com", "10.0.0.1".parse().unwrap()),
        ("mixed.example.com", "93.184.216.36".parse().unwrap()),
    ]);
    dns.set_cname("alias.example.com", "target.example.com");
    dns.set_cname("escape.example.com", "elsewhere.test");
    let (cordon, server) = start(
        &dns,
        "  - { host: \"*.example.com\" }\n  - { host: listed.example.com, allow_ips: [10.0.0.1/32] }",
        "  []",
        "",
    );
    let reply = ask(server, "alias.example.com.", RecordType::A, false);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert_eq!(
        reply.answers().len(),
        2,
        "the CNAME and the target's address"
    );
    assert_eq!(
        addresses(&reply),
        vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
    );

    let reply = ask(server, "escape.example.com.", RecordType::A, false);
    assert_eq!(
        reply.response_code(),
        ResponseCode::Refused,
        "a chain leaving the allowlist is refused"
    );
    assert!(reply.answers().is_empty());

    for name in ["private.example.com.", "loop.example.com."] {
        let reply = ask(server, name, RecordType::A, false);
        assert_eq!(reply.response_code(), ResponseCode::NXDomain, "{name}");
        assert!(reply.answers().is_empty(), "{name}");
    }
    let reply = ask(server, "mixed.example.com.", RecordType::A, false);
    assert_eq!(
        addresses(&reply),
        vec!["93.184.216.36".parse::<IpAddr>().unwrap()],
        "only the public address stays"
    );
    let reply = ask(server, "listed.example.com.", RecordType::A, false);
    assert_eq!(
        addresses(&reply),
        vec!["10.0.0.1".parse::<IpAddr>().unwrap()],
        "allow_ips lets it through"
    );
    let record = cordon.wait_for_records(|r| r["host"] == "private.example.com", WAIT);
    assert_eq!(record["reason"], "private_answer");
    let record = cordon.wait_for_records(|r| r["host"] == "escape.example.com", WAIT);
    assert_eq!(record["reason"], "cname_not_allowed");
}

#[test]
fn answers_are_cached_for_their_ttl() {
    let dns = DnsServer::start(&[("ttl.example.com", "93.184.216.34".parse().unwrap())]);
    dns.set_ttl(1);
    let (_cordon, server) = start(&dns, "  - { host: ttl.example.com }", "  []", "");
    ask(server, "ttl.example.com.", RecordType::A, false);
    assert_eq!(dns.queries_for("ttl.example.com"), 1);
    let cached = ask(server, "ttl.example.com.", RecordType::A, true);
    assert_eq!(addresses(&cached).len(), 1);
    assert!(cached.answers()[0].ttl() <= 1);
    assert_eq!(
        dns.queries_for("ttl.example.com"),
        1,
        "within the TTL the cache answers"
    );
    std::thread::sleep(Duration::from_millis(1500));
    ask(server, "ttl.example.com.", RecordType::A, false);
    assert_eq!(
        dns.queries_for("ttl.example.com"),
        2,
        "after the TTL the upstream is asked again"
    );
}

#[test]
fn the_proxy_resolves_through_the_same_cache() {
    let origin = Origin::plain();
    let dns = DnsServer::start(&[("origin.test", "127.0.0.1".parse().unwrap())]);
    let (cordon, server) = start(
        &dns,
        &format!(
            "  - {{ host: origin.test, ports: [{}], allow_ips: [127.0.0.1/32] }}",
            origin.port()
        ),
        "  []",
        "",
    );
    let reply = ask(server, "origin.test.", RecordType::A, false);
    assert_eq!(
        addresses(&reply),
        vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
    );
    let before = dns.queries_for("origin.test");
    let proxy = format!("http://{}", cordon.proxy_addr());
    let (code, _, err) = curl(&[
        "-x",
        &proxy,
        &format!("http://origin.test:{}/1k", origin.port()),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(origin.count(), 1);
    // The A answer came from the cache the agent's query filled; only AAAA was new.
    assert!(dns.queries_for("origin.test") <= before + 1);
}

#[test]
fn malformed_packets_get_formerr_or_nothing_and_the_server_keeps_answering() {
    let dns = DnsServer::start(&[("api.example.com", "93.184.216.34".parse().unwrap())]);
    let (_cordon, server) = start(&dns, "  - { host: api.example.com }", "  []", "");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let valid = query_bytes("api.example.com.", RecordType::A);
    let mut compression_loop = valid[..12].to_vec();
    compression_loop.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0u8; 11],
        valid[..valid.len() - 3].to_vec(),
        compression_loop,
        vec![0xff; 512],
    ];
    for case in &cases {
        socket.send_to(case, server).unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = socket.recv(&mut buf) {
            let reply = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(reply.response_code(), ResponseCode::FormErr);
        }
    }
    // TCP: a length prefix promising more than is ever sent, and one too large to read.
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(server).unwrap();
    stream.write_all(&[0xff, 0xff, 1, 2, 3]).unwrap();
    drop(stream);
    let reply = ask(server, "api.example.com.", RecordType::A, false);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert_eq!(dns.queries(), 1, "nothing malformed was forwarded");
    let reply = ask(server, "api.example.com.", RecordType::A, true);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
}

#[test]
fn cordon_dns_exits_2_on_a_taken_port_or_a_bad_config() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = unique_temp_dir("dns-exit");
    let run = |yaml: &str| {
        let path = dir.join("cordon.yaml");
        std::fs::write(&path, yaml.replace("{dir}", &dir.display().to_string())).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(["dns", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&format!(
        "version: 1\nagent: {{ name: d }}\nlisten: {{ dns: \"127.0.0.1:{port}\" }}\ndns: {{ upstream: [\"127.0.0.1:53\"] }}\naudit: {{ path: \"{{dir}}/a.jsonl\" }}\n"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("listen.dns") && err.contains("cannot bind"),
        "{err}"
    );
    let (code, err) = run("version: 1\nagent: { name: d }\nlisten: { dns: \"127.0.0.1:0\" }\naudit: { path: \"{dir}/a.jsonl\" }\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("listen.dns") && err.contains("dns.upstream"),
        "{err}"
    );
    let (code, err) = run("version: 1\nagent: { name: d }\ndns: { upstream: [\"127.0.0.1:53\"] }\naudit: { path: \"{dir}/a.jsonl\" }\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("listen.dns") && err.contains("required"),
        "{err}"
    );
    let (code, err) = run("version: 1\nagent: { name: d }\nlisten: { dns: \"127.0.0.1:0\" }\ndns: { upstream: [\"127.0.0.1:53\"], allow_types: [ANY] }\naudit: { path: \"{dir}/a.jsonl\" }\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("dns.allow_types[0]"), "{err}");
    drop(taken);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_flood_of_random_names_is_refused_without_forwarding_and_bounded_in_the_trail() {
    let dns = DnsServer::start(&[("api.example.com", "93.184.216.34".parse().unwrap())]);
    let (cordon, server) = start(
        &dns,
        "  - { host: api.example.com }",
        "  []",
        ", allow_types: [TXT]",
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Count the refusals that come back; the kernel may drop part of an unpaced flood.
    let reader = socket.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let refusals = std::thread::spawn(move || {
        let mut refused = 0u64;
        let mut buf = [0u8; 512];
        while let Ok(n) = reader.recv(&mut buf) {
            if Message::from_vec(&buf[..n])
                .is_ok_and(|m| m.response_code() == ResponseCode::Refused)
            {
                refused += 1;
            }
        }
        refused
    });
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..10_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let name = format!("x{seed:016x}.flood{}.test.", i % 7);
        let _ = socket.send_to(&query_bytes(&name, RecordType::A), server);
    }
    let refused = refusals.join().unwrap();
    assert!(
        refused > 1000,
        "the flood was answered ({refused} refusals)"
    );
    // Valid queries are still answered, and nothing of the flood reached the upstream.
    let reply = ask(server, "api.example.com.", RecordType::A, false);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    let txt = ask(server, "api.example.com.", RecordType::TXT, false);
    assert_eq!(
        txt.response_code(),
        ResponseCode::NoError,
        "TXT is answered when dns.allow_types lists it"
    );
    assert_eq!(
        dns.queries(),
        2,
        "only the two valid queries were forwarded"
    );
    let dir = cordon.dir().to_path_buf();
    assert_eq!(cordon.stop(), 0);
    let trail = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let dns_records: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "dns")
        .collect();
    let counted: u64 = dns_records.iter().filter_map(|r| r["count"].as_u64()).sum();
    assert!(
        counted >= refused,
        "every refusal is accounted for ({counted} < {refused})"
    );
    assert!(
        (dns_records.len() as u64) < refused,
        "the flood was aggregated ({} records for {refused} refusals)",
        dns_records.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn observe_mode_answers_what_policy_would_refuse_and_records_would_deny() {
    let dns = DnsServer::start(&[
        ("api.example.com", "93.184.216.34".parse().unwrap()),
        ("unlisted.example.net", "93.184.216.35".parse().unwrap()),
        ("inside.example.net", "10.1.2.3".parse().unwrap()),
        ("iam.example.com", "93.184.216.36".parse().unwrap()),
    ]);
    let (cordon, server) = start_in(
        &dns,
        "observe",
        "  - { host: api.example.com, ports: [443] }\n  - { host: inside.example.net, ports: [443] }",
        "  - { host: iam.example.com }",
        "",
    );
    let answered = |name: &str| addresses(&ask(server, name, RecordType::A, false));
    assert_eq!(
        answered("api.example.com."),
        vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        answered("unlisted.example.net."),
        vec!["93.184.216.35".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        answered("iam.example.com."),
        vec!["93.184.216.36".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        answered("inside.example.net."),
        vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
    );
    // Record types that could carry data out are still refused.
    for (name, qtype) in [
        ("api.example.com.", RecordType::TXT),
        ("unlisted.example.net.", RecordType::TXT),
    ] {
        assert_eq!(
            ask(server, name, qtype, false).response_code(),
            ResponseCode::Refused,
            "{name} {qtype}"
        );
    }
    let reason_of = |host: &str| {
        let record = cordon.wait_for_records(|r| r["kind"] == "dns" && r["host"] == host, WAIT);
        (
            record["decision"].as_str().unwrap_or("").to_owned(),
            record["reason"].as_str().unwrap_or("").to_owned(),
        )
    };
    assert_eq!(reason_of("api.example.com"), ("allow".into(), "".into()));
    assert_eq!(
        reason_of("unlisted.example.net"),
        ("would_deny".into(), "not_allowed".into())
    );
    assert_eq!(
        reason_of("iam.example.com"),
        ("would_deny".into(), "boundary".into())
    );
    assert_eq!(
        reason_of("inside.example.net"),
        ("would_deny".into(), "private_answer".into())
    );
    let _ = cordon.stop();
}
