//! Security events: structured, rate-limited records of what a security
//! team wants to see (failed logins, denied actions, policy changes).
//!
//! Events are `tracing` events on the target [`TARGET`]; the binary writes
//! that target as JSON lines whatever the main log format is, so a SIEM can
//! ingest them directly. A token bucket caps how many are written per second
//! (a flood of denials must not fill the disk); suppressed events are still
//! counted per kind and the next written event says how many were skipped.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use crate::config::SecurityConfig;

/// The `tracing` target security events are written on.
pub const TARGET: &str = "starling::security";

/// What happened. The label is the `kind` field of the event and of the
/// security-event metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A CONNECT failed authentication.
    AuthFailure,
    /// The policy denied an action (connect, publish, subscribe, will…).
    AclDenied,
    /// A new policy is in force.
    PolicyApplied,
    /// A policy file was refused (the previous policy stays).
    PolicyRejected,
    /// A policy change removed a live subscription or closed a client.
    Revoked,
    /// A client's publish rate left its baseline.
    PublishRateAnomaly,
    /// The response ladder acted (throttle, disconnect, ban).
    Response,
    /// A class connected from outside its expected zones.
    UnexpectedSource,
    /// Connection attempts from one network jumped above their baseline.
    SourceNetworkSpike,
    /// Many failed logins from one source or for one client id.
    AuthFailureBurst,
    /// A banned client tried to connect.
    BannedConnect,
}

impl EventKind {
    const ALL: [EventKind; 11] = [
        EventKind::AuthFailure,
        EventKind::AclDenied,
        EventKind::PolicyApplied,
        EventKind::PolicyRejected,
        EventKind::Revoked,
        EventKind::PublishRateAnomaly,
        EventKind::Response,
        EventKind::UnexpectedSource,
        EventKind::SourceNetworkSpike,
        EventKind::AuthFailureBurst,
        EventKind::BannedConnect,
    ];

