//! The built-in rule set and custom rules. Each rule is anchored at one of its literal
//! keywords: the prefilter finds the keyword, then the rule's regex runs on a slice that
//! starts at the keyword (or a fixed distance before it) and ends `max_len + 1` bytes
//! later. The slice depends only on the keyword's position, so a stream and a one-shot
//! scan see exactly the same bytes for every candidate.

use std::sync::Arc;

use regex::bytes::{Captures, Regex, RegexBuilder};

use super::checks::{self, Class, Filter};
use super::{CustomRule, ScanError};

/// How far before and after its keyword a custom rule's match may lie.
pub(crate) const CUSTOM_REACH: usize = 256;

/// The longest PEM/OpenSSH/PGP block (and JWT) a rule reports; longer blocks are missed,
/// and every other rule stays far below this, so it sets the stream window.
pub(crate) const BLOCK_MAX: usize = 8192;

/// Extra validation after the regex matched.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Check {
    /// The regex says it all.
    None,
    /// GitHub/npm: the last 6 chars are base62(CRC32) of the 30 before them.
    Checksum,
    /// Minimum Shannon entropy (bits per byte) of the reported span.
    Entropy(f64),
    /// At least two of upper/lower/digit, and minimum entropy.
    Mixed(f64),
    /// Hex with both digits and letters.
    HexMixed,
    /// A 40-char AWS secret access key.
    AwsSecret,
    /// An AWS access key id followed within 200 bytes by its secret key (reports the key).
    AwsPair,
    /// Base64 of exactly 64 bytes.
    AzureKey,
    /// Key block: groups `first`, `first+1`, `first+2` are BEGIN label, body, END label.
    Pem(usize),
    /// JWT header and payload decode to JSON, with `alg`.
    Jwt,
    /// A real password in a connection URI.
    ConnPassword,
    /// `Authorization: Bearer` token.
    Bearer,
    /// `Authorization: Basic` credentials.
    Basic,
    /// `key = value` assignment: group 1 is the rest of the key name, 2–4 the value.
    Generic,
}

/// One built-in rule as written in the table.
struct Def {
    id: &'static str,
    keywords: &'static [&'static str],
    case_insensitive: bool,
    regex: &'static str,
    max_len: usize,
    group: usize,
    back: usize,
    left: Class,
    right: Class,
    check: Check,
    filter: Filter,
    priority: u8,
}

/// A token-shaped rule: literal prefix keywords, alphanumeric boundaries on both sides.
fn tok(
    id: &'static str,
    keywords: &'static [&'static str],
    regex: &'static str,
    max_len: usize,
) -> Def {
    Def {
        id,
        keywords,
        case_insensitive: false,
        regex,
        max_len,
        group: 0,
        back: 0,
        left: Class::Alnum,
        right: Class::Alnum,
        check: Check::None,
        filter: Filter::Token,
        priority: 2,
    }
}

impl Def {
    fn ci(mut self) -> Self {
        self.case_insensitive = true;
        self
    }
    fn group(mut self, g: usize) -> Self {
        self.group = g;
        self
    }
    fn back(mut self, b: usize) -> Self {
        self.back = b;
        self
    }
    fn left(mut self, c: Class) -> Self {
        self.left = c;
        self
    }
    fn right(mut self, c: Class) -> Self {
        self.right = c;
        self
    }
    fn check(mut self, c: Check) -> Self {
        self.check = c;
        self
    }
    fn filter(mut self, f: Filter) -> Self {
        self.filter = f;
        self
    }
    fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }
    /// A rule keyed by context (a variable name, a scheme): no boundary before the keyword.
    fn context(self) -> Self {
        self.ci().left(Class::None)
    }
}

/// Regex fragment shared by assignment-style rules: rest of the key name, optional closing
/// quote (plain or JSON-escaped), an assignment operator, optional opening quote.
macro_rules! assign {
    () => {
        r#"[\w.-]{0,30}?(?:\\?["'])?\s{0,4}(?::=|=>|=|:)\s{0,4}(?:\\?["'])?"#
    };
}

