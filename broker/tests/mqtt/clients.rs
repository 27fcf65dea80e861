//! rumqttc clients (3.1.1 and 5.0) driven in background tasks, with their
//! events forwarded to a channel the test reads with timeouts.

use std::time::Duration;

use rumqttc::v5;
use tokio::sync::mpsc;

use std::net::SocketAddr;

/// Where a client connects: a test broker or a plain socket address (the
/// cluster suite shares this module).
pub trait Target {
    /// The broker's MQTT address.
    fn mqtt_addr(&self) -> SocketAddr;
}

impl Target for SocketAddr {
    fn mqtt_addr(&self) -> SocketAddr {
        *self
    }
}

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a test waits to be confident something does not happen.
pub const QUIET: Duration = Duration::from_millis(700);

/// A 3.1.1 client.
pub struct V4 {
    pub client: rumqttc::AsyncClient,
    pub events: mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
    /// The task driving the event loop; aborting it drops the TCP
    /// connection without DISCONNECT.
    pub task: tokio::task::JoinHandle<()>,
}

/// Options for a 3.1.1 client.
pub fn v4_opts(b: impl Target, id: &str) -> rumqttc::MqttOptions {
    let a = b.mqtt_addr();
    let mut o = rumqttc::MqttOptions::new(id, a.ip().to_string(), a.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Connects a 3.1.1 client and waits for its CONNACK.
pub async fn v4(b: impl Target, id: &str) -> V4 {
    v4_with(v4_opts(b, id)).await
}

/// Connects a 3.1.1 client with `opts` and waits for its CONNACK.
pub async fn v4_with(opts: rumqttc::MqttOptions) -> V4 {
    let (c, ack) = v4_with_ack(opts).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success, "{ack:?}");
    c
}

/// Starts a 3.1.1 client without waiting for anything.
pub fn v4_spawn(opts: rumqttc::MqttOptions) -> V4 {
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    let (tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(ev) => {
                    if tx.send(Ok(ev)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    V4 {
        client,
        events,
        task,
    }
}

/// Connects a 3.1.1 client; returns it with its (successful) CONNACK.
pub async fn v4_with_ack(opts: rumqttc::MqttOptions) -> (V4, rumqttc::ConnAck) {
    let mut c = v4_spawn(opts);
    let ack = c.connack().await;
    (c, ack)
}

/// Connects a 3.1.1 client that the broker must refuse; returns the error.
pub async fn v4_refused(opts: rumqttc::MqttOptions) -> String {
    let mut c = v4_spawn(opts);
    loop {
        match tokio::time::timeout(WAIT, c.events.recv()).await {
            Ok(Some(Err(e))) => return e,
            Ok(Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))))) => {
                panic!("connection was accepted: {a:?}")
            }
            Ok(Some(Ok(_))) => continue,
            Ok(None) => panic!("event loop ended"),
            Err(_) => panic!("timed out waiting for the refusal"),
        }
    }
}

impl V4 {
    /// Waits for the CONNACK.
    pub async fn connack(&mut self) -> rumqttc::ConnAck {
        loop {
            match self.next().await {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) => return a,
                _ => continue,
            }
        }
    }

    /// The next event; panics on a connection error or timeout.
    pub async fn next(&mut self) -> rumqttc::Event {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(Ok(ev))) => ev,
            Ok(Some(Err(e))) => panic!("connection error: {e}"),
            Ok(None) => panic!("event loop ended"),
            Err(_) => panic!("timed out waiting for an event"),
        }
    }

    /// Waits for the next incoming PUBLISH.
    pub async fn publish(&mut self) -> rumqttc::Publish {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = self.next().await {
                return p;
            }
        }
    }

    /// Waits for a SUBACK.
    pub async fn suback(&mut self) -> rumqttc::SubAck {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a)) = self.next().await {
                return a;
            }
        }
    }

    /// Waits for the PUBACK of a QoS 1 publish.
    pub async fn puback(&mut self) {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = self.next().await {
                return;
            }
        }
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) -> rumqttc::SubAck {
        self.client.subscribe(filter, qos).await.unwrap();
        self.suback().await
    }

    /// Asserts no PUBLISH arrives for a while.
    pub async fn no_publish(&mut self) {
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return,
                Ok(Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))))) => {
                    panic!("unexpected publish {p:?}")
                }
                Ok(Some(_)) => continue,
                Ok(None) => return,
            }
        }
    }

    /// Waits until the connection fails (the broker closed it).
    pub async fn closed(&mut self) -> String {
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(_))) => continue,
                Ok(None) => return "ended".into(),
                Err(_) => panic!("connection was not closed"),
            }
        }
    }
}

