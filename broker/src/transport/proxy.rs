//! PROXY protocol v1 and v2 (HAProxy's `proxy-protocol.txt`), as sent by
//! load balancers in front of the broker.
//!
//! The header is read exactly — never a byte of the MQTT stream behind it —
//! and bounded: a v1 line is at most 107 bytes, a v2 header at most
//! [`MAX_V2_LEN`] bytes. Parsing is `proxy_header`'s; this module only
//! frames the read and decides what the result means.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use proxy_header::{ParseConfig, ProxyHeader};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::Failure;

/// The 12-byte v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included.
const V1_MAX_LEN: usize = 107;
/// The longest v2 header accepted (16-byte fixed part + addresses + TLVs).
pub(super) const MAX_V2_LEN: usize = 16 + 4096;
/// The shortest header of either version (`PROXY UNKNOWN\r\n`).
const MIN_LEN: usize = 15;

/// The networks PROXY headers are accepted from.
pub(super) struct Trusted(Vec<IpNet>);

impl Trusted {
    /// Trusts `nets`.
    pub fn new(nets: Vec<IpNet>) -> Trusted {
        Trusted(nets)
    }

    /// True if `ip` (IPv4-mapped IPv6 seen as IPv4) is in a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// A PROXY header that could not be read.
#[derive(Debug)]
pub(super) enum ProxyError {
    /// The connection does not start with a PROXY signature.
    Missing,
    /// An unsupported or broken header, or one too long.
    Malformed(&'static str),
    /// The socket closed or failed first.
    Io(std::io::Error),
}

impl ProxyError {
    /// The counter this error goes to.
    pub fn failure(&self) -> Failure {
        match self {
            ProxyError::Missing => Failure::ProxyMissing,
            ProxyError::Malformed(_) => Failure::ProxyMalformed,
            ProxyError::Io(_) => Failure::Io,
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Missing => f.write_str("no PROXY header"),
            ProxyError::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
            ProxyError::Io(e) => write!(f, "PROXY header read failed: {e}"),
        }
    }
}

impl From<std::io::Error> for ProxyError {
    fn from(e: std::io::Error) -> ProxyError {
        ProxyError::Io(e)
    }
}

/// Reads one PROXY header (v1 or v2) and nothing after it. Returns the
/// client's source address, or `None` for a LOCAL/UNKNOWN header (the
/// proxy's own connection, e.g. a health check).
pub(super) async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
) -> Result<Option<SocketAddr>, ProxyError> {
    // The first byte tells a header from a client that sent none (MQTT
    // starts with 0x10), without waiting for more.
    let first = io.read_u8().await?;
    if first != b'P' && first != b'\r' {
        return Err(ProxyError::Missing);
    }
    let mut buf = vec![0u8; MIN_LEN];
    if let Some((head, rest)) = buf.split_first_mut() {
        *head = first;
        io.read_exact(rest).await?;
    }
    if buf.starts_with(b"PROXY ") {
        // v1: one line; read byte by byte so nothing past CRLF is consumed.
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX_LEN {
                return Err(ProxyError::Malformed("v1 line longer than 107 bytes"));
            }
            buf.push(io.read_u8().await?);
        }
    } else if buf.get(..V2_SIGNATURE.len()) == Some(&V2_SIGNATURE[..]) {
        // v2: 16 fixed bytes, the last two the length of the rest.
        buf.push(io.read_u8().await?);
        let len = match buf.get(14..16) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(ProxyError::Malformed("short v2 header")),
        };
        let total = 16 + len;
        if total > MAX_V2_LEN {
            return Err(ProxyError::Malformed("v2 header too long"));
        }
        buf.resize(total, 0);
        if let Some(rest) = buf.get_mut(16..) {
            io.read_exact(rest).await?;
        }
    } else {
        return Err(ProxyError::Missing);
    }
    parse(&buf)
}

