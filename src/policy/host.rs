//! Host patterns (`api.example.com`, `*.example.com`, IP literals) and host canonicalisation.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest DNS name, in characters, without the trailing dot (RFC 1035).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A host pattern from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exact canonical host (name or IP literal text).
    Exact(String),
    /// `*.suffix`: one or more labels before `suffix` (stored with its leading dot).
    Wildcard(String),
}

/// Why a host (pattern) is unacceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

fn err(msg: impl Into<String>) -> HostError {
    HostError(msg.into())
}

impl HostPattern {
    /// Parses a config host pattern; rejects bare `*`, empty, over-broad and malformed hosts.
    pub fn parse(raw: &str) -> Result<HostPattern, HostError> {
        if raw.is_empty() {
            return Err(err("host pattern is empty"));
        }
        if raw == "*" {
            return Err(err("bare \"*\" would allow every host"));
        }
        let Some(suffix) = raw.strip_prefix("*.") else {
            if raw.contains('*') {
                return Err(err(
                    "\"*\" is only allowed as a whole leading label (\"*.example.com\")",
                ));
            }
            return canonical_host(raw).map(HostPattern::Exact);
        };
        if suffix.contains('*') {
            return Err(err(
                "\"*\" is only allowed once, as a whole leading label (\"*.example.com\")",
            ));
        }
        let suffix = canonical_host(suffix)?;
        if is_ip_literal(&suffix) {
            return Err(err("a wildcard cannot cover an IP address"));
        }
        // One label under the star would be a whole TLD (`*.com`).
        if !suffix.contains('.') {
            return Err(err(format!(
                "\"*.{suffix}\" is too broad: name at least two labels after \"*.\""
            )));
        }
        Ok(HostPattern::Wildcard(format!(".{suffix}")))
    }

