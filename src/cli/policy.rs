//! `cordon policy suggest --from AUDIT [--out F]`: the smallest `cordon.yaml` under which
//! what the trail shows would pass in enforce mode: exact hosts and ports, and per
//! destination the exact methods and paths seen. Nothing broader.

use crate::audit::summary::{summarize, Destination, Scope, Summary};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

/// Runs the command; returns the exit code (0, or 2 with the problem on stderr).
pub fn suggest(from: &Path, out: Option<&Path>) -> i32 {
    let summary = match summarize(from, Scope::All) {
        Ok(summary) => summary,
        Err(err) => {
            eprintln!("cordon policy suggest: {err}");
            return 2;
        }
    };
    let yaml = render(&summary, from);
    // What is suggested must load: the same checks as `cordon check`, before it is written.
    let shown = out.unwrap_or(Path::new("suggested.yaml"));
    if let Err(err) = crate::config::parse(shown, yaml.as_bytes(), &|name| std::env::var(name)) {
        eprintln!("cordon policy suggest: the suggested policy does not load: {err}");
        return 2;
    }
    match out {
        Some(path) => {
            if let Err(err) = std::fs::write(path, &yaml) {
                eprintln!(
                    "cordon policy suggest: cannot write {}: {err}",
                    path.display()
                );
                return 2;
            }
            eprintln!(
                "cordon policy suggest: wrote {} ({} egress entries); check it with: cordon check --config {}",
                path.display(),
                summary.destinations.len(),
                path.display()
            );
        }
        None => print!("{yaml}"),
    }
    0
}

use crate::config::yaml_string as q;

/// The suggested config, commented.
pub fn render(summary: &Summary, from: &Path) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Suggested by `cordon policy suggest` from {} ({} records).",
        from.display(),
        summary.records
    );
    let _ = writeln!(
        y,
        "# It allows exactly the hosts, ports, methods and paths that trail shows reaching\n\
         # their destination, and nothing else. Review it before use."
    );
    let agent = summary
        .agent
        .as_deref()
        .filter(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .unwrap_or("agent");
    let _ = writeln!(y, "version: 1");
    let _ = writeln!(y, "agent: {{ name: {} }}", q(agent));
    let _ = writeln!(y, "mode: enforce");
    let _ = writeln!(y, "audit: {{ path: {} }}", q("cordon-audit.jsonl"));
    if !summary.credentials.is_empty() {
        let ids: Vec<&str> = summary.credentials.keys().map(String::as_str).collect();
        let _ = writeln!(
            y,
            "# Credentials cordon injected in that trail: {}. Their sources are not in the\n\
             # trail: declare them under `credentials:` and name each on its entry.",
            ids.join(", ")
        );
    }
    if summary
        .destinations
        .values()
        .any(|d| d.tunnels > 0 && !d.requests.is_empty())
    {
        let _ = writeln!(
            y,
            "# HTTPS origins are verified against the public (webpki) roots and\n\
             # `tls.extra_roots`: list an origin's private CA there."
        );
    }
    let mut entries = String::new();
    for ((host, port), dest) in &summary.destinations {
        entry(&mut entries, host, *port, dest);
    }
    if entries.contains("- host:") {
        let _ = write!(y, "egress:\n{entries}");
    } else {
        let _ = writeln!(y, "{entries}egress: []");
    }
    for ((host, port), n) in &summary.boundary {
        let _ = writeln!(
            y,
            "# Not allowed: {n} request(s) to {host}:{port} that the deny boundary refused."
        );
    }
    let egress_hosts: BTreeSet<&str> = summary
        .destinations
        .keys()
        .map(|(host, _)| host.as_str())
        .collect();
    let dns_only: BTreeSet<&str> = summary
        .dns
        .keys()
        .filter(|(name, decision)| {
            decision != "deny" && !egress_hosts.contains(name.trim_end_matches('.'))
        })
        .map(|(name, _)| name.trim_end_matches('.'))
        .filter(|name| !name.is_empty())
        .collect();
    if !dns_only.is_empty() {
        let names: Vec<String> = dns_only.iter().map(|n| q(n)).collect();
        let _ = writeln!(
            y,
            "# Names looked up without a request to them through the proxy.\n\
             dns: {{ allow: [{}] }}",
            names.join(", ")
        );
    }
    y
}

