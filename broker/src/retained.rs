//! Retained messages: a trie of topic levels, matched by a subscription filter.
//!
//! The subscription index answers "which filters match this topic"; retained
//! lookups are the reverse ("which stored topics match this filter"), so they
//! get their own trie. Walks are iterative (explicit stack) and empty branches
//! are pruned on removal so a set/clear churn cannot grow memory.

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::Message;
use crate::topic::{TopicFilter, TopicName};

#[derive(Default, Debug)]
struct Node {
    children: HashMap<Box<str>, Node>,
    message: Option<Arc<Message>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.message.is_none()
    }
}

/// What storing a retained message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RetainOutcome {
    /// The message is now the retained message of its topic.
    Stored,
    /// An empty payload cleared the topic (or there was nothing to clear).
    Cleared,
    /// The store is full and the topic had no retained message yet.
    QuotaExceeded,
}

/// The retained message store, bounded by a message count.
#[derive(Debug)]
pub struct RetainedStore {
    root: Node,
    len: usize,
    /// Payload bytes of every retained message, kept as messages come and
    /// go so telemetry never walks the trie.
    bytes: usize,
    max: usize,
}

impl RetainedStore {
    /// An empty store holding at most `max` messages.
    pub fn new(max: usize) -> RetainedStore {
        RetainedStore {
            root: Node::default(),
            len: 0,
            bytes: 0,
            max,
        }
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no message is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total payload bytes of the retained messages.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sets, replaces or (empty payload) clears the retained message of a topic.
    pub fn set(&mut self, msg: Arc<Message>) -> RetainOutcome {
        if msg.payload.is_empty() {
            self.remove(&msg.topic);
            return RetainOutcome::Cleared;
        }
        // Check the quota before creating any node, so a refused message
        // leaves no empty branch behind.
        if self.len >= self.max && self.get(&msg.topic).is_none() {
            return RetainOutcome::QuotaExceeded;
        }
        let mut node = &mut self.root;
        for level in msg.topic.as_str().split('/') {
            node = node.children.entry(Box::from(level)).or_default();
        }
        self.bytes += msg.payload.len();
        match node.message.replace(msg) {
            None => self.len += 1,
            Some(old) => self.bytes = self.bytes.saturating_sub(old.payload.len()),
        }
        RetainOutcome::Stored
    }

    /// The retained message of exactly this topic.
    pub fn get(&self, topic: &TopicName) -> Option<&Arc<Message>> {
        let mut node = &self.root;
        for level in topic.as_str().split('/') {
            node = node.children.get(level)?;
        }
        node.message.as_ref()
    }

    /// Removes a topic's retained message, pruning emptied branches.
    pub fn remove(&mut self, topic: &TopicName) -> Option<Arc<Message>> {
        let levels: Vec<&str> = topic.as_str().split('/').collect();
        let removed = remove_at(&mut self.root, &levels)?;
        self.len -= 1;
        self.bytes = self.bytes.saturating_sub(removed.payload.len());
        Some(removed)
    }

    /// Visits every retained message whose topic matches `filter`.
    /// A leading wildcard never matches a `$` topic [MQTT-4.7.2-1].
    pub fn for_each_match(&self, filter: &TopicFilter, mut visit: impl FnMut(&Arc<Message>)) {
        let levels: Vec<&str> = filter.as_str().split('/').collect();
        // (node, index of the next filter level to match)
        let mut stack: Vec<(&Node, usize)> = vec![(&self.root, 0)];
        while let Some((node, i)) = stack.pop() {
            let at_root = i == 0;
            match levels.get(i) {
                None => {
                    if let Some(m) = &node.message {
                        visit(m);
                    }
                }
                Some(&"#") => {
                    // '#' matches the parent level too ("a/#" matches "a").
                    if !at_root && let Some(m) = &node.message {
                        visit(m);
                    }
                    let mut sub: Vec<&Node> = node
                        .children
                        .iter()
                        .filter(|(k, _)| !(at_root && k.starts_with('$')))
                        .map(|(_, n)| n)
                        .collect();
                    while let Some(n) = sub.pop() {
                        if let Some(m) = &n.message {
                            visit(m);
                        }
                        sub.extend(n.children.values());
                    }
                }
                Some(&"+") => {
                    for (k, child) in &node.children {
                        if !(at_root && k.starts_with('$')) {
                            stack.push((child, i + 1));
                        }
                    }
                }
                Some(level) => {
                    if let Some(child) = node.children.get(*level) {
                        stack.push((child, i + 1));
                    }
                }
            }
        }
    }

    /// Every retained message, for snapshots.
    pub fn iter_all(&self) -> Vec<Arc<Message>> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = vec![&self.root];
        while let Some(n) = stack.pop() {
            if let Some(m) = &n.message {
                out.push(m.clone());
            }
            stack.extend(n.children.values());
        }
        out
    }
}

