//! SPEC §4 step 7: the agent's request (URL, headers, body) is scanned before it leaves,
//! and the origin's response is scanned on its way back. Bodies that fit the scan window
//! are scanned whole before a byte is forwarded; longer ones are scanned as they stream.

use super::State;
use crate::config::{ScanAction, Scanning};
use crate::scan::{Finding, Redactor, ScanStream, Scanner};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

/// Request bodies up to this size are scanned whole before any byte reaches the origin
/// (block and redact are then exact); longer bodies are scanned as they stream, and a
/// secret found after bytes went out resets the upstream connection.
pub const SCAN_WINDOW: usize = 1024 * 1024;

/// Responses up to this declared length are scanned whole, so their framing is kept;
/// longer ones stream through the redactor. Smaller than the request window so that
/// many concurrent large downloads do not each hold a megabyte.
pub const RESPONSE_WINDOW: usize = 64 * 1024;

/// Errors a scanning body hands to hyper, which aborts the exchange.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Findings gathered while an exchange streams, read when its record closes.
pub type FindingLog = Arc<Mutex<Vec<(&'static str, Finding)>>>;

/// The scanner in use and the policy for each direction.
pub struct ScanState {
    pub outbound: ScanAction,
    pub inbound: ScanAction,
    current: RwLock<Arc<Scanner>>,
}

impl ScanState {
    /// Wraps an initial scanner.
    pub fn new(scanning: &Scanning, scanner: Scanner) -> ScanState {
        ScanState {
            outbound: scanning.outbound,
            inbound: scanning.inbound,
            current: RwLock::new(Arc::new(scanner)),
        }
    }

    /// The scanner for a new exchange.
    pub fn scanner(&self) -> Arc<Scanner> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a scanner rebuilt with the current credential values.
    pub fn replace(&self, scanner: Scanner) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(scanner);
    }
}

/// The request body as it goes to the origin: scanned whole, or scanned while streaming.
pub enum OutboundBody {
    /// Fully read and scanned (possibly redacted); sent as one frame.
    Whole(Option<Bytes>),
    /// Longer than the window: the part read so far, then the rest, through a check.
    Stream {
        prefix: Option<Bytes>,
        rest: Incoming,
        check: Box<Check>,
    },
}

impl Body for OutboundBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            OutboundBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            OutboundBody::Stream {
                prefix,
                rest,
                check,
            } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(check.data(prefix)));
                }
                poll_checked(Pin::new(rest), check, cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutboundBody::Whole(bytes) => bytes.is_none(),
            OutboundBody::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutboundBody::Whole(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            OutboundBody::Whole(None) => SizeHint::with_exact(0),
            OutboundBody::Stream { .. } => SizeHint::default(),
        }
    }
}

/// The response body on its way to the agent: passed through, scanned whole (when its
/// declared length fits the window, so its framing is kept), or scanned as it streams.
pub enum InboundBody {
    Plain(Incoming),
    Whole(Option<Bytes>),
    Scanned { inner: Incoming, check: Box<Check> },
}

impl Body for InboundBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            InboundBody::Plain(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            InboundBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            InboundBody::Scanned { inner, check } => poll_checked(Pin::new(inner), check, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            InboundBody::Plain(inner) => inner.is_end_stream(),
            InboundBody::Whole(bytes) => bytes.is_none(),
            InboundBody::Scanned { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            InboundBody::Plain(inner) => inner.size_hint(),
            InboundBody::Whole(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            InboundBody::Whole(None) => SizeHint::with_exact(0),
            // Redaction may change the length.
            InboundBody::Scanned { .. } => SizeHint::default(),
        }
    }
}

/// Streams frames of `inner` through `check`, flushing a held-back tail at the end.
fn poll_checked(
    mut inner: Pin<&mut Incoming>,
    check: &mut Check,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    loop {
        if check.done {
            return Poll::Ready(None);
        }
        match inner.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => match check.data(data) {
                    Ok(frame) if frame.data_ref().is_some_and(|d| d.is_empty()) => continue,
                    other => return Poll::Ready(Some(other)),
                },
                // Trailers: flush what the redactor holds first, then pass them on.
                Err(trailers) => {
                    let tail = check.finish();
                    if let Some(Ok(frame)) = &tail {
                        if frame.data_ref().is_some_and(|d| !d.is_empty()) {
                            check.pending_trailers = Some(trailers);
                            return Poll::Ready(tail);
                        }
                    }
                    return Poll::Ready(Some(Ok(trailers)));
                }
            },
            Poll::Ready(None) => {
                if let Some(trailers) = check.pending_trailers.take() {
                    return Poll::Ready(Some(Ok(trailers)));
                }
                let tail = check.finish();
                check.done = true;
                return Poll::Ready(tail);
            }
        }
    }
}

/// What a streaming body does with each chunk.
pub struct Check {
    action: ScanAction,
    direction: &'static str,
    mode: Mode,
    log: FindingLog,
    finished: bool,
    done: bool,
    pending_trailers: Option<Frame<Bytes>>,
}

