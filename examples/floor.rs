//! The framework floor: a may_minihttp server that does no application work.
//!
//! Every request, whatever its method and path, gets the same short JSON task
//! body (a request body, if any, is read and dropped). Served the same way as `worker-pool` (an `HttpServiceFactory` with
//! one service per connection, the same coroutine stack size), it measures
//! what may and may_minihttp cost per request on their own; the load
//! comparison in `benches/load/run.sh` sets the server against it.
//!
//! ```text
//! cargo build --release --example floor
//! HTTP_PORT=8081 target/release/examples/floor
//! ```

use std::io;

use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};

/// The same coroutine stack size as the `worker-pool` binary, so the two
/// differ only in what they do per request.
const COROUTINE_STACK_WORDS: usize = 0x4000;

const BODY: &str = "{\"id\":1,\"title\":\"t\",\"description\":\"\",\"status\":\"pending\"}\n";

struct Floor;

impl HttpService for Floor {
    fn call(&mut self, request: Request, response: &mut Response) -> io::Result<()> {
        // may_minihttp would parse an unread body as the next request; GETs
        // (all the load) have none, so this costs them only the comparison.
        if request.method() != "GET" {
            io::copy(&mut request.body(), &mut io::sink())?;
        }
        response.header("Content-Type: application/json");
        response.body(BODY);
        Ok(())
    }
}

struct FloorFactory;

impl HttpServiceFactory for FloorFactory {
    type Service = Floor;

    fn new_service(&self, _connection_id: usize) -> Floor {
        Floor
    }
}

fn main() {
    let port: u16 = match std::env::var("HTTP_PORT") {
        Ok(raw) => raw.trim().parse().unwrap_or_else(|_| {
            eprintln!("floor: invalid HTTP_PORT={raw:?}: expected a port number");
            std::process::exit(2)
        }),
        Err(_) => 8081,
    };
    may::config().set_stack_size(COROUTINE_STACK_WORDS);
    let server = FloorFactory.start(("0.0.0.0", port)).unwrap_or_else(|err| {
        eprintln!("floor: cannot listen on port {port}: {err}");
        std::process::exit(1)
    });
    eprintln!("floor: listening on 0.0.0.0:{port}");
    let _ = server.join();
}
