//! Starts real `starling` processes for integration tests and gives them
//! real clients. Every broker listens on 127.0.0.1 with an OS-chosen port
//! that the test reads back from the broker's own start-up log line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Whether an external tool (mosquitto_pub, prometheus…) is installed.
/// Missing tools skip the test with a note, unless `STARLING_REQUIRE_TOOLS`
/// is set (CI sets it): then a missing tool fails the test.
pub fn tool_available(name: &str, test: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("STARLING_REQUIRE_TOOLS").is_none(),
            "{test}: {name} is required (STARLING_REQUIRE_TOOLS is set)"
        );
        eprintln!("SKIPPED {test}: {name} not installed");
    }
    found
}

/// How many broker log lines contain every one of `needles`.
impl Broker {
    pub fn count_log(&self, needles: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

/// The allow-everything policy of the protocol tests.
pub fn open_policy() -> String {
    format!("{}/tests/policies/open.toml", env!("CARGO_MANIFEST_DIR"))
}

/// A running broker process, killed (by its PID) when dropped.
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// Every MQTT listener's address, by listener name.
    pub listeners: std::collections::HashMap<String, SocketAddr>,
    /// Every log line the broker wrote so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// A broker with default settings.
    pub fn start() -> Broker {
        Broker::start_with("")
    }

    /// A broker whose config file gets `extra` TOML appended (sections
    /// other than `[[listeners]]`).
    pub fn start_with(extra: &str) -> Broker {
        Broker::start_full(extra, None)
    }

    /// A broker whose admin API accepts `token`.
    pub fn start_with_token(extra: &str, token: &str) -> Broker {
        Broker::start_full(extra, Some(token))
    }

    fn start_full(extra: &str, token: Option<&str>) -> Broker {
        Broker::start_in(
            tempfile::tempdir().expect("tempdir"),
            "[[listeners]]\nname = \"mqtt\"\nbind = \"127.0.0.1:0\"\n",
            extra,
            token,
        )
    }

    /// A broker with the given `[[listeners]]` TOML (use port 0 and read
    /// the ports back from [`Broker::listeners`]) and `extra` sections. The
    /// first listener is [`Broker::addr`].
    pub fn start_raw_config(listeners_toml: &str, extra: &str) -> Broker {
        Broker::start_in(
            tempfile::tempdir().expect("tempdir"),
            listeners_toml,
            extra,
            None,
        )
    }

    /// Like [`Broker::start_raw_config`], with files (certificates…) the
    /// caller already put in `dir`; the broker keeps `dir` alive.
    pub fn start_raw_config_in(
        dir: tempfile::TempDir,
        listeners_toml: &str,
        extra: &str,
    ) -> Broker {
        Broker::start_in(dir, listeners_toml, extra, None)
    }

    /// True once a broker log line contains every one of `needles`
    /// (waits up to `timeout`).
    pub fn wait_log(&self, needles: &[&str], timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| needles.iter().all(|n| l.contains(n)))
            {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_in(
        dir: tempfile::TempDir,
        listeners_toml: &str,
        extra: &str,
        token: Option<&str>,
    ) -> Broker {
        let expected = listeners_toml.matches("[[listeners]]").count().max(1);
        let token_line = match token {
            Some(t) => {
                let p = dir.path().join("admin-token");
                std::fs::write(&p, t).expect("write token");
                format!("token_file = \"{}\"\n", p.display())
            }
            None => String::new(),
        };
        // `[node]` keys of `extra` join the harness's own `[node]` table
        // (it sets data_dir): a test may give them as its first section.
        let (node, extra) = match extra.strip_prefix("[node]\n") {
            Some(rest) => match rest.find("\n[") {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            },
            None => ("", extra),
        };
        // Protocol tests run under a policy that allows everything; access
        // tests bring their own `[auth]` section.
        let auth = if extra.contains("[auth]") {
            String::new()
        } else {
            format!("[auth]\npolicy_file = \"{}\"\n", open_policy())
        };
        let config = format!(
            "{listeners_toml}\n[admin]\nlisten = \"127.0.0.1:0\"\n{token_line}\n[node]\ndata_dir = \"{}\"\n{node}\n{auth}\n{extra}\n",
            dir.path().join("data").display()
        );
        let path = dir.path().join("starling.toml");
        std::fs::write(&path, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("STARLING_LOG", "info,starling_broker=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn starling");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let admin = std::sync::Arc::new(std::sync::Mutex::new(None));
        let admin_slot = admin.clone();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log_slot = log.clone();
        let listeners = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let listeners_slot = listeners.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[starling] {line}");
                log_slot.lock().unwrap().push(line.clone());
                let addr = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                if let Some(a) = addr {
                    if line.contains("listening for admin HTTP") {
                        *admin_slot.lock().unwrap() = Some(a);
                    } else if line.contains("listening for MQTT") {
                        let name = line
                            .split("listener=")
                            .nth(1)
                            .and_then(|s| s.split_whitespace().next())
                            .unwrap_or("")
                            .to_owned();
                        let mut l = listeners_slot.lock().unwrap();
                        l.push((name, a));
                        if l.len() == expected
                            && let Some(tx) = tx.take()
                        {
                            let _ = tx.send(l[0].1);
                        }
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                // Never leave an orphan broker behind.
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not report its listen address");
            }
        };
        // The admin listener is announced before the MQTT one.
        let admin = admin.lock().unwrap().expect("admin address");
        let listeners = listeners.lock().unwrap().iter().cloned().collect();
        Broker {
            child,
            addr,
            admin,
            listeners,
            log,
            _dir: dir,
        }
    }

    /// The MQTT port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        self.child.wait().expect("wait")
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl crate::clients::Target for &Broker {
    fn mqtt_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw TCP connection for malformed-input tests.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub fn connect(b: &Broker) -> Raw {
        let stream = TcpStream::connect(b.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Raw { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) -> &mut Raw {
        // The broker may already have closed: that is what many tests expect.
        let _ = self.stream.write_all(bytes);
        self
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf).expect("read");
        buf
    }

    /// Reads until the broker closes the connection; returns what it sent.
    /// Panics if it stays open for the read timeout.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
                Err(e) => panic!("connection not closed by the broker: {e}"),
            }
        }
    }
}

/// A valid MQTT 3.1.1 CONNECT for `client_id` (clean session, keep alive 60).
pub fn connect_v4(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    frame(0x10, &body)
}

/// A valid MQTT 5 CONNECT for `client_id` (clean start, no properties).
pub fn connect_v5(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    frame(0x10, &body)
}

/// Prefixes a body with a fixed header (remaining length < 16 KiB).
pub fn frame(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A 2-byte length prefix followed by `s` (UTF-8 string or binary data).
pub fn str16(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A variable byte integer.
pub fn varint(mut n: usize) -> Vec<u8> {
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

/// A v5 property block (length prefix + `props`).
pub fn props(props: &[u8]) -> Vec<u8> {
    let mut out = varint(props.len());
    out.extend_from_slice(props);
    out
}

/// A CONNECT with full control: `level` 4 or 5 (5 adds the `props` block
/// and, with a will, `will_props`); `flags` as on the wire; `payload_rest`
/// follows the client id (will topic/payload, user name, password).
pub fn connect_raw(
    level: u8,
    flags: u8,
    keep_alive: u16,
    connect_props: &[u8],
    client_id: &[u8],
    payload_rest: &[u8],
) -> Vec<u8> {
    let mut body = str16(b"MQTT");
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.extend_from_slice(&props(connect_props));
    }
    body.extend_from_slice(&str16(client_id));
    body.extend_from_slice(payload_rest);
    frame(0x10, &body)
}

/// The payload part of a will for [`connect_raw`]: (v5 will properties),
/// topic, payload. Set flag 0x04 (and QoS/retain bits) yourself.
pub fn will_payload(v5: bool, will_props: &[u8], topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if v5 {
        out.extend_from_slice(&props(will_props));
    }
    out.extend_from_slice(&str16(topic.as_bytes()));
    out.extend_from_slice(&str16(payload));
    out
}

/// A PUBLISH (`flags` = DUP/QoS/RETAIN bits); v5 adds the property block.
pub fn publish_raw(
    v5: bool,
    flags: u8,
    topic: &[u8],
    pkid: u16,
    publish_props: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = str16(topic);
    if (flags >> 1) & 0b11 != 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if v5 {
        body.extend_from_slice(&props(publish_props));
    }
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

/// A SUBSCRIBE with (filter, options byte) pairs; v5 adds an empty property block.
pub fn subscribe_raw(v5: bool, pkid: u16, filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for (f, opts) in filters {
        body.extend_from_slice(&str16(f));
        body.push(*opts);
    }
    frame(0x82, &body)
}

/// Splits a byte stream into packets: (first byte, body).
pub fn split_packets(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(&b1) = bytes.first() {
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let Some(&b) = bytes.get(i) else {
                return out;
            };
            len |= usize::from(b & 0x7f) << (7 * (i - 1));
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let Some(body) = bytes.get(i..i + len) else {
            return out;
        };
        out.push((b1, body.to_vec()));
        bytes = &bytes[i + len..];
    }
    out
}

/// The reason code of a v5 DISCONNECT among `bytes` (what a closing
/// broker sent), if there is one. An empty DISCONNECT body means 0x00.
pub fn disconnect_reason(bytes: &[u8]) -> Option<u8> {
    split_packets(bytes)
        .into_iter()
        .find(|(b1, _)| *b1 == 0xE0)
        .map(|(_, body)| body.first().copied().unwrap_or(0))
}

impl Raw {
    /// Reads one packet: (first byte, body); `None` if the broker closed.
    pub fn read_packet(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut b1 = [0u8; 1];
        match self.stream.read(&mut b1) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("no packet from the broker: {e}"),
        }
        let mut len = 0usize;
        for i in 0..4 {
            let b = self.read_exact(1)[0];
            len |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        Some((b1[0], self.read_exact(len)))
    }

    /// Reads one packet; panics if the broker closed the connection.
    pub fn packet(&mut self) -> (u8, Vec<u8>) {
        self.read_packet()
            .expect("the broker closed the connection, a packet was expected")
    }

    /// Connects with `connect` bytes and expects a successful CONNACK.
    pub fn connected(b: &Broker, connect: &[u8]) -> Raw {
        let mut r = Raw::connect(b);
        r.send(connect);
        let (b1, body) = r.packet();
        assert_eq!(b1, 0x20, "expected CONNACK, got {b1:#x} {body:?}");
        assert_eq!(body.get(1), Some(&0), "CONNACK refused: {body:?}");
        r
    }

    /// A 3.1.1 connection after a successful CONNACK.
    pub fn v4(b: &Broker, id: &str) -> Raw {
        Raw::connected(b, &connect_v4(id))
    }

    /// A 5.0 connection after a successful CONNACK.
    pub fn v5(b: &Broker, id: &str) -> Raw {
        Raw::connected(b, &connect_v5(id))
    }

    /// Expects the broker to close the connection without sending anything
    /// (3.1.1 behaviour on a protocol violation).
    pub fn expect_silent_close(&mut self) {
        let got = self.read_to_close();
        assert!(got.is_empty(), "expected a silent close, got {got:02x?}");
    }

    /// Expects the broker to close a v5 connection, sending at most a
    /// DISCONNECT with an error reason (≥ 0x80); returns the reason if sent.
    pub fn expect_v5_error_close(&mut self) -> Option<u8> {
        let got = self.read_to_close();
        let packets = split_packets(&got);
        assert!(
            packets.iter().all(|(b1, _)| *b1 == 0xE0),
            "only a DISCONNECT may precede the close, got {got:02x?}"
        );
        let reason = disconnect_reason(&got);
        if let Some(r) = reason {
            assert!(r >= 0x80, "DISCONNECT reason {r:#x} is not an error");
        }
        reason
    }

    /// Expects the close of a connection whose CONNECT was refused: at most a
    /// CONNACK with a non-zero code, never a successful one.
    pub fn expect_refused_close(&mut self) {
        let got = self.read_to_close();
        for (b1, body) in split_packets(&got) {
            assert_eq!(b1, 0x20, "unexpected packet {b1:#x} {body:?}");
            assert_ne!(body.get(1), Some(&0), "CONNECT was accepted: {got:02x?}");
        }
    }

    /// Sends PINGREQ and expects PINGRESP: the connection is still usable.
    pub fn ping(&mut self) {
        self.send(&[0xC0, 0x00]);
        let (b1, body) = self.packet();
        assert_eq!((b1, body.len()), (0xD0, 0), "expected PINGRESP");
    }
}

/// Asserts the broker still serves fresh clients (3.1.1 and 5.0): each gets
/// a successful CONNACK and answers a PINGREQ.
pub fn assert_alive(b: &Broker) {
    // Keep alive 0: valid whatever `max_keep_alive_secs` a test configured.
    let mut v4 = Raw::connected(b, &connect_raw(4, 0x02, 0, &[], b"alive-check-4", &[]));
    v4.ping();
    let mut v5 = Raw::connected(b, &connect_raw(5, 0x02, 0, &[], b"alive-check-5", &[]));
    v5.ping();
}
