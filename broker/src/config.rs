//! Broker configuration: typed, validated before any port is bound.
//!
//! The binary merges a TOML file, `STARLING_*` environment variables and
//! command-line flags into a [`Config`]; library code only sees the typed
//! struct. Unknown keys are errors (`deny_unknown_fields`): a misspelt
//! security setting must never be silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node.
    pub node: NodeConfig,
    /// MQTT listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Protocol limits (G7).
    pub limits: LimitsConfig,
    /// Session behaviour.
    pub session: SessionConfig,
    /// `$SYS` topics.
    pub sys: SysConfig,
    /// Raft group and peer links (a single node is a cluster of one).
    pub cluster: ClusterSection,
    /// Admin HTTP listener (health, cluster API).
    pub admin: AdminConfig,
    /// Access control (the policy file).
    pub auth: AuthConfig,
    /// Security events.
    pub security: SecurityConfig,
    /// Security telemetry: publish-rate baselines, bursts, the response ladder.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Built-in plugins (`[[plugins]]`), run in this order after the policy
    /// allowed an action (`docs/plugins.md`).
    pub plugins: Vec<starling_plugins::PluginConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node: NodeConfig::default(),
            listeners: vec![ListenerConfig::default()],
            limits: LimitsConfig::default(),
            session: SessionConfig::default(),
            sys: SysConfig::default(),
            cluster: ClusterSection::default(),
            admin: AdminConfig::default(),
            auth: AuthConfig::default(),
            security: SecurityConfig::default(),
            telemetry: crate::telemetry::TelemetryConfig::default(),
            plugins: Vec::new(),
        }
    }
}

/// Access control: where the policy comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The policy file (`docs/policy.md`). Without one this node follows the
    /// policy the cluster already has; with none anywhere every client is
    /// refused (default deny).
    pub policy_file: Option<PathBuf>,
    /// Reload the policy when its file changes (the directory is watched,
    /// so Kubernetes' symlink swaps are seen). SIGHUP and the admin API
    /// reload it too.
    pub watch: bool,
    /// Password verifications running at once. Each argon2id check costs
    /// memory and tens of milliseconds of CPU: the cap keeps a brute-force
    /// flood from exhausting either; waiting clients are bounded by the
    /// CONNECT timeout.
    pub max_concurrent_password_checks: usize,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            policy_file: None,
            watch: true,
            max_concurrent_password_checks: 4,
        }
    }
}

/// Security events (`docs/security.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Events written per second on average (the rest are counted only).
    pub events_per_second: u32,
    /// Events that may be written in a burst.
    pub events_burst: u32,
    /// Also publish each written event (JSON) on
    /// `$SYS/starling/security/{kind}`, for subscribers the policy allows.
    pub publish_sys: bool,
}

impl Default for SecurityConfig {
    fn default() -> SecurityConfig {
        SecurityConfig {
            events_per_second: 20,
            events_burst: 200,
            publish_sys: false,
        }
    }
}

/// Node identity and storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Node id within the cluster (1 for a single node).
    pub id: u64,
    /// Directory for durable state.
    pub data_dir: PathBuf,
    /// SIGTERM to exit, at most: connections still open then are dropped.
    /// Kubernetes' `terminationGracePeriodSeconds` must be longer.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Clients are disconnected (v5 0x8B) spread over this window after
    /// SIGTERM, so they do not all reconnect elsewhere at once; shorter
    /// than `shutdown_grace`.
    #[serde(with = "humantime_serde")]
    pub drain_window: Duration,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            id: 1,
            data_dir: PathBuf::from("./starling-data"),
            shutdown_grace: Duration::from_secs(10),
            drain_window: Duration::from_secs(5),
        }
    }
}

/// One MQTT listener: TCP or TLS, optionally WebSocket, optionally behind a
/// PROXY-protocol load balancer (see `docs/transports.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Name used in logs and metrics.
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// Speak MQTT over WebSocket (`ws://`, or `wss://` with `tls`).
    pub websocket: bool,
    /// The HTTP path WebSocket clients must request.
    pub websocket_path: String,
    /// Every connection must start with a PROXY protocol v1/v2 header from
    /// one of `proxy_trusted`; its source address becomes the client address.
    pub proxy_protocol: bool,
    /// Networks allowed to send PROXY headers (required with `proxy_protocol`).
    pub proxy_trusted: Vec<ipnet::IpNet>,
    /// TLS settings; absent means plain TCP.
    pub tls: Option<TlsConfig>,
}

