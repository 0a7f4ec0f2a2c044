//! The `worker-pool` binary: reads the configuration, wires store, pool,
//! service and HTTP server together, then waits for SIGINT or SIGTERM.
//!
//! Exit codes: 0 after a full drain, 1 when the shutdown timeout left tasks
//! unfinished or the server could not start, 2 for invalid configuration.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use log::{error, info};
use worker_pool::cli::{Cli, Subcommand};
use worker_pool::config::Config;
use worker_pool::healthcheck;
use worker_pool::http::HttpServer;
use worker_pool::http::guard::Limits;
use worker_pool::pool::{TaskQueue, WorkerPool};
use worker_pool::service::TaskService;
use worker_pool::shutdown::{self, Outcome, ShutdownSignals};
use worker_pool::store::{Bounds, TaskStore};

/// Coroutine stack size in words: room for serde's bounded recursion on
/// deeply nested JSON bodies, well above may's default of 0x1000.
const COROUTINE_STACK_WORDS: usize = 0x4000;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,may=warn,may_minihttp=off"))
        .init();
    let config = match Cli::load() {
        Cli {
            command: Some(Subcommand::Healthcheck),
            config,
        } => return healthcheck::run(&config),
        Cli { config, .. } => config,
    };
    may::config()
        .set_workers(config.threads)
        .set_stack_size(COROUTINE_STACK_WORDS);
    match serve(&config) {
        Ok(outcome) => exit_code(outcome),
        Err(failed) => {
            error!("cannot start: {failed}");
            ExitCode::from(1)
        }
    }
}

fn serve(config: &Config) -> std::io::Result<Outcome> {
    let signals = ShutdownSignals::register()?;
    let queue = Arc::new(TaskQueue::new(config.pool_size));
    let store = Arc::new(TaskStore::bounded(Bounds {
        max_tasks: config.max_tasks,
        max_text_bytes: config.max_text_bytes,
    }));
    let service = Arc::new(TaskService::new(store, queue.clone(), config.work));
    let runner = service.clone();
    let pool = WorkerPool::start(
        config.workers,
        queue,
        Arc::new(move |worker, id| runner.run(worker, id)),
    )?;
    let addr = SocketAddr::new(config.http_host, config.http_port);
    let limits = Limits {
        max_connections: config.max_connections,
        idle_timeout: config.idle_timeout,
        max_body_bytes: config.max_body_bytes,
    };
    let server = HttpServer::start(addr, service.clone(), pool.gauge(), limits)?;
    info!(
        "listening on {addr}: {} workers, queue of {}, {} scheduler thread(s), shutdown timeout {:?}",
        config.workers, config.pool_size, config.threads, config.shutdown_timeout
    );
    let signal = signals.wait();
    info!("shutdown: {signal} received");
    Ok(shutdown::drain(server, &pool, &service, config.shutdown_timeout))
}

fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Drained => ExitCode::SUCCESS,
        Outcome::TimedOut(_) => ExitCode::from(1),
    }
}
