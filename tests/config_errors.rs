//! `cordon check` against broken configs, through the real binary: each must exit 2 and
//! name the key path and the problem on stderr.
//!
//! Cases marked `needs policy` go through `HostPattern::parse`, `PathPattern::parse` or
//! `Policy::new` and pass once the `policy` module is implemented.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory of its own for each test, so parallel tests never share files.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cordon-config-errors-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `yaml` (with `{dir}` replaced by the scratch dir) and runs `cordon check` on it.
fn check(yaml: &str) -> (Output, PathBuf) {
    let dir = scratch_dir();
    let file = dir.join("cordon.yaml");
    std::fs::write(&file, yaml.replace("{dir}", &dir.display().to_string())).unwrap();
    (check_file(&file), file)
}

fn check_file(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["check", "--config"])
        .arg(file)
        .env_remove("CORDON_TEST_SURELY_UNSET")
        .output()
        .unwrap()
}

/// A config with valid `version`, `agent` and `audit`, plus `rest`.
fn with(rest: &str) -> String {
    format!(
        "version: 1\nagent: {{name: bot}}\naudit: {{path: \"{{dir}}/audit.jsonl\"}}\n\
         listen: {{proxy: \"127.0.0.1:0\"}}\n{rest}"
    )
}

/// Asserts exit code 2 and that stderr holds the file name and every `needle`.
fn assert_refused(yaml: &str, needles: &[&str]) {
    let (out, file) = check(yaml);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.starts_with("cordon check: "), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in {stderr:?}");
    }
}

