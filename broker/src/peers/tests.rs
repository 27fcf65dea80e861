//! Two and three `Peers` wired through an in-memory transport.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::*;
use crate::message::{ClientId, MessageProps, QoS, SubOptions};
use crate::router::{Delivery, LiveSub};
use crate::topic::{TopicLimits, TopicName};

/// Records what each node sent; the test delivers it explicitly.
#[derive(Default)]
struct Wire {
    sent: Mutex<Vec<(NodeId, NodeId, Bytes)>>,
    drop_all: Mutex<bool>,
}

struct Port {
    from: NodeId,
    peers: Vec<NodeId>,
    wire: Arc<Wire>,
}

impl PeerTransport for Port {
    fn send(&self, node: NodeId, msg: Bytes) -> bool {
        if *self.wire.drop_all.lock().unwrap() {
            return false;
        }
        self.wire.sent.lock().unwrap().push((self.from, node, msg));
        true
    }
    fn peers(&self) -> Vec<NodeId> {
        self.peers.clone()
    }
}

struct Node {
    id: NodeId,
    peers: Peers,
    router: Router,
}

fn cluster(n: u64) -> (Arc<Wire>, Vec<Node>) {
    let wire = Arc::new(Wire::default());
    let ids: Vec<NodeId> = (1..=n).collect();
    let nodes = ids
        .iter()
        .map(|&id| Node {
            id,
            peers: Peers::new(
                id,
                100 + id,
                Arc::new(Port {
                    from: id,
                    peers: ids.iter().copied().filter(|&p| p != id).collect(),
                    wire: wire.clone(),
                }),
            ),
            router: Router::default(),
        })
        .collect();
    (wire, nodes)
}

/// Delivers everything in flight until the wire is quiet.
fn pump(wire: &Wire, nodes: &[Node]) {
    loop {
        let batch: Vec<_> = std::mem::take(&mut *wire.sent.lock().unwrap());
        if batch.is_empty() {
            return;
        }
        for (from, to, bytes) in batch {
            let node = nodes.iter().find(|n| n.id == to).unwrap();
            node.peers.on_message(from, &bytes, &node.router);
        }
    }
}

/// Each client's connection id, as distinct as the broker's real ones.
fn conn_of(client: &str) -> u64 {
    client
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

fn sub(node: &Node, client: &str, filter: &str) -> mpsc::Receiver<Delivery> {
    let (tx, rx) = mpsc::channel(64);
    let key = Subscription::parse(filter, &TopicLimits::default()).unwrap();
    node.router.subscribe(
        &key,
        LiveSub {
            client: ClientId::new(client),
            conn: conn_of(client),
            opts: SubOptions {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                subscription_id: None,
            },
            persistent: false,
            tx,
        },
    );
    node.peers.announce_changes(&node.router);
    rx
}

fn msg(topic: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::parse(topic.into(), &TopicLimits::default()).unwrap(),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtLeastOnce,
        retain: false,
        props: Arc::new(MessageProps::default()),
        expires_at_ms: None,
        publisher: None,
        received_at: None,
    })
}

