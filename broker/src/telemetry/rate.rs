//! Per-connection publish rate against a rolling baseline, and the token
//! bucket that throttles.

use std::time::{Duration, Instant};

use super::{ClassRules, ewma};

/// What a closed window says about a client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    /// The rate left the baseline: `strikes` consecutive anomalous windows.
    Anomalous {
        observed: f64,
        baseline: f64,
        strikes: u32,
    },
    /// A normal window ending an anomalous episode.
    Calm,
    /// A normal window.
    Normal,
}

/// One connection's publish-rate tracker (a few dozen bytes).
#[derive(Debug, Clone)]
pub(crate) struct PublishRate {
    start: Instant,
    count: u32,
    baseline: f64,
    windows: u32,
    strikes: u32,
    /// Rate of the last closed window (messages per second).
    pub last_rate: f64,
}

impl PublishRate {
    pub fn new(now: Instant) -> PublishRate {
        PublishRate {
            start: now,
            count: 0,
            baseline: 0.0,
            windows: 0,
            strikes: 0,
            last_rate: 0.0,
        }
    }

    /// Counts one publish; at a window boundary, judges the window.
    pub fn on_publish(
        &mut self,
        now: Instant,
        window: Duration,
        warmup: u32,
        rules: &ClassRules,
    ) -> Option<Verdict> {
        self.count += 1;
        let elapsed = now.duration_since(self.start);
        if elapsed < window {
            return None;
        }
        let rate = f64::from(self.count) / elapsed.as_secs_f64();
        self.start = now;
        self.count = 0;
        self.last_rate = rate;
        let anomalous =
            self.windows >= warmup && rate > rules.factor * self.baseline && rate > rules.floor;
        if anomalous {
            // The flood is not learnt as the new normal.
            self.strikes += 1;
            return Some(Verdict::Anomalous {
                observed: rate,
                baseline: self.baseline,
                strikes: self.strikes,
            });
        }
        self.baseline = ewma(self.baseline, rate, self.windows);
        self.windows += 1;
        if self.strikes > 0 {
            self.strikes = 0;
            return Some(Verdict::Calm);
        }
        Some(Verdict::Normal)
    }

    /// The rate a throttled client is held to: what would not have been
    /// an anomaly.
    pub fn allowed_rate(&self, rules: &ClassRules) -> f64 {
        (rules.factor * self.baseline).max(rules.floor).max(1.0)
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: Instant::now(),
        }
    }

    /// Takes one token; returns how long the caller must wait for it
    /// (zero when one was available).
    pub fn take(&mut self, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            // Owed: the token is taken now and paid back by waiting.
            Duration::from_secs_f64((-self.tokens / self.rate).min(10.0))
        }
    }
}