macro_rules! conn {
    ($scheme:literal) => {
        concat!(
            $scheme,
            r#"://([^:@/\s"'<>]*):([^@/\s"'<>]+)@[A-Za-z0-9\[_.-]"#
        )
    };
}

/// The PEM body: base64, headers (`Proc-Type: 4,ENCRYPTED`), and line breaks written as
/// raw newlines, YAML indentation, or JSON/env escapes (`\n`, `\\n`).
macro_rules! pem {
    ($begin:literal, $end:literal) => {
        concat!(
            "-----BEGIN ",
            $begin,
            r#"-----([A-Za-z0-9+/=\s\\:,.()\-]{64,}?)-----END "#,
            $end,
            "-----"
        )
    };
}

/// The value of a generic assignment: double-quoted (plain or JSON-escaped quotes),
/// single-quoted, or bare up to whitespace, a quote or punctuation that ends code values.
macro_rules! generic_value {
    () => {
        r#"(?:\\?"([^"\\\r\n]{8,})\\?"|'([^'\r\n]{8,})'|([^\s"'`,;<>(){}\[\]\\]{8,}))"#
    };
}

fn builtin_defs() -> Vec<Def> {
    use Check as C;
    use Class as K;
    let gitlab = |id, kw: &'static [&'static str], re| {
        tok(id, kw, re, 320)
            .left(K::B64Url)
            .right(K::B64Url)
            .check(C::Entropy(3.0))
    };
    let aws_id = r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}";
    const AWS_KW: &[&str] = &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"];
    vec![
        // Cloud
        tok("aws-access-key-id", AWS_KW, aws_id, 20),
        tok("aws-secret-access-key", &["aws_secret", "secret_access_key", "secretaccesskey", "secret-access-key"],
            concat!(r"(?i:aws_secret|secret_access_key|secretaccesskey|secret-access-key)", assign!(), r"([A-Za-z0-9/+]{40})"), 120)
            .context().group(1).right(K::B64Eq).check(C::AwsSecret),
        tok("aws-secret-access-key", AWS_KW, aws_id, 260).check(C::AwsPair),
        tok("google-api-key", &["AIza"], r"AIza[0-9A-Za-z_-]{35}", 39).left(K::B64Url).right(K::B64Url),
        tok("google-oauth-client-secret", &["GOCSPX-"], r"GOCSPX-[0-9A-Za-z_-]{28}", 35).left(K::B64Url).right(K::B64Url),
        tok("google-oauth-access-token", &["ya29."], r"ya29\.[0-9A-Za-z_-]{30,}", 2048).right(K::B64Url).check(C::Entropy(3.5)),
        tok("gcp-service-account-key", &["private_key"],
            concat!(r#"private_key\\?"\s*:\s*\\?"("#, pem!("()PRIVATE KEY", "()PRIVATE KEY"), ")"), BLOCK_MAX)
            .left(K::None).right(K::None).group(1).check(C::Pem(2)).filter(Filter::Pem).priority(3),
        tok("azure-storage-account-key", &["AccountKey="], r"(?i:AccountKey)=([A-Za-z0-9+/]{86}==)", 100)
            .context().group(1).right(K::B64Eq).check(C::AzureKey),
        tok("azure-sas-token", &["sv=20"], r#"sv=20\d\d-\d\d-\d\d&[^\s"'<>]{0,400}?sig=([A-Za-z0-9%+/]{40,}=*)"#, 600)
            .group(1).right(K::None).check(C::Entropy(3.5)),
        tok("azure-shared-access-key", &["SharedAccessKey="], r"(?i:SharedAccessKey)=([A-Za-z0-9+/]{42,43}=)", 70)
            .context().group(1).right(K::B64Eq).check(C::Entropy(3.5)),
        tok("azure-ad-client-secret", &["Q~"], r"[0-9A-Za-z_~.]{3}\dQ~[0-9A-Za-z_~.-]{31,34}", 40)
            .back(4).left(K::AdSecret).right(K::AdSecret).check(C::Mixed(3.5)),
        // Source hosting
        tok("github-pat", &["ghp_"], r"ghp_[0-9A-Za-z]{36}", 40).check(C::Checksum),
        tok("github-oauth-token", &["gho_"], r"gho_[0-9A-Za-z]{36}", 40).check(C::Checksum),
        tok("github-user-token", &["ghu_"], r"ghu_[0-9A-Za-z]{36}", 40).check(C::Checksum),
        tok("github-app-token", &["ghs_"], r"ghs_[0-9A-Za-z]{36}", 40).check(C::Checksum),
        tok("github-refresh-token", &["ghr_"], r"ghr_[0-9A-Za-z]{36}", 40).check(C::Checksum),
        tok("github-fine-grained-pat", &["github_pat_"], r"github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59}", 93)
            .check(C::Mixed(4.0)),
        gitlab("gitlab-pat", &["glpat-"], r"glpat-(?:[0-9A-Za-z_-]{27,}\.[0-9a-z]{9}|[0-9A-Za-z_-]{20})"),
        gitlab("gitlab-deploy-token", &["gldt-"], r"gldt-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{9})?"),
        gitlab("gitlab-runner-token", &["glrt-"], r"glrt-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{9})?"),
        gitlab("gitlab-ci-build-token", &["glcbt-"], r"glcbt-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{9})?"),
        gitlab("gitlab-pipeline-trigger-token", &["glptt-"], r"glptt-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{9})?"),
        gitlab("gitlab-feed-token", &["glft-"], r"glft-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{9})?"),
        gitlab("gitlab-incoming-mail-token", &["glimt-"], r"glimt-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{9})?"),
        gitlab("gitlab-agent-token", &["glagent-"], r"glagent-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{9})?"),
        gitlab("gitlab-oauth-secret", &["gloas-"], r"gloas-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{9})?"),
        // Chat and SaaS
        tok("slack-bot-token", &["xoxb-"], r"xoxb-\d{10,13}-\d{10,13}-[0-9A-Za-z]{24,34}", 70),
        tok("slack-user-token", &["xoxp-", "xoxe-"], r"xox[pe]-\d{10,13}-\d{10,13}-\d{10,13}-[0-9A-Za-z]{28,34}", 100),
        tok("slack-app-token", &["xapp-"], r"xapp-\d-[A-Z0-9]{9,12}-\d{10,13}-[0-9a-z]{64}", 100),
        tok("slack-webhook-url", &["hooks.slack.com/"],
            r"(?i:hooks\.slack\.com)/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,120}", 160)
            .context().right(K::B64).check(C::Mixed(3.5)),
        tok("stripe-secret-key", &["sk_live_", "sk_prod_"], r"sk_(?:live|prod)_[0-9A-Za-z]{10,99}", 110)
            .check(C::Mixed(3.0)),
        tok("stripe-restricted-key", &["rk_live_", "rk_prod_"], r"rk_(?:live|prod)_[0-9A-Za-z]{10,99}", 110)
            .check(C::Mixed(3.0)),
        tok("stripe-webhook-secret", &["whsec_"], r"whsec_[0-9A-Za-z]{32,64}", 70).check(C::Mixed(3.5)),
        tok("twilio-api-key", &["SK"], r"SK[0-9a-f]{32}", 34).check(C::HexMixed),
        tok("twilio-auth-token", &["twilio"],
            concat!(r"(?i:twilio)[\w.-]{0,30}?(?i:token|secret)", assign!(), r"([0-9a-f]{32})"), 140)
            .context().group(1).check(C::HexMixed),
        tok("sendgrid-api-key", &["SG."], r"SG\.[0-9A-Za-z_-]{22}\.[0-9A-Za-z_-]{43}", 69)
            .left(K::B64Url).right(K::B64Url).check(C::Entropy(4.0)),
        tok("mailgun-api-key", &["key-"], r"key-[0-9a-f]{32}", 36).check(C::HexMixed),
        tok("mailgun-api-key", &["mailgun"],
            concat!(r"(?i:mailgun)", assign!(), r"([0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8})"), 140)
            .context().group(1).check(C::HexMixed),
        tok("shopify-access-token", &["shpat_"], r"shpat_[0-9a-fA-F]{32}", 38).check(C::HexMixed),
        tok("shopify-custom-app-token", &["shpca_"], r"shpca_[0-9a-fA-F]{32}", 38).check(C::HexMixed),
        tok("shopify-private-app-token", &["shppa_"], r"shppa_[0-9a-fA-F]{32}", 38).check(C::HexMixed),
        tok("shopify-shared-secret", &["shpss_"], r"shpss_[0-9a-fA-F]{32}", 38).check(C::HexMixed),
        tok("atlassian-api-token", &["ATATT3", "ATCTT3"], r"AT[AC]TT3[0-9A-Za-z_=-]{150,}", 320)
            .right(K::B64Url).check(C::Entropy(4.0)),
        tok("datadog-api-key", &["dd_api_key", "datadog_api_key", "dd-api-key", "datadog-api-key"],
            concat!(r"(?i:dd_api_key|datadog_api_key|dd-api-key|datadog-api-key)", assign!(), r"([0-9a-f]{32})"), 100)
            .context().group(1).check(C::HexMixed),
        tok("datadog-app-key",
            &["dd_app_key", "datadog_app_key", "dd-application-key", "dd_application_key", "datadog_application_key"],
            concat!(r"(?i:dd_app_key|datadog_app_key|dd-application-key|dd_application_key|datadog_application_key)",
                assign!(), r"([0-9a-f]{40})"), 110)
            .context().group(1).check(C::HexMixed),
        // Package registries
        tok("npm-access-token", &["npm_"], r"npm_[0-9A-Za-z]{36}", 40).check(C::Checksum),
        tok("npm-legacy-auth-token", &["_authToken"], r#"(?i:_authToken)[ \t]{0,2}=[ \t]{0,2}["']?([0-9A-Za-z_.+/=-]{16,})"#, 300)
            .context().group(1).right(K::None).check(C::Entropy(3.0)),
        tok("pypi-token", &["pypi-AgEIcHlwaS5vcmc", "pypi-AgENdGVzdC5weXBpLm9yZw"],
            r"pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[0-9A-Za-z_-]{50,}", 1200)
            .left(K::B64Url).right(K::B64Url).check(C::Entropy(4.0)),
        tok("crates-io-token", &["cio"], r"cio[0-9A-Za-z]{32}", 35).check(C::Mixed(3.8)),
        tok("dockerhub-pat", &["dckr_pat_", "dckr_oat_"], r"dckr_(?:pat|oat)_[0-9A-Za-z_-]{27,32}", 41)
            .right(K::B64Url).check(C::Mixed(3.5)),
        // AI providers
        tok("openai-api-key", &["sk-proj-", "sk-svcacct-", "sk-admin-"],
            r"sk-(?:proj|svcacct|admin)-[0-9A-Za-z_-]{80,}", 300)
            .right(K::B64Url).check(C::Entropy(4.0)),
        tok("openai-legacy-api-key", &["sk-"], r"sk-[0-9A-Za-z]{20}T3BlbkFJ[0-9A-Za-z]{20}", 51),
        tok("anthropic-api-key", &["sk-ant-api03-"], r"sk-ant-api03-[0-9A-Za-z_-]{93}AA", 108)
            .right(K::B64Url).check(C::Entropy(4.0)),
        tok("anthropic-admin-key", &["sk-ant-admin01-"], r"sk-ant-admin01-[0-9A-Za-z_-]{93}AA", 110)
            .right(K::B64Url).check(C::Entropy(4.0)),
        tok("huggingface-token", &["hf_"], r"hf_[A-Za-z]{34}", 37).check(C::Mixed(3.8)),
        tok("huggingface-org-token", &["api_org_"], r"api_org_[A-Za-z]{34}", 42).check(C::Mixed(3.8)),
        tok("groq-api-key", &["gsk_"], r"gsk_[0-9A-Za-z]{52}", 56).check(C::Mixed(4.0)),
        // Private keys
        tok("private-key", &["-----BEGIN "],
            pem!("((?:RSA |EC |DSA |ENCRYPTED )?)PRIVATE KEY", "((?:RSA |EC |DSA |ENCRYPTED )?)PRIVATE KEY"), BLOCK_MAX)
            .left(K::None).right(K::None).check(C::Pem(1)).filter(Filter::Pem),
        tok("openssh-private-key", &["-----BEGIN "], pem!("(OPENSSH )PRIVATE KEY", "(OPENSSH )PRIVATE KEY"), BLOCK_MAX)
            .left(K::None).right(K::None).check(C::Pem(1)).filter(Filter::Pem),
        tok("pgp-private-key", &["-----BEGIN "], pem!("(PGP )PRIVATE KEY BLOCK", "(PGP )PRIVATE KEY BLOCK"), BLOCK_MAX)
            .left(K::None).right(K::None).check(C::Pem(1)).filter(Filter::Pem),
        tok("age-secret-key", &["AGE-SECRET-KEY-1"], r"AGE-SECRET-KEY-1[0-9A-Z]{58}", 74).check(C::Entropy(4.0)),
        // Tokens by structure
        tok("jwt", &["eyJ"], r"eyJ[0-9A-Za-z_-]{8,}={0,2}\.eyJ[0-9A-Za-z_-]{8,}={0,2}\.(?:[0-9A-Za-z_-]+={0,2})?", BLOCK_MAX)
            .left(K::B64).right(K::None).check(C::Jwt),
        tok("postgres-password", &["postgres"], conn!(r"(?i:postgres(?:ql)?)(?:\+[a-z0-9]+)?"), 512)
            .context().group(2).right(K::None).check(C::ConnPassword).filter(Filter::Free),
        tok("mysql-password", &["mysql"], conn!(r"(?i:mysql)(?:x|\+[a-z0-9]+)?"), 512)
            .context().group(2).right(K::None).check(C::ConnPassword).filter(Filter::Free),
        tok("mongodb-password", &["mongodb"], conn!(r"(?i:mongodb)(?:\+srv)?"), 512)
            .context().group(2).right(K::None).check(C::ConnPassword).filter(Filter::Free),
        tok("redis-password", &["redis"], conn!(r"(?i:rediss?)"), 512)
            .context().group(2).right(K::None).check(C::ConnPassword).filter(Filter::Free),
        tok("amqp-password", &["amqp"], conn!(r"(?i:amqps?)"), 512)
            .context().group(2).right(K::None).check(C::ConnPassword).filter(Filter::Free),
        tok("http-bearer-token", &["authorization"],
            r#"(?i:authorization)\\?["']?\s{0,4}[:=]\s{0,4}\\?["']?(?i:bearer|token)\s+([0-9A-Za-z._~+/-]{16,}=*)"#, 2200)
            .context().group(1).right(K::None).check(C::Bearer).filter(Filter::Free).priority(super::GENERIC_PRIORITY),
        tok("http-basic-auth", &["authorization"],
            r#"(?i:authorization)\\?["']?\s{0,4}[:=]\s{0,4}\\?["']?(?i:basic)\s+([A-Za-z0-9+/]{8,}={0,2})"#, 600)
            .context().group(1).right(K::B64Eq).check(C::Basic).filter(Filter::Free).priority(super::GENERIC_PRIORITY),
        Def {
            regex: GENERIC_PASSWORD,
            ..tok("generic-password", &["password", "passwd", "passphrase", "pwd"], "", 320)
                .context().right(K::None).check(C::Generic).filter(Filter::Free).priority(super::GENERIC_PRIORITY)
        },
        Def {
            regex: GENERIC_SECRET,
            ..tok("generic-secret",
                &["secret", "token", "api_key", "apikey", "api-key", "access_key", "accesskey", "auth", "credential"],
                "", 320)
                .context().right(K::None).check(C::Generic).filter(Filter::Free).priority(super::GENERIC_PRIORITY)
        },
        // More vendors with distinctive prefixes
        tok("digitalocean-token", &["dop_v1_", "doo_v1_", "dor_v1_"], r"do[opr]_v1_[0-9a-f]{64}", 71).check(C::HexMixed),
        tok("hashicorp-vault-token", &["hvs.", "hvb."], r"hv[sb]\.[0-9A-Za-z_-]{24,}", 400)
            .right(K::B64Url).check(C::Mixed(3.5)),
        tok("sendinblue-api-key", &["xkeysib-"], r"xkeysib-[0-9a-f]{64}-[0-9A-Za-z]{16}", 89).check(C::Entropy(3.5)),
        tok("linear-api-key", &["lin_api_"], r"lin_api_[0-9A-Za-z]{40}", 48).check(C::Mixed(4.0)),
        tok("postman-api-key", &["PMAK-"], r"PMAK-[0-9a-f]{24}-[0-9a-f]{34}", 64).check(C::HexMixed),
        tok("databricks-token", &["dapi"], r"dapi[0-9a-f]{32}(?:-\d)?", 38).check(C::HexMixed),
        tok("grafana-service-account-token", &["glsa_"], r"glsa_[0-9A-Za-z]{32}_[0-9a-f]{8}", 46).check(C::Mixed(3.8)),
        tok("doppler-token", &["dp.pt.", "dp.st.", "dp.ct.", "dp.sa."], r"dp\.(?:pt|st|ct|sa)\.[0-9A-Za-z]{40,44}", 50)
            .check(C::Mixed(4.0)),
    ]
}

const GENERIC_PASSWORD: &str = concat!(
    r#"(?i:password|passwd|passphrase|pwd)([\w.-]{0,24}?)(?:\\?["'])?\s{0,4}(?::=|=>|=|:)\s{0,4}"#,
    generic_value!()
);

const GENERIC_SECRET: &str = concat!(
    r#"(?i:secret|token|api_key|apikey|api-key|access_key|accesskey|auth|credential)([\w.-]{0,24}?)"#,
    r#"(?:\\?["'])?\s{0,4}(?::=|=>|=|:)\s{0,4}"#,
    generic_value!()
);

/// Key-name endings that describe a secret (its hash, file, length, …) rather than hold it.
const METADATA_TAILS: &[&str] = &[
    "hash", "len", "min", "max", "file", "path", "url", "uri", "endpoint", "env", "name", "type",
    "count", "prompt", "field", "label", "policy", "regex", "pattern", "header", "expir", "ttl",
    "timeout", "size", "format", "mode", "reset", "required", "enabled", "rotat", "provider",
    "store", "ref", "limit", "usage", "config",
];

/// A compiled rule, built-in or custom.
pub(crate) struct Rule {
    pub(crate) id: Arc<str>,
    pub(crate) keywords: Vec<(Vec<u8>, bool)>,
    re: Regex,
    group: usize,
    pub(crate) back: usize,
    pub(crate) max_len: usize,
    left: Class,
    right: Class,
    check: Check,
    filter: Filter,
    pub(crate) priority: u8,
    /// Custom rules search around the keyword instead of starting at it.
    anchored: bool,
    entropy: Option<f64>,
}

impl Rule {
    /// How far past the start of its keyword this rule may look.
    pub(crate) fn forward(&self) -> usize {
        if self.anchored {
            self.max_len.saturating_sub(self.back) + 1
        } else {
            let kw = self
                .keywords
                .iter()
                .map(|(k, _)| k.len())
                .max()
                .unwrap_or(0);
            kw + CUSTOM_REACH
        }
    }

    /// Calls `emit(start, end)` for each span (in `hay` coordinates) this rule reports for
    /// the keyword found at `ks`. The caller guarantees `hay` holds `forward()` bytes past
    /// `ks` unless the data ends sooner, so a short slice means the data ended.
    pub(crate) fn eval(
        &self,
        hay: &[u8],
        ks: usize,
        kw_len: usize,
        emit: &mut dyn FnMut(usize, usize),
    ) {
        if !self.anchored {
            self.eval_custom(hay, ks, kw_len, emit);
            return;
        }
        if ks < self.back {
            return;
        }
        let a = ks - self.back;
        if a > 0 && self.left.contains(hay[a - 1]) {
            return;
        }
        let lim = (a + self.max_len + 1).min(hay.len());
        let slice = &hay[a..lim];
        let Some(caps) = self.re.captures(slice) else {
            return;
        };
        let m = caps.get(0).expect("group 0 always participates");
        if m.end() > self.max_len {
            return;
        }
        if m.end() < slice.len() && self.right.contains(slice[m.end()]) {
            return;
        }
        let cut = slice.len() <= self.max_len;
        let Some((s, e)) = self.check(slice, &caps, cut) else {
            return;
        };
        if s >= e || checks::is_placeholder(&slice[s..e], self.filter) {
            return;
        }
        emit(a + s, a + e);
    }

    fn eval_custom(
        &self,
        hay: &[u8],
        ks: usize,
        kw_len: usize,
        emit: &mut dyn FnMut(usize, usize),
    ) {
        let lo = ks.saturating_sub(CUSTOM_REACH);
        let hi = (ks + kw_len + CUSTOM_REACH).min(hay.len());
        let slice = &hay[lo..hi];
        for caps in self.re.captures_iter(slice) {
            let Some(m) = caps.name("secret").or_else(|| caps.get(0)) else {
                continue;
            };
            let v = &slice[m.start()..m.end()];
            if v.is_empty() || checks::is_placeholder(v, Filter::Token) {
                continue;
            }
            if self.entropy.is_some_and(|min| checks::entropy(v) < min) {
                continue;
            }
            emit(lo + m.start(), lo + m.end());
        }
    }

    fn check(&self, slice: &[u8], caps: &Captures, cut: bool) -> Option<(usize, usize)> {
        let g = caps.get(self.group)?;
        let (s, e) = (g.start(), g.end());
        let v = &slice[s..e];
        let ok = match self.check {
            Check::None => true,
            Check::Checksum => v.len() >= 36 && checks::checksum_ok(&v[v.len() - 36..]),
            Check::Entropy(min) => checks::entropy(v) >= min,
            Check::Mixed(min) => {
                let alnum: Vec<u8> = v
                    .iter()
                    .copied()
                    .filter(u8::is_ascii_alphanumeric)
                    .collect();
                checks::char_classes(&alnum) >= 2 && checks::entropy(v) >= min
            }
            Check::HexMixed => checks::hex_mixed_ok(v),
            Check::AwsSecret => checks::aws_secret_ok(v),
            Check::AwsPair => return checks::find_aws_secret(slice, e, slice.len(), cut),
            Check::AzureKey => checks::azure_key_ok(v),
            Check::Pem(first) => {
                let get = |i: usize| caps.get(i).map_or(&b""[..], |m| m.as_bytes());
                checks::pem_ok(get(first), get(first + 2), get(first + 1))
            }
            Check::Jwt => checks::jwt_ok(v),
            Check::ConnPassword => checks::conn_password_ok(v),
            Check::Bearer => checks::bearer_ok(v),
            Check::Basic => checks::basic_ok(v),
            Check::Generic => return generic(slice, caps),
        };
        ok.then_some((s, e))
    }
}

/// A `key = value` assignment whose key really is a secret's name and whose value looks
/// like a secret; reports the value.
fn generic(slice: &[u8], caps: &Captures) -> Option<(usize, usize)> {
    let tail = caps.get(1)?;
    let t = tail.as_bytes();
    if let Some(&first) = t.first() {
        // `tokenizer`, `passwords`: the keyword is part of another word. `apiToken`,
        // `SECRET_KEY`, `secret.value` continue the name.
        let kw_last = slice[tail.start() - 1];
        let continues = matches!(first, b'_' | b'.' | b'-')
            || (kw_last.is_ascii_lowercase() && first.is_ascii_uppercase());
        if !continues {
            return None;
        }
        let lower = t.to_ascii_lowercase();
        if METADATA_TAILS
            .iter()
            .any(|m| lower.windows(m.len()).any(|w| w == m.as_bytes()))
        {
            return None;
        }
    }
    let v = caps
        .get(2)
        .or_else(|| caps.get(3))
        .or_else(|| caps.get(4))?;
    checks::generic_value_ok(v.as_bytes()).then_some((v.start(), v.end()))
}

fn compile(src: &str, id: &str) -> Result<Regex, ScanError> {
    RegexBuilder::new(src)
        .size_limit(1 << 24)
        .build()
        .map_err(|e| ScanError(format!("scanning rule `{id}`: invalid regex: {e}")))
}

/// The built-in rules, compiled.
pub(crate) fn builtin() -> Vec<Rule> {
    builtin_defs()
        .into_iter()
        .map(|d| {
            // `(?-u)`: rules describe ASCII token formats; Unicode classes would only slow
            // the match and widen `\w`/`\s` beyond what the formats allow.
            let re = compile(&format!("(?-u)^(?:{})", d.regex), d.id)
                .unwrap_or_else(|e| panic!("built-in rule does not compile: {e}"));
            Rule {
                id: Arc::from(d.id),
                keywords: d
                    .keywords
                    .iter()
                    .map(|k| (k.as_bytes().to_vec(), !d.case_insensitive))
                    .collect(),
                re,
                group: d.group,
                back: d.back,
                max_len: d.max_len,
                left: d.left,
                right: d.right,
                check: d.check,
                filter: d.filter,
                priority: d.priority,
                anchored: true,
                entropy: None,
            }
        })
        .collect()
}

/// The ids of the built-in rules, in table order, each once.
pub(crate) fn builtin_ids() -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = Vec::new();
    for d in builtin_defs() {
        if !ids.contains(&d.id) {
            ids.push(d.id);
        }
    }
    ids
}

/// Validates and compiles a custom rule; errors name the rule.
pub(crate) fn custom(rule: &CustomRule, taken: &[&str]) -> Result<Rule, ScanError> {
    let id = rule.id.trim();
    let err = |what: String| ScanError(format!("scanning rule `{id}`: {what}"));
    if id.is_empty() {
        return Err(ScanError("scanning rule with an empty id".into()));
    }
    if taken.contains(&id) {
        return Err(err("id is already used by another rule".into()));
    }
    if rule.keywords.is_empty() {
        return Err(err("needs at least one keyword for the prefilter".into()));
    }
    if rule.keywords.iter().any(|k| k.is_empty()) {
        return Err(err("has an empty keyword".into()));
    }
    if let Some(e) = rule.entropy {
        if !(0.0..=8.0).contains(&e) {
            return Err(err(format!("entropy {e} is outside 0..=8 bits per byte")));
        }
    }
    let re = compile(&rule.regex, id)?;
    if re.is_match(b"") {
        return Err(err("regex matches the empty string".into()));
    }
    Ok(Rule {
        id: Arc::from(id),
        keywords: rule
            .keywords
            .iter()
            .map(|k| (k.as_bytes().to_vec(), false))
            .collect(),
        re,
        group: 0,
        back: CUSTOM_REACH,
        max_len: 2 * CUSTOM_REACH,
        left: Class::None,
        right: Class::None,
        check: Check::None,
        filter: Filter::Token,
        priority: 2,
        anchored: false,
        entropy: rule.entropy,
    })
}
