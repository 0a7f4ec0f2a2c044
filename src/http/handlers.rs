//! Turns a route into an answer: calls the service and writes the status,
//! headers and JSON body into the server's [`Response`]. Every error body
//! is `{"error":"..."}`.

use std::time::Duration;

use bytes::BufMut;
use serde::Serialize;

use crate::domain::{Task, TaskId};
use crate::http::router::Route;
use crate::http::{Api, metrics, openapi};
use crate::server::{Request, Response};
use crate::service::{Created, NEW_TASK_SHAPE, NewTask, ServiceError, TaskService};
use crate::store::PageQuery;

/// Answers `request`, routed to `route`, with what `api` reaches. Inlined
/// into its one caller, `Api::handle`: the call cost 20 instructions per
/// request.
///
/// The handlers with large frames (`list_tasks`, `create_task`, the waits
/// and the metrics page) are kept out of line: inlined, their frames became
/// `Api::handle`'s, 896 bytes, which every request then pushed. A keep-alive
/// connection's stack stays resident by the page while it waits, and with
/// them `GET /tasks/{id}` went 104 bytes into a second page: each idle
/// connection held 12 KiB instead of 8 (`tests/idle_memory.rs`).
#[inline(always)]
pub(crate) fn answer(api: &Api, route: &Route, request: &Request<'_>, reply: &mut Response) {
    let service = &*api.service;
    match route {
        Route::ListTasks(Ok(page)) => list_tasks(service, page, request, reply),
        Route::ListTasks(Err(refused)) => service_error(reply, *refused),
        Route::CreateTask => create_task(service, request.body(), reply),
        Route::GetTask(Ok(id)) => get_task(service, *id, reply),
        Route::GetTask(Err(refused)) => service_error(reply, *refused),
        Route::WaitForTask(id, wait) => wait_for_task(service, *id, *wait, reply),
        Route::CancelTask(Ok(id)) => cancel_task(service, *id, reply),
        Route::CancelTask(Err(refused)) => service_error(reply, *refused),
        Route::Health => status(reply, "ok"),
        Route::Ready if service.is_accepting() => status(reply, "ready"),
        Route::Ready => error(reply, 503, "shutting down"),
        Route::OpenApi => {
            json_header(reply);
            reply.body_mut().extend_from_slice(openapi::DOCUMENT.as_bytes());
        }
        Route::Metrics => metrics::answer(api, reply),
        Route::NotFound => error(reply, 404, "not found"),
        Route::Options(resource) => {
            reply.set_status(204);
            reply.header("Allow", resource.allow());
        }
        Route::MethodNotAllowed(resource) => {
            reply.header("Allow", resource.allow());
            error(reply, 405, "method not allowed");
        }
        Route::BadTarget => error(reply, 400, "invalid request target"),
    }
}

#[inline(never)] // a large frame, kept out of every request's: see `answer`
fn list_tasks(service: &TaskService, page: &PageQuery, request: &Request<'_>, reply: &mut Response) {
    json_header(reply);
    let out = reply.body_mut();
    out.put_u8(b'[');
    let mut separator: &[u8] = b"";
    let next = service.list(page, |id, task| {
        out.put_slice(separator);
        separator = b",";
        task.write_summary_json(id, out);
        out.len() < MAX_PAGE_BYTES
    });
    out.put_slice(b"]\n");
    if let Some(after) = next {
        let prefix = request.header("X-Forwarded-Prefix").and_then(forwarded_prefix);
        reply.header("Link", &next_page_link(prefix.unwrap_or(""), page, after));
    }
}

/// Past this many bytes of body a page ends, with a link to the rest,
/// whatever its `limit`: 10,000 tasks with the longest titles allowed would
/// otherwise make one answer of hundreds of megabytes.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The RFC 8288 `Link` header value pointing at the page after `after`,
/// under the path `prefix` the client reaches the API by.
fn next_page_link(prefix: &str, page: &PageQuery, after: TaskId) -> String {
    let status = page.status.map_or(String::new(), |status| format!("&status={status}"));
    format!(
        "<{prefix}/tasks?after={after}&limit={}{status}>; rel=\"next\"",
        page.limit
    )
}

