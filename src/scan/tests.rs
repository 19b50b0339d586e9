//! Engine tests: streaming across every boundary, redaction, bounded memory, known values
//! in every encoding, custom rules, and findings that never carry the value. Assertion
//! messages show rule ids and offsets only.

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::testkit::{cases, checksummed, filler, password, Rng, B62, B64URL};
use super::*;

fn full() -> Arc<Scanner> {
    Arc::new(Scanner::new(&[], &[]).expect("built-in rules compile"))
}

fn stream_all(sc: &Arc<Scanner>, chunks: &[&[u8]]) -> Vec<Finding> {
    let mut s = sc.stream();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(s.feed(c));
    }
    out.extend(s.finish());
    out
}

fn redact_all(sc: &Arc<Scanner>, chunks: &[&[u8]]) -> (Vec<u8>, Vec<Finding>) {
    let mut r = sc.redactor();
    let (mut bytes, mut found) = (Vec::new(), Vec::new());
    for c in chunks {
        let (b, f) = r.feed(c);
        bytes.extend(b);
        found.extend(f);
    }
    let (b, f) = r.finish();
    bytes.extend(b);
    found.extend(f);
    (bytes, found)
}

/// Splits `text` in two at each of `positions` and checks the stream and the redactor
/// against the one-shot result.
fn check_splits(
    sc: &Arc<Scanner>,
    text: &[u8],
    positions: impl Iterator<Item = usize>,
    label: &str,
) {
    let want = sc.scan(text);
    let (want_red, _) = sc.redact(text);
    for p in positions {
        let (a, b) = text.split_at(p);
        assert_eq!(
            stream_all(sc, &[a, b]),
            want,
            "{label}: stream split at {p}"
        );
        let (red, found) = redact_all(sc, &[a, b]);
        assert_eq!(found, want, "{label}: redactor findings, split at {p}");
        assert!(
            red == want_red,
            "{label}: redacted output differs, split at {p}"
        );
    }
}

fn check_bytewise(sc: &Arc<Scanner>, text: &[u8], label: &str) {
    let chunks: Vec<&[u8]> = text.chunks(1).collect();
    assert_eq!(
        stream_all(sc, &chunks),
        sc.scan(text),
        "{label}: 1-byte chunks"
    );
    let (red, _) = redact_all(sc, &chunks);
    assert!(
        red == sc.redact(text).0,
        "{label}: 1-byte chunks, redacted output differs"
    );
}

fn expected(sample: &testkit::Sample, shift: usize) -> Vec<(String, u64, u64)> {
    sample
        .expect
        .iter()
        .map(|(r, a, b)| (r.to_string(), (a + shift) as u64, (b + shift) as u64))
        .collect()
}

fn tuples(f: &[Finding]) -> Vec<(String, u64, u64)> {
    f.iter()
        .map(|f| (f.rule.to_string(), f.start, f.end))
        .collect()
}

#[test]
fn every_rule_survives_every_split() {
    let sc = full();
    let mut rng = Rng::new(11);
    // Padding longer than the window makes the stream decide while data is still
    // arriving, rather than only at finish.
    let pad = sc.window() / 2 + 1000;
    for c in cases(&mut rng) {
        let s = &c.positives[0];
        let text = s.text.as_bytes();
        check_splits(&sc, text, 0..=text.len(), c.id);

        let before = filler(&mut rng, pad);
        let after = filler(&mut rng, pad);
        let padded = format!("{before}{}{after}", s.text);
        assert_eq!(
            tuples(&sc.scan(padded.as_bytes())),
            expected(s, before.len()),
            "{}: padded",
            c.id
        );
        let lo = before.len().saturating_sub(16);
        let hi = before.len() + text.len() + 16;
        check_splits(&sc, padded.as_bytes(), lo..=hi, c.id);
    }
}

