//! `GET /metrics`: counts every answer by method, route and status code,
//! and writes the page from the counts each layer keeps.

use crate::http::Api;
use crate::http::router::Resource;
use crate::metrics::{CONTENT_TYPE, Exposition, Kind, StripedCounters};
use crate::server::Response;

/// The `method` label: the methods the API answers, then `other`.
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "DELETE", "OPTIONS", "other"];

/// The `route` label of answers no resource matched (404, a malformed
/// target, requests the server refused before routing).
const UNMATCHED: &str = "unmatched";

/// The `code` label: every status the server answers with; any other is
/// counted under the last, `other`.
const CODES: [u16; 19] = [
    200, 201, 204, 400, 403, 404, 405, 408, 409, 410, 411, 413, 417, 431, 500, 503, 505, 100, 0,
];

const ROUTES: usize = Resource::ALL.len() + 1;
const COUNTERS: usize = METHODS.len() * ROUTES * CODES.len();

/// Answers counted by method, route and status code; counting is a plain
/// load and store into the calling thread's own copy.
#[derive(Debug, Default)]
pub(crate) struct RequestCounters {
    counts: StripedCounters<COUNTERS>,
}

impl RequestCounters {
    /// Counts an answer with status `code` to a `method` request for
    /// `resource` (`None` when no resource matched or the server refused
    /// the request before routing). Inlined: the call cost 12 instructions
    /// per request.
    #[inline(always)]
    pub(crate) fn count(&self, method: &str, resource: Option<Resource>, code: u16) {
        let method = match method.as_bytes() {
            b"GET" => 0,
            b"HEAD" => 1,
            b"POST" => 2,
            b"DELETE" => 3,
            b"OPTIONS" => 4,
            _ => 5,
        };
        let route = resource.map_or(ROUTES - 1, |resource| resource as usize);
        let code = CODES.iter().position(|known| *known == code).unwrap_or(CODES.len() - 1);
        self.counts.increment((method * ROUTES + route) * CODES.len() + code);
    }

    /// Writes the counts that are not zero.
    fn write(&self, page: &mut Exposition) {
        let name = "worker_pool_http_requests_total";
        page.family(name, Kind::Counter, "HTTP answers, by method, route and status code.");
        for (method_index, method) in METHODS.iter().enumerate() {
            for route_index in 0..ROUTES {
                let route = Resource::ALL
                    .get(route_index)
                    .map_or(UNMATCHED, |resource| resource.label());
                for (code_index, code) in CODES.iter().enumerate() {
                    let count = self
                        .counts
                        .get((method_index * ROUTES + route_index) * CODES.len() + code_index);
                    if count > 0 {
                        let code = if *code == 0 {
                            "other".to_owned()
                        } else {
                            code.to_string()
                        };
                        page.sample(name, &[("method", method), ("route", route), ("code", &code)], count);
                    }
                }
            }
        }
    }
}

/// Writes the metrics page.
#[inline(never)] // a large frame, kept out of every request's: see `handlers::answer`
pub(crate) fn answer(api: &Api, reply: &mut Response) {
    let mut page = Exposition::default();
    api.service.write_metrics(&mut page);
    page.single(
        "worker_pool_workers",
        Kind::Gauge,
        "Worker coroutines (WORKERS).",
        api.workers.size(),
    )
    .single(
        "worker_pool_workers_busy",
        Kind::Gauge,
        "Workers running a task now.",
        api.workers.busy(),
    )
    .single(
        "worker_pool_http_connections",
        Kind::Gauge,
        "Client connections open now.",
        api.connections.open(),
    );
    api.requests.write(&mut page);
    reply.set_content_type(CONTENT_TYPE);
    reply.body_mut().extend_from_slice(page.into_text().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_method_route_and_code() {
        let counters = RequestCounters::default();
        counters.count("GET", Some(Resource::Task), 200);
        counters.count("GET", Some(Resource::Task), 400);
        counters.count("HEAD", Some(Resource::Task), 404);
        counters.count("POST", Some(Resource::Tasks), 503);
        counters.count("", None, 413);
        counters.count("GET", None, 404);
        counters.count("BREW", None, 404);
        counters.count("PUT", Some(Resource::Task), 405);
        counters.count("GET", Some(Resource::Health), 299);
        let mut page = Exposition::default();
        counters.write(&mut page);
        let text = page.into_text();
        for line in [
            r#"worker_pool_http_requests_total{method="GET",route="/tasks/{id}",code="200"} 1"#,
            r#"worker_pool_http_requests_total{method="GET",route="/tasks/{id}",code="400"} 1"#,
            r#"worker_pool_http_requests_total{method="HEAD",route="/tasks/{id}",code="404"} 1"#,
            r#"worker_pool_http_requests_total{method="POST",route="/tasks",code="503"} 1"#,
            r#"worker_pool_http_requests_total{method="other",route="unmatched",code="413"} 1"#,
            r#"worker_pool_http_requests_total{method="GET",route="unmatched",code="404"} 1"#,
            r#"worker_pool_http_requests_total{method="other",route="unmatched",code="404"} 1"#,
            r#"worker_pool_http_requests_total{method="other",route="/tasks/{id}",code="405"} 1"#,
            r#"worker_pool_http_requests_total{method="GET",route="/healthz",code="other"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("worker_pool_http_requests_total{"))
                .count(),
            9
        );
    }
}
