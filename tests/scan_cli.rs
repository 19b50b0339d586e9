//! `cordon scan` through the real binary: a directory tree with planted secrets and hard
//! negatives reports exactly the planted ones; clean trees, missing paths, stdin, `--redact`
//! and SARIF output; and no output of any run ever holds a planted value.
//!
//! Every token is generated at run time in its vendor's format (GitHub's with a valid
//! CRC32 checksum); none is a real secret.

#[path = "../benches/scan_corpus/mod.rs"]
mod scan_corpus;

use scan_corpus as gen;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The rule id the engine reports for each kind planted here.
mod rule {
    pub const OPENAI: &str = "openai-api-key";
    pub const STRIPE: &str = "stripe-secret-key";
    pub const GITHUB: &str = "github-pat";
    pub const CONNECTION: &str = "postgres-password";
    pub const SERVICE_ACCOUNT: &str = "gcp-service-account-key";
    pub const ANTHROPIC: &str = "anthropic-api-key";
    pub const SLACK_BOT: &str = "slack-bot-token";
    pub const NPM: &str = "npm-access-token";
    pub const GITLAB: &str = "gitlab-pat";
}

/// A directory of its own for each test, so parallel tests never share files; removed
/// when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "cordon-scan-cli-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cordon scan ARGS` with `stdin` piped in (or closed).
fn scan(args: &[&str], stdin: Option<&[u8]>) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .arg("scan")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Fails naming the kind, never printing the value, if any output holds a planted value.
fn assert_no_values(out: &Outcome, values: &[(&'static str, String)]) {
    for (kind, value) in values {
        // Multi-line values are checked line by line (a PEM body line is secret too).
        for piece in value
            .lines()
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
        {
            assert!(
                !out.stdout.contains(piece) && !out.stderr.contains(piece),
                "an output of cordon scan holds the planted {kind} value"
            );
        }
    }
}

/// What the planted tree must report: (relative path, line, rule).
type Expected = BTreeSet<(String, u64, String)>;

/// Plants secrets and hard negatives in a tree; returns what must be found and every value
/// planted (secrets and negatives) for the never-printed check.
fn planted_tree(root: &Path) -> (Expected, Vec<(&'static str, String)>) {
    let mut rng = gen::Rng::new(0x05ca_9c11);
    let mut expected = Expected::new();
    let mut values: Vec<(&'static str, String)> = Vec::new();
    let mut expect = |path: &str, line: u64, rule: &str| {
        expected.insert((path.to_owned(), line, rule.to_owned()));
    };
    let write = |path: &str, text: &str| {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    };

    // .env: an OpenAI and a Stripe key between the documented AWS example, a ${VAR}
    // reference and a connection string without a password.
    let openai = gen::openai_project(&mut rng);
    let stripe = gen::stripe_secret(&mut rng);
    write(
        ".env",
        &format!(
            "# service settings\nOPENAI_API_KEY={openai}\nAWS_ACCESS_KEY_ID={}\n\
             AWS_SECRET_ACCESS_KEY={}\nAPI_KEY=${{API_KEY}}\n\
             DATABASE_URL=postgres://app@db.internal:5432/app\nSTRIPE_SECRET_KEY={stripe}\n",
            gen::AWS_EXAMPLE_ID,
            gen::AWS_EXAMPLE_SECRET
        ),
    );
    expect(".env", 2, rule::OPENAI);
    expect(".env", 7, rule::STRIPE);
    values.push(("openai", openai));
    values.push(("stripe", stripe));

    // YAML: a GitHub token and a database password; a token with a wrong checksum, a UUID
    // and a sha256 digest beside them.
    let github = gen::github_classic(&mut rng, "ghp");
    let bad_github = gen::github_bad_checksum(&mut rng);
    let db_password = rng.chars(gen::B62, 18);
    let uuid = gen::uuid(&mut rng);
    let sha256 = rng.chars(gen::HEX, 64);
    write(
        "config/app.yaml",
        &format!(
            "github:\n  token: \"{github}\"\n  stale_token: \"{bad_github}\"\ndatabase:\n  \
             url: \"postgres://svc:{db_password}@db.internal:5432/app\"\n  request_id: {uuid}\n  \
             checksum: {sha256}\n"
        ),
    );
    expect("config/app.yaml", 2, rule::GITHUB);
    expect("config/app.yaml", 5, rule::CONNECTION);
    values.extend([
        ("github", github),
        ("github-bad-checksum", bad_github),
        ("password", db_password),
    ]);

    // JSON with escaping: a service-account file whose private key has literal \n breaks,
    // next to an SRI integrity string.
    let key = gen::pem_block(&mut rng, "PRIVATE KEY", 26);
    let integrity = format!("sha512-{}", base64_of(&rng.bytes(64)));
    let account = serde_json::json!({
        "type": "service_account",
        "project_id": "acme-staging",
        "private_key": key,
        "client_email": "deploy@acme-staging.iam.example",
        "integrity": integrity,
    });
    write(
        "config/service-account.json",
        &serde_json::to_string_pretty(&account).unwrap(),
    );
    let key_line = serde_json::to_string_pretty(&account)
        .unwrap()
        .lines()
        .position(|l| l.contains("\"private_key\""))
        .unwrap() as u64
        + 1;
    expect(
        "config/service-account.json",
        key_line,
        rule::SERVICE_ACCOUNT,
    );
    values.push(("private-key", key));

    // Source code: an Anthropic key, a masked key and a public key block.
    let anthropic = gen::anthropic(&mut rng);
    let public_key = gen::negative(&mut rng, "public-key").fields.remove(0).1;
    write(
        "src/client.py",
        &format!(
            "import os\n\nANTHROPIC_KEY = \"{anthropic}\"\nSHOWN = \"sk-...{}\"\n\
             PUBLIC_KEY = \"\"\"{public_key}\"\"\"\n\ndef client():\n    return Client(ANTHROPIC_KEY)\n",
            rng.chars(gen::B62, 4)
        ),
    );
    expect("src/client.py", 3, rule::ANTHROPIC);
    values.push(("anthropic", anthropic));

    // Logs: a Slack token and an npm token, and an npm token with a wrong checksum.
    let slack = gen::slack_bot(&mut rng);
    let npm = gen::npm(&mut rng);
    let bad_npm = gen::npm_bad_checksum(&mut rng);
    write(
        "logs/agent.log",
        &format!(
            "2026-11-26T10:00:00.000Z INFO agent: started\n\
             2026-11-26T10:00:01.000Z DEBUG slack: posting with token={slack}\n\
             2026-11-26T10:00:02.000Z INFO http: GET /api/v1/items 200 12ms\n\
             2026-11-26T10:00:03.000Z DEBUG npm: //registry.npmjs.org/:_authToken={npm}\n\
             2026-11-26T10:00:04.000Z DEBUG npm: stale token {bad_npm}\n"
        ),
    );
    expect("logs/agent.log", 2, rule::SLACK_BOT);
    expect("logs/agent.log", 4, rule::NPM);
    values.extend([
        ("slack", slack),
        ("npm", npm),
        ("npm-bad-checksum", bad_npm),
    ]);

    // An LLM request body: a GitLab token inside JSON-escaped message content.
    let gitlab = gen::gitlab(&mut rng);
    let body = serde_json::json!({
        "model": "gpt-4o",
        "messages": [{"role": "user",
                      "content": format!("Deploy fails.\nMy env:\nGITLAB_TOKEN={gitlab}\n\"why?\"")}],
    });
    write(
        "llm/request.json",
        &format!("{}\n", serde_json::to_string(&body).unwrap()),
    );
    expect("llm/request.json", 1, rule::GITLAB);
    values.push(("gitlab", gitlab));

    // A binary file (a NUL in its first 8 KiB) holding a real-format token: skipped.
    let binary_token = gen::github_classic(&mut rng, "ghp");
    let mut blob = vec![0u8; 100];
    blob.extend_from_slice(format!("\ntoken={binary_token}\n").as_bytes());
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/blob.dat"), blob).unwrap();
    values.push(("binary-file token", binary_token));

    // A symlink inside the tree to a file outside it that holds a secret: not followed.
    let outside = root.with_extension("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let linked = gen::github_classic(&mut rng, "ghp");
    std::fs::write(
        outside.join("secret.env"),
        format!("GITHUB_TOKEN={linked}\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("secret.env"), root.join("linked.env")).unwrap();
    values.push(("symlinked token", linked));

    (expected, values)
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A tree of hard negatives only.
fn clean_tree(root: &Path) -> Vec<(&'static str, String)> {
    let mut rng = gen::Rng::new(0xc1ea9);
    let mut values = Vec::new();
    let mut text = String::from("# nothing secret here\n");
    for &kind in gen::NEGATIVE_KINDS {
        let item = gen::negative(&mut rng, kind);
        for (name, value) in item.fields {
            let value = value.replace('\n', "\\n");
            text.push_str(&format!("{}={value}\n", name.to_uppercase()));
            values.push((kind, value));
        }
    }
    std::fs::create_dir_all(root.join("conf")).unwrap();
    std::fs::write(root.join("conf/negatives.env"), text).unwrap();
    std::fs::write(
        root.join("README.md"),
        "Set OPENAI_API_KEY in your environment; see docs.\n",
    )
    .unwrap();
    values
}

/// Parses `PATH:LINE:COL: RULE` lines, paths made relative to `root`.
fn parse_text(stdout: &str, root: &Path) -> Vec<(String, u64, u64, String)> {
    let prefix = format!("{}/", root.display());
    stdout
        .lines()
        .map(|line| {
            let (location, rule) = line.rsplit_once(": ").expect("PATH:LINE:COL: RULE");
            let mut parts = location.rsplitn(3, ':');
            let column = parts.next().unwrap().parse().unwrap();
            let line_no = parts.next().unwrap().parse().unwrap();
            let path = parts.next().unwrap();
            let relative = path.strip_prefix(&prefix).unwrap_or(path).to_owned();
            (relative, line_no, column, rule.to_owned())
        })
        .collect()
}

#[test]
fn a_planted_tree_reports_exactly_the_planted_secrets() {
    let scratch = Scratch::new();
    let root = scratch.0.join("tree");
    let (expected, values) = planted_tree(&root);
    let out = scan(&[root.to_str().unwrap()], None);
    assert_no_values(&out, &values);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);

    let found = parse_text(&out.stdout, &root);
    let got: Expected = found
        .iter()
        .map(|(p, l, _, r)| (p.clone(), *l, r.clone()))
        .collect();
    assert_eq!(got, expected, "stdout:\n{}", out.stdout);
    assert_eq!(found.len(), expected.len(), "each secret reported once");
    let order: Vec<_> = found
        .iter()
        .map(|(p, l, c, _)| (p.clone(), *l, *c))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "findings sorted by path, then position");
    assert!(
        out.stderr.contains(&format!("{} findings", expected.len())),
        "summary on stderr: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("1 binary file skipped"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_output_carries_path_line_columns_and_rule_only() {
    let scratch = Scratch::new();
    let root = scratch.0.join("tree");
    let (expected, values) = planted_tree(&root);
    let out = scan(&["--format", "json", root.to_str().unwrap()], None);
    assert_no_values(&out, &values);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    let findings: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let prefix = format!("{}/", root.display());
    let mut got = Expected::new();
    for f in &findings {
        let keys: BTreeSet<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["path", "line", "column", "end_line", "end_column", "rule"])
        );
        let (line, end_line) = (f["line"].as_u64().unwrap(), f["end_line"].as_u64().unwrap());
        assert!(end_line > line || f["end_column"].as_u64() > f["column"].as_u64());
        let path = f["path"].as_str().unwrap();
        got.insert((
            path.strip_prefix(&prefix).unwrap_or(path).to_owned(),
            line,
            f["rule"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(got, expected);
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let scratch = Scratch::new();
    let root = scratch.0.join("tree");
    let (expected, values) = planted_tree(&root);
    let out = scan(&["--format", "sarif", root.to_str().unwrap()], None);
    assert_no_values(&out, &values);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    let log: Value = serde_json::from_str(&out.stdout).unwrap();
    let schema: Value =
        serde_json::from_str(include_str!("fixtures/sarif-2.1.0-subset.json")).unwrap();
    let errors = sarif_schema::validate(&schema, &log);
    assert!(errors.is_empty(), "SARIF schema violations: {errors:#?}");

    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "cordon");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), expected.len());
    for result in results {
        let rule_id = result["ruleId"].as_str().unwrap();
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], rule_id, "ruleIndex points at its rule");
        assert_eq!(result["level"], "error");
        assert!(result["message"]["text"]
            .as_str()
            .unwrap()
            .contains(rule_id));
        let location = &result["locations"][0]["physicalLocation"];
        let uri = location["artifactLocation"]["uri"].as_str().unwrap();
        let line = location["region"]["startLine"].as_u64().unwrap();
        assert!(
            expected
                .iter()
                .any(|(p, l, r)| uri.ends_with(p.as_str()) && *l == line && r == rule_id),
            "unexpected result {rule_id} at {uri}:{line}"
        );
    }
    assert!(!out.stdout.contains("snippet"), "no snippets in SARIF");

    // The validator itself rejects what the schema forbids.
    let mut broken = log.clone();
    broken["version"] = "2.0.0".into();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        0.into();
    broken["runs"][0]["tool"]["driver"]["extra"] = true.into();
    assert_eq!(sarif_schema::validate(&schema, &broken).len(), 4);
}

#[test]
fn a_clean_tree_exits_0() {
    let scratch = Scratch::new();
    let root = scratch.0.join("clean");
    let values = clean_tree(&root);
    let out = scan(&[root.to_str().unwrap()], None);
    assert_no_values(&out, &values);
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("no findings in 2 inputs"),
        "{}",
        out.stderr
    );

    let sarif = scan(&["--format", "sarif", root.to_str().unwrap()], None);
    assert_eq!(sarif.code, 0);
    let log: Value = serde_json::from_str(&sarif.stdout).unwrap();
    assert_eq!(log["runs"][0]["results"], serde_json::json!([]));
}

#[test]
fn a_missing_path_exits_2_naming_it() {
    let scratch = Scratch::new();
    let dir = scratch.0.clone();
    let missing = dir.join("no-such-dir");
    let out = scan(&[missing.to_str().unwrap()], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(missing.to_str().unwrap()),
        "{}",
        out.stderr
    );

    // Still 2 when another path has findings: the error wins.
    let mut rng = gen::Rng::new(7);
    let token = gen::github_classic(&mut rng, "ghp");
    std::fs::write(dir.join("a.env"), format!("T={token}\n")).unwrap();
    let out = scan(
        &[
            dir.join("a.env").to_str().unwrap(),
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains(rule::GITHUB));
    assert_no_values(&out, &[("github", token)]);
}

#[test]
fn a_bad_config_exits_2() {
    let scratch = Scratch::new();
    let dir = scratch.0.clone();
    let config = dir.join("cordon.yaml");
    std::fs::write(&config, "version: 1\nno_such_key: true\n").unwrap();
    let out = scan(&["--config", config.to_str().unwrap(), "-"], Some(b"x\n"));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("cordon.yaml"), "{}", out.stderr);

    let missing = dir.join("missing.yaml");
    let out = scan(&["--config", missing.to_str().unwrap()], Some(b"x\n"));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("missing.yaml"), "{}", out.stderr);
}

#[test]
fn stdin_is_scanned_with_or_without_dash() {
    let mut rng = gen::Rng::new(11);
    let token = gen::github_classic(&mut rng, "ghp");
    let input = format!("line one\nexport GITHUB_TOKEN={token}\n");
    for args in [&[][..], &["-"][..]] {
        let out = scan(args, Some(input.as_bytes()));
        assert_no_values(&out, &[("github", token.clone())]);
        assert_eq!(out.code, 1, "stderr: {}", out.stderr);
        assert_eq!(out.stdout, format!("-:2:21: {}\n", rule::GITHUB));
    }
    let out = scan(&[], Some(b"nothing to see\n"));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));
}

