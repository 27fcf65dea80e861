//! Multi-process cluster harness: n `starling` processes on their own
//! loopback block, peer links through fault-injecting proxies, per-node
//! kill -9 / SIGSTOP / SIGCONT / restart / wipe, and the admin HTTP API.
//!
//! Only processes started here are ever signalled, by their PID; dropping the
//! [`Cluster`] kills them all. A failing test keeps its directory (node logs)
//! and prints where it is plus the tail of every node's log.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::proxy::{Mode, Proxy};

/// Peer port of every node (each node has its own loopback address).
const PEER_PORT: u16 = 7000;
/// Proxy i→j listens on node i's address, port `PROXY_BASE + j`.
const PROXY_BASE: u16 = 7100;
pub const TOKEN: &str = "cluster-test-admin-token-0123456789";
/// Generous bound for anything a healthy cluster should manage.
pub const SLOW: Duration = Duration::from_secs(20);

/// The seed of a test: `STARLING_SEED` or fresh; printed so a failure can be
/// replayed with `STARLING_SEED=... cargo test -p starling-broker --test cluster NAME`.
pub fn seeded(test: &str) -> (u64, StdRng) {
    let seed = std::env::var("STARLING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ u64::from(std::process::id()).rotate_left(32)
        });
    eprintln!("[{test}] seed = {seed} (replay: STARLING_SEED={seed})");
    (seed, StdRng::seed_from_u64(seed))
}

/// A fresh 127.X.Y.0/24 block for this test (X from the PID, Y a counter).
fn next_block() -> (u8, u8) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let x = 1 + (std::process::id() % 250) as u8;
    (x, (n % 256) as u8)
}

/// Per-cluster options.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Extra TOML appended to every node's config (whole sections).
    pub extra: String,
    pub snapshot_every: u64,
    /// MQTT port of every node (each on its own address); 0: a fresh
    /// ephemeral port per run. A fixed port lets long-running clients keep
    /// their address list across restarts.
    pub mqtt_port: u16,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            extra: String::new(),
            snapshot_every: 10_000,
            mqtt_port: 0,
        }
    }
}