#[test]
fn yaml_syntax_error() {
    let (out, file) = check("version: 1\nagent: {name: bot\naudit: x\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // `<file>:<line>:<col>: <message>`
    let prefix = format!("cordon check: {}:", file.display());
    let rest = stderr
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{stderr}"));
    let mut parts = rest.splitn(3, ':');
    assert!(parts.next().unwrap().parse::<u32>().is_ok(), "{stderr}");
    assert!(parts.next().unwrap().parse::<u32>().is_ok(), "{stderr}");
}

#[test]
fn unreadable_file() {
    let out = check_file(&scratch_dir().join("missing.yaml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("missing.yaml: cannot read:"), "{stderr}");
}

#[test]
fn unknown_top_level_key() {
    assert_refused(&with("egres: []\n"), &["unknown key `egres`", "`egress`"]);
}

#[test]
fn unknown_nested_key() {
    assert_refused(
        &with("egress: [{host: api.example.com, methods: [GET]}]\n"),
        &["egress[0]", "unknown key `methods`", "`rules`"],
    );
}

#[test]
fn credentials_not_supported() {
    assert_refused(
        &with("credentials: {openai: {source: {env: OPENAI_API_KEY}}}\n"),
        &["credentials: `credentials` is not supported by this version of cordon"],
    );
}

#[test]
fn tls_intercept_not_supported() {
    assert_refused(
        &with("egress: [{host: api.example.com, tls: intercept}]\n"),
        &["egress[0].tls: intercept is not supported by this version of cordon"],
    );
}

#[test]
fn version_2() {
    assert_refused(
        &with("").replace("version: 1", "version: 2"),
        &["version: version 2 is not supported"],
    );
}

#[test]
fn bare_star_host() {
    // needs policy
    assert_refused(
        &with("egress: [{host: \"*\"}]\n"),
        &["egress[0].host: invalid host \"*\""],
    );
}

#[test]
fn empty_host() {
    assert_refused(
        &with("egress: [{host: api.example.com}, {host: \"\"}]\n"),
        &["egress[1].host: must not be empty"],
    );
}

#[test]
fn star_dot_com_host() {
    // needs policy
    assert_refused(
        &with("deny: [{host: \"*.com\"}]\n"),
        &["deny[0].host: invalid host \"*.com\""],
    );
}

#[test]
fn bad_cidr() {
    assert_refused(
        &with("egress: [{host: api.example.com, allow_ips: [\"10.0.0.0/40\"]}]\n"),
        &["egress[0].allow_ips[0]: \"10.0.0.0/40\" is not an IP address or CIDR"],
    );
}

#[test]
fn port_zero() {
    assert_refused(
        &with("egress: [{host: api.example.com, ports: [0]}]\n"),
        &[
            "egress[0].ports[0]: invalid value: integer `0`",
            "1 to 65535",
        ],
    );
}

#[test]
fn port_too_large() {
    assert_refused(
        &with("egress: [{host: api.example.com, ports: [443, 70000]}]\n"),
        &[
            "egress[0].ports[1]: invalid value: integer `70000`",
            "1 to 65535",
        ],
    );
}

#[test]
fn unset_variable() {
    assert_refused(
        "version: 1\nagent: {name: bot, instance: \"${CORDON_TEST_SURELY_UNSET}\"}\n\
         audit: {path: /tmp/x.jsonl}\n",
        &["agent.instance: environment variable CORDON_TEST_SURELY_UNSET is not set"],
    );
}

#[test]
fn bad_fsync() {
    assert_refused(
        "version: 1\nagent: {name: bot}\naudit: {path: /tmp/x.jsonl, fsync: always}\n",
        &[
            "audit.fsync: unknown value `always`",
            "`every`",
            "`batch`",
            "`none`",
        ],
    );
}

#[test]
fn bad_path_pattern() {
    // needs policy
    assert_refused(
        &with("egress: [{host: api.example.com, rules: [{paths: [\"/a*\"]}]}]\n"),
        &["egress[0].rules[0].paths[0]: invalid path pattern \"/a*\""],
    );
}

#[test]
fn bad_method() {
    assert_refused(
        &with("egress: [{host: api.example.com, rules: [{methods: [\"GE T\"]}]}]\n"),
        &["egress[0].rules[0].methods[0]: \"GE T\" is not an HTTP method"],
    );
}

#[test]
fn connect_method() {
    assert_refused(
        &with("deny: [{host: api.example.com, methods: [CONNECT]}]\n"),
        &["deny[0].methods[0]: CONNECT cannot be used as a rule method"],
    );
}

#[test]
fn admin_equals_proxy() {
    assert_refused(
        "version: 1\nagent: {name: bot}\naudit: {path: /tmp/x.jsonl}\n\
         listen: {proxy: \"127.0.0.1:15001\", admin: \"127.0.0.1:15001\"}\n",
        &["listen.admin: 127.0.0.1:15001 overlaps listen.proxy"],
    );
}

#[test]
fn missing_audit_path() {
    assert_refused(
        "version: 1\nagent: {name: bot}\naudit: {fsync: every}\n",
        &["audit: missing required key `path`"],
    );
}

#[test]
fn bad_agent_name() {
    assert_refused(
        "version: 1\nagent: {name: \"deploy bot\"}\naudit: {path: /tmp/x.jsonl}\n",
        &["agent.name: \"deploy bot\" contains ' '"],
    );
}

#[test]
fn proxy_address_in_use() {
    // needs policy (the file must load before listeners are tried)
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    assert_refused(
        &with("").replace("127.0.0.1:0", &addr.to_string()),
        &[&format!("listen.proxy: cannot bind {addr}: address in use")],
    );
}

#[test]
fn audit_directory_missing() {
    // needs policy (the file must load before the audit directory is looked at)
    assert_refused(
        &with("").replace("{dir}/audit.jsonl", "{dir}/no-such-dir/audit.jsonl"),
        &["audit.path: directory", "no-such-dir does not exist"],
    );
}

#[test]
fn example_config_is_accepted() {
    // needs policy
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cordon.yaml");
    // The example names fixed ports; check it with port 0 so a busy port on the test
    // machine cannot fail it, keeping everything else as written.
    let text = std::fs::read_to_string(&example).unwrap();
    let text = text
        .replace("127.0.0.1:15001", "127.0.0.1:0")
        .replace("127.0.0.1:15090", "127.0.0.1:0");
    let (out, _) = check(&text);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.trim_end().ends_with("config ok"), "{stdout}");
    for needle in [
        "agent: example-agent",
        "mode: enforce",
        "dns upstream: system resolver",
        "[0] api.example.com",
        "methods: POST; paths: /pages/*/comments",
        "deny:",
        "policy hash: sha256:",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in {stdout}");
    }
}
