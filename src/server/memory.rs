//! A connection served from bytes in memory: the whole connection loop
//! (framing, limits, batching, closing) without a socket, for tests and
//! benchmarks.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::server::connection::{Connection, Transport, Woken};
use crate::server::deadlines::Wake;
use crate::server::listener::{Admissions, ClientCounts};
use crate::server::{Handler, Limits};

/// Serves one connection whose client sends `reads`, each arriving as one
/// read (empty ones are skipped: a read of nothing is the end of input),
/// then closes its side; returns all the server wrote to it.
pub fn serve_in_memory(handler: Arc<dyn Handler>, limits: Limits, reads: Vec<Vec<u8>>) -> Vec<u8> {
    serve_traced(handler, limits, reads).0
}

/// What a connection asked of its socket besides reads, in order: for
/// tests of which system calls a connection makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SocketCall {
    /// A write of some bytes.
    Write,
    /// TCP_NODELAY set.
    NoDelay,
    /// A look for bytes not read yet.
    Peek,
    /// A turn given to other coroutines.
    GiveWay,
}

/// [`serve_in_memory`], also giving what the connection asked of its socket.
fn serve_traced(handler: Arc<dyn Handler>, limits: Limits, reads: Vec<Vec<u8>>) -> (Vec<u8>, Vec<SocketCall>) {
    let written = Rc::new(RefCell::new(Vec::new()));
    let calls = Rc::new(RefCell::new(Vec::new()));
    let stream = MemoryStream {
        reads: reads.into_iter().filter(|read| !read.is_empty()).collect(),
        written: written.clone(),
        calls: calls.clone(),
    };
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    let admission = Arc::new(Admissions::new(limits))
        .admit(peer.ip(), &mut ClientCounts::default())
        .expect("a first connection is always admitted");
    Connection::new(stream, peer, admission, handler).serve();
    (written.take(), calls.take())
}

/// A waker for a stream that never waits.
struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

struct MemoryStream {
    reads: VecDeque<Vec<u8>>,
    written: Rc<RefCell<Vec<u8>>>,
    calls: Rc<RefCell<Vec<SocketCall>>>,
}

impl MemoryStream {
    fn record(&self, call: SocketCall) {
        self.calls.borrow_mut().push(call);
    }
}

impl Read for MemoryStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(mut chunk) = self.reads.pop_front() else {
            return Ok(0);
        };
        if chunk.len() > buf.len() {
            self.reads.push_front(chunk.split_off(buf.len()));
        }
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}

