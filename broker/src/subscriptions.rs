//! The subscription index: which subscribers' filters match a topic.
//!
//! A level trie in the spirit of nats-server's sublist. Each node has a map of
//! literal children, a separate `+` child and, besides the subscribers whose
//! filter ends at the node, the subscribers of a filter ending in `/#` right
//! after it. Matching a topic therefore costs one hash lookup per level along
//! the literal path plus one extra walk per `+` branch that exists, independent
//! of how many filters are stored.
//!
//! All walks are loops (matching uses an explicit stack that only grows at `+`
//! branches), so no input can exhaust the call stack even with a generous
//! [`crate::topic::TopicLimits::max_levels`]. Removal prunes nodes that become
//! empty and shrinks sparse tables, so subscribe/unsubscribe churn cannot grow
//! memory without bound (the CVE-2024-8376 class of leak).

mod entries;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use self::entries::Entries;
use crate::topic::{TopicFilter, TopicName};

/// Level string of the single-level wildcard.
const PLUS: &str = "+";

/// One trie position, reached by a sequence of filter levels.
struct Node<K, V> {
    /// Literal next levels. `HashMap` with the default randomised hasher,
    /// because level strings come from clients and must not enable HashDoS.
    children: HashMap<Box<str>, Node<K, V>>,
    /// The `+` next level, kept apart so matching never has to look it up.
    plus: Option<Box<Node<K, V>>>,
    /// Subscribers whose filter ends exactly here.
    subs: Entries<K, V>,
    /// Subscribers of `<this prefix>/#` (or of `#` at the root).
    hash: Entries<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            plus: None,
            subs: Entries::default(),
            hash: Entries::default(),
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Tears the subtree down with an explicit stack: the derived drop would
    /// recurse once per level, and a deep chain (large `max_levels`) could
    /// overflow the stack when pruned or when the index is dropped.
    fn drop(&mut self) {
        if self.children.is_empty() && self.plus.is_none() {
            return;
        }
        let mut stack: Vec<Node<K, V>> = Vec::new();
        stack.extend(self.children.drain().map(|(_, child)| child));
        stack.extend(self.plus.take().map(|plus| *plus));
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, child)| child));
            stack.extend(node.plus.take().map(|plus| *plus));
            // `node` is dropped here with no children left, so its own
            // `drop` returns immediately.
        }
    }
}

impl<K: Eq + Hash, V> Node<K, V> {
    /// Number of outgoing edges (literal children plus the `+` child).
    fn edge_count(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    /// True when the node holds nothing and can be pruned.
    fn is_empty(&self) -> bool {
        self.edge_count() == 0 && self.subs.is_empty() && self.hash.is_empty()
    }

    /// The child for one filter level, if present.
    fn child(&self, level: &str) -> Option<&Node<K, V>> {
        if level == PLUS {
            self.plus.as_deref()
        } else {
            self.children.get(level)
        }
    }

    /// The child for one filter level, if present.
    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        if level == PLUS {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    /// The child for one filter level, created if absent.
    fn child_or_insert(&mut self, level: &str) -> &mut Node<K, V> {
        if level == PLUS {
            self.plus.get_or_insert_with(Box::default)
        } else {
            self.children.entry(Box::from(level)).or_default()
        }
    }

    /// Drops the edge for `level` and releases table memory once the
    /// children map is mostly empty (amortised O(1), see `Entries::remove`).
    fn remove_edge(&mut self, level: &str) {
        if level == PLUS {
            self.plus = None;
        } else {
            self.children.remove(level);
            if self.children.len().saturating_mul(4) < self.children.capacity() {
                self.children.shrink_to_fit();
            }
        }
    }
}

/// A filter split into its trie path and where its subscribers live.
struct Path<'a> {
    /// The levels before any trailing `#`; `None` means zero levels (the
    /// filter `#` itself), which is distinct from one empty level (`/#`).
    prefix: Option<&'a str>,
    /// Whether the filter ends in `#`.
    hash: bool,
}

impl<'a> Path<'a> {
    fn new(filter: &'a TopicFilter) -> Self {
        let s = filter.as_str();
        // Validation guarantees '#' only ever appears as the whole last level.
        match s.strip_suffix('#') {
            Some(rest) => Path {
                prefix: rest.strip_suffix('/'),
                hash: true,
            },
            None => Path {
                prefix: Some(s),
                hash: false,
            },
        }
    }

