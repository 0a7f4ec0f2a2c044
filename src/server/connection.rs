//! One client connection, served on its own coroutine: read what the
//! client sends, answer every complete request in it in order, write the
//! answers in one batch, and read again. Every wait is bounded by a
//! timeout and every buffer by a limit.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use may::io::{WaitIo, WaitIoWaker};
use may::net::TcpStream;

use crate::server::buffers::{self, Buffers};
use crate::server::chunked::{ChunkedDecoder, Progress};
use crate::server::deadlines::{Deadlines, ReadDeadline, Wake};
use crate::server::head::{self, Framing, Head, HeaderLines, ParsedHead, Refusal, Stop};
use crate::server::listener::Admission;
use crate::server::request::Request;
use crate::server::response::{ConnectionHeader, Response, refusal_bytes, write_refusal};
use crate::server::{Handler, Limits, MAX_UNWRITTEN, date};
use httparse::Header;

/// The room made for a connection's first read: enough for most requests,
/// and little to allocate and zero for a connection that sends only one.
const READ_CHUNK: usize = 1024;

/// The most room a read is given when reads keep filling theirs (see
/// [`ReadBuffer::filled`]): a buffer the pool still keeps.
const MAX_READ_CHUNK: usize = buffers::KEEP_CAPACITY;

/// Answers held back, at most, while more of their batch is read (see
/// [`Connection::read_rest_of_batch`]): a client that never stops sending
/// still gets its answers in writes of about this size.
const BATCH_OUTPUT: usize = 64 * 1024;

/// Room made for the answers to what one read brings, so that a batch of
/// pipelined answers is not written through a series of reallocations.
const OUTPUT_CHUNK: usize = 4096;

/// Buffers grown past this for one large request are let go once it is
/// answered, even by a connection that goes on without waiting. (One that
/// waits gives its buffers to the pool, which keeps only those up to the
/// smaller `buffers::KEEP_CAPACITY`.)
const BUSY_KEEP_CAPACITY: usize = 64 * 1024;

/// A head is parsed again on every read while it is this short; past it,
/// only when a read completes a line (where parsing can tell more). A head
/// dripping in byte by byte so costs linear, not quadratic, parsing.
const ALWAYS_PARSED: usize = 1024;

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What a connection needs of its socket; a trait so that the whole
/// connection loop can run against bytes in memory in tests and benchmarks.
pub(crate) trait Transport: Read + Write {
    /// Bounds the next reads that wait (`TimedOut` past it).
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()>;
    /// Bounds the next writes that wait.
    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()>;
    /// Sends small writes at once, without waiting for the client to
    /// acknowledge earlier ones (TCP_NODELAY).
    fn set_nodelay(&self) -> io::Result<()>;
    /// Reads what has arrived, without waiting: `WouldBlock` if nothing has.
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Waits until bytes may have arrived, or [`waker`](Self::waker)'s
    /// wake; what it saw.
    fn wait_readable(&self) -> Woken;
    /// What ends a [`wait_readable`](Self::wait_readable) from elsewhere.
    fn waker(&self) -> Box<dyn Wake>;
    /// Writes what the client has room for, without waiting: `WouldBlock`
    /// if it has none.
    fn write_now(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Ends one or both directions.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// Whether the client has sent bytes not read yet.
    fn has_unread(&self) -> bool;
    /// Lets the other coroutines on this thread run before this one goes
    /// on.
    fn give_way(&self);
}

impl Transport for TcpStream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout))
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_write_timeout(self, Some(timeout))
    }

    fn set_nodelay(&self) -> io::Result<()> {
        TcpStream::set_nodelay(self, true)
    }

    // may's sockets are non-blocking underneath: the std socket inside
    // answers at once.
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&mut self.inner()).read(buf)
    }

    fn write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&mut self.inner()).write(buf)
    }

    fn wait_readable(&self) -> Woken {
        // may's events are epoll's (it asks for EPOLLRDHUP), gathered since
        // the last wait.
        let events = self.wait_io() as u32;
        let ended = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if events & ended != 0 {
            Woken::HungUp
        } else if events & libc::EPOLLIN as u32 != 0 {
            Woken::Readable
        } else {
            // Room to write (a new socket reports it), or the alarm.
            Woken::Other
        }
    }

    fn waker(&self) -> Box<dyn Wake> {
        Box::new(WaitIo::waker(self))
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }

    fn has_unread(&self) -> bool {
        self.inner().peek(&mut [0; 1]).is_ok_and(|read| read > 0)
    }

    fn give_way(&self) {
        may::coroutine::yield_now();
    }
}

