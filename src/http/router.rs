//! Maps a request's method and target to a route, the way Go's `net/http`
//! pattern mux does for `GET /tasks`, `POST /tasks`, `GET /tasks/{id}` and
//! `DELETE /tasks/{id}`:
//! the query string plays no part in the route, `HEAD` is served wherever
//! `GET` is, `OPTIONS` on a known path says which methods it allows, a
//! known path with another method is 405 with the allowed methods, and
//! `{id}` is one non-empty, percent-decoded path segment.
//! The listing's page parameters, and the `wait` of `GET /tasks/{id}`, are
//! read from the query string here too, as Go's `URL.Query` reads them: `+`
//! is a space, the first of a repeated name counts, unknown names are
//! ignored.

use std::time::Duration;

use crate::domain::TaskId;
use crate::service::{ServiceError, page_query, parse_task_id, parse_wait};
use crate::store::PageQuery;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /tasks`, with the page asked for.
    ListTasks(Result<PageQuery, ServiceError>),
    /// `POST /tasks`.
    CreateTask,
    /// `GET /tasks/{id}`, with the id as parsed (or the `wait` refused),
    /// answered at once: no `wait`, or a `wait` of 0.
    GetTask(Result<TaskId, ServiceError>),
    /// `GET /tasks/{id}?wait=SECONDS`: answered once the task has finished,
    /// or after the wait (above zero, at most `MAX_WAIT`).
    WaitForTask(TaskId, Duration),
    /// `DELETE /tasks/{id}`: cancel the task.
    CancelTask(Result<TaskId, ServiceError>),
    /// No route has this path.
    NotFound,
    /// `GET /healthz`: the process is up.
    Health,
    /// `GET /readyz`: the server is accepting work.
    Ready,
    /// `GET /metrics`: the Prometheus metrics page.
    Metrics,
    /// `GET /openapi.json`: the API's OpenAPI description.
    OpenApi,
    /// `OPTIONS` on a known path: which methods it allows (and, for a CORS
    /// preflight, whether a page on another origin may use them).
    Options(Resource),
    /// The path is known but not with this method.
    MethodNotAllowed(Resource),
    /// The request target is not a path this server can read.
    BadTarget,
}

impl Route {
    /// The resource (path pattern) the request was for, if any matched.
    pub fn resource(&self) -> Option<Resource> {
        match self {
            Self::ListTasks(_) | Self::CreateTask => Some(Resource::Tasks),
            Self::GetTask(_) | Self::WaitForTask(..) | Self::CancelTask(_) => Some(Resource::Task),
            Self::Health => Some(Resource::Health),
            Self::Ready => Some(Resource::Ready),
            Self::Metrics => Some(Resource::Metrics),
            Self::OpenApi => Some(Resource::OpenApi),
            Self::Options(resource) | Self::MethodNotAllowed(resource) => Some(*resource),
            Self::NotFound | Self::BadTarget => None,
        }
    }
}

/// A path pattern the server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `/tasks`.
    Tasks,
    /// `/tasks/{id}`.
    Task,
    /// `/healthz`.
    Health,
    /// `/readyz`.
    Ready,
    /// `/metrics`.
    Metrics,
    /// `/openapi.json`.
    OpenApi,
}

impl Resource {
    /// Every resource, in the order of their discriminants.
    pub const ALL: [Resource; 6] = [
        Self::Tasks,
        Self::Task,
        Self::Health,
        Self::Ready,
        Self::Metrics,
        Self::OpenApi,
    ];

    /// The path pattern, as the `route` label of the metrics gives it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tasks => "/tasks",
            Self::Task => "/tasks/{id}",
            Self::Health => "/healthz",
            Self::Ready => "/readyz",
            Self::Metrics => "/metrics",
            Self::OpenApi => "/openapi.json",
        }
    }

    /// The methods it answers, as the `Allow` header (of 405 and `OPTIONS`
    /// answers) and `Access-Control-Allow-Methods` list them. [`route`]
    /// routes exactly these; a test holds the two together.
    pub fn allow(self) -> &'static str {
        match self {
            Self::Tasks => "GET, HEAD, POST, OPTIONS",
            Self::Task => "GET, HEAD, DELETE, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }
}

/// Routes one request. `HEAD` is routed as `GET`; the server leaves out
/// the body. A `wait` above `max_wait` (`MAX_WAIT`) is refused here.
pub fn route(method: &str, target: &str, max_wait: Duration) -> Route {
    let readable = method == "GET" || method == "HEAD";
    if let Some(segment) = plain_task_segment(target) {
        // The busiest target, read in one pass; routed as the long way below would.
        return task_method_route(method, parse_task_id(segment), readable, "", max_wait);
    }
    // One scan for the query, whose position both halves are cut at.
    let (path, query) = match target.as_bytes().iter().position(|&byte| byte == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, ""),
    };
    let Some(path) = path_of(path) else {
        return Route::BadTarget;
    };
    match path.strip_prefix("/tasks") {
        Some(rest) => task_routes(method, rest, readable, query, max_wait),
        None => operations_route(method, path, readable),
    }
}

/// The routes under `/tasks`, the busy ones, so they are tried first;
/// `rest` is the path after `/tasks`, `query` the query string.
fn task_routes(method: &str, rest: &str, readable: bool, query: &str, max_wait: Duration) -> Route {
    if rest.is_empty() {
        return match method {
            _ if readable => Route::ListTasks(list_query(query)),
            "POST" => Route::CreateTask,
            _ => unanswered(method, Resource::Tasks),
        };
    }
    match rest.strip_prefix('/') {
        Some(segment) if !segment.is_empty() && !segment.as_bytes().contains(&b'/') => {
            task_route(method, segment, readable, query, max_wait)
        }
        _ => Route::NotFound,
    }
}

/// The route of a `method` that `resource` has no handler for: `OPTIONS`,
/// or else 405.
fn unanswered(method: &str, resource: Resource) -> Route {
    if method == "OPTIONS" {
        Route::Options(resource)
    } else {
        Route::MethodNotAllowed(resource)
    }
}

/// The routes for operating the server: probes, metrics, the API document.
fn operations_route(method: &str, path: &str, readable: bool) -> Route {
    let (resource, route) = match path {
        "/healthz" => (Resource::Health, Route::Health),
        "/readyz" => (Resource::Ready, Route::Ready),
        "/metrics" => (Resource::Metrics, Route::Metrics),
        "/openapi.json" => (Resource::OpenApi, Route::OpenApi),
        _ => return Route::NotFound,
    };
    if readable { route } else { unanswered(method, resource) }
}

/// The route for `/tasks/{segment}`.
fn task_route(method: &str, segment: &str, readable: bool, query: &str, max_wait: Duration) -> Route {
    let id = if !segment.as_bytes().contains(&b'%') {
        parse_task_id(segment)
    } else {
        match percent_decode(segment) {
            None => return Route::BadTarget,
            Some(decoded) => String::from_utf8(decoded)
                .map_err(|_| ServiceError::InvalidTaskId)
                .and_then(|id| parse_task_id(&id)),
        }
    };
    task_method_route(method, id, readable, query, max_wait)
}

/// The route of `method` on `/tasks/{id}`, the id as parsed.
fn task_method_route(
    method: &str,
    id: Result<TaskId, ServiceError>,
    readable: bool,
    query: &str,
    max_wait: Duration,
) -> Route {
    match method {
        _ if readable => read_task_route(id, query, max_wait),
        "DELETE" => Route::CancelTask(id),
        _ => unanswered(method, Resource::Task),
    }
}

/// The `{id}` of a target that is `/tasks/{id}` and nothing more, `{id}`
/// in decimal digits only (no escape, no query): what nearly every request
/// for one task sends. `None` for anything else, which [`route`] reads the
/// long way.
fn plain_task_segment(target: &str) -> Option<&str> {
    let segment = target.strip_prefix("/tasks/")?;
    let digits = !segment.is_empty() && segment.bytes().all(|byte| byte.is_ascii_digit());
    digits.then_some(segment)
}

/// `GET /tasks/{id}`, at once or waiting as its query's `wait` asks; a bad
/// id is refused before a bad `wait`.
fn read_task_route(id: Result<TaskId, ServiceError>, query: &str, max_wait: Duration) -> Route {
    let id = match id {
        Ok(id) if !query.is_empty() => id,
        _ => return Route::GetTask(id),
    };
    let [wait] = query_values(query, ["wait"]);
    let Some(raw) = wait else {
        return Route::GetTask(Ok(id));
    };
    let wait = form_decode(raw)
        .ok_or(ServiceError::InvalidWait {
            max_seconds: max_wait.as_secs(),
        })
        .and_then(|raw| parse_wait(&raw, max_wait));
    match wait {
        Ok(wait) if wait.is_zero() => Route::GetTask(Ok(id)),
        Ok(wait) => Route::WaitForTask(id, wait),
        Err(refused) => Route::GetTask(Err(refused)),
    }
}

/// The page a listing's query string asks for.
fn list_query(query: &str) -> Result<PageQuery, ServiceError> {
    let [limit, after, status] = query_values(query, ["limit", "after", "status"]);
    let decoded = |value: Option<&str>, invalid: ServiceError| match value {
        None => Ok(None),
        Some(raw) => form_decode(raw).map(Some).ok_or(invalid),
    };
    let limit = decoded(limit, ServiceError::InvalidLimit)?;
    let after = decoded(after, ServiceError::InvalidAfter)?;
    let status = decoded(status, ServiceError::InvalidStatus)?;
    page_query(limit.as_deref(), after.as_deref(), status.as_deref())
}

/// The raw value of the first parameter with each of `names`, if present.
fn query_values<'q, const N: usize>(query: &'q str, names: [&str; N]) -> [Option<&'q str>; N] {
    let mut values = [None; N];
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(name) = form_decode(name) else { continue };
        if let Some(slot) = names.iter().position(|wanted| *wanted == name) {
            values[slot].get_or_insert(value);
        }
    }
    values
}

/// Decodes a query-string name or value: `+` is a space, `%XX` a byte;
/// `None` if an escape is malformed or the result is not UTF-8.
fn form_decode(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    String::from_utf8(percent_decode(&spaced)?).ok()
}

/// The path of an origin-form (`/tasks`) or absolute-form
/// (`http://host/tasks`) request target, its query already cut off.
fn path_of(path: &str) -> Option<&str> {
    if path.starts_with('/') {
        return Some(path);
    }
    let scheme_end = path.find("://")?;
    if !path[..scheme_end].eq_ignore_ascii_case("http") && !path[..scheme_end].eq_ignore_ascii_case("https") {
        return None;
    }
    let after_authority = &path[scheme_end + 3..];
    Some(after_authority.find('/').map_or("/", |slash| &after_authority[slash..]))
}