/// A 5.0 client.
pub struct V5 {
    pub client: v5::AsyncClient,
    pub events: mpsc::UnboundedReceiver<Result<v5::Event, String>>,
    /// The task driving the event loop; aborting it drops the TCP
    /// connection without DISCONNECT.
    pub task: tokio::task::JoinHandle<()>,
}

/// Options for a 5.0 client.
pub fn v5_opts(b: impl Target, id: &str) -> v5::MqttOptions {
    let a = b.mqtt_addr();
    let mut o = v5::MqttOptions::new(id, a.ip().to_string(), a.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Connects a 5.0 client and waits for a successful CONNACK.
pub async fn v5(b: impl Target, id: &str) -> V5 {
    let (c, ack) = v5_with(v5_opts(b, id)).await;
    assert_eq!(
        ack.code,
        v5::mqttbytes::v5::ConnectReturnCode::Success,
        "{ack:?}"
    );
    c
}

/// Connects a 5.0 client with `opts`; returns it with its CONNACK.
pub async fn v5_with(opts: v5::MqttOptions) -> (V5, v5::mqttbytes::v5::ConnAck) {
    let mut c = v5_spawn(opts);
    let ack = c.connack().await;
    (c, ack)
}

/// Connects a 5.0 client that the broker must refuse; returns the error
/// (e.g. `ConnectionRefused(QuotaExceeded)`).
pub async fn v5_refused(opts: v5::MqttOptions) -> String {
    let mut c = v5_spawn(opts);
    loop {
        match tokio::time::timeout(WAIT, c.events.recv()).await {
            Ok(Some(Err(e))) => return e,
            Ok(Some(Ok(v5::Event::Incoming(v5::Incoming::ConnAck(a))))) => {
                panic!("connection was accepted: {a:?}")
            }
            Ok(Some(Ok(_))) => continue,
            Ok(None) => panic!("event loop ended"),
            Err(_) => panic!("timed out waiting for the refusal"),
        }
    }
}

/// Starts a 5.0 client without waiting for anything.
pub fn v5_spawn(opts: v5::MqttOptions) -> V5 {
    let (client, mut el) = v5::AsyncClient::new(opts, 100);
    let (tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(ev) => {
                    if tx.send(Ok(ev)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:?}")));
                    return;
                }
            }
        }
    });
    V5 {
        client,
        events,
        task,
    }
}

impl V5 {
    /// Waits for the CONNACK.
    pub async fn connack(&mut self) -> v5::mqttbytes::v5::ConnAck {
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Ok(v5::Event::Incoming(v5::Incoming::ConnAck(a))))) => return a,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("connection error before CONNACK: {e}"),
                Ok(None) => panic!("event loop ended"),
                Err(_) => panic!("timed out waiting for CONNACK"),
            }
        }
    }

    /// The next event; panics on a connection error or timeout.
    pub async fn next(&mut self) -> v5::Event {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(Ok(ev))) => ev,
            Ok(Some(Err(e))) => panic!("connection error: {e}"),
            Ok(None) => panic!("event loop ended"),
            Err(_) => panic!("timed out waiting for an event"),
        }
    }

    /// Waits for the next incoming PUBLISH.
    pub async fn publish(&mut self) -> v5::mqttbytes::v5::Publish {
        loop {
            if let v5::Event::Incoming(v5::Incoming::Publish(p)) = self.next().await {
                return p;
            }
        }
    }

    /// Waits for a SUBACK.
    pub async fn suback(&mut self) -> v5::mqttbytes::v5::SubAck {
        loop {
            if let v5::Event::Incoming(v5::Incoming::SubAck(a)) = self.next().await {
                return a;
            }
        }
    }

    /// Waits for a PUBACK.
    pub async fn puback(&mut self) -> v5::mqttbytes::v5::PubAck {
        loop {
            if let v5::Event::Incoming(v5::Incoming::PubAck(a)) = self.next().await {
                return a;
            }
        }
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: v5::mqttbytes::QoS,
    ) -> v5::mqttbytes::v5::SubAck {
        self.client.subscribe(filter, qos).await.unwrap();
        self.suback().await
    }

    /// Asserts no PUBLISH arrives for a while.
    pub async fn no_publish(&mut self) {
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return,
                Ok(Some(Ok(v5::Event::Incoming(v5::Incoming::Publish(p))))) => {
                    panic!("unexpected publish {p:?}")
                }
                Ok(Some(_)) => continue,
                Ok(None) => return,
            }
        }
    }

    /// Waits for the broker's DISCONNECT or a connection error; returns the
    /// DISCONNECT if one arrived.
    pub async fn disconnected(&mut self) -> Option<v5::mqttbytes::v5::Disconnect> {
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Ok(v5::Event::Incoming(v5::Incoming::Disconnect(d))))) => return Some(d),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) => return None,
                Err(_) => panic!("connection was not closed"),
            }
        }
    }
}

