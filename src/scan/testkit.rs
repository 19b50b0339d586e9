//! Test material built at run time: a seeded generator, fake tokens in each vendor's format
//! (with correctly computed checksums where the format has one), and per-rule samples.
//! Nothing here is a real credential.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::checks::{base62_6, crc32};

pub(crate) const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub(crate) const B64URL: &[u8] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";
pub(crate) const B64: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/";
pub(crate) const HEX: &[u8] = b"0123456789abcdef";
pub(crate) const UPPER_B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub(crate) const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub(crate) const DIGITS: &[u8] = b"0123456789";
pub(crate) const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub(crate) const LOWER36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Password material: symbols included, but none that end a value or mark a template.
pub(crate) const PASSWORD: &[u8] =
    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!#&*+-=?^_~";

/// xorshift64*: deterministic, so failures reproduce.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// A random token body guaranteed to mix upper case, lower case and digits.
    pub(crate) fn mixed(&mut self, alphabet: &[u8], n: usize) -> String {
        loop {
            let s = self.pick(alphabet, n);
            let b = s.as_bytes();
            if b.iter().any(u8::is_ascii_uppercase)
                && b.iter().any(u8::is_ascii_lowercase)
                && b.iter().any(u8::is_ascii_digit)
            {
                return s;
            }
        }
    }
}

/// `prefix` + 30 random base62 chars + their base62 CRC32: a GitHub/npm-format token.
pub(crate) fn checksummed(rng: &mut Rng, prefix: &str) -> String {
    let body = rng.mixed(B62, 30);
    let sum = base62_6(crc32(body.as_bytes()));
    format!("{prefix}{body}{}", String::from_utf8_lossy(&sum))
}

/// The same shape with a checksum that does not match.
pub(crate) fn bad_checksum(rng: &mut Rng, prefix: &str) -> String {
    let good = checksummed(rng, prefix);
    let mut b = good.into_bytes();
    let last = b.len() - 1;
    b[last] = if b[last] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).expect("ascii")
}

/// How a key block's lines are joined.
#[derive(Clone, Copy)]
pub(crate) enum Lines {
    Raw,
    Json,
    DoubleEscaped,
    Yaml,
}

/// A key block with a random body, its lines joined per `lines`.
pub(crate) fn key_block(rng: &mut Rng, label: &str, headers: &[&str], lines: Lines) -> String {
    let body = STANDARD.encode(rng.bytes(600));
    let mut parts = vec![format!("-----BEGIN {label}-----")];
    parts.extend(headers.iter().map(|h| h.to_string()));
    if !headers.is_empty() {
        parts.push(String::new());
    }
    parts.extend(
        body.as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned()),
    );
    parts.push(format!("-----END {label}-----"));
    match lines {
        Lines::Raw => parts.join("\n"),
        Lines::Json => parts.join("\\n"),
        Lines::DoubleEscaped => parts.join("\\\\n"),
        Lines::Yaml => parts.join("\n    "),
    }
}

/// A JWT with the given header JSON and a random subject and signature.
pub(crate) fn jwt(rng: &mut Rng, header: &str, signed: bool) -> String {
    let payload = format!(
        r#"{{"sub":"user-{}","iat":1700000000,"scope":"read"}}"#,
        rng.pick(LOWER36, 12)
    );
    let sig = if signed {
        rng.pick(B64URL, 43)
    } else {
        String::new()
    };
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        sig
    )
}

/// Text expected to yield exactly the listed findings.
pub(crate) struct Sample {
    pub(crate) text: String,
    pub(crate) expect: Vec<(&'static str, usize, usize)>,
}

impl Sample {
    /// `before` + `secret` + `after`, expecting `rule` on the secret.
    pub(crate) fn new(rule: &'static str, before: &str, secret: &str, after: &str) -> Sample {
        let start = before.len();
        Sample {
            text: format!("{before}{secret}{after}"),
            expect: vec![(rule, start, start + secret.len())],
        }
    }

    /// Also expects `rule` on the first occurrence of `part`.
    pub(crate) fn also(mut self, rule: &'static str, part: &str) -> Sample {
        let start = self.text.find(part).expect("part occurs in the sample");
        self.expect.push((rule, start, start + part.len()));
        self.expect.sort_by_key(|e| e.1);
        self
    }
}

/// One rule's positives and hard negatives.
pub(crate) struct Case {
    pub(crate) id: &'static str,
    pub(crate) positives: Vec<Sample>,
    pub(crate) negatives: Vec<String>,
}

fn case(id: &'static str, positives: Vec<(&str, String, &str)>, negatives: Vec<String>) -> Case {
    Case {
        id,
        positives: positives
            .into_iter()
            .map(|(b, s, a)| Sample::new(id, b, &s, a))
            .collect(),
        negatives,
    }
}

/// A password with symbols, as people really write them.
pub(crate) fn password(rng: &mut Rng) -> String {
    format!("{}{}", rng.mixed(PASSWORD, 14), rng.pick(b"!#&*", 2))
}

fn uuid(rng: &mut Rng) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        rng.pick(HEX, 8),
        rng.pick(HEX, 4),
        rng.pick(HEX, 4),
        rng.pick(HEX, 4),
        rng.pick(HEX, 12)
    )
}