#[test]
fn single_byte_chunks() {
    let sc = full();
    let mut rng = Rng::new(12);
    let all = cases(&mut rng);
    for id in [
        "github-pat",
        "private-key",
        "jwt",
        "generic-password",
        "postgres-password",
        "aws-secret-access-key",
    ] {
        let c = all.iter().find(|c| c.id == id).expect("case exists");
        for s in &c.positives {
            check_bytewise(&sc, s.text.as_bytes(), id);
        }
        let padded = format!(
            "{}{}{}",
            filler(&mut rng, sc.window()),
            c.positives[0].text,
            filler(&mut rng, 300)
        );
        check_bytewise(&sc, padded.as_bytes(), id);
    }
}

#[test]
fn many_findings_come_out_in_order_once() {
    let sc = full();
    let mut rng = Rng::new(13);
    let mut text = String::new();
    let mut want = Vec::new();
    for c in cases(&mut rng) {
        for s in &c.positives {
            want.extend(expected(s, text.len()));
            text.push_str(&s.text);
            text.push('\n');
        }
    }
    let got = sc.scan(text.as_bytes());
    assert_eq!(tuples(&got), want);
    for chunk in [1000, 4096, 8192] {
        let parts: Vec<&[u8]> = text.as_bytes().chunks(chunk).collect();
        assert_eq!(stream_all(&sc, &parts), got, "chunks of {chunk}");
        let (red, found) = redact_all(&sc, &parts);
        assert_eq!(found, got, "redactor, chunks of {chunk}");
        assert!(
            red == sc.redact(text.as_bytes()).0,
            "redacted output, chunks of {chunk}"
        );
    }
}

#[test]
fn memory_stays_bounded() {
    let sc = full();
    let mut rng = Rng::new(14);
    let mut block = filler(&mut rng, 1 << 20).into_bytes();
    let token = checksummed(&mut rng, "ghp_");
    let at = 500_000;
    let planted = format!(" {token} ");
    block[at..at + planted.len()].copy_from_slice(planted.as_bytes());
    const CHUNK: usize = 8192;
    let mut s = sc.stream();
    let mut found = 0;
    for i in 0..64 {
        for c in block.chunks(CHUNK) {
            found += s.feed(c).len();
            assert!(
                s.buffered() <= sc.window() + CHUNK,
                "stream holds {} bytes in block {i}",
                s.buffered()
            );
        }
    }
    found += s.finish().len();
    assert_eq!(found, 64);

    let mut r = sc.redactor();
    let (mut out_len, mut redacted) = (0, 0);
    for _ in 0..8 {
        for c in block.chunks(CHUNK) {
            let (b, f) = r.feed(c);
            out_len += b.len();
            redacted += f.len();
            assert!(
                r.buffered() <= sc.window() + CHUNK,
                "redactor holds {} bytes",
                r.buffered()
            );
        }
    }
    let (b, f) = r.finish();
    out_len += b.len();
    redacted += f.len();
    let label = "[REDACTED:github-pat]".len();
    assert_eq!(redacted, 8);
    assert_eq!(out_len, 8 * (block.len() - token.len() + label));
}

/// A known value with the bytes that each encoding treats specially.
fn known_value(rng: &mut Rng) -> String {
    format!(
        "{}/{}+\"{}\\ {}",
        rng.pick(B62, 10),
        rng.pick(B62, 8),
        rng.pick(B62, 6),
        rng.pick(B62, 12)
    )
}