impl Default for ListenerConfig {
    fn default() -> ListenerConfig {
        ListenerConfig {
            name: "mqtt".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 1883)),
            websocket: false,
            websocket_path: "/mqtt".into(),
            proxy_protocol: false,
            proxy_trusted: Vec::new(),
            tls: None,
        }
    }
}

impl ListenerConfig {
    /// Checks this listener's own values (TLS files are loaded when binding).
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: format!("listener `{}`: {reason}", self.name),
            })
        };
        if self.name.is_empty() {
            return invalid("listeners.name", "must not be empty");
        }
        if self.websocket
            && (!self.websocket_path.starts_with('/') || self.websocket_path.len() > 256)
        {
            return invalid(
                "listeners.websocket_path",
                "must start with `/` and be at most 256 bytes",
            );
        }
        if self.proxy_protocol && self.proxy_trusted.is_empty() {
            return invalid(
                "listeners.proxy_trusted",
                "is required when proxy_protocol = true (the load balancers' networks)",
            );
        }
        if !self.proxy_protocol && !self.proxy_trusted.is_empty() {
            return invalid(
                "listeners.proxy_trusted",
                "is set but proxy_protocol = false; enable it or remove the list",
            );
        }
        if let Some(tls) = &self.tls {
            match (tls.client_auth, &tls.client_ca) {
                (ClientAuth::None, Some(_)) => {
                    return invalid(
                        "listeners.tls.client_ca",
                        "is set but client_auth = \"none\"; use \"optional\" or \"required\"",
                    );
                }
                (ClientAuth::Optional | ClientAuth::Required, None) => {
                    return invalid(
                        "listeners.tls.client_auth",
                        "needs listeners.tls.client_ca (the CA bundle client certificates are checked against)",
                    );
                }
                _ => {}
            }
            if tls.crl.is_some() && tls.client_ca.is_none() {
                return invalid("listeners.tls.crl", "needs listeners.tls.client_ca");
            }
        }
        Ok(())
    }
}

/// TLS of one listener. Every file is read at start-up and again when it
/// changes (a bad new file is refused and the previous configuration kept).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, server certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of the CAs that issue client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Whether clients present certificates.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM certificate revocation lists for client certificates.
    #[serde(default)]
    pub crl: Option<PathBuf>,
}

/// Client certificate policy of a TLS listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is requested.
    #[default]
    None,
    /// A certificate is requested; one that is presented must verify.
    Optional,
    /// Every client must present a certificate that verifies.
    Required,
}

/// Limits on what one client can make the broker hold (G7).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest packet accepted after CONNECT, in bytes (advertised to v5 clients).
    pub max_packet_size: u32,
    /// Largest first packet (CONNECT) accepted before the client is known.
    pub max_connect_packet_size: u32,
    /// Outbound QoS≥1 messages in flight per client (also capped by its Receive Maximum).
    pub max_inflight: u16,
    /// Inbound QoS 2 messages awaiting PUBREL per client (our Receive Maximum).
    pub receive_maximum: u16,
    /// Messages queued per client beyond the in-flight window.
    pub max_queued_messages: usize,
    /// Subscriptions per client.
    pub max_subscriptions_per_client: usize,
    /// Topic name / filter length in bytes.
    pub max_topic_length: usize,
    /// Topic levels.
    pub max_topic_levels: usize,
    /// v5 properties (and user properties) per packet.
    pub max_properties: usize,
    /// Topic filters per SUBSCRIBE / UNSUBSCRIBE.
    pub max_filters_per_packet: usize,
    /// Retained messages in the broker.
    pub max_retained_messages: usize,
    /// Concurrent connections (on this node).
    pub max_connections: usize,
    /// Sessions in the whole cluster, connected or waiting offline. Must be
    /// the same on every node (it is enforced by the replicated state).
    pub max_sessions: usize,
    /// Topic aliases a v5 client may use towards us.
    pub topic_alias_maximum: u16,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_packet_size: 1024 * 1024,
            max_connect_packet_size: 64 * 1024,
            max_inflight: 64,
            receive_maximum: 128,
            max_queued_messages: 1000,
            max_subscriptions_per_client: 100,
            max_topic_length: 1024,
            max_topic_levels: 32,
            max_properties: 64,
            max_filters_per_packet: 64,
            max_retained_messages: 1_000_000,
            max_connections: 100_000,
            max_sessions: 1_000_000,
            topic_alias_maximum: 32,
        }
    }
}

