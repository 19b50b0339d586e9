//! Asking the upstream servers, and remembering their answers for as long as the TTL says
//! (within `dns.min_ttl` … `dns.max_ttl`). The cache holds upstream answers as they came;
//! filtering for the agent happens on the way out, so the proxy sees the same addresses.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream may take before the next is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The EDNS payload size cordon offers upstream (the DNS flag day value).
const EDNS_PAYLOAD: u16 = 1232;
/// Most answers kept; past this, expired entries go first, then everything.
const CACHE_CAPACITY: usize = 65_536;

/// An upstream answer as cached: its rcode and answer records.
pub struct Answer {
    pub rcode: ResponseCode,
    pub records: Vec<Record>,
    /// When it was obtained; TTLs are counted down from here.
    pub fetched: Instant,
    pub expires: Instant,
}

/// The outcome of a lookup: the answer and, when it came from upstream now, how long that took.
pub struct Lookup {
    pub answer: Arc<Answer>,
    pub upstream: Option<Duration>,
}

/// Why no answer could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ForwardError(pub String);

/// Forwards queries to `dns.upstream` and caches what comes back.
pub struct Forwarder {
    upstream: Vec<SocketAddr>,
    min_ttl: Duration,
    max_ttl: Duration,
    cache: Mutex<HashMap<(Name, RecordType), Arc<Answer>>>,
}

impl Forwarder {
    /// A forwarder over `upstream` (tried in order).
    pub fn new(upstream: Vec<SocketAddr>, min_ttl: Duration, max_ttl: Duration) -> Forwarder {
        Forwarder {
            upstream,
            min_ttl,
            max_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `name` (lower-case, absolute) and `qtype`, from the cache while fresh.
    pub async fn lookup(&self, name: &Name, qtype: RecordType) -> Result<Lookup, ForwardError> {
        let key = (name.clone(), qtype);
        if let Some(answer) = self.cached(&key) {
            return Ok(Lookup {
                answer,
                upstream: None,
            });
        }
        let started = Instant::now();
        let response = self.ask(name, qtype).await?;
        let took = started.elapsed();
        let answer = Arc::new(self.answer_from(response));
        if answer.expires > answer.fetched {
            self.store(key, answer.clone());
        }
        Ok(Lookup {
            answer,
            upstream: Some(took),
        })
    }

    /// Every address of `host` (A and AAAA, through CNAMEs in the answers), via the cache.
    pub async fn resolve_ips(&self, host: &str) -> Result<Vec<IpAddr>, ForwardError> {
        let name = Name::from_ascii(format!("{host}."))
            .map_err(|_| ForwardError(format!("{host} is not a DNS name")))?;
        let (v4, v6) = tokio::join!(
            self.lookup(&name, RecordType::A),
            self.lookup(&name, RecordType::AAAA)
        );
        let mut addrs = Vec::new();
        let mut last_error = None;
        for result in [v4, v6] {
            match result {
                Ok(lookup) => addrs.extend(chain_addresses(&name, &lookup.answer.records)),
                Err(err) => last_error = Some(err),
            }
        }
        if addrs.is_empty() {
            return Err(
                last_error.unwrap_or_else(|| ForwardError(format!("{host} does not resolve")))
            );
        }
        Ok(addrs)
    }

    fn cached(&self, key: &(Name, RecordType)) -> Option<Arc<Answer>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|a| a.expires > Instant::now())
            .cloned()
    }

    fn store(&self, key: (Name, RecordType), answer: Arc<Answer>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            let now = Instant::now();
            cache.retain(|_, a| a.expires > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, answer);
    }

    fn answer_from(&self, mut response: Message) -> Answer {
        let fetched = Instant::now();
        let records = response.take_answers();
        let ttl = records.iter().map(|r| r.ttl()).min().unwrap_or(0);
        // Negative answers are kept briefly (no SOA minimum is consulted).
        let ttl = if records.is_empty() { 5 } else { ttl };
        let ttl = Duration::from_secs(u64::from(ttl)).clamp(self.min_ttl, self.max_ttl);
        Answer {
            rcode: response.response_code(),
            records,
            fetched,
            expires: fetched + ttl,
        }
    }

    /// Asks each upstream in turn: UDP first, TCP when the answer was truncated.
    async fn ask(&self, name: &Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let mut last = ForwardError("no upstream DNS server configured".into());
        for server in &self.upstream {
            match ask_one(*server, name, qtype).await {
                Ok(message) => return Ok(message),
                Err(err) => last = err,
            }
        }
        Err(last)
    }
}

/// The addresses in `records` that belong to `name` or to the CNAME chain from it.
pub fn chain_addresses(name: &Name, records: &[Record]) -> Vec<IpAddr> {
    let mut chain = vec![name.clone()];
    for record in records {
        if let RData::CNAME(target) = record.data() {
            if chain.iter().any(|n| n == record.name()) {
                chain.push(target.0.to_lowercase());
            }
        }
    }
    records
        .iter()
        .filter(|r| chain.iter().any(|n| n == &r.name().to_lowercase()))
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn query_message(name: &Name, qtype: RecordType) -> Result<(u16, Vec<u8>), ForwardError> {
    let mut id = [0u8; 2];
    // A random id (with a random source port) is what makes off-path spoofing hard.
    getrandom::fill(&mut id)
        .map_err(|e| ForwardError(format!("no randomness for a query id: {e}")))?;
    let id = u16::from_le_bytes(id);
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    message.set_edns(edns);
    let bytes = message
        .to_vec()
        .map_err(|e| ForwardError(format!("encoding a query: {e}")))?;
    Ok((id, bytes))
}

/// Whether `response` answers the query `id` for `name`/`qtype`.
fn answers(response: &Message, id: u16, name: &Name, qtype: RecordType) -> bool {
    response.id() == id
        && response.message_type() == MessageType::Response
        && response
            .queries()
            .first()
            .is_some_and(|q| q.query_type() == qtype && q.name().to_lowercase() == *name)
}

async fn ask_one(
    server: SocketAddr,
    name: &Name,
    qtype: RecordType,
) -> Result<Message, ForwardError> {
    let (id, query) = query_message(name, qtype)?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let udp = async {
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(server).await?;
        socket.send(&query).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await?;
            // Anything that is not the answer to this query is ignored, not trusted.
            if let Ok(message) = Message::from_vec(&buf[..n]) {
                if answers(&message, id, name, qtype) {
                    return Ok::<_, std::io::Error>(message);
                }
            }
        }
    };
    let message = match tokio::time::timeout(UPSTREAM_TIMEOUT, udp).await {
        Ok(Ok(message)) => message,
        Ok(Err(err)) => return Err(ForwardError(format!("upstream {server}: {err}"))),
        Err(_) => {
            return Err(ForwardError(format!(
                "upstream {server} did not answer within 2 s"
            )))
        }
    };
    if !message.truncated() {
        return Ok(message);
    }
    match tokio::time::timeout(UPSTREAM_TIMEOUT, ask_tcp(server, id, &query)).await {
        Ok(Ok(message)) if answers(&message, id, name, qtype) => Ok(message),
        Ok(Ok(_)) => Err(ForwardError(format!(
            "upstream {server} answered another query over TCP"
        ))),
        Ok(Err(err)) => Err(ForwardError(format!("upstream {server} over TCP: {err}"))),
        Err(_) => Err(ForwardError(format!(
            "upstream {server} did not answer over TCP within 2 s"
        ))),
    }
}

async fn ask_tcp(server: SocketAddr, _id: u16, query: &[u8]) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
