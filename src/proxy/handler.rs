//! The plain-HTTP request path, top to bottom (SPEC §4): resolve the destination, check
//! `Host`, normalise the path, decide, resolve and classify the address, strip what must
//! not leave, forward to exactly the checked address, record.

use super::connect;
use super::exchange::{Counted, Exchange, Metered, Outbound, ProxyBody};
use super::framing::ConnFlags;
use super::State;
use crate::audit::Record;
use crate::net::{permitted, AddrClass};
use crate::policy::{canonical_host, normalize_path, Decision, DenyReason, Target};
use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::{Method, Request, Response, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Longest `X-Cordon-Intent` kept in the record.
const MAX_INTENT: usize = 256;

/// Handles one request from the agent; never fails (a refusal is a response).
pub async fn handle(
    state: Arc<State>,
    conn: Arc<ConnFlags>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut ex = Exchange::new(state, req.method().as_str());
    ex.record.intent = intent(req.headers());
    if !ex.state().audit.healthy() {
        return Ok(ex.deny(
            DenyReason::AuditUnavailable,
            "the audit trail cannot be written; cordon refuses all traffic until it can",
        ));
    }
    if conn.oversized_head.load(Ordering::SeqCst) {
        return Ok(ex.deny(
            DenyReason::MalformedRequest,
            format!(
                "the request head is larger than {} KiB",
                super::MAX_HEAD_BYTES / 1024
            ),
        ));
    }
    if conn.conflicting_framing.load(Ordering::SeqCst) {
        return Ok(ex.deny(
            DenyReason::MalformedRequest,
            "a request may not carry both Content-Length and Transfer-Encoding",
        ));
    }
    if let Some(expected) = &ex.state().proxy_authorization {
        if !proxy_authorized(req.headers(), expected) {
            let mut response = ex.deny(
                DenyReason::ProxyAuthRequired,
                "this proxy needs the credentials in the proxy URL cordon run gave the command (HTTP_PROXY)",
            );
            response.headers_mut().insert(
                http::header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"cordon\""),
            );
            return Ok(response);
        }
    }
    // Credentials for cordon itself, never forwarded: they are not the agent's traffic, so
    // the outbound scan does not see them either.
    req.headers_mut().remove(http::header::PROXY_AUTHORIZATION);
    if req.method() == Method::CONNECT {
        return Ok(connect::handle(ex, req).await);
    }
    Ok(forward(ex, req).await)
}

