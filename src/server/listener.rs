//! The listening socket and the accept loop: binding without
//! `SO_REUSEPORT`, admitting connections within the connection limits with
//! no lock (an atomic count, and per-client counts only the accept loop
//! touches), and backing off when the process runs out of descriptors.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_queue::SegQueue;
use log::{debug, info, warn};
use may::coroutine::JoinHandle;
use may::net::{TcpListener, TcpStream};
use socket2::{Domain, SockRef, Socket, Type};

use crate::server::connection::Connection;
use crate::server::deadlines::Deadlines;
use crate::server::head::Refusal;
use crate::server::response::refusal_bytes;
use crate::server::{Handler, Limits};

/// Connections the kernel queues for `accept`.
const BACKLOG: i32 = 1024;

/// How long the accept loop rests when the process is out of descriptors
/// and none can be freed to answer the client.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(100);

/// Binds `addr` with `SO_REUSEADDR` (a restarted server may reuse a port in
/// `TIME_WAIT`) but not `SO_REUSEPORT` (which would let a second server
/// share the port and split its traffic), then listens.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .map_err(|err| io::Error::new(err.kind(), format!("cannot bind {addr}: {err}")))?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    // SAFETY: `into_raw_fd` hands over the descriptor of the socket just
    // bound and listening; nothing else owns or closes it, and may's
    // listener takes ownership of it here.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Wakes the accept loop blocked on `listener` by shutting the listening
/// socket down: its `accept` then fails and the loop sees it is stopping.
pub(crate) fn wake_accept(listener: &TcpListener) {
    if let Err(err) = SockRef::from(listener.inner()).shutdown(Shutdown::Read) {
        debug!("shutting the listening socket down: {err}");
    }
}

/// Starts the coroutine that accepts connections until `stopping` is set.
pub(crate) fn spawn_accept_loop(
    listener: Arc<TcpListener>,
    admissions: Arc<Admissions>,
    handler: Arc<dyn Handler>,
    stopping: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let acceptor = Acceptor {
        listener,
        admissions,
        clients: ClientCounts::default(),
        handler,
        stopping,
        reserve: File::open("/dev/null").ok(),
        exhausted: false,
        run_here: may::config().get_workers() == 1,
    };
    // SAFETY: the accept loop touches no thread-local state and blocks only
    // on may's own I/O and sleep, which is what `spawn` asks of a coroutine.
    let handle = unsafe {
        may::coroutine::Builder::new()
            .name("accept".into())
            .spawn(move || acceptor.run())
    }?;
    Ok(handle)
}

struct Acceptor {
    listener: Arc<TcpListener>,
    admissions: Arc<Admissions>,
    /// Open connections per client address: the accept loop's alone.
    clients: ClientCounts,
    handler: Arc<dyn Handler>,
    stopping: Arc<AtomicBool>,
    /// A descriptor held in reserve: when the process runs out, closing it
    /// makes room to accept one client and tell it so, instead of leaving
    /// every client beyond the limit waiting in the backlog.
    reserve: Option<File>,
    /// In an episode of descriptor exhaustion (one warning per episode).
    exhausted: bool,
    /// Connections start on the accept loop's thread: may runs one
    /// scheduler thread, so there is no other to hand them to.
    run_here: bool,
}

impl Acceptor {
    fn run(mut self) {
        while !self.stopping.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(err) if self.stopping.load(Ordering::SeqCst) => debug!("accept loop stopping: {err}"),
                Err(err) if is_descriptor_exhaustion(&err) => self.on_exhaustion(&err),
                Err(err) => debug!("accept failed: {err}"),
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.exhausted {
            self.exhausted = false;
            info!("accepting connections again: file descriptors are available");
        }
        let admission = match self.admissions.admit(peer.ip(), &mut self.clients) {
            Ok(admission) => admission,
            Err(refusal) => return self.refuse(stream, refusal),
        };
        if let Err(err) = self.start(stream, peer, admission) {
            warn!("cannot start a connection coroutine: {err}");
        }
    }

