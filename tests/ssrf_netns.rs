//! Private and metadata addresses, tested where a bypass cannot leave the machine: inside a
//! fresh network namespace whose only interface is `lo`, carrying those addresses and an
//! origin listening on each. A bypass would show up as a request reaching that origin.

mod support;

use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn metadata_and_private_addresses_are_refused_unless_listed() {
    if !netns_reexec(
        "metadata_and_private_addresses_are_refused_unless_listed",
        &[
            "ip addr add 169.254.169.254/32 dev lo",
            "ip addr add 10.1.2.3/32 dev lo",
            "ip -6 addr add fd00:ec2::254/128 dev lo",
        ],
    ) {
        return;
    }
    let metadata = Origin::plain_on("169.254.169.254:80".parse().unwrap());
    let metadata6 = Origin::plain_on("[fd00:ec2::254]:80".parse().unwrap());
    let private = Origin::plain_on("10.1.2.3:80".parse().unwrap());
    let dns = DnsServer::start(&[
        ("metadata.test", "169.254.169.254".parse().unwrap()),
        ("metadata6.test", "fd00:ec2::254".parse().unwrap()),
        ("internal.test", "10.1.2.3".parse().unwrap()),
        ("listed.test", "10.1.2.3".parse().unwrap()),
        ("mapped.test", "::ffff:10.1.2.3".parse().unwrap()),
        ("nat64.test", "64:ff9b::a01:203".parse().unwrap()),
    ]);
    let yaml = format!(
        r#"version: 1
agent: {{ name: ssrf-test }}
listen: {{ proxy: "127.0.0.1:0" }}
dns: {{ upstream: ["{dns}"] }}
egress:
  - {{ host: metadata.test, ports: [80] }}
  - {{ host: metadata6.test, ports: [80] }}
  - {{ host: internal.test, ports: [80] }}
  - {{ host: mapped.test, ports: [80] }}
  - {{ host: nat64.test, ports: [80] }}
  - {{ host: "169.254.169.254", ports: [80] }}
  - {{ host: "10.1.2.3", ports: [80] }}
  - {{ host: listed.test, ports: [80], allow_ips: [10.1.2.3/32] }}
audit: {{ path: "{{dir}}/audit.jsonl", fsync: none }}
"#,
        dns = dns.addr()
    );
    let cordon = Cordon::start(&yaml);
    let proxy = cordon.proxy_addr();
    let request = |url: &str| {
        let authority = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        raw_request(
            proxy,
            format!("GET {url} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let refused = |response: Vec<u8>, class: &str| {
        let text = String::from_utf8_lossy(&response).to_string();
        assert_eq!(parse_status(&response), 403, "{text}");
        assert_eq!(
            header(&response, "x-cordon-reason").as_deref(),
            Some("forbidden_address"),
            "{text}"
        );
        assert!(text.contains(class), "hint names the class {class}: {text}");
    };

    refused(
        request("http://metadata.test/latest/meta-data/iam/"),
        "metadata",
    );
    refused(
        request("http://metadata6.test/latest/meta-data/"),
        "metadata",
    );
    refused(
        request("http://169.254.169.254/latest/meta-data/"),
        "metadata",
    );
    refused(request("http://internal.test/"), "private");
    refused(request("http://10.1.2.3/"), "private");
    refused(request("http://mapped.test/"), "private");
    refused(request("http://nat64.test/"), "private");
    let tunnel = raw_request(
        proxy,
        b"CONNECT metadata.test:80 HTTP/1.1\r\nHost: metadata.test:80\r\n\r\n",
    );
    refused(tunnel, "metadata");
    let tunnel = raw_request(
        proxy,
        b"CONNECT 10.1.2.3:80 HTTP/1.1\r\nHost: 10.1.2.3:80\r\n\r\n",
    );
    refused(tunnel, "private");
    assert_eq!(
        metadata.count() + metadata6.count() + private.count(),
        0,
        "no request reached a special address"
    );
    let record = cordon.wait_for_records(|r| r["host"] == "metadata.test", WAIT);
    assert_eq!(record["reason"], "forbidden_address");
    assert_eq!(record["ip"], "169.254.169.254");

    // The twin: the same private address, listed in allow_ips, is reached.
    let ok = request("http://listed.test/hello");
    assert_eq!(parse_status(&ok), 200, "{}", String::from_utf8_lossy(&ok));
    assert_eq!(private.count(), 1);
    assert_eq!(private.requests()[0].path(), "/hello");
}