/// What ended a wait for bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    /// Bytes arrived.
    Readable,
    /// The client shut down its side, or the socket failed: a read that
    /// takes less than it asked for may still leave the end of input.
    HungUp,
    /// Neither: no read is needed before waiting again.
    Other,
}

impl Wake for WaitIoWaker {
    fn wake(&self) {
        self.wakeup();
    }
}

/// One accepted connection and everything it holds between reads.
pub(crate) struct Connection<T: Transport> {
    stream: T,
    peer: SocketAddr,
    admission: Admission,
    input: ReadBuffer,
    answers: Answers,
    /// The request whose head has arrived but whose body has not.
    pending: Option<Pending>,
    /// The decoded body of a chunked request.
    body: Vec<u8>,
    /// When the first byte of the head being read arrived.
    head_started: Option<Instant>,
    /// Bytes of the head being read that were already looked at.
    scanned: usize,
    /// What the connection knows of its waits for bytes.
    reading: Reading,
    /// What the connection has set on its socket for writing.
    writing: Writing,
    /// Its buffers (input, output and the response) are back in the pool:
    /// it holds none while it waits for a request, nor before its first.
    buffers_released: bool,
}

/// Socket options for writing, set only once a connection needs them, so
/// that a connection that makes a single write (one request, then close)
/// sets none.
#[derive(Default)]
struct Writing {
    /// A write was made. Nagle's algorithm could now hold a later small
    /// write back until the client acknowledges the earlier one, which a
    /// client delaying its acknowledgements makes up to 40 ms: so every
    /// write after the first is made with TCP_NODELAY set.
    wrote: bool,
    /// TCP_NODELAY is set.
    nodelay: bool,
    /// The write timeout is set: not until a write first has to wait.
    timeout: bool,
}

impl Writing {
    /// Sets TCP_NODELAY once; a socket that refuses it still works. The
    /// test is inlined into every write; the setting is not.
    #[inline(always)]
    fn set_nodelay(&mut self, stream: &impl Transport, peer: SocketAddr) {
        if !self.nodelay {
            self.nodelay = true;
            set_nodelay_now(stream, peer);
        }
    }
}

/// [`Writing::set_nodelay`]'s system call, once per connection.
#[cold]
fn set_nodelay_now(stream: &impl Transport, peer: SocketAddr) {
    if let Err(err) = stream.set_nodelay() {
        debug!("connection from {peer}: cannot set TCP_NODELAY: {err}");
    }
}

/// A request waiting for its body: its head is kept apart (so the input
/// buffer holds only body bytes) and parsed again once the body is in.
struct Pending {
    head: Head,
    head_bytes: Vec<u8>,
    chunked: Option<ChunkedDecoder>,
    /// When the body must be in: `BODY_TIMEOUT` after the end of the head.
    deadline: Instant,
}

/// How a connection ends.
enum End {
    /// After an answer that said `Connection: close`, or the client's end
    /// of input with every complete request answered. `client_done`: the
    /// client said it sends nothing more (its end of input, or its own
    /// `Connection: close`, after which RFC 9112 §9.6 forbids it to send
    /// another request), so the socket need not be asked for unread bytes.
    Close { client_done: bool },
    /// A request the server refuses: answer it, then close.
    Refuse(Refusal),
    /// The client is gone or stopped taking answers: nothing more to send.
    Abort,
}

/// What answering the next request in the buffer came to.
enum Step {
    /// Answered; what becomes of the connection after it.
    Answered(After),
    /// No complete request in the buffer.
    NeedMore,
}