fn entry(out: &mut String, host: &str, port: u16, dest: &Destination) {
    let mut entry = String::new();
    let y = &mut entry;
    let _ = writeln!(y, "  - host: {}", q(host));
    let _ = writeln!(y, "    ports: [{port}]");
    if !dest.special_ips.is_empty() {
        let ips: Vec<String> = dest
            .special_ips
            .iter()
            .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
            .map(|ip| q(&ipnet::IpNet::from(ip).to_string()))
            .collect();
        let _ = writeln!(
            y,
            "    # {host} was reached at a non-public address; only these are allowed:"
        );
        let _ = writeln!(y, "    allow_ips: [{}]", ips.join(", "));
    }
    if dest.requests.is_empty() {
        // Only opaque tunnels: nothing is known of what went through them.
        let _ = writeln!(y, "    tls: passthrough");
        out.push_str(&entry);
        return;
    }
    // Group paths by the exact set of methods seen on them: one rule per set.
    let mut methods_by_path: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (method, path) in dest.requests.keys() {
        if method_is_literal(method) && path_is_literal(path) {
            methods_by_path.entry(path).or_default().insert(method);
        } else {
            skipped.push(q(&format!("{method} {path}")));
        }
    }
    let mut rules: BTreeMap<Vec<&str>, Vec<&str>> = BTreeMap::new();
    for (path, methods) in methods_by_path {
        rules
            .entry(methods.into_iter().collect())
            .or_default()
            .push(path);
    }
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "  # Not allowed on {host}:{port} (a rule cannot name these methods or paths exactly): {}",
            skipped.join("; ")
        );
    }
    if rules.is_empty() {
        // Every path was skipped: no entry at all, rather than one allowing any path.
        return;
    }
    let _ = writeln!(y, "    rules:");
    for (methods, paths) in rules {
        let methods: Vec<String> = methods.iter().map(|m| q(m)).collect();
        let paths: Vec<String> = paths.iter().map(|p| q(p)).collect();
        let _ = writeln!(
            y,
            "      - {{ methods: [{}], paths: [{}] }}",
            methods.join(", "),
            paths.join(", ")
        );
    }
    out.push_str(&entry);
}

/// Whether a recorded path can be written as a pattern matching exactly itself: already
/// normal (observe mode records an ambiguous path as the agent wrote it), and spelled the
/// same as a pattern (which has no percent-escapes, wildcards or `${`).
fn path_is_literal(path: &str) -> bool {
    !path.contains('*')
        && !path.contains("${")
        && crate::policy::normalize_path(path).is_ok_and(|normal| normal == path)
        && crate::policy::PathPattern::parse(path).is_ok_and(|pattern| pattern.matches(path))
}