/// Removes the message at `levels` below `node`; prunes empty children on the
/// way back. Depth is bounded by the topic level limit enforced at parse time.
fn remove_at(node: &mut Node, levels: &[&str]) -> Option<Arc<Message>> {
    match levels.split_first() {
        None => node.message.take(),
        Some((first, rest)) => {
            let child = node.children.get_mut(*first)?;
            let removed = remove_at(child, rest);
            if child.is_empty() {
                node.children.remove(*first);
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MessageProps, QoS};
    use crate::topic::TopicLimits;

    fn msg(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::parse(topic.into(), &TopicLimits::default()).unwrap(),
            payload: bytes::Bytes::from_static(payload),
            qos: QoS::AtMostOnce,
            retain: true,
            props: Arc::new(MessageProps::default()),
            expires_at_ms: None,
            publisher: None,
            received_at: None,
        })
    }

    fn matched(store: &RetainedStore, filter: &str) -> Vec<String> {
        let f = TopicFilter::parse(filter, &TopicLimits::default()).unwrap();
        let mut v = Vec::new();
        store.for_each_match(&f, |m| v.push(m.topic.as_str().to_owned()));
        v.sort();
        v
    }

    #[test]
    fn set_replace_clear_and_prune() {
        let mut s = RetainedStore::new(10);
        assert_eq!(s.set(msg("a/b", b"1")), RetainOutcome::Stored);
        assert_eq!(s.set(msg("a/b", b"two")), RetainOutcome::Stored);
        assert_eq!(s.set(msg("c", b"45")), RetainOutcome::Stored);
        assert_eq!((s.len(), s.bytes()), (2, 5));
        assert_eq!(s.set(msg("a/b", b"")), RetainOutcome::Cleared);
        assert_eq!((s.len(), s.bytes()), (1, 2));
        assert!(s.remove(&msg("c", b"").topic).is_some());
        assert_eq!((s.len(), s.bytes()), (0, 0));
        assert!(s.root.children.is_empty());
    }

    #[test]
    fn quota_counts_new_topics_only() {
        let mut s = RetainedStore::new(1);
        assert_eq!(s.set(msg("a", b"1")), RetainOutcome::Stored);
        assert_eq!(s.set(msg("b", b"1")), RetainOutcome::QuotaExceeded);
        assert_eq!(s.set(msg("a", b"2")), RetainOutcome::Stored);
        assert_eq!(s.root.children.len(), 1);
    }

    #[test]
    fn wildcards_and_dollar_topics() {
        let mut s = RetainedStore::new(100);
        for t in ["a", "a/b", "a/b/c", "a//c", "$SYS/x", "b/c"] {
            s.set(msg(t, b"x"));
        }
        assert_eq!(matched(&s, "a/#"), vec!["a", "a//c", "a/b", "a/b/c"]);
        assert_eq!(matched(&s, "#"), vec!["a", "a//c", "a/b", "a/b/c", "b/c"]);
        assert_eq!(matched(&s, "+/+"), vec!["a/b", "b/c"]);
        assert_eq!(matched(&s, "a/+/c"), vec!["a//c", "a/b/c"]);
        assert_eq!(matched(&s, "$SYS/#"), vec!["$SYS/x"]);
        assert_eq!(matched(&s, "+/x"), Vec::<String>::new());
    }
}
