//! Graceful shutdown: wait for SIGINT or SIGTERM, stop accepting
//! connections, close the pool, let the workers drain what was queued, and
//! report what (if anything) the timeout left unfinished.

use std::io;
use std::time::{Duration, Instant};

use log::{error, info};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::http::HttpServer;
use crate::pool::WorkerPool;
use crate::service::{TaskService, Unfinished};

/// The signals that start a shutdown, registered before the server starts
/// so that one sent during start-up is not lost.
pub struct ShutdownSignals(Signals);

impl ShutdownSignals {
    /// Starts catching SIGINT and SIGTERM.
    pub fn register() -> io::Result<Self> {
        Signals::new([SIGINT, SIGTERM]).map(Self)
    }

    /// Blocks the calling thread until one arrives; returns its name.
    pub fn wait(mut self) -> &'static str {
        let signal = self.0.forever().next();
        match signal {
            Some(SIGINT) => "SIGINT",
            Some(SIGTERM) => "SIGTERM",
            _ => "an unknown signal",
        }
    }
}

/// How a shutdown ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every accepted task completed.
    Drained,
    /// The timeout ran out first; these tasks were not completed.
    TimedOut(Unfinished),
}

/// Runs the shutdown sequence within `timeout` and logs each step.
pub fn drain(server: HttpServer, pool: &WorkerPool, service: &TaskService, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    server.stop_accepting();
    info!("shutdown: stopped accepting connections");
    pool.close();
    info!(
        "shutdown: task pool closed, draining {} queued and {} running task(s)",
        pool.queue().len(),
        pool.busy()
    );
    if pool.wait_stopped(deadline.saturating_duration_since(Instant::now())) {
        info!("shutdown: every queued task completed");
        return Outcome::Drained;
    }
    let unfinished = service.unfinished();
    error!(
        "shutdown: timed out after {timeout:?}; not completed: queued {:?}, running {:?}",
        unfinished.queued, unfinished.running
    );
    Outcome::TimedOut(unfinished)
}
