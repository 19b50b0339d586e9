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
        .env("CORDON_TEST_LLM_KEY", LLM_TEST_VALUE)
        .output()
        .unwrap()
}

/// A credential value present in every check's environment, which no output may show.
const LLM_TEST_VALUE: &str = "sk-test-value-that-check-must-not-print";

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
fn not_yet_supported_key() {
    assert_refused(
        &with("limits: {requests_per_minute: 600}\n"),
        &["limits: `limits` is not supported by this version of cordon"],
    );
}

#[test]
fn unknown_credential_id() {
    assert_refused(
        &with(
            "credentials: {github: {source: {env: GH_TOKEN}}}\n\
             egress: [{host: api.github.com, credential: gitlab}]\n",
        ),
        &["egress[0].credential: \"gitlab\" is not an entry of `credentials` (defined: github)"],
    );
}

#[test]
fn two_sources() {
    assert_refused(
        &with("credentials: {gh: {source: {env: GH_TOKEN, file: /run/gh}}}\n"),
        &["credentials.gh.source: has more than one kind (env, file)"],
    );
}

#[test]
fn no_source() {
    assert_refused(
        &with("credentials: {gh: {source: {}}}\n"),
        &["credentials.gh.source: needs one of `env`, `file`, `exec`, `oauth2`"],
    );
}

#[test]
fn unsupported_source_kind() {
    assert_refused(
        &with("credentials: {aws: {source: {aws_sts: {role_arn: x}}}}\n"),
        &["credentials.aws.source.aws_sts: `credentials.<id>.source.aws_sts` is not supported by this version of cordon"],
    );
}

#[test]
fn passthrough_with_credential() {
    assert_refused(
        &with(
            "credentials: {gh: {source: {env: GH_TOKEN}}}\n\
             egress: [{host: api.github.com, tls: passthrough, credential: gh}]\n",
        ),
        &["egress[0].credential: cannot be used with `tls: passthrough`"],
    );
}

#[test]
fn bad_inject_template() {
    assert_refused(
        &with(
            "credentials: {gh: {source: {env: GH_TOKEN}, \
             inject: {header: Authorization, value: \"token secret\"}}}\n",
        ),
        &["credentials.gh.inject.value: \"token secret\" must contain `{secret}` exactly once"],
    );
}

#[test]
fn hop_by_hop_inject_header() {
    assert_refused(
        &with(
            "credentials: {gh: {source: {env: GH_TOKEN}, \
             inject: {header: Connection, value: \"{secret}\"}}}\n",
        ),
        &["credentials.gh.inject.header: Connection cannot carry a credential"],
    );
}

#[test]
fn duplicate_placeholder() {
    assert_refused(
        &with(
            "credentials:\n  \
             a: {source: {env: A}, placeholder: SHARED_PLACEHOLDER}\n  \
             b: {source: {env: B}, placeholder: SHARED_PLACEHOLDER}\n",
        ),
        &["credentials.b.placeholder: SHARED_PLACEHOLDER is also the placeholder of credentials.a"],
    );
}

#[test]
fn missing_extra_roots_file() {
    assert_refused(
        &with("tls: {extra_roots: [\"{dir}/corp-ca.pem\"]}\n"),
        &[
            "tls.extra_roots[0]: ",
            "corp-ca.pem does not exist or is not a file",
        ],
    );
}

#[test]
fn exec_command_not_found() {
    assert_refused(
        &with("credentials: {cloud: {source: {exec: {command: [cordon-test-no-such-plugin]}}}}\n"),
        &["credentials.cloud.source.exec.command[0]: \"cordon-test-no-such-plugin\" was not found in PATH"],
    );
    assert_refused(
        &with("credentials: {cloud: {source: {exec: {command: [\"{dir}/get-token\"]}}}}\n"),
        &[
            "credentials.cloud.source.exec.command[0]: ",
            "get-token does not exist or is not an executable file",
        ],
    );
}

#[test]
fn credentials_are_described_without_values() {
    // The variable is set for the child, so a check that fetched it would have a value to
    // print; the output must name the variable only.
    let (out, _) = check(&with(
        "credentials: {llm: {source: {env: CORDON_TEST_LLM_KEY}, \
         inject: {header: Authorization, value: \"Bearer {secret}\"}}}\n\
         egress: [{host: llm.example.com, credential: llm}]\n",
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Checked first, and without echoing the output, so a leak is not printed either.
    assert!(
        !stdout.contains(LLM_TEST_VALUE) && !stderr.contains(LLM_TEST_VALUE),
        "cordon check printed the credential's value"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for needle in [
        "[0] llm.example.com",
        "tls: intercept",
        "credential: llm",
        "source: env CORDON_TEST_LLM_KEY",
        "inject: header Authorization",
        "placeholder: CORDON_PLACEHOLDER_LLM",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in {stdout}");
    }
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
    let (_, file) = check(&text);
    // The credential it names is fetched from the environment, as `serve` would.
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["check", "--config"])
        .arg(&file)
        .env("LLM_API_KEY", LLM_TEST_VALUE)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(LLM_TEST_VALUE) && !stderr.contains(LLM_TEST_VALUE),
        "cordon check printed the credential's value"
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.trim_end().ends_with("config ok"), "{stdout}");
    assert!(
        stdout.contains("credential llm: fetched (no expiry given)"),
        "{stdout}"
    );
    for needle in [
        "agent: example-agent",
        "mode: enforce",
        "dns upstream: system resolver",
        "[0] api.example.com",
        "methods: POST; paths: /pages/*/comments",
        "llm.example.com",
        "tls: intercept",
        "credential: llm",
        "source: env LLM_API_KEY",
        "deny:",
        "policy hash: sha256:",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in {stdout}");
    }
}

#[test]
fn check_fetches_every_credential_once_unless_told_not_to() {
    // An unset variable: the credential could not be served, so the config is refused.
    let yaml = with(
        "credentials: {gh: {source: {env: CORDON_TEST_SURELY_UNSET}, \
         inject: {header: Authorization, value: \"token {secret}\"}}}\n",
    );
    assert_refused(
        &yaml,
        &["credentials.gh", "CORDON_TEST_SURELY_UNSET", "--no-fetch"],
    );
    let (_, file) = check(&yaml);
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["check", "--no-fetch", "--config"])
        .arg(&file)
        .env_remove("CORDON_TEST_SURELY_UNSET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("credentials: not fetched (--no-fetch)"),
        "{stdout}"
    );

    // A plug-in that answers: its expiry is shown, its value never.
    let dir = scratch_dir();
    let plugin = dir.join("get-token");
    let value = "plugin-value-check-must-not-print";
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\nprintf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{value}\",\"expirationTimestamp\":\"2099-01-01T00:00:00Z\"}}}}'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (out, _) = check(&with(&format!(
        "credentials: {{cloud: {{source: {{exec: {{command: [\"{}\"]}}}}}}}}\n",
        plugin.display()
    )));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(value) && !stderr.contains(value),
        "cordon check printed the plug-in's value"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("credential cloud: fetched (expires in"),
        "{stdout}"
    );

    // A plug-in that fails: refused, with what it said.
    std::fs::write(&plugin, "#!/bin/sh\necho 'no session' >&2\nexit 3\n").unwrap();
    assert_refused(
        &with(&format!(
            "credentials: {{cloud: {{source: {{exec: {{command: [\"{}\"]}}}}}}}}\n",
            plugin.display()
        )),
        &["credentials.cloud"],
    );
}
