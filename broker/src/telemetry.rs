//! Security telemetry: what a device's behaviour says about it.
//!
//! - [`PublishRate`]: each connection's publish rate against its own
//!   rolling baseline (EWMA). A quiet sensor that suddenly floods raises a
//!   `publish_rate_anomaly`, and the class's response ladder answers:
//!   observe → throttle → disconnect (v5 0x96) → temporary ban.
//! - [`Telemetry::on_accept`]: connection attempts per source network (/24,
//!   /64) against their baseline (`source_network_spike`).
//! - [`Telemetry::on_auth_failure`]: bursts of failed logins from one source
//!   or one client id (`auth_failure_burst`, optionally a ban).
//! - [`Telemetry::unexpected_source`]: a class connecting from outside the
//!   zones it is expected in (refused when the class is strict).
//! - [`cert_expiry_bucket`]: client certificates by days until expiry.
//!
//! Everything here is node-local and approximate by design; bans it issues
//! go through the replicated log like any other ban.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ipnet::IpNet;
use parking_lot::Mutex;

mod client;
mod config;
mod rate;

pub(crate) use client::{Action, ClientTelemetry};
pub use config::{ClassTelemetry, Step, TelemetryConfig};
pub(crate) use rate::{PublishRate, TokenBucket, Verdict};

/// Most entries any per-source table keeps (a scan from many addresses must
/// not grow memory without bound).
const MAX_TRACKED: usize = 100_000;

/// The rules for one class, resolved from the config.
#[derive(Debug)]
pub(crate) struct ClassRules {
    pub factor: f64,
    pub floor: f64,
    pub response: Step,
    pub expected_zones: Vec<String>,
    pub strict: bool,
    /// Class-wide publish budget (messages per second), shared by every
    /// client of the class on this node.
    pub bucket: Option<Mutex<TokenBucket>>,
}

/// Counters for metrics (low cardinality: class, kind).
#[derive(Debug, Default)]
pub(crate) struct TelemetryStats {
    /// Publish-rate anomalies by class.
    pub anomalies: Mutex<BTreeMap<String, u64>>,
    /// Ladder responses by step (`throttle`, `disconnect`, `ban`).
    pub responses: Mutex<BTreeMap<&'static str, u64>>,
    /// Unexpected-source connections by class.
    pub unexpected_source: Mutex<BTreeMap<String, u64>>,
    /// Client certificates seen at CONNECT by class and expiry bucket.
    pub client_certs: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Source-network connection spikes.
    pub network_spikes: AtomicU64,
    /// Authentication-failure bursts.
    pub auth_bursts: AtomicU64,
}

/// A window counter for bursts.
#[derive(Debug, Clone, Copy)]
struct Burst {
    start: Instant,
    count: u32,
    fired: bool,
}

/// Connection attempts of one source network.
#[derive(Debug, Clone, Copy)]
struct NetRate {
    start: Instant,
    count: u32,
    baseline: f64,
    windows: u32,
    flagged: bool,
}

/// A burst of failed logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthBurst {
    /// `source` or `client_id`.
    pub by: &'static str,
    /// The source address or client id.
    pub key: String,
    /// Failures in the window.
    pub count: u32,
}

/// A spike of connections from one network.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkSpike {
    pub network: IpNet,
    pub observed: f64,
    pub baseline: f64,
}

/// The node's telemetry state.
pub(crate) struct Telemetry {
    pub cfg: TelemetryConfig,
    default: Arc<ClassRules>,
    classes: HashMap<String, Arc<ClassRules>>,
    auth_by_source: DashMap<IpAddr, Burst>,
    auth_by_client: DashMap<String, Burst>,
    networks: DashMap<IpNet, NetRate>,
    pub stats: TelemetryStats,
}

impl Telemetry {
    pub fn new(cfg: &TelemetryConfig) -> Telemetry {
        let resolve = |c: Option<&ClassTelemetry>| {
            Arc::new(ClassRules {
                factor: c
                    .and_then(|c| c.anomaly_factor)
                    .unwrap_or(cfg.anomaly_factor),
                floor: c.and_then(|c| c.anomaly_floor).unwrap_or(cfg.anomaly_floor),
                response: c.and_then(|c| c.response).unwrap_or(cfg.response),
                expected_zones: c.map(|c| c.expected_zones.clone()).unwrap_or_default(),
                strict: c.is_some_and(|c| c.strict),
                bucket: c
                    .and_then(|c| c.rate_limit)
                    .filter(|r| *r > 0.0)
                    .map(|r| Mutex::new(TokenBucket::new(r, r))),
            })
        };
        Telemetry {
            default: resolve(None),
            classes: cfg
                .classes
                .iter()
                .map(|(name, c)| (name.clone(), resolve(Some(c))))
                .collect(),
            cfg: cfg.clone(),
            auth_by_source: DashMap::new(),
            auth_by_client: DashMap::new(),
            networks: DashMap::new(),
            stats: TelemetryStats::default(),
        }
    }

    /// The rules of `class` (the defaults when it has none of its own).
    pub fn rules(&self, class: &str) -> Arc<ClassRules> {
        self.classes
            .get(class)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }

    /// A new connection's tracker (`None` with telemetry off).
    pub fn client(&self, class: &str) -> Option<ClientTelemetry> {
        self.cfg
            .enabled
            .then(|| ClientTelemetry::new(self.rules(class), Instant::now()))
    }

    /// Counts a ladder response.
    pub fn count_response(&self, step: &'static str) {
        *self.stats.responses.lock().entry(step).or_default() += 1;
    }

    /// Counts an anomaly of `class`.
    pub fn count_anomaly(&self, class: &str) {
        *self
            .stats
            .anomalies
            .lock()
            .entry(class.to_owned())
            .or_default() += 1;
    }

