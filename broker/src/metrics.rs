//! Prometheus metrics of one broker, served as text at `GET /metrics` on
//! the admin listener (`docs/observability.md` is the reference).
//!
//! ```text
//!  hot path ──► Stats atomics, access/route/peer counters (as before)
//!           └─► pre-resolved handles: connection gauges, connect refusals,
//!               delivery latency histogram
//!  scrape   ──► Registry::gather ─► handles + BrokerCollector (reads the
//!               atomics, state, router, policy and cluster status now)
//! ```
//!
//! Each broker owns its [`Registry`] (never the process-global default one),
//! so two brokers in one process never mix their numbers. Labels stay low
//! cardinality: listener, protocol, QoS, reasons, policy rule ids; never a
//! client id, address or topic.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::broker::Broker;
use crate::transport;

/// Buckets of the per-client in-flight and queue-depth histograms.
const DEPTH_BUCKETS: [f64; 11] = [
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
];

/// Buckets of the delivery latency histogram (seconds): sub-millisecond on
/// an idle node up to the seconds a backed-up subscriber can take.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Why a CONNECT was refused: the `reason` label of
/// `starling_connect_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectRefusal {
    /// Enhanced authentication (v5 AUTH method) failed.
    AuthMethod,
    /// This node cannot serve now (no quorum contact, session store down).
    Unavailable,
    /// Connection or session limit reached.
    Quota,
    /// The client identifier is not acceptable.
    ClientId,
    /// Keep alive above the maximum (3.1.1 cannot be told a lower one).
    KeepAlive,
    /// The will is malformed (topic, payload format).
    Will,
    /// Authentication failed (detail in `starling_auth_failures_total`).
    BadCredentials,
    /// The policy denies the connection or its will.
    NotAuthorized,
    /// A protocol level this broker does not speak.
    ProtocolVersion,
    /// A ban matches the client id, username or source.
    Banned,
    /// The class connected from outside its zones (strict classes).
    UnexpectedSource,
    /// A plugin refused the connection.
    Plugin,
}

impl ConnectRefusal {
    /// Every reason, in label order.
    pub const ALL: [ConnectRefusal; 12] = [
        ConnectRefusal::AuthMethod,
        ConnectRefusal::Unavailable,
        ConnectRefusal::Quota,
        ConnectRefusal::ClientId,
        ConnectRefusal::KeepAlive,
        ConnectRefusal::Will,
        ConnectRefusal::BadCredentials,
        ConnectRefusal::NotAuthorized,
        ConnectRefusal::ProtocolVersion,
        ConnectRefusal::Banned,
        ConnectRefusal::UnexpectedSource,
        ConnectRefusal::Plugin,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectRefusal::AuthMethod => "auth_method",
            ConnectRefusal::Unavailable => "unavailable",
            ConnectRefusal::Quota => "quota",
            ConnectRefusal::ClientId => "client_id",
            ConnectRefusal::KeepAlive => "keep_alive",
            ConnectRefusal::Will => "will",
            ConnectRefusal::BadCredentials => "bad_credentials",
            ConnectRefusal::NotAuthorized => "not_authorized",
            ConnectRefusal::ProtocolVersion => "protocol_version",
            ConnectRefusal::Banned => "banned",
            ConnectRefusal::UnexpectedSource => "unexpected_source",
            ConnectRefusal::Plugin => "plugin",
        }
    }
}

/// The broker's metrics: the registry and the handles the hot path uses.
pub(crate) struct Metrics {
    registry: Registry,
    /// The broker the scrape-time collector reads; set once it exists.
    broker: Arc<OnceLock<Weak<Broker>>>,
    /// Listeners whose TLS server certificate expiry is exported.
    listeners: Arc<Mutex<Vec<Arc<transport::Listener>>>>,
    connect_attempts: IntCounter,
    /// One handle per [`ConnectRefusal`], resolved once.
    connect_failures: [IntCounter; ConnectRefusal::ALL.len()],
    connections_current: IntGaugeVec,
    connections_total: IntCounterVec,
    /// Publish-to-write latency of live deliveries.
    pub delivery_latency: Histogram,
}

/// Holds one established connection in `starling_connections_current`:
/// dropping it (however the connection task ends) takes it out again.
pub(crate) struct Connected {
    current: IntGauge,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.current.dec();
    }
}

