//! The scanner's evaluation corpus, generated from a seed: random values in each vendor's
//! real token format (never real secrets) planted in .env, YAML, escaped JSON, source code,
//! logs, LLM request bodies and agent transcripts, next to hard negatives that look like
//! secrets but are not; plus secret-free text for throughput runs.
//!
//! Shared by `benches/scan.rs`, `examples/scan_corpus.rs` (which writes it to disk for
//! `benches/scan-peers.sh`) and `tests/scan_cli.rs` (which borrows the token generators).
//! Each includer uses a different part of it.
#![allow(dead_code)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use std::fmt::Write as _;

// ---------------------------------------------------------------------------------------
// Randomness and alphabets

/// splitmix64: small, seeded, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `n` characters drawn from `alphabet`.
    pub fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

pub const DIGITS: &[u8] = b"0123456789";
pub const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub const HEX: &[u8] = b"0123456789abcdef";
pub const UPPER_B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
pub const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
pub const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Characters a generated password may hold: symbols too, but no quote, backslash, `$`,
/// `@`, `/` or whitespace, so that it reads the same in every context it is planted in.
pub const PASSWORD: &[u8] =
    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!#%^&*()-_+=.,;:?~";

/// CRC-32 (IEEE 802.3, reflected, as zlib), bit by bit: the inputs here are 30 bytes.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `n` in base 62 (`0-9A-Za-z`), zero-padded to six characters.
pub fn base62_6(mut n: u32) -> String {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
}

// ---------------------------------------------------------------------------------------
// Token generators: one per vendor format (see ../shared/reference/secret-formats.md)

/// A GitHub token (`ghp`, `gho`, `ghu`, `ghs`, `ghr`) with a valid CRC32 checksum.
pub fn github_classic(rng: &mut Rng, prefix: &str) -> String {
    let random = rng.chars(B62, 30);
    format!("{prefix}_{random}{}", base62_6(crc32(random.as_bytes())))
}

/// A GitHub token in the right shape whose checksum is wrong.
pub fn github_bad_checksum(rng: &mut Rng) -> String {
    let token = github_classic(rng, "ghp");
    corrupt_checksum(rng, &token)
}

/// An npm token: `npm_` + 30 random + 6 checksum, like GitHub's.
pub fn npm(rng: &mut Rng) -> String {
    let random = rng.chars(B62, 30);
    format!("npm_{random}{}", base62_6(crc32(random.as_bytes())))
}

pub fn npm_bad_checksum(rng: &mut Rng) -> String {
    let token = npm(rng);
    corrupt_checksum(rng, &token)
}

/// Changes one of the last six characters, so the checksum no longer holds.
fn corrupt_checksum(rng: &mut Rng, token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let at = bytes.len() - 1 - rng.below(6);
    let old = bytes[at];
    while bytes[at] == old {
        bytes[at] = *rng.pick(B62);
    }
    String::from_utf8(bytes).expect("ascii")
}

pub fn github_fine_grained(rng: &mut Rng) -> String {
    format!("github_pat_{}_{}", rng.chars(B62, 22), rng.chars(B62, 59))
}

pub fn gitlab(rng: &mut Rng) -> String {
    format!("glpat-{}", rng.chars(B64URL, 20))
}

pub fn slack_bot(rng: &mut Rng) -> String {
    let a = rng.range(10, 13);
    let b = rng.range(10, 13);
    format!(
        "xoxb-{}-{}-{}",
        rng.chars(DIGITS, a),
        rng.chars(DIGITS, b),
        rng.chars(B62, 24)
    )
}

pub fn slack_webhook(rng: &mut Rng) -> String {
    format!(
        "https://hooks.slack.com/services/T{}/B{}/{}",
        rng.chars(UPPER_ALNUM, 8),
        rng.chars(UPPER_ALNUM, 10),
        rng.chars(B62, 24)
    )
}

/// A live secret (`sk_`) or restricted (`rk_`) key.
pub fn stripe(rng: &mut Rng) -> String {
    let kind = *rng.pick(&["sk", "rk"]);
    format!("{kind}_live_51{}", rng.chars(B62, 97))
}

pub fn stripe_secret(rng: &mut Rng) -> String {
    format!("sk_live_51{}", rng.chars(B62, 97))
}

pub fn stripe_publishable(rng: &mut Rng) -> String {
    format!("pk_live_51{}", rng.chars(B62, 97))
}

/// A project key; about one in four is a legacy `sk-…T3BlbkFJ…` key.
pub fn openai(rng: &mut Rng) -> String {
    if rng.below(4) == 0 {
        return format!("sk-{}T3BlbkFJ{}", rng.chars(B62, 20), rng.chars(B62, 20));
    }
    let prefix = *rng.pick(&["sk-proj-", "sk-proj-", "sk-svcacct-"]);
    format!(
        "{prefix}{}T3BlbkFJ{}",
        rng.chars(B64URL, 74),
        rng.chars(B64URL, 74)
    )
}

pub fn openai_project(rng: &mut Rng) -> String {
    format!(
        "sk-proj-{}T3BlbkFJ{}",
        rng.chars(B64URL, 74),
        rng.chars(B64URL, 74)
    )
}

pub fn anthropic(rng: &mut Rng) -> String {
    format!("sk-ant-api03-{}AA", rng.chars(B64URL, 93))
}

