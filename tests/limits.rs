//! The connection limits: a cap on open connections, an idle timeout, and a
//! bound on the bytes a request head may take (`MAX_HEADER_BYTES`).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Conn, IO_TIMEOUT, Response, Server, eventually};

/// An open connection that has been served once, so it is surely admitted.
fn served_connection(server: &Server) -> Conn {
    let mut conn = server.connect();
    assert_eq!(conn.get("/tasks").status, 200);
    conn
}

#[test]
fn connections_over_the_cap_are_refused_with_503() {
    let server = Server::start(&[("MAX_CONNECTIONS", "2")]);
    let first = served_connection(&server);
    let _second = served_connection(&server);
    let mut third = server.connect();
    let mut answer = third.read_until_closed();
    let refused = Response::parse(&mut answer, true).expect("a complete answer");
    assert_eq!(
        (refused.status, refused.error_message().as_str()),
        (503, "too many open connections")
    );
    drop(first);
    eventually(IO_TIMEOUT, "a place to free up", || {
        let mut conn = server.connect();
        conn.send("GET /tasks HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut answer = conn.read_until_closed_or_answered();
        Response::parse(&mut answer, true).filter(|response| response.status == 200)
    });
}

#[test]
fn a_connection_that_starts_no_request_for_the_idle_timeout_is_closed() {
    let server = Server::start(&[("IDLE_TIMEOUT", "1")]);
    let mut conn = served_connection(&server);
    let idle_since = Instant::now();
    conn.assert_closed();
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}, not after the idle timeout of 1s"
    );
    assert_eq!(server.get("/tasks").status, 200);
}

#[test]
fn an_endless_header_block_gets_431_and_the_server_goes_on() {
    let mut server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send("GET /tasks HTTP/1.1\r\nHost: x\r\nX-Flood: ");
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < 64 * 1024 * 1024 && conn.stream().write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    assert!(
        sent < 16 * 1024 * 1024,
        "the server took {sent} bytes of one header without closing"
    );
    let mut answer = conn.read_until_closed();
    let refused = Response::parse(&mut answer, true).expect("a complete 431");
    assert_eq!((refused.status, refused.header("Connection")), (431, Some("close")));
    assert_eq!(refused.error_message(), "request header block too large");
    server.assert_running();
    assert_eq!(server.get("/tasks").status, 200);
}

/// Many requests add up to far more bytes than the head bound and outlast
/// the idle timeout; none of that may close a connection that keeps working.
#[test]
fn steady_requests_on_one_connection_are_never_cut_off() {
    let server = Server::start(&[("IDLE_TIMEOUT", "1"), ("MAX_HEADER_BYTES", "1024")]);
    let mut conn = server.connect();
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        assert_eq!(conn.get("/tasks").status, 200);
    }
}
