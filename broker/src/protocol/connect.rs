//! CONNECT: validation, takeover, session claim and CONNACK.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::SinkExt;
use starling_auth::Action;
use starling_codec::{self as codec, ConnAck, Packet, Properties, Protocol};
use tokio::sync::mpsc;

use super::connection::{Connection, WillSpec, Writer};
use super::outbound::Outbound;
use super::{Peer, Transport, qos_from_wire, reason};
use crate::access::ClientAuth;
use crate::authn::AuthStep;
use crate::broker::{BANNED, Broker, ClientHandle, Control, SESSION_TAKEN_OVER};
use crate::message::{ClientId, Message, MessageProps, now_ms};
use crate::metrics::ConnectRefusal;
use crate::registry::ClientInfo;
use crate::router::{Delivery, DeliverySender, LiveSub};
use crate::state::{Command, Response};
use crate::topic::{TopicLimits, TopicName};

/// Longest client identifier accepted (bytes).
const MAX_CLIENT_ID_LEN: usize = 256;

/// How long a takeover waits for the previous connection to finish.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// A reserved place under `limits.max_connections`, released on drop
/// unless the connection is established.
struct ConnectionSlot<'a> {
    broker: &'a Broker,
    kept: bool,
}

impl<'a> ConnectionSlot<'a> {
    fn reserve(broker: &'a Broker) -> Option<ConnectionSlot<'a>> {
        let max = broker.config.limits.max_connections;
        let current = &broker.stats.connections_current;
        if current.fetch_add(1, Ordering::AcqRel) >= max {
            current.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot {
            broker,
            kept: false,
        })
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.broker
                .stats
                .connections_current
                .fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Refuses a CONNECT: CONNACK with the reason (the codec maps it to a
/// 3.1.1 return code), then the caller closes. Every refusal goes through
/// here, so `starling_connect_failures_total` misses none.
async fn refuse<T: Transport>(
    broker: &Broker,
    writer: &mut Writer<T>,
    label: ConnectRefusal,
    code: u8,
    why: &str,
) {
    broker.metrics.connect_refused(label);
    tracing::debug!(reason = code, why, "CONNECT refused");
    let _ = writer
        .send(Packet::ConnAck(ConnAck {
            session_present: false,
            reason: code,
            properties: Properties {
                // The encoder drops it for 3.1.1 and when it would not fit.
                reason_string: Some(why.to_owned()),
                ..Properties::default()
            }
            .into(),
        }))
        .await;
}

/// Accepts a CONNECT: returns the connection ready to run, or `None` after
/// refusing it.
pub(super) async fn accept<T: Transport>(
    c: codec::Connect,
    broker: &Arc<Broker>,
    peer: &Peer,
    writer: &mut Writer<T>,
) -> Option<(Option<mpsc::Receiver<Delivery>>, Connection)> {
    let cfg = &broker.config;
    let protocol = c.protocol;
    let v5 = protocol == Protocol::V5;
    writer.encoder_mut().set_protocol(protocol);
    writer
        .encoder_mut()
        .set_max_outgoing(c.properties.maximum_packet_size);

    let mut auth_reply = None;
    if let Some(method) = &c.properties.authentication_method {
        let data = c.properties.authentication_data.as_deref();
        match broker.authenticator.start(method, data) {
            AuthStep::Success { data } => auth_reply = Some((method.clone(), data)),
            AuthStep::Fail { reason } => {
                refuse(
                    broker,
                    writer,
                    ConnectRefusal::AuthMethod,
                    reason,
                    "enhanced authentication failed",
                )
                .await;
                return None;
            }
        }
    }
    if !broker.has_quorum_contact() {
        refuse(
            broker,
            writer,
            ConnectRefusal::Unavailable,
            reason::SERVER_UNAVAILABLE,
            "this node lost contact with the cluster",
        )
        .await;
        return None;
    }
    if broker.draining.load(Ordering::Relaxed) {
        refuse(
            broker,
            writer,
            ConnectRefusal::Unavailable,
            reason::SERVER_UNAVAILABLE,
            "this node is shutting down: use another server",
        )
        .await;
        return None;
    }
    // Reserve the connection slot atomically; the guard gives it back on
    // every refusal path below.
    let slot = ConnectionSlot::reserve(broker);
    if slot.is_none() {
        refuse(
            broker,
            writer,
            ConnectRefusal::Quota,
            reason::QUOTA_EXCEEDED,
            "connection limit",
        )
        .await;
        return None;
    }

    // Client identifier.
    let mut assigned = None;
    let client_id = if c.client_id.is_empty() {
        if !v5 && !c.clean_start {
            // [MQTT-3.1.3-8]
            refuse(
                broker,
                writer,
                ConnectRefusal::ClientId,
                reason::CLIENT_ID_NOT_VALID,
                "empty client id with clean session 0",
            )
            .await;
            return None;
        }
        let id = format!("starling-{:016x}", rand::random::<u64>());
        if v5 {
            assigned = Some(id.clone());
        }
        id
    } else if c.client_id.len() > MAX_CLIENT_ID_LEN {
        refuse(
            broker,
            writer,
            ConnectRefusal::ClientId,
            reason::CLIENT_ID_NOT_VALID,
            "client id too long",
        )
        .await;
        return None;
    } else {
        c.client_id.clone()
    };
    let client_id = ClientId::new(&client_id);

    // Keep alive, capped (CVE-2020-13849 class).
    let max_ka = cfg.session.max_keep_alive_secs;
    let mut server_keep_alive = None;
    let keep_alive = if v5 && (c.keep_alive == 0 || c.keep_alive > max_ka) {
        server_keep_alive = Some(max_ka);
        max_ka
    } else if !v5 && c.keep_alive > max_ka {
        // 3.1.1 cannot be told a lower value; mosquitto refuses the same way.
        refuse(
            broker,
            writer,
            ConnectRefusal::KeepAlive,
            reason::CLIENT_ID_NOT_VALID,
            "keep alive above the maximum",
        )
        .await;
        return None;
    } else {
        c.keep_alive
    };

    let topic_limits = TopicLimits {
        max_len: cfg.limits.max_topic_length,
        max_levels: cfg.limits.max_topic_levels,
    };

    let credentials = (c.username.clone(), c.password.clone());
    // Will: validated now, published later.
    let will = match c.will {
        None => None,
        Some(w) => {
            let Ok(topic) = TopicName::parse(w.topic, &topic_limits) else {
                refuse(
                    broker,
                    writer,
                    ConnectRefusal::Will,
                    reason::TOPIC_NAME_INVALID,
                    "invalid will topic",
                )
                .await;
                return None;
            };
            let utf8 = w.properties.payload_format_indicator == Some(1);
            if utf8 && std::str::from_utf8(&w.payload).is_err() {
                refuse(
                    broker,
                    writer,
                    ConnectRefusal::Will,
                    reason::PAYLOAD_FORMAT_INVALID,
                    "will payload is not UTF-8",
                )
                .await;
                return None;
            }
            let mut wp = w.properties;
            let p = wp.take();
            Some(WillSpec {
                msg: Message {
                    topic,
                    payload: w.payload,
                    qos: qos_from_wire(w.qos),
                    retain: w.retain,
                    props: Arc::new(MessageProps {
                        payload_format_utf8: utf8,
                        content_type: p.content_type,
                        response_topic: p.response_topic,
                        correlation_data: p.correlation_data,
                        user_properties: p.user_properties,
                    }),
                    expires_at_ms: None,
                    publisher: Some(client_id.clone()),
                    // Sent when the connection ends: its age is no delivery latency.
                    received_at: None,
                },
                expiry_secs: p.message_expiry_interval,
                delay_secs: p.will_delay_interval.unwrap_or(0),
            })
        }
    };

    // Watch before deciding: a policy change from here on is re-checked.
    let policy_seen = broker.access.watch();
    let auth =
        Arc::new(authorize(broker, peer, credentials, &client_id, will.as_ref(), writer).await?);

    // Session expiry.
    let max_expiry = cfg.max_session_expiry_secs();
    let requested = if v5 {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        max_expiry
    };
    let expiry_secs = requested.min(max_expiry);

    // Takeover: one live connection per client id [MQTT-3.1.4-3].
    let control = Arc::new(Control::default());
    let conn_id = broker.next_conn_id();
    let info = Arc::new(ClientInfo::new(
        auth.clone(),
        if v5 { "5.0" } else { "3.1.1" },
        crate::message::now_ms(),
        expiry_secs > 0 || !c.clean_start,
    ));
    let handle = ClientHandle {
        conn_id,
        control: control.clone(),
        info: info.clone(),
    };
    if let Some(old) = broker.clients.insert(client_id.clone(), handle) {
        tracing::debug!(client_id = %client_id, "session taken over");
        old.control.kick(SESSION_TAKEN_OVER);
        if tokio::time::timeout(TAKEOVER_WAIT, old.control.done.cancelled())
            .await
            .is_err()
        {
            // Stuck (e.g. a write to a dead peer): go on without it; it
            // will not touch the session's node-local state when it ends.
            old.control.abandoned.store(true, Ordering::Release);
        }
    }
    // A reconnect before the will delay passed cancels the will [MQTT-3.1.3-9].
    if let Some((_, w)) = broker.wills.remove(&client_id) {
        w.cancel.cancel();
    }

    // Every connection claims its client id through the replicated state:
    // that is what makes "one live connection per client id" hold across
    // nodes (G3), and it allocates the epoch that fences the previous owner.
    let (persistent, epoch, session_present, taken_from) = {
        let cmd = Command::Connect {
            client_id: client_id.clone(),
            node: broker.node_id,
            clean_start: c.clean_start,
            expiry_secs,
            identity: Some(auth.session_identity()),
            now_ms: crate::message::now_ms(),
        };
        match broker.submit(cmd).await {
            // A session whose state outlives the connection, or a resumed
            // one, takes its QoS≥1 deliveries from the replicated queue.
            Ok(Response::Connected {
                epoch,
                session_present,
                taken_from,
            }) => (
                expiry_secs > 0 || session_present,
                epoch,
                session_present,
                taken_from,
            ),
            Ok(Response::SessionQuotaExceeded) => {
                broker
                    .clients
                    .remove_if(&client_id, |_, h| h.conn_id == conn_id);
                control.done.cancel();
                refuse(
                    broker,
                    writer,
                    ConnectRefusal::Quota,
                    reason::QUOTA_EXCEEDED,
                    "session limit reached",
                )
                .await;
                return None;
            }
            other => {
                tracing::warn!(?other, "session claim failed");
                control.done.cancel();
                broker
                    .clients
                    .remove_if(&client_id, |_, h| h.conn_id == conn_id);
                refuse(
                    broker,
                    writer,
                    ConnectRefusal::Unavailable,
                    reason::SERVER_UNAVAILABLE,
                    "session store unavailable",
                )
                .await;
                return None;
            }
        }
    };
    control.epoch.store(epoch, Ordering::Relaxed);
    // A claim from another node may have been applied between our claim and
    // the store above (its fence effect then saw no epoch to match): check
    // once more under the state lock, which apply holds.
    let superseded = broker
        .state
        .lock()
        .session(&client_id)
        .is_none_or(|r| r.owner.epoch != epoch);
    if superseded {
        control.kick(SESSION_TAKEN_OVER);
    }
    if let Some(node) = taken_from
        && node != broker.node_id
    {
        // The previous connection lives on another node. If that node is cut
        // off it has not seen this claim, and it only fences its clients once
        // its quorum contact is older than `fence_after`: answering after
        // that moment means two connections never serve one session (G3).
        tokio::time::sleep(broker.takeover_wait()).await;
    }

    let limits = &cfg.limits;
    // The live-delivery channel is created with the first subscription: a
    // publish-only device (most of a fleet) never pays for its buffer.
    let capacity = limits.max_queued_messages.max(16);
    let mut channel: Option<(DeliverySender, mpsc::Receiver<Delivery>)> = None;
    let client_receive_max = c.properties.receive_maximum.unwrap_or(u16::MAX);
    let window = client_receive_max.min(limits.max_inflight);
    let client_alias_max = if v5 {
        c.properties.topic_alias_maximum.unwrap_or(0)
    } else {
        0
    };
    let mut out = Outbound::new(
        protocol,
        window,
        limits.max_queued_messages,
        client_alias_max,
    );

    let mut subscriptions = HashMap::new();
    let mut awaiting_rel = HashSet::new();
    let mut revoked = Vec::new();
    let policy = broker.access.policy();
    if session_present {
        // The guard must not live across an await.
        {
            let state = broker.state.lock();
            if let Some(rec) = state.session(&client_id) {
                out.set_resend_through(rec.next_seq.saturating_sub(1));
                for (sub, opts) in &rec.subscriptions {
                    // Stored subscriptions were re-checked when the policy
                    // changed, but under the identity of the previous
                    // connection: this one may be someone else's (a lost
                    // binding) or come from another network.
                    let filter = sub.to_filter_string();
                    let d = auth.decide(&policy, Action::Subscribe, &filter, opts.qos as u8, false);
                    if !d.allowed {
                        revoked.push((sub.clone(), d.rule.to_string()));
                        continue;
                    }
                    broker.router.subscribe(
                        sub,
                        LiveSub {
                            client: client_id.clone(),
                            conn: conn_id,
                            opts: opts.clone(),
                            persistent: sub.share_group.is_none(),
                            tx: channel
                                .get_or_insert_with(|| mpsc::channel(capacity))
                                .0
                                .clone(),
                        },
                    );
                    subscriptions.insert(sub.clone(), opts.clone());
                }
            }
        }
        revoke_on_resume(broker, &auth, &client_id, epoch, revoked).await;
        if let Some(s) = broker.stash.get(&client_id) {
            awaiting_rel = s.awaiting_rel.clone();
        }
    } else {
        broker.stash.remove(&client_id);
    }

    let mut props = Properties::default();
    if v5 {
        props.assigned_client_identifier = assigned;
        if let Some((method, data)) = auth_reply {
            props.authentication_method = Some(method);
            props.authentication_data = data;
        }
        props.server_keep_alive = server_keep_alive;
        props.receive_maximum = Some(limits.receive_maximum);
        props.maximum_packet_size = Some(limits.max_packet_size);
        props.topic_alias_maximum = Some(limits.topic_alias_maximum);
        if expiry_secs != requested {
            props.session_expiry_interval = Some(expiry_secs);
        }
    }
    let connack = Packet::ConnAck(ConnAck {
        session_present,
        reason: reason::SUCCESS,
        properties: props.into(),
    });
    if writer.send(connack).await.is_err() {
        broker
            .clients
            .remove_if(&client_id, |_, h| h.conn_id == conn_id);
        let _ = broker
            .submit(Command::Disconnect {
                client_id: client_id.clone(),
                epoch,
                expiry_secs: None,
                now_ms: crate::message::now_ms(),
            })
            .await;
        control.done.cancel();
        return None;
    }
    // The connection now owns the slot; `finish` gives it back.
    if let Some(slot) = slot {
        slot.keep();
    }
    broker
        .stats
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let protocol_label = match protocol {
        Protocol::V311 => "3.1.1",
        Protocol::V5 => "5.0",
    };
    let counted = broker.metrics.connected(&peer.listener, protocol_label);

    let conn = Connection {
        broker: broker.clone(),
        protocol,
        client_id,
        conn_id,
        control,
        keep_alive: Duration::from_secs(u64::from(keep_alive)),
        persistent,
        epoch,
        expiry_secs,
        will,
        alias_in: HashMap::new(),
        alias_in_max: if v5 { limits.topic_alias_maximum } else { 0 },
        awaiting_rel,
        receive_maximum: limits.receive_maximum,
        subscriptions,
        out,
        tx: channel.as_ref().map(|c| c.0.clone()),
        new_rx: None,
        topic_limits,
        pending_acks: Vec::new(),
        policy_seen,
        receive_memo: Default::default(),
        publish_memo: Default::default(),
        memo_seq: broker.access.seq(),
        telemetry: broker.telemetry.client(&auth.principal.class),
        auth,
        info,
        read_at: std::time::Instant::now(),
        counted,
    };
    conn.sync_subscriptions();
    Some((channel.map(|c| c.1), conn))
}

/// Reports and removes stored subscriptions this connection may not have.
async fn revoke_on_resume(
    broker: &Broker,
    auth: &ClientAuth,
    client_id: &ClientId,
    epoch: u64,
    revoked: Vec<(crate::topic::Subscription, String)>,
) {
    if revoked.is_empty() {
        return;
    }
    for (sub, rule) in &revoked {
        auth.denied(
            &broker.access,
            Action::Subscribe,
            &sub.to_filter_string(),
            rule,
        );
    }
    let cmd = Command::Unsubscribe {
        client_id: client_id.clone(),
        epoch,
        filters: revoked.into_iter().map(|(s, _)| s).collect(),
    };
    if let Err(e) = broker.submit(cmd).await {
        tracing::warn!(error = %e, "revoked subscriptions not removed from the session");
    }
}

/// Feeds a failed login to telemetry: a burst is an event and, when
/// configured, a ban of the source address (or the client id).
async fn on_auth_failure(broker: &Broker, source: std::net::IpAddr, client_id: &ClientId) {
    let t = &broker.telemetry;
    for burst in t.on_auth_failure(source, client_id.as_str(), std::time::Instant::now()) {
        let ban = t.cfg.auth_failure_ban;
        broker
            .access
            .events
            .auth_failure_burst(burst.by, &burst.key, burst.count, ban);
        if !ban {
            continue;
        }
        let key = if burst.by == "source" {
            crate::state::BanKey::Network(ipnet::IpNet::from(source.to_canonical()))
        } else {
            crate::state::BanKey::ClientId(burst.key.clone())
        };
        let until = now_ms().saturating_add(t.cfg.ban_duration.as_millis() as u64);
        t.count_response("ban");
        if let Err(e) = broker.ban(key, until, "auth_failure_burst").await {
            tracing::warn!(error = %e, "could not record a ban");
        }
    }
}

/// Authenticates the client and asks the policy whether it may connect
/// (and set its will). `None` after refusing the CONNECT.
async fn authorize<T: Transport>(
    broker: &Broker,
    peer: &Peer,
    (username, password): (Option<String>, Option<bytes::Bytes>),
    client_id: &ClientId,
    will: Option<&WillSpec>,
    writer: &mut Writer<T>,
) -> Option<ClientAuth> {
    let access = &broker.access;
    let source = peer.addr.ip();
    // Bans first: a banned client costs no password check.
    let ban = broker
        .state
        .lock()
        .banned(client_id.as_str(), username.as_deref(), source, now_ms())
        .map(|(k, b)| format!("{}={} ({})", k.parts().0, k.parts().1, b.reason));
    if let Some(ban) = ban {
        access
            .events
            .banned_connect(source, &peer.listener, client_id.as_str(), &ban);
        refuse(broker, writer, ConnectRefusal::Banned, BANNED, "banned").await;
        return None;
    }
    let cert = peer.cert.as_ref().map(|c| c.info.clone());
    let principal = match access.authenticate(username.clone(), password, cert).await {
        Ok(p) => p,
        Err(f) => {
            access.auth_failed(
                &f,
                source,
                &peer.listener,
                client_id.as_str(),
                username.as_deref(),
            );
            on_auth_failure(broker, source, client_id).await;
            refuse(
                broker,
                writer,
                ConnectRefusal::BadCredentials,
                f.reason_code_v5(),
                "not authorized",
            )
            .await;
            return None;
        }
    };
    let auth = ClientAuth {
        principal,
        client_id: client_id.clone(),
        source,
        listener: peer.listener.clone(),
        tls: peer.tls,
    };
    let policy = access.policy();
    let telemetry = &broker.telemetry;
    if let Some(strict) =
        telemetry.unexpected_source(&auth.principal.class, source, |z, ip| policy.in_zone(z, ip))
    {
        access.events.unexpected_source(&auth.who(), strict);
        if strict {
            refuse(
                broker,
                writer,
                ConnectRefusal::UnexpectedSource,
                reason::NOT_AUTHORIZED,
                "not authorized from this network",
            )
            .await;
            return None;
        }
    }
    if let Some(not_after) = peer.cert.as_ref().and_then(|c| c.not_after_unix) {
        let now = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
        telemetry.on_client_cert(&auth.principal.class, not_after, now);
    }
    if !auth.check(access, &policy, Action::Connect, "", 0, false) {
        refuse(
            broker,
            writer,
            ConnectRefusal::NotAuthorized,
            reason::NOT_AUTHORIZED,
            "not authorized",
        )
        .await;
        return None;
    }
    if let Some(w) = will {
        let m = &w.msg;
        if !auth.check(
            access,
            &policy,
            Action::Will,
            m.topic.as_str(),
            m.qos as u8,
            m.retain,
        ) {
            refuse(
                broker,
                writer,
                ConnectRefusal::NotAuthorized,
                reason::NOT_AUTHORIZED,
                "will not authorized",
            )
            .await;
            return None;
        }
    }
    if let Err(r) = broker.plugins.on_connect(&auth.plugin_client()) {
        tracing::debug!(plugin = %r.plugin, "connection refused by a plugin");
        refuse(
            broker,
            writer,
            ConnectRefusal::Plugin,
            super::plugin_reason(r.reason, super::Answer::Connect),
            "refused by a plugin",
        )
        .await;
        return None;
    }
    Some(auth)
}