pub fn google_api_key(rng: &mut Rng) -> String {
    format!("AIzaSy{}", rng.chars(B64URL, 33))
}

pub fn huggingface(rng: &mut Rng) -> String {
    format!("hf_{}", rng.chars(LETTERS, 34))
}

pub fn sendgrid(rng: &mut Rng) -> String {
    format!("SG.{}.{}", rng.chars(B64URL, 22), rng.chars(B64URL, 43))
}

pub fn pypi(rng: &mut Rng) -> String {
    let n = rng.range(120, 180);
    format!("pypi-AgEIcHlwaS5vcmc{}", rng.chars(B64URL, n))
}

pub fn shopify(rng: &mut Rng) -> String {
    format!("shpat_{}", rng.chars(HEX, 32))
}

pub fn dockerhub(rng: &mut Rng) -> String {
    format!("dckr_pat_{}", rng.chars(B64URL, 27))
}

pub fn aws_access_key_id(rng: &mut Rng) -> String {
    let prefix = *rng.pick(&["AKIA", "AKIA", "ASIA"]);
    format!("{prefix}{}", rng.chars(UPPER_B32, 16))
}

pub fn aws_secret_access_key(rng: &mut Rng) -> String {
    STANDARD.encode(rng.bytes(30))
}

pub fn twilio_account_sid(rng: &mut Rng) -> String {
    format!("AC{}", rng.chars(HEX, 32))
}

pub fn azure_storage_connection_string(rng: &mut Rng) -> String {
    format!(
        "DefaultEndpointsProtocol=https;AccountName={};AccountKey={};EndpointSuffix=core.windows.net",
        rng.chars(LOWER_ALNUM, 12),
        STANDARD.encode(rng.bytes(64))
    )
}

/// A JWT with a real `{"alg":…,"typ":"JWT"}` header, random claims and signature.
pub fn jwt(rng: &mut Rng) -> String {
    let alg = *rng.pick(&["HS256", "RS256", "ES256"]);
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
    let claims = format!(
        r#"{{"sub":"{}","iss":"https://auth.{}.example","iat":{},"exp":{}}}"#,
        rng.chars(LOWER_ALNUM, 12),
        rng.chars(LOWER, 6),
        1_700_000_000 + rng.below(50_000_000),
        1_800_000_000 + rng.below(50_000_000)
    );
    let signature = rng.chars(B64URL, if alg == "HS256" { 43 } else { 86 });
    format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(claims.as_bytes())
    )
}

/// A database or broker URI whose password is set.
pub fn connection_string(rng: &mut Rng) -> String {
    let (scheme, port) = *rng.pick(&[
        ("postgres", 5432),
        ("postgresql", 5432),
        ("mysql", 3306),
        ("mongodb+srv", 0),
        ("mongodb", 27017),
        ("redis", 6379),
        ("rediss", 6380),
        ("amqp", 5672),
        ("amqps", 5671),
    ]);
    let n = rng.range(4, 9);
    let user = rng.chars(LOWER, n);
    let n = rng.range(14, 22);
    let password = rng.chars(&PASSWORD[..PASSWORD.len() - 18], n); // letters and digits
    let host = format!("db-{}.internal", rng.chars(LOWER_ALNUM, 6));
    let port = if port == 0 {
        String::new()
    } else {
        format!(":{port}")
    };
    format!("{scheme}://{user}:{password}@{host}{port}/app")
}

pub fn password(rng: &mut Rng) -> String {
    let n = rng.range(14, 22);
    loop {
        let p = rng.chars(PASSWORD, n);
        let symbol = p.bytes().any(|b| !b.is_ascii_alphanumeric());
        let digit = p.bytes().any(|b| b.is_ascii_digit());
        if symbol && digit {
            return p;
        }
    }
}

pub fn bearer_token(rng: &mut Rng) -> String {
    let n = rng.range(40, 64);
    rng.chars(B64URL, n)
}

/// A private key block (RSA, EC, OpenSSH or PKCS#8) with `\n` line breaks.
pub fn private_key(rng: &mut Rng) -> String {
    let label = *rng.pick(&[
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "PRIVATE KEY",
    ]);
    let lines = rng.range(6, 14);
    pem_block(rng, label, lines)
}

/// A PEM block of `lines` base64 lines under `label`.
pub fn pem_block(rng: &mut Rng, label: &str, lines: usize) -> String {
    let body = STANDARD.encode(rng.bytes(48 * lines));
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push('\n');
    }
    let _ = write!(out, "-----END {label}-----");
    out
}

pub fn uuid(rng: &mut Rng) -> String {
    let h = rng.chars(HEX, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..]
    )
}

// ---------------------------------------------------------------------------------------
// What gets planted

/// One planted thing: a secret to find, or a hard negative to leave alone. Most are one
/// `name = value` pair; AWS and Twilio keys come as an id and a secret on adjacent lines.
pub struct Item {
    pub kind: &'static str,
    pub secret: bool,
    pub fields: Vec<(String, String)>,
}

fn one(kind: &'static str, secret: bool, name: &str, value: String) -> Item {
    Item {
        kind,
        secret,
        fields: vec![(name.to_owned(), value)],
    }
}