    /// Starts a connection's coroutine. `spawn` puts it on may's global
    /// queue and wakes a scheduler thread through its eventfd (a write,
    /// then a read and a turn of epoll to clear it): worth it when another
    /// thread may be idle and take the connection while this one goes on
    /// accepting. With one scheduler thread there is none, and
    /// `spawn_local` runs the connection at once on this thread until its
    /// first wait, then comes back here: 3 fewer of the 12 system calls a
    /// connection made when each request came on a new one.
    ///
    /// The connection is made on its coroutine, so that may moves only
    /// what it is made of into the coroutine, not all it holds.
    fn start(&self, stream: TcpStream, peer: SocketAddr, admission: Admission) -> io::Result<()> {
        let builder = may::coroutine::Builder::new();
        let handler = self.handler.clone();
        let serve = move || Connection::new(stream, peer, admission, handler).serve();
        // SAFETY: may asks that a coroutine neither block its thread nor
        // rely on thread-local state across a yield (it may resume on
        // another thread). The connection blocks only on may's own I/O,
        // timers and sync primitives; the only thread-locals on its path
        // (the Date cache, the metrics' thread number) are read inside
        // functions that are never inlined and never yield, so no
        // thread-local address is kept across a yield. `spawn_local` asks
        // no more than `spawn`: it resumes the new coroutine from this one,
        // and may queues it as usual when it first waits.
        unsafe {
            if self.run_here {
                builder.spawn_local(serve)?;
            } else {
                builder.spawn(serve)?;
            }
        }
        Ok(())
    }

    /// Answers a connection the limits do not admit, on a coroutine of its
    /// own so the accept loop never waits on a client.
    fn refuse(&self, stream: TcpStream, refusal: Refusal) {
        self.handler.refused(refusal.status());
        // SAFETY: as for connections: only may's own I/O and timers.
        let spawned = unsafe { may::coroutine::Builder::new().spawn(move || refuse_and_close(stream, refusal)) };
        if let Err(err) = spawned {
            debug!("cannot start a coroutine to refuse a connection: {err}");
        }
    }

    /// Out of descriptors: frees the reserve to accept one waiting client
    /// and tell it 503, then takes the reserve back; with no reserve to
    /// free, rests a while. Never retries at once, so never spins. The
    /// client is admitted instead when the reserve can be taken back at
    /// once: descriptors were freed while the loop waited for it.
    fn on_exhaustion(&mut self, err: &io::Error) {
        if !self.exhausted {
            self.exhausted = true;
            warn!("cannot accept connections: {err}; answering 503 until descriptors are freed");
        }
        if self.reserve.take().is_some() {
            if let Ok((mut stream, peer)) = self.listener.accept() {
                self.reserve = File::open("/dev/null").ok();
                if self.reserve.is_some() {
                    return self.admit(stream, peer);
                }
                self.handler.refused(Refusal::OutOfDescriptors.status());
                let _ = stream.write_all(&refusal_bytes(Refusal::OutOfDescriptors));
                let _ = stream.shutdown(Shutdown::Both);
            }
            self.reserve = File::open("/dev/null").ok();
        }
        if self.reserve.is_none() {
            may::coroutine::sleep(EXHAUSTED_BACKOFF);
            self.reserve = File::open("/dev/null").ok();
        }
    }
}

