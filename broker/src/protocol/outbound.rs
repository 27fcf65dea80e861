//! Server → client delivery state of one connection: the in-flight window
//! (Receive Maximum), the overflow queue, packet ids and outbound topic
//! aliases. Pure state: it returns packets, the connection writes them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use starling_codec::{self as codec, Packet, Props, Protocol, PubResp};

use super::qos_to_wire;
use crate::message::{Message, QoS};
use crate::router::Delivery;
use crate::state::{QueuedMessage, SessionRecord};
use crate::topic::TopicName;

/// A packet on its way to the client. A live PUBLISH carries the instant
/// its message reached this node, so the write can observe the delivery
/// latency; everything else carries `None`.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub packet: Packet,
    pub received_at: Option<Instant>,
}

impl From<Packet> for Outgoing {
    fn from(packet: Packet) -> Outgoing {
        Outgoing {
            packet,
            received_at: None,
        }
    }
}

/// Where an in-flight message came from.
#[derive(Debug, Clone)]
enum Origin {
    /// A live delivery (lost with the connection).
    Live,
    /// An entry of the session's replicated queue, by sequence number.
    Queued(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// QoS 1 sent, waiting for PUBACK.
    Ack,
    /// QoS 2 sent, waiting for PUBREC.
    Rec,
    /// PUBREL sent, waiting for PUBCOMP.
    Comp,
}

#[derive(Debug, Clone)]
struct Inflight {
    origin: Origin,
    stage: Awaiting,
}

/// What an acknowledgement from the client completed.
#[derive(Debug, Default)]
pub(super) struct AckResult {
    /// Replicated queue entries now delivered (to drop from the queue).
    pub acked: Vec<u64>,
    /// Replicated queue entries now released (QoS 2 PUBREC received).
    pub released: Vec<u64>,
    /// Packet to send in response (PUBREL).
    pub reply: Option<Packet>,
}

/// Counts of what the window dropped, folded into broker stats by the caller.
#[derive(Debug, Default)]
pub(super) struct Drops {
    pub expired: u64,
    pub queue_full: u64,
}

/// Delivery state of one connection.
pub(super) struct Outbound {
    protocol: Protocol,
    window: usize,
    /// By packet id; a hash map (fast hasher), not a tree: entries come
    /// and go once per message and are never walked in order.
    inflight: HashMap<u16, Inflight, foldhash::fast::RandomState>,
    pending: VecDeque<Delivery>,
    max_pending: usize,
    next_pkid: u16,
    alias_max: u16,
    aliases: HashMap<TopicName, u16>,
    next_alias: u32,
    /// Highest queue seq handed out on this connection.
    queue_cursor: u64,
    /// Queue entries up to this seq may have been sent by an earlier connection.
    resend_through: u64,
    pub drops: Drops,
}

impl Outbound {
    /// `window` = min(client's Receive Maximum, our in-flight cap).
    pub fn new(protocol: Protocol, window: u16, max_pending: usize, alias_max: u16) -> Outbound {
        Outbound {
            protocol,
            window: usize::from(window.max(1)),
            inflight: HashMap::default(),
            pending: VecDeque::new(),
            max_pending,
            next_pkid: 1,
            alias_max,
            aliases: HashMap::new(),
            next_alias: 1,
            queue_cursor: 0,
            resend_through: 0,
            drops: Drops::default(),
        }
    }

    /// Marks queue entries up to `seq` as possibly sent before (DUP on resend).
    pub fn set_resend_through(&mut self, seq: u64) {
        self.resend_through = seq;
    }

    /// True while another delivery can move into the backlog: `waiting`
    /// more wait in the connection's channel, and both together stay
    /// within the client's queue limit. An empty backlog always has room
    /// (a full channel must still drain).
    pub fn has_room(&self, waiting: usize) -> bool {
        self.pending.is_empty() || self.pending.len() + waiting < self.max_pending
    }

    /// Messages sent and not yet acknowledged (PUBREL stage included).
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Live deliveries waiting for the window to open.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn window_open(&self) -> bool {
        self.inflight.len() < self.window
    }

    /// Accepts a live delivery: QoS 0 and window space → a packet now;
    /// otherwise queued; a full queue drops it (counted).
    pub fn push(&mut self, d: Delivery, now_ms: u64) -> Option<Outgoing> {
        if d.msg.is_expired(now_ms) {
            self.drops.expired += 1;
            return None;
        }
        if d.qos == QoS::AtMostOnce {
            return Some(Outgoing {
                packet: self.publish_packet(
                    &d.msg,
                    d.qos,
                    d.retain,
                    &d.subscription_ids,
                    0,
                    false,
                    now_ms,
                ),
                received_at: d.received_at,
            });
        }
        if self.window_open() && self.pending.is_empty() {
            return self.send_live(d, now_ms);
        }
        if self.pending.len() >= self.max_pending {
            self.drops.queue_full += 1;
            return None;
        }
        self.pending.push_back(d);
        None
    }