/// Decodes `%XX` escapes; `None` if an escape is malformed.
fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = hex_digit(*bytes.get(i + 1)?)?;
            let low = hex_digit(*bytes.get(i + 2)?)?;
            decoded.push(high << 4 | low);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    Some(decoded)
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_WAIT: Duration = Duration::from_secs(60);

    fn routed(method: &str, target: &str) -> Route {
        route(method, target, MAX_WAIT)
    }

    #[test]
    fn known_routes() {
        assert_eq!(routed("GET", "/healthz"), Route::Health);
        assert_eq!(routed("HEAD", "/readyz?x"), Route::Ready);
        assert_eq!(routed("POST", "/readyz"), Route::MethodNotAllowed(Resource::Ready));
        assert_eq!(routed("GET", "/healthz/"), Route::NotFound);
        assert_eq!(routed("GET", "/metrics"), Route::Metrics);
        assert_eq!(routed("HEAD", "/openapi.json"), Route::OpenApi);
        assert_eq!(routed("PUT", "/metrics"), Route::MethodNotAllowed(Resource::Metrics));
        assert_eq!(routed("GET", "/tasks"), Route::ListTasks(page_query(None, None, None)));
        assert_eq!(routed("POST", "/tasks"), Route::CreateTask);
        assert_eq!(routed("GET", "/tasks/12"), Route::GetTask(Ok(12)));
    }

    #[test]
    fn head_is_served_wherever_get_is() {
        assert_eq!(routed("HEAD", "/tasks/3"), Route::GetTask(Ok(3)));
        assert_eq!(
            routed("HEAD", "/tasks/3?wait=1"),
            Route::WaitForTask(3, Duration::from_secs(1))
        );
        assert!(matches!(routed("HEAD", "/tasks"), Route::ListTasks(Ok(_))));
    }

    #[test]
    fn the_query_string_does_not_change_the_route() {
        assert!(matches!(routed("GET", "/tasks?limit=5"), Route::ListTasks(Ok(_))));
        assert_eq!(routed("GET", "/tasks/4?x=/y"), Route::GetTask(Ok(4)));
        assert_eq!(routed("POST", "/tasks?"), Route::CreateTask);
    }

    #[test]
    fn other_methods_on_known_paths_are_not_allowed() {
        assert_eq!(routed("DELETE", "/tasks"), Route::MethodNotAllowed(Resource::Tasks));
        assert_eq!(routed("POST", "/tasks/1"), Route::MethodNotAllowed(Resource::Task));
        assert_eq!(routed("PUT", "/tasks/abc"), Route::MethodNotAllowed(Resource::Task));
        assert_eq!(routed("delete", "/tasks/1"), Route::MethodNotAllowed(Resource::Task));
        assert_eq!(routed("get", "/tasks"), Route::MethodNotAllowed(Resource::Tasks));
        assert_eq!(Resource::Tasks.allow(), "GET, HEAD, POST, OPTIONS");
        assert_eq!(Resource::Task.allow(), "GET, HEAD, DELETE, OPTIONS");
    }

    #[test]
    fn options_on_a_known_path_is_routed_to_its_resource() {
        assert_eq!(routed("OPTIONS", "/tasks?x"), Route::Options(Resource::Tasks));
        assert_eq!(routed("OPTIONS", "/tasks/abc"), Route::Options(Resource::Task));
        assert_eq!(routed("OPTIONS", "/tasks/%31"), Route::Options(Resource::Task));
        assert_eq!(routed("OPTIONS", "/metrics"), Route::Options(Resource::Metrics));
        assert_eq!(routed("OPTIONS", "/nope"), Route::NotFound);
        assert_eq!(routed("OPTIONS", "/tasks/%zz"), Route::BadTarget);
    }

    /// `Resource::allow` and `route` say the same: each method listed is
    /// routed to an answer, each other one is 405.
    #[test]
    fn every_resource_routes_exactly_the_methods_it_allows() {
        let others = [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
        ];
        for resource in Resource::ALL {
            let target = resource.label().replace("{id}", "1");
            let allowed: Vec<&str> = resource.allow().split(", ").collect();
            for method in others {
                let routed = routed(method, &target);
                assert_eq!(routed.resource(), Some(resource), "{method} {target}");
                let refused = matches!(routed, Route::MethodNotAllowed(_));
                assert_eq!(refused, !allowed.contains(&method), "{method} {target}: {routed:?}");
            }
        }
    }

    #[test]
    fn delete_cancels_a_task_by_its_id() {
        assert_eq!(routed("DELETE", "/tasks/7"), Route::CancelTask(Ok(7)));
        assert_eq!(routed("DELETE", "/tasks/%37?wait=x"), Route::CancelTask(Ok(7)));
        assert_eq!(
            routed("DELETE", "/tasks/0"),
            Route::CancelTask(Err(ServiceError::InvalidTaskId))
        );
        assert_eq!(routed("DELETE", "/tasks/%zz"), Route::BadTarget);
        assert_eq!(routed("DELETE", "/tasks/1/x"), Route::NotFound);
        assert_eq!(routed("DELETE", "/tasks/1").resource(), Some(Resource::Task));
    }

    #[test]
    fn a_wait_in_the_query_makes_the_get_wait() {
        let refused = Route::GetTask(Err(ServiceError::InvalidWait { max_seconds: 60 }));
        assert_eq!(
            routed("GET", "/tasks/4?wait=2.5"),
            Route::WaitForTask(4, Duration::from_millis(2500))
        );
        assert_eq!(
            routed("GET", "/tasks/4?x=1&wait=60&wait=nope"),
            Route::WaitForTask(4, MAX_WAIT)
        );
        assert_eq!(
            routed("GET", "/tasks/4?wait=%31e-3"),
            Route::WaitForTask(4, Duration::from_millis(1))
        );
        for target in ["/tasks/4?wait=0", "/tasks/4?wait=0.0", "/tasks/4?wait_=5", "/tasks/4?"] {
            assert_eq!(routed("GET", target), Route::GetTask(Ok(4)), "{target}");
        }
        for target in [
            "/tasks/4?wait=",
            "/tasks/4?wait",
            "/tasks/4?wait=61",
            "/tasks/4?wait=-1",
            "/tasks/4?wait=NaN",
            "/tasks/4?wait=inf",
            "/tasks/4?wait=%zz",
            "/tasks/4?wait=+1",
        ] {
            assert_eq!(routed("GET", target), refused, "{target}");
        }
        assert_eq!(
            routed("GET", "/tasks/x?wait=nope"),
            Route::GetTask(Err(ServiceError::InvalidTaskId)),
            "the id is checked first"
        );
        assert_eq!(
            route("GET", "/tasks/4?wait=1", Duration::ZERO),
            Route::GetTask(Err(ServiceError::InvalidWait { max_seconds: 0 }))
        );
        assert_eq!(routed("GET", "/tasks/4?wait=1").resource(), Some(Resource::Task));
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for target in [
            "/",
            "/task",
            "/tasks/",
            "/tasks/1/",
            "/tasks/1/x",
            "/taskss",
            "/TASKS",
            "//tasks",
        ] {
            assert_eq!(routed("GET", target), Route::NotFound, "{target}");
        }
    }

    #[test]
    fn ids_are_percent_decoded_then_validated() {
        assert_eq!(routed("GET", "/tasks/%31%32"), Route::GetTask(Ok(12)));
        assert_eq!(
            routed("GET", "/tasks/abc"),
            Route::GetTask(Err(ServiceError::InvalidTaskId))
        );
        assert_eq!(
            routed("GET", "/tasks/0"),
            Route::GetTask(Err(ServiceError::InvalidTaskId))
        );
        assert_eq!(
            routed("GET", "/tasks/%FF"),
            Route::GetTask(Err(ServiceError::InvalidTaskId))
        );
        assert_eq!(routed("GET", "/tasks/%zz"), Route::BadTarget);
        assert_eq!(routed("GET", "/tasks/1%"), Route::BadTarget);
        assert_eq!(routed("GET", "/tasks/%+1"), Route::BadTarget);
    }

    #[test]
    fn absolute_form_targets_are_routed_by_their_path() {
        assert_eq!(routed("GET", "http://example.com/tasks/5"), Route::GetTask(Ok(5)));
        assert!(matches!(
            routed("GET", "HTTP://example.com:8080/tasks?x"),
            Route::ListTasks(Ok(_))
        ));
        assert_eq!(routed("GET", "http://example.com"), Route::NotFound);
        assert_eq!(routed("GET", "ftp://example.com/tasks"), Route::BadTarget);
    }

    #[test]
    fn the_listing_reads_its_page_from_the_query_like_go() {
        let page = |target: &str| match routed("GET", target) {
            Route::ListTasks(page) => page,
            other => panic!("{target}: {other:?}"),
        };
        assert_eq!(page("/tasks"), page_query(None, None, None));
        assert_eq!(
            page("/tasks?status=done&limit=5&after=7&x=1"),
            page_query(Some("5"), Some("7"), Some("done"))
        );
        assert_eq!(page("/tasks?limit=5&limit=oops"), page_query(Some("5"), None, None));
        assert_eq!(page("/tasks?%6Cimit=%35"), page_query(Some("5"), None, None));
        assert_eq!(page("/tasks?&&limit=2&"), page_query(Some("2"), None, None));
        assert_eq!(page("/tasks?limit"), Err(ServiceError::InvalidLimit));
        assert_eq!(page("/tasks?limit=+5"), Err(ServiceError::InvalidLimit));
        assert_eq!(page("/tasks?after=%zz"), Err(ServiceError::InvalidAfter));
        assert_eq!(page("/tasks?status=%FF"), Err(ServiceError::InvalidStatus));
        assert_eq!(page("/tasks?limit=0&status=nope"), Err(ServiceError::InvalidLimit));
    }

    /// The short way for `/tasks/{id}` ([`plain_task_segment`]) routes every
    /// target it takes as the long way does.
    #[test]
    fn plain_task_ids_are_routed_as_the_long_way_routes_them() {
        let long_way = |method: &str, target: &str| {
            let readable = method == "GET" || method == "HEAD";
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            match path.strip_prefix("/tasks") {
                Some(rest) => task_routes(method, rest, readable, query, MAX_WAIT),
                None => operations_route(method, path, readable),
            }
        };
        let nineteen = "9".repeat(19);
        let eighteen = "9".repeat(18);
        let targets = [
            "/tasks/1",
            "/tasks/42",
            "/tasks/0",
            "/tasks/00",
            "/tasks/007",
            "/tasks/+1",
            "/tasks/-1",
            "/tasks/1?wait=1",
            "/tasks/1?",
            "/tasks/1/",
            "/tasks/%31",
            "/tasks/1a",
            "/tasks/",
            "/tasks",
            &format!("/tasks/{eighteen}"),
            &format!("/tasks/{nineteen}"),
            "/tasks/9223372036854775807",
            "/tasks/9223372036854775808",
        ];
        for target in targets {
            for method in ["GET", "HEAD", "DELETE", "POST", "OPTIONS", "get"] {
                assert_eq!(routed(method, target), long_way(method, target), "{method} {target}");
            }
        }
        assert_eq!(plain_task_segment("/tasks/007"), Some("007"));
        for target in ["/tasks/+1", "/tasks/1?", "/tasks/", "/tasks/1a", "/tasks/%31"] {
            assert_eq!(plain_task_segment(target), None, "{target}");
        }
    }

    #[test]
    fn other_target_forms_are_bad() {
        assert_eq!(routed("OPTIONS", "*"), Route::BadTarget);
        assert_eq!(routed("GET", "tasks"), Route::BadTarget);
    }
}
