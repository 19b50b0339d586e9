//! `cordon run` without a config observes: the child's requests (HTTPS included, through
//! the per-run CA) are let through and recorded, and an inventory is printed at the end.
//! `cordon policy suggest` turns that trail into an enforce-mode policy under which the same
//! session passes and anything else is refused.

mod run_support;
mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use run_support::*;
use serde_json::Value;
use support::*;

/// Per destination: requests per (method, path), and CONNECT tunnels.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    requests: BTreeMap<(String, String), u64>,
    tunnels: u64,
}

type Inventory = BTreeMap<(String, u16), Seen>;

fn dest(host: &str, port: u16) -> (String, u16) {
    (host.to_owned(), port)
}

fn req(method: &str, path: &str) -> (String, String) {
    (method.to_owned(), path.to_owned())
}

/// The three origins of a session: plain on two host names, and TLS from a test CA.
struct Origins {
    ca_pem: PathBuf,
    named: Origin,
    numeric: Origin,
    tls: Origin,
    _ca: TestCa,
}

impl Origins {
    fn start(dir: &Path) -> Origins {
        let ca = TestCa::new("cordon run observe test CA");
        let ca_pem = ca.write_pem(dir);
        Origins {
            ca_pem,
            named: Origin::plain(),
            numeric: Origin::plain(),
            tls: Origin::tls(&ca, &["localhost"]),
            _ca: ca,
        }
    }

    /// A shell session of mixed requests; prints `status CODE` per request and exits 1 if
    /// any curl failed.
    fn session(&self) -> String {
        let (a, b, c) = (self.named.port(), self.numeric.port(), self.tls.port());
        format!(
            r#"fail=0
req() {{
  code=$(curl -q -sS --max-time 10 -o /dev/null -w '%{{http_code}}' "$@") || fail=1
  echo "status $code"
}}
req http://localhost:{a}/alpha
req http://localhost:{a}/alpha
req -X POST -d one=1 http://localhost:{a}/alpha
req http://localhost:{a}/beta/gamma
req -X POST -H 'content-type: application/json' -d '{{"a":1}}' http://127.0.0.1:{b}/submit
req 'http://127.0.0.1:{b}/items?page=2'
req https://localhost:{c}/secure
req -X PUT -d two=2 https://localhost:{c}/upload
exit $fail
"#
        )
    }

    /// What `session` does, per destination.
    fn expected(&self) -> Inventory {
        let (a, b, c) = (self.named.port(), self.numeric.port(), self.tls.port());
        let mut inventory = Inventory::new();
        inventory.insert(
            dest("localhost", a),
            Seen {
                requests: [
                    (req("GET", "/alpha"), 2),
                    (req("POST", "/alpha"), 1),
                    (req("GET", "/beta/gamma"), 1),
                ]
                .into(),
                tunnels: 0,
            },
        );
        inventory.insert(
            dest("127.0.0.1", b),
            Seen {
                requests: [(req("POST", "/submit"), 1), (req("GET", "/items"), 1)].into(),
                tunnels: 0,
            },
        );
        inventory.insert(
            dest("localhost", c),
            Seen {
                requests: [(req("GET", "/secure"), 1), (req("PUT", "/upload"), 1)].into(),
                // curl opens one tunnel per invocation.
                tunnels: 2,
            },
        );
        inventory
    }

    /// Requests received so far by (named, numeric, tls).
    fn counts(&self) -> (usize, usize, usize) {
        (self.named.count(), self.numeric.count(), self.tls.count())
    }
}

/// `cordon run [extra…] -- /bin/sh -c SCRIPT`, with the test CA as the system bundle and
/// XDG_STATE_HOME in `dir`.
fn run_session(dir: &Path, origins: &Origins, extra: &[OsString], script: &str) -> Ran {
    let mut args = os(&["run"]);
    args.extend_from_slice(extra);
    args.extend(os(&["--", "/bin/sh", "-c", script]));
    cordon(
        &args,
        &[
            ("SSL_CERT_FILE", origins.ca_pem.clone().into()),
            ("XDG_STATE_HOME", dir.join("state").into()),
        ],
        Some(dir),
    )
}

