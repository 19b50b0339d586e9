//! The file's shape as serde structs; every struct refuses unknown keys.
//!
//! Values stay close to what was written (strings, integers) so that validation in
//! `compile` can name the offending key and value in its own words.

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of config keys")]
pub(super) struct RawConfig {
    pub version: u64,
    pub agent: RawAgent,
    pub mode: Option<RawMode>,
    pub listen: Option<RawListen>,
    pub dns: Option<RawDns>,
    pub egress: Option<Vec<RawEgress>>,
    pub deny: Option<Vec<RawDeny>>,
    pub audit: RawAudit,
    pub tls: Option<RawTls>,
    /// A sorted map, so validation and the compiled list go in id order whatever the
    /// order in the file.
    pub credentials: Option<BTreeMap<String, RawCredential>>,
    pub scanning: Option<RawScanning>,
}

/// `scanning:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of scanning settings")]
pub(super) struct RawScanning {
    pub outbound: Option<String>,
    pub inbound: Option<String>,
    pub output: Option<String>,
    pub rules: Option<Vec<RawScanRule>>,
    pub known_values: Option<Vec<RawKnownValue>>,
}

/// One `scanning.rules` entry.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `id`, `regex` and `keywords`"
)]
pub(super) struct RawScanRule {
    pub id: String,
    pub regex: String,
    pub keywords: Vec<String>,
    pub entropy: Option<f64>,
}

/// One `scanning.known_values` entry: where a value cordon must never let out comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `env` or `file`")]
pub(super) struct RawKnownValue {
    pub env: Option<String>,
    pub file: Option<String>,
}

/// `tls:`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optional `ca_dir` and `extra_roots`"
)]
pub(super) struct RawTls {
    pub ca_dir: Option<String>,
    pub extra_roots: Option<Vec<String>>,
}

/// One `credentials.<id>` entry.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `source` and optional `inject`, `placeholder`, `env`, `require_placeholder`"
)]
pub(super) struct RawCredential {
    pub source: RawSource,
    pub inject: Option<RawInject>,
    pub placeholder: Option<String>,
    pub env: Option<String>,
    pub require_placeholder: Option<bool>,
}

/// `credentials.<id>.source`: every kind is an optional key so that "none" and "more than
/// one" can be reported in cordon's own words rather than serde's enum errors.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with exactly one of `env`, `file`, `exec`, `oauth2`"
)]
pub(super) struct RawSource {
    pub env: Option<String>,
    pub file: Option<String>,
    pub refresh: Option<String>,
    pub exec: Option<RawExec>,
    pub oauth2: Option<RawOAuth2>,
}

/// `credentials.<id>.source.exec`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `command` and optional `timeout`"
)]
pub(super) struct RawExec {
    pub command: Vec<String>,
    pub timeout: Option<String>,
}

/// `credentials.<id>.source.oauth2`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `token_url`, `client_id`, `client_secret_file` and optional `scopes`"
)]
pub(super) struct RawOAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret_file: String,
    pub scopes: Option<Vec<String>>,
}

/// `credentials.<id>.inject`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `header` and `value`")]
pub(super) struct RawInject {
    pub header: String,
    pub value: String,
}

/// `agent:`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `name` and optional `instance`"
)]
pub(super) struct RawAgent {
    pub name: String,
    pub instance: Option<String>,
}

/// `mode:`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawMode {
    Enforce,
    Observe,
}

/// `listen:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of listener addresses")]
pub(super) struct RawListen {
    pub proxy: Option<String>,
    pub admin: Option<String>,
    pub dns: Option<String>,
}

/// `dns:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `upstream`")]
pub(super) struct RawDns {
    pub upstream: Option<Vec<String>>,
    pub block_private_answers: Option<bool>,
    pub allow: Option<Vec<String>>,
    pub allow_types: Option<Vec<String>>,
    pub min_ttl: Option<String>,
    pub max_ttl: Option<String>,
}

/// One `egress:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with at least `host`")]
pub(super) struct RawEgress {
    pub host: String,
    pub ports: Option<Vec<RawPort>>,
    pub rules: Option<Vec<RawRule>>,
    pub allow_ips: Option<Vec<String>>,
    pub tls: Option<String>,
    pub credential: Option<String>,
}

/// One `egress[].rules` entry.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `methods` and/or `paths`"
)]
pub(super) struct RawRule {
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
}

