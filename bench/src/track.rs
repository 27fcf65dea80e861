//! Bookkeeping: which sequence numbers arrived (loss and duplicates),
//! latency histograms, and CPU / memory of this process and of the broker.

use std::time::Instant;

use hdrhistogram::Histogram;

use crate::proto;

/// Highest latency the histograms hold, in microseconds (60 s).
const MAX_LATENCY_US: u64 = 60_000_000;

/// A new latency histogram in microseconds with 3 significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?)
}

/// Sequence numbers seen from one publisher.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    bits: Vec<u64>,
    /// Distinct sequence numbers seen.
    pub unique: u64,
    /// Sequence numbers seen again.
    pub dups: u64,
}

impl Seen {
    fn mark(&mut self, seq: u64) {
        let word = (seq / 64) as usize;
        if word >= self.bits.len() {
            self.bits.resize((word + 1).max(self.bits.len() * 2), 0);
        }
        if let Some(w) = self.bits.get_mut(word) {
            let bit = 1u64 << (seq % 64);
            if *w & bit != 0 {
                self.dups += 1;
            } else {
                *w |= bit;
                self.unique += 1;
            }
        }
    }

    /// Lowest sequence number not seen (debugging aid).
    pub fn first_missing(&self) -> Option<u64> {
        let (i, w) = self
            .bits
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)?;
        Some(i as u64 * 64 + u64::from(w.trailing_ones()))
    }

    /// Adds another receiver's view (shared subscriptions): a sequence both saw is a duplicate.
    pub fn merge(&mut self, other: &Seen) {
        if other.bits.len() > self.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        self.dups += other.dups;
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            let both = (*a & *b).count_ones();
            self.dups += u64::from(both);
            self.unique += u64::from((*b & !*a).count_ones());
            *a |= *b;
        }
    }
}

/// What one subscriber received.
pub struct SubStats {
    /// Per publisher id.
    pub seen: Vec<Seen>,
    /// Latency in microseconds (messages sent after the warm-up only).
    pub hist: Histogram<u64>,
    /// PUBLISH packets received.
    pub received: u64,
    /// PUBLISH packets with the DUP flag.
    pub dup_flag: u64,
    /// Payloads without a bench header.
    pub foreign: u64,
    /// Receive time of the last message (ns since the time origin).
    pub last_ns: u64,
    /// Messages sent before this (ns since origin) are not put in the histogram.
    pub warmup_until_ns: u64,
}

impl SubStats {
    /// Empty statistics.
    pub fn new(warmup_until_ns: u64) -> anyhow::Result<Self> {
        Ok(SubStats {
            seen: Vec::new(),
            hist: histogram()?,
            received: 0,
            dup_flag: 0,
            foreign: 0,
            last_ns: 0,
            warmup_until_ns,
        })
    }

    /// Records one delivered payload received at `now_ns`.
    #[inline]
    pub fn record(&mut self, payload: &[u8], dup: bool, now_ns: u64) {
        self.received += 1;
        self.dup_flag += u64::from(dup);
        self.last_ns = now_ns;
        let Some((id, seq, sent)) = proto::parse_header(payload) else {
            self.foreign += 1;
            return;
        };
        let id = id as usize;
        if id >= self.seen.len() {
            self.seen.resize(id + 1, Seen::default());
        }
        if let Some(s) = self.seen.get_mut(id) {
            s.mark(seq);
        }
        if sent >= self.warmup_until_ns {
            self.hist
                .saturating_record(now_ns.saturating_sub(sent) / 1000);
        }
    }
}

/// CPU time of a process in seconds (utime + stime), from /proc/PID/stat.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')' field index 0 is "state" (field 3 of the man page): utime = 14, stime = 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// USER_HZ; 100 on every Linux architecture Starling runs on.
fn clock_ticks() -> f64 {
    100.0
}

/// A `VmXxx:` value of /proc/PID/status in KiB.
pub fn proc_status_kb(pid: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU use of this process and (optionally) the broker over a time window.
#[derive(Clone, Debug)]
pub struct CpuMark {
    at: Instant,
    tool: f64,
    broker: Option<f64>,
}

impl CpuMark {
    /// Takes a reading now.
    pub fn now(broker_pid: Option<&str>) -> Self {
        CpuMark {
            at: Instant::now(),
            tool: cpu_seconds("self").unwrap_or(0.0),
            broker: broker_pid.and_then(cpu_seconds),
        }
    }

    /// (tool %, broker %) of one core between `self` and `later`.
    pub fn percent(&self, later: &CpuMark) -> (f64, Option<f64>) {
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-6);
        let tool = 100.0 * (later.tool - self.tool) / wall;
        let broker = match (self.broker, later.broker) {
            (Some(a), Some(b)) => Some(100.0 * (b - a) / wall),
            _ => None,
        };
        (tool, broker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_counts_unique_and_dups() {
        let mut a = Seen::default();
        for s in [0, 1, 2, 2, 100] {
            a.mark(s);
        }
        assert_eq!((a.unique, a.dups), (4, 1));
        let mut b = Seen::default();
        for s in [2, 3] {
            b.mark(s);
        }
        a.merge(&b);
        assert_eq!((a.unique, a.dups), (5, 2));
    }

    #[test]
    fn reads_own_cpu_and_memory() {
        assert!(cpu_seconds("self").is_some());
        assert!(proc_status_kb("self", "VmRSS:").is_some_and(|kb| kb > 0));
    }
}
