//! `conn`: a connection storm at a given rate, then the connections held idle
//! while the broker's resident memory is read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client;
use crate::report::{self, ConnStats, Latency, RunResult};
use crate::scenario::{broker_stats, is_valid, mqtt_name, opts, run_id};
use crate::track::{self, CpuMark, Timeline};
use crate::{Args, allowed_cpus};

/// Give up on one handshake after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the connection storm.
pub async fn run(a: &Args) -> Result<RunResult> {
    let run = run_id();
    let pid = a.broker_pid.map(|p| p.to_string());
    let rss = || {
        pid.as_deref()
            .and_then(|p| track::proc_status_kb(p, "VmRSS:"))
    };
    let rss_before = rss();
    let sem = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let interval = (a.connect_rate > 0.0).then(|| Duration::from_secs_f64(1.0 / a.connect_rate));
    let cpu_start = CpuMark::now(pid.as_deref());
    let start = Instant::now();
    let established = Arc::new(AtomicU64::new(0));
    let timeline = Timeline::start([established.clone()], start);
    let mut set = JoinSet::new();
    for i in 0..a.connections {
        let intended = match interval {
            Some(iv) => {
                let t = start + iv * i as u32;
                tokio::time::sleep_until(t.into()).await;
                Some(t)
            }
            None => None,
        };
        let permit = sem.clone().acquire_owned().await?;
        let t0 = intended.unwrap_or_else(Instant::now);
        let addr = a
            .addr
            .get(i % a.addr.len().max(1))
            .cloned()
            .unwrap_or_default();
        let o = opts(a, format!("sb{run}-c{i}"), true, 0);
        let established = established.clone();
        set.spawn(async move {
            let r = tokio::time::timeout(CONNECT_TIMEOUT, client::connect(&addr, &o)).await;
            drop(permit);
            // Counted here, not where the results are joined, so the timeline
            // shows when CONNACKs arrived rather than when they were collected.
            if matches!(r, Ok(Ok(_))) {
                established.fetch_add(1, Ordering::Relaxed);
            }
            (r, t0, Instant::now())
        });
    }
    let mut conns = Vec::with_capacity(a.connections);
    let mut hist = track::histogram()?;
    let (mut failed, mut last_done) = (0u64, start);
    let mut errors = Vec::new();
    while let Some(r) = set.join_next().await {
        let Ok((r, t0, done)) = r else {
            failed += 1;
            continue;
        };
        match r {
            Ok(Ok(c)) => {
                last_done = last_done.max(done);
                hist.saturating_record(done.duration_since(t0).as_micros() as u64);
                conns.push(c);
            }
            Ok(Err(e)) => {
                failed += 1;
                if errors.len() < 10 {
                    errors.push(format!("{e:#}"));
                }
            }
            Err(_) => {
                failed += 1;
                if errors.len() < 10 {
                    errors.push("CONNACK timeout".into());
                }
            }
        }
    }
    let cpu_end = CpuMark::now(pid.as_deref());
    let [connect_timeline] = timeline.finish().await;
    let storm_s = last_done.duration_since(start).as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let rss_after = rss();
    let mut probe = [0u8; 64];
    let still_open = conns
        .iter()
        .filter(|c| match c.stream.try_read(&mut probe) {
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        })
        .count() as u64;
    let connected = conns.len() as u64;
    drop(conns);
    let (tool_cpu_pct, broker_cpu) = cpu_start.percent(&cpu_end);
    let bytes_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some((a as f64 - b as f64) * 1024.0 / connected as f64)
        }
        _ => None,
    };
    let cpus = a
        .threads
        .unwrap_or_else(allowed_cpus)
        .min(allowed_cpus())
        .max(1);
    Ok(RunResult {
        scenario: a.scenario,
        label: a.label.clone(),
        mqtt: mqtt_name(a.mqtt),
        qos: 0,
        payload: 0,
        publishers: 0,
        subscribers: 0,
        offered_rate: (a.connect_rate > 0.0).then_some(a.connect_rate),
        e2e_window: None,
        duration_s: storm_s,
        sent: 0,
        acked: 0,
        expected: 0,
        delivered: 0,
        lost: 0,
        duplicates: 0,
        dup_flag: 0,
        sent_rate: 0.0,
        delivered_rate: 0.0,
        latency: Latency::default(),
        latency_cdf: Vec::new(),
        timeline_interval_ms: track::TICK.as_millis() as u64,
        timeline: Vec::new(),
        sent_timeline: Vec::new(),
        reconnects: 0,
        sessions_lost: 0,
        conn: Some(ConnStats {
            attempted: a.connections as u64,
            connected,
            failed,
            connects_per_s: if storm_s > 0.0 {
                connected as f64 / storm_s
            } else {
                0.0
            },
            storm_s,
            rss_before_kb: rss_before,
            rss_after_kb: rss_after,
            bytes_per_conn,
            connect_latency: Latency::from_hist(&hist),
            still_open,
            connect_timeline,
            connect_latency_cdf: report::latency_cdf(&hist),
        }),
        tool_cpu_pct,
        tool_cpus: cpus,
        valid: is_valid(tool_cpu_pct, cpus),
        broker: broker_stats(pid.as_deref(), broker_cpu),
        errors,
    })
}
