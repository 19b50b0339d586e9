//! Validation of the raw structs and compilation into [`Config`].
//!
//! Two phases: first every check that needs only this module (addresses, ports, methods,
//! CIDRs, names), then the host and path patterns and the policy itself, which belong to
//! `policy`. A config is only ever accepted whole.

use super::raw::{RawConfig, RawDeny, RawEgress, RawFsync, RawMode, RawPort};
use super::{Agent, Audit, Config, ConfigError, Dns, Listen, Mode};
use crate::audit::Fsync;
use crate::policy::{
    DenyEntry, EgressEntry, HostPattern, PathPattern, Policy, RequestRule, TlsMode,
};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The only config format version this release reads.
const VERSION: u64 = 1;
/// Where the proxy listens when `listen.proxy` is absent.
pub(super) const DEFAULT_PROXY: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15001);
/// Ports an egress entry covers when it names none: plain HTTP and HTTPS.
pub(super) const DEFAULT_PORTS: [u16; 2] = [80, 443];
/// Port used for a DNS upstream written without one.
const DNS_PORT: u16 = 53;

/// An egress entry whose non-pattern fields are already checked.
struct CheckedEgress {
    ports: Vec<u16>,
    rules: Vec<CheckedRule>,
    allow_ips: Vec<IpNet>,
    tls: TlsMode,
}

/// A rule with its methods normalised and its paths still as written.
struct CheckedRule {
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
}

/// A deny entry whose non-pattern fields are already checked.
struct CheckedDeny {
    ports: Option<Vec<u16>>,
    methods: Option<Vec<String>>,
}

/// Validates `raw` and builds the config; the first problem found is returned.
pub(super) fn compile(
    file: &Path,
    raw: RawConfig,
    policy_hash: String,
) -> Result<Config, ConfigError> {
    let fail = |key: &str, problem: String| ConfigError::at(file, key, problem);

    if raw.version != VERSION {
        return Err(fail(
            "version",
            format!(
                "version {} is not supported (this cordon reads version {VERSION})",
                raw.version
            ),
        ));
    }

    let agent = check_agent(raw.agent.name, raw.agent.instance).map_err(|(k, m)| fail(&k, m))?;
    let mode = match raw.mode.unwrap_or(RawMode::Enforce) {
        RawMode::Enforce => Mode::Enforce,
        RawMode::Observe => Mode::Observe,
    };
    let listen = check_listen(raw.listen).map_err(|(k, m)| fail(&k, m))?;
    let dns = check_dns(raw.dns).map_err(|(k, m)| fail(&k, m))?;
    let audit = check_audit(raw.audit).map_err(|(k, m)| fail(&k, m))?;

    let egress = raw.egress.unwrap_or_default();
    let deny = raw.deny.unwrap_or_default();

    // Phase 1: everything but the patterns.
    let mut checked_egress = Vec::with_capacity(egress.len());
    for (i, entry) in egress.iter().enumerate() {
        checked_egress
            .push(check_egress(&format!("egress[{i}]"), entry).map_err(|(k, m)| fail(&k, m))?);
    }
    let mut checked_deny = Vec::with_capacity(deny.len());
    for (i, entry) in deny.iter().enumerate() {
        checked_deny.push(check_deny(&format!("deny[{i}]"), entry).map_err(|(k, m)| fail(&k, m))?);
    }

    // Phase 2: host and path patterns, then the policy.
    let mut egress_entries = Vec::with_capacity(egress.len());
    for (i, (entry, checked)) in egress.iter().zip(checked_egress).enumerate() {
        let at = format!("egress[{i}]");
        let host =
            host_pattern(&format!("{at}.host"), &entry.host).map_err(|(k, m)| fail(&k, m))?;
        let mut rules = Vec::with_capacity(checked.rules.len());
        for (r, CheckedRule { methods, paths }) in checked.rules.into_iter().enumerate() {
            let paths = paths
                .map(|p| path_patterns(&format!("{at}.rules[{r}].paths"), &p))
                .transpose()
                .map_err(|(k, m)| fail(&k, m))?;
            rules.push(RequestRule { methods, paths });
        }
        egress_entries.push(EgressEntry {
            host,
            ports: checked.ports,
            rules,
            allow_ips: checked.allow_ips,
            tls: checked.tls,
            credential: None,
        });
    }
    let mut deny_entries = Vec::with_capacity(deny.len());
    for (i, (entry, checked)) in deny.iter().zip(checked_deny).enumerate() {
        let at = format!("deny[{i}]");
        let host =
            host_pattern(&format!("{at}.host"), &entry.host).map_err(|(k, m)| fail(&k, m))?;
        let paths = entry
            .paths
            .as_ref()
            .map(|p| path_patterns(&format!("{at}.paths"), p))
            .transpose()
            .map_err(|(k, m)| fail(&k, m))?;
        deny_entries.push(DenyEntry {
            host,
            ports: checked.ports,
            methods: checked.methods,
            paths,
        });
    }

    Ok(Config {
        source: file.to_path_buf(),
        agent,
        mode,
        listen,
        dns,
        policy: Policy::new(egress_entries, deny_entries),
        audit,
        policy_hash,
        tls: super::Tls::default(),
        credentials: Vec::new(),
    })
}

