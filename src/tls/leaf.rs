//! The bounded per-host cache of minted leaves (and the server configs that present them).

use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How many hosts keep a cached leaf; a sidecar talks to far fewer, so reaching this means
/// churn (or an agent probing names) and dropping entries costs only a re-mint.
pub(crate) const DEFAULT_CAPACITY: usize = 4096;

/// A leaf is re-minted once less than this remains, so no handshake ever presents a
/// certificate that could expire while the connection is being set up or soon after.
pub(crate) const REMINT_MARGIN: Duration = Duration::from_secs(60 * 60);

/// One host's leaf, and the server config built around it (per ALPN list) once asked for.
pub(crate) struct Entry {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) expires: SystemTime,
    pub(crate) server: Option<(Vec<Vec<u8>>, Arc<rustls::ServerConfig>)>,
}

impl Entry {
    fn usable_at(&self, now: SystemTime) -> bool {
        self.expires
            .duration_since(now)
            .is_ok_and(|left| left >= REMINT_MARGIN)
    }
}

/// host → leaf, bounded by `capacity`.
pub(crate) struct LeafCache {
    entries: HashMap<String, Entry>,
    capacity: usize,
}

impl LeafCache {
    pub(crate) fn new(capacity: usize) -> LeafCache {
        LeafCache {
            entries: HashMap::new(),
            capacity: capacity.max(2),
        }
    }

    /// The cached entry for `host` if it still has enough validity left at `now`.
    pub(crate) fn get_usable(&mut self, host: &str, now: SystemTime) -> Option<&mut Entry> {
        self.entries.get_mut(host).filter(|e| e.usable_at(now))
    }

    /// Stores `entry` for `host`, making room first if the cache is full.
    pub(crate) fn insert(&mut self, host: String, entry: Entry, now: SystemTime) -> &mut Entry {
        if !self.entries.contains_key(&host) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.usable_at(now));
            if self.entries.len() >= self.capacity {
                // No order is tracked (that would cost every hit a write); dropping an
                // arbitrary half keeps eviction O(n) and rare, and a dropped host costs
                // one signature when it comes back.
                let mut keep = false;
                self.entries.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
        }
        match self.entries.entry(host) {
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                slot.insert(entry);
                slot.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(slot) => slot.insert(entry),
        }
    }

    /// How many hosts are cached.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
