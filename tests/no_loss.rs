//! Issue 9: a flood of pipelined `POST /tasks` that goes on across SIGTERM
//! loses no task. Every task answered 201 runs to done before an exit 0, or
//! is named in the exit-1 line; the flood of 503s that follows the signal
//! neither starves the workers nor stores the tasks it refuses.
//!
//! The clients speak plain HTTP/1.1 over raw sockets, each with a writer
//! thread sending batches of 16 requests and a reader thread taking the
//! answers, the writer never more than a few batches ahead.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{Conn, EXIT_TIMEOUT, LOG_TIMEOUT, Server, eventually, request_bytes};
use serde_json::json;

/// The user's setup in the issue, with a small `MAX_TASKS` so that eviction
/// churns.
const FLOOD: [(&str, &str); 6] = [
    ("THREADS", "2"),
    ("WORKERS", "64"),
    ("POOL_SIZE", "100000"),
    ("WORK_MIN_MS", "1"),
    ("WORK_MAX_MS", "20"),
    ("MAX_TASKS", "2000"),
];

/// Client connections, each pipelining.
const CLIENTS: usize = 6;
/// Requests per write.
const BATCH: usize = 16;
/// Batches a client may have written and not yet had answered.
const WINDOW: usize = 4;
/// Tasks answered 201 before the signal is sent.
const ACKNOWLEDGED: usize = 10_000;
/// Answers 503 (pool closed) the clients get before they stop.
const REFUSED: usize = 100_000;

/// The two flood tests each load both cores: they run one at a time.
static ONE_FLOOD_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What the clients have been answered so far.
#[derive(Default)]
struct Counts {
    created: AtomicUsize,
    closed: AtomicUsize,
    /// Set to stop the writers.
    stop: AtomicBool,
}

/// What one client was answered.
#[derive(Default)]
struct Answers {
    /// Ids answered 201.
    created: Vec<i64>,
    closed: usize,
    full: usize,
    /// Any other answer (none is expected).
    unexpected: Vec<String>,
}

/// One connection: a writer thread sends batches while this one's thread
/// reads the answers; both stop once `counts.stop` is set or the server
/// closes the connection.
fn client(port: u16, counts: Arc<Counts>) -> JoinHandle<Answers> {
    let mut conn = Conn::open(port);
    let mut writer = conn.stream().try_clone().expect("clone the stream");
    let body = br#"{"title":"s","description":"d"}"#;
    let batch = request_bytes("POST", "/tasks", &[("Content-Type", "application/json")], body).repeat(BATCH);
    let (written, batches) = sync_channel::<()>(WINDOW);
    let stop = counts.clone();
    thread::spawn(move || {
        while !stop.stop.load(Ordering::Relaxed) {
            // Blocks once WINDOW batches are unanswered; fails once the
            // reader has gone (the server closed the connection).
            if writer.write_all(&batch).is_err() || written.send(()).is_err() {
                break;
            }
        }
    });
    thread::spawn(move || {
        let mut answers = Answers::default();
        for () in batches {
            for _ in 0..BATCH {
                match conn.try_read_response() {
                    Some(response) => tally(&mut answers, &counts, &response),
                    None => return answers,
                }
            }
        }
        answers
    })
}

fn tally(answers: &mut Answers, counts: &Counts, response: &common::Response) {
    let body = response.json();
    match response.status {
        201 => {
            answers.created.push(body["id"].as_i64().expect("numeric id"));
            counts.created.fetch_add(1, Ordering::Relaxed);
        }
        503 if body["error"] == "task pool is closed" => {
            answers.closed += 1;
            counts.closed.fetch_add(1, Ordering::Relaxed);
        }
        // The queue (POOL_SIZE) filled before the signal: not acknowledged.
        503 if body["error"] == "task pool is full" => answers.full += 1,
        _ => answers.unexpected.push(format!("{response:?}")),
    }
}

/// Floods the server, sends SIGTERM once [`ACKNOWLEDGED`] tasks were
/// answered 201, goes on until [`REFUSED`] answers 503 (or every client is
/// cut off), then stops and returns what the clients were answered.
fn flood_across_sigterm(server: &Server) -> Answers {
    let counts = Arc::new(Counts::default());
    let clients: Vec<_> = (0..CLIENTS).map(|_| client(server.port, counts.clone())).collect();
    eventually(Duration::from_secs(20), "tasks answered 201", || {
        (counts.created.load(Ordering::Relaxed) >= ACKNOWLEDGED).then_some(())
    });
    server.sigterm();
    eventually(Duration::from_secs(20), "answers 503 after the signal", || {
        let refused = counts.closed.load(Ordering::Relaxed) >= REFUSED;
        (refused || clients.iter().all(JoinHandle::is_finished)).then_some(())
    });
    counts.stop.store(true, Ordering::Relaxed);
    let mut all = Answers::default();
    for client in clients {
        let answers = client.join().expect("client thread");
        all.created.extend(answers.created);
        all.closed += answers.closed;
        all.full += answers.full;
        all.unexpected.extend(answers.unexpected);
    }
    assert!(
        all.unexpected.is_empty(),
        "unexpected answers: {:?}",
        &all.unexpected[..1]
    );
    all
}

