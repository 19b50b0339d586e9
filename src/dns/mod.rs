//! The filtering resolver (SPEC §7): only names the policy covers are answered, everything
//! else is refused without asking anyone, and answers lose the special-purpose addresses an
//! agent could use to reach internal services (DNS rebinding) unless a rule lists them.

pub mod forward;
pub mod server;

pub use forward::Forwarder;

use crate::audit::{AuditHandle, Record, Stamp};
use crate::config::Dns;
use crate::metrics::Metrics;
use crate::net::permitted;
use crate::policy::{canonical_host, HostPattern, NameDecision, Policy};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record as DnsRecord, RecordType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most distinct (name, type, outcome) records written per second; the rest of a flood
/// is counted in one record.
const RECORDS_PER_SECOND: usize = 1000;
/// The UDP answer size for clients that send no EDNS.
const PLAIN_UDP_LIMIT: usize = 512;

/// Why a query was refused or emptied; the closed list is in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsReason {
    NotAllowed,
    Boundary,
    TypeNotAllowed,
    BadName,
    CnameNotAllowed,
    PrivateAnswer,
    UpstreamFailed,
}

impl DnsReason {
    /// The reason code in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsReason::NotAllowed => "not_allowed",
            DnsReason::Boundary => "boundary",
            DnsReason::TypeNotAllowed => "type_not_allowed",
            DnsReason::BadName => "bad_name",
            DnsReason::CnameNotAllowed => "cname_not_allowed",
            DnsReason::PrivateAnswer => "private_answer",
            DnsReason::UpstreamFailed => "upstream_failed",
        }
    }
}

/// Everything the resolver decides with.
pub struct DnsService {
    policy: Policy,
    allow: Vec<HostPattern>,
    allow_types: Vec<RecordType>,
    block_private: bool,
    /// `mode: observe`: names the policy would refuse are answered and recorded as
    /// `would_deny` (malformed names and unlisted record types are still refused).
    observe: bool,
    forwarder: Arc<Forwarder>,
    records: DnsRecords,
    metrics: Metrics,
}

impl DnsService {
    /// A resolver deciding by `policy` and `dns`, forwarding through `forwarder`.
    pub fn new(
        policy: Policy,
        mode: crate::config::Mode,
        dns: &Dns,
        forwarder: Arc<Forwarder>,
        audit: AuditHandle,
        stamp: Arc<Stamp>,
        metrics: Metrics,
    ) -> DnsService {
        let allow_types = dns
            .allow_types
            .iter()
            .filter_map(|t| t.parse::<RecordType>().ok())
            .collect();
        DnsService {
            policy,
            allow: dns.allow.clone(),
            allow_types,
            block_private: dns.block_private_answers,
            observe: mode == crate::config::Mode::Observe,
            forwarder,
            records: DnsRecords::new(audit, stamp),
            metrics,
        }
    }

    /// Answers one DNS message; `None` means drop it (not a query at all).
    pub async fn handle(&self, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
        let query = match Message::from_vec(packet) {
            Ok(query) => query,
            Err(_) => {
                // Unparseable: FORMERR when there is at least an id to answer to.
                self.metrics
                    .dns_queries
                    .with_label_values(&["formerr"])
                    .inc();
                if packet.len() < 12 {
                    return None;
                }
                let id = u16::from_be_bytes([packet[0], packet[1]]);
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                    .to_vec()
                    .ok();
            }
        };
        if query.message_type() != MessageType::Query {
            return None;
        }
        if query.op_code() != OpCode::Query {
            return error(&query, ResponseCode::NotImp);
        }
        if query.queries().len() != 1 {
            return error(&query, ResponseCode::FormErr);
        }
        let q = &query.queries()[0];
        let name = q.name().to_lowercase();
        let qtype = q.query_type();
        let host = name.to_ascii().trim_end_matches('.').to_owned();
        let limit = if udp {
            query
                .extensions()
                .as_ref()
                .map(|e| usize::from(e.max_payload()).max(PLAIN_UDP_LIMIT))
                .unwrap_or(PLAIN_UDP_LIMIT)
        } else {
            u16::MAX as usize
        };

        let (rcode, records, outcome) = self.decide(&name, &host, qtype).await;
        self.metrics
            .dns_queries
            .with_label_values(&[outcome.decision()])
            .inc();
        if let Some(took) = outcome.upstream {
            self.metrics.dns_upstream.observe(took.as_secs_f64());
        }
        self.records
            .note(&host, qtype, &outcome, records.len() as u32);
        respond(&query, rcode, records, limit)
    }

