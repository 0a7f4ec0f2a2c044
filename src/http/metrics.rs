//! `GET /metrics`: counts every answer by route and status class, and
//! writes the page from the counts each layer keeps.

use crate::http::connection::Shared;
use crate::http::handlers::Reply;
use crate::http::router::Route;
use crate::metrics::{CONTENT_TYPE, Exposition, Kind, StripedCounters};

/// The `route` label of each counted answer: the Go mux pattern it matched,
/// or `unmatched` for requests no route served (404, 405, refused framing).
const ROUTES: [&str; 8] = [
    "GET /tasks",
    "POST /tasks",
    "GET /tasks/{id}",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
    "unmatched",
];

const UNMATCHED: usize = ROUTES.len() - 1;

/// The `class` label: status codes counted by their first digit.
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Answers counted by route and status class; counting is one atomic add.
#[derive(Debug, Default)]
pub struct RequestCounters {
    counts: StripedCounters<{ ROUTES.len() * CLASSES.len() }>,
}

impl RequestCounters {
    /// Counts an answer with status `code` to a request routed to `route`
    /// (`None` when it was refused before routing).
    pub fn count(&self, route: Option<&Route>, code: u16) {
        let class = match code {
            ..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.counts.increment(route_label(route) * CLASSES.len() + class);
    }

    fn write(&self, page: &mut Exposition) {
        let name = "worker_pool_http_requests_total";
        page.family(name, Kind::Counter, "HTTP answers, by route and status class.");
        for (route_index, route) in ROUTES.iter().enumerate() {
            for (class_index, class) in CLASSES.iter().enumerate() {
                let count = self.counts.get(route_index * CLASSES.len() + class_index);
                page.sample(name, &[("route", route), ("class", class)], count);
            }
        }
    }
}

fn route_label(route: Option<&Route>) -> usize {
    match route {
        Some(Route::ListTasks(_)) => 0,
        Some(Route::CreateTask) => 1,
        Some(Route::GetTask(_)) => 2,
        Some(Route::Health) => 3,
        Some(Route::Ready) => 4,
        Some(Route::Metrics) => 5,
        Some(Route::OpenApi) => 6,
        Some(Route::NotFound | Route::MethodNotAllowed(_) | Route::BadTarget) | None => UNMATCHED,
    }
}

/// Writes the metrics page.
pub fn answer(shared: &Shared, reply: &mut impl Reply) {
    let mut page = Exposition::default();
    shared.service.write_metrics(&mut page);
    page.single(
        "worker_pool_workers",
        Kind::Gauge,
        "Worker coroutines (WORKERS).",
        shared.workers.size(),
    )
    .single(
        "worker_pool_workers_busy",
        Kind::Gauge,
        "Workers running a task now.",
        shared.workers.busy(),
    )
    .single(
        "worker_pool_http_connections",
        Kind::Gauge,
        "Client connections open now.",
        shared.guard.open_connections(),
    );
    shared.requests.write(&mut page);
    reply.header(CONTENT_TYPE);
    reply.body().extend_from_slice(page.into_text().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceError;

    #[test]
    fn answers_are_counted_by_route_and_class() {
        let counters = RequestCounters::default();
        counters.count(Some(&Route::GetTask(Ok(1))), 200);
        counters.count(Some(&Route::GetTask(Err(ServiceError::InvalidTaskId))), 400);
        counters.count(Some(&Route::GetTask(Ok(2))), 404);
        counters.count(Some(&Route::CreateTask), 503);
        counters.count(None, 413);
        counters.count(Some(&Route::NotFound), 404);
        let mut page = Exposition::default();
        counters.write(&mut page);
        let text = page.into_text();
        for line in [
            r#"worker_pool_http_requests_total{route="GET /tasks/{id}",class="2xx"} 1"#,
            r#"worker_pool_http_requests_total{route="GET /tasks/{id}",class="4xx"} 2"#,
            r#"worker_pool_http_requests_total{route="POST /tasks",class="5xx"} 1"#,
            r#"worker_pool_http_requests_total{route="POST /tasks",class="2xx"} 0"#,
            r#"worker_pool_http_requests_total{route="unmatched",class="4xx"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