impl<T: Transport> Connection<T> {
    pub(crate) fn new(stream: T, peer: SocketAddr, admission: Admission, handler: Arc<dyn Handler>) -> Self {
        Self {
            stream,
            peer,
            admission,
            input: ReadBuffer::default(),
            answers: Answers {
                handler,
                peer_ip: peer.ip(),
                response: Response::default(),
                output: Vec::new(),
                date: [0; date::LINE_LEN],
            },
            pending: None,
            body: Vec::new(),
            head_started: None,
            scanned: 0,
            reading: Reading::default(),
            writing: Writing::default(),
            buffers_released: true,
        }
    }

    /// Serves the connection until it ends, then closes it.
    pub(crate) fn serve(mut self) {
        let limits = *self.admission.limits();
        let end = self.run(&limits);
        self.reading.deadline.disarm(self.admission.deadlines());
        match end {
            End::Close { client_done } => self.close(client_done, &limits),
            End::Refuse(refusal) => self.refuse(refusal, &limits),
            End::Abort => {}
        }
        // For the next connection: a new connection per request then
        // allocates (and zeroes) no buffer.
        self.release_buffers();
    }

    fn run(&mut self, limits: &Limits) -> End {
        self.answers.date = date::line();
        loop {
            match self.next_request(limits) {
                Ok(Step::Answered(After::KeepOpen)) if self.answers.output.len() >= MAX_UNWRITTEN => {
                    if self.flush().is_err() {
                        return End::Abort;
                    }
                }
                Ok(Step::Answered(After::KeepOpen)) => {}
                Ok(Step::Answered(after)) => {
                    return End::Close {
                        client_done: after == After::ClientCloses,
                    };
                }
                Ok(Step::NeedMore) => {
                    if let Some(end) = self.read_rest_of_batch(limits) {
                        return end;
                    }
                }
                Err(refusal) => return End::Refuse(refusal),
            }
        }
    }

    /// Answers the next request in the input if it is complete.
    fn next_request(&mut self, limits: &Limits) -> Result<Step, Refusal> {
        match self.pending.take() {
            Some(pending) => self.continue_body(pending),
            None => self.start_request(limits),
        }
    }

    /// Looks for a complete head at the start of the input; answers the
    /// request at once if its body is in too.
    #[inline(never)] // its header lines need not stay on the stack while the connection waits
    fn start_request(&mut self, limits: &Limits) -> Result<Step, Refusal> {
        let input = self.input.data();
        if input.is_empty() {
            return Ok(Step::NeedMore);
        }
        let worth_parsing = input.len() <= ALWAYS_PARSED || input[self.scanned..].contains(&b'\n');
        self.scanned = input.len();
        let mut headers = HeaderLines::new();
        let parsed = if worth_parsing {
            head::parse(input, &mut headers)
        } else {
            Err(Stop::Incomplete)
        };
        // Borrowed where `parse` wrote it, never moved: copying the parse's
        // result out of its `Result` cost two stalled loads (the copy's
        // unaligned reads spanned the parser's writes).
        let request = match &parsed {
            Ok(request) => request,
            Err(Stop::Incomplete) if input.len() > limits.max_header_bytes => return Err(Refusal::HeadTooLarge),
            Err(Stop::Incomplete) => {
                self.head_started.get_or_insert_with(Instant::now);
                return Ok(Step::NeedMore);
            }
            Err(Stop::Refused(refusal)) => return Err(*refusal),
        };
        let len = request.len;
        if len > limits.max_header_bytes {
            return Err(Refusal::HeadTooLarge);
        }
        let head = match &request.head {
            Ok(head) => head,
            Err(refusal) => return Err(*refusal),
        };
        self.head_started = None;
        self.scanned = 0;
        let body_input = &input[len..];
        match head.framing {
            Framing::Length(length) if length > limits.max_body_bytes as u64 => Err(Refusal::BodyTooLarge),
            Framing::Length(length) if body_input.len() as u64 >= length => {
                let body = &body_input[..length as usize];
                let after = self.answers.answer(request, &headers, body, head);
                drop(headers); // they borrow the input
                self.input.consume(len + length as usize);
                Ok(Step::Answered(after))
            }
            Framing::Length(_) => {
                drop(headers);
                self.await_body(*head, None, limits)
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new(limits.max_body_bytes);
                self.body.clear();
                match decoder.decode(body_input, &mut self.body)? {
                    Progress::Done(used) => {
                        let after = self.answers.answer(request, &headers, &self.body, head);
                        drop(headers);
                        self.input.consume(len + used);
                        self.release_body();
                        Ok(Step::Answered(after))
                    }
                    Progress::NeedMore => {
                        drop(headers);
                        self.await_body(*head, Some(decoder), limits)
                    }
                }
            }
        }
    }