#[test]
fn redact_replaces_each_secret_and_keeps_the_rest() {
    let mut rng = gen::Rng::new(13);
    let github = gen::github_classic(&mut rng, "ghp");
    let anthropic = gen::anthropic(&mut rng);
    let input = format!("a {github} b\n{{\"key\":\"{anthropic}\"}}\nend\n");
    let values = [("github", github.clone()), ("anthropic", anthropic.clone())];

    let out = scan(&["--redact"], Some(input.as_bytes()));
    assert_no_values(&out, &values);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    let want = format!(
        "a [REDACTED:{}] b\n{{\"key\":\"[REDACTED:{}]\"}}\nend\n",
        rule::GITHUB,
        rule::ANTHROPIC
    );
    assert_eq!(out.stdout, want);
    assert!(out.stderr.contains(&format!("-:1:3: {}", rule::GITHUB)));
    assert!(out.stderr.contains(&format!("-:2:9: {}", rule::ANTHROPIC)));

    // One file works too; several files or a directory are a usage error.
    let scratch = Scratch::new();
    let dir = scratch.0.clone();
    let file = dir.join("agent.log");
    std::fs::write(&file, &input).unwrap();
    let out = scan(&["--redact", file.to_str().unwrap()], None);
    assert_no_values(&out, &values);
    assert_eq!((out.code, out.stdout.as_str()), (1, want.as_str()));

    let out = scan(&["--redact", file.to_str().unwrap(), "-"], Some(b""));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--redact"), "{}", out.stderr);
    let out = scan(&["--redact", dir.to_str().unwrap()], None);
    assert_eq!(out.code, 2);
    assert!(out.stdout.is_empty());

    // Clean input passes through unchanged with exit 0.
    let out = scan(&["--redact"], Some(b"just text\n"));
    assert_eq!((out.code, out.stdout.as_str()), (0, "just text\n"));
}

