//! Short-lived credentials: where they come from (env, file, exec, oauth2), a cache per
//! credential that refreshes ahead of expiry, and the secret type that never prints itself.
//!
//! Only a cache's own refresher task (or [`CredentialCache::rotate_now`]) ever asks a
//! source for a value, one fetch at a time; requests only read the current value, which
//! never waits. A refresh that fails keeps the old value while it is still valid and is
//! retried with backoff; an expired value is never handed out.
//!
//! `cordon_credential_expiry_seconds{credential}` is kept current by the refresher (at least
//! every five seconds): the seconds the current value has left, 0 when there is no valid
//! value, and no series at all for a value without an expiry (so an alert on "expires
//! soon" never fires for a credential that cannot expire).

mod exec;
mod oauth2;
mod parse;

use parse::Fetched;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, Notify};

/// Where a credential's value comes from (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// An environment variable of cordon's own process, read once at start.
    Env(String),
    /// A file holding the raw token, or JSON `{"token": …, "expires_at": …}`; re-read on change.
    File {
        /// The file.
        path: PathBuf,
        /// How often it is looked at for a change.
        refresh: Duration,
    },
    /// A plug-in printing kubectl ExecCredential v1 JSON; run without a shell.
    Exec {
        /// argv; `command[0]` is an absolute path (resolved from `PATH` at load time).
        command: Vec<String>,
        /// How long one run may take before it is killed.
        timeout: Duration,
    },
    /// OAuth2 client credentials grant.
    OAuth2 {
        /// `http(s)://` URL of the token endpoint.
        token_url: String,
        /// Sent as `client_id`.
        client_id: String,
        /// Holds the client secret; read on every request.
        client_secret_file: PathBuf,
        /// Sent space-separated as `scope` when not empty.
        scopes: Vec<String>,
    },
}

/// How the value is put into an outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectSpec {
    /// Header name, e.g. `Authorization`.
    pub header: String,
    /// Template with one `{secret}` slot, e.g. `Bearer {secret}`.
    pub value: String,
}

/// One validated `credentials.<id>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSpec {
    /// The key under `credentials` (`[a-z0-9_-]+`).
    pub id: String,
    /// Where the value comes from.
    pub source: SourceSpec,
    /// Absent: only the placeholder swap injects the value.
    pub inject: Option<InjectSpec>,
    /// What the agent holds instead of the secret (default `CORDON_PLACEHOLDER_<ID>`).
    pub placeholder: String,
    /// The variable `cordon run` exports the placeholder under.
    pub env: Option<String>,
    /// A request carrying the real value is denied (`real_secret_used`).
    pub require_placeholder: bool,
}

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// When a failed refresh is first retried; the delay doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between retries of a failing source.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A retry is scheduled no later than this before the current value expires, so a source
/// that recovers in time replaces the value before anyone is refused.
const EXPIRY_GUARD: Duration = Duration::from_millis(100);
/// The shortest pause of a refresher, so a value about to expire cannot cause a busy loop.
const MIN_PAUSE: Duration = Duration::from_millis(50);
/// How often exec and oauth2 values without an expiry are fetched again.
const NO_EXPIRY_REFRESH: Duration = Duration::from_secs(300);
/// The share of a value's lifetime after which a new one is fetched.
const REFRESH_AT: f64 = 0.75;
/// The longest the expiry gauge goes without an update.
const GAUGE_TICK: Duration = Duration::from_secs(5);

/// A secret value. `Debug` and `Display` show a short fingerprint, never the value; the
/// bytes are overwritten when it is dropped.
pub struct Secret {
    value: String,
}

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Secret {
        Secret { value }
    }

    /// The value, for injection and exact-match scanning only.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// `sha256:` + the first 12 hex digits of the value's SHA-256.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.value.as_bytes());
        format!("sha256:{}", crate::os::hex(&digest[..6]))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.value).into_bytes();
        wipe(&mut bytes);
    }
}

/// Overwrites a buffer's whole allocation (spare capacity included) with zeros, in a way
/// the optimiser may not drop as a dead store before the buffer is freed.
pub(crate) fn wipe(bytes: &mut Vec<u8>) {
    zero_allocation(bytes);
    bytes.clear();
}

