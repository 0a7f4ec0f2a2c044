//! HTTP/1.1 message handling: framing errors, chunked bodies, body limits,
//! `100 Continue`, `Host`, persistent and closing connections, pipelining,
//! absolute-form.

mod common;

use common::{Conn, Response, Server, request_bytes};
use serde_json::json;

const SLOW: [(&str, &str); 3] = [("WORKERS", "1"), ("WORK_MIN_MS", "60000"), ("WORK_MAX_MS", "60000")];
const TASK: &str = r#"{"title":"a"}"#;

/// Sends `raw` on a new connection, reads one response and checks the server
/// closed the connection after it.
fn answer_then_close(server: &Server, raw: &[u8]) -> Response {
    let mut conn = server.connect();
    conn.send(raw);
    let response = conn.read_response();
    conn.assert_closed();
    response
}

/// Asserts a JSON error answer that announces the connection is closing.
fn assert_refused(response: &Response, status: u16) {
    assert_eq!(response.status, status, "{response:?}");
    assert!(!response.error_message().is_empty(), "{response:?}");
    assert_eq!(response.header("Connection"), Some("close"), "{response:?}");
}

#[test]
fn a_non_numeric_content_length_is_400_and_closes() {
    let server = Server::start(&SLOW);
    for value in ["abc", "+5", "-1", "1.5"] {
        let raw = format!("POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n");
        assert_refused(&answer_then_close(&server, raw.as_bytes()), 400);
    }
    assert_eq!(server.get("/tasks").json(), json!([]));
}

#[test]
fn disagreeing_content_lengths_are_400_and_close() {
    let server = Server::start(&SLOW);
    let raw = b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\nContent-Length: 12\r\n\r\n{\"title\":\"a\"}";
    assert_refused(&answer_then_close(&server, raw), 400);
    assert_eq!(server.get("/tasks").json(), json!([]));
}

#[test]
fn a_chunked_body_is_decoded_and_the_connection_stays_open() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    conn.send(
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n{\"title\":\"a\"}\r\n0\r\n\r\n",
    );
    let created = conn.read_response();
    assert_eq!(
        (created.status, &created.json()["title"]),
        (201, &json!("a")),
        "{created:?}"
    );
    assert_eq!(created.header("Connection"), None, "{created:?}");
    assert_eq!(conn.get("/tasks/1").json()["title"], json!("a"));
}

#[test]
fn a_body_over_the_limit_is_413_and_closes() {
    let server = Server::start(&[("MAX_BODY_BYTES", "1024")]);
    let body = format!(r#"{{"title":"{}"}}"#, "x".repeat(4096 - 12));
    assert_eq!(body.len(), 4096);
    let raw = request_bytes("POST", "/tasks", &[], body.as_bytes());
    assert_refused(&answer_then_close(&server, &raw), 413);
    assert_eq!(server.get("/tasks").json(), json!([]));
}

#[test]
fn a_body_at_the_limit_is_accepted() {
    let server = Server::start(&[("MAX_BODY_BYTES", "1024")]);
    let body = format!(r#"{{"title":"{}"}}"#, "x".repeat(1024 - 12));
    assert_eq!(body.len(), 1024);
    let response = server.post_json("/tasks", &body);
    assert_eq!(response.status, 201, "{response:?}");
}

#[test]
fn an_announced_body_over_the_limit_is_413_before_it_is_sent() {
    let server = Server::start(&[("MAX_BODY_BYTES", "1024")]);
    let raw = b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n";
    assert_refused(&answer_then_close(&server, raw), 413);
}

#[test]
fn expect_100_continue_gets_100_then_the_answer() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    let head = format!(
        "POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        TASK.len()
    );
    conn.send(head);
    let interim = conn.read_raw(b"HTTP/1.1 100 Continue\r\n\r\n".len());
    assert_eq!(String::from_utf8_lossy(&interim), "HTTP/1.1 100 Continue\r\n\r\n");
    conn.send(TASK);
    let response = conn.read_response();
    assert_eq!(response.status, 201, "{response:?}");
    assert_eq!(response.json()["id"], json!(1));
}

#[test]
fn http11_without_host_is_400() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    conn.send("GET /tasks HTTP/1.1\r\n\r\n");
    let response = conn.read_response();
    assert_eq!(response.status, 400, "{response:?}");
    assert!(!response.error_message().is_empty());
}

#[test]
fn connection_close_is_honoured() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    let response = conn.request("GET", "/tasks", &[("Connection", "close")], b"");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("Connection"), Some("close"), "{response:?}");
    conn.assert_closed();
}

