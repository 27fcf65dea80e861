//! The result of one run: JSON for machines, a summary and a markdown row for people.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Scenario;

/// Percentiles of [`latency_cdf`]: the body in steps of 5 for the curve's
/// shape, then ever closer to 100 because the tail is what tells brokers apart.
const CDF_PERCENTILES: [f64; 35] = [
    0.0, 1.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0, 70.0,
    75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 96.0, 97.0, 98.0, 99.0, 99.5, 99.7, 99.9, 99.95, 99.99,
    99.995, 99.999, 99.9999, 100.0,
];

/// `[percentile, microseconds]` points of a histogram's CDF for plotting;
/// empty when the histogram is, so a plot can tell "no data" from "0 µs".
pub fn latency_cdf(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CDF_PERCENTILES
        .iter()
        .map(|&p| (p, h.value_at_quantile(p / 100.0)))
        .collect()
}

/// Latency percentiles in microseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Latency {
    /// Messages in the histogram.
    pub samples: u64,
    /// Percentiles.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// Percentiles of a histogram.
    pub fn from_hist(h: &Histogram<u64>) -> Self {
        Latency {
            samples: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// Broker process figures (with `--broker-pid`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct BrokerStats {
    /// CPU % of one core during the measured window.
    pub cpu_pct: Option<f64>,
    /// Resident set at the end, KiB.
    pub rss_kb: Option<u64>,
    /// Peak resident set since the broker started (VmHWM), KiB.
    pub hwm_kb: Option<u64>,
}

/// Connection storm figures.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ConnStats {
    /// Connections attempted.
    pub attempted: u64,
    /// CONNACKs received (accepted).
    pub connected: u64,
    /// Failures (refused, reset, timeout).
    pub failed: u64,
    /// Accepted connections per second over the storm.
    pub connects_per_s: f64,
    /// Storm duration, first attempt to last CONNACK.
    pub storm_s: f64,
    /// Broker RSS before the storm, KiB.
    pub rss_before_kb: Option<u64>,
    /// Broker RSS after holding the connections idle, KiB.
    pub rss_after_kb: Option<u64>,
    /// (after − before) / connected, bytes.
    pub bytes_per_conn: Option<f64>,
    /// CONNECT→CONNACK time from the intended attempt time.
    pub connect_latency: Latency,
    /// Connections still open at the end of the hold.
    pub still_open: u64,
    /// CONNACKs received per [`crate::track::TICK`] from the first attempt to
    /// the last handshake's end.
    pub connect_timeline: Vec<u64>,
    /// `[percentile, µs]` points of the CONNECT→CONNACK latency.
    pub connect_latency_cdf: Vec<(f64, u64)>,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Scenario.
    pub scenario: Scenario,
    /// Broker label.
    pub label: String,
    /// "3.1.1" or "5".
    pub mqtt: String,
    /// QoS.
    pub qos: u8,
    /// Payload bytes.
    pub payload: usize,
    /// Publishers.
    pub publishers: usize,
    /// Subscribers.
    pub subscribers: usize,
    /// Offered rate, msg/s (None = unlimited).
    pub offered_rate: Option<f64>,
    /// Closed-loop window: messages published but not yet delivered, at most.
    pub e2e_window: Option<u64>,
    /// Seconds of publishing (configured).
    pub duration_s: f64,
    /// Messages published.
    pub sent: u64,
    /// Publications acknowledged (QoS 1).
    pub acked: u64,
    /// Deliveries expected (sent × matching subscribers).
    pub expected: u64,
    /// Distinct deliveries received.
    pub delivered: u64,
    /// Expected but never received.
    pub lost: u64,
    /// Received more than once.
    pub duplicates: u64,
    /// Deliveries with the DUP flag set.
    pub dup_flag: u64,
    /// Published msg/s.
    pub sent_rate: f64,
    /// Delivered msg/s: distinct deliveries / (last delivery − start).
    pub delivered_rate: f64,
    /// End-to-end latency.
    pub latency: Latency,
    /// `[percentile, µs]` points of the end-to-end latency (empty for `conn`).
    pub latency_cdf: Vec<(f64, u64)>,
    /// Width of one `timeline` / `sent_timeline` / `connect_timeline`
    /// interval; the last element of a series may cover less (the run ended).
    pub timeline_interval_ms: u64,
    /// PUBLISH packets subscribers received per interval, from the start of
    /// publishing until the drain ends (redeliveries included: counting only
    /// distinct messages would cost the receive path a lookup).
    pub timeline: Vec<u64>,
    /// Messages published per interval, same intervals as `timeline`.
    pub sent_timeline: Vec<u64>,
    /// Persistent sessions: reconnects and reconnects without a session.
    pub reconnects: u64,
    /// Reconnects where CONNACK said "no session present".
    pub sessions_lost: u64,
    /// Connection storm (conn only).
    pub conn: Option<ConnStats>,
    /// Tool CPU % of one core during the measured window.
    pub tool_cpu_pct: f64,
    /// CPUs the tool could use.
    pub tool_cpus: usize,
    /// False when the tool saturated its CPUs (the numbers measure the tool, not the broker).
    pub valid: bool,
    /// Broker process.
    pub broker: BrokerStats,
    /// Client errors (first few).
    pub errors: Vec<String>,
}