/// The destinations section of the inventory on stderr.
fn parse_inventory(stderr: &str) -> Inventory {
    let mut lines = stderr
        .lines()
        .skip_while(|l| l.trim() != "cordon run: inventory");
    assert!(lines.next().is_some(), "no inventory on stderr:\n{stderr}");
    let mut lines = lines.skip_while(|l| l.trim() != "destinations:");
    assert!(lines.next().is_some(), "no destinations:\n{stderr}");
    let mut inventory = Inventory::new();
    let mut current: Option<(String, u16)> = None;
    let mut declared: BTreeMap<(String, u16), u64> = BTreeMap::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("      ") {
            // `METHOD PATH  N`
            let (what, n) = rest.rsplit_once("  ").expect("request line");
            let (method, path) = what.split_once(' ').expect("method and path");
            let key = current.clone().expect("request line under a destination");
            inventory
                .get_mut(&key)
                .unwrap()
                .requests
                .insert(req(method, path), n.trim().parse().expect("count"));
        } else if let Some(rest) = line.strip_prefix("    ") {
            if rest.trim() == "(none)" {
                continue;
            }
            // `host:port  requests N  tunnels M[  non-public address …]`
            let parts: Vec<&str> = rest.split("  ").collect();
            let (host, port) = parts[0].rsplit_once(':').expect("host:port");
            let number = |label: &str| -> u64 {
                parts
                    .iter()
                    .find_map(|p| p.strip_prefix(label))
                    .unwrap_or_else(|| panic!("no {label} in {line:?}"))
                    .trim()
                    .parse()
                    .expect("number")
            };
            let key = dest(host, port.parse().expect("port"));
            declared.insert(key.clone(), number("requests "));
            inventory.insert(
                key.clone(),
                Seen {
                    requests: BTreeMap::new(),
                    tunnels: number("tunnels "),
                },
            );
            current = Some(key);
        } else {
            break;
        }
    }
    // Each destination's total is the sum of its lines.
    for (key, total) in declared {
        let sum: u64 = inventory[&key].requests.values().sum();
        assert_eq!(sum, total, "inventory total for {key:?}");
    }
    inventory
}

/// The inventory computed from the trail: HTTP records that went through.
fn inventory_from_trail(records: &[Value]) -> Inventory {
    let mut inventory = Inventory::new();
    for record in records {
        if field(record, "kind") != "http" || field(record, "decision") == "deny" {
            continue;
        }
        let port = record["port"].as_u64().expect("port") as u16;
        let seen = inventory
            .entry(dest(field(record, "host"), port))
            .or_default();
        match field(record, "method") {
            "CONNECT" => seen.tunnels += 1,
            method => {
                *seen
                    .requests
                    .entry(req(method, field(record, "path")))
                    .or_default() += 1
            }
        }
    }
    inventory
}

fn decisions_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with("http decisions:"))
        .unwrap_or_else(|| panic!("no decisions line:\n{stderr}"))
        .trim()
        .to_owned()
}

