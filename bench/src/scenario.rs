//! Message-flow scenarios: who publishes where, who subscribes to what, and
//! the run itself (connect, publish, drain, merge, report).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{self, Conn, Flow, PUBS_DONE, PubJob, PubStats, RUNNING, STOP, SubEnd};
use crate::proto::{ConnectOpts, Version};
use crate::report::{self, BrokerStats, Latency, RunResult};
use crate::track::{self, CpuMark, Seen, SubStats, Timeline};
use crate::{Args, MqttVersion, Scenario, allowed_cpus};

/// Keep at most this many client errors in a result.
const MAX_ERRORS: usize = 10;

/// Who publishes and subscribes in a run.
struct Plan {
    /// (publisher id, topic)
    pubs: Vec<(u32, String)>,
    /// (filter, unit index)
    subs: Vec<(String, usize)>,
    /// Per unit, the publisher ids whose every message the unit must receive exactly once.
    units: Vec<Vec<u32>>,
}

fn plan(a: &Args, run: &str) -> Plan {
    let root = format!("bench/{run}");
    let ids = |n: usize| (0..n as u32).collect::<Vec<_>>();
    match a.scenario {
        Scenario::Fanin => {
            let p = a.publishers.unwrap_or(50);
            let s = a.subscribers.unwrap_or(1);
            Plan {
                pubs: ids(p)
                    .into_iter()
                    .map(|i| (i, format!("{root}/fanin/{i}")))
                    .collect(),
                subs: (0..s).map(|u| (format!("{root}/fanin/+"), u)).collect(),
                units: vec![ids(p); s],
            }
        }
        Scenario::Fanout => {
            let p = a.publishers.unwrap_or(1);
            let s = a.subscribers.unwrap_or(50);
            Plan {
                pubs: ids(p)
                    .into_iter()
                    .map(|i| (i, format!("{root}/fanout")))
                    .collect(),
                subs: (0..s).map(|u| (format!("{root}/fanout"), u)).collect(),
                units: vec![ids(p); s],
            }
        }
        Scenario::Shared => {
            let p = a.publishers.unwrap_or(10);
            let s = a.subscribers.unwrap_or(10);
            Plan {
                pubs: ids(p)
                    .into_iter()
                    .map(|i| (i, format!("{root}/shared/{i}")))
                    .collect(),
                subs: (0..s)
                    .map(|_| (format!("$share/bench/{root}/shared/+"), 0))
                    .collect(),
                units: vec![ids(p)],
            }
        }
        Scenario::P2p | Scenario::Latency | Scenario::Persistent | Scenario::Conn => {
            let default = match a.scenario {
                Scenario::P2p => 50,
                Scenario::Persistent => 10,
                _ => 1,
            };
            let n = a.publishers.unwrap_or(default);
            Plan {
                pubs: ids(n)
                    .into_iter()
                    .map(|i| (i, format!("{root}/p2p/{i}")))
                    .collect(),
                subs: (0..n).map(|i| (format!("{root}/p2p/{i}"), i)).collect(),
                units: ids(n).into_iter().map(|i| vec![i]).collect(),
            }
        }
    }
}

/// Short id that keeps client ids and topics of concurrent or successive runs apart.
pub fn run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:x}",
        (u64::from(std::process::id()) << 32 | u64::from(t)) % 0xff_ffff_ffff
    )
}

/// CONNECT options for a client of this run.
pub fn opts(a: &Args, client_id: String, clean: bool, session_expiry: u32) -> ConnectOpts {
    ConnectOpts {
        version: match a.mqtt {
            MqttVersion::V311 => Version::V4,
            MqttVersion::V5 => Version::V5,
        },
        client_id,
        clean,
        // Runs are far shorter than this and the tool sends no PINGREQ;
        // some brokers (rumqttd) refuse keep alive 0.
        keep_alive: 300,
        session_expiry,
        username: a.username.clone(),
        password: a.password.clone(),
    }
}

fn pick(addrs: &[String], i: usize) -> String {
    addrs
        .get(i % addrs.len().max(1))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:1883".into())
}

