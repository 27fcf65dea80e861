//! One client connection: its task, its packet handlers and its end.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use starling_codec::{
    self as codec, DecodeError, EncodeError, MqttCodec, Packet, Properties, Props, Protocol,
    PubResp,
};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::Instrument;

use starling_auth::Action;
use tokio::sync::watch;

use super::memo::TopicMemo;
use super::outbound::{Outbound, Outgoing};
use super::{Answer, Peer, Transport, connect, plugin_reason, qos_from_wire, reason, reason_text};
use crate::access::ClientAuth;
use crate::broker::{Broker, Control, PendingWill, PublishError, SESSION_TAKEN_OVER};
use crate::message::{ClientId, Message, MessageProps, QoS, SubOptions, now_ms};
use crate::metrics::{ConnectRefusal, Connected};
use crate::router::{Delivery, DeliverySender, LiveSub};
use crate::state::{Command, Response};
use crate::telemetry::Action as RateAction;
use crate::topic::{Subscription, TopicLimits, TopicName};

pub(super) type Reader<T> = FramedRead<ReadHalf<T>, MqttCodec>;
pub(super) type Writer<T> = FramedWrite<WriteHalf<T>, MqttCodec>;

/// Packets a client pipelined that are handled per wake-up before the
/// answers are written (one flush carries all their acknowledgements).
const READ_BATCH: usize = 256;

/// Deliveries drained from the queue per wake-up before writing, so one
/// flush carries many packets.
const DELIVERY_BATCH: usize = 256;

/// Bytes buffered before a write goes to the socket mid-batch.
const WRITE_BATCH_BYTES: usize = 32 * 1024;

/// Read buffer of a new (or quiet again) connection; the codec grows it
/// while reads keep filling it.
const FIRST_READ_BUFFER: usize = 512;

/// Packets handled or written in one go that count as a quiet moment.
const QUIET_BATCH: usize = 2;

/// Read and write buffers larger than this are released in a quiet moment.
const IDLE_BUFFER_BYTES: usize = 4096;

/// v5 DISCONNECT reason: the response ladder's disconnect step.
const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;

/// Longest a write to one client may stall before it is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A will message prepared at CONNECT.
pub(super) struct WillSpec {
    pub msg: Message,
    pub expiry_secs: Option<u32>,
    pub delay_secs: u32,
}

/// Why a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The client sent DISCONNECT.
    Disconnect { publish_will: bool },
    /// The client broke the protocol or a limit: v5 gets DISCONNECT(reason).
    Violation(u8),
    /// The network connection was lost.
    Lost,
    /// The broker closed it: takeover (0x8E) or shutdown (0x8B).
    Kicked(u8),
}

/// The state of one accepted connection.
pub(super) struct Connection {
    pub broker: Arc<Broker>,
    pub protocol: Protocol,
    pub client_id: ClientId,
    pub conn_id: u64,
    pub control: Arc<Control>,
    /// Effective keep alive; zero disables the check.
    pub keep_alive: Duration,
    /// Session state lives in the replicated store.
    pub persistent: bool,
    pub epoch: u64,
    pub expiry_secs: u32,
    pub will: Option<WillSpec>,
    pub alias_in: HashMap<u16, TopicName>,
    pub alias_in_max: u16,
    pub awaiting_rel: HashSet<u16>,
    pub receive_maximum: u16,
    pub subscriptions: HashMap<Subscription, SubOptions>,
    pub out: Outbound,
    /// Live deliveries to this connection (created with the first
    /// subscription: a publish-only client never allocates its buffer).
    pub tx: Option<DeliverySender>,
    /// The receiving end of a channel created while handling a packet; the
    /// connection loop picks it up.
    pub new_rx: Option<mpsc::Receiver<Delivery>>,
    pub topic_limits: TopicLimits,
    pub pending_acks: Vec<u64>,
    /// Who this client is, for every policy decision.
    pub auth: Arc<ClientAuth>,
    /// Fires when a new policy is in force.
    pub policy_seen: watch::Receiver<u64>,
    /// `receive` decisions of the policy in force, by topic.
    pub receive_memo: TopicMemo<bool>,
    /// `publish` (and `retain`) allowed by the policy in force, by topic:
    /// a bit per QoS and retain flag (see `publish_bit`).
    pub publish_memo: TopicMemo<u8>,
    /// The policy sequence number the memos belong to.
    pub memo_seq: u64,
    /// When the packets being handled were read: the receive instant of the
    /// messages they publish (one clock read per batch, not per message).
    pub read_at: std::time::Instant,
    /// Keeps this connection in `starling_connections_current` while it lives.
    pub counted: Connected,
    /// What the admin API shows about this client.
    pub info: Arc<crate::registry::ClientInfo>,
    /// Publish-rate baseline and response ladder (`None`: telemetry off).
    pub telemetry: Option<crate::telemetry::ClientTelemetry>,
}