/// Whether the request carries exactly `expected` as its `Proxy-Authorization`; compared in
/// constant time.
fn proxy_authorized(headers: &HeaderMap, expected: &HeaderValue) -> bool {
    let mut values = headers.get_all(http::header::PROXY_AUTHORIZATION).iter();
    let (Some(given), None) = (values.next(), values.next()) else {
        return false;
    };
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// A destination as the request named it.
pub struct Destination {
    pub host: String,
    pub port: u16,
}

async fn forward(mut ex: Exchange, req: Request<Incoming>) -> Response<ProxyBody> {
    // 1. Canonical destination: the absolute-form URI; `Host` must agree with it.
    let dest = match absolute_destination(req.uri()) {
        Ok(dest) => dest,
        Err(hint) => return ex.deny(DenyReason::MalformedRequest, hint),
    };
    ex.record.host = Some(dest.host.clone());
    ex.record.port = Some(dest.port);
    if let Some(response) = check_host_header(&mut ex, req.headers(), &dest, 80) {
        return response;
    }

    // 2. Path normalisation; the normalised path is what is matched and what is sent.
    let path = match checked_path(&mut ex, req.uri().path()) {
        Ok(path) => path,
        Err(response) => return response,
    };

    // 3. Deny boundary, then standing egress rules.
    let target = Target {
        host: &dest.host,
        port: dest.port,
        method: Some(req.method().as_str()),
        path: Some(&path),
    };
    // 4. cordon's own resolution; every address is classified before any is dialed.
    let (addrs, rule) = match authorize(&mut ex, &target).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    ex.record.ip = Some(addrs[0].to_string());

    // 6. What must not leave: proxy credentials, cordon's own headers, hop-by-hop headers.
    let (mut parts, body) = req.into_parts();
    let state = ex.state().clone();
    let credential = rule.and_then(|rule| state.policy.egress()[rule].credential.as_deref());
    if let Some(id) = credential {
        return ex.deny(
            DenyReason::InsecureCredential,
            format!("credential {id} is only injected over TLS; use https://"),
        );
    }
    // 7. Outbound scan, before injection so cordon's own values are not findings.
    let body = match super::scan::scan_request(&mut ex, &mut parts, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // Nothing is injected here, but placeholders and values still may not leave.
    if let Err((reason, hint)) = super::inject::inject(&state.credentials, None, &mut parts) {
        return ex.deny(reason, hint);
    }
    strip_request_headers(&mut parts.headers);
    if !parts.headers.contains_key(HOST) {
        // HTTP/1.0 may omit Host; the origin must still see the name, not the address.
        if let Some(authority) = parts.uri.authority() {
            if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(HOST, value);
            }
        }
    }
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = match upstream_uri(&addrs, dest.port, &path, &query) {
        Ok(uri) => uri,
        Err(hint) => return ex.deny(DenyReason::MalformedRequest, hint),
    };
    parts.version = http::Version::HTTP_11;

    // Forward, streaming both bodies; the record closes when the response body ends.
    let outbound = Arc::new(Outbound::default());
    let upstream_req = Request::from_parts(parts, Counted::new(body, outbound.clone()));
    match ex.state().client.clone().request(upstream_req).await {
        Ok(response) => {
            // The address actually dialled (one of the checked ones).
            if let Some(info) = response
                .extensions()
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
            {
                ex.record.ip = Some(info.remote_addr().ip().to_string());
            }
            respond(ex, response, outbound).await
        }
        Err(err) => {
            tracing::debug!(error = %err, "upstream request failed");
            if let Some(response) = agent_fault(&mut ex, &outbound) {
                return response;
            }
            let hint = if err.is_connect() {
                format!("cannot connect to {}:{}", dest.host, dest.port)
            } else {
                format!("the exchange with {}:{} failed", dest.host, dest.port)
            };
            ex.deny(DenyReason::UpstreamUnreachable, hint)
        }
    }
}

/// Hands the origin's response to the agent: hop-by-hop headers out, the inbound scan, and
/// a body that closes the record when its last byte is gone.
pub(crate) async fn respond(
    mut ex: Exchange,
    response: Response<Incoming>,
    outbound: Arc<Outbound>,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = match super::scan::scan_response(&mut ex, &mut parts.headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let status = parts.status.as_u16();
    Response::from_parts(
        parts,
        Either::Right(Metered::new(body, status, outbound, ex)),
    )
}

/// After a failed upstream exchange, the refusal when the fault lies on the agent's side:
/// the outbound scan cut the body, or the agent's body broke. `None`: the upstream's fault.
pub(crate) fn agent_fault(ex: &mut Exchange, outbound: &Outbound) -> Option<Response<ProxyBody>> {
    if super::scan::cut_by_scan(ex) {
        return Some(ex.deny(
            DenyReason::SecretInRequest,
            "a secret was found in the streaming request body; the upstream exchange was cut",
        ));
    }
    if outbound.failed.load(Ordering::Relaxed) {
        return Some(ex.deny(
            DenyReason::MalformedRequest,
            "the request body is malformed (bad chunked encoding or cut short)",
        ));
    }
    None
}

/// Reads the destination of an absolute-form request; anything else is not a proxy request.
pub fn absolute_destination(uri: &Uri) -> Result<Destination, String> {
    let Some(authority) = uri.authority() else {
        return Err(
            "cordon is a forward proxy: send absolute-form requests (http://host/path) or CONNECT"
                .into(),
        );
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("use CONNECT for https:// destinations".into()),
        _ => return Err("only http:// URIs can be proxied in absolute form".into()),
    }
    parse_authority(authority.as_str(), 80)
}

/// Splits `host[:port]`, rejecting userinfo, and canonicalises the host.
pub fn parse_authority(authority: &str, default_port: u16) -> Result<Destination, String> {
    if authority.contains('@') {
        return Err("credentials in the URL authority are not allowed".into());
    }
    let parsed: http::uri::Authority = authority
        .parse()
        .map_err(|_| format!("malformed authority {:?}", printable(authority)))?;
    let port = match parsed.port() {
        Some(port) => match port.as_u16() {
            0 => return Err("port 0 is not a destination".into()),
            port => port,
        },
        None if authority.ends_with(':') => return Err("empty port in authority".into()),
        None => default_port,
    };
    let host = canonical_host(parsed.host())
        .map_err(|err| format!("bad host {:?}: {err}", printable(parsed.host())))?;
    Ok(Destination { host, port })
}

/// SPEC §4 step 1: the `Host` header, when present, must name the canonical destination.
pub fn check_host_header(
    ex: &mut Exchange,
    headers: &HeaderMap,
    dest: &Destination,
    default_port: u16,
) -> Option<Response<ProxyBody>> {
    let mut values = headers.get_all(HOST).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return Some(ex.deny(DenyReason::MalformedRequest, "more than one Host header"));
    }
    let named = value
        .to_str()
        .map_err(|_| "Host header is not ASCII".to_owned())
        .and_then(|v| parse_authority(v, default_port));
    match named {
        Ok(named) if named.host == dest.host && named.port == dest.port => None,
        Ok(named) => ex.refuse(
            DenyReason::HostMismatch,
            format!(
                "Host {}:{} does not match the destination {}:{}",
                named.host, named.port, dest.host, dest.port
            ),
        ),
        Err(hint) => ex.refuse(DenyReason::HostMismatch, format!("Host header: {hint}")),
    }
}

/// SPEC §4 steps 3 and 4: the policy verdict, then the addresses the destination may be
/// dialed at. `Err` is the response to send instead.
pub async fn authorize(
    ex: &mut Exchange,
    target: &Target<'_>,
) -> Result<(Vec<IpAddr>, Option<usize>), Response<ProxyBody>> {
    let rule = decide(ex, target)?;
    let allow_ips = rule
        .map(|rule| ex.state().policy.egress()[rule].allow_ips.clone())
        .unwrap_or_default();
    Ok((checked_addresses(ex, target.host, &allow_ips).await?, rule))
}

/// SPEC §4 step 2: the normalised path, recorded; `Err` is the refusal to send.
// The refusal is the response itself, as in `authorize`; boxing it would only move the
// allocation onto the deny path's caller.
#[allow(clippy::result_large_err)]
pub(crate) fn checked_path(ex: &mut Exchange, raw: &str) -> Result<String, Response<ProxyBody>> {
    match normalize_path(raw) {
        Ok(path) => {
            ex.record.path = Some(path.clone());
            Ok(path)
        }
        Err(err) => {
            ex.record.path = Some(printable(raw));
            match ex.refuse(DenyReason::AmbiguousPath, err.to_string()) {
                Some(response) => Err(response),
                // Observe mode: the path goes on as the agent wrote it.
                None => Ok(raw.to_owned()),
            }
        }
    }
}

/// SPEC §4 step 3: the allowing egress entry, `None` when observe mode lets a refusal
/// through; `Err` is the refusal to send.
#[allow(clippy::result_large_err)]
pub(crate) fn decide(
    ex: &mut Exchange,
    target: &Target<'_>,
) -> Result<Option<usize>, Response<ProxyBody>> {
    match ex.state().policy.decide(target) {
        Decision::Allow { rule } => Ok(Some(rule)),
        Decision::Deny { reason, hint } => match ex.refuse(reason, hint) {
            Some(response) => Err(response),
            None => Ok(None),
        },
    }
}

/// Resolves and classifies; `Err` is the response to send (enforce) or a hard failure.
pub(crate) async fn checked_addresses(
    ex: &mut Exchange,
    host: &str,
    allow_ips: &[ipnet::IpNet],
) -> Result<Vec<IpAddr>, Response<ProxyBody>> {
    let addrs = match ex.state().resolver.resolve(host).await {
        Ok(addrs) => addrs,
        Err(err) => return Err(ex.deny(DenyReason::DnsFailure, err.to_string())),
    };
    let refused: Vec<(IpAddr, AddrClass)> = addrs
        .iter()
        .filter_map(|ip| permitted(*ip, allow_ips).err().map(|class| (*ip, class)))
        .collect();
    if !refused.is_empty() {
        ex.record.special_addresses = addrs
            .iter()
            .filter(|ip| crate::net::classify::permitted(**ip, &[]).is_err())
            .map(IpAddr::to_string)
            .collect();
    }
    if let Some((ip, class)) = refused.first() {
        // One bad address refuses the name: a rebinding answer mixes a public address with
        // an internal one, and cordon will not pick between them.
        ex.record.ip = Some(ip.to_string());
        let hint = if ip.to_string() == host {
            format!(
                "{ip} is a {} address; list it in allow_ips to reach it",
                class.as_str()
            )
        } else {
            format!(
                "{host} resolves to {ip}, a {} address; list it in allow_ips to reach it",
                class.as_str()
            )
        };
        if let Some(response) = ex.refuse(DenyReason::ForbiddenAddress, hint) {
            return Err(response);
        }
    }
    Ok(addrs)
}

/// The URI the upstream client dials: the checked addresses (tried in order), never the
/// name (see [`crate::net::pinned`]).
fn upstream_uri(addrs: &[IpAddr], port: u16, path: &str, query: &str) -> Result<Uri, String> {
    let host = crate::net::pinned::encode(addrs);
    format!("http://{host}:{port}{path}{query}")
        .parse()
        .map_err(|_| "the request target cannot be forwarded".to_owned())
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    ] {
        headers.remove(name);
    }
}