fn conn_case(rng: &mut Rng, id: &'static str, scheme: &str, a: &str, b: &str) -> Case {
    let p1 = password(rng);
    let p2 = password(rng);
    case(
        id,
        vec![
            (a, p1, "@db.internal:5432/app\n"),
            (b, p2, "@10.0.0.7/prod?ssl=true\""),
        ],
        vec![
            format!("{scheme}://app@db.internal/app"),
            format!("{scheme}://app:${{DB_PASSWORD}}@db.internal/app"),
            format!("{scheme}://app:<password>@host/db"),
            format!("{scheme}://:@host/db"),
        ],
    )
}

/// Two positives of a bare token (shell export, JSON value); negatives are built first so
/// they can draw from the same generator.
macro_rules! simple {
    ($rng:expr, $id:expr, $make:expr, $neg:expr $(,)?) => {{
        let negatives: Vec<String> = $neg;
        simple_case($rng, $id, $make, negatives)
    }};
}

fn simple_case(
    rng: &mut Rng,
    id: &'static str,
    make: &dyn Fn(&mut Rng) -> String,
    negatives: Vec<String>,
) -> Case {
    let t1 = make(rng);
    let t2 = make(rng);
    case(
        id,
        vec![("export VALUE=", t1, "\n"), ("{\"value\": \"", t2, "\"}")],
        negatives,
    )
}