/// Whether a recorded method can be listed as itself: the config upper-cases methods and
/// refuses `*`, so anything else would name a different method, or not load.
fn method_is_literal(method: &str) -> bool {
    !method.is_empty()
        && method != "*"
        && method != "CONNECT"
        && method.bytes().all(|b| {
            b.is_ascii_digit() || b.is_ascii_uppercase() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::summary::Counts;
    use crate::policy::{Decision, Target};

    fn seen(requests: &[(&str, &str)]) -> Destination {
        let mut dest = Destination::default();
        for (method, path) in requests {
            dest.requests.insert(
                ((*method).to_owned(), (*path).to_owned()),
                Counts {
                    total: 1,
                    refused: 1,
                },
            );
        }
        dest
    }

    fn allows(
        config: &crate::config::Config,
        host: &str,
        port: u16,
        method: &str,
        path: &str,
    ) -> bool {
        let target = Target {
            host,
            port,
            method: Some(method),
            path: Some(path),
        };
        matches!(config.policy.decide(&target), Decision::Allow { .. })
    }

    #[test]
    fn the_suggestion_allows_exactly_what_was_seen() {
        let mut summary = Summary {
            records: 9,
            agent: Some("bot".into()),
            ..Summary::default()
        };
        let mut api = seen(&[
            ("GET", "/v1/models"),
            ("POST", "/v1/chat"),
            ("GET", "/v1/chat"),
            ("GET", "/a*b"),
        ]);
        api.special_ips.insert("127.0.0.1".into());
        summary.destinations.insert(("api.test".into(), 8443), api);
        let tunnel = Destination {
            tunnels: 2,
            ..Destination::default()
        };
        summary
            .destinations
            .insert(("pypi.test".into(), 443), tunnel);
        summary.boundary.insert(("iam.test".into(), 443), 1);
        let yaml = render(&summary, Path::new("trail.jsonl"));
        let config = crate::config::parse(Path::new("s.yaml"), yaml.as_bytes(), &|_| {
            Err(std::env::VarError::NotPresent)
        })
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(config.mode, crate::config::Mode::Enforce);
        assert!(allows(&config, "api.test", 8443, "GET", "/v1/models"));
        assert!(allows(&config, "api.test", 8443, "GET", "/v1/chat"));
        assert!(allows(&config, "api.test", 8443, "POST", "/v1/chat"));
        assert!(!allows(&config, "api.test", 8443, "POST", "/v1/models"));
        assert!(!allows(&config, "api.test", 8443, "GET", "/v1/models/x"));
        assert!(!allows(&config, "api.test", 8443, "GET", "/a*b"));
        assert!(!allows(&config, "api.test", 443, "GET", "/v1/models"));
        assert!(!allows(&config, "other.test", 8443, "GET", "/v1/models"));
        assert!(!allows(&config, "iam.test", 443, "GET", "/"));
        let entry = &config.policy.egress()[0];
        assert_eq!(entry.allow_ips.len(), 1);
        assert_eq!(
            config.policy.egress()[1].tls,
            crate::policy::TlsMode::Passthrough
        );
        assert!(yaml.contains("iam.test:443"), "boundary refusals are named");
    }

    #[test]
    fn paths_and_methods_a_rule_cannot_spell_are_left_out_not_fatal() {
        // A percent-escape the normal form keeps, an ambiguous path observe mode let through
        // as written, a lower-case and a `*` method: none can be a rule matching exactly it.
        let mut summary = Summary::default();
        summary.destinations.insert(
            ("api.test".into(), 80),
            seen(&[
                ("GET", "/ok"),
                ("GET", "/a%20b"),
                ("GET", "/x/../etc/passwd"),
                ("GET", "//double"),
                ("get", "/lower"),
                ("*", "/star"),
            ]),
        );
        let yaml = render(&summary, Path::new("trail.jsonl"));
        let config = crate::config::parse(Path::new("s.yaml"), yaml.as_bytes(), &|_| {
            Err(std::env::VarError::NotPresent)
        })
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert!(allows(&config, "api.test", 80, "GET", "/ok"));
        assert!(!allows(&config, "api.test", 80, "GET", "/lower"), "{yaml}");
        assert!(!allows(&config, "api.test", 80, "GET", "/star"), "{yaml}");
        assert!(!allows(&config, "api.test", 80, "POST", "/ok"));
        assert!(yaml.contains("/a%20b"), "named in a comment: {yaml}");
    }

    #[test]
    fn an_empty_trail_suggests_an_empty_allowlist() {
        let yaml = render(&Summary::default(), Path::new("t"));
        let config = crate::config::parse(Path::new("s.yaml"), yaml.as_bytes(), &|_| {
            Err(std::env::VarError::NotPresent)
        })
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert!(config.policy.egress().is_empty());
    }
}