/// One node: its process (if running) and where to reach it.
pub struct Node {
    pub id: u64,
    pub ip: Ipv4Addr,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    stopped: bool,
    /// MQTT address of the current run.
    pub mqtt: SocketAddr,
    /// Admin address of the current run.
    pub admin: SocketAddr,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    /// `proxies[(i, j)]` carries node i's dials to node j.
    proxies: BTreeMap<(u64, u64), Proxy>,
    dir: Option<tempfile::TempDir>,
    name: String,
    /// This cluster's 127.X.Y.0/24 block.
    block: (u8, u8),
    opts: Opts,
    secret: PathBuf,
    token: PathBuf,
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) and waits until every one serves MQTT
    /// and a leader is known.
    pub async fn start(name: &str, n: usize) -> Cluster {
        Cluster::start_with(name, n, Opts::default()).await
    }

    pub async fn start_with(name: &str, n: usize, opts: Opts) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("starling-{name}-"))
            .tempdir()
            .expect("tempdir");
        let (x, y) = next_block();
        let ids: Vec<u64> = (1..=n as u64).collect();
        let ip = |id: u64| Ipv4Addr::new(127, x, y, id as u8);
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "cluster-test-secret-0123456789abcdef").expect("secret");
        let token = dir.path().join("token");
        std::fs::write(&token, TOKEN).expect("token");
        let mut proxies = BTreeMap::new();
        for &i in &ids {
            for &j in &ids {
                if i != j {
                    let listen = SocketAddr::new(IpAddr::V4(ip(i)), PROXY_BASE + j as u16);
                    let target = SocketAddr::new(IpAddr::V4(ip(j)), PEER_PORT);
                    let p = Proxy::start(listen, target)
                        .unwrap_or_else(|e| panic!("proxy {i}->{j} on {listen}: {e}"));
                    proxies.insert((i, j), p);
                }
            }
        }
        let mut c = Cluster {
            nodes: Vec::new(),
            proxies,
            dir: Some(dir),
            name: name.to_owned(),
            block: (x, y),
            opts,
            secret,
            token,
        };
        for &i in &ids {
            let peers: Vec<u64> = ids.iter().copied().filter(|&j| j != i).collect();
            c.add_config(i, &peers);
        }
        for &i in &ids {
            c.spawn(i);
        }
        for &i in &ids {
            c.await_serving(i).await;
        }
        c.leader().await;
        c
    }

    /// Node `id`'s policy file (each node has its own copy).
    pub fn policy_path(&self, id: u64) -> PathBuf {
        self.dir
            .as_ref()
            .expect("cluster dir")
            .path()
            .join(format!("n{id}"))
            .join("policy.toml")
    }

    /// `GET /api/v1/policy` on node `id`: (seq, hash).
    pub async fn policy(&self, id: u64) -> Option<(u64, String)> {
        let addr = self.node(id).admin;
        let (status, body) = http_get(addr, "/api/v1/policy", Some(TOKEN)).await?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some((v["seq"].as_u64()?, v["hash"].as_str()?.to_owned()))
    }

    /// Node `id`'s loopback address.
    pub fn ip(&self, id: u64) -> Ipv4Addr {
        Ipv4Addr::new(127, self.block.0, self.block.1, id as u8)
    }

    /// Node `id`'s peer address (direct, not through a proxy); what it advertises.
    pub fn peer_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip(id)), PEER_PORT)
    }

    /// Writes node `id`'s directory and config (its peers dialled through
    /// the proxies `(id, j)`, which must exist) and registers the node.
    fn add_config(&mut self, i: u64, peer_ids: &[u64]) {
        let root = self.dir.as_ref().expect("cluster dir").path().to_path_buf();
        let ndir = root.join(format!("n{i}"));
        std::fs::create_dir_all(&ndir).expect("node dir");
        let me = self.peer_addr(i);
        let ip = self.ip(i);
        // Each node has its own copy, as each pod mounts its own.
        let policy = ndir.join("policy.toml");
        if !policy.exists() {
            std::fs::copy(
                format!("{}/tests/policies/open.toml", env!("CARGO_MANIFEST_DIR")),
                &policy,
            )
            .expect("policy file");
        }
        let peers: Vec<String> = peer_ids
            .iter()
            .map(|&j| format!("\"{j}@{}\"", self.proxies[&(i, j)].listen))
            .collect();
        let config = format!(
            "[node]\nid = {i}\ndata_dir = \"{data}\"\nshutdown_grace = \"3s\"\ndrain_window = \"1s\"\n\n\
             [[listeners]]\nname = \"mqtt\"\nbind = \"{ip}:{port}\"\n\n\
             [cluster]\nlisten = \"{me}\"\nadvertise = \"{me}\"\npeers = [{peers}]\n\
             secret_file = \"{secret}\"\nheartbeat = \"50ms\"\n\
             election_timeout_min = \"300ms\"\nelection_timeout_max = \"600ms\"\n\
             request_timeout = \"3s\"\nsnapshot_every = {snap}\n\n\
             [session]\nexpiry_check_interval = \"200ms\"\n\n\
             [admin]\nlisten = \"{ip}:0\"\ntoken_file = \"{token}\"\n\n\
             [auth]\npolicy_file = \"{policy}\"\n\n{extra}\n",
            data = ndir.join("data").display(),
            peers = peers.join(", "),
            port = self.opts.mqtt_port,
            secret = self.secret.display(),
            snap = self.opts.snapshot_every,
            token = self.token.display(),
            policy = policy.display(),
            extra = self.opts.extra,
        );
        let cpath = ndir.join("starling.toml");
        std::fs::write(&cpath, config).expect("config");
        self.nodes.push(Node {
            id: i,
            ip,
            log: ndir.join("node.log"),
            dir: ndir,
            config: cpath,
            child: None,
            stopped: false,
            mqtt: unspecified(),
            admin: unspecified(),
        });
    }

    /// Starts an extra node (next free id) configured with `peers` as its
    /// peers, as an operator growing the cluster would: it finds their state
    /// and asks the leader to add it (auto-join). Waits until it serves MQTT
    /// (it may still be a learner then). Its dials to `peers` go through new
    /// proxies `(new, j)`; the existing nodes learn its advertised address
    /// from the membership and dial it directly (their configs are fixed),
    /// so only its outbound links can be faulted.
    pub async fn add_node(&mut self, peers: &[u64]) -> u64 {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        for &j in peers {
            let listen = SocketAddr::new(IpAddr::V4(self.ip(id)), PROXY_BASE + j as u16);
            let target = self.peer_addr(j);
            let p = Proxy::start(listen, target)
                .unwrap_or_else(|e| panic!("proxy {id}->{j} on {listen}: {e}"));
            self.proxies.insert((id, j), p);
        }
        self.add_config(id, peers);
        self.spawn(id);
        self.await_serving(id).await;
        id
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    /// MQTT address of node `id` (current run).
    pub fn mqtt(&self, id: u64) -> SocketAddr {
        let n = self.node(id);
        assert!(n.child.is_some(), "node {id} is not running");
        n.mqtt
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Nodes whose process runs and is not stopped.
    pub fn live(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.stopped)
            .map(|n| n.id)
            .collect()
    }

    /// Starts node `id`'s process (log appended to its `node.log`).
    fn spawn(&mut self, id: u64) {
        let n = self.node_mut(id);
        assert!(n.child.is_none(), "node {id} already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("log file");
        let mut l2 = log.try_clone().expect("log");
        let _ = writeln!(l2, "===== harness: starting node {id} =====");
        let child = Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["serve", "--config"])
            .arg(&n.config)
            .env(
                "STARLING_LOG",
                "info,starling_broker=debug,starling_cluster=info,openraft=warn",
            )
            .env_remove("STARLING_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn starling");
        n.child = Some(child);
        n.stopped = false;
        n.mqtt = unspecified();
        n.admin = unspecified();
    }

    /// Waits until node `id` logged its admin and MQTT addresses for this run
    /// (MQTT only comes once the node reached the cluster).
    pub async fn await_serving(&mut self, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = self.node_mut(id);
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let run = text
                .rsplit("===== harness: starting node")
                .next()
                .unwrap_or_default();
            let find = |what: &str| {
                run.lines()
                    .filter(|l| l.contains(what))
                    .filter_map(|l| l.split("addr=").nth(1))
                    .filter_map(|s| s.split_whitespace().next())
                    .filter_map(|s| s.parse::<SocketAddr>().ok())
                    .next_back()
            };
            if let Some(a) = find("listening for admin HTTP") {
                n.admin = a;
            }
            if let Some(a) = find("listening for MQTT") {
                n.mqtt = a;
                return;
            }
            if let Some(child) = n.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                n.child = None;
                self.fail(&format!("node {id} exited during start: {status}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("node {id} did not start serving MQTT"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Panics with `msg` after printing every node's log tail.
    pub fn fail(&mut self, msg: &str) -> ! {
        panic!("{msg}")
    }

    fn signal(&self, id: u64, sig: &str) {
        let n = self.node(id);
        let Some(child) = n.child.as_ref() else {
            panic!("node {id} is not running");
        };
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} node {id}");
    }

    /// SIGKILL node `id` and reap it.
    pub fn kill9(&mut self, id: u64) {
        let n = self.node_mut(id);
        if let Some(mut child) = n.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        n.stopped = false;
    }

    /// SIGTERM node `id` and wait (bounded) for it to exit.
    pub async fn terminate(&mut self, id: u64) {
        self.signal(id, "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.node_mut(id);
            let exited = n
                .child
                .as_mut()
                .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                n.child = None;
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("node {id} ignored SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGSTOP node `id`.
    pub fn stop(&mut self, id: u64) {
        self.signal(id, "STOP");
        self.node_mut(id).stopped = true;
    }

    /// SIGCONT node `id`.
    pub fn cont(&mut self, id: u64) {
        self.signal(id, "CONT");
        self.node_mut(id).stopped = false;
    }

    /// Starts a killed node again on its data dir and waits until it serves.
    pub async fn restart(&mut self, id: u64) {
        self.kill9(id);
        self.spawn(id);
        self.await_serving(id).await;
    }

    /// Starts a killed node with an empty data dir.
    pub async fn wipe_and_restart(&mut self, id: u64) {
        self.kill9(id);
        let data = self.node(id).dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
        self.spawn(id);
        self.await_serving(id).await;
    }

    /// Starts a killed node without waiting for it to serve.
    pub fn spawn_only(&mut self, id: u64) {
        self.kill9(id);
        self.spawn(id);
    }

    // ---- faults on peer links ----

    /// Sets the proxy carrying `from`'s dials to `to`.
    pub fn link(&self, from: u64, to: u64, mode: Mode) {
        self.proxies[&(from, to)].set(mode);
    }

    /// Cuts node `id` off from every other node (both directions).
    pub fn isolate(&self, id: u64) {
        for (&(i, j), p) in &self.proxies {
            if i == id || j == id {
                p.set(Mode::Blackhole);
            }
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        for p in self.proxies.values() {
            p.set(Mode::Pass);
        }
    }

    // ---- admin API ----

    /// `GET /readyz` on node `id`: true on 200.
    pub async fn ready(&self, id: u64) -> bool {
        let addr = self.node(id).admin;
        matches!(http_get(addr, "/readyz", None).await, Some((200, _)))
    }

    /// `GET /api/v1/cluster` on node `id` (None if it does not answer).
    pub async fn status(&self, id: u64) -> Option<serde_json::Value> {
        let addr = self.node(id).admin;
        match http_get(addr, "/api/v1/cluster", Some(TOKEN)).await {
            Some((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// `POST /api/v1/cluster/nodes` on node `via`: adds node `id` at `addr`.
    /// (status, body); None if `via` did not answer (bounded by 30 s: the
    /// call waits for the new node to catch up).
    pub async fn admin_add_node(
        &self,
        via: u64,
        id: u64,
        addr: SocketAddr,
    ) -> Option<(u16, String)> {
        let body = serde_json::json!({ "id": id, "addr": addr.to_string() }).to_string();
        http_request(
            self.node(via).admin,
            "POST",
            "/api/v1/cluster/nodes",
            Some(TOKEN),
            Some(body),
            Duration::from_secs(30),
        )
        .await
    }

    /// `DELETE /api/v1/cluster/nodes/{id}` on node `via`. (status, body);
    /// None if `via` did not answer within 30 s.
    pub async fn admin_remove_node(&self, via: u64, id: u64) -> Option<(u16, String)> {
        http_request(
            self.node(via).admin,
            "DELETE",
            &format!("/api/v1/cluster/nodes/{id}"),
            Some(TOKEN),
            None,
            Duration::from_secs(30),
        )
        .await
    }

    /// (voter ids, learner ids) in node `id`'s status, sorted.
    pub async fn members(&self, id: u64) -> Option<(Vec<u64>, Vec<u64>)> {
        let s = self.status(id).await?;
        let mut voters = Vec::new();
        let mut learners = Vec::new();
        for m in s["members"].as_array()? {
            let mid = m["id"].as_u64()?;
            if m["voter"].as_bool()? {
                voters.push(mid);
            } else {
                learners.push(mid);
            }
        }
        voters.sort_unstable();
        learners.sort_unstable();
        Some((voters, learners))
    }

    /// The leader that every live node agrees on (and that says so itself).
    pub async fn leader(&mut self) -> u64 {
        self.leader_among(&self.live()).await
    }

    /// The leader that all of `ids` agree on, each ready.
    pub async fn leader_among(&mut self, ids: &[u64]) -> u64 {
        let deadline = Instant::now() + SLOW;
        loop {
            if let Some(l) = self.agreed_leader(ids).await {
                return l;
            }
            if Instant::now() > deadline {
                let mut s = String::new();
                for &id in ids {
                    s.push_str(&format!("\n  node {id}: {:?}", self.status(id).await));
                }
                self.fail(&format!("no agreed leader among {ids:?}:{s}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One poll: Some(leader) if every node of `ids` names it and is ready.
    pub async fn agreed_leader(&self, ids: &[u64]) -> Option<u64> {
        let mut leader = None;
        for &id in ids {
            let s = self.status(id).await?;
            if s["ready"] != serde_json::Value::Bool(true) {
                return None;
            }
            let l = s["leader"].as_u64()?;
            if leader.is_some_and(|x| x != l) {
                return None;
            }
            leader = Some(l);
        }
        let l = leader?;
        if !ids.contains(&l) {
            return None;
        }
        let s = self.status(l).await?;
        (s["role"] == "leader").then_some(l)
    }

    /// Waits until every node of `ids` applied at least the highest
    /// `last_log_index` any of them reports at the first poll.
    pub async fn await_caught_up(&mut self, ids: &[u64]) {
        let deadline = Instant::now() + SLOW;
        let mut target = 0;
        for &id in ids {
            if let Some(s) = self.status(id).await {
                target = target.max(s["last_log_index"].as_u64().unwrap_or(0));
            }
        }
        loop {
            let mut all = true;
            for &id in ids {
                let applied = self
                    .status(id)
                    .await
                    .and_then(|s| s["applied_index"].as_u64())
                    .unwrap_or(0);
                all &= applied >= target;
            }
            if all {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("{ids:?} did not apply up to {target}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every node of `ids` answers `/readyz` with 200.
    pub async fn await_ready(&mut self, ids: &[u64]) {
        let deadline = Instant::now() + SLOW;
        for &id in ids {
            while !self.ready(id).await {
                if Instant::now() > deadline {
                    self.fail(&format!("node {id} never became ready"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The term node `id` reports.
    pub async fn term(&self, id: u64) -> Option<u64> {
        self.status(id).await.and_then(|s| s["term"].as_u64())
    }

    pub fn log_path(&self, id: u64) -> &Path {
        &self.node(id).log
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if failed {
            eprintln!("===== cluster `{}` failed; node log tails:", self.name);
            for n in &self.nodes {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(40);
                eprintln!("----- node {} ({}):", n.id, n.log.display());
                for l in &lines[from..] {
                    eprintln!("  {l}");
                }
            }
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!("===== logs and data kept in {}", kept.display());
            }
        }
    }
}

/// A tiny HTTP/1.1 GET (Connection: close); `None` if the node does not
/// answer within a second (down, stopped, or not listening).
pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    http_request(addr, "GET", path, token, None, Duration::from_secs(1)).await
}

/// A tiny HTTP/1.1 request with an optional JSON body; `None` if the node
/// does not answer within `t` (per socket operation).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
    t: Duration,
) -> Option<(u16, String)> {
    if addr.port() == 0 {
        return None;
    }
    let method = method.to_owned();
    let path = path.to_owned();
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        http_blocking(addr, &method, &path, token.as_deref(), body.as_deref(), t)
    })
    .await
    .ok()
    .flatten()
}

fn http_blocking(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    t: Duration,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, t).ok()?;
    s.set_read_timeout(Some(t)).ok()?;
    s.set_write_timeout(Some(t)).ok()?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let content = body.map_or_else(String::new, |b| {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        )
    });
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content}Connection: close\r\n\r\n{}",
        body.unwrap_or("")
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        s = rest.get(n + 2..)?;
    }
}
