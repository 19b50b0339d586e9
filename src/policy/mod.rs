//! Host, method and path matching: the deny boundary first, then standing egress rules.

pub mod host;
pub mod path;

pub use host::{canonical_host, HostError, HostPattern};
pub use path::{normalize_path, PathError, PathPattern};

use ipnet::IpNet;
use std::collections::HashMap;

/// Why a request was refused. The wire names form the closed list documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No egress rule (or grant) matched host, port, method and path.
    NotAllowed,
    /// A `deny` rule matched; the boundary wins over every allow.
    Boundary,
    /// `Host` header (or URI authority) disagrees with the canonical destination.
    HostMismatch,
    /// The TLS ClientHello named another server than the CONNECT authority.
    SniMismatch,
    /// A passthrough tunnel did not start with a TLS ClientHello.
    TlsRequired,
    /// The path uses an encoding that servers disagree on (`%2f`, `%00`, `\`, `//`, …).
    AmbiguousPath,
    /// The destination resolved to (or is) a loopback, private, link-local, metadata … address.
    ForbiddenAddress,
    /// The destination name did not resolve.
    DnsFailure,
    /// The upstream could not be reached or broke the exchange.
    UpstreamUnreachable,
    /// The request could not be parsed or is not a proxy request.
    MalformedRequest,
    /// The proxy requires credentials (`cordon run`'s per-run token) the request lacks.
    ProxyAuthRequired,
    /// The audit trail cannot be written, so nothing is let through.
    AuditUnavailable,
    /// The credential the request needs cannot be obtained; it is never sent without it.
    CredentialUnavailable,
    /// The request carries a credential's real value where only its placeholder is allowed.
    RealSecretUsed,
    /// A credential's placeholder was sent to a host the credential is not bound to.
    PlaceholderMisuse,
    /// The origin's TLS certificate did not verify (wrong name, expired, unknown CA).
    UpstreamTls,
    /// The allowing rule carries a credential, and the request is plain http://: a
    /// credential is only ever injected into TLS.
    InsecureCredential,
    /// Outbound scanning found a secret in the request and the action is block.
    SecretInRequest,
    /// Inbound scanning found a secret in the response and the action is block.
    SecretInResponse,
}

impl DenyReason {
    /// Every reason, in documentation order.
    pub const ALL: [DenyReason; 19] = [
        DenyReason::NotAllowed,
        DenyReason::Boundary,
        DenyReason::HostMismatch,
        DenyReason::SniMismatch,
        DenyReason::TlsRequired,
        DenyReason::AmbiguousPath,
        DenyReason::ForbiddenAddress,
        DenyReason::DnsFailure,
        DenyReason::UpstreamUnreachable,
        DenyReason::MalformedRequest,
        DenyReason::ProxyAuthRequired,
        DenyReason::AuditUnavailable,
        DenyReason::CredentialUnavailable,
        DenyReason::RealSecretUsed,
        DenyReason::PlaceholderMisuse,
        DenyReason::UpstreamTls,
        DenyReason::InsecureCredential,
        DenyReason::SecretInRequest,
        DenyReason::SecretInResponse,
    ];