/// Request headers that never reach the origin.
pub(crate) fn strip_request_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    // cordon answers 100-continue itself when it starts reading the body.
    headers.remove(http::header::EXPECT);
    let own: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-cordon-"))
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
}

pub(crate) fn intent(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-cordon-intent")?;
    let text: String = String::from_utf8_lossy(value.as_bytes())
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_INTENT)
        .collect();
    Some(text)
}

/// A bounded, printable rendering of agent-supplied text for hints and records.
pub fn printable(raw: &str) -> String {
    raw.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Records a connection that broke before a request could be handled (malformed bytes,
/// oversized head, head timeout). hyper has already answered with 400/431 where it could.
pub fn connection_error(state: &Arc<State>, peer: SocketAddr, err: &hyper::Error) {
    let status = if err.is_parse_too_large() {
        431
    } else if err.is_parse() || err.is_parse_status() {
        400
    } else if err.is_timeout() {
        408
    } else {
        // The agent went away mid-exchange: nothing was decided, nothing to record.
        tracing::debug!(%peer, error = %err, "connection ended");
        return;
    };
    tracing::info!(%peer, status, error = %err, "malformed request");
    let record = Record {
        reason: Some(DenyReason::MalformedRequest.as_str()),
        status: Some(status),
        bytes_out: Some(0),
        bytes_in: Some(0),
        detail: Some(format!("{err}")),
        ..state.record("http", "deny")
    };
    state
        .metrics
        .requests
        .with_label_values(&["deny", DenyReason::MalformedRequest.as_str()])
        .inc();
    state.audit.record(record);
}
