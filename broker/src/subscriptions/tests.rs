#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeSet, HashMap};

use bytestring::ByteString;
use proptest::prelude::*;

use super::SubscriptionIndex;
use crate::topic::{TopicFilter, TopicLimits, TopicName};

fn filter(s: &str) -> TopicFilter {
    TopicFilter::parse(s, &TopicLimits::default()).unwrap()
}

fn topic(s: &str) -> TopicName {
    TopicName::parse(ByteString::from(s.to_owned()), &TopicLimits::default()).unwrap()
}

fn matches<V: Clone + Ord>(idx: &SubscriptionIndex<u32, V>, t: &str) -> Vec<(u32, V)> {
    let mut out = Vec::new();
    idx.for_each_match(&topic(t), |k, v| out.push((*k, v.clone())));
    out.sort();
    out
}

#[test]
fn insert_replace_remove() {
    let mut idx = SubscriptionIndex::new();
    assert!(idx.is_empty());
    assert_eq!(idx.insert(&filter("a/b"), 1u32, "x"), None);
    assert_eq!(idx.insert(&filter("a/b"), 2, "y"), None);
    assert_eq!(idx.insert(&filter("a/b"), 1, "z"), Some("x"));
    assert_eq!(idx.len(), 2);
    assert_eq!(idx.get(&filter("a/b"), &1), Some(&"z"));
    assert_eq!(idx.get(&filter("a/+"), &1), None);
    assert_eq!(matches(&idx, "a/b"), [(1, "z"), (2, "y")]);
    assert_eq!(idx.remove(&filter("a/b"), &1), Some("z"));
    assert_eq!(idx.remove(&filter("a/b"), &1), None);
    assert_eq!(idx.remove(&filter("a/c"), &2), None);
    assert_eq!(idx.remove(&filter("a/#"), &2), None);
    assert_eq!(idx.len(), 1);
    assert_eq!(matches(&idx, "a/b"), [(2, "y")]);
    assert_eq!(idx.remove(&filter("a/b"), &2), Some("y"));
    assert!(idx.is_empty());
    assert_eq!(idx.node_count(), 1);
    assert!(format!("{idx:?}").contains("len: 0"));
}

#[test]
fn visited_references_outlive_the_callback() {
    // The router collects `&V` during the walk and dedupes afterwards.
    let mut idx = SubscriptionIndex::new();
    idx.insert(&filter("a/+"), 1u32, String::from("plus"));
    idx.insert(&filter("a/b"), 2, String::from("exact"));
    let mut found: Vec<&String> = Vec::new();
    idx.for_each_match(&topic("a/b"), |_, v| found.push(v));
    found.sort();
    assert_eq!(found, ["exact", "plus"]);
}

#[test]
fn hash_and_exact_at_same_position_are_distinct() {
    let mut idx = SubscriptionIndex::new();
    idx.insert(&filter("a"), 1u32, 'e');
    idx.insert(&filter("a/#"), 1, 'h');
    idx.insert(&filter("#"), 1, 'r');
    idx.insert(&filter("/#"), 1, 's');
    assert_eq!(idx.len(), 4);
    assert_eq!(matches(&idx, "a"), [(1, 'e'), (1, 'h'), (1, 'r')]);
    assert_eq!(matches(&idx, "a/x/y"), [(1, 'h'), (1, 'r')]);
    assert_eq!(matches(&idx, "/x"), [(1, 'r'), (1, 's')]);
    assert_eq!(matches(&idx, "$SYS/x"), []);
    assert_eq!(idx.remove(&filter("a/#"), &1), Some('h'));
    assert_eq!(matches(&idx, "a"), [(1, 'e'), (1, 'r')]);
}