/// Pipelines `GET /tasks` with `Connection: close` and then `next`: the first
/// is answered and marked close, `next` is neither processed nor answered
/// (RFC 9112 section 9.6), then the connection closes.
fn assert_close_ends_the_pipeline(next: &[u8]) {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    let mut batch = request_bytes("GET", "/tasks", &[("Connection", "close")], b"");
    batch.extend(next);
    conn.send(batch);
    let response = conn.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("Connection"), Some("close"), "{response:?}");
    conn.assert_closed();
    assert_eq!(
        server.get("/tasks").json(),
        json!([]),
        "the request after close is not processed"
    );
}

#[test]
fn a_request_pipelined_after_connection_close_is_not_processed() {
    assert_close_ends_the_pipeline(&request_bytes("GET", "/tasks", &[], b""));
}

#[test]
fn a_request_with_a_body_pipelined_after_connection_close_does_not_lose_the_answer() {
    assert_close_ends_the_pipeline(&request_bytes("POST", "/tasks", &[], TASK.as_bytes()));
}

#[test]
fn http10_closes_after_the_answer() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    conn.send("GET /tasks HTTP/1.0\r\n\r\n");
    let response = conn.read_response();
    assert_eq!((response.status, response.json()), (200, json!([])));
    conn.assert_closed();
}

#[test]
fn http10_keep_alive_is_confirmed_and_kept() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    for _ in 0..2 {
        conn.send("GET /tasks HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = conn.read_response();
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.header("Connection"), Some("keep-alive"), "{response:?}");
    }
}

#[test]
fn http11_connections_persist() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    assert_eq!(conn.post_json("/tasks", TASK).status, 201);
    assert_eq!(conn.get("/tasks/1").status, 200);
    assert_eq!(conn.get("/tasks").json()[0]["id"], json!(1));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&SLOW);
    let mut conn: Conn = server.connect();
    let mut batch = request_bytes("POST", "/tasks", &[], TASK.as_bytes());
    batch.extend(request_bytes("GET", "/tasks/1", &[], b""));
    batch.extend(request_bytes("GET", "/nope", &[], b""));
    conn.send(batch);
    let [created, got, missing] = <[Response; 3]>::try_from(conn.read_responses(3)).unwrap();
    assert_eq!((created.status, &created.json()["id"]), (201, &json!(1)), "{created:?}");
    assert_eq!((got.status, &got.json()["title"]), (200, &json!("a")), "{got:?}");
    assert_eq!((missing.status, missing.json()), (404, json!({"error":"not found"})));
}

/// A request refused for its framing is answered in order: the good request
/// pipelined before it gets its answer first, then the refusal, then the
/// connection closes.
#[test]
fn a_refused_request_pipelined_behind_a_good_one_is_answered_after_it() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    let mut batch = request_bytes("POST", "/tasks", &[], TASK.as_bytes());
    batch.extend(b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
    conn.send(batch);
    let created = conn.read_response();
    assert_eq!((created.status, &created.json()["id"]), (201, &json!(1)), "{created:?}");
    assert_refused(&conn.read_response(), 400);
    conn.assert_closed();
    let kept = server.get("/tasks/1");
    assert_eq!((kept.status, &kept.json()["title"]), (200, &json!("a")), "{kept:?}");
}

#[test]
fn an_absolute_form_target_is_routed_by_its_path() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    let mut conn = server.connect();
    conn.send("GET http://x/tasks HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = conn.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()[0]["id"], json!(1));
}