    /// Sets the request aside until its body arrives: its head moves out
    /// of the input, and a client waiting for `100 Continue` is sent it.
    fn await_body(&mut self, head: Head, chunked: Option<ChunkedDecoder>, limits: &Limits) -> Result<Step, Refusal> {
        let head_bytes = self.input.data()[..head.len].to_vec();
        let decoded_input = match chunked {
            Some(_) => self.input.data().len(),
            None => head.len,
        };
        self.input.consume(decoded_input);
        if head.expects_continue {
            self.answers.output.extend_from_slice(CONTINUE);
        }
        self.pending = Some(Pending {
            head,
            head_bytes,
            chunked,
            deadline: Instant::now() + limits.body_timeout,
        });
        Ok(Step::NeedMore)
    }

    /// Takes the body of the request set aside, and answers it once whole.
    #[inline(never)] // as `start_request`
    fn continue_body(&mut self, mut pending: Pending) -> Result<Step, Refusal> {
        let (used, body): (usize, &[u8]) = match (&mut pending.chunked, pending.head.framing) {
            (Some(decoder), _) => match decoder.decode(self.input.data(), &mut self.body)? {
                Progress::Done(used) => (used, &self.body),
                Progress::NeedMore => {
                    self.input.clear();
                    self.pending = Some(pending);
                    return Ok(Step::NeedMore);
                }
            },
            (None, Framing::Length(length)) if self.input.data().len() as u64 >= length => {
                (length as usize, &self.input.data()[..length as usize])
            }
            (None, _) => {
                self.pending = Some(pending);
                return Ok(Step::NeedMore);
            }
        };
        let mut headers = HeaderLines::new();
        let request = head::parse(&pending.head_bytes, &mut headers).map_err(Stop::of_whole_head)?;
        let after = self.answers.answer(&request, &headers, body, &pending.head);
        self.input.consume(used);
        self.release_body();
        Ok(Step::Answered(after))
    }

    /// Lets go of a decoded body that grew large.
    fn release_body(&mut self) {
        if self.body.capacity() > BUSY_KEEP_CAPACITY {
            self.body = Vec::new();
        }
    }

    /// Reads what more of the batch being answered has arrived, where the
    /// last read filled all its room and so may have left some: its
    /// requests are then answered in the same write (up to
    /// [`BATCH_OUTPUT`] of answers). Otherwise, or if there is none, writes
    /// the answers and reads the next requests, waiting for them if none
    /// have come. `Some` when the connection ends instead.
    fn read_rest_of_batch(&mut self, limits: &Limits) -> Option<End> {
        let held = self.answers.output.len();
        if !self.reading.drained && held > 0 && held < BATCH_OUTPUT {
            let room = self.room_to_read(limits);
            if let Some(read) = self.reading.try_read(&mut self.stream, self.input.spare(room)) {
                let read = read.inspect(|&read| self.input.filled(read));
                return self.took(read);
            }
        }
        if self.flush().is_err() {
            return Some(End::Abort);
        }
        if held > 0 && !self.reading.drained {
            // More is waiting, so this coroutine could go on answering
            // without ever giving up its thread: a coroutine is never
            // preempted.
            self.stream.give_way();
        }
        let end = self.fill(limits);
        self.answers.date = date::line();
        end
    }