    async fn decide(
        &self,
        name: &Name,
        host: &str,
        qtype: RecordType,
    ) -> (ResponseCode, Vec<DnsRecord>, Outcome) {
        let refuse = |reason| (ResponseCode::Refused, Vec::new(), Outcome::deny(reason));
        if !matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::CNAME)
            && !self.allow_types.contains(&qtype)
        {
            return refuse(DnsReason::TypeNotAllowed);
        }
        if canonical_host(host).map(|h| h != host).unwrap_or(true) {
            return refuse(DnsReason::BadName);
        }
        // In observe mode a policy refusal is only noted; the first one is the record's reason.
        let mut would = None;
        let allow_ips = match self.name_decision(host) {
            NameDecision::Allowed { allow_ips } => allow_ips,
            NameDecision::Boundary if self.observe => {
                would = Some(DnsReason::Boundary);
                Vec::new()
            }
            NameDecision::NotListed if self.observe => {
                would = Some(DnsReason::NotAllowed);
                Vec::new()
            }
            NameDecision::Boundary => return refuse(DnsReason::Boundary),
            NameDecision::NotListed => return refuse(DnsReason::NotAllowed),
        };
        let lookup = match self.forwarder.lookup(name, qtype).await {
            Ok(lookup) => lookup,
            Err(err) => {
                tracing::debug!(name = %host, error = %err, "upstream failed");
                return (
                    ResponseCode::ServFail,
                    Vec::new(),
                    Outcome::deny(DnsReason::UpstreamFailed),
                );
            }
        };
        let upstream = lookup.upstream;
        let answer = lookup.answer;
        let age = answer.fetched.elapsed().as_secs() as u32;

        // Walk the CNAME chain from the queried name; every name in it must be allowed.
        let mut chain = vec![name.clone()];
        let mut kept = Vec::new();
        let mut dropped = 0usize;
        for record in &answer.records {
            let owner = record.name().to_lowercase();
            if !chain.contains(&owner) {
                continue;
            }
            let mut record = record.clone();
            record.set_ttl(record.ttl().saturating_sub(age));
            let address: Option<std::net::IpAddr> = match record.data() {
                RData::A(a) => Some(a.0.into()),
                RData::AAAA(a) => Some(a.0.into()),
                _ => None,
            };
            let special =
                self.block_private && address.is_some_and(|ip| permitted(ip, &allow_ips).is_err());
            match record.data() {
                RData::CNAME(target) => {
                    let target = target.0.to_lowercase();
                    let target_host = target.to_ascii().trim_end_matches('.').to_owned();
                    let target_allowed = matches!(
                        self.name_decision(&target_host),
                        NameDecision::Allowed { .. }
                    );
                    if !target_allowed && self.observe {
                        would = would.or(Some(DnsReason::CnameNotAllowed));
                    } else if !target_allowed {
                        return (
                            ResponseCode::Refused,
                            Vec::new(),
                            Outcome {
                                upstream,
                                ..Outcome::deny(DnsReason::CnameNotAllowed)
                            },
                        );
                    }
                    chain.push(target);
                    kept.push(record);
                }
                _ if special && self.observe => {
                    would = would.or(Some(DnsReason::PrivateAnswer));
                    kept.push(record);
                }
                _ if special => dropped += 1,
                _ if record.record_type() == qtype || record.record_type() == RecordType::CNAME => {
                    kept.push(record)
                }
                _ => {}
            }
        }
        let addresses = kept
            .iter()
            .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
            .count();
        if dropped > 0 && addresses == 0 {
            // Nothing usable is left: answer as if the name had no such address.
            return (
                ResponseCode::NXDomain,
                Vec::new(),
                Outcome {
                    upstream,
                    ..Outcome::deny(DnsReason::PrivateAnswer)
                },
            );
        }
        let outcome = Outcome {
            allowed: true,
            reason: would.or((dropped > 0).then_some(DnsReason::PrivateAnswer)),
            would_deny: would.is_some(),
            upstream,
        };
        (answer.rcode, kept, outcome)
    }

    /// The policy's verdict for a name, widened by `dns.allow`.
    fn name_decision(&self, host: &str) -> NameDecision {
        match self.policy.decide_name(host) {
            NameDecision::NotListed if self.allow.iter().any(|p| p.matches(host)) => {
                NameDecision::Allowed {
                    allow_ips: Vec::new(),
                }
            }
            other => other,
        }
    }

    /// Writes the aggregated records of the past second; call once a second.
    pub fn flush_records(&self) {
        self.records.flush();
    }
}

