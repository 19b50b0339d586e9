//! The effective policy as stable, readable text (for `cordon check` and `serve`'s log).

use super::{Config, Mode};
use crate::audit::Fsync;
use crate::credentials::SourceSpec;
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
    let _ = match config.listen.dns {
        Some(dns) => writeln!(w, "  dns: {dns} (udp and tcp)"),
        None => writeln!(w, "  dns: off"),
    };
    let _ = if config.dns.upstream.is_empty() {
        writeln!(w, "dns upstream: system resolver")
    } else {
        writeln!(w, "dns upstream: {}", join(config.dns.upstream.iter()))
    };
    if config.listen.dns.is_some() {
        let dns = &config.dns;
        let allow: Vec<String> = dns.allow.iter().map(host).collect();
        let _ = writeln!(
            w,
            "dns: block_private_answers {}; extra names: {}; extra types: {}; cache ttl {}..{}",
            dns.block_private_answers,
            if allow.is_empty() {
                "none".to_owned()
            } else {
                allow.join(", ")
            },
            if dns.allow_types.is_empty() {
                "none".to_owned()
            } else {
                dns.allow_types.join(", ")
            },
            humantime::format_duration(dns.min_ttl),
            humantime::format_duration(dns.max_ttl),
        );
    }

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
        if let Some(id) = &e.credential {
            let _ = writeln!(w, "      credential: {id}");
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

    let _ = writeln!(w, "tls:");
    let _ = writeln!(w, "  ca_dir: {}", config.tls.ca_dir.display());
    let _ = if config.tls.extra_roots.is_empty() {
        writeln!(w, "  extra_roots: none")
    } else {
        writeln!(
            w,
            "  extra_roots: {}",
            join(config.tls.extra_roots.iter().map(|p| p.display()))
        )
    };

    // Where each value comes from and how it is used; values themselves are never read
    // here, so nothing below can print one.
    if config.credentials.is_empty() {
        let _ = writeln!(w, "credentials: none");
    } else {
        let _ = writeln!(w, "credentials:");
    }
    for c in &config.credentials {
        let _ = writeln!(w, "  {}", c.id);
        let _ = match &c.source {
            SourceSpec::Env(var) => writeln!(w, "      source: env {var}"),
            SourceSpec::File { path, refresh } => writeln!(
                w,
                "      source: file {} (checked every {})",
                path.display(),
                humantime::format_duration(*refresh)
            ),
            SourceSpec::Exec { command, timeout } => writeln!(
                w,
                "      source: exec {} (timeout {})",
                command[0],
                humantime::format_duration(*timeout)
            ),
            SourceSpec::OAuth2 { token_url, .. } => {
                writeln!(w, "      source: oauth2 {}", url_without_query(token_url))
            }
        };
        let _ = match &c.inject {
            Some(inject) => writeln!(w, "      inject: header {}", inject.header),
            None => writeln!(w, "      inject: placeholder swap only"),
        };
        let _ = writeln!(w, "      placeholder: {}", c.placeholder);
        if let Some(env) = &c.env {
            let _ = writeln!(w, "      env: {env}");
        }
        let _ = writeln!(
            w,
            "      require_placeholder: {}",
            if c.require_placeholder { "yes" } else { "no" }
        );
    }

    let scanning = &config.scanning;
    let rules: Vec<&str> = scanning.rules.iter().map(|r| r.id.as_str()).collect();
    let _ = writeln!(
        w,
        "scanning: outbound {}, inbound {}, output (cordon run) {}; custom rules: {}; known values: {}",
        scanning.outbound.as_str(),
        scanning.inbound.as_str(),
        scanning.output.as_str(),
        if rules.is_empty() {
            "none".to_owned()
        } else {
            rules.join(", ")
        },
        // Where the values come from, never the values.
        if scanning.known_values.is_empty() {
            "none".to_owned()
        } else {
            scanning
                .known_values
                .iter()
                .map(|k| match k {
                    super::KnownValue::Env(name) => format!("env {name}"),
                    super::KnownValue::File(path) => format!("file {}", path.display()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
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

/// A token URL without its query: some endpoints take parameters there that are better
/// not echoed into logs.
fn url_without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
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
