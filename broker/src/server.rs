//! Listeners, the accept loop and graceful shutdown.
//!
//! `run` binds every listener first (so a port conflict fails start-up
//! before anything is served), then serves until the shutdown token fires:
//! listeners stop accepting, connections receive v5 DISCONNECT 0x8B, and the
//! process waits for them under the configured grace period.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::Config;
use crate::error::StartError;
use crate::message::now_ms;
use crate::protocol::{Peer, serve};
use crate::state::Command;
use crate::transport;

/// A bound, not yet serving broker.
pub struct Server {
    broker: Arc<Broker>,
    listeners: Vec<(Arc<transport::Listener>, TcpListener)>,
    admin: TcpListener,
    admin_token: Option<Arc<str>>,
    /// The validated policy file, submitted before clients are accepted.
    policy: Option<(Arc<str>, starling_auth::Policy)>,
}

impl Server {
    /// Validates the config and binds every listener.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        config.validate()?;
        let mut listeners = Vec::new();
        for l in &config.listeners {
            // Loads (and so checks) the TLS files before any port is bound.
            let state = transport::Listener::new(l, config.limits.max_packet_size)?;
            listeners.push((Arc::new(state), l));
        }
        let mut bound = Vec::new();
        for (state, l) in listeners {
            let sock = TcpListener::bind(l.bind)
                .await
                .map_err(|source| StartError::Bind {
                    name: l.name.clone(),
                    addr: l.bind,
                    source,
                })?;
            bound.push((state, sock));
        }
        let listeners = bound;
        let admin_token = match &config.admin.token_file {
            None => None,
            Some(path) => {
                let token = std::fs::read_to_string(path).map_err(|e| {
                    StartError::Config(crate::ConfigError::Invalid {
                        key: "admin.token_file",
                        reason: format!("cannot read {}: {e}", path.display()),
                    })
                })?;
                let token = token.trim();
                if token.len() < 16 {
                    return Err(StartError::Config(crate::ConfigError::Invalid {
                        key: "admin.token_file",
                        reason: "the token must be at least 16 characters".into(),
                    }));
                }
                Some(Arc::from(token))
            }
        };
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .map_err(|source| StartError::Bind {
                name: "admin".into(),
                addr: config.admin.listen,
                source,
            })?;
        // The policy file is validated before anything starts: a bad file
        // is a configuration error (the cluster's last good policy stays in
        // force on the other nodes).
        let policy = match &config.auth.policy_file {
            None => None,
            Some(path) => Some(crate::policy_source::read(path).map_err(|reason| {
                StartError::Config(crate::ConfigError::Invalid {
                    key: "auth.policy_file",
                    reason,
                })
            })?),
        };
        let broker = Broker::start(config).await?;
        broker
            .metrics
            .watch_listeners(listeners.iter().map(|(l, _)| l.clone()));
        Ok(Server {
            broker,
            listeners,
            admin,
            admin_token,
            policy,
        })
    }

    /// The bound addresses, in config order (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    /// Serves until `stop` is cancelled, then drains.
    pub async fn run(self, stop: CancellationToken) {
        let broker = self.broker;
        if let Ok(addr) = self.admin.local_addr() {
            tracing::info!(%addr, "listening for admin HTTP");
        }
        broker.tasks.spawn(crate::admin::serve(
            self.admin,
            broker.clone(),
            self.admin_token,
        ));
        // Connections this node held before a restart are gone: release
        // their sessions before accepting new ones (a session claimed by a
        // new connection must never be released by this command).
        loop {
            let released = Command::NodeDown {
                node: broker.node_id,
                now_ms: now_ms(),
            };
            let attempt = tokio::select! {
                r = broker.submit(released) => r,
                _ = stop.cancelled() => return,
            };
            match attempt {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for the cluster before accepting clients");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
        // This node's policy file is the operator's latest word when the
        // node starts: make it the cluster's before serving anyone.
        if let Some((text, policy)) = self.policy {
            let applied = tokio::select! {
                r = crate::policy_source::submit(&broker, text, &policy) => r,
                _ = stop.cancelled() => return,
            };
            if let Some(o) = applied {
                tracing::info!(result = o.result, seq = o.seq, hash = %o.hash, "policy in force");
            }
            if let (Some(path), Some(rx)) = (
                broker.config.auth.policy_file.clone(),
                broker.policy_requests.lock().take(),
            ) {
                broker
                    .tasks
                    .spawn(crate::policy_source::run(broker.clone(), path, rx));
            }
        } else if broker.access.seq() == 0 {
            tracing::warn!(
                "no policy file (auth.policy_file / --policy) and none in the cluster: \
                 every client is refused (default deny)"
            );
        }
        broker
            .accepting
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let listeners_stop = CancellationToken::new();
        for (state, listener) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(listener = %state.name(), %addr, "listening for MQTT");
            }
            broker.tasks.spawn(accept_loop(
                broker.clone(),
                state,
                listener,
                listeners_stop.clone(),
            ));
        }
        if broker.config.security.publish_sys
            && let Some(rx) = crate::security::sys_events()
        {
            broker
                .tasks
                .spawn(publish_security_events(broker.clone(), rx));
        }
        broker.tasks.spawn(broker.clone().run_expiry());
        broker.tasks.spawn(crate::sys::run(broker.clone()));
        broker.tasks.spawn(broker.clone().run_peers());
        broker.tasks.spawn(broker.clone().run_fence());
        broker.tasks.spawn(broker.clone().run_barriers());

        stop.cancelled().await;
        let grace = broker.config.node.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace;
        // Not ready at once (the load balancer stops sending), then no new
        // connections, then the clients leave gradually, so they do not all
        // reconnect to the other nodes in the same instant.
        broker
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        listeners_stop.cancel();
        let window = broker.config.node.drain_window;
        tracing::info!(
            clients = broker.clients.len(),
            ?window,
            "draining: not ready, listeners closed, disconnecting clients"
        );
        drain_clients(&broker, window).await;
        tracing::info!("shutting down");
        broker.shutdown.cancel();
        broker.tasks.close();
        if tokio::time::timeout_at(deadline, broker.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "connections still open after the grace period; exiting"
            );
        }
    }
}