    /// Reads more from the client; `Some` when the connection ends instead.
    fn fill(&mut self, limits: &Limits) -> Option<End> {
        let deadline = self.read_deadline(limits);
        let read = self.read_input(limits, deadline);
        self.took(read)
    }

    /// What a read came to: `Some` when the connection ends. Inlined into
    /// both callers, as it was when it was `fill`'s own.
    #[inline(always)]
    fn took(&self, read: io::Result<usize>) -> Option<End> {
        match read {
            Ok(0) => Some(self.end_of_input()),
            Ok(_) => None,
            Err(err) if err.kind() == io::ErrorKind::TimedOut => Some(self.timed_out()),
            Err(err) => {
                debug!("connection from {}: read failed: {err}", self.peer);
                Some(End::Abort)
            }
        }
    }

    /// Reads into the input, waiting for bytes until `deadline`.
    fn read_input(&mut self, limits: &Limits, deadline: Instant) -> io::Result<usize> {
        if self.pending.is_none() && self.input.data().is_empty() {
            return self.read_between_requests(deadline);
        }
        let room = self.room_to_read(limits);
        let deadlines = self.admission.deadlines();
        let read = self
            .reading
            .read(&mut self.stream, deadlines, self.input.spare(room), deadline);
        read.inspect(|&read| self.input.filled(read))
    }

    /// Reads the next request, waiting for it holding no buffer: while the
    /// connection waits, its buffers are back in the pool (for the next
    /// connection that reads), so a connection waiting for its next request
    /// costs little more than its stack. Bytes already there are read
    /// into the buffers it holds.
    fn read_between_requests(&mut self, deadline: Instant) -> io::Result<usize> {
        loop {
            if !self.reading.drained {
                self.hold_buffers();
                if let Some(read) = self
                    .reading
                    .try_read(&mut self.stream, self.input.spare(self.input.chunk))
                {
                    return read.inspect(|&read| self.input.filled(read));
                }
            }
            self.release_buffers();
            self.reading
                .wait(&mut self.stream, self.admission.deadlines(), deadline)?;
        }
    }

    /// Takes buffers from the pool, if the connection gave its own back.
    fn hold_buffers(&mut self) {
        if self.buffers_released {
            self.buffers_released = false;
            let buffers = buffers::take(OUTPUT_CHUNK);
            self.input.bytes = buffers.read;
            self.answers.output = buffers.write;
            self.answers.response = buffers.response;
        }
    }

    /// Gives the buffers back to the pool, emptied: called when the input
    /// and output hold nothing more to use.
    fn release_buffers(&mut self) {
        if !self.buffers_released {
            self.buffers_released = true;
            self.input.clear();
            buffers::give(Buffers {
                read: std::mem::take(&mut self.input.bytes),
                write: std::mem::take(&mut self.answers.output),
                response: std::mem::take(&mut self.answers.response),
            });
        }
    }

    /// How much to read next: what the body still needs, or enough to
    /// double what is held; at most a chunk more than a body may be.
    fn room_to_read(&self, limits: &Limits) -> usize {
        let chunk = self.input.chunk;
        let room = match &self.pending {
            Some(Pending {
                head, chunked: None, ..
            }) => match head.framing {
                Framing::Length(length) => (length as usize).saturating_sub(self.input.data().len()).max(chunk),
                Framing::Chunked => chunk.max(self.body.len()),
            },
            _ => chunk.max(self.input.data().len()),
        };
        room.min(limits.max_body_bytes + chunk)
    }

    /// The client has closed its side: every complete request was answered;
    /// a head cut short that is already malformed still gets its 400.
    fn end_of_input(&self) -> End {
        let input = self.input.data();
        if self.pending.is_none()
            && !input.is_empty()
            && let Err(Stop::Refused(refusal)) = head::parse(input, &mut HeaderLines::new())
        {
            return End::Refuse(refusal);
        }
        End::Close { client_done: true }
    }

