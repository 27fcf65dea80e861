//! Client transports: what sits between an accepted TCP socket and the MQTT
//! byte stream that `protocol::serve` reads.
//!
//! Per listener, in this order, each step bounded in time and run in the
//! connection's own task (the accept loop never waits on a client):
//!
//! 1. PROXY protocol v1/v2 (`proxy`), only from trusted networks: the
//!    header's source address becomes the client address.
//! 2. TLS (`tls`, rustls with the ring provider, TLS 1.2/1.3), with optional
//!    or required client certificates, CRLs, and hot reload of every file.
//! 3. WebSocket (`ws`, tokio-tungstenite): binary frames adapted to a byte
//!    stream.
//!
//! Every refused connection is counted by reason ([`failure_counts`]) and
//! logged at debug with its address; nothing here panics on network input.

mod proxy;
mod tls;
mod ws;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ListenerConfig;
use crate::error::ConfigError;

/// Longest wait for a complete PROXY header.
const PROXY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest TLS handshake.
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest WebSocket (HTTP upgrade) handshake.
const WS_TIMEOUT: Duration = Duration::from_secs(10);

/// The identity a verified client certificate carries, for authentication
/// and authorization (`${cert.cn}` and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The attributes the policy matches identities on.
    pub info: starling_auth::CertInfo,
    /// When the certificate expires (Unix seconds), for rotation telemetry.
    pub not_after_unix: Option<i64>,
}

/// Why a connection was refused before MQTT started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A PROXY header from an address outside `proxy_trusted`.
    ProxyUntrusted,
    /// A PROXY header that does not parse (or is too long).
    ProxyMalformed,
    /// A connection without a PROXY header on a listener that requires one.
    ProxyMissing,
    /// No PROXY header (or not all of it) within the time limit.
    ProxyTimeout,
    /// TLS handshake not finished within the time limit.
    TlsTimeout,
    /// TLS failed for a reason other than the client certificate.
    TlsProtocol,
    /// The client certificate has expired (or is not yet valid).
    CertExpired,
    /// The client certificate is not issued by a configured CA.
    CertUnknownCa,
    /// The client certificate is revoked by a configured CRL.
    CertRevoked,
    /// No client certificate although the listener requires one.
    CertMissing,
    /// The client certificate is bad in another way.
    CertInvalid,
    /// The WebSocket upgrade was refused or broken.
    WsHandshake,
    /// The WebSocket upgrade did not finish within the time limit.
    WsTimeout,
    /// The socket failed during the handshakes.
    Io,
}

impl Failure {
    /// Every reason, in counter order.
    pub const ALL: [Failure; 14] = [
        Failure::ProxyUntrusted,
        Failure::ProxyMalformed,
        Failure::ProxyMissing,
        Failure::ProxyTimeout,
        Failure::TlsTimeout,
        Failure::TlsProtocol,
        Failure::CertExpired,
        Failure::CertUnknownCa,
        Failure::CertRevoked,
        Failure::CertMissing,
        Failure::CertInvalid,
        Failure::WsHandshake,
        Failure::WsTimeout,
        Failure::Io,
    ];

    /// The metric label of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::ProxyUntrusted => "proxy_untrusted",
            Failure::ProxyMalformed => "proxy_malformed",
            Failure::ProxyMissing => "proxy_missing",
            Failure::ProxyTimeout => "proxy_timeout",
            Failure::TlsTimeout => "tls_timeout",
            Failure::TlsProtocol => "tls_protocol",
            Failure::CertExpired => "cert_expired",
            Failure::CertUnknownCa => "cert_unknown_ca",
            Failure::CertRevoked => "cert_revoked",
            Failure::CertMissing => "cert_missing",
            Failure::CertInvalid => "cert_invalid",
            Failure::WsHandshake => "ws_handshake",
            Failure::WsTimeout => "ws_timeout",
            Failure::Io => "io",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Refused connections per reason, process-wide.
static FAILURES: [AtomicU64; Failure::ALL.len()] =
    [const { AtomicU64::new(0) }; Failure::ALL.len()];

fn count(f: Failure) {
    if let Some(c) = FAILURES.get(f.index()) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Refused connections so far, per reason label (for metrics).
pub fn failure_counts() -> Vec<(&'static str, u64)> {
    Failure::ALL
        .iter()
        .map(|f| {
            let n = FAILURES
                .get(f.index())
                .map_or(0, |c| c.load(Ordering::Relaxed));
            (f.as_str(), n)
        })
        .collect()
}

/// The byte stream of an established connection, whatever it runs over.
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// WebSocket over TCP.
    Ws(Box<ws::WsIo<TcpStream>>),
    /// WebSocket over TLS.
    Wss(Box<ws::WsIo<tokio_rustls::server::TlsStream<TcpStream>>>),
}

/// A connection that completed every handshake of its listener.
pub(crate) struct Established {
    /// The MQTT byte stream.
    pub stream: Stream,
    /// The client address (from the PROXY header when there is one).
    pub addr: SocketAddr,
    /// The verified client certificate, if one was presented.
    pub cert: Option<Arc<CertIdentity>>,
}

/// The transport state of one listener, shared by its connections.
pub(crate) struct Listener {
    name: Arc<str>,
    proxy: Option<proxy::Trusted>,
    tls: Option<Arc<tls::Tls>>,
    websocket: Option<ws::Settings>,
}

impl Listener {
    /// Builds the listener's transport from its config, loading (and so
    /// checking) every TLS file; a bad file is a config error naming the
    /// listener and the file.
    pub fn new(cfg: &ListenerConfig, max_packet_size: u32) -> Result<Listener, ConfigError> {
        let tls = match &cfg.tls {
            None => None,
            Some(t) => Some(Arc::new(tls::Tls::load(&cfg.name, t)?)),
        };
        Ok(Listener {
            name: Arc::from(cfg.name.as_str()),
            proxy: cfg
                .proxy_protocol
                .then(|| proxy::Trusted::new(cfg.proxy_trusted.clone())),
            tls,
            websocket: cfg
                .websocket
                .then(|| ws::Settings::new(&cfg.websocket_path, max_packet_size)),
        })
    }