/// Session timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Close connections that send no CONNECT within this time.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Largest keep alive accepted; v5 clients asking for more (or 0) get this
    /// as Server Keep Alive, 3.1.1 clients asking for more are refused.
    pub max_keep_alive_secs: u16,
    /// Longest session expiry granted; also the expiry of 3.1.1 persistent sessions.
    #[serde(with = "humantime_serde")]
    pub max_session_expiry: Duration,
    /// How often expired sessions are removed.
    #[serde(with = "humantime_serde")]
    pub expiry_check_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            connect_timeout: Duration::from_secs(10),
            max_keep_alive_secs: 3600,
            max_session_expiry: Duration::from_secs(7 * 24 * 3600),
            expiry_check_interval: Duration::from_secs(1),
        }
    }
}

/// `$SYS/broker/...` publication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SysConfig {
    /// Refresh interval; 0 disables `$SYS` topics.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for SysConfig {
    fn default() -> SysConfig {
        SysConfig {
            interval: Duration::from_secs(10),
        }
    }
}

/// The admin HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address to bind (`/livez`, `/readyz`, `/api/v1`).
    pub listen: SocketAddr,
    /// File holding the bearer token for `/api/v1`; without one the API is
    /// disabled (health endpoints stay open).
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> AdminConfig {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
            token_file: None,
        }
    }
}