/// One `deny:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with at least `host`")]
pub(super) struct RawDeny {
    pub host: String,
    pub ports: Option<Vec<RawPort>>,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
}

/// `audit:`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `path` and optional `fsync`"
)]
pub(super) struct RawAudit {
    pub path: String,
    pub fsync: Option<RawFsync>,
}

/// `audit.fsync`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawFsync {
    Every,
    Batch,
    None,
}

/// A TCP port, 1..=65535. Checked while deserialising so the error carries the exact
/// `ports[i]` path; digit strings are accepted because `${PORT}` expands to a string.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawPort(pub u16);

const PORT_EXPECTED: &str = "a port number from 1 to 65535";

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(PORT_EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                match u16::try_from(v) {
                    Ok(p) if p != 0 => Ok(RawPort(p)),
                    _ => Err(E::invalid_value(Unexpected::Unsigned(v), &PORT_EXPECTED)),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &PORT_EXPECTED)),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                match v.parse::<u64>() {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::invalid_value(Unexpected::Str(v), &PORT_EXPECTED)),
                }
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

/// Keys from the full specification that this release does not implement yet, by the
/// mapping they live in. They are named specifically so an operator with a newer config
/// learns the feature is missing rather than that they misspelled something.
const UNSUPPORTED_TOP: &[&str] = &["limits", "anomaly", "approvers", "grants"];
const UNSUPPORTED_SCANNING: &[&str] = &[];
const UNSUPPORTED_LISTEN: &[&str] = &["control", "transparent"];
const UNSUPPORTED_DNS: &[&str] = &[];
const UNSUPPORTED_EGRESS: &[&str] = &["capture"];
const UNSUPPORTED_SOURCE: &[&str] = &["aws_sts", "vault"];

/// Finds the first not-yet-supported key, as (key path, message).
pub(super) fn reject_unsupported(root: &Value) -> Result<(), (String, String)> {
    check_keys(root, "", "", UNSUPPORTED_TOP)?;
    if let Some(listen) = root.get("listen") {
        check_keys(listen, "listen", "listen", UNSUPPORTED_LISTEN)?;
    }
    if let Some(dns) = root.get("dns") {
        check_keys(dns, "dns", "dns", UNSUPPORTED_DNS)?;
    }
    if let Some(scanning) = root.get("scanning") {
        check_keys(scanning, "scanning", "scanning", UNSUPPORTED_SCANNING)?;
    }
    if let Some(Value::Sequence(entries)) = root.get("egress") {
        for (i, entry) in entries.iter().enumerate() {
            check_keys(
                entry,
                &format!("egress[{i}]"),
                "egress[]",
                UNSUPPORTED_EGRESS,
            )?;
        }
    }
    if let Some(Value::Mapping(credentials)) = root.get("credentials") {
        for (id, credential) in credentials {
            if let Some(source) = credential.get("source") {
                check_keys(
                    source,
                    &format!("credentials.{}.source", super::expand::key_name(id)),
                    "credentials.<id>.source",
                    UNSUPPORTED_SOURCE,
                )?;
            }
        }
    }
    Ok(())
}

/// `at` is the concrete path for the error's location, `generic` the spec's name for the
/// section (`egress[]`), used in the message so it reads like the documentation.
fn check_keys(
    map: &Value,
    at: &str,
    generic: &str,
    unsupported: &[&str],
) -> Result<(), (String, String)> {
    let Value::Mapping(map) = map else {
        return Ok(());
    };
    for key in map.keys() {
        if let Some(name) = key.as_str().filter(|k| unsupported.contains(k)) {
            let join = |prefix: &str| {
                if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{name}")
                }
            };
            return Err((
                join(at),
                format!(
                    "`{}` is not supported by this version of cordon",
                    join(generic)
                ),
            ));
        }
    }
    Ok(())
}

/// Rewords serde's messages for people editing YAML rather than Rust types.
pub(super) fn humanize(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        // "unknown field `x`, expected one of `a`, `b`" / "..., expected `a`" / "..., there are no fields"
        if let Some((name, allowed)) = rest.split_once(", expected one of ") {
            return format!("unknown key {name} (allowed keys: {allowed})");
        }
        if let Some((name, allowed)) = rest.split_once(", expected ") {
            return format!("unknown key {name} (allowed keys: {allowed})");
        }
        return format!("unknown key {rest}");
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("missing required key {rest}");
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return format!("unknown value {rest}");
    }
    msg.replace("unit value", "an empty value")
        .replace("expected u64", "expected a whole number")
}
