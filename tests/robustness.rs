//! Malformed and hostile requests: whatever the server answers, it must keep
//! running and keep serving new connections afterwards.

mod common;

use common::Server;

/// Room for the deeply nested bodies, so they reach the JSON parser instead
/// of being refused for their size.
const BIG_BODIES: [(&str, &str); 1] = [("MAX_BODY_BYTES", "1048576")];

/// A normal request on a new connection succeeds and the process still runs.
fn assert_still_serving(server: &mut Server) {
    let response = server.post_json("/tasks", r#"{"title":"after"}"#);
    assert_eq!(response.status, 201, "{response:?}\n{}", server.log_dump());
    assert_eq!(server.get("/tasks").status, 200);
    server.assert_running();
}

/// Sends `raw` on its own connection and waits until the server has closed
/// it (with or without an answer).
fn send_and_await_close(server: &Server, raw: &[u8]) {
    let mut conn = server.connect();
    conn.send(raw);
    conn.read_until_closed();
}

/// POSTs `body` to /tasks and asserts a 400 JSON error.
fn assert_bad_body(server: &Server, body: &[u8]) {
    let response = server.request("POST", "/tasks", &[("Content-Type", "application/json")], body);
    assert_eq!(response.status, 400, "{response:?}");
    assert!(!response.error_message().is_empty());
}

#[test]
fn survives_garbage_bytes() {
    let mut server = Server::start(&[]);
    send_and_await_close(&server, b"\x00\x01\x02\xff garbage \x7f\r\n\r\n");
    send_and_await_close(&server, b"NOT HTTP AT ALL\r\n\r\n");
    assert_still_serving(&mut server);
}

#[test]
fn more_than_16_headers_are_answered() {
    let mut server = Server::start(&[]);
    let headers: Vec<(String, String)> = (0..20).map(|i| (format!("X-Header-{i}"), i.to_string())).collect();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let response = server.request("GET", "/tasks", &headers, b"");
    assert_eq!((response.status, response.json()), (200, serde_json::json!([])));
    assert_still_serving(&mut server);
}

#[test]
fn survives_a_nul_in_the_request_line() {
    let mut server = Server::start(&[]);
    send_and_await_close(&server, b"GET /ta\0sks HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_still_serving(&mut server);
}

#[test]
fn deeply_nested_json_in_a_field_is_400() {
    let mut server = Server::start(&BIG_BODIES);
    let body = format!(r#"{{"title":{}"#, "[".repeat(100_000));
    assert_bad_body(&server, body.as_bytes());
    assert_still_serving(&mut server);
}

#[test]
fn deeply_nested_json_as_the_body_is_400() {
    let mut server = Server::start(&BIG_BODIES);
    assert_bad_body(&server, "[".repeat(100_000).as_bytes());
    assert_still_serving(&mut server);
}

#[test]
fn deeply_nested_json_in_an_unknown_field_is_400() {
    let mut server = Server::start(&[]);
    let body = format!(r#"{{"x":{}"#, "[".repeat(10_000));
    assert_bad_body(&server, body.as_bytes());
    assert_still_serving(&mut server);
}

#[test]
fn deeply_nested_objects_in_an_unknown_field_are_400() {
    let mut server = Server::start(&BIG_BODIES);
    let body = format!(r#"{{"title":"a","x":{}"#, r#"{"a":"#.repeat(50_000));
    assert_bad_body(&server, body.as_bytes());
    assert_still_serving(&mut server);
}

#[test]
fn invalid_utf8_in_a_json_body_is_400() {
    let mut server = Server::start(&[]);
    assert_bad_body(&server, b"{\"title\":\"\xff\xfe\"}");
    assert_bad_body(&server, b"{\"title\":\"ok\",\"description\":\"\xc3\x28\"}");
    assert_still_serving(&mut server);
}

#[test]
fn survives_a_client_leaving_in_the_middle_of_the_headers() {
    let mut server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send("POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Le");
    drop(conn);
    assert_still_serving(&mut server);
}

#[test]
fn survives_a_client_leaving_in_the_middle_of_the_body() {
    let mut server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send("POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"title\":");
    conn.shutdown_write();
    conn.read_until_closed();
    assert_eq!(
        server.get("/tasks").json(),
        serde_json::json!([]),
        "no task from half a body"
    );
    assert_still_serving(&mut server);
}
