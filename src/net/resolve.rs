//! cordon resolves every destination itself, so the address it checks is the one it dials.

use hickory_resolver::config::{LookupIpStrategy, ResolveHosts, ResolverOpts};
use hickory_resolver::TokioResolver;
use std::net::IpAddr;
use std::time::Duration;

/// Why a name gave no address.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ResolveFailure(pub String);

/// Where cordon resolves destinations: through its own forwarder and cache (the same one
/// its DNS listener answers the agent from), or through the system's configuration.
#[derive(Clone)]
pub enum Resolver {
    /// `dns.upstream` is set: cordon's forwarder, shared with the DNS listener.
    Forwarding(std::sync::Arc<crate::dns::Forwarder>),
    /// resolv.conf and the hosts file, through a caching stub resolver.
    System(Box<TokioResolver>),
}

impl Resolver {
    /// Resolves through `forwarder`, which the DNS listener shares.
    pub fn forwarding(forwarder: std::sync::Arc<crate::dns::Forwarder>) -> Resolver {
        Resolver::Forwarding(forwarder)
    }

    /// The system's resolver: resolv.conf and the hosts file.
    pub fn system() -> Result<Resolver, ResolveFailure> {
        let mut opts = ResolverOpts::default();
        // Both families are looked up so every address the name has is classified.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = Duration::from_secs(3);
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Always;
        // Search domains would let an agent reach `db` as `db.corp.internal`.
        opts.ndots = 0;
        let mut builder = TokioResolver::builder_tokio()
            .map_err(|e| ResolveFailure(format!("system resolver configuration: {e}")))?;
        *builder.options_mut() = opts;
        Ok(Resolver::System(Box::new(builder.build())))
    }

    /// Every address of `host` (a canonical host); an IP literal is returned as is.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveFailure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let inner = match self {
            Resolver::Forwarding(forwarder) => {
                return forwarder
                    .resolve_ips(host)
                    .await
                    .map_err(|e| ResolveFailure(e.to_string()));
            }
            Resolver::System(inner) => inner,
        };
        // A trailing dot makes the name absolute: no search list is ever appended.
        let fqdn = format!("{host}.");
        match inner.lookup_ip(fqdn.as_str()).await {
            Ok(lookup) => {
                let addrs: Vec<IpAddr> = lookup.iter().collect();
                if addrs.is_empty() {
                    Err(ResolveFailure(format!("{host} has no address")))
                } else {
                    Ok(addrs)
                }
            }
            Err(err) if err.is_nx_domain() || err.is_no_records_found() => {
                Err(ResolveFailure(format!("{host} does not resolve")))
            }
            Err(err) => Err(ResolveFailure(format!("resolving {host}: {err}"))),
        }
    }
}
