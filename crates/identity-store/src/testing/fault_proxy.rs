//! A TCP proxy that tests put in front of PostgreSQL to play the network's faults:
//! forwarding, refusing (every connection reset, new ones closed at once),
//! black-holing (connections stay open, nothing is forwarded, as behind a partition
//! or a stuck middlebox) and slowing every chunk down. Switching back to
//! [`Fault::None`] heals it: held data flows on, as after a partition.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Open connections are reset; new ones are closed as soon as they arrive.
    Refuse,
    /// Connections stay open and nothing crosses them until the fault ends.
    BlackHole,
    /// Every chunk waits this long before it is forwarded.
    Slow(Duration),
}

#[derive(Debug)]
struct Shared {
    fault: Mutex<Fault>,
    changed: Condvar,
    /// Both ends of every live connection, so `Refuse` can reset them.
    sockets: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[allow(clippy::expect_used)]
impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::None),
            changed: Condvar::new(),
            sockets: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                if accepting.fault() == Fault::Refuse {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                connect_pumps(&accepting, client, server);
            }
        });
        FaultProxy { addr, shared }
    }

    /// The proxy's `host:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (a PostgreSQL URL) pointed at this proxy instead of its own host.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let userinfo = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}{}{path}", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
        if fault == Fault::Refuse {
            let sockets = std::mem::take(
                &mut *self
                    .shared
                    .sockets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            for socket in sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        self.shared.changed.notify_all();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.set(Fault::Refuse);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn connect_pumps(shared: &Arc<Shared>, client: TcpStream, server: TcpStream) {
    let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut sockets = shared.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for socket in [&client, &server] {
            if let Ok(copy) = socket.try_clone() {
                sockets.push(copy);
            }
        }
    }
    for (from, to) in [(client, server_copy), (server, client_copy)] {
        let shared = Arc::clone(shared);
        std::thread::spawn(move || pump(&shared, from, to));
    }
}

/// Copies `from` to `to`, consulting the fault before every chunk.
fn pump(shared: &Shared, mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let fault = {
            let fault = shared.fault.lock().unwrap_or_else(|p| p.into_inner());
            // Black hole: hold the chunk until the fault changes.
            *shared
                .changed
                .wait_while(fault, |f| *f == Fault::BlackHole)
                .unwrap_or_else(|p| p.into_inner())
        };
        match fault {
            Fault::Refuse => break,
            Fault::Slow(delay) => std::thread::sleep(delay),
            Fault::None | Fault::BlackHole => {}
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