/// Every kind of secret the corpus plants.
pub const SECRET_KINDS: &[&str] = &[
    "aws",
    "github-classic",
    "github-oauth",
    "github-app",
    "github-fine-grained",
    "gitlab",
    "slack-bot",
    "slack-webhook",
    "stripe",
    "openai",
    "anthropic",
    "google-api-key",
    "huggingface",
    "private-key",
    "jwt",
    "connection-string",
    "twilio",
    "sendgrid",
    "npm",
    "pypi",
    "azure-storage",
    "shopify",
    "dockerhub",
    "password-assignment",
    "bearer-header",
];

/// Every kind of hard negative the corpus plants.
pub const NEGATIVE_KINDS: &[&str] = &[
    "aws-example",
    "github-bad-checksum",
    "npm-bad-checksum",
    "uuid",
    "sha256",
    "git-sha",
    "sri-integrity",
    "base64-blob",
    "masked",
    "var-ref",
    "public-key",
    "certificate",
    "ssh-public-key",
    "connection-no-password",
    "jwt-io-example",
    "stripe-publishable",
    "placeholder",
    "twilio-sid-alone",
];

/// A secret of `kind` under a name a real config would give it.
pub fn secret(rng: &mut Rng, kind: &'static str) -> Item {
    let s = |name: &str, v: String| one(kind, true, name, v);
    match kind {
        "aws" => Item {
            kind,
            secret: true,
            fields: vec![
                ("AWS_ACCESS_KEY_ID".into(), aws_access_key_id(rng)),
                ("AWS_SECRET_ACCESS_KEY".into(), aws_secret_access_key(rng)),
            ],
        },
        "github-classic" => s("GITHUB_TOKEN", github_classic(rng, "ghp")),
        "github-oauth" => s("gh_oauth_token", github_classic(rng, "gho")),
        "github-app" => s("GH_INSTALLATION_TOKEN", github_classic(rng, "ghs")),
        "github-fine-grained" => s("GH_PAT", github_fine_grained(rng)),
        "gitlab" => s("GITLAB_TOKEN", gitlab(rng)),
        "slack-bot" => s("SLACK_BOT_TOKEN", slack_bot(rng)),
        "slack-webhook" => s("slack_webhook_url", slack_webhook(rng)),
        "stripe" => s("STRIPE_SECRET_KEY", stripe(rng)),
        "openai" => s("OPENAI_API_KEY", openai(rng)),
        "anthropic" => s("ANTHROPIC_API_KEY", anthropic(rng)),
        "google-api-key" => s("GOOGLE_API_KEY", google_api_key(rng)),
        "huggingface" => s("HF_TOKEN", huggingface(rng)),
        "private-key" => s("private_key", private_key(rng)),
        "jwt" => s("session_jwt", jwt(rng)),
        "connection-string" => s("DATABASE_URL", connection_string(rng)),
        "twilio" => Item {
            kind,
            secret: true,
            fields: vec![
                ("TWILIO_ACCOUNT_SID".into(), twilio_account_sid(rng)),
                ("TWILIO_AUTH_TOKEN".into(), rng.chars(HEX, 32)),
            ],
        },
        "sendgrid" => s("SENDGRID_API_KEY", sendgrid(rng)),
        "npm" => s("NPM_TOKEN", npm(rng)),
        "pypi" => s("PYPI_API_TOKEN", pypi(rng)),
        "azure-storage" => s(
            "AZURE_STORAGE_CONNECTION_STRING",
            azure_storage_connection_string(rng),
        ),
        "shopify" => s("SHOPIFY_ACCESS_TOKEN", shopify(rng)),
        "dockerhub" => s("DOCKERHUB_TOKEN", dockerhub(rng)),
        "password-assignment" => {
            let name = *rng.pick(&["DB_PASSWORD", "admin_password", "smtp_pass", "app_secret"]);
            s(name, password(rng))
        }
        "bearer-header" => s("Authorization", format!("Bearer {}", bearer_token(rng))),
        other => panic!("unknown secret kind {other}"),
    }
}