/// Parses a complete header (exactly `bytes`, nothing after it).
pub(super) fn parse(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let config = ParseConfig {
        include_tlvs: false,
        allow_v1: true,
        allow_v2: true,
    };
    match ProxyHeader::parse(bytes, config) {
        Ok((header, used)) if used == bytes.len() => Ok(header.proxied_address().map(|a| a.source)),
        Ok(_) => Err(ProxyError::Malformed("trailing bytes in header")),
        Err(proxy_header::Error::BufferTooShort) => Err(ProxyError::Malformed("truncated header")),
        Err(_) => Err(ProxyError::Malformed("invalid header")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proxy_header::ProxiedAddress;

    fn v2(src: &str, dst: &str) -> Vec<u8> {
        let h = ProxyHeader::with_address(ProxiedAddress::stream(
            src.parse().unwrap(),
            dst.parse().unwrap(),
        ));
        let mut buf = [0u8; 256];
        let n = h.encode_to_slice_v2(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyError>, Vec<u8>) {
        let mut r = bytes;
        let res = read_header(&mut r).await;
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        (res, rest)
    }

    #[tokio::test]
    async fn v1_tcp4_and_tcp6_leave_the_stream_intact() {
        let (res, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 1883\r\n\x10\x00").await;
        assert_eq!(res.unwrap(), Some("203.0.113.7:4242".parse().unwrap()));
        assert_eq!(rest, b"\x10\x00");
        let (res, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 5000 1883\r\n").await;
        assert_eq!(res.unwrap(), Some("[2001:db8::1]:5000".parse().unwrap()));
        let (res, rest) = read(b"PROXY UNKNOWN\r\nMQTT").await;
        assert_eq!(res.unwrap(), None);
        assert_eq!(rest, b"MQTT");
    }

    #[tokio::test]
    async fn v2_is_read_exactly() {
        let mut bytes = v2("198.51.100.9:31337", "10.0.0.1:1883");
        bytes.extend_from_slice(b"\x10\x0c");
        let (res, rest) = read(&bytes).await;
        assert_eq!(res.unwrap(), Some("198.51.100.9:31337".parse().unwrap()));
        assert_eq!(rest, b"\x10\x0c");
    }

    #[tokio::test]
    async fn garbage_and_oversize_are_malformed() {
        let (res, _) = read(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00").await;
        assert!(matches!(res, Err(ProxyError::Missing)));
        for bad in [
            &b"PROXY TCP4 nonsense here 1 2\r\n"[..],
            &b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 1883 and a lot more bytes than a v1 line may ever hold, so this never ends well at all\r\n"[..],
        ] {
            let (res, _) = read(bad).await;
            assert!(matches!(res, Err(ProxyError::Malformed(_))), "{bad:?}");
        }
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let (res, _) = read(&big).await;
        assert!(matches!(res, Err(ProxyError::Malformed(_))));
        let (res, _) = read(b"PROXY TCP4").await;
        assert!(matches!(res, Err(ProxyError::Io(_))));
    }

    #[test]
    fn trusted_networks_match_mapped_addresses() {
        let t = Trusted::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(t.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!t.contains("192.168.1.1".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn reader_never_panics_on_prefixed_garbage(
            prefix in prop_oneof![
                Just(b"PROXY ".to_vec()),
                Just(V2_SIGNATURE.to_vec()),
                Just(Vec::new()),
            ],
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut bytes = prefix;
            bytes.extend_from_slice(&tail);
            rt.block_on(async {
                let mut r = &bytes[..];
                let _ = read_header(&mut r).await;
            });
        }

        #[test]
        fn v2_round_trips(a in any::<[u8; 4]>(), port in 1u16..) {
            let src = SocketAddr::from((a, port));
            let bytes = v2(&src.to_string(), "10.0.0.1:1883");
            prop_assert_eq!(parse(&bytes).unwrap(), Some(src));
        }
    }
}
