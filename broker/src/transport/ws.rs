//! MQTT over WebSocket (MQTT 5 §6): the HTTP upgrade and an adapter from
//! WebSocket messages to the byte stream the MQTT codec reads.
//!
//! Only binary frames carry MQTT; their boundaries mean nothing (a packet
//! may span frames, a frame may hold several packets). A text frame ends
//! the connection. Incoming frames and messages are capped near the
//! broker's maximum packet size, so a client cannot make tungstenite buffer
//! more than one packet's worth.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// WebSocket settings of a listener.
pub(super) struct Settings {
    path: String,
    config: WebSocketConfig,
}

impl Settings {
    /// Upgrades on `path` only; frames and messages up to `max_packet_size`
    /// plus the largest fixed header.
    pub fn new(path: &str, max_packet_size: u32) -> Settings {
        let max = usize::try_from(max_packet_size)
            .unwrap_or(usize::MAX)
            .saturating_add(5);
        Settings {
            path: path.to_owned(),
            config: WebSocketConfig::default()
                .max_frame_size(Some(max))
                .max_message_size(Some(max)),
        }
    }

    /// Runs the server side of the upgrade on `io`.
    // The callback's error type is fixed by tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    pub async fn accept<S>(&self, io: S) -> Result<WsIo<S>, WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let path = self.path.clone();
        let callback = move |req: &Request, resp: Response| check_request(&path, req, resp);
        let ws = tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(self.config))
            .await?;
        Ok(WsIo {
            ws,
            pending: Bytes::new(),
            eof: false,
        })
    }
}

fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_owned()));
    *r.status_mut() = status;
    r
}

/// Accepts the upgrade on the configured path and picks the `mqtt`
/// subprotocol (or the legacy `mqttv3.1`) when the client offers it.
// The error type is fixed by tungstenite's `Callback`.
#[allow(clippy::result_large_err)]
fn check_request(path: &str, req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() != path {
        return Err(refuse(StatusCode::NOT_FOUND, "no MQTT endpoint here"));
    }
    let offered: Vec<&str> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if offered.is_empty() {
        return Ok(resp);
    }
    let chosen = if offered.iter().any(|p| p.eq_ignore_ascii_case("mqtt")) {
        "mqtt"
    } else if offered.iter().any(|p| p.eq_ignore_ascii_case("mqttv3.1")) {
        "mqttv3.1"
    } else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "subprotocol `mqtt` is required",
        ));
    };
    resp.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(chosen),
    );
    Ok(resp)
}

/// A WebSocket connection read and written as a byte stream.
pub(crate) struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    pending: Bytes,
    eof: bool,
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, e)
        }
        WsError::Io(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                let chunk = this.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => this.eof = true,
                Some(Ok(Message::Binary(b))) => this.pending = b,
                // Pongs to pings are queued by tungstenite and sent with the
                // next read or write.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket",
                    )));
                }
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    async fn pair(
        path: &str,
        protocol: Option<&str>,
    ) -> (
        Result<WsIo<DuplexStream>, WsError>,
        Result<WebSocketStream<DuplexStream>, WsError>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let settings = Settings::new("/mqtt", 1024);
        let mut req = format!("ws://localhost{path}")
            .into_client_request()
            .unwrap();
        if let Some(p) = protocol {
            req.headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, p.parse().unwrap());
        }
        let server = settings.accept(a);
        let client = tokio_tungstenite::client_async(req, b);
        let (s, c) = tokio::join!(server, client);
        (
            s,
            c.map(|(ws, resp)| {
                if protocol.is_some() {
                    assert_eq!(
                        resp.headers().get(header::SEC_WEBSOCKET_PROTOCOL).unwrap(),
                        "mqtt"
                    );
                }
                ws
            }),
        )
    }

    #[tokio::test]
    async fn frames_are_a_byte_stream_both_ways() {
        let (server, client) = pair("/mqtt", Some("mqtt")).await;
        let (mut server, mut client) = (server.unwrap(), client.unwrap());
        // One packet split over two frames, then two packets in one frame.
        client
            .send(Message::binary(vec![0x10, 0x02]))
            .await
            .unwrap();
        client
            .send(Message::binary(vec![0x00, 0x04]))
            .await
            .unwrap();
        client
            .send(Message::binary(vec![0xc0, 0x00, 0xe0, 0x00]))
            .await
            .unwrap();
        let mut got = [0u8; 8];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x10, 0x02, 0x00, 0x04, 0xc0, 0x00, 0xe0, 0x00]);
        server.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
        server.flush().await.unwrap();
        let msg = client.next().await.unwrap().unwrap();
        assert_eq!(msg, Message::binary(vec![0x20, 0x02, 0x00, 0x00]));
        // A close from the client is the end of the stream.
        client.close(None).await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn text_frames_and_oversize_frames_end_the_stream() {
        let (server, client) = pair("/mqtt", None).await;
        let (mut server, mut client) = (server.unwrap(), client.unwrap());
        client.send(Message::text("hello")).await.unwrap();
        let mut buf = [0u8; 4];
        assert!(server.read(&mut buf).await.is_err());

        let (server, client) = pair("/mqtt", None).await;
        let (mut server, mut client) = (server.unwrap(), client.unwrap());
        let _ = client.send(Message::binary(vec![0u8; 4096])).await;
        assert!(server.read(&mut buf).await.is_err());
    }

    #[tokio::test]
    async fn wrong_path_and_foreign_subprotocols_are_refused() {
        let (server, client) = pair("/other", Some("mqtt")).await;
        assert!(server.is_err());
        assert!(client.is_err());
        let (server, _) = pair("/mqtt", Some("chat")).await;
        assert!(server.is_err());
    }
}
