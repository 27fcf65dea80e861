//! Inbound side: accept, authenticate, then serve requests and pass messages up.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::Framed;

use super::frame::Frame;
use super::{Peers, RequestHandler, handshake};
use crate::error::LinkError;

/// Concurrent requests served per connection; reading pauses beyond this.
const IN_FLIGHT: usize = 64;

/// Accepts connections until the peers' cancellation token fires.
pub(crate) async fn accept_loop(
    peers: Arc<Peers>,
    listener: TcpListener,
    handler: Arc<dyn RequestHandler>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = peers.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                let peers2 = peers.clone();
                let handler = handler.clone();
                peers.tracker.spawn(async move {
                    if let Err(e) = serve_conn(&peers2, stream, handler).await {
                        match e {
                            LinkError::Handshake(_) => {
                                tracing::warn!(%remote, error = %e, "rejected peer connection")
                            }
                            _ => tracing::debug!(%remote, error = %e, "peer connection closed"),
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "peer accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn(
    peers: &Arc<Peers>,
    stream: TcpStream,
    handler: Arc<dyn RequestHandler>,
) -> Result<(), LinkError> {
    let _ = stream.set_nodelay(true);
    let s = &peers.settings;
    let mut wire = Framed::new(stream, s.codec());
    let from = tokio::time::timeout(
        s.handshake_timeout,
        handshake::accept(&mut wire, peers.me, &s.secret),
    )
    .await
    .map_err(|_| LinkError::Handshake("timed out".into()))??;
    tracing::debug!(peer = from, "peer connection authenticated");
    let (mut sink, mut stream) = wire.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
    let cancel = peers.cancel.child_token();
    let writer_cancel = cancel.clone();
    let writer = peers.tracker.spawn(async move {
        loop {
            tokio::select! {
                () = writer_cancel.cancelled() => break,
                b = out_rx.recv() => match b {
                    Some(b) => if sink.send(b).await.is_err() { break },
                    None => break,
                },
            }
        }
        writer_cancel.cancel();
    });
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let result = loop {
        let next = tokio::select! {
            n = stream.next() => n,
            () = cancel.cancelled() => break Ok(()),
        };
        let frame = match next {
            Some(Ok(b)) => Frame::decode(b.freeze()),
            Some(Err(e)) => break Err(LinkError::Protocol(format!("read: {e}"))),
            None => break Ok(()),
        };
        match frame {
            Ok(Frame::Request { id, body }) => {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break Ok(());
                };
                let handler = handler.clone();
                let out = out_tx.clone();
                peers.tracker.spawn(async move {
                    let resp = handler.handle(from, body).await;
                    let _ = out.send(Frame::Response { id, body: resp }.encode()).await;
                    drop(permit);
                });
            }
            Ok(Frame::Message(body)) => peers.deliver(from, body),
            Ok(_) => break Err(LinkError::Protocol("unexpected frame from dialer".into())),
            Err(e) => break Err(e),
        }
    };
    cancel.cancel();
    drop(out_tx);
    let _ = writer.await;
    result
}