    /// Whether a canonical host matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == host,
            // A canonical host has no empty labels, so anything longer that ends in
            // ".suffix" has at least one whole label before it.
            HostPattern::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

/// Canonical form of a request host: ASCII lower-case, no trailing dot, IPv6 without brackets.
pub fn canonical_host(raw: &str) -> Result<String, HostError> {
    if raw.is_empty() {
        return Err(err("host is empty"));
    }
    if !raw.is_ascii() {
        return Err(err(
            "host contains non-ASCII characters (use its punycode form)",
        ));
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let v6 = inner
            .strip_suffix(']')
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
            .ok_or_else(|| err("bracketed host is not an IPv6 address"))?;
        return Ok(v6.to_string());
    }
    // The canonical form of an IPv6 host is unbracketed, so accept it back unchanged.
    if raw.contains(':') {
        return raw
            .parse::<Ipv6Addr>()
            .map(|v6| v6.to_string())
            .map_err(|_| err("host contains ':' but is not an IPv6 address"));
    }
    let name = raw.strip_suffix('.').unwrap_or(raw);
    if name.is_empty() {
        return Err(err("host is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(err("host is longer than 253 characters"));
    }
    let name = name.to_ascii_lowercase();
    for label in name.split('.') {
        if label.is_empty() {
            return Err(err("host has an empty label"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(err("host has a label longer than 63 characters"));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(err(format!("host contains {bad:?}")));
        }
    }
    // Std only accepts the strict dotted quad; everything else that ends in a number is
    // one of the inet_aton/WHATWG spellings (`127.1`, `0x7f.1`, `2130706433`) that
    // clients would silently turn into an address cordon never checked.
    if let Ok(v4) = name.parse::<Ipv4Addr>() {
        return Ok(v4.to_string());
    }
    let last = name.rsplit('.').next().unwrap_or(&name);
    if is_numeric_label(last) {
        return Err(err(
            "host looks numeric but is not a dotted-quad IPv4 address (e.g. 127.0.0.1)",
        ));
    }
    Ok(name)
}

/// Whether a label would be read as a number by inet_aton or a WHATWG URL parser.
fn is_numeric_label(label: &str) -> bool {
    if let Some(hex) = label.strip_prefix("0x") {
        return hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    label.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a canonical host is an IP literal rather than a name.
pub(crate) fn is_ip_literal(host: &str) -> bool {
    host.contains(':') || host.parse::<Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_host_accepts_and_normalises() {
        let cases = [
            ("api.example.com", "api.example.com"),
            ("API.Example.COM", "api.example.com"),
            ("api.example.com.", "api.example.com"),
            ("under_score.example.com", "under_score.example.com"),
            ("x-1.example.com", "x-1.example.com"),
            ("localhost", "localhost"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "::1"),
            ("[0:0:0:0:0:0:0:1]", "::1"),
            ("[2001:DB8::A]", "2001:db8::a"),
            ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
            ("::1", "::1"),
            ("cafe.bad", "cafe.bad"),
            ("0x7f.example.com", "0x7f.example.com"),
            ("1.2.3.example.com", "1.2.3.example.com"),
        ];
        for (raw, want) in cases {
            assert_eq!(canonical_host(raw).as_deref(), Ok(want), "{raw}");
            // Canonical output is a fixed point.
            assert_eq!(canonical_host(want).as_deref(), Ok(want), "{want}");
        }
        let long_label = "a".repeat(63);
        assert!(canonical_host(&format!("{long_label}.com")).is_ok());
        let long_name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long_name.len(), 253);
        assert!(canonical_host(&long_name).is_ok());
        assert!(canonical_host(&format!("{long_name}.")).is_ok());
    }

    #[test]
    fn canonical_host_refuses() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        let cases: Vec<&str> = vec![
            "",
            ".",
            "a..b",
            ".a.com",
            "a.com..",
            "exämple.com",
            "a b.com",
            "a/b.com",
            "a%2e.com",
            "user@host",
            "*.example.com",
            "[127.0.0.1]",
            "[example.com]",
            "[::1",
            "::g",
            "[fe80::1%25eth0]",
            &long_label,
            &long_name,
            // Alternate IPv4 spellings.
            "127.1",
            "0x7f.0.0.1",
            "0x7f000001",
            "2130706433",
            "017700000001",
            "0177.0.0.1",
            "127.0.0.01",
            "127.0.0.1.1",
            "256.0.0.1",
            "1.2.3",
            "example.123",
            "example.0x1f",
        ];
        for raw in cases {
            assert!(canonical_host(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn pattern_parse() {
        assert_eq!(
            HostPattern::parse("API.example.com."),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("*.Example.com"),
            Ok(HostPattern::Wildcard(".example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("127.0.0.1"),
            Ok(HostPattern::Exact("127.0.0.1".into()))
        );
        assert_eq!(
            HostPattern::parse("::1"),
            Ok(HostPattern::Exact("::1".into()))
        );
        assert_eq!(
            HostPattern::parse("[::1]"),
            Ok(HostPattern::Exact("::1".into()))
        );
        for bad in [
            "",
            "*",
            "*.",
            "*.com",
            "*.com.",
            "a.*.com",
            "*foo.com",
            "foo*",
            "*.*.example.com",
            "**.example.com",
            "*.1.2.3.4",
            "*.[::1]",
            "*.a..com",
            "a..b",
            "127.1",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn wildcard_matching() {
        let p = HostPattern::parse("*.example.com").unwrap();
        assert!(p.matches("a.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("evilexample.com"));
        assert!(!p.matches("a.evilexample.com"));
        assert!(!p.matches("example.com.evil.net"));
        assert!(!p.matches("com"));
    }

    #[test]
    fn exact_matching() {
        let p = HostPattern::parse("api.example.com").unwrap();
        assert!(p.matches("api.example.com"));
        assert!(!p.matches("a.api.example.com"));
        assert!(!p.matches("api.example.co"));
        let ip = HostPattern::parse("[::1]").unwrap();
        assert!(ip.matches(&canonical_host("[0::1]").unwrap()));
        assert!(!ip.matches("::2"));
    }
}
