//! Limits on what one client can cost the server, which may_minihttp does
//! not set itself: how many connections are open at once, how long a
//! connection may go without starting a request, and how many bytes may
//! arrive before a request's header block is complete (the library buffers
//! an unfinished header block without limit).
//!
//! Each connection counts the requests it starts; a watchdog thread compares
//! that count with the bytes the kernel has received on the socket. Bytes
//! piling up with no new request mean an endless header block; no new
//! request for the idle timeout means an idle or trickling client. Either
//! way the watchdog closes the socket and the library ends the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::http::handlers::closing_answer;
use crate::http::wire::Socket;

/// How often the watchdog looks at every connection.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Room for one request's header block, on top of its body.
pub const MAX_HEAD_BYTES: u64 = 64 * 1024;

/// The limits the guard enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections beyond this many are answered 503 and closed.
    pub max_connections: usize,
    /// A connection that starts no request for this long is closed.
    pub idle_timeout: Duration,
    /// Bodies longer than this are refused with 413.
    pub max_body_bytes: usize,
}

impl Limits {
    /// Bytes that may arrive after a request starts before the next one
    /// does: the largest body plus [`MAX_HEAD_BYTES`].
    pub fn max_pending_bytes(&self) -> u64 {
        self.max_body_bytes as u64 + MAX_HEAD_BYTES
    }
}

/// The registry of open connections and the watchdog over them.
pub struct Guard {
    limits: Limits,
    connections: Mutex<HashMap<u64, Watched>>,
    next_key: AtomicU64,
}

/// What the watchdog knows of one connection.
struct Watched {
    socket: Socket,
    requests: Arc<AtomicU64>,
    seen_requests: u64,
    bytes_at_last_request: u64,
    last_request: Instant,
    closed: bool,
}

/// Why the watchdog closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Flooding,
    Idle,
}

/// A connection's place in the registry; leaving it (on drop) frees the place.
pub struct Admission {
    guard: Arc<Guard>,
    key: u64,
    requests: Arc<AtomicU64>,
}

impl Admission {
    /// Records that a request has started on this connection.
    pub fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.guard.lock().remove(&self.key);
    }
}