    /// A connection attempt from `ip` (before any handshake). Returns a
    /// spike the first time its network's rate leaves the baseline.
    pub fn on_accept(&self, ip: IpAddr, now: Instant) -> Option<NetworkSpike> {
        if !self.cfg.enabled {
            return None;
        }
        let network = network_of(ip);
        if self.networks.len() >= MAX_TRACKED && !self.networks.contains_key(&network) {
            let window = self.cfg.window * 4;
            self.networks
                .retain(|_, n| now.duration_since(n.start) < window);
            if self.networks.len() >= MAX_TRACKED {
                return None;
            }
        }
        let mut n = self.networks.entry(network).or_insert(NetRate {
            start: now,
            count: 0,
            baseline: 0.0,
            windows: 0,
            flagged: false,
        });
        n.count += 1;
        let elapsed = now.duration_since(n.start);
        if elapsed < self.cfg.window {
            return None;
        }
        let rate = f64::from(n.count) / elapsed.as_secs_f64();
        n.start = now;
        n.count = 0;
        let spike = n.windows >= self.cfg.warmup_windows
            && rate > self.cfg.network_spike_factor * n.baseline
            && rate > self.cfg.network_spike_floor;
        if spike {
            let first = !n.flagged;
            n.flagged = true;
            if first {
                self.stats.network_spikes.fetch_add(1, Ordering::Relaxed);
                return Some(NetworkSpike {
                    network,
                    observed: rate,
                    baseline: n.baseline,
                });
            }
            return None;
        }
        n.flagged = false;
        n.baseline = ewma(n.baseline, rate, n.windows);
        n.windows += 1;
        None
    }

    /// A failed login. Returns the bursts it completes (each reported once
    /// per window).
    pub fn on_auth_failure(&self, ip: IpAddr, client_id: &str, now: Instant) -> Vec<AuthBurst> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        let window = self.cfg.auth_failure_window;
        let threshold = self.cfg.auth_failure_burst;
        let mut out = Vec::new();
        if let Some(count) = bump(&self.auth_by_source, ip, now, window, threshold) {
            out.push(AuthBurst {
                by: "source",
                key: ip.to_string(),
                count,
            });
        }
        if !client_id.is_empty()
            && let Some(count) = bump(
                &self.auth_by_client,
                client_id.to_owned(),
                now,
                window,
                threshold,
            )
        {
            out.push(AuthBurst {
                by: "client_id",
                key: client_id.to_owned(),
                count,
            });
        }
        self.stats
            .auth_bursts
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// Whether a client of `class` from `ip` is outside its expected zones
    /// (`in_zone(name, ip)` answers for the policy in force). `None` when
    /// the class expects no zones or the source is in one of them.
    pub fn unexpected_source(
        &self,
        class: &str,
        ip: IpAddr,
        in_zone: impl Fn(&str, IpAddr) -> Option<bool>,
    ) -> Option<bool> {
        if !self.cfg.enabled {
            return None;
        }
        let rules = self.rules(class);
        if rules.expected_zones.is_empty() {
            return None;
        }
        // A zone missing from the policy counts as "not in it": fail closed.
        let expected = rules
            .expected_zones
            .iter()
            .any(|z| in_zone(z, ip) == Some(true));
        if expected {
            return None;
        }
        *self
            .stats
            .unexpected_source
            .lock()
            .entry(class.to_owned())
            .or_default() += 1;
        Some(rules.strict)
    }

    /// Counts a client certificate of `class` by days until expiry.
    pub fn on_client_cert(&self, class: &str, not_after_unix: i64, now_unix: i64) {
        let bucket = cert_expiry_bucket(not_after_unix, now_unix);
        *self
            .stats
            .client_certs
            .lock()
            .entry((class.to_owned(), bucket))
            .or_default() += 1;
    }
}

/// Counts one event in `key`'s window; `Some(count)` when the count reaches
/// `threshold` for the first time in the window.
fn bump<K: std::hash::Hash + Eq + Clone>(
    map: &DashMap<K, Burst>,
    key: K,
    now: Instant,
    window: Duration,
    threshold: u32,
) -> Option<u32> {
    if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
        map.retain(|_, b| now.duration_since(b.start) < window);
        if map.len() >= MAX_TRACKED {
            return None;
        }
    }
    let mut b = map.entry(key).or_insert(Burst {
        start: now,
        count: 0,
        fired: false,
    });
    if now.duration_since(b.start) >= window {
        *b = Burst {
            start: now,
            count: 0,
            fired: false,
        };
    }
    b.count += 1;
    if b.count >= threshold && !b.fired {
        b.fired = true;
        return Some(b.count);
    }
    None
}

/// The network a source belongs to for spike detection: /24 for IPv4, /64
/// for IPv6 (what one site or one ISP customer usually holds).
pub(crate) fn network_of(ip: IpAddr) -> IpNet {
    let ip = ip.to_canonical();
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    IpNet::new(ip, prefix).map_or_else(|_| IpNet::from(ip), |n| n.trunc())
}

/// Exponentially weighted moving average; the first sample is the average.
pub(crate) fn ewma(avg: f64, sample: f64, samples: u32) -> f64 {
    const ALPHA: f64 = 0.2;
    if samples == 0 {
        sample
    } else {
        avg + ALPHA * (sample - avg)
    }
}

/// The bucket label of a certificate expiring at `not_after` (Unix s).
pub(crate) fn cert_expiry_bucket(not_after: i64, now: i64) -> &'static str {
    let days = not_after.saturating_sub(now).div_euclid(86_400);
    match days {
        d if not_after <= now || d < 0 => "expired",
        0..7 => "7d",
        7..30 => "30d",
        30..90 => "90d",
        _ => "later",
    }
}

#[cfg(test)]
mod tests;