/// The jwt.io documentation token: public, in every tutorial, not a secret.
pub const JWT_IO_EXAMPLE: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
/// AWS's documented example key pair.
pub const AWS_EXAMPLE_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const AWS_EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// A hard negative of `kind`.
pub fn negative(rng: &mut Rng, kind: &'static str) -> Item {
    let n = |name: &str, v: String| one(kind, false, name, v);
    match kind {
        "aws-example" => Item {
            kind,
            secret: false,
            fields: vec![
                ("AWS_ACCESS_KEY_ID".into(), AWS_EXAMPLE_ID.into()),
                ("AWS_SECRET_ACCESS_KEY".into(), AWS_EXAMPLE_SECRET.into()),
            ],
        },
        "github-bad-checksum" => n("GITHUB_TOKEN", github_bad_checksum(rng)),
        "npm-bad-checksum" => n("NPM_TOKEN", npm_bad_checksum(rng)),
        "uuid" => {
            let name = *rng.pick(&["REQUEST_ID", "correlation_id", "tenant_id", "csrf_token"]);
            n(name, uuid(rng))
        }
        "sha256" => {
            let name = *rng.pick(&["checksum", "sha256", "digest", "content_hash"]);
            n(name, rng.chars(HEX, 64))
        }
        "git-sha" => n("commit", rng.chars(HEX, 40)),
        "sri-integrity" => {
            let (alg, bytes) = *rng.pick(&[("sha512", 64), ("sha384", 48)]);
            n(
                "integrity",
                format!("{alg}-{}", STANDARD.encode(rng.bytes(bytes))),
            )
        }
        "base64-blob" => {
            let name = *rng.pick(&["thumbnail", "payload", "cache_blob"]);
            let len = rng.range(60, 120);
            n(name, STANDARD.encode(rng.bytes(len)))
        }
        "masked" => {
            let tail = rng.chars(B62, 4);
            let (name, v) = match rng.below(4) {
                0 => ("OPENAI_API_KEY", format!("sk-...{tail}")),
                1 => (
                    "STRIPE_SECRET_KEY",
                    format!("sk_live_****************{tail}"),
                ),
                2 => ("GITHUB_TOKEN", format!("ghp_{}", "*".repeat(36))),
                _ => ("DB_PASSWORD", "********".to_owned()),
            };
            n(name, v)
        }
        "var-ref" => {
            let (name, v) = *rng.pick(&[
                ("API_KEY", "${API_KEY}"),
                ("db_password", "${DB_PASSWORD}"),
                ("GITHUB_TOKEN", "${{ secrets.GITHUB_TOKEN }}"),
                ("secret_key", "{{ .Values.app.secretKey }}"),
                ("OPENAI_API_KEY", "$OPENAI_API_KEY"),
            ]);
            n(name, v.to_owned())
        }
        "public-key" => {
            let lines = rng.range(4, 7);
            n("public_key", pem_block(rng, "PUBLIC KEY", lines))
        }
        "certificate" => {
            let lines = rng.range(8, 14);
            n("ca_cert", pem_block(rng, "CERTIFICATE", lines))
        }
        "ssh-public-key" => n(
            "ssh_authorized_key",
            format!(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} deploy@{}",
                rng.chars(B62, 43),
                rng.chars(LOWER, 6)
            ),
        ),
        "connection-no-password" => {
            let host = format!("db-{}.internal", rng.chars(LOWER_ALNUM, 6));
            let v = match rng.below(4) {
                0 => format!("postgres://app@{host}:5432/app"),
                1 => format!("postgres://app:${{PGPASSWORD}}@{host}:5432/app"),
                2 => format!("mongodb://{host}:27017/test"),
                _ => format!("redis://{host}:6379/0"),
            };
            n("DATABASE_URL", v)
        }
        "jwt-io-example" => n("example_jwt", JWT_IO_EXAMPLE.to_owned()),
        "stripe-publishable" => n("STRIPE_PUBLISHABLE_KEY", stripe_publishable(rng)),
        "placeholder" => {
            let (name, v) = *rng.pick(&[
                ("OPENAI_API_KEY", "your-api-key-here"),
                ("GITHUB_TOKEN", "<YOUR_GITHUB_TOKEN>"),
                ("OPENAI_API_KEY", "CORDON_PLACEHOLDER_OPENAI"),
                ("api_token", "xxxxxxxxxxxxxxxxxxxxxxxx"),
            ]);
            n(name, v.to_owned())
        }
        "twilio-sid-alone" => n("TWILIO_ACCOUNT_SID", twilio_account_sid(rng)),
        other => panic!("unknown negative kind {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Contexts: how an item reads in each kind of file

/// The kinds of file the corpus plants into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Env,
    Yaml,
    Json,
    Source,
    Log,
    LlmRequest,
    Transcript,
}

pub const CONTEXTS: &[Context] = &[
    Context::Env,
    Context::Yaml,
    Context::Json,
    Context::Source,
    Context::Log,
    Context::LlmRequest,
    Context::Transcript,
];

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Env => "env",
            Context::Yaml => "yaml",
            Context::Json => "json",
            Context::Source => "source",
            Context::Log => "log",
            Context::LlmRequest => "llm-request",
            Context::Transcript => "transcript",
        }
    }

    fn file_name(self, index: usize, rng: &mut Rng) -> String {
        match self {
            Context::Env => format!("env/service-{index}.env"),
            Context::Yaml => format!("yaml/deploy-{index}.yaml"),
            Context::Json => format!("json/settings-{index}.json"),
            Context::Source => {
                let ext = *rng.pick(&["py", "js", "go", "rs"]);
                format!("src/module_{index}.{ext}")
            }
            Context::Log => format!("logs/app-{index}.log"),
            Context::LlmRequest => format!("llm/requests-{index}.jsonl"),
            Context::Transcript => format!("transcripts/session-{index}.jsonl"),
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

/// `NAME=value` lines for the item (for prose and transcripts).
fn as_env_text(item: &Item) -> String {
    item.fields
        .iter()
        .map(|(k, v)| {
            if k == "Authorization" {
                format!("{k}: {v}")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of `item` in a file of this context (`lang` is the source file's extension).
fn render(ctx: Context, lang: &str, item: &Item, rng: &mut Rng) -> Vec<String> {
    let mut lines = Vec::new();
    match ctx {
        Context::Env => {
            for (k, v) in &item.fields {
                if k == "Authorization" {
                    lines.push(format!("HTTP_AUTHORIZATION=\"{v}\""));
                } else if v.contains('\n') {
                    // Multi-line values in .env files carry literal `\n` escapes.
                    lines.push(format!(
                        "{}=\"{}\"",
                        k.to_uppercase(),
                        v.replace('\n', "\\n")
                    ));
                } else {
                    lines.push(format!("{}={v}", k.to_uppercase()));
                }
            }
        }
        Context::Yaml => {
            for (k, v) in &item.fields {
                if v.contains('\n') {
                    lines.push(format!("  {}: |", k.to_lowercase()));
                    lines.extend(v.lines().map(|l| format!("    {l}")));
                } else {
                    lines.push(format!("  {}: {}", k.to_lowercase(), json_str(v)));
                }
            }
        }
        Context::Json => {
            for (k, v) in &item.fields {
                lines.push(format!(
                    "  {}: {},",
                    json_str(&k.to_lowercase()),
                    json_str(v)
                ));
            }
        }
        Context::Source => {
            for (k, v) in &item.fields {
                let lower = k.to_lowercase();
                if v.contains('\n') {
                    let (open, close) = match lang {
                        "py" => (
                            format!("{} = \"\"\"", k.to_uppercase()),
                            "\"\"\"".to_owned(),
                        ),
                        "js" => (format!("const {lower} = `"), "`;".to_owned()),
                        "go" => (format!("var {lower} = `"), "`".to_owned()),
                        _ => (
                            format!("const {}: &str = r#\"", k.to_uppercase()),
                            "\"#;".to_owned(),
                        ),
                    };
                    let mut body: Vec<String> = v.lines().map(str::to_owned).collect();
                    body[0] = format!("{open}{}", body[0]);
                    let last = body.len() - 1;
                    body[last] = format!("{}{close}", body[last]);
                    lines.extend(body);
                } else {
                    lines.push(match lang {
                        "py" => format!("{} = \"{v}\"", k.to_uppercase()),
                        "js" => format!("const {lower} = \"{v}\";"),
                        "go" => format!("\t{lower} := \"{v}\""),
                        _ => format!("    let {lower} = \"{v}\";"),
                    });
                }
            }
        }
        Context::Log => {
            for (k, v) in &item.fields {
                let ts = timestamp(rng);
                lines.push(if k == "Authorization" {
                    format!("{ts} DEBUG http: outbound request headers: Authorization: {v}")
                } else if v.contains('\n') {
                    format!(
                        "{ts} DEBUG config: loaded {k}={}",
                        json_str(v).trim_matches('"')
                    )
                } else {
                    format!("{ts} DEBUG config: resolved {k}={v} from environment")
                });
            }
        }
        Context::LlmRequest => {
            let text = as_env_text(item);
            let body = if rng.below(2) == 0 {
                serde_json::json!({
                    "model": "gpt-4o",
                    "messages": [
                        {"role": "system", "content": "You are a careful coding assistant."},
                        {"role": "user", "content": format!(
                            "My deploy fails. Here is the config I use:\n{text}\nWhat is wrong?")},
                    ],
                    "temperature": 0.2,
                })
            } else {
                // A tool call whose arguments are JSON inside a JSON string: escaped twice.
                let args = serde_json::json!({"path": ".env", "content": format!("{text}\n")});
                serde_json::json!({
                    "model": "claude-sonnet-4",
                    "messages": [
                        {"role": "user", "content": "Write the env file for the staging deploy."},
                        {"role": "assistant", "content": null, "tool_calls": [{
                            "id": format!("call_{}", rng.chars(B62, 12)),
                            "type": "function",
                            "function": {"name": "write_file", "arguments": args.to_string()},
                        }]},
                    ],
                })
            };
            lines.push(body.to_string());
        }
        Context::Transcript => {
            let text = as_env_text(item);
            let record = match rng.below(3) {
                0 => serde_json::json!({
                    "type": "tool_result", "tool": "bash",
                    "input": "cat .env.production",
                    "output": format!("# production\n{text}\n"),
                }),
                1 => serde_json::json!({
                    "type": "assistant",
                    "text": format!("I found the settings in the config file:\n\n```\n{text}\n```\n\nI will use them for the request."),
                }),
                _ => serde_json::json!({
                    "type": "tool_use", "tool": "bash",
                    "input": format!("cat > .env.staging <<'EOF'\n{text}\nEOF"),
                }),
            };
            lines.push(record.to_string());
        }
    }
    lines
}

fn timestamp(rng: &mut Rng) -> String {
    format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        rng.range(1, 28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000)
    )
}

// ---------------------------------------------------------------------------------------
// Secret-free filler, shared by the evaluation files and the throughput corpus

const WORDS: &[&str] = &[
    "user", "order", "item", "account", "payment", "invoice", "session", "request", "handler",
    "config", "cache", "queue", "worker", "retry", "timeout", "buffer", "client", "server",
    "route", "metric", "report", "record", "stream", "batch", "event", "schema", "table", "index",
    "parse", "render", "update", "delete", "create", "fetch", "store", "load", "build", "check",
    "limit", "offset", "count", "total", "status", "result", "error", "value", "name", "path",
];

fn ident(rng: &mut Rng) -> String {
    format!("{}_{}", rng.pick(WORDS), rng.pick(WORDS))
}

fn camel(rng: &mut Rng) -> String {
    let a = rng.pick(WORDS);
    let b = rng.pick(WORDS);
    format!("{a}{}{}", b[..1].to_uppercase(), &b[1..])
}

/// One line of plausible code in `lang`.
pub fn code_line(rng: &mut Rng, lang: &str) -> String {
    let a = ident(rng);
    let b = ident(rng);
    let n = rng.below(10_000);
    let indent = "    ".repeat(rng.range(0, 3));
    match (lang, rng.below(8)) {
        ("py", 0) => format!("{indent}def {a}(self, {b}, limit={n}):"),
        ("py", 1) => format!("{indent}{a} = self.{b}.get(\"{}\", {n})", rng.pick(WORDS)),
        ("py", 2) => format!("{indent}for {} in {a}:", rng.pick(WORDS)),
        ("py", 3) => format!(
            "{indent}# {} the {} before we {}",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS)
        ),
        ("py", 4) => format!(
            "{indent}logger.info(\"{} %s done in %d ms\", {a}, {n})",
            rng.pick(WORDS)
        ),
        ("py", _) => format!("{indent}return {a}({b}) + {n}"),
        ("js", 0) => format!(
            "{indent}function {}({}, {}) {{",
            camel(rng),
            camel(rng),
            camel(rng)
        ),
        ("js", 1) => format!(
            "{indent}const {} = await {}.{}({n});",
            camel(rng),
            camel(rng),
            camel(rng)
        ),
        ("js", 2) => format!("{indent}if ({} > {n}) {{ return null; }}", camel(rng)),
        ("js", 3) => format!(
            "{indent}// {} {} when the {} is {}",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS)
        ),
        ("js", 4) => format!(
            "{indent}console.log(`{} ${{{}}} took ${{ms}}ms`);",
            rng.pick(WORDS),
            camel(rng)
        ),
        ("js", _) => format!("{indent}}}"),
        ("go", 0) => format!(
            "func {}({} int) (*{}, error) {{",
            camel(rng),
            camel(rng),
            camel(rng)
        ),
        ("go", 1) => format!(
            "\t{} := {}.{}(ctx, {n})",
            camel(rng),
            camel(rng),
            camel(rng)
        ),
        ("go", 2) => "\tif err != nil {\n\t\treturn nil, err\n\t}".to_owned(),
        ("go", 3) => format!(
            "\t// {} {} the {}",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS)
        ),
        ("go", _) => format!("\treturn &{}{{ID: {n}}}, nil", camel(rng)),
        (_, 0) => format!(
            "{indent}pub fn {a}(&self, {b}: u64) -> Result<{}, Error> {{",
            camel(rng)
        ),
        (_, 1) => format!(
            "{indent}let {a} = self.{b}.iter().filter(|x| x.{} > {n}).count();",
            rng.pick(WORDS)
        ),
        (_, 2) => format!(
            "{indent}/// {} the {} of each {}.",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS)
        ),
        (_, 3) => format!("{indent}match {a} {{ Some(v) => v, None => return Ok({n}) }}"),
        (_, 4) => format!(
            "{indent}tracing::debug!({a} = {n}, \"{} {}\");",
            rng.pick(WORDS),
            rng.pick(WORDS)
        ),
        (_, _) => format!("{indent}}}"),
    }
}

/// One application log line.
pub fn log_line(rng: &mut Rng) -> String {
    let ts = timestamp(rng);
    let level = *rng.pick(&["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]);
    match rng.below(4) {
        0 => format!(
            "{ts} {level} http: {} /api/v1/{}/{} {} {}ms ip=10.{}.{}.{}",
            rng.pick(&["GET", "POST", "PUT", "DELETE"]),
            rng.pick(WORDS),
            rng.below(100_000),
            rng.pick(&[200, 201, 204, 301, 400, 404, 500]),
            rng.below(900),
            rng.below(256),
            rng.below(256),
            rng.below(256)
        ),
        1 => format!(
            "{ts} {level} {}: {} {} for user_id={} in {}ms",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.below(1_000_000),
            rng.below(5000)
        ),
        2 => format!(
            "{ts} {level} worker: job {} {} after {} retries (queue={})",
            rng.below(1_000_000),
            rng.pick(&["finished", "failed", "requeued"]),
            rng.below(5),
            rng.pick(WORDS)
        ),
        _ => format!(
            "{ts} {level} db: query {} rows={} elapsed={}.{:03}s",
            ident(rng),
            rng.below(10_000),
            rng.below(3),
            rng.below(1000)
        ),
    }
}

/// One pretty-printed JSON record of business data (no trailing comma).
pub fn json_record(rng: &mut Rng) -> String {
    let record = serde_json::json!({
        "id": rng.below(10_000_000),
        "name": format!("{} {}", rng.pick(WORDS), rng.pick(WORDS)),
        "status": rng.pick(&["active", "pending", "closed"]),
        "amount": rng.below(100_000) as f64 / 100.0,
        "tags": [rng.pick(WORDS), rng.pick(WORDS)],
        "owner": {"user_id": rng.below(100_000), "team": rng.pick(WORDS)},
        "updated_at": timestamp(rng),
    });
    serde_json::to_string_pretty(&record).expect("serialises")
}

fn filler(ctx: Context, lang: &str, rng: &mut Rng) -> String {
    match ctx {
        Context::Env => {
            let name = ident(rng).to_uppercase();
            match rng.below(3) {
                0 => format!("# {} {}", rng.pick(WORDS), rng.pick(WORDS)),
                1 => format!("{name}={}", rng.below(10_000)),
                _ => format!("{name}={}", rng.pick(WORDS)),
            }
        }
        Context::Yaml => format!("  {}: {}", ident(rng), rng.below(1000)),
        Context::Json => format!("  {}: {},", json_str(&ident(rng)), rng.below(1000)),
        Context::Source => code_line(rng, lang),
        Context::Log => log_line(rng),
        Context::LlmRequest => serde_json::json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": format!(
                "Refactor the {} {} so that {} is {}.",
                rng.pick(WORDS), rng.pick(WORDS), rng.pick(WORDS), rng.pick(WORDS))}],
        })
        .to_string(),
        Context::Transcript => serde_json::json!({
            "type": "tool_result", "tool": "bash",
            "input": format!("grep -rn {} src/", rng.pick(WORDS)),
            "output": format!("src/{}.rs:{}: {}", rng.pick(WORDS), rng.below(500), code_line(rng, "rs")),
        })
        .to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// The evaluation corpus

/// Where one item sits in its file (1-based, inclusive).
#[derive(Debug, Clone)]
pub struct Planted {
    pub kind: &'static str,
    pub secret: bool,
    pub first_line: usize,
    pub last_line: usize,
}

/// One generated file and what it holds.
pub struct CorpusFile {
    /// Relative path, `/`-separated.
    pub path: String,
    pub context: Context,
    pub bytes: Vec<u8>,
    pub planted: Vec<Planted>,
}

/// How many of each kind go into each context.
pub const COPIES: usize = 3;
/// Files per context.
pub const FILES_PER_CONTEXT: usize = 5;

/// Every secret kind and every negative kind, `COPIES` times in each context, spread over
/// `FILES_PER_CONTEXT` files per context, with filler between them.
pub fn eval_corpus(seed: u64) -> Vec<CorpusFile> {
    let mut rng = Rng::new(seed);
    let mut files = Vec::new();
    for &ctx in CONTEXTS {
        let mut items: Vec<Item> = Vec::new();
        for _ in 0..COPIES {
            for &kind in SECRET_KINDS {
                items.push(secret(&mut rng, kind));
            }
            for &kind in NEGATIVE_KINDS {
                items.push(negative(&mut rng, kind));
            }
        }
        rng.shuffle(&mut items);
        let per_file = items.len().div_ceil(FILES_PER_CONTEXT);
        let mut chunks = Vec::new();
        while !items.is_empty() {
            let rest = items.split_off(per_file.min(items.len()));
            chunks.push(std::mem::replace(&mut items, rest));
        }
        for (index, chunk) in chunks.into_iter().enumerate() {
            files.push(build_file(ctx, index, chunk, &mut rng));
        }
    }
    files
}

fn build_file(ctx: Context, index: usize, items: Vec<Item>, rng: &mut Rng) -> CorpusFile {
    let path = ctx.file_name(index, rng);
    let lang = path.rsplit('.').next().unwrap_or("").to_owned();
    let mut lines: Vec<String> = Vec::new();
    match ctx {
        Context::Yaml => {
            lines.push("apiVersion: v1".into());
            lines.push("kind: Secret".into());
            lines.push("data:".into());
        }
        Context::Json => lines.push("{".into()),
        Context::Source if lang == "go" => lines.push("package main\n\nfunc init() {".into()),
        Context::Source if lang == "rs" => lines.push("fn setup() {".into()),
        _ => {}
    }
    let mut planted = Vec::new();
    for item in &items {
        for _ in 0..rng.range(1, 4) {
            lines.push(filler(ctx, &lang, rng));
        }
        let first_line = line_count(&lines) + 1;
        let rendered = render(ctx, &lang, item, rng);
        lines.extend(rendered);
        planted.push(Planted {
            kind: item.kind,
            secret: item.secret,
            first_line,
            last_line: line_count(&lines),
        });
    }
    for _ in 0..rng.range(1, 4) {
        lines.push(filler(ctx, &lang, rng));
    }
    match ctx {
        Context::Json => lines.push("  \"version\": 1\n}".into()),
        Context::Source if lang == "go" || lang == "rs" => lines.push("}".into()),
        _ => {}
    }
    let mut text = lines.join("\n");
    text.push('\n');
    CorpusFile {
        path,
        context: ctx,
        bytes: text.into_bytes(),
        planted,
    }
}

fn line_count(lines: &[String]) -> usize {
    lines.iter().map(|l| l.matches('\n').count() + 1).sum()
}

/// The manifest `benches/scan-peers.sh` scores against: one object per planted item.
pub fn manifest_json(files: &[CorpusFile]) -> String {
    let items: Vec<serde_json::Value> = files
        .iter()
        .flat_map(|f| {
            f.planted.iter().map(move |p| {
                serde_json::json!({
                    "file": f.path, "context": f.context.name(), "kind": p.kind,
                    "secret": p.secret, "first_line": p.first_line, "last_line": p.last_line,
                })
            })
        })
        .collect();
    serde_json::to_string_pretty(&items).expect("serialises")
}

// ---------------------------------------------------------------------------------------
// Scoring

/// Recall, hard negatives flagged, and findings outside any planted item.
#[derive(Debug, Default)]
pub struct Score {
    pub secrets: usize,
    pub found: usize,
    pub negatives: usize,
    pub negatives_flagged: usize,
    /// Findings on filler lines (neither a secret nor a hard negative).
    pub stray: usize,
    /// Per kind: (kind, planted, hit) — hit means found for secrets, flagged for negatives.
    pub by_kind: Vec<(&'static str, bool, usize, usize)>,
    /// Per context: (context, secrets, found).
    pub by_context: Vec<(&'static str, usize, usize)>,
    /// Which rules flagged hard negatives: (negative kind, rule, count).
    pub flagged_by: Vec<(&'static str, String, usize)>,
    /// Secrets not found: (file, first line, kind).
    pub misses: Vec<(String, usize, &'static str)>,
}

impl Score {
    pub fn recall(&self) -> f64 {
        self.found as f64 / self.secrets.max(1) as f64
    }

    pub fn negatives_flagged_share(&self) -> f64 {
        self.negatives_flagged as f64 / self.negatives.max(1) as f64
    }

    /// A table of the kinds that missed (secrets) or were flagged (negatives).
    pub fn report(&self) -> String {
        let mut out = format!(
            "recall {:.3} ({}/{}); hard negatives flagged {:.3} ({}/{}); findings on filler lines {}\n",
            self.recall(),
            self.found,
            self.secrets,
            self.negatives_flagged_share(),
            self.negatives_flagged,
            self.negatives,
            self.stray
        );
        for (ctx, n, found) in &self.by_context {
            let _ = writeln!(out, "  context {ctx:<12} recall {found}/{n}");
        }
        for (kind, secret, n, hit) in &self.by_kind {
            if *secret && hit < n {
                let _ = writeln!(out, "  missed   {kind:<24} {}/{n}", n - hit);
            }
            if !*secret && *hit > 0 {
                let rules: Vec<String> = self
                    .flagged_by
                    .iter()
                    .filter(|(k, _, _)| k == kind)
                    .map(|(_, rule, count)| format!("{rule} {count}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "  flagged  {kind:<24} {hit}/{n} (by {})",
                    rules.join(", ")
                );
            }
        }
        for (path, line, kind) in self.misses.iter().take(30) {
            let _ = writeln!(out, "  miss at  {path}:{line} ({kind})");
        }
        out
    }
}

/// A finding as the scorer sees it: file path, first and last line, rule id.
pub type LineFinding = (String, usize, usize, String);

/// Scores findings; a finding counts for an item when their line ranges overlap.
pub fn score(files: &[CorpusFile], findings: &[LineFinding]) -> Score {
    let mut score = Score::default();
    let mut kinds: Vec<(&'static str, bool, usize, usize)> = Vec::new();
    let mut contexts: Vec<(&'static str, usize, usize)> =
        CONTEXTS.iter().map(|c| (c.name(), 0, 0)).collect();
    let mut matched = vec![false; findings.len()];
    for file in files {
        for p in &file.planted {
            let mut hit = false;
            for (i, (path, first, last, rule)) in findings.iter().enumerate() {
                if *path == file.path && *first <= p.last_line && *last >= p.first_line {
                    hit = true;
                    matched[i] = true;
                    if !p.secret {
                        match score
                            .flagged_by
                            .iter_mut()
                            .find(|(k, r, _)| *k == p.kind && r == rule)
                        {
                            Some(entry) => entry.2 += 1,
                            None => score.flagged_by.push((p.kind, rule.clone(), 1)),
                        }
                    }
                }
            }
            let entry = match kinds.iter_mut().find(|k| k.0 == p.kind) {
                Some(e) => e,
                None => {
                    kinds.push((p.kind, p.secret, 0, 0));
                    kinds.last_mut().expect("just pushed")
                }
            };
            entry.2 += 1;
            entry.3 += usize::from(hit);
            if p.secret && !hit {
                score.misses.push((file.path.clone(), p.first_line, p.kind));
            }
            if p.secret {
                score.secrets += 1;
                score.found += usize::from(hit);
                let c = contexts
                    .iter_mut()
                    .find(|c| c.0 == file.context.name())
                    .expect("known context");
                c.1 += 1;
                c.2 += usize::from(hit);
            } else {
                score.negatives += 1;
                score.negatives_flagged += usize::from(hit);
            }
        }
    }
    score.stray = matched.iter().filter(|m| !**m).count();
    score.by_kind = kinds;
    score.by_context = contexts;
    score
}

// ---------------------------------------------------------------------------------------
// Throughput corpus

/// At least `bytes` of secret-free text: a third each source code, logs and JSON, in
/// blocks of a few KiB so that the three kinds interleave.
pub fn clean_corpus(seed: u64, bytes: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(bytes + 64 * 1024);
    while out.len() < bytes {
        match rng.below(3) {
            0 => {
                let lang = *rng.pick(&["py", "js", "go", "rs"]);
                for _ in 0..60 {
                    out.push_str(&code_line(&mut rng, lang));
                    out.push('\n');
                }
            }
            1 => {
                for _ in 0..40 {
                    out.push_str(&log_line(&mut rng));
                    out.push('\n');
                }
            }
            _ => {
                out.push_str("[\n");
                for i in 0..12 {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    out.push_str(&json_record(&mut rng));
                }
                out.push_str("\n]\n");
            }
        }
    }
    out.into_bytes()
}

/// `n` held credentials of assorted shapes, as `(rule id, value)` for `Scanner::new`.
pub fn held_credentials(seed: u64, n: usize) -> Vec<(String, String)> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let value = match i % 5 {
                0 => openai(&mut rng),
                1 => github_classic(&mut rng, "ghp"),
                2 => rng.chars(B64URL, 40),
                3 => password(&mut rng),
                _ => rng.chars(HEX, 48),
            };
            (format!("credential:held-{i}"), value)
        })
        .collect()
}
