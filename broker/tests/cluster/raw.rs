//! A minimal async MQTT client on raw bytes, for exact outcomes: a CONNACK
//! code, a PUBACK reason, or "the connection went away without an answer".
//! rumqttc hides these behind retries and its own state; the checker needs them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any single exchange (the cluster's request_timeout is 3 s).
pub const EXCHANGE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// CONNACK with this non-zero code (v5 reason / 3.1.1 return code).
    Refused(u8),
    /// No CONNACK: connection failed, closed or timed out.
    Io(String),
}

/// The outcome of one QoS≥1 PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubOutcome {
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) with a success reason.
    Acked,
    /// v5 PUBACK/PUBREC with an error reason (≥ 0x80).
    Rejected(u8),
    /// No answer: connection closed, reset or timed out. Outcome unknown.
    Lost(String),
}

pub struct RawClient {
    s: TcpStream,
    /// Bytes read but not yet parsed into a packet (reads are cancel-safe).
    buf: Vec<u8>,
    pub v5: bool,
    next_pkid: u16,
    pub addr: SocketAddr,
}

fn str16(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// One whole packet at the start of `buf`: (first byte, body, bytes used);
/// None if more bytes are needed.
fn parse_frame(buf: &[u8]) -> Result<Option<(u8, Vec<u8>, usize)>, String> {
    let Some(&b1) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut at = 1;
    loop {
        let Some(&b) = buf.get(at) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * (at - 1));
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
        if at > 4 {
            return Err("malformed remaining length".into());
        }
    }
    if buf.len() < at + len {
        return Ok(None);
    }
    Ok(Some((b1, buf[at..at + len].to_vec(), at + len)))
}

