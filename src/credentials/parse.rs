//! What sources print or answer, turned into a value and an expiry.
//!
//! Every parser here reads untrusted output that may hold the secret anywhere, so no error
//! message quotes the input: serde's messages can echo values, and are replaced by
//! cordon's own words plus a line/column where that helps.

use super::Secret;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime};

/// A value as a source produced it, before the cache numbers it (`Debug` shows the
/// fingerprint only).
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The value.
    pub secret: Secret,
    /// When the source says it stops working.
    pub expires_at: Option<SystemTime>,
}

/// The `apiVersion`s of kubectl's exec credential protocol cordon understands.
const EXEC_API_VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

/// Parses kubectl `ExecCredential` JSON (`status.token`, `status.expirationTimestamp`).
pub(crate) fn exec_credential(output: &[u8]) -> Result<Fetched, String> {
    let mut doc = json_object(output, "the plug-in's output")?;
    match doc.get("apiVersion").and_then(Value::as_str) {
        Some(v) if EXEC_API_VERSIONS.contains(&v) => {}
        _ => {
            return Err(format!(
                "the plug-in's output has no apiVersion {} or {}",
                EXEC_API_VERSIONS[0], EXEC_API_VERSIONS[1]
            ))
        }
    }
    if doc.get("kind").and_then(Value::as_str) != Some("ExecCredential") {
        return Err("the plug-in's output is not kind ExecCredential".to_string());
    }
    let Some(Value::Object(status)) = doc.get_mut("status") else {
        return Err("the plug-in's output has no status object".to_string());
    };
    let expires_at = optional_time(status, "expirationTimestamp", "status.expirationTimestamp")?;
    let secret = take_string(status, "token").ok_or_else(|| {
        "the plug-in's output has no status.token (client certificates are not supported)"
            .to_string()
    })?;
    Ok(Fetched {
        secret: checked_secret(secret, "status.token")?,
        expires_at,
    })
}

/// Parses a token file: a JSON object `{"token": …, "expires_at": …}`, or else the raw
/// token with surrounding whitespace removed.
pub(crate) fn token_file(content: &[u8]) -> Result<Fetched, String> {
    let text =
        std::str::from_utf8(content).map_err(|_| "the file is not UTF-8 text".to_string())?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the file is empty".to_string());
    }
    // Content that starts like JSON must be JSON: a half-written JSON file read during a
    // rewrite must never be taken for a raw token and sent upstream.
    if trimmed.starts_with('{') {
        let mut doc = json_object(trimmed.as_bytes(), "the file")?;
        let expires_at = optional_time(&doc, "expires_at", "expires_at")?;
        let secret =
            take_string(&mut doc, "token").ok_or_else(|| "the file has no token".to_string())?;
        return Ok(Fetched {
            secret: checked_secret(secret, "token")?,
            expires_at,
        });
    }
    Ok(Fetched {
        secret: checked_secret(trimmed.to_string(), "the file's content")?,
        expires_at: None,
    })
}

/// Parses an OAuth2 token response (RFC 6749 §5.1); `requested_at` is when the request was
/// sent, so `expires_in` is counted from the earliest moment it could have started.
pub(crate) fn oauth_token_response(
    body: &[u8],
    requested_at: SystemTime,
) -> Result<Fetched, String> {
    let mut doc = json_object(body, "the token response")?;
    let expires_at = match doc.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => {
            // Some servers send the number as a string.
            let secs = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e10)
            .ok_or_else(|| "the token response has an invalid expires_in".to_string())?;
            Some(requested_at + Duration::from_secs_f64(secs))
        }
    };
    let secret = take_string(&mut doc, "access_token")
        .ok_or_else(|| "the token response has no access_token".to_string())?;
    Ok(Fetched {
        secret: checked_secret(secret, "access_token")?,
        expires_at,
    })
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5.2): space becomes `+`, everything
/// but ASCII alphanumerics and `*-._` is percent-encoded.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(&mut out, name);
        out.push('=');
        encode_component(&mut out, value);
    }
    out
}

fn encode_component(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
}