/// Serves one accepted stream until it closes.
pub(crate) async fn serve<T: Transport>(stream: T, peer: Peer, broker: Arc<Broker>) {
    let limits = &broker.config.limits;
    let pre_auth = codec::Limits {
        max_packet_size: limits.max_connect_packet_size,
        max_properties: limits.max_properties,
        max_filters: limits.max_filters_per_packet,
    };
    let (rd, wr) = tokio::io::split(stream);
    // Small initial buffers: they grow with traffic, and an idle connection
    // should cost little (8 KiB each by default).
    let mut reader: Reader<T> =
        FramedRead::with_capacity(rd, MqttCodec::new(pre_auth), FIRST_READ_BUFFER);
    let mut writer: Writer<T> = FramedWrite::new(wr, MqttCodec::new(pre_auth));
    writer.set_backpressure_boundary(WRITE_BATCH_BYTES);
    *writer.write_buffer_mut() = bytes::BytesMut::new();
    let first = tokio::select! {
        r = tokio::time::timeout(broker.config.session.connect_timeout, reader.next()) => r,
        _ = broker.shutdown.cancelled() => return,
    };
    let connect = match first {
        Err(_) => {
            tracing::debug!(peer = %peer.addr, "no CONNECT before the timeout");
            return;
        }
        Ok(None) => return,
        Ok(Some(Err(DecodeError::UnsupportedProtocolVersion(level)))) => {
            tracing::debug!(peer = %peer.addr, level, "unsupported protocol version");
            broker.metrics.connect_attempt();
            broker
                .metrics
                .connect_refused(ConnectRefusal::ProtocolVersion);
            // 3.1.1 return code 1: the only CONNACK an unknown version can read.
            let _ = writer
                .send(Packet::ConnAck(codec::ConnAck {
                    reason: reason::UNSUPPORTED_PROTOCOL_VERSION,
                    ..Default::default()
                }))
                .await;
            return;
        }
        Ok(Some(Err(e))) => {
            tracing::debug!(peer = %peer.addr, error = %e, "bad first packet");
            return;
        }
        Ok(Some(Ok(Packet::Connect(c)))) => {
            broker.metrics.connect_attempt();
            c
        }
        Ok(Some(Ok(_))) => {
            tracing::debug!(peer = %peer.addr, "first packet is not CONNECT [MQTT-3.1.0-1]");
            return;
        }
    };
    // Boxed: the CONNECT exchange (authentication, session claim, takeover)
    // is large and happens once; it must not size every idle connection.
    let (rx, conn) = match Box::pin(connect::accept(*connect, &broker, &peer, &mut writer)).await {
        Some(v) => v,
        None => return,
    };
    let full = codec::Limits {
        max_packet_size: limits.max_packet_size,
        ..pre_auth
    };
    reader.decoder_mut().set_limits(full);
    reader.decoder_mut().set_protocol(conn.protocol);
    let span = tracing::info_span!(
        "conn",
        client_id = %conn.client_id,
        peer = %peer.addr,
        listener = %peer.listener
    );
    // Boxed: `conn` stays behind in this future's state otherwise.
    Box::pin(conn.run(reader, writer, rx).instrument(span)).await;
}

impl Connection {
    /// Serves the connection until it ends. A plain `fn` returning an
    /// `async move` block: an `async fn` would keep both the arguments and
    /// their moved copies in the task, about a kilobyte per idle connection.
    fn run<T: Transport>(
        self,
        reader: Reader<T>,
        writer: Writer<T>,
        rx: Option<mpsc::Receiver<Delivery>>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let (mut this, mut reader, mut writer, mut rx) = (self, reader, writer, rx);
        async move {
            tracing::debug!(persistent = this.persistent, "connected");
            let control = this.control.clone();
            let shutdown = this.broker.shutdown.clone();
            let mut policy_rx = this.policy_seen.clone();
            let mut out_buf: Vec<Outgoing> = Vec::new();
            let mut last_seen = Instant::now();
            this.pull_queue(&mut out_buf).await;
            let exit = loop {
                // A client that stops reading must not pin this task (and with
                // it takeover, keep alive and shutdown) forever. Nothing to
                // write (a wake-up that only read acknowledgements): no
                // timer, no allocation.
                let flushed = if out_buf.is_empty() {
                    Ok(Ok(()))
                } else {
                    let flush =
                        tokio::time::timeout(WRITE_TIMEOUT, this.flush(&mut writer, &mut out_buf));
                    Box::pin(flush).await
                };
                match flushed {
                    Ok(Ok(())) => {}
                    Ok(Err(exit)) => break exit,
                    Err(_) => {
                        tracing::debug!("write stalled: slow consumer disconnected");
                        // What is still queued for it is lost with it (what the
                        // stalled write held is not known any more).
                        let stats = &this.broker.stats;
                        let lost = this.out.pending_len() + rx.as_ref().map_or(0, |r| r.len());
                        stats
                            .dropped_slow_consumer
                            .fetch_add(lost as u64, std::sync::atomic::Ordering::Relaxed);
                        stats
                            .slow_consumer_disconnects
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        break Exit::Lost;
                    }
                }
                let deadline = last_seen + this.keep_alive.mul_f32(1.5);
                tokio::select! {
                    biased;
                    code = control.kicked() => break Exit::Kicked(code),
                    _ = shutdown.cancelled() => break Exit::Kicked(reason::SERVER_SHUTTING_DOWN),
                    // Before the client's packets: a busy publisher must not
                    // delay its own revocation.
                    Ok(()) = policy_rx.changed() => {
                        if let Err(exit) = this.on_policy_change() {
                            break exit;
                        }
                    }
                    frame = reader.next() => {
                        last_seen = Instant::now();
                        this.read_at = last_seen.into_std();
                        // Handle what the client pipelined before writing the
                        // answers: one flush then carries many PUBACKs.
                        let mut next = Some(frame);
                        let mut handled = 0;
                        let mut exit = None;
                        while let Some(frame) = next.take() {
                            match frame {
                                None | Some(Err(DecodeError::Io(_))) => exit = Some(Exit::Lost),
                                Some(Err(e)) => {
                                    tracing::debug!(error = %e, "malformed packet");
                                    exit = Some(Exit::Violation(e.reason_code()));
                                }
                                Some(Ok(Packet::PubAck(r))) if !this.persistent => {
                                    // The most frequent packet of a subscriber,
                                    // handled in place: nothing to commit.
                                    this.out.on_puback(r.pkid);
                                    this.refill(&mut out_buf);
                                }
                                Some(Ok(packet)) => {
                                    // Boxed: handling a packet (publish, commits, acks)
                                    // needs kilobytes of state only while it runs; an
                                    // idle connection must not carry it.
                                    if let Err(e) = Box::pin(this.handle(packet, &mut out_buf)).await {
                                        exit = Some(e);
                                    }
                                }
                            }
                            handled += 1;
                            if exit.is_some() || handled >= READ_BATCH {
                                break;
                            }
                            next = reader.next().now_or_never();
                        }
                        if let Some(exit) = exit {
                            break exit;
                        }
                        if handled <= QUIET_BATCH {
                            // See `flush`: a quiet moment shrinks the read
                            // buffer back to its first size.
                            let b = reader.read_buffer_mut();
                            if b.is_empty() && b.capacity() > IDLE_BUFFER_BYTES {
                                *b = bytes::BytesMut::with_capacity(FIRST_READ_BUFFER);
                            }
                        }
                    }
                    // Messages wait in the channel and then in the window's
                    // backlog: together they hold at most
                    // `limits.max_queued_messages` (the channel alone can).
                    Some(d) = recv(&mut rx), if this.out.has_room(rx_len(&rx)) => {
                        let now = now_ms();
                        this.deliver(d, now, &mut out_buf);
                        for _ in 0..DELIVERY_BATCH {
                            if !this.out.has_room(rx_len(&rx)) {
                                break;
                            }
                            match rx.as_mut().map(|r| r.try_recv()) {
                                Some(Ok(d)) => this.deliver(d, now, &mut out_buf),
                                _ => break,
                            }
                        }
                    }
                    _ = control.wake.notified() => this.pull_queue(&mut out_buf).await,
                    _ = tokio::time::sleep_until(deadline), if !this.keep_alive.is_zero() => {
                        tracing::debug!("keep alive timeout");
                        break Exit::Violation(reason::KEEP_ALIVE_TIMEOUT);
                    }
                }
                this.submit_acks().await;
                this.fold_drops();
                this.control.set_depths(
                    this.out.inflight_len(),
                    this.out.pending_len() + rx.as_ref().map_or(0, |r| r.len()),
                );
                if let Some(r) = this.new_rx.take() {
                    rx = Some(r);
                }
            };
            Box::pin(this.finish(exit, &mut writer, out_buf)).await;
        }
    }