    /// The reason code as it appears in headers, bodies, audit records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NotAllowed => "not_allowed",
            DenyReason::Boundary => "boundary",
            DenyReason::HostMismatch => "host_mismatch",
            DenyReason::SniMismatch => "sni_mismatch",
            DenyReason::TlsRequired => "tls_required",
            DenyReason::AmbiguousPath => "ambiguous_path",
            DenyReason::ForbiddenAddress => "forbidden_address",
            DenyReason::DnsFailure => "dns_failure",
            DenyReason::UpstreamUnreachable => "upstream_unreachable",
            DenyReason::MalformedRequest => "malformed_request",
            DenyReason::ProxyAuthRequired => "proxy_auth_required",
            DenyReason::AuditUnavailable => "audit_unavailable",
            DenyReason::CredentialUnavailable => "credential_unavailable",
            DenyReason::RealSecretUsed => "real_secret_used",
            DenyReason::PlaceholderMisuse => "placeholder_misuse",
            DenyReason::UpstreamTls => "upstream_tls",
            DenyReason::InsecureCredential => "insecure_credential",
            DenyReason::SecretInRequest => "secret_in_request",
            DenyReason::SecretInResponse => "secret_in_response",
        }
    }

    /// HTTP status of the deny response.
    pub fn status(self) -> u16 {
        match self {
            DenyReason::MalformedRequest => 400,
            DenyReason::ProxyAuthRequired => 407,
            DenyReason::DnsFailure
            | DenyReason::UpstreamUnreachable
            | DenyReason::CredentialUnavailable
            | DenyReason::UpstreamTls
            | DenyReason::SecretInResponse => 502,
            DenyReason::AuditUnavailable => 503,
            _ => 403,
        }
    }

    /// Whether `mode: observe` may let the request through anyway (policy verdicts only;
    /// a request that cannot be carried out is refused in every mode).
    pub fn observable(self) -> bool {
        !matches!(
            self,
            DenyReason::MalformedRequest
                | DenyReason::ProxyAuthRequired
                | DenyReason::TlsRequired
                | DenyReason::DnsFailure
                | DenyReason::UpstreamUnreachable
                | DenyReason::AuditUnavailable
                | DenyReason::CredentialUnavailable
                | DenyReason::UpstreamTls
                | DenyReason::RealSecretUsed
                | DenyReason::PlaceholderMisuse
                | DenyReason::InsecureCredential
                | DenyReason::SecretInRequest
                | DenyReason::SecretInResponse
        )
    }
}

/// How a CONNECT tunnel to a matched host is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS bytes are relayed untouched after the SNI check.
    Passthrough,
    /// cordon terminates the agent's TLS with a leaf from its own CA and decides (and
    /// injects credentials) on every request inside the tunnel.
    Intercept,
}

/// One method/path rule of an egress entry; `None` means "any".
#[derive(Debug, Clone)]
pub struct RequestRule {
    /// Upper-case method names.
    pub methods: Option<Vec<String>>,
    /// Path patterns, matched against the normalised path.
    pub paths: Option<Vec<PathPattern>>,
}

/// One standing allow: host pattern, ports, optional method/path rules, allowed special IPs.
#[derive(Debug, Clone)]
pub struct EgressEntry {
    /// Which hosts the entry covers.
    pub host: HostPattern,
    /// Destination ports allowed for those hosts.
    pub ports: Vec<u16>,
    /// Empty means any method and path.
    pub rules: Vec<RequestRule>,
    /// Non-public addresses this entry may dial anyway.
    pub allow_ips: Vec<IpNet>,
    /// How tunnels to these hosts are carried.
    pub tls: TlsMode,
    /// The credential injected into requests this entry allows (an id of `credentials`).
    pub credential: Option<String>,
}

/// One boundary rule; every present field must match for the rule to deny.
#[derive(Debug, Clone)]
pub struct DenyEntry {
    /// Which hosts the boundary covers.
    pub host: HostPattern,
    /// Ports it covers; `None` means all.
    pub ports: Option<Vec<u16>>,
    /// Upper-case methods it covers; `None` means all.
    pub methods: Option<Vec<String>>,
    /// Path patterns it covers; `None` means all.
    pub paths: Option<Vec<PathPattern>>,
}

/// What is being decided. `method`/`path` are `None` for an opaque (passthrough) tunnel.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Canonical host (see [`canonical_host`]).
    pub host: &'a str,
    /// Destination port.
    pub port: u16,
    /// Request method, upper-case as sent.
    pub method: Option<&'a str>,
    /// Normalised path (see [`normalize_path`]), without the query.
    pub path: Option<&'a str>,
}

/// The verdict of [`Policy::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by `egress[rule]`.
    Allow { rule: usize },
    /// Refused; `hint` tells the agent what to change, without secrets.
    Deny { reason: DenyReason, hint: String },
}

/// Indices of the deny and egress entries that name one host or one wildcard suffix, each
/// list ascending so its first match is its earliest.
#[derive(Debug, Clone, Default)]
struct Bucket {
    deny: Vec<usize>,
    egress: Vec<usize>,
}