/// RFC 3339 with `Z` or a numeric offset (`+02:00`), fractional seconds allowed.
pub(crate) fn rfc3339(s: &str) -> Option<SystemTime> {
    if s.ends_with('Z') || s.ends_with('z') {
        let base = &s[..s.len() - 1];
        return humantime::parse_rfc3339(&format!("{base}Z")).ok();
    }
    // humantime reads UTC only; an offset is taken off here and applied afterwards.
    let split = s.len().checked_sub(6)?;
    if !s.is_char_boundary(split) {
        return None;
    }
    let (base, offset) = s.split_at(split);
    let o = offset.as_bytes();
    if !matches!(o[0], b'+' | b'-') || o[3] != b':' {
        return None;
    }
    let digits = |a: u8, b: u8| -> Option<u64> {
        (a.is_ascii_digit() && b.is_ascii_digit())
            .then(|| u64::from(a - b'0') * 10 + u64::from(b - b'0'))
    };
    let (hours, minutes) = (digits(o[1], o[2])?, digits(o[4], o[5])?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let shift = Duration::from_secs(hours * 3600 + minutes * 60);
    let local = humantime::parse_rfc3339(&format!("{base}Z")).ok()?;
    // Local time = UTC + offset, so UTC = local − offset.
    if o[0] == b'+' {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
}

/// Whether a value can go into a header: no control characters other than tab.
fn checked_secret(value: String, what: &str) -> Result<Secret, String> {
    let secret = Secret::new(value);
    let bytes = secret.expose().as_bytes();
    if bytes.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if bytes.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "{what} contains a control character and cannot be sent in a header"
        ));
    }
    Ok(secret)
}

