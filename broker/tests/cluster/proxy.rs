//! A fault-injecting TCP proxy for one directed peer link (node i dials node j
//! through it). Plain std threads, so it keeps working whatever the test's
//! runtime does, and it never touches the broker processes.
//!
//! Every mode change closes the connections that are open, so a link never
//! carries a half-dropped (corrupted) frame stream into the next mode.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both directions.
    Pass,
    /// Close open connections; accept new ones but never forward a byte
    /// (the dialer sees a silent peer: handshake timeouts, like lost packets).
    Blackhole,
    /// Forward dialer → listener, silently drop listener → dialer (replies).
    DropReplies,
    /// Forward listener → dialer, silently drop dialer → listener (requests).
    DropRequests,
}

struct Inner {
    mode: Mutex<Mode>,
    /// Bumped on every mode change: connections of an older generation close.
    generation: AtomicU64,
    conns: Mutex<Vec<(u64, TcpStream)>>,
    stop: AtomicBool,
    target: SocketAddr,
}

/// One running proxy; stops (and closes its connections) when dropped.
pub struct Proxy {
    pub listen: SocketAddr,
    inner: Arc<Inner>,
}

impl Proxy {
    /// Listens on `listen` and forwards to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen)?;
        let listen = listener.local_addr()?;
        let inner = Arc::new(Inner {
            mode: Mutex::new(Mode::Pass),
            generation: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            target,
        });
        let i = inner.clone();
        std::thread::spawn(move || accept_loop(listener, i));
        Ok(Proxy { listen, inner })
    }

    /// Switches the mode; open connections are closed.
    pub fn set(&self, mode: Mode) {
        let mut m = self.inner.mode.lock();
        if *m == mode {
            return;
        }
        *m = mode;
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        close_all(&self.inner);
    }

    pub fn mode(&self) -> Mode {
        *self.inner.mode.lock()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        close_all(&self.inner);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.listen, Duration::from_millis(200));
    }
}

fn close_all(inner: &Inner) {
    for (_, s) in inner.conns.lock().drain(..) {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    for conn in listener.incoming() {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        let inner = inner.clone();
        std::thread::spawn(move || serve(client, &inner));
    }
}

fn track(inner: &Inner, generation: u64, s: &TcpStream) -> bool {
    let mut conns = inner.conns.lock();
    // Registered under the lock that `set` also takes: a mode change either
    // sees this stream or happened before (then the generation differs).
    if inner.generation.load(Ordering::SeqCst) != generation || inner.stop.load(Ordering::SeqCst) {
        return false;
    }
    if let Ok(c) = s.try_clone() {
        conns.push((generation, c));
    }
    true
}

fn serve(client: TcpStream, inner: &Arc<Inner>) {
    let (mode, generation) = {
        let m = inner.mode.lock();
        (*m, inner.generation.load(Ordering::SeqCst))
    };
    if !track(inner, generation, &client) {
        return;
    }
    let _ = client.set_nodelay(true);
    if mode == Mode::Blackhole {
        // Swallow everything until the mode changes (then we are closed).
        let mut c = client;
        let mut buf = [0u8; 8192];
        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        return;
    }
    let Ok(upstream) = TcpStream::connect_timeout(&inner.target, Duration::from_secs(1)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    if !track(inner, generation, &upstream) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return;
    }
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let drop_requests = mode == Mode::DropRequests;
    let drop_replies = mode == Mode::DropReplies;
    std::thread::spawn(move || pump(c2, u2, drop_requests));
    pump(upstream, client, drop_replies);
}

/// Copies `from` → `to` (or swallows with `drop`) until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, drop: bool) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !drop && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
