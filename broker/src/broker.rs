//! The node's shared broker context: what every connection task can reach.
//!
//! It ties the live [`Router`], the replicated [`State`] (read directly,
//! changed only through the [`Replicator`]), the registry of connected
//! clients (one per client id: takeover goes through it) and the node-local
//! leftovers of persistent sessions.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::Access;
use crate::authn::{Authenticator, NoEnhancedAuth};
use crate::clustering::{BrokerMachine, Membership};
use crate::config::Config;
use crate::error::StartError;
use crate::message::{ClientId, Message, QoS, now_ms};
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::replication::{EffectSink, ReplicationError, Replicator};
use crate::retained::RetainOutcome;
use crate::router::{Router, SharedChoice};
use crate::state::{Command, Effects, NodeId, Response, State, StateLimits};

/// v5 reason code sent to a connection whose session was taken over.
pub(crate) const SESSION_TAKEN_OVER: u8 = 0x8E;

/// v5 CONNACK reason code for a banned client.
pub(crate) const BANNED: u8 = 0x8A;

/// v5 DISCONNECT reason for a connected client a new ban matches (0x8A
/// "Banned" exists only in CONNACK).
pub(crate) const ADMINISTRATIVE_ACTION: u8 = 0x98;

/// v5 reason code sent to clients of a node that lost contact with the quorum.
pub(crate) const USE_ANOTHER_SERVER: u8 = 0x9C;

/// Signals from the broker to one connection task.
#[derive(Debug, Default)]
pub(crate) struct Control {
    kick: CancellationToken,
    kick_reason: AtomicU8,
    /// The session's replicated queue has new messages.
    pub wake: Notify,
    /// Set when the connection task has finished all its work.
    pub done: CancellationToken,
    /// Ownership epoch of this connection's claim on its client id.
    pub epoch: AtomicU64,
    /// A taking-over connection stopped waiting for this one to finish: the
    /// session's node-local state belongs to the newcomer now.
    pub abandoned: std::sync::atomic::AtomicBool,
    /// QoS 1/2 messages awaiting this client's acknowledgement, as of the
    /// connection's last loop turn (read by metrics scrapes).
    inflight: AtomicUsize,
    /// Live deliveries waiting to be written to this client, likewise.
    queued: AtomicUsize,
}

impl Control {
    /// Asks the connection to close with a v5 DISCONNECT reason.
    pub fn kick(&self, reason: u8) {
        self.kick_reason.store(reason, Ordering::Relaxed);
        self.kick.cancel();
    }

    /// Resolves when the connection was asked to close; yields the reason.
    pub async fn kicked(&self) -> u8 {
        self.kick.cancelled().await;
        self.kick_reason.load(Ordering::Relaxed)
    }

    /// Records the connection's window and queue depth. Two relaxed stores
    /// per loop turn: scrapes read them instead of asking the task.
    pub fn set_depths(&self, inflight: usize, queued: usize) {
        self.inflight.store(inflight, Ordering::Relaxed);
        self.queued.store(queued, Ordering::Relaxed);
    }

    /// The last recorded (in-flight, queued) depths.
    pub fn depths(&self) -> (usize, usize) {
        (
            self.inflight.load(Ordering::Relaxed),
            self.queued.load(Ordering::Relaxed),
        )
    }
}

/// A connected client in the registry.
#[derive(Debug, Clone)]
pub(crate) struct ClientHandle {
    pub conn_id: u64,
    pub control: Arc<Control>,
    /// Identity and live figures for the admin API and bans.
    pub info: Arc<crate::registry::ClientInfo>,
}

/// Node-local parts of a persistent session kept between its connections:
/// inbound QoS 2 packet ids awaiting PUBREL (so a resent PUBLISH is not
/// delivered twice).
#[derive(Debug, Default)]
pub(crate) struct SessionStash {
    pub awaiting_rel: HashSet<u16>,
}

/// A will waiting for its delay to pass.
#[derive(Debug)]
pub(crate) struct PendingWill {
    /// Cancelled when the client reconnects (the will is then never sent).
    pub cancel: CancellationToken,
    /// Notified when the session ends before the delay: publish at once.
    pub fire_now: Arc<Notify>,
}

