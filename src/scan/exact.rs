//! Exact matching of the values cordon holds, in the encodings they travel in.
//!
//! Base64 depends on alignment: a value embedded at byte offset `o` of a larger encoded
//! blob is encoded differently for each `o mod 3`, and its first and last characters mix
//! in bits of the neighbouring bytes. For each of the three alignments we keep only the
//! characters computed from the value's bits alone (the "stable middle"), so the value is
//! found wherever it sits in a base64 stream. The standalone encodings (with and without
//! `=` padding) are added too, so a value encoded on its own is reported and redacted
//! whole. The same is done for the base64url alphabet.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::ScanError;

/// Values shorter than this are not matched: short strings occur by chance in ordinary text
/// and their encodings (a few base64 chars) even more so.
pub(crate) const MIN_KNOWN_LEN: usize = 8;

/// Above this many pattern bytes the automaton is left to aho-corasick's choice: a full
/// DFA's memory grows with states × byte classes.
const DFA_MAX_PATTERN_BYTES: usize = 64 * 1024;

/// The exact-value automaton.
pub(crate) struct Exact {
    pub(crate) ac: AhoCorasick,
    /// For each pattern, the index of the known value it encodes.
    pub(crate) owner: Vec<u32>,
    pub(crate) max_len: usize,
}

/// Every form of `v` the exact layer looks for (deduplicated, raw first).
pub(crate) fn encodings(v: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![v.to_vec()];
    let mut add = |e: Vec<u8>| {
        if e.len() >= MIN_KNOWN_LEN && !out.contains(&e) {
            out.push(e);
        }
    };
    add(STANDARD.encode(v).into_bytes());
    add(STANDARD_NO_PAD.encode(v).into_bytes());
    add(URL_SAFE.encode(v).into_bytes());
    add(URL_SAFE_NO_PAD.encode(v).into_bytes());
    for shift in 0..3 {
        add(stable_middle(v, shift, false));
        add(stable_middle(v, shift, true));
    }
    add(hex(v, b"0123456789abcdef"));
    add(hex(v, b"0123456789ABCDEF"));
    add(percent(v, false, b"0123456789ABCDEF"));
    add(percent(v, false, b"0123456789abcdef"));
    add(percent(v, true, b"0123456789ABCDEF"));
    add(percent(v, true, b"0123456789abcdef"));
    if v.contains(&b' ') {
        // Form encoding writes spaces as `+`.
        let form =
            String::from_utf8_lossy(&percent(v, false, b"0123456789ABCDEF")).replace("%20", "+");
        add(form.into_bytes());
    }
    add(json_escape(v, false));
    add(json_escape(v, true));
    out
}

/// The base64 characters of `v` that do not depend on its neighbours when `v` starts
/// `shift` bytes into a 3-byte group.
fn stable_middle(v: &[u8], shift: usize, url: bool) -> Vec<u8> {
    let mut padded = vec![0u8; shift];
    padded.extend_from_slice(v);
    let enc = if url {
        URL_SAFE_NO_PAD.encode(&padded)
    } else {
        STANDARD_NO_PAD.encode(&padded)
    };
    // Char i carries bits [6i, 6i+6); the value owns bits [8*shift, 8*(shift+len)).
    let first = (8 * shift).div_ceil(6);
    let last = 8 * (shift + v.len()) / 6;
    if first >= last {
        return Vec::new();
    }
    enc.as_bytes()[first..last].to_vec()
}

fn hex(v: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    v.iter()
        .flat_map(|&b| [digits[(b >> 4) as usize], digits[(b & 15) as usize]])
        .collect()
}

/// Percent-encoding: either every byte, or all but RFC 3986 unreserved characters.
fn percent(v: &[u8], every: bool, digits: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 3);
    for &b in v {
        if !every && (b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', digits[(b >> 4) as usize], digits[(b & 15) as usize]]);
        }
    }
    out
}

/// The value as it appears inside a JSON string (optionally with `/` escaped, as some
/// encoders do).
fn json_escape(v: &[u8], slash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 8);
    for &b in v {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' if slash => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

/// Builds the automaton over every encoding of every known value of at least
/// [`MIN_KNOWN_LEN`] bytes; `None` when there is nothing to match.
pub(crate) fn build(values: &[&[u8]]) -> Result<Option<Exact>, ScanError> {
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    let mut owner = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, v) in values.iter().enumerate() {
        if v.len() < MIN_KNOWN_LEN {
            continue;
        }
        for e in encodings(v) {
            if seen.insert(e.clone()) {
                patterns.push(e);
                owner.push(i as u32);
            }
        }
    }
    if patterns.is_empty() {
        return Ok(None);
    }
    let total: usize = patterns.iter().map(Vec::len).sum();
    let kind = (total <= DFA_MAX_PATTERN_BYTES).then_some(AhoCorasickKind::DFA);
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .kind(kind)
        .build(&patterns)
        .map_err(|e| ScanError(format!("known values: cannot build matcher: {e}")))?;
    let max_len = patterns.iter().map(Vec::len).max().unwrap_or(0);
    Ok(Some(Exact { ac, owner, max_len }))
}
