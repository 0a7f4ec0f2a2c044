//! worker-pool: an HTTP server that stores tasks in memory and runs them on
//! a bounded pool of workers. A Rust port of a small Go service, built on
//! may coroutines and may_minihttp.
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
//! | [`pool`] | the bounded queue of task ids and the coroutine workers draining it |
//! | [`service`] | the use-cases: create, find, list, run; validation and outcomes |
//! | [`metrics`] | lock-free counters and the Prometheus text format they are served in |
//! | [`http`] | routing, handlers and HTTP/1.1 connection handling on may_minihttp |
//! | [`shutdown`] | signal handling and the graceful drain |
//!
//! `main.rs` only wires these together and waits for a signal.

pub mod cli;
pub mod config;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod metrics;
pub mod pool;
pub mod service;
pub mod shutdown;
pub mod store;
