//! [`StallProxy`]: a TCP relay that can hold the bytes of one direction, so that a
//! request reaches the server and its answer never comes back, or the request never
//! arrives, and then cut every connection, dropping what it held: a network that
//! stalls under a client that times out. It relays any protocol, gRPC (HTTP/2)
//! included, which the HTTP proxies do not.
//!
//! It runs on threads of its own, so a test may start and drop it from sync code or
//! from inside its own runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What the relay's threads share.
#[derive(Debug, Default)]
struct State {
    /// Bytes from the clients are held, not passed on.
    hold_requests: AtomicBool,
    /// Bytes from the server are held, not passed on.
    hold_answers: AtomicBool,
    /// How many cuts there were: a copy started before the last one stops, and what
    /// it held is dropped.
    cuts: AtomicU64,
    stop: AtomicBool,
    /// Both sockets of every connection, to cut them.
    sockets: Mutex<Vec<TcpStream>>,
}

/// The relay; stops when dropped.
#[derive(Debug)]
pub struct StallProxy {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl StallProxy {
    /// Starts a relay on a free port of 127.0.0.1 to `upstream` (`127.0.0.1:PORT`, or
    /// a URL such as `http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> StallProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stall proxy");
        let addr = listener.local_addr().expect("the stall proxy's address");
        let state = Arc::new(State::default());
        let shared = state.clone();
        let thread = thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                relay(&shared, client, server);
            }
        });
        StallProxy {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, what the clients send is held: requests never reach the server.
    pub fn hold_requests(&self) {
        self.state.hold_requests.store(true, Ordering::SeqCst);
    }

    /// From now on, what the server sends is held: requests are served, and their
    /// answers never reach the clients.
    pub fn hold_answers(&self) {
        self.state.hold_answers.store(true, Ordering::SeqCst);
    }

    /// Closes every connection, dropping what was held, and relays again without
    /// holding anything (clients connect anew).
    pub fn cut(&self) {
        self.state.cuts.fetch_add(1, Ordering::SeqCst);
        self.state.hold_requests.store(false, Ordering::SeqCst);
        self.state.hold_answers.store(false, Ordering::SeqCst);
        let sockets = std::mem::take(&mut *self.state.sockets.lock().expect("sockets"));
        for socket in sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop, which sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies both ways between `client` and `server` on two threads.
fn relay(state: &Arc<State>, client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut sockets = state.sockets.lock().expect("sockets");
        for socket in [&client, &server] {
            if let Ok(s) = socket.try_clone() {
                sockets.push(s);
            }
        }
    }
    let cut = state.cuts.load(Ordering::SeqCst);
    let up = state.clone();
    thread::spawn(move || copy(&up, client, server2, cut, |s| &s.hold_requests));
    let down = state.clone();
    thread::spawn(move || copy(&down, server, client2, cut, |s| &s.hold_answers));
}

fn copy(
    state: &State,
    mut from: TcpStream,
    mut to: TcpStream,
    cut: u64,
    hold: fn(&State) -> &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while hold(state).load(Ordering::SeqCst) && state.cuts.load(Ordering::SeqCst) == cut {
            thread::sleep(Duration::from_millis(5));
        }
        if state.cuts.load(Ordering::SeqCst) != cut || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
