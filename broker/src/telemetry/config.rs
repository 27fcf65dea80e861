//! `[telemetry]`: thresholds and the response ladder, per class.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// The highest step of the response ladder a class climbs when a client
/// keeps flooding: each further anomalous window climbs one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Events and metrics only.
    Observe,
    /// Also slow the client to its allowed rate (its socket is read no
    /// faster; nothing is dropped).
    Throttle,
    /// Also disconnect it (v5: DISCONNECT 0x96 "message rate too high").
    Disconnect,
    /// Also ban its client id for `ban_duration`.
    Ban,
}

impl Step {
    /// Metric and event label.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Observe => "observe",
            Step::Throttle => "throttle",
            Step::Disconnect => "disconnect",
            Step::Ban => "ban",
        }
    }
}

/// Security telemetry settings (`docs/observability.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Off: no per-publish or per-connection tracking at all.
    pub enabled: bool,
    /// Rate sampling window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Windows observed before a baseline is trusted.
    pub warmup_windows: u32,
    /// A window's publish rate above `anomaly_factor` × baseline …
    pub anomaly_factor: f64,
    /// … and above this many messages per second is an anomaly.
    pub anomaly_floor: f64,
    /// Highest ladder step for classes without their own setting.
    pub response: Step,
    /// How long ladder and burst bans last.
    #[serde(with = "humantime_serde")]
    pub ban_duration: Duration,
    /// Failed logins from one source or one client id within
    /// `auth_failure_window` that make a burst.
    pub auth_failure_burst: u32,
    /// The window for `auth_failure_burst`.
    #[serde(with = "humantime_serde")]
    pub auth_failure_window: Duration,
    /// Ban the source address (or client id) of a burst for `ban_duration`.
    pub auth_failure_ban: bool,
    /// Connection attempts per second from one /24 or /64 above this factor
    /// of its baseline …
    pub network_spike_factor: f64,
    /// … and above this rate are a spike.
    pub network_spike_floor: f64,
    /// Per-class overrides, by the class names of the policy.
    pub classes: BTreeMap<String, ClassTelemetry>,
}

impl Default for TelemetryConfig {
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            enabled: true,
            window: Duration::from_secs(10),
            warmup_windows: 6,
            anomaly_factor: 10.0,
            anomaly_floor: 10.0,
            response: Step::Observe,
            ban_duration: Duration::from_secs(600),
            auth_failure_burst: 10,
            auth_failure_window: Duration::from_secs(60),
            auth_failure_ban: false,
            network_spike_factor: 10.0,
            network_spike_floor: 20.0,
            classes: BTreeMap::new(),
        }
    }
}

/// One class's telemetry settings; unset values come from `[telemetry]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassTelemetry {
    /// See [`TelemetryConfig::anomaly_factor`].
    pub anomaly_factor: Option<f64>,
    /// See [`TelemetryConfig::anomaly_floor`].
    pub anomaly_floor: Option<f64>,
    /// Highest ladder step for this class.
    pub response: Option<Step>,
    /// Zones (names from the policy's `[zones]`) this class connects from;
    /// empty = anywhere.
    pub expected_zones: Vec<String>,
    /// Refuse connections from outside `expected_zones` (v5 0x87).
    pub strict: bool,
    /// Publishes per second for the whole class on this node (0 or absent
    /// = no limit); clients over it are slowed down, not dropped.
    pub rate_limit: Option<f64>,
}

impl TelemetryConfig {
    /// Checks the values; the key path of the first bad one.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.window < Duration::from_millis(10) {
            return Err(("telemetry.window", "must be at least 10ms".into()));
        }
        if !positive(self.anomaly_factor) || self.anomaly_factor < 1.0 {
            return Err(("telemetry.anomaly_factor", "must be at least 1".into()));
        }
        if !self.anomaly_floor.is_finite() || self.anomaly_floor < 0.0 {
            return Err(("telemetry.anomaly_floor", "must be 0 or more".into()));
        }
        if self.auth_failure_burst == 0 {
            return Err(("telemetry.auth_failure_burst", "must be at least 1".into()));
        }
        if self.auth_failure_window.is_zero() || self.ban_duration.is_zero() {
            return Err((
                "telemetry.auth_failure_window",
                "windows and ban_duration must be positive".into(),
            ));
        }
        if !positive(self.network_spike_factor) || !self.network_spike_floor.is_finite() {
            return Err(("telemetry.network_spike_factor", "must be positive".into()));
        }
        for (name, c) in &self.classes {
            let bad_factor = c.anomaly_factor.is_some_and(|f| !positive(f) || f < 1.0);
            let bad_floor = c.anomaly_floor.is_some_and(|f| !f.is_finite() || f < 0.0);
            let bad_limit = c.rate_limit.is_some_and(|r| !r.is_finite() || r < 0.0);
            if bad_factor || bad_floor || bad_limit {
                return Err((
                    "telemetry.classes",
                    format!("class {name}: factors ≥ 1, floors and rate_limit ≥ 0"),
                ));
            }
        }
        Ok(())
    }
}
