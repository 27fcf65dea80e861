//! A connection's memo of policy decisions by topic.
//!
//! Asked once per message on both the publish and the delivery path, so the
//! common case (the same topic as the message before: a device publishing
//! its telemetry, a subscriber of one busy topic) is answered by a pointer
//! comparison, and everything else by a fast hash. Bounded: a connection
//! that cycles through many topics clears it and asks the policy again.

use std::collections::HashMap;

use crate::topic::TopicName;

/// Entries a memo holds before it starts over.
const CAPACITY: usize = 256;

/// Decisions of the policy in force, by topic (the caller clears it when
/// the policy changes).
#[derive(Default)]
pub(super) struct TopicMemo<V: Copy> {
    last: Option<(TopicName, V)>,
    // foldhash: topics come from clients, but the map is per connection and
    // bounded, so a crafted collision set costs that client only.
    map: HashMap<TopicName, V, foldhash::fast::RandomState>,
}

impl<V: Copy> TopicMemo<V> {
    /// The remembered value for `topic`.
    pub fn get(&mut self, topic: &TopicName) -> Option<V> {
        if let Some((t, v)) = &self.last
            && same(t, topic)
        {
            return Some(*v);
        }
        let v = *self.map.get(topic)?;
        self.last = Some((topic.clone(), v));
        Some(v)
    }

    /// Remembers `value` for `topic`.
    pub fn insert(&mut self, topic: &TopicName, value: V) {
        if self.map.len() >= CAPACITY {
            self.map.clear();
        }
        self.map.insert(topic.clone(), value);
        self.last = Some((topic.clone(), value));
    }

    /// Forgets everything (a new policy is in force).
    pub fn clear(&mut self) {
        self.last = None;
        self.map.clear();
    }
}

/// Equal topics; the same buffer (one message fanned out, one publisher's
/// repeated topic from its alias) is recognised without comparing bytes.
fn same(a: &TopicName, b: &TopicName) -> bool {
    let (a, b) = (a.as_str(), b.as_str());
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::TopicLimits;

    fn topic(s: &str) -> TopicName {
        TopicName::parse(s.into(), &TopicLimits::default()).unwrap()
    }

    #[test]
    fn remembers_by_topic_not_by_last_lookup() {
        let mut m = TopicMemo::default();
        m.insert(&topic("a/b"), true);
        m.insert(&topic("a/c"), false);
        assert_eq!(m.get(&topic("a/b")), Some(true));
        assert_eq!(m.get(&topic("a/c")), Some(false));
        assert_eq!(m.get(&topic("a/b")), Some(true));
        assert_eq!(m.get(&topic("a/d")), None);
        // A different topic with the same length must not match the last one.
        assert_eq!(m.get(&topic("a/x")), None);
        m.clear();
        assert_eq!(m.get(&topic("a/b")), None);
    }

    #[test]
    fn stays_bounded() {
        let mut m = TopicMemo::default();
        for i in 0..(CAPACITY * 3) {
            m.insert(&topic(&format!("t/{i}")), i);
        }
        assert!(m.map.len() <= CAPACITY);
        assert_eq!(
            m.get(&topic(&format!("t/{}", CAPACITY * 3 - 1))),
            Some(CAPACITY * 3 - 1)
        );
    }
}