impl Metrics {
    /// A fresh registry with every metric of the broker registered.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let connect_attempts = IntCounter::new(
            "starling_connect_attempts_total",
            "CONNECT packets received (including refused ones).",
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "starling_connect_failures_total",
                "CONNECT packets refused, by reason.",
            ),
            &["reason"],
        )?;
        let connect_failures =
            ConnectRefusal::ALL.map(|r| failures.with_label_values(&[r.as_str()]));
        let connections_current = IntGaugeVec::new(
            Opts::new(
                "starling_connections_current",
                "Established MQTT connections, by listener and protocol version.",
            ),
            &["listener", "protocol"],
        )?;
        let connections_total = IntCounterVec::new(
            Opts::new(
                "starling_connections_total",
                "MQTT connections established (CONNACK sent), by listener and protocol version.",
            ),
            &["listener", "protocol"],
        )?;
        let delivery_latency = Histogram::with_opts(
            HistogramOpts::new(
                "starling_delivery_latency_seconds",
                "Time from reading a PUBLISH to writing it to a live subscriber on this node.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(connect_attempts.clone()))?;
        registry.register(Box::new(failures))?;
        registry.register(Box::new(connections_current.clone()))?;
        registry.register(Box::new(connections_total.clone()))?;
        registry.register(Box::new(delivery_latency.clone()))?;
        let broker = Arc::new(OnceLock::new());
        let listeners = Arc::new(Mutex::new(Vec::new()));
        registry.register(Box::new(BrokerCollector::new(
            broker.clone(),
            listeners.clone(),
        )?))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            broker,
            listeners,
            connect_attempts,
            connect_failures,
            connections_current,
            connections_total,
            delivery_latency,
        })
    }

    /// Points the scrape-time collector at `broker` (weakly: the broker
    /// owns these metrics).
    pub fn attach(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
    }

    /// Exports the TLS server certificate expiry of these listeners.
    pub fn watch_listeners(&self, listeners: impl IntoIterator<Item = Arc<transport::Listener>>) {
        self.listeners.lock().extend(listeners);
    }

    /// Counts a CONNECT packet.
    pub fn connect_attempt(&self) {
        self.connect_attempts.inc();
    }

    /// Counts a refused CONNECT.
    pub fn connect_refused(&self, why: ConnectRefusal) {
        if let Some(c) = self.connect_failures.get(why as usize) {
            c.inc();
        }
    }

    /// Counts an established connection; it stays in the current gauge
    /// until the returned guard is dropped. Once per connection, so the
    /// label lookup is off the per-message path.
    pub fn connected(&self, listener: &str, protocol: &'static str) -> Connected {
        self.connections_total
            .with_label_values(&[listener, protocol])
            .inc();
        let current = self
            .connections_current
            .with_label_values(&[listener, protocol]);
        current.inc();
        Connected { current }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// What a scrape-time family is.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Families built at scrape time from what the broker already counts:
/// name, help, type, label names. Their descriptors are registered, so a
/// name clash with a handle metric fails at start-up, not at scrape.
const SCRAPED: &[(&str, &str, Kind, &[&str])] = &[
    (
        "starling_messages_received_total",
        "PUBLISH packets received from clients, by QoS.",
        Kind::Counter,
        &["qos"],
    ),
    (
        "starling_messages_sent_total",
        "PUBLISH packets written to clients, by QoS.",
        Kind::Counter,
        &["qos"],
    ),
    (
        "starling_received_bytes_total",
        "Payload bytes of PUBLISH packets received from clients.",
        Kind::Counter,
        &[],
    ),
    (
        "starling_sent_bytes_total",
        "Payload bytes of PUBLISH packets written to clients.",
        Kind::Counter,
        &[],
    ),
    (
        "starling_messages_dropped_total",
        "Messages not delivered, by reason.",
        Kind::Counter,
        &["reason"],
    ),
    (
        "starling_slow_consumer_disconnects_total",
        "Clients disconnected because a write to them stalled.",
        Kind::Counter,
        &[],
    ),
    (
        "starling_auth_failures_total",
        "CONNECTs that failed authentication, by reason.",
        Kind::Counter,
        &["reason"],
    ),
    (
        "starling_acl_denials_total",
        "Actions the policy denied, by action and deciding rule.",
        Kind::Counter,
        &["action", "rule"],
    ),
    (
        "starling_sessions",
        "Persistent sessions in the replicated state, by state.",
        Kind::Gauge,
        &["state"],
    ),
    (
        "starling_subscriptions",
        "Live subscriptions of this node's connected clients (a shared group counts once per filter).",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_retained_messages",
        "Retained messages.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_retained_bytes",
        "Payload bytes of the retained messages.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_inflight_messages",
        "Connected clients by QoS 1/2 messages awaiting their acknowledgement.",
        Kind::Histogram,
        &[],
    ),
    (
        "starling_queued_messages",
        "Connected clients by live deliveries waiting to be written to them.",
        Kind::Histogram,
        &[],
    ),
    (
        "starling_policy_version",
        "Sequence number of the policy in force (0 = none yet).",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_policy_info",
        "The policy in force (always 1).",
        Kind::Gauge,
        &["hash", "revision"],
    ),
    (
        "starling_policy_reloads_total",
        "Policy changes applied from the log, and policy files refused.",
        Kind::Counter,
        &["result"],
    ),
    (
        "starling_publish_rate_anomalies_total",
        "Publish-rate anomalies (a client far above its own baseline), by class.",
        Kind::Counter,
        &["class"],
    ),
    (
        "starling_telemetry_responses_total",
        "Response-ladder actions taken, by step (throttle, disconnect, ban).",
        Kind::Counter,
        &["step"],
    ),
    (
        "starling_unexpected_source_total",
        "Connections from outside the zones expected for the class, by class.",
        Kind::Counter,
        &["class"],
    ),
    (
        "starling_client_certs_seen_total",
        "Client certificates presented at CONNECT, by class and days until expiry.",
        Kind::Counter,
        &["class", "expires_in"],
    ),
    (
        "starling_source_network_spikes_total",
        "Connection-rate spikes from one /24 or /64.",
        Kind::Counter,
        &[],
    ),
    (
        "starling_auth_failure_bursts_total",
        "Bursts of failed logins from one source or for one client id.",
        Kind::Counter,
        &[],
    ),
    (
        "starling_plugin_rejections_total",
        "Actions refused by a plugin, by plugin name and hook.",
        Kind::Counter,
        &["plugin", "hook"],
    ),
    (
        "starling_bans_active",
        "Bans in force, cluster-wide.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_security_events_total",
        "Security events, by kind (written or rate-limited).",
        Kind::Counter,
        &["kind"],
    ),
    (
        "starling_transport_failures_total",
        "Connections refused before MQTT (PROXY, TLS, WebSocket), by reason; process-wide.",
        Kind::Counter,
        &["reason"],
    ),
    (
        "starling_tls_server_cert_expiry_timestamp_seconds",
        "When the TLS server certificate in use expires (Unix seconds).",
        Kind::Gauge,
        &["listener"],
    ),
    (
        "starling_cluster_leader",
        "1 if this node is the Raft leader.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_cluster_ready",
        "1 if /readyz answers 200.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_cluster_members",
        "Members (voters and learners) of the effective membership.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_cluster_raft_term",
        "Current Raft term.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_cluster_raft_last_log_index",
        "Last Raft log index stored on this node.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_cluster_raft_applied_index",
        "Last Raft log index applied on this node.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_cluster_raft_snapshot_index",
        "Raft log index covered by the latest snapshot.",
        Kind::Gauge,
        &[],
    ),
    (
        "starling_cluster_forwards_total",
        "Publishes forwarded to peer nodes, by result.",
        Kind::Counter,
        &["result"],
    ),
    (
        "starling_cluster_forwarded_received_total",
        "Publishes forwarded here by peer nodes.",
        Kind::Counter,
        &[],
    ),
    (
        "starling_cluster_interest_resyncs_total",
        "Full interest sets sent to peers that asked for one.",
        Kind::Counter,
        &[],
    ),
    (
        "starling_cluster_bad_peer_messages_total",
        "Peer messages that did not decode.",
        Kind::Counter,
        &[],
    ),
    (
        "starling_build_info",
        "The running build (always 1).",
        Kind::Gauge,
        &["version"],
    ),
];

/// Reads the broker's own counters and state when Prometheus scrapes.
struct BrokerCollector {
    broker: Arc<OnceLock<Weak<Broker>>>,
    listeners: Arc<Mutex<Vec<Arc<transport::Listener>>>>,
    descs: Vec<Desc>,
}

impl BrokerCollector {
    fn new(
        broker: Arc<OnceLock<Weak<Broker>>>,
        listeners: Arc<Mutex<Vec<Arc<transport::Listener>>>>,
    ) -> Result<BrokerCollector, prometheus::Error> {
        let descs = SCRAPED
            .iter()
            .map(|(name, help, _, labels)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels.iter().map(|l| (*l).to_owned()).collect(),
                    Default::default(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(BrokerCollector {
            broker,
            listeners,
            descs,
        })
    }
}

impl Collector for BrokerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(broker) = self.broker.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        let mut s = Scrape::default();
        collect_traffic(&broker, &mut s);
        collect_state(&broker, &mut s);
        collect_access(&broker, &mut s);
        collect_cluster(&broker, &mut s);
        for l in self.listeners.lock().iter() {
            if let Some(t) = l.server_cert_not_after() {
                s.add(
                    "starling_tls_server_cert_expiry_timestamp_seconds",
                    &[l.name()],
                    t as f64,
                );
            }
        }
        for (reason, n) in transport::failure_counts() {
            s.add("starling_transport_failures_total", &[reason], n as f64);
        }
        s.add("starling_build_info", &[env!("CARGO_PKG_VERSION")], 1.0);
        s.finish()
    }
}

/// Message counters: the hot path's atomics, read now.
fn collect_traffic(b: &Broker, s: &mut Scrape) {
    let st = &b.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    for (qos, label) in ["0", "1", "2"].iter().enumerate() {
        if let Some(n) = st.messages_received.get(qos) {
            s.add("starling_messages_received_total", &[label], load(n));
        }
        if let Some(n) = st.messages_sent.get(qos) {
            s.add("starling_messages_sent_total", &[label], load(n));
        }
    }
    s.add(
        "starling_received_bytes_total",
        &[],
        load(&st.bytes_received),
    );
    s.add("starling_sent_bytes_total", &[], load(&st.bytes_sent));
    let route = &b.router.stats;
    let access = &b.access.stats;
    let dropped = [
        (
            "queue_full",
            load(&st.dropped_queue_full) + load(&route.dropped_queue_full),
        ),
        ("expired", load(&st.dropped_expired)),
        ("too_large", load(&st.dropped_too_large)),
        (
            "denied",
            load(&access.dropped_denied) + load(&access.receive_denied),
        ),
        ("slow_consumer", load(&st.dropped_slow_consumer)),
        ("no_subscribers", load(&route.no_subscribers)),
    ];
    for (reason, n) in dropped {
        s.add("starling_messages_dropped_total", &[reason], n);
    }
    s.add(
        "starling_slow_consumer_disconnects_total",
        &[],
        load(&st.slow_consumer_disconnects),
    );
    let p = &b.peers.stats;
    s.add(
        "starling_cluster_forwards_total",
        &["sent"],
        load(&p.forwarded),
    );
    s.add(
        "starling_cluster_forwards_total",
        &["dropped"],
        load(&p.forward_dropped),
    );
    s.add(
        "starling_cluster_forwarded_received_total",
        &[],
        load(&p.received),
    );
    s.add(
        "starling_cluster_interest_resyncs_total",
        &[],
        load(&p.resyncs),
    );
    s.add(
        "starling_cluster_bad_peer_messages_total",
        &[],
        load(&p.bad_messages),
    );
}

/// Sessions, subscriptions, retained store and per-client depths.
fn collect_state(b: &Broker, s: &mut Scrape) {
    let ((online, offline), retained, retained_bytes) = {
        let state = b.state.lock();
        let r = state.retained();
        (state.session_counts(), r.len(), r.bytes())
    };
    s.add("starling_sessions", &["online"], online as f64);
    s.add("starling_sessions", &["offline"], offline as f64);
    s.add("starling_subscriptions", &[], b.router.len() as f64);
    s.add("starling_retained_messages", &[], retained as f64);
    s.add("starling_retained_bytes", &[], retained_bytes as f64);
    let mut inflight = Depths::default();
    let mut queued = Depths::default();
    for c in b.clients.iter() {
        let (i, q) = c.control.depths();
        inflight.observe(i);
        queued.observe(q);
    }
    s.histogram("starling_inflight_messages", inflight);
    s.histogram("starling_queued_messages", queued);
}

/// Security telemetry: anomalies, ladder responses, sources, certificates, bans.
fn collect_telemetry(b: &Broker, s: &mut Scrape) {
    let st = &b.telemetry.stats;
    let by_class = |m: &parking_lot::Mutex<std::collections::BTreeMap<String, u64>>| {
        m.lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>()
    };
    for (class, n) in by_class(&st.anomalies) {
        s.add("starling_publish_rate_anomalies_total", &[&class], n as f64);
    }
    for (class, n) in by_class(&st.unexpected_source) {
        s.add("starling_unexpected_source_total", &[&class], n as f64);
    }
    let responses: Vec<_> = st.responses.lock().iter().map(|(k, v)| (*k, *v)).collect();
    for (step, n) in responses {
        s.add("starling_telemetry_responses_total", &[step], n as f64);
    }
    let certs: Vec<_> = st
        .client_certs
        .lock()
        .iter()
        .map(|((c, b), v)| (c.clone(), *b, *v))
        .collect();
    for (class, bucket, n) in certs {
        s.add(
            "starling_client_certs_seen_total",
            &[&class, bucket],
            n as f64,
        );
    }
    s.add(
        "starling_source_network_spikes_total",
        &[],
        st.network_spikes.load(Ordering::Relaxed) as f64,
    );
    s.add(
        "starling_auth_failure_bursts_total",
        &[],
        st.auth_bursts.load(Ordering::Relaxed) as f64,
    );
    let bans = b.state.lock().active_bans(crate::message::now_ms());
    s.add("starling_bans_active", &[], bans as f64);
}

/// Policy, authentication and authorization counters.
fn collect_access(b: &Broker, s: &mut Scrape) {
    let access = &b.access;
    let policy = access.policy();
    s.add("starling_policy_version", &[], access.seq() as f64);
    for (plugin, hook, n) in b.plugins.rejections() {
        s.add(
            "starling_plugin_rejections_total",
            &[&plugin, hook],
            n as f64,
        );
    }
    s.add(
        "starling_policy_info",
        &[policy.hash(), policy.revision()],
        1.0,
    );
    let stats = &access.stats;
    s.add(
        "starling_policy_reloads_total",
        &["applied"],
        stats.reload_applied.load(Ordering::Relaxed) as f64,
    );
    s.add(
        "starling_policy_reloads_total",
        &["rejected"],
        stats.reload_rejected.load(Ordering::Relaxed) as f64,
    );
    // Copied out first: the maps' locks are taken by connections too.
    let failures: Vec<(&'static str, u64)> = stats
        .auth_failures
        .lock()
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    for (reason, n) in failures {
        s.add("starling_auth_failures_total", &[reason], n as f64);
    }
    let denials: Vec<((&'static str, String), u64)> = stats
        .denials
        .lock()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    for ((action, rule), n) in denials {
        s.add("starling_acl_denials_total", &[action, &rule], n as f64);
    }
    collect_telemetry(b, s);
    for (kind, n) in access.events.counts() {
        s.add("starling_security_events_total", &[kind], n as f64);
    }
}

/// Raft role, readiness and progress.
fn collect_cluster(b: &Broker, s: &mut Scrape) {
    let cluster = &b.membership.cluster;
    let status = cluster.status();
    let flag = |v: bool| if v { 1.0 } else { 0.0 };
    s.add("starling_cluster_leader", &[], flag(cluster.is_leader()));
    s.add("starling_cluster_ready", &[], flag(b.readiness().is_ok()));
    s.add("starling_cluster_members", &[], status.members.len() as f64);
    s.add("starling_cluster_raft_term", &[], status.term as f64);
    let indexes = [
        (
            "starling_cluster_raft_last_log_index",
            status.last_log_index,
        ),
        ("starling_cluster_raft_applied_index", status.applied_index),
        (
            "starling_cluster_raft_snapshot_index",
            status.snapshot_index,
        ),
    ];
    for (name, index) in indexes {
        // No index yet (an empty log) is reported as 0, not left out, so
        // a dashboard does not show a gap during start-up.
        s.add(name, &[], index.unwrap_or(0) as f64);
    }
}

/// A histogram over small counts, built at scrape time.
#[derive(Default)]
struct Depths {
    /// Observations at or below each of [`DEPTH_BUCKETS`] (not cumulative yet).
    counts: [u64; DEPTH_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Depths {
    fn observe(&mut self, v: usize) {
        let v = v as f64;
        if let Some(i) = DEPTH_BUCKETS.iter().position(|b| v <= *b)
            && let Some(c) = self.counts.get_mut(i)
        {
            *c += 1;
        }
        self.count += 1;
        self.sum += v;
    }
}

/// The families of one scrape, in [`SCRAPED`] order.
#[derive(Default)]
struct Scrape {
    families: Vec<MetricFamily>,
}

impl Scrape {
    /// The family `name`, created on first use from its [`SCRAPED`] entry.
    fn family(&mut self, name: &str) -> Option<(&mut MetricFamily, &'static [&'static str])> {
        let (_, help, kind, labels) = SCRAPED.iter().find(|(n, ..)| *n == name)?;
        let i = match self.families.iter().position(|f| f.name() == name) {
            Some(i) => i,
            None => {
                let mut f = MetricFamily::default();
                f.set_name(name.to_owned());
                f.set_help((*help).to_owned());
                f.set_field_type(match kind {
                    Kind::Counter => MetricType::COUNTER,
                    Kind::Gauge => MetricType::GAUGE,
                    Kind::Histogram => MetricType::HISTOGRAM,
                });
                self.families.push(f);
                self.families.len() - 1
            }
        };
        self.families.get_mut(i).map(|f| (f, *labels))
    }

    /// One counter or gauge sample; `values` pair up with the family's labels.
    fn add(&mut self, name: &str, values: &[&str], value: f64) {
        let Some((family, labels)) = self.family(name) else {
            return;
        };
        let counter = family.get_field_type() == MetricType::COUNTER;
        let mut m = proto::Metric::from_label(label_pairs(labels, values));
        if counter {
            let mut c = proto::Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = proto::Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        family.mut_metric().push(m);
    }

    /// One unlabelled histogram sample.
    fn histogram(&mut self, name: &str, d: Depths) {
        let Some((family, _)) = self.family(name) else {
            return;
        };
        let mut cumulative = 0;
        let buckets = DEPTH_BUCKETS
            .iter()
            .zip(d.counts)
            .map(|(bound, n)| {
                cumulative += n;
                let mut b = proto::Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect();
        let mut h = proto::Histogram::default();
        h.set_bucket(buckets);
        h.set_sample_count(d.count);
        h.set_sample_sum(d.sum);
        let mut m = proto::Metric::default();
        m.set_histogram(h);
        family.mut_metric().push(m);
    }

    fn finish(self) -> Vec<MetricFamily> {
        self.families
    }
}

fn label_pairs(names: &[&str], values: &[&str]) -> Vec<proto::LabelPair> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| {
            let mut p = proto::LabelPair::default();
            p.set_name((*n).to_owned());
            p.set_value((*v).to_owned());
            p
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn handles_register_and_encode_without_a_broker() {
        let m = Metrics::new().unwrap();
        m.connect_attempt();
        m.connect_refused(ConnectRefusal::Quota);
        {
            let _c = m.connected("mqtt", "5.0");
            let text = m.encode().unwrap();
            assert!(
                text.contains("starling_connections_current{listener=\"mqtt\",protocol=\"5.0\"} 1")
            );
        }
        let text = m.encode().unwrap();
        assert!(text.contains("starling_connect_attempts_total 1"), "{text}");
        assert!(text.contains("starling_connect_failures_total{reason=\"quota\"} 1"));
        assert!(text.contains("starling_connect_failures_total{reason=\"will\"} 0"));
        assert!(
            text.contains("starling_connections_current{listener=\"mqtt\",protocol=\"5.0\"} 0")
        );
        assert!(text.contains("starling_connections_total{listener=\"mqtt\",protocol=\"5.0\"} 1"));
    }

    #[test]
    fn two_registries_do_not_share_numbers() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.connect_attempt();
        assert!(
            b.encode()
                .unwrap()
                .contains("starling_connect_attempts_total 0")
        );
    }

    #[test]
    fn scraped_names_follow_the_conventions() {
        for (name, help, kind, labels) in SCRAPED {
            assert!(name.starts_with("starling_"), "{name}");
            assert!(!help.is_empty(), "{name}");
            assert_eq!(
                matches!(kind, Kind::Counter),
                name.ends_with("_total"),
                "{name}: counters and only counters end in _total"
            );
            assert!(!labels.contains(&"client_id"), "{name}");
        }
    }

    #[test]
    fn depth_histogram_is_cumulative() {
        let mut d = Depths::default();
        for v in [0, 1, 3, 3, 5000] {
            d.observe(v);
        }
        let mut s = Scrape::default();
        s.histogram("starling_queued_messages", d);
        let fams = s.finish();
        let h = fams[0].get_metric()[0].get_histogram();
        let cum: Vec<u64> = h
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect();
        assert_eq!(cum, [1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4]);
        assert_eq!(h.get_sample_count(), 5);
        assert_eq!(h.get_sample_sum(), 5007.0);
    }
}