fn frame(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    out.extend_from_slice(&varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// CONNECT bytes. `persistent`: v5 clean start 0 + session expiry 3600 s;
/// 3.1.1 clean session 0. Otherwise a clean session.
pub fn connect_packet(v5: bool, client_id: &str, persistent: bool) -> Vec<u8> {
    let mut body = str16(b"MQTT");
    body.push(if v5 { 5 } else { 4 });
    body.push(if persistent { 0x00 } else { 0x02 });
    body.extend_from_slice(&30u16.to_be_bytes());
    if v5 {
        if persistent {
            body.extend_from_slice(&[5, 0x11, 0, 0, 0x0E, 0x10]);
        } else {
            body.push(0);
        }
    }
    body.extend_from_slice(&str16(client_id.as_bytes()));
    frame(0x10, &body)
}

impl RawClient {
    /// Connects; returns the client and the CONNACK's session-present flag.
    pub async fn connect(
        addr: SocketAddr,
        v5: bool,
        client_id: &str,
        persistent: bool,
    ) -> Result<(RawClient, bool), ConnectError> {
        let io = |e: std::io::Error| ConnectError::Io(e.to_string());
        let s = tokio::time::timeout(EXCHANGE, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Io("connect timed out".into()))?
            .map_err(io)?;
        let _ = s.set_nodelay(true);
        let mut c = RawClient {
            s,
            buf: Vec::new(),
            v5,
            next_pkid: 0,
            addr,
        };
        c.s.write_all(&connect_packet(v5, client_id, persistent))
            .await
            .map_err(io)?;
        match c.packet().await {
            Ok((0x20, body)) => {
                let code = body.get(1).copied().unwrap_or(0xFF);
                if code == 0 {
                    let sp = body.first().is_some_and(|f| f & 1 == 1);
                    Ok((c, sp))
                } else {
                    Err(ConnectError::Refused(code))
                }
            }
            Ok((b1, body)) => Err(ConnectError::Io(format!(
                "expected CONNACK, got {b1:#x} {body:?}"
            ))),
            Err(e) => Err(ConnectError::Io(e)),
        }
    }

    /// Reads one packet (first byte, body), bounded by [`EXCHANGE`].
    pub async fn packet(&mut self) -> Result<(u8, Vec<u8>), String> {
        tokio::time::timeout(EXCHANGE, self.packet_unbounded())
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// Reads one packet. Cancel-safe: bytes read are kept in `buf` until a
    /// whole packet is there, so a timed-out call loses nothing.
    async fn packet_unbounded(&mut self) -> Result<(u8, Vec<u8>), String> {
        loop {
            if let Some((b1, body, used)) = parse_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok((b1, body));
            }
            self.buf.reserve(4096);
            let n = self
                .s
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed by the broker".into());
            }
        }
    }

    /// The next PUBLISH: (payload, DUP flag); QoS 1 is acknowledged. Other
    /// packets are skipped; a server DISCONNECT or a closed connection is an
    /// error. Unbounded in time; cancel-safe (wrap it in a timeout).
    pub async fn next_publish(&mut self) -> Result<(String, bool), String> {
        loop {
            let (b1, body) = self.packet_unbounded().await?;
            if b1 == 0xE0 {
                return Err(format!(
                    "DISCONNECT {:#x}",
                    body.first().copied().unwrap_or(0)
                ));
            }
            if b1 & 0xF0 != 0x30 {
                continue;
            }
            let qos = (b1 >> 1) & 3;
            let dup = b1 & 0x08 != 0;
            let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let mut at = 2 + tlen;
            let pkid = (qos > 0).then(|| u16::from_be_bytes([body[at], body[at + 1]]));
            if qos > 0 {
                at += 2;
            }
            if self.v5 {
                at += 1 + usize::from(body[at]);
            }
            let payload = String::from_utf8_lossy(&body[at..]).into_owned();
            if let (1, Some(id)) = (qos, pkid) {
                self.s
                    .write_all(&frame(0x40, &id.to_be_bytes()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            return Ok((payload, dup));
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        self.next_pkid
    }

    /// Reason of a v5 ack body (pkid, then optional reason).
    fn reason(&self, body: &[u8]) -> u8 {
        if self.v5 {
            body.get(2).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// Publishes at QoS 1 or 2 and waits for the final acknowledgement.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
    ) -> PubOutcome {
        assert!(qos == 1 || qos == 2);
        let pkid = self.pkid();
        let mut body = str16(topic.as_bytes());
        body.extend_from_slice(&pkid.to_be_bytes());
        if self.v5 {
            body.push(0);
        }
        body.extend_from_slice(payload);
        let flags = (qos << 1) | u8::from(retain);
        if let Err(e) = self.s.write_all(&frame(0x30 | flags, &body)).await {
            return PubOutcome::Lost(e.to_string());
        }
        loop {
            let (b1, body) = match self.packet().await {
                Ok(p) => p,
                Err(e) => return PubOutcome::Lost(e),
            };
            let id = body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            match b1 {
                0x40 if qos == 1 && id == Some(pkid) => {
                    let r = self.reason(&body);
                    return if r < 0x80 {
                        PubOutcome::Acked
                    } else {
                        PubOutcome::Rejected(r)
                    };
                }
                0x50 if qos == 2 && id == Some(pkid) => {
                    let r = self.reason(&body);
                    if r >= 0x80 {
                        return PubOutcome::Rejected(r);
                    }
                    let rel = frame(0x62, &pkid.to_be_bytes());
                    if let Err(e) = self.s.write_all(&rel).await {
                        return PubOutcome::Lost(e.to_string());
                    }
                }
                0x70 if qos == 2 && id == Some(pkid) => {
                    let r = self.reason(&body);
                    return if r < 0x80 {
                        PubOutcome::Acked
                    } else {
                        PubOutcome::Rejected(r)
                    };
                }
                0xE0 => {
                    return PubOutcome::Lost(format!(
                        "DISCONNECT {:#x}",
                        body.first().copied().unwrap_or(0)
                    ));
                }
                _ => continue,
            }
        }
    }

    /// Sends DISCONNECT (normal) and closes.
    pub async fn disconnect(mut self) {
        let pkt: &[u8] = if self.v5 {
            &[0xE0, 0x01, 0x00]
        } else {
            &[0xE0, 0x00]
        };
        let _ = self.s.write_all(pkt).await;
        let _ = self.s.shutdown().await;
    }
}

/// [`RawClient::connect`] on a node that should accept: retries (up to 10 s)
/// while the node refuses, e.g. in the moments after an election before it
/// has re-established quorum contact itself.
pub async fn connect_retry(
    addr: SocketAddr,
    v5: bool,
    client_id: &str,
    persistent: bool,
) -> (RawClient, bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match RawClient::connect(addr, v5, client_id, persistent).await {
            Ok(c) => return c,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("{client_id}: CONNECT on {addr} still failing: {e:?}")
            }
            Err(e) => {
                eprintln!("{client_id}: CONNECT on {addr} failed ({e:?}); retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl RawClient {
    /// SUBSCRIBE to one filter; returns the SUBACK reason/return code.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<u8, String> {
        let pkid = self.pkid();
        let mut body = pkid.to_be_bytes().to_vec();
        if self.v5 {
            body.push(0);
        }
        body.extend_from_slice(&str16(filter.as_bytes()));
        body.push(qos);
        self.s
            .write_all(&frame(0x82, &body))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let (b1, body) = self.packet().await?;
            if b1 == 0x90 {
                let at = if self.v5 {
                    // pkid, property length (assumed < 128), properties, codes.
                    3 + usize::from(body.get(2).copied().unwrap_or(0))
                } else {
                    2
                };
                return body.get(at).copied().ok_or_else(|| "short SUBACK".into());
            }
        }
    }

    /// Payloads of the PUBLISH packets that arrive until none has for `quiet`
    /// (QoS 1 deliveries are acknowledged).
    pub async fn drain(&mut self, quiet: Duration) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Ok((b1, body))) = tokio::time::timeout(quiet, self.packet_unbounded()).await {
            if b1 & 0xF0 != 0x30 {
                continue;
            }
            let qos = (b1 >> 1) & 3;
            let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let mut at = 2 + tlen;
            let pkid = (qos > 0).then(|| u16::from_be_bytes([body[at], body[at + 1]]));
            if qos > 0 {
                at += 2;
            }
            if self.v5 {
                at += 1 + usize::from(body[at]);
            }
            out.push(String::from_utf8_lossy(&body[at..]).into_owned());
            if let (1, Some(id)) = (qos, pkid) {
                let _ = self.s.write_all(&frame(0x40, &id.to_be_bytes())).await;
            }
        }
        out
    }
}
