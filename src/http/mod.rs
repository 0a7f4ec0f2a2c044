//! The HTTP layer on may_minihttp: a listener whose connections are each
//! served by a [`connection::Connection`].
//!
//! - [`message`]: what a request's headers say about framing and keep-alive.
//! - [`router`]: method and path to route.
//! - [`handlers`]: route to service call to JSON answer.
//! - [`connection`]: the per-connection service tying those together.
//! - [`metrics`]: request counts and the `GET /metrics` page.
//! - [`openapi`]: the `GET /openapi.json` document.
//! - [`guard`]: connection limits and the watchdog enforcing them.
//! - [`wire`]: the workarounds that write to a connection's socket directly.

pub mod connection;
pub mod guard;
pub mod handlers;
pub mod message;
pub mod metrics;
pub mod openapi;
pub mod router;
pub mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use may::coroutine::JoinHandle;
use may_minihttp::HttpServiceFactory;

use crate::http::connection::{Connection, Shared};
use crate::http::guard::{Guard, Limits};
use crate::http::metrics::RequestCounters;
use crate::pool::WorkerGauge;
use crate::service::TaskService;

/// A listening HTTP server.
pub struct HttpServer {
    accept: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and starts accepting connections, each answered with
    /// `service` within `limits`; `workers` is reported in the metrics.
    pub fn start(
        addr: SocketAddr,
        service: Arc<TaskService>,
        workers: WorkerGauge,
        limits: Limits,
    ) -> io::Result<Self> {
        let guard = Guard::new(limits);
        guard.watch()?;
        let shared = Arc::new(Shared {
            service,
            guard,
            workers,
            requests: RequestCounters::default(),
        });
        let accept = ConnectionFactory { shared }.start(addr)?;
        Ok(Self { accept })
    }

    /// Closes the listening socket: new connections are refused, open ones
    /// are served until the process exits.
    pub fn stop_accepting(self) {
        // SAFETY: cancelling unwinds the accept coroutine at its blocking
        // accept; it holds only the listener and the factory (an Arc), and
        // dropping them closes the listening socket and nothing else.
        // Connections run in coroutines of their own and are not touched.
        unsafe { self.accept.coroutine().cancel() };
        let _cancelled = self.accept.join();
    }
}

struct ConnectionFactory {
    shared: Arc<Shared>,
}

impl HttpServiceFactory for ConnectionFactory {
    type Service = Connection;

    fn new_service(&self, id: usize) -> Connection {
        Connection::new(id, self.shared.clone())
    }
}
