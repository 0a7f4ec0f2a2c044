//! Graceful shutdown on SIGTERM and SIGINT: stop accepting, close the pool,
//! drain what was queued, exit 0; or exit 1 naming what the timeout left.

mod common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::Duration;

use common::{EXIT_TIMEOUT, LOG_TIMEOUT, Server};
use serde_json::json;

/// Short work, so a drain of four tasks on one worker takes about a second.
const SHORT: [(&str, &str); 4] = [
    ("WORKERS", "1"),
    ("POOL_SIZE", "10"),
    ("WORK_MIN_MS", "200"),
    ("WORK_MAX_MS", "200"),
];

/// Work and a shutdown timeout long enough to keep the process alive,
/// draining, for the whole test.
const LINGERING: [(&str, &str); 5] = [
    ("WORKERS", "1"),
    ("POOL_SIZE", "10"),
    ("WORK_MIN_MS", "60000"),
    ("WORK_MAX_MS", "60000"),
    ("SHUTDOWN_TIMEOUT", "120"),
];

/// Creates four tasks, sends `signal`, and checks the drain and the log.
fn drains_every_task_on(signal: libc::c_int, name: &str) {
    let mut server = Server::start(&SHORT);
    for title in ["a", "b", "c", "d"] {
        server.create_task(title);
    }
    server.signal(signal);
    let status = server.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log_dump());
    let steps = [
        format!("shutdown: {name} received"),
        "stopped accepting connections".to_owned(),
        "task pool closed".to_owned(),
        "every queued task completed".to_owned(),
    ];
    let positions: Vec<usize> = steps.iter().map(|step| server.log_position(step)).collect();
    assert!(
        positions.is_sorted(),
        "shutdown steps out of order\n{}",
        server.log_dump()
    );
    for id in 1..=4 {
        server.wait_for_log(&format!("task {id} done in"), LOG_TIMEOUT);
    }
}

#[test]
fn sigterm_drains_every_queued_task_and_exits_0() {
    drains_every_task_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_drains_every_queued_task_and_exits_0() {
    drains_every_task_on(libc::SIGINT, "SIGINT");
}

#[test]
fn new_connections_are_refused_once_shutdown_starts() {
    let mut server = Server::start(&LINGERING);
    server.create_task("long");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    server.sigterm();
    server.wait_for_log("stopped accepting connections", LOG_TIMEOUT);
    match TcpStream::connect(("127.0.0.1", server.port)) {
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}"),
        Ok(_) => panic!("a connection was accepted after the server stopped accepting"),
    }
    server.assert_running();
}

#[test]
fn an_open_connection_gets_503_pool_closed_during_shutdown() {
    let mut server = Server::start(&LINGERING);
    server.create_task("long");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    let mut conn = server.connect();
    assert_eq!(
        conn.get("/tasks").status,
        200,
        "the connection is accepted before the signal"
    );
    server.sigterm();
    server.wait_for_log("task pool closed", LOG_TIMEOUT);
    let response = conn.post_json("/tasks", r#"{"title":"late"}"#);
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"id":2,"title":"late","description":"","status":"failed","error":"task pool is closed"})
    );
    server.assert_running();
}

#[test]
fn the_shutdown_timeout_exits_1_naming_unfinished_tasks() {
    let mut server = Server::start(&[
        ("WORKERS", "1"),
        ("POOL_SIZE", "10"),
        ("WORK_MIN_MS", "60000"),
        ("WORK_MAX_MS", "60000"),
        ("SHUTDOWN_TIMEOUT", "1"),
    ]);
    for title in ["a", "b", "c"] {
        server.create_task(title);
    }
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    server.sigterm();
    // Well under the 60 s of work: the process must not wait for the task.
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{status}\n{}", server.log_dump());
    server.wait_for_log_line(&["timed out", "queued [2, 3], running [1]"], LOG_TIMEOUT);
}

#[test]
fn readiness_fails_once_shutdown_begins_while_health_stays_ok() {
    let mut server = Server::start(&LINGERING);
    let mut conn = server.connect();
    let ready = conn.get("/readyz");
    assert_eq!((ready.status, ready.json()), (200, json!({"status": "ready"})));
    assert_eq!(conn.get("/healthz").json(), json!({"status": "ok"}));
    server.create_task("long");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    server.sigterm();
    server.wait_for_log("task pool closed", LOG_TIMEOUT);
    let draining = conn.get("/readyz");
    assert_eq!(
        (draining.status, draining.json()),
        (503, json!({"error": "shutting down"}))
    );
    let health = conn.get("/healthz");
    assert_eq!((health.status, health.json()), (200, json!({"status": "ok"})));
    server.assert_running();
}