impl V4 {
    /// Drops the TCP connection without DISCONNECT.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Sends DISCONNECT and waits until the connection is closed.
    pub async fn disconnect(&mut self) {
        self.client.disconnect().await.unwrap();
        self.closed().await;
    }

    /// Waits for an UNSUBACK.
    pub async fn unsuback(&mut self) -> rumqttc::UnsubAck {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::UnsubAck(a)) = self.next().await {
                return a;
            }
        }
    }

    /// Every PUBLISH received until none arrives for [`QUIET`].
    pub async fn collect(&mut self) -> Vec<rumqttc::Publish> {
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout(QUIET, self.events.recv()).await {
                Err(_) | Ok(None) => return out,
                Ok(Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))))) => out.push(p),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("connection error: {e}"),
            }
        }
    }
}

impl V5 {
    /// Drops the TCP connection without DISCONNECT.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Sends DISCONNECT (normal) and waits until the connection is closed.
    pub async fn disconnect(&mut self) {
        self.client.disconnect().await.unwrap();
        self.closed().await;
    }

    /// Waits until the connection ends; returns the error, which names the
    /// reason of a broker DISCONNECT (e.g. `ServerDisconnect { reason_code:
    /// SessionTakenOver, .. }`).
    pub async fn closed(&mut self) -> String {
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(v5::Event::Incoming(v5::Incoming::Disconnect(d))))) => {
                    return format!("ServerDisconnect {{ reason_code: {:?} }}", d.reason_code);
                }
                Ok(Some(Ok(_))) => continue,
                Ok(None) => return "ended".into(),
                Err(_) => panic!("connection was not closed"),
            }
        }
    }

    /// Waits for an UNSUBACK.
    pub async fn unsuback(&mut self) -> v5::mqttbytes::v5::UnsubAck {
        loop {
            if let v5::Event::Incoming(v5::Incoming::UnsubAck(a)) = self.next().await {
                return a;
            }
        }
    }

    /// Every PUBLISH received until none arrives for [`QUIET`].
    pub async fn collect(&mut self) -> Vec<v5::mqttbytes::v5::Publish> {
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout(QUIET, self.events.recv()).await {
                Err(_) | Ok(None) => return out,
                Ok(Some(Ok(v5::Event::Incoming(v5::Incoming::Publish(p))))) => out.push(p),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("connection error: {e}"),
            }
        }
    }
}

/// Empty v5 PUBLISH properties, to fill in with struct update syntax.
pub fn props5() -> v5::mqttbytes::v5::PublishProperties {
    v5::mqttbytes::v5::PublishProperties::default()
}

/// Waits until `$SYS/broker/clients/connected` reports `n` clients besides
/// the watcher itself (needs a short `[sys] interval`). Connection counts
/// drop only after a closed connection's subscriptions are gone, so this is
/// a reliable "the broker has finished with that client" signal.
pub async fn wait_connected(b: impl Target, n: usize) {
    let mut w = v5(b, "sys-watcher").await;
    w.subscribe(
        "$SYS/broker/clients/connected",
        v5::mqttbytes::QoS::AtMostOnce,
    )
    .await;
    let want = (n + 1).to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let p = tokio::time::timeout_at(deadline, w.publish())
            .await
            .unwrap_or_else(|_| panic!("clients/connected never reached {n}"));
        if p.payload[..] == *want.as_bytes() {
            break;
        }
    }
    w.disconnect().await;
}