#[test]
fn positions_stay_right_deep_into_a_file_larger_than_many_chunks() {
    let scratch = Scratch::new();
    let dir = scratch.0.clone();
    let mut rng = gen::Rng::new(17);
    let token = gen::github_classic(&mut rng, "ghp");
    // 42,000 lines of 100 bytes (4.2 MB). Line 656 starts at offset 65,500, so its token
    // (column 21) crosses the first 64 KiB chunk boundary; line 40,000 is deep in the file.
    let planted = vec![(656u64, 21u64), (40_000, 21)];
    let mut text = String::with_capacity(4_200_000);
    for line in 1..=42_000u64 {
        if planted.iter().any(|(l, _)| *l == line) {
            text.push_str(&format!("{}{token}{}\n", ".".repeat(20), ".".repeat(39)));
        } else {
            text.push_str(&format!("{}\n", "x".repeat(99)));
        }
    }
    let file = dir.join("big.log");
    std::fs::write(&file, &text).unwrap();
    let out = scan(&[file.to_str().unwrap()], None);
    assert_no_values(&out, &[("github", token)]);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    let got: Vec<(u64, u64)> = parse_text(&out.stdout, &dir)
        .into_iter()
        .map(|(_, l, c, _)| (l, c))
        .collect();
    assert_eq!(got, planted);
}

