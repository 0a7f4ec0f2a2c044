//! Issue 11: a client waits for a task to finish without polling
//! (`GET /tasks/{id}?wait=SECONDS`) and cancels it (`DELETE /tasks/{id}`),
//! through the real binary.

mod common;

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{Conn, EXIT_TIMEOUT, LOG_TIMEOUT, Response, Server, eventually, request_bytes};
use serde_json::json;

/// One worker, and work long enough that nothing finishes by itself during
/// a test.
const SLOW: [(&str, &str); 4] = [
    ("WORKERS", "1"),
    ("POOL_SIZE", "10"),
    ("WORK_MIN_MS", "60000"),
    ("WORK_MAX_MS", "60000"),
];

/// What "at once" means here: far below the waits and the work it is set
/// against (30 to 60 s), with room for a loaded test machine.
const AT_ONCE: Duration = Duration::from_secs(3);

/// The value of one sample of the metrics page, if it is there.
fn metric(server: &Server, sample: &str) -> Option<f64> {
    let page = server.get("/metrics").text();
    page.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().expect("a number"))
    })
}

/// Waits until `count` requests are parked waiting for a task.
fn await_waiters(server: &Server, count: usize) {
    eventually(LOG_TIMEOUT, &format!("{count} waiting request(s)"), || {
        (metric(server, "worker_pool_task_waiters") == Some(count as f64)).then_some(())
    });
}

/// `GET target` on a connection of its own, on a thread: the answer and
/// how long it took.
fn get_on_thread(server: &Server, target: &str) -> JoinHandle<(Response, Duration)> {
    let mut conn = server.connect();
    let target = target.to_owned();
    thread::spawn(move || {
        let started = Instant::now();
        let response = conn.get(&target);
        (response, started.elapsed())
    })
}

fn delete(server: &Server, target: &str) -> Response {
    server.request("DELETE", target, &[], b"")
}

#[test]
fn a_wait_is_answered_as_soon_as_the_task_is_done() {
    let server = Server::start(&[("WORKERS", "1"), ("WORK_MIN_MS", "300"), ("WORK_MAX_MS", "300")]);
    let id = server.create_task("short");
    let started = Instant::now();
    let response = server.get(&format!("/tasks/{id}?wait=30"));
    let waited = started.elapsed();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"id": id, "title": "short", "description": "", "status": "done"})
    );
    assert!(
        waited < AT_ONCE,
        "answered {waited:?} after the request, not when the task was done"
    );
    server.wait_for_log(&format!("task {id} done in"), LOG_TIMEOUT);
}

#[test]
fn a_wait_ends_at_its_deadline_with_the_task_as_it_is() {
    let server = Server::start(&SLOW);
    let running = server.create_task("running");
    let pending = server.create_task("pending");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    for (id, wait, status) in [(running, "1", "running"), (pending, "0.5", "pending")] {
        let started = Instant::now();
        let response = server.get(&format!("/tasks/{id}?wait={wait}"));
        let waited = started.elapsed();
        assert_eq!(
            (response.status, response.json()["status"].clone()),
            (200, json!(status))
        );
        let wait = Duration::from_secs_f64(wait.parse().unwrap());
        assert!(
            waited >= wait && waited < wait + AT_ONCE,
            "wait={wait:?} took {waited:?}"
        );
    }
    for target in ["/tasks/1?wait=0", "/tasks/1", "/tasks/1?wait=0.000", "/tasks/1?other=5"] {
        let started = Instant::now();
        let response = server.get(target);
        assert_eq!(
            (response.status, response.json()["status"].clone()),
            (200, json!("running"))
        );
        assert!(started.elapsed() < AT_ONCE, "{target} waited");
    }
    assert_eq!(metric(&server, "worker_pool_task_waiters"), Some(0.0));
}