/// Broker-wide counters, read by `$SYS` and by metrics scrapes. Plain
/// atomics: the per-message path pays one relaxed add per counter.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Connections holding (or reserving, during CONNECT) a slot under
    /// `limits.max_connections`.
    pub connections_current: AtomicUsize,
    pub connections_total: AtomicU64,
    /// PUBLISH packets received, indexed by QoS (0, 1, 2).
    pub messages_received: [AtomicU64; 3],
    /// PUBLISH packets written, indexed by QoS (0, 1, 2).
    pub messages_sent: [AtomicU64; 3],
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub dropped_expired: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    /// Live deliveries still queued for a client cut off as a slow consumer.
    pub dropped_slow_consumer: AtomicU64,
    /// Clients cut off because a write to them stalled.
    pub slow_consumer_disconnects: AtomicU64,
}

impl Stats {
    /// Counts a PUBLISH received from a client.
    pub fn received(&self, qos: QoS, payload_len: usize) {
        if let Some(c) = self.messages_received.get(qos as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_received
            .fetch_add(payload_len as u64, Ordering::Relaxed);
    }

    /// Counts a PUBLISH written to a client.
    pub fn sent(&self, qos: QoS, payload_len: usize) {
        if let Some(c) = self.messages_sent.get(qos as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_sent
            .fetch_add(payload_len as u64, Ordering::Relaxed);
    }

    /// PUBLISH packets received, all QoS.
    pub fn messages_received_total(&self) -> u64 {
        self.messages_received
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// PUBLISH packets written, all QoS.
    pub fn messages_sent_total(&self) -> u64 {
        self.messages_sent
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Why a publish was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublishError {
    /// The retained store is full (v5 0x97).
    RetainQuota,
    /// The replicated log is unavailable (v5 0x88 / no acknowledgement).
    Unavailable(ReplicationError),
    /// Clients may not publish there (v5 0x87).
    NotAuthorized,
}

/// Coalesced linearizable read barriers: callers that arrive while one is in
/// flight share the next one, so a stream of publishes costs about one
/// barrier per round trip, not one each.
#[derive(Default)]
pub(crate) struct Barriers {
    wanted: AtomicU64,
    kick: Notify,
    done: parking_lot::Mutex<Option<tokio::sync::watch::Sender<(u64, bool)>>>,
}

/// The node's broker.
pub(crate) struct Broker {
    pub config: Arc<Config>,
    pub node_id: NodeId,
    /// Enhanced authentication (v5 AUTH) hook.
    pub authenticator: Arc<dyn Authenticator>,
    /// The policy in force, authentication and security events.
    pub access: Arc<Access>,
    /// Asks the policy-file task to reload (admin API).
    pub policy_reload: tokio::sync::mpsc::Sender<crate::policy_source::ReloadRequest>,
    /// The receiving end, taken by the policy-file task.
    pub policy_requests:
        Mutex<Option<tokio::sync::mpsc::Receiver<crate::policy_source::ReloadRequest>>>,
    pub state: Arc<Mutex<State>>,
    replicator: Arc<dyn Replicator>,
    /// Raft membership of this node.
    pub membership: Membership,
    /// Live traffic to and from the other nodes.
    pub peers: Peers,
    pub router: Router,
    pub clients: Arc<DashMap<ClientId, ClientHandle>>,
    pub stash: Arc<DashMap<ClientId, SessionStash>>,
    pub wills: Arc<DashMap<ClientId, PendingWill>>,
    pub stats: Stats,
    /// Prometheus registry and handles (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// Publish-rate baselines, bursts and the response ladder.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Plugin hooks, run after the policy allowed an action.
    pub plugins: starling_plugins::PluginChain,
    /// Set at SIGTERM: not ready, no new clients, connections leaving.
    pub draining: std::sync::atomic::AtomicBool,
    /// `$SYS` retained values: node-local, never replicated.
    pub sys_retained: Mutex<BTreeMap<String, Arc<Message>>>,
    barriers: Barriers,
    pub shutdown: CancellationToken,
    /// Set once the node has released its previous run's sessions and
    /// accepts clients (part of readiness).
    pub accepting: std::sync::atomic::AtomicBool,
    /// Set while this node has no recent proof that a quorum follows its
    /// leader: clients are disconnected and CONNECTs refused (G3/G8).
    pub fenced: std::sync::atomic::AtomicBool,
    pub tasks: TaskTracker,
    next_conn: AtomicU64,
    pub started: Instant,
}

/// Routes apply effects to this node's connections.
struct NodeEffects {
    node: NodeId,
    access: Arc<Access>,
    clients: Arc<DashMap<ClientId, ClientHandle>>,
    wills: Arc<DashMap<ClientId, PendingWill>>,
    stash: Arc<DashMap<ClientId, SessionStash>>,
}

impl EffectSink for NodeEffects {
    fn on_restored(&self, state: &State) {
        if let Some(p) = state.policy() {
            self.access.install(p);
        }
        // Whatever a snapshot skipped over: connections whose claim was
        // superseded close, the others look at their queue again.
        for c in self.clients.iter() {
            let epoch = c.control.epoch.load(Ordering::Relaxed);
            if epoch == 0 {
                continue;
            }
            let owned = state
                .session(c.key())
                .is_some_and(|r| r.owner.epoch == epoch && r.owner.node == self.node);
            if owned {
                c.control.wake.notify_one();
            } else {
                c.control.kick(SESSION_TAKEN_OVER);
            }
        }
    }

    fn on_effects(&self, fx: Effects) {
        if let Some(p) = &fx.policy {
            self.access.install(p);
        }
        for key in &fx.banned {
            for c in self.clients.iter() {
                let a = &c.info.auth;
                let hit = match key {
                    crate::state::BanKey::ClientId(id) => c.key().as_str() == id,
                    crate::state::BanKey::Username(u) => {
                        a.principal.username.as_deref() == Some(u.as_str())
                    }
                    crate::state::BanKey::Network(n) => n.contains(&a.source.to_canonical()),
                };
                if hit {
                    c.control.kick(ADMINISTRATIVE_ACTION);
                }
            }
        }
        for (client, owner) in fx.wake {
            if owner.node != self.node {
                continue;
            }
            if let Some(h) = self.clients.get(&client)
                && h.control.epoch.load(Ordering::Relaxed) == owner.epoch
            {
                h.control.wake.notify_one();
            }
        }
        for (client, owner) in fx.fenced {
            if owner.node != self.node {
                continue;
            }
            if let Some(h) = self.clients.get(&client)
                && h.control.epoch.load(Ordering::Relaxed) == owner.epoch
            {
                h.control.kick(SESSION_TAKEN_OVER);
            }
        }
        for client in fx.ended {
            // The session's node-local leftovers end with it.
            self.stash.remove(&client);
            // The session ended before the will delay passed: the will goes now.
            if let Some(w) = self.wills.get(&client) {
                w.fire_now.notify_one();
            }
        }
    }
}

impl Broker {
    /// Builds the broker and joins (or forms) its Raft group. A single node
    /// is a group of one; its log on disk makes the state durable.
    pub async fn start(config: Config) -> Result<Arc<Broker>, StartError> {
        let limits = StateLimits {
            max_queued_messages: config.limits.max_queued_messages,
            max_retained_messages: config.limits.max_retained_messages,
            max_sessions: config.limits.max_sessions,
        };
        let metrics = Arc::new(Metrics::new().map_err(|e| StartError::Metrics(e.to_string()))?);
        let state = Arc::new(Mutex::new(State::new(limits)));
        let clients = Arc::new(DashMap::new());
        let wills = Arc::new(DashMap::new());
        let stash = Arc::new(DashMap::new());
        let access = Arc::new(Access::new(&config));
        let (policy_reload, policy_requests) = tokio::sync::mpsc::channel(4);
        let sink = Arc::new(NodeEffects {
            node: config.node.id,
            access: access.clone(),
            clients: clients.clone(),
            wills: wills.clone(),
            stash: stash.clone(),
        });
        let machine = BrokerMachine::new(state.clone(), sink);
        let membership = crate::clustering::join(&config, machine).await?;
        let replicator: Arc<dyn Replicator> = Arc::new(crate::replication::Batcher::new(
            membership.replicator.clone(),
        ));
        // Distinguishes this run from earlier runs of the same node for peers.
        let run = rand::random::<u64>();
        let peers = Peers::new(config.node.id, run, membership.transport.clone());
        let telemetry = Arc::new(crate::telemetry::Telemetry::new(&config.telemetry));
        let plugins = starling_plugins::PluginChain::build(&config.plugins).map_err(|e| {
            crate::error::ConfigError::Invalid {
                key: "plugins",
                reason: e.to_string(),
            }
        })?;
        let broker = Arc::new(Broker {
            plugins,
            node_id: config.node.id,
            telemetry,
            draining: std::sync::atomic::AtomicBool::new(false),
            authenticator: Arc::new(NoEnhancedAuth),
            access,
            policy_reload,
            policy_requests: Mutex::new(Some(policy_requests)),
            config: Arc::new(config),
            state,
            replicator,
            membership,
            peers,
            router: Router::default(),
            clients,
            stash,
            wills,
            stats: Stats::default(),
            metrics,
            sys_retained: Mutex::new(BTreeMap::new()),
            barriers: Barriers::default(),
            shutdown: CancellationToken::new(),
            accepting: std::sync::atomic::AtomicBool::new(false),
            fenced: std::sync::atomic::AtomicBool::new(false),
            tasks: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
            started: Instant::now(),
        });
        broker.metrics.attach(&broker);
        Ok(broker)
    }

    /// A fresh connection id (distinguishes connections of one client id).
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Submits a command to the replicated state.
    pub async fn submit(&self, cmd: Command) -> Result<Response, ReplicationError> {
        self.replicator.submit(cmd).await
    }

    /// Publishes a message: durably first where a persistent session or the
    /// retained store needs it, then live to connected subscribers. Returns
    /// once the publisher may be acknowledged.
    pub async fn publish(&self, msg: Arc<Message>) -> Result<(), PublishError> {
        if msg.topic.is_system() && msg.publisher.is_some() {
            // `$SYS/...` is the broker's own: a client must never be able to
            // spoof broker statistics. Other `$`-topics are routed live only
            // (never retained or queued) until the policy engine grants them.
            if msg.topic.as_str().starts_with("$SYS/") {
                return Err(PublishError::NotAuthorized);
            }
            self.peers.route(&msg, false, &self.router);
            return Ok(());
        }
        if msg.qos != QoS::AtMostOnce && !msg.retain && !self.replicator.is_leader() {
            // This replica may not have applied a persistent SUBSCRIBE that was
            // already acknowledged elsewhere: catch up with the leader's
            // commit index before deciding the publish needs no log (G2).
            self.read_barrier()
                .await
                .map_err(PublishError::Unavailable)?;
        }
        let needs_log = self.state.lock().needs_log(&msg);
        if needs_log {
            let cmd = Command::Publish {
                msg: msg.clone(),
                now_ms: now_ms(),
            };
            if let Response::Published {
                retained: Some(RetainOutcome::QuotaExceeded),
                ..
            } = self.submit(cmd).await.map_err(PublishError::Unavailable)?
            {
                return Err(PublishError::RetainQuota);
            }
        }
        self.peers.route(&msg, needs_log, &self.router);
        Ok(())
    }

    /// Waits for a linearizable read barrier that started after this call.
    async fn read_barrier(&self) -> Result<(), ReplicationError> {
        let mut rx = {
            let mut done = self.barriers.done.lock();
            match done.as_ref() {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = tokio::sync::watch::channel((0, true));
                    *done = Some(tx);
                    rx
                }
            }
        };
        let ticket = self.barriers.wanted.fetch_add(1, Ordering::AcqRel) + 1;
        self.barriers.kick.notify_one();
        loop {
            let (done, ok) = *rx.borrow_and_update();
            if done >= ticket {
                return if ok {
                    Ok(())
                } else {
                    Err(ReplicationError::Unavailable("read barrier failed".into()))
                };
            }
            if rx.changed().await.is_err() {
                return Err(ReplicationError::Unavailable("shutting down".into()));
            }
        }
    }

    /// Runs the coalesced read barriers until shutdown.
    pub async fn run_barriers(self: Arc<Broker>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.barriers.kick.notified() => {}
            }
            // Everyone who took a ticket up to here is served by this round.
            let target = self.barriers.wanted.load(Ordering::Acquire);
            let ok = self.membership.cluster.read_barrier().await.is_ok();
            if let Some(tx) = self.barriers.done.lock().as_ref() {
                tx.send_replace((target, ok));
            }
        }
    }

    /// Publishes a node-local `$SYS` value: retained here, never replicated.
    pub fn publish_sys(&self, msg: Arc<Message>) {
        self.sys_retained
            .lock()
            .insert(msg.topic.as_str().to_owned(), msg.clone());
        self.router.route(&msg, false, SharedChoice::Local);
    }

    /// Publishes a node-local `$SYS` message live only (not retained).
    pub fn publish_sys_live(&self, msg: Arc<Message>) {
        self.router.route(&msg, false, SharedChoice::Local);
    }

    /// Removes offline persistent sessions whose expiry passed; runs until shutdown.
    pub async fn run_expiry(self: Arc<Broker>) {
        let mut tick = tokio::time::interval(self.config.session.expiry_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if !self.replicator.is_leader() {
                        continue;
                    }
                    let now = now_ms();
                    if let Err(e) = self.submit(Command::ExpireSessions { now_ms: now }).await {
                        tracing::warn!(error = %e, "session expiry check failed");
                    }
                }
            }
        }
    }