    fn levels(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.prefix.into_iter().flat_map(|p| p.split('/'))
    }
}

/// Subscription index: filter → subscribers, keyed by `K` (one entry per
/// (filter, key)).
///
/// `K` is typically a client or session id and `V` the per-subscription
/// options (QoS, no-local, subscription identifier, ...).
pub struct SubscriptionIndex<K, V> {
    root: Node<K, V>,
    len: usize,
}

impl<K, V> Default for SubscriptionIndex<K, V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K, V> fmt::Debug for SubscriptionIndex<K, V> {
    // The trie itself can hold millions of entries; only the size is useful
    // in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionIndex")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, V> SubscriptionIndex<K, V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert or replace; returns the previous value for (filter, key).
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let path = Path::new(filter);
        let mut node = &mut self.root;
        for level in path.levels() {
            node = node.child_or_insert(level);
        }
        let entries = if path.hash {
            &mut node.hash
        } else {
            &mut node.subs
        };
        let previous = entries.insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Remove (filter, key); returns the value if it existed. Prunes nodes
    /// that become empty.
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let path = Path::new(filter);
        let mut node = &mut self.root;
        for level in path.levels() {
            node = node.child_mut(level)?;
        }
        let value = if path.hash {
            node.hash.remove(key)
        } else {
            node.subs.remove(key)
        }?;
        self.len -= 1;
        if node.is_empty() {
            self.prune(&path);
        }
        Some(value)
    }

    /// Removes the now-empty tail of `path`.
    ///
    /// Mutable references cannot be kept on a stack while descending, so this
    /// walks twice: first read-only to find the deepest ancestor that must
    /// stay (it has subscribers or another edge), then mutably to that
    /// ancestor to cut the single edge below which everything is empty.
    fn prune(&mut self, path: &Path<'_>) {
        let mut cut_depth = 0;
        let mut node = &self.root;
        for (depth, level) in path.levels().enumerate() {
            if node.edge_count() > 1 || !node.subs.is_empty() || !node.hash.is_empty() {
                cut_depth = depth;
            }
            match node.child(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        let mut levels = path.levels();
        let mut node = &mut self.root;
        for level in levels.by_ref().take(cut_depth) {
            match node.child_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if let Some(level) = levels.next() {
            node.remove_edge(level);
        }
    }

    /// The value stored for (filter, key), if any.
    pub fn get(&self, filter: &TopicFilter, key: &K) -> Option<&V> {
        let path = Path::new(filter);
        let mut node = &self.root;
        for level in path.levels() {
            node = node.child(level)?;
        }
        if path.hash {
            node.hash.get(key)
        } else {
            node.subs.get(key)
        }
    }

    /// Calls `visit(key, value)` for every subscription whose filter matches
    /// `topic`. `$`-topics are not matched by a leading `+` or `#`
    /// [MQTT-4.7.2-1].
    ///
    /// Each (filter, key) entry is visited at most once, but one key may be
    /// visited several times through different overlapping filters; merging
    /// those is the caller's policy.
    ///
    /// The references handed to `visit` live as long as the borrow of the
    /// index, so a caller can collect them (e.g. into a target list) and
    /// dedupe after the walk without cloning.
    ///
    /// Returns how many filters matched (with at least one entry): when it
    /// is one, no key was visited twice, and a caller can skip its dedupe.
    pub fn for_each_match<'a>(
        &'a self,
        topic: &TopicName,
        mut visit: impl FnMut(&'a K, &'a V),
    ) -> usize {
        let mut filters = 0;
        let mut visit_all = |entries: &'a Entries<K, V>| {
            if !entries.is_empty() {
                filters += 1;
                entries.for_each(&mut visit);
            }
        };
        // Pending `+` branches: the node to continue from and the topic levels
        // still to consume. Empty (and unallocated) unless a `+` child exists.
        let mut pending: Vec<(&'a Node<K, V>, std::str::Split<'_, char>)> = Vec::new();
        // Only the root level is guarded against '$' topics.
        let mut guard_dollar = topic.is_system();
        let mut cursor = Some((&self.root, topic.levels()));
        while let Some((mut node, mut rest)) = cursor {
            loop {
                let Some(level) = rest.next() else {
                    // Topic exhausted: exact filters end here, and "x/#"
                    // also matches "x" (the parent level).
                    visit_all(&node.subs);
                    visit_all(&node.hash);
                    break;
                };
                if !guard_dollar {
                    visit_all(&node.hash);
                    if let Some(plus) = node.plus.as_deref() {
                        pending.push((plus, rest.clone()));
                    }
                }
                guard_dollar = false;
                match node.children.get(level) {
                    Some(child) => node = child,
                    None => break,
                }
            }
            cursor = pending.pop();
        }
        filters
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no subscriptions are stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes including the root, to check that pruning works.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.children.values());
            stack.extend(node.plus.as_deref());
        }
        count
    }
}
