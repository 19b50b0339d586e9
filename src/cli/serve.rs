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
    /// `cordon run`: the proxy (and, isolated, the DNS listener) for one child process.
    Run,
}

impl Role {
    fn command(self) -> &'static str {
        match self {
            Role::Serve => "cordon serve",
            Role::Dns => "cordon dns",
            Role::Run => "cordon run",
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
    let running = match start(config, role, Extras::default()).await {
        Ok(running) => running,
        Err(message) => {
            eprintln!("{}: {message}", role.command());
            return 2;
        }
    };
    wait_for_signal().await;
    running.stop(DRAIN_LIMIT).await;
    0
}

/// What `cordon run` adds to a config-driven start.
#[derive(Default)]
pub(crate) struct Extras {
    /// Use this CA instead of `tls.ca_dir` (a per-run CA).
    pub ca_dir: Option<std::path::PathBuf>,
    /// Intercept tunnels no entry covers when observe mode lets them through, so the
    /// requests inside are seen and recorded (`cordon run` without a config).
    pub observe_intercept: bool,
    /// PEM bundles trusted for origins besides the webpki roots and `tls.extra_roots`.
    pub extra_roots: Vec<std::path::PathBuf>,
    /// The `Proxy-Authorization` value the proxy requires of every request.
    pub proxy_authorization: Option<http::HeaderValue>,
}

/// Listeners bound, state built and tasks running: what `serve`, `dns` and `run` share.
pub(crate) struct Running {
    /// The proxy's state (shared with every connection).
    pub state: Arc<State>,
    /// Where the proxy listens, when it does.
    pub proxy_addr: Option<SocketAddr>,
    /// Where the DNS listener (UDP and TCP) listens, when it does.
    pub dns_addr: Option<SocketAddr>,
    audit: crate::audit::AuditHandle,
    writer: AuditWriter,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cmd: &'static str,
}

/// Opens the audit trail, binds the listeners of `role` and starts serving; the error is
/// a one-line message naming the key at fault.
pub(crate) async fn start(config: Config, role: Role, extras: Extras) -> Result<Running, String> {
    let cmd = role.command();
    let metrics = Metrics::new();
    let (audit, writer) = AuditWriter::open(
        &config.audit.path,
        config.audit.fsync,
        metrics.audit_records.clone(),
    )
    .map_err(|err| format!("audit.path: {err}"))?;
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
        None => Resolver::system().map_err(|err| format!("dns: {err}"))?,
    };
    // Without configured upstreams, a DNS listener forwards to the system's name servers.
    let dns_forwarder = match (&forwarder, config.listen.dns) {
        (Some(forwarder), _) => Some(forwarder.clone()),
        (None, Some(_)) => Some(Arc::new(Forwarder::new(
            system_upstreams()?,
            config.dns.min_ttl,
            config.dns.max_ttl,
        ))),
        (None, None) => None,
    };
    let proxy_listener = if role != Role::Dns {
        Some(
            TcpListener::bind(config.listen.proxy)
                .await
                .map_err(|err| {
                    format!("listen.proxy: cannot bind {}: {err}", config.listen.proxy)
                })?,
        )
    } else {
        None
    };
    let dns_sockets = match config.listen.dns {
        Some(addr) => Some(
            bind_dns(addr)
                .await
                .map_err(|err| format!("listen.dns: cannot bind {addr}: {err}"))?,
        ),
        None => None,
    };
    let admin_listener = match config.listen.admin {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|err| format!("listen.admin: cannot bind {addr}: {err}"))?,
        ),
        None => None,
    };

    // `cordon dns` carries no proxy traffic: no CA to load, no credential to fetch.
    let intercepts = role != Role::Dns
        && (extras.observe_intercept
            || config
                .policy
                .egress()
                .iter()
                .any(|entry| entry.tls == TlsMode::Intercept));
    let ca = if intercepts {
        let dir = extras.ca_dir.as_deref().unwrap_or(&config.tls.ca_dir);
        Some(Arc::new(
            LocalCa::load_or_create(dir).map_err(|err| format!("tls.ca_dir: {err}"))?,
        ))
    } else {
        None
    };
    let mut roots = config.tls.extra_roots.clone();
    roots.extend(extras.extra_roots.iter().cloned());
    let upstream_tls = crate::tls::upstream_client_config(&roots)
        .map_err(|err| format!("tls.extra_roots: {err}"))?;
    let credentials = Arc::new(
        Credentials::start_with_roots(
            if role != Role::Dns {
                &config.credentials
            } else {
                &[]
            },
            &roots,
            &metrics,
        )
        .await,
    );
    let stamp = Arc::new(Stamp::new(
        &config.agent.name,
        config.agent.instance.as_deref(),
        &config.policy_hash,
    ));
    let known = crate::cli::known_values(&config)?;
    let scanner = Scanner::new(
        &config.scanning.rules,
        &with_credentials(&known, &credentials),
    )
    .map_err(|err| format!("{}: scanning.rules: {err}", config.source.display()))?;
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
        observe_intercept: extras.observe_intercept,
        proxy_authorization: extras.proxy_authorization,
    };
    let state = Arc::new(State::new(&config, parts));
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(rebuild_scanner_on_rotation(
        state.clone(),
        config.scanning.rules.clone(),
        known,
    )));
    audit.record(lifecycle(&state, &format!("{cmd} started")));
    let (stop, stopped) = watch::channel(false);
    let mut proxy_addr = None;
    if let Some(listener) = proxy_listener {
        announce("proxy", &listener);
        proxy_addr = listener.local_addr().ok();
        tasks.push(tokio::spawn(proxy::serve(
            listener,
            state.clone(),
            stopped.clone(),
        )));
    }
    let mut dns_addr = None;
    if let (Some((udp, tcp)), Some(forwarder)) = (dns_sockets, dns_forwarder) {
        let service = Arc::new(DnsService::new(
            config.policy.clone(),
            config.mode,
            &config.dns,
            forwarder,
            audit.clone(),
            state.stamp.clone(),
            state.metrics.clone(),
        ));
        dns_addr = udp.local_addr().ok();
        if let Some(addr) = dns_addr {
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
    if let Some(listener) = admin_listener {
        announce("admin", &listener);
        tasks.push(tokio::spawn(proxy::admin::serve(
            listener,
            state.clone(),
            stopped.clone(),
        )));
    }
    tracing::info!(mode = ?config.mode, rules = config.policy.egress().len(), deny = config.policy.deny().len(), "cordon is serving");
    Ok(Running {
        state,
        proxy_addr,
        dns_addr,
        audit,
        writer,
        stop,
        tasks,
        cmd,
    })
}

impl Running {
    /// Stops accepting, drains in-flight work for up to `limit`, writes the stop record
    /// and flushes the audit trail.
    pub(crate) async fn stop(self, limit: Duration) {
        let Running {
            state,
            audit,
            writer,
            stop,
            mut tasks,
            cmd,
            ..
        } = self;
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        let _ = stop.send(true);
        // The first task rebuilds the scanner forever; it has nothing to finish.
        if !tasks.is_empty() {
            tasks.remove(0).abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        let left = state.drain.wait(limit).await;
        if left > 0 {
            tracing::warn!(left, "drain limit reached; closing remaining connections");
            state.drain.abort();
            state.drain.wait(Duration::from_secs(2)).await;
        }
        audit.record(lifecycle(&state, &format!("{cmd} stopped")));
        // Tasks still running past the drain limit hold clones of the handle; the writer
        // stops after the records queued so far.
        let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
        tracing::info!("audit trail flushed; bye");
    }
}

/// The name servers of the system's resolv.conf, for a DNS listener without upstreams.
fn system_upstreams() -> Result<Vec<SocketAddr>, String> {
    let (conf, _) = hickory_resolver::system_conf::read_system_conf().map_err(|err| {
        format!(
            "dns.upstream: not set, and the system resolver configuration cannot be read: {err}"
        )
    })?;
    let mut upstreams: Vec<SocketAddr> = Vec::new();
    for server in conf.name_servers() {
        if !upstreams.contains(&server.socket_addr) {
            upstreams.push(server.socket_addr);
        }
    }
    if upstreams.is_empty() {
        return Err("dns.upstream: not set, and the system resolver names no server".into());
    }
    Ok(upstreams)
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
