//! The project's own HTTP/1.1 server (src/server) through the real binary,
//! one section per rule of issue 8: (1) head limits, (2) timeouts, (3)
//! bodies, (4) every answer well framed, (5) connections, (6) back-pressure,
//! (7) accepting connections. Rule 8, binding in-process, is in
//! tests/in_process.rs.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown};
use std::thread;
use std::time::{Duration, Instant};

use common::{Conn, EXIT_TIMEOUT, IO_TIMEOUT, LOG_TIMEOUT, Response, Server, eventually, request_bytes};
use serde_json::json;

/// One worker, and work long enough that nothing finishes during a test;
/// room in the queue for every task a test creates.
const SLOW: [(&str, &str); 4] = [
    ("WORKERS", "1"),
    ("WORK_MIN_MS", "60000"),
    ("WORK_MAX_MS", "60000"),
    ("POOL_SIZE", "1000"),
];
const TASK: &str = r#"{"title":"a"}"#;
const CONTINUE: &str = "HTTP/1.1 100 Continue\r\n\r\n";

/// The reason phrase RFC 9110 gives `status`, for the statuses tested here.
fn reason_of(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => panic!("no reason phrase listed for {status}"),
    }
}

/// Reads until the server closes `conn` and asserts that exactly one answer
/// came: a JSON error with `status`, its reason phrase, `message` and
/// `Connection: close`.
fn assert_refused_and_closed(conn: &mut Conn, status: u16, message: &str) {
    let mut received = conn.read_until_closed();
    let unparsed = String::from_utf8_lossy(&received).into_owned();
    let response = Response::parse(&mut received, true)
        .unwrap_or_else(|| panic!("no complete answer before the close: {unparsed:?}"));
    assert_eq!(
        (
            response.status,
            response.reason.as_str(),
            response.error_message().as_str()
        ),
        (status, reason_of(status), message),
        "{response:?}"
    );
    assert_eq!(response.header("Connection"), Some("close"), "{response:?}");
    assert!(
        received.is_empty(),
        "more after the refusal: {:?}",
        String::from_utf8_lossy(&received)
    );
}

/// Asserts `waited` is about `expected`: not before it, and not more than
/// `slack` after it.
fn assert_about(waited: Duration, expected: Duration, slack: Duration) {
    assert!(
        waited >= expected - Duration::from_millis(100) && waited <= expected + slack,
        "took {waited:?}, expected about {expected:?}"
    );
}

/// Borrows owned header pairs for [`request_bytes`].
fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// An open connection that has been answered once, so it is surely admitted.
fn served_connection(server: &Server) -> Conn {
    let mut conn = server.connect();
    assert_eq!(conn.get("/tasks").status, 200);
    conn
}

// ---------------------------------------------------------------------------
// 1. Head limits: 100 header lines, MAX_HEADER_BYTES; 431 past either
// ---------------------------------------------------------------------------