/// Connects many clients, at most 100 handshakes at a time, keeping their order.
async fn connect_all(list: Vec<(String, ConnectOpts)>) -> Result<Vec<Conn>> {
    let mut out = Vec::with_capacity(list.len());
    let mut it = list.into_iter().peekable();
    while it.peek().is_some() {
        let mut set = JoinSet::new();
        for (k, (addr, o)) in it.by_ref().take(100).enumerate() {
            set.spawn(async move { (k, client::connect(&addr, &o).await) });
        }
        let mut chunk: Vec<(usize, Conn)> = Vec::new();
        while let Some(r) = set.join_next().await {
            let (k, c) = r?;
            chunk.push((k, c?));
        }
        chunk.sort_by_key(|(k, _)| *k);
        out.extend(chunk.into_iter().map(|(_, c)| c));
    }
    Ok(out)
}

/// What a subscriber task hands back.
struct SubOut {
    unit: usize,
    stats: SubStats,
    reconnects: u64,
    sessions_lost: u64,
    error: Option<String>,
}

/// Everything a persistent subscriber needs to reconnect.
struct Reconnect {
    addr: String,
    opts: ConnectOpts,
    online: Duration,
    offline: Duration,
}

async fn subscriber(
    mut c: Conn,
    mut out: SubOut,
    mut ctl: watch::Receiver<u8>,
    total: Arc<AtomicU64>,
    base: Instant,
    re: Option<Reconnect>,
    flow: Option<Arc<Flow>>,
) -> SubOut {
    let r: Result<()> = async {
        loop {
            let until = match &re {
                Some(re) if *ctl.borrow() == RUNNING => Some(Instant::now() + re.online),
                _ => None,
            };
            match client::subscribe_loop(
                &mut c,
                &mut out.stats,
                &mut ctl,
                until,
                &total,
                base,
                flow.as_deref(),
            )
            .await?
            {
                SubEnd::Stopped => break,
                SubEnd::Drain => continue,
                SubEnd::Deadline => {}
            }
            let Some(re) = &re else { break };
            c.disconnect().await?;
            tokio::time::sleep(re.offline).await;
            c = client::connect(&re.addr, &re.opts).await?;
            out.reconnects += 1;
            out.sessions_lost += u64::from(!c.session_present);
        }
        c.disconnect().await?;
        if let Some(re) = &re {
            // End the persistent session so it does not outlive the run.
            let mut o = re.opts.clone();
            o.clean = true;
            o.session_expiry = 0;
            client::connect(&re.addr, &o).await?.disconnect().await?;
        }
        Ok(())
    }
    .await;
    out.error = r.err().map(|e| format!("subscriber: {e:#}"));
    out
}

