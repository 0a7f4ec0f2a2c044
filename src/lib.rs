//! worker-pool: an HTTP server that stores tasks in memory and runs them on
//! a bounded pool of workers. A Rust port of a small Go service, built on
//! may coroutines.
//!
//! The crate is laid out by layer, each knowing only the ones below it:
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | settings from flags, the environment and `.env`, checked once at start-up |
//! | [`cli`] | the command line: serving, `--help`, `--version`, `healthcheck` |
//! | [`healthcheck`] | `worker-pool healthcheck`: `GET /healthz` over a plain socket, for containers |
//! | [`domain`] | the task, its status lifecycle and its JSON shapes |
//! | [`store`] | the concurrent in-memory map of tasks and the id counter |
//! | [`waiters`] | coroutines parked until a task finishes: long-polling requests, and workers a cancel interrupts |
//! | [`pool`] | the bounded queue of task ids and the coroutine workers draining it |
//! | [`service`] | the use-cases: create, find (or wait for), list, cancel, run; validation and outcomes |
//! | [`metrics`] | lock-free counters and the Prometheus text format they are served in |
//! | [`http`] | the task API over HTTP: routes, handlers, the metrics page, the OpenAPI document |
//! | [`server`] | the HTTP/1.1 server on may coroutines: connections, framing, limits; knows nothing of tasks |
//! | [`shutdown`] | signal handling and the graceful drain |
//! | [`app`] | all of the above wired together, started from a [`config::Config`] |
//!
//! `main.rs` only starts an [`app::App`] and waits for a signal.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod metrics;
pub mod pool;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod waiters;
