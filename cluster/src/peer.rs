//! Peer links: authenticated, persistent, bounded connections between cluster nodes.
//!
//! Knows nothing of Raft: it moves opaque request/response bodies (for the Raft layer) and
//! one-way application messages. Each node dials each peer once (outbound link) and accepts
//! the peers' dials (inbound); requests go dialer → listener and are answered on the same
//! connection.

mod frame;
mod handshake;
mod link;
mod server;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ClusterError, LinkError};
use link::{LinkHandle, Outbound};

/// A framed peer connection.
pub(crate) type Wire = Framed<TcpStream, LengthDelimitedCodec>;

/// Boxed future returned by a [`RequestHandler`].
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Bytes> + Send + 'static>>;

/// Serves requests that authenticated peers send to this node.
pub(crate) trait RequestHandler: Send + Sync + 'static {
    /// Handles one request body from peer `from`; returns the response body.
    fn handle(&self, from: u64, body: Bytes) -> HandlerFuture;
}

/// Settings shared by every link.
pub(crate) struct LinkSettings {
    pub(crate) secret: Vec<u8>,
    pub(crate) max_frame: usize,
    pub(crate) send_queue: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
}

impl LinkSettings {
    fn codec(&self) -> LengthDelimitedCodec {
        LengthDelimitedCodec::builder()
            .max_frame_length(self.max_frame)
            .new_codec()
    }
}

