//! `cordon serve --config F`: load, bind, serve until SIGTERM/SIGINT, drain, flush.

use crate::audit::{AuditWriter, Record};
use crate::cli::LogFormat;
use crate::config::{self, Config};
use crate::credentials::Credentials;
use crate::metrics::Metrics;
use crate::net::Resolver;
use crate::policy::TlsMode;
use crate::proxy::{self, State, StateParts};
use crate::tls::LocalCa;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long shutdown waits for in-flight requests and tunnels.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Runs the listeners until SIGTERM/SIGINT; returns the exit code.
pub fn run(config_path: &Path, log_format: LogFormat) -> i32 {
    crate::cli::init_logging(log_format);
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("cordon serve: {err}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cordon serve: cannot start the runtime: {err}");
            return 2;
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> i32 {
    let metrics = Metrics::new();
    let (audit, writer) = match AuditWriter::open(
        &config.audit.path,
        config.audit.fsync,
        metrics.audit_records.clone(),
    ) {
        Ok(pair) => pair,
        Err(err) => {
            eprintln!("cordon serve: audit.path: {err}");
            return 2;
        }
    };
    let resolver = match Resolver::new(&config.dns.upstream) {
        Ok(resolver) => resolver,
        Err(err) => {
            eprintln!("cordon serve: dns: {err}");
            return 2;
        }
    };
    let proxy_listener = match TcpListener::bind(config.listen.proxy).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "cordon serve: listen.proxy: cannot bind {}: {err}",
                config.listen.proxy
            );
            return 2;
        }
    };
    let admin_listener = match config.listen.admin {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                eprintln!("cordon serve: listen.admin: cannot bind {addr}: {err}");
                return 2;
            }
        },
        None => None,
    };

    let intercepts = config
        .policy
        .egress()
        .iter()
        .any(|entry| entry.tls == TlsMode::Intercept);
    let ca = if intercepts {
        match LocalCa::load_or_create(&config.tls.ca_dir) {
            Ok(ca) => Some(Arc::new(ca)),
            Err(err) => {
                eprintln!("cordon serve: tls.ca_dir: {err}");
                return 2;
            }
        }
    } else {
        None
    };
    let upstream_tls = match crate::tls::upstream_client_config(&config.tls.extra_roots) {
        Ok(tls) => tls,
        Err(err) => {
            eprintln!("cordon serve: tls.extra_roots: {err}");
            return 2;
        }
    };
    let credentials = Arc::new(
        Credentials::start_with_roots(&config.credentials, &config.tls.extra_roots, &metrics).await,
    );
    let parts = StateParts {
        resolver,
        audit: audit.clone(),
        metrics,
        ca,
        upstream_tls,
        credentials,
    };
    let state = Arc::new(State::new(&config, parts));
    audit.record(lifecycle(&state, "serve started"));
    let (stop, stopped) = watch::channel(false);
    announce("proxy", &proxy_listener);
    let proxy_task = tokio::spawn(proxy::serve(proxy_listener, state.clone(), stopped.clone()));
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
    let _ = proxy_task.await;
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    let left = state.drain.wait(DRAIN_LIMIT).await;
    if left > 0 {
        tracing::warn!(left, "drain limit reached; closing remaining connections");
        state.drain.abort();
        state.drain.wait(Duration::from_secs(2)).await;
    }
    audit.record(lifecycle(&state, "serve stopped"));
    // Tasks still running past the drain limit hold clones of the handle; the writer stops
    // after the records queued so far.
    let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
    tracing::info!("audit trail flushed; bye");
    0
}

fn lifecycle(state: &State, what: &str) -> Record {
    Record {
        detail: Some(what.to_owned()),
        ..state.record("config", "allow")
    }
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