impl Guard {
    /// A guard enforcing `limits`; call [`watch`](Self::watch) to start its watchdog.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            connections: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
        })
    }

    /// Registers a new connection, or `None` when `max_connections` are open.
    /// The connection must drop its [`Admission`] before its socket closes.
    pub fn admit(self: &Arc<Self>, socket: Socket) -> Option<Admission> {
        let mut connections = self.lock();
        if connections.len() >= self.limits.max_connections {
            return None;
        }
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let requests = Arc::new(AtomicU64::new(0));
        connections.insert(
            key,
            Watched {
                socket,
                requests: requests.clone(),
                seen_requests: 0,
                bytes_at_last_request: 0,
                last_request: Instant::now(),
                closed: false,
            },
        );
        Some(Admission {
            guard: self.clone(),
            key,
            requests,
        })
    }

    /// The limits this guard enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.lock().len()
    }

    /// Starts the watchdog thread; it runs for the life of the process.
    pub fn watch(self: &Arc<Self>) -> std::io::Result<()> {
        let guard = self.clone();
        std::thread::Builder::new()
            .name("connection-guard".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(SWEEP_INTERVAL);
                    guard.sweep(Instant::now());
                }
            })?;
        Ok(())
    }

    /// Closes every connection that broke a limit since the last sweep. The
    /// registry stays locked throughout, so no socket is closed and reused
    /// while it is looked at.
    fn sweep(&self, now: Instant) {
        let mut connections = self.lock();
        for watched in connections.values_mut().filter(|watched| !watched.closed) {
            let Some(verdict) = watched.verdict(now, &self.limits) else {
                continue;
            };
            watched.closed = true;
            match verdict {
                Verdict::Flooding => {
                    warn!(
                        "closing a connection that sent over {} bytes without completing a request",
                        self.limits.max_pending_bytes()
                    );
                    watched.socket.send(&closing_answer(
                        (431, "Request Header Fields Too Large"),
                        "request header block too large",
                    ));
                }
                Verdict::Idle => info!("closing a connection idle for {:?}", self.limits.idle_timeout),
            }
            watched.socket.close();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Watched>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Watched {
    fn verdict(&mut self, now: Instant, limits: &Limits) -> Option<Verdict> {
        let bytes = self.socket.bytes_received()?;
        let requests = self.requests.load(Ordering::Relaxed);
        if requests != self.seen_requests {
            self.seen_requests = requests;
            self.bytes_at_last_request = bytes;
            self.last_request = now;
            return None;
        }
        if bytes.saturating_sub(self.bytes_at_last_request) > limits.max_pending_bytes() {
            return Some(Verdict::Flooding);
        }
        (now.duration_since(self.last_request) > limits.idle_timeout).then_some(Verdict::Idle)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    const LIMITS: Limits = Limits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(60),
        max_body_bytes: 1024,
    };

    /// A connected pair: the client end, and the server end the guard watches.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (client, server)
    }

    fn socket_of(server: &TcpStream) -> Socket {
        Socket::from_connection_id(server.as_raw_fd() as usize)
    }

    /// Waits until the kernel has counted `bytes` received on `server`.
    fn await_received(server: &TcpStream, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while socket_of(server).bytes_received().unwrap() < bytes {
            assert!(Instant::now() < deadline, "bytes never arrived");
            std::thread::yield_now();
        }
    }

    fn read_to_end(client: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        String::from_utf8(answer).unwrap()
    }

    #[test]
    fn admits_up_to_the_limit_and_frees_places_on_drop() {
        let guard = Guard::new(LIMITS);
        let (_c1, s1) = pair();
        let (_c2, s2) = pair();
        let (_c3, s3) = pair();
        let first = guard.admit(socket_of(&s1)).unwrap();
        let _second = guard.admit(socket_of(&s2)).unwrap();
        assert!(guard.admit(socket_of(&s3)).is_none());
        assert_eq!(guard.open_connections(), 2);
        drop(first);
        assert!(guard.admit(socket_of(&s3)).is_some());
    }

    #[test]
    fn bytes_without_a_new_request_past_the_limit_close_the_connection() {
        let guard = Guard::new(LIMITS);
        let (mut client, server) = pair();
        let _admission = guard.admit(socket_of(&server)).unwrap();
        let flood = vec![b'a'; LIMITS.max_pending_bytes() as usize + 1];
        client.write_all(&flood).unwrap();
        await_received(&server, flood.len() as u64);
        guard.sweep(Instant::now());
        let answer = read_to_end(&mut client);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(
            answer.ends_with("{\"error\":\"request header block too large\"}\n"),
            "{answer}"
        );
    }

    #[test]
    fn bytes_after_a_new_request_count_from_that_request() {
        let guard = Guard::new(LIMITS);
        let (mut client, mut server) = pair();
        let admission = guard.admit(socket_of(&server)).unwrap();
        let mut chunk = vec![b'a'; LIMITS.max_pending_bytes() as usize];
        client.write_all(&chunk).unwrap();
        server.read_exact(&mut chunk).unwrap();
        admission.request_started();
        guard.sweep(Instant::now());
        client.write_all(&chunk).unwrap();
        server.read_exact(&mut chunk).unwrap();
        guard.sweep(Instant::now());
        assert_eq!(socket_of(&server).bytes_received(), Some(2 * chunk.len() as u64));
        assert!(!guard.lock().values().any(|watched| watched.closed));
    }

    #[test]
    fn a_connection_that_starts_no_request_for_the_idle_timeout_is_closed() {
        let guard = Guard::new(LIMITS);
        let (mut client, server) = pair();
        let _admission = guard.admit(socket_of(&server)).unwrap();
        guard.sweep(Instant::now() + LIMITS.idle_timeout / 2);
        assert!(!guard.lock().values().any(|watched| watched.closed));
        guard.sweep(Instant::now() + LIMITS.idle_timeout * 2);
        assert_eq!(read_to_end(&mut client), "");
    }
}