#[test]
fn wildcard_matching() {
    let mut idx = SubscriptionIndex::new();
    for (i, f) in [
        "sport/tennis/+",
        "sport/#",
        "+/+",
        "/+",
        "+",
        "#",
        "$SYS/#",
        "$SYS/+",
        "a/+/b",
        "sport/tennis/player1/#",
    ]
    .iter()
    .enumerate()
    {
        idx.insert(&filter(f), i as u32, *f);
    }
    let names = |t: &str| {
        matches(&idx, t)
            .into_iter()
            .map(|(_, f)| f)
            .collect::<BTreeSet<_>>()
    };
    let set = |v: &[&'static str]| v.iter().copied().collect::<BTreeSet<_>>();
    assert_eq!(
        names("sport/tennis/player1"),
        set(&["sport/tennis/+", "sport/#", "#", "sport/tennis/player1/#"])
    );
    assert_eq!(names("sport"), set(&["sport/#", "+", "#"]));
    assert_eq!(names("/finance"), set(&["+/+", "/+", "#"]));
    assert_eq!(names("a//b"), set(&["a/+/b", "#"]));
    assert_eq!(names("$SYS/x"), set(&["$SYS/#", "$SYS/+"]));
    assert_eq!(names("$SYS"), set(&["$SYS/#"]));
    assert_eq!(names("é/a"), set(&["+/+", "#"]));
}

#[test]
fn pruning_keeps_shared_prefixes() {
    let mut idx = SubscriptionIndex::new();
    idx.insert(&filter("a/b/c/d"), 1u32, ());
    idx.insert(&filter("a/b"), 1, ());
    idx.insert(&filter("a/+/c"), 1, ());
    idx.insert(&filter("a/b/#"), 2, ());
    let full = idx.node_count();
    assert_eq!(full, 7); // root, a, a/b, a/b/c, a/b/c/d, a/+, a/+/c
    idx.remove(&filter("a/b/c/d"), &1);
    assert_eq!(idx.node_count(), 5);
    assert_eq!(matches(&idx, "a/b"), [(1, ()), (2, ())]);
    idx.remove(&filter("a/b"), &1);
    assert_eq!(idx.node_count(), 5); // a/b still holds the '#' subscriber
    idx.remove(&filter("a/b/#"), &2);
    assert_eq!(idx.node_count(), 4);
    idx.remove(&filter("a/+/c"), &1);
    assert_eq!(idx.node_count(), 1);
    assert!(idx.is_empty());
}

#[test]
fn churn_does_not_grow() {
    let mut idx = SubscriptionIndex::new();
    idx.insert(&filter("keep/#"), 0u32, 0u32);
    for round in 0..50u32 {
        for i in 0..200u32 {
            let f = filter(&format!("dev/{round}/{i}/+/x"));
            idx.insert(&f, i, round);
        }
        for i in 0..200u32 {
            let f = filter(&format!("dev/{round}/{i}/+/x"));
            assert_eq!(idx.remove(&f, &i), Some(round));
        }
        assert_eq!(idx.node_count(), 2); // root and "keep"
        assert_eq!(idx.len(), 1);
    }
    assert!(idx.root.children.capacity() <= 3);
}

#[test]
fn many_subscribers_on_one_node() {
    let mut idx = SubscriptionIndex::new();
    let f = filter("busy/+");
    for k in 0..10_000u32 {
        idx.insert(&f, k, k);
    }
    let mut n = 0;
    idx.for_each_match(&topic("busy/x"), |k, v| {
        assert_eq!(k, v);
        n += 1;
    });
    assert_eq!(n, 10_000);
    for k in 0..10_000u32 {
        assert_eq!(idx.remove(&f, &k), Some(k));
    }
    assert_eq!(idx.node_count(), 1);
}

#[test]
fn deep_filters_do_not_recurse() {
    // Generous limits: the trie must cope with 30,000 levels without
    // recursion in insert, match, remove or prune.
    let limits = TopicLimits {
        max_len: 65_535,
        max_levels: usize::MAX,
    };
    let deep = "+/".repeat(30_000) + "#";
    let f = TopicFilter::parse(&deep, &limits).unwrap();
    let t = TopicName::parse("/".repeat(40_000).into(), &limits).unwrap();
    let mut idx = SubscriptionIndex::new();
    idx.insert(&f, 1u32, ());
    let mut n = 0;
    idx.for_each_match(&t, |_, _| n += 1);
    assert_eq!(n, 1);
    assert_eq!(idx.remove(&f, &1), Some(()));
    assert_eq!(idx.node_count(), 1);
    // Dropping a still-populated deep trie must not recurse either.
    idx.insert(&f, 1, ());
    drop(idx);
}

/// Filters over a tiny alphabet so that collisions and overlaps are common.
fn filter_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "", "$s", "+"]), 0..4),
        any::<bool>(),
    )
        .prop_filter_map("empty filter", |(mut levels, hash)| {
            if hash {
                levels.push("#");
            }
            let s = levels.join("/");
            (!s.is_empty()).then_some(s)
        })
}

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "", "$s"]), 1..5).prop_filter_map(
        "empty topic",
        |levels| {
            let s = levels.join("/");
            (!s.is_empty()).then_some(s)
        },
    )
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, u8, u16),
    Remove(String, u8),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (filter_strategy(), 0..4u8, any::<u16>()).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
        2 => (filter_strategy(), 0..4u8).prop_map(|(f, k)| Op::Remove(f, k)),
    ]
}

/// Brute-force oracle: every model entry whose filter matches.
fn oracle(model: &HashMap<(String, u8), u16>, t: &TopicName) -> BTreeSet<(String, u8, u16)> {
    model
        .iter()
        .filter(|((f, _), _)| filter(f).matches(t))
        .map(|((f, k), v)| (f.clone(), *k, *v))
        .collect()
}

fn index_matches(
    idx: &SubscriptionIndex<u8, (String, u16)>,
    t: &TopicName,
) -> Vec<(String, u8, u16)> {
    let mut out = Vec::new();
    idx.for_each_match(t, |k, (f, v)| out.push((f.clone(), *k, *v)));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_brute_force(
        ops in prop::collection::vec(op_strategy(), 0..60),
        topics in prop::collection::vec(topic_strategy(), 1..8),
    ) {
        let mut idx = SubscriptionIndex::new();
        let mut model: HashMap<(String, u8), u16> = HashMap::new();
        for op in &ops {
            match op {
                Op::Insert(f, k, v) => {
                    let got = idx.insert(&filter(f), *k, (f.clone(), *v)).map(|(_, v)| v);
                    prop_assert_eq!(got, model.insert((f.clone(), *k), *v));
                }
                Op::Remove(f, k) => {
                    let got = idx.remove(&filter(f), k).map(|(_, v)| v);
                    prop_assert_eq!(got, model.remove(&(f.clone(), *k)));
                }
            }
            prop_assert_eq!(idx.len(), model.len());
        }
        for t in &topics {
            let t = topic(t);
            let got = index_matches(&idx, &t);
            let unique: BTreeSet<_> = got.iter().cloned().collect();
            prop_assert_eq!(unique.len(), got.len(), "duplicate visit for {}", t);
            prop_assert_eq!(unique, oracle(&model, &t), "topic {}", t);
        }
        for ((f, k), v) in &model {
            prop_assert_eq!(idx.get(&filter(f), k).map(|(_, v)| *v), Some(*v));
        }
        // Removing everything leaves only the root.
        let keys: Vec<_> = model.keys().cloned().collect();
        for (f, k) in keys {
            prop_assert!(idx.remove(&filter(&f), &k).is_some());
        }
        prop_assert!(idx.is_empty());
        prop_assert_eq!(idx.node_count(), 1);
    }
}