/// Zeros every byte of the allocation and leaves the vector at its full capacity, so the
/// result can be inspected without unsafe code.
fn zero_allocation(bytes: &mut Vec<u8>) {
    let capacity = bytes.capacity();
    bytes.clear();
    // Resizing within the capacity writes zeros over every byte without reallocating.
    bytes.resize(capacity, 0);
    // The buffer is about to be freed, which would make the writes dead stores; passing
    // it through black_box and fencing keeps them.
    std::hint::black_box(bytes.as_slice());
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// One issued value of a credential.
#[derive(Debug)]
pub struct Issued {
    /// The value.
    pub secret: Secret,
    /// Starts at 1 and grows by one with every new value.
    pub version: u64,
    /// When the value stops being valid, if the source says.
    pub expires_at: Option<SystemTime>,
    /// When cordon obtained it; the refresh schedule counts from here.
    pub obtained_at: SystemTime,
}

impl Issued {
    /// Whether the value may still be used at `now`.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|expires| now < expires)
    }
}

/// Why no value can be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("credential {id}: {message}")]
pub struct CredentialError {
    /// The credential's id.
    pub id: String,
    /// Never contains the secret.
    pub message: String,
}

/// What asked for a fetch; decides the rotation reason and whether an unchanged file is
/// read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Initial,
    Scheduled,
    Forced,
}

/// What only the fetching side touches, behind the single-flight lock.
#[derive(Default)]
struct FetchState {
    /// The version of the newest value issued so far (0: none yet).
    version: u64,
    /// The file source's (device, inode, length, mtime) when it was last read.
    file_stamp: Option<FileStamp>,
}

/// Identifies one version of a file on disk: an in-place rewrite changes length or
/// mtime, an atomic rename changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// The largest token file read.
const MAX_FILE: u64 = 1024 * 1024;

/// The live value of one credential, refreshed in the background ahead of expiry.
pub struct CredentialCache {
    spec: CredentialSpec,
    /// The value requests read. Writers hold the lock only to swap an `Arc`.
    current: RwLock<Option<Arc<Issued>>>,
    /// Single flight: every fetch happens under this lock.
    fetch: Mutex<FetchState>,
    /// Why the last fetch failed (cleared by a success), for `current`'s error.
    last_error: std::sync::Mutex<Option<String>>,
    /// Wakes the refresher after a forced rotation so it plans from the new value.
    wake: Notify,
    metrics: crate::metrics::Metrics,
    tls: Arc<oauth2::TlsSetup>,
    /// The variables `env` sources read: an exec plug-in runs without them.
    private_env: Arc<[String]>,
}

impl CredentialCache {
    fn new(
        spec: CredentialSpec,
        metrics: &crate::metrics::Metrics,
        tls: Arc<oauth2::TlsSetup>,
        private_env: Arc<[String]>,
    ) -> CredentialCache {
        CredentialCache {
            spec,
            current: RwLock::new(None),
            fetch: Mutex::new(FetchState::default()),
            last_error: std::sync::Mutex::new(None),
            wake: Notify::new(),
            metrics: metrics.clone(),
            tls,
            private_env,
        }
    }

    /// The current value; never one that has expired.
    pub fn current(&self) -> Result<Arc<Issued>, CredentialError> {
        let issued = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match issued {
            Some(issued) if issued.is_valid_at(SystemTime::now()) => Ok(issued),
            Some(_) => Err(self.error(self.explain("the current value has expired"))),
            None => Err(self.error(self.explain("no value has been obtained"))),
        }
    }

    /// Fetches a new value now and drops the old one at once (anomaly action `rotate`).
    ///
    /// If the fetch fails the old value stays (while valid) and the error is returned; a
    /// source that hands back the same value keeps its version.
    pub async fn rotate_now(&self, reason: &str) -> Result<Arc<Issued>, CredentialError> {
        tracing::info!(credential = %self.spec.id, reason, "forced credential rotation");
        let result = self.refresh(Trigger::Forced).await;
        self.wake.notify_one();
        result?;
        self.current()
    }

    /// The spec this cache serves.
    pub fn spec(&self) -> &CredentialSpec {
        &self.spec
    }

