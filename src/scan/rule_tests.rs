//! Per-rule tests: every built-in rule has true positives found at the right span and hard
//! negatives that stay silent. Assertion messages name rules and offsets, never values.

use std::collections::BTreeSet;

use super::testkit::{cases, shared_negatives, Rng};
use super::*;

fn scanner() -> Scanner {
    Scanner::new(&[], &[]).expect("built-in rules compile")
}

fn spans(findings: &[Finding]) -> Vec<(String, usize, usize)> {
    findings
        .iter()
        .map(|f| (f.rule.to_string(), f.start as usize, f.end as usize))
        .collect()
}

#[test]
fn at_least_fifty_rules_each_with_cases() {
    let ids = Scanner::builtin_rule_ids();
    assert!(ids.len() >= 50, "only {} built-in rules", ids.len());
    let cases = cases(&mut Rng::new(7));
    let covered: BTreeSet<&str> = cases.iter().map(|c| c.id).collect();
    for id in &ids {
        assert!(covered.contains(id), "rule {id} has no test case");
    }
    for c in &cases {
        assert!(ids.contains(&c.id), "test case for unknown rule {}", c.id);
        assert!(c.positives.len() >= 2, "rule {} needs two positives", c.id);
        assert!(c.negatives.len() >= 2, "rule {} needs two negatives", c.id);
    }
}

#[test]
fn true_positives_are_found_at_their_span() {
    let sc = scanner();
    for seed in [1, 2, 3] {
        for c in cases(&mut Rng::new(seed)) {
            for (i, s) in c.positives.iter().enumerate() {
                let got = spans(&sc.scan(s.text.as_bytes()));
                let want: Vec<(String, usize, usize)> = s
                    .expect
                    .iter()
                    .map(|(r, a, b)| (r.to_string(), *a, *b))
                    .collect();
                assert_eq!(got, want, "rule {} positive #{i} (seed {seed})", c.id);
            }
        }
    }
}

#[test]
fn hard_negatives_stay_silent() {
    let sc = scanner();
    for seed in [1, 2, 3] {
        let mut rng = Rng::new(seed);
        for c in cases(&mut rng) {
            for (i, n) in c.negatives.iter().enumerate() {
                let got = spans(&sc.scan(n.as_bytes()));
                assert!(
                    got.is_empty(),
                    "rule {} negative #{i} (seed {seed}) matched: {got:?}",
                    c.id
                );
            }
        }
        for (i, n) in shared_negatives(&mut rng).iter().enumerate() {
            let got = spans(&sc.scan(n.as_bytes()));
            assert!(
                got.is_empty(),
                "shared negative #{i} (seed {seed}) matched: {got:?}"
            );
        }
    }
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(checks::crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(&checks::base62_6(0), b"000000");
    assert_eq!(&checks::base62_6(61), b"00000z");
}

#[test]
fn documented_examples_are_allowlisted() {
    let sc = scanner();
    let text = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
    assert!(sc.scan(text.as_bytes()).is_empty());
}