    /// A read ran past its timeout: a head or a body in progress gets 408;
    /// a quiet connection between requests is closed.
    fn timed_out(&self) -> End {
        if self.pending.is_some() {
            End::Refuse(Refusal::BodyTimeout)
        } else if self.head_started.is_some() {
            End::Refuse(Refusal::HeadTimeout)
        } else {
            debug!("connection from {}: closed after its timeout", self.peer);
            End::Abort
        }
    }

    /// When the next wait for bytes ends: the body timeout after the end of
    /// the head while a body is arriving, the header timeout after a head's
    /// first byte while it is arriving, the idle timeout from now otherwise.
    fn read_deadline(&self, limits: &Limits) -> Instant {
        match (&self.pending, self.head_started) {
            (Some(pending), _) => pending.deadline,
            (None, Some(started)) => started + limits.header_timeout,
            (None, None) => Instant::now() + limits.idle_timeout,
        }
    }

    /// Writes every answer waiting, in one write where the socket takes it.
    fn flush(&mut self) -> io::Result<()> {
        if self.answers.output.is_empty() {
            return Ok(());
        }
        let written = self.write_output();
        let output = &mut self.answers.output;
        output.clear();
        if output.capacity() > BUSY_KEEP_CAPACITY {
            *output = Vec::new();
        }
        written
    }

    /// Writes the output whole: what the client has room for at once, and
    /// only if that is not all, the rest waiting at most the idle timeout
    /// for room (set then, so that a client that reads its answers costs
    /// no system call to set it).
    fn write_output(&mut self) -> io::Result<()> {
        if self.writing.wrote {
            self.writing.set_nodelay(&self.stream, self.peer);
        }
        self.writing.wrote = true;
        let output = &self.answers.output;
        let written = match self.stream.write_now(output) {
            Ok(written) => written,
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => 0,
            Err(err) => return Err(err),
        };
        if written == output.len() {
            return Ok(());
        }
        self.writing.set_nodelay(&self.stream, self.peer);
        if !self.writing.timeout {
            self.stream.set_write_timeout(self.admission.limits().idle_timeout)?;
            self.writing.timeout = true;
        }
        // may's write clears the socket's record of events, which the next
        // wait for bytes relies on: read before waiting again.
        self.reading.drained = false;
        self.stream.write_all(&output[written..])
    }

    /// Sends the last answers and closes: at once if the client has sent
    /// nothing more, or after taking what it sends (requests pipelined
    /// behind a close are never answered, but must not reset the
    /// connection before the client has read the answers). Only a client
    /// that is not `client_done` is asked for bytes not read yet.
    fn close(&mut self, client_done: bool, limits: &Limits) {
        if self.flush().is_err() {
            return;
        }
        let unread = !self.input.data().is_empty() || (!client_done && self.stream.has_unread());
        if unread {
            self.linger_close(limits);
        }
        // Otherwise dropping the stream closes it, and the kernel sends the
        // client its end-of-file after the answers.
    }

    /// Sends the answers made so far, then the refusal, and closes.
    fn refuse(&mut self, refusal: Refusal, limits: &Limits) {
        debug!("connection from {}: refused: {}", self.peer, refusal.message());
        self.answers.handler.refused(refusal.status());
        self.answers.output.extend_from_slice(&refusal_bytes(refusal));
        if self.flush().is_ok() {
            self.linger_close(limits);
        }
    }

    /// [`linger_close`] within the connection's limits: at most a second
    /// (or the idle timeout, if shorter), at most a request's worth of bytes.
    fn linger_close(&mut self, limits: &Limits) {
        let unread_limit = limits.max_body_bytes + limits.max_header_bytes;
        linger_close(&mut self.stream, LINGER.min(limits.idle_timeout), unread_limit);
    }
}

/// What a connection knows of its waits for bytes: may's `wait_io`, which
/// has no timeout of its own, timed by [`Deadlines`].
#[derive(Default)]
struct Reading {
    /// When the wait in progress ends.
    deadline: ReadDeadline,
    /// The last read took every byte that had arrived: the next read waits
    /// for more first rather than make a system call that would find none.
    drained: bool,
    /// The client has shut down its side: reads never wait first again.
    hung_up: bool,
}