#[test]
fn a_bad_wait_is_400_naming_the_parameter_and_the_plain_get_errors_still_apply() {
    let server = Server::start(&[SLOW.as_slice(), &[("MAX_WAIT", "5")]].concat());
    server.create_task("a");
    for wait in [
        "-1", "5.001", "6", "NaN", "nan", "inf", "-inf", "infinity", "abc", "", "1e400", "%2B", "0x1", "1%20",
    ] {
        let response = server.get(&format!("/tasks/1?wait={wait}"));
        assert_eq!(response.status, 400, "wait={wait}: {response:?}");
        assert_eq!(
            response.error_message(),
            "invalid wait: expected a decimal number of seconds from 0 to 5",
            "wait={wait}"
        );
    }
    let cases = [
        ("/tasks/abc?wait=nope", 400, "invalid task id"),
        ("/tasks/0?wait=1", 400, "invalid task id"),
        // A wait of MAX_WAIT is accepted, and no task is waited for.
        ("/tasks/99?wait=5", 404, "task not found"),
    ];
    for (target, status, message) in cases {
        let started = Instant::now();
        let response = server.get(target);
        assert_eq!(
            (response.status, response.error_message().as_str()),
            (status, message),
            "{target}"
        );
        assert!(started.elapsed() < AT_ONCE, "{target} waited");
    }
}

#[test]
fn an_evicted_task_is_410_at_once_whatever_the_wait() {
    let server = Server::start(&[("MAX_TASKS", "1"), ("WORK_MIN_MS", "0"), ("WORK_MAX_MS", "0")]);
    for title in ["a", "b", "c"] {
        let id = server.create_task(title);
        server.await_task_status(id, "done");
    }
    let started = Instant::now();
    let expired = server.get("/tasks/1?wait=60");
    assert_eq!(
        (expired.status, expired.json()),
        (410, json!({"error": "task expired"}))
    );
    assert!(started.elapsed() < AT_ONCE);
    assert_eq!(delete(&server, "/tasks/1").status, 410);
}

#[test]
fn a_pending_task_canceled_never_runs() {
    let server = Server::start(&SLOW);
    let running = server.create_task("running");
    let pending = server.create_task("pending");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    let canceled = delete(&server, &format!("/tasks/{pending}"));
    assert_eq!(canceled.status, 200, "{canceled:?}");
    assert_eq!(
        canceled.json(),
        json!({"id": pending, "title": "pending", "description": "", "status": "canceled"})
    );
    assert_eq!(server.get(&format!("/tasks/{pending}")).json()["status"], "canceled");
    assert_eq!(delete(&server, &format!("/tasks/{running}")).status, 200);
    // The worker, freed, takes the canceled task's id and skips it.
    server.wait_for_log(
        &format!("worker 1: task {pending} skipped: canceled before it started"),
        LOG_TIMEOUT,
    );
    assert!(
        !server.log_text().contains(&format!("task {pending} started")),
        "{}",
        server.log_dump()
    );
    let listed = server.get("/tasks?status=canceled").json();
    assert_eq!(
        listed,
        json!([{"id": running, "title": "running", "status": "canceled"}, {"id": pending, "title": "pending", "status": "canceled"}])
    );
    assert_eq!(metric(&server, "worker_pool_tasks{status=\"canceled\"}"), Some(2.0));
    assert_eq!(metric(&server, "worker_pool_tasks_canceled_total"), Some(2.0));
    let deletes = r#"worker_pool_http_requests_total{method="DELETE",route="/tasks/{id}",code="200"}"#;
    assert_eq!(metric(&server, deletes), Some(2.0));
}

