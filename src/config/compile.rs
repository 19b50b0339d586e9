//! Validation of the raw structs and compilation into [`Config`].
//!
//! Two phases: first every check that needs only this module (addresses, ports, methods,
//! CIDRs, names), then the host and path patterns and the policy itself, which belong to
//! `policy`. A config is only ever accepted whole.

use super::raw::{
    RawConfig, RawCredential, RawDeny, RawEgress, RawFsync, RawMode, RawPort, RawSource, RawTls,
};
use super::{Agent, Audit, Config, ConfigError, Dns, Listen, Mode, Tls};
use crate::audit::Fsync;
use crate::credentials::{CredentialSpec, InjectSpec, SourceSpec};
use crate::policy::{
    DenyEntry, EgressEntry, HostPattern, PathPattern, Policy, RequestRule, TlsMode,
};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The only config format version this release reads.
const VERSION: u64 = 1;
/// Where the proxy listens when `listen.proxy` is absent.
pub(super) const DEFAULT_PROXY: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15001);
/// Ports an egress entry covers when it names none: plain HTTP and HTTPS.
pub(super) const DEFAULT_PORTS: [u16; 2] = [80, 443];
/// Port used for a DNS upstream written without one.
const DNS_PORT: u16 = 53;
/// How often a file source is looked at when `refresh` is absent.
const DEFAULT_FILE_REFRESH: Duration = Duration::from_secs(1);
/// How long an exec plug-in may run when `timeout` is absent (kubectl has no default;
/// cordon needs one so a hung plug-in cannot stall refreshes for ever).
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest placeholder accepted: long enough that it cannot turn up in a request by
/// accident and be swapped for a secret.
const MIN_PLACEHOLDER_LEN: usize = 12;

/// An egress entry whose non-pattern fields are already checked.
struct CheckedEgress {
    ports: Vec<u16>,
    rules: Vec<CheckedRule>,
    allow_ips: Vec<IpNet>,
    tls: TlsMode,
    credential: Option<String>,
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
    let scanning = check_scanning(raw.scanning).map_err(|(k, m)| fail(&k, m))?;
    let audit = check_audit(raw.audit).map_err(|(k, m)| fail(&k, m))?;
    let tls = check_tls(raw.tls).map_err(|(k, m)| fail(&k, m))?;
    let credentials =
        check_credentials(raw.credentials.unwrap_or_default()).map_err(|(k, m)| fail(&k, m))?;
    let credential_ids: Vec<&str> = credentials.iter().map(|c| c.id.as_str()).collect();

    let egress = raw.egress.unwrap_or_default();
    let deny = raw.deny.unwrap_or_default();

    // Phase 1: everything but the patterns.
    let mut checked_egress = Vec::with_capacity(egress.len());
    for (i, entry) in egress.iter().enumerate() {
        checked_egress.push(
            check_egress(&format!("egress[{i}]"), entry, &credential_ids)
                .map_err(|(k, m)| fail(&k, m))?,
        );
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
            credential: checked.credential,
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

    if listen.dns.is_some() && dns.upstream.is_empty() {
        // Forwarding to the system resolver could mean forwarding to cordon itself.
        return Err(fail(
            "listen.dns",
            "the DNS listener needs dns.upstream (the servers it forwards allowed names to)"
                .to_owned(),
        ));
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
        tls,
        credentials,
        scanning,
    })
}

fn scan_action(
    key: &str,
    raw: Option<String>,
    default: super::ScanAction,
) -> Result<super::ScanAction, Problem> {
    use super::ScanAction;
    match raw.as_deref() {
        None => Ok(default),
        Some("block") => Ok(ScanAction::Block),
        Some("redact") => Ok(ScanAction::Redact),
        Some("log") => Ok(ScanAction::Log),
        Some(other) => Err(problem(
            key,
            format!("{other:?} is not an action (block, redact or log)"),
        )),
    }
}