impl Reading {
    /// Reads what has arrived into `buf`, waiting for bytes until `at`
    /// (`TimedOut` then). After a read that took every byte there was, it
    /// waits before reading again: a keep-alive connection then makes one
    /// read per request, not a second that finds nothing. (Bytes that
    /// arrive after a read wake the wait: may's epoll is edge-triggered and
    /// each arrival is an edge. The end of input that came with the bytes
    /// read is no new edge, hence `hung_up`.)
    fn read(
        &mut self,
        stream: &mut impl Transport,
        deadlines: &Deadlines,
        buf: &mut [u8],
        at: Instant,
    ) -> io::Result<usize> {
        loop {
            if !self.drained
                && let Some(read) = self.try_read(stream, buf)
            {
                return read;
            }
            self.wait(stream, deadlines, at)?;
        }
    }

    /// Reads what has arrived into `buf` without waiting; `None` if nothing
    /// has (the connection is then drained).
    fn try_read(&mut self, stream: &mut impl Transport, buf: &mut [u8]) -> Option<io::Result<usize>> {
        loop {
            return match stream.read_now(buf) {
                Ok(read) => {
                    self.drained = read < buf.len() && !self.hung_up;
                    Some(Ok(read))
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    None
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => Some(Err(err)),
            };
        }
    }

    /// Waits once for bytes or the end of input, until `at` (`TimedOut`
    /// then); afterwards the connection is drained only if woken for
    /// neither.
    fn wait(&mut self, stream: &mut impl Transport, deadlines: &Deadlines, at: Instant) -> io::Result<()> {
        self.deadline.arm(deadlines, at, || stream.waker());
        let woken = stream.wait_readable();
        self.hung_up |= woken == Woken::HungUp;
        if self.deadline.passed(at) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.drained = woken == Woken::Other;
        Ok(())
    }
}

/// How long a closing connection waits for its client to stop sending.
const LINGER: Duration = Duration::from_secs(1);

/// The application's side of a connection: the handler, and the answers
/// it has written that are waiting to be sent.
struct Answers {
    handler: Arc<dyn Handler>,
    /// The client's address, as each request carries it.
    peer_ip: IpAddr,
    /// The answer being written: reused from request to request, and kept
    /// in the buffer pool while the connection waits.
    response: Response,
    /// Encoded answers not yet written to the socket.
    output: Vec<u8>,
    /// The `Date` line of the answers being made: read once per batch of
    /// requests, and again after a handler that waited.
    date: [u8; date::LINE_LEN],
}

impl Answers {
    /// Calls the handler for one request and encodes its answer; says
    /// whether the connection stays open after it. A handler that panics
    /// is answered 500 and closes the connection: its state cannot be
    /// trusted.
    fn answer(&mut self, parsed: &ParsedHead<'_>, headers: &[Header<'_>], body: &[u8], head: &Head) -> After {
        let request = Request::with_peer(parsed.method, parsed.target, headers, body, self.peer_ip);
        self.response.clear();
        let handler = &*self.handler;
        let response = &mut self.response;
        let failed = catch_unwind(AssertUnwindSafe(|| handler.handle(&request, response))).is_err();
        if failed {
            handler.refused(Refusal::HandlerFailed.status());
            write_refusal(response, Refusal::HandlerFailed);
        }
        let connection = if failed || !head.keep_alive {
            ConnectionHeader::Close
        } else if head.confirm_keep_alive {
            ConnectionHeader::KeepAlive
        } else {
            ConnectionHeader::Default
        };
        if response.is_delayed() {
            // The batch's clock reading is as old as the wait: this answer,
            // and those after it in the batch, are made now.
            self.date = date::line();
        }
        response.encode(&mut self.output, &self.date, head.is_head, connection);
        match connection {
            ConnectionHeader::Close if !head.keep_alive => After::ClientCloses,
            ConnectionHeader::Close => After::ServerCloses,
            _ => After::KeepOpen,
        }
    }
}

