//! What a rule's regex cannot say on its own: checksums, decoded structure, entropy, and
//! the filters that keep placeholders, masks and documented example values out of the
//! findings. Everything here runs only on a regex match, never per byte.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Bytes that may not touch a match on one side: a token continuing there means the text
/// is something longer than this token (regex has no lookaround, so this is done by hand).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Anything may follow or precede.
    None,
    /// `[0-9A-Za-z]`.
    Alnum,
    /// `[0-9A-Za-z_-]`.
    B64Url,
    /// Either base64 alphabet: `[0-9A-Za-z+/_-]`.
    B64,
    /// Standard base64 with padding: `[0-9A-Za-z+/=]`.
    B64Eq,
    /// Azure AD client secrets: `[0-9A-Za-z_~.-]`.
    AdSecret,
}

impl Class {
    /// Whether `b` belongs to the class.
    pub(crate) fn contains(self, b: u8) -> bool {
        match self {
            Class::None => false,
            Class::Alnum => b.is_ascii_alphanumeric(),
            Class::B64Url => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
            Class::B64 => b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-'),
            Class::B64Eq => b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
            Class::AdSecret => b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'.' | b'-'),
        }
    }
}

/// How strictly a matched value is screened for placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Fixed-format tokens: only masks, `EXAMPLE` and cordon's placeholders can occur.
    Token,
    /// Free-form values (passwords, generic assignments): every placeholder shape.
    Free,
    /// Key blocks: base64 bodies legitimately hold long runs (`AAAAAAAA`), so only
    /// elisions and template markers count.
    Pem,
}

