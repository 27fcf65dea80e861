//! Outbound link to one peer: one persistent TCP connection, reconnected with exponential
//! backoff; the host name is resolved on every connect. Requests and application messages
//! have separate bounded queues so a flood of messages cannot starve Raft RPCs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::frame::Frame;
use super::{LinkSettings, Wire, handshake};
use crate::error::LinkError;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// With requests outstanding and nothing received for this long, the connection is presumed
/// dead and re-established.
const STALL: Duration = Duration::from_secs(10);
const REQUEST_QUEUE: usize = 256;
const BATCH: usize = 64;

pub(crate) type Reply = oneshot::Sender<Result<Bytes, LinkError>>;

/// A request waiting to be written.
pub(crate) struct Outbound {
    pub(crate) body: Bytes,
    pub(crate) reply: Reply,
}

/// Handle to a running link task (cheap to clone).
#[derive(Clone)]
pub(crate) struct LinkHandle {
    pub(crate) requests: mpsc::Sender<Outbound>,
    pub(crate) messages: mpsc::Sender<Bytes>,
    pub(crate) addr: Arc<Mutex<String>>,
    pub(crate) connected: Arc<AtomicBool>,
    pub(crate) cancel: CancellationToken,
}

/// Receiving ends owned by the link task.
pub(crate) struct LinkTask {
    pub(crate) me: u64,
    pub(crate) peer: u64,
    pub(crate) settings: Arc<LinkSettings>,
    pub(crate) requests: mpsc::Receiver<Outbound>,
    pub(crate) messages: mpsc::Receiver<Bytes>,
    pub(crate) addr: Arc<Mutex<String>>,
    pub(crate) connected: Arc<AtomicBool>,
    pub(crate) cancel: CancellationToken,
}

/// Creates a link handle and the task state that serves it.
pub(crate) fn new_link(
    me: u64,
    peer: u64,
    addr: String,
    settings: Arc<LinkSettings>,
    cancel: CancellationToken,
) -> (LinkHandle, LinkTask) {
    let (req_tx, req_rx) = mpsc::channel(REQUEST_QUEUE);
    let (msg_tx, msg_rx) = mpsc::channel(settings.send_queue);
    let addr = Arc::new(Mutex::new(addr));
    let connected = Arc::new(AtomicBool::new(false));
    let handle = LinkHandle {
        requests: req_tx,
        messages: msg_tx,
        addr: addr.clone(),
        connected: connected.clone(),
        cancel: cancel.clone(),
    };
    let task = LinkTask {
        me,
        peer,
        settings,
        requests: req_rx,
        messages: msg_rx,
        addr,
        connected,
        cancel,
    };
    (handle, task)
}

impl LinkTask {
    /// Runs until cancelled: connect, serve, back off, repeat.
    pub(crate) async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let attempt = tokio::select! {
                r = self.connect() => r,
                () = self.cancel.cancelled() => return,
            };
            match attempt {
                Ok(wire) => {
                    tracing::info!(peer = self.peer, "peer link up");
                    backoff = BACKOFF_MIN;
                    self.connected.store(true, Ordering::Release);
                    let why = self.serve(wire).await;
                    self.connected.store(false, Ordering::Release);
                    tracing::info!(peer = self.peer, reason = %why, "peer link down");
                }
                Err(e @ LinkError::Handshake(_)) => {
                    tracing::warn!(peer = self.peer, error = %e, "peer link handshake failed")
                }
                Err(e) => tracing::debug!(peer = self.peer, error = %e, "peer link connect failed"),
            }
            if self.cancel.is_cancelled() {
                return;
            }
            // While down, fail requests at once (they were not sent: safe to retry) and drop
            // messages, so callers never wait on a dead peer.
            let deadline = Instant::now() + backoff;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    () = self.cancel.cancelled() => return,
                    Some(req) = self.requests.recv() => { let _ = req.reply.send(Err(LinkError::NotConnected(self.peer))); }
                    Some(_) = self.messages.recv() => {}
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn connect(&self) -> Result<Wire, LinkError> {
        let addr = self.addr.lock().clone();
        let s = &self.settings;
        let stream = tokio::time::timeout(s.connect_timeout, async {
            // Resolve on every attempt: pods get new IPs, names stay.
            let mut last = None;
            for sa in tokio::net::lookup_host(&addr)
                .await
                .map_err(|e| LinkError::Protocol(format!("resolve {addr}: {e}")))?
            {
                match TcpStream::connect(sa).await {
                    Ok(st) => return Ok(st),
                    Err(e) => last = Some(e),
                }
            }
            Err(LinkError::Protocol(format!(
                "connect {addr}: {}",
                last.map_or_else(|| "no address".to_string(), |e| e.to_string())
            )))
        })
        .await
        .map_err(|_| LinkError::Timeout(self.peer))??;
        let _ = stream.set_nodelay(true);
        let mut wire = Framed::new(stream, s.codec());
        tokio::time::timeout(
            s.handshake_timeout,
            handshake::dial(&mut wire, self.me, self.peer, &s.secret),
        )
        .await
        .map_err(|_| LinkError::Handshake("timed out".into()))??;
        Ok(wire)
    }

    async fn serve(&mut self, wire: Wire) -> LinkError {
        let (mut sink, mut stream) = wire.split();
        let mut pending: HashMap<u64, Reply> = HashMap::new();
        let mut next_id: u64 = 0;
        let mut last_rx = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let why = loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break LinkError::Closed,
                frame = stream.next() => match frame {
                    Some(Ok(b)) => {
                        last_rx = Instant::now();
                        match Frame::decode(b.freeze()) {
                            Ok(Frame::Response { id, body }) => {
                                if let Some(reply) = pending.remove(&id) {
                                    let _ = reply.send(Ok(body));
                                }
                            }
                            Ok(_) => break LinkError::Protocol("unexpected frame from listener".into()),
                            Err(e) => break e,
                        }
                    }
                    Some(Err(e)) => break LinkError::Protocol(format!("read: {e}")),
                    None => break LinkError::Disconnected(self.peer),
                },
                Some(req) = self.requests.recv() => {
                    next_id = next_id.wrapping_add(1);
                    if req.reply.is_closed() {
                        continue;
                    }
                    if pending.len() >= REQUEST_QUEUE * 4 {
                        pending.retain(|_, r| !r.is_closed());
                    }
                    if let Err(e) = sink.send(Frame::Request { id: next_id, body: req.body }.encode()).await {
                        let _ = req.reply.send(Err(LinkError::NotConnected(self.peer)));
                        break LinkError::Protocol(format!("write: {e}"));
                    }
                    pending.insert(next_id, req.reply);
                },
                Some(msg) = self.messages.recv() => {
                    // Batch: queue what is already waiting, then flush once.
                    let mut res = sink.feed(Frame::Message(msg).encode()).await;
                    let mut n = 1;
                    while res.is_ok() && n < BATCH {
                        let Ok(m) = self.messages.try_recv() else { break };
                        res = sink.feed(Frame::Message(m).encode()).await;
                        n += 1;
                    }
                    if let Err(e) = res.and(sink.flush().await) {
                        break LinkError::Protocol(format!("write: {e}"));
                    }
                },
                _ = tick.tick() => {
                    pending.retain(|_, r| !r.is_closed());
                    if !pending.is_empty() && last_rx.elapsed() > STALL {
                        break LinkError::Timeout(self.peer);
                    }
                },
            }
        };
        for (_, reply) in pending.drain() {
            let _ = reply.send(Err(LinkError::Disconnected(self.peer)));
        }
        why
    }
}