/// A problem as (key path, message), turned into a [`ConfigError`] by the caller.
type Problem = (String, String);

fn problem(key: impl Into<String>, msg: impl Into<String>) -> Problem {
    (key.into(), msg.into())
}

fn check_agent(name: String, instance: Option<String>) -> Result<Agent, Problem> {
    if name.is_empty() {
        return Err(problem("agent.name", "must not be empty"));
    }
    // The name lands in audit records, metrics labels and log lines; a narrow alphabet
    // keeps it safe and greppable in all of them.
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(problem(
            "agent.name",
            format!("{name:?} contains {c:?}; use letters, digits, `.`, `_` and `-` only"),
        ));
    }
    if let Some(instance) = &instance {
        if instance.is_empty() {
            return Err(problem(
                "agent.instance",
                "must not be empty (omit the key instead)",
            ));
        }
        if instance.chars().any(char::is_control) {
            return Err(problem(
                "agent.instance",
                format!("{instance:?} contains a control character"),
            ));
        }
    }
    Ok(Agent { name, instance })
}

fn socket_addr(key: &str, raw: &str) -> Result<SocketAddr, Problem> {
    raw.parse().map_err(|_| {
        problem(
            key,
            format!(
                "{raw:?} is not an address (expected ip:port, e.g. 127.0.0.1:15001 or [::1]:15001)"
            ),
        )
    })
}

fn check_listen(raw: Option<super::raw::RawListen>) -> Result<Listen, Problem> {
    let (proxy, admin) = match raw {
        Some(l) => (l.proxy, l.admin),
        None => (None, None),
    };
    let proxy = match proxy {
        Some(p) => socket_addr("listen.proxy", &p)?,
        None => DEFAULT_PROXY,
    };
    let admin = admin.map(|a| socket_addr("listen.admin", &a)).transpose()?;
    if let Some(admin) = admin {
        // The agent can reach the proxy address by definition; an admin endpoint there
        // would hand it the control surface the threat model keeps away from it.
        let same_port = admin.port() == proxy.port() && admin.port() != 0;
        let overlapping =
            admin.ip() == proxy.ip() || admin.ip().is_unspecified() || proxy.ip().is_unspecified();
        if same_port && overlapping {
            return Err(problem(
                "listen.admin",
                format!(
                    "{admin} overlaps listen.proxy ({proxy}); the admin endpoint must not be \
                     reachable on the agent's address"
                ),
            ));
        }
    }
    Ok(Listen { proxy, admin })
}

