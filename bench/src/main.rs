//! `starling-bench`: an MQTT 3.1.1 / 5.0 load generator that measures a broker
//! from the outside, over the wire only.
//!
//! Scenarios: `fanin`, `fanout`, `p2p`, `shared`, `latency`, `persistent`
//! (message flows) and `conn` (connection storm + idle memory). Every payload
//! carries publisher id, sequence number and send time, so each run reports
//! delivered rate, lost and duplicate messages and latency percentiles; the
//! tool measures its own CPU and marks a run invalid when it was the
//! bottleneck. See `bench/README.md`.

mod client;
mod conn;
mod proto;
mod report;
mod scenario;
mod track;

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};

/// Which traffic pattern to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Many publishers, one wildcard subscriber.
    Fanin,
    /// One publisher, many subscribers of its topic.
    Fanout,
    /// N publisher/subscriber pairs, one topic each.
    P2p,
    /// Many publishers, one shared-subscription group.
    Shared,
    /// Connection storm at a given rate, then hold the connections idle.
    Conn,
    /// Fixed offered rate (default 10k msg/s), latency percentiles.
    Latency,
    /// QoS 1 to persistent sessions that disconnect and reconnect.
    Persistent,
}

/// MQTT protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MqttVersion {
    /// MQTT 3.1.1
    #[value(name = "3.1.1")]
    V311,
    /// MQTT 5.0
    #[value(name = "5")]
    V5,
}

/// Command line.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "starling-bench",
    version,
    about = "MQTT broker benchmark (wire protocol only)"
)]
pub struct Args {
    /// Scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Broker address(es) HOST:PORT; publishers (and everyone else) are spread over them round robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:1883")]
    pub addr: Vec<String>,
    /// Subscriber address(es), e.g. another cluster node (default: --addr).
    #[arg(long, value_delimiter = ',')]
    pub sub_addr: Vec<String>,
    /// MQTT version.
    #[arg(long = "mqtt", value_enum, default_value = "3.1.1")]
    pub mqtt: MqttVersion,
    /// QoS of publications and subscriptions (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Payload size in bytes (minimum 20: publisher id, sequence, send time).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Publishers (p2p/latency/persistent: pairs). Default per scenario.
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Subscribers. Default per scenario.
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Stop each publisher after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Total offered rate in msg/s over all publishers (latency default: 10000; others: unlimited).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Closed loop: publishers pause while more than this many messages are
    /// published but not yet delivered (0 = open loop, publish as fast as the broker takes it).
    #[arg(long, default_value_t = 0)]
    pub e2e_window: u64,
    /// QoS 1 messages in flight per publisher.
    #[arg(long, default_value_t = 256)]
    pub inflight: u64,
    /// Seconds at the start whose messages stay out of the latency histogram (latency default: 20 % of --duration, at most 1).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// After publishing, wait this long without progress for the last messages.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// User name.
    #[arg(long)]
    pub username: Option<String>,
    /// Password.
    #[arg(long)]
    pub password: Option<String>,
    /// conn: connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// conn: connection attempts per second (0 = as fast as the broker accepts).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// conn: handshakes in progress at most.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// conn: seconds to hold the connections idle before measuring memory.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// persistent: milliseconds a subscriber stays connected per cycle.
    #[arg(long, default_value_t = 1500)]
    pub online_ms: u64,
    /// persistent: milliseconds a subscriber stays away per cycle.
    #[arg(long, default_value_t = 500)]
    pub offline_ms: u64,
    /// PID of the broker (CPU % and RSS from /proc/PID/{stat,status}).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Label of the broker in reports.
    #[arg(long, default_value = "broker")]
    pub label: String,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Tokio worker threads (default: CPUs this process may run on).
    #[arg(long)]
    pub threads: Option<usize>,
    /// TLS (not supported yet).
    #[arg(long)]
    pub tls: bool,
}

/// CPUs this process may run on (respects taskset).
pub fn allowed_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.tls {
        bail!("TLS is not supported yet");
    }
    if args.payload < proto::HEADER_LEN {
        bail!("--payload must be at least {} bytes", proto::HEADER_LEN);
    }
    if args.rate.is_some_and(|r| r <= 0.0) {
        bail!("--rate must be positive");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.unwrap_or_else(allowed_cpus).max(1))
        .enable_all()
        .build()?;
    let result = rt.block_on(scenario::run(&args))?;
    rt.shutdown_timeout(Duration::from_secs(1));
    report::print(&result);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    if !result.errors.is_empty() {
        bail!(
            "{} client error(s), first: {}",
            result.errors.len(),
            result.errors.join("; ")
        );
    }
    Ok(())
}
