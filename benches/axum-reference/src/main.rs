//! The worker-pool API on axum and tokio, written the way a Rust user would
//! write it: a peer for `benches/load/run.sh`, beside the Go reference port
//! (`benches/go-reference`), whose behaviour it follows. It is deliberately
//! not tuned: a `HashMap` behind a `RwLock`, serde_json both ways, a bounded
//! `tokio::sync::mpsc` channel as the queue, one log line per task start and
//! finish, and tokio's default multi-threaded runtime.
//!
//! ```text
//! cargo build --release --manifest-path benches/axum-reference/Cargo.toml
//! HTTP_PORT=8082 benches/axum-reference/target/release/axum-reference
//! ```
//!
//! Environment, as the Go port (a missing or malformed value takes its
//! default): HTTP_HOST (all interfaces), HTTP_PORT (8080), WORKERS (5),
//! POOL_SIZE (10), WORK_MIN_MS (1000), WORK_MAX_MS (5000), SHUTDOWN_TIMEOUT
//! (10 s).

use std::collections::HashMap;
use std::env;
use std::future::IntoFuture;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

// --- configuration -------------------------------------------------------------

struct Config {
    host: String,
    port: u16,
    workers: usize,
    pool_size: usize,
    shutdown_timeout: Duration,
    work_min_ms: u64,
    work_max_ms: u64,
}

impl Config {
    fn from_env() -> Self {
        Config {
            host: env::var("HTTP_HOST").unwrap_or_default(),
            port: env_or("HTTP_PORT", 8080),
            workers: env_or("WORKERS", 5),
            pool_size: env_or("POOL_SIZE", 10),
            shutdown_timeout: Duration::from_secs(env_or("SHUTDOWN_TIMEOUT", 10)),
            work_min_ms: env_or("WORK_MIN_MS", 1000),
            work_max_ms: env_or("WORK_MAX_MS", 5000),
        }
    }
}

fn env_or<T: FromStr>(key: &str, default: T) -> T {
    env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// --- domain --------------------------------------------------------------------

#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pending,
    Running,
    Done,
    Failed,
}

#[derive(Clone, Serialize)]
struct Task {
    id: i64,
    title: String,
    description: String,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip)]
    duration: Duration,
}

/// The short form returned by `GET /tasks`.
#[derive(Serialize)]
struct TaskSummary {
    id: i64,
    title: String,
    status: Status,
}

/// The body of `POST /tasks`; a missing or null field reads as empty.
#[derive(Deserialize)]
struct CreateTaskInput {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

enum CreateError {
    InvalidInput,
    /// The pool refused the task: it is stored as failed and returned.
    Refused(Task),
}

// --- store ---------------------------------------------------------------------

/// Every task in memory, as the Go port's map behind a `sync.RWMutex`.
#[derive(Default)]
struct Store {
    inner: RwLock<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
    tasks: HashMap<i64, Task>,
    next_id: i64,
}

impl Store {
    /// Assigns the next id, stores the task and returns a copy.
    fn create(&self, mut task: Task) -> Task {
        let mut inner = self.inner.write().unwrap();
        inner.next_id += 1;
        task.id = inner.next_id;
        inner.tasks.insert(task.id, task.clone());
        task
    }

    fn get(&self, id: i64) -> Option<Task> {
        self.inner.read().unwrap().tasks.get(&id).cloned()
    }

    /// Every task's summary, sorted by id.
    fn list(&self) -> Vec<TaskSummary> {
        let inner = self.inner.read().unwrap();
        let mut list: Vec<TaskSummary> = inner
            .tasks
            .values()
            .map(|t| TaskSummary {
                id: t.id,
                title: t.title.clone(),
                status: t.status,
            })
            .collect();
        list.sort_by_key(|t| t.id);
        list
    }

