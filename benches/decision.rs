//! Cost of one policy decision against a large rule set, and of path normalisation.

use cordon::policy::{
    normalize_path, DenyEntry, EgressEntry, HostPattern, PathPattern, Policy, RequestRule, Target,
    TlsMode,
};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

const EGRESS_RULES: usize = 1_000;
const DENY_RULES: usize = 20;

fn host(pattern: &str) -> HostPattern {
    HostPattern::parse(pattern).expect("bench host pattern")
}

fn paths(patterns: &[&str]) -> Option<Vec<PathPattern>> {
    Some(
        patterns
            .iter()
            .map(|p| PathPattern::parse(p).expect("bench path pattern"))
            .collect(),
    )
}

/// A thousand entries in the proportions a large deployment might have: mostly exact
/// hosts, a fifth wildcards, a third carrying method/path rules.
fn large_policy() -> Policy {
    let egress = (0..EGRESS_RULES)
        .map(|i| {
            let pattern = if i % 5 == 0 {
                format!("*.svc{i}.example.net")
            } else {
                format!("api{i}.example.com")
            };
            let rules = if i % 3 == 0 {
                vec![
                    RequestRule {
                        methods: Some(vec!["GET".into()]),
                        paths: paths(&["/v1/items/**", "/v1/health"]),
                    },
                    RequestRule {
                        methods: Some(vec!["POST".into(), "PUT".into()]),
                        paths: paths(&["/v1/repos/*/*/pulls", "/v1/items/*"]),
                    },
                ]
            } else {
                Vec::new()
            };
            EgressEntry {
                host: host(&pattern),
                ports: vec![443],
                rules,
                allow_ips: Vec::new(),
                tls: TlsMode::Passthrough,
                credential: None,
            }
        })
        .collect();
    let deny = (0..DENY_RULES)
        .map(|i| DenyEntry {
            host: host(&format!("api{}.example.com", i * 7)),
            ports: None,
            methods: Some(vec!["DELETE".into()]),
            paths: paths(&["/v1/repos/*/*/hooks/**"]),
        })
        .collect();
    Policy::new(egress, deny)
}

fn decide(c: &mut Criterion) {
    let policy = large_policy();
    let cases = [
        (
            "decide/exact_path_rule",
            Target {
                host: "api999.example.com",
                port: 443,
                method: Some("POST"),
                path: Some("/v1/repos/acme/web/pulls"),
            },
        ),
        (
            "decide/wildcard",
            Target {
                host: "eu.objects.svc995.example.net",
                port: 443,
                method: Some("GET"),
                path: Some("/bucket/key"),
            },
        ),
        (
            "decide/not_allowed",
            Target {
                host: "api.unlisted.example.org",
                port: 443,
                method: Some("GET"),
                path: Some("/"),
            },
        ),
    ];
    for (name, target) in cases {
        assert!(
            matches!(
                (name, policy.decide(&target)),
                ("decide/not_allowed", cordon::policy::Decision::Deny { .. })
                    | (_, cordon::policy::Decision::Allow { .. })
            ),
            "{name}: unexpected decision"
        );
        c.bench_function(name, |b| b.iter(|| policy.decide(black_box(&target))));
    }
}

fn normalize(c: &mut Criterion) {
    c.bench_function("normalize_path/plain", |b| {
        b.iter(|| normalize_path(black_box("/v1/repos/acme/web/pulls/42/comments")))
    });
    c.bench_function("normalize_path/escapes", |b| {
        b.iter(|| normalize_path(black_box("/v1/repos/acme/w%65b/../api/caf%c3%a9/a%3ab")))
    });
}

criterion_group!(benches, decide, normalize);
criterion_main!(benches);