    fn send_live(&mut self, d: Delivery, now_ms: u64) -> Option<Outgoing> {
        let pkid = self.alloc_pkid()?;
        let stage = if d.qos == QoS::ExactlyOnce {
            Awaiting::Rec
        } else {
            Awaiting::Ack
        };
        self.inflight.insert(
            pkid,
            Inflight {
                origin: Origin::Live,
                stage,
            },
        );
        Some(Outgoing {
            packet: self.publish_packet(
                &d.msg,
                d.qos,
                d.retain,
                &d.subscription_ids,
                pkid,
                false,
                now_ms,
            ),
            received_at: d.received_at,
        })
    }

    /// Moves queued live deliveries into the window as it opens.
    pub fn refill(&mut self, now_ms: u64, out: &mut Vec<Outgoing>) {
        while self.window_open() {
            let Some(d) = self.pending.pop_front() else {
                break;
            };
            if d.msg.is_expired(now_ms) {
                self.drops.expired += 1;
                continue;
            }
            if let Some(p) = self.send_live(d, now_ms) {
                out.push(p);
            }
        }
    }

    /// Sends entries of the session's replicated queue that fit in the
    /// window. Expired entries are returned in `expired` to be acknowledged
    /// away. Packet ids derive from the queue sequence, so a session resumed
    /// anywhere resends with the same ids [MQTT-4.4.0-1].
    pub fn pull_queue(
        &mut self,
        rec: &SessionRecord,
        now_ms: u64,
        out: &mut Vec<Outgoing>,
        expired: &mut Vec<u64>,
        allowed: &mut dyn FnMut(&TopicName) -> bool,
    ) {
        let cursor = self.queue_cursor;
        for q in rec.queue.iter().filter(|q| q.seq > cursor) {
            if !self.window_open() {
                break;
            }
            let pkid = pkid_of(q.seq);
            if self.inflight.contains_key(&pkid) {
                // 65,535 entries behind an unacknowledged one: wait for it.
                break;
            }
            self.queue_cursor = q.seq;
            if q.released {
                self.inflight.insert(
                    pkid,
                    Inflight {
                        origin: Origin::Queued(q.seq),
                        stage: Awaiting::Comp,
                    },
                );
                out.push(
                    Packet::PubRel(PubResp {
                        pkid,
                        ..PubResp::default()
                    })
                    .into(),
                );
                continue;
            }
            if q.msg.is_expired(now_ms) {
                self.drops.expired += 1;
                expired.push(q.seq);
                continue;
            }
            if !allowed(&q.msg.topic) {
                // The policy no longer lets this client receive it: the
                // message leaves the queue as if delivered.
                expired.push(q.seq);
                continue;
            }
            // The queue may hold a message for as long as the session was
            // offline: its age is no delivery latency, so no instant.
            out.push(self.queued_packet(q, pkid, now_ms).into());
        }
    }

    fn queued_packet(&mut self, q: &QueuedMessage, pkid: u16, now_ms: u64) -> Packet {
        let stage = if q.qos == QoS::ExactlyOnce {
            Awaiting::Rec
        } else {
            Awaiting::Ack
        };
        self.inflight.insert(
            pkid,
            Inflight {
                origin: Origin::Queued(q.seq),
                stage,
            },
        );
        let dup = q.seq <= self.resend_through;
        self.publish_packet(
            &q.msg,
            q.qos,
            q.retain,
            &q.subscription_ids,
            pkid,
            dup,
            now_ms,
        )
    }

    /// PUBACK from the client.
    pub fn on_puback(&mut self, pkid: u16) -> AckResult {
        self.complete(pkid, Awaiting::Ack)
    }

    /// PUBCOMP from the client.
    pub fn on_pubcomp(&mut self, pkid: u16) -> AckResult {
        self.complete(pkid, Awaiting::Comp)
    }

    fn complete(&mut self, pkid: u16, expect: Awaiting) -> AckResult {
        let mut r = AckResult::default();
        if self.inflight.get(&pkid).is_some_and(|i| i.stage == expect)
            && let Some(Inflight {
                origin: Origin::Queued(seq),
                ..
            }) = self.inflight.remove(&pkid)
        {
            r.acked.push(seq);
        }
        r
    }