/// A small validator for the JSON Schema keywords the SARIF fixture uses: `$ref` (local),
/// `type`, `enum`, `required`, `properties`, `additionalProperties`, `items`, `minItems`,
/// `uniqueItems`, `minimum`, `maximum`, `anyOf`, `pattern` and `format` (uri,
/// uri-reference).
mod sarif_schema {
    use serde_json::Value;

    pub fn validate(schema: &Value, instance: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        check(schema, schema, instance, "$", &mut errors);
        errors
    }

    fn resolve<'a>(root: &'a Value, reference: &str) -> &'a Value {
        let pointer = reference.strip_prefix('#').expect("local $ref");
        root.pointer(pointer)
            .unwrap_or_else(|| panic!("unresolved $ref {reference}"))
    }

    fn type_matches(name: &str, v: &Value) -> bool {
        match name {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            other => panic!("unknown type {other}"),
        }
    }

    fn check(root: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            check(root, resolve(root, reference), v, at, errors);
        }
        if let Some(t) = schema.get("type") {
            let ok = match t {
                Value::String(name) => type_matches(name, v),
                Value::Array(names) => names
                    .iter()
                    .any(|n| type_matches(n.as_str().unwrap_or(""), v)),
                _ => true,
            };
            if !ok {
                errors.push(format!("{at}: not of type {t}"));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(v) {
                errors.push(format!("{at}: {v} not one of {allowed:?}"));
            }
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if v.as_f64().is_some_and(|x| x < min) {
                errors.push(format!("{at}: {v} below minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if v.as_f64().is_some_and(|x| x > max) {
                errors.push(format!("{at}: {v} above maximum {max}"));
            }
        }
        if let (Some(pattern), Some(s)) =
            (schema.get("pattern").and_then(Value::as_str), v.as_str())
        {
            if !regex::Regex::new(pattern).unwrap().is_match(s) {
                errors.push(format!("{at}: does not match {pattern}"));
            }
        }
        if let (Some(format), Some(s)) = (schema.get("format").and_then(Value::as_str), v.as_str())
        {
            if !format_ok(format, s) {
                errors.push(format!("{at}: {s:?} is not a valid {format}"));
            }
        }
        if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
            let any = options.iter().any(|option| {
                let mut sub = Vec::new();
                check(root, option, v, at, &mut sub);
                sub.is_empty()
            });
            if !any {
                errors.push(format!("{at}: matches none of anyOf"));
            }
        }
        if let Some(object) = v.as_object() {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap();
                if !object.contains_key(name) {
                    errors.push(format!("{at}: missing required property {name}"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, value) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(sub) => check(root, sub, value, &format!("{at}.{key}"), errors),
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        errors.push(format!("{at}: property {key} is not allowed"));
                    }
                    None => {}
                }
            }
        }
        if let Some(items) = v.as_array() {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    errors.push(format!("{at}: fewer than {min} items"));
                }
            }
            if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
                for (i, a) in items.iter().enumerate() {
                    if items[..i].contains(a) {
                        errors.push(format!("{at}[{i}]: duplicate item"));
                    }
                }
            }
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(root, sub, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
    }

    /// RFC 3986 in brief: a URI has a scheme; a reference has only allowed characters and
    /// well-formed percent escapes.
    fn format_ok(format: &str, s: &str) -> bool {
        let chars_ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b));
        let escapes_ok = s.match_indices('%').all(|(i, _)| {
            s.get(i + 1..i + 3)
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        let scheme_ok = regex::Regex::new(r"^[A-Za-z][A-Za-z0-9+.-]*:")
            .unwrap()
            .is_match(s);
        match format {
            "uri" => chars_ok && escapes_ok && scheme_ok,
            "uri-reference" => chars_ok && escapes_ok,
            _ => true,
        }
    }
}

#[test]
fn a_config_adds_known_values_and_custom_rules() {
    let scratch = Scratch::new();
    let dir = scratch.0.clone();
    let mut raw = [0u8; 12];
    getrandom::fill(&mut raw).unwrap();
    let known: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(dir.join("known"), format!("{known}\n")).unwrap();
    let config = dir.join("cordon.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nagent: {{ name: scan }}\naudit: {{ path: \"{d}/a.jsonl\" }}\nscanning:\n  known_values: [{{ file: \"{d}/known\" }}]\n  rules: [{{ id: internal-ticket-key, regex: \"TKT-[0-9]{{8}}\", keywords: [\"TKT-\"] }}]\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let input = format!("line one\nvalue={known}\nticket TKT-12345678 here\n");
    let out = scan(
        &["--config", config.to_str().unwrap(), "-"],
        Some(input.as_bytes()),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains(":2:7: known:"), "{}", out.stdout);
    assert!(
        out.stdout.contains(":3:8: internal-ticket-key"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(&known) && !out.stderr.contains(&known),
        "the value is never printed"
    );
    // Without the config, neither is a finding.
    let out = scan(&["-"], Some(input.as_bytes()));
    assert_eq!(out.code, 0, "{}", out.stdout);
}
