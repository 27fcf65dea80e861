//! The rule index: action × selector → a trie over the literal prefix of
//! each rule's patterns.
//!
//! ```text
//! per_action[publish][class:sensor] ─ root (rules whose pattern starts with + # ${var}; connect rules)
//!                                      └ "plant" ─ "line7" (rules `plant/line7/...`)
//! ```
//!
//! A rule is filed at the node of each pattern's literal prefix. A topic
//! name walks its own levels and collects the rules of every node on the
//! way. A filter walks its literal levels the same way; at its first
//! wildcard it also collects the *deny* rules below (they may overlap it),
//! but no allow rules below (a literal level can never cover `+` or `#`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::decide::{Resolved, Target};
use crate::identity::ANON;
use crate::rule::{Action, Effect, Rule, Who};
use crate::topic::FLevel;

/// FNV-1a for trie children. The tables are built from the policy only
/// (requests never insert), so a fast unkeyed hash cannot be flooded.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Children = HashMap<Box<str>, Node, BuildHasherDefault<Fnv>>;

#[derive(Debug, Default)]
struct Node {
    rules: Vec<u32>,
    children: Children,
    /// Deny rules filed in strict descendants.
    deny_below: Vec<u32>,
}

impl Node {
    fn descend<'s>(&mut self, path: impl Iterator<Item = &'s str>) -> &mut Node {
        let mut node = self;
        for level in path {
            node = node.children.entry(level.into()).or_default();
        }
        node
    }

    /// Fills `deny_below`; returns this subtree's deny rules (self included).
    fn finish(&mut self, rules: &[Rule]) -> Vec<u32> {
        let mut below = Vec::new();
        for child in self.children.values_mut() {
            below.extend(child.finish(rules));
        }
        below.sort_unstable();
        below.dedup();
        let mut all = below.clone();
        self.deny_below = below;
        all.extend(self.rules.iter().copied().filter(|i| {
            rules
                .get(*i as usize)
                .is_some_and(|r| r.effect == Effect::Deny)
        }));
        all
    }
}

fn push_once(v: &mut Vec<u32>, i: u32) {
    if v.last() != Some(&i) {
        v.push(i);
    }
}

/// Roots per selector, in dense tables (no hashing to find a selector).
#[derive(Debug, Default)]
struct Selectors {
    everyone: Option<Node>,
    anonymous: Option<Node>,
    identity: Vec<Option<Node>>,
    role: Vec<Option<Node>>,
    class: Vec<Option<Node>>,
}

impl Selectors {
    fn get(&self, w: Who) -> Option<&Node> {
        match w {
            Who::Everyone => self.everyone.as_ref(),
            Who::Anonymous => self.anonymous.as_ref(),
            Who::Identity(i) => self.identity.get(i as usize)?.as_ref(),
            Who::Role(i) => self.role.get(i as usize)?.as_ref(),
            Who::Class(i) => self.class.get(i as usize)?.as_ref(),
        }
    }

    fn entry(&mut self, w: Who) -> &mut Node {
        fn slot(v: &mut Vec<Option<Node>>, i: u32) -> &mut Option<Node> {
            let i = i as usize;
            if v.len() <= i {
                v.resize_with(i + 1, || None);
            }
            // In bounds: resized just above.
            &mut v[i]
        }
        let s = match w {
            Who::Everyone => &mut self.everyone,
            Who::Anonymous => &mut self.anonymous,
            Who::Identity(i) => slot(&mut self.identity, i),
            Who::Role(i) => slot(&mut self.role, i),
            Who::Class(i) => slot(&mut self.class, i),
        };
        s.get_or_insert_with(Node::default)
    }

    fn roots_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        self.everyone
            .iter_mut()
            .chain(self.anonymous.iter_mut())
            .chain(self.identity.iter_mut().flatten())
            .chain(self.role.iter_mut().flatten())
            .chain(self.class.iter_mut().flatten())
    }

    fn is_empty(&self) -> bool {
        self.everyone.is_none()
            && self.anonymous.is_none()
            && self.identity.is_empty()
            && self.role.is_empty()
            && self.class.is_empty()
    }
}

/// The index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    per_action: [Selectors; 6],
}

impl Index {
    pub(crate) fn build(rules: &[Rule]) -> Index {
        let mut ix = Index::default();
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            for a in Action::ALL.into_iter().filter(|a| r.has_action(*a)) {
                for w in r.who.iter() {
                    let root = ix.per_action[a.index()].entry(*w);
                    if r.topics.is_empty() {
                        push_once(&mut root.rules, i);
                    }
                    for p in r.topics.iter() {
                        push_once(&mut root.descend(p.literal_prefix()).rules, i);
                    }
                }
            }
        }
        for sel in &mut ix.per_action {
            for root in sel.roots_mut() {
                root.finish(rules);
            }
        }
        ix
    }

    /// Rules that may cover `inner` (same first action, a selector of
    /// `inner` or `*`, filed on the path of its first pattern): the only
    /// possible "shadowing"/"covering" rules, for the lints.
    pub(crate) fn covering_candidates(&self, inner: &Rule, mut visit: impl FnMut(u32)) {
        let Some(a) = Action::ALL.into_iter().find(|a| inner.has_action(*a)) else {
            return;
        };
        let map = &self.per_action[a.index()];
        let keys = std::iter::once(Who::Everyone).chain(inner.who.first().copied());
        for key in keys {
            let Some(mut node) = map.get(key) else {
                continue;
            };
            node.rules.iter().for_each(|i| visit(*i));
            if let Some(p) = inner.topics.first() {
                for level in p.literal_prefix() {
                    let Some(next) = node.children.get(level) else {
                        break;
                    };
                    node = next;
                    node.rules.iter().for_each(|i| visit(*i));
                }
            }
        }
    }
}

fn walk(root: &Node, target: &Target<'_>, visit: &mut impl FnMut(u32)) {
    root.rules.iter().for_each(|i| visit(*i));
    let mut node = root;
    match target {
        Target::None => {}
        Target::Name(t) => {
            for level in t.split('/') {
                let Some(next) = node.children.get(level) else {
                    return;
                };
                node = next;
                node.rules.iter().for_each(|i| visit(*i));
            }
        }
        Target::Filter(f) => {
            for level in &f.levels {
                match level {
                    FLevel::Lit(s) => {
                        let Some(next) = node.children.get(*s) else {
                            return;
                        };
                        node = next;
                        node.rules.iter().for_each(|i| visit(*i));
                    }
                    FLevel::Plus | FLevel::Hash => {
                        node.deny_below.iter().for_each(|i| visit(*i));
                        return;
                    }
                }
            }
        }
    }
}

/// Walks the candidate rules for `who` × action × target, calling `visit`
/// with each rule index (possibly more than once).
pub(crate) fn for_candidates(
    index: &Index,
    action: Action,
    who: &Resolved<'_>,
    target: &Target<'_>,
    mut visit: impl FnMut(u32),
) {
    let map = &index.per_action[action.index()];
    if map.is_empty() {
        return;
    }
    let mut scan = |key: Who| {
        if let Some(root) = map.get(key) {
            walk(root, target, &mut visit);
        }
    };
    scan(Who::Everyone);
    scan(if who.idx == ANON {
        Who::Anonymous
    } else {
        Who::Identity(who.idx)
    });
    scan(Who::Class(who.class));
    for r in who.roles {
        scan(Who::Role(*r));
    }
}
