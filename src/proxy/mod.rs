//! The agent-facing HTTP proxy: accept → destination → decide → dial the checked address →
//! forward → record. `handler` reads as that sequence for plain HTTP, `connect` for tunnels.

pub mod admin;
pub mod connect;
pub mod exchange;
pub mod framing;
pub mod handler;
pub mod inject;
pub mod intercept;
pub mod scan;

use crate::audit::{AuditHandle, Record, Stamp};
use crate::config::{Agent, Config, Mode};
use crate::credentials::Credentials;
use crate::metrics::Metrics;
use crate::net::Resolver;
use crate::policy::Policy;
use crate::tls::LocalCa;
use exchange::Counted;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

/// The longest request head cordon reads; larger heads get 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The upstream client for plain HTTP; its URIs always carry the checked IP address.
pub type UpstreamClient =
    Client<HttpConnector<crate::net::pinned::PinnedAddrs>, Counted<scan::OutboundBody>>;

/// Everything a request needs, built once from the config.
pub struct State {
    pub agent: Agent,
    pub mode: Mode,
    pub policy: Policy,
    pub policy_hash: String,
    pub resolver: Resolver,
    pub client: UpstreamClient,
    pub audit: AuditHandle,
    pub metrics: Metrics,
    pub drain: Drain,
    /// cordon's CA, loaded when some egress entry intercepts.
    pub ca: Option<Arc<LocalCa>>,
    /// Verifying TLS towards origins of intercepted tunnels.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Every configured credential.
    pub credentials: Arc<Credentials>,
    /// Names the agent and policy on every record.
    pub stamp: Arc<Stamp>,
    /// The scanner and what findings do, per direction.
    pub scanning: scan::ScanState,
    /// Observe mode intercepts tunnels no entry covers, to see the requests inside.
    pub observe_intercept: bool,
    /// When set, every request to the proxy (plain, or the CONNECT of a tunnel) must carry
    /// exactly this `Proxy-Authorization` value (`cordon run`'s per-run token). A secret:
    /// never logged or recorded.
    pub proxy_authorization: Option<http::HeaderValue>,
}

impl State {
    /// Builds the proxy state from a validated config.
    pub fn new(config: &Config, parts: StateParts) -> State {
        let StateParts {
            stamp,
            scanning,
            resolver,
            audit,
            metrics,
            ca,
            upstream_tls,
            credentials,
            observe_intercept,
            proxy_authorization,
        } = parts;
        let mut connector = HttpConnector::new_with_resolver(crate::net::pinned::PinnedAddrs);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(crate::net::CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .http1_preserve_header_case(true)
            .build(connector);
        State {
            agent: config.agent.clone(),
            mode: config.mode,
            policy: config.policy.clone(),
            policy_hash: config.policy_hash.clone(),
            resolver,
            client,
            audit,
            metrics,
            drain: Drain::default(),
            ca,
            upstream_tls,
            credentials,
            stamp,
            scanning,
            observe_intercept,
            proxy_authorization,
        }
    }

    /// A record stamped with who decided (agent, instance, policy) and a fresh decision id.
    pub fn record(&self, kind: &'static str, decision: &'static str) -> Record {
        self.stamp.record(kind, decision)
    }
}

/// What `State::new` needs besides the config: everything that was opened or fetched.
pub struct StateParts {
    pub stamp: Arc<Stamp>,
    pub scanning: scan::ScanState,
    pub resolver: Resolver,
    pub audit: AuditHandle,
    pub metrics: Metrics,
    pub ca: Option<Arc<LocalCa>>,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub credentials: Arc<Credentials>,
    /// Observe mode intercepts tunnels no entry covers (needs `ca`).
    pub observe_intercept: bool,
    /// The `Proxy-Authorization` value every request must carry, if any.
    pub proxy_authorization: Option<http::HeaderValue>,
}

/// Counts connections and tunnels still running, so shutdown can wait for them.
#[derive(Default)]
pub struct Drain {
    active: AtomicUsize,
    idle: Notify,
    aborting: AtomicBool,
    abort: Notify,
}

/// Held by a connection or tunnel task; dropping it marks the task done.
pub struct DrainGuard(Arc<State>);

impl Drain {
    /// Registers a running task.
    pub fn enter(state: &Arc<State>) -> DrainGuard {
        state.drain.active.fetch_add(1, Ordering::SeqCst);
        DrainGuard(state.clone())
    }

    /// Waits until no task is running or `limit` has passed; returns the number left.
    pub async fn wait(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            let left = self.active.load(Ordering::SeqCst);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active.load(Ordering::SeqCst);
            }
        }
    }

    /// Tells every task still running past the drain limit to stop now, so that it closes
    /// its record while the audit writer is still there to take it.
    pub fn abort(&self) {
        self.aborting.store(true, Ordering::SeqCst);
        self.abort.notify_waiters();
    }

    /// Completes once [`Drain::abort`] has been called.
    pub async fn aborted(&self) {
        let notified = self.abort.notified();
        if self.aborting.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.drain.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drain.idle.notify_waiters();
        }
    }
}

/// Accepts agent connections until `shutdown` turns true; each connection then finishes
/// its current request and closes.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _guard = Drain::enter(&state);
            // The watcher sees each head before hyper does, so its flag is set in time.
            let flags = Arc::new(framing::ConnFlags::default());
            let stream = framing::Watched::new(stream, flags.clone(), MAX_HEAD_BYTES);
            let service_state = state.clone();
            let service = hyper::service::service_fn(move |req| {
                handler::handle(service_state.clone(), flags.clone(), req)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(128)
                .preserve_header_case(true);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        result = conn.as_mut() => result,
                        // Dropping the connection drops its response bodies, which close
                        // their records.
                        _ = state.drain.aborted() => return,
                    }
                }
            };
            if let Err(err) = result {
                handler::connection_error(&state, peer, &err);
            }
        });
    }
}
