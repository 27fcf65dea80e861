//! Starts real `starling` processes for integration tests and gives them
//! real clients. Every broker listens on 127.0.0.1 with an OS-chosen port
//! that the test reads back from the broker's own start-up log line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running broker process, killed (by its PID) when dropped.
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
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
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "[[listeners]]\nname = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\n[node]\ndata_dir = \"{}\"\n\n{extra}\n",
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
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[starling] {line}");
                if line.contains("listening for MQTT")
                    && let Some(addr) = line
                        .split("addr=")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                    && let (Some(tx), Ok(a)) = (tx.take(), addr.parse::<SocketAddr>())
                {
                    let _ = tx.send(a);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("broker did not report its listen address");
        Broker {
            child,
            addr,
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

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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
