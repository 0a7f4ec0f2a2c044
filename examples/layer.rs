//! The project's HTTP layer alone: `worker_pool::server` answering every
//! request with the same fixed JSON body as the may_minihttp floor
//! (`examples/floor.rs`), with no application behind it.
//!
//! The floor does no application work, and `worker-pool` does (routing, the
//! store, the task's JSON, metrics), so the two compare a whole server with
//! a bare library. This example is the like-for-like half of that
//! comparison: the same work per request as the floor, done by the HTTP
//! layer that replaced may_minihttp. `benches/load/run.sh` runs it as the
//! server `layer` in scenarios a and b.
//!
//! ```text
//! cargo build --release --example layer
//! HTTP_PORT=8082 target/release/examples/layer
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use worker_pool::server::{Handler, Limits, Request, Response, Server};

/// The same coroutine stack size as the `worker-pool` binary and the floor.
const COROUTINE_STACK_WORDS: usize = 0x4000;

/// The floor's body, byte for byte.
const BODY: &[u8] = b"{\"id\":1,\"title\":\"t\",\"description\":\"\",\"status\":\"pending\"}\n";

/// Answers everything with [`BODY`]; the server has already read and framed
/// any request body.
struct Fixed;

impl Handler for Fixed {
    fn handle(&self, _request: &Request<'_>, response: &mut Response) {
        response.set_content_type("application/json");
        response.body_mut().extend_from_slice(BODY);
    }
}

fn main() {
    let port: u16 = match std::env::var("HTTP_PORT") {
        Ok(raw) => raw.trim().parse().unwrap_or_else(|_| {
            eprintln!("layer: invalid HTTP_PORT={raw:?}: expected a port number");
            std::process::exit(2)
        }),
        Err(_) => 8082,
    };
    may::config().set_stack_size(COROUTINE_STACK_WORDS);
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let running = Server::bind(addr, Limits::default())
        .and_then(|server| server.serve(Arc::new(Fixed)))
        .unwrap_or_else(|err| {
            eprintln!("layer: {err}");
            std::process::exit(1)
        });
    eprintln!("layer: listening on {}", running.local_addr());
    loop {
        std::thread::park();
    }
}