impl Write for MemoryStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.record(SocketCall::Write);
        }
        self.written.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemoryStream {
    fn set_read_timeout(&self, _timeout: Duration) -> io::Result<()> {
        Ok(())
    }

    fn set_write_timeout(&self, _timeout: Duration) -> io::Result<()> {
        Ok(())
    }

    fn set_nodelay(&self) -> io::Result<()> {
        self.record(SocketCall::NoDelay);
        Ok(())
    }

    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }

    // A read never waits here: every read has bytes or is the end.
    fn wait_readable(&self) -> Woken {
        Woken::Readable
    }

    fn waker(&self) -> Box<dyn Wake> {
        Box::new(NoWake)
    }

    fn shutdown(&self, _how: Shutdown) -> io::Result<()> {
        Ok(())
    }

    fn has_unread(&self) -> bool {
        self.record(SocketCall::Peek);
        !self.reads.is_empty()
    }

    fn give_way(&self) {
        self.record(SocketCall::GiveWay);
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;
    use proptest::prelude::*;

    use super::*;
    use crate::server::{Request, Response};

    /// Answers with what it was asked: method, target and body.
    struct Echo;

    impl Handler for Echo {
        fn handle(&self, request: &Request<'_>, response: &mut Response) {
            if request.target() == "/panic" {
                panic!("asked to");
            }
            response.set_content_type("text/plain");
            let body = response.body_mut();
            body.put_slice(format!("{} {} ", request.method(), request.target()).as_bytes());
            body.put_slice(request.body());
        }
    }

    fn limits() -> Limits {
        Limits {
            max_header_bytes: 1024,
            max_body_bytes: 64,
            ..Limits::default()
        }
    }

    fn serve(reads: &[&[u8]]) -> String {
        let reads = reads.iter().map(|read| read.to_vec()).collect();
        let written = serve_in_memory(Arc::new(Echo), limits(), reads);
        String::from_utf8(written).unwrap()
    }

    /// The answers, without their `Date` lines.
    fn undated(text: &str) -> String {
        text.split("\r\n")
            .filter(|line| !line.starts_with("Date: "))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    fn statuses(text: &str) -> Vec<&str> {
        text.split("HTTP/1.1 ").skip(1).map(|answer| &answer[..3]).collect()
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    const POST: &[u8] = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    const CHUNKED: &[u8] = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
    const HEAD: &[u8] = b"HEAD /d HTTP/1.1\r\nHost: h\r\n\r\n";

    #[test]
    fn pipelined_requests_are_answered_in_order_each_once() {
        let text = serve(&[&[GET, POST, CHUNKED, HEAD].concat()]);
        assert_eq!(statuses(&text), ["200", "200", "200", "200"]);
        let bodies: Vec<&str> = text.split("\r\n\r\n").skip(1).collect();
        assert!(bodies[0].starts_with("GET /a "), "{text}");
        assert!(bodies[1].starts_with("POST /b hello"), "{text}");
        assert!(bodies[2].starts_with("POST /c abcde"), "{text}");
        assert!(
            text.ends_with("Content-Length: 8\r\n\r\n"),
            "HEAD: the GET's length, no body: {text}"
        );
    }

    #[test]
    fn nothing_follows_an_answer_that_closes() {
        let text = serve(&[&[CLOSE, GET].concat()]);
        assert_eq!(statuses(&text), ["200"]);
        assert!(text.contains("Connection: close\r\n"));
    }

    #[test]
    fn a_refusal_comes_after_the_answers_before_it_and_ends_the_connection() {
        let bad = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n";
        let text = serve(&[&[GET, bad.as_slice(), GET].concat()]);
        assert_eq!(statuses(&text), ["200", "400"]);
        assert!(
            text.ends_with("{\"error\":\"invalid Content-Length header\"}\n"),
            "{text}"
        );
    }

    #[test]
    fn limits_are_answered_with_json_errors() {
        let big_head = [b"GET / HTTP/1.1\r\nHost: h\r\nX: ".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(statuses(&serve(&[&big_head])), ["431"]);
        let big_body = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65\r\n\r\n";
        assert_eq!(statuses(&serve(&[big_body])), ["413"]);
        let big_chunks = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n";
        assert_eq!(statuses(&serve(&[big_chunks])), ["413"]);
        assert_eq!(statuses(&serve(&[b"\x16\x03\x01\x00\xa5\x01\x00\x00"])), ["400"]);
        assert_eq!(statuses(&serve(&[b"\r\r\r\r"])), ["400"]);
    }

    #[test]
    fn a_head_over_the_limit_is_refused_before_it_ends() {
        let endless: Vec<&[u8]> = std::iter::once(b"GET / HTTP/1.1\r\nX: ".as_slice())
            .chain(std::iter::repeat_n([b'a'; 100].as_slice(), 20))
            .collect();
        assert_eq!(statuses(&serve(&endless)), ["431"]);
    }

    #[test]
    fn expect_continue_gets_an_interim_answer_before_the_body() {
        let head = b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let text = serve(&[head, b"ok"]);
        assert!(
            text.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            "{text}"
        );
        assert!(text.ends_with("POST /e ok"), "{text}");
    }

    #[test]
    fn a_panicking_handler_is_answered_500_and_the_connection_closed() {
        let panics = b"GET /panic HTTP/1.1\r\nHost: h\r\n\r\n";
        let text = serve(&[&[panics.as_slice(), GET].concat()]);
        assert_eq!(statuses(&text), ["500"]);
        assert!(text.contains("Connection: close\r\n"));
    }

    #[test]
    fn http10_closes_unless_asked_to_keep_alive() {
        assert_eq!(statuses(&serve(&[b"GET / HTTP/1.0\r\n\r\n", GET])), ["200"]);
        let kept = serve(&[b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", GET]);
        assert_eq!(statuses(&kept), ["200", "200"]);
        assert!(kept.contains("Connection: keep-alive\r\n"));
    }

    fn calls(reads: &[&[u8]]) -> Vec<SocketCall> {
        let reads = reads.iter().map(|read| read.to_vec()).collect();
        serve_traced(Arc::new(Echo), limits(), reads).1
    }

    const CLOSE: &[u8] = b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";

    #[test]
    fn tcp_nodelay_is_set_once_before_a_second_write_and_never_for_one() {
        use SocketCall::{NoDelay, Write};
        assert_eq!(calls(&[CLOSE]), [Write]);
        assert_eq!(calls(&[&[GET, GET, CLOSE].concat()]), [Write], "one batch, one write");
        assert_eq!(calls(&[GET, GET, CLOSE]), [Write, NoDelay, Write, Write]);
        let expects = b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            calls(&[expects, b"ok"]),
            [Write, NoDelay, Write],
            "100 Continue, then the answer"
        );
    }

    #[test]
    fn a_batch_larger_than_a_read_is_answered_in_one_write() {
        // 2,800 bytes: more than a connection's first read takes.
        let batch = GET.repeat(100);
        assert_eq!(calls(&[&batch]), [SocketCall::Write]);
        assert_eq!(statuses(&serve(&[&batch])).len(), 100);
    }

    #[test]
    fn a_client_that_never_stops_sending_gets_bounded_writes_and_others_their_turns() {
        use SocketCall::{GiveWay, Write};
        // 224 KiB of requests arriving together, as from a client that
        // sends without pause: more than a batch of answers.
        let calls = calls(&[&GET.repeat(8192)]);
        let writes = calls.iter().filter(|&&call| call == Write).count();
        let turns = calls.iter().filter(|&&call| call == GiveWay).count();
        assert!(writes > 4, "{writes} writes");
        assert_eq!(turns, writes - 1, "a turn after every write but the last: {calls:?}");
        assert_eq!(statuses(&serve(&[&GET.repeat(8192)])).len(), 8192);
    }

    #[test]
    fn only_a_close_the_client_did_not_ask_for_looks_for_unread_bytes() {
        use SocketCall::{Peek, Write};
        assert_eq!(calls(&[CLOSE]), [Write], "Connection: close");
        assert_eq!(calls(&[b"GET / HTTP/1.0\r\n\r\n"]), [Write], "HTTP/1.0");
        assert_eq!(calls(&[GET]), [Write], "the client's end of input");
        assert_eq!(calls(&[b"GET /panic HTTP/1.1\r\nHost: h\r\n\r\n"]), [Write, Peek]);
    }

    /// `input` cut wherever `cuts` say (each taken modulo its length + 1),
    /// in order; some pieces may be empty.
    fn split_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut bounds: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
        bounds.push(0);
        bounds.push(input.len());
        bounds.sort_unstable();
        bounds.windows(2).map(|pair| &input[pair[0]..pair[1]]).collect()
    }

    proptest! {
        #[test]
        fn any_split_of_the_requests_gets_the_same_answers(
            order in prop::collection::vec(0..4usize, 1..6),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let requests = [GET, POST, CHUNKED, HEAD];
            let input: Vec<u8> = order.iter().flat_map(|&i| requests[i].to_vec()).collect();
            let whole = undated(&serve(&[&input]));
            let pieces = split_at(&input, &cuts);
            let split = undated(&serve(&pieces));
            prop_assert_eq!(statuses(&whole).len(), order.len());
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn arbitrary_bytes_always_get_an_answer_or_a_clean_end(
            input in prop::collection::vec(any::<u8>(), 0..300),
            cuts in prop::collection::vec(any::<usize>(), 0..6),
        ) {
            let pieces = split_at(&input, &cuts);
            let whole = undated(&serve(&[&input]));
            prop_assert_eq!(whole, undated(&serve(&pieces)));
        }
    }
}