/// Every built-in rule with two or more positives and hard negatives.
pub(crate) fn cases(rng: &mut Rng) -> Vec<Case> {
    let mut v = Vec::new();

    let id = format!("AKIA{}", rng.pick(UPPER_B32, 16));
    let id2 = format!("ASIA{}", rng.pick(UPPER_B32, 16));
    v.push(case(
        "aws-access-key-id",
        vec![
            ("aws_access_key_id = ", id, "\n"),
            ("{\"AccessKeyId\": \"", id2, "\"}"),
        ],
        vec![
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE".into(),
            format!("id: AKIA{}", rng.pick(UPPER_B32, 15)),
            format!("XAKIA{} ", rng.pick(UPPER_B32, 16)),
            format!("AKIA{}", rng.pick(UPPER_B32, 17)),
        ],
    ));

    let sk1 = rng.mixed(B64, 40);
    let key_id = format!("AKIA{}", rng.pick(UPPER_B32, 16));
    let sk2 = rng.mixed(B64, 40);
    let mut aws = case(
        "aws-secret-access-key",
        vec![("aws_secret_access_key = ", sk1, "\n")],
        vec![
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            format!("aws_secret_access_key = {}", rng.pick(HEX, 40)),
            format!("AKIAIOSFODNN7EXAMPLE\nsha: {}\n", rng.pick(HEX, 40)),
        ],
    );
    aws.positives.push(
        Sample::new(
            "aws-secret-access-key",
            &format!("creds:\n  id: {key_id}\n  key: "),
            &sk2,
            "\n",
        )
        .also("aws-access-key-id", &key_id),
    );
    v.push(aws);

    v.push(simple!(
        rng,
        "google-api-key",
        &|r| format!("AIza{}", r.pick(B64URL, 35)),
        vec![
            format!("key=AIza{}&x=1", rng.pick(B64URL, 34)),
            format!("key=AIza{}", rng.pick(B64URL, 36)),
        ]
    ));
    v.push(simple!(
        rng,
        "google-oauth-client-secret",
        &|r| format!("GOCSPX-{}", r.mixed(B64URL, 28)),
        vec![
            format!("GOCSPX-{}", rng.pick(B64URL, 27)),
            "GOCSPX-xxxxxxxxxxxxxxxxxxxxxxxxxxxx".into(),
        ]
    ));
    v.push(simple!(
        rng,
        "google-oauth-access-token",
        &|r| format!("ya29.{}", r.mixed(B64URL, 150)),
        vec!["ya29.a0AfH6SM".into(), format!("ya29.{}", "x".repeat(60)),]
    ));

    let sa1 = key_block(rng, "PRIVATE KEY", &[], Lines::Json);
    let sa2 = key_block(rng, "PRIVATE KEY", &[], Lines::DoubleEscaped);
    v.push(Case {
        id: "gcp-service-account-key",
        positives: vec![
            Sample::new(
                "gcp-service-account-key",
                &format!(
                    "{{\"type\": \"service_account\", \"project_id\": \"demo\", \"private_key_id\": \"{}\", \"private_key\": \"",
                    rng.pick(HEX, 40)
                ),
                &sa1,
                "\\n\", \"client_email\": \"svc@demo.iam.gserviceaccount.com\"}",
            ),
            Sample::new(
                "gcp-service-account-key",
                "{\"body\": \"{\\\"type\\\": \\\"service_account\\\", \\\"private_key\\\": \\\"",
                &sa2,
                "\\\\n\\\"}\"}",
            ),
        ],
        negatives: vec![
            "\"private_key\": \"-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----\\n\"".into(),
            "{\"private_key\": \"\", \"private_key_id\": \"\"}".into(),
        ],
    });

    let ak1 = STANDARD.encode(rng.bytes(64));
    let ak2 = STANDARD.encode(rng.bytes(64));
    v.push(case(
        "azure-storage-account-key",
        vec![
            (
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=",
                ak1,
                ";EndpointSuffix=core.windows.net",
            ),
            ("conn = \"AccountName=x;AccountKey=", ak2, "\""),
        ],
        vec![
            format!(
                "AccountName=acct;AccountKey={}",
                STANDARD.encode(rng.bytes(32))
            ),
            "AccountName=acct;AccountKey=${AZURE_STORAGE_KEY}".into(),
        ],
    ));

    let sig = |r: &mut Rng| {
        STANDARD
            .encode(r.bytes(32))
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    };
    let (s1, s2) = (sig(rng), sig(rng));
    v.push(case(
        "azure-sas-token",
        vec![
            (
                "https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z&spr=https&sig=",
                s1,
                " done",
            ),
            ("SharedAccessSignature=sv=2021-06-08&ss=bfqt&srt=sco&sp=rwdlacupx&sig=", s2, "\n"),
        ],
        vec![
            "https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&sig=abc".into(),
            "https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&ss=b&srt=o".into(),
        ],
    ));

    let (k1, k2) = (
        STANDARD.encode(rng.bytes(32)),
        STANDARD.encode(rng.bytes(32)),
    );
    v.push(case(
        "azure-shared-access-key",
        vec![
            ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=", k1, "\n"),
            ("\"Endpoint=sb://x/;SharedAccessKeyName=send;SharedAccessKey=", k2, ";EntityPath=q\""),
        ],
        vec![
            "SharedAccessKeyName=Root;SharedAccessKey=short=".into(),
            "SharedAccessKeyName=Root;SharedAccessKey=${SB_KEY}".into(),
        ],
    ));

    let ad = |r: &mut Rng| {
        format!(
            "{}{}Q~{}",
            r.pick(B62, 3),
            r.pick(DIGITS, 1),
            r.mixed(B62, 34)
        )
    };
    v.push(simple!(
        rng,
        "azure-ad-client-secret",
        &ad,
        vec![
            format!("abc1Q~{}", rng.pick(B62, 12)),
            format!("abcdQ~{}", rng.mixed(B62, 34)),
        ]
    ));

    for (rule, prefix) in [
        ("github-pat", "ghp_"),
        ("github-oauth-token", "gho_"),
        ("github-user-token", "ghu_"),
        ("github-app-token", "ghs_"),
        ("github-refresh-token", "ghr_"),
    ] {
        let (t1, t2) = (checksummed(rng, prefix), checksummed(rng, prefix));
        v.push(case(
            rule,
            vec![
                ("GITHUB_TOKEN=", t1, "\n"),
                (
                    "git clone https://x-access-token:",
                    t2,
                    "@github.com/o/r.git",
                ),
            ],
            vec![
                format!("GITHUB_TOKEN={}", bad_checksum(rng, prefix)),
                format!("token: {}", bad_checksum(rng, prefix)),
                format!("{prefix}{}", rng.pick(B62, 35)),
            ],
        ));
    }
    v.push(simple!(
        rng,
        "github-fine-grained-pat",
        &|r| format!("github_pat_{}_{}", r.mixed(B62, 22), r.mixed(B62, 59)),
        vec![
            format!("github_pat_{}_{}", rng.pick(B62, 22), rng.pick(B62, 58)),
            format!("github_pat_{}", "x".repeat(82)),
        ],
    ));
    v.push(simple!(
        rng,
        "gitlab-pat",
        &|r| {
            if r.below(2) == 0 {
                format!("glpat-{}", r.mixed(B64URL, 20))
            } else {
                format!("glpat-{}.01{}", r.mixed(B64URL, 27), r.pick(LOWER36, 7))
            }
        },
        vec![
            format!("glpat-{}", rng.pick(B64URL, 19)),
            "glpat-xxxxxxxxxxxxxxxxxxxx".into()
        ],
    ));
    for (rule, prefix) in [
        ("gitlab-deploy-token", "gldt-"),
        ("gitlab-runner-token", "glrt-"),
        ("gitlab-ci-build-token", "glcbt-"),
        ("gitlab-pipeline-trigger-token", "glptt-"),
        ("gitlab-feed-token", "glft-"),
        ("gitlab-incoming-mail-token", "glimt-"),
        ("gitlab-agent-token", "glagent-"),
        ("gitlab-oauth-secret", "gloas-"),
    ] {
        v.push(simple!(
            rng,
            rule,
            &|r| format!("{prefix}{}", {
                let n = 20 + r.below(30);
                r.mixed(B64URL, n)
            }),
            vec![
                format!("{prefix}{}", rng.pick(B64URL, 12)),
                format!("{prefix}{}", "x".repeat(24)),
            ]
        ));
    }

    v.push(simple!(
        rng,
        "slack-bot-token",
        &|r| format!(
            "xoxb-{}-{}-{}",
            r.pick(DIGITS, 12),
            r.pick(DIGITS, 13),
            r.mixed(B62, 24)
        ),
        vec![
            "xoxb-123-456-abc".into(),
            "xoxb-000000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx".into(),
        ],
    ));
    v.push(simple!(
        rng,
        "slack-user-token",
        &|r| format!(
            "xoxp-{}-{}-{}-{}",
            r.pick(DIGITS, 12),
            r.pick(DIGITS, 12),
            r.pick(DIGITS, 13),
            r.mixed(B62, 32)
        ),
        vec![
            format!(
                "xoxp-{}-{}-{}",
                rng.pick(DIGITS, 12),
                rng.pick(DIGITS, 12),
                rng.mixed(B62, 32)
            ),
            format!(
                "xoxp-{}-{}-{}-{}",
                rng.pick(DIGITS, 12),
                rng.pick(DIGITS, 12),
                rng.pick(DIGITS, 13),
                rng.pick(B62, 12)
            ),
        ],
    ));
    v.push(simple!(
        rng,
        "slack-app-token",
        &|r| format!(
            "xapp-1-A{}-{}-{}",
            r.pick(UPPER_ALNUM, 10),
            r.pick(DIGITS, 13),
            r.pick(HEX, 64)
        ),
        vec![
            format!(
                "xapp-1-A{}-{}-{}",
                rng.pick(UPPER_ALNUM, 10),
                rng.pick(DIGITS, 13),
                rng.pick(HEX, 30)
            ),
            format!(
                "xapp-1-A{}-{}-{}",
                rng.pick(UPPER_ALNUM, 10),
                rng.pick(DIGITS, 13),
                rng.pick(HEX, 64).to_uppercase()
            ),
        ],
    ));
    let hook = |r: &mut Rng| {
        format!(
            "hooks.slack.com/services/T{}/B{}/{}",
            r.pick(UPPER_ALNUM, 8),
            r.pick(UPPER_ALNUM, 8),
            r.mixed(B62, 24)
        )
    };
    let (h1, h2) = (hook(rng), hook(rng));
    v.push(case(
        "slack-webhook-url",
        vec![
            ("SLACK_WEBHOOK=https://", h1, "\n"),
            ("curl -X POST \"https://", h2, "\" -d @msg.json"),
        ],
        vec![
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX".into(),
            "see https://hooks.slack.com/services/ for details".into(),
        ],
    ));

    v.push(simple!(
        rng,
        "stripe-secret-key",
        &|r| format!("sk_live_51{}", r.mixed(B62, 97)),
        vec![
            format!("sk_test_51{}", rng.mixed(B62, 97)),
            format!("pk_live_51{}", rng.mixed(B62, 97)),
        ]
    ));
    v.push(simple!(
        rng,
        "stripe-restricted-key",
        &|r| format!("rk_live_{}", r.mixed(B62, 24)),
        vec![
            format!("rk_test_{}", rng.mixed(B62, 24)),
            "rk_live_short".into(),
        ]
    ));
    v.push(simple!(
        rng,
        "stripe-webhook-secret",
        &|r| format!("whsec_{}", r.mixed(B62, 32)),
        vec![
            format!("whsec_{}", rng.mixed(B62, 10)),
            format!("whsec_{}", "x".repeat(32)),
        ]
    ));
    v.push(simple!(
        rng,
        "twilio-api-key",
        &|r| format!("SK{}", r.pick(HEX, 32)),
        vec![
            format!("SK{}", "0".repeat(32)),
            format!("SK{}", rng.pick(HEX, 31)),
        ]
    ));
    let (t1, t2) = (rng.pick(HEX, 32), rng.pick(HEX, 32));
    v.push(case(
        "twilio-auth-token",
        vec![
            ("TWILIO_AUTH_TOKEN=", t1, "\n"),
            ("{\"twilioAuthToken\": \"", t2, "\"}"),
        ],
        vec![
            format!("TWILIO_AUTH_TOKEN={}", rng.pick(HEX, 32).to_uppercase()),
            "TWILIO_AUTH_TOKEN=${TWILIO_AUTH_TOKEN}".into(),
        ],
    ));
    v.push(simple!(
        rng,
        "sendgrid-api-key",
        &|r| format!("SG.{}.{}", r.mixed(B64URL, 22), r.mixed(B64URL, 43)),
        vec![
            format!("SG.{}.{}", rng.pick(B64URL, 21), rng.pick(B64URL, 43)),
            format!("SG.{}.{}", "x".repeat(22), "x".repeat(43)),
        ],
    ));
    let (m1, m2) = (
        format!("key-{}", rng.pick(HEX, 32)),
        format!(
            "{}-{}-{}",
            rng.pick(HEX, 32),
            rng.pick(HEX, 8),
            rng.pick(HEX, 8)
        ),
    );
    v.push(case(
        "mailgun-api-key",
        vec![("api: ", m1, "\n"), ("MAILGUN_API_KEY=", m2, "\n")],
        vec![
            format!("key-{}", "0".repeat(32)),
            format!("monkey-{}", rng.pick(HEX, 32)),
        ],
    ));
    for (rule, prefix) in [
        ("shopify-access-token", "shpat_"),
        ("shopify-custom-app-token", "shpca_"),
        ("shopify-private-app-token", "shppa_"),
        ("shopify-shared-secret", "shpss_"),
    ] {
        v.push(simple!(
            rng,
            rule,
            &|r| format!("{prefix}{}", r.pick(HEX, 32)),
            vec![
                format!("{prefix}{}", rng.pick(HEX, 31)),
                format!("{prefix}{}", "0".repeat(32)),
            ]
        ));
    }
    v.push(simple!(
        rng,
        "atlassian-api-token",
        &|r| format!(
            "ATATT3xFfGF0{}={}",
            r.mixed(B64URL, 170),
            r.pick(HEX, 8).to_uppercase()
        ),
        vec![
            format!("ATATT3{}", rng.pick(B64URL, 100)),
            format!("ATATT3{}", "x".repeat(186))
        ],
    ));
    let (d1, d2) = (rng.pick(HEX, 32), rng.pick(HEX, 32));
    v.push(case(
        "datadog-api-key",
        vec![
            ("DD_API_KEY=", d1, "\n"),
            ("headers = {\"DD-API-KEY\": \"", d2, "\"}"),
        ],
        vec![
            format!("DD_API_KEY={}", rng.pick(HEX, 32).to_uppercase()),
            format!("DD_API_KEY={}", uuid(rng)),
        ],
    ));
    let (d1, d2) = (rng.pick(HEX, 40), rng.pick(HEX, 40));
    v.push(case(
        "datadog-app-key",
        vec![
            ("DD_APP_KEY=", d1, "\n"),
            ("\"DD-APPLICATION-KEY\": \"", d2, "\""),
        ],
        vec![
            format!("DD_APP_KEY={}", rng.pick(HEX, 32)),
            "DD_APP_KEY=${DD_APP_KEY}".into(),
        ],
    ));
    let (n1, n2) = (checksummed(rng, "npm_"), checksummed(rng, "npm_"));
    v.push(case(
        "npm-access-token",
        vec![
            ("NPM_TOKEN=", n1, "\n"),
            ("//registry.npmjs.org/:_authToken=", n2, "\n"),
        ],
        vec![
            format!("NPM_TOKEN={}", bad_checksum(rng, "npm_")),
            format!("publish with {}", bad_checksum(rng, "npm_")),
        ],
    ));
    let (u1, u2) = (uuid(rng), rng.mixed(B64URL, 36));
    v.push(case(
        "npm-legacy-auth-token",
        vec![
            ("//registry.npmjs.org/:_authToken=", u1, "\n"),
            ("//npm.pkg.github.com/:_authToken=", u2, "\n"),
        ],
        vec![
            "//registry.npmjs.org/:_authToken=${NPM_TOKEN}".into(),
            "//registry.npmjs.org/:_authToken=\n".into(),
        ],
    ));
    v.push(simple!(
        rng,
        "pypi-token",
        &|r| format!("pypi-AgEIcHlwaS5vcmc{}", r.mixed(B64URL, 70)),
        vec![
            format!("pypi-AgEIcHlwaS5vcmc{}", rng.pick(B64URL, 20)),
            format!("pypi-{}", rng.mixed(B64URL, 70)),
        ]
    ));
    v.push(simple!(
        rng,
        "crates-io-token",
        &|r| format!("cio{}", r.mixed(B62, 32)),
        vec![
            format!("cio{}", rng.mixed(B62, 31)),
            format!("cio{}", rng.pick(b"abcdefghijklmnopqrstuvwxyz", 32)),
        ]
    ));
    v.push(simple!(
        rng,
        "dockerhub-pat",
        &|r| format!("dckr_pat_{}", r.mixed(B64URL, 27)),
        vec![
            format!("dckr_pat_{}", rng.pick(B64URL, 20)),
            format!("dckr_pat_{}", "x".repeat(27)),
        ]
    ));
    v.push(simple!(
        rng,
        "openai-api-key",
        &|r| format!(
            "sk-proj-{}T3BlbkFJ{}",
            r.mixed(B64URL, 74),
            r.mixed(B64URL, 74)
        ),
        vec![
            "OPENAI_API_KEY=sk-proj-...abcd".into(),
            format!("sk-proj-{}", rng.pick(B64URL, 20))
        ],
    ));
    v.push(simple!(
        rng,
        "openai-legacy-api-key",
        &|r| format!("sk-{}T3BlbkFJ{}", r.mixed(B62, 20), r.mixed(B62, 20)),
        vec![
            format!("sk-{}", rng.mixed(B62, 48)),
            format!("task-{}T3BlbkFJ{}", rng.pick(B62, 20), rng.pick(B62, 20))
        ],
    ));
    v.push(simple!(
        rng,
        "anthropic-api-key",
        &|r| format!("sk-ant-api03-{}AA", r.mixed(B64URL, 93)),
        vec![
            format!("sk-ant-api03-{}AB", rng.mixed(B64URL, 93)),
            format!("sk-ant-api03-{}AA", rng.mixed(B64URL, 40)),
        ]
    ));
    v.push(simple!(
        rng,
        "anthropic-admin-key",
        &|r| format!("sk-ant-admin01-{}AA", r.mixed(B64URL, 93)),
        vec![
            format!("sk-ant-admin01-{}", rng.mixed(B64URL, 50)),
            "sk-ant-admin01-...AA".into(),
        ]
    ));
    v.push(simple!(
        rng,
        "huggingface-token",
        &|r| format!("hf_{}", r.pick(LETTERS, 34)),
        vec![
            format!("hf_{}", rng.pick(LETTERS, 33)),
            format!("hf_{}", rng.pick(b"abcdefghijklmnopqrstuvwxyz", 34)),
        ]
    ));
    v.push(simple!(
        rng,
        "huggingface-org-token",
        &|r| format!("api_org_{}", r.pick(LETTERS, 34)),
        vec![
            format!("api_org_{}", rng.pick(LETTERS, 20)),
            format!("api_org_{}", "x".repeat(34)),
        ]
    ));
    v.push(simple!(
        rng,
        "groq-api-key",
        &|r| format!("gsk_{}", r.mixed(B62, 52)),
        vec![
            format!("gsk_{}", rng.mixed(B62, 51)),
            format!("gsk_{}", "x".repeat(52)),
        ]
    ));

    let rsa = key_block(rng, "RSA PRIVATE KEY", &[], Lines::Raw);
    let ec = key_block(rng, "EC PRIVATE KEY", &[], Lines::Yaml);
    let enc = key_block(
        rng,
        "RSA PRIVATE KEY",
        &[
            "Proc-Type: 4,ENCRYPTED",
            "DEK-Info: AES-128-CBC,0123456789ABCDEF",
        ],
        Lines::Json,
    );
    let mut pk = case(
        "private-key",
        vec![
            ("key: |\n", rsa, "\n"),
            ("tls:\n  key: |\n    ", ec, "\n  cert: none\n"),
        ],
        vec![
            key_block(rng, "PUBLIC KEY", &[], Lines::Raw),
            key_block(rng, "CERTIFICATE", &[], Lines::Raw),
            "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----".into(),
            format!(
                "{}\n{}",
                "-----BEGIN PRIVATE KEY-----",
                key_block(rng, "CERTIFICATE", &[], Lines::Raw)
            ),
        ],
    );
    pk.positives
        .push(Sample::new("private-key", "{\"key\": \"", &enc, "\\n\"}"));
    v.push(pk);
    let (o1, o2) = (
        key_block(rng, "OPENSSH PRIVATE KEY", &[], Lines::Raw),
        key_block(rng, "OPENSSH PRIVATE KEY", &[], Lines::DoubleEscaped),
    );
    v.push(case(
        "openssh-private-key",
        vec![("", o1, "\n"), ("SSH_KEY=\"", o2, "\"\n")],
        vec![
            format!("ssh-ed25519 {} user@host", STANDARD.encode(rng.bytes(51))),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----".into(),
        ],
    ));
    let (g1, g2) = (
        key_block(
            rng,
            "PGP PRIVATE KEY BLOCK",
            &["Version: GnuPG v2"],
            Lines::Raw,
        ),
        key_block(rng, "PGP PRIVATE KEY BLOCK", &[], Lines::Json),
    );
    v.push(case(
        "pgp-private-key",
        vec![("", g1, "\n"), ("{\"armored\": \"", g2, "\"}")],
        vec![
            key_block(
                rng,
                "PGP PUBLIC KEY BLOCK",
                &["Version: GnuPG v2"],
                Lines::Raw,
            ),
            key_block(rng, "PGP SIGNATURE", &[], Lines::Raw),
        ],
    ));
    const BECH32: &[u8] = b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";
    v.push(simple!(
        rng,
        "age-secret-key",
        &|r| format!("AGE-SECRET-KEY-1{}", r.pick(BECH32, 58)),
        vec![
            format!("AGE-SECRET-KEY-1{}", rng.pick(BECH32, 40)),
            format!("age1{}", rng.pick(b"qpzry9x8gf2tvdw0s3jn54khce6mua7l", 58)),
        ]
    ));

    let (j1, j2) = (
        jwt(rng, r#"{"alg":"HS256","typ":"JWT"}"#, true),
        jwt(rng, r#"{"alg":"none"}"#, false),
    );
    let doc = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#),
        rng.pick(B64URL, 43)
    );
    v.push(case(
        "jwt",
        vec![
            ("session=", j1, "; Path=/"),
            ("{\"id_token\": \"", j2, "\"}"),
        ],
        vec![
            doc,
            jwt(rng, r#"{"typ":"JWT"}"#, true),
            format!(
                "eyJ{}.eyJ{}.{}",
                rng.pick(B64URL, 30),
                rng.pick(B64URL, 30),
                rng.pick(B64URL, 20)
            ),
        ],
    ));

    v.push(conn_case(
        rng,
        "postgres-password",
        "postgres",
        "DATABASE_URL=postgres://app:",
        "dsn = \"postgresql+psycopg2://svc:",
    ));
    v.push(conn_case(
        rng,
        "mysql-password",
        "mysql",
        "MYSQL_URL=mysql://root:",
        "url: \"mysql+pymysql://app:",
    ));
    v.push(conn_case(
        rng,
        "mongodb-password",
        "mongodb",
        "MONGO_URI=mongodb+srv://app:",
        "uri = \"mongodb://admin:",
    ));
    v.push(conn_case(
        rng,
        "redis-password",
        "redis",
        "REDIS_URL=redis://:",
        "cache: \"rediss://default:",
    ));
    v.push(conn_case(
        rng,
        "amqp-password",
        "amqp",
        "BROKER=amqp://guest:",
        "url = \"amqps://svc:",
    ));

    let (b1, b2) = (
        rng.mixed(B64URL, 40),
        format!("{}.{}", rng.mixed(B62, 20), rng.mixed(B62, 24)),
    );
    v.push(case(
        "http-bearer-token",
        vec![
            (
                "curl -H \"Authorization: Bearer ",
                b1,
                "\" https://api.example.com\n",
            ),
            ("{\"headers\": {\"authorization\": \"Bearer ", b2, "\"}}"),
        ],
        vec![
            "Authorization: Bearer ${TOKEN}".into(),
            "Authorization: Bearer <token>".into(),
        ],
    ));
    let (c1, c2) = (
        STANDARD.encode(format!("svc:{}", password(rng))),
        STANDARD.encode(format!("deploy:{}", password(rng))),
    );
    v.push(case(
        "http-basic-auth",
        vec![
            ("Authorization: Basic ", c1, "\r\n"),
            ("\"Authorization\": \"Basic ", c2, "\""),
        ],
        vec![
            format!("Authorization: Basic {}", STANDARD.encode("user:pass")),
            format!("Authorization: Basic {}", STANDARD.encode("no-colon-here")),
        ],
    ));

    let (p1, p2) = (password(rng), password(rng));
    v.push(case(
        "generic-password",
        vec![
            ("DB_PASSWORD=\"", p1, "\"\n"),
            ("smtp:\n  password: '", p2, "'\n"),
        ],
        vec![
            "password: ${DB_PASSWORD}".into(),
            "password = \"changeme\"".into(),
            format!("password_hash = \"{}\"", rng.pick(HEX, 64)),
            "passwords: [\"first-item\", \"second-item\"]".into(),
            "password = os.environ[\"DB_PASSWORD\"]".into(),
            "password: \"********\"".into(),
        ],
    ));
    let (g1, g2) = (rng.mixed(B62, 32), password(rng));
    v.push(case(
        "generic-secret",
        vec![
            ("client_secret = \"", g1, "\"\n"),
            ("{\\\"apiToken\\\":\\\"", g2, "\\\"}"),
        ],
        vec![
            "secret: {{ .Values.secret }}".into(),
            "token = os.environ[\"TOKEN\"]".into(),
            format!("SECRET_KEY = \"{}\"", uuid(rng)),
            format!("token: {}", rng.pick(HEX, 64)),
            "tokenizer: \"gpt2-tokenizer-fast\"".into(),
            "integrity: sha512-AbCdEf0123456789+/AbCdEf0123456789==".into(),
        ],
    ));

    v.push(simple!(
        rng,
        "digitalocean-token",
        &|r| format!("dop_v1_{}", r.pick(HEX, 64)),
        vec![
            format!("dop_v1_{}", rng.pick(HEX, 63)),
            format!("dop_v1_{}", "0".repeat(64)),
        ]
    ));
    v.push(simple!(
        rng,
        "hashicorp-vault-token",
        &|r| format!("hvs.{}", r.mixed(B64URL, 90)),
        vec![
            format!("hvs.{}", rng.pick(B64URL, 10)),
            format!("hvs.{}", "x".repeat(90)),
        ]
    ));
    v.push(simple!(
        rng,
        "sendinblue-api-key",
        &|r| format!("xkeysib-{}-{}", r.pick(HEX, 64), r.mixed(B62, 16)),
        vec![
            format!("xkeysib-{}-{}", rng.pick(HEX, 64), rng.pick(B62, 8)),
            format!("xkeysib-{}", rng.pick(HEX, 64)),
        ]
    ));
    v.push(simple!(
        rng,
        "linear-api-key",
        &|r| format!("lin_api_{}", r.mixed(B62, 40)),
        vec![
            format!("lin_api_{}", rng.pick(B62, 30)),
            format!("lin_api_{}", "x".repeat(40)),
        ]
    ));
    v.push(simple!(
        rng,
        "postman-api-key",
        &|r| format!("PMAK-{}-{}", r.pick(HEX, 24), r.pick(HEX, 34)),
        vec![
            format!("PMAK-{}-{}", rng.pick(HEX, 24), rng.pick(HEX, 20)),
            format!("PMAK-{}", rng.pick(HEX, 24)),
        ]
    ));
    v.push(simple!(
        rng,
        "databricks-token",
        &|r| format!("dapi{}", r.pick(HEX, 32)),
        vec![
            format!("rapidapi{}", rng.pick(HEX, 32)),
            format!("dapi{}", "0".repeat(32)),
        ]
    ));
    v.push(simple!(
        rng,
        "grafana-service-account-token",
        &|r| format!("glsa_{}_{}", r.mixed(B62, 32), r.pick(HEX, 8)),
        vec![
            format!("glsa_{}", rng.mixed(B62, 32)),
            format!("glsa_{}_{}", "x".repeat(32), "0".repeat(8))
        ],
    ));
    v.push(simple!(
        rng,
        "doppler-token",
        &|r| format!("dp.pt.{}", r.mixed(B62, 43)),
        vec![
            format!("dp.pt.{}", rng.mixed(B62, 20)),
            format!("dp.xx.{}", rng.mixed(B62, 43)),
        ]
    ));
    v
}

/// Text that must yield nothing: the hard negatives every rule shares.
pub(crate) fn shared_negatives(rng: &mut Rng) -> Vec<String> {
    vec![
        format!("request_id: {}", uuid(rng)),
        format!("sha256: {}", rng.pick(HEX, 64)),
        format!("commit {}", rng.pick(HEX, 40)),
        format!("blob: {}", STANDARD.encode(rng.bytes(300))),
        format!(
            "<script integrity=\"sha384-{}\"></script>",
            STANDARD.encode(rng.bytes(48))
        ),
        "API_KEY=${API_KEY}".into(),
        "token: \"{{ .Values.token }}\"".into(),
        "password: \"%s\"".into(),
        "OPENAI_API_KEY=CORDON_PLACEHOLDER_OPENAI".into(),
        "secret = \"<your-secret-here>\"".into(),
        "postgres://localhost:5432/app".into(),
        "redis://cache:6379/0".into(),
        "apiKey: process.env.API_KEY".into(),
        "token = get_token()".into(),
        "the author wrote a password policy and a token bucket".into(),
    ]
}

/// Secret-free filler text.
pub(crate) fn filler(rng: &mut Rng, len: usize) -> String {
    const WORDS: &[&str] = &[
        "alpha", "request", "response", "value", "item", "list", "handler", "config", "server",
        "client", "data", "index", "user", "name", "path", "status", "ok", "200", "GET", "json",
        "{", "}", "\n", "the", "token", "password", "secret", "key", "fn",
    ];
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        s.push_str(WORDS[rng.below(WORDS.len())]);
        s.push(' ');
    }
    s.truncate(len);
    s
}