enum Mode {
    Watch(ScanStream),
    Redact(Redactor),
}

impl Check {
    /// A check of `direction` doing `action`, noting findings in `log`.
    pub fn new(
        scanner: &Arc<Scanner>,
        action: ScanAction,
        direction: &'static str,
        log: FindingLog,
    ) -> Check {
        let mode = match action {
            ScanAction::Redact => Mode::Redact(scanner.redactor()),
            ScanAction::Block | ScanAction::Log => Mode::Watch(scanner.stream()),
        };
        Check {
            action,
            direction,
            mode,
            log,
            finished: false,
            done: false,
            pending_trailers: None,
        }
    }

    fn data(&mut self, data: Bytes) -> Result<Frame<Bytes>, BoxError> {
        let (out, findings) = match &mut self.mode {
            Mode::Watch(stream) => {
                let findings = stream.feed(&data);
                (data, findings)
            }
            Mode::Redact(redactor) => {
                let (out, findings) = redactor.feed(&data);
                (Bytes::from(out), findings)
            }
        };
        self.note(findings)?;
        Ok(Frame::data(out))
    }

    fn finish(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        if self.finished {
            return None;
        }
        self.finished = true;
        let (out, findings) = match &mut self.mode {
            Mode::Watch(stream) => (Vec::new(), stream.finish()),
            Mode::Redact(redactor) => redactor.finish(),
        };
        if let Err(err) = self.note(findings) {
            return Some(Err(err));
        }
        (!out.is_empty()).then(|| Ok(Frame::data(Bytes::from(out))))
    }

    fn note(&mut self, findings: Vec<Finding>) -> Result<(), BoxError> {
        if findings.is_empty() {
            return Ok(());
        }
        let block = self.action == ScanAction::Block;
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(findings.into_iter().map(|f| (self.direction, f)));
        if block {
            return Err(format!(
                "a secret was found in the {} body; the exchange is cut",
                self.direction
            )
            .into());
        }
        Ok(())
    }
}

/// The text of a request's URL and headers, as scanned: `METHOD target\nname: value\n…`.
pub fn head_text(parts: &Parts) -> Vec<u8> {
    let mut text = Vec::with_capacity(512);
    text.extend_from_slice(parts.method.as_str().as_bytes());
    text.push(b' ');
    text.extend_from_slice(parts.uri.to_string().as_bytes());
    text.push(b'\n');
    for (name, value) in &parts.headers {
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        text.push(b'\n');
    }
    text
}

/// The outcome of scanning a request before it leaves.
pub enum Outbound {
    /// Send this body (the head may have been changed to match it).
    Send(OutboundBody),
    /// A secret was found and the action is block.
    Refuse(String),
}

/// Scans the request's head and body (whole when it fits the window) and applies the
/// outbound action; findings go to `log`.
pub async fn outbound(
    state: &State,
    parts: &mut Parts,
    mut body: Incoming,
    log: &FindingLog,
) -> Result<Outbound, BoxError> {
    let scanner = state.scanning.scanner();
    let action = state.scanning.outbound;
    // A credential's own value in the head is the injection step's business: it refuses
    // with the more precise `real_secret_used` or `placeholder_misuse`.
    let head: Vec<Finding> = scanner
        .scan(&head_text(parts))
        .into_iter()
        .filter(|f| !f.rule.starts_with("credential:"))
        .collect();
    if !head.is_empty() {
        let rules: Vec<String> = head.iter().map(|f| f.rule.to_string()).collect();
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(head.into_iter().map(|f| ("outbound", f)));
        if action != ScanAction::Log {
            // Headers and URLs are not rewritten: a secret there refuses the request.
            return Ok(Outbound::Refuse(format!(
                "a secret ({}) is in the request's URL or headers",
                rules.join(", ")
            )));
        }
    }
    // Read up to the window; a body that ends within it is scanned whole.
    let mut buffered = BytesMut::new();
    if !read_into(&mut body, &mut buffered, SCAN_WINDOW).await? {
        let check = Box::new(Check::new(&scanner, action, "outbound", log.clone()));
        strip_length(parts);
        let prefix = Some(buffered.freeze());
        return Ok(Outbound::Send(OutboundBody::Stream {
            prefix,
            rest: body,
            check,
        }));
    }
    let whole = buffered.freeze();
    let findings = scanner.scan(&whole);
    if findings.is_empty() {
        return Ok(Outbound::Send(OutboundBody::Whole(
            (!whole.is_empty()).then_some(whole),
        )));
    }
    let rules: Vec<String> = findings.iter().map(|f| f.rule.to_string()).collect();
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(findings.iter().cloned().map(|f| ("outbound", f)));
    match action {
        ScanAction::Block => Ok(Outbound::Refuse(format!(
            "a secret ({}) is in the request body",
            rules.join(", ")
        ))),
        ScanAction::Log => Ok(Outbound::Send(OutboundBody::Whole(Some(whole)))),
        ScanAction::Redact => {
            let (out, _) = scanner.redact(&whole);
            parts.headers.remove(TRANSFER_ENCODING);
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
            Ok(Outbound::Send(OutboundBody::Whole(Some(Bytes::from(out)))))
        }
    }
}