/// Entries keyed by the host they can match, so a decision costs a few hash lookups
/// (the host, then each of its dot-suffixes) instead of a scan over every rule.
#[derive(Debug, Clone, Default)]
struct HostIndex {
    /// Exact host → entries.
    exact: HashMap<String, Bucket>,
    /// Wildcard suffix, with its leading dot → entries.
    wildcard: HashMap<String, Bucket>,
}

impl HostIndex {
    fn bucket_mut(&mut self, pattern: &HostPattern) -> &mut Bucket {
        match pattern {
            HostPattern::Exact(host) => self.exact.entry(host.clone()).or_default(),
            HostPattern::Wildcard(suffix) => self.wildcard.entry(suffix.clone()).or_default(),
        }
    }

    /// Every bucket whose pattern matches `host`: the exact one, then one per suffix.
    fn buckets<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Bucket> + 'a {
        let suffixes = host
            .match_indices('.')
            .filter_map(move |(at, _)| self.wildcard.get(&host[at..]));
        self.exact.get(host).into_iter().chain(suffixes)
    }
}

/// How a CONNECT tunnel is carried, from [`Policy::decide_tunnel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelDecision {
    /// Relay the TLS bytes untouched; allowed by `egress[rule]`.
    Passthrough { rule: usize },
    /// Terminate TLS and decide every request inside; `egress[rule]` is the entry that
    /// asked for interception.
    Intercept { rule: usize },
    /// Refuse the CONNECT itself.
    Deny { reason: DenyReason, hint: String },
}

/// What the resolver may do with a name, from [`Policy::decide_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameDecision {
    /// Some egress entry names it; these special addresses may be in its answers.
    Allowed { allow_ips: Vec<IpNet> },
    /// A host-wide deny entry covers it.
    Boundary,
    /// No entry names it.
    NotListed,
}

/// The compiled standing policy: deny boundary plus egress allowlist.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    egress: Vec<EgressEntry>,
    deny: Vec<DenyEntry>,
    index: HostIndex,
}

impl Policy {
    /// Compiles the rules; order is kept (first match wins).
    pub fn new(egress: Vec<EgressEntry>, deny: Vec<DenyEntry>) -> Policy {
        let mut index = HostIndex::default();
        for (i, entry) in deny.iter().enumerate() {
            index.bucket_mut(&entry.host).deny.push(i);
        }
        for (i, entry) in egress.iter().enumerate() {
            index.bucket_mut(&entry.host).egress.push(i);
        }
        Policy {
            egress,
            deny,
            index,
        }
    }

    /// The egress entries, in config order.
    pub fn egress(&self) -> &[EgressEntry] {
        &self.egress
    }

    /// The deny entries, in config order.
    pub fn deny(&self) -> &[DenyEntry] {
        &self.deny
    }

    /// Decides one target: deny rules, then egress rules, else `not_allowed`.
    pub fn decide(&self, target: &Target<'_>) -> Decision {
        // One walk over the host's buckets finds both the first boundary and the first
        // allow; each bucket list is ascending, so the minimum over buckets is the first
        // match in config order.
        let mut first_deny: Option<usize> = None;
        let mut first_allow: Option<usize> = None;
        for bucket in self.index.buckets(target.host) {
            if let Some(i) = bucket
                .deny
                .iter()
                .copied()
                .find(|&i| deny_matches(&self.deny[i], target))
            {
                first_deny = Some(first_deny.map_or(i, |d| d.min(i)));
            }
            if first_deny.is_some() {
                continue;
            }
            if let Some(i) = bucket
                .egress
                .iter()
                .copied()
                .take_while(|&i| first_allow.is_none_or(|a| i < a))
                .find(|&i| egress_matches(&self.egress[i], target))
            {
                first_allow = Some(i);
            }
        }
        if let Some(i) = first_deny {
            return Decision::Deny {
                reason: DenyReason::Boundary,
                hint: format!("denied by deny[{i}]"),
            };
        }
        match first_allow {
            Some(rule) => Decision::Allow { rule },
            None => Decision::Deny {
                reason: DenyReason::NotAllowed,
                hint: self.miss_hint(target),
            },
        }
    }

