//! The broker's replicated state machine.
//!
//! Every change to state that the cluster shares — persistent sessions and
//! their subscriptions, their queued QoS≥1 messages, retained messages,
//! session ownership — is a [`Command`] applied by [`State::apply`]. Apply is
//! deterministic: it reads no clock (commands carry `now_ms`), no randomness
//! and no node-local data, so every replica that applies the same log reaches
//! the same state. Every node runs it from the Raft log (a single node is a
//! group of one). The limits in [`StateLimits`] come from config and must be
//! equal on every node.
//!
//! Node-local reactions (wake the connection of a session that received a
//! message, fence a connection whose ownership moved) are reported as
//! [`Effects`]; each node acts only on the ones that concern it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use starling_auth::Policy;

use crate::message::{ClientId, Message, QoS, SubOptions};
use crate::retained::{RetainOutcome, RetainedStore};
use crate::subscriptions::SubscriptionIndex;
use crate::topic::{Subscription, TopicName};

mod access;
mod bans;

pub use access::{ActivePolicy, SessionIdentity};
pub use bans::{Ban, BanKey};

/// Identifies a node of the cluster (1 for a single node).
pub type NodeId = u64;

/// Who owns a session: the node holding its connection and the ownership
/// epoch. Epochs only grow; a holder of an older epoch is fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Node holding the connection.
    pub node: NodeId,
    /// Ownership epoch, unique and increasing across the cluster.
    pub epoch: u64,
}

/// A message waiting in (or in flight from) a persistent session's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// Position in the session's queue; also derives the packet id.
    pub seq: u64,
    /// The message, shared with every other session that queued it.
    pub msg: Arc<Message>,
    /// QoS to deliver with (min of published and granted).
    pub qos: QoS,
    /// Retain flag to deliver with (retain-as-published applied).
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// QoS 2: the client sent PUBREC, so PUBREL (not PUBLISH) is what remains.
    pub released: bool,
}

/// A persistent session as the cluster stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Current owner.
    pub owner: Owner,
    /// A connection currently holds the session.
    pub connected: bool,
    /// Session Expiry Interval in seconds once disconnected.
    pub expiry_secs: u32,
    /// When the last connection ended (Unix ms), if it has.
    pub disconnected_at_ms: Option<u64>,
    /// Subscriptions (plain and shared) with their options.
    pub subscriptions: BTreeMap<Subscription, SubOptions>,
    /// Queued and in-flight QoS≥1 messages, ordered by `seq`.
    pub queue: VecDeque<QueuedMessage>,
    /// Next queue sequence number.
    pub next_seq: u64,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
    /// Who connected last, for re-checking `subscriptions` when the policy
    /// changes.
    pub identity: Option<SessionIdentity>,
}

