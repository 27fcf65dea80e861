//! Per-node subscriber storage.
//!
//! Most trie nodes carry one or two subscribers (a device's own telemetry
//! filter), while a few popular filters (`#`, `site/+/alarms`) carry thousands.
//! A short vector keeps the common case small and allocation-light; past
//! [`SMALL_MAX`] entries it switches to a `HashMap` so insert/remove stay O(1)
//! instead of scanning every subscriber at a busy node.

use std::collections::HashMap;
use std::hash::Hash;
use std::mem;

/// Largest set kept as a vector; linear scans over this many keys are cheaper
/// than hashing.
const SMALL_MAX: usize = 8;

/// Below this many entries a map is turned back into a vector, with a gap to
/// `SMALL_MAX` so a set oscillating around the threshold does not convert on
/// every operation.
const DEMOTE_AT: usize = SMALL_MAX / 2;

/// Subscribers (key → value) whose filter ends at one trie position.
#[derive(Debug)]
pub(super) enum Entries<K, V> {
    /// Few entries: linear scan, no hashing, no per-set hasher state.
    Small(Vec<(K, V)>),
    /// Many entries: hashed. Boxed so that the common `Small` case keeps the
    /// node compact (24 instead of 48 bytes per `Entries`, two per node).
    #[allow(
        clippy::box_collection,
        reason = "keeps the enum as small as the Vec variant"
    )]
    Large(Box<HashMap<K, V>>),
}

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Self::Small(Vec::new())
    }
}

impl<K: Eq + Hash, V> Entries<K, V> {
    /// True when there are no entries.
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Self::Small(v) => v.is_empty(),
            Self::Large(m) => m.is_empty(),
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Small(v) => v.len(),
            Self::Large(m) => m.len(),
        }
    }

    /// Inserts or replaces, returning the previous value for `key`.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            Self::Small(v) => {
                if let Some((_, old)) = v.iter_mut().find(|(k, _)| *k == key) {
                    return Some(mem::replace(old, value));
                }
                if v.len() < SMALL_MAX {
                    // Most positions only ever get one subscriber: start with
                    // room for exactly one rather than Vec's default of four.
                    if v.capacity() == 0 {
                        v.reserve_exact(1);
                    }
                    v.push((key, value));
                } else {
                    let mut map: HashMap<K, V> = mem::take(v).into_iter().collect();
                    map.insert(key, value);
                    *self = Self::Large(Box::new(map));
                }
                None
            }
            Self::Large(m) => m.insert(key, value),
        }
    }

    /// Removes `key`, returning its value. Releases memory as the set shrinks
    /// so that churn never leaves a node holding a peak-sized table.
    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            Self::Small(v) => {
                let pos = v.iter().position(|(k, _)| k == key)?;
                let (_, value) = v.swap_remove(pos);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(value)
            }
            Self::Large(m) => {
                let value = m.remove(key)?;
                if m.len() <= DEMOTE_AT {
                    let small: Vec<(K, V)> = mem::take(&mut **m).into_iter().collect();
                    *self = Self::Small(small);
                } else if m.len().saturating_mul(4) < m.capacity() {
                    // Amortised O(1): after a shrink, another one needs about
                    // three quarters of the entries to be removed again.
                    m.shrink_to_fit();
                }
                Some(value)
            }
        }
    }

    /// Looks up `key`.
    pub(super) fn get(&self, key: &K) -> Option<&V> {
        match self {
            Self::Small(v) => v.iter().find(|(k, _)| k == key).map(|(_, value)| value),
            Self::Large(m) => m.get(key),
        }
    }

    /// Calls `visit` for every entry.
    pub(super) fn for_each<'a>(&'a self, visit: &mut impl FnMut(&'a K, &'a V)) {
        match self {
            Self::Small(v) => v.iter().for_each(|(k, value)| visit(k, value)),
            Self::Large(m) => m.iter().for_each(|(k, value)| visit(k, value)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn promotes_and_demotes() {
        let mut e = Entries::default();
        for i in 0..100u32 {
            assert_eq!(e.insert(i, i * 10), None);
        }
        assert!(matches!(e, Entries::Large(_)));
        assert_eq!(e.insert(7, 0), Some(70));
        assert_eq!(e.get(&7), Some(&0));
        assert_eq!(e.len(), 100);
        for i in 0..100u32 {
            assert!(e.remove(&i).is_some());
            if e.len() <= DEMOTE_AT {
                assert!(matches!(e, Entries::Small(_)));
            }
        }
        assert!(e.is_empty());
        assert_eq!(e.remove(&1), None);
        match &e {
            Entries::Small(v) => assert_eq!(v.capacity(), 0),
            Entries::Large(_) => unreachable!(),
        }
    }

    #[test]
    fn small_replace_and_visit() {
        let mut e = Entries::default();
        assert_eq!(e.insert("a", 1), None);
        assert_eq!(e.insert("b", 2), None);
        assert_eq!(e.insert("a", 3), Some(1));
        let mut seen = Vec::new();
        e.for_each(&mut |k, v| seen.push((*k, *v)));
        seen.sort();
        assert_eq!(seen, [("a", 3), ("b", 2)]);
        assert_eq!(e.remove(&"a"), Some(3));
        assert_eq!(e.get(&"a"), None);
        assert_eq!(e.get(&"b"), Some(&2));
    }
}
