//! The effective policy as stable, readable text (for `cordon check` and `serve`'s log).

use super::{Config, Mode};
use crate::audit::Fsync;
use crate::policy::{HostPattern, PathPattern, TlsMode};
use std::fmt::Write;

/// Renders the effective configuration, defaults filled in, one fact per line.
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the fmt::Result values are ignored.
    let w = &mut out;
    let _ = writeln!(w, "config: {}", config.source.display());
    let _ = match &config.agent.instance {
        Some(instance) => writeln!(w, "agent: {} (instance {instance})", config.agent.name),
        None => writeln!(w, "agent: {}", config.agent.name),
    };
    let _ = writeln!(
        w,
        "mode: {}",
        match config.mode {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe (nothing is denied; violations are recorded as would_deny)",
        }
    );
    let _ = writeln!(w, "listen:");
    let _ = writeln!(w, "  proxy: {}", config.listen.proxy);
    let _ = match config.listen.admin {
        Some(admin) => writeln!(w, "  admin: {admin}"),
        None => writeln!(w, "  admin: off"),
    };
    let _ = if config.dns.upstream.is_empty() {
        writeln!(w, "dns upstream: system resolver")
    } else {
        writeln!(w, "dns upstream: {}", join(config.dns.upstream.iter()))
    };

    let egress = config.policy.egress();
    if egress.is_empty() {
        let _ = writeln!(w, "egress: none (every destination is denied)");
    } else {
        let _ = writeln!(w, "egress:");
    }
    for (i, e) in egress.iter().enumerate() {
        let _ = writeln!(w, "  [{i}] {}", host(&e.host));
        let _ = writeln!(w, "      ports: {}", join(e.ports.iter()));
        let _ = writeln!(w, "      tls: {}", tls(e.tls));
        if e.rules.is_empty() {
            let _ = writeln!(w, "      rules: any method, any path");
        } else {
            let _ = writeln!(w, "      rules:");
            for rule in &e.rules {
                let _ = writeln!(
                    w,
                    "        - methods: {}; paths: {}",
                    methods(rule.methods.as_deref()),
                    paths(rule.paths.as_deref())
                );
            }
        }
        if !e.allow_ips.is_empty() {
            let _ = writeln!(w, "      allow_ips: {}", join(e.allow_ips.iter()));
        }
    }

    let deny = config.policy.deny();
    if deny.is_empty() {
        let _ = writeln!(w, "deny: none");
    } else {
        let _ = writeln!(w, "deny:");
    }
    for (i, d) in deny.iter().enumerate() {
        let ports = d
            .ports
            .as_ref()
            .map_or_else(|| "any".to_string(), |p| join(p.iter()));
        let _ = writeln!(
            w,
            "  [{i}] {}  ports: {ports}; methods: {}; paths: {}",
            host(&d.host),
            methods(d.methods.as_deref()),
            paths(d.paths.as_deref())
        );
    }

    let _ = writeln!(
        w,
        "audit: {} (fsync {})",
        config.audit.path.display(),
        match config.audit.fsync {
            Fsync::Every => "every",
            Fsync::Batch => "batch",
            Fsync::None => "none",
        }
    );
    let _ = writeln!(w, "policy hash: {}", config.policy_hash);
    out
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// A host pattern as written in config.
fn host(p: &HostPattern) -> String {
    match p {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Wildcard(suffix) => format!("*{suffix}"),
    }
}

fn tls(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Passthrough => "passthrough",
        TlsMode::Intercept => "intercept",
    }
}

fn methods(m: Option<&[String]>) -> String {
    m.map_or_else(|| "any".to_string(), |m| m.join(", "))
}

fn paths(p: Option<&[PathPattern]>) -> String {
    p.map_or_else(
        || "any".to_string(),
        |p| join(p.iter().map(PathPattern::as_str)),
    )
}
