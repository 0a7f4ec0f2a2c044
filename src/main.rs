//! The `worker-pool` binary: reads the configuration, starts the server
//! (`worker_pool::app`), then waits for SIGINT or SIGTERM and drains.
//!
//! Exit codes: 0 after a full drain, 1 when the shutdown timeout left tasks
//! unfinished or the server could not start, 2 for invalid configuration.

use std::process::ExitCode;

use log::{error, info};
use worker_pool::app::App;
use worker_pool::cli::{Cli, DEFAULT_LOG_FILTER, Subcommand};
use worker_pool::config::Config;
use worker_pool::healthcheck;
use worker_pool::shutdown::{Outcome, ShutdownSignals};

/// Coroutine stack size in words: room for serde's bounded recursion on
/// deeply nested JSON bodies, well above may's default of 0x1000. Only the
/// pages a coroutine touches become resident.
const COROUTINE_STACK_WORDS: usize = 0x4000;

fn main() -> ExitCode {
    // The command line and `.env` first, so that a RUST_LOG in `.env`
    // reaches the logger; clap reports its own errors and exits 2.
    let cli = Cli::load();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_LOG_FILTER)).init();
    log_panics();
    let config = match cli {
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
        Ok(Outcome::Drained) => ExitCode::SUCCESS,
        Ok(Outcome::TimedOut(_)) => ExitCode::from(1),
        Err(failed) => {
            error!("cannot start: {failed}");
            ExitCode::from(1)
        }
    }
}

fn serve(config: &Config) -> std::io::Result<Outcome> {
    let signals = ShutdownSignals::register()?;
    let app = App::start(config)?;
    info!(
        "listening on {}: {} workers, queue of {}, {} scheduler thread(s), shutdown timeout {:?}",
        app.local_addr(),
        config.workers,
        config.pool_size,
        config.threads,
        config.shutdown_timeout
    );
    let signal = signals.wait();
    info!("shutdown: {signal} received");
    Ok(app.shutdown(config.shutdown_timeout))
}

/// Sends panic messages through the logger instead of straight to stderr:
/// a panic ends one request or one task, and is logged like any error.
fn log_panics() {
    std::panic::set_hook(Box::new(|panic| error!("{panic}")));
}
