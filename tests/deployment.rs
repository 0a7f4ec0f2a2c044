//! What running the server under a container runtime and Prometheus relies
//! on, through the real binary: `worker-pool healthcheck` (the image's
//! `HEALTHCHECK`), and a metrics page that Prometheus's own checker accepts.

mod common;

use std::process::Output;

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
