//! `cordon serve --config F`: load, bind, serve until SIGTERM/SIGINT, drain, flush.

use crate::audit::{AuditWriter, Record, Stamp};
use crate::cli::LogFormat;
use crate::config::{self, Config};
use crate::credentials::Credentials;
use crate::dns::{DnsService, Forwarder};
use crate::metrics::Metrics;
use crate::net::Resolver;
use crate::policy::TlsMode;
use crate::proxy::scan::ScanState;
use crate::proxy::{self, State, StateParts};
use crate::scan::Scanner;
use crate::tls::LocalCa;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

/// How long shutdown waits for in-flight requests and tunnels.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Which listeners a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `cordon serve`: the proxy, plus the admin and DNS listeners when configured.
    Serve,
    /// `cordon dns`: the DNS listener (required), plus the admin listener when configured.
    Dns,
}

impl Role {
    fn command(self) -> &'static str {
        match self {
            Role::Serve => "cordon serve",
            Role::Dns => "cordon dns",
        }
    }
}

/// Runs the proxy (and the other configured listeners) until SIGTERM/SIGINT.
pub fn run(config_path: &Path, log_format: LogFormat) -> i32 {
    run_role(config_path, log_format, Role::Serve)
}

/// Runs the listeners of `role` until SIGTERM/SIGINT; returns the exit code.
pub fn run_role(config_path: &Path, log_format: LogFormat, role: Role) -> i32 {
    crate::cli::init_logging(log_format);
    let cmd = role.command();
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{cmd}: {err}");
            return 2;
        }
    };
    if role == Role::Dns && config.listen.dns.is_none() {
        eprintln!(
            "{cmd}: {}: listen.dns: is required for cordon dns",
            config.source.display()
        );
        return 2;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{cmd}: cannot start the runtime: {err}");
            return 2;
        }
    };
    runtime.block_on(serve(config, role))
}