/// What inbound scanning made of a response body.
pub enum Inbound {
    /// Pass this body on (the headers were adjusted to match it).
    Send(InboundBody),
    /// A secret was found and the inbound action is block.
    Refuse(String),
}

/// The response body for the agent, scanned per the inbound action: whole when its declared
/// length fits the window (its length header is then corrected, never dropped), streaming
/// otherwise.
pub async fn inbound(
    state: &State,
    headers: &mut http::HeaderMap,
    mut body: Incoming,
    log: &FindingLog,
) -> Result<Inbound, BoxError> {
    let scanner = state.scanning.scanner();
    let action = state.scanning.inbound;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|len| *len <= RESPONSE_WINDOW as u64);
    let Some(declared) = declared else {
        if action != ScanAction::Log {
            // Redaction (or a cut) may change the length; let the framing follow the bytes.
            strip_length_headers(headers);
        }
        let check = Box::new(Check::new(&scanner, action, "inbound", log.clone()));
        return Ok(Inbound::Send(InboundBody::Scanned { inner: body, check }));
    };
    let mut whole = BytesMut::with_capacity(declared as usize);
    read_into(&mut body, &mut whole, usize::MAX).await?;
    let whole = whole.freeze();
    let findings = scanner.scan(&whole);
    if findings.is_empty() {
        return Ok(Inbound::Send(InboundBody::Whole(
            (!whole.is_empty()).then_some(whole),
        )));
    }
    let rules: Vec<String> = findings.iter().map(|f| f.rule.to_string()).collect();
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(findings.into_iter().map(|f| ("inbound", f)));
    match action {
        ScanAction::Log => Ok(Inbound::Send(InboundBody::Whole(Some(whole)))),
        ScanAction::Block => Ok(Inbound::Refuse(format!(
            "the response carries a secret ({})",
            rules.join(", ")
        ))),
        ScanAction::Redact => {
            let (out, _) = scanner.redact(&whole);
            headers.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
            Ok(Inbound::Send(InboundBody::Whole(Some(Bytes::from(out)))))
        }
    }
}

/// Reads `body` into `into` until it ends (true) or holds more than `limit` bytes (false).
async fn read_into(
    body: &mut Incoming,
    into: &mut BytesMut,
    limit: usize,
) -> Result<bool, BoxError> {
    while into.len() <= limit {
        match std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
            None => return Ok(true),
            Some(frame) => {
                if let Some(data) = frame?.data_ref() {
                    into.extend_from_slice(data);
                }
            }
        }
    }
    Ok(false)
}

fn strip_length(parts: &mut Parts) {
    strip_length_headers(&mut parts.headers);
}

fn strip_length_headers(headers: &mut http::HeaderMap) {
    headers.remove(CONTENT_LENGTH);
}

/// Step 7 for one exchange: scans the request, records findings on the exchange, and gives
/// the body to send, or the refusal to answer with.
#[allow(clippy::result_large_err)]
pub async fn scan_request(
    ex: &mut super::exchange::Exchange,
    parts: &mut Parts,
    body: Incoming,
) -> Result<OutboundBody, http::Response<super::exchange::ProxyBody>> {
    let state = ex.state().clone();
    let log = ex.findings.clone();
    match outbound(&state, parts, body, &log).await {
        Ok(Outbound::Send(body)) => Ok(body),
        Ok(Outbound::Refuse(hint)) => {
            Err(ex.deny(crate::policy::DenyReason::SecretInRequest, hint))
        }
        Err(_) => Err(ex.deny(
            crate::policy::DenyReason::MalformedRequest,
            "the request body is malformed (bad chunked encoding or cut short)",
        )),
    }
}

/// Whether the exchange's outbound scan cut a streaming body (so an upstream failure is
/// the scanner's doing).
pub fn cut_by_scan(ex: &super::exchange::Exchange) -> bool {
    ex.state().scanning.outbound == ScanAction::Block
        && ex
            .findings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(direction, _)| *direction == "outbound")
}

/// Inbound scanning for one exchange: the body to hand the agent, or the refusal to answer
/// with (`secret_in_response` under block, or the upstream failing mid-body).
#[allow(clippy::result_large_err)]
pub async fn scan_response(
    ex: &mut super::exchange::Exchange,
    headers: &mut http::HeaderMap,
    body: Incoming,
) -> Result<InboundBody, http::Response<super::exchange::ProxyBody>> {
    let state = ex.state().clone();
    let log = ex.findings.clone();
    match inbound(&state, headers, body, &log).await {
        Ok(Inbound::Send(body)) => Ok(body),
        Ok(Inbound::Refuse(hint)) => {
            Err(ex.deny(crate::policy::DenyReason::SecretInResponse, hint))
        }
        Err(_) => Err(ex.deny(
            crate::policy::DenyReason::UpstreamUnreachable,
            "the origin broke off its response",
        )),
    }
}
