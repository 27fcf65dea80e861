//! Live traffic between nodes: interest travels, messages follow it.
//!
//! Each node tells its peers which subscriptions (filter + share group) exist
//! on it — as deltas with a sequence number, plus a full set on request — and
//! keeps the peers' sets in its own index. A publish is matched once against
//! that index and forwarded at most once to each interested node, which
//! delivers it locally and never forwards it again (one hop). Shared groups
//! are decided by the publishing node: one node per group per message.
//!
//! ```text
//!  router interest change ─► Interest{delta} ──► peer: remote index
//!  publish ─► remote index match ─► Forward{msg, shared picks} ──► peer: route locally
//! ```
//! The transport (the cluster crate's peer links) is best effort and
//! bounded: a lost delta shows up as a sequence gap or a digest mismatch and
//! is repaired by a full resync. Nothing here goes through the Raft log
//! (see `docs/adr/0005-interest.md`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::router::{Router, SharedChoice};
use crate::state::NodeId;
use crate::subscriptions::SubscriptionIndex;
use crate::topic::Subscription;

/// Live messaging between nodes, provided by the cluster's peer links.
pub trait PeerTransport: Send + Sync + 'static {
    /// Queues `msg` for `node`; false if it was dropped (queue full, unknown node).
    fn send(&self, node: NodeId, msg: Bytes) -> bool;
    /// The other nodes currently in the cluster.
    fn peers(&self) -> Vec<NodeId>;
}

/// A message on the peer link (postcard-encoded).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum PeerMsg {
    /// Interest of the sender: ordered changes (`true` = appeared), or with
    /// `full` its whole set (all `true`). Order matters: an unsubscribe and a
    /// resubscribe of one key in the same window must end subscribed.
    Interest {
        run: u64,
        seq: u64,
        full: bool,
        changes: Vec<(Subscription, bool)>,
    },
    /// The sender's current interest version, sent periodically.
    Digest { run: u64, seq: u64 },
    /// Ask the receiver for its full interest set.
    Resync,
    /// A publish to deliver locally (never forwarded again).
    Forward {
        msg: Message,
        logged: bool,
        shared: Vec<Subscription>,
    },
}

#[derive(Debug, Default)]
struct NodeInterest {
    run: u64,
    seq: u64,
    subs: HashSet<Subscription>,
}

#[derive(Default)]
struct Remote {
    index: SubscriptionIndex<(NodeId, Subscription), ()>,
    nodes: HashMap<NodeId, NodeInterest>,
}

impl Remote {
    fn add(&mut self, node: NodeId, sub: Subscription) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        if n.subs.insert(sub.clone()) {
            let filter = sub.filter.clone();
            self.index.insert(&filter, (node, sub), ());
        }
    }

    fn remove(&mut self, node: NodeId, sub: &Subscription) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        if n.subs.remove(sub) {
            self.index.remove(&sub.filter, &(node, sub.clone()));
        }
    }

    fn clear(&mut self, node: NodeId) {
        if let Some(n) = self.nodes.get_mut(&node) {
            for sub in std::mem::take(&mut n.subs) {
                let filter = sub.filter.clone();
                self.index.remove(&filter, &(node, sub));
            }
        }
    }
}

/// Counters of the peer path.
#[derive(Debug, Default)]
pub(crate) struct PeerStats {
    pub forwarded: AtomicU64,
    pub forward_dropped: AtomicU64,
    pub received: AtomicU64,
    pub resyncs: AtomicU64,
    pub bad_messages: AtomicU64,
}

/// This node's side of live inter-node routing.
pub(crate) struct Peers {
    node: NodeId,
    run: u64,
    seq: AtomicU64,
    transport: Arc<dyn PeerTransport>,
    remote: RwLock<Remote>,
    next_pick: AtomicUsize,
    pub stats: PeerStats,
}

/// Where one publish must go besides local subscribers.
struct RemoteTargets {
    plain: BTreeSet<NodeId>,
    shared: HashMap<Subscription, Vec<NodeId>>,
}

impl Peers {
    /// Peers of `node` over `transport`; `run` distinguishes this process
    /// from earlier runs of the same node.
    pub fn new(node: NodeId, run: u64, transport: Arc<dyn PeerTransport>) -> Peers {
        Peers {
            node,
            run,
            seq: AtomicU64::new(0),
            transport,
            remote: RwLock::new(Remote::default()),
            next_pick: AtomicUsize::new(0),
            stats: PeerStats::default(),
        }
    }

