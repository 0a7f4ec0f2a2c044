//! A request answered by the HTTP layer without a socket: the request-head
//! check (`http::message::inspect`), then routing (`http::router::route`)
//! and the handler (`http::handlers::answer`) writing status, headers and
//! JSON body into an in-memory `Reply`. This is the server's own work per
//! request, without may_minihttp's parsing and socket I/O, so it can be set
//! against the load benchmark's (benches/load) per-request CPU time.
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
//! - `inspect`: the head of a wrk request (`Host` only) and of a curl POST
//!   (`Host`, `User-Agent`, `Accept`, `Content-Type`, `Content-Length`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use httparse::Header;
use worker_pool::config::WorkRange;
use worker_pool::domain::Task;
use worker_pool::http::handlers::{BufferedReply, answer};
use worker_pool::http::message::inspect;
use worker_pool::http::router::route;
use worker_pool::pool::TaskQueue;
use worker_pool::service::TaskService;
use worker_pool::store::TaskStore;

mod common;

/// The default config's work range, 1 to 5 s.
const WORK: WorkRange = WorkRange {
    min_ms: 1000,
    max_ms: 5000,
};

fn serve(service: &TaskService, method: &str, target: &str, body: &[u8], reply: &mut BufferedReply) {
    reply.clear();
    let routed = route(black_box(method), black_box(target));
    answer(service, &routed.route, black_box(body), reply);
    black_box(&*reply);
}

/// A service with `tasks` tasks stored and a queue with room to spare.
fn service_with(tasks: usize) -> TaskService {
    let store = Arc::new(TaskStore::new());
    for _ in 0..tasks {
        store.insert(Task::new("t", "", Duration::from_secs(3)));
    }
    TaskService::new(store, Arc::new(TaskQueue::new(10)), WORK)
}

/// A service whose one-id queue is already full, as under overload.
fn overflowing_service() -> TaskService {
    let service = TaskService::new(Arc::new(TaskStore::new()), Arc::new(TaskQueue::new(1)), WORK);
    let mut reply = BufferedReply::default();
    serve(&service, "POST", "/tasks", br#"{"title":"first"}"#, &mut reply);
    assert_eq!(reply.code, 201, "the first task fills the queue");
    service
}

/// Checks the answer once, then measures it.
fn bench_request(c: &mut Criterion, name: &str, service: &TaskService, target: &str, code: u16) {
    let mut reply = BufferedReply::default();
    serve(service, "GET", target, b"", &mut reply);
    assert_eq!(reply.code, code, "GET {target}");
    c.bench_function(name, |b| b.iter(|| serve(service, "GET", target, b"", &mut reply)));
}

fn get(c: &mut Criterion) {
    let service = service_with(1);
    bench_request(c, "http/get_task", &service, "/tasks/1", 200);
    bench_request(c, "http/get_task_404", &service, "/tasks/999999", 404);
}

fn list(c: &mut Criterion) {
    let service = service_with(100);
    bench_request(c, "http/list_100_tasks", &service, "/tasks", 200);
}

fn post_overflow(c: &mut Criterion) {
    const BODY: &[u8] = br#"{"title":"bench","description":"d"}"#;
    let mut reply = BufferedReply::default();
    serve(&overflowing_service(), "POST", "/tasks", BODY, &mut reply);
    assert_eq!(reply.code, 503, "a full queue refuses the task");
    c.bench_function("http/post_task_503", |b| {
        b.iter_custom(|iters| {
            let service = overflowing_service();
            let start = Instant::now();
            for _ in 0..iters {
                serve(&service, "POST", "/tasks", BODY, &mut reply);
            }
            start.elapsed()
        })
    });
}

fn head(c: &mut Criterion) {
    let header = |name, value: &'static str| Header {
        name,
        value: value.as_bytes(),
    };
    let wrk = [header("Host", "127.0.0.1:8080")];
    let curl = [
        header("Host", "127.0.0.1:8080"),
        header("User-Agent", "curl/8.5.0"),
        header("Accept", "*/*"),
        header("Content-Type", "application/json"),
        header("Content-Length", "35"),
    ];
    assert!(inspect(1, &wrk).is_ok_and(|head| head.keep_alive));
    assert!(inspect(1, &curl).is_ok_and(|head| head.content_length == 35));
    c.bench_function("http/inspect_wrk", |b| b.iter(|| inspect(1, black_box(&wrk))));
    c.bench_function("http/inspect_curl", |b| b.iter(|| inspect(1, black_box(&curl))));
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = get, post_overflow, list, head
}
criterion_main!(benches);