    /// Writes buffered packets and flushes once. A PUBLISH too large for the
    /// client's Maximum Packet Size is dropped for this client only.
    async fn flush<T: Transport>(
        &mut self,
        writer: &mut Writer<T>,
        buf: &mut Vec<Outgoing>,
    ) -> Result<(), Exit> {
        if buf.is_empty() {
            return Ok(());
        }
        // One clock read per batch for the latency of every PUBLISH in it.
        let now = std::time::Instant::now();
        let mut freed = false;
        let mut written = 0;
        let mut batch = Vec::new();
        while !buf.is_empty() {
            std::mem::swap(buf, &mut batch);
            for packet in batch.drain(..) {
                written += 1;
                self.write_one(writer, packet, now, &mut freed).await?;
            }
            if freed {
                // A dropped packet freed a window slot: move the backlog up.
                freed = false;
                self.after_ack(buf).await;
            }
        }
        SinkExt::<&Packet>::flush(writer)
            .await
            .map_err(|_| Exit::Lost)?;
        if written <= QUIET_BATCH {
            // A quiet moment: give back what a burst made these buffers grow
            // to, so a connection that was busy once does not stay large.
            if writer.write_buffer().capacity() > IDLE_BUFFER_BYTES {
                *writer.write_buffer_mut() = bytes::BytesMut::new();
            }
            if batch.capacity() > QUIET_BATCH {
                batch = Vec::new();
            }
        }
        // Keep the allocation for the next batch.
        *buf = batch;
        Ok(())
    }

    /// Writes one packet into the write buffer; a PUBLISH too large for the
    /// client is dropped for it (counted), setting `freed`. `now` is when
    /// this batch started being written.
    async fn write_one<T: Transport>(
        &mut self,
        writer: &mut Writer<T>,
        out: Outgoing,
        now: std::time::Instant,
        freed: &mut bool,
    ) -> Result<(), Exit> {
        let Outgoing {
            packet,
            received_at,
        } = out;
        {
            match writer.feed(&packet).await {
                Ok(()) => {
                    if let Packet::Publish(p) = &packet {
                        self.broker
                            .stats
                            .sent(qos_from_wire(p.qos), p.payload.len());
                        if let Some(t) = received_at {
                            self.broker
                                .metrics
                                .delivery_latency
                                .observe(now.saturating_duration_since(t).as_secs_f64());
                        }
                    }
                }
                Err(EncodeError::PacketTooLarge { .. }) | Err(EncodeError::StringTooLong) => {
                    if let Packet::Publish(p) = &packet {
                        self.broker
                            .stats
                            .dropped_too_large
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Some(seq) = self.out.discard(p.pkid) {
                            self.pending_acks.push(seq);
                        }
                        *freed |= p.qos != codec::QoS::AtMostOnce;
                        if p.properties.topic_alias.is_some()
                            && !p.topic.is_empty()
                            && let Ok(t) = TopicName::parse(p.topic.clone(), &self.topic_limits)
                        {
                            self.out.forget_alias_of(&t);
                        }
                    }
                }
                Err(EncodeError::Io(_)) => return Err(Exit::Lost),
            }
        }
        Ok(())
    }

