//! What an audit trail says happened, counted: the inventory `cordon run` prints and the
//! input of `cordon policy suggest`. Only a trail whose chain verifies is summarised.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Requests to one destination (host and port).
#[derive(Debug, Default, Clone)]
pub struct Destination {
    /// Requests per (method, path): how many, and how many enforce mode would refuse.
    pub requests: BTreeMap<(String, String), Counts>,
    /// CONNECT tunnels opened to it.
    pub tunnels: u64,
    /// Whether requests were seen inside a tunnel (TLS interception).
    pub intercepted: bool,
    /// Addresses dialled for it that only an `allow_ips` entry permits.
    pub special_ips: BTreeSet<String>,
}

/// Counts of one kind of request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Records.
    pub total: u64,
    /// Of which `would_deny` (observe mode) or `deny`.
    pub refused: u64,
}

/// A trail, counted.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Records summarised.
    pub records: u64,
    /// The agent named in the records (the first one seen).
    pub agent: Option<String>,
    /// HTTP requests and tunnels that went through (allowed, or allowed by observe mode).
    pub destinations: BTreeMap<(String, u16), Destination>,
    /// HTTP decisions by outcome: `allow`, `deny`, `would_deny`.
    pub decisions: BTreeMap<String, u64>,
    /// `would_deny` reasons: what enforce mode would have refused, and why.
    pub would_deny: BTreeMap<String, u64>,
    /// `deny` reasons.
    pub denied: BTreeMap<String, u64>,
    /// Requests refused by the deny boundary (never suggested as allowed).
    pub boundary: BTreeMap<(String, u16), u64>,
    /// Credentials cordon injected, by id.
    pub credentials: BTreeMap<String, u64>,
    /// Secrets found, by (direction, rule, host; the host is empty for output).
    pub findings: BTreeMap<(String, String, String), u64>,
    /// DNS questions, by (name, decision), counting aggregated records' `count`.
    pub dns: BTreeMap<(String, String), u64>,
}

/// Which records of a trail to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every record.
    All,
    /// Records from the last `cordon run started` on (one run's share of a shared trail).
    LastRun,
}

/// Counts the records of `path` as its chain is verified, in one pass and bounded memory;
/// a broken chain gives no summary.
pub fn summarize(path: &Path, scope: Scope) -> Result<Summary, String> {
    let mut summary = Summary::default();
    super::verify::verify_each(path, |record| {
        if scope == Scope::LastRun
            && str_of(record, "kind") == Some("config")
            && str_of(record, "detail") == Some("cordon run started")
        {
            // A later run starts here: only what follows belongs to the last one.
            summary = Summary::default();
        }
        summary.add(record);
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(summary)
}

/// One record's fields.
type Fields = Map<String, Value>;

fn str_of<'a>(record: &'a Fields, key: &str) -> Option<&'a str> {
    record.get(key).and_then(Value::as_str)
}