    /// The credential's id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    fn error(&self, message: impl Into<String>) -> CredentialError {
        CredentialError {
            id: self.spec.id.clone(),
            message: message.into(),
        }
    }

    fn explain(&self, what: &str) -> String {
        match &*self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(last) => format!("{what} (last refresh failed: {last})"),
            None => what.to_string(),
        }
    }

    fn read_current(&self) -> Option<Arc<Issued>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One fetch under the single-flight lock; a new value is swapped in at once.
    async fn refresh(&self, trigger: Trigger) -> Result<(), CredentialError> {
        let mut state = self.fetch.lock().await;
        let result = self.fetch_and_swap(&mut state, trigger).await;
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = result.as_ref().err().cloned();
        self.update_gauge();
        result.map_err(|message| self.error(message))
    }

    async fn fetch_and_swap(&self, state: &mut FetchState, trigger: Trigger) -> Result<(), String> {
        let Some(fetched) = self.fetch_source(state, trigger).await? else {
            return Ok(());
        };
        let now = SystemTime::now();
        if fetched.expires_at.is_some_and(|expires| expires <= now) {
            return Err("the source returned a value that has already expired".to_string());
        }
        let same = self
            .read_current()
            .is_some_and(|old| old.secret.expose() == fetched.secret.expose());
        let reason = match trigger {
            _ if state.version == 0 => "initial",
            Trigger::Initial => "initial",
            Trigger::Forced => "forced",
            Trigger::Scheduled if matches!(self.spec.source, SourceSpec::File { .. }) => {
                "file_changed"
            }
            Trigger::Scheduled => "scheduled",
        };
        if !same {
            state.version += 1;
        }
        let issued = Arc::new(Issued {
            secret: fetched.secret,
            version: state.version,
            expires_at: fetched.expires_at,
            obtained_at: now,
        });
        // Requests already holding the old `Arc` finish with it; new ones get this one.
        let old = self
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(issued);
        drop(old);
        if !same {
            self.metrics
                .credential_rotations
                .with_label_values(&[self.spec.id.as_str(), reason])
                .inc();
            tracing::info!(
                credential = %self.spec.id,
                version = state.version,
                reason,
                expires_in = ?fetched.expires_at.and_then(|e| e.duration_since(now).ok()),
                "credential value updated"
            );
        }
        Ok(())
    }

    /// Asks the source; `None` means a file that has not changed since it was last read.
    async fn fetch_source(
        &self,
        state: &mut FetchState,
        trigger: Trigger,
    ) -> Result<Option<Fetched>, String> {
        match &self.spec.source {
            SourceSpec::Env(var) => {
                let value = std::env::var(var)
                    .map_err(|_| format!("environment variable {var} is not set or not UTF-8"))?;
                let trimmed = value.trim();
                if trimmed.is_empty() {
                    return Err(format!("environment variable {var} is empty"));
                }
                let fetched = Fetched {
                    secret: Secret::new(trimmed.to_string()),
                    expires_at: None,
                };
                drop(Secret::new(value));
                Ok(Some(fetched))
            }
            SourceSpec::File { path, .. } => {
                read_token_file(path, &mut state.file_stamp, trigger != Trigger::Scheduled).await
            }
            SourceSpec::Exec { command, timeout } => {
                exec::run(command, *timeout, &self.private_env)
                    .await
                    .map(Some)
            }
            SourceSpec::OAuth2 {
                token_url,
                client_id,
                client_secret_file,
                scopes,
            } => oauth2::fetch(token_url, client_id, client_secret_file, scopes, &self.tls)
                .await
                .map(Some),
        }
    }

    /// Sets the expiry gauge from the current value, and lets go of a value that has
    /// expired so it does not stay in memory any longer than it is useful.
    fn update_gauge(&self) {
        let gauge = &self.metrics.credential_expiry;
        let id = self.spec.id.as_str();
        let now = SystemTime::now();
        match self.read_current() {
            Some(issued) if !issued.is_valid_at(now) => {
                let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
                if slot.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &issued)) {
                    slot.take();
                }
                gauge.with_label_values(&[id]).set(0.0);
            }
            Some(issued) => match issued.expires_at {
                Some(expires) => {
                    let left = expires.duration_since(now).unwrap_or_default();
                    gauge.with_label_values(&[id]).set(left.as_secs_f64());
                }
                None => {
                    let _ = gauge.remove_label_values(&[id]);
                }
            },
            None => gauge.with_label_values(&[id]).set(0.0),
        }
    }

    /// How long the refresher waits before its next fetch; `retry` is the backoff when
    /// the last fetch failed.
    fn next_pause(&self, retry: Option<Duration>) -> Duration {
        if let SourceSpec::File { refresh, .. } = &self.spec.source {
            return *refresh;
        }
        let now = SystemTime::now();
        let current = self.read_current();
        if let Some(backoff) = retry {
            let left = current
                .as_ref()
                .and_then(|c| c.expires_at)
                .and_then(|expires| expires.duration_since(now).ok());
            return match left {
                // Never sleep past the last moment a retry could still replace the value.
                Some(left) if left > EXPIRY_GUARD => {
                    backoff.min(left - EXPIRY_GUARD).max(MIN_PAUSE)
                }
                _ => backoff,
            };
        }
        let Some(current) = current else {
            return Duration::ZERO;
        };
        let due = match current.expires_at {
            Some(expires) => {
                let lifetime = expires
                    .duration_since(current.obtained_at)
                    .unwrap_or_default();
                current.obtained_at + lifetime.mul_f64(REFRESH_AT)
            }
            None => current.obtained_at + NO_EXPIRY_REFRESH,
        };
        due.duration_since(now).unwrap_or_default().max(MIN_PAUSE)
    }

    /// Sleeps for `pause`, updating the gauge on the way; returns early (true) when a
    /// forced rotation has changed the plan.
    async fn sleep(&self, pause: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + pause;
        loop {
            self.update_gauge();
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let step = (deadline - now).min(GAUGE_TICK);
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = self.wake.notified() => return true,
            }
        }
    }

    /// The refresher: the only place (besides `rotate_now`) that fetches.
    async fn run_refresher(self: Arc<Self>, started_ok: bool) {
        let mut retry = (!started_ok).then_some(FIRST_BACKOFF);
        let mut last_logged: Option<String> = None;
        loop {
            let pause = self.next_pause(retry);
            if self.sleep(pause).await {
                if self.current().is_ok() {
                    retry = None;
                }
                continue;
            }
            match self.refresh(Trigger::Scheduled).await {
                Ok(()) => {
                    retry = None;
                    last_logged = None;
                }
                Err(e) => {
                    let next = retry.map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
                    retry = Some(next);
                    // A file is polled often; the same problem is reported once, not on
                    // every poll.
                    let repeat = matches!(self.spec.source, SourceSpec::File { .. })
                        && last_logged.as_deref() == Some(e.message.as_str());
                    if !repeat {
                        tracing::warn!(
                            credential = %self.spec.id,
                            error = %e.message,
                            still_valid = self.current().is_ok(),
                            "credential refresh failed; keeping the current value while it is valid"
                        );
                        last_logged = Some(e.message);
                    }
                }
            }
        }
    }
}

