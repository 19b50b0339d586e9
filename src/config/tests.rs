//! Loading and validation, driven through [`super::parse`] with a fake environment.
//!
//! Tests in `needs_policy` reach `HostPattern::parse`, `PathPattern::parse` or
//! `Policy::new` and therefore pass only together with the `policy` module's
//! implementation; every other test stands on this module alone.

use super::*;
use std::env::VarError;

fn env(name: &str) -> Result<String, VarError> {
    match name {
        "POD_NAME" => Ok("pod-7".to_string()),
        "PROXY_PORT" => Ok("15009".to_string()),
        _ => Err(VarError::NotPresent),
    }
}

fn load_str(yaml: &str) -> Result<Config, ConfigError> {
    parse(Path::new("cordon.yaml"), yaml.as_bytes(), &env)
}

/// The error message for a config that must be refused.
fn error(yaml: &str) -> String {
    match load_str(yaml) {
        Ok(_) => panic!("config was accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// A valid head with no egress or deny, so `rest` decides the outcome.
fn with(rest: &str) -> String {
    format!("version: 1\nagent: {{name: bot}}\naudit: {{path: /tmp/a.jsonl}}\n{rest}")
}

fn assert_contains(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "{n:?} not in {haystack:?}");
    }
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let e = error("version: 1\nagent: [unclosed\n");
    assert!(e.starts_with("cordon.yaml:"), "{e}");
    let mut parts = e.split(':');
    let (line, col) = (parts.nth(1).unwrap(), parts.next().unwrap());
    assert!(
        line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok(),
        "{e}"
    );
    // The problem's own location is moved to the front, not repeated.
    assert!(!e.contains(&format!(" at line {line} column {col}")), "{e}");
}

#[test]
fn empty_file_is_refused() {
    assert_contains(&error(""), &["cordon.yaml: the file is empty"]);
}

#[test]
fn non_mapping_document_is_refused() {
    assert_contains(
        &error("- a\n- b\n"),
        &["cordon.yaml:", "expected a mapping"],
    );
}

#[test]
fn version_must_be_one() {
    assert_contains(
        &error(&with("").replace("version: 1", "version: 2")),
        &["cordon.yaml: version: version 2 is not supported"],
    );
    assert_contains(
        &error("agent: {name: bot}\naudit: {path: /tmp/a}\n"),
        &["missing required key `version`"],
    );
}

#[test]
fn unknown_top_level_key_names_it_and_lists_allowed() {
    let e = error(&with("colour: blue\n"));
    assert_contains(
        &e,
        &["cordon.yaml", "unknown key `colour`", "`egress`", "`audit`"],
    );
}

#[test]
fn unknown_nested_key_has_path() {
    let e = error(&with("listen: {proxy: 127.0.0.1:1, admn: 127.0.0.1:2}\n"));
    assert_contains(&e, &["listen", "unknown key `admn`", "`admin`"]);
    let e = error(&with("egress: [{host: a.example.com, port: [443]}]\n"));
    assert_contains(&e, &["egress[0]", "unknown key `port`", "`ports`"]);
}

#[test]
fn not_yet_supported_keys_are_named() {
    for (yaml, key, shown) in [
        ("grants: {}\n", "grants", "`grants`"),
        ("anomaly: {}\n", "anomaly", "`anomaly`"),
        ("approvers: {}\n", "approvers", "`approvers`"),
        ("limits: {}\n", "limits", "`limits`"),
        (
            "listen: {control: x}\n",
            "listen.control",
            "`listen.control`",
        ),
        (
            "credentials: {a: {source: {aws_sts: {role: x}}}}\n",
            "credentials.a.source.aws_sts",
            "`credentials.<id>.source.aws_sts`",
        ),
        (
            "credentials: {a: {source: {vault: {path: x}}}}\n",
            "credentials.a.source.vault",
            "`credentials.<id>.source.vault`",
        ),
        (
            "egress: [{host: a.example.com, capture: full}]\n",
            "egress[0].capture",
            "`egress[].capture`",
        ),
    ] {
        let e = error(&with(yaml));
        assert_contains(
            &e,
            &[
                &format!("cordon.yaml: {key}: "),
                &format!("{shown} is not supported by this version of cordon"),
            ],
        );
    }
}

#[test]
fn tls_mode_values() {
    let e = error(&with("egress: [{host: a.example.com, tls: sometimes}]\n"));
    assert_contains(
        &e,
        &[
            "egress[0].tls",
            "\"sometimes\"",
            "`intercept`",
            "`passthrough`",
        ],
    );
}

/// A config with one credential `a` whose entry is `cred` (YAML flow mapping body).
fn with_credential(cred: &str, rest: &str) -> String {
    with(&format!("credentials:\n  a: {{{cred}}}\n{rest}"))
}

#[test]
fn credential_sources_are_checked() {
    for (source, needle) in [
        ("{}", "credentials.a.source: needs one of `env`, `file`, `exec`, `oauth2`"),
        (
            "{env: A, file: /tmp/x}",
            "credentials.a.source: has more than one kind (env, file)",
        ),
        ("{env: \"\"}", "credentials.a.source.env: \"\" is not an environment variable name"),
        ("{env: A, refresh: 1s}", "credentials.a.source.refresh: only applies to a `file` source"),
        ("{file: /tmp/x, refresh: soon}", "credentials.a.source.refresh: \"soon\" is not a duration"),
        ("{file: /tmp/x, refresh: 0s}", "credentials.a.source.refresh: must be longer than zero"),
        ("{exec: {command: []}}", "credentials.a.source.exec.command: must not be empty"),
        (
            "{exec: {command: [cordon-no-such-plugin-xyz]}}",
            "credentials.a.source.exec.command[0]: \"cordon-no-such-plugin-xyz\" was not found in PATH",
        ),
        (
            "{exec: {command: [/nonexistent/get-token]}}",
            "credentials.a.source.exec.command[0]: /nonexistent/get-token does not exist",
        ),
        (
            "{exec: {command: [bin/get-token]}}",
            "credentials.a.source.exec.command[0]: \"bin/get-token\" must be an absolute path",
        ),
        (
            "{exec: {command: [/bin/sh], timeout: 1y2}}",
            "credentials.a.source.exec.timeout: \"1y2\" is not a duration",
        ),
        ("{exec: {cmd: [/bin/sh]}}", "credentials.a.source.exec.cmd: unknown key `cmd`"),
        (
            "{oauth2: {token_url: \"ftp://x/token\", client_id: c, client_secret_file: /s}}",
            "credentials.a.source.oauth2.token_url: \"ftp://x/token\" must start with http:// or https://",
        ),
        (
            "{oauth2: {token_url: \"https://u:p@x/token\", client_id: c, client_secret_file: /s}}",
            "credentials.a.source.oauth2.token_url: \"https://u:p@x/token\" must not contain user information",
        ),
        (
            "{oauth2: {token_url: \"https://x/token\", client_id: \"\", client_secret_file: /s}}",
            "credentials.a.source.oauth2.client_id: must be non-empty",
        ),
        (
            "{oauth2: {token_url: \"https://x/token\", client_id: c, client_secret_file: /s, scopes: [\"a b\"]}}",
            "credentials.a.source.oauth2.scopes[0]: \"a b\" is not an OAuth2 scope",
        ),
        (
            "{oauth2: {token_url: \"https://x/token\", client_id: c}}",
            "credentials.a.source.oauth2: missing required key `client_secret_file`",
        ),
        ("{token: abc}", "credentials.a.source.token: unknown key `token`"),
    ] {
        let e = error(&with_credential(&format!("source: {source}"), ""));
        assert_contains(&e, &["cordon.yaml: ", needle]);
    }
}

#[test]
fn credential_ids_and_fields_are_checked() {
    assert_contains(
        &error(&with("credentials:\n  OpenAI: {source: {env: A}}\n")),
        &["cordon.yaml: credentials.OpenAI: \"OpenAI\" is not a credential id"],
    );
    for (cred, needle) in [
        (
            "source: {env: A}, inject: {header: Authorization, value: Bearer}",
            "credentials.a.inject.value: \"Bearer\" must contain `{secret}` exactly once",
        ),
        (
            "source: {env: A}, inject: {header: Authorization, value: \"{secret}{secret}\"}",
            "credentials.a.inject.value: \"{secret}{secret}\" must contain `{secret}` exactly once",
        ),
        (
            "source: {env: A}, inject: {header: \"Bad Header\", value: \"{secret}\"}",
            "credentials.a.inject.header: \"Bad Header\" is not a valid header name",
        ),
        (
            "source: {env: A}, inject: {header: Proxy-Authorization, value: \"{secret}\"}",
            "credentials.a.inject.header: Proxy-Authorization cannot carry a credential",
        ),
        (
            "source: {env: A}, inject: {header: Host, value: \"{secret}\"}",
            "credentials.a.inject.header: Host cannot carry a credential",
        ),
        (
            "source: {env: A}, inject: {header: Authorization}",
            "credentials.a.inject: missing required key `value`",
        ),
        (
            "source: {env: A}, placeholder: SHORT",
            "credentials.a.placeholder: \"SHORT\" is not a usable placeholder",
        ),
        (
            "source: {env: A}, placeholder: \"HAS-A-DASH-PLACEHOLDER\"",
            "credentials.a.placeholder: \"HAS-A-DASH-PLACEHOLDER\" is not a usable placeholder",
        ),
        (
            "source: {env: A}, env: \"1ABC\"",
            "credentials.a.env: \"1ABC\" is not an environment variable name",
        ),
        (
            "inject: {header: A, value: \"{secret}\"}",
            "credentials.a: missing required key `source`",
        ),
        (
            "source: {env: A}, require_placeholder: maybe",
            "credentials.a.require_placeholder: invalid type",
        ),
    ] {
        let e = error(&with_credential(cred, ""));
        assert_contains(&e, &["cordon.yaml: ", needle]);
    }
}

#[test]
fn placeholders_and_env_names_are_unique() {
    // `a-b` and `a_b` have the same default placeholder.
    let e = error(&with(
        "credentials:\n  a-b: {source: {env: A}}\n  a_b: {source: {env: B}}\n",
    ));
    assert_contains(
        &e,
        &["credentials.a_b.placeholder: CORDON_PLACEHOLDER_A_B is also the placeholder of credentials.a-b"],
    );
    let e = error(&with(
        "credentials:\n  one: {source: {env: A}, placeholder: SAME_PLACEHOLDER_1}\n  \
         two: {source: {env: B}, placeholder: SAME_PLACEHOLDER_1}\n",
    ));
    assert_contains(&e, &["credentials.two.placeholder: SAME_PLACEHOLDER_1 is also the placeholder of credentials.one"]);
    // `gh` and `gh_app`: CORDON_PLACEHOLDER_GH stands inside CORDON_PLACEHOLDER_GH_APP.
    let e = error(&with(
        "credentials:\n  gh: {source: {env: A}}\n  gh_app: {source: {env: B}}\n",
    ));
    assert_contains(
        &e,
        &[
            "credentials.gh_app.placeholder",
            "credentials.gh (CORDON_PLACEHOLDER_GH)",
            "contain one another",
        ],
    );
    let e = error(&with(
        "credentials:\n  one: {source: {env: A}, env: TOKEN}\n  two: {source: {env: B}, env: TOKEN}\n",
    ));
    assert_contains(
        &e,
        &["credentials.two.env: TOKEN is also exported by credentials.one"],
    );
}

#[test]
fn egress_credentials_are_checked() {
    assert_contains(
        &error(&with("egress: [{host: a.example.com, credential: nope}]\n")),
        &["cordon.yaml: egress[0].credential: \"nope\" is not an entry of `credentials` (no credentials are defined)"],
    );
    assert_contains(
        &error(&with_credential(
            "source: {env: A}",
            "egress: [{host: a.example.com, credential: b}]\n",
        )),
        &["egress[0].credential: \"b\" is not an entry of `credentials` (defined: a)"],
    );
    assert_contains(
        &error(&with_credential(
            "source: {env: A}",
            "egress: [{host: a.example.com, tls: passthrough, credential: a}]\n",
        )),
        &["egress[0].credential: cannot be used with `tls: passthrough`"],
    );
}

#[test]
fn tls_section_is_checked() {
    assert_contains(
        &error(&with("tls: {extra_roots: [/nonexistent/root.pem]}\n")),
        &["cordon.yaml: tls.extra_roots[0]: /nonexistent/root.pem does not exist or is not a file"],
    );
    assert_contains(
        &error(&with("tls: {ca_dir: \"\"}\n")),
        &["tls.ca_dir: must not be empty"],
    );
    assert_contains(
        &error(&with("tls: {ca: /x}\n")),
        &["tls.ca: unknown key `ca`", "`ca_dir`"],
    );
}

#[test]
fn missing_required_fields() {
    assert_contains(
        &error("version: 1\nagent: {name: bot}\n"),
        &["cordon.yaml: missing required key `audit`"],
    );
    assert_contains(
        &error("version: 1\nagent: {name: bot}\naudit: {fsync: every}\n"),
        &["cordon.yaml: audit: missing required key `path`"],
    );
    assert_contains(
        &error("version: 1\nagent: {instance: x}\naudit: {path: /tmp/a}\n"),
        &["cordon.yaml: agent: missing required key `name`"],
    );
    assert_contains(
        &error(&with("egress: [{ports: [443]}]\n")),
        &["egress[0]: missing required key `host`"],
    );
}

#[test]
fn wrong_types_carry_paths() {
    assert_contains(
        &error(&with("egress: {host: a}\n")),
        &["cordon.yaml: egress: invalid type", "sequence"],
    );
    assert_contains(
        &error(&with("dns: {upstream: 10.0.0.1}\n")),
        &["dns.upstream: invalid type"],
    );
}

#[test]
fn agent_name_is_checked() {
    assert_contains(
        &error("version: 1\nagent: {name: \"\"}\naudit: {path: /tmp/a}\n"),
        &["agent.name: must not be empty"],
    );
    assert_contains(
        &error("version: 1\nagent: {name: \"bad name\"}\naudit: {path: /tmp/a}\n"),
        &["agent.name: \"bad name\" contains ' '"],
    );
    assert_contains(
        &error("version: 1\nagent: {name: a, instance: \"\"}\naudit: {path: /tmp/a}\n"),
        &["agent.instance: must not be empty"],
    );
}

#[test]
fn unset_variable_names_key() {
    let e = error("version: 1\nagent: {name: bot, instance: \"${NOT_SET_ANYWHERE}\"}\naudit: {path: /tmp/a}\n");
    assert_eq!(
        e,
        "cordon.yaml: agent.instance: environment variable NOT_SET_ANYWHERE is not set"
    );
}

#[test]
fn unterminated_variable_names_key() {
    let e =
        error("version: 1\nagent: {name: bot, instance: \"${POD_NAME\"}\naudit: {path: /tmp/a}\n");
    assert_contains(&e, &["cordon.yaml: agent.instance: unterminated `${`"]);
}

#[test]
fn mode_values() {
    assert_contains(
        &error(&with("mode: relaxed\n")),
        &["mode: unknown value `relaxed`", "`enforce`", "`observe`"],
    );
}

#[test]
fn fsync_values() {
    assert_contains(
        &error("version: 1\nagent: {name: bot}\naudit: {path: /tmp/a, fsync: sometimes}\n"),
        &[
            "audit.fsync: unknown value `sometimes`",
            "`every`",
            "`batch`",
            "`none`",
        ],
    );
}

#[test]
fn audit_path_must_not_be_empty() {
    assert_contains(
        &error("version: 1\nagent: {name: bot}\naudit: {path: \"\"}\n"),
        &["audit.path: must not be empty"],
    );
}

#[test]
fn listen_addresses_are_checked() {
    assert_contains(
        &error(&with("listen: {proxy: localhost}\n")),
        &["listen.proxy: \"localhost\" is not an address"],
    );
    assert_contains(
        &error(&with(
            "listen: {proxy: 127.0.0.1:15001, admin: 127.0.0.1:15001}\n",
        )),
        &["listen.admin: 127.0.0.1:15001 overlaps listen.proxy"],
    );
    assert_contains(
        &error(&with(
            "listen: {proxy: 127.0.0.1:15001, admin: 0.0.0.0:15001}\n",
        )),
        &["listen.admin", "overlaps listen.proxy"],
    );
    assert_contains(
        &error(&with("listen: {admin: 127.0.0.1:15001}\n")),
        &["listen.admin", "overlaps listen.proxy (127.0.0.1:15001)"],
    );
}

#[test]
fn dns_upstreams_are_checked() {
    assert_contains(
        &error(&with("dns: {upstream: [\"10.0.0.1:53\", nope]}\n")),
        &["dns.upstream[1]: \"nope\" is not an address"],
    );
    assert_contains(
        &error(&with("dns: {upstream: [10.0.0.1, \"10.0.0.1:53\"]}\n")),
        &["dns.upstream[1]: 10.0.0.1:53 is listed twice"],
    );
    assert_contains(
        &error(&with("dns: {upstream: [\"10.0.0.1:0\"]}\n")),
        &["dns.upstream[0]", "port 0"],
    );
}

#[test]
fn ports_are_checked() {
    for (ports, needle) in [
        ("[0]", "egress[0].ports[0]: invalid value: integer `0`"),
        (
            "[443, 70000]",
            "egress[0].ports[1]: invalid value: integer `70000`",
        ),
        ("[-1]", "egress[0].ports[0]: invalid value: integer `-1`"),
        (
            "[https]",
            "egress[0].ports[0]: invalid value: string \"https\"",
        ),
        ("[]", "egress[0].ports: must not be empty"),
        ("[443, 443]", "egress[0].ports[1]: port 443 is listed twice"),
    ] {
        let e = error(&with(&format!(
            "egress: [{{host: a.example.com, ports: {ports}}}]\n"
        )));
        assert_contains(&e, &[needle]);
    }
    let e = error(&with("deny: [{host: a.example.com, ports: [65536]}]\n"));
    assert_contains(&e, &["deny[0].ports[0]", "from 1 to 65535"]);
}

#[test]
fn methods_are_checked() {
    for (methods, needle) in [
        (
            "[\"GE T\"]",
            "rules[0].methods[0]: \"GE T\" is not an HTTP method",
        ),
        ("[CONNECT]", "rules[0].methods[0]: CONNECT cannot be used"),
        ("[connect]", "rules[0].methods[0]: CONNECT cannot be used"),
        ("[\"*\"]", "rules[0].methods[0]: \"*\" is not a method"),
        ("[\"\"]", "rules[0].methods[0]: \"\" is not an HTTP method"),
        ("[]", "rules[0].methods: must not be empty"),
    ] {
        let e = error(&with(&format!(
            "egress: [{{host: a.example.com, rules: [{{methods: {methods}}}]}}]\n"
        )));
        assert_contains(&e, &["egress[0].", needle]);
    }
    let e = error(&with(
        "deny: [{host: a.example.com, methods: [\"P(S)T\"]}]\n",
    ));
    assert_contains(&e, &["deny[0].methods[0]: \"P(S)T\" is not an HTTP method"]);
}

#[test]
fn rule_shape_is_checked() {
    assert_contains(
        &error(&with("egress: [{host: a.example.com, rules: []}]\n")),
        &["egress[0].rules: must not be empty"],
    );
    assert_contains(
        &error(&with("egress: [{host: a.example.com, rules: [{}]}]\n")),
        &["egress[0].rules[0]: a rule needs `methods` and/or `paths`"],
    );
    assert_contains(
        &error(&with(
            "egress: [{host: a.example.com, rules: [{paths: []}]}]\n",
        )),
        &["egress[0].rules[0].paths: must not be empty"],
    );
    assert_contains(
        &error(&with(
            "egress: [{host: a.example.com, rules: [{methods: [GET], verbs: [GET]}]}]\n",
        )),
        &["egress[0].rules[0]", "unknown key `verbs`"],
    );
}

#[test]
fn allow_ips_are_checked() {
    for (ips, needle) in [
        (
            "[10.0.0.0/33]",
            "allow_ips[0]: \"10.0.0.0/33\" is not an IP address or CIDR",
        ),
        (
            "[10.0.0.1, not-an-ip]",
            "allow_ips[1]: \"not-an-ip\" is not an IP address",
        ),
        (
            "[10.0.0.1/8]",
            "allow_ips[0]: \"10.0.0.1/8\" has host bits set; did you mean 10.0.0.0/8?",
        ),
        (
            "[10.0.0.1, 10.0.0.1/32]",
            "allow_ips[1]: 10.0.0.1/32 is listed twice",
        ),
    ] {
        let e = error(&with(&format!(
            "egress: [{{host: a.example.com, allow_ips: {ips}}}]\n"
        )));
        assert_contains(&e, &["cordon.yaml: egress[0].", needle]);
    }
}

#[test]
fn empty_host_is_refused_before_pattern_parsing() {
    assert_contains(
        &error(&with("egress: [{host: \"\"}]\n")),
        &["cordon.yaml: egress[0].host: must not be empty"],
    );
    assert_contains(
        &error(&with("deny: [{host: \"\"}]\n")),
        &["cordon.yaml: deny[0].host: must not be empty"],
    );
}

#[test]
fn read_error_names_file() {
    let e = load(Path::new("/nonexistent/cordon.yaml"))
        .unwrap_err()
        .to_string();
    assert_contains(&e, &["/nonexistent/cordon.yaml: cannot read:"]);
}

/// These reach `HostPattern::parse`, `PathPattern::parse` or `Policy::new`; they pass
/// once the `policy` module is implemented.
mod needs_policy {
    use super::*;
    use crate::policy::{HostPattern, TlsMode};

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = load_str(&with("")).unwrap();
        assert_eq!(cfg.agent.name, "bot");
        assert_eq!(cfg.agent.instance, None);
        assert_eq!(cfg.mode, Mode::Enforce);
        assert_eq!(cfg.listen.proxy, "127.0.0.1:15001".parse().unwrap());
        assert_eq!(cfg.listen.admin, None);
        assert!(cfg.dns.upstream.is_empty());
        assert!(cfg.policy.egress().is_empty());
        assert!(cfg.policy.deny().is_empty());
        assert_eq!(cfg.audit.fsync, Fsync::Batch);
        assert!(cfg.policy_hash.starts_with("sha256:"));
        assert_eq!(cfg.policy_hash.len(), "sha256:".len() + 64);
    }

    #[test]
    fn full_config_compiles() {
        let cfg = load_str(
            "version: 1
agent: {name: deploy-bot, instance: \"${POD_NAME}\"}
mode: observe
listen: {proxy: \"127.0.0.1:${PROXY_PORT}\", admin: \"127.0.0.1:15090\"}
dns: {upstream: [10.0.0.2, \"[::1]:5353\"]}
egress:
  - host: api.example.com
    ports: [443, \"${PROXY_PORT}\"]
    rules:
      - {methods: [post, GET], paths: [\"/v1/chat\"]}
  - {host: \"*.pkg.example.org\", tls: passthrough, allow_ips: [10.1.2.3, \"fd00::/8\"]}
deny:
  - {host: api.example.com, methods: [delete]}
  - {host: api.example.com, paths: [\"/admin/**\"], ports: [443]}
audit: {path: /tmp/cordon-audit.jsonl, fsync: every}
",
        )
        .unwrap();
        assert_eq!(cfg.agent.instance.as_deref(), Some("pod-7"));
        assert_eq!(cfg.mode, Mode::Observe);
        assert_eq!(cfg.listen.proxy.port(), 15009);
        assert_eq!(
            cfg.dns.upstream,
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        let egress = cfg.policy.egress();
        assert_eq!(egress.len(), 2);
        assert_eq!(egress[0].ports, vec![443, 15009]);
        assert_eq!(egress[0].rules.len(), 1);
        assert_eq!(
            egress[0].rules[0].methods.as_deref(),
            Some(&["POST".to_string(), "GET".to_string()][..])
        );
        assert_eq!(egress[1].ports, vec![80, 443]);
        assert_eq!(egress[1].tls, TlsMode::Passthrough);
        assert!(egress[1].rules.is_empty());
        assert_eq!(
            egress[1].allow_ips,
            vec!["10.1.2.3/32".parse().unwrap(), "fd00::/8".parse().unwrap()]
        );
        assert_eq!(
            egress[0].host,
            HostPattern::parse("api.example.com").unwrap()
        );
        let deny = cfg.policy.deny();
        assert_eq!(
            deny[0].methods.as_deref(),
            Some(&["DELETE".to_string()][..])
        );
        assert_eq!(deny[0].ports, None);
        assert_eq!(deny[1].ports, Some(vec![443]));
        assert_eq!(cfg.audit.fsync, Fsync::Every);

        let text = describe(&cfg);
        assert_contains(
            &text,
            &[
                "agent: deploy-bot (instance pod-7)",
                "mode: observe",
                "proxy: 127.0.0.1:15009",
                "admin: 127.0.0.1:15090",
                "dns upstream: 10.0.0.2:53, [::1]:5353",
                "[0] api.example.com",
                "ports: 443, 15009",
                "methods: POST, GET; paths: /v1/chat",
                "[1] *.pkg.example.org",
                "ports: 80, 443",
                "tls: passthrough",
                "tls:\n  ca_dir: /var/lib/cordon/ca\n  extra_roots: none",
                "credentials: none",
                "rules: any method, any path",
                "allow_ips: 10.1.2.3/32, fd00::/8",
                "methods: DELETE; paths: any",
                "ports: 443; methods: any; paths: /admin/**",
                "audit: /tmp/cordon-audit.jsonl (fsync every)",
                &format!("policy hash: {}", cfg.policy_hash),
            ],
        );
    }

    #[test]
    fn tls_defaults_follow_rules_and_credentials() {
        let cfg = load_str(&with(
            "credentials: {gh: {source: {env: GH_TOKEN}}}
egress:
  - {host: a.example.com}
  - {host: b.example.com, rules: [{methods: [GET]}]}
  - {host: c.example.com, credential: gh}
  - {host: d.example.com, tls: intercept}
  - {host: e.example.com, tls: passthrough, rules: [{methods: [GET]}]}
",
        ))
        .unwrap();
        let modes: Vec<TlsMode> = cfg.policy.egress().iter().map(|e| e.tls).collect();
        assert_eq!(
            modes,
            vec![
                TlsMode::Passthrough,
                TlsMode::Intercept,
                TlsMode::Intercept,
                TlsMode::Intercept,
                TlsMode::Passthrough
            ]
        );
        assert_eq!(cfg.policy.egress()[2].credential.as_deref(), Some("gh"));
        assert_eq!(cfg.policy.egress()[0].credential, None);
        assert_eq!(cfg.tls, Tls::default());
    }

    #[test]
    fn credentials_compile_sorted_with_defaults() {
        use crate::credentials::{InjectSpec, SourceSpec};
        use std::time::Duration;
        let root =
            std::env::temp_dir().join(format!("cordon-config-root-{}.pem", std::process::id()));
        std::fs::write(&root, "not checked beyond existence here\n").unwrap();
        let yaml = with(&format!(
            "tls: {{ca_dir: /tmp/cordon-ca, extra_roots: [\"{}\"]}}
credentials:
  zeta:
    source: {{oauth2: {{token_url: \"https://auth.example.com/token?x=1\", client_id: cordon,
                       client_secret_file: /run/secret, scopes: [deploy, read]}}}}
    inject: {{header: Authorization, value: \"Bearer {{secret}}\"}}
  file-tok:
    source: {{file: /run/token, refresh: 50ms}}
    placeholder: MY_FILE_PLACEHOLDER
    env: FILE_TOKEN
    require_placeholder: true
  cloud:
    source: {{exec: {{command: [sh, -c, \"echo\"]}}}}
  api:
    source: {{env: API_KEY}}
egress:
  - {{host: api.example.com, credential: zeta}}
",
            root.display()
        ));
        let cfg = load_str(&yaml).unwrap();
        let _ = std::fs::remove_file(&root);
        let ids: Vec<&str> = cfg.credentials.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["api", "cloud", "file-tok", "zeta"]);
        let [api, cloud, file, zeta] = &cfg.credentials[..] else {
            unreachable!()
        };
        assert_eq!(api.source, SourceSpec::Env("API_KEY".into()));
        assert_eq!(api.placeholder, "CORDON_PLACEHOLDER_API");
        assert_eq!(api.inject, None);
        assert!(!api.require_placeholder);
        let SourceSpec::Exec { command, timeout } = &cloud.source else {
            panic!("{:?}", cloud.source)
        };
        assert!(
            command[0].starts_with('/') && command[0].ends_with("/sh"),
            "{command:?}"
        );
        assert_eq!(command[1..], ["-c".to_string(), "echo".to_string()]);
        assert_eq!(*timeout, Duration::from_secs(10));
        assert_eq!(
            file.source,
            SourceSpec::File {
                path: "/run/token".into(),
                refresh: Duration::from_millis(50)
            }
        );
        assert_eq!(file.placeholder, "MY_FILE_PLACEHOLDER");
        assert_eq!(file.env.as_deref(), Some("FILE_TOKEN"));
        assert!(file.require_placeholder);
        assert_eq!(file.placeholder, "MY_FILE_PLACEHOLDER");
        assert_eq!(zeta.placeholder, "CORDON_PLACEHOLDER_ZETA");
        assert_eq!(
            zeta.inject,
            Some(InjectSpec {
                header: "Authorization".into(),
                value: "Bearer {secret}".into()
            })
        );
        let SourceSpec::OAuth2 {
            scopes, client_id, ..
        } = &zeta.source
        else {
            panic!("{:?}", zeta.source)
        };
        assert_eq!(scopes, &["deploy".to_string(), "read".to_string()]);
        assert_eq!(client_id, "cordon");
        assert_eq!(cfg.tls.ca_dir, PathBuf::from("/tmp/cordon-ca"));
        assert_eq!(cfg.tls.extra_roots, vec![root.clone()]);

        let text = describe(&cfg);
        assert_contains(
            &text,
            &[
                "tls: intercept",
                "credential: zeta",
                "ca_dir: /tmp/cordon-ca",
                &format!("extra_roots: {}", root.display()),
                "  api\n      source: env API_KEY\n      inject: placeholder swap only\n      placeholder: CORDON_PLACEHOLDER_API\n      require_placeholder: no",
                &format!("source: exec {}", command[0]),
                "source: file /run/token (checked every 50ms)",
                "env: FILE_TOKEN",
                "require_placeholder: yes",
                "source: oauth2 https://auth.example.com/token\n",
                "inject: header Authorization",
                "placeholder: CORDON_PLACEHOLDER_ZETA",
            ],
        );
        assert!(!text.contains("x=1"), "the token URL's query is shown");
    }

    #[test]
    fn policy_hash_covers_raw_bytes() {
        let a = load_str(&with("")).unwrap();
        let b = load_str(&format!("{}# a comment\n", with(""))).unwrap();
        assert_ne!(a.policy_hash, b.policy_hash);
    }

    #[test]
    fn bad_hosts_are_refused() {
        for host in ["\"*\"", "\"*.com\""] {
            let e = error(&with(&format!("egress: [{{host: {host}}}]\n")));
            assert_contains(&e, &["cordon.yaml: egress[0].host: invalid host"]);
        }
        let e = error(&with("deny: [{host: \"*\"}]\n"));
        assert_contains(&e, &["cordon.yaml: deny[0].host: invalid host \"*\""]);
    }

    #[test]
    fn bad_path_patterns_are_refused() {
        let e = error(&with(
            "egress: [{host: a.example.com, rules: [{paths: [/ok, \"/a*\"]}]}]\n",
        ));
        assert_contains(
            &e,
            &["cordon.yaml: egress[0].rules[0].paths[1]: invalid path pattern \"/a*\""],
        );
        let e = error(&with("deny: [{host: a.example.com, paths: [\"/a*\"]}]\n"));
        assert_contains(&e, &["cordon.yaml: deny[0].paths[0]: invalid path pattern"]);
    }

    #[test]
    fn example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cordon.yaml");
        let cfg = load(&path).unwrap();
        assert!(!cfg.policy.egress().is_empty());
    }
}

#[test]
fn the_dns_listener_needs_an_upstream_and_valid_settings() {
    let e = error(&with("listen: {dns: \"127.0.0.1:0\"}\n"));
    assert_contains(&e, &["listen.dns", "dns.upstream"]);
    let e = error(&with("dns: {upstream: [127.0.0.1], allow_types: [AXFR]}\n"));
    assert_contains(&e, &["dns.allow_types[0]", "\"AXFR\" cannot be allowed"]);
    let e = error(&with(
        "dns: {upstream: [127.0.0.1], min_ttl: 2h, max_ttl: 1h}\n",
    ));
    assert_contains(&e, &["dns.min_ttl", "must not be larger"]);
    let e = error(&with("dns: {upstream: [127.0.0.1], allow: [\"*\"]}\n"));
    assert_contains(&e, &["dns.allow[0]"]);
}

#[test]
fn scanning_settings_are_validated() {
    let e = error(&with("scanning: {outbound: shred}\n"));
    assert_contains(&e, &["scanning.outbound", "\"shred\" is not an action"]);
    let e = error(&with(
        "scanning: {rules: [{id: a, regex: \"(\", keywords: [x]}]}\n",
    ));
    assert_contains(&e, &["scanning.rules[0].regex", "invalid regex"]);
    let e = error(&with(
        "scanning: {rules: [{id: a, regex: \"x+\", keywords: []}]}\n",
    ));
    assert_contains(&e, &["scanning.rules[0].keywords"]);
    let e = error(&with("scanning: {known_values: [{env: A, file: /x}]}\n"));
    assert_contains(&e, &["scanning.known_values[0]", "exactly one"]);
}

#[test]
fn yaml_string_loads_back_as_itself() {
    for raw in [
        "/tmp/plain.jsonl",
        "/tmp/a ${HOME} b.jsonl",
        "/tmp/q\"u'o:te#.jsonl",
    ] {
        let yaml = format!(
            "version: 1\nagent: {{name: t}}\naudit: {{path: {}}}\n",
            super::yaml_string(raw)
        );
        let config = super::parse(Path::new("t.yaml"), yaml.as_bytes(), &|_| {
            Err(std::env::VarError::NotPresent)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.audit.path, Path::new(raw));
    }
}