fn check_dns(raw: Option<super::raw::RawDns>) -> Result<Dns, Problem> {
    let upstream = raw.and_then(|d| d.upstream).unwrap_or_default();
    let mut out: Vec<SocketAddr> = Vec::with_capacity(upstream.len());
    for (i, s) in upstream.iter().enumerate() {
        let key = format!("dns.upstream[{i}]");
        let addr = match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let bare = s
                    .strip_prefix('[')
                    .and_then(|x| x.strip_suffix(']'))
                    .unwrap_or(s);
                let ip: IpAddr = bare.parse().map_err(|_| {
                    problem(
                        &key,
                        format!(
                            "{s:?} is not an address (expected ip or ip:port, e.g. 10.0.0.2:53)"
                        ),
                    )
                })?;
                SocketAddr::new(ip, DNS_PORT)
            }
        };
        if addr.port() == 0 {
            return Err(problem(&key, format!("{s:?}: port 0 is not a DNS port")));
        }
        if out.contains(&addr) {
            return Err(problem(&key, format!("{addr} is listed twice")));
        }
        out.push(addr);
    }
    Ok(Dns { upstream: out })
}

fn check_audit(raw: super::raw::RawAudit) -> Result<Audit, Problem> {
    if raw.path.is_empty() {
        return Err(problem("audit.path", "must not be empty"));
    }
    let fsync = match raw.fsync.unwrap_or(RawFsync::Batch) {
        RawFsync::Every => Fsync::Every,
        RawFsync::Batch => Fsync::Batch,
        RawFsync::None => Fsync::None,
    };
    Ok(Audit {
        path: PathBuf::from(raw.path),
        fsync,
    })
}

fn check_ports(key: &str, ports: &[RawPort]) -> Result<Vec<u16>, Problem> {
    if ports.is_empty() {
        return Err(problem(key, "must not be empty (omit it for the default)"));
    }
    let mut out: Vec<u16> = Vec::with_capacity(ports.len());
    for (i, RawPort(p)) in ports.iter().enumerate() {
        if out.contains(p) {
            return Err(problem(
                format!("{key}[{i}]"),
                format!("port {p} is listed twice"),
            ));
        }
        out.push(*p);
    }
    Ok(out)
}

fn check_methods(key: &str, methods: &[String]) -> Result<Vec<String>, Problem> {
    if methods.is_empty() {
        return Err(problem(
            key,
            "must not be empty (omit it to match any method)",
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(methods.len());
    for (i, m) in methods.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if m == "*" {
            return Err(problem(
                &key,
                "\"*\" is not a method; omit `methods` to match any method",
            ));
        }
        if m.is_empty() || !m.bytes().all(is_tchar) {
            return Err(problem(
                &key,
                format!("{m:?} is not an HTTP method (letters, digits and !#$%&'*+-.^_`|~ only)"),
            ));
        }
        let upper = m.to_ascii_uppercase();
        if upper == "CONNECT" {
            // A tunnel is admitted by host, port and tls mode; a CONNECT rule would read
            // as a method filter while actually opening an opaque byte stream.
            return Err(problem(
                &key,
                "CONNECT cannot be used as a rule method; tunnels are governed by host, ports and tls",
            ));
        }
        if !out.contains(&upper) {
            out.push(upper);
        }
    }
    Ok(out)
}

/// RFC 9110 `tchar`: the characters allowed in a method token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_paths_present(key: &str, paths: &[String]) -> Result<(), Problem> {
    if paths.is_empty() {
        return Err(problem(
            key,
            "must not be empty (omit it to match any path)",
        ));
    }
    Ok(())
}

fn check_allow_ips(key: &str, ips: &[String]) -> Result<Vec<IpNet>, Problem> {
    let mut out: Vec<IpNet> = Vec::with_capacity(ips.len());
    for (i, s) in ips.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let net = match s.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                problem(
                    &key,
                    format!("{s:?} is not an IP address or CIDR (e.g. 10.1.2.3 or 10.1.0.0/16)"),
                )
            })?,
        };
        // A CIDR with host bits set is usually a typo for a narrower or wider range;
        // guessing which would silently open more (or less) than intended.
        if net.trunc() != net {
            return Err(problem(
                &key,
                format!("{s:?} has host bits set; did you mean {}?", net.trunc()),
            ));
        }
        if out.contains(&net) {
            return Err(problem(&key, format!("{net} is listed twice")));
        }
        out.push(net);
    }
    Ok(out)
}

