//! cordon resolves every destination itself, so the address it checks is the one it dials.

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Why a name gave no address.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ResolveFailure(pub String);

/// A caching stub resolver over `dns.upstream`, or over the system's configuration.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// Builds a resolver; with an empty `upstream` it reads resolv.conf and the hosts file.
    pub fn new(upstream: &[SocketAddr]) -> Result<Resolver, ResolveFailure> {
        let mut opts = ResolverOpts::default();
        // Both families are looked up so every address the name has is classified.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = Duration::from_secs(3);
        opts.attempts = 2;
        let builder = if upstream.is_empty() {
            let mut builder = TokioResolver::builder_tokio()
                .map_err(|e| ResolveFailure(format!("system resolver configuration: {e}")))?;
            opts.use_hosts_file = ResolveHosts::Always;
            // Search domains would let an agent reach `db` as `db.corp.internal`.
            opts.ndots = 0;
            *builder.options_mut() = opts;
            builder
        } else {
            let servers: Vec<NameServerConfig> = upstream
                .iter()
                .flat_map(|addr| {
                    [
                        NameServerConfig::new(*addr, Protocol::Udp),
                        NameServerConfig::new(*addr, Protocol::Tcp),
                    ]
                })
                .collect();
            opts.use_hosts_file = ResolveHosts::Never;
            let config =
                ResolverConfig::from_parts(None, vec![], NameServerConfigGroup::from(servers));
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
        };
        Ok(Resolver {
            inner: builder.build(),
        })
    }

    /// Every address of `host` (a canonical host); an IP literal is returned as is.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveFailure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        // A trailing dot makes the name absolute: no search list is ever appended.
        let fqdn = format!("{host}.");
        match self.inner.lookup_ip(fqdn.as_str()).await {
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
