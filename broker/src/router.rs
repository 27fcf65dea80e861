//! Live routing: the node's index of connected subscribers and the fan-out
//! of one publish to their bounded queues.
//!
//! A publisher never waits for a subscriber: each connection has a bounded
//! queue and deliveries are `try_send`; a full queue drops the message for
//! that subscriber only and counts it (see `docs/adr/0003-concurrency.md`).
//! Persistent sessions receive the QoS≥1 deliveries of a logged publish from
//! their replicated queue instead (woken by the state machine's effects), so
//! the live path skips them for those.
//!
//! The router also tracks which subscriptions exist on this node at all
//! (reference counts per filter and share group): when one appears or
//! disappears it records an interest change, which `peers` tells the other
//! nodes so they forward only what this node wants.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc};

use crate::message::{ClientId, Message, QoS, SubOptions};
use crate::subscriptions::SubscriptionIndex;
use crate::topic::Subscription;

/// One message on its way to one connection.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub msg: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// When the message reached this node, for live deliveries only: a
    /// retained message sent at SUBSCRIBE is old by design, and its age is
    /// no delivery latency.
    pub received_at: Option<std::time::Instant>,
}

/// The sending side of a connection's bounded delivery queue.
pub(crate) type DeliverySender = mpsc::Sender<Delivery>;

/// A connected client's live subscription.
#[derive(Debug, Clone)]
pub(crate) struct LiveSub {
    pub client: ClientId,
    /// The connection that made it: a finishing connection removes only its
    /// own entries, never those of the connection that took over.
    pub conn: u64,
    pub opts: SubOptions,
    /// The session is persistent: QoS≥1 deliveries of logged publishes come
    /// from its replicated queue.
    pub persistent: bool,
    pub tx: DeliverySender,
}

/// Members of one shared subscription group on one filter.
#[derive(Debug)]
pub(crate) struct SharedGroup {
    key: Subscription,
    members: Vec<LiveSub>,
    next: AtomicUsize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SubKey {
    Client(ClientId),
    Group(Arc<str>),
}

#[derive(Debug, Clone)]
enum Entry {
    Direct(LiveSub),
    Shared(Arc<SharedGroup>),
}

/// Counters of what routing did, read by `$SYS` and metrics.
#[derive(Debug, Default)]
pub(crate) struct RouteStats {
    pub delivered: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    /// Publishes nobody took: no live subscriber here or on a peer, and not
    /// stored by the log (counted by `Peers::route`, which knows all that).
    pub no_subscribers: AtomicU64,
}

/// Subscriptions that appeared (`true`) or disappeared (`false`) on this node.
#[derive(Debug, Default)]
struct InterestLog {
    refs: HashMap<Subscription, usize>,
    changes: Vec<(Subscription, bool)>,
}

/// How shared subscription groups are chosen for one publish.
pub(crate) enum SharedChoice<'a> {
    /// Deliver to one local member of every matching group (one node).
    Local,
    /// Ask for each matching group whether this node takes the message.
    Ask(&'a mut dyn FnMut(&Subscription) -> bool),
    /// A forwarded message: only the groups the publishing node picked here.
    Only(&'a [Subscription]),
}

/// The node's live subscription index.
#[derive(Default)]
pub(crate) struct Router {
    index: RwLock<SubscriptionIndex<SubKey, Entry>>,
    interest: Mutex<InterestLog>,
    /// Notified when interest changed (the peers task broadcasts it).
    pub interest_changed: Notify,
    pub stats: RouteStats,
}

struct Target<'a> {
    sub: &'a LiveSub,
    qos: QoS,
    retain: bool,
    ids: Vec<u32>,
}

impl Router {
    /// Adds or replaces a subscription of a connected client.
    pub fn subscribe(&self, key: &Subscription, sub: LiveSub) {
        let mut index = self.index.write();
        let added = match &key.share_group {
            None => index
                .insert(
                    &key.filter,
                    SubKey::Client(sub.client.clone()),
                    Entry::Direct(sub),
                )
                .is_none(),
            Some(g) => {
                let k = SubKey::Group(g.clone());
                let (mut members, next) = match index.remove(&key.filter, &k) {
                    Some(Entry::Shared(group)) => {
                        (group.members.clone(), group.next.load(Ordering::Relaxed))
                    }
                    _ => (Vec::new(), 0),
                };
                let before = members.len();
                members.retain(|m| m.client != sub.client);
                let added = members.len() == before;
                members.push(sub);
                let group = SharedGroup {
                    key: key.clone(),
                    members,
                    next: AtomicUsize::new(next),
                };
                index.insert(&key.filter, k, Entry::Shared(Arc::new(group)));
                added
            }
        };
        if added {
            self.count(key, true);
        }
    }