/// What became of one query.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    allowed: bool,
    reason: Option<DnsReason>,
    /// Answered only because of observe mode.
    would_deny: bool,
    upstream: Option<Duration>,
}

impl Outcome {
    fn deny(reason: DnsReason) -> Outcome {
        Outcome {
            allowed: false,
            reason: Some(reason),
            would_deny: false,
            upstream: None,
        }
    }

    fn decision(&self) -> &'static str {
        match (self.allowed, self.would_deny) {
            (true, false) => "allow",
            (true, true) => "would_deny",
            (false, _) => "deny",
        }
    }
}

fn error(query: &Message, rcode: ResponseCode) -> Option<Vec<u8>> {
    Message::error_msg(query.id(), query.op_code(), rcode)
        .to_vec()
        .ok()
}

/// The response to `query`: its question, `rcode`, `records`, truncated to `limit` for UDP.
fn respond(
    query: &Message,
    rcode: ResponseCode,
    records: Vec<DnsRecord>,
    limit: usize,
) -> Option<Vec<u8>> {
    let mut response = Message::new();
    response
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(rcode)
        .add_queries(query.queries().to_vec());
    if query.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        response.set_edns(edns);
    }
    response.add_answers(records);
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    // Too large for this transport: an empty, truncated answer sends the client to TCP.
    response.take_answers();
    response.set_truncated(true);
    response.to_vec().ok()
}

/// Per-second aggregation of resolver decisions into audit records.
struct DnsRecords {
    audit: AuditHandle,
    stamp: Arc<Stamp>,
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    entries: HashMap<(String, RecordType, &'static str, Option<DnsReason>), Tally>,
    /// Decisions past the per-second limit: (allowed, refused).
    overflow: (u64, u64),
}

struct Tally {
    count: u64,
    answers: u32,
    upstream: Option<Duration>,
    first: Instant,
}

impl DnsRecords {
    fn new(audit: AuditHandle, stamp: Arc<Stamp>) -> DnsRecords {
        DnsRecords {
            audit,
            stamp,
            window: Mutex::new(Window::default()),
        }
    }

    fn note(&self, host: &str, qtype: RecordType, outcome: &Outcome, answers: u32) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let key = (host.to_owned(), qtype, outcome.decision(), outcome.reason);
        let full = window.entries.len() >= RECORDS_PER_SECOND;
        match window.entries.get_mut(&key) {
            Some(tally) => {
                tally.count += 1;
                tally.answers = answers;
                if outcome.upstream.is_some() {
                    tally.upstream = outcome.upstream;
                }
            }
            None if full && outcome.allowed => window.overflow.0 += 1,
            None if full => window.overflow.1 += 1,
            None => {
                window.entries.insert(
                    key,
                    Tally {
                        count: 1,
                        answers,
                        upstream: outcome.upstream,
                        first: Instant::now(),
                    },
                );
            }
        }
    }

