//! Connections and the publisher / subscriber loops.
//!
//! Publishers encode whole batches of PUBLISH packets into one buffer and write
//! it with one syscall; QoS 1 publishers keep up to `window` messages in flight
//! and drain PUBACKs without blocking between batches. Subscribers parse every
//! frame of a read in one pass, stamp the whole read with one clock reading and
//! answer QoS 1 with one batched write of PUBACKs.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::proto::{self, ConnectOpts, Incoming, Version};
use crate::track::SubStats;

/// Flush a batch once it reaches this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// One MQTT connection with its read and write buffers.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Protocol level of the session.
    pub version: Version,
    /// The broker's receive maximum (5.0).
    pub receive_max: Option<u16>,
    /// CONNACK's session-present flag.
    pub session_present: bool,
}

/// Connects, sends CONNECT and waits for a successful CONNACK.
pub async fn connect(addr: &str, o: &ConnectOpts) -> Result<Conn> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let mut c = Conn {
        stream,
        rbuf: BytesMut::with_capacity(64 * 1024),
        wbuf: BytesMut::with_capacity(BATCH_BYTES + 4096),
        version: o.version,
        receive_max: None,
        session_present: false,
    };
    proto::connect(&mut c.wbuf, o);
    c.flush().await?;
    loop {
        if let Some((first, body, used)) = proto::next_frame(&c.rbuf)? {
            match proto::decode(c.version, first, body)? {
                Incoming::ConnAck {
                    session_present,
                    code,
                    receive_max,
                } => {
                    if code != 0 {
                        bail!("{} refused: CONNACK code {code:#x}", o.client_id);
                    }
                    c.session_present = session_present;
                    c.receive_max = receive_max;
                    c.rbuf.advance(used);
                    return Ok(c);
                }
                p => bail!("expected CONNACK, got {p:?}"),
            }
        }
        if c.stream.read_buf(&mut c.rbuf).await? == 0 {
            bail!("{} closed before CONNACK", o.client_id);
        }
    }
}

impl Conn {
    async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Subscribes to one filter and waits for its SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<()> {
        proto::subscribe(&mut self.wbuf, self.version, 1, filter, qos);
        self.flush().await?;
        loop {
            if let Some((first, body, used)) = proto::next_frame(&self.rbuf)? {
                if let Incoming::SubAck(codes) = proto::decode(self.version, first, body)? {
                    if codes.iter().any(|&c| c >= 0x80) {
                        bail!("subscription to {filter} refused: {codes:?}");
                    }
                    self.rbuf.advance(used);
                    return Ok(());
                }
                bail!("expected SUBACK for {filter}");
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("closed before SUBACK");
            }
        }
    }

