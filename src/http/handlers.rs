//! Turns a route into an answer: calls the service and writes the status,
//! headers and JSON body. Every error body is `{"error":"..."}`.
//!
//! Handlers write through [`Reply`], so they run the same against the
//! library's `Response` and against a plain buffer in tests and benchmarks.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::domain::{Task, TaskId};
use crate::http::openapi;
use crate::http::router::Route;
use crate::service::{Created, NEW_TASK_SHAPE, NewTask, ServiceError, TaskService};
use crate::store::PageQuery;

/// Where a handler writes its answer.
pub trait Reply {
    /// Sets the status code and reason phrase (200 is the default).
    fn status(&mut self, code: u16, reason: &'static str);
    /// Adds a fixed header line such as `"Allow: GET"`.
    fn header(&mut self, line: &'static str);
    /// Adds a header line built for this answer, such as a `Link`.
    fn header_built(&mut self, line: String);
    /// The body, to serialise into.
    fn body(&mut self) -> &mut BytesMut;
}

/// An answer kept in memory: for answering without a socket, as the tests
/// and the micro-benchmarks do.
#[derive(Debug)]
pub struct BufferedReply {
    /// The status code (200 until a handler sets another).
    pub code: u16,
    /// The header lines added, in order.
    pub headers: Vec<Cow<'static, str>>,
    /// The body.
    pub body: BytesMut,
}

impl Default for BufferedReply {
    fn default() -> Self {
        Self {
            code: 200,
            headers: Vec::new(),
            body: BytesMut::new(),
        }
    }
}

impl BufferedReply {
    /// Empties it for the next answer, keeping its buffers.
    pub fn clear(&mut self) {
        self.code = 200;
        self.headers.clear();
        self.body.clear();
    }

    /// Whether the answer has this header line.
    pub fn has_header(&self, line: &str) -> bool {
        self.headers.iter().any(|header| header == line)
    }
}

impl Reply for BufferedReply {
    fn status(&mut self, code: u16, _reason: &'static str) {
        self.code = code;
    }

    fn header(&mut self, line: &'static str) {
        self.headers.push(line.into());
    }

    fn header_built(&mut self, line: String) {
        self.headers.push(line.into());
    }

    fn body(&mut self) -> &mut BytesMut {
        &mut self.body
    }
}

const JSON: &str = "Content-Type: application/json";

/// Answers `route`; `body` is the request body (empty when there is none).
pub fn answer(service: &TaskService, route: &Route, body: &[u8], reply: &mut impl Reply) {
    match route {
        Route::ListTasks(Ok(page)) => list_tasks(service, page, reply),
        Route::ListTasks(Err(refused)) => service_error(reply, *refused),
        Route::CreateTask => create_task(service, body, reply),
        Route::GetTask(Ok(id)) => get_task(service, *id, reply),
        Route::GetTask(Err(refused)) => service_error(reply, *refused),
        Route::Health => status(reply, "ok"),
        Route::Ready if service.is_accepting() => status(reply, "ready"),
        Route::Ready => error(reply, 503, "Service Unavailable", "shutting down"),
        Route::OpenApi => {
            reply.header(JSON);
            reply.body().extend_from_slice(openapi::DOCUMENT.as_bytes());
        }
        // The page needs the connection-wide counts, so the connection
        // answers it with `http::metrics::answer` and never sends it here.
        Route::Metrics => error(
            reply,
            500,
            "Internal Server Error",
            "metrics are answered by the connection",
        ),
        Route::NotFound => error(reply, 404, "Not Found", "not found"),
        Route::MethodNotAllowed(allow) => {
            reply.header(allow);
            error(reply, 405, "Method Not Allowed", "method not allowed");
        }
        Route::BadTarget => error(reply, 400, "Bad Request", "invalid request target"),
    }
}

fn list_tasks(service: &TaskService, page: &PageQuery, reply: &mut impl Reply) {
    reply.header(JSON);
    let out = reply.body();
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
        reply.header_built(next_page_link(page, after));
    }
}

/// Past this many bytes of body a page ends, with a link to the rest,
/// whatever its `limit`: 10,000 tasks with the longest titles allowed would
/// otherwise make one answer of hundreds of megabytes.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The RFC 8288 `Link` header line pointing at the page after `after`.
fn next_page_link(page: &PageQuery, after: TaskId) -> String {
    let status = page.status.map_or(String::new(), |status| format!("&status={status}"));
    format!(
        "Link: </tasks?after={after}&limit={}{status}>; rel=\"next\"",
        page.limit
    )
}

fn get_task(service: &TaskService, id: TaskId, reply: &mut impl Reply) {
    let found = service.find(id, |task| write_task(reply, id, task));
    if let Err(refused) = found {
        service_error(reply, refused);
    }
}

fn create_task(service: &TaskService, body: &[u8], reply: &mut impl Reply) {
    if body.trim_ascii().is_empty() {
        return error(
            reply,
            400,
            "Bad Request",
            "request body is empty: expected a JSON object with a \"title\"",
        );
    }
    let input = match decode_new_task(body) {
        Ok(input) => input,
        Err(message) => return error(reply, 400, "Bad Request", &message),
    };
    let (status, id, task) = match service.create(input) {
        Ok(Created::Queued(id, task)) => ((201, "Created"), id, task),
        Ok(Created::Rejected(id, task)) => ((503, "Service Unavailable"), id, task),
        Err(refused) => return service_error(reply, refused),
    };
    reply.status(status.0, status.1);
    write_task(reply, id, &task);
}

/// Writes `task` as the JSON body.
fn write_task(reply: &mut impl Reply, id: TaskId, task: &Task) {
    reply.header(JSON);
    let out = reply.body();
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

fn service_error(reply: &mut impl Reply, refused: ServiceError) {
    let (code, reason) = match refused {
        ServiceError::InvalidInput
        | ServiceError::InvalidTaskId
        | ServiceError::InvalidLimit
        | ServiceError::InvalidAfter
        | ServiceError::InvalidStatus => (400, "Bad Request"),
        ServiceError::TaskNotFound => (404, "Not Found"),
        ServiceError::TaskExpired => (410, "Gone"),
    };
    error(reply, code, reason, refused.message());
}

/// Writes a 200 `{"status": word}` answer.
fn status(reply: &mut impl Reply, word: &str) {
    reply.header(JSON);
    write_json(reply.body(), &StatusBody { status: word });
}

#[derive(Serialize)]
struct StatusBody<'a> {
    status: &'a str,
}

/// Writes a `{"error": message}` answer.
pub fn error(reply: &mut impl Reply, code: u16, reason: &'static str, message: &str) {
    reply.status(code, reason);
    reply.header(JSON);
    write_json(reply.body(), &ErrorBody { error: message });
}

/// A complete error answer that announces the connection's close, for
/// writing straight to a socket outside the library's response path.
pub fn closing_answer((code, reason): (u16, &str), message: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    write_json(&mut body, &ErrorBody { error: message });
    let mut answer = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// Serialises `value` followed by a newline, as Go's `json.Encoder` does.
fn write_json(out: &mut BytesMut, value: &impl Serialize) {
    serde_json::to_writer(out.writer(), value).expect("serialising to memory cannot fail");
    out.put_u8(b'\n');
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::WorkRange;
    use crate::pool::TaskQueue;
    use crate::service::page_query;
    use crate::store::TaskStore;

    fn json_of(reply: &BufferedReply) -> serde_json::Value {
        assert_eq!(reply.body.last(), Some(&b'\n'));
        serde_json::from_slice(&reply.body).unwrap()
    }

    fn service(pool_size: usize) -> TaskService {
        let work = WorkRange { min_ms: 1, max_ms: 1 };
        TaskService::new(Arc::new(TaskStore::new()), Arc::new(TaskQueue::new(pool_size)), work)
    }

    fn call(service: &TaskService, route: Route, body: &str) -> BufferedReply {
        let mut reply = BufferedReply::default();
        answer(service, &route, body.as_bytes(), &mut reply);
        assert!(reply.has_header(JSON));
        reply
    }

    #[test]
    fn create_then_get_then_list() {
        let service = service(4);
        let created = call(&service, Route::CreateTask, r#"{"title":" a ","description":"b"}"#);
        assert_eq!(created.code, 201);
        assert_eq!(
            json_of(&created),
            serde_json::json!({"id":1,"title":"a","description":"b","status":"pending"})
        );
        let got = call(&service, Route::GetTask(Ok(1)), "");
        assert_eq!((got.code, json_of(&got)), (200, json_of(&created)));
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
        assert!(first.has_header("Link: </tasks?after=2&limit=2>; rel=\"next\""));
        let pending = page_query(Some("3"), Some("2"), Some("pending"));
        let last = call(&service, Route::ListTasks(pending), "");
        assert_eq!(json_of(&last)[0]["id"], 3);
        assert!(!last.headers.iter().any(|line| line.starts_with("Link")));
        let filtered = call(
            &service,
            Route::ListTasks(page_query(Some("1"), None, Some("pending"))),
            "",
        );
        assert!(filtered.has_header("Link: </tasks?after=1&limit=1&status=pending>; rel=\"next\""));
    }

    #[test]
    fn overflow_is_503_with_the_failed_task() {
        let service = service(1);
        call(&service, Route::CreateTask, r#"{"title":"a"}"#);
        let refused = call(&service, Route::CreateTask, r#"{"title":"b"}"#);
        assert_eq!(refused.code, 503);
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
            assert_eq!(reply.code, 400, "{body}");
            let message = json_of(&reply)["error"].as_str().unwrap().to_owned();
            assert!(message.starts_with(expected), "{body}: {message}");
        }
        for body in [r#"{}"#, r#"{"title":"  "}"#, r#"{"title":null}"#] {
            let reply = call(&service, Route::CreateTask, body);
            assert_eq!(
                (reply.code, json_of(&reply)),
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
        assert_eq!(created.code, 201);
        assert_eq!(json_of(&created)["title"], serde_json::json!("a\"bé"));
        assert_eq!(json_of(&created)["description"], serde_json::json!("1\\2"));
    }

    #[test]
    fn health_is_ok_and_readiness_ends_with_the_pool() {
        let queue = Arc::new(TaskQueue::new(1));
        let work = WorkRange { min_ms: 1, max_ms: 1 };
        let service = TaskService::new(Arc::new(TaskStore::new()), queue.clone(), work);
        let health = call(&service, Route::Health, "");
        assert_eq!(
            (health.code, json_of(&health)),
            (200, serde_json::json!({"status": "ok"}))
        );
        let ready = call(&service, Route::Ready, "");
        assert_eq!(
            (ready.code, json_of(&ready)),
            (200, serde_json::json!({"status": "ready"}))
        );
        crate::pool::WorkerPool::start(1, queue, Arc::new(|_, _| {}))
            .unwrap()
            .close();
        let closing = call(&service, Route::Ready, "");
        assert_eq!(
            (closing.code, json_of(&closing)),
            (503, serde_json::json!({"error": "shutting down"}))
        );
        assert_eq!(call(&service, Route::Health, "").code, 200);
    }

    #[test]
    fn unknown_fields_are_ignored_like_go() {
        let reply = call(&service(1), Route::CreateTask, r#"{"title":"a","extra":[1,{"b":2}]}"#);
        assert_eq!(reply.code, 201);
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
                ServiceError::InvalidStatus.message(),
            ),
            (Route::NotFound, 404, "not found"),
            (Route::BadTarget, 400, "invalid request target"),
            (Route::MethodNotAllowed("Allow: GET, HEAD"), 405, "method not allowed"),
        ];
        for (route, code, message) in cases {
            let reply = call(&service, route.clone(), "");
            assert_eq!(
                (reply.code, json_of(&reply)),
                (code, serde_json::json!({ "error": message })),
                "{route:?}"
            );
        }
        let reply = call(&service, Route::MethodNotAllowed("Allow: GET, HEAD"), "");
        assert!(reply.has_header("Allow: GET, HEAD"));
    }

    #[test]
    fn closing_answers_are_complete_http_messages() {
        let answer = closing_answer((413, "Content Too Large"), "a \"quoted\" word");
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("HTTP/1.1 413 Content Too Large"));
        let headers: Vec<&str> = lines.collect();
        assert!(headers.contains(&"Connection: close"));
        assert!(headers.contains(&format!("Content-Length: {}", body.len()).as_str()));
        let value: serde_json::Value = serde_json::from_slice(body.as_bytes()).unwrap();
        assert_eq!(value, serde_json::json!({"error": "a \"quoted\" word"}));
    }
}
