//! An HTTP/1.1 server on may coroutines: one coroutine per connection, and
//! every resource a client can make it hold bounded. It knows nothing of
//! tasks: the application hands it a [`Handler`], and the server owns
//! reading, framing, limits and writing.
//!
//! | module | holds |
//! |---|---|
//! | `listener` | binding (no `SO_REUSEPORT`), the accept loop, connection admission |
//! | `connection` | one connection's loop: read, frame, answer, write, in batches |
//! | `deadlines` | read deadlines for waiting connections, rung by one sweeper coroutine |
//! | `head` | parsing a request's line and headers, and what they say about its framing (the one place that decides it) |
//! | `chunked` | the incremental `Transfer-Encoding: chunked` decoder |
//! | `request`, `response` | what a handler reads and writes |
//! | `buffers` | the read, write and response buffers lent to busy connections, kept in a shared pool |
//! | `date` | the cached `Date` header |
//! | `memory` | a connection served from bytes in memory, for tests and benchmarks |
//!
//! What it does, following RFC 9110/9112 and Go's net/http where the RFC
//! leaves a choice:
//! - request heads of up to [`MAX_HEADER_LINES`] lines and
//!   [`Limits::max_header_bytes`] bytes, checked as bytes arrive (431 past
//!   either); a head slower than [`Limits::header_timeout`] gets 408;
//! - bodies framed by `Content-Length` or `Transfer-Encoding: chunked`, at
//!   most [`Limits::max_body_bytes`] once decoded (413), and in within
//!   [`Limits::body_timeout`] of the end of the head (408); `Expect:
//!   100-continue` answered before the body is read;
//! - every answer framed: HEAD answers carry the GET's `Content-Length` and
//!   no body, 1xx/204/304 no body; a malformed request gets a 400 JSON error
//!   and the connection is closed, never a silent close;
//! - persistent connections, pipelining answered in order with one write per
//!   batch (all that has arrived, however many reads it takes, up to about
//!   64 KiB of answers), and a connection that stops reading once
//!   [`MAX_UNWRITTEN`] bytes of its answers are waiting for the client;
//! - a connection whose client never stops sending gives the other
//!   coroutines on its thread a turn after each write.

mod buffers;
mod chunked;
mod connection;
mod date;
mod deadlines;
mod head;
mod listener;
mod memory;
mod request;
mod response;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use may::coroutine::JoinHandle;

pub use listener::ConnectionGauge;
pub use memory::serve_in_memory;
pub use request::Request;
pub use response::Response;

use crate::server::listener::Admissions;

/// Most header lines one request may have; more gets 431.
pub const MAX_HEADER_LINES: usize = 100;

/// Bytes of answers a connection may have waiting for its client before it
/// stops reading further requests: what a client that never reads costs.
pub const MAX_UNWRITTEN: usize = 1024 * 1024;

/// What one client may cost the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Connections open at once from one IP address; 0 for no bound.
    pub max_connections_per_client: usize,
    /// Largest request line plus headers; more gets 431.
    pub max_header_bytes: usize,
    /// Largest request body once decoded; more gets 413.
    pub max_body_bytes: usize,
    /// Time from a request's first byte to the end of its headers; more gets 408.
    pub header_timeout: Duration,
    /// Time from the end of a request's headers to the end of its body;
    /// more gets 408. Without it a client sending its body a byte at a time,
    /// each within the idle timeout, could hold its connection for days.
    pub body_timeout: Duration,
    /// Time a connection may wait for its next request, or for its client
    /// to take its answers, before it is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_client: 0,
            max_header_bytes: 64 * 1024,
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What the application gives the server: an answer for every request.
pub trait Handler: Send + Sync + 'static {
    /// Writes the answer to `request` into `response` (status 200, no
    /// headers and an empty body when called). Runs on the connection's
    /// coroutine: it may park it (may's sleep, channels, locks), never block
    /// its thread. The server adds `Date`, `Content-Length` and `Connection`.
    fn handle(&self, request: &Request<'_>, response: &mut Response);

    /// Told of each answer the server made itself, without calling
    /// [`handle`](Self::handle): a malformed or over-limit request, a
    /// refused connection. For counting; the default does nothing.
    fn refused(&self, _status: u16) {}
}

/// A bound listening socket, not yet serving: [`Server::local_addr`] tells
/// the port it got, so tests can bind port 0.
pub struct Server {
    listener: may::net::TcpListener,
    local_addr: SocketAddr,
    admissions: Arc<Admissions>,
}

impl Server {
    /// Binds `addr` without `SO_REUSEPORT`, so an address already in use is
    /// an error naming it rather than a second server sharing the port.
    pub fn bind(addr: SocketAddr, limits: Limits) -> io::Result<Self> {
        let listener = listener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            admissions: Arc::new(Admissions::new(limits)),
        })
    }

    /// The address the server listens on (with the port chosen, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The count of open connections, for the application's metrics.
    pub fn connections(&self) -> ConnectionGauge {
        self.admissions.gauge()
    }

    /// Starts accepting connections, each served by `handler` on a
    /// coroutine of its own.
    pub fn serve(self, handler: Arc<dyn Handler>) -> io::Result<Running> {
        let listener = Arc::new(self.listener);
        let stopping = Arc::new(AtomicBool::new(false));
        let accept = listener::spawn_accept_loop(listener.clone(), self.admissions, handler, stopping.clone())?;
        Ok(Running {
            accept,
            listener,
            stopping,
            local_addr: self.local_addr,
        })
    }
}

/// A serving server; [`stop_accepting`](Self::stop_accepting) closes its
/// listening socket.
pub struct Running {
    accept: JoinHandle<()>,
    listener: Arc<may::net::TcpListener>,
    stopping: Arc<AtomicBool>,
    local_addr: SocketAddr,
}

impl Running {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Closes the listening socket: new connections are refused by the
    /// kernel; connections already open are still answered.
    pub fn stop_accepting(self) {
        self.stopping.store(true, Ordering::SeqCst);
        listener::wake_accept(&self.listener);
        let _stopped = self.accept.join();
    }
}