fn json_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("{what} is not a JSON object")),
        Err(e) => Err(format!(
            "{what} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    }
}

/// Moves a string out of the document so no second copy of the value stays behind in it.
fn take_string(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    match map.get_mut(key) {
        Some(Value::String(s)) => Some(std::mem::take(s)),
        _ => None,
    }
}

fn optional_time(
    map: &Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<Option<SystemTime>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => rfc3339(s)
            .map(Some)
            .ok_or_else(|| format!("{name} is not an RFC 3339 time")),
        Some(_) => Err(format!("{name} is not an RFC 3339 time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn exec_credential_v1_and_v1beta1() {
        for api in EXEC_API_VERSIONS {
            let out = format!(
                r#"{{"apiVersion":"{api}","kind":"ExecCredential",
                   "status":{{"token":"tok-1","expirationTimestamp":"2030-01-02T03:04:05Z"}}}}"#
            );
            let f = exec_credential(out.as_bytes()).unwrap();
            assert_eq!(
                f.secret.fingerprint(),
                Secret::new("tok-1".into()).fingerprint()
            );
            assert_eq!(f.expires_at, Some(at("2030-01-02T03:04:05Z")));
        }
        let no_expiry = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t"}}"#;
        assert_eq!(exec_credential(no_expiry).unwrap().expires_at, None);
    }

    #[test]
    fn exec_credential_errors_never_quote_the_output() {
        let marker = "MARKER-VALUE-42";
        for out in [
            format!("not json {marker}"),
            format!(r#"["{marker}"]"#),
            format!(r#"{{"apiVersion":"{marker}","kind":"ExecCredential","status":{{"token":"{marker}"}}}}"#),
            format!(r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"{marker}","status":{{"token":"x"}}}}"#),
            format!(r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"tokn":"{marker}"}}}}"#),
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":""}}"#.to_string(),
            format!(r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"a","expirationTimestamp":"{marker}"}}}}"#),
            format!(r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"a\n{marker}"}}}}"#),
            format!(r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":{{"x":"{marker}"}}}}}}"#),
        ] {
            let Err(e) = exec_credential(out.as_bytes()) else {
                panic!("accepted a malformed ExecCredential (case {})", out.len());
            };
            assert!(!e.contains(marker), "an error quotes the plug-in's output");
        }
    }

    #[test]
    fn token_file_raw_and_json() {
        let f = token_file(b"  raw-token-1\n").unwrap();
        assert_eq!(
            f.secret.fingerprint(),
            Secret::new("raw-token-1".into()).fingerprint()
        );
        assert_eq!(f.expires_at, None);

        let f =
            token_file(br#"{"token": "json-token", "expires_at": "2031-05-06T07:08:09.5+02:00"}"#)
                .unwrap();
        assert_eq!(
            f.secret.fingerprint(),
            Secret::new("json-token".into()).fingerprint()
        );
        assert_eq!(
            f.expires_at,
            Some(at("2031-05-06T05:08:09Z") + Duration::from_millis(500))
        );
        let f = token_file(br#"{"token": "t"}"#).unwrap();
        assert_eq!(f.expires_at, None);
    }

    #[test]
    fn token_file_errors() {
        assert!(token_file(b" \n").unwrap_err().contains("empty"));
        // A torn JSON file must not turn into a raw token.
        assert!(token_file(br#"{"token": "half"#)
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(token_file(br#"{"value": "x"}"#)
            .unwrap_err()
            .contains("no token"));
        assert!(token_file(b"two\nlines")
            .unwrap_err()
            .contains("control character"));
        assert!(token_file(br#"{"token": "x", "expires_at": 5}"#)
            .unwrap_err()
            .contains("expires_at"));
    }

    #[test]
    fn oauth_responses() {
        let t0 = at("2030-01-01T00:00:00Z");
        let f = oauth_token_response(
            br#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600}"#,
            t0,
        )
        .unwrap();
        assert_eq!(
            f.secret.fingerprint(),
            Secret::new("at-1".into()).fingerprint()
        );
        assert_eq!(f.expires_at, Some(t0 + Duration::from_secs(3600)));
        let f = oauth_token_response(br#"{"access_token":"a","expires_in":"2"}"#, t0).unwrap();
        assert_eq!(f.expires_at, Some(t0 + Duration::from_secs(2)));
        let f = oauth_token_response(br#"{"access_token":"a"}"#, t0).unwrap();
        assert_eq!(f.expires_at, None);

        let marker = "MARKER-VALUE-43";
        for body in [
            format!(r#"{{"error":"invalid_client","error_description":"{marker}"}}"#),
            format!(r#"{{"access_token":"{marker}","expires_in":-1}}"#),
            format!(r#"{{"access_token":"{marker}","expires_in":"soon"}}"#),
            format!("<html>{marker}</html>"),
        ] {
            let Err(e) = oauth_token_response(body.as_bytes(), t0) else {
                panic!("accepted a malformed token response");
            };
            assert!(!e.contains(marker), "an error quotes the token response");
        }
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[
                ("grant_type", "client_credentials"),
                ("client_id", "cordon app"),
                ("client_secret", "a+b&c=d/é~"),
                ("scope", "read write:all"),
            ]),
            "grant_type=client_credentials&client_id=cordon+app\
             &client_secret=a%2Bb%26c%3Dd%2F%C3%A9%7E&scope=read+write%3Aall"
        );
        assert_eq!(form_encode(&[("a", "*-._")]), "a=*-._");
        assert_eq!(form_encode(&[]), "");
    }

    #[test]
    fn rfc3339_forms() {
        let z = at("2030-06-01T12:00:00Z");
        assert_eq!(rfc3339("2030-06-01T12:00:00Z"), Some(z));
        assert_eq!(rfc3339("2030-06-01T12:00:00z"), Some(z));
        assert_eq!(rfc3339("2030-06-01T14:30:00+02:30"), Some(z));
        assert_eq!(rfc3339("2030-06-01T07:00:00-05:00"), Some(z));
        assert_eq!(rfc3339("2030-06-01T12:00:00+00:00"), Some(z));
        assert_eq!(
            rfc3339("2030-06-01T12:00:00.250Z"),
            Some(z + Duration::from_millis(250))
        );
        for bad in [
            "",
            "tomorrow",
            "2030-06-01",
            "2030-06-01T12:00:00",
            "2030-06-01T12:00:00+2:00",
            "2030-06-01T12:00:00+24:00",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad:?}");
        }
    }
}
