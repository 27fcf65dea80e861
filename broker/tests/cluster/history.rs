//! Recorded histories and the invariant checks over them.
//!
//! Publishers send `{publisher}:{seq}` payloads and record, per message,
//! whether it was acknowledged, rejected (v5 reason ≥ 0x80) or lost (no
//! answer: unknown outcome). Subscribers record every delivery, duplicates
//! included. The checks compare the two.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;

use crate::clients;
use crate::raw::{ConnectError, PubOutcome, RawClient};

/// One publish attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub topic: String,
    pub payload: String,
    pub seq: u64,
    pub outcome: PubOutcome,
    /// Node (index into the address list) the publish went to.
    pub node: usize,
}

/// What one publisher did.
#[derive(Debug, Clone, Default)]
pub struct PubLog {
    pub attempts: Vec<Attempt>,
    /// CONNECT refusals and failures seen while (re)connecting.
    pub connect_errors: Vec<(usize, ConnectError)>,
}

impl PubLog {
    pub fn acked(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.outcome == PubOutcome::Acked)
    }

    pub fn acked_payloads(&self) -> BTreeSet<String> {
        self.acked().map(|a| a.payload.clone()).collect()
    }

    pub fn count(&self, f: impl Fn(&PubOutcome) -> bool) -> usize {
        self.attempts.iter().filter(|a| f(&a.outcome)).count()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} attempts: {} acked, {} rejected, {} lost; {} connect errors",
            self.attempts.len(),
            self.count(|o| *o == PubOutcome::Acked),
            self.count(|o| matches!(o, PubOutcome::Rejected(_))),
            self.count(|o| matches!(o, PubOutcome::Lost(_))),
            self.connect_errors.len()
        )
    }
}

/// Publisher settings.
#[derive(Clone)]
pub struct PubSpec {
    pub id: String,
    pub v5: bool,
    pub qos: u8,
    pub retain: bool,
    /// Topic of message `seq`.
    pub topic: Arc<dyn Fn(u64) -> String + Send + Sync>,
    /// Stop after this many attempts (or when `stop` is set).
    pub count: u64,
    /// Pause between publishes.
    pub pause: Duration,
}

/// Publishes `{id}:{seq}` for seq = 1.. over `addrs`: starts on `addrs[0]`;
/// after a lost connection it moves to the next address (round robin) and
/// goes on with the next seq (a lost message is never resent: its outcome
/// stays unknown). Stops at `count` attempts, when `stop` is set, or when
/// no address accepts a CONNECT for 20 s.
pub async fn publish_stream(
    addrs: Vec<SocketAddr>,
    spec: PubSpec,
    stop: Arc<AtomicBool>,
) -> PubLog {
    let mut log = PubLog::default();
    let mut at = 0usize;
    let mut client: Option<RawClient> = None;
    let mut seq = 0u64;
    let mut failing_since: Option<Instant> = None;
    while seq < spec.count && !stop.load(Ordering::SeqCst) {
        let Some(c) = client.as_mut() else {
            match RawClient::connect(addrs[at], spec.v5, &spec.id, false).await {
                Ok((c, _)) => {
                    client = Some(c);
                    failing_since = None;
                }
                Err(e) => {
                    log.connect_errors.push((at, e));
                    at = (at + 1) % addrs.len();
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        seq += 1;
        let topic = (spec.topic)(seq);
        let payload = format!("{}:{seq}", spec.id);
        let outcome = c
            .publish(&topic, payload.as_bytes(), spec.qos, spec.retain)
            .await;
        let lost = matches!(outcome, PubOutcome::Lost(_));
        log.attempts.push(Attempt {
            topic,
            payload,
            seq,
            outcome,
            node: at,
        });
        if lost {
            client = None;
            at = (at + 1) % addrs.len();
        }
        if !spec.pause.is_zero() {
            tokio::time::sleep(spec.pause).await;
        }
    }
    if let Some(c) = client {
        c.disconnect().await;
    }
    log
}

/// Reads every retained message under `filter` from the node at `addr`
/// (a fresh clean v5 client; collects until nothing arrives for the quiet
/// period). Topic → payload.
pub async fn read_retained(addr: SocketAddr, filter: &str) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    'attempt: loop {
        assert!(
            Instant::now() < deadline,
            "could not read retained values from {addr}"
        );
        let id = format!("retained-reader-{}", rand::random::<u32>());
        let mut c = clients::v5_spawn(clients::v5_opts(addr, &id));
        // Refusals (a node re-establishing quorum contact) are retried.
        loop {
            match tokio::time::timeout(clients::WAIT, c.events.recv()).await {
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(a))))) => {
                    if a.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue 'attempt;
                }
                Ok(Some(Ok(_))) => {}
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue 'attempt;
                }
            }
        }
        c.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let mut out = BTreeMap::new();
        loop {
            match tokio::time::timeout(clients::QUIET, c.events.recv()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p))))) => {
                    if p.retain {
                        out.insert(
                            String::from_utf8_lossy(&p.topic).into_owned(),
                            String::from_utf8_lossy(&p.payload).into_owned(),
                        );
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) => continue 'attempt,
            }
        }
        let _ = c.client.disconnect().await;
        return out;
    }
}