/// A change to the shared state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A connection claims a session (new or resumed).
    Connect {
        /// Session's client id.
        client_id: ClientId,
        /// Node that accepted the connection.
        node: NodeId,
        /// Discard any existing session.
        clean_start: bool,
        /// Expiry interval once disconnected; 0 = the session ends with the connection.
        expiry_secs: u32,
        /// Who connects (kept with the session for policy re-checks).
        identity: Option<SessionIdentity>,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// The connection of `epoch` ended.
    Disconnect {
        /// Session's client id.
        client_id: ClientId,
        /// Epoch of the ending connection (stale epochs are ignored).
        epoch: u64,
        /// Expiry interval updated by a v5 DISCONNECT.
        expiry_secs: Option<u32>,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Add or replace subscriptions of a persistent session.
    Subscribe {
        /// Session's client id.
        client_id: ClientId,
        /// Epoch of the subscribing connection.
        epoch: u64,
        /// Filters and options.
        subscriptions: Vec<(Subscription, SubOptions)>,
    },
    /// Remove subscriptions of a persistent session.
    Unsubscribe {
        /// Session's client id.
        client_id: ClientId,
        /// Epoch of the connection.
        epoch: u64,
        /// Filters to remove.
        filters: Vec<Subscription>,
    },
    /// A publish that must be durable: retained and/or matching persistent sessions.
    Publish {
        /// The message.
        msg: Arc<Message>,
        /// Proposer's clock (expired messages are not queued).
        now_ms: u64,
    },
    /// Messages acknowledged by the client (PUBACK, PUBCOMP): drop them.
    Ack {
        /// Session's client id.
        client_id: ClientId,
        /// Epoch of the acknowledging connection.
        epoch: u64,
        /// Queue sequence numbers acknowledged.
        seqs: Vec<u64>,
    },
    /// QoS 2 messages the client has received (PUBREC): only PUBREL remains.
    Release {
        /// Session's client id.
        client_id: ClientId,
        /// Epoch of the connection.
        epoch: u64,
        /// Queue sequence numbers released.
        seqs: Vec<u64>,
    },
    /// Remove offline sessions whose expiry passed at `now_ms`.
    ExpireSessions {
        /// Proposer's clock.
        now_ms: u64,
    },
    /// A node (re)started or left: every connection it held is gone, so its
    /// sessions are offline from `now_ms` (and those with expiry 0 end).
    NodeDown {
        /// The node whose connections are gone.
        node: NodeId,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Refuse clients matching `key` until `until_ms` (replaces an existing
    /// ban of the same key).
    Ban {
        /// Who is banned.
        key: BanKey,
        /// The ban and its end.
        ban: Ban,
    },
    /// Delete a retained message (an operator's decision: nothing is delivered).
    ClearRetained {
        /// Its topic.
        topic: TopicName,
    },
    /// Lift a ban.
    Unban {
        /// Who was banned.
        key: BanKey,
    },
    /// Make this policy file the active policy (it was validated before
    /// it was submitted; a replica that cannot parse it keeps the old one).
    SetPolicy {
        /// The policy file text.
        text: Arc<str>,
    },
    /// Several commands applied in order as one log entry.
    Batch(Vec<Command>),
}

/// The result of applying a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Nothing to report.
    Done,
    /// A session was claimed.
    Connected {
        /// New ownership epoch.
        epoch: u64,
        /// An existing session was resumed.
        session_present: bool,
        /// The node whose live connection this claim took over, if any.
        taken_from: Option<NodeId>,
    },
    /// A durable publish was applied.
    Published {
        /// Persistent sessions that queued the message.
        queued: usize,
        /// What happened to the retained store, if the message was retained.
        retained: Option<RetainOutcome>,
    },
    /// The command named an epoch that no longer owns the session.
    Fenced,
    /// The command named something that does not exist (an unknown ban).
    NotFound,
    /// A new session would exceed the cluster-wide session limit.
    SessionQuotaExceeded,
    /// A policy was applied (or was already active: `revoked` is then 0
    /// and `seq` unchanged).
    PolicySet {
        /// Policy sequence number now in force.
        seq: u64,
        /// Stored subscriptions removed because the policy denies them.
        revoked: usize,
    },
    /// The policy text did not parse here; the previous policy stays.
    PolicyRejected(String),
    /// Results of a batch, in order.
    Batch(Vec<Response>),
}

/// Node-local consequences of applying commands.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Sessions whose queue received messages (wake their connection).
    pub wake: Vec<(ClientId, Owner)>,
    /// Sessions whose previous owner must close its connection.
    pub fenced: Vec<(ClientId, Owner)>,
    /// Sessions that ended (expired or replaced by a clean start).
    pub ended: Vec<ClientId>,
    /// A new policy is in force.
    pub policy: Option<ActivePolicy>,
    /// New bans: connected clients they match must go.
    pub banned: Vec<BanKey>,
}

/// Limits that apply deterministically on every replica.
#[derive(Debug, Clone, Copy)]
pub struct StateLimits {
    /// Queued messages per persistent session.
    pub max_queued_messages: usize,
    /// Retained messages in the whole broker.
    pub max_retained_messages: usize,
    /// Sessions (connected or waiting offline) in the whole cluster.
    pub max_sessions: usize,
}

/// The shared state: persistent sessions, their subscription index and the
/// retained store.
pub struct State {
    sessions: HashMap<ClientId, SessionRecord>,
    index: SubscriptionIndex<ClientId, SubOptions>,
    retained: RetainedStore,
    next_epoch: u64,
    limits: StateLimits,
    policy: Option<ActivePolicy>,
    bans: bans::Bans,
}

impl State {
    /// An empty state.
    pub fn new(limits: StateLimits) -> State {
        State {
            sessions: HashMap::new(),
            index: SubscriptionIndex::new(),
            retained: RetainedStore::new(limits.max_retained_messages),
            next_epoch: 1,
            limits,
            policy: None,
            bans: bans::Bans::default(),
        }
    }

    /// Applies one command. Deterministic: same state + command → same result.
    pub fn apply(&mut self, cmd: Command, fx: &mut Effects) -> Response {
        match cmd {
            Command::Connect {
                client_id,
                node,
                clean_start,
                expiry_secs,
                identity,
                now_ms,
            } => {
                let r = self.connect(
                    client_id.clone(),
                    node,
                    clean_start,
                    expiry_secs,
                    now_ms,
                    fx,
                );
                if let (Response::Connected { .. }, Some(rec)) =
                    (&r, self.sessions.get_mut(&client_id))
                {
                    rec.identity = identity;
                }
                r
            }
            Command::Disconnect {
                client_id,
                epoch,
                expiry_secs,
                now_ms,
            } => self.disconnect(&client_id, epoch, expiry_secs, now_ms, fx),
            Command::Subscribe {
                client_id,
                epoch,
                subscriptions,
            } => {
                let Some(rec) = owned(&mut self.sessions, &client_id, epoch) else {
                    return Response::Fenced;
                };
                for (sub, opts) in subscriptions {
                    // Shared subscriptions are delivered live to one connected
                    // member; only plain ones queue offline.
                    if sub.share_group.is_none() {
                        self.index
                            .insert(&sub.filter, client_id.clone(), opts.clone());
                    }
                    rec.subscriptions.insert(sub, opts);
                }
                Response::Done
            }
            Command::Unsubscribe {
                client_id,
                epoch,
                filters,
            } => {
                let Some(rec) = owned(&mut self.sessions, &client_id, epoch) else {
                    return Response::Fenced;
                };
                for sub in filters {
                    rec.subscriptions.remove(&sub);
                    if sub.share_group.is_none() {
                        self.index.remove(&sub.filter, &client_id);
                    }
                }
                Response::Done
            }
            Command::Publish { msg, now_ms } => self.publish(msg, now_ms, fx),
            Command::Ack {
                client_id,
                epoch,
                seqs,
            } => {
                let Some(rec) = owned(&mut self.sessions, &client_id, epoch) else {
                    return Response::Fenced;
                };
                rec.queue.retain(|q| !seqs.contains(&q.seq));
                Response::Done
            }
            Command::Release {
                client_id,
                epoch,
                seqs,
            } => {
                let Some(rec) = owned(&mut self.sessions, &client_id, epoch) else {
                    return Response::Fenced;
                };
                for q in rec.queue.iter_mut().filter(|q| seqs.contains(&q.seq)) {
                    q.released = true;
                }
                Response::Done
            }
            Command::ExpireSessions { now_ms } => {
                self.bans.expire(now_ms);
                let expired: Vec<ClientId> = self
                    .sessions
                    .iter()
                    .filter(|(_, r)| is_expired(r, now_ms))
                    .map(|(c, _)| c.clone())
                    .collect();
                for c in expired {
                    self.remove_session(&c);
                    fx.ended.push(c);
                }
                Response::Done
            }
            Command::NodeDown { node, now_ms } => {
                let held: Vec<(ClientId, u64)> = self
                    .sessions
                    .iter()
                    .filter(|(_, r)| r.connected && r.owner.node == node)
                    .map(|(c, r)| (c.clone(), r.owner.epoch))
                    .collect();
                for (client, epoch) in held {
                    self.disconnect(&client, epoch, None, now_ms, fx);
                }
                Response::Done
            }
            Command::SetPolicy { text } => self.set_policy(text, fx),
            Command::Ban { key, ban } => {
                fx.banned.push(key.clone());
                self.bans.insert(key, ban);
                Response::Done
            }
            Command::ClearRetained { topic } => {
                if self.retained.remove(&topic).is_some() {
                    Response::Done
                } else {
                    Response::NotFound
                }
            }
            Command::Unban { key } => {
                if self.bans.remove(&key) {
                    Response::Done
                } else {
                    Response::NotFound
                }
            }
            Command::Batch(cmds) => {
                Response::Batch(cmds.into_iter().map(|c| self.apply(c, fx)).collect())
            }
        }
    }

    fn connect(
        &mut self,
        client_id: ClientId,
        node: NodeId,
        clean_start: bool,
        expiry_secs: u32,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Response {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let owner = Owner { node, epoch };
        let mut taken_from = None;
        if let Some(old) = self.sessions.get(&client_id)
            && old.connected
        {
            fx.fenced.push((client_id.clone(), old.owner));
            taken_from = Some(old.owner.node);
        }
        let resumable = self
            .sessions
            .get(&client_id)
            .is_some_and(|r| !is_expired(r, now_ms));
        if !self.sessions.contains_key(&client_id)
            && self.sessions.len() >= self.limits.max_sessions
        {
            // Checked before the epoch matters to anyone: nothing changes.
            return Response::SessionQuotaExceeded;
        }
        if clean_start || !resumable {
            if self.sessions.contains_key(&client_id) {
                self.remove_session(&client_id);
                fx.ended.push(client_id.clone());
            }
            self.sessions.insert(
                client_id,
                SessionRecord {
                    owner,
                    connected: true,
                    expiry_secs,
                    disconnected_at_ms: None,
                    subscriptions: BTreeMap::new(),
                    queue: VecDeque::new(),
                    next_seq: 1,
                    dropped: 0,
                    identity: None,
                },
            );
            return Response::Connected {
                epoch,
                session_present: false,
                taken_from,
            };
        }
        let Some(rec) = self.sessions.get_mut(&client_id) else {
            return Response::Fenced;
        };
        rec.owner = owner;
        rec.connected = true;
        rec.expiry_secs = expiry_secs;
        rec.disconnected_at_ms = None;
        Response::Connected {
            epoch,
            session_present: true,
            taken_from,
        }
    }

    fn disconnect(
        &mut self,
        client_id: &ClientId,
        epoch: u64,
        expiry_secs: Option<u32>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Response {
        let Some(rec) = owned(&mut self.sessions, client_id, epoch) else {
            return Response::Fenced;
        };
        if let Some(e) = expiry_secs {
            rec.expiry_secs = e;
        }
        rec.connected = false;
        rec.disconnected_at_ms = Some(now_ms);
        if rec.expiry_secs == 0 {
            self.remove_session(client_id);
            fx.ended.push(client_id.clone());
        }
        Response::Done
    }

    fn publish(&mut self, msg: Arc<Message>, now_ms: u64, fx: &mut Effects) -> Response {
        let retained = msg.retain.then(|| self.retained.set(msg.clone()));
        if retained == Some(RetainOutcome::QuotaExceeded) {
            // The publisher is told 0x97; the message is not delivered either,
            // so a refused publish has no partial effect.
            return Response::Published {
                queued: 0,
                retained,
            };
        }
        if msg.qos == QoS::AtMostOnce || msg.is_expired(now_ms) {
            return Response::Published {
                queued: 0,
                retained,
            };
        }
        // One delivery per session: the highest granted QoS among its
        // matching subscriptions, with all their identifiers [MQTT-3.3.4-3].
        let mut targets: BTreeMap<ClientId, (QoS, bool, Vec<u32>)> = BTreeMap::new();
        self.index.for_each_match(&msg.topic, |client, opts| {
            if opts.no_local && msg.publisher.as_ref() == Some(client) {
                return;
            }
            let qos = opts.qos.min(msg.qos);
            let e = targets
                .entry(client.clone())
                .or_insert((QoS::AtMostOnce, false, Vec::new()));
            e.0 = e.0.max(qos);
            e.1 |= opts.retain_as_published && msg.retain;
            if let Some(id) = opts.subscription_id {
                e.2.push(id);
            }
        });
        let mut queued = 0;
        for (client, (qos, retain, mut ids)) in targets {
            if qos == QoS::AtMostOnce {
                continue;
            }
            let Some(rec) = self.sessions.get_mut(&client) else {
                continue;
            };
            if rec.queue.len() >= self.limits.max_queued_messages {
                rec.dropped += 1;
                continue;
            }
            ids.sort_unstable();
            ids.dedup();
            let seq = rec.next_seq;
            rec.next_seq += 1;
            rec.queue.push_back(QueuedMessage {
                seq,
                msg: msg.clone(),
                qos,
                retain,
                subscription_ids: ids,
                released: false,
            });
            queued += 1;
            if rec.connected {
                fx.wake.push((client, rec.owner));
            }
        }
        Response::Published { queued, retained }
    }

    fn set_policy(&mut self, text: Arc<str>, fx: &mut Effects) -> Response {
        let policy = match Policy::parse(&text) {
            Ok((p, _warnings)) => Arc::new(p),
            Err(e) => return Response::PolicyRejected(e.to_string()),
        };
        if let Some(cur) = &self.policy
            && cur.policy.hash() == policy.hash()
        {
            return Response::PolicySet {
                seq: cur.seq,
                revoked: 0,
            };
        }
        let seq = self.policy.as_ref().map_or(0, |p| p.seq) + 1;
        let revoked = self.revoke(&policy);
        let active = ActivePolicy { seq, text, policy };
        fx.policy = Some(active.clone());
        self.policy = Some(active);
        Response::PolicySet { seq, revoked }
    }

    /// Removes the stored subscriptions `policy` no longer allows.
    fn revoke(&mut self, policy: &Policy) -> usize {
        let mut revoked = 0;
        for (client, rec) in &mut self.sessions {
            let Some(who) = &rec.identity else {
                continue;
            };
            let principal = who.principal(policy);
            let denied: Vec<Subscription> = rec
                .subscriptions
                .iter()
                .filter(|(sub, opts)| {
                    !principal.as_ref().is_some_and(|p| {
                        access::may_subscribe(policy, p, who, client, sub, opts.qos as u8)
                    })
                })
                .map(|(sub, _)| sub.clone())
                .collect();
            for sub in denied {
                rec.subscriptions.remove(&sub);
                if sub.share_group.is_none() {
                    self.index.remove(&sub.filter, client);
                }
                revoked += 1;
            }
        }
        revoked
    }

    /// The ban that applies to a client at `now_ms`, if any.
    pub fn banned(
        &self,
        client_id: &str,
        username: Option<&str>,
        ip: std::net::IpAddr,
        now_ms: u64,
    ) -> Option<(&BanKey, &Ban)> {
        self.bans.find(client_id, username, ip, now_ms)
    }

    /// Every ban (expired ones until the next expiry pass).
    pub fn bans(&self) -> impl Iterator<Item = (&BanKey, &Ban)> {
        self.bans.iter()
    }

    /// Bans in force at `now_ms`.
    pub fn active_bans(&self, now_ms: u64) -> usize {
        self.bans
            .iter()
            .filter(|(_, b)| b.until_ms > now_ms)
            .count()
    }

    /// The policy in force, if the log has set one.
    pub fn policy(&self) -> Option<&ActivePolicy> {
        self.policy.as_ref()
    }

    fn remove_session(&mut self, client_id: &ClientId) {
        if let Some(rec) = self.sessions.remove(client_id) {
            for sub in rec.subscriptions.keys() {
                if sub.share_group.is_none() {
                    self.index.remove(&sub.filter, client_id);
                }
            }
        }
    }

    /// The record of a persistent session.
    pub fn session(&self, client_id: &ClientId) -> Option<&SessionRecord> {
        self.sessions.get(client_id)
    }

    /// Sessions held by a connection and sessions waiting offline.
    pub fn session_counts(&self) -> (usize, usize) {
        let online = self.sessions.values().filter(|r| r.connected).count();
        (online, self.sessions.len() - online)
    }

    /// True if a publish of `msg` must go through the log: it is retained, or
    /// a persistent session would queue it at QoS ≥ 1.
    pub fn needs_log(&self, msg: &Message) -> bool {
        if msg.retain {
            return true;
        }
        if msg.qos == QoS::AtMostOnce {
            return false;
        }
        let mut hit = false;
        self.index.for_each_match(&msg.topic, |client, opts| {
            hit |= opts.qos != QoS::AtMostOnce
                && !(opts.no_local && msg.publisher.as_ref() == Some(client));
        });
        hit
    }

    /// The retained store.
    pub fn retained(&self) -> &RetainedStore {
        &self.retained
    }

    /// The retained message of a topic, if any.
    pub fn retained_message(&self, topic: &TopicName) -> Option<&Arc<Message>> {
        self.retained.get(topic)
    }
}

/// The serialized form of [`State`] (snapshots of the replicated log).
#[derive(Serialize, Deserialize)]
struct Snapshot {
    next_epoch: u64,
    sessions: Vec<(ClientId, SessionRecord)>,
    retained: Vec<Arc<Message>>,
    /// Sequence number and text of the active policy.
    policy: Option<(u64, Arc<str>)>,
    bans: Vec<(BanKey, Ban)>,
}

/// A snapshot that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("state snapshot: {0}")]
pub struct SnapshotError(#[from] postcard::Error);

impl State {
    /// Serializes the whole state (sorted, so equal states give equal bytes).
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut sessions: Vec<(ClientId, SessionRecord)> = self
            .sessions
            .iter()
            .map(|(c, r)| (c.clone(), r.clone()))
            .collect();
        sessions.sort_by(|a, b| a.0.cmp(&b.0));
        let mut retained = self.retained.iter_all();
        retained.sort_by(|a, b| a.topic.cmp(&b.topic));
        let snap = Snapshot {
            next_epoch: self.next_epoch,
            sessions,
            retained,
            policy: self.policy.as_ref().map(|p| (p.seq, p.text.clone())),
            bans: self
                .bans
                .iter()
                .map(|(k, b)| (k.clone(), b.clone()))
                .collect(),
        };
        Ok(postcard::to_stdvec(&snap)?)
    }

    /// Replaces the whole state with a snapshot; indexes are rebuilt.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let snap: Snapshot = postcard::from_bytes(bytes)?;
        let mut fresh = State::new(self.limits);
        fresh.next_epoch = snap.next_epoch;
        for (key, ban) in snap.bans {
            fresh.bans.insert(key, ban);
        }
        if let Some((seq, text)) = snap.policy {
            match Policy::parse(&text) {
                Ok((p, _)) => {
                    fresh.policy = Some(ActivePolicy {
                        seq,
                        text,
                        policy: Arc::new(p),
                    });
                }
                // Only a different binary could get here; deny everything
                // rather than guess.
                Err(e) => tracing::error!(error = %e, "snapshot policy does not parse"),
            }
        }
        for msg in snap.retained {
            fresh.retained.set(msg);
        }
        for (client, rec) in snap.sessions {
            for (sub, opts) in &rec.subscriptions {
                if sub.share_group.is_none() {
                    fresh
                        .index
                        .insert(&sub.filter, client.clone(), opts.clone());
                }
            }
            fresh.sessions.insert(client, rec);
        }
        *self = fresh;
        Ok(())
    }
}

/// The session record if `epoch` still owns it; otherwise the command is stale.
fn owned<'a>(
    sessions: &'a mut HashMap<ClientId, SessionRecord>,
    client_id: &ClientId,
    epoch: u64,
) -> Option<&'a mut SessionRecord> {
    sessions
        .get_mut(client_id)
        .filter(|r| r.owner.epoch == epoch)
}

fn is_expired(rec: &SessionRecord, now_ms: u64) -> bool {
    match rec.disconnected_at_ms {
        Some(t) if !rec.connected => t.saturating_add(u64::from(rec.expiry_secs) * 1000) <= now_ms,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