/// What Chromium sends for a navigation, with a cookie and an origin.
const CHROMIUM_HEADERS: [(&str, &str); 17] = [
    ("Host", "127.0.0.1:8080"),
    ("Connection", "keep-alive"),
    (
        "sec-ch-ua",
        r#""Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99""#,
    ),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", r#""Linux""#),
    ("Upgrade-Insecure-Requests", "1"),
    (
        "User-Agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ),
    (
        "Accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8",
    ),
    ("Sec-Fetch-Site", "same-origin"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-User", "?1"),
    ("Sec-Fetch-Dest", "document"),
    ("Referer", "http://127.0.0.1:8080/tasks"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept-Language", "en-GB,en-US;q=0.9,en;q=0.8"),
    ("Cookie", "session=0123456789abcdef; theme=dark"),
    ("Origin", "http://127.0.0.1:8080"),
];

#[test]
fn a_browser_request_with_17_headers_is_answered() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    let mut conn = server.connect();
    let response = conn.request("GET", "/tasks/1", &CHROMIUM_HEADERS, b"");
    assert_eq!((response.status, &response.json()["title"]), (200, &json!("a")));
    assert_eq!(conn.get("/tasks").status, 200, "the connection persists");
}

/// `GET /tasks` with `lines` header lines in all, Host among them.
fn request_with_header_lines(lines: usize) -> Vec<u8> {
    let headers: Vec<(String, String)> = (1..lines).map(|i| (format!("X-Line-{i}"), "v".into())).collect();
    let raw = request_bytes("GET", "/tasks", &borrowed(&headers), b"");
    assert_eq!(raw.split(|&byte| byte == b'\n').count(), lines + 3);
    raw
}

#[test]
fn a_head_of_100_header_lines_is_answered_and_one_of_101_gets_431() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send(request_with_header_lines(100));
    assert_eq!(conn.read_response().status, 200);
    conn.send(request_with_header_lines(101));
    assert_refused_and_closed(&mut conn, 431, "too many header lines");
}

#[test]
fn a_mebibyte_header_in_one_write_gets_431_and_the_server_goes_on() {
    let mut server = Server::start(&[]);
    let mut conn = server.connect();
    let mut raw = b"GET /tasks HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    raw.resize(raw.len() + (1 << 20), b'a');
    raw.extend(b"\r\n\r\n");
    // The server may close before it has taken it all: the write can fail.
    let _ = conn.stream().write_all(&raw);
    assert_refused_and_closed(&mut conn, 431, "request header block too large");
    server.assert_running();
    assert_eq!(server.get("/tasks").status, 200);
}

/// `GET /tasks` whose head, blank line included, is exactly `len` bytes.
fn head_of_exactly(len: usize) -> Vec<u8> {
    let bare = request_bytes("GET", "/tasks", &[("X-Pad", "")], b"").len();
    let pad = "p".repeat(len - bare);
    let raw = request_bytes("GET", "/tasks", &[("X-Pad", &pad)], b"");
    assert_eq!(raw.len(), len);
    raw
}

#[test]
fn a_head_of_max_header_bytes_is_answered_and_one_byte_more_gets_431() {
    let server = Server::start(&[("MAX_HEADER_BYTES", "2048")]);
    let mut conn = server.connect();
    conn.send(head_of_exactly(2048));
    assert_eq!(conn.read_response().status, 200);
    conn.send(head_of_exactly(2049));
    assert_refused_and_closed(&mut conn, 431, "request header block too large");
}

// ---------------------------------------------------------------------------
// 2. Timeouts: HEADER_TIMEOUT for a head, BODY_TIMEOUT for a body, IDLE_TIMEOUT
//    between requests
// ---------------------------------------------------------------------------

const HEAD_TIMED_OUT: &str = "request headers not received in time";

#[test]
fn a_head_left_unfinished_gets_408_after_the_header_timeout() {
    let server = Server::start(&[("HEADER_TIMEOUT", "1")]);
    let mut conn = server.connect();
    let started = Instant::now();
    conn.send("GET /tasks HTTP/1.1\r\nHost: x\r\nX-Unfinished: ");
    assert_refused_and_closed(&mut conn, 408, HEAD_TIMED_OUT);
    assert_about(started.elapsed(), Duration::from_secs(1), Duration::from_millis(1500));
}

#[test]
fn a_head_dripping_in_slower_than_the_header_timeout_gets_408_in_time() {
    let server = Server::start(&[("HEADER_TIMEOUT", "1")]);
    let mut conn = server.connect();
    let mut head = b"GET /tasks HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
    head.extend([b'a'; 100]);
    assert_dripping_refused_in_a_second(&mut conn, head, HEAD_TIMED_OUT);
}

/// Sends `bytes` one every 200 ms from another thread, and checks that the
/// server answers 408 with `message` about a second after the first and
/// closes.
fn assert_dripping_refused_in_a_second(conn: &mut Conn, bytes: Vec<u8>, message: &str) {
    let mut dripper = conn.stream().try_clone().expect("clone the client socket");
    let started = Instant::now();
    let drip = thread::spawn(move || {
        // A byte every 200 ms: the client's pace is what is tested here.
        for byte in bytes {
            if dripper.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    assert_refused_and_closed(conn, 408, message);
    assert_about(started.elapsed(), Duration::from_secs(1), Duration::from_millis(1500));
    conn.stream().shutdown(Shutdown::Both).expect("shut the client down");
    drip.join().expect("the dripping thread");
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout_unanswered() {
    let server = Server::start(&[("IDLE_TIMEOUT", "1")]);
    let mut conn = server.connect();
    let started = Instant::now();
    conn.assert_closed();
    assert_about(started.elapsed(), Duration::from_secs(1), Duration::from_millis(1500));
}

/// Each head takes 0.6 s of its 1 s, each pause between requests 0.6 s of
/// the 1 s idle timeout, and the connection lives longer than both.
#[test]
fn neither_timeout_cuts_off_a_steady_client() {
    let server = Server::start(&[("HEADER_TIMEOUT", "1"), ("IDLE_TIMEOUT", "1")]);
    let mut conn = server.connect();
    let pace = Duration::from_millis(600);
    for _ in 0..3 {
        let raw = request_bytes("GET", "/tasks", &[], b"");
        let (start, rest) = raw.split_at(20);
        conn.send(start);
        thread::sleep(pace);
        conn.send(rest);
        assert_eq!(conn.read_response().status, 200);
        thread::sleep(pace);
    }
    assert_eq!(conn.get("/healthz").status, 200);
}

const BODY_TIMED_OUT: &str = "request body not received in time";

/// The idle timeout is far longer: the 408 comes from the body's own.
#[test]
fn a_body_left_unfinished_gets_408_after_the_body_timeout() {
    let server = Server::start(&[("BODY_TIMEOUT", "1"), ("IDLE_TIMEOUT", "30")]);
    let mut conn = server.connect();
    let raw = request_bytes(
        "POST",
        "/tasks",
        &[("Content-Type", "application/json")],
        br#"{"title":"t"}"#,
    );
    let started = Instant::now();
    conn.send(&raw[..raw.len() - 3]);
    assert_refused_and_closed(&mut conn, 408, BODY_TIMED_OUT);
    assert_about(started.elapsed(), Duration::from_secs(1), Duration::from_millis(1500));
    assert_eq!(server.get("/tasks").json(), json!([]), "no task was created");
}

/// A chunked body sent a byte every 200 ms: every wait for a byte is far
/// within the idle timeout, and the body as a whole is not.
#[test]
fn a_body_dripping_in_within_the_idle_timeout_gets_408_at_the_body_timeout() {
    let server = Server::start(&[("BODY_TIMEOUT", "1"), ("IDLE_TIMEOUT", "30")]);
    let mut conn = server.connect();
    conn.send(
        "POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let mut body = b"40\r\n".to_vec();
    body.extend([b' '; 64]);
    assert_dripping_refused_in_a_second(&mut conn, body, BODY_TIMED_OUT);
}

/// Each body takes 0.6 s of its 1 s, and the connection goes on.
#[test]
fn a_body_in_within_the_body_timeout_is_answered() {
    let server = Server::start(&[("BODY_TIMEOUT", "1")]);
    let mut conn = server.connect();
    for _ in 0..2 {
        let raw = request_bytes(
            "POST",
            "/tasks",
            &[("Content-Type", "application/json")],
            br#"{"title":"t"}"#,
        );
        let (head_and_some, rest) = raw.split_at(raw.len() - 3);
        conn.send(head_and_some);
        thread::sleep(Duration::from_millis(600));
        conn.send(rest);
        assert_eq!(conn.read_response().status, 201);
    }
}

// ---------------------------------------------------------------------------
// 3. Bodies: Content-Length or chunked, MAX_BODY_BYTES, 100-continue
// ---------------------------------------------------------------------------

#[test]
fn a_chunked_post_with_extensions_and_trailers_in_several_writes_creates_a_task() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    let body = r#"{"title":"chunked","description":"in pieces"}"#;
    let (first, second) = body.split_at(20);
    conn.send(
        "POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    conn.send(format!("{:x};name=value\r\n{first}\r\n", first.len()));
    conn.send(format!("{:X} ; quoted=\"a b\"\r\n{second}", second.len()));
    conn.send("\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n");
    let created = conn.read_response();
    assert_eq!((created.status, &created.json()["id"]), (201, &json!(1)), "{created:?}");
    let stored = conn.get("/tasks/1").json();
    assert_eq!(
        (&stored["title"], &stored["description"]),
        (&json!("chunked"), &json!("in pieces"))
    );
}

#[test]
fn a_chunked_body_decoding_past_max_body_bytes_gets_413() {
    let server = Server::start(&[("MAX_BODY_BYTES", "1024")]);
    let mut conn = server.connect();
    let chunk = "x".repeat(600);
    conn.send(format!(
        "POST /tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    ));
    assert_refused_and_closed(&mut conn, 413, "request body too large");
    assert_eq!(server.get("/tasks").json(), json!([]));
}

#[test]
fn ambiguous_or_unsupported_framing_gets_400_and_closes() {
    let server = Server::start(&SLOW);
    for (framing, message) in [
        (
            "Content-Length: 13\r\nTransfer-Encoding: chunked",
            "both Content-Length and Transfer-Encoding are set",
        ),
        (
            "Transfer-Encoding: gzip",
            "only the chunked transfer coding is supported",
        ),
        ("Content-Length: 1e3", "invalid Content-Length header"),
        ("Content-Length: -13", "invalid Content-Length header"),
    ] {
        let mut conn = server.connect();
        conn.send(format!("POST /tasks HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n{TASK}"));
        assert_refused_and_closed(&mut conn, 400, message);
    }
    assert_eq!(server.get("/tasks").json(), json!([]));
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let server = Server::start(&SLOW);
    let chunked = format!("{:x}\r\n{TASK}\r\n0\r\n\r\n", TASK.len());
    let length = format!("Content-Length: {}", TASK.len());
    for (framing, body) in [(length.as_str(), TASK), ("Transfer-Encoding: chunked", &chunked)] {
        let mut conn = server.connect();
        conn.send(format!(
            "POST /tasks HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n{framing}\r\n\r\n"
        ));
        let interim = conn.read_raw(CONTINUE.len());
        assert_eq!(String::from_utf8_lossy(&interim), CONTINUE, "{framing}");
        conn.send(body);
        let created = conn.read_response();
        assert_eq!(
            (created.status, &created.json()["title"]),
            (201, &json!("a")),
            "{framing}"
        );
    }
}

/// The body of a refused request is never read as requests, whatever it
/// looks like: one answer, the 413, then the close.
#[test]
fn a_body_refused_with_413_is_never_parsed_as_requests() {
    let server = Server::start(&[("MAX_BODY_BYTES", "1024")]);
    let mut smuggled = Vec::new();
    while smuggled.len() <= 1024 {
        smuggled.extend(request_bytes("GET", "/tasks", &[], b""));
        smuggled.extend(request_bytes("POST", "/tasks", &[], TASK.as_bytes()));
    }
    let mut conn = server.connect();
    conn.send(request_bytes("POST", "/tasks", &[], &smuggled));
    assert_refused_and_closed(&mut conn, 413, "request body too large");
    assert_eq!(server.get("/tasks").json(), json!([]), "no task from the body");
}

// ---------------------------------------------------------------------------
// 4. Every answer well framed, malformed requests answered, clean log
// ---------------------------------------------------------------------------

/// HEAD answers pipelined between GETs: had they a body, the GETs after
/// them would not parse.
#[test]
fn head_answers_have_the_length_of_the_get_and_no_body() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    server.create_task("b");
    let targets = ["/tasks/1", "/tasks"];
    let mut conn = server.connect();
    let batch: Vec<u8> = targets
        .iter()
        .flat_map(|target| {
            [
                request_bytes("HEAD", target, &[], b""),
                request_bytes("GET", target, &[], b""),
            ]
        })
        .flatten()
        .collect();
    conn.send(batch);
    for target in targets {
        let head = conn.read_head_response();
        let get = conn.read_response();
        assert_eq!((head.status, get.status), (200, 200), "{target}");
        let length = get.body.len().to_string();
        assert_eq!(
            head.header("Content-Length"),
            Some(length.as_str()),
            "{target}: {head:?}"
        );
        assert_eq!(head.header("Content-Type"), get.header("Content-Type"), "{target}");
    }
    assert_eq!(conn.get("/tasks/2").json()["title"], json!("b"));
}

#[test]
fn status_lines_carry_the_standard_reason_phrases() {
    let server = Server::start(&[
        ("WORKERS", "1"),
        ("POOL_SIZE", "1"),
        ("WORK_MIN_MS", "60000"),
        ("WORK_MAX_MS", "60000"),
    ]);
    let mut conn = server.connect();
    let mut answered = vec![conn.post_json("/tasks", TASK)];
    server.await_task_status(1, "running");
    answered.push(conn.post_json("/tasks", TASK));
    answered.push(conn.post_json("/tasks", TASK));
    answered.push(conn.get("/tasks/1"));
    answered.push(conn.get("/nowhere"));
    answered.push(conn.request("DELETE", "/tasks", &[], b""));
    answered.push(conn.post_json("/tasks", "{"));
    let lines: Vec<String> = answered
        .iter()
        .map(|r| format!("{} {} {}", r.version, r.status, r.reason))
        .collect();
    assert_eq!(
        lines,
        [
            "HTTP/1.1 201 Created",
            "HTTP/1.1 201 Created",
            "HTTP/1.1 503 Service Unavailable",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 405 Method Not Allowed",
            "HTTP/1.1 400 Bad Request",
        ]
    );
}

/// Whether `line` is a log line as env_logger writes it:
/// `[<RFC 3339 time> <LEVEL> <target>] <message>`.
fn is_log_line(line: &str) -> bool {
    let Some((stamp, rest)) = line.strip_prefix('[').and_then(|rest| rest.split_once(' ')) else {
        return false;
    };
    let stamp_ok = stamp.len() >= 20
        && stamp.ends_with('Z')
        && stamp[..4].bytes().all(|byte| byte.is_ascii_digit())
        && stamp.as_bytes()[10] == b'T';
    let Some((level, rest)) = rest.split_once(' ') else {
        return false;
    };
    let level_ok = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level);
    let target = rest.trim_start().split_once(']').map(|(target, _)| target);
    stamp_ok && level_ok && target.is_some_and(|target| !target.is_empty() && !target.contains(' '))
}

#[test]
fn malformed_requests_get_a_400_json_answer_then_close_and_the_log_stays_clean() {
    let server = Server::start(&[("RUST_LOG", "debug")]);
    for raw in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"\xff\xfe\xfd\x01 binary garbage",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x9a\x1b",
        b"GET /tasks HTTP/1.1\rHost: x\r\n\r\n",
        b"GET /ta\0sks HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /tasks HTTP/1.1\r\nHost: x\0y\r\n\r\n",
    ] {
        let mut conn = server.connect();
        conn.send(raw);
        assert_refused_and_closed(&mut conn, 400, "malformed request line or header");
    }
    assert_eq!(server.get("/tasks").status, 200);
    let lines = server.log_lines();
    assert!(lines.iter().any(|line| line.contains("refused")), "{lines:#?}");
    for line in &lines {
        assert!(is_log_line(line), "not a log line: {line:?}\n{}", server.log_dump());
    }
}

// ---------------------------------------------------------------------------
// 5. Connections: persistence, Connection: close, HTTP/1.0, pipelining
// ---------------------------------------------------------------------------

#[test]
fn http11_connections_persist_without_a_connection_header() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    let mut answers = vec![conn.post_json("/tasks", TASK)];
    answers.extend((0..4).map(|_| conn.get("/tasks/1")));
    for answer in &answers {
        assert_eq!(answer.header("Connection"), None, "{answer:?}");
    }
    assert_eq!(answers[4].json()["id"], json!(1));
}

#[test]
fn connection_close_ends_the_connection_after_its_answer_whatever_follows() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    let mut batch = request_bytes("GET", "/tasks", &[("Connection", "close")], b"");
    batch.extend(request_bytes("POST", "/tasks", &[], TASK.as_bytes()));
    batch.extend(request_bytes("GET", "/healthz", &[], b""));
    conn.send(batch);
    let answer = conn.read_response();
    assert_eq!((answer.status, answer.header("Connection")), (200, Some("close")));
    conn.assert_closed();
    assert_eq!(
        server.get("/tasks").json(),
        json!([]),
        "nothing after the close is done"
    );
}

#[test]
fn http10_closes_unless_keep_alive_is_asked_and_confirmed() {
    let server = Server::start(&SLOW);
    let mut kept = server.connect();
    for _ in 0..2 {
        kept.send("GET /tasks HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let answer = kept.read_response();
        assert_eq!((answer.status, answer.header("Connection")), (200, Some("keep-alive")));
    }
    kept.send("GET /tasks HTTP/1.0\r\n\r\n");
    let last = kept.read_response();
    assert_eq!((last.status, last.header("Connection")), (200, Some("close")));
    kept.assert_closed();
}

#[test]
fn fifty_pipelined_posts_mixed_with_gets_are_answered_in_order_once_each() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    let batch: Vec<u8> = (1..=50)
        .flat_map(|i| {
            let task = json!({ "title": format!("task {i}") }).to_string();
            [
                request_bytes("POST", "/tasks", &[], task.as_bytes()),
                request_bytes("GET", &format!("/tasks/{i}"), &[], b""),
            ]
        })
        .flatten()
        .collect();
    conn.send(batch);
    for i in 1..=50 {
        let [created, got] = <[Response; 2]>::try_from(conn.read_responses(2)).unwrap();
        assert_eq!((created.status, &created.json()["id"]), (201, &json!(i)), "{created:?}");
        assert_eq!((got.status, &got.json()["title"]), (200, &json!(format!("task {i}"))));
    }
    let all = conn.get("/tasks").json();
    assert_eq!(all.as_array().map(Vec::len), Some(50), "each POST done once");
}

/// The old HTTP layer lost the answers of a client that half-closed after
/// its requests in 199 runs of 200.
#[test]
fn a_client_that_half_closes_after_its_requests_gets_every_answer() {
    let server = Server::start(&[("WORK_MIN_MS", "0"), ("WORK_MAX_MS", "0"), ("POOL_SIZE", "1000")]);
    for id in 1..=200 {
        let mut conn = server.connect();
        let mut batch = request_bytes("POST", "/tasks", &[], TASK.as_bytes());
        batch.extend(request_bytes("GET", &format!("/tasks/{id}"), &[], b""));
        conn.send(batch);
        conn.shutdown_write();
        let [created, got] = <[Response; 2]>::try_from(conn.read_responses(2)).unwrap();
        assert_eq!(
            (created.status, &created.json()["id"]),
            (201, &json!(id)),
            "{created:?}"
        );
        assert_eq!((got.status, &got.json()["id"]), (200, &json!(id)), "{got:?}");
        conn.assert_closed();
    }
}

// ---------------------------------------------------------------------------
// 6. Back-pressure: a client that never reads costs bounded memory
// ---------------------------------------------------------------------------

/// Creates `count` tasks over one connection, pipelined 500 at a time;
/// past the queue they fail (503) but are stored all the same.
fn create_tasks_pipelined(server: &Server, count: usize) {
    let mut conn = server.connect();
    let post = request_bytes("POST", "/tasks", &[], TASK.as_bytes());
    for batch in (0..count).collect::<Vec<_>>().chunks(500) {
        conn.send(post.repeat(batch.len()));
        for response in conn.read_responses(batch.len()) {
            assert!([201, 503].contains(&response.status), "{response:?}");
        }
    }
}

/// Waits until the server has used under 30% of a CPU for half a second:
/// it has done all it will for a client that does not read. Meanwhile
/// `other` must be answered; returns the largest RSS seen.
fn await_quiet_server(server: &Server, other: &mut Conn) -> u64 {
    let mut window = (Instant::now(), server.cpu_time());
    let mut largest = 0;
    eventually(Duration::from_secs(60), "the server to go quiet", || {
        assert_eq!(other.get("/healthz").status, 200, "another client is served");
        largest = largest.max(server.rss_bytes());
        let (since, cpu) = (window.0.elapsed(), server.cpu_time() - window.1);
        if since < Duration::from_millis(500) {
            return None;
        }
        if cpu.as_secs_f64() < 0.3 * since.as_secs_f64() {
            return Some(());
        }
        window = (Instant::now(), server.cpu_time());
        None
    });
    largest
}

#[test]
fn a_client_that_pipelines_and_never_reads_costs_bounded_memory() {
    let server = Server::start(&[("WORKERS", "1"), ("WORK_MIN_MS", "60000"), ("WORK_MAX_MS", "60000")]);
    create_tasks_pipelined(&server, 10_000);
    let mut other = server.connect();
    let page = other.get("/tasks?limit=10000");
    assert_eq!(page.json().as_array().map(Vec::len), Some(10_000));
    let before = server.rss_bytes();
    let mut hog = server.connect();
    hog.send(request_bytes("GET", "/tasks?limit=10000", &[], b"").repeat(300));
    let largest = await_quiet_server(&server, &mut other);
    // A connection holds about MAX_UNWRITTEN (1 MiB) of answers and the one
    // being written; a server that answered every request of a 4 KiB read
    // before writing would hold 30 MiB, one that answered all 300, 120.
    let grown = largest.saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "RSS grew by {} MiB for answers of {} MiB that are never read",
        grown >> 20,
        (300 * page.body.len()) >> 20
    );
    drop(hog);
    assert_eq!(other.get("/tasks?limit=10").json().as_array().map(Vec::len), Some(10));
}

// ---------------------------------------------------------------------------
// 7. Accepting: one server per port, connection limits, descriptors
// ---------------------------------------------------------------------------

#[test]
fn a_second_server_on_the_same_port_exits_1_naming_the_address_and_the_first_goes_on() {
    let server = Server::start(&SLOW);
    let id = server.create_task("first");
    let mut second = Server::launch_in(common::empty_dir(), server.port, &[]);
    assert_eq!(second.wait_exit(EXIT_TIMEOUT).code(), Some(1), "{}", second.log_dump());
    second.wait_for_log(&format!("cannot bind 127.0.0.1:{}", server.port), LOG_TIMEOUT);
    for _ in 0..10 {
        let got = server.get(&format!("/tasks/{id}"));
        assert_eq!((got.status, &got.json()["title"]), (200, &json!("first")));
    }
}

/// With one scheduler thread a new connection starts on the accept loop's
/// own thread, until its first wait (`Acceptor::start`): a connection whose
/// request waits, or whose head is slow to come, holds up no other.
#[test]
fn with_one_scheduler_thread_a_waiting_connection_holds_up_no_other() {
    let server = Server::start(&[SLOW.as_slice(), &[("THREADS", "1")]].concat());
    server.wait_for_log("1 scheduler thread(s)", LOG_TIMEOUT);
    let id = server.create_task("runs for a minute");
    let mut waiting = server.connect();
    waiting.send(request_bytes("GET", &format!("/tasks/{id}?wait=30"), &[], b""));
    let mut dripping = server.connect();
    dripping.send("GET /tasks HTTP/1.1\r\n");
    for _ in 0..20 {
        let mut conn = server.connect();
        let answer = conn.request("GET", &format!("/tasks/{id}"), &[("Connection", "close")], b"");
        assert_eq!(answer.status, 200);
        conn.assert_closed();
    }
    dripping.send("Host: h\r\n\r\n");
    assert_eq!(dripping.read_response().status, 200);
    waiting.stream().set_nonblocking(true).unwrap();
    let err = waiting.stream().read(&mut [0; 1]).map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "the wait is still on");
}

#[test]
fn past_max_connections_a_connection_gets_503_then_close() {
    let server = Server::start(&[("MAX_CONNECTIONS", "2")]);
    let _first = served_connection(&server);
    let _second = served_connection(&server);
    let mut third = server.connect();
    assert_refused_and_closed(&mut third, 503, "too many open connections");
}

#[test]
fn past_max_connections_per_client_its_connection_gets_503_and_another_address_is_admitted() {
    let server = Server::start(&[("MAX_CONNECTIONS_PER_CLIENT", "1")]);
    let _first = served_connection(&server);
    let mut second = server.connect();
    assert_refused_and_closed(&mut second, 503, "too many open connections from this client");
    let mut elsewhere = Conn::open_from(server.port, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(elsewhere.get("/tasks").status, 200);
    let mut refused = Conn::open_from(server.port, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert_refused_and_closed(&mut refused, 503, "too many open connections from this client");
}

/// `GET /healthz` on a new connection: the answer, whatever it is.
fn healthz_answer(server: &Server) -> (Conn, Response) {
    let mut conn = server.connect();
    conn.send(request_bytes("GET", "/healthz", &[], b""));
    let mut received = conn.read_until_closed_or_answered();
    let unparsed = String::from_utf8_lossy(&received).into_owned();
    let answer = Response::parse(&mut received, true).unwrap_or_else(|| panic!("no answer: {unparsed:?}"));
    (conn, answer)
}

/// Opens connections (kept open and returned) until the server answers one
/// `503 server out of file descriptors`.
fn exhaust_descriptors(server: &Server) -> Vec<Conn> {
    let mut held = Vec::new();
    loop {
        assert!(held.len() < 100, "still no refusal after {} connections", held.len());
        let (conn, answer) = healthz_answer(server);
        if answer.status == 200 {
            held.push(conn);
            continue;
        }
        assert_eq!(
            (answer.status, answer.error_message().as_str()),
            (503, "server out of file descriptors"),
            "{answer:?}"
        );
        return held;
    }
}

/// How many log lines contain every one of `needles`.
fn log_count(server: &Server, needles: &[&str]) -> usize {
    let lines = server.log_lines();
    lines
        .iter()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .count()
}

#[test]
fn out_of_descriptors_the_server_answers_503_without_spinning_warns_once_and_recovers() {
    let server = Server::start_with_fd_limit(&[], 64);
    for episode in 1..=2 {
        let held = exhaust_descriptors(&server);
        for _ in 0..3 {
            assert_eq!(healthz_answer(&server).1.status, 503, "still out of descriptors");
        }
        let (before, started) = (server.cpu_time(), Instant::now());
        // Two seconds of exhaustion with clients waiting: the measure itself.
        thread::sleep(Duration::from_secs(2));
        let spent = server.cpu_time() - before;
        assert!(
            spent < Duration::from_millis(300),
            "{spent:?} of CPU in {:?}",
            started.elapsed()
        );
        let warnings = log_count(&server, &["WARN", "cannot accept connections"]);
        assert_eq!(warnings, episode, "one warning per episode\n{}", server.log_dump());
        let exhausted = server.open_descriptors();
        let freed = held.len();
        drop(held);
        eventually(IO_TIMEOUT, "the server to close the connections", || {
            (server.open_descriptors() + freed <= exhausted).then_some(())
        });
        let answer = healthz_answer(&server).1;
        assert_eq!(
            answer.status, 200,
            "the first client once descriptors are free: {answer:?}"
        );
        eventually(LOG_TIMEOUT, "the recovery to be logged", || {
            (log_count(&server, &["INFO", "accepting connections again"]) == episode).then_some(())
        });
    }
}
