//! Decision cache inside a compiled policy. A reload builds a new `Policy`
//! and so a new, empty cache: no invalidation protocol is needed.
//!
//! Sharded `HashMap<u64, Entry>` keyed by a keyed SipHash of every request
//! field the decision depends on; the full key is stored and compared on a
//! hit, so a hash collision is a miss, never a wrong answer. A full shard is
//! cleared (bounded memory, no eviction bookkeeping on the hot path). A hit
//! allocates nothing.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;

use parking_lot::Mutex;

use crate::decide::Outcome;
use crate::rule::Action;

const SHARDS: usize = 16;

/// Every input of a decision, borrowed.
#[derive(Hash, Clone, Copy)]
pub(crate) struct KeyRef<'a> {
    pub identity: u32,
    pub cert_cn: Option<&'a str>,
    pub username: Option<&'a str>,
    pub client_id: &'a str,
    pub action: Action,
    pub topic: &'a str,
    pub qos: u8,
    pub retain: bool,
    pub listener: &'a str,
    pub tls: bool,
    pub source: IpAddr,
}

#[derive(Debug)]
struct Entry {
    identity: u32,
    cert_cn: Option<Box<str>>,
    username: Option<Box<str>>,
    client_id: Box<str>,
    action: Action,
    topic: Box<str>,
    qos: u8,
    retain: bool,
    listener: Box<str>,
    tls: bool,
    source: IpAddr,
    outcome: Outcome,
}

impl Entry {
    fn is(&self, k: &KeyRef<'_>) -> bool {
        self.identity == k.identity
            && self.action == k.action
            && self.qos == k.qos
            && self.retain == k.retain
            && self.tls == k.tls
            && self.source == k.source
            && *self.topic == *k.topic
            && *self.client_id == *k.client_id
            && *self.listener == *k.listener
            && self.cert_cn.as_deref() == k.cert_cn
            && self.username.as_deref() == k.username
    }
}

/// The cache.
#[derive(Debug)]
pub(crate) struct Cache {
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    hasher: RandomState,
    per_shard: usize,
}

impl Cache {
    /// A cache holding about `capacity` decisions.
    pub(crate) fn new(capacity: usize) -> Cache {
        Cache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn locate(&self, k: &KeyRef<'_>) -> (u64, Option<&Mutex<HashMap<u64, Entry>>>) {
        let h = self.hasher.hash_one(k);
        (h, self.shards.get((h as usize) % SHARDS))
    }

    pub(crate) fn get(&self, k: &KeyRef<'_>) -> Option<Outcome> {
        let (h, shard) = self.locate(k);
        let map = shard?.lock();
        map.get(&h).filter(|e| e.is(k)).map(|e| e.outcome)
    }

    pub(crate) fn put(&self, k: &KeyRef<'_>, outcome: Outcome) {
        let (h, Some(shard)) = self.locate(k) else {
            return;
        };
        let entry = Entry {
            identity: k.identity,
            cert_cn: k.cert_cn.map(Into::into),
            username: k.username.map(Into::into),
            client_id: k.client_id.into(),
            action: k.action,
            topic: k.topic.into(),
            qos: k.qos,
            retain: k.retain,
            listener: k.listener.into(),
            tls: k.tls,
            source: k.source,
            outcome,
        };
        let mut map = shard.lock();
        if map.len() >= self.per_shard {
            map.clear();
        }
        map.insert(h, entry);
    }

    /// Number of cached decisions.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(topic: &'a str, cid: &'a str) -> KeyRef<'a> {
        KeyRef {
            identity: 1,
            cert_cn: None,
            username: Some("u"),
            client_id: cid,
            action: Action::Publish,
            topic,
            qos: 0,
            retain: false,
            listener: "l",
            tls: false,
            source: IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn hit_miss_and_bound() {
        let c = Cache::new(32);
        let o = Outcome {
            allowed: true,
            rule: 3,
        };
        assert_eq!(c.get(&key("a", "c")), None);
        c.put(&key("a", "c"), o);
        assert_eq!(c.get(&key("a", "c")), Some(o));
        assert_eq!(c.get(&key("a", "d")), None);
        for i in 0..1000 {
            c.put(&key(&format!("t/{i}"), "c"), o);
        }
        assert!(c.len() <= 32);
    }
}