    /// Exchanges live-traffic interest and forwarded publishes with the
    /// other nodes; runs until shutdown.
    pub async fn run_peers(self: Arc<Broker>) {
        let mut incoming = match self.membership.cluster.incoming() {
            Ok(rx) => rx,
            Err(e) => {
                tracing::error!(error = %e, "peer messages unavailable");
                return;
            }
        };
        let mut digest = tokio::time::interval(Duration::from_secs(1));
        digest.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.router.interest_changed.notified() => self.peers.announce_changes(&self.router),
                _ = digest.tick() => self.peers.send_digests(),
                msg = incoming.recv() => match msg {
                    Some((from, bytes)) => self.peers.on_message(from, &bytes, &self.router),
                    None => return,
                },
            }
        }
    }

    /// How old this node's proof of a quorum may get before it fences its
    /// clients: two longest election timeouts, so a leader crash (a new
    /// leader within one election) does not disconnect every client of the
    /// cluster, while a node cut off from the majority stops serving soon.
    pub fn fence_after(&self) -> Duration {
        self.config.cluster.election_timeout_max * 2
    }

    /// How long a CONNECT that took a session over from another node waits
    /// before its CONNACK: past `fence_after`, so a cut-off previous owner
    /// has fenced its connection by then.
    pub fn takeover_wait(&self) -> Duration {
        self.fence_after() + self.config.cluster.heartbeat * 2
    }

    /// True while this node has recent proof that a quorum follows its leader.
    pub fn has_quorum_contact(&self) -> bool {
        self.membership
            .cluster
            .quorum_contact()
            .is_some_and(|age| age <= self.fence_after())
    }

    /// Fences this node's clients when it loses contact with the quorum.
    ///
    /// A node cut off from the majority cannot see a takeover committed
    /// there. It disconnects every client once its quorum contact is older
    /// than `fence_after` (v5 0x9C, "use another server") and refuses CONNECT
    /// until contact returns; a cross-node takeover waits `takeover_wait`
    /// before its CONNACK. Together: a client whose session was taken over
    /// never keeps receiving on the cut-off node (G3, G8).
    pub async fn run_fence(self: Arc<Broker>) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !self.accepting.load(Ordering::Relaxed) {
                continue;
            }
            if !self.has_quorum_contact() {
                if !self.fenced.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        clients = self.clients.len(),
                        "lost contact with the cluster quorum: disconnecting clients"
                    );
                }
                for c in self.clients.iter() {
                    c.control.kick(USE_ANOTHER_SERVER);
                }
            } else if self.fenced.swap(false, Ordering::AcqRel) {
                tracing::info!("quorum contact restored: accepting clients again");
            }
        }
    }

    /// Seconds since the broker started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Bans `key` cluster-wide until `until_ms` (through the log; every
    /// node disconnects the clients it matches).
    pub async fn ban(
        &self,
        key: crate::state::BanKey,
        until_ms: u64,
        reason: &str,
    ) -> Result<(), String> {
        let cmd = Command::Ban {
            key,
            ban: crate::state::Ban {
                until_ms,
                reason: reason.to_owned(),
            },
        };
        self.submit(cmd)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Ready = accepting clients, a member with a leader and quorum, caught
    /// up, a policy in force when one is configured, and not draining. The
    /// error says what is missing (`/readyz` body; metrics use the verdict).
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shutdown.is_cancelled() || self.draining.load(Ordering::Relaxed) {
            return Err("draining");
        }
        if !self.accepting.load(Ordering::Relaxed) {
            return Err("not accepting clients yet");
        }
        if !self.membership.cluster.is_ready() || !self.has_quorum_contact() {
            return Err("cluster: no quorum, no leader or not caught up");
        }
        if self.config.auth.policy_file.is_some() && self.access.seq() == 0 {
            return Err("no policy in force yet");
        }
        Ok(())
    }
}
