//! `$SYS/broker/...` topics: node statistics published as retained values
//! on a timer. They are node-local (each node reports itself) and never go
//! through the replicated log.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::broker::Broker;
use crate::message::{Message, MessageProps, QoS};
use crate::topic::{TopicLimits, TopicName};

/// Publishes the `$SYS` values every `sys.interval` until shutdown.
pub(crate) async fn run(broker: Arc<Broker>) {
    let interval = broker.config.sys.interval;
    if interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => publish_all(&broker),
        }
    }
}

fn publish_all(broker: &Broker) {
    let s = &broker.stats;
    let ((_, offline), retained) = {
        let state = broker.state.lock();
        (state.session_counts(), state.retained().len())
    };
    let connected = s.connections_current.load(Ordering::Relaxed);
    let values: [(&str, String); 12] = [
        ("version", format!("starling {}", env!("CARGO_PKG_VERSION"))),
        ("uptime", format!("{} seconds", broker.uptime().as_secs())),
        ("clients/connected", connected.to_string()),
        ("clients/disconnected", offline.to_string()),
        ("clients/total", (connected + offline).to_string()),
        (
            "clients/connections_total",
            s.connections_total.load(Ordering::Relaxed).to_string(),
        ),
        ("messages/received", s.messages_received_total().to_string()),
        ("messages/sent", s.messages_sent_total().to_string()),
        (
            "bytes/received",
            s.bytes_received.load(Ordering::Relaxed).to_string(),
        ),
        (
            "bytes/sent",
            s.bytes_sent.load(Ordering::Relaxed).to_string(),
        ),
        ("subscriptions/count", broker.router.len().to_string()),
        ("retained messages/count", retained.to_string()),
    ];
    let limits = TopicLimits::default();
    for (name, value) in values {
        let Ok(topic) = TopicName::parse(format!("$SYS/broker/{name}").into(), &limits) else {
            continue;
        };
        broker.publish_sys(Arc::new(Message {
            topic,
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            props: Arc::new(MessageProps::default()),
            expires_at_ms: None,
            publisher: None,
            received_at: None,
        }));
    }
}