/// All links of this node.
pub(crate) struct Peers {
    me: u64,
    settings: Arc<LinkSettings>,
    links: Mutex<HashMap<u64, LinkHandle>>,
    /// Addresses that [`Peers::upsert`] never replaces (see `ClusterConfig::configured_addrs_win`).
    pinned: Mutex<HashMap<u64, String>>,
    incoming_tx: mpsc::Sender<(u64, Bytes)>,
    incoming_rx: Mutex<Option<mpsc::Receiver<(u64, Bytes)>>>,
    dropped_incoming: AtomicU64,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Peers {
    pub(crate) fn new(me: u64, settings: LinkSettings, incoming_queue: usize) -> Arc<Self> {
        let (incoming_tx, incoming_rx) = mpsc::channel(incoming_queue);
        Arc::new(Self {
            me,
            settings: Arc::new(settings),
            links: Mutex::new(HashMap::new()),
            pinned: Mutex::new(HashMap::new()),
            incoming_tx,
            incoming_rx: Mutex::new(Some(incoming_rx)),
            dropped_incoming: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        })
    }

    /// Starts serving inbound connections on `listener`.
    pub(crate) fn serve(self: &Arc<Self>, listener: TcpListener, handler: Arc<dyn RequestHandler>) {
        let me = self.clone();
        self.tracker
            .spawn(server::accept_loop(me, listener, handler));
    }

    /// Fixes the address of peer `id`: later [`Peers::upsert`]s (from the membership or a
    /// join request) start its link if needed but keep dialing `addr`.
    pub(crate) fn pin(&self, id: u64, addr: &str) {
        self.pinned.lock().insert(id, addr.to_string());
        self.upsert(id, addr);
    }

    /// Records (or updates) the address of peer `id`, starting its link if needed. A pinned
    /// peer keeps its pinned address whatever `addr` says.
    pub(crate) fn upsert(&self, id: u64, addr: &str) {
        if id == self.me || self.cancel.is_cancelled() {
            return;
        }
        let pinned = self.pinned.lock().get(&id).cloned();
        let addr = pinned.as_deref().unwrap_or(addr);
        let mut links = self.links.lock();
        if let Some(l) = links.get(&id) {
            let mut a = l.addr.lock();
            if *a != addr {
                *a = addr.to_string();
            }
            return;
        }
        let (handle, task) = link::new_link(
            self.me,
            id,
            addr.to_string(),
            self.settings.clone(),
            self.cancel.child_token(),
        );
        self.tracker.spawn(task.run());
        links.insert(id, handle);
    }

    /// Stops the link to a peer that left the cluster.
    pub(crate) fn remove(&self, id: u64) {
        if let Some(l) = self.links.lock().remove(&id) {
            l.cancel.cancel();
        }
    }

    /// Ids of peers with a link.
    pub(crate) fn known(&self) -> Vec<u64> {
        self.links.lock().keys().copied().collect()
    }

    /// Whether the outbound link to `id` is currently connected and authenticated.
    pub(crate) fn is_connected(&self, id: u64) -> bool {
        self.links
            .lock()
            .get(&id)
            .is_some_and(|l| l.connected.load(Ordering::Acquire))
    }

    /// Sends a request to `id` and waits (bounded) for its response.
    pub(crate) async fn request(
        &self,
        id: u64,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, LinkError> {
        if body.len() > self.max_body() {
            return Err(LinkError::TooLarge(body.len()));
        }
        let Some(tx) = self.links.lock().get(&id).map(|l| l.requests.clone()) else {
            return Err(LinkError::NotConnected(id));
        };
        let (reply, rx) = oneshot::channel();
        tx.try_send(Outbound { body, reply })
            .map_err(|_| LinkError::NotConnected(id))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(LinkError::Disconnected(id)),
            Err(_) => Err(LinkError::Timeout(id)),
        }
    }

    /// Queues a one-way message to `id`; never blocks.
    pub(crate) fn send_message(&self, id: u64, msg: Bytes) -> Result<(), ClusterError> {
        if msg.len() > self.max_body() {
            return Err(ClusterError::TooLarge(msg.len()));
        }
        let Some(tx) = self.links.lock().get(&id).map(|l| l.messages.clone()) else {
            return Err(ClusterError::UnknownPeer(id));
        };
        tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ClusterError::QueueFull(id),
            mpsc::error::TrySendError::Closed(_) => ClusterError::Shutdown,
        })
    }

    /// Largest request or message body that fits in one frame.
    pub(crate) fn max_body(&self) -> usize {
        // Tag byte + request id.
        self.settings.max_frame.saturating_sub(9)
    }

    fn deliver(&self, from: u64, body: Bytes) {
        if self.incoming_tx.try_send((from, body)).is_err() {
            self.dropped_incoming.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the receiver of incoming application messages (once).
    pub(crate) fn take_incoming(&self) -> Option<mpsc::Receiver<(u64, Bytes)>> {
        self.incoming_rx.lock().take()
    }

    /// Messages dropped because the incoming queue was full.
    pub(crate) fn dropped_incoming(&self) -> u64 {
        self.dropped_incoming.load(Ordering::Relaxed)
    }

    /// Closes all links and the listener, and waits for their tasks.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        self.links.lock().clear();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    struct Echo(Arc<AtomicUsize>);

    impl RequestHandler for Echo {
        fn handle(&self, from: u64, body: Bytes) -> HandlerFuture {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let mut v = from.to_be_bytes().to_vec();
                v.extend_from_slice(&body);
                Bytes::from(v)
            })
        }
    }

    fn settings(secret: &[u8]) -> LinkSettings {
        LinkSettings {
            secret: secret.to_vec(),
            max_frame: 1 << 20,
            send_queue: 16,
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
        }
    }

    async fn server(secret: &[u8]) -> (Arc<Peers>, String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let calls = Arc::new(AtomicUsize::new(0));
        let p = Peers::new(2, settings(secret), 16);
        p.serve(listener, Arc::new(Echo(calls.clone())));
        (p, addr, calls)
    }

    async fn request_until_connected(client: &Peers, to: u64) -> Result<Bytes, LinkError> {
        let mut last = Err(LinkError::Closed);
        for _ in 0..40 {
            last = client
                .request(to, Bytes::from_static(b"ping"), Duration::from_secs(1))
                .await;
            if !matches!(last, Err(LinkError::NotConnected(_))) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    }

    #[tokio::test]
    async fn authenticated_request_and_message() {
        let (srv, addr, calls) = server(b"0123456789abcdef-secret").await;
        let mut incoming = srv.take_incoming().unwrap();
        let client = Peers::new(1, settings(b"0123456789abcdef-secret"), 16);
        client.upsert(2, &addr);
        let resp = request_until_connected(&client, 2).await.unwrap();
        assert_eq!(&resp[..8], &1u64.to_be_bytes());
        assert_eq!(&resp[8..], b"ping");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        client.send_message(2, Bytes::from_static(b"msg")).unwrap();
        let (from, msg) = tokio::time::timeout(Duration::from_secs(5), incoming.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((from, &msg[..]), (1, &b"msg"[..]));
        client.shutdown().await;
        srv.shutdown().await;
    }

    #[tokio::test]
    async fn wrong_secret_never_reaches_the_handler() {
        let (srv, addr, calls) = server(b"0123456789abcdef-secret").await;
        let client = Peers::new(1, settings(b"0123456789abcdef-WRONG!"), 16);
        client.upsert(2, &addr);
        let r = request_until_connected(&client, 2).await;
        assert!(matches!(r, Err(LinkError::NotConnected(2))), "{r:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        client.shutdown().await;
        srv.shutdown().await;
    }

    #[tokio::test]
    async fn pinned_address_survives_upserts() {
        let p = Peers::new(1, settings(b"0123456789abcdef-secret"), 16);
        p.pin(2, "proxy:1");
        p.upsert(2, "membership:1");
        p.upsert(3, "three:1");
        p.upsert(3, "three:2");
        let addr = |id| p.links.lock().get(&id).map(|l| l.addr.lock().clone());
        assert_eq!(addr(2).as_deref(), Some("proxy:1"));
        assert_eq!(addr(3).as_deref(), Some("three:2"));
        p.shutdown().await;
    }

    #[tokio::test]
    async fn dialing_the_wrong_node_id_fails() {
        let (srv, addr, calls) = server(b"0123456789abcdef-secret").await;
        let client = Peers::new(1, settings(b"0123456789abcdef-secret"), 16);
        // The listener is node 2; we think we dial node 3.
        client.upsert(3, &addr);
        let r = request_until_connected(&client, 3).await;
        assert!(matches!(r, Err(LinkError::NotConnected(3))), "{r:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        client.shutdown().await;
        srv.shutdown().await;
    }
}
