//! Who decided: every record names the agent, its instance and the policy, and carries a
//! decision id unique within the process.

use super::Record;
use std::sync::atomic::{AtomicU64, Ordering};

/// Stamps records for one agent and policy; shared by the proxy and the resolver.
pub struct Stamp {
    agent: String,
    instance: Option<String>,
    policy_hash: String,
    id_prefix: u32,
    counter: AtomicU64,
}

impl Stamp {
    /// A stamp for `agent` (and `instance`) deciding under the policy with `policy_hash`.
    pub fn new(agent: &str, instance: Option<&str>, policy_hash: &str) -> Stamp {
        let mut seed = [0u8; 4];
        // Decision ids only need to be unique per process; a clock fallback is fine.
        if getrandom::fill(&mut seed).is_err() {
            let nanos = std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            seed = (std::process::id() ^ nanos).to_le_bytes();
        }
        Stamp {
            agent: agent.to_owned(),
            instance: instance.map(str::to_owned),
            policy_hash: policy_hash.to_owned(),
            id_prefix: u32::from_le_bytes(seed),
            counter: AtomicU64::new(0),
        }
    }

    /// A new decision id, unique within this process and unlikely to repeat across restarts.
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("d-{:08x}{:010x}", self.id_prefix, n)
    }

    /// A record of `kind` with `decision`, stamped and with a fresh decision id.
    pub fn record(&self, kind: &'static str, decision: &'static str) -> Record {
        Record {
            kind,
            decision,
            decision_id: Some(self.next_id()),
            agent: Some(self.agent.clone()),
            instance: self.instance.clone(),
            policy_hash: Some(self.policy_hash.clone()),
            ..Record::default()
        }
    }
}
