//! The task API over HTTP: which route a request asks for ([`Route`]), the
//! handlers that answer each route through the service, requests from pages
//! on other origins ([`AllowedOrigins`]), the metrics page and the OpenAPI
//! document. [`Api`] is the [`Handler`] the HTTP server (`crate::server`)
//! calls for every request.

mod cors;
mod handlers;
mod metrics;
mod openapi;
mod router;

use std::sync::Arc;

pub use cors::AllowedOrigins;
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
    origins: AllowedOrigins,
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
            origins: AllowedOrigins::None,
        }
    }

    /// The same API, letting pages on `origins` call it (CORS); without
    /// this, no answer carries CORS headers.
    pub fn allowing_origins(self, origins: AllowedOrigins) -> Self {
        Self { origins, ..self }
    }
}

impl Handler for Api {
    /// Routes and answers `request`. With CORS not configured, a request
    /// without an `Origin` header (curl, scripts, same-origin GETs) costs
    /// one header lookup and a test of the setting more than its answer.
    fn handle(&self, request: &Request<'_>, response: &mut Response) {
        let route = route(request.method(), request.target(), self.service.max_wait());
        let origin = request.header("Origin");
        if origin.is_some_and(|origin| self.origins.refuses(request, origin)) {
            cors::refuse(response);
        } else {
            handlers::answer(self, &route, request, response);
        }
        if self.origins.is_set() {
            self.origins.write_headers(request, origin, &route, response);
        }
        self.requests
            .count(request.method(), route.resource(), response.status());
    }

    fn refused(&self, status: u16) {
        self.requests.count("", None, status);
    }
}