/// The ids the log says a worker completed.
fn logged_done(lines: &[String]) -> HashSet<i64> {
    lines
        .iter()
        .filter_map(|line| {
            let (before, _) = line.split_once(" done in ")?;
            before.rsplit_once("task ")?.1.parse().ok()
        })
        .collect()
}

/// The ids named in the exit-1 line, `queued [2, 5-7], running [1]`.
fn named_unfinished(line: &str) -> HashSet<i64> {
    let mut ids = HashSet::new();
    for list in ["queued [", "running ["] {
        let start = line.find(list).expect("the list in the line") + list.len();
        let items = &line[start..start + line[start..].find(']').expect("the list's end")];
        for item in items.split(", ").filter(|item| !item.is_empty()) {
            let (first, last) = item.split_once('-').unwrap_or((item, item));
            ids.extend(first.parse::<i64>().unwrap()..=last.parse::<i64>().unwrap());
        }
    }
    ids
}

/// The ids answered 201 that the log neither says done nor names as
/// unfinished in `exit_line`.
fn forgotten(server: &Server, answers: &Answers, exit_line: Option<&str>) -> Vec<i64> {
    let done = logged_done(&server.log_lines());
    let named = exit_line.map(named_unfinished).unwrap_or_default();
    let mut lost: Vec<i64> = answers
        .created
        .iter()
        .copied()
        .filter(|id| !done.contains(id) && !named.contains(id))
        .collect();
    lost.sort_unstable();
    lost
}

#[test]
fn a_flood_across_sigterm_runs_every_acknowledged_task_and_exits_0() {
    let _alone = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let mut server = Server::start(&[FLOOD.as_slice(), &[("SHUTDOWN_TIMEOUT", "15")]].concat());
    let answers = flood_across_sigterm(&server);
    let status = server.wait_exit(EXIT_TIMEOUT);
    let lost = forgotten(&server, &answers, None);
    eprintln!(
        "{} answered 201, {} answered 503 closed, {} answered 503 full, exit {status}, {:?} in all",
        answers.created.len(),
        answers.closed,
        answers.full,
        started.elapsed()
    );
    let tail = server.log_lines().into_iter().rev().take(5).collect::<Vec<_>>();
    assert_eq!(status.code(), Some(0), "last log lines: {tail:?}");
    assert!(
        lost.is_empty(),
        "{} acknowledged tasks never done: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(answers.created.len() >= ACKNOWLEDGED && answers.closed > 0);
}

#[test]
fn a_flood_across_sigterm_that_times_out_names_every_unfinished_task() {
    let _alone = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Work long enough that the drain cannot finish within the second.
    let slow = [
        ("WORK_MIN_MS", "100"),
        ("WORK_MAX_MS", "200"),
        ("SHUTDOWN_TIMEOUT", "1"),
    ];
    let mut server = Server::start(&[FLOOD.as_slice(), &slow].concat());
    let answers = flood_across_sigterm(&server);
    let status = server.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{status}");
    let exit_line = server.wait_for_log_line(&["timed out", "not completed"], LOG_TIMEOUT);
    let lost = forgotten(&server, &answers, Some(&exit_line));
    assert!(
        lost.is_empty(),
        "{} acknowledged tasks forgotten: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(!named_unfinished(&exit_line).is_empty(), "{exit_line}");
}

#[test]
fn a_task_refused_as_closed_is_not_stored_and_its_id_is_not_found() {
    let mut server = Server::start(&[
        ("WORKERS", "1"),
        ("POOL_SIZE", "10"),
        ("WORK_MIN_MS", "60000"),
        ("WORK_MAX_MS", "60000"),
        ("SHUTDOWN_TIMEOUT", "120"),
    ]);
    let mut conn = server.connect();
    assert_eq!(conn.post_json("/tasks", r#"{"title":"long"}"#).status, 201);
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    server.sigterm();
    server.wait_for_log("task pool closed", LOG_TIMEOUT);
    for id in [2, 3] {
        let refused = conn.post_json("/tasks", r#"{"title":"late"}"#);
        assert_eq!((refused.status, refused.json()["id"].as_i64()), (503, Some(id)));
        let lookup = conn.get(&format!("/tasks/{id}"));
        assert_eq!(
            (lookup.status, lookup.json()),
            (404, json!({"error": "task not found"}))
        );
    }
    let listed = conn.get("/tasks").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(conn.get("/tasks/1").json()["status"], "running");
    server.assert_running();
}