/// Publishes copies of security events on `$SYS/starling/security/{kind}`
/// (live only: never retained or replicated; `receive` decides who sees them).
async fn publish_security_events(
    broker: Arc<Broker>,
    mut rx: tokio::sync::mpsc::Receiver<(String, String)>,
) {
    let limits = crate::topic::TopicLimits {
        max_len: broker.config.limits.max_topic_length,
        max_levels: broker.config.limits.max_topic_levels,
    };
    loop {
        let (kind, json) = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let topic = format!("$SYS/starling/security/{kind}");
        let Ok(topic) = crate::topic::TopicName::parse(topic.into(), &limits) else {
            continue;
        };
        broker.publish_sys_live(Arc::new(crate::message::Message {
            topic,
            payload: json.into(),
            qos: crate::message::QoS::AtMostOnce,
            retain: false,
            props: Arc::new(crate::message::MessageProps {
                payload_format_utf8: true,
                content_type: Some("application/json".into()),
                ..Default::default()
            }),
            expires_at_ms: None,
            publisher: None,
            received_at: None,
        }));
    }
}

/// Disconnects every client (v5: 0x8B) spread evenly over `window`: at
/// most one tenth of a second's share at a time.
async fn drain_clients(broker: &Broker, window: std::time::Duration) {
    const TICK: std::time::Duration = std::time::Duration::from_millis(100);
    let handles: Vec<_> = broker.clients.iter().map(|c| c.control.clone()).collect();
    if handles.is_empty() {
        return;
    }
    let ticks = (window.as_millis() / TICK.as_millis()).max(1) as usize;
    let per_tick = handles.len().div_ceil(ticks);
    let mut tick = tokio::time::interval(TICK);
    for batch in handles.chunks(per_tick) {
        tick.tick().await;
        for control in batch {
            control.kick(crate::protocol::SERVER_SHUTTING_DOWN);
        }
    }
}

async fn accept_loop(
    broker: Arc<Broker>,
    transport: Arc<transport::Listener>,
    listener: TcpListener,
    stop: CancellationToken,
) {
    transport.start_reload(&broker.tasks, broker.shutdown.clone());
    loop {
        let accepted = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                // Small packets must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                let transport = transport.clone();
                // PROXY, TLS and WebSocket handshakes run (time-bounded) in
                // the connection's own task, never in this loop.
                broker.tasks.clone().spawn(async move {
                    let established = tokio::select! {
                        // Boxed: handshakes (PROXY, TLS, WebSocket) hold large
                        // state only while they run, not for the connection's life.
                        e = Box::pin(transport.establish(stream, addr)) => e,
                        _ = broker.shutdown.cancelled() => return,
                    };
                    let Some(conn) = established else { return };
                    // The real source (after PROXY), before any MQTT.
                    if let Some(spike) = broker
                        .telemetry
                        .on_accept(conn.addr.ip(), std::time::Instant::now())
                    {
                        broker.access.events.source_network_spike(
                            &spike.network.to_string(),
                            spike.observed,
                            spike.baseline,
                        );
                    }
                    let peer = Peer {
                        addr: conn.addr,
                        listener: transport.name().clone(),
                        tls: transport.is_tls(),
                        cert: conn.cert,
                    };
                    serve(conn.stream, peer, broker).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