    /// The listener's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Whether connections on this listener use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// When the TLS server certificate in use expires (Unix seconds);
    /// `None` without TLS. Follows reloads.
    pub fn server_cert_not_after(&self) -> Option<i64> {
        self.tls.as_ref().and_then(|t| t.not_after())
    }

    /// Starts watching the TLS files (if any) until `stop` fires.
    pub fn start_reload(&self, tasks: &TaskTracker, stop: CancellationToken) {
        if let Some(t) = &self.tls {
            tls::spawn_reloader(t.clone(), self.name.clone(), tasks, stop);
        }
    }

    /// Runs the listener's handshakes on an accepted socket. Refusals are
    /// counted and logged here.
    pub async fn establish(&self, tcp: TcpStream, addr: SocketAddr) -> Option<Established> {
        match self.establish_inner(tcp, addr).await {
            Ok(e) => Some(e),
            Err((failure, addr, detail)) => {
                count(failure);
                tracing::debug!(
                    peer = %addr,
                    listener = %self.name,
                    reason = %failure.as_str(),
                    %detail,
                    "connection refused by the transport"
                );
                None
            }
        }
    }

    async fn establish_inner(
        &self,
        mut tcp: TcpStream,
        socket_addr: SocketAddr,
    ) -> Result<Established, (Failure, SocketAddr, String)> {
        let mut addr = socket_addr;
        if let Some(trusted) = &self.proxy {
            if !trusted.contains(socket_addr.ip()) {
                return Err((
                    Failure::ProxyUntrusted,
                    addr,
                    "source not in proxy_trusted".into(),
                ));
            }
            match tokio::time::timeout(PROXY_TIMEOUT, proxy::read_header(&mut tcp)).await {
                Err(_) => return Err((Failure::ProxyTimeout, addr, "no header in time".into())),
                Ok(Err(e)) => return Err((e.failure(), addr, e.to_string())),
                // A LOCAL header (health check by the proxy itself) keeps
                // the socket address.
                Ok(Ok(Some(source))) => addr = source,
                Ok(Ok(None)) => {}
            }
        }
        let fail = |f: Failure, d: String| (f, addr, d);
        let Some(tls) = &self.tls else {
            return match &self.websocket {
                None => Ok(Established {
                    stream: Stream::Tcp(tcp),
                    addr,
                    cert: None,
                }),
                Some(w) => {
                    let io = ws_accept(w, tcp).await.map_err(|(f, d)| fail(f, d))?;
                    Ok(Established {
                        stream: Stream::Ws(Box::new(io)),
                        addr,
                        cert: None,
                    })
                }
            };
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let tls_stream = match tokio::time::timeout(TLS_TIMEOUT, acceptor.accept(tcp)).await {
            Err(_) => return Err(fail(Failure::TlsTimeout, "handshake too slow".into())),
            Ok(Err(e)) => return Err(fail(tls::classify(&e), e.to_string())),
            Ok(Ok(s)) => s,
        };
        let cert = tls::identity(tls_stream.get_ref().1).map(Arc::new);
        if let Some(c) = &cert {
            tracing::debug!(
                peer = %addr,
                listener = %self.name,
                cn = c.info.cn.as_deref().unwrap_or(""),
                sha256 = %c.info.sha256,
                "client certificate verified"
            );
        }
        let stream = match &self.websocket {
            None => Stream::Tls(Box::new(tls_stream)),
            Some(w) => Stream::Wss(Box::new(
                ws_accept(w, tls_stream)
                    .await
                    .map_err(|(f, d)| fail(f, d))?,
            )),
        };
        Ok(Established { stream, addr, cert })
    }
}

async fn ws_accept<S>(w: &ws::Settings, io: S) -> Result<ws::WsIo<S>, (Failure, String)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(WS_TIMEOUT, w.accept(io)).await {
        Err(_) => Err((Failure::WsTimeout, "upgrade too slow".into())),
        Ok(Err(e)) => Err((Failure::WsHandshake, e.to_string())),
        Ok(Ok(s)) => Ok(s),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Ws(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Wss(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Ws(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Wss(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Ws(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Wss(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Ws(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Wss(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
