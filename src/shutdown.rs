//! Graceful shutdown: wait for SIGINT or SIGTERM, stop accepting
//! connections, close the pool, answer every request waiting for a task,
//! let the workers drain what was queued, and report what (if anything)
//! the timeout left unfinished.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use log::{error, info};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::domain::TaskId;
use crate::pool::WorkerPool;
use crate::server::Running;
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
pub fn drain(server: Running, pool: &WorkerPool, service: &TaskService, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    server.stop_accepting();
    info!("shutdown: stopped accepting connections");
    pool.close();
    info!(
        "shutdown: task pool closed, draining {} queued and {} running task(s)",
        pool.queue().len(),
        pool.busy()
    );
    // Waiting requests would otherwise hold their answers (and the clients)
    // until their deadlines, up to MAX_WAIT into the drain.
    let answered = service.close_waiting();
    info!("shutdown: answered {answered} request(s) waiting for a task");
    if pool.wait_stopped(deadline.saturating_duration_since(Instant::now())) {
        info!("shutdown: every queued task completed");
        return Outcome::Drained;
    }
    let unfinished = service.unfinished();
    error!(
        "shutdown: timed out after {timeout:?}; not completed: queued {}, running {}",
        IdRuns(&unfinished.queued),
        IdRuns(&unfinished.running)
    );
    Outcome::TimedOut(unfinished)
}

/// Ascending ids written as a list in which runs of three or more
/// consecutive ids are shortened to `first-last`: `[1, 2, 5-9, 12]`. Every id
/// is named, and a long shutdown report stays one short line.
struct IdRuns<'a>(&'a [TaskId]);

impl fmt::Display for IdRuns<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        let mut rest = self.0;
        let mut separator = "";
        while let Some(&first) = rest.first() {
            let run = rest
                .iter()
                .enumerate()
                .take_while(|&(offset, &id)| id == first + offset as TaskId)
                .count();
            let shown = if run >= 3 { 1 } else { run };
            for &id in &rest[..shown] {
                write!(f, "{separator}{id}")?;
                separator = ", ";
            }
            if run >= 3 {
                write!(f, "-{}", first + run as TaskId - 1)?;
            }
            rest = &rest[run..];
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_runs_name_every_id_and_shorten_runs() {
        let shown = |ids: &[TaskId]| IdRuns(ids).to_string();
        assert_eq!(shown(&[]), "[]");
        assert_eq!(shown(&[4]), "[4]");
        assert_eq!(shown(&[2, 3]), "[2, 3]");
        assert_eq!(shown(&[1, 2, 3]), "[1-3]");
        assert_eq!(shown(&[1, 2, 5, 6, 7, 8, 9, 12]), "[1, 2, 5-9, 12]");
        let many: Vec<TaskId> = (10..=131_000).collect();
        assert_eq!(shown(&many), "[10-131000]");
    }
}