/// `publisher:seq` → seq.
pub fn seq_of(payload: &str) -> Option<u64> {
    payload.rsplit_once(':').and_then(|(_, s)| s.parse().ok())
}

/// G1: for every topic with an acknowledged publish, the value a node
/// serves must come from a publish at or after the last acknowledged one of
/// that publisher on that topic (later unacknowledged publishes may have been
/// applied: a rejection after a Raft timeout is an unknown outcome, as the
/// cluster crate documents), and every served value must have been
/// published by someone. Returns the violations.
pub fn check_retained(logs: &[&PubLog], served: &BTreeMap<String, String>) -> Vec<String> {
    let mut last_acked: BTreeMap<&str, &Attempt> = BTreeMap::new();
    let mut attempted = BTreeSet::new();
    for log in logs {
        for a in &log.attempts {
            attempted.insert(a.payload.as_str());
            match a.outcome {
                PubOutcome::Acked => {
                    let e = last_acked.entry(&a.topic).or_insert(a);
                    if e.seq < a.seq {
                        *e = a;
                    }
                }
                PubOutcome::Rejected(_) | PubOutcome::Lost(_) => {}
            }
        }
    }
    let mut bad = Vec::new();
    for (topic, a) in &last_acked {
        match served.get(*topic) {
            None => bad.push(format!(
                "{topic}: acknowledged {} but no retained value",
                a.payload
            )),
            Some(v) => {
                let same_pub =
                    v.rsplit_once(':').map(|x| x.0) == a.payload.rsplit_once(':').map(|x| x.0);
                if same_pub && seq_of(v) < Some(a.seq) {
                    bad.push(format!(
                        "{topic}: serves {v}, older than acknowledged {}",
                        a.payload
                    ));
                }
            }
        }
    }
    for (topic, v) in served {
        if !attempted.contains(v.as_str()) {
            bad.push(format!("{topic}: serves {v}, which nobody published"));
        }
    }
    bad
}

