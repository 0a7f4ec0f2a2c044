//! The server run in-process from the library, as an embedding program or a
//! benchmark would (issue 8, rule 8): `App::start_on` a `Server` bound to
//! port 0, its address, an answer over a plain socket, a drained shutdown.
//! In a file of its own: may's runtime configuration is process-global.

mod common;

use std::error::Error;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{IO_TIMEOUT, Response, request_bytes};
use serde_json::json;
use worker_pool::app::{self, App};
use worker_pool::config::{Config, WorkRange};
use worker_pool::server::Server;
use worker_pool::shutdown::Outcome;

/// Sends `raw` (which asks to close) on a new connection to `port` and
/// reads the one answer before the close.
fn exchange(port: u16, raw: &[u8]) -> Result<Response, Box<dyn Error>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(raw)?;
    let mut received = Vec::new();
    stream.read_to_end(&mut received)?;
    let answer = Response::parse(&mut received, true).ok_or("no complete answer")?;
    assert!(received.is_empty(), "more than one answer");
    Ok(answer)
}

#[test]
fn an_app_bound_to_port_0_serves_then_drains() -> Result<(), Box<dyn Error>> {
    may::config().set_stack_size(0x4000);
    let config = Config {
        workers: 1,
        pool_size: 4,
        work: WorkRange { min_ms: 0, max_ms: 0 },
        ..Config::default()
    };
    let server = Server::bind("127.0.0.1:0".parse()?, app::limits(&config))?;
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let app = App::start_on(server, &config)?;
    assert_eq!(app.local_addr(), addr);
    let close = [("Connection", "close")];
    let health = exchange(addr.port(), &request_bytes("GET", "/healthz", &close, b""))?;
    assert_eq!((health.status, health.json()), (200, json!({"status": "ok"})));
    let created = exchange(
        addr.port(),
        &request_bytes("POST", "/tasks", &close, br#"{"title":"a"}"#),
    )?;
    assert_eq!((created.status, &created.json()["id"]), (201, &json!(1)));
    assert_eq!(app.shutdown(Duration::from_secs(1)), Outcome::Drained);
    assert!(TcpStream::connect(addr).is_err(), "still accepting after shutdown");
    Ok(())
}