fn kb_mb(kb: Option<u64>) -> String {
    kb.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn pct(p: Option<f64>) -> String {
    p.map_or("-".into(), |p| format!("{p:.0}"))
}

/// Prints a human summary and a markdown table row.
pub fn print(r: &RunResult) {
    let validity = if r.valid {
        "valid"
    } else {
        "INVALID: tool saturated its CPU"
    };
    println!(
        "{:?} {} mqtt {} qos {} payload {} B, {} pub / {} sub, {}",
        r.scenario, r.label, r.mqtt, r.qos, r.payload, r.publishers, r.subscribers, validity
    );
    if let Some(c) = &r.conn {
        println!(
            "  connections {}/{} ({} failed, {} still open) in {:.2} s = {:.0} conn/s; connect p50 {} us p99 {} us max {} us",
            c.connected,
            c.attempted,
            c.failed,
            c.still_open,
            c.storm_s,
            c.connects_per_s,
            c.connect_latency.p50_us,
            c.connect_latency.p99_us,
            c.connect_latency.max_us
        );
        println!(
            "  broker RSS {} -> {} MiB, {} bytes per idle connection",
            kb_mb(c.rss_before_kb),
            kb_mb(c.rss_after_kb),
            c.bytes_per_conn.map_or("-".into(), |b| format!("{b:.0}"))
        );
    } else {
        println!(
            "  sent {} ({:.0}/s), delivered {} of {} ({:.0}/s), lost {}, duplicates {}, DUP flag {}",
            r.sent,
            r.sent_rate,
            r.delivered,
            r.expected,
            r.delivered_rate,
            r.lost,
            r.duplicates,
            r.dup_flag
        );
        let l = &r.latency;
        println!(
            "  latency us: p50 {} p90 {} p99 {} p99.9 {} max {} (n={})",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.samples
        );
        if r.scenario == Scenario::Persistent {
            println!(
                "  reconnects {}, sessions lost {}",
                r.reconnects, r.sessions_lost
            );
        }
    }
    println!(
        "  tool CPU {:.0}% of {} core(s); broker CPU {}%, RSS {} MiB, peak {} MiB",
        r.tool_cpu_pct,
        r.tool_cpus,
        pct(r.broker.cpu_pct),
        kb_mb(r.broker.rss_kb),
        kb_mb(r.broker.hwm_kb)
    );
    for e in &r.errors {
        println!("  error: {e}");
    }
    println!();
    println!(
        "| scenario | broker | mqtt | qos | rate msg/s | lost | dup | p50 us | p99 us | p99.9 us | tool CPU % | broker CPU % | peak RSS MiB | valid |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let rate = match &r.conn {
        Some(c) => format!("{:.0} conn/s", c.connects_per_s),
        None => format!("{:.0}", r.delivered_rate),
    };
    println!(
        "| {:?} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
        r.scenario,
        r.label,
        r.mqtt,
        r.qos,
        rate,
        r.lost,
        r.duplicates,
        r.latency.p50_us,
        r.latency.p99_us,
        r.latency.p999_us,
        r.tool_cpu_pct,
        pct(r.broker.cpu_pct),
        kb_mb(r.broker.hwm_kb),
        if r.valid { "yes" } else { "no" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_spans_min_to_max_and_never_falls() -> anyhow::Result<()> {
        let mut h = crate::track::histogram()?;
        assert!(latency_cdf(&h).is_empty());
        for us in 1..=10_000 {
            h.record(us)?;
        }
        let cdf = latency_cdf(&h);
        assert_eq!(cdf.first().map(|p| p.1), Some(h.min()));
        assert_eq!(cdf.last(), Some(&(100.0, h.max())));
        assert!(
            cdf.windows(2)
                .all(|w| matches!(w, [a, b] if a.0 < b.0 && a.1 <= b.1))
        );
        Ok(())
    }
}
