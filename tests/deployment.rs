//! What running the server under a container runtime and Prometheus relies
//! on, through the real binary: `worker-pool healthcheck` (the image's
//! `HEALTHCHECK`), and a metrics page that Prometheus's own checker accepts.

mod common;

use std::io::{ErrorKind, Write};
use std::process::{Command, Output, Stdio};

use common::{Server, empty_dir, free_port, run_binary};

/// Runs `worker-pool healthcheck` told the server is on `host`:`port`.
fn healthcheck(port: u16, host: &str) -> Output {
    let port = port.to_string();
    run_binary(
        empty_dir().path(),
        &["healthcheck"],
        &[("HTTP_HOST", host), ("HTTP_PORT", &port)],
    )
}

#[test]
fn healthcheck_exits_0_silently_while_the_server_runs() {
    let server = Server::start(&[]);
    for host in ["127.0.0.1", "0.0.0.0", "::"] {
        let output = healthcheck(server.port, host);
        assert_eq!(output.status.code(), Some(0), "HTTP_HOST={host}: {output:?}");
        assert!(output.stdout.is_empty() && output.stderr.is_empty(), "{output:?}");
    }
}

#[test]
fn healthcheck_takes_the_port_from_its_flag() {
    let server = Server::start(&[]);
    let port = server.port.to_string();
    let args = ["healthcheck", "--http-port", &port];
    let output = run_binary(empty_dir().path(), &args, &[("HTTP_PORT", "1")]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

#[test]
fn healthcheck_exits_1_with_one_line_when_nothing_listens() {
    let port = free_port();
    let output = healthcheck(port, "127.0.0.1");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}/healthz")), "{message}");
    assert!(output.stdout.is_empty(), "{output:?}");
}

/// Runs `promtool check metrics` on `page`: parse errors and lint problems
/// (names, suffixes, units, help) alike fail it. Fails, never skips, when
/// promtool is missing.
fn promtool_check(page: &str) -> Output {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            panic!("promtool is not on PATH: install it (apt-get install prometheus), as .ci/run does")
        }
        Err(err) => panic!("cannot run promtool: {err}"),
    };
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    child.wait_with_output().expect("wait for promtool")
}

#[test]
fn promtool_accepts_the_metrics_page() {
    let server = Server::start(&[("WORK_MIN_MS", "0"), ("WORK_MAX_MS", "0"), ("POOL_SIZE", "1")]);
    let id = server.create_task("observed");
    server.await_task_status(id, "done");
    assert_eq!(server.get("/nope").status, 404);
    let page = server.get("/metrics").text();
    for family in [
        "worker_pool_task_run_seconds_bucket",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(page.contains(family), "{family} not in\n{page}");
    }
    let checked = promtool_check(&page);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && report.is_empty(),
        "promtool: {checked:?}\n{report}\n{page}"
    );
    let broken = promtool_check("# TYPE jobs counter\njobs 1\n");
    assert!(
        !broken.status.success(),
        "promtool accepts a counter without _total: {broken:?}"
    );
}
