//! A request answered without a socket. Two layers:
//! - the API alone (`worker_pool::http::Api` as the server's `Handler`):
//!   routing and the handler writing status, headers and JSON body into a
//!   `Response`; this is the server's own work per request;
//! - the whole connection loop (`worker_pool::server::serve_in_memory`):
//!   framing, the handler, encoding; one connection whose client sends 16
//!   pipelined requests in one read, as the load benchmark's scenario b.
//!
//! Cases follow the load scenarios:
//! - `get_task`: `GET /tasks/1`, found (scenario a);
//! - `get_task_404`: `GET /tasks/999999`, not found;
//! - `post_task_503`: `POST /tasks` with `{"title":"bench","description":"d"}`
//!   under the default config's overflow (scenario c): the queue (room for
//!   one id here) is full and nothing drains it, so the task is stored as
//!   failed and answered 503. Each task stays stored, so every sample gets a
//!   fresh service, built outside the timing;
//! - `list_100_tasks`: `GET /tasks` with 100 tasks stored (scenario e);
//! - `connection_16_get_task`: the connection loop over 16 pipelined
//!   `GET /tasks/1` (scenario b), per connection.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use httparse::Header;
use worker_pool::config::WorkRange;
use worker_pool::domain::Task;
use worker_pool::http::Api;
use worker_pool::pool::{TaskQueue, WorkerGauge};
use worker_pool::server::{ConnectionGauge, Handler, Limits, Request, Response, serve_in_memory};
use worker_pool::service::TaskService;
use worker_pool::store::TaskStore;

mod common;

/// The default config's work range, 1 to 5 s.
const WORK: WorkRange = WorkRange {
    min_ms: 1000,
    max_ms: 5000,
};

/// The default config's `MAX_WAIT`.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The headers of a wrk request.
const WRK_HEADERS: [Header<'static>; 1] = [Header {
    name: "Host",
    value: b"127.0.0.1:8080",
}];

fn serve(api: &Api, method: &str, target: &str, body: &[u8], reply: &mut Response) {
    reply.clear();
    let request = Request::new(black_box(method), black_box(target), &WRK_HEADERS, black_box(body));
    api.handle(&request, reply);
    black_box(&*reply);
}

fn api_over(service: TaskService) -> Api {
    Api::new(Arc::new(service), WorkerGauge::default(), ConnectionGauge::default())
}

/// An API with `tasks` tasks stored and a queue with room to spare.
fn api_with(tasks: usize) -> Api {
    let store = Arc::new(TaskStore::new());
    for _ in 0..tasks {
        store.insert(Task::new("t", "", Duration::from_secs(3)));
    }
    api_over(TaskService::new(store, Arc::new(TaskQueue::new(10)), WORK, MAX_WAIT))
}

/// An API whose one-id queue is already full, as under overload.
fn overflowing_api() -> Api {
    let api = api_over(TaskService::new(
        Arc::new(TaskStore::new()),
        Arc::new(TaskQueue::new(1)),
        WORK,
        MAX_WAIT,
    ));
    let mut reply = Response::default();
    serve(&api, "POST", "/tasks", br#"{"title":"first"}"#, &mut reply);
    assert_eq!(reply.status(), 201, "the first task fills the queue");
    api
}

/// Checks the answer once, then measures it.
fn bench_request(c: &mut Criterion, name: &str, api: &Api, target: &str, code: u16) {
    let mut reply = Response::default();
    serve(api, "GET", target, b"", &mut reply);
    assert_eq!(reply.status(), code, "GET {target}");
    c.bench_function(name, |b| b.iter(|| serve(api, "GET", target, b"", &mut reply)));
}

fn get(c: &mut Criterion) {
    let api = api_with(1);
    bench_request(c, "http/get_task", &api, "/tasks/1", 200);
    bench_request(c, "http/get_task_404", &api, "/tasks/999999", 404);
}

fn list(c: &mut Criterion) {
    let api = api_with(100);
    bench_request(c, "http/list_100_tasks", &api, "/tasks", 200);
}

fn post_overflow(c: &mut Criterion) {
    const BODY: &[u8] = br#"{"title":"bench","description":"d"}"#;
    let mut reply = Response::default();
    serve(&overflowing_api(), "POST", "/tasks", BODY, &mut reply);
    assert_eq!(reply.status(), 503, "a full queue refuses the task");
    c.bench_function("http/post_task_503", |b| {
        b.iter_custom(|iters| {
            let api = overflowing_api();
            let start = Instant::now();
            for _ in 0..iters {
                serve(&api, "POST", "/tasks", BODY, &mut reply);
            }
            start.elapsed()
        })
    });
}

fn connection(c: &mut Criterion) {
    let api: Arc<dyn Handler> = Arc::new(api_with(1));
    let batch = b"GET /tasks/1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".repeat(16);
    let answers = serve_in_memory(api.clone(), Limits::default(), vec![batch.clone()]);
    let answers = String::from_utf8(answers).expect("the answers are text");
    assert_eq!(answers.matches("HTTP/1.1 200 OK\r\n").count(), 16);
    c.bench_function("http/connection_16_get_task", |b| {
        b.iter(|| serve_in_memory(api.clone(), Limits::default(), vec![black_box(batch.clone())]))
    });
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = get, post_overflow, list, connection
}
criterion_main!(benches);