    /// Removes the subscription `conn` made; true if it existed.
    pub fn unsubscribe(&self, key: &Subscription, client: &ClientId, conn: u64) -> bool {
        let mut index = self.index.write();
        let removed = match &key.share_group {
            None => {
                let k = SubKey::Client(client.clone());
                match index.remove(&key.filter, &k) {
                    Some(Entry::Direct(sub)) if sub.conn != conn => {
                        // Another connection's entry: put it back untouched.
                        index.insert(&key.filter, k, Entry::Direct(sub));
                        false
                    }
                    Some(_) => true,
                    None => false,
                }
            }
            Some(g) => {
                let k = SubKey::Group(g.clone());
                let Some(Entry::Shared(group)) = index.remove(&key.filter, &k) else {
                    return false;
                };
                let members: Vec<LiveSub> = group
                    .members
                    .iter()
                    .filter(|m| !(&m.client == client && m.conn == conn))
                    .cloned()
                    .collect();
                let removed = members.len() != group.members.len();
                if !members.is_empty() {
                    let group = SharedGroup {
                        key: key.clone(),
                        members,
                        next: AtomicUsize::new(group.next.load(Ordering::Relaxed)),
                    };
                    index.insert(&key.filter, k, Entry::Shared(Arc::new(group)));
                }
                removed
            }
        };
        if removed {
            self.count(key, false);
        }
        removed
    }

    fn count(&self, key: &Subscription, up: bool) {
        let mut log = self.interest.lock();
        let n = log.refs.entry(key.clone()).or_insert(0);
        if up {
            *n += 1;
            if *n == 1 {
                log.changes.push((key.clone(), true));
            }
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                log.refs.remove(key);
                log.changes.push((key.clone(), false));
            }
        }
        drop(log);
        self.interest_changed.notify_one();
    }

    /// Takes the interest changes recorded since the last call.
    pub fn take_interest_changes(&self) -> Vec<(Subscription, bool)> {
        std::mem::take(&mut self.interest.lock().changes)
    }

    /// Every subscription that exists on this node (for a full resync).
    pub fn interest(&self) -> Vec<Subscription> {
        self.interest.lock().refs.keys().cloned().collect()
    }

    /// Number of live (filter, subscriber) entries, counting each group once.
    pub fn len(&self) -> usize {
        self.index.read().len()
    }

    /// Delivers `msg` to the matching connected subscribers. Never blocks.
    /// `logged`: the publish went through the replicated log, so persistent
    /// sessions get it from their queue instead. Returns whether any local
    /// subscription matched.
    pub fn route(&self, msg: &Arc<Message>, logged: bool, mut shared: SharedChoice<'_>) -> bool {
        let index = self.index.read();
        let mut targets: Vec<Target<'_>> = Vec::new();
        let mut any_shared = false;
        let filters = index.for_each_match(&msg.topic, |_, entry| match entry {
            Entry::Direct(sub) => push_target(&mut targets, sub, msg),
            Entry::Shared(group) => {
                let take = match &mut shared {
                    SharedChoice::Local => true,
                    SharedChoice::Ask(ask) => ask(&group.key),
                    SharedChoice::Only(keys) => keys.contains(&group.key),
                };
                if take {
                    any_shared = true;
                    pick_member(&mut targets, group, msg);
                }
            }
        });
        if targets.is_empty() {
            return false;
        }
        // One delivery per connection for overlapping subscriptions: highest
        // QoS and every subscription identifier [MQTT-3.3.4-3/4/5]. By
        // connection id, not client id: integers sort without comparing
        // strings, and a client has one connection here (a takeover's old
        // one is already being closed). One matching filter without share
        // groups holds each client once: nothing to dedupe.
        if targets.len() > 1 && (filters > 1 || any_shared) {
            targets.sort_unstable_by_key(|t| t.sub.conn);
            targets.dedup_by(|later, first| {
                if later.sub.conn != first.sub.conn {
                    return false;
                }
                first.qos = first.qos.max(later.qos);
                first.retain |= later.retain;
                first.ids.append(&mut later.ids);
                true
            });
        }
        for t in targets {
            if logged && t.sub.persistent && t.qos != QoS::AtMostOnce {
                continue;
            }
            let d = Delivery {
                msg: msg.clone(),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.ids,
                received_at: msg.received_at,
            };
            match t.sub.tx.try_send(d) {
                Ok(()) => self.stats.delivered.fetch_add(1, Ordering::Relaxed),
                Err(_) => self
                    .stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed),
            };
        }
        true
    }
}

/// Balanced over members; a member whose queue is full is skipped in favour
/// of the next one (a disconnected member is no longer in the group).
fn pick_member<'a>(targets: &mut Vec<Target<'a>>, group: &'a SharedGroup, msg: &Message) {
    let n = group.members.len();
    let start = group.next.fetch_add(1, Ordering::Relaxed);
    for i in 0..n {
        if let Some(m) = group.members.get((start + i) % n)
            && (m.tx.capacity() > 0 || i + 1 == n)
        {
            push_target(targets, m, msg);
            return;
        }
    }
}

fn push_target<'a>(targets: &mut Vec<Target<'a>>, sub: &'a LiveSub, msg: &Message) {
    if sub.opts.no_local && msg.publisher.as_ref() == Some(&sub.client) {
        return;
    }
    targets.push(Target {
        sub,
        qos: sub.opts.qos.min(msg.qos),
        retain: sub.opts.retain_as_published && msg.retain,
        ids: sub.opts.subscription_id.into_iter().collect(),
    });
}