/// Longest `X-Forwarded-Prefix` honoured.
const MAX_PREFIX_BYTES: usize = 256;

/// The path prefix a reverse proxy serves the API under, from its
/// `X-Forwarded-Prefix: /api` header, without a trailing `/`; `None` unless
/// it is well-formed: it starts with `/`, and its segments are not empty,
/// `.` or `..`, and hold only unreserved characters (RFC 3986), so that a
/// link built on it stays a path on this host (`//host` would not).
fn forwarded_prefix(raw: &[u8]) -> Option<&str> {
    let prefix = raw.strip_suffix(b"/").unwrap_or(raw);
    let unreserved = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
    let segment_ok = |segment: &[u8]| {
        !segment.is_empty()
            && segment.iter().all(unreserved)
            && segment != b"."
            && !segment.windows(2).any(|pair| pair == b"..")
    };
    let well_formed = raw.len() <= MAX_PREFIX_BYTES
        && raw.starts_with(b"/")
        && prefix.split(|&byte| byte == b'/').skip(1).all(segment_ok);
    well_formed.then(|| std::str::from_utf8(prefix).ok()).flatten()
}

fn get_task(service: &TaskService, id: TaskId, reply: &mut Response) {
    let found = service.find(id, |task| write_task(reply, id, task));
    if let Err(refused) = found {
        service_error(reply, refused);
    }
}

/// Answers once the task has finished or `wait` has passed: parks this
/// connection's coroutine meanwhile (requests pipelined behind it wait
/// their turn, as HTTP/1.1 answers in order).
#[inline(never)] // a large frame, kept out of every request's: see `answer`
fn wait_for_task(service: &TaskService, id: TaskId, wait: Duration, reply: &mut Response) {
    reply.set_delayed();
    let found = service.find_when_finished(id, wait, |task| write_task(reply, id, task));
    if let Err(refused) = found {
        service_error(reply, refused);
    }
}

#[inline(never)] // a large frame, kept out of every request's: see `answer`
fn cancel_task(service: &TaskService, id: TaskId, reply: &mut Response) {
    let canceled = service.cancel(id, |task| write_task(reply, id, task));
    if let Err(refused) = canceled {
        service_error(reply, refused);
    }
}

#[inline(never)] // a large frame, kept out of every request's: see `answer`
fn create_task(service: &TaskService, body: &[u8], reply: &mut Response) {
    if body.trim_ascii().is_empty() {
        return error(
            reply,
            400,
            "request body is empty: expected a JSON object with a \"title\"",
        );
    }
    let input = match decode_new_task(body) {
        Ok(input) => input,
        Err(message) => return error(reply, 400, &message),
    };
    let (status, id, task) = match service.create(input) {
        Ok(Created::Queued(id, task)) => (201, id, task),
        Ok(Created::Rejected(id, task)) => (503, id, task),
        Err(refused) => return service_error(reply, refused),
    };
    reply.set_status(status);
    write_task(reply, id, &task);
}

/// Writes `task` as the JSON body.
fn write_task(reply: &mut Response, id: TaskId, task: &Task) {
    json_header(reply);
    let out = reply.body_mut();
    task.write_json(id, out);
    out.put_u8(b'\n');
}

/// Decodes the body of `POST /tasks`. Only an object is accepted: serde
/// would also take a JSON array as the struct's fields in order.
fn decode_new_task(body: &[u8]) -> Result<NewTask<'_>, String> {
    if body.trim_ascii_start().first() == Some(&b'[') {
        return Err(format!(
            "invalid JSON body: invalid type: array, expected {NEW_TASK_SHAPE}"
        ));
    }
    serde_json::from_slice(body).map_err(|err| format!("invalid JSON body: {err}"))
}

fn service_error(reply: &mut Response, refused: ServiceError) {
    let code = match refused {
        ServiceError::InvalidInput
        | ServiceError::InvalidTaskId
        | ServiceError::InvalidLimit
        | ServiceError::InvalidAfter
        | ServiceError::InvalidStatus
        | ServiceError::InvalidWait { .. } => 400,
        ServiceError::TaskNotFound => 404,
        ServiceError::TaskFinished => 409,
        ServiceError::TaskExpired => 410,
    };
    error(reply, code, &refused.message());
}

