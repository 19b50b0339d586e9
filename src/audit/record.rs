//! The record schema of SPEC §9. `seq`, `ts`, `prev` and `hash` are set by the writer.

use serde::Serialize;

/// One decision. Absent fields are left out of the JSON line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// `http`, `dns`, `grant`, `credential`, `scan`, `anomaly`, `config`.
    pub kind: &'static str,
    /// `allow`, `deny` or `would_deny`.
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Every address the name resolved to, when there were several: each one is checked,
    /// so a policy written from the trail must permit them all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialUse>,
    /// Secrets found by scanning: rule and location, never the value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingRecord>,
    /// DNS: the query type (`A`, `AAAA`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qtype: Option<String>,
    /// DNS: records in the answer given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<u32>,
    /// DNS: milliseconds the upstream took (absent for answers from the cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    /// DNS: how many identical decisions this record stands for (aggregated per second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// Free-text detail for operators (never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Which credential (and which value of it) a request carried; never the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialUse {
    pub id: String,
    pub version: u64,
}

/// One scan finding in a record: which rule, which direction, where in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingRecord {
    pub rule: String,
    /// `outbound` (agent to world) or `inbound` (world to agent).
    pub direction: &'static str,
    /// Byte offsets in the scanned text (the request head, or the body), end exclusive.
    pub start: u64,
    pub end: u64,
}