fn check_scanning(raw: Option<super::raw::RawScanning>) -> Result<super::Scanning, Problem> {
    let Some(raw) = raw else {
        return Ok(super::Scanning::default());
    };
    let outbound = scan_action("scanning.outbound", raw.outbound, super::ScanAction::Block)?;
    let inbound = scan_action("scanning.inbound", raw.inbound, super::ScanAction::Redact)?;
    let output = scan_action("scanning.output", raw.output, super::ScanAction::Redact)?;
    let mut rules = Vec::new();
    for (i, rule) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        let at = format!("scanning.rules[{i}]");
        if rule.id.is_empty()
            || !rule
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(problem(
                format!("{at}.id"),
                format!("{:?} is not a rule id ([A-Za-z0-9_-]+)", rule.id),
            ));
        }
        if rules
            .iter()
            .any(|r: &crate::scan::CustomRule| r.id == rule.id)
        {
            return Err(problem(
                format!("{at}.id"),
                format!("{} is defined twice", rule.id),
            ));
        }
        if rule.keywords.is_empty() || rule.keywords.iter().any(|k| k.is_empty()) {
            return Err(problem(
                format!("{at}.keywords"),
                "at least one non-empty keyword is needed for the prefilter",
            ));
        }
        if let Err(err) = regex::Regex::new(&rule.regex) {
            return Err(problem(
                format!("{at}.regex"),
                format!("invalid regex: {err}"),
            ));
        }
        if let Some(entropy) = rule.entropy {
            if !(0.0..=8.0).contains(&entropy) {
                return Err(problem(
                    format!("{at}.entropy"),
                    "must be between 0 and 8 bits per byte",
                ));
            }
        }
        rules.push(crate::scan::CustomRule {
            id: rule.id,
            regex: rule.regex,
            keywords: rule.keywords,
            entropy: rule.entropy,
        });
    }
    let mut known_values = Vec::new();
    for (i, known) in raw.known_values.unwrap_or_default().into_iter().enumerate() {
        let at = format!("scanning.known_values[{i}]");
        known_values.push(match (known.env, known.file) {
            (Some(env), None) if !env.is_empty() => super::KnownValue::Env(env),
            (None, Some(file)) if !file.is_empty() => super::KnownValue::File(PathBuf::from(file)),
            _ => return Err(problem(at, "give exactly one of `env` or `file`")),
        });
    }
    Ok(super::Scanning {
        outbound,
        inbound,
        output,
        rules,
        known_values,
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
    let (proxy, admin, dns) = match raw {
        Some(l) => (l.proxy, l.admin, l.dns),
        None => (None, None, None),
    };
    let dns = dns.map(|d| socket_addr("listen.dns", &d)).transpose()?;
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
    Ok(Listen { proxy, admin, dns })
}

/// Record types the resolver may answer beyond A, AAAA and CNAME, when configured.
const OPTIONAL_DNS_TYPES: &[&str] = &["TXT", "HTTPS", "SVCB"];

fn check_dns(raw: Option<super::raw::RawDns>) -> Result<Dns, Problem> {
    let (upstream, block, allow, types, min_ttl, max_ttl) = match raw {
        Some(d) => (
            d.upstream,
            d.block_private_answers,
            d.allow,
            d.allow_types,
            d.min_ttl,
            d.max_ttl,
        ),
        None => (None, None, None, None, None, None),
    };
    let upstream = upstream.unwrap_or_default();
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
    let mut patterns = Vec::new();
    for (i, name) in allow.unwrap_or_default().iter().enumerate() {
        let pattern = crate::policy::HostPattern::parse(name).map_err(|e| {
            problem(
                format!("dns.allow[{i}]"),
                format!("invalid name {name:?}: {e}"),
            )
        })?;
        patterns.push(pattern);
    }
    let mut allow_types = Vec::new();
    for (i, t) in types.unwrap_or_default().iter().enumerate() {
        let upper = t.to_ascii_uppercase();
        if !OPTIONAL_DNS_TYPES.contains(&upper.as_str()) {
            return Err(problem(
                format!("dns.allow_types[{i}]"),
                format!("{t:?} cannot be allowed (choose from {}; A, AAAA and CNAME always are, ANY never)", OPTIONAL_DNS_TYPES.join(", ")),
            ));
        }
        allow_types.push(upper);
    }
    let min_ttl = min_ttl
        .map(|d| duration("dns.min_ttl", &d))
        .transpose()?
        .unwrap_or(std::time::Duration::ZERO);
    let max_ttl = max_ttl
        .map(|d| duration("dns.max_ttl", &d))
        .transpose()?
        .unwrap_or(std::time::Duration::from_secs(3600));
    if min_ttl > max_ttl {
        return Err(problem(
            "dns.min_ttl",
            "must not be larger than dns.max_ttl",
        ));
    }
    Ok(Dns {
        upstream: out,
        block_private_answers: block.unwrap_or(true),
        allow: patterns,
        allow_types,
        min_ttl,
        max_ttl,
    })
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

fn check_egress(
    at: &str,
    e: &RawEgress,
    credential_ids: &[&str],
) -> Result<CheckedEgress, Problem> {
    if e.host.is_empty() {
        return Err(problem(format!("{at}.host"), "must not be empty"));
    }
    let ports = match &e.ports {
        Some(p) => check_ports(&format!("{at}.ports"), p)?,
        None => DEFAULT_PORTS.to_vec(),
    };
    let credential = match &e.credential {
        None => None,
        Some(id) if credential_ids.contains(&id.as_str()) => Some(id.clone()),
        Some(id) => {
            let known = if credential_ids.is_empty() {
                "no credentials are defined".to_string()
            } else {
                format!("defined: {}", credential_ids.join(", "))
            };
            return Err(problem(
                format!("{at}.credential"),
                format!("{id:?} is not an entry of `credentials` ({known})"),
            ));
        }
    };
    let tls = match e.tls.as_deref() {
        // Rules and credentials only mean something where cordon can see the requests,
        // so an entry that has either is intercepted unless it says otherwise.
        None if e.rules.is_some() || credential.is_some() => TlsMode::Intercept,
        None => TlsMode::Passthrough,
        Some("intercept") => TlsMode::Intercept,
        Some("passthrough") => {
            if credential.is_some() {
                return Err(problem(
                    format!("{at}.credential"),
                    "cannot be used with `tls: passthrough`: cordon cannot inject a credential \
                     into a tunnel it does not open (use `tls: intercept` or drop `tls`)",
                ));
            }
            TlsMode::Passthrough
        }
        Some(other) => {
            return Err(problem(
                format!("{at}.tls"),
                format!("unknown value {other:?}; expected `intercept` or `passthrough`"),
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
        credential,
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

fn check_tls(raw: Option<RawTls>) -> Result<Tls, Problem> {
    let Some(raw) = raw else {
        return Ok(Tls::default());
    };
    let ca_dir = match raw.ca_dir {
        Some(dir) if dir.is_empty() => {
            return Err(problem(
                "tls.ca_dir",
                "must not be empty (omit it for the default)",
            ))
        }
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(super::DEFAULT_CA_DIR),
    };
    let mut extra_roots: Vec<PathBuf> = Vec::new();
    for (i, root) in raw.extra_roots.unwrap_or_default().into_iter().enumerate() {
        let key = format!("tls.extra_roots[{i}]");
        if root.is_empty() {
            return Err(problem(&key, "must not be empty"));
        }
        let path = PathBuf::from(root);
        // Checked now so a typo fails at start rather than as an unexplained certificate
        // error on the first intercepted request.
        if !path.is_file() {
            return Err(problem(
                &key,
                format!("{} does not exist or is not a file", path.display()),
            ));
        }
        if extra_roots.contains(&path) {
            return Err(problem(&key, format!("{} is listed twice", path.display())));
        }
        extra_roots.push(path);
    }
    Ok(Tls {
        ca_dir,
        extra_roots,
    })
}

/// Validates every credential; the map is sorted by id, so the result is too.
fn check_credentials(raw: BTreeMap<String, RawCredential>) -> Result<Vec<CredentialSpec>, Problem> {
    let mut out: Vec<CredentialSpec> = Vec::with_capacity(raw.len());
    for (id, credential) in raw {
        let spec = check_credential(&id, credential)?;
        let at = format!("credentials.{id}");
        if let Some(other) = out.iter().find(|o| o.placeholder == spec.placeholder) {
            // Two credentials behind one placeholder would make the swap ambiguous.
            return Err(problem(
                format!("{at}.placeholder"),
                format!(
                    "{} is also the placeholder of credentials.{}",
                    spec.placeholder, other.id
                ),
            ));
        }
        if let Some(other) = out.iter().find(|o| {
            o.placeholder.contains(&spec.placeholder) || spec.placeholder.contains(&o.placeholder)
        }) {
            // One placeholder inside another would be swapped, or flagged as misused, inside
            // the longer one.
            return Err(problem(
                format!("{at}.placeholder"),
                format!(
                    "{} and the placeholder of credentials.{} ({}) contain one another; \
                     choose placeholders that do not overlap",
                    spec.placeholder, other.id, other.placeholder
                ),
            ));
        }
        if let Some(env) = &spec.env {
            if let Some(other) = out.iter().find(|o| o.env.as_ref() == Some(env)) {
                return Err(problem(
                    format!("{at}.env"),
                    format!("{env} is also exported by credentials.{}", other.id),
                ));
            }
        }
        out.push(spec);
    }
    Ok(out)
}

fn check_credential(id: &str, raw: RawCredential) -> Result<CredentialSpec, Problem> {
    let at = format!("credentials.{id}");
    // Ids end up in metrics labels, audit records and placeholder names.
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(problem(
            &at,
            format!("{id:?} is not a credential id (use a-z, 0-9, `_` and `-` only)"),
        ));
    }
    let source = check_source(&format!("{at}.source"), raw.source)?;
    let inject = raw
        .inject
        .map(|i| check_inject(&format!("{at}.inject"), i.header, i.value))
        .transpose()?;
    let placeholder = match raw.placeholder {
        Some(p) => p,
        None => format!(
            "CORDON_PLACEHOLDER_{}",
            id.to_ascii_uppercase().replace('-', "_")
        ),
    };
    if placeholder.len() < MIN_PLACEHOLDER_LEN
        || !placeholder
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(problem(
            format!("{at}.placeholder"),
            format!(
                "{placeholder:?} is not a usable placeholder (at least {MIN_PLACEHOLDER_LEN} \
                 characters of A-Z, a-z, 0-9 and `_`)"
            ),
        ));
    }
    if let Some(env) = &raw.env {
        let mut bytes = env.bytes();
        let valid = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(problem(
                format!("{at}.env"),
                format!("{env:?} is not an environment variable name (A-Z, a-z, 0-9, `_`; not starting with a digit)"),
            ));
        }
    }
    Ok(CredentialSpec {
        id: id.to_string(),
        source,
        inject,
        placeholder,
        env: raw.env,
        require_placeholder: raw.require_placeholder.unwrap_or(false),
    })
}

fn check_source(at: &str, raw: RawSource) -> Result<SourceSpec, Problem> {
    let kinds: Vec<&str> = [
        ("env", raw.env.is_some()),
        ("file", raw.file.is_some()),
        ("exec", raw.exec.is_some()),
        ("oauth2", raw.oauth2.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    match kinds.len() {
        0 => return Err(problem(at, "needs one of `env`, `file`, `exec`, `oauth2`")),
        1 => {}
        _ => {
            return Err(problem(
                at,
                format!(
                    "has more than one kind ({}); a credential has exactly one source",
                    kinds.join(", ")
                ),
            ))
        }
    }
    if raw.refresh.is_some() && raw.file.is_none() {
        return Err(problem(
            format!("{at}.refresh"),
            "only applies to a `file` source",
        ));
    }
    if let Some(var) = raw.env {
        if var.is_empty() || var.contains('=') || var.contains('\0') {
            return Err(problem(
                format!("{at}.env"),
                format!("{var:?} is not an environment variable name"),
            ));
        }
        return Ok(SourceSpec::Env(var));
    }
    if let Some(path) = raw.file {
        if path.is_empty() {
            return Err(problem(format!("{at}.file"), "must not be empty"));
        }
        let refresh = match raw.refresh {
            Some(r) => duration(&format!("{at}.refresh"), &r)?,
            None => DEFAULT_FILE_REFRESH,
        };
        return Ok(SourceSpec::File {
            path: PathBuf::from(path),
            refresh,
        });
    }
    if let Some(exec) = raw.exec {
        let key = format!("{at}.exec.command");
        if exec.command.is_empty() {
            return Err(problem(&key, "must not be empty"));
        }
        let mut command = exec.command;
        command[0] = find_program(&format!("{key}[0]"), &command[0])?;
        let timeout = match exec.timeout {
            Some(t) => duration(&format!("{at}.exec.timeout"), &t)?,
            None => DEFAULT_EXEC_TIMEOUT,
        };
        return Ok(SourceSpec::Exec { command, timeout });
    }
    let Some(oauth2) = raw.oauth2 else {
        unreachable!("exactly one source kind is present");
    };
    let key = format!("{at}.oauth2");
    check_token_url(&format!("{key}.token_url"), &oauth2.token_url)?;
    if oauth2.client_id.is_empty() || oauth2.client_id.chars().any(char::is_control) {
        return Err(problem(
            format!("{key}.client_id"),
            "must be non-empty text without control characters",
        ));
    }
    if oauth2.client_secret_file.is_empty() {
        return Err(problem(
            format!("{key}.client_secret_file"),
            "must not be empty",
        ));
    }
    let scopes = oauth2.scopes.unwrap_or_default();
    for (i, scope) in scopes.iter().enumerate() {
        // RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(problem(
                format!("{key}.scopes[{i}]"),
                format!("{scope:?} is not an OAuth2 scope (printable ASCII without spaces, `\"` or `\\`)"),
            ));
        }
    }
    Ok(SourceSpec::OAuth2 {
        token_url: oauth2.token_url,
        client_id: oauth2.client_id,
        client_secret_file: PathBuf::from(oauth2.client_secret_file),
        scopes,
    })
}

fn duration(key: &str, raw: &str) -> Result<Duration, Problem> {
    match humantime::parse_duration(raw) {
        Ok(d) if d.is_zero() => Err(problem(key, "must be longer than zero")),
        Ok(d) => Ok(d),
        Err(_) => Err(problem(
            key,
            format!("{raw:?} is not a duration (e.g. 500ms, 10s, 5m)"),
        )),
    }
}

/// Resolves an exec plug-in's program now, as an absolute path, so a missing plug-in is a
/// config error and the refresher never depends on `PATH` later.
fn find_program(key: &str, program: &str) -> Result<String, Problem> {
    let path = Path::new(program);
    if program.contains('/') {
        if !path.is_absolute() {
            return Err(problem(
                key,
                format!("{program:?} must be an absolute path or a bare name found in PATH"),
            ));
        }
        if !crate::os::is_executable(path) {
            return Err(problem(
                key,
                format!("{program} does not exist or is not an executable file"),
            ));
        }
        return Ok(program.to_string());
    }
    if program.is_empty() {
        return Err(problem(key, "must not be empty"));
    }
    crate::os::which(program)
        .map(|found| found.display().to_string())
        .ok_or_else(|| problem(key, format!("{program:?} was not found in PATH")))
}

fn check_token_url(key: &str, raw: &str) -> Result<(), Problem> {
    let bad = |why: &str| problem(key, format!("{raw:?} {why}"));
    let uri: http::Uri = raw
        .parse()
        .map_err(|_| bad("is not a URL (expected http(s)://host/path)"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("must start with http:// or https://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("has no host"));
    };
    // Userinfo would put a password in the config text and in `cordon check` output;
    // the client secret belongs in `client_secret_file`.
    if authority.as_str().contains('@') {
        return Err(bad(
            "must not contain user information (put the secret in client_secret_file)",
        ));
    }
    if authority.host().is_empty() {
        return Err(bad("has no host"));
    }
    Ok(())
}

/// Hop-by-hop and framing headers: injecting into them would either be stripped before
/// forwarding or change how the message is delimited.
const FORBIDDEN_INJECT_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

fn check_inject(at: &str, header: String, value: String) -> Result<InjectSpec, Problem> {
    let name = http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
        problem(
            format!("{at}.header"),
            format!("{header:?} is not a valid header name"),
        )
    })?;
    if FORBIDDEN_INJECT_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("x-cordon-") {
        return Err(problem(
            format!("{at}.header"),
            format!("{header} cannot carry a credential (hop-by-hop, framing, Host or cordon's own header)"),
        ));
    }
    if value.matches("{secret}").count() != 1 {
        return Err(problem(
            format!("{at}.value"),
            format!("{value:?} must contain `{{secret}}` exactly once"),
        ));
    }
    // The template's fixed text must itself be a valid header value.
    if http::HeaderValue::from_str(&value.replace("{secret}", "x")).is_err() {
        return Err(problem(
            format!("{at}.value"),
            format!("{value:?} is not a valid header value"),
        ));
    }
    Ok(InjectSpec { header, value })
}