/// What becomes of a connection after an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    /// It stays open for the next request.
    KeepOpen,
    /// It closes, as the client asked (`Connection: close`, or HTTP/1.0
    /// without keep-alive).
    ClientCloses,
    /// It closes because the server will not go on with it.
    ServerCloses,
}

/// Closes a connection whose client may still be sending (a refused body,
/// requests pipelined behind a close): stops writing, then reads and drops
/// what arrives for up to `timeout` or `limit` bytes, so that closing with
/// unread data does not make the kernel reset the connection and destroy
/// the answer before the client has read it.
pub(crate) fn linger_close(stream: &mut impl Transport, timeout: Duration, limit: usize) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(timeout);
    let deadline = Instant::now() + timeout;
    let mut sink = [0u8; 1024];
    let mut drained = 0;
    while drained < limit && Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(read) => drained += read,
        }
    }
}

/// The bytes read from a client and not yet consumed, in one buffer that
/// is zeroed only when it grows (so reads need no `unsafe`) and compacted
/// rather than grown when its front is free.
struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    /// The room the next read is given at least: [`READ_CHUNK`], doubled
    /// after every read that filled all it was given, up to
    /// [`MAX_READ_CHUNK`]. A client that pipelines more than a chunk at a
    /// time so soon has its whole batch taken, and answered, at once.
    chunk: usize,
    /// The room the last [`spare`](Self::spare) gave.
    offered: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        Self {
            bytes: Vec::new(),
            start: 0,
            end: 0,
            chunk: READ_CHUNK,
            offered: 0,
        }
    }
}

impl ReadBuffer {
    fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Inlined: once per request (the call cost 8 instructions).
    #[inline(always)]
    fn consume(&mut self, count: usize) {
        self.start += count;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        if self.bytes.len() > BUSY_KEEP_CAPACITY {
            self.bytes = Vec::new();
        }
    }

    /// At least `room` bytes to read into, after the data. Inlined into
    /// each of its three callers: out of line it cost 32 instructions a
    /// read.
    #[inline(always)]
    fn spare(&mut self, room: usize) -> &mut [u8] {
        if self.bytes.len() - self.end < room && self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.bytes.len() - self.end < room {
            self.bytes.resize(self.end + room, 0);
        }
        self.offered = self.bytes.len() - self.end;
        &mut self.bytes[self.end..]
    }

    /// Takes in `count` bytes read into the [`spare`](Self::spare) room;
    /// a read that filled it makes the next chunk larger.
    fn filled(&mut self, count: usize) {
        self.end += count;
        if count == self.offered {
            self.chunk = (self.chunk * 2).min(MAX_READ_CHUNK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_buffer_compacts_before_it_grows() {
        let mut buffer = ReadBuffer::default();
        buffer.spare(8)[..6].copy_from_slice(b"abcdef");
        buffer.filled(6);
        buffer.consume(4);
        assert_eq!(buffer.data(), b"ef");
        let room = buffer.spare(6).len();
        assert!(room >= 6);
        assert_eq!(buffer.bytes.len(), 8, "compacted, not grown");
        assert_eq!(buffer.data(), b"ef");
        buffer.consume(2);
        assert_eq!((buffer.start, buffer.end), (0, 0));
    }

    #[test]
    fn reads_that_fill_their_room_make_the_next_larger_up_to_a_bound() {
        let mut buffer = ReadBuffer::default();
        let read = |buffer: &mut ReadBuffer, short: usize| {
            let room = buffer.spare(buffer.chunk).len();
            buffer.filled(room - short);
            buffer.consume(room - short);
            room
        };
        assert_eq!(read(&mut buffer, 0), READ_CHUNK);
        assert_eq!(buffer.chunk, 2 * READ_CHUNK);
        assert_eq!(read(&mut buffer, 1), 2 * READ_CHUNK);
        assert_eq!(buffer.chunk, 2 * READ_CHUNK, "a short read leaves it");
        for _ in 0..10 {
            read(&mut buffer, 0);
        }
        assert_eq!(buffer.chunk, MAX_READ_CHUNK);
    }
}
