//! Exact matching of the values cordon holds, in the encodings they travel in.
//!
//! Base64 depends on alignment: a value embedded at byte offset `o` of a larger encoded
//! blob is encoded differently for each `o mod 3`, and its first and last characters mix
//! in bits of the neighbouring bytes. For each of the three alignments we keep only the
//! characters computed from the value's bits alone (the "stable middle"), so the value is
//! found wherever it sits in a base64 stream. The standalone encodings (with and without
//! `=` padding) are added too, so a value encoded on its own is reported and redacted
//! whole. The same is done for the base64url alphabet.

use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::ScanError;

/// Values shorter than this are not matched: short strings occur by chance in ordinary text
/// and their encodings (a few base64 chars) even more so.
pub(crate) const MIN_KNOWN_LEN: usize = 8;

/// Above this many pattern bytes the automaton is left to aho-corasick's choice: a full
/// DFA's memory grows with states × byte classes.
const DFA_MAX_PATTERN_BYTES: usize = 64 * 1024;

/// Length of the sampled grams when the shortest pattern is short.
const SHORT_GRAM: usize = 4;
/// Length of the sampled grams when every pattern is at least [`LONG_GRAM_MIN_LEN`] long:
/// 4-byte grams of hex-encoded values are common in ordinary hex text (hashes, ids), 8-byte
/// ones are not, so the automaton runs far less often.
const LONG_GRAM: usize = 8;
/// The shortest pattern that allows [`LONG_GRAM`] (and still a stride of 9).
const LONG_GRAM_MIN_LEN: usize = 16;

/// Bits in the gram filter: 2^20 bits (128 KiB) keeps it in L2 and its density low for
/// thousands of patterns.
const FILTER_BITS: u32 = 20;

/// The exact-value automaton and the sampling filter in front of it.
///
/// Every pattern is at least `min_len` long, so with `stride = min_len - gram + 1` any
/// occurrence holds a whole gram at one of the sampled positions `from + k·stride`, and
/// the first such position lies fewer than `stride` bytes after the occurrence's start. The
/// filter therefore holds, for each pattern, only its grams at offsets `0..stride`. The
/// scan tests one position in `stride`; on a hit at `p`, an occurrence can only start in
/// `p - stride + 1 ..= p`, and each of those starts is checked with an anchored search,
/// which gives up at the first byte no pattern continues with. That reports exactly what
/// a full automaton pass reports (the longest pattern at each start) while reading a few
/// bytes per hit, however long the longest pattern is.
pub(crate) struct Exact {
    pub(crate) ac: AhoCorasick,
    /// For each pattern, the index of the known value it encodes.
    pub(crate) owner: Vec<u32>,
    pub(crate) max_len: usize,
    stride: usize,
    /// [`SHORT_GRAM`] or [`LONG_GRAM`].
    gram: usize,
    grams: Vec<u64>,
}

/// The filter bit of the gram `g` (4 or 8 bytes).
fn gram_hash(g: &[u8]) -> usize {
    let x = match g.len() {
        LONG_GRAM => u64::from_le_bytes(g.try_into().expect("gram length")),
        _ => u64::from(u32::from_le_bytes(g.try_into().expect("gram length"))),
    };
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FILTER_BITS)) as usize
}

impl Exact {
    fn gram_at(&self, hay: &[u8], p: usize) -> bool {
        let h = gram_hash(&hay[p..p + self.gram]);
        self.grams[h / 64] & (1 << (h % 64)) != 0
    }

    /// Calls `emit(pattern, start, end)` for the longest pattern at every start in
    /// `from..to` where one occurs; `hay` holds `max_len` bytes past `to` unless the data
    /// ends sooner.
    pub(crate) fn find(
        &self,
        hay: &[u8],
        from: usize,
        to: usize,
        emit: &mut dyn FnMut(usize, usize, usize),
    ) {
        // An occurrence starting before `to` has its first sample before `to + stride`.
        let sample_end = (to + self.stride - 1 + self.gram).min(hay.len());
        let mut covered = from;
        let mut p = from;
        while p + self.gram <= sample_end {
            if self.gram_at(hay, p) {
                let lo = covered.max(p + 1 - self.stride.min(p + 1));
                let hi = (p + 1).min(to);
                for start in lo..hi {
                    let input = Input::new(hay)
                        .span(start..(start + self.max_len).min(hay.len()))
                        .anchored(Anchored::Yes);
                    if let Some(m) = self.ac.find(input) {
                        emit(m.pattern().as_usize(), m.start(), m.end());
                    }
                }
                covered = covered.max(hi);
            }
            p += self.stride;
        }
    }
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
        .start_kind(StartKind::Anchored)
        .kind(kind)
        .build(&patterns)
        .map_err(|e| ScanError(format!("known values: cannot build matcher: {e}")))?;
    let max_len = patterns.iter().map(Vec::len).max().unwrap_or(0);
    let min_len = patterns.iter().map(Vec::len).min().unwrap_or(0);
    debug_assert!(min_len >= MIN_KNOWN_LEN && MIN_KNOWN_LEN > SHORT_GRAM);
    let gram = if min_len >= LONG_GRAM_MIN_LEN {
        LONG_GRAM
    } else {
        SHORT_GRAM
    };
    let stride = min_len - gram + 1;
    let mut grams = vec![0u64; (1 << FILTER_BITS) / 64];
    for p in &patterns {
        // An occurrence's first sample falls on one of its first `stride` grams.
        for w in p.windows(gram).take(stride) {
            let h = gram_hash(w);
            grams[h / 64] |= 1 << (h % 64);
        }
    }
    Ok(Some(Exact {
        ac,
        owner,
        max_len,
        stride,
        gram,
        grams,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every encoding of `value`, planted at every offset in hex-heavy filler, is found
    /// exactly where it was planted (whichever gram length the filter chose).
    fn finds_every_encoding_everywhere(value: &[u8], gram: usize) {
        let exact = build(&[value]).unwrap().unwrap();
        assert_eq!(exact.gram, gram);
        let filler: Vec<u8> = b"deadbeef0123456789abcdef "
            .iter()
            .cycle()
            .take(300)
            .copied()
            .collect();
        for encoded in encodings(value) {
            for offset in [0, 1, 7, 8, 9, 63, 150, 299] {
                let mut hay = filler[..offset].to_vec();
                hay.extend_from_slice(&encoded);
                hay.extend_from_slice(&filler[offset..]);
                let mut found = Vec::new();
                exact.find(&hay, 0, hay.len(), &mut |_, s, e| found.push((s, e)));
                assert!(
                    found.contains(&(offset, offset + encoded.len())),
                    "an encoding of length {} at {offset} was missed (gram {gram})",
                    encoded.len()
                );
            }
        }
    }

    #[test]
    fn long_values_use_long_grams_and_miss_nothing() {
        finds_every_encoding_everywhere(b"tok-4f1e9a7c2b3d8e6f0a1b2c3d4e5f6a7b", LONG_GRAM);
    }

    #[test]
    fn short_values_use_short_grams_and_miss_nothing() {
        finds_every_encoding_everywhere(b"pw-9x2kq", SHORT_GRAM);
    }
}