    /// PUBREC from the client: reply PUBREL, or end the flow on an error reason.
    pub fn on_pubrec(&mut self, pkid: u16, reason: u8) -> AckResult {
        let mut r = AckResult::default();
        let Some(entry) = self.inflight.get_mut(&pkid) else {
            r.reply = Some(self.pubrel(pkid, super::reason::PACKET_ID_NOT_FOUND));
            return r;
        };
        if reason >= 0x80 {
            // The receiver refused the message: the flow ends here [MQTT-4.3.3].
            if let Some(Inflight {
                origin: Origin::Queued(seq),
                ..
            }) = self.inflight.remove(&pkid)
            {
                r.acked.push(seq);
            }
            return r;
        }
        if entry.stage == Awaiting::Rec {
            entry.stage = Awaiting::Comp;
            if let Origin::Queued(seq) = entry.origin {
                r.released.push(seq);
            }
        }
        r.reply = Some(self.pubrel(pkid, super::reason::SUCCESS));
        r
    }

    fn pubrel(&self, pkid: u16, reason: u8) -> Packet {
        let reason = if self.protocol == Protocol::V5 {
            reason
        } else {
            0
        };
        Packet::PubRel(PubResp {
            pkid,
            reason,
            properties: Props::default(),
        })
    }

    /// A packet could not be sent (too large for the client): forget it.
    pub fn discard(&mut self, pkid: u16) -> Option<u64> {
        match self.inflight.remove(&pkid) {
            Some(Inflight {
                origin: Origin::Queued(seq),
                ..
            }) => Some(seq),
            _ => None,
        }
    }

    fn alloc_pkid(&mut self) -> Option<u16> {
        // Live deliveries only happen on clean sessions (or QoS 0), so they
        // never share the id space with queue-derived ids.
        for _ in 0..=u16::MAX {
            let id = self.next_pkid;
            self.next_pkid = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn publish_packet(
        &mut self,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        subscription_ids: &[u32],
        pkid: u16,
        dup: bool,
        now_ms: u64,
    ) -> Packet {
        // Written field by field, only where there is something to say:
        // `Props` allocates on the first write, and most messages carry no
        // property at all.
        let mut properties = Props::default();
        let mut topic: ByteString = msg.topic.inner().clone();
        if self.protocol == Protocol::V5 {
            let p = &msg.props;
            if p.payload_format_utf8 {
                properties.payload_format_indicator = Some(1);
            }
            if p.content_type.is_some() {
                properties.content_type.clone_from(&p.content_type);
            }
            if p.response_topic.is_some() {
                properties.response_topic.clone_from(&p.response_topic);
            }
            if p.correlation_data.is_some() {
                properties.correlation_data.clone_from(&p.correlation_data);
            }
            if !p.user_properties.is_empty() {
                properties.user_properties.clone_from(&p.user_properties);
            }
            if let Some(left) = msg.remaining_expiry_secs(now_ms) {
                properties.message_expiry_interval = Some(left);
            }
            if !subscription_ids.is_empty() {
                properties.subscription_identifiers = subscription_ids.to_vec();
            }
            if self.alias_max > 0 {
                match self.aliases.get(&msg.topic) {
                    Some(&alias) => {
                        properties.topic_alias = Some(alias);
                        topic = ByteString::new();
                    }
                    None if self.next_alias <= u32::from(self.alias_max) => {
                        // Aliases are handed out once and never reassigned:
                        // the first topics a client receives keep theirs.
                        let alias = u16::try_from(self.next_alias).unwrap_or(u16::MAX);
                        self.next_alias += 1;
                        self.aliases.insert(msg.topic.clone(), alias);
                        properties.topic_alias = Some(alias);
                    }
                    None => {}
                }
            }
        }
        Packet::Publish(codec::Publish {
            dup,
            qos: qos_to_wire(qos),
            retain,
            topic,
            pkid,
            properties,
            payload: msg.payload.clone(),
        })
    }

    /// Forgets an alias whose PUBLISH could not be sent, so the next use
    /// carries the topic again.
    pub fn forget_alias_of(&mut self, topic: &TopicName) {
        self.aliases.remove(topic);
    }
}

/// Packet id of a queue entry: 1..=65535, cycling with the sequence.
pub(super) fn pkid_of(seq: u64) -> u16 {
    u16::try_from((seq.saturating_sub(1) % 65_535) + 1).unwrap_or(1)
}