/// Writes a 200 `{"status": word}` answer.
fn status(reply: &mut Response, word: &str) {
    json_header(reply);
    write_json(reply.body_mut(), &StatusBody { status: word });
}

fn json_header(reply: &mut Response) {
    reply.set_content_type("application/json");
}

#[derive(Serialize)]
struct StatusBody<'a> {
    status: &'a str,
}

/// Writes a `{"error": message}` answer.
fn error(reply: &mut Response, code: u16, message: &str) {
    reply.set_status(code);
    json_header(reply);
    write_json(reply.body_mut(), &ErrorBody { error: message });
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// Serialises `value` followed by a newline, as Go's `json.Encoder` does.
fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(out.writer(), value).expect("serialising to memory cannot fail");
    out.put_u8(b'\n');
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::WorkRange;
    use crate::http::Resource;
    use crate::pool::TaskQueue;
    use crate::pool::WorkerGauge;
    use crate::server::{ConnectionGauge, Handler};
    use crate::service::page_query;
    use crate::store::TaskStore;

    fn json_of(reply: &Response) -> serde_json::Value {
        assert_eq!(reply.body().last(), Some(&b'\n'));
        serde_json::from_slice(reply.body()).unwrap()
    }

    fn api_over(service: TaskService) -> Api {
        Api::new(Arc::new(service), WorkerGauge::default(), ConnectionGauge::default())
    }

    /// An API over an empty store, with a queue of `pool_size` that no
    /// worker drains.
    pub(crate) fn test_api(pool_size: usize) -> Api {
        service(pool_size)
    }

    fn service(pool_size: usize) -> Api {
        let work = WorkRange { min_ms: 1, max_ms: 1 };
        api_over(TaskService::new(
            Arc::new(TaskStore::new()),
            Arc::new(TaskQueue::new(pool_size)),
            work,
            Duration::from_secs(60),
        ))
    }

    fn call(api: &Api, route: Route, body: &str) -> Response {
        let mut reply = Response::default();
        answer(api, &route, &Request::new("GET", "/", &[], body.as_bytes()), &mut reply);
        assert_eq!(reply.header_value("Content-Type"), Some("application/json"));
        reply
    }

    #[test]
    fn create_then_get_then_list() {
        let service = service(4);
        let created = call(&service, Route::CreateTask, r#"{"title":" a ","description":"b"}"#);
        assert_eq!(created.status(), 201);
        assert_eq!(
            json_of(&created),
            serde_json::json!({"id":1,"title":"a","description":"b","status":"pending"})
        );
        let got = call(&service, Route::GetTask(Ok(1)), "");
        assert_eq!((got.status(), json_of(&got)), (200, json_of(&created)));
        let listed = call(&service, Route::ListTasks(page_query(None, None, None)), "");
        assert_eq!(
            json_of(&listed),
            serde_json::json!([{"id":1,"title":"a","status":"pending"}])
        );
    }

    #[test]
    fn a_page_links_to_the_next_while_tasks_remain() {
        let service = service(10);
        for _ in 0..5 {
            call(&service, Route::CreateTask, r#"{"title":"t"}"#);
        }
        let first = call(&service, Route::ListTasks(page_query(Some("2"), None, None)), "");
        assert_eq!(json_of(&first).as_array().map(Vec::len), Some(2));
        assert_eq!(
            first.header_value("Link"),
            Some("</tasks?after=2&limit=2>; rel=\"next\"")
        );
        let pending = page_query(Some("3"), Some("2"), Some("pending"));
        let last = call(&service, Route::ListTasks(pending), "");
        assert_eq!(json_of(&last)[0]["id"], 3);
        assert_eq!(last.header_value("Link"), None);
        let filtered = call(
            &service,
            Route::ListTasks(page_query(Some("1"), None, Some("pending"))),
            "",
        );
        assert_eq!(
            filtered.header_value("Link"),
            Some("</tasks?after=1&limit=1&status=pending>; rel=\"next\"")
        );
    }

    #[test]
    fn overflow_is_503_with_the_failed_task() {
        let service = service(1);
        call(&service, Route::CreateTask, r#"{"title":"a"}"#);
        let refused = call(&service, Route::CreateTask, r#"{"title":"b"}"#);
        assert_eq!(refused.status(), 503);
        assert_eq!(
            json_of(&refused),
            serde_json::json!({"id":2,"title":"b","description":"","status":"failed","error":"task pool is full"})
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let service = service(1);
        for (body, expected) in [
            ("", "request body is empty"),
            ("{", "invalid JSON body: EOF while parsing"),
            ("[1]", "invalid JSON body: invalid type: array, expected a JSON object"),
            (
                r#" ["a"]"#,
                "invalid JSON body: invalid type: array, expected a JSON object",
            ),
            (
                r#""a""#,
                r#"invalid JSON body: invalid type: string "a", expected a JSON object"#,
            ),
            ("nul", "invalid JSON body: EOF while parsing a value"),
            ("nope", "invalid JSON body: expected ident"),
            (
                r#"{"title":5}"#,
                "invalid JSON body: invalid type: integer `5`, expected a string",
            ),
            (r#"{"title":"a"} x"#, "invalid JSON body: trailing characters"),
            (
                r#"{"title":"a","title":"b"}"#,
                "invalid JSON body: duplicate field `title`",
            ),
        ] {
            let reply = call(&service, Route::CreateTask, body);
            assert_eq!(reply.status(), 400, "{body}");
            let message = json_of(&reply)["error"].as_str().unwrap().to_owned();
            assert!(message.starts_with(expected), "{body}: {message}");
        }
        for body in [r#"{}"#, r#"{"title":"  "}"#, r#"{"title":null}"#] {
            let reply = call(&service, Route::CreateTask, body);
            assert_eq!(
                (reply.status(), json_of(&reply)),
                (400, serde_json::json!({"error":"invalid input"}))
            );
        }
    }

    #[test]
    fn escaped_text_is_decoded_and_served_back_escaped() {
        let service = service(4);
        let created = call(
            &service,
            Route::CreateTask,
            r#"{"title":"a\"b\u00e9","description":"1\\2\n"}"#,
        );
        assert_eq!(created.status(), 201);
        assert_eq!(json_of(&created)["title"], serde_json::json!("a\"bé"));
        assert_eq!(json_of(&created)["description"], serde_json::json!("1\\2"));
    }

    #[test]
    fn health_is_ok_and_readiness_ends_with_the_pool() {
        let queue = Arc::new(TaskQueue::new(1));
        let work = WorkRange { min_ms: 1, max_ms: 1 };
        let service = api_over(TaskService::new(
            Arc::new(TaskStore::new()),
            queue.clone(),
            work,
            Duration::from_secs(60),
        ));
        let health = call(&service, Route::Health, "");
        assert_eq!(
            (health.status(), json_of(&health)),
            (200, serde_json::json!({"status": "ok"}))
        );
        let ready = call(&service, Route::Ready, "");
        assert_eq!(
            (ready.status(), json_of(&ready)),
            (200, serde_json::json!({"status": "ready"}))
        );
        crate::pool::WorkerPool::start(1, queue, Arc::new(|_, _| {}))
            .unwrap()
            .close();
        let closing = call(&service, Route::Ready, "");
        assert_eq!(
            (closing.status(), json_of(&closing)),
            (503, serde_json::json!({"error": "shutting down"}))
        );
        assert_eq!(call(&service, Route::Health, "").status(), 200);
    }

    #[test]
    fn unknown_fields_are_ignored_like_go() {
        let reply = call(&service(1), Route::CreateTask, r#"{"title":"a","extra":[1,{"b":2}]}"#);
        assert_eq!(reply.status(), 201);
    }

    #[test]
    fn routing_errors_are_json() {
        let service = service(1);
        let cases = [
            (Route::GetTask(Ok(9)), 404, "task not found"),
            (Route::GetTask(Err(ServiceError::InvalidTaskId)), 400, "invalid task id"),
            (
                Route::ListTasks(Err(ServiceError::InvalidStatus)),
                400,
                &ServiceError::InvalidStatus.message(),
            ),
            (
                Route::GetTask(Err(ServiceError::InvalidWait { max_seconds: 60 })),
                400,
                "invalid wait: expected a decimal number of seconds from 0 to 60",
            ),
            (Route::CancelTask(Ok(9)), 404, "task not found"),
            (
                Route::CancelTask(Err(ServiceError::InvalidTaskId)),
                400,
                "invalid task id",
            ),
            (Route::WaitForTask(9, Duration::from_secs(30)), 404, "task not found"),
            (Route::NotFound, 404, "not found"),
            (Route::BadTarget, 400, "invalid request target"),
            (Route::MethodNotAllowed(Resource::Task), 405, "method not allowed"),
        ];
        for (route, code, message) in cases {
            let reply = call(&service, route.clone(), "");
            assert_eq!(
                (reply.status(), json_of(&reply)),
                (code, serde_json::json!({ "error": message })),
                "{route:?}"
            );
        }
        let reply = call(&service, Route::MethodNotAllowed(Resource::Task), "");
        assert_eq!(reply.header_value("Allow"), Some(Resource::Task.allow()));
    }

    /// Lists page one of `limit=2` over 3 tasks through `Api::handle`, with
    /// `headers`; its `Link`.
    fn first_page_link(headers: &[httparse::Header<'_>]) -> Option<String> {
        let api = service(10);
        for _ in 0..3 {
            call(&api, Route::CreateTask, r#"{"title":"t"}"#);
        }
        let mut reply = Response::default();
        api.handle(&Request::new("GET", "/tasks?limit=2", headers, b""), &mut reply);
        reply.header_value("Link").map(str::to_owned)
    }

    #[test]
    fn the_link_keeps_a_well_formed_forwarded_prefix() {
        let link = |prefix: &str| {
            let header = httparse::Header {
                name: "x-forwarded-prefix",
                value: prefix.as_bytes(),
            };
            first_page_link(&[header]).expect("a Link")
        };
        assert_eq!(
            first_page_link(&[]).as_deref(),
            Some("</tasks?after=2&limit=2>; rel=\"next\"")
        );
        for (prefix, target) in [
            ("/api", "/api/tasks"),
            ("/api/", "/api/tasks"),
            ("/a-b/v1.2/_x~", "/a-b/v1.2/_x~/tasks"),
            ("/", "/tasks"),
        ] {
            assert_eq!(
                link(prefix),
                format!("<{target}?after=2&limit=2>; rel=\"next\""),
                "{prefix}"
            );
        }
        let too_long = format!("/{}", "a".repeat(MAX_PREFIX_BYTES));
        for prefix in [
            "",
            "api",
            "//evil.example",
            "/api//x",
            "/../x",
            "/a/..",
            "/a..b",
            "/.",
            "/a?b",
            "/a#b",
            "/a%2e",
            "/a b",
            "/é",
            "http://evil.example/",
            &too_long,
        ] {
            assert_eq!(link(prefix), "</tasks?after=2&limit=2>; rel=\"next\"", "{prefix:?}");
        }
    }

    #[test]
    fn delete_cancels_then_is_409_and_get_shows_canceled() {
        let service = service(4);
        call(&service, Route::CreateTask, r#"{"title":"t"}"#);
        let canceled = call(&service, Route::CancelTask(Ok(1)), "");
        assert_eq!(
            (canceled.status(), json_of(&canceled)),
            (
                200,
                serde_json::json!({"id":1,"title":"t","description":"","status":"canceled"})
            )
        );
        let again = call(&service, Route::CancelTask(Ok(1)), "");
        assert_eq!(
            (again.status(), json_of(&again)),
            (409, serde_json::json!({"error":"task already finished"}))
        );
        let waited = call(&service, Route::WaitForTask(1, Duration::from_secs(30)), "");
        assert_eq!(
            (waited.status(), json_of(&waited)["status"].clone()),
            (200, "canceled".into())
        );
        let listed = call(&service, Route::ListTasks(page_query(None, None, Some("canceled"))), "");
        assert_eq!(
            json_of(&listed),
            serde_json::json!([{"id":1,"title":"t","status":"canceled"}])
        );
    }
}