/// Reads a token file if it changed since `stamp` (or always, when `force`).
async fn read_token_file(
    path: &Path,
    stamp: &mut Option<FileStamp>,
    force: bool,
) -> Result<Option<Fetched>, String> {
    let shown = path.display();
    let stat = |e: std::io::Error| format!("cannot read {shown}: {}", e.kind());
    let before = FileStamp::of(&tokio::fs::metadata(path).await.map_err(stat)?);
    if !force && *stamp == Some(before) {
        return Ok(None);
    }
    let file = tokio::fs::File::open(path).await.map_err(stat)?;
    let mut content = Vec::new();
    {
        use tokio::io::AsyncReadExt;
        file.take(MAX_FILE + 1)
            .read_to_end(&mut content)
            .await
            .map_err(stat)?;
    }
    let after = FileStamp::of(&tokio::fs::metadata(path).await.map_err(stat)?);
    let result = if content.len() as u64 > MAX_FILE {
        Err(format!("{shown} is larger than 1 MiB"))
    } else {
        parse::token_file(&content).map_err(|e| format!("{shown}: {e}"))
    };
    wipe(&mut content);
    // A file that changed while it was read may have been read half-written; it is only
    // marked as seen when it held still, so the next poll reads it again otherwise.
    *stamp = (before == after).then_some(after);
    result.map(Some)
}

/// Every configured credential, by id.
#[derive(Default)]
pub struct Credentials {
    by_id: HashMap<String, Arc<CredentialCache>>,
    /// The refresher tasks, stopped when this is dropped.
    refreshers: Vec<tokio::task::AbortHandle>,
}

impl Credentials {
    /// Starts one cache (and its refresher task) per spec; must run inside a tokio runtime.
    /// A source that fails now is logged and retried; requests needing it are refused.
    pub async fn start(specs: &[CredentialSpec], metrics: &crate::metrics::Metrics) -> Credentials {
        Credentials::start_with_roots(specs, &[], metrics).await
    }