#[test]
fn a_running_task_canceled_frees_its_worker_for_the_next_at_once() {
    let server = Server::start(&SLOW);
    let long = server.create_task("long");
    let next = server.create_task("next");
    server.wait_for_log(&format!("task {long} started"), LOG_TIMEOUT);
    let started = Instant::now();
    let canceled = delete(&server, &format!("/tasks/{long}"));
    assert_eq!(
        (canceled.status, canceled.json()["status"].clone()),
        (200, json!("canceled"))
    );
    // One worker: the next task can only start once the canceled one's
    // 60 s of work have been cut short.
    server.wait_for_log(&format!("worker 1: task {next} started"), AT_ONCE);
    assert!(started.elapsed() < AT_ONCE, "{:?}", started.elapsed());
    server.wait_for_log_line(&["worker 1: task 1 canceled after", "planned 60s"], LOG_TIMEOUT);
    assert!(!server.log_text().contains("task 1 done"), "{}", server.log_dump());
    assert_eq!(server.get(&format!("/tasks/{long}")).json()["status"], "canceled");
    assert_eq!(metric(&server, "worker_pool_workers_busy"), Some(1.0));
    assert_eq!(metric(&server, "worker_pool_task_run_seconds_count"), Some(0.0));
}

#[test]
fn a_finished_task_cannot_be_canceled_and_delete_refuses_as_get_does() {
    let server = Server::start(&[("WORK_MIN_MS", "0"), ("WORK_MAX_MS", "0")]);
    let id = server.create_task("quick");
    server.await_task_status(id, "done");
    let mut conn = server.connect();
    for _ in 0..2 {
        let refused = conn.request("DELETE", &format!("/tasks/{id}"), &[], b"");
        assert_eq!(
            (refused.status, refused.json()),
            (409, json!({"error": "task already finished"}))
        );
    }
    assert_eq!(conn.get(&format!("/tasks/{id}")).json()["status"], "done");
    let cases = [
        ("/tasks/abc", 400, "invalid task id"),
        ("/tasks/-1", 400, "invalid task id"),
        ("/tasks/99", 404, "task not found"),
    ];
    for (target, status, message) in cases {
        let response = conn.request("DELETE", target, &[], b"");
        assert_eq!(
            (response.status, response.error_message().as_str()),
            (status, message),
            "{target}"
        );
    }
    let conflicts = r#"worker_pool_http_requests_total{method="DELETE",route="/tasks/{id}",code="409"}"#;
    assert_eq!(metric(&server, conflicts), Some(2.0));
}

#[test]
fn a_cancel_answers_the_requests_waiting_on_the_task() {
    let server = Server::start(&SLOW);
    let running = server.create_task("running");
    let pending = server.create_task("pending");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    let waiters: Vec<_> = [running, running, pending]
        .into_iter()
        .map(|id| get_on_thread(&server, &format!("/tasks/{id}?wait=60")))
        .collect();
    await_waiters(&server, 3);
    assert_eq!(delete(&server, &format!("/tasks/{running}")).status, 200);
    assert_eq!(delete(&server, &format!("/tasks/{pending}")).status, 200);
    for waiter in waiters {
        let (response, waited) = waiter.join().unwrap();
        assert_eq!(
            (response.status, response.json()["status"].clone()),
            (200, json!("canceled"))
        );
        assert!(waited < Duration::from_secs(60) - AT_ONCE, "{waited:?}");
    }
    assert_eq!(metric(&server, "worker_pool_task_waiters"), Some(0.0));
}