/// The cluster: this node's peer port, the other nodes and Raft timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Peer-link address to bind. Required when `peers` is set; without peers
    /// the node picks a free loopback port (nobody else can join it).
    pub listen: Option<SocketAddr>,
    /// `host:port` other nodes dial (default: `listen`). A DNS name (e.g. a
    /// StatefulSet pod name) is resolved on every connect.
    pub advertise: Option<String>,
    /// The other nodes: `"ID@host:port"`, e.g. `"2@starling-1.starling:7946"`.
    pub peers: Vec<String>,
    /// File holding the shared secret that peers prove at connect (≥ 16 bytes).
    /// Required with peers; a lone node makes a random one.
    pub secret_file: Option<PathBuf>,
    /// Leader heartbeat interval.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Shortest election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    /// Longest election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Snapshot (and compact the log) every this many applied entries.
    pub snapshot_every: u64,
    /// How long a command waits for a commit before the client is told the
    /// broker is unavailable.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ClusterSection {
    fn default() -> ClusterSection {
        ClusterSection {
            listen: None,
            advertise: None,
            peers: Vec::new(),
            secret_file: None,
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            snapshot_every: 10_000,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A peer parsed from `"ID@host:port"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Node id.
    pub id: u64,
    /// `host:port`.
    pub addr: String,
}

impl ClusterSection {
    /// The peers, parsed.
    pub fn peer_specs(&self) -> Result<Vec<PeerSpec>, ConfigError> {
        self.peers
            .iter()
            .map(|p| {
                let bad = || ConfigError::Invalid {
                    key: "cluster.peers",
                    reason: format!("`{p}` is not ID@host:port"),
                };
                let (id, addr) = p.split_once('@').ok_or_else(bad)?;
                let id: u64 = id.parse().map_err(|_| bad())?;
                let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
                if id == 0 || host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(bad());
                }
                Ok(PeerSpec {
                    id,
                    addr: addr.to_owned(),
                })
            })
            .collect()
    }
}

impl Config {
    /// Reads and parses a TOML file (not yet validated).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Checks every value; call before binding any port.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.listeners.is_empty() {
            return invalid("listeners", "at least one listener is required");
        }
        if let Err(e) = starling_plugins::PluginChain::build(&self.plugins) {
            return invalid("plugins", &e.to_string());
        }
        let mut names = std::collections::HashSet::new();
        for listener in &self.listeners {
            if !names.insert(listener.name.as_str()) {
                return invalid("listeners.name", "listener names must be unique");
            }
            listener.validate()?;
        }
        if self.node.id == 0 {
            return invalid("node.id", "must be at least 1");
        }
        if let Err((key, reason)) = self.telemetry.validate() {
            return Err(ConfigError::Invalid { key, reason });
        }
        if self.auth.max_concurrent_password_checks == 0 {
            return invalid("auth.max_concurrent_password_checks", "must be at least 1");
        }
        if !(64..=268_435_460).contains(&l.max_packet_size) {
            return invalid("limits.max_packet_size", "must be between 64 and 268435460");
        }
        if l.max_connect_packet_size < 64 || l.max_connect_packet_size > l.max_packet_size {
            return invalid(
                "limits.max_connect_packet_size",
                "must be at least 64 and at most limits.max_packet_size",
            );
        }
        if l.max_inflight == 0 {
            return invalid("limits.max_inflight", "must be at least 1");
        }
        if l.receive_maximum == 0 {
            return invalid("limits.receive_maximum", "must be at least 1");
        }
        if l.max_queued_messages == 0 {
            return invalid("limits.max_queued_messages", "must be at least 1");
        }
        if l.max_subscriptions_per_client == 0 {
            return invalid("limits.max_subscriptions_per_client", "must be at least 1");
        }
        if !(1..=65_535).contains(&l.max_topic_length) {
            return invalid("limits.max_topic_length", "must be between 1 and 65535");
        }
        if !(1..=1024).contains(&l.max_topic_levels) {
            return invalid("limits.max_topic_levels", "must be between 1 and 1024");
        }
        if l.max_filters_per_packet == 0 {
            return invalid("limits.max_filters_per_packet", "must be at least 1");
        }
        if l.max_connections == 0 {
            return invalid("limits.max_connections", "must be at least 1");
        }
        if l.max_sessions == 0 {
            return invalid("limits.max_sessions", "must be at least 1");
        }
        if self.session.connect_timeout.is_zero() {
            return invalid("session.connect_timeout", "must be positive");
        }
        if self.session.max_keep_alive_secs == 0 {
            return invalid("session.max_keep_alive_secs", "must be at least 1");
        }
        if self.session.expiry_check_interval.is_zero() {
            return invalid("session.expiry_check_interval", "must be positive");
        }
        if self.node.shutdown_grace.is_zero() {
            return invalid("node.shutdown_grace", "must be positive");
        }
        if self.node.drain_window >= self.node.shutdown_grace {
            return invalid(
                "node.drain_window",
                "must be shorter than node.shutdown_grace",
            );
        }
        let c = &self.cluster;
        let peers = c.peer_specs()?;
        if peers.iter().any(|p| p.id == self.node.id) {
            return invalid("cluster.peers", "must not list this node's own id");
        }
        let mut ids: Vec<u64> = peers.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != peers.len() {
            return invalid("cluster.peers", "node ids must be unique");
        }
        if !peers.is_empty() && c.listen.is_none() {
            return invalid("cluster.listen", "is required when cluster.peers is set");
        }
        if !peers.is_empty() && c.secret_file.is_none() {
            return invalid(
                "cluster.secret_file",
                "is required when cluster.peers is set",
            );
        }
        if c.heartbeat.is_zero()
            || c.election_timeout_min <= c.heartbeat
            || c.election_timeout_max <= c.election_timeout_min
        {
            return invalid(
                "cluster.heartbeat",
                "need 0 < heartbeat < election_timeout_min < election_timeout_max",
            );
        }
        if c.snapshot_every == 0 {
            return invalid("cluster.snapshot_every", "must be at least 1");
        }
        if c.request_timeout.is_zero() {
            return invalid("cluster.request_timeout", "must be positive");
        }
        Ok(())
    }

    /// The max session expiry in whole seconds, as the protocol counts it.
    pub fn max_session_expiry_secs(&self) -> u32 {
        u32::try_from(self.session.max_session_expiry.as_secs()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_matches_the_defaults() {
        let text = include_str!("../../docs/config.example.toml");
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        let d = Config::default();
        assert_eq!(format!("{:?}", c.limits), format!("{:?}", d.limits));
        assert_eq!(format!("{:?}", c.session), format!("{:?}", d.session));
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = toml::from_str::<Config>("[limits]\nmax_packet_sise = 10\n").unwrap_err();
        assert!(err.to_string().contains("max_packet_sise"), "{err}");
    }

    #[test]
    fn durations_are_human_readable() {
        let c: Config = toml::from_str("[session]\nmax_session_expiry = \"2h\"\n").unwrap();
        assert_eq!(c.max_session_expiry_secs(), 7200);
    }

    #[test]
    fn peers_are_parsed_and_checked() {
        let c: Config = toml::from_str(
            "[cluster]\nlisten = \"127.0.0.1:7946\"\nsecret_file = \"/s\"\npeers = [\"2@node-2:7946\", \"3@10.0.0.3:7946\"]\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.cluster.peer_specs().unwrap()[0].addr, "node-2:7946");
        for bad in ["node-2:7946", "x@h:1", "0@h:1", "2@h", "2@:1", "1@self:1"] {
            let mut c = c.clone();
            c.cluster.peers = vec![bad.to_owned()];
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("cluster.peers"), "{bad}: {err}");
        }
        let mut no_secret = c.clone();
        no_secret.cluster.secret_file = None;
        assert!(
            no_secret
                .validate()
                .unwrap_err()
                .to_string()
                .contains("secret_file")
        );
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let c: Config = toml::from_str("[limits]\nmax_inflight = 0\n").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("limits.max_inflight"), "{err}");
    }
}