    fn update_status(&self, id: i64, status: Status, error: Option<String>) -> Option<Task> {
        let mut inner = self.inner.write().unwrap();
        let task = inner.tasks.get_mut(&id)?;
        task.status = status;
        task.error = error;
        Some(task.clone())
    }
}

// --- worker pool ---------------------------------------------------------------

/// The sending side of the queue; `None` once closed for shutdown.
struct Pool {
    sender: RwLock<Option<mpsc::Sender<i64>>>,
}

impl Pool {
    /// Queues a task id without waiting; the error is the task's failure reason.
    fn submit(&self, id: i64) -> Result<(), &'static str> {
        let sender = self.sender.read().unwrap();
        let Some(sender) = sender.as_ref() else {
            return Err("task pool is closed");
        };
        sender.try_send(id).map_err(|err| match err {
            TrySendError::Full(_) => "task pool is full",
            TrySendError::Closed(_) => "task pool is closed",
        })
    }

    /// Stops accepting tasks; the workers drain what is queued, then end.
    fn close(&self) {
        self.sender.write().unwrap().take();
    }
}

fn start_workers(count: usize, receiver: mpsc::Receiver<i64>, store: Arc<Store>) -> Vec<JoinHandle<()>> {
    let receiver = Arc::new(Mutex::new(receiver));
    (1..=count)
        .map(|n| tokio::spawn(worker(n, Arc::clone(&receiver), Arc::clone(&store))))
        .collect()
}

async fn worker(n: usize, receiver: Arc<Mutex<mpsc::Receiver<i64>>>, store: Arc<Store>) {
    loop {
        let Some(id) = receiver.lock().await.recv().await else {
            return;
        };
        let Some(task) = store.update_status(id, Status::Running, None) else {
            continue;
        };
        eprintln!("worker {n}: task {id} started, planned {:?}", task.duration);
        let start = Instant::now();
        tokio::time::sleep(task.duration).await;
        store.update_status(id, Status::Done, None);
        eprintln!(
            "worker {n}: task {id} done in {:?}, planned {:?}",
            start.elapsed(),
            task.duration
        );
    }
}

// --- service -------------------------------------------------------------------

struct Service {
    store: Arc<Store>,
    pool: Arc<Pool>,
    work_min_ms: u64,
    work_max_ms: u64,
}

impl Service {
    /// Whole seconds when both bounds are whole seconds, milliseconds otherwise.
    fn random_duration(&self) -> Duration {
        let (lo, hi) = (self.work_min_ms, self.work_max_ms.max(self.work_min_ms));
        if lo % 1000 == 0 && hi % 1000 == 0 {
            Duration::from_secs(rand::random_range(lo / 1000..=hi / 1000))
        } else {
            Duration::from_millis(rand::random_range(lo..=hi))
        }
    }

    /// Stores a pending task and queues it; if the pool refuses it, the task
    /// is marked failed.
    fn create(&self, input: CreateTaskInput) -> Result<Task, CreateError> {
        let title = input.title.unwrap_or_default().trim().to_owned();
        let description = input.description.unwrap_or_default().trim().to_owned();
        if title.is_empty() {
            return Err(CreateError::InvalidInput);
        }
        let task = self.store.create(Task {
            id: 0,
            title,
            description,
            status: Status::Pending,
            error: None,
            duration: self.random_duration(),
        });
        match self.pool.submit(task.id) {
            Ok(()) => Ok(task),
            Err(reason) => {
                let failed = self
                    .store
                    .update_status(task.id, Status::Failed, Some(reason.to_owned()));
                Err(CreateError::Refused(failed.unwrap_or(task)))
            }
        }
    }
}

// --- HTTP ----------------------------------------------------------------------

type AppState = Arc<Service>;

fn router(state: AppState) -> Router {
    Router::new()
        .route("/tasks", get(list_tasks).post(create_task))
        .route("/tasks/{id}", get(get_task))
        .with_state(state)
}