#[test]
fn observed_session_inventory_suggest_and_enforce() {
    let dir = unique_temp_dir("run-observe");
    let origins = Origins::start(&dir);
    let session = origins.session();
    let trail = dir.join("observed.jsonl");

    // 1. Observe.
    let mut audit = os(&["--audit"]);
    audit.push(trail.clone().into());
    let observed = run_session(&dir, &origins, &audit, &session);
    assert_eq!(observed.code, 0, "{}", observed.both());
    assert_eq!(
        observed.lines("status"),
        vec!["200"; 8],
        "{}",
        observed.both()
    );
    assert_eq!(
        origins.counts(),
        (4, 2, 2),
        "every request reached its origin"
    );
    assert_trail_verifies(&trail);
    // The trail is where --audit said, not under XDG_STATE_HOME.
    assert!(!dir.join("state/cordon/runs").exists());

    // 2. The inventory says what the trail says, and both say what the session did.
    let records = audit_records(&trail);
    let from_trail = inventory_from_trail(&records);
    let printed = parse_inventory(&observed.stderr);
    assert_eq!(printed, from_trail, "{}", observed.stderr);
    assert_eq!(from_trail, origins.expected());
    let http: Vec<&Value> = records
        .iter()
        .filter(|r| field(r, "kind") == "http")
        .collect();
    assert_eq!(http.len(), 10, "8 requests and 2 tunnels");
    for record in &http {
        // Nothing is listed, so enforce mode would refuse everything.
        assert_eq!(field(record, "decision"), "would_deny", "{record}");
    }
    assert_eq!(
        decisions_line(&observed.stderr),
        "http decisions: 0 allowed, 10 would be denied in enforce mode, 0 denied"
    );
    assert!(
        observed.stderr.contains(&format!(
            "audit trail: {} ({} records)",
            trail.display(),
            records.len()
        )),
        "{}",
        observed.stderr
    );
    // The HTTPS requests were seen inside their tunnels.
    for path in ["/secure", "/upload"] {
        let record = http
            .iter()
            .find(|r| field(r, "path") == path)
            .expect("intercepted request recorded");
        assert_eq!(field(record, "sni"), "localhost", "{record}");
    }

    // 3. Suggest a policy; it loads.
    let policy = dir.join("suggested.yaml");
    let mut args = os(&["policy", "suggest", "--from"]);
    args.push(trail.clone().into());
    args.push("--out".into());
    args.push(policy.clone().into());
    let suggested = cordon(&args, &[], Some(&dir));
    assert_eq!(suggested.code, 0, "{}", suggested.both());
    let yaml = std::fs::read_to_string(&policy).expect("suggested policy written");
    assert!(yaml.contains("mode: enforce"), "{yaml}");
    let check = |config: &Path| {
        let mut args = os(&["check", "--config"]);
        args.push(config.into());
        let checked = cordon(&args, &[], Some(&dir));
        assert_eq!(checked.code, 0, "{}\n{yaml}", checked.both());
        assert!(checked.stdout.contains("config ok"), "{}", checked.both());
    };
    check(&policy);

    // The test CA is no public root: enforce mode trusts it only when the config says so
    // (observing, cordon trusted it as the system bundle, like the user's own tools).
    let enforced_policy = dir.join("enforced.yaml");
    std::fs::write(
        &enforced_policy,
        format!(
            "{yaml}tls: {{ extra_roots: [\"{}\"] }}\n",
            origins.ca_pem.display()
        ),
    )
    .expect("write policy");
    check(&enforced_policy);
    let enforce_args = |audit: &Path| {
        let mut args = os(&["--config"]);
        args.push(enforced_policy.clone().into());
        args.push("--audit".into());
        args.push(audit.into());
        args
    };

    // 4. The same session under it: every request allowed and delivered.
    let enforced_trail = dir.join("enforced.jsonl");
    let enforced = run_session(&dir, &origins, &enforce_args(&enforced_trail), &session);
    assert_eq!(enforced.code, 0, "{}\n{yaml}", enforced.both());
    assert_eq!(
        enforced.lines("status"),
        vec!["200"; 8],
        "{}",
        enforced.both()
    );
    assert_eq!(
        origins.counts(),
        (8, 4, 4),
        "every request reached its origin again"
    );
    assert!(
        !enforced.stderr.contains("cordon run: inventory"),
        "no inventory with a config"
    );
    assert_trail_verifies(&enforced_trail);
    let records = audit_records(&enforced_trail);
    let http: Vec<&Value> = records
        .iter()
        .filter(|r| field(r, "kind") == "http")
        .collect();
    assert_eq!(http.len(), 10);
    for record in &http {
        assert_eq!(field(record, "decision"), "allow", "{record}");
    }
    assert_eq!(inventory_from_trail(&records), origins.expected());

    // 5. Anything else is refused: another path, method, host name or port.
    let other = Origin::plain();
    let (a, b, c) = (
        origins.named.port(),
        origins.numeric.port(),
        origins.tls.port(),
    );
    let d = other.port();
    let probes = [
        ("other-path", format!("http://localhost:{a}/other")),
        (
            "other-method",
            format!("-X DELETE http://localhost:{a}/alpha"),
        ),
        (
            "method-of-other-path",
            format!("http://127.0.0.1:{b}/submit"),
        ),
        ("other-host", format!("http://127.0.0.1:{a}/alpha")),
        ("other-port", format!("http://localhost:{d}/alpha")),
        ("tls-other-path", format!("https://localhost:{c}/other")),
        (
            "tls-other-method",
            format!("-X DELETE https://localhost:{c}/secure"),
        ),
    ];
    let mut script = String::from(
        "probe() {\n  name=$1; shift\n  code=$(curl -q -s --max-time 10 -D hdr -o /dev/null -w '%{http_code}' \"$@\")\n  reason=$(grep -i '^x-cordon-reason:' hdr | tr -d '\\r' | cut -d' ' -f2)\n  echo \"$name $code $reason\"\n}\n",
    );
    for (name, args) in &probes {
        script.push_str(&format!("probe {name} {args}\n"));
    }
    // A tunnel to another port is refused at CONNECT.
    script.push_str(&format!(
        "code=$(curl -q -s --max-time 10 -D hdr -o /dev/null -w '%{{http_connect}}' https://localhost:{d}/)\n\
         reason=$(grep -i '^x-cordon-reason:' hdr | tr -d '\\r' | cut -d' ' -f2)\n\
         echo \"tls-other-port $code $reason\"\n"
    ));
    let before = (origins.counts(), other.count());
    let denied_trail = dir.join("denied.jsonl");
    let denied = run_session(&dir, &origins, &enforce_args(&denied_trail), &script);
    assert_eq!(denied.code, 0, "{}", denied.both());
    for name in probes
        .iter()
        .map(|(name, _)| *name)
        .chain(["tls-other-port"])
    {
        let line = denied
            .line(name)
            .unwrap_or_else(|| panic!("no result for {name}: {}", denied.both()));
        assert_eq!(line, "403 not_allowed", "{name}: {}", denied.both());
    }
    assert_eq!(
        (origins.counts(), other.count()),
        before,
        "no refused request reached an origin"
    );
    assert_trail_verifies(&denied_trail);
    let records = audit_records(&denied_trail);
    let http: Vec<&Value> = records
        .iter()
        .filter(|r| field(r, "kind") == "http")
        .collect();
    assert!(!http.is_empty());
    for record in &http {
        // The allowed tunnels the two refused HTTPS requests went through are the exception.
        if field(record, "method") == "CONNECT" && record["port"] == c {
            assert_eq!(field(record, "decision"), "allow", "{record}");
        } else {
            assert_eq!(field(record, "decision"), "deny", "{record}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn suggest_refuses_a_tampered_trail() {
    let dir = unique_temp_dir("run-observe-tamper");
    let origins = Origins::start(&dir);
    let trail = dir.join("observed.jsonl");
    let mut audit = os(&["--audit"]);
    audit.push(trail.clone().into());
    let port = origins.named.port();
    let observed = run_session(
        &dir,
        &origins,
        &audit,
        &format!("curl -q -sS --max-time 10 -o /dev/null http://localhost:{port}/tampered"),
    );
    assert_eq!(observed.code, 0, "{}", observed.both());
    assert_trail_verifies(&trail);

    // One byte of the recorded path changed: /tampered → /tampereD.
    let mut bytes = std::fs::read(&trail).expect("read trail");
    let at = bytes
        .windows(b"/tampered".len())
        .position(|w| w == b"/tampered")
        .expect("path in the trail")
        + b"/tampere".len();
    bytes[at] = b'D';
    let tampered = dir.join("tampered.jsonl");
    std::fs::write(&tampered, &bytes).expect("write tampered trail");
    assert_eq!(verify(&tampered).code, 1, "the change is detected");

    let out = dir.join("suggested.yaml");
    let mut args = os(&["policy", "suggest", "--from"]);
    args.push(tampered.clone().into());
    args.push("--out".into());
    args.push(out.clone().into());
    let refused = cordon(&args, &[], Some(&dir));
    assert_eq!(refused.code, 2, "{}", refused.both());
    assert!(
        refused.stderr.contains(&tampered.display().to_string()),
        "the trail is named: {}",
        refused.both()
    );
    assert!(!out.exists(), "nothing is suggested from a broken trail");

    // The untouched trail still gives a policy.
    args[3] = trail.into();
    let accepted = cordon(&args, &[], Some(&dir));
    assert_eq!(accepted.code, 0, "{}", accepted.both());
    assert!(out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn observed_trail_defaults_to_xdg_state_home() {
    let dir = unique_temp_dir("run-observe-default");
    let origins = Origins::start(&dir);
    let port = origins.named.port();
    let observed = run_session(
        &dir,
        &origins,
        &[],
        &format!("curl -q -sS --max-time 10 -o /dev/null http://localhost:{port}/default"),
    );
    assert_eq!(observed.code, 0, "{}", observed.both());
    let runs = dir.join("state/cordon/runs");
    let trails: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("{}: {e}", runs.display()))
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    assert_eq!(trails.len(), 1, "{trails:?}");
    let trail = &trails[0];
    assert!(trail.extension().is_some_and(|e| e == "jsonl"), "{trail:?}");
    assert_trail_verifies(trail);
    assert!(
        observed
            .stderr
            .contains(&format!("audit trail: {}", trail.display())),
        "{}",
        observed.stderr
    );
    assert_eq!(
        parse_inventory(&observed.stderr),
        inventory_from_trail(&audit_records(trail))
    );
    assert_eq!(origins.named.count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