    /// Decides a CONNECT: the first egress entry for host and port says how the tunnel is
    /// carried. An intercepted tunnel is refused here only by a host-wide boundary; method
    /// and path rules (allow and deny) are then decided per request inside it.
    pub fn decide_tunnel(&self, host: &str, port: u16) -> TunnelDecision {
        let opaque = Target {
            host,
            port,
            method: None,
            path: None,
        };
        let first = self
            .index
            .buckets(host)
            .filter_map(|bucket| {
                bucket.egress.iter().copied().find(|&i| {
                    let entry = &self.egress[i];
                    entry.host.matches(host) && entry.ports.contains(&port)
                })
            })
            .min();
        match first {
            Some(rule) if self.egress[rule].tls == TlsMode::Intercept => {
                let boundary = self
                    .index
                    .buckets(host)
                    .flat_map(|bucket| bucket.deny.iter().copied())
                    .filter(|&i| {
                        let entry = &self.deny[i];
                        entry.methods.is_none()
                            && entry.paths.is_none()
                            && deny_matches(entry, &opaque)
                    })
                    .min();
                match boundary {
                    Some(i) => TunnelDecision::Deny {
                        reason: DenyReason::Boundary,
                        hint: format!("denied by deny[{i}]"),
                    },
                    None => TunnelDecision::Intercept { rule },
                }
            }
            _ => match self.decide(&opaque) {
                Decision::Allow { rule } => TunnelDecision::Passthrough { rule },
                Decision::Deny { reason, hint } => TunnelDecision::Deny { reason, hint },
            },
        }
    }

    /// Whether the resolver may answer for `host`: a host-wide `deny` entry refuses it,
    /// any egress entry naming it (whatever its ports or rules) allows it, with the union of
    /// those entries' `allow_ips`.
    pub fn decide_name(&self, host: &str) -> NameDecision {
        let mut allowed = false;
        let mut allow_ips = Vec::new();
        for bucket in self.index.buckets(host) {
            let boundary = bucket.deny.iter().any(|&i| {
                let entry = &self.deny[i];
                entry.ports.is_none()
                    && entry.methods.is_none()
                    && entry.paths.is_none()
                    && entry.host.matches(host)
            });
            if boundary {
                return NameDecision::Boundary;
            }
            for &i in &bucket.egress {
                let entry = &self.egress[i];
                if entry.host.matches(host) {
                    allowed = true;
                    allow_ips.extend(entry.allow_ips.iter().copied());
                }
            }
        }
        if allowed {
            NameDecision::Allowed { allow_ips }
        } else {
            NameDecision::NotListed
        }
    }

    /// Explains a miss by the closest thing that did match; only built on the deny path.
    fn miss_hint(&self, target: &Target<'_>) -> String {
        let host = target.host;
        let mut by_host = Vec::new();
        for bucket in self.index.buckets(host) {
            by_host.extend(bucket.egress.iter().map(|&i| &self.egress[i]));
        }
        if by_host.is_empty() {
            return format!("no egress rule allows {host}");
        }
        let by_port: Vec<&EgressEntry> = by_host
            .iter()
            .copied()
            .filter(|e| e.ports.contains(&target.port))
            .collect();
        if by_port.is_empty() {
            let mut ports: Vec<u16> = by_host
                .iter()
                .flat_map(|e| e.ports.iter().copied())
                .collect();
            ports.sort_unstable();
            ports.dedup();
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            return format!(
                "port {} is not allowed for {host} (allowed: {})",
                target.port,
                ports.join(", ")
            );
        }
        match (target.method, target.path) {
            (None, None) => {
                format!("method/path rules for {host} cannot be enforced on a passthrough tunnel")
            }
            (method, path) => format!(
                "no rule allows {} {} on {host}",
                method.unwrap_or("(any method)"),
                path.unwrap_or("(any path)")
            ),
        }
    }
}

fn any_path(patterns: &[PathPattern], path: &str) -> bool {
    patterns.iter().any(|p| p.matches(path))
}