    /// Low-cardinality label.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AuthFailure => "auth_failure",
            EventKind::AclDenied => "acl_denied",
            EventKind::PolicyApplied => "policy_applied",
            EventKind::PolicyRejected => "policy_rejected",
            EventKind::Revoked => "revoked",
            EventKind::PublishRateAnomaly => "publish_rate_anomaly",
            EventKind::Response => "response",
            EventKind::UnexpectedSource => "unexpected_source",
            EventKind::SourceNetworkSpike => "source_network_spike",
            EventKind::AuthFailureBurst => "auth_failure_burst",
            EventKind::BannedConnect => "banned_connect",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Counts every event and decides which ones are written.
pub(crate) struct SecurityEvents {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
    suppressed: AtomicU64,
    counts: [AtomicU64; EventKind::ALL.len()],
}

impl SecurityEvents {
    pub fn new(cfg: &SecurityConfig) -> SecurityEvents {
        SecurityEvents {
            rate: f64::from(cfg.events_per_second),
            burst: f64::from(cfg.events_burst.max(1)),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(cfg.events_burst.max(1)),
                last: Instant::now(),
            }),
            suppressed: AtomicU64::new(0),
            counts: Default::default(),
        }
    }

    /// Counts an event of `kind`; `Some(n)` if it should be written (with
    /// `n` events suppressed since the last written one), `None` if the
    /// rate limit swallows it.
    pub fn admit(&self, kind: EventKind) -> Option<u64> {
        self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
        let mut b = self.bucket.lock();
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Events seen per kind (written or not).
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        EventKind::ALL
            .iter()
            .map(|k| (k.as_str(), self.counts[k.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

/// The parties of an event that concerns one client.
pub(crate) struct Who<'a> {
    pub identity: &'a str,
    pub class: &'a str,
    pub client_id: &'a str,
    pub source: IpAddr,
    pub listener: &'a str,
}

impl SecurityEvents {
    /// The policy denied `action` on `topic` (empty for connect).
    pub fn acl_denied(&self, who: &Who<'_>, action: &str, topic: &str, rule: &str) {
        if let Some(suppressed) = self.admit(EventKind::AclDenied) {
            tracing::warn!(
                target: TARGET,
                kind = EventKind::AclDenied.as_str(),
                identity = who.identity,
                class = who.class,
                client_id = who.client_id,
                source = %who.source,
                listener = who.listener,
                action,
                topic,
                rule,
                suppressed,
                "access denied"
            );
        }
    }

    /// A CONNECT failed authentication.
    pub fn auth_failure(
        &self,
        source: IpAddr,
        listener: &str,
        client_id: &str,
        username: Option<&str>,
        reason: &str,
    ) {
        if let Some(suppressed) = self.admit(EventKind::AuthFailure) {
            tracing::warn!(
                target: TARGET,
                kind = EventKind::AuthFailure.as_str(),
                client_id,
                username = username.unwrap_or(""),
                source = %source,
                listener,
                reason,
                suppressed,
                "authentication failed"
            );
        }
    }

    /// A policy change removed something a client had.
    pub fn revoked(&self, who: &Who<'_>, what: &str, topic: &str) {
        if let Some(suppressed) = self.admit(EventKind::Revoked) {
            tracing::warn!(
                target: TARGET,
                kind = EventKind::Revoked.as_str(),
                identity = who.identity,
                class = who.class,
                client_id = who.client_id,
                source = %who.source,
                listener = who.listener,
                what,
                topic,
                suppressed,
                "revoked by a policy change"
            );
        }
    }

    /// A client's publish rate left its baseline (once per episode).
    pub fn publish_rate_anomaly(&self, who: &Who<'_>, observed: f64, baseline: f64) {
        if let Some(suppressed) = self.admit(EventKind::PublishRateAnomaly) {
            tracing::warn!(
                target: TARGET,
                kind = EventKind::PublishRateAnomaly.as_str(),
                identity = who.identity,
                class = who.class,
                client_id = who.client_id,
                source = %who.source,
                listener = who.listener,
                observed_per_sec = observed,
                baseline_per_sec = baseline,
                suppressed,
                "publish rate anomaly"
            );
        }
    }

    /// The response ladder acted on a client (`throttle`, `disconnect`, `ban`).
    pub fn response(&self, who: &Who<'_>, step: &str, detail: &str) {
        if let Some(suppressed) = self.admit(EventKind::Response) {
            tracing::warn!(
                target: TARGET,
                kind = EventKind::Response.as_str(),
                identity = who.identity,
                class = who.class,
                client_id = who.client_id,
                source = %who.source,
                listener = who.listener,
                step,
                detail,
                suppressed,
                "response to a misbehaving client"
            );
        }
    }

    /// A class connected from outside its expected zones.
    pub fn unexpected_source(&self, who: &Who<'_>, refused: bool) {
        if let Some(suppressed) = self.admit(EventKind::UnexpectedSource) {
            tracing::warn!(
                target: TARGET,
                kind = EventKind::UnexpectedSource.as_str(),
                identity = who.identity,
                class = who.class,
                client_id = who.client_id,
                source = %who.source,
                listener = who.listener,
                refused,
                suppressed,
                "connection from an unexpected network"
            );
        }
    }

    /// Connection attempts from one network jumped.
    pub fn source_network_spike(&self, network: &str, observed: f64, baseline: f64) {
        if let Some(suppressed) = self.admit(EventKind::SourceNetworkSpike) {
            tracing::warn!(
                target: TARGET,
                kind = EventKind::SourceNetworkSpike.as_str(),
                network,
                observed_per_sec = observed,
                baseline_per_sec = baseline,
                suppressed,
                "connection spike from one network"
            );
        }
    }

    /// Many failed logins from one source or for one client id.
    pub fn auth_failure_burst(&self, by: &str, key: &str, count: u32, banned: bool) {
        if let Some(suppressed) = self.admit(EventKind::AuthFailureBurst) {
            tracing::warn!(
                target: TARGET,
                kind = EventKind::AuthFailureBurst.as_str(),
                by,
                key,
                count,
                banned,
                suppressed,
                "burst of authentication failures"
            );
        }
    }

    /// A banned client tried to connect.
    pub fn banned_connect(&self, source: IpAddr, listener: &str, client_id: &str, ban: &str) {
        if let Some(suppressed) = self.admit(EventKind::BannedConnect) {
            tracing::warn!(
                target: TARGET,
                kind = EventKind::BannedConnect.as_str(),
                client_id,
                source = %source,
                listener,
                ban,
                suppressed,
                "banned client refused"
            );
        }
    }

    /// A policy is in force (always written: rare and important).
    pub fn policy_applied(&self, seq: u64, revision: &str, hash: &str) {
        self.counts[EventKind::PolicyApplied.index()].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: TARGET,
            kind = EventKind::PolicyApplied.as_str(),
            policy_seq = seq,
            revision,
            hash,
            "policy in force"
        );
    }

    /// A policy file was refused (always written).
    pub fn policy_rejected(&self, source: &str, error: &str) {
        self.counts[EventKind::PolicyRejected.index()].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: TARGET,
            kind = EventKind::PolicyRejected.as_str(),
            source,
            error,
            "policy refused; the previous policy stays"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_caps_the_burst_and_counts_everything() {
        let ev = SecurityEvents::new(&SecurityConfig {
            events_per_second: 0,
            events_burst: 3,
            publish_sys: false,
        });
        let written: Vec<_> = (0..10).map(|_| ev.admit(EventKind::AclDenied)).collect();
        assert_eq!(written.iter().filter(|w| w.is_some()).count(), 3);
        let acl = ev.counts().into_iter().find(|(k, _)| *k == "acl_denied");
        assert_eq!(acl, Some(("acl_denied", 10)));
    }
}

/// Copies of written security events, for `$SYS/starling/security/{kind}`
/// (`[security] publish_sys = true`). Set once by the broker that wants
/// them; the binary installs [`SysLayer`] beside its log layers.
static SYS_SINK: std::sync::OnceLock<tokio::sync::mpsc::Sender<(String, String)>> =
    std::sync::OnceLock::new();

/// Registers the receiver of `$SYS` copies (the first broker of the process).
pub(crate) fn sys_events() -> Option<tokio::sync::mpsc::Receiver<(String, String)>> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    SYS_SINK.set(tx).ok().map(|()| rx)
}

/// A `tracing` layer that turns every written security event into a JSON
/// object (kind, fields, message) and hands it to the broker for
/// `$SYS/starling/security/{kind}`. Events the rate limit swallowed never
/// reach it; a full channel drops the copy (the log line stays).
#[derive(Debug, Default)]
pub struct SysLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SysLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _cx: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let Some(tx) = SYS_SINK.get() else {
            return;
        };
        let mut v = JsonVisitor::default();
        event.record(&mut v);
        let kind =
            v.0.get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("event")
                .to_owned();
        let _ = tx.try_send((kind, serde_json::Value::Object(v.0).to_string()));
    }
}

#[derive(Default)]
struct JsonVisitor(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}
