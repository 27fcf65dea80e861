//! Live routing: the node's index of connected subscribers and the fan-out
//! of one publish to their bounded queues.
//!
//! A publisher never waits for a subscriber: each connection has a bounded
//! queue and deliveries are `try_send`; a full queue drops the message for
//! that subscriber only and counts it (see `docs/adr/0003-concurrency.md`).
//! Persistent sessions receive their QoS≥1 deliveries from the replicated
//! queue instead (woken by the state machine's effects), so the live path
//! skips them for those.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::message::{ClientId, Message, QoS, SubOptions};
use crate::subscriptions::SubscriptionIndex;
use crate::topic::TopicFilter;

/// One message on its way to one connection.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub msg: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

/// The sending side of a connection's bounded delivery queue.
pub(crate) type DeliverySender = mpsc::Sender<Delivery>;

/// A connected client's live subscription.
#[derive(Debug, Clone)]
pub(crate) struct LiveSub {
    pub client: ClientId,
    pub opts: SubOptions,
    /// The session is persistent: its QoS≥1 deliveries come from the log.
    pub persistent: bool,
    pub tx: DeliverySender,
}

/// Members of one shared subscription group on one filter.
#[derive(Debug, Default)]
pub(crate) struct SharedGroup {
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
    pub delivered: AtomicUsize,
    pub dropped_queue_full: AtomicUsize,
    pub no_subscribers: AtomicUsize,
}

/// The node's live subscription index.
#[derive(Default)]
pub(crate) struct Router {
    index: RwLock<SubscriptionIndex<SubKey, Entry>>,
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
    pub fn subscribe(&self, filter: &TopicFilter, group: Option<&Arc<str>>, sub: LiveSub) {
        let mut index = self.index.write();
        match group {
            None => {
                index.insert(
                    filter,
                    SubKey::Client(sub.client.clone()),
                    Entry::Direct(sub),
                );
            }
            Some(g) => {
                let key = SubKey::Group(g.clone());
                let mut members = match index.remove(filter, &key) {
                    Some(Entry::Shared(group)) => group.members.clone(),
                    _ => Vec::new(),
                };
                members.retain(|m| m.client != sub.client);
                members.push(sub);
                let group = SharedGroup {
                    members,
                    next: AtomicUsize::new(0),
                };
                index.insert(filter, key, Entry::Shared(Arc::new(group)));
            }
        }
    }

    /// Removes a subscription; true if it existed.
    pub fn unsubscribe(
        &self,
        filter: &TopicFilter,
        group: Option<&Arc<str>>,
        client: &ClientId,
    ) -> bool {
        let mut index = self.index.write();
        match group {
            None => index
                .remove(filter, &SubKey::Client(client.clone()))
                .is_some(),
            Some(g) => {
                let key = SubKey::Group(g.clone());
                let Some(Entry::Shared(group)) = index.remove(filter, &key) else {
                    return false;
                };
                let before = group.members.len();
                let members: Vec<LiveSub> = group
                    .members
                    .iter()
                    .filter(|m| &m.client != client)
                    .cloned()
                    .collect();
                let removed = members.len() != before;
                if !members.is_empty() {
                    let group = SharedGroup {
                        members,
                        next: AtomicUsize::new(group.next.load(Ordering::Relaxed)),
                    };
                    index.insert(filter, key, Entry::Shared(Arc::new(group)));
                }
                removed
            }
        }
    }

    /// Number of live (filter, subscriber) entries, counting each group once.
    pub fn len(&self) -> usize {
        self.index.read().len()
    }

    /// Delivers `msg` to every matching connected subscriber. Never blocks.
    pub fn route(&self, msg: &Arc<Message>) {
        let index = self.index.read();
        let mut targets: Vec<Target<'_>> = Vec::new();
        index.for_each_match(&msg.topic, |_, entry| match entry {
            Entry::Direct(sub) => push_target(&mut targets, sub, msg),
            Entry::Shared(group) => {
                // Balanced over members; a member whose queue is full is
                // skipped in favour of the next one.
                let n = group.members.len();
                let start = group.next.fetch_add(1, Ordering::Relaxed);
                for i in 0..n {
                    if let Some(m) = group.members.get((start + i) % n)
                        && (m.tx.capacity() > 0 || i + 1 == n)
                    {
                        push_target(&mut targets, m, msg);
                        break;
                    }
                }
            }
        });
        if targets.is_empty() {
            self.stats.no_subscribers.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // One delivery per client for overlapping subscriptions: highest QoS
        // and every subscription identifier [MQTT-3.3.4-3/4/5].
        if targets.len() > 1 {
            targets.sort_by(|a, b| a.sub.client.cmp(&b.sub.client));
            targets.dedup_by(|later, first| {
                if later.sub.client != first.sub.client {
                    return false;
                }
                first.qos = first.qos.max(later.qos);
                first.retain |= later.retain;
                first.ids.append(&mut later.ids);
                true
            });
        }
        for t in targets {
            // Persistent sessions get QoS≥1 from their replicated queue.
            if t.sub.persistent && t.qos != QoS::AtMostOnce {
                continue;
            }
            let d = Delivery {
                msg: msg.clone(),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.ids,
            };
            match t.sub.tx.try_send(d) {
                Ok(()) => self.stats.delivered.fetch_add(1, Ordering::Relaxed),
                Err(_) => self
                    .stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed),
            };
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
