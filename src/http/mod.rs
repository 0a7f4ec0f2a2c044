//! The task API over HTTP: which route a request asks for ([`Route`]), the
//! handlers that answer each route through the service, the metrics page
//! and the OpenAPI document. [`Api`] is the [`Handler`] the HTTP server
//! (`crate::server`) calls for every request.

mod handlers;
mod metrics;
mod openapi;
mod router;

use std::sync::Arc;

pub use handlers::MAX_PAGE_BYTES;
pub use router::{Resource, Route, route};

use crate::http::metrics::RequestCounters;
use crate::pool::WorkerGauge;
use crate::server::{ConnectionGauge, Handler, Request, Response};
use crate::service::TaskService;

/// Everything a handler can reach: the use-cases, the workers' and the
/// server's gauges, and the request counts, so that every route, the
/// metrics page included, is answered the same way.
pub struct Api {
    service: Arc<TaskService>,
    workers: WorkerGauge,
    connections: ConnectionGauge,
    requests: RequestCounters,
}

impl Api {
    /// The API over `service`, reporting `workers` and `connections` in its
    /// metrics.
    pub fn new(service: Arc<TaskService>, workers: WorkerGauge, connections: ConnectionGauge) -> Self {
        Self {
            service,
            workers,
            connections,
            requests: RequestCounters::default(),
        }
    }
}

impl Handler for Api {
    fn handle(&self, request: &Request<'_>, response: &mut Response) {
        let route = route(request.method(), request.target(), self.service.max_wait());
        handlers::answer(self, &route, request.body(), response);
        self.requests
            .count(request.method(), route.resource(), response.status());
    }

    fn refused(&self, status: u16) {
        self.requests.count("", None, status);
    }
}
