//! Bookkeeping: which sequence numbers arrived (loss and duplicates),
//! latency histograms, counters over time, and CPU / memory of this process
//! and of the broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::proto;

/// Width of one timeline interval.
pub const TICK: Duration = Duration::from_millis(100);

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

/// Increments per [`TICK`] of shared counters, read by a task of its own so
/// the clients only ever bump atomics they already keep.
pub struct Timeline<const N: usize> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<[Vec<u64>; N]>,
}

impl<const N: usize> Timeline<N> {
    /// Samples `counters` every [`TICK`] from `start` on.
    ///
    /// The baseline is read here, not at the first tick: clients that start
    /// at `start` would otherwise have counted a batch before a slightly late
    /// first tick, and that batch would be missing from the series. Anything
    /// counted between this call and `start` lands in the first interval.
    ///
    /// Dropping the timeline without [`Timeline::finish`] ends the sampler too
    /// (its stop channel closes), so an aborted run leaves no task behind.
    pub fn start(counters: [Arc<AtomicU64>; N], start: Instant) -> Self {
        let base = read(&counters);
        let (stop, stopped) = oneshot::channel();
        Timeline {
            stop,
            task: tokio::spawn(sample(counters, base, start, stopped)),
        }
    }

    /// Stops sampling; one series per counter, element `i` = increase during
    /// the `i`-th interval after `start`, so each series sums to its
    /// counter's increase. The last element covers the interval in progress
    /// (shorter, so it may read low) and is left out when nothing moved in it.
    pub async fn finish(self) -> [Vec<u64>; N] {
        let _ = self.stop.send(());
        self.task
            .await
            .unwrap_or_else(|_| std::array::from_fn(|_| Vec::new()))
    }
}

fn read<const N: usize>(counters: &[Arc<AtomicU64>; N]) -> [u64; N] {
    counters.each_ref().map(|c| c.load(Ordering::Relaxed))
}

async fn sample<const N: usize>(
    counters: [Arc<AtomicU64>; N],
    mut prev: [u64; N],
    start: Instant,
    mut stopped: oneshot::Receiver<()>,
) -> [Vec<u64>; N] {
    let mut series: [Vec<u64>; N] = std::array::from_fn(|_| Vec::new());
    // A late tick (busy runtime) fires as soon as it can, so each value still
    // covers about one interval and the series sums to the counter's increase.
    let mut tick = tokio::time::interval_at((start + TICK).into(), TICK);
    loop {
        let last = tokio::select! {
            biased;
            _ = &mut stopped => true,
            _ = tick.tick() => false,
        };
        let now = read(&counters);
        let mut delta = [0; N];
        for ((d, n), p) in delta.iter_mut().zip(now).zip(prev) {
            *d = n.saturating_sub(p);
        }
        // The stragglers of a run (last deliveries, slow CONNACKs) land in
        // the final partial interval; an empty one would only add a false zero.
        if !last || delta.iter().any(|&d| d > 0) {
            for (s, d) in series.iter_mut().zip(delta) {
                s.push(d);
            }
        }
        if last {
            break;
        }
        prev = now;
    }
    series
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

    #[tokio::test(start_paused = true)]
    async fn timeline_counts_per_interval_and_keeps_the_tail() {
        let c = Arc::new(AtomicU64::new(7));
        // Tokio's clock, not std's: only the former moves while time is paused.
        let now = || tokio::time::Instant::now().into_std();
        let start = now() + Duration::from_millis(50);
        let t = Timeline::start([c.clone()], start);
        // Paused time: each sleep lets the sampler take the ticks that fall due.
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.fetch_add(3, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.fetch_add(5, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(230)).await;
        c.fetch_add(100, Ordering::Relaxed);
        let [series] = t.finish().await;
        assert_eq!(series, vec![3, 5, 0, 100]);
        // Nothing moved after the last whole interval: no trailing zero.
        let t = Timeline::start([c.clone()], now());
        tokio::time::sleep(Duration::from_millis(150)).await;
        let [series] = t.finish().await;
        assert_eq!(series, vec![0]);
    }

    #[test]
    fn reads_own_cpu_and_memory() {
        assert!(cpu_seconds("self").is_some());
        assert!(proc_status_kb("self", "VmRSS:").is_some_and(|kb| kb > 0));
    }
}