/// Read as bytes, not with the `Json` extractor: like Go's decoder, any
/// Content-Type is accepted and every malformed body is a 400.
async fn create_task(State(service): State<AppState>, body: Bytes) -> Response {
    let Ok(input) = serde_json::from_slice::<CreateTaskInput>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid request body");
    };
    match service.create(input) {
        Ok(task) => json(StatusCode::CREATED, &task),
        Err(CreateError::InvalidInput) => error(StatusCode::BAD_REQUEST, "invalid input"),
        Err(CreateError::Refused(task)) => json(StatusCode::SERVICE_UNAVAILABLE, &task),
    }
}

async fn get_task(State(service): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match id.parse::<i64>() {
        Ok(id) if id > 0 => id,
        _ => return error(StatusCode::BAD_REQUEST, "invalid task id"),
    };
    match service.store.get(id) {
        Some(task) => json(StatusCode::OK, &task),
        None => error(StatusCode::NOT_FOUND, "task not found"),
    }
}

async fn list_tasks(State(service): State<AppState>) -> Response {
    json(StatusCode::OK, &service.store.list())
}

/// A JSON body ending in a newline, as Go's `json.Encoder` writes it.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = serde_json::to_vec(value).expect("tasks always serialise");
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &ErrorBody { error: message })
}

// --- main ----------------------------------------------------------------------

async fn shutdown_signal() -> &'static str {
    let mut terminate = signal(SignalKind::terminate()).expect("cannot listen for SIGTERM");
    let mut interrupt = signal(SignalKind::interrupt()).expect("cannot listen for SIGINT");
    tokio::select! {
        _ = terminate.recv() => "terminated",
        _ = interrupt.recv() => "interrupt",
    }
}

#[tokio::main]
async fn main() {
    let cfg = Config::from_env();

    let store = Arc::new(Store::default());
    let (sender, receiver) = mpsc::channel(cfg.pool_size.max(1));
    let pool = Arc::new(Pool {
        sender: RwLock::new(Some(sender)),
    });
    let workers = start_workers(cfg.workers, receiver, Arc::clone(&store));
    let service = Arc::new(Service {
        store,
        pool: Arc::clone(&pool),
        work_min_ms: cfg.work_min_ms,
        work_max_ms: cfg.work_max_ms,
    });

    let host = if cfg.host.is_empty() {
        "0.0.0.0"
    } else {
        cfg.host.as_str()
    };
    let addr = format!("{host}:{}", cfg.port);
    let listener = TcpListener::bind(&addr).await.unwrap_or_else(|err| {
        eprintln!("server error: listen on {addr}: {err}");
        std::process::exit(1)
    });
    eprintln!(
        "listening on {addr}: {} workers, pool of {}",
        cfg.workers, cfg.pool_size
    );

    // The server stops accepting on the signal and ends once its open
    // connections have; the shutdown deadline counts from the signal.
    let (signalled, signal_time) = oneshot::channel();
    let server = tokio::spawn(
        axum::serve(listener, router(service))
            .with_graceful_shutdown(async move {
                let name = shutdown_signal().await;
                eprintln!("shutdown: {name} received");
                let _ = signalled.send(Instant::now());
            })
            .into_future(),
    );
    let Ok(signal_time) = signal_time.await else {
        // The server ended without a signal.
        if let Ok(Err(err)) = server.await {
            eprintln!("server error: {err}");
        }
        std::process::exit(1)
    };
    let deadline = signal_time + cfg.shutdown_timeout;

    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => eprintln!("shutdown: server: {err}"),
        Ok(Err(err)) => eprintln!("shutdown: server: {err}"),
        Err(_) => eprintln!("shutdown: server: timed out waiting for connections"),
    }
    pool.close();

    let drained = tokio::time::timeout_at(deadline, async {
        for worker in workers {
            let _ = worker.await;
        }
    });
    if drained.await.is_ok() {
        eprintln!("shutdown: all workers finished");
    } else {
        eprintln!("shutdown: timed out waiting for workers");
        std::process::exit(1);
    }
}