#[test]
fn shutdown_answers_every_waiter_at_once_then_drains() {
    let mut server = Server::start(&[
        ("WORKERS", "1"),
        ("POOL_SIZE", "10"),
        // Long enough that the running task is still running at the
        // signal, short enough for the drain to finish.
        ("WORK_MIN_MS", "5000"),
        ("WORK_MAX_MS", "5000"),
        ("SHUTDOWN_TIMEOUT", "60"),
    ]);
    let running = server.create_task("running");
    let pending = server.create_task("pending");
    server.wait_for_log(&format!("task {running} started"), LOG_TIMEOUT);
    let waiters: Vec<_> = [(running, "running"), (pending, "pending"), (pending, "pending")]
        .into_iter()
        .map(|(id, status)| (get_on_thread(&server, &format!("/tasks/{id}?wait=60")), status))
        .collect();
    await_waiters(&server, 3);
    // Opened before the signal: the listener closes with it.
    let mut late = server.connect();
    assert_eq!(late.get("/healthz").status, 200);
    server.sigterm();
    for (waiter, status) in waiters {
        let (response, waited) = waiter.join().unwrap();
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(
            response.json()["status"],
            status,
            "answered with the state at the signal"
        );
        assert!(waited < Duration::from_secs(60) - AT_ONCE, "{waited:?}");
    }
    server.wait_for_log("shutdown: answered 3 request(s) waiting for a task", LOG_TIMEOUT);
    let started = Instant::now();
    let after_signal = late.get(&format!("/tasks/{pending}?wait=60"));
    assert_eq!(after_signal.status, 200, "{after_signal:?}");
    assert!(started.elapsed() < AT_ONCE, "a wait asked during the drain waited");
    let status = server.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log_dump());
    for id in [running, pending] {
        server.wait_for_log(&format!("task {id} done in"), LOG_TIMEOUT);
    }
}

/// The time of day of a `Date` header, in seconds (`Sun, 29 Nov 2026 00:21:49 GMT`).
fn seconds_of_day(response: &Response) -> i64 {
    let date = response.header("Date").expect("a Date header");
    let time = date.split(' ').nth(4).unwrap_or_else(|| panic!("bad Date {date:?}"));
    time.split(':')
        .fold(0, |seconds, part| seconds * 60 + part.parse::<i64>().unwrap())
}

#[test]
fn requests_pipelined_behind_a_waiting_one_are_answered_after_it_in_order() {
    let server = Server::start(&SLOW);
    let id = server.create_task("long");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    let mut conn: Conn = server.connect();
    let before = conn.get("/healthz");
    let mut pipeline = request_bytes("GET", &format!("/tasks/{id}?wait=2"), &[], b"");
    pipeline.extend(request_bytes("DELETE", &format!("/tasks/{id}"), &[], b""));
    pipeline.extend(request_bytes("GET", &format!("/tasks/{id}"), &[], b""));
    pipeline.extend(request_bytes("GET", "/healthz", &[], b""));
    let started = Instant::now();
    conn.send(&pipeline);
    let answers = conn.read_responses(4);
    let took = started.elapsed();
    // The wait ran out with the task still running: the DELETE behind it
    // was not answered, nor acted on, before it.
    let statuses: Vec<_> = answers[..3]
        .iter()
        .map(|answer| answer.json()["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("running"), json!("canceled"), json!("canceled")]);
    assert_eq!(answers[3].json(), json!({"status": "ok"}));
    assert!(answers.iter().all(|answer| answer.status == 200), "{answers:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(2) + AT_ONCE,
        "{took:?}"
    );
    // Dated when they were made, after the wait, not when it began (the
    // day may turn over: compare modulo a day).
    for answer in &answers {
        let later = (seconds_of_day(answer) - seconds_of_day(&before)).rem_euclid(86_400);
        assert!(
            later >= 2,
            "dated {later} s after an answer sent before the wait: {answer:?}"
        );
    }
}

#[test]
fn a_canceled_task_is_neither_run_nor_named_at_a_shutdown_that_times_out() {
    let mut server = Server::start(&[SLOW.as_slice(), &[("SHUTDOWN_TIMEOUT", "1")]].concat());
    for title in ["a", "b", "c", "d"] {
        server.create_task(title);
    }
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    assert_eq!(delete(&server, "/tasks/3").status, 200);
    server.wait_for_log("task 3 canceled while pending", LOG_TIMEOUT);
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{status}\n{}", server.log_dump());
    // Every task answered 201 is done, canceled, or named here.
    server.wait_for_log_line(&["timed out", "queued [2, 4], running [1]"], LOG_TIMEOUT);
}
