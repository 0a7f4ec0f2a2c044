//! The connection guard: a cap on open connections, an idle timeout, and a
//! bound on the bytes a client may send without completing a request.

mod common;

use std::io::Write;
use std::time::Duration;

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
    conn.assert_closed();
    server.wait_for_log("closing a connection idle for 1s", IO_TIMEOUT);
    assert_eq!(server.get("/tasks").status, 200);
}

#[test]
fn an_endless_header_block_gets_431_and_the_server_goes_on() {
    let mut server = Server::start(&[("MAX_BODY_BYTES", "1024")]);
    let mut conn = server.connect();
    conn.send("GET /tasks HTTP/1.1\r\nHost: x\r\nX-Flood: ");
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < 64 * 1024 * 1024 && conn.stream().write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    assert!(
        sent < 64 * 1024 * 1024,
        "the server read 64 MiB of one header without closing"
    );
    let mut answer = conn.read_until_closed();
    let refused = Response::parse(&mut answer, true).expect("a complete 431");
    assert_eq!((refused.status, refused.header("Connection")), (431, Some("close")));
    server.wait_for_log("without completing a request", IO_TIMEOUT);
    server.assert_running();
    assert_eq!(server.get("/tasks").status, 200);
}

/// Many requests add up to far more bytes than the flood bound and outlast
/// the idle timeout; none of that may close a connection that keeps working.
#[test]
fn steady_requests_on_one_connection_are_never_cut_off() {
    let server = Server::start(&[("IDLE_TIMEOUT", "1"), ("MAX_BODY_BYTES", "1024")]);
    let mut conn = server.connect();
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < deadline {
        assert_eq!(conn.get("/tasks").status, 200);
    }
}
