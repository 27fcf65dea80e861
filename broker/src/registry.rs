//! What the admin API may know about a connected client: its identity and
//! a few live figures the connection task keeps up to date.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::access::ClientAuth;

/// A connected client, as the admin API shows it.
#[derive(Debug)]
pub(crate) struct ClientInfo {
    /// Identity, class, source, listener, TLS.
    pub auth: Arc<ClientAuth>,
    /// `3.1.1` or `5.0`.
    pub protocol: &'static str,
    /// When the connection was accepted (Unix ms).
    pub connected_at_ms: u64,
    /// Whether the session outlives the connection.
    pub persistent: bool,
    /// Subscriptions as the client wrote them (updated on SUBSCRIBE,
    /// UNSUBSCRIBE and revocation: rare, so a mutex is fine).
    pub subscriptions: Mutex<Vec<String>>,
    /// Publish rate of the last telemetry window, in milli-messages per
    /// second (an integer so it fits an atomic).
    rate_milli: AtomicU64,
}

impl ClientInfo {
    pub fn new(
        auth: Arc<ClientAuth>,
        protocol: &'static str,
        connected_at_ms: u64,
        persistent: bool,
    ) -> ClientInfo {
        ClientInfo {
            auth,
            protocol,
            connected_at_ms,
            persistent,
            subscriptions: Mutex::new(Vec::new()),
            rate_milli: AtomicU64::new(0),
        }
    }

    /// Records the publish rate of the last window.
    pub fn set_rate(&self, per_sec: f64) {
        let milli = (per_sec * 1000.0).clamp(0.0, u64::MAX as f64) as u64;
        self.rate_milli.store(milli, Ordering::Relaxed);
    }

    /// Publish rate of the last window (messages per second).
    pub fn rate(&self) -> f64 {
        self.rate_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Replaces the subscription list.
    pub fn set_subscriptions(&self, subs: Vec<String>) {
        *self.subscriptions.lock() = subs;
    }
}