    /// Like [`Credentials::start`], with `tls.extra_roots` also trusted for `https://`
    /// token endpoints (besides the webpki roots).
    pub async fn start_with_roots(
        specs: &[CredentialSpec],
        extra_roots: &[PathBuf],
        metrics: &crate::metrics::Metrics,
    ) -> Credentials {
        let tls = Arc::new(oauth2::tls_setup(extra_roots));
        // A plug-in runs as the same user as the agent and is dumpable: whatever is in its
        // environment can be read through /proc while it runs. The real values cordon read
        // from its own environment stay out of it.
        let private_env: Arc<[String]> = specs
            .iter()
            .filter_map(|spec| match &spec.source {
                SourceSpec::Env(var) => Some(var.clone()),
                _ => None,
            })
            .collect();
        let caches: Vec<Arc<CredentialCache>> = specs
            .iter()
            .map(|spec| {
                Arc::new(CredentialCache::new(
                    spec.clone(),
                    metrics,
                    Arc::clone(&tls),
                    Arc::clone(&private_env),
                ))
            })
            .collect();

        // The first values are fetched in parallel before anything is served, each bounded
        // by its source's own timeout, so the first requests find them.
        let initial: Vec<_> = caches
            .iter()
            .map(|cache| {
                let cache = Arc::clone(cache);
                tokio::spawn(async move { cache.refresh(Trigger::Initial).await })
            })
            .collect();
        let mut refreshers = Vec::with_capacity(caches.len());
        for (cache, fetch) in caches.iter().zip(initial) {
            let started_ok = match fetch.await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(
                        credential = %e.id,
                        error = %e.message,
                        "credential not available at start; requests that need it are refused until it is"
                    );
                    false
                }
                Err(join) => {
                    tracing::warn!(credential = %cache.spec.id, error = %join, "initial credential fetch failed");
                    false
                }
            };
            // An environment variable is read once: cordon's own environment does not
            // change, so there is nothing to refresh.
            if !matches!(cache.spec.source, SourceSpec::Env(_)) {
                let task = tokio::spawn(Arc::clone(cache).run_refresher(started_ok));
                refreshers.push(task.abort_handle());
            }
        }
        Credentials {
            by_id: caches.into_iter().map(|c| (c.spec.id.clone(), c)).collect(),
            refreshers,
        }
    }

    /// The cache for `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<CredentialCache>> {
        self.by_id.get(id)
    }

    /// All caches, in no particular order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<CredentialCache>> {
        self.by_id.values()
    }

    /// Every credential's (id, placeholder), in no particular order.
    pub fn placeholders(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_id
            .values()
            .map(|c| (c.spec.id.as_str(), c.spec.placeholder.as_str()))
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        for task in &self.refreshers {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_show_a_fingerprint_only() {
        let secret = Secret::new("hunter2-but-longer".to_string());
        let debug = format!("{secret:?}");
        let display = format!("{secret}");
        assert!(!debug.contains("hunter2"), "Debug shows the value");
        assert!(!display.contains("hunter2"), "Display shows the value");
        // sha256("hunter2-but-longer"), first 6 bytes.
        let full = Sha256::digest(b"hunter2-but-longer");
        let expected: String = full[..6].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(debug, format!("Secret(sha256:{expected})"));
        assert_eq!(display, debug);
        let issued = Issued {
            secret,
            version: 3,
            expires_at: None,
            obtained_at: SystemTime::now(),
        };
        assert!(!format!("{issued:?}").contains("hunter2"));
    }

    #[test]
    fn wipe_zeroes_the_whole_allocation_in_place() {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(b"top-secret-value");
        bytes.extend_from_slice(&[0xAA; 8]);
        let ptr = bytes.as_ptr();
        let capacity = bytes.capacity();
        zero_allocation(&mut bytes);
        assert_eq!(
            bytes.as_ptr(),
            ptr,
            "the buffer was reallocated, not overwritten"
        );
        assert_eq!(bytes.len(), capacity, "spare capacity was not covered");
        assert!(bytes.iter().all(|&b| b == 0));
        wipe(&mut bytes);
        assert!(bytes.is_empty());
        assert_eq!(bytes.as_ptr(), ptr);
    }

    #[test]
    fn validity_is_strictly_before_expiry() {
        let now = SystemTime::now();
        let issued = Issued {
            secret: Secret::new("x".to_string()),
            version: 1,
            expires_at: Some(now),
            obtained_at: now,
        };
        assert!(!issued.is_valid_at(now));
        assert!(issued.is_valid_at(now - Duration::from_millis(1)));
    }
}
