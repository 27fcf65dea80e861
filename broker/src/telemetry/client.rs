//! One connection's telemetry: its publish rate and where it stands on the
//! response ladder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ClassRules, PublishRate, Step, TelemetryConfig, TokenBucket, Verdict};

/// What the connection must do after a publish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Action {
    /// Nothing new.
    None,
    /// A window closed: record its rate (for the admin API).
    Rate(f64),
    /// An anomalous episode began: report it.
    Anomaly { observed: f64, baseline: f64 },
    /// Throttling starts at `rate` messages per second.
    Throttle { rate: f64 },
    /// Disconnect the client (v5 0x96), and ban its client id if `ban`.
    Disconnect { ban: bool },
}

/// A connection's publish-rate tracker and ladder position.
#[derive(Debug)]
pub(crate) struct ClientTelemetry {
    rate: PublishRate,
    rules: Arc<ClassRules>,
    throttle: Option<TokenBucket>,
    /// The client had to wait for a token in the current window.
    waited: bool,
    /// Consecutive windows the client flooded or pressed against its throttle.
    strikes: u32,
}

impl ClientTelemetry {
    pub fn new(rules: Arc<ClassRules>, now: Instant) -> ClientTelemetry {
        ClientTelemetry {
            rate: PublishRate::new(now),
            rules,
            throttle: None,
            waited: false,
            strikes: 0,
        }
    }

    /// Counts one publish. Returns what to do and how long to wait before
    /// reading on (throttling: the socket is simply read later).
    pub fn on_publish(&mut self, now: Instant, cfg: &TelemetryConfig) -> (Action, Duration) {
        let verdict = self
            .rate
            .on_publish(now, cfg.window, cfg.warmup_windows, &self.rules);
        let action = match verdict {
            None => Action::None,
            Some(v) => self.judge(v),
        };
        let mut wait = Duration::ZERO;
        if let Some(b) = self.throttle.as_mut() {
            wait = b.take(now);
            self.waited |= !wait.is_zero();
        }
        if let Some(b) = &self.rules.bucket {
            wait = wait.max(b.lock().take(now));
        }
        (action, wait)
    }

    /// Climbs or leaves the ladder at a window boundary.
    fn judge(&mut self, v: Verdict) -> Action {
        let pressing = match v {
            Verdict::Anomalous { .. } => true,
            // Throttled at the allowed rate, a flood looks normal: it is
            // still a flood if the client had to wait.
            Verdict::Normal | Verdict::Calm => self.throttle.is_some() && self.waited,
        };
        self.waited = false;
        if !pressing {
            self.strikes = 0;
            self.throttle = None;
            return Action::Rate(self.rate.last_rate);
        }
        self.strikes += 1;
        let top = self.rules.response;
        match (self.strikes, v) {
            (
                1,
                Verdict::Anomalous {
                    observed, baseline, ..
                },
            ) => Action::Anomaly { observed, baseline },
            (2, _) if top >= Step::Throttle => {
                let rate = self.rate.allowed_rate(&self.rules);
                self.throttle = Some(TokenBucket::new(rate, rate));
                Action::Throttle { rate }
            }
            (n, _) if n >= 3 && top >= Step::Disconnect => Action::Disconnect {
                ban: top >= Step::Ban,
            },
            _ => Action::Rate(self.rate.last_rate),
        }
    }
}
