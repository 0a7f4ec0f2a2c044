//! The whole server wired together: store, queue, workers, service, the
//! API and the HTTP server, started from a [`Config`] and stopped by
//! [`App::shutdown`]. `main.rs` runs one; tests can run one in-process on
//! port 0.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::http::Api;
use crate::pool::{TaskQueue, WorkerPool};
use crate::server::{Limits, Running, Server};
use crate::service::TaskService;
use crate::shutdown::{self, Outcome};
use crate::store::{Bounds, TaskStore};

/// A running server and its workers.
pub struct App {
    running: Running,
    pool: WorkerPool,
    service: Arc<TaskService>,
}

impl App {
    /// Binds the configured address and starts serving.
    pub fn start(config: &Config) -> io::Result<Self> {
        let addr = SocketAddr::new(config.http_host, config.http_port);
        Self::start_on(Server::bind(addr, limits(config))?, config)
    }

    /// Starts serving on a server already bound (tests bind port 0).
    pub fn start_on(server: Server, config: &Config) -> io::Result<Self> {
        let queue = Arc::new(TaskQueue::new(config.pool_size));
        let store = Arc::new(TaskStore::bounded(Bounds {
            max_tasks: config.max_tasks,
            max_text_bytes: config.max_text_bytes,
        }));
        let service = Arc::new(TaskService::new(store, queue.clone(), config.work, config.max_wait));
        let runner = service.clone();
        let pool = WorkerPool::start(
            config.workers,
            queue,
            Arc::new(move |worker, id| runner.run(worker, id)),
        )?;
        let api = Api::new(service.clone(), pool.gauge(), server.connections())
            .allowing_origins(config.cors_allowed_origins.clone());
        let running = server.serve(Arc::new(api))?;
        Ok(Self { running, pool, service })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// Stops accepting connections, closes the pool and drains it within
    /// `timeout`; see [`shutdown::drain`].
    pub fn shutdown(self, timeout: Duration) -> Outcome {
        shutdown::drain(self.running, &self.pool, &self.service, timeout)
    }
}

/// The HTTP server's limits, as configured.
pub fn limits(config: &Config) -> Limits {
    Limits {
        max_connections: config.max_connections,
        max_connections_per_client: config.max_connections_per_client,
        max_header_bytes: config.max_header_bytes,
        max_body_bytes: config.max_body_bytes,
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        idle_timeout: config.idle_timeout,
    }
}