    async fn handle(&mut self, packet: Packet, out: &mut Vec<Outgoing>) -> Result<(), Exit> {
        match packet {
            Packet::Publish(p) => self.on_publish(p, out).await,
            Packet::PubAck(r) => {
                let res = self.out.on_puback(r.pkid);
                self.pending_acks.extend(res.acked);
                self.after_ack(out).await;
                Ok(())
            }
            Packet::PubRec(r) => {
                let res = self.out.on_pubrec(r.pkid, r.reason);
                self.pending_acks.extend(res.acked);
                if !res.released.is_empty() {
                    let cmd = Command::Release {
                        client_id: self.client_id.clone(),
                        epoch: self.epoch,
                        seqs: res.released,
                    };
                    // PUBREL only once the release is durable: otherwise a
                    // failover would resend the PUBLISH (QoS 2 exactly once).
                    self.submit_owned(cmd).await?;
                }
                out.extend(res.reply.map(Outgoing::from));
                self.after_ack(out).await;
                Ok(())
            }
            Packet::PubComp(r) => {
                let res = self.out.on_pubcomp(r.pkid);
                self.pending_acks.extend(res.acked);
                self.after_ack(out).await;
                Ok(())
            }
            Packet::PubRel(r) => {
                let known = self.awaiting_rel.remove(&r.pkid);
                let code = if known || self.protocol == Protocol::V311 {
                    reason::SUCCESS
                } else {
                    reason::PACKET_ID_NOT_FOUND
                };
                out.push(
                    Packet::PubComp(PubResp {
                        pkid: r.pkid,
                        reason: code,
                        properties: Props::default(),
                    })
                    .into(),
                );
                Ok(())
            }
            // Boxed (rare, with commits inside): keeps the per-packet
            // allocation of `handle` small for the frequent packets.
            Packet::Subscribe(s) => Box::pin(self.on_subscribe(s, out)).await,
            Packet::Unsubscribe(u) => Box::pin(self.on_unsubscribe(u, out)).await,
            Packet::PingReq => {
                out.push(Packet::PingResp.into());
                Ok(())
            }
            Packet::Disconnect(d) => {
                if self.protocol == Protocol::V5
                    && let Some(e) = d.properties.session_expiry_interval
                {
                    // Non-zero after a zero at CONNECT is a Protocol Error [MQTT-3.14.2-2].
                    if self.expiry_secs == 0 && e != 0 {
                        return Err(Exit::Violation(reason::PROTOCOL_ERROR));
                    }
                    self.expiry_secs = e.min(self.broker.config.max_session_expiry_secs());
                }
                // Only a normal disconnection (0x00) discards the will [MQTT-3.14.4-3].
                Err(Exit::Disconnect {
                    publish_will: d.reason != reason::SUCCESS,
                })
            }
            // A second CONNECT [MQTT-3.1.0-2]; AUTH with no method negotiated;
            // server-only packets are refused by the codec already.
            Packet::Connect(_) | Packet::Auth(_) => Err(Exit::Violation(reason::PROTOCOL_ERROR)),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(Exit::Violation(reason::PROTOCOL_ERROR))
            }
        }
    }

    /// Submits a command scoped to this connection's session. A stale epoch
    /// means the session was taken over (close with 0x8E); a commit failure
    /// means this node cannot make it durable (close with 0x9C, no will).
    async fn submit_owned(&self, cmd: Command) -> Result<(), Exit> {
        match self.broker.submit(cmd).await {
            Ok(Response::Fenced) => Err(Exit::Kicked(SESSION_TAKEN_OVER)),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "session change not committed");
                Err(Exit::Kicked(crate::broker::USE_ANOTHER_SERVER))
            }
        }
    }

    async fn after_ack(&mut self, out: &mut Vec<Outgoing>) {
        self.refill(out);
        self.pull_queue(out).await;
    }

    /// Moves live deliveries waiting for the window into it.
    fn refill(&mut self, out: &mut Vec<Outgoing>) {
        if self.out.pending_len() > 0 {
            self.out.refill(now_ms(), out);
        }
    }

    /// Sends what fits of the session's replicated queue.
    async fn pull_queue(&mut self, out: &mut Vec<Outgoing>) {
        if !self.persistent {
            return;
        }
        self.forget_stale_decisions();
        let mut expired = Vec::new();
        let fenced = {
            let state = self.broker.state.lock();
            match state.session(&self.client_id) {
                Some(rec) if rec.owner.epoch == self.epoch => {
                    let (auth, memo, broker) = (&self.auth, &mut self.receive_memo, &self.broker);
                    let mut allowed =
                        |topic: &TopicName| receive_allowed(broker, auth, memo, topic);
                    self.out
                        .pull_queue(rec, now_ms(), out, &mut expired, &mut allowed);
                    false
                }
                _ => true,
            }
        };
        if fenced {
            // Another connection owns the session now: this one must not
            // deliver for it again (G3 fencing).
            self.control.kick(SESSION_TAKEN_OVER);
        }
        self.pending_acks.extend(expired);
    }

    /// Moves the window's drop counts into the broker's statistics.
    fn fold_drops(&mut self) {
        let d = std::mem::take(&mut self.out.drops);
        let stats = &self.broker.stats;
        if d.expired > 0 {
            stats
                .dropped_expired
                .fetch_add(d.expired, std::sync::atomic::Ordering::Relaxed);
        }
        if d.queue_full > 0 {
            stats
                .dropped_queue_full
                .fetch_add(d.queue_full, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn submit_acks(&mut self) {
        if self.pending_acks.is_empty() || !self.persistent {
            self.pending_acks.clear();
            return;
        }
        let cmd = Command::Ack {
            client_id: self.client_id.clone(),
            epoch: self.epoch,
            seqs: std::mem::take(&mut self.pending_acks),
        };
        if let Err(e) = Box::pin(self.broker.submit(cmd)).await {
            tracing::warn!(error = %e, "could not record acknowledgements");
        }
    }

    async fn on_publish(
        &mut self,
        mut p: codec::Publish,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), Exit> {
        let v5 = self.protocol == Protocol::V5;
        let topic = self.resolve_topic(&p)?;
        let qos = qos_from_wire(p.qos);
        self.broker.stats.received(qos, p.payload.len());
        self.watch_rate().await?;
        let utf8 = p.properties.payload_format_indicator == Some(1);
        if utf8 && std::str::from_utf8(&p.payload).is_err() {
            // [MQTT-3.3.2-4]: refuse the message, not the connection, where an ack can say so.
            if qos == QoS::AtMostOnce || !v5 {
                return Err(Exit::Violation(reason::PAYLOAD_FORMAT_INVALID));
            }
            out.push(ack_packet(qos, p.pkid, reason::PAYLOAD_FORMAT_INVALID).into());
            return Ok(());
        }
        if qos == QoS::ExactlyOnce {
            if self.awaiting_rel.contains(&p.pkid) {
                // A resend before PUBREL: acknowledge again, deliver once.
                out.push(ack_packet(qos, p.pkid, reason::SUCCESS).into());
                return Ok(());
            }
            if self.awaiting_rel.len() >= usize::from(self.receive_maximum) {
                return Err(Exit::Violation(reason::RECEIVE_MAXIMUM_EXCEEDED));
            }
        }
        if !self.may_publish(&topic, qos, p.retain) {
            self.broker
                .access
                .stats
                .dropped_denied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // v5 can say "not authorized" for QoS 1/2. QoS 0 has no answer,
            // and 3.1.1 has no negative acknowledgement: the message is
            // dropped (and counted) but acknowledged, as Mosquitto does, so
            // the client does not resend it forever.
            match qos {
                QoS::AtMostOnce => {}
                _ => out.push(
                    ack_packet(qos, p.pkid, if v5 { reason::NOT_AUTHORIZED } else { 0 }).into(),
                ),
            }
            return Ok(());
        }
        if !self.broker.plugins.is_empty() {
            let msg = starling_plugins::Publish {
                topic: topic.as_str(),
                payload: &p.payload,
                qos: qos as u8,
                retain: p.retain,
            };
            if let Err(r) = self
                .broker
                .plugins
                .on_publish(&self.auth.plugin_client(), &msg)
            {
                tracing::debug!(plugin = %r.plugin, topic = %topic.as_str(), "publish refused by a plugin");
                // As a policy denial: v5 says why for QoS 1/2; QoS 0 and
                // 3.1.1 drop it (3.1.1 QoS 1/2 still acknowledged).
                if qos != QoS::AtMostOnce {
                    let code = if v5 {
                        plugin_reason(r.reason, Answer::Publish)
                    } else {
                        0
                    };
                    out.push(ack_packet(qos, p.pkid, code).into());
                }
                return Ok(());
            }
        }
        let expiry_secs = p.properties.message_expiry_interval;
        let props = if v5 {
            let mut p = p.properties.take();
            MessageProps {
                payload_format_utf8: utf8,
                content_type: p.content_type.take(),
                response_topic: p.response_topic.take(),
                correlation_data: p.correlation_data.take(),
                user_properties: std::mem::take(&mut p.user_properties),
            }
        } else {
            MessageProps::default()
        };
        let msg = Arc::new(Message {
            topic,
            payload: p.payload,
            qos,
            retain: p.retain,
            props: Arc::new(props),
            expires_at_ms: expiry_secs.map(|s| now_ms().saturating_add(u64::from(s) * 1000)),
            publisher: Some(self.client_id.clone()),
            received_at: Some(self.read_at),
        });
        let code = match self.broker.publish(msg).await {
            Ok(()) => reason::SUCCESS,
            Err(PublishError::RetainQuota) => {
                if !v5 && qos != QoS::AtMostOnce {
                    // 3.1.1 cannot say "not stored": never acknowledge it.
                    return Err(Exit::Lost);
                }
                reason::QUOTA_EXCEEDED
            }
            Err(PublishError::NotAuthorized) => {
                tracing::debug!("publish to a broker-only topic refused");
                reason::NOT_AUTHORIZED
            }
            Err(PublishError::Unavailable(e)) => {
                tracing::warn!(error = %e, "publish not committed");
                if !v5 && qos != QoS::AtMostOnce {
                    // 3.1.1 has no negative ack: close so the client resends.
                    return Err(Exit::Lost);
                }
                reason::UNSPECIFIED
            }
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => out.push(ack_packet(qos, p.pkid, if v5 { code } else { 0 }).into()),
            QoS::ExactlyOnce => {
                if code < 0x80 {
                    self.awaiting_rel.insert(p.pkid);
                }
                out.push(ack_packet(qos, p.pkid, if v5 { code } else { 0 }).into());
            }
        }
        Ok(())
    }

    /// The live-delivery sender, creating the channel on first use.
    fn delivery_tx(&mut self) -> DeliverySender {
        if let Some(tx) = &self.tx {
            return tx.clone();
        }
        let capacity = self.broker.config.limits.max_queued_messages.max(16);
        let (tx, rx) = mpsc::channel(capacity);
        self.tx = Some(tx.clone());
        self.new_rx = Some(rx);
        tx
    }

    /// Publishes the subscription list to the admin API's view.
    pub(super) fn sync_subscriptions(&self) {
        self.info.set_subscriptions(
            self.subscriptions
                .keys()
                .map(|s| s.to_filter_string().into_owned())
                .collect(),
        );
    }

    /// Feeds the publish-rate tracker and climbs the response ladder:
    /// report, throttle (read the socket later), disconnect (0x96), ban.
    async fn watch_rate(&mut self) -> Result<(), Exit> {
        let Some(t) = self.telemetry.as_mut() else {
            return Ok(());
        };
        let telemetry = &self.broker.telemetry;
        // The read loop's clock reading: no extra clock call per publish.
        let (action, wait) = t.on_publish(self.read_at, &telemetry.cfg);
        if action == RateAction::None && wait.is_zero() {
            return Ok(());
        }
        let events = &self.broker.access.events;
        let who = self.auth.who();
        let class = &*self.auth.principal.class;
        match action {
            RateAction::None => {}
            RateAction::Rate(r) => self.info.set_rate(r),
            RateAction::Anomaly { observed, baseline } => {
                self.info.set_rate(observed);
                telemetry.count_anomaly(class);
                events.publish_rate_anomaly(&who, observed, baseline);
            }
            RateAction::Throttle { rate } => {
                telemetry.count_response("throttle");
                events.response(&who, "throttle", &format!("{rate:.1} msg/s"));
            }
            RateAction::Disconnect { ban } => {
                telemetry.count_response("disconnect");
                events.response(&who, "disconnect", "message rate too high");
                if ban {
                    telemetry.count_response("ban");
                    let until =
                        now_ms().saturating_add(telemetry.cfg.ban_duration.as_millis() as u64);
                    let key = crate::state::BanKey::ClientId(self.client_id.as_str().to_owned());
                    events.response(&who, "ban", "publish rate");
                    if let Err(e) = Box::pin(self.broker.ban(key, until, "publish_rate")).await {
                        tracing::warn!(error = %e, "could not record a ban");
                    }
                }
                return Err(Exit::Violation(MESSAGE_RATE_TOO_HIGH));
            }
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            // The rest of this batch was read before the wait but is handled
            // after it: the rate tracker and token buckets must see time pass,
            // or every later packet of the batch would owe one more token.
            self.read_at = std::time::Instant::now();
        }
        Ok(())
    }

    /// Queues a live delivery for the client, if it may receive its topic.
    fn deliver(&mut self, d: Delivery, now: u64, out: &mut Vec<Outgoing>) {
        if self.may_receive(&d.msg.topic) {
            out.extend(self.out.push(d, now));
        }
    }

    /// Empties the decision memos if a newer policy is in force (the
    /// connection may not have run `on_policy_change` yet).
    fn forget_stale_decisions(&mut self) {
        let seq = self.broker.access.seq();
        if seq != self.memo_seq {
            self.memo_seq = seq;
            self.receive_memo.clear();
            self.publish_memo.clear();
        }
    }

    /// The `receive` decision for `topic` (remembered per policy).
    fn may_receive(&mut self, topic: &TopicName) -> bool {
        self.forget_stale_decisions();
        receive_allowed(&self.broker, &self.auth, &mut self.receive_memo, topic)
    }

    /// The `publish` (and, for retained messages, `retain`) decision.
    ///
    /// Allowed answers are remembered per connection until the policy
    /// changes (a device publishes to a handful of topics); denials are
    /// asked every time so each one is counted and reported.
    fn may_publish(&mut self, topic: &TopicName, qos: QoS, retain: bool) -> bool {
        self.forget_stale_decisions();
        let bit = publish_bit(qos, retain);
        let known = self.publish_memo.get(topic).unwrap_or(0);
        if known & bit != 0 {
            return true;
        }
        let access = &self.broker.access;
        let policy = access.policy();
        let t = topic.as_str();
        let allowed = self
            .auth
            .check(access, &policy, Action::Publish, t, qos as u8, retain)
            && (!retain
                || self
                    .auth
                    .check(access, &policy, Action::Retain, t, qos as u8, true));
        if allowed {
            self.publish_memo.insert(topic, known | bit);
        }
        allowed
    }

    /// A new policy is in force: re-check the connection itself and every
    /// subscription it holds. Stored subscriptions of a persistent session
    /// were already removed by the log entry that changed the policy.
    fn on_policy_change(&mut self) -> Result<(), Exit> {
        self.receive_memo.clear();
        self.publish_memo.clear();
        let access = &self.broker.access;
        let policy = access.policy();
        let who = self.auth.who();
        let connect = self.auth.decide(&policy, Action::Connect, "", 0, false);
        if !policy.knows(&self.auth.principal) || !connect.allowed {
            access.events.revoked(&who, "connection", "");
            return Err(Exit::Kicked(reason::NOT_AUTHORIZED));
        }
        let denied: Vec<Subscription> = self
            .subscriptions
            .iter()
            .filter(|(sub, opts)| {
                let filter = sub.to_filter_string();
                !self
                    .auth
                    .decide(&policy, Action::Subscribe, &filter, opts.qos as u8, false)
                    .allowed
            })
            .map(|(sub, _)| sub.clone())
            .collect();
        for sub in denied {
            access
                .events
                .revoked(&who, "subscription", &sub.to_filter_string());
            self.subscriptions.remove(&sub);
            self.broker
                .router
                .unsubscribe(&sub, &self.client_id, self.conn_id);
        }
        self.sync_subscriptions();
        Ok(())
    }

    /// Applies v5 topic aliases and validates the topic name.
    fn resolve_topic(&mut self, p: &codec::Publish) -> Result<TopicName, Exit> {
        let alias = if self.protocol == Protocol::V5 {
            p.properties.topic_alias
        } else {
            None
        };
        match alias {
            Some(a) if a == 0 || a > self.alias_in_max => {
                Err(Exit::Violation(reason::TOPIC_ALIAS_INVALID))
            }
            Some(a) if p.topic.is_empty() => self
                .alias_in
                .get(&a)
                .cloned()
                .ok_or(Exit::Violation(reason::PROTOCOL_ERROR)),
            Some(a) => {
                let t = TopicName::parse(p.topic.clone(), &self.topic_limits)
                    .map_err(|_| Exit::Violation(reason::TOPIC_NAME_INVALID))?;
                self.alias_in.insert(a, t.clone());
                Ok(t)
            }
            None => TopicName::parse(p.topic.clone(), &self.topic_limits)
                .map_err(|_| Exit::Violation(reason::TOPIC_NAME_INVALID)),
        }
    }

    async fn on_subscribe(
        &mut self,
        s: codec::Subscribe,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), Exit> {
        let v5 = self.protocol == Protocol::V5;
        let sub_id = s.properties.subscription_identifiers.first().copied();
        let fail = |code: u8| if v5 { code } else { reason::UNSPECIFIED };
        let max = self.broker.config.limits.max_subscriptions_per_client;
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut durable = Vec::new();
        let mut retained_for = Vec::new();
        for f in s.filters {
            let sub = match Subscription::parse(&f.filter, &self.topic_limits) {
                Ok(sub) => sub,
                Err(_) => {
                    reasons.push(fail(reason::TOPIC_FILTER_INVALID));
                    continue;
                }
            };
            if sub.share_group.is_some() && f.no_local {
                // [MQTT-3.8.3-4]
                return Err(Exit::Violation(reason::PROTOCOL_ERROR));
            }
            let policy = self.broker.access.policy();
            if !self.auth.check(
                &self.broker.access,
                &policy,
                Action::Subscribe,
                &f.filter,
                f.qos as u8,
                false,
            ) {
                reasons.push(fail(reason::NOT_AUTHORIZED));
                continue;
            }
            if let Err(r) = self
                .broker
                .plugins
                .on_subscribe(&self.auth.plugin_client(), &f.filter)
            {
                tracing::debug!(plugin = %r.plugin, filter = %f.filter, "subscription refused by a plugin");
                reasons.push(fail(plugin_reason(r.reason, Answer::Subscribe)));
                continue;
            }
            let existed = self.subscriptions.contains_key(&sub);
            if !existed && self.subscriptions.len() >= max {
                reasons.push(fail(reason::QUOTA_EXCEEDED));
                continue;
            }
            let opts = SubOptions {
                qos: qos_from_wire(f.qos),
                no_local: f.no_local,
                retain_as_published: f.retain_as_published,
                subscription_id: sub_id,
            };
            let tx = self.delivery_tx();
            self.broker.router.subscribe(
                &sub,
                LiveSub {
                    client: self.client_id.clone(),
                    conn: self.conn_id,
                    opts: opts.clone(),
                    // Shared subscriptions are always delivered live.
                    persistent: self.persistent && sub.share_group.is_none(),
                    tx,
                },
            );
            let send_retained = match f.retain_handling {
                codec::RetainHandling::SendAtSubscribe => true,
                codec::RetainHandling::SendIfNew => !existed,
                codec::RetainHandling::DoNotSend => false,
            };
            // Shared subscriptions get no retained messages [MQTT-3.8.4-?].
            if send_retained && sub.share_group.is_none() {
                retained_for.push((sub.clone(), opts.clone()));
            }
            if self.persistent {
                durable.push((sub.clone(), opts.clone()));
            }
            self.subscriptions.insert(sub, opts);
            reasons.push(f.qos as u8);
        }
        if !durable.is_empty() {
            let cmd = Command::Subscribe {
                client_id: self.client_id.clone(),
                epoch: self.epoch,
                subscriptions: durable.clone(),
            };
            self.submit_owned(cmd).await?;
        }
        out.push(
            Packet::SubAck(codec::SubAck {
                pkid: s.pkid,
                reasons,
                properties: Props::default(),
            })
            .into(),
        );
        self.send_retained(retained_for, out);
        self.sync_subscriptions();
        Ok(())
    }

    /// Delivers the retained messages matching newly granted subscriptions.
    fn send_retained(
        &mut self,
        mut subs: Vec<(Subscription, SubOptions)>,
        out: &mut Vec<Outgoing>,
    ) {
        if subs.is_empty() {
            return;
        }
        // The same filter twice in one SUBSCRIBE replaces itself: walk the
        // retained store once per distinct filter (the last options win).
        subs.reverse();
        let mut seen = std::collections::HashSet::new();
        subs.retain(|(sub, _)| seen.insert(sub.clone()));
        let now = now_ms();
        let mut found: Vec<(Arc<Message>, SubOptions)> = Vec::new();
        {
            let state = self.broker.state.lock();
            for (sub, opts) in &subs {
                state
                    .retained()
                    .for_each_match(&sub.filter, |m| found.push((m.clone(), opts.clone())));
            }
        }
        {
            let sys = self.broker.sys_retained.lock();
            for (sub, opts) in &subs {
                if sub.filter.as_str().starts_with('$') {
                    for m in sys.values().filter(|m| sub.filter.matches(&m.topic)) {
                        found.push((m.clone(), opts.clone()));
                    }
                }
            }
        }
        for (msg, opts) in found {
            if !self.may_receive(&msg.topic) {
                continue;
            }
            let d = Delivery {
                qos: opts.qos.min(msg.qos),
                // Retained messages sent at subscribe keep the flag [MQTT-3.3.1-9].
                retain: true,
                subscription_ids: opts.subscription_id.into_iter().collect(),
                msg,
                // Stored earlier by design: not a latency sample.
                received_at: None,
            };
            out.extend(self.out.push(d, now));
        }
    }

    async fn on_unsubscribe(
        &mut self,
        u: codec::Unsubscribe,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), Exit> {
        let mut reasons = Vec::with_capacity(u.filters.len());
        let mut durable = Vec::new();
        for f in u.filters {
            match Subscription::parse(&f, &self.topic_limits) {
                Err(_) => reasons.push(reason::TOPIC_FILTER_INVALID),
                Ok(sub) => {
                    let existed = self.subscriptions.remove(&sub).is_some();
                    self.broker
                        .router
                        .unsubscribe(&sub, &self.client_id, self.conn_id);
                    if existed && self.persistent {
                        durable.push(sub);
                    }
                    reasons.push(if existed {
                        reason::SUCCESS
                    } else {
                        reason::NO_SUBSCRIPTION_EXISTED
                    });
                }
            }
        }
        if !durable.is_empty() {
            let cmd = Command::Unsubscribe {
                client_id: self.client_id.clone(),
                epoch: self.epoch,
                filters: durable,
            };
            self.submit_owned(cmd).await?;
        }
        out.push(
            Packet::UnsubAck(codec::UnsubAck {
                pkid: u.pkid,
                reasons,
                properties: Props::default(),
            })
            .into(),
        );
        self.sync_subscriptions();
        Ok(())
    }

    /// Ends the connection: tell the client why (v5), unregister, record the
    /// session's state, and publish or schedule the will.
    async fn finish<T: Transport>(
        mut self,
        exit: Exit,
        writer: &mut Writer<T>,
        mut out_buf: Vec<Outgoing>,
    ) {
        tracing::debug!(?exit, "connection closing");
        self.broker
            .plugins
            .on_disconnect(&self.auth.plugin_client());
        let code = match exit {
            Exit::Violation(c) | Exit::Kicked(c) => Some(c),
            _ => None,
        };
        if let (Some(code), Protocol::V5) = (code, self.protocol) {
            out_buf.push(
                Packet::Disconnect(codec::Disconnect {
                    reason: code,
                    properties: Properties {
                        reason_string: Some(reason_text(code).to_owned()),
                        ..Properties::default()
                    }
                    .into(),
                })
                .into(),
            );
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.flush(writer, &mut out_buf)).await;
        let _ =
            tokio::time::timeout(Duration::from_secs(1), SinkExt::<&Packet>::close(writer)).await;
        self.submit_acks().await;

        let broker = self.broker.clone();
        for sub in self.subscriptions.keys() {
            broker
                .router
                .unsubscribe(sub, &self.client_id, self.conn_id);
        }
        broker
            .stats
            .connections_current
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        // Out of the gauge together with the slot count, not when the will
        // and the session record are settled below.
        drop(self.counted);
        // A takeover that gave up waiting for this connection owns the
        // stash and will state now; this one only cleans up what is its own.
        let replaced = self
            .control
            .abandoned
            .load(std::sync::atomic::Ordering::Acquire);
        if self.persistent && !replaced {
            // Only what must survive: an empty stash is not kept.
            if self.awaiting_rel.is_empty() {
                broker.stash.remove(&self.client_id);
            } else {
                broker
                    .stash
                    .entry(self.client_id.clone())
                    .or_default()
                    .awaiting_rel = std::mem::take(&mut self.awaiting_rel);
            }
        }
        {
            // Ends the claim (and the session, when its expiry is 0).
            let cmd = Command::Disconnect {
                client_id: self.client_id.clone(),
                epoch: self.epoch,
                expiry_secs: Some(self.expiry_secs),
                now_ms: now_ms(),
            };
            if let Err(e) = broker.submit(cmd.clone()).await {
                // Without it the session would look connected forever: keep
                // trying in the background (a restart's NodeDown covers the rest).
                tracing::warn!(error = %e, "disconnect not recorded yet; retrying");
                broker.tasks.spawn(retry_submit(broker.clone(), cmd));
            }
        }
        let publish_will = match exit {
            Exit::Disconnect { publish_will } => publish_will,
            // Shutdown and fencing are the broker's doing, not the client's
            // failure: it reconnects elsewhere, so no will.
            Exit::Kicked(c) => {
                c != reason::SERVER_SHUTTING_DOWN && c != crate::broker::USE_ANOTHER_SERVER
            }
            Exit::Violation(_) | Exit::Lost => true,
        };
        if let (true, Some(will)) = (publish_will, self.will.take()) {
            let delay = if self.persistent {
                will.delay_secs.min(self.expiry_secs)
            } else {
                0
            };
            // A delayed will of a connection already replaced is never sent:
            // a new connection to the session exists [MQTT-3.1.3-9].
            if delay == 0 || !replaced {
                schedule_will(&broker, self.auth.clone(), will, delay);
            }
        }
        // Unregister last: a reconnect either finds this connection and waits
        // for `done`, or finds its delayed will already registered to cancel.
        broker
            .clients
            .remove_if(&self.client_id, |_, h| h.conn_id == self.conn_id);
        self.control.done.cancel();
    }
}

/// Retries a command until it commits, the broker stops, or a minute passes.
async fn retry_submit(broker: Arc<Broker>, cmd: Command) {
    for _ in 0..120 {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if broker.submit(cmd.clone()).await.is_ok() {
            return;
        }
    }
    tracing::warn!("gave up recording a disconnect");
}

/// The next live delivery; never resolves while there is no channel.
/// Deliveries waiting in the channel.
fn rx_len(rx: &Option<mpsc::Receiver<Delivery>>) -> usize {
    rx.as_ref().map_or(0, |r| r.len())
}

async fn recv(rx: &mut Option<mpsc::Receiver<Delivery>>) -> Option<Delivery> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Publishes a will, if the policy in force still allows it.
async fn fire_will(b: Arc<Broker>, auth: Arc<ClientAuth>, will: WillSpec) {
    // Checked again: the policy may have changed since CONNECT.
    let policy = b.access.policy();
    let m = &will.msg;
    if !auth.check(
        &b.access,
        &policy,
        Action::Will,
        m.topic.as_str(),
        m.qos as u8,
        m.retain,
    ) {
        return;
    }
    let mut msg = will.msg;
    msg.expires_at_ms = will
        .expiry_secs
        .map(|s| now_ms().saturating_add(u64::from(s) * 1000));
    if let Err(e) = b.publish(Arc::new(msg)).await {
        tracing::warn!(error = ?e, "will not published");
    }
}

/// Publishes a will now, or after its delay unless the client comes back.
fn schedule_will(broker: &Arc<Broker>, auth: Arc<ClientAuth>, will: WillSpec, delay_secs: u32) {
    let client_id = auth.client_id.clone();
    let b = broker.clone();
    if delay_secs == 0 {
        broker.tasks.spawn(fire_will(b, auth, will));
        return;
    }
    let pending = PendingWill {
        cancel: tokio_util::sync::CancellationToken::new(),
        fire_now: Arc::new(tokio::sync::Notify::new()),
    };
    let cancel = pending.cancel.clone();
    let fire_now = pending.fire_now.clone();
    broker.wills.insert(client_id.clone(), pending);
    broker.tasks.spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = b.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(u64::from(delay_secs))) => {}
            _ = fire_now.notified() => {}
        }
        b.wills
            .remove_if(&client_id, |_, w| Arc::ptr_eq(&w.fire_now, &fire_now));
        fire_will(b, auth, will).await;
    });
}

/// The `receive` decision for `topic`, remembered in `memo` until the
/// policy changes. A denial is counted every time and reported once per
/// topic and policy (the event log would otherwise repeat it per message).
fn receive_allowed(
    broker: &Broker,
    auth: &ClientAuth,
    memo: &mut TopicMemo<bool>,
    topic: &TopicName,
) -> bool {
    let allowed = match memo.get(topic) {
        Some(a) => a,
        None => {
            let access = &broker.access;
            let policy = access.policy();
            let a = auth.check(access, &policy, Action::Receive, topic.as_str(), 0, false);
            memo.insert(topic, a);
            a
        }
    };
    if !allowed {
        broker
            .access
            .stats
            .receive_denied
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    allowed
}

/// The bit of a publish memo entry for one QoS and retain flag.
fn publish_bit(qos: QoS, retain: bool) -> u8 {
    1 << ((qos as u8) * 2 + u8::from(retain))
}

fn ack_packet(qos: QoS, pkid: u16, code: u8) -> Packet {
    let r = PubResp {
        pkid,
        reason: code,
        properties: Props::default(),
    };
    if qos == QoS::ExactlyOnce {
        Packet::PubRec(r)
    } else {
        Packet::PubAck(r)
    }
}
