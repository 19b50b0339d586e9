//! One decision in progress: what the audit record will say, how a deny reads, and the
//! response body that closes the record when the last byte has gone to the agent.

use super::State;
use crate::audit::Record;
use crate::config::Mode;
use crate::policy::DenyReason;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// What the proxy hands back to the agent: a deny written by cordon, or the origin's body.
pub type ProxyBody = Either<Full<Bytes>, Metered<super::scan::InboundBody>>;

/// The decision being made for one request or tunnel.
pub struct Exchange {
    state: Arc<State>,
    started: Instant,
    /// The record as it stands; `decision` and `status` are settled at the end.
    pub record: Record,
    /// Secrets the scans of this exchange found (both directions).
    pub findings: super::scan::FindingLog,
    would_deny: Option<(DenyReason, String)>,
}

impl Exchange {
    /// Starts a decision for `method` (the request line's method).
    pub fn new(state: Arc<State>, method: &str) -> Exchange {
        let record = Record {
            method: Some(method.to_owned()),
            ..state.record("http", "allow")
        };
        Exchange {
            state,
            started: Instant::now(),
            record,
            findings: Default::default(),
            would_deny: None,
        }
    }

    /// The shared proxy state.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// A policy verdict against the request: in enforce mode the deny response to send; in
    /// observe mode `None` (the request goes on and the record says `would_deny`).
    pub fn refuse(
        &mut self,
        reason: DenyReason,
        hint: impl Into<String>,
    ) -> Option<Response<ProxyBody>> {
        let hint = hint.into();
        if self.observe_only(reason, &hint) {
            return None;
        }
        Some(self.deny(reason, hint))
    }

    /// For a verdict reached after the response went out (a tunnel's ClientHello): true when
    /// observe mode lets the exchange go on, recorded as `would_deny`.
    pub fn observe_only(&mut self, reason: DenyReason, hint: &str) -> bool {
        if self.state.mode != Mode::Observe || !reason.observable() {
            return false;
        }
        // The first refusal is the record's reason, except that the deny boundary, which
        // wins over everything in enforce mode, is never hidden behind an earlier one (a
        // policy suggested from the trail leaves boundary refusals out).
        let boundary_first = reason == DenyReason::Boundary
            && !matches!(self.would_deny, Some((DenyReason::Boundary, _)));
        if self.would_deny.is_none() || boundary_first {
            tracing::info!(
                decision_id = self.decision_id(),
                reason = reason.as_str(),
                hint = %hint,
                "would deny (observe mode)"
            );
            self.would_deny = Some((reason, hint.to_owned()));
        }
        true
    }

    /// Refuses in every mode (the request cannot be carried out) and closes the record.
    pub fn deny(&mut self, reason: DenyReason, hint: impl Into<String>) -> Response<ProxyBody> {
        let hint = hint.into();
        let response = deny_response(
            reason,
            &hint,
            self.record.host.as_deref(),
            self.decision_id(),
        );
        tracing::info!(
            decision_id = self.decision_id(),
            reason = reason.as_str(),
            host = self.record.host.as_deref().unwrap_or("-"),
            hint = %hint,
            "denied"
        );
        self.close_denied(reason, Some(response.status().as_u16()), &hint);
        response
    }

    /// Closes the record of a refusal that happened after the response was sent (a tunnel
    /// whose ClientHello was refused).
    pub fn close_denied(&mut self, reason: DenyReason, status: Option<u16>, hint: &str) {
        self.record.decision = "deny";
        self.record.reason = Some(reason.as_str());
        self.record.status = status;
        self.record.detail = Some(hint.to_owned());
        self.emit(0, 0);
    }

    /// Closes the record of an exchange that went through.
    pub fn close_forwarded(mut self, status: Option<u16>, bytes_out: u64, bytes_in: u64) {
        if let Some((reason, hint)) = self.would_deny.take() {
            self.record.decision = "would_deny";
            self.record.reason = Some(reason.as_str());
            self.record.detail = Some(hint);
        }
        self.record.status = status;
        self.emit(bytes_out, bytes_in);
    }

    fn emit(&mut self, bytes_out: u64, bytes_in: u64) {
        let elapsed = self.started.elapsed();
        self.record.bytes_out = Some(bytes_out);
        self.record.bytes_in = Some(bytes_in);
        // Three decimals: sub-millisecond decisions stay visible without float noise.
        self.record.duration_ms = Some((elapsed.as_secs_f64() * 1e6).round() / 1e3);
        self.emit_findings();
        let reason = self.record.reason.unwrap_or("");
        let metrics = &self.state.metrics;
        metrics
            .requests
            .with_label_values(&[self.record.decision, reason])
            .inc();
        metrics
            .request_duration
            .with_label_values(&[self.record.decision])
            .observe(elapsed.as_secs_f64());
        self.state.audit.record(std::mem::take(&mut self.record));
    }