fn count(rx: &mut mpsc::Receiver<Delivery>) -> usize {
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

#[test]
fn publish_reaches_remote_subscribers_once_and_only_interested_nodes() {
    let (wire, nodes) = cluster(3);
    let mut a = sub(&nodes[1], "a", "t/+");
    let mut b = sub(&nodes[1], "b", "t/#");
    pump(&wire, &nodes);
    nodes[0].peers.route(&msg("t/1"), false, &nodes[0].router);
    let sent = wire.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one forward, to node 2 only");
    assert_eq!(sent[0].1, 2);
    pump(&wire, &nodes);
    assert_eq!((count(&mut a), count(&mut b)), (1, 1));
    // Node 2 never forwards again (one hop).
    assert!(wire.sent.lock().unwrap().is_empty());
}

#[test]
fn unsubscribe_withdraws_interest() {
    let (wire, nodes) = cluster(2);
    let _rx = sub(&nodes[1], "a", "t");
    pump(&wire, &nodes);
    let key = Subscription::parse("t", &TopicLimits::default()).unwrap();
    nodes[1]
        .router
        .unsubscribe(&key, &ClientId::new("a"), conn_of("a"));
    nodes[1].peers.announce_changes(&nodes[1].router);
    pump(&wire, &nodes);
    nodes[0].peers.route(&msg("t"), false, &nodes[0].router);
    assert!(wire.sent.lock().unwrap().is_empty());
}

#[test]
fn lost_delta_is_repaired_by_digest_and_resync() {
    let (wire, nodes) = cluster(2);
    *wire.drop_all.lock().unwrap() = true;
    let mut rx = sub(&nodes[1], "a", "t");
    *wire.drop_all.lock().unwrap() = false;
    nodes[0].peers.route(&msg("t"), false, &nodes[0].router);
    assert!(
        wire.sent.lock().unwrap().is_empty(),
        "node 1 does not know yet"
    );
    nodes[1].peers.send_digests();
    pump(&wire, &nodes);
    nodes[0].peers.route(&msg("t"), false, &nodes[0].router);
    pump(&wire, &nodes);
    assert_eq!(count(&mut rx), 1);
}

#[test]
fn shared_group_gets_each_message_once_across_nodes() {
    let (wire, nodes) = cluster(3);
    let mut local = sub(&nodes[0], "m0", "$share/g/t");
    let mut r1 = sub(&nodes[1], "m1", "$share/g/t");
    let mut r2 = sub(&nodes[2], "m2", "$share/g/t");
    pump(&wire, &nodes);
    for _ in 0..30 {
        nodes[0].peers.route(&msg("t"), false, &nodes[0].router);
        pump(&wire, &nodes);
    }
    let got = [count(&mut local), count(&mut r1), count(&mut r2)];
    assert_eq!(got.iter().sum::<usize>(), 30, "{got:?}");
    assert!(got.iter().all(|&n| n > 0), "balanced across nodes: {got:?}");
}

#[test]
fn garbage_from_a_peer_is_counted_not_fatal() {
    let (_wire, nodes) = cluster(2);
    nodes[0]
        .peers
        .on_message(2, &[0xff, 0xff, 0xff], &nodes[0].router);
    assert_eq!(nodes[0].peers.stats.bad_messages.load(Ordering::Relaxed), 1);
}

#[test]
fn unsubscribe_then_resubscribe_in_one_window_stays_subscribed() {
    let (wire, nodes) = cluster(2);
    let key = Subscription::parse("t", &TopicLimits::default()).unwrap();
    let _first = sub(&nodes[1], "a", "t");
    pump(&wire, &nodes);
    // Both changes land in one announcement (a takeover on the same node).
    nodes[1]
        .router
        .unsubscribe(&key, &ClientId::new("a"), conn_of("a"));
    let mut rx = {
        let (tx, rx) = mpsc::channel(8);
        nodes[1].router.subscribe(
            &key,
            LiveSub {
                client: ClientId::new("a"),
                conn: 1,
                opts: SubOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: false,
                    subscription_id: None,
                },
                persistent: false,
                tx,
            },
        );
        rx
    };
    nodes[1].peers.announce_changes(&nodes[1].router);
    pump(&wire, &nodes);
    nodes[0].peers.route(&msg("t"), false, &nodes[0].router);
    pump(&wire, &nodes);
    assert_eq!(count(&mut rx), 1);
}

#[test]
fn only_publishes_nobody_takes_count_as_no_subscribers() {
    let (wire, nodes) = cluster(2);
    let none = |n: &Node| n.router.stats.no_subscribers.load(Ordering::Relaxed);
    nodes[0].peers.route(&msg("t"), false, &nodes[0].router);
    assert_eq!(none(&nodes[0]), 1, "nobody anywhere");
    // Logged: stored for a session or retained, so not lost.
    nodes[0].peers.route(&msg("t"), true, &nodes[0].router);
    assert_eq!(none(&nodes[0]), 1);
    // Wanted on the other node only: forwarded, not lost.
    let mut rx = sub(&nodes[1], "a", "t");
    pump(&wire, &nodes);
    nodes[0].peers.route(&msg("t"), false, &nodes[0].router);
    pump(&wire, &nodes);
    assert_eq!(count(&mut rx), 1);
    assert_eq!((none(&nodes[0]), none(&nodes[1])), (1, 0));
    // Wanted locally.
    let _local = sub(&nodes[0], "b", "t");
    nodes[0].peers.route(&msg("t"), false, &nodes[0].router);
    assert_eq!(none(&nodes[0]), 1);
}