/// Runs a message-flow scenario.
pub async fn run_flow(a: &Args) -> Result<RunResult> {
    let run = run_id();
    let p = plan(a, &run);
    let persistent = a.scenario == Scenario::Persistent;
    let qos = if persistent { 1 } else { a.qos };
    let rate = match a.scenario {
        Scenario::Latency => Some(a.rate.unwrap_or(10_000.0)),
        _ => a.rate,
    };
    let warmup = a.warmup.unwrap_or(if a.scenario == Scenario::Latency {
        (a.duration * 0.2).min(1.0)
    } else {
        0.0
    });
    let sub_addrs = if a.sub_addr.is_empty() {
        &a.addr
    } else {
        &a.sub_addr
    };
    let broker_pid = a.broker_pid.map(|p| p.to_string());
    let base = Instant::now();

    // Subscribers first, so nothing published is missed.
    let expiry = if persistent { 3600 } else { 0 };
    let sub_list: Vec<(String, ConnectOpts)> = (0..p.subs.len())
        .map(|i| {
            (
                pick(sub_addrs, i),
                opts(a, format!("sb{run}-s{i}"), !persistent, expiry),
            )
        })
        .collect();
    let mut subs = connect_all(sub_list.clone()).await?;
    for (c, (filter, _)) in subs.iter_mut().zip(&p.subs) {
        c.subscribe(filter, qos).await?;
    }
    let pub_list = (0..p.pubs.len())
        .map(|i| (pick(&a.addr, i), opts(a, format!("sb{run}-p{i}"), true, 0)))
        .collect();
    let pubs = connect_all(pub_list).await?;

    let start = Instant::now() + Duration::from_millis(100);
    let deadline = start + Duration::from_secs_f64(a.duration);
    let warmup_ns = (start - base + Duration::from_secs_f64(warmup)).as_nanos() as u64;
    let total = Arc::new(AtomicU64::new(0));
    let sent_total = Arc::new(AtomicU64::new(0));
    // Before any client task exists, so its baseline is surely zero even when
    // spawning many publishers takes longer than the 100 ms before `start`.
    let timeline = Timeline::start([total.clone(), sent_total.clone()], start);
    let (ctl_tx, ctl_rx) = watch::channel(RUNNING);
    let deliveries: usize = p.units.iter().map(Vec::len).sum();
    let flow = (a.e2e_window > 0 && rate.is_none()).then(|| {
        Arc::new(Flow {
            sent: sent_total.clone(),
            received: total.clone(),
            // Units are uniform: every message goes to the same number of them.
            factor: (deliveries / p.pubs.len().max(1)).max(1) as u64,
            window: a.e2e_window,
            notify: tokio::sync::Notify::new(),
        })
    });

    let mut sub_tasks = JoinSet::new();
    for (i, (c, (_, unit))) in subs.drain(..).zip(&p.subs).enumerate() {
        let out = SubOut {
            unit: *unit,
            stats: SubStats::new(warmup_ns)?,
            reconnects: 0,
            sessions_lost: 0,
            error: None,
        };
        let re = persistent.then(|| Reconnect {
            addr: pick(sub_addrs, i),
            opts: opts(a, format!("sb{run}-s{i}"), false, expiry),
            online: Duration::from_millis(a.online_ms),
            offline: Duration::from_millis(a.offline_ms),
        });
        sub_tasks.spawn(subscriber(
            c,
            out,
            ctl_rx.clone(),
            total.clone(),
            base,
            re,
            flow.clone(),
        ));
    }

    let npubs = p.pubs.len().max(1);
    let mut pub_tasks = JoinSet::new();
    for (c, (id, topic)) in pubs.into_iter().zip(p.pubs.iter().cloned()) {
        let mut job = PubJob {
            id,
            topic,
            qos,
            payload: a.payload,
            start,
            deadline,
            count: a.count,
            window: a.inflight.max(1),
            base,
            flow: flow.clone(),
            sent_total: sent_total.clone(),
        };
        match rate {
            Some(total_rate) => {
                let per = total_rate / npubs as f64;
                // Stagger the publishers over one interval so they do not fire in lockstep.
                job.start += Duration::from_secs_f64(f64::from(id) / per / npubs as f64);
                let (s, v) = c.into_std()?;
                pub_tasks.spawn_blocking(move || (id, client::publish_paced(s, v, job, per)));
            }
            None => {
                pub_tasks.spawn(async move { (id, client::publish_unpaced(c, job).await) });
            }
        }
    }

    if std::env::var_os("SB_DEBUG").is_some() {
        let (t, s) = (total.clone(), sent_total.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                eprintln!(
                    "{:?} recv {} sent {}",
                    base.elapsed(),
                    t.load(Ordering::Relaxed),
                    s.load(Ordering::Relaxed)
                );
            }
        });
    }
    tokio::time::sleep_until(start.into()).await;
    let cpu_start = CpuMark::now(broker_pid.as_deref());
    let mut errors = Vec::new();
    let mut sent = vec![PubStats::default(); p.pubs.len()];
    while let Some(r) = pub_tasks.join_next().await {
        match r {
            Ok((id, Ok(st))) => {
                if let Some(s) = sent.get_mut(id as usize) {
                    *s = st;
                }
            }
            Ok((id, Err(e))) => errors.push(format!("publisher {id}: {e:#}")),
            Err(e) => errors.push(format!("publisher task: {e}")),
        }
    }
    let pubs_end = Instant::now();
    let _ = ctl_tx.send(PUBS_DONE);
    let expected: u64 = p
        .units
        .iter()
        .flatten()
        .map(|&id| sent.get(id as usize).map_or(0, |s| s.sent))
        .sum();

    // Drain: until everything expected arrived or nothing arrived for `drain` seconds.
    let mut cpu_end = CpuMark::now(broker_pid.as_deref());
    let mut last = total.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while total.load(Ordering::Relaxed) < expected
        && last_progress.elapsed().as_secs_f64() < a.drain
        && !sub_tasks.is_empty()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = total.load(Ordering::Relaxed);
        if std::env::var_os("SB_DEBUG").is_some() {
            eprintln!("drain total {now} expected {expected}");
        }
        if now != last {
            last = now;
            last_progress = Instant::now();
            cpu_end = CpuMark::now(broker_pid.as_deref());
        }
    }
    if total.load(Ordering::Relaxed) >= expected {
        cpu_end = CpuMark::now(broker_pid.as_deref());
    }
    let _ = ctl_tx.send(STOP);
    let [timeline, sent_timeline] = timeline.finish().await;

    let mut units: Vec<Vec<Seen>> = vec![Vec::new(); p.units.len()];
    let mut hist = track::histogram()?;
    let (mut last_ns, mut dup_flag, mut reconnects, mut sessions_lost) = (0, 0, 0, 0);
    while let Some(r) = sub_tasks.join_next().await {
        let o = match r {
            Ok(o) => o,
            Err(e) => {
                errors.push(format!("subscriber task: {e}"));
                continue;
            }
        };
        errors.extend(o.error);
        hist.add(&o.stats.hist)?;
        last_ns = last_ns.max(o.stats.last_ns);
        dup_flag += o.stats.dup_flag;
        reconnects += o.reconnects;
        sessions_lost += o.sessions_lost;
        if let Some(u) = units.get_mut(o.unit) {
            if u.len() < o.stats.seen.len() {
                u.resize(o.stats.seen.len(), Seen::default());
            }
            for (acc, s) in u.iter_mut().zip(&o.stats.seen) {
                acc.merge(s);
            }
        }
    }
    let (mut delivered, mut lost, mut duplicates) = (0, 0, 0);
    for (want, got) in p.units.iter().zip(&units) {
        for &id in want {
            let s = sent.get(id as usize).map_or(0, |s| s.sent);
            let (unique, dups) = got.get(id as usize).map_or((0, 0), |g| (g.unique, g.dups));
            delivered += unique;
            duplicates += dups;
            lost += s.saturating_sub(unique);
            if std::env::var_os("SB_DEBUG").is_some() && s != unique {
                let first_missing = got.get(id as usize).and_then(|g| g.first_missing());
                eprintln!("pub {id}: sent {s} unique {unique} first missing {first_missing:?}");
            }
        }
    }
    let start_ns = (start - base).as_nanos() as u64;
    let recv_secs = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    let total_sent: u64 = sent.iter().map(|s| s.sent).sum();
    let (tool_cpu_pct, broker_cpu) = cpu_start.percent(&cpu_end);
    let cpus = a
        .threads
        .unwrap_or_else(allowed_cpus)
        .min(allowed_cpus())
        .max(1);
    errors.truncate(MAX_ERRORS);
    Ok(RunResult {
        scenario: a.scenario,
        label: a.label.clone(),
        mqtt: mqtt_name(a.mqtt),
        qos,
        payload: a.payload,
        publishers: p.pubs.len(),
        subscribers: p.subs.len(),
        offered_rate: rate,
        e2e_window: flow.as_ref().map(|f| f.window),
        duration_s: a.duration,
        sent: total_sent,
        acked: sent.iter().map(|s| s.acked).sum(),
        expected,
        delivered,
        lost,
        duplicates,
        dup_flag,
        sent_rate: total_sent as f64 / pubs_end.duration_since(start).as_secs_f64().max(1e-3),
        delivered_rate: if recv_secs > 0.0 {
            delivered as f64 / recv_secs
        } else {
            0.0
        },
        latency: Latency::from_hist(&hist),
        latency_cdf: report::latency_cdf(&hist),
        timeline_interval_ms: track::TICK.as_millis() as u64,
        timeline,
        sent_timeline,
        reconnects,
        sessions_lost,
        conn: None,
        tool_cpu_pct,
        tool_cpus: cpus,
        valid: is_valid(tool_cpu_pct, cpus),
        broker: broker_stats(broker_pid.as_deref(), broker_cpu),
        errors,
    })
}

/// "3.1.1" or "5".
pub fn mqtt_name(v: MqttVersion) -> String {
    match v {
        MqttVersion::V311 => "3.1.1".into(),
        MqttVersion::V5 => "5".into(),
    }
}

/// A run is valid unless the tool used ≥ 90 % of every CPU it had.
pub fn is_valid(tool_cpu_pct: f64, cpus: usize) -> bool {
    tool_cpu_pct < 90.0 * cpus as f64
}

/// Broker CPU and memory at the end of a run.
pub fn broker_stats(pid: Option<&str>, cpu_pct: Option<f64>) -> BrokerStats {
    BrokerStats {
        cpu_pct,
        rss_kb: pid.and_then(|p| track::proc_status_kb(p, "VmRSS:")),
        hwm_kb: pid.and_then(|p| track::proc_status_kb(p, "VmHWM:")),
    }
}

/// Runs the scenario the command line names.
pub async fn run(a: &Args) -> Result<RunResult> {
    match a.scenario {
        Scenario::Conn => crate::conn::run(a).await,
        _ => run_flow(a).await,
    }
}