/// CRC-32 (IEEE 802.3, as zlib computes it); GitHub and npm tokens end in its base62 form.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// `n` in base62 (`0-9A-Za-z`), zero-padded to six digits: the checksum suffix format.
pub(crate) fn base62_6(mut n: u32) -> [u8; 6] {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// Whether a 36-char token body (after the prefix) ends in the checksum of its first 30.
pub(crate) fn checksum_ok(body: &[u8]) -> bool {
    body.len() == 36 && base62_6(crc32(&body[..30])) == body[30..]
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        counts[b as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// How many of lower case, upper case, digits and other bytes occur in `v`.
pub(crate) fn char_classes(v: &[u8]) -> usize {
    let (mut lo, mut up, mut dg, mut ot) = (false, false, false, false);
    for &b in v {
        match b {
            b'a'..=b'z' => lo = true,
            b'A'..=b'Z' => up = true,
            b'0'..=b'9' => dg = true,
            _ => ot = true,
        }
    }
    [lo, up, dg, ot].iter().filter(|&&x| x).count()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn longest_run(v: &[u8]) -> usize {
    let (mut best, mut cur, mut prev) = (0, 0, None);
    for &b in v {
        cur = if Some(b) == prev { cur + 1 } else { 1 };
        prev = Some(b);
        best = best.max(cur);
    }
    best
}

/// Values that stand for a secret without being one: template references, masks, elided
/// examples and cordon's own placeholders.
pub(crate) fn is_placeholder(v: &[u8], filter: Filter) -> bool {
    let common = contains(v, b"CORDON_PLACEHOLDER")
        || contains(v, b"...")
        || contains(v, "\u{2026}".as_bytes())
        || contains(v, b"****")
        || contains(v, b"${")
        || contains(v, b"{{");
    if common {
        return true;
    }
    match filter {
        Filter::Pem => false,
        Filter::Token => {
            contains(v, b"EXAMPLE") || contains_ci(v, b"xxxxxx") || longest_run(v) >= 8
        }
        Filter::Free => {
            const MARKERS: &[&[u8]] = &[
                b"}}",
                b"%s",
                b"%d",
                b"%(",
                b"%v",
                b"xxxx",
                b"example",
                b"process.env",
                b"os.environ",
                b"getenv",
                b"env(",
                b"env[",
                b"secrets.",
                b"changeme",
                b"change_me",
                b"placeholder",
                b"redacted",
                b"dummy",
                b"%7b",
                b"%3c",
            ];
            v.first() == Some(&b'$')
                || v.first() == Some(&b'<')
                || v.last() == Some(&b'>')
                || (v.first() == Some(&b'[') && v.last() == Some(&b']'))
                || v.len() >= 4 && v[..4].eq_ignore_ascii_case(b"your")
                || MARKERS.iter().any(|m| contains_ci(v, m))
                || longest_run(v) >= 6
                || is_trivial(v)
        }
    }
}

/// Words people write where a password goes in documentation and defaults.
fn is_trivial(v: &[u8]) -> bool {
    const WORDS: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"pass",
        b"pwd",
        b"secret",
        b"token",
        b"null",
        b"none",
        b"undefined",
        b"true",
        b"false",
        b"admin",
        b"root",
        b"test",
        b"required",
        b"optional",
        b"string",
        b"masked",
        b"hidden",
    ];
    WORDS.iter().any(|w| v.eq_ignore_ascii_case(w))
}

/// `8-4-4-4-12` hex: identifiers, not secrets, where a rule does not expect one.
pub(crate) fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Hex of a common digest length (MD5, SHA-1, SHA-256, SHA-384, SHA-512).
pub(crate) fn is_hex_hash(v: &[u8]) -> bool {
    matches!(v.len(), 32 | 40 | 64 | 96 | 128) && v.iter().all(u8::is_ascii_hexdigit)
}

/// Names and expressions rather than values: `db.password`, `get_token`, `my-secret-name`.
fn is_identifier(v: &[u8]) -> bool {
    let plain = v
        .iter()
        .all(|&b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'.' | b'-'));
    if plain && (v.len() < 20 || v.iter().any(|&b| matches!(b, b'_' | b'.' | b'-'))) {
        return true;
    }
    // A dotted path of identifiers (`config.v2.api_key`) names a value held elsewhere.
    let mut parts = v.split(|&b| b == b'.');
    let dotted = v.contains(&b'.')
        && entropy(v) < 3.8
        && parts.all(|p| {
            p.first()
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
                && p.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
        });
    dotted
}

/// The value of a `key = value` assignment looks like a secret: not a placeholder, name,
/// identifier, URL, digest or UUID, and random enough for its length.
pub(crate) fn generic_value_ok(v: &[u8]) -> bool {
    if v.len() < 8 || v.len() > 200 {
        return false;
    }
    if is_placeholder(v, Filter::Free) || is_identifier(v) || is_uuid(v) || is_hex_hash(v) {
        return false;
    }
    // Checksummed formats are judged by their own rule: a wrong checksum means the value
    // is not such a token, and the assignment alone must not resurrect it.
    const CHECKSUMMED: &[&[u8]] = &[b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"npm_"];
    if v.len() == 40 && CHECKSUMMED.iter().any(|p| v.starts_with(p)) {
        return false;
    }
    const SKIP_PREFIX: &[&[u8]] = &[
        b"sha1-", b"sha256-", b"sha384-", b"sha512-", b"http", b"file:",
    ];
    if SKIP_PREFIX
        .iter()
        .any(|p| v.len() > p.len() && v[..p.len()].eq_ignore_ascii_case(p))
        || contains(v, b"://")
    {
        return false;
    }
    let min = match v.len() {
        0..=11 => 2.5,
        12..=19 => 3.0,
        _ => 3.3,
    };
    char_classes(v) >= 2 && entropy(v) >= min
}

/// An AWS secret access key: 40 base64 chars of high entropy with all three letter/digit
/// classes (which also rules out lower-case hex digests of the same length).
pub(crate) fn aws_secret_ok(v: &[u8]) -> bool {
    v.len() == 40
        && v.iter().any(u8::is_ascii_uppercase)
        && v.iter().any(u8::is_ascii_lowercase)
        && v.iter().any(u8::is_ascii_digit)
        && entropy(v) >= 3.8
        && !is_placeholder(v, Filter::Token)
}

/// The first 40-char run of `[A-Za-z0-9/+]` in `hay[from..]` that reads as an AWS secret
/// key, not touching `limit` (the end of what may be inspected) unless `eof`.
pub(crate) fn find_aws_secret(
    hay: &[u8],
    from: usize,
    limit: usize,
    eof: bool,
) -> Option<(usize, usize)> {
    let in_run = |b: u8| b.is_ascii_alphanumeric() || b == b'/' || b == b'+';
    let mut i = from;
    while i < limit {
        if !in_run(hay[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < limit && in_run(hay[i]) {
            i += 1;
        }
        if i == limit && !eof {
            return None;
        }
        let before_ok = start == 0 || hay[start - 1] != b'=';
        let after_ok = i == hay.len() || hay[i] != b'=';
        if i - start == 40 && before_ok && after_ok && aws_secret_ok(&hay[start..i]) {
            return Some((start, i));
        }
    }
    None
}

fn lenient(alpha: &alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alpha,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// Decodes standard base64, padded or not.
pub(crate) fn b64_decode(v: &[u8]) -> Option<Vec<u8>> {
    lenient(&alphabet::STANDARD).decode(v).ok()
}

/// Decodes base64url, padded or not.
pub(crate) fn b64url_decode(v: &[u8]) -> Option<Vec<u8>> {
    lenient(&alphabet::URL_SAFE).decode(v).ok()
}

/// A JWT whose header decodes to a JSON object naming its `alg`, whose payload decodes to
/// a JSON object, and which is not jwt.io's documentation example.
pub(crate) fn jwt_ok(tok: &[u8]) -> bool {
    let mut parts = tok.splitn(3, |&b| b == b'.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if !s.is_empty() && s.len() < 10 {
        return false;
    }
    let json = |part: &[u8]| -> Option<serde_json::Map<String, serde_json::Value>> {
        let raw = b64url_decode(part)?;
        match serde_json::from_slice::<serde_json::Value>(&raw).ok()? {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        }
    };
    let Some(header) = json(h) else { return false };
    if !header.contains_key("alg") {
        return false;
    }
    let Some(payload) = json(p) else { return false };
    // jwt.io's sample token (every variant of it) is documentation, not a credential.
    let doc = payload.get("sub").and_then(|v| v.as_str()) == Some("1234567890")
        && payload.get("name").and_then(|v| v.as_str()) == Some("John Doe");
    !doc
}

/// A PEM-style block whose BEGIN and END labels agree and whose body carries at least 64
/// base64 characters (a key, not an elided example).
pub(crate) fn pem_ok(begin: &[u8], end: &[u8], body: &[u8]) -> bool {
    let chars = body.iter().filter(|&&b| Class::B64Eq.contains(b)).count();
    begin == end && chars >= 64 && !is_placeholder(body, Filter::Pem)
}

/// A password from a connection URI that is a real value, not a template or a default.
pub(crate) fn conn_password_ok(v: &[u8]) -> bool {
    !v.is_empty()
        && !is_placeholder(v, Filter::Free)
        && !v.iter().all(|&b| b == b'*' || b == b'x' || b == b'X')
}

/// `Authorization: Basic` credentials: `user:password` with a real password.
pub(crate) fn basic_ok(v: &[u8]) -> bool {
    let Some(raw) = b64_decode(v) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&raw) else {
        return false;
    };
    match text.split_once(':') {
        Some((user, pass)) => {
            !user.chars().any(char::is_control)
                && !pass.chars().any(char::is_control)
                && conn_password_ok(pass.as_bytes())
        }
        None => false,
    }
}

/// `Authorization: Bearer` tokens: long and random enough, not a template or a name.
pub(crate) fn bearer_ok(v: &[u8]) -> bool {
    v.len() >= 16
        && !is_placeholder(v, Filter::Free)
        && !is_identifier(v)
        && char_classes(v) >= 2
        && entropy(v) >= 3.3
}

/// Decodes to exactly 64 bytes: an Azure storage account key.
pub(crate) fn azure_key_ok(v: &[u8]) -> bool {
    b64_decode(v).is_some_and(|raw| raw.len() == 64) && entropy(v) >= 4.0
}

/// 32/40 hex chars with both digits and letters (a run of one kind is a counter or filler).
pub(crate) fn hex_mixed_ok(v: &[u8]) -> bool {
    let hex: Vec<u8> = v.iter().copied().filter(u8::is_ascii_hexdigit).collect();
    hex.iter().any(u8::is_ascii_digit)
        && hex.iter().any(u8::is_ascii_alphabetic)
        && entropy(&hex) >= 2.8
        && !is_placeholder(v, Filter::Token)
}
