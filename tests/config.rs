//! Start-up configuration: invalid values stop the process with exit code 2,
//! `.env` in the working directory is read and the environment wins over it,
//! and a port already in use is exit code 1.

mod common;

use std::net::TcpListener;

use common::{EXIT_TIMEOUT, LOG_TIMEOUT, Server, empty_dir};

/// Launches with `env`, expects exit code 2 and returns the log.
fn refused_config(env: &[(&str, &str)]) -> String {
    let mut server = Server::launch(env);
    let status = server.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(2), "{status}\n{}", server.log_dump());
    server.log_text()
}

#[test]
fn a_non_numeric_worker_count_exits_2_naming_it() {
    let log = refused_config(&[("WORKERS", "abc")]);
    assert!(log.contains("WORKERS") && log.contains("abc"), "{log}");
}

#[test]
fn a_zero_pool_size_exits_2() {
    let log = refused_config(&[("POOL_SIZE", "0")]);
    assert!(log.contains("POOL_SIZE"), "{log}");
}

#[test]
fn a_minimum_work_above_the_maximum_exits_2() {
    let log = refused_config(&[("WORK_MIN_MS", "300"), ("WORK_MAX_MS", "200")]);
    assert!(log.contains("WORK_MIN_MS"), "{log}");
}

#[test]
fn a_port_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut server = Server::launch_in(empty_dir(), port, &[]);
    let status = server.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{status}\n{}", server.log_dump());
}

/// A `.env` for one worker, a queue of one and long work.
const DOT_ENV: &str = "WORKERS=1\nPOOL_SIZE=1\nWORK_MIN_MS=60000\nWORK_MAX_MS=60000\n";

/// Creates tasks until one is refused with 503; returns how many were accepted.
fn tasks_accepted_before_overflow(server: &Server) -> i64 {
    server.create_task("running");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    for attempt in 2..=10 {
        let response = server.post_json("/tasks", r#"{"title":"queued"}"#);
        match response.status {
            201 => continue,
            503 => return attempt - 1,
            _ => panic!("unexpected answer {response:?}"),
        }
    }
    panic!("no overflow within 10 tasks\n{}", server.log_dump());
}

#[test]
fn the_dot_env_file_is_read() {
    let dir = empty_dir();
    std::fs::write(dir.path().join(".env"), DOT_ENV).unwrap();
    let server = Server::start_in(dir, &[]);
    // One running, one queued, the third refused.
    assert_eq!(tasks_accepted_before_overflow(&server), 2);
}

#[test]
fn the_environment_wins_over_the_dot_env_file() {
    let dir = empty_dir();
    std::fs::write(dir.path().join(".env"), DOT_ENV).unwrap();
    let server = Server::start_in(dir, &[("POOL_SIZE", "3")]);
    // One running, three queued, the fifth refused.
    assert_eq!(tasks_accepted_before_overflow(&server), 4);
}