impl Summary {
    fn add(&mut self, record: &Fields) {
        self.records += 1;
        if self.agent.is_none() {
            self.agent = str_of(record, "agent").map(str::to_owned);
        }
        let decision = str_of(record, "decision").unwrap_or("");
        match str_of(record, "kind").unwrap_or("") {
            "http" => self.add_http(record, decision),
            "scan" => {
                for finding in record
                    .get("findings")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let text = |key| finding.get(key).and_then(Value::as_str).unwrap_or("?");
                    let (rule, direction) = (text("rule").to_owned(), text("direction").to_owned());
                    let host = str_of(record, "host").unwrap_or("").to_owned();
                    *self.findings.entry((direction, rule, host)).or_default() += 1;
                }
            }
            "dns" => {
                if let Some(name) = str_of(record, "host") {
                    let count = record.get("count").and_then(Value::as_u64).unwrap_or(1);
                    *self
                        .dns
                        .entry((name.to_owned(), decision.to_owned()))
                        .or_default() += count;
                }
            }
            _ => {}
        }
    }

    fn add_http(&mut self, record: &Fields, decision: &str) {
        *self.decisions.entry(decision.to_owned()).or_default() += 1;
        let reason = str_of(record, "reason");
        match (decision, reason) {
            ("would_deny", Some(reason)) => {
                *self.would_deny.entry(reason.to_owned()).or_default() += 1
            }
            ("deny", Some(reason)) => *self.denied.entry(reason.to_owned()).or_default() += 1,
            _ => {}
        }
        if let Some(id) = record
            .get("credential")
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
        {
            *self.credentials.entry(id.to_owned()).or_default() += 1;
        }
        let (Some(host), Some(port)) = (
            str_of(record, "host"),
            record.get("port").and_then(Value::as_u64),
        ) else {
            return;
        };
        let Ok(port) = u16::try_from(port) else {
            return;
        };
        let key = (host.to_owned(), port);
        if reason == Some("boundary") {
            *self.boundary.entry(key).or_default() += 1;
            return;
        }
        // Refused for good (enforce mode, or a request that could not be carried out):
        // nothing reached the destination, so it is not part of what the agent did.
        if decision == "deny" {
            return;
        }
        let method = str_of(record, "method").unwrap_or("");
        let destination = self.destinations.entry(key).or_default();
        // Whatever the first reason was, an address only `allow_ips` permits is noted: the
        // one dialled, and every special-purpose address the name resolved to.
        let listed = record
            .get("special_addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for ip in listed.chain(str_of(record, "ip")) {
            if let Ok(ip) = ip.parse() {
                if crate::net::classify::permitted(ip, &[]).is_err() {
                    destination.special_ips.insert(ip.to_string());
                }
            }
        }
        if method == "CONNECT" {
            destination.tunnels += 1;
            return;
        }
        let Some(path) = str_of(record, "path") else {
            return;
        };
        if record.get("sni").is_some() {
            destination.intercepted = true;
        }
        let counts = destination
            .requests
            .entry((method.to_owned(), path.to_owned()))
            .or_default();
        counts.total += 1;
        if decision == "would_deny" {
            counts.refused += 1;
        }
    }

    /// HTTP requests (not tunnels) that reached their destination.
    pub fn requests(&self) -> u64 {
        self.destinations
            .values()
            .flat_map(|d| d.requests.values())
            .map(|c| c.total)
            .sum()
    }

    /// The inventory `cordon run` prints when the child exits.
    pub fn inventory(&self, trail: &Path) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let count = |map: &BTreeMap<String, u64>, key: &str| map.get(key).copied().unwrap_or(0);
        let _ = writeln!(out, "cordon run: inventory");
        let _ = writeln!(
            out,
            "  http decisions: {} allowed, {} would be denied in enforce mode, {} denied",
            count(&self.decisions, "allow"),
            count(&self.decisions, "would_deny"),
            count(&self.decisions, "deny"),
        );
        let _ = writeln!(out, "  destinations:");
        if self.destinations.is_empty() {
            let _ = writeln!(out, "    (none)");
        }
        for ((host, port), dest) in &self.destinations {
            let _ = writeln!(
                out,
                "    {host}:{port}  requests {}  tunnels {}{}",
                dest.requests.values().map(|c| c.total).sum::<u64>(),
                dest.tunnels,
                if dest.special_ips.is_empty() {
                    String::new()
                } else {
                    format!(
                        "  non-public address {}",
                        dest.special_ips
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            for ((method, path), counts) in &dest.requests {
                let _ = writeln!(out, "      {method} {path}  {}", counts.total);
            }
        }
        let _ = writeln!(out, "  credentials injected:");
        list(
            &mut out,
            self.credentials.iter().map(|(k, v)| (k.clone(), *v)),
        );
        let _ = writeln!(out, "  credentials seen in traffic (sent by the agent):");
        list(
            &mut out,
            self.findings
                .iter()
                .filter(|((direction, _, _), _)| direction == "outbound")
                .map(|((_, rule, host), n)| (format!("{rule} to {host}"), *n)),
        );
        let _ = writeln!(out, "  secrets found in responses and output:");
        list(
            &mut out,
            self.findings
                .iter()
                .filter(|((direction, _, _), _)| direction != "outbound")
                .map(|((direction, rule, host), n)| {
                    if host.is_empty() {
                        (format!("{rule} ({direction})"), *n)
                    } else {
                        (format!("{rule} ({direction}, from {host})"), *n)
                    }
                }),
        );
        let _ = writeln!(out, "  enforce mode would deny:");
        list(
            &mut out,
            self.would_deny.iter().map(|(k, v)| (k.clone(), *v)),
        );
        if !self.denied.is_empty() {
            let _ = writeln!(out, "  denied:");
            list(&mut out, self.denied.iter().map(|(k, v)| (k.clone(), *v)));
        }
        let _ = writeln!(
            out,
            "  audit trail: {} ({} records)",
            trail.display(),
            self.records
        );
        let _ = writeln!(
            out,
            "  a policy for exactly this: cordon policy suggest --from {} --out cordon.yaml",
            trail.display()
        );
        out
    }
}

fn list(out: &mut String, items: impl Iterator<Item = (String, u64)>) {
    use std::fmt::Write;
    let mut any = false;
    for (name, n) in items {
        any = true;
        let _ = writeln!(out, "    {name}  {n}");
    }
    if !any {
        let _ = writeln!(out, "    (none)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditWriter, Fsync, Record, Stamp};

    fn trail(records: Vec<Record>) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cordon-summary-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let (audit, writer) = AuditWriter::open(
            &path,
            Fsync::None,
            prometheus::IntCounter::new("n", "n").unwrap(),
        )
        .unwrap();
        for record in records {
            audit.record(record);
        }
        writer.shutdown();
        path
    }

    #[test]
    fn the_last_run_is_what_follows_its_start_record() {
        let stamp = Stamp::new("bot", None, "sha256:0");
        let started = || Record {
            detail: Some("cordon run started".into()),
            ..stamp.record("config", "allow")
        };
        let request = |path: &str, decision: &'static str| Record {
            method: Some("GET".into()),
            host: Some("api.test".into()),
            port: Some(443),
            path: Some(path.into()),
            ip: Some("127.0.0.1".into()),
            reason: (decision == "would_deny").then_some("not_allowed"),
            ..stamp.record("http", decision)
        };
        let path = trail(vec![
            started(),
            request("/first", "would_deny"),
            started(),
            request("/second", "would_deny"),
            request("/second", "allow"),
        ]);
        let last = summarize(&path, Scope::LastRun).unwrap();
        let dest = &last.destinations[&("api.test".to_owned(), 443)];
        let paths: Vec<&str> = dest.requests.keys().map(|(_, p)| p.as_str()).collect();
        assert_eq!(paths, ["/second"]);
        assert_eq!(
            dest.requests[&("GET".to_owned(), "/second".to_owned())],
            Counts {
                total: 2,
                refused: 1
            }
        );
        assert!(dest.special_ips.contains("127.0.0.1"));
        assert_eq!(last.would_deny["not_allowed"], 1);
        let all = summarize(&path, Scope::All).unwrap();
        assert_eq!(all.requests(), 3);
        assert_eq!(all.records, 5);
    }

    #[test]
    fn a_broken_chain_is_not_summarised() {
        let stamp = Stamp::new("bot", None, "sha256:0");
        let path = trail(vec![
            stamp.record("config", "allow"),
            stamp.record("config", "allow"),
        ]);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"allow\"", "\"deny\"", 1)).unwrap();
        let err = summarize(&path, Scope::All).unwrap_err();
        assert!(err.contains("seq 1"), "{err}");
    }
}