    /// Moves the scan findings into the record, counts them, and writes a `scan` record.
    fn emit_findings(&mut self) {
        let findings =
            std::mem::take(&mut *self.findings.lock().unwrap_or_else(|e| e.into_inner()));
        if findings.is_empty() {
            return;
        }
        let scanning = &self.state.scanning;
        for (direction, finding) in &findings {
            let action = if *direction == "outbound" {
                scanning.outbound
            } else {
                scanning.inbound
            };
            self.state
                .metrics
                .scan_findings
                .with_label_values(&[*direction, &finding.rule[..], action.as_str()])
                .inc();
        }
        let records: Vec<crate::audit::FindingRecord> = findings
            .into_iter()
            .map(|(direction, f)| crate::audit::FindingRecord {
                rule: f.rule.to_string(),
                direction,
                start: f.start,
                end: f.end,
            })
            .collect();
        let blocked = self.record.reason == Some(DenyReason::SecretInRequest.as_str());
        let scan = Record {
            method: self.record.method.clone(),
            host: self.record.host.clone(),
            port: self.record.port,
            path: self.record.path.clone(),
            findings: records.clone(),
            reason: blocked.then_some(DenyReason::SecretInRequest.as_str()),
            detail: Some(format!(
                "outbound: {}, inbound: {}",
                scanning.outbound.as_str(),
                scanning.inbound.as_str()
            )),
            ..self
                .state
                .record("scan", if blocked { "deny" } else { "allow" })
        };
        self.state.audit.record(scan);
        self.record.findings = records;
    }

    fn decision_id(&self) -> &str {
        self.record.decision_id.as_deref().unwrap_or("")
    }
}

/// The deny response of SPEC §4: status, three `X-Cordon-*` headers and a JSON body.
pub fn deny_response(
    reason: DenyReason,
    hint: &str,
    host: Option<&str>,
    decision_id: &str,
) -> Response<ProxyBody> {
    let error = match reason.status() {
        400 => "bad_request",
        502 => "upstream_failed",
        503 => "unavailable",
        _ => "egress_denied",
    };
    let body = serde_json::json!({
        "error": error,
        "reason": reason.as_str(),
        "host": host,
        "decision_id": decision_id,
        "hint": hint,
    });
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(bytes))));
    *response.status_mut() = StatusCode::from_u16(reason.status()).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-cordon-decision", HeaderValue::from_static("deny"));
    headers.insert("x-cordon-reason", HeaderValue::from_static(reason.as_str()));
    if let Ok(id) = HeaderValue::from_str(decision_id) {
        headers.insert("x-cordon-decision-id", id);
    }
    if reason.status() == 400 {
        // The connection's framing may be broken; do not read another request from it.
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// What the agent's request body did on its way out.
#[derive(Default, Debug)]
pub struct Outbound {
    /// Data bytes forwarded.
    pub bytes: AtomicU64,
    /// The agent's body broke (bad chunking, early close): the fault is the agent's.
    pub failed: AtomicBool,
}

/// The agent's request body, counted as it streams to the origin.
pub struct Counted<B> {
    inner: B,
    stats: Arc<Outbound>,
}

impl<B> Counted<B> {
    /// Wraps `inner`, reporting into `stats`.
    pub fn new(inner: B, stats: Arc<Outbound>) -> Counted<B> {
        Counted { inner, stats }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.stats
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(_))) => self.stats.failed.store(true, Ordering::Relaxed),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The origin's response body on its way to the agent; closes the record when it is done
/// or dropped, so an aborted download is still recorded.
pub struct Metered<B> {
    inner: B,
    bytes_in: u64,
    outbound: Arc<Outbound>,
    status: u16,
    exchange: Option<Exchange>,
}

impl<B> Metered<B> {
    /// Wraps the response body of an exchange that was forwarded.
    pub fn new(inner: B, status: u16, outbound: Arc<Outbound>, exchange: Exchange) -> Metered<B> {
        Metered {
            inner,
            bytes_in: 0,
            outbound,
            status,
            exchange: Some(exchange),
        }
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            exchange.close_forwarded(
                Some(self.status),
                self.outbound.bytes.load(Ordering::Relaxed),
                self.bytes_in,
            );
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Metered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes_in += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