    /// Sends DISCONNECT and closes the write side.
    pub async fn disconnect(mut self) -> Result<()> {
        proto::disconnect(&mut self.wbuf);
        self.flush().await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Hands the socket to a blocking thread (paced publishers).
    pub fn into_std(self) -> Result<(std::net::TcpStream, Version)> {
        let s = self.stream.into_std()?;
        s.set_nonblocking(false)?;
        Ok((s, self.version))
    }
}

/// What a publisher did.
#[derive(Clone, Copy, Debug, Default)]
pub struct PubStats {
    /// PUBLISH packets written.
    pub sent: u64,
    /// PUBACKs received (QoS 1).
    pub acked: u64,
}

#[derive(Debug)]
/// Closed-loop flow control shared by all publishers and subscribers of a run:
/// publishers stop while more than `window` messages are published but not yet
/// delivered, so a broker's queues never overflow and the run measures the
/// sustainable delivered rate instead of a flood.
pub struct Flow {
    /// Messages published by all publishers: the same counter as
    /// [`PubJob::sent_total`], so flow control adds nothing to the hot path.
    pub sent: Arc<AtomicU64>,
    /// Deliveries received by all subscribers.
    pub received: Arc<AtomicU64>,
    /// Deliveries per published message.
    pub factor: u64,
    /// Messages in flight end to end at most.
    pub window: u64,
    /// Subscribers wake waiting publishers.
    pub notify: tokio::sync::Notify,
}

impl Flow {
    /// Messages this publisher may send now.
    fn credit(&self) -> u64 {
        let delivered = self.received.load(Ordering::Relaxed) / self.factor.max(1);
        let out = self.sent.load(Ordering::Relaxed).saturating_sub(delivered);
        self.window.saturating_sub(out)
    }
}

/// Fixed parameters of one publisher.
#[derive(Clone, Debug)]
pub struct PubJob {
    /// Publisher id carried in every payload.
    pub id: u32,
    /// Topic.
    pub topic: String,
    /// QoS.
    pub qos: u8,
    /// Payload size in bytes (at least the 20-byte header).
    pub payload: usize,
    /// When to start sending.
    pub start: Instant,
    /// When to stop sending.
    pub deadline: Instant,
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// QoS 1 messages in flight at most.
    pub window: u64,
    /// Time origin of payload timestamps.
    pub base: Instant,
    /// End-to-end flow control (unpaced publishers only).
    pub flow: Option<Arc<Flow>>,
    /// Messages published by all publishers of the run, added once per batch
    /// so that flow control and the timeline sampler can read progress
    /// without a per-message atomic.
    pub sent_total: Arc<AtomicU64>,
}

fn ns_since(base: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(base).as_nanos() as u64
}

fn count_acks(v: Version, rbuf: &mut BytesMut) -> Result<u64> {
    let mut acks = 0;
    let mut off = 0;
    while let Some((first, body, used)) = proto::next_frame(rbuf.get(off..).unwrap_or_default())? {
        match proto::decode(v, first, body)? {
            Incoming::PubAck => acks += 1,
            Incoming::Disconnect(code) => bail!("broker sent DISCONNECT {code:#x}"),
            _ => {}
        }
        off += used;
    }
    rbuf.advance(off);
    Ok(acks)
}

/// Publishes as fast as the broker takes it (QoS 0: as TCP allows; QoS 1: `window` in flight).
pub async fn publish_unpaced(mut c: Conn, job: PubJob) -> Result<PubStats> {
    let mut st = PubStats::default();
    let window = match c.receive_max {
        Some(m) => job.window.min(u64::from(m)),
        None => job.window,
    }
    .max(1);
    let topic = job.topic.clone().into_bytes();
    let limit = job.count.unwrap_or(u64::MAX);
    tokio::time::sleep_until(job.start.into()).await;
    let mut pid: u16 = 0;
    loop {
        let now = Instant::now();
        if now >= job.deadline || st.sent >= limit {
            break;
        }
        let mut credit = u64::MAX;
        if let Some(f) = &job.flow {
            credit = f.credit();
            if credit == 0 {
                let _ = tokio::time::timeout(Duration::from_millis(1), f.notify.notified()).await;
                continue;
            }
            credit = credit.min(1 + f.window / 16);
        }
        let stamp = ns_since(job.base, now);
        let first = st.sent;
        while c.wbuf.len() < BATCH_BYTES
            && st.sent < limit
            && st.sent - first < credit
            && (job.qos == 0 || st.sent - st.acked < window)
        {
            pid = if pid == u16::MAX { 1 } else { pid + 1 };
            let h = proto::header(job.id, st.sent, stamp);
            proto::publish(
                &mut c.wbuf,
                c.version,
                &topic,
                job.qos,
                pid,
                &h,
                job.payload,
            );
            st.sent += 1;
        }
        job.sent_total.fetch_add(st.sent - first, Ordering::Relaxed);
        c.flush().await?;
        if job.qos > 0 {
            loop {
                match c.stream.try_read_buf(&mut c.rbuf) {
                    Ok(0) => bail!("publisher {} closed by broker", job.id),
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
            st.acked += count_acks(c.version, &mut c.rbuf)?;
            while st.sent - st.acked >= window {
                let n =
                    tokio::time::timeout(Duration::from_secs(10), c.stream.read_buf(&mut c.rbuf))
                        .await
                        .context("no PUBACK for 10 s")??;
                if n == 0 {
                    bail!("publisher {} closed by broker", job.id);
                }
                st.acked += count_acks(c.version, &mut c.rbuf)?;
            }
        }
    }
    if job.qos > 0 {
        finish_acks(&mut c, &mut st).await?;
    }
    c.disconnect().await?;
    Ok(st)
}

async fn finish_acks(c: &mut Conn, st: &mut PubStats) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    while st.acked < st.sent {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.stream.read_buf(&mut c.rbuf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(_)) => st.acked += count_acks(c.version, &mut c.rbuf)?,
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Publishes at a fixed rate from a dedicated thread (precise sleeps, no 1 ms timer wheel).
///
/// Each message is stamped with its *intended* send time, so a stalled broker
/// shows up as latency instead of silently slowing the sender down
/// (no coordinated omission).
pub fn publish_paced(
    stream: std::net::TcpStream,
    v: Version,
    job: PubJob,
    rate: f64,
) -> Result<PubStats> {
    let acked = Arc::new(AtomicU64::new(0));
    let reader = if job.qos > 0 {
        let mut rs = stream.try_clone()?;
        let acked = acked.clone();
        Some(std::thread::spawn(move || -> Result<()> {
            let mut buf = BytesMut::with_capacity(16 * 1024);
            let mut chunk = [0u8; 16 * 1024];
            loop {
                let n = rs.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                acked.fetch_add(count_acks(v, &mut buf)?, Ordering::Relaxed);
            }
        }))
    } else {
        None
    };
    let mut w = stream;
    let mut st = PubStats::default();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let topic = job.topic.clone().into_bytes();
    let limit = job.count.unwrap_or(u64::MAX);
    let mut wbuf = BytesMut::with_capacity(BATCH_BYTES);
    let mut pid: u16 = 0;
    let mut next = job.start;
    // Messages already added to `job.sent_total`.
    let mut reported = 0;
    'outer: loop {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let now = Instant::now();
        while next <= now && wbuf.len() < BATCH_BYTES {
            if next >= job.deadline || st.sent >= limit {
                if !wbuf.is_empty() {
                    w.write_all(&wbuf)?;
                }
                break 'outer;
            }
            if job.qos > 0 {
                while st.sent - acked.load(Ordering::Relaxed) >= job.window {
                    if !wbuf.is_empty() {
                        w.write_all(&wbuf)?;
                        wbuf.clear();
                    }
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
            pid = if pid == u16::MAX { 1 } else { pid + 1 };
            let h = proto::header(job.id, st.sent, ns_since(job.base, next));
            proto::publish(&mut wbuf, v, &topic, job.qos, pid, &h, job.payload);
            st.sent += 1;
            next += interval;
        }
        w.write_all(&wbuf)?;
        wbuf.clear();
        job.sent_total
            .fetch_add(st.sent - reported, Ordering::Relaxed);
        reported = st.sent;
    }
    job.sent_total
        .fetch_add(st.sent - reported, Ordering::Relaxed);
    let until = Instant::now() + Duration::from_secs(10);
    while job.qos > 0 && acked.load(Ordering::Relaxed) < st.sent && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    st.acked = acked.load(Ordering::Relaxed);
    proto::disconnect(&mut wbuf);
    w.write_all(&wbuf)?;
    w.shutdown(std::net::Shutdown::Both)?;
    if let Some(r) = reader {
        let _ = r.join();
    }
    Ok(st)
}

/// Control states a subscriber watches.
pub const RUNNING: u8 = 0;
/// Publishers are done: persistent subscribers stop cycling and drain.
pub const PUBS_DONE: u8 = 1;
/// Stop now.
pub const STOP: u8 = 2;

/// Why [`subscribe_loop`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum SubEnd {
    /// The controller said stop.
    Stopped,
    /// The subscriber's own deadline passed (persistent cycling).
    Deadline,
    /// Publishers are done: stop cycling, keep receiving.
    Drain,
}

/// Receives until told to stop (or until `until`), recording every bench payload.
pub async fn subscribe_loop(
    c: &mut Conn,
    stats: &mut SubStats,
    ctl: &mut watch::Receiver<u8>,
    until: Option<Instant>,
    total: &AtomicU64,
    base: Instant,
    flow: Option<&Flow>,
) -> Result<SubEnd> {
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let sleep = tokio::time::sleep_until(until.unwrap_or(far).into());
    tokio::pin!(sleep);
    loop {
        if *ctl.borrow() == STOP {
            return Ok(SubEnd::Stopped);
        }
        if until.is_some() && *ctl.borrow() == PUBS_DONE {
            return Ok(SubEnd::Drain);
        }
        // Frames that arrived with the CONNACK (a resumed session's queue is
        // sent right behind it) are already buffered: handle them before
        // waiting for more bytes, or the broker waits for their acks forever.
        let buffered = proto::next_frame(&c.rbuf)?.is_some();
        if !buffered {
            tokio::select! {
                biased;
            r = ctl.changed() => {
                if r.is_err() {
                    return Ok(SubEnd::Stopped);
                }
                continue;
            }
            _ = &mut sleep => return Ok(SubEnd::Deadline),
            r = c.stream.read_buf(&mut c.rbuf) => {
                if r? == 0 {
                    bail!("subscriber connection closed by broker");
                }
            }
            }
        }
        let now = ns_since(base, Instant::now());
        let mut off = 0;
        let mut n = 0u64;
        while let Some((first, body, used)) =
            proto::next_frame(c.rbuf.get(off..).unwrap_or_default())?
        {
            match proto::decode(c.version, first, body)? {
                Incoming::Publish {
                    qos,
                    dup,
                    pid,
                    payload,
                } => {
                    if qos > 0 {
                        proto::puback(&mut c.wbuf, pid);
                    }
                    stats.record(payload, dup, now);
                    n += 1;
                }
                Incoming::Disconnect(code) => bail!("broker sent DISCONNECT {code:#x}"),
                _ => {}
            }
            off += used;
        }
        c.rbuf.advance(off);
        if n > 0 {
            total.fetch_add(n, Ordering::Relaxed);
            if let Some(f) = flow {
                f.notify.notify_waiters();
            }
        }
        c.flush().await?;
    }
}