async fn serve(config: Config, role: Role) -> i32 {
    let cmd = role.command();
    let metrics = Metrics::new();
    let (audit, writer) = match AuditWriter::open(
        &config.audit.path,
        config.audit.fsync,
        metrics.audit_records.clone(),
    ) {
        Ok(pair) => pair,
        Err(err) => {
            eprintln!("{cmd}: audit.path: {err}");
            return 2;
        }
    };
    // One forwarder and cache for the proxy and the DNS listener: both see the same answers.
    let forwarder = (!config.dns.upstream.is_empty()).then(|| {
        Arc::new(Forwarder::new(
            config.dns.upstream.clone(),
            config.dns.min_ttl,
            config.dns.max_ttl,
        ))
    });
    let resolver = match &forwarder {
        Some(forwarder) => Resolver::forwarding(forwarder.clone()),
        None => match Resolver::system() {
            Ok(resolver) => resolver,
            Err(err) => {
                eprintln!("{cmd}: dns: {err}");
                return 2;
            }
        },
    };
    let proxy_listener = if role == Role::Serve {
        match TcpListener::bind(config.listen.proxy).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                eprintln!(
                    "{cmd}: listen.proxy: cannot bind {}: {err}",
                    config.listen.proxy
                );
                return 2;
            }
        }
    } else {
        None
    };
    let dns_sockets = match config.listen.dns {
        Some(addr) => match bind_dns(addr).await {
            Ok(sockets) => Some(sockets),
            Err(err) => {
                eprintln!("{cmd}: listen.dns: cannot bind {addr}: {err}");
                return 2;
            }
        },
        None => None,
    };
    let admin_listener = match config.listen.admin {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                eprintln!("{cmd}: listen.admin: cannot bind {addr}: {err}");
                return 2;
            }
        },
        None => None,
    };

    // `cordon dns` carries no proxy traffic: no CA to load, no credential to fetch.
    let intercepts = role == Role::Serve
        && config
            .policy
            .egress()
            .iter()
            .any(|entry| entry.tls == TlsMode::Intercept);
    let ca = if intercepts {
        match LocalCa::load_or_create(&config.tls.ca_dir) {
            Ok(ca) => Some(Arc::new(ca)),
            Err(err) => {
                eprintln!("{cmd}: tls.ca_dir: {err}");
                return 2;
            }
        }
    } else {
        None
    };
    let upstream_tls = match crate::tls::upstream_client_config(&config.tls.extra_roots) {
        Ok(tls) => tls,
        Err(err) => {
            eprintln!("{cmd}: tls.extra_roots: {err}");
            return 2;
        }
    };
    let credentials = Arc::new(
        Credentials::start_with_roots(
            if role == Role::Serve {
                &config.credentials
            } else {
                &[]
            },
            &config.tls.extra_roots,
            &metrics,
        )
        .await,
    );
    let stamp = Arc::new(Stamp::new(
        &config.agent.name,
        config.agent.instance.as_deref(),
        &config.policy_hash,
    ));
    let known = match crate::cli::known_values(&config) {
        Ok(known) => known,
        Err(err) => {
            eprintln!("{cmd}: {err}");
            return 2;
        }
    };
    let scanner = match Scanner::new(
        &config.scanning.rules,
        &with_credentials(&known, &credentials),
    ) {
        Ok(scanner) => scanner,
        Err(err) => {
            eprintln!("{cmd}: {}: scanning.rules: {err}", config.source.display());
            return 2;
        }
    };
    let scanning = ScanState::new(&config.scanning, scanner);
    let parts = StateParts {
        stamp,
        scanning,
        resolver,
        audit: audit.clone(),
        metrics,
        ca,
        upstream_tls,
        credentials,
    };
    let state = Arc::new(State::new(&config, parts));
    tokio::spawn(rebuild_scanner_on_rotation(
        state.clone(),
        config.scanning.rules.clone(),
        known,
    ));
    audit.record(lifecycle(&state, &format!("{cmd} started")));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    if let Some(listener) = proxy_listener {
        announce("proxy", &listener);
        tasks.push(tokio::spawn(proxy::serve(
            listener,
            state.clone(),
            stopped.clone(),
        )));
    }
    if let (Some((udp, tcp)), Some(forwarder)) = (dns_sockets, forwarder) {
        let service = Arc::new(DnsService::new(
            config.policy.clone(),
            &config.dns,
            forwarder,
            audit.clone(),
            state.stamp.clone(),
            state.metrics.clone(),
        ));
        if let Ok(addr) = udp.local_addr() {
            tracing::info!("listening listener=dns addr={addr}");
        }
        tasks.push(tokio::spawn(crate::dns::server::serve_udp(
            udp,
            service.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(crate::dns::server::serve_tcp(
            tcp,
            service.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(crate::dns::server::flush_records(
            service,
            stopped.clone(),
        )));
    }
    let admin_task = admin_listener.map(|listener| {
        announce("admin", &listener);
        tokio::spawn(proxy::admin::serve(
            listener,
            state.clone(),
            stopped.clone(),
        ))
    });
    tracing::info!(mode = ?config.mode, rules = config.policy.egress().len(), deny = config.policy.deny().len(), "cordon is serving");

    wait_for_signal().await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    let left = state.drain.wait(DRAIN_LIMIT).await;
    if left > 0 {
        tracing::warn!(left, "drain limit reached; closing remaining connections");
        state.drain.abort();
        state.drain.wait(Duration::from_secs(2)).await;
    }
    audit.record(lifecycle(&state, &format!("{cmd} stopped")));
    // Tasks still running past the drain limit hold clones of the handle; the writer stops
    // after the records queued so far.
    let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
    tracing::info!("audit trail flushed; bye");
    0
}

/// The known values plus every credential's current value, as the scanner matches them.
fn with_credentials(
    known: &[(String, String)],
    credentials: &Credentials,
) -> Vec<(String, String)> {
    let mut all = known.to_vec();
    for cache in credentials.all() {
        if let Ok(issued) = cache.current() {
            all.push((
                format!("credential:{}", cache.id()),
                issued.secret.expose().to_owned(),
            ));
        }
    }
    all
}

/// Rebuilds the scanner when a credential's value changes, so the new value is matched
/// (and an origin echoing it is redacted) from then on.
async fn rebuild_scanner_on_rotation(
    state: Arc<State>,
    rules: Vec<crate::scan::CustomRule>,
    known: Vec<(String, String)>,
) {
    let versions = |state: &State| -> Vec<(String, u64)> {
        state
            .credentials
            .all()
            .map(|c| {
                (
                    c.id().to_owned(),
                    c.current().map(|i| i.version).unwrap_or(0),
                )
            })
            .collect()
    };
    let mut seen = versions(&state);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = versions(&state);
        if now == seen {
            continue;
        }
        seen = now;
        let values = with_credentials(&known, &state.credentials);
        let rules = rules.clone();
        match tokio::task::spawn_blocking(move || Scanner::new(&rules, &values)).await {
            Ok(Ok(scanner)) => state.scanning.replace(scanner),
            Ok(Err(err)) => {
                tracing::error!(error = %err, "rebuilding the scanner failed; the old one stays")
            }
            Err(_) => tracing::error!("rebuilding the scanner panicked; the old one stays"),
        }
    }
}

fn lifecycle(state: &State, what: &str) -> Record {
    Record {
        detail: Some(what.to_owned()),
        ..state.record("config", "allow")
    }
}

/// Binds UDP and TCP on one address; with port 0, TCP takes the port UDP was given.
async fn bind_dns(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(udp.local_addr()?).await?;
    Ok((udp, tcp))
}

fn announce(name: &str, listener: &TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        // Tests and scripts read this line to learn ports chosen with `:0`.
        tracing::info!("listening listener={name} addr={addr}");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