fn pct(v: &[u8], lower: bool) -> String {
    v.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else if lower {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn known_values_in_every_encoding() {
    let mut rng = Rng::new(15);
    let value = known_value(&mut rng);
    let v = value.as_bytes();
    let known = vec![("credential:test".to_string(), value.clone())];
    let sc = Arc::new(Scanner::exact_only(&known).expect("builds"));
    let json = serde_json::to_string(&value).expect("json");
    let mut forms: Vec<(String, String)> = vec![
        ("raw".into(), value.clone()),
        ("hex".into(), v.iter().map(|b| format!("{b:02x}")).collect()),
        ("HEX".into(), v.iter().map(|b| format!("{b:02X}")).collect()),
        ("percent".into(), pct(v, false)),
        ("percent-lower".into(), pct(v, true)),
        (
            "percent-all".into(),
            v.iter().map(|b| format!("%{b:02X}")).collect(),
        ),
        ("json".into(), json[1..json.len() - 1].to_string()),
        ("base64".into(), STANDARD.encode(v)),
        ("base64-nopad".into(), STANDARD_NO_PAD.encode(v)),
        ("base64url".into(), URL_SAFE_NO_PAD.encode(v)),
    ];
    forms.dedup_by(|a, b| a.1 == b.1);
    for (name, form) in &forms {
        let text = format!("payload: {form} end");
        let got = tuples(&sc.scan(text.as_bytes()));
        let want = vec![("credential:test".to_string(), 9, 9 + form.len() as u64)];
        assert_eq!(got, want, "{name}");
        check_splits(&sc, text.as_bytes(), 0..=text.len(), name);
        let padded = format!(
            "{}{text}{}",
            filler(&mut rng, 2 * sc.window()),
            filler(&mut rng, 100)
        );
        let lo = 2 * sc.window();
        check_splits(&sc, padded.as_bytes(), lo..=lo + text.len(), name);
    }
    // Embedded at each alignment inside a larger base64 blob: the characters computed
    // from the value's bits alone are found.
    for shift in 0..3 {
        for url in [false, true] {
            let mut raw = rng.bytes(shift + 3 * 5);
            raw.truncate(3 * 5 + shift);
            raw.extend_from_slice(v);
            raw.extend(rng.bytes(7));
            let blob = if url {
                URL_SAFE_NO_PAD.encode(&raw)
            } else {
                STANDARD_NO_PAD.encode(&raw)
            };
            let k = 15 + shift;
            let (first, last) = ((8 * k).div_ceil(6), 8 * (k + v.len()) / 6);
            let text = format!("data={blob};");
            let got = sc.scan(text.as_bytes());
            assert_eq!(got.len(), 1, "shift {shift} url {url}");
            let (s, e) = ((got[0].start - 5) as usize, (got[0].end - 5) as usize);
            assert!(
                s <= first && e >= last && (e - s) <= (last - first) + 4,
                "shift {shift} url {url}: {s}..{e}"
            );
            check_splits(&sc, text.as_bytes(), 0..=text.len(), "base64 blob");
        }
    }
}

#[test]
fn known_value_outranks_the_format_rule() {
    let mut rng = Rng::new(16);
    let key = format!(
        "sk-proj-{}T3BlbkFJ{}",
        rng.mixed(B64URL, 74),
        rng.mixed(B64URL, 74)
    );
    let sc = Scanner::new(&[], &[("credential:openai".into(), key.clone())]).expect("builds");
    let text = format!("Authorization: Bearer {key}\n");
    let got = tuples(&sc.scan(text.as_bytes()));
    assert_eq!(
        got,
        vec![("credential:openai".to_string(), 22, 22 + key.len() as u64)]
    );
    let other = format!(
        "sk-proj-{}T3BlbkFJ{}",
        rng.mixed(B64URL, 74),
        rng.mixed(B64URL, 74)
    );
    let got = tuples(&sc.scan(other.as_bytes()));
    assert_eq!(
        got,
        vec![("openai-api-key".to_string(), 0, other.len() as u64)]
    );
}

#[test]
fn short_known_values_are_skipped() {
    let sc = Scanner::exact_only(&[("credential:pin".into(), "1234567".into())]).expect("builds");
    assert!(sc.scan(b"pin 1234567 and MTIzNDU2Nw==").is_empty());
    assert!(Scanner::exact_only(&[(String::new(), "long enough value".into())]).is_err());
}

#[test]
fn findings_and_debug_never_hold_the_value() {
    let mut rng = Rng::new(17);
    let token = checksummed(&mut rng, "ghp_");
    let pw = password(&mut rng);
    let known = vec![("credential:db".to_string(), pw.clone())];
    let sc = Arc::new(Scanner::new(&[], &known).expect("builds"));
    let text = format!("GITHUB_TOKEN={token}\nDB={pw}\n");
    let found = sc.scan(text.as_bytes());
    assert_eq!(found.len(), 2);
    for f in &found {
        let dbg = format!("{f:?} {:?}", f.rule);
        assert!(
            !dbg.contains(&token) && !dbg.contains(&pw),
            "a finding's Debug output holds the value"
        );
    }
    let dbg = format!("{sc:?}");
    assert!(
        !dbg.contains(&pw),
        "the scanner's Debug output holds a known value"
    );
    let (red, _) = sc.redact(text.as_bytes());
    let red = String::from_utf8(red).expect("utf-8");
    assert!(
        !red.contains(&token) && !red.contains(&pw),
        "redaction left a value"
    );
    assert_eq!(
        red,
        "GITHUB_TOKEN=[REDACTED:github-pat]\nDB=[REDACTED:credential:db]\n"
    );
}

fn custom(id: &str, regex: &str, keywords: &[&str], entropy: Option<f64>) -> CustomRule {
    CustomRule {
        id: id.into(),
        regex: regex.into(),
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        entropy,
    }
}

#[test]
fn custom_rules_match_and_validate() {
    let rule = custom("acme-key", r"acme_[0-9a-f]{16}\b", &["acme_"], Some(3.0));
    let sc = Arc::new(Scanner::new(&[rule], &[]).expect("builds"));
    let mut rng = Rng::new(18);
    let key = format!("acme_{}", rng.pick(testkit::HEX, 16));
    let text = format!("use {key} here");
    assert_eq!(
        tuples(&sc.scan(text.as_bytes())),
        vec![("acme-key".to_string(), 4, 4 + key.len() as u64)]
    );
    assert!(
        sc.scan(b"use acme_0000000000000000 here").is_empty(),
        "entropy gate"
    );
    let padded = format!(
        "{}{text}{}",
        filler(&mut rng, sc.window()),
        filler(&mut rng, 500)
    );
    check_splits(
        &sc,
        padded.as_bytes(),
        sc.window() - 300..=sc.window() + text.len() + 300,
        "custom",
    );

    let named = custom(
        "acme-secret",
        r"acme_secret=(?P<secret>[A-Za-z0-9]{12,})",
        &["ACME_SECRET"],
        None,
    );
    let sc = Scanner::new(&[named], &[]).expect("builds");
    let v = rng.mixed(B62, 20);
    let found = sc.scan(format!("acme_secret={v}").as_bytes());
    assert_eq!(tuples(&found), vec![("acme-secret".to_string(), 12, 32)]);

    for (rule, what) in [
        (custom("bad-re", "acme_[", &["acme_"], None), "bad-re"),
        (custom("no-kw", "acme_[0-9]+", &[], None), "no-kw"),
        (custom("empty-kw", "acme_[0-9]+", &[""], None), "empty-kw"),
        (custom("github-pat", "x[0-9]+", &["x"], None), "github-pat"),
        (custom("ent", "acme_[0-9]+", &["acme_"], Some(9.0)), "ent"),
        (custom("empty-match", "a*", &["a"], None), "empty-match"),
    ] {
        let err = Scanner::new(&[rule], &[]).expect_err("rejected");
        assert!(err.0.contains(what), "error does not name the rule: {err}");
    }
}

#[test]
fn window_covers_the_longest_rule() {
    let sc = full();
    assert!(
        sc.window() >= 2 * rules::BLOCK_MAX,
        "window {}",
        sc.window()
    );
    assert!(sc.window() <= 32 * 1024, "window {}", sc.window());
}