/// Reads the retained set from every node until all agree (bounded);
/// returns the agreed set or panics with the differences.
pub async fn agreed_retained(
    addrs: &[(u64, SocketAddr)],
    filter: &str,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut views = Vec::new();
        for &(id, a) in addrs {
            views.push((id, read_retained(a, filter).await));
        }
        let first = &views[0].1;
        if views.iter().all(|(_, v)| v == first) {
            return first.clone();
        }
        if Instant::now() > deadline {
            let mut s = String::new();
            for (id, v) in &views {
                s.push_str(&format!("\n  node {id}: {v:?}"));
            }
            panic!("nodes disagree on retained values under {filter}:{s}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// G2: every acknowledged payload was delivered at least once (exactly once
/// if `exactly_once`); nothing delivered that was never published.
pub fn check_delivered(logs: &[&PubLog], delivered: &[String], exactly_once: bool) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in delivered {
        *counts.entry(d.as_str()).or_default() += 1;
    }
    let mut bad = Vec::new();
    let mut attempted = BTreeSet::new();
    for log in logs {
        for a in &log.attempts {
            attempted.insert(a.payload.as_str());
            if a.outcome != PubOutcome::Acked {
                continue;
            }
            match counts.get(a.payload.as_str()) {
                None => bad.push(format!("acknowledged {} never delivered", a.payload)),
                Some(&n) if exactly_once && n != 1 => {
                    bad.push(format!("QoS 2 {} delivered {n} times", a.payload))
                }
                Some(_) => {}
            }
        }
    }
    for d in counts.keys() {
        if !attempted.contains(d) {
            bad.push(format!("delivered {d}, which nobody published"));
        }
    }
    bad
}

/// Asserts a list of violations is empty, printing all of them.
pub fn assert_none(what: &str, bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{what}: {} violation(s):\n  {}",
        bad.len(),
        bad.join("\n  ")
    );
}

/// What one subscriber received.
#[derive(Debug, Clone, Default)]
pub struct SubLog {
    pub id: String,
    pub persistent: bool,
    /// Every delivery, in order, duplicates included.
    pub delivered: Vec<String>,
    /// Successful CONNECTs.
    pub connects: usize,
    /// Lost connections (broker closed, reset, server DISCONNECT).
    pub drops: usize,
    /// G2/G4 violations seen on the way: a persistent session that was not
    /// present on a reconnect.
    pub violations: Vec<String>,
}

impl SubLog {
    /// Deliveries beyond the first of each payload.
    pub fn duplicates(&self) -> usize {
        let unique: BTreeSet<&String> = self.delivered.iter().collect();
        self.delivered.len() - unique.len()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} ({}): {} deliveries ({} duplicates), {} connects, {} drops",
            self.id,
            if self.persistent {
                "persistent"
            } else {
                "clean"
            },
            self.delivered.len(),
            self.duplicates(),
            self.connects,
            self.drops
        )
    }
}

/// A v5 QoS 1 subscriber on `filter` that stays subscribed while nodes
/// fail: starts on `addrs[0]`; on a lost connection or a refused CONNECT it
/// moves to the next address and reconnects. A persistent session (expiry
/// 1 h) subscribes once and must find its session present on every
/// reconnect (recorded as a violation otherwise, then it subscribes again);
/// a clean one subscribes on every connection. Records every delivery.
/// On `stop` it sends DISCONNECT (a persistent session keeps its queue) and
/// returns.
pub async fn subscribe_stream(
    addrs: Vec<SocketAddr>,
    id: String,
    persistent: bool,
    filter: String,
    stop: Arc<AtomicBool>,
) -> SubLog {
    let mut log = SubLog {
        id: id.clone(),
        persistent,
        ..SubLog::default()
    };
    let mut at = 0usize;
    let mut subscribed = false;
    'connect: while !stop.load(Ordering::SeqCst) {
        let addr = addrs[at];
        let (mut c, present) = match RawClient::connect(addr, true, &id, persistent).await {
            Ok(x) => x,
            Err(_) => {
                at = (at + 1) % addrs.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        log.connects += 1;
        if persistent && subscribed && !present {
            log.violations.push(format!(
                "{id}: session not present on reconnect to {addr} (connect #{})",
                log.connects
            ));
        }
        if !persistent || !subscribed || !present {
            match c.subscribe(&filter, 1).await {
                Ok(code) if code < 0x80 => subscribed = true,
                _ => {
                    log.drops += 1;
                    at = (at + 1) % addrs.len();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        loop {
            if stop.load(Ordering::SeqCst) {
                c.disconnect().await;
                break 'connect;
            }
            match tokio::time::timeout(Duration::from_millis(300), c.next_publish()).await {
                Err(_) => {}
                Ok(Ok((payload, _dup))) => log.delivered.push(payload),
                Ok(Err(_)) => {
                    log.drops += 1;
                    at = (at + 1) % addrs.len();
                    continue 'connect;
                }
            }
        }
    }
    log
}