    fn flush(&self) {
        let window = std::mem::take(&mut *self.window.lock().unwrap_or_else(|e| e.into_inner()));
        let mut entries: Vec<_> = window.entries.into_iter().collect();
        entries.sort_by_key(|(_, tally)| tally.first);
        for ((host, qtype, decision, reason), tally) in entries {
            let record = Record {
                reason: reason.map(DnsReason::as_str),
                host: Some(host),
                qtype: Some(qtype.to_string()),
                answers: Some(tally.answers),
                upstream_ms: tally
                    .upstream
                    .map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
                count: Some(tally.count),
                ..self.stamp.record("dns", decision)
            };
            self.audit.record(record);
        }
        for (count, decision) in [(window.overflow.0, "allow"), (window.overflow.1, "deny")] {
            if count > 0 {
                let record = Record {
                    count: Some(count),
                    detail: Some(format!(
                        "more than {RECORDS_PER_SECOND} distinct queries in one second; these are counted, not listed"
                    )),
                    ..self.stamp.record("dns", decision)
                };
                self.audit.record(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditWriter, Fsync};
    use crate::policy::{EgressEntry, TlsMode};

    /// A small deterministic generator, so a failing case can be replayed from its seed.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn service() -> (DnsService, AuditWriter, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("cordon-dns-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let metrics = Metrics::new();
        let (audit, writer) =
            AuditWriter::open(&path, Fsync::None, metrics.audit_records.clone()).unwrap();
        let entry = EgressEntry {
            host: HostPattern::parse("*.example.com").unwrap(),
            ports: vec![443],
            rules: Vec::new(),
            allow_ips: Vec::new(),
            tls: TlsMode::Passthrough,
            credential: None,
        };
        let dns = Dns {
            upstream: Vec::new(),
            block_private_answers: true,
            allow: Vec::new(),
            allow_types: Vec::new(),
            min_ttl: Duration::ZERO,
            max_ttl: Duration::from_secs(60),
        };
        // No upstream: an allowed query ends in SERVFAIL at once, without any traffic.
        let forwarder = Arc::new(Forwarder::new(
            Vec::new(),
            Duration::ZERO,
            Duration::from_secs(60),
        ));
        let stamp = Arc::new(Stamp::new("fuzz", None, "sha256:0"));
        let service = DnsService::new(
            Policy::new(vec![entry], Vec::new()),
            crate::config::Mode::Enforce,
            &dns,
            forwarder,
            audit,
            stamp,
            metrics,
        );
        (service, writer, dir)
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut message = Message::new();
        message
            .set_id(7)
            .set_message_type(MessageType::Query)
            .add_query(hickory_proto::op::Query::query(
                Name::from_ascii(name).unwrap(),
                qtype,
            ));
        message.to_vec().unwrap()
    }

    #[tokio::test]
    async fn random_and_mutated_packets_never_panic_and_get_formerr_or_nothing() {
        let (service, writer, dir) = service();
        let seeds = [
            query("a.example.com.", RecordType::A),
            query("x.test.", RecordType::AAAA),
            query("b.example.com.", RecordType::CNAME),
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for case in 0..30_000u32 {
            let packet: Vec<u8> = if case % 3 == 0 {
                let len = (rng.next() % 600) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                // A real query with a few bytes flipped, cut or grown: the parser's edges.
                let mut packet = seeds[(case as usize) % seeds.len()].clone();
                for _ in 0..(1 + rng.next() % 4) {
                    let at = (rng.next() as usize) % packet.len();
                    packet[at] = rng.next() as u8;
                }
                match rng.next() % 4 {
                    0 => packet.truncate((rng.next() as usize) % packet.len()),
                    1 => packet.extend((0..rng.next() % 40).map(|_| rng.next() as u8)),
                    _ => {}
                }
                packet
            };
            if let Some(reply) = service.handle(&packet, true).await {
                let reply = Message::from_vec(&reply).expect("every reply parses");
                assert_eq!(reply.message_type(), MessageType::Response);
                assert!(
                    reply.answers().is_empty(),
                    "case {case}: nothing answered without an upstream"
                );
            }
        }
        // A valid query still gets its proper refusal afterwards.
        let reply = service
            .handle(&query("nope.test.", RecordType::A), true)
            .await
            .unwrap();
        assert_eq!(
            Message::from_vec(&reply).unwrap().response_code(),
            ResponseCode::Refused
        );
        service.flush_records();
        drop(service);
        writer.shutdown();
        let _ = std::fs::remove_dir_all(dir);
    }
}