    fn send(&self, node: NodeId, msg: &PeerMsg) -> bool {
        // Sized up front: growing the buffer field by field cost a realloc
        // or two per forwarded message.
        let hint = match msg {
            PeerMsg::Forward { msg, .. } => msg.payload.len() + msg.topic.as_str().len() + 64,
            _ => 64,
        };
        match postcard::to_extend(msg, Vec::with_capacity(hint)) {
            Ok(bytes) => self.transport.send(node, Bytes::from(bytes)),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode peer message");
                false
            }
        }
    }

    /// Broadcasts the router's interest changes (call when it notifies).
    pub fn announce_changes(&self, router: &Router) {
        let changes = router.take_interest_changes();
        if changes.is_empty() {
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let msg = PeerMsg::Interest {
            run: self.run,
            seq,
            full: false,
            changes,
        };
        for node in self.transport.peers() {
            self.send(node, &msg);
        }
    }

    /// Sends every peer this node's interest version, so a peer that missed
    /// a delta (or restarted) asks for a resync.
    pub fn send_digests(&self) {
        let msg = PeerMsg::Digest {
            run: self.run,
            seq: self.seq.load(Ordering::Relaxed),
        };
        for node in self.transport.peers() {
            self.send(node, &msg);
        }
    }

    fn send_full(&self, node: NodeId, router: &Router) {
        // The full set is taken after the sequence number, so a delta racing
        // with it is at worst applied twice (adds and removes are idempotent).
        let seq = self.seq.load(Ordering::Relaxed);
        let msg = PeerMsg::Interest {
            run: self.run,
            seq,
            full: true,
            changes: router.interest().into_iter().map(|s| (s, true)).collect(),
        };
        self.send(node, &msg);
    }

    /// Handles one message from a peer.
    pub fn on_message(&self, from: NodeId, bytes: &[u8], router: &Router) {
        let msg: PeerMsg = match postcard::from_bytes(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = from, error = %e, "undecodable peer message");
                return;
            }
        };
        match msg {
            PeerMsg::Forward {
                msg,
                logged,
                shared,
            } => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                router.route(&Arc::new(msg), logged, SharedChoice::Only(&shared));
            }
            PeerMsg::Resync => {
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                self.send_full(from, router);
            }
            PeerMsg::Digest { run, seq } => {
                let in_sync = self
                    .remote
                    .read()
                    .nodes
                    .get(&from)
                    .is_some_and(|n| n.run == run && n.seq == seq);
                if !in_sync {
                    self.send(from, &PeerMsg::Resync);
                }
            }
            PeerMsg::Interest {
                run,
                seq,
                full,
                changes,
            } => {
                let mut remote = self.remote.write();
                let known = remote.nodes.entry(from).or_default();
                let next = known.run == run && known.seq + 1 == seq;
                if full {
                    remote.clear(from);
                } else if !next {
                    // A gap or a restarted peer: the delta is unusable.
                    drop(remote);
                    self.send(from, &PeerMsg::Resync);
                    return;
                }
                if let Some(n) = remote.nodes.get_mut(&from) {
                    n.run = run;
                    n.seq = seq;
                }
                for (sub, up) in changes {
                    if up {
                        remote.add(from, sub);
                    } else {
                        remote.remove(from, &sub);
                    }
                }
            }
        }
    }

    fn targets(&self, msg: &Message) -> RemoteTargets {
        let mut t = RemoteTargets {
            plain: BTreeSet::new(),
            shared: HashMap::new(),
        };
        let remote = self.remote.read();
        remote.index.for_each_match(&msg.topic, |(node, sub), _| {
            if sub.share_group.is_none() {
                t.plain.insert(*node);
            } else {
                let nodes = t.shared.entry(sub.clone()).or_default();
                if !nodes.contains(node) {
                    nodes.push(*node);
                }
            }
        });
        t
    }

    /// Routes a publish locally and to the interested peers.
    pub fn route(&self, msg: &Arc<Message>, logged: bool, router: &Router) {
        let mut t = self.targets(msg);
        let mut picks: HashMap<NodeId, Vec<Subscription>> = HashMap::new();
        let mut ask = |key: &Subscription| -> bool {
            let Some(nodes) = t.shared.remove(key) else {
                return true;
            };
            // This node competes with the remote ones for the group.
            let i = self.next_pick.fetch_add(1, Ordering::Relaxed) % (nodes.len() + 1);
            match i.checked_sub(1).and_then(|j| nodes.get(j)) {
                None => true,
                Some(node) => {
                    picks.entry(*node).or_default().push(key.clone());
                    false
                }
            }
        };
        let local = router.route(msg, logged, SharedChoice::Ask(&mut ask));
        for (key, nodes) in t.shared.drain() {
            let i = self.next_pick.fetch_add(1, Ordering::Relaxed) % nodes.len().max(1);
            if let Some(node) = nodes.get(i) {
                picks.entry(*node).or_default().push(key);
            }
        }
        let mut to: BTreeSet<NodeId> = std::mem::take(&mut t.plain);
        to.extend(picks.keys().copied());
        to.remove(&self.node);
        if !local && !logged && to.is_empty() {
            // Nobody here or on a peer wanted it, and the log did not store
            // it (retained, or queued for an offline session): it is gone.
            router.stats.no_subscribers.fetch_add(1, Ordering::Relaxed);
        }
        for node in to {
            let fwd = PeerMsg::Forward {
                msg: Message::clone(msg),
                logged,
                shared: picks.remove(&node).unwrap_or_default(),
            };
            if self.send(node, &fwd) {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.forward_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests;
