//! `cordon run --isolate`: the child lives in a network namespace whose only way out is
//! cordon. Going around the proxy (proxy variables unset, `--noproxy`, a raw socket) finds
//! nothing to connect to; names resolve only through cordon's filtering resolver; the host's
//! own resolver configuration is untouched; the child's exit code comes back; and when the
//! namespace cannot be made, cordon says why, exits 2 and never starts the child.

mod run_support;
mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use run_support::*;
use serde_json::Value;
use support::*;

/// `cordon run --isolate --config CONFIG -- /bin/sh -c SCRIPT` with `env` added.
fn run_isolated(config: &Path, script: &str, env: &[(&str, OsString)]) -> Ran {
    let mut args = os(&["run", "--isolate", "--config"]);
    args.push(config.into());
    args.extend(os(&["--", "/bin/sh", "-c", script]));
    cordon(&args, env, None)
}

/// The DNS name of a `kind: dns` record, without a trailing dot.
fn dns_name(record: &Value) -> String {
    field(record, "host")
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// An enforce-mode config allowing only `origin.test:port` (at 127.0.0.1, which only its
/// `allow_ips` permits), resolving through `dns`.
fn write_config(dir: &Path, dns: std::net::SocketAddr, port: u16) -> (PathBuf, PathBuf) {
    let trail = dir.join("audit.jsonl");
    let config = dir.join("cordon.yaml");
    let yaml = format!(
        r#"version: 1
agent: {{ name: isolate-test }}
mode: enforce
dns: {{ upstream: ["{dns}"] }}
egress:
  - {{ host: origin.test, ports: [{port}], allow_ips: ["127.0.0.1/32"] }}
audit: {{ path: "{trail}", fsync: none }}
"#,
        trail = trail.display()
    );
    std::fs::write(&config, yaml).expect("write config");
    (config, trail)
}

/// What the child does inside the namespace; every result is a `key value` line on stdout.
fn probe_script(port: u16, exit_code: u8) -> String {
    format!(
        r#"
sed 's/^/resolv: /' /etc/resolv.conf
code=$(curl -q -sS --max-time 10 -o /dev/null -w '%{{http_code}}' http://origin.test:{port}/via-proxy)
echo "proxied $code"
env -u HTTP_PROXY -u http_proxy -u HTTPS_PROXY -u https_proxy -u ALL_PROXY -u all_proxy \
  curl -q -sS --max-time 5 -o /dev/null http://127.0.0.1:{port}/direct-unset
echo "direct-unset $?"
curl -q -sS --max-time 5 --noproxy '*' -o /dev/null http://127.0.0.1:{port}/direct-noproxy
echo "direct-noproxy $?"
echo "allowed-name $(getent hosts origin.test)"
getent hosts denied.test
echo "denied-name $?"
if command -v python3 >/dev/null 2>&1; then
  python3 - <<'EOF'
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
    print("python-direct connected")
except OSError as e:
    print("python-direct", type(e).__name__)
try:
    socket.getaddrinfo("denied.test", 80)
    print("python-denied resolved")
except socket.gaierror as e:
    print("python-denied gaierror")
print("python-allowed", sorted({{a[4][0] for a in socket.getaddrinfo("origin.test", 80, socket.AF_INET)}}))
EOF
fi
exit {exit_code}
"#
    )
}

/// Whether this machine lets cordon make its namespaces (the same `unshare` call it makes,
/// minus the program). Without them a test says SKIPPED, except in CI, where it must run.
fn isolation_available(test: &str) -> bool {
    let works = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(!in_ci, "{test}: namespaces are unavailable in CI");
        eprintln!("SKIPPED {test}: network and mount namespaces are unavailable");
    }
    works
}

#[test]
fn isolated_child_reaches_nothing_but_cordon() {
    if !isolation_available("isolated_child_reaches_nothing_but_cordon") {
        return;
    }
    let origin = Origin::plain();
    let dns = DnsServer::start(&[
        ("origin.test", "127.0.0.1".parse().unwrap()),
        ("denied.test", "127.0.0.1".parse().unwrap()),
    ]);
    let dir = unique_temp_dir("run-isolate");
    let (config, trail) = write_config(&dir, dns.addr(), origin.port());
    let host_resolv = std::fs::read("/etc/resolv.conf").ok();

    let ran = run_isolated(&config, &probe_script(origin.port(), 23), &[]);

    // The child's exit code comes back through the namespace helper and cordon.
    assert_eq!(ran.code, 23, "{}", ran.both());
    // Inside, the resolver is cordon's; outside, nothing changed.
    assert!(
        ran.stdout.contains("resolv: nameserver 127.0.0.1"),
        "{}",
        ran.both()
    );
    assert_eq!(
        std::fs::read("/etc/resolv.conf").ok(),
        host_resolv,
        "the host's /etc/resolv.conf is unchanged"
    );

    // Through the proxy: allowed and delivered. Around the proxy: nothing listens at the
    // origin's address inside (curl 7: cannot connect), whether the variables are gone or
    // curl is told to ignore them.
    expect_lines(
        &ran,
        &[
            ("proxied", "200"),
            ("direct-unset", "7"),
            ("direct-noproxy", "7"),
        ],
    );
    let paths: Vec<String> = origin.requests().iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/via-proxy"], "only the proxied request arrived");

    // Names: the allowed one through cordon's resolver, the other refused before any
    // upstream saw it.
    let allowed = ran.line("allowed-name").unwrap_or_default();
    assert!(
        allowed.starts_with("127.0.0.1") && allowed.contains("origin.test"),
        "{}",
        ran.both()
    );
    expect_lines(&ran, &[("denied-name", "2")]);
    assert_eq!(
        dns.queries_for("denied.test"),
        0,
        "no upstream query for it"
    );
    if ran.stdout.contains("python-direct") {
        assert_eq!(
            ran.line("python-direct").as_deref(),
            Some("ConnectionRefusedError"),
            "{}",
            ran.both()
        );
        assert_eq!(
            ran.line("python-denied").as_deref(),
            Some("gaierror"),
            "{}",
            ran.both()
        );
        assert_eq!(
            ran.line("python-allowed").as_deref(),
            Some("['127.0.0.1']"),
            "{}",
            ran.both()
        );
    } else {
        eprintln!("note: python3 not found; the python probes were not run");
    }

    // The trail has the DNS decisions and the proxied request, and verifies.
    assert_trail_verifies(&trail);
    let records = audit_records(&trail);
    let dns_records: Vec<&Value> = records
        .iter()
        .filter(|r| field(r, "kind") == "dns")
        .collect();
    assert!(
        dns_records
            .iter()
            .any(|r| dns_name(r) == "origin.test" && field(r, "decision") == "allow"),
        "an allowed dns record for origin.test: {dns_records:#?}"
    );
    let denied: Vec<&&Value> = dns_records
        .iter()
        .filter(|r| dns_name(r) == "denied.test")
        .collect();
    assert!(!denied.is_empty(), "a dns record for denied.test");
    for record in denied {
        assert_eq!(field(record, "decision"), "deny", "{record}");
        assert_eq!(field(record, "reason"), "not_allowed", "{record}");
    }
    let http: Vec<&Value> = records
        .iter()
        .filter(|r| field(r, "kind") == "http")
        .collect();
    assert_eq!(http.len(), 1, "one request reached cordon: {http:#?}");
    assert_eq!(field(http[0], "decision"), "allow");
    assert_eq!(field(http[0], "host"), "origin.test");
    assert_eq!(field(http[0], "path"), "/via-proxy");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `name`'s path on this process's PATH.
fn find_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is needed by this test and was not found"))
}

/// A directory of symlinks to `tools` (name → target) to serve as the whole PATH.
fn bin_dir(dir: &Path, tools: &[(&str, PathBuf)]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("create bin");
    for (name, target) in tools {
        std::os::unix::fs::symlink(target, bin.join(name)).expect("symlink tool");
    }
    bin
}

/// Runs `cordon run --isolate` with `path` as the whole PATH; the child would create
/// `marker`. Returns the result and whether the marker appeared.
fn isolate_with_path(dir: &Path, path: &Path) -> (Ran, bool) {
    let marker = dir.join("child-ran");
    let mut args = os(&["run", "--isolate", "--audit"]);
    args.push(dir.join("audit.jsonl").into());
    args.extend(os(&["--", "/bin/sh", "-c"]));
    args.push(format!(": > '{}'", marker.display()).into());
    let ran = cordon(&args, &[("PATH", path.into())], None);
    let ran_child = marker.exists();
    (ran, ran_child)
}

#[test]
fn isolation_impossible_without_unshare_exits_2_before_the_child() {
    let dir = unique_temp_dir("run-isolate-nounshare");
    let bin = bin_dir(
        &dir,
        &[
            ("sh", find_tool("sh")),
            ("ip", find_tool("ip")),
            ("mount", find_tool("mount")),
        ],
    );
    refused_before_the_child(&dir, &bin, "`unshare`");
}

/// Runs an isolated child with `PATH=bin`; asserts exit 2, a message naming `why`, and
/// that the child never ran.
fn refused_before_the_child(dir: &Path, bin: &Path, why: &str) {
    let (ran, child_ran) = isolate_with_path(dir, bin);
    assert_eq!(ran.code, 2, "{}", ran.both());
    assert!(
        ran.stderr.contains("--isolate: cannot isolate")
            && ran.stderr.contains(why)
            && ran.stderr.contains("the command was not run"),
        "the reason is given: {}",
        ran.both()
    );
    assert!(!child_ran, "the child never ran");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn namespace_that_cannot_be_set_up_exits_2_before_the_child() {
    if !isolation_available("namespace_that_cannot_be_set_up_exits_2_before_the_child") {
        return;
    }
    // unshare works, but `ip` fails inside: the helper reports, cordon refuses to go on.
    let dir = unique_temp_dir("run-isolate-noip");
    let bin = bin_dir(
        &dir,
        &[
            ("sh", find_tool("sh")),
            ("unshare", find_tool("unshare")),
            ("mount", find_tool("mount")),
            ("ip", find_tool("false")),
        ],
    );
    refused_before_the_child(&dir, &bin, "loopback");
}

/// The unprivileged path: as `nobody`, cordon needs a user namespace as well.
#[test]
fn isolation_works_unprivileged_through_a_user_namespace() {
    const NOBODY: u32 = 65534;
    let skip = |why: &str| eprintln!("SKIPPED isolation_works_unprivileged: {why}");
    if !rustix::process::geteuid().is_root() {
        // Then the test above already ran cordon unprivileged.
        return skip("not running as root, so cannot switch to nobody");
    }
    let setpriv = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let as_nobody = |cmd: &[&str]| {
        Command::new("setpriv")
            .args(setpriv)
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !as_nobody(&[
        "unshare",
        "--user",
        "--map-root-user",
        "--net",
        "--mount",
        "true",
    ]) {
        return skip("setpriv or unprivileged user namespaces are unavailable");
    }
    if !as_nobody(&["test", "-x", CORDON]) {
        return skip("the cordon binary is not executable by nobody (private target dir)");
    }

    let origin = Origin::plain();
    let dns = DnsServer::start(&[("origin.test", "127.0.0.1".parse().unwrap())]);
    let dir = unique_temp_dir("run-isolate-nobody");
    let (config, trail) = write_config(&dir, dns.addr(), origin.port());
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown temp dir");
    std::os::unix::fs::chown(&config, Some(NOBODY), Some(NOBODY)).expect("chown config");
    if !as_nobody(&["test", "-r", config.to_str().unwrap()]) {
        let _ = std::fs::remove_dir_all(&dir);
        return skip("the temp dir is not reachable by nobody (private TMPDIR)");
    }

    let mut args = os(&setpriv);
    args.extend(os(&[CORDON, "run", "--isolate", "--config"]));
    args.push(config.clone().into());
    args.extend(os(&["--", "/bin/sh", "-c"]));
    args.push(probe_script(origin.port(), 5).into());
    let ran = run(
        "setpriv",
        &args,
        &[("TMPDIR", dir.clone().into()), ("HOME", dir.clone().into())],
        None,
    );
    assert_eq!(ran.code, 5, "{}", ran.both());
    expect_lines(
        &ran,
        &[
            ("proxied", "200"),
            ("direct-unset", "7"),
            ("denied-name", "2"),
        ],
    );
    let paths: Vec<String> = origin.requests().iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/via-proxy"]);
    assert_trail_verifies(&trail);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Asserts that each `label` line the probe printed has `value`.
fn expect_lines(ran: &Ran, expected: &[(&str, &str)]) {
    for (label, value) in expected {
        assert_eq!(
            ran.line(label).as_deref(),
            Some(*value),
            "{label}: {}",
            ran.both()
        );
    }
}

/// Whatever user cordon runs as (root included), the isolated child has no rights over
/// cordon's own namespaces: entering cordon's network namespace (its grandparent's: the
/// child's parent is the helper inside) fails, so the origin on the host's loopback is
/// never reached around the proxy, and cordon's environment stays closed to it.
#[test]
fn an_isolated_child_cannot_enter_cordons_network_namespace() {
    if !isolation_available("an_isolated_child_cannot_enter_cordons_network_namespace") {
        return;
    }
    if Command::new("nsenter")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIPPED an_isolated_child_cannot_enter_cordons_network_namespace: no nsenter");
        return;
    }
    let origin = Origin::plain();
    let dns = DnsServer::start(&[]);
    let dir = unique_temp_dir("run-isolate-setns");
    let (config, _trail) = write_config(&dir, dns.addr(), origin.port());
    let script = format!(
        r#"
cordon=$(awk '/^PPid:/ {{print $2}}' /proc/$PPID/status)
echo "cordon-comm $(cat /proc/$cordon/comm)"
nsenter --net=/proc/$cordon/ns/net \
  curl -q -sS --noproxy '*' --max-time 5 -o /dev/null http://127.0.0.1:{port}/escaped 2>/dev/null
echo "setns $?"
if tr '\0' '\n' < /proc/$cordon/environ 2>/dev/null | grep -q '^CORDON_TEST_OUTSIDE='; then
  echo "environ readable"
else
  echo "environ closed"
fi
"#,
        port = origin.port()
    );
    let ran = run_isolated(
        &config,
        &script,
        &[("CORDON_TEST_OUTSIDE", OsString::from("1"))],
    );
    assert_eq!(ran.code, 0, "{}", ran.both());
    expect_lines(&ran, &[("cordon-comm", "cordon"), ("environ", "closed")]);
    assert_ne!(ran.line("setns").as_deref(), Some("0"), "{}", ran.both());
    assert!(
        origin.requests().is_empty(),
        "nothing reached the origin around cordon: {}",
        ran.both()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