fn has_method(methods: &[String], method: &str) -> bool {
    methods.iter().any(|m| m == method)
}

/// A boundary field the request does not expose (inside a passthrough tunnel) counts as
/// matched: cordon cannot tell the forbidden part from the rest, so the whole tunnel closes.
fn deny_matches(entry: &DenyEntry, target: &Target<'_>) -> bool {
    entry.host.matches(target.host)
        && entry
            .ports
            .as_ref()
            .is_none_or(|p| p.contains(&target.port))
        && match (&entry.methods, target.method) {
            (Some(methods), Some(method)) => has_method(methods, method),
            _ => true,
        }
        && match (&entry.paths, target.path) {
            (Some(paths), Some(path)) => any_path(paths, path),
            _ => true,
        }
}

/// An allow field the request does not expose counts as unmatched: a method/path rule
/// cannot be enforced on bytes cordon does not see.
fn egress_matches(entry: &EgressEntry, target: &Target<'_>) -> bool {
    entry.host.matches(target.host)
        && entry.ports.contains(&target.port)
        && (entry.rules.is_empty() || entry.rules.iter().any(|r| rule_matches(r, target)))
}

fn rule_matches(rule: &RequestRule, target: &Target<'_>) -> bool {
    let method_ok = match (&rule.methods, target.method) {
        (None, _) => true,
        (Some(methods), Some(method)) => has_method(methods, method),
        (Some(_), None) => false,
    };
    method_ok
        && match (&rule.paths, target.path) {
            (None, _) => true,
            (Some(paths), Some(path)) => any_path(paths, path),
            (Some(_), None) => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: Option<&[&str]>, paths: Option<&[&str]>) -> RequestRule {
        RequestRule {
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            paths: paths.map(|p| p.iter().map(|s| PathPattern::parse(s).unwrap()).collect()),
        }
    }

    #[test]
    fn tunnels_follow_the_first_entry_for_host_and_port() {
        let mut intercepted = egress("api.example.com", &[443], vec![rule(Some(&["GET"]), None)]);
        intercepted.tls = TlsMode::Intercept;
        let policy = Policy::new(
            vec![
                egress("pass.example.com", &[443], vec![]),
                intercepted,
                egress(
                    "ruled.example.com",
                    &[443],
                    vec![rule(Some(&["GET"]), None)],
                ),
            ],
            vec![
                deny("api.example.com", None, Some(&["DELETE"]), None),
                deny("pass.example.com", Some(&[8443]), None, None),
            ],
        );
        assert_eq!(
            policy.decide_tunnel("pass.example.com", 443),
            TunnelDecision::Passthrough { rule: 0 }
        );
        // A method boundary does not close an intercepted tunnel: it is enforced inside.
        assert_eq!(
            policy.decide_tunnel("api.example.com", 443),
            TunnelDecision::Intercept { rule: 1 }
        );
        assert!(matches!(
            policy.decide_tunnel("api.example.com", 8443),
            TunnelDecision::Deny { .. }
        ));
        assert!(matches!(
            policy.decide_tunnel("ruled.example.com", 443),
            TunnelDecision::Deny {
                reason: DenyReason::NotAllowed,
                ..
            }
        ));
        let mut host_wide = egress("api.example.com", &[443], vec![]);
        host_wide.tls = TlsMode::Intercept;
        let policy = Policy::new(
            vec![host_wide],
            vec![deny("api.example.com", None, None, None)],
        );
        assert!(matches!(
            policy.decide_tunnel("api.example.com", 443),
            TunnelDecision::Deny {
                reason: DenyReason::Boundary,
                ..
            }
        ));
    }

    fn egress(host: &str, ports: &[u16], rules: Vec<RequestRule>) -> EgressEntry {
        EgressEntry {
            host: HostPattern::parse(host).unwrap(),
            ports: ports.to_vec(),
            rules,
            allow_ips: Vec::new(),
            tls: TlsMode::Passthrough,
            credential: None,
        }
    }

    fn deny(
        host: &str,
        ports: Option<&[u16]>,
        methods: Option<&[&str]>,
        paths: Option<&[&str]>,
    ) -> DenyEntry {
        let r = rule(methods, paths);
        DenyEntry {
            host: HostPattern::parse(host).unwrap(),
            ports: ports.map(<[u16]>::to_vec),
            methods: r.methods,
            paths: r.paths,
        }
    }

    fn req<'a>(host: &'a str, port: u16, method: &'a str, path: &'a str) -> Target<'a> {
        Target {
            host,
            port,
            method: Some(method),
            path: Some(path),
        }
    }

    fn tunnel(host: &str, port: u16) -> Target<'_> {
        Target {
            host,
            port,
            method: None,
            path: None,
        }
    }

    fn allowed(rule: usize) -> Decision {
        Decision::Allow { rule }
    }

    fn reason(d: &Decision) -> Option<DenyReason> {
        match d {
            Decision::Allow { .. } => None,
            Decision::Deny { reason, .. } => Some(*reason),
        }
    }

    fn hint(d: &Decision) -> &str {
        match d {
            Decision::Allow { .. } => panic!("expected a deny, got {d:?}"),
            Decision::Deny { hint, .. } => hint,
        }
    }

    fn sample() -> Policy {
        Policy::new(
            vec![
                egress(
                    "api.openai.com",
                    &[443],
                    vec![rule(
                        Some(&["POST"]),
                        Some(&["/v1/chat/completions", "/v1/responses"]),
                    )],
                ),
                egress("*.pypi.org", &[443], vec![]),
                egress(
                    "api.github.com",
                    &[443],
                    vec![
                        rule(Some(&["GET"]), None),
                        rule(Some(&["POST"]), Some(&["/repos/*/*/pulls"])),
                    ],
                ),
                egress("*.example.com", &[443, 8443], vec![]),
                egress("a.example.com", &[443], vec![]),
                egress("*.b.example.com", &[443], vec![]),
                egress("127.0.0.1", &[8080], vec![]),
            ],
            vec![
                deny("iam.amazonaws.com", None, None, None),
                deny("api.github.com", None, Some(&["DELETE"]), None),
                deny("api.github.com", None, None, Some(&["/repos/*/*/hooks/**"])),
                deny("*.internal.example.com", Some(&[443]), None, None),
            ],
        )
    }

    #[test]
    fn exact_host_with_method_and_path_rules() {
        let p = sample();
        let host = "api.openai.com";
        assert_eq!(
            p.decide(&req(host, 443, "POST", "/v1/responses")),
            allowed(0)
        );
        let d = p.decide(&req(host, 443, "GET", "/v1/responses"));
        assert_eq!(reason(&d), Some(DenyReason::NotAllowed));
        assert_eq!(
            hint(&d),
            "no rule allows GET /v1/responses on api.openai.com"
        );
        let d = p.decide(&req(host, 443, "POST", "/v1/responses/x"));
        assert_eq!(reason(&d), Some(DenyReason::NotAllowed));
        // Methods are compared against the upper-case config values as sent.
        let d = p.decide(&req(host, 443, "post", "/v1/responses"));
        assert_eq!(reason(&d), Some(DenyReason::NotAllowed));
    }

    #[test]
    fn unknown_host_is_not_allowed() {
        let p = sample();
        let d = p.decide(&req("api.evil.com", 443, "GET", "/"));
        assert_eq!(reason(&d), Some(DenyReason::NotAllowed));
        assert_eq!(hint(&d), "no egress rule allows api.evil.com");
        let d = Policy::default().decide(&req("api.openai.com", 443, "GET", "/"));
        assert_eq!(reason(&d), Some(DenyReason::NotAllowed));
    }

    #[test]
    fn wildcard_hosts() {
        let p = sample();
        assert_eq!(
            p.decide(&req("files.pypi.org", 443, "GET", "/x")),
            allowed(1)
        );
        assert_eq!(p.decide(&req("a.b.pypi.org", 443, "GET", "/x")), allowed(1));
        for host in ["pypi.org", "evilpypi.org", "pypi.org.evil.net"] {
            let d = p.decide(&req(host, 443, "GET", "/x"));
            assert_eq!(reason(&d), Some(DenyReason::NotAllowed), "{host}");
        }
    }

    #[test]
    fn first_match_wins_across_exact_and_wildcard() {
        let p = sample();
        // `*.example.com` (3) precedes both `a.example.com` (4) and `*.b.example.com` (5).
        assert_eq!(p.decide(&req("a.example.com", 443, "GET", "/")), allowed(3));
        assert_eq!(
            p.decide(&req("x.b.example.com", 443, "GET", "/")),
            allowed(3)
        );
        let p = Policy::new(
            vec![
                egress("*.b.example.com", &[443], vec![]),
                egress("a.b.example.com", &[443], vec![]),
                egress("*.example.com", &[443], vec![]),
                egress("a.b.example.com", &[80], vec![]),
            ],
            vec![],
        );
        assert_eq!(
            p.decide(&req("a.b.example.com", 443, "GET", "/")),
            allowed(0)
        );
        assert_eq!(
            p.decide(&req("a.b.example.com", 80, "GET", "/")),
            allowed(3)
        );
        assert_eq!(p.decide(&req("c.example.com", 443, "GET", "/")), allowed(2));
        // A later entry wins when the earlier one does not match the request.
        let p = Policy::new(
            vec![
                egress("api.github.com", &[443], vec![rule(Some(&["GET"]), None)]),
                egress("*.github.com", &[443], vec![rule(Some(&["POST"]), None)]),
                egress("api.github.com", &[443], vec![]),
            ],
            vec![],
        );
        assert_eq!(
            p.decide(&req("api.github.com", 443, "GET", "/")),
            allowed(0)
        );
        assert_eq!(
            p.decide(&req("api.github.com", 443, "POST", "/")),
            allowed(1)
        );
        assert_eq!(
            p.decide(&req("api.github.com", 443, "PUT", "/")),
            allowed(2)
        );
    }

    #[test]
    fn ports() {
        let p = sample();
        assert_eq!(
            p.decide(&req("x.example.com", 8443, "GET", "/")),
            allowed(3)
        );
        let d = p.decide(&req("x.example.com", 8080, "GET", "/"));
        assert_eq!(reason(&d), Some(DenyReason::NotAllowed));
        assert_eq!(
            hint(&d),
            "port 8080 is not allowed for x.example.com (allowed: 443, 8443)"
        );
        let d = p.decide(&req("api.openai.com", 8443, "POST", "/v1/responses"));
        assert_eq!(
            hint(&d),
            "port 8443 is not allowed for api.openai.com (allowed: 443)"
        );
        assert_eq!(p.decide(&req("127.0.0.1", 8080, "GET", "/")), allowed(6));
        let d = p.decide(&req("127.0.0.1", 80, "GET", "/"));
        assert_eq!(reason(&d), Some(DenyReason::NotAllowed));
    }

    #[test]
    fn deny_beats_egress() {
        let p = sample();
        let gh = "api.github.com";
        assert_eq!(
            p.decide(&req(gh, 443, "GET", "/repos/acme/web")),
            allowed(2)
        );
        let d = p.decide(&req(gh, 443, "DELETE", "/repos/acme/web"));
        assert_eq!(reason(&d), Some(DenyReason::Boundary));
        assert_eq!(hint(&d), "denied by deny[1]");
        // Allowed by egress[2] (GET any path), yet inside the hooks boundary.
        let d = p.decide(&req(gh, 443, "GET", "/repos/acme/web/hooks/1"));
        assert_eq!(reason(&d), Some(DenyReason::Boundary));
        assert_eq!(hint(&d), "denied by deny[2]");
        assert_eq!(
            p.decide(&req(gh, 443, "GET", "/repos/acme/web/hookshot")),
            allowed(2)
        );
        // Port-limited boundary over a wildcard that egress[3] otherwise allows.
        let d = p.decide(&req("db.internal.example.com", 443, "GET", "/"));
        assert_eq!(reason(&d), Some(DenyReason::Boundary));
        assert_eq!(hint(&d), "denied by deny[3]");
        assert_eq!(
            p.decide(&req("db.internal.example.com", 8443, "GET", "/")),
            allowed(3)
        );
        // A whole-host boundary wins even when egress names the host exactly.
        let p = Policy::new(
            vec![egress("iam.amazonaws.com", &[443], vec![])],
            vec![deny("iam.amazonaws.com", None, None, None)],
        );
        let d = p.decide(&req("iam.amazonaws.com", 443, "GET", "/"));
        assert_eq!(reason(&d), Some(DenyReason::Boundary));
        assert_eq!(hint(&d), "denied by deny[0]");
    }

    #[test]
    fn lowest_deny_index_is_reported() {
        let p = Policy::new(
            vec![],
            vec![
                deny("*.example.com", None, Some(&["PUT"]), None),
                deny("*.example.com", None, None, None),
                deny("a.example.com", None, None, None),
            ],
        );
        let d = p.decide(&req("a.example.com", 443, "GET", "/"));
        assert_eq!(hint(&d), "denied by deny[1]");
        let d = p.decide(&req("a.example.com", 443, "PUT", "/"));
        assert_eq!(hint(&d), "denied by deny[0]");
    }

    #[test]
    fn opaque_tunnel_closes_on_partial_boundary() {
        let p = Policy::new(
            vec![egress("api.github.com", &[443], vec![])],
            vec![deny(
                "api.github.com",
                Some(&[443]),
                Some(&["DELETE"]),
                None,
            )],
        );
        let d = p.decide(&tunnel("api.github.com", 443));
        assert_eq!(reason(&d), Some(DenyReason::Boundary));
        // The boundary's port still applies to a tunnel.
        let p = Policy::new(
            vec![egress("api.github.com", &[443, 8443], vec![])],
            vec![deny(
                "api.github.com",
                Some(&[443]),
                None,
                Some(&["/admin/**"]),
            )],
        );
        assert_eq!(
            reason(&p.decide(&tunnel("api.github.com", 443))),
            Some(DenyReason::Boundary)
        );
        assert_eq!(p.decide(&tunnel("api.github.com", 8443)), allowed(0));
    }

    #[test]
    fn opaque_tunnel_needs_an_unconditional_allow() {
        let p = sample();
        // Only method/path rules: cannot be enforced on a tunnel.
        let d = p.decide(&tunnel("api.openai.com", 443));
        assert_eq!(reason(&d), Some(DenyReason::NotAllowed));
        assert_eq!(
            hint(&d),
            "method/path rules for api.openai.com cannot be enforced on a passthrough tunnel"
        );
        // No rules at all.
        assert_eq!(p.decide(&tunnel("files.pypi.org", 443)), allowed(1));
        // A rule with neither methods nor paths is unconditional too.
        let p = Policy::new(
            vec![
                egress("api.x.com", &[443], vec![rule(Some(&["GET"]), None)]),
                egress(
                    "api.x.com",
                    &[443],
                    vec![rule(None, Some(&["/a"])), rule(None, None)],
                ),
            ],
            vec![],
        );
        assert_eq!(p.decide(&tunnel("api.x.com", 443)), allowed(1));
        assert_eq!(p.decide(&req("api.x.com", 443, "GET", "/")), allowed(0));
    }

    #[test]
    fn path_rules_use_normalised_paths() {
        let p = Policy::new(
            vec![egress(
                "api.github.com",
                &[443],
                vec![rule(Some(&["GET"]), Some(&["/repos/acme/**"]))],
            )],
            vec![],
        );
        let path = normalize_path("/repos/acme/../other").unwrap();
        let d = p.decide(&req("api.github.com", 443, "GET", &path));
        assert_eq!(
            hint(&d),
            "no rule allows GET /repos/other on api.github.com"
        );
        let path = normalize_path("/repos/acme/web/../api").unwrap();
        assert_eq!(
            p.decide(&req("api.github.com", 443, "GET", &path)),
            allowed(0)
        );
    }

    #[test]
    fn reason_codes() {
        let names: Vec<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), 19);
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "reason codes are distinct");
        assert!(names.contains(&"boundary") && names.contains(&"not_allowed"));
    }
}