fn check_egress(at: &str, e: &RawEgress) -> Result<CheckedEgress, Problem> {
    if e.host.is_empty() {
        return Err(problem(format!("{at}.host"), "must not be empty"));
    }
    let ports = match &e.ports {
        Some(p) => check_ports(&format!("{at}.ports"), p)?,
        None => DEFAULT_PORTS.to_vec(),
    };
    let tls = match e.tls.as_deref() {
        None | Some("passthrough") => TlsMode::Passthrough,
        Some("intercept") => {
            return Err(problem(
                format!("{at}.tls"),
                "intercept is not supported by this version of cordon (use passthrough)",
            ))
        }
        Some(other) => {
            return Err(problem(
                format!("{at}.tls"),
                format!("unknown value {other:?}; expected `passthrough`"),
            ))
        }
    };
    let mut rules = Vec::new();
    if let Some(raw_rules) = &e.rules {
        if raw_rules.is_empty() {
            return Err(problem(
                format!("{at}.rules"),
                "must not be empty (omit it to allow any method and path)",
            ));
        }
        for (r, rule) in raw_rules.iter().enumerate() {
            let rat = format!("{at}.rules[{r}]");
            if rule.methods.is_none() && rule.paths.is_none() {
                return Err(problem(
                    &rat,
                    "a rule needs `methods` and/or `paths` (omit `rules` to allow everything)",
                ));
            }
            let methods = rule
                .methods
                .as_ref()
                .map(|m| check_methods(&format!("{rat}.methods"), m))
                .transpose()?;
            if let Some(paths) = &rule.paths {
                check_paths_present(&format!("{rat}.paths"), paths)?;
            }
            rules.push(CheckedRule {
                methods,
                paths: rule.paths.clone(),
            });
        }
    }
    let allow_ips = match &e.allow_ips {
        Some(ips) => check_allow_ips(&format!("{at}.allow_ips"), ips)?,
        None => Vec::new(),
    };
    Ok(CheckedEgress {
        ports,
        rules,
        allow_ips,
        tls,
    })
}

fn check_deny(at: &str, d: &RawDeny) -> Result<CheckedDeny, Problem> {
    if d.host.is_empty() {
        return Err(problem(format!("{at}.host"), "must not be empty"));
    }
    let ports = d
        .ports
        .as_ref()
        .map(|p| check_ports(&format!("{at}.ports"), p))
        .transpose()?;
    let methods = d
        .methods
        .as_ref()
        .map(|m| check_methods(&format!("{at}.methods"), m))
        .transpose()?;
    if let Some(paths) = &d.paths {
        check_paths_present(&format!("{at}.paths"), paths)?;
    }
    Ok(CheckedDeny { ports, methods })
}

fn host_pattern(key: &str, raw: &str) -> Result<HostPattern, Problem> {
    HostPattern::parse(raw).map_err(|e| problem(key, format!("invalid host {raw:?}: {e}")))
}

fn path_patterns(key: &str, raw: &[String]) -> Result<Vec<PathPattern>, Problem> {
    raw.iter()
        .enumerate()
        .map(|(i, p)| {
            PathPattern::parse(p).map_err(|e| {
                problem(
                    format!("{key}[{i}]"),
                    format!("invalid path pattern {p:?}: {e}"),
                )
            })
        })
        .collect()
}
