//! Credential injection (SPEC §4 step 6): the agent holds placeholders, the origin gets the
//! real value, and a placeholder or a real value never goes where its credential is not
//! bound.

use crate::audit::CredentialUse;
use crate::credentials::Credentials;
use crate::policy::DenyReason;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::Uri;

/// A refusal from injection: reason and a hint without any value in it.
pub type Refusal = (DenyReason, String);

/// Checks every credential's placeholder and value against the request, then puts the
/// value of `bound` (the allowing rule's credential) in. Returns which value was used.
pub fn inject(
    credentials: &Credentials,
    bound: Option<&str>,
    parts: &mut Parts,
) -> Result<Option<CredentialUse>, Refusal> {
    let mut used = None;
    for cache in credentials.all() {
        let spec = cache.spec();
        let is_bound = bound == Some(spec.id.as_str());
        let current = cache.current();
        if !is_bound {
            if mentions(parts, &spec.placeholder) {
                return Err((
                    DenyReason::PlaceholderMisuse,
                    format!(
                        "the placeholder of credential {} was sent to a host it is not bound to",
                        spec.id
                    ),
                ));
            }
            if let Ok(issued) = &current {
                if mentions(parts, issued.secret.expose()) {
                    return Err((
                        DenyReason::RealSecretUsed,
                        format!(
                            "the value of credential {} may only go to its own hosts",
                            spec.id
                        ),
                    ));
                }
            }
            continue;
        }
        let issued = current.map_err(|err| (DenyReason::CredentialUnavailable, err.to_string()))?;
        let secret = issued.secret.expose();
        if spec.require_placeholder && mentions(parts, secret) {
            return Err((
                DenyReason::RealSecretUsed,
                format!(
                    "credential {} requires its placeholder; the request carries the real value",
                    spec.id
                ),
            ));
        }
        swap(parts, &spec.placeholder, secret)?;
        if let Some(inject) = &spec.inject {
            let name = HeaderName::from_bytes(inject.header.as_bytes()).map_err(|_| {
                (
                    DenyReason::CredentialUnavailable,
                    format!("credential {}: bad inject header", spec.id),
                )
            })?;
            let value =
                sensitive(&inject.value.replacen("{secret}", secret, 1)).ok_or_else(|| {
                    (
                        DenyReason::CredentialUnavailable,
                        format!("credential {}: value is not a valid header value", spec.id),
                    )
                })?;
            parts.headers.insert(name, value);
        }
        used = Some(CredentialUse {
            id: spec.id.clone(),
            version: issued.version,
        });
    }
    Ok(used)
}

/// Whether `needle` appears in any header value, a decoded Basic credential, the path or
/// the query (raw or percent-decoded).
fn mentions(parts: &Parts, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let needle = needle.as_bytes();
    let in_text =
        |text: &str| contains(text.as_bytes(), needle) || contains(&percent_decode(text), needle);
    parts
        .headers
        .values()
        .any(|v| contains(v.as_bytes(), needle) || basic(v).is_some_and(|d| contains(&d, needle)))
        || in_text(parts.uri.path())
        || parts.uri.query().is_some_and(in_text)
}

/// Replaces the placeholder by the secret in header values, Basic credentials and the query.
fn swap(parts: &mut Parts, placeholder: &str, secret: &str) -> Result<(), Refusal> {
    let bad = || {
        (
            DenyReason::CredentialUnavailable,
            "the credential's value cannot be placed in this request".to_owned(),
        )
    };
    for value in parts.headers.values_mut() {
        if let Some(decoded) = basic(value).filter(|d| contains(d, placeholder.as_bytes())) {
            let swapped = replace(&decoded, placeholder.as_bytes(), secret.as_bytes());
            *value = sensitive(&format!("Basic {}", BASE64.encode(swapped))).ok_or_else(bad)?;
        } else if contains(value.as_bytes(), placeholder.as_bytes()) {
            let swapped = replace(value.as_bytes(), placeholder.as_bytes(), secret.as_bytes());
            let mut swapped = HeaderValue::from_bytes(&swapped).map_err(|_| bad())?;
            swapped.set_sensitive(true);
            *value = swapped;
        }
    }
    if let Some(query) = parts.uri.query().filter(|q| q.contains(placeholder)) {
        let query = query.replace(placeholder, &percent_encode(secret));
        let path = parts.uri.path();
        let mut builder = Uri::builder();
        if let Some(scheme) = parts.uri.scheme() {
            builder = builder.scheme(scheme.clone());
        }
        if let Some(authority) = parts.uri.authority() {
            builder = builder.authority(authority.clone());
        }
        parts.uri = builder
            .path_and_query(format!("{path}?{query}"))
            .build()
            .map_err(|_| bad())?;
    }
    Ok(())
}

fn sensitive(text: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(text).ok()?;
    // Keeps HPACK from indexing the value into the connection's shared table.
    value.set_sensitive(true);
    Some(value)
}

/// The decoded `user:password` of a `Basic` credential.
fn basic(value: &HeaderValue) -> Option<Vec<u8>> {
    let text = value.to_str().ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    BASE64.decode(rest.trim()).ok()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay.len() >= needle.len()
        && hay.windows(needle.len()).any(|w| w == needle)
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len() + with.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::AUTHORIZATION;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn placeholders_are_swapped_in_headers_basic_auth_and_the_query() {
        let basic = BASE64.encode("user:PH_TOKEN_0001");
        let mut p = parts(
            "https://api.test/v1?key=PH_TOKEN_0001&x=1",
            &[
                ("x-api-key", "PH_TOKEN_0001"),
                ("authorization", &format!("Basic {basic}")),
            ],
        );
        swap(&mut p, "PH_TOKEN_0001", "s3cr+t/=").unwrap();
        assert_eq!(p.headers["x-api-key"], "s3cr+t/=");
        assert!(p.headers["x-api-key"].is_sensitive());
        let decoded = super::basic(&p.headers[AUTHORIZATION]).unwrap();
        assert_eq!(decoded, b"user:s3cr+t/=");
        assert_eq!(p.uri.query(), Some("key=s3cr%2Bt%2F%3D&x=1"));
        assert_eq!(p.uri.path(), "/v1");
    }

    #[test]
    fn mentions_finds_values_in_every_place_and_not_elsewhere() {
        let enc = BASE64.encode("me:hunter2hunter2");
        assert!(mentions(
            &parts("http://a.test/?q=hunter2hunter2", &[]),
            "hunter2hunter2"
        ));
        assert!(mentions(
            &parts("http://a.test/?q=hunter2%68unter2", &[]),
            "hunter2hunter2"
        ));
        assert!(mentions(
            &parts(
                "http://a.test/",
                &[("authorization", &format!("basic {enc}"))]
            ),
            "hunter2hunter2"
        ));
        assert!(mentions(
            &parts("http://a.test/", &[("cookie", "a=hunter2hunter2")]),
            "hunter2hunter2"
        ));
        assert!(mentions(
            &parts("http://a.test/bot/hunter2hunter2/send", &[]),
            "hunter2hunter2"
        ));
        assert!(!mentions(
            &parts("http://a.test/hunter2", &[("cookie", "a=hunter")]),
            "hunter2hunter2"
        ));
        assert!(!mentions(&parts("http://a.test/", &[]), ""));
    }
}