fn is_descriptor_exhaustion(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Writes the refusal, then closes without losing it (see
/// [`Connection::linger_close`]).
fn refuse_and_close(mut stream: TcpStream, refusal: Refusal) {
    let _ = stream.set_write_timeout(Some(REFUSAL_TIMEOUT));
    if stream.write_all(&refusal_bytes(refusal)).is_ok() {
        crate::server::connection::linger_close(&mut stream, REFUSAL_TIMEOUT, 64 * 1024);
    }
}

/// How long a refused connection is given to take its answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Counts open connections, in all and per client address, and admits new
/// ones within the limits, without a lock: the count of all is an atomic,
/// and the counts per address are kept by the accept loop alone (see
/// [`ClientCounts`]).
pub(crate) struct Admissions {
    limits: Limits,
    open: Arc<AtomicUsize>,
    /// Addresses of connections that have closed since the accept loop last
    /// took them into its [`ClientCounts`]; only used when
    /// `max_connections_per_client` is set. Connections close on any
    /// thread; this queue takes their addresses without a lock.
    closed: SegQueue<IpAddr>,
    /// When connections waiting for bytes time out.
    deadlines: Deadlines,
}

/// Open connections per client address, for `max_connections_per_client`.
/// Only the accept loop admits connections, so only it holds these counts:
/// a plain map, behind no lock. Closed connections reach it through
/// [`Admissions::closed`], which it takes in before each admission, so the
/// count it checks includes every close that happened before it.
#[derive(Default)]
pub(crate) struct ClientCounts {
    open: HashMap<IpAddr, usize>,
}

impl ClientCounts {
    /// Counts out the connections that have closed, and forgets addresses
    /// with none left open: the map holds only addresses with connections.
    fn take_in(&mut self, closed: &SegQueue<IpAddr>) {
        while let Some(client) = closed.pop() {
            if let Some(open) = self.open.get_mut(&client) {
                *open -= 1;
                if *open == 0 {
                    self.open.remove(&client);
                }
            }
        }
    }

    /// Counts in a connection from `client` unless `limit` are open.
    fn admit(&mut self, client: IpAddr, limit: usize) -> bool {
        let open = self.open.entry(client).or_insert(0);
        if *open >= limit {
            return false;
        }
        *open += 1;
        true
    }
}

/// One admitted connection's place; leaving it (on drop) frees the place.
pub(crate) struct Admission {
    admissions: Arc<Admissions>,
    client: IpAddr,
}

impl Admission {
    /// The limits the connection is served within.
    pub(crate) fn limits(&self) -> &Limits {
        &self.admissions.limits
    }

    /// The read deadlines of the server's connections.
    pub(crate) fn deadlines(&self) -> &Deadlines {
        &self.admissions.deadlines
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admissions.release(self.client);
    }
}

/// How many client connections are open, for the metrics.
#[derive(Clone, Debug, Default)]
pub struct ConnectionGauge(Arc<AtomicUsize>);

impl ConnectionGauge {
    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Admissions {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: Arc::new(AtomicUsize::new(0)),
            closed: SegQueue::new(),
            deadlines: Deadlines::default(),
        }
    }

    pub(crate) fn gauge(&self) -> ConnectionGauge {
        ConnectionGauge(self.open.clone())
    }

    /// A place for a connection from `client`, or the refusal to send it.
    /// `clients` are the accept loop's counts per address.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr, clients: &mut ClientCounts) -> Result<Admission, Refusal> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManyConnections);
        }
        if !self.admit_client(client, clients) {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManyClientConnections);
        }
        Ok(Admission {
            admissions: self.clone(),
            client,
        })
    }

    fn admit_client(&self, client: IpAddr, clients: &mut ClientCounts) -> bool {
        let limit = self.limits.max_connections_per_client;
        if limit == 0 {
            return true;
        }
        clients.take_in(&self.closed);
        clients.admit(client, limit)
    }

    fn release(&self, client: IpAddr) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if self.limits.max_connections_per_client != 0 {
            self.closed.push(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admissions(max: usize, per_client: usize) -> Arc<Admissions> {
        Arc::new(Admissions::new(Limits {
            max_connections: max,
            max_connections_per_client: per_client,
            ..Limits::default()
        }))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    #[test]
    fn admits_up_to_the_limit_and_frees_places_on_drop() {
        let admissions = admissions(2, 0);
        let clients = &mut ClientCounts::default();
        let first = admissions.admit(A, clients).unwrap();
        let _second = admissions.admit(B, clients).unwrap();
        assert_eq!(admissions.admit(A, clients).err(), Some(Refusal::TooManyConnections));
        assert_eq!(admissions.gauge().open(), 2);
        drop(first);
        assert!(admissions.admit(A, clients).is_ok());
        assert!(clients.open.is_empty(), "no counts per address without the limit");
    }

    #[test]
    fn the_per_client_limit_counts_each_address_apart() {
        let admissions = admissions(10, 1);
        let clients = &mut ClientCounts::default();
        let a = admissions.admit(A, clients).unwrap();
        assert_eq!(
            admissions.admit(A, clients).err(),
            Some(Refusal::TooManyClientConnections)
        );
        let b = admissions.admit(B, clients).unwrap();
        assert_eq!(admissions.gauge().open(), 2);
        drop(a);
        let again = admissions.admit(A, clients).unwrap();
        assert_eq!(clients.open.len(), 2);
        drop((again, b));
        assert_eq!(admissions.gauge().open(), 0);
        let c = admissions.admit(C, clients).unwrap();
        assert_eq!(
            clients.open.keys().collect::<Vec<_>>(),
            [&C],
            "addresses with no connection are forgotten"
        );
        drop(c);
    }

    #[test]
    fn connections_closed_on_other_threads_free_their_places() {
        let admissions = admissions(100, 3);
        let clients = &mut ClientCounts::default();
        let open: Vec<_> = (0..3).map(|_| admissions.admit(A, clients).unwrap()).collect();
        assert_eq!(
            admissions.admit(A, clients).err(),
            Some(Refusal::TooManyClientConnections)
        );
        let closers: Vec<_> = open
            .into_iter()
            .map(|admission| std::thread::spawn(move || drop(admission)))
            .collect();
        for closer in closers {
            closer.join().unwrap();
        }
        let again: Vec<_> = (0..3).map(|_| admissions.admit(A, clients).unwrap()).collect();
        assert_eq!(clients.open.get(&A), Some(&3));
        assert_eq!(admissions.gauge().open(), 3);
        drop(again);
    }

    #[test]
    fn a_second_bind_of_the_same_port_fails_naming_the_address() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = first.local_addr().unwrap();
        let err = bind(taken).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&taken.to_string()), "{err}");
    }
}
