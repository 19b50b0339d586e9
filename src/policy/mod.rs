//! Host, method and path matching: the deny boundary first, then standing egress rules.

pub mod host;
pub mod path;

pub use host::{canonical_host, HostError, HostPattern};
pub use path::{normalize_path, PathError, PathPattern};

use ipnet::IpNet;

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
    /// The audit trail cannot be written, so nothing is let through.
    AuditUnavailable,
}

impl DenyReason {
    /// Every reason, in documentation order.
    pub const ALL: [DenyReason; 11] = [
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
        DenyReason::AuditUnavailable,
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
            DenyReason::AuditUnavailable => "audit_unavailable",
        }
    }

    /// HTTP status of the deny response.
    pub fn status(self) -> u16 {
        match self {
            DenyReason::MalformedRequest => 400,
            DenyReason::DnsFailure | DenyReason::UpstreamUnreachable => 502,
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
                | DenyReason::TlsRequired
                | DenyReason::DnsFailure
                | DenyReason::UpstreamUnreachable
                | DenyReason::AuditUnavailable
        )
    }
}

/// How a CONNECT tunnel to a matched host is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS bytes are relayed untouched after the SNI check.
    Passthrough,
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
    pub host: HostPattern,
    pub ports: Vec<u16>,
    /// Empty means any method and path.
    pub rules: Vec<RequestRule>,
    pub allow_ips: Vec<IpNet>,
    pub tls: TlsMode,
}

/// One boundary rule; every present field must match for the rule to deny.
#[derive(Debug, Clone)]
pub struct DenyEntry {
    pub host: HostPattern,
    pub ports: Option<Vec<u16>>,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<PathPattern>>,
}

/// What is being decided. `method`/`path` are `None` for an opaque (passthrough) tunnel.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Canonical host (see [`canonical_host`]).
    pub host: &'a str,
    pub port: u16,
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

/// The compiled standing policy: deny boundary plus egress allowlist.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    egress: Vec<EgressEntry>,
    deny: Vec<DenyEntry>,
}

impl Policy {
    /// Compiles the rules; order is kept (first match wins).
    pub fn new(egress: Vec<EgressEntry>, deny: Vec<DenyEntry>) -> Policy {
        let _ = (&egress, &deny);
        todo!("policy: index rules")
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
        let _ = target;
        todo!("policy: decide")
    }
}
