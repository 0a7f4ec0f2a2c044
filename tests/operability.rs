//! What people running the server rely on beyond the task API: the paged
//! listing, bounded memory with expired tasks, the metrics page and the
//! OpenAPI document, through the real binary.

mod common;

use std::collections::HashMap;

use common::{LOG_TIMEOUT, Server};
use serde_json::{Value, json};

/// One worker, and work long enough that nothing finishes during a test.
const SLOW: [(&str, &str); 4] = [
    ("WORKERS", "1"),
    ("WORK_MIN_MS", "60000"),
    ("WORK_MAX_MS", "60000"),
    ("POOL_SIZE", "100"),
];

fn ids_of(page: &Value) -> Vec<i64> {
    let items = page.as_array().unwrap_or_else(|| panic!("not an array: {page}"));
    items.iter().map(|item| item["id"].as_i64().unwrap()).collect()
}

/// Follows the `Link: <...>; rel="next"` headers from `first`, returning
/// every id seen and the number of pages.
fn walk_pages(server: &Server, first: &str, limit: usize) -> (Vec<i64>, usize) {
    let mut ids = Vec::new();
    let mut target = Some(first.to_owned());
    let mut pages = 0;
    while let Some(current) = target.take() {
        let response = server.get(&current);
        assert_eq!(response.status, 200, "{current}: {response:?}");
        let page = ids_of(&response.json());
        assert!(page.len() <= limit, "{current}: {page:?}");
        ids.extend(page);
        pages += 1;
        target = response.header("link").map(|link| {
            let next = link
                .strip_prefix('<')
                .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("not a next link: {link}"));
            next.to_owned()
        });
        assert!(pages <= 100, "the links do not end");
    }
    (ids, pages)
}

#[test]
fn the_listing_pages_through_every_task_by_following_links() {
    let server = Server::start(&SLOW);
    for i in 0..23 {
        server.create_task(&format!("task {i}"));
    }
    let (ids, pages) = walk_pages(&server, "/tasks?limit=5", 5);
    assert_eq!((ids, pages), ((1..=23).collect(), 5));
    let first = server.get("/tasks?limit=5");
    assert_eq!(first.header("link"), Some("</tasks?after=5&limit=5>; rel=\"next\""));
    assert_eq!(
        first.json()[0],
        json!({"id": 1, "title": "task 0", "status": "running"})
    );
    let (all, pages) = walk_pages(&server, "/tasks", 1000);
    assert_eq!((all.len(), pages), (23, 1));
    let (after_twenty, _) = walk_pages(&server, "/tasks?after=20", 1000);
    assert_eq!(after_twenty, [21, 22, 23]);
}

#[test]
fn the_listing_filters_by_status() {
    let server = Server::start(&SLOW);
    for i in 0..6 {
        server.create_task(&format!("task {i}"));
    }
    server.await_task_status(1, "running");
    let (pending, pages) = walk_pages(&server, "/tasks?status=pending&limit=2", 2);
    assert_eq!((pending, pages), (vec![2, 3, 4, 5, 6], 3));
    let second = server.get("/tasks?status=pending&limit=2&after=3");
    assert_eq!(
        second.header("link"),
        Some("</tasks?after=5&limit=2&status=pending>; rel=\"next\"")
    );
    assert_eq!(ids_of(&server.get("/tasks?status=running").json()), [1]);
    assert_eq!(server.get("/tasks?status=done").json(), json!([]));
}

#[test]
fn bad_page_parameters_are_400_naming_the_parameter() {
    let server = Server::start(&SLOW);
    server.create_task("t");
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("after=-1", "after"),
        ("after=1e3", "after"),
        ("status=DONE", "status"),
        ("status=%zz", "status"),
    ] {
        let response = server.get(&format!("/tasks?{query}"));
        assert_eq!(response.status, 400, "{query}: {response:?}");
        let message = response.error_message();
        assert!(
            message.starts_with(&format!("invalid {parameter}: ")),
            "{query}: {message}"
        );
    }
    assert_eq!(ids_of(&server.get("/tasks?limit=10000&after=0&other=x").json()), [1]);
}

#[test]
fn past_max_tasks_the_oldest_finished_tasks_expire() {
    let server = Server::start(&[("MAX_TASKS", "3"), ("WORK_MIN_MS", "0"), ("WORK_MAX_MS", "0")]);
    for i in 1..=7 {
        let id = server.create_task(&format!("task {i}"));
        server.await_task_status(id, "done");
    }
    assert_eq!(ids_of(&server.get("/tasks").json()), [5, 6, 7]);
    for id in 1..=4 {
        let expired = server.get(&format!("/tasks/{id}"));
        assert_eq!(expired.status, 410, "{expired:?}");
        assert_eq!(expired.json(), json!({"error": "task expired"}));
    }
    assert_eq!(server.get("/tasks/8").status, 404);
    let metrics = scrape(&server);
    assert_eq!(metrics["worker_pool_tasks_evicted_total"], 4.0);
    assert_eq!(metrics["worker_pool_tasks{status=\"done\"}"], 3.0);
    assert_eq!(metrics["worker_pool_task_run_seconds_count"], 7.0);
}

#[test]
fn past_max_text_bytes_the_oldest_finished_tasks_expire() {
    let server = Server::start(&[("MAX_TEXT_BYTES", "200000"), ("WORK_MIN_MS", "0"), ("WORK_MAX_MS", "0")]);
    let title = "x".repeat(60_000);
    for _ in 1..=5 {
        let id = server.create_task(&title);
        server.await_task_status(id, "done");
    }
    assert_eq!(ids_of(&server.get("/tasks").json()), [3, 4, 5]);
    assert_eq!(server.get("/tasks/2").status, 410);
    let metrics = scrape(&server);
    assert_eq!(metrics["worker_pool_tasks_text_bytes"], 3.0 * 60_004.0);
    assert_eq!(metrics["worker_pool_tasks_evicted_total"], 2.0);
}

#[test]
fn a_page_ends_at_four_mebibytes_whatever_its_limit() {
    let server = Server::start(&SLOW);
    let title = "y".repeat(60_000);
    for _ in 0..80 {
        server.create_task(&title);
    }
    let first = server.get("/tasks?limit=10000");
    assert!(
        first.body.len() >= 4 << 20 && first.body.len() < (4 << 20) + 61_000,
        "{}",
        first.body.len()
    );
    let taken = ids_of(&first.json());
    assert_eq!(taken, (1..=taken.len() as i64).collect::<Vec<_>>());
    let link = format!("</tasks?after={}&limit=10000>; rel=\"next\"", taken.len());
    assert_eq!(first.header("link"), Some(link.as_str()));
    let (all, pages) = walk_pages(&server, "/tasks?limit=10000", 10_000);
    assert_eq!((all, pages), ((1..=80).collect(), 2));
}

/// The metrics page as sample name (with labels) to value, after checking
/// that every sample belongs to a family announced by `# TYPE`.
fn scrape(server: &Server) -> HashMap<String, f64> {
    let response = server.get("/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut families: Vec<String> = Vec::new();
    let mut samples = HashMap::new();
    for line in response.text().lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            families.push(declared.split(' ').next().unwrap().to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (sample, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let name = sample.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| families.iter().any(|known| known == family))
            .unwrap_or(name);
        assert!(families.iter().any(|known| known == family), "no # TYPE for {line:?}");
        samples.insert(
            sample.to_owned(),
            value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        );
    }
    samples
}

#[test]
fn metrics_count_tasks_queue_workers_and_requests() {
    let server = Server::start(&[
        ("WORKERS", "1"),
        ("POOL_SIZE", "1"),
        ("WORK_MIN_MS", "60000"),
        ("WORK_MAX_MS", "60000"),
    ]);
    server.create_task("runs");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    server.create_task("waits");
    assert_eq!(server.post_json("/tasks", r#"{"title":"refused"}"#).status, 503);
    assert_eq!(server.get("/tasks/99").status, 404);
    assert_eq!(server.get("/nowhere").status, 404);
    let metrics = scrape(&server);
    let expected = [
        ("worker_pool_tasks_created_total", 3.0),
        ("worker_pool_tasks{status=\"pending\"}", 1.0),
        ("worker_pool_tasks{status=\"running\"}", 1.0),
        ("worker_pool_tasks{status=\"done\"}", 0.0),
        ("worker_pool_tasks{status=\"failed\"}", 1.0),
        ("worker_pool_tasks_rejected_total{reason=\"full\"}", 1.0),
        ("worker_pool_tasks_rejected_total{reason=\"closed\"}", 0.0),
        ("worker_pool_tasks_evicted_total", 0.0),
        ("worker_pool_queue_depth", 1.0),
        ("worker_pool_queue_capacity", 1.0),
        ("worker_pool_workers", 1.0),
        ("worker_pool_workers_busy", 1.0),
        (
            r#"worker_pool_http_requests_total{method="POST",route="/tasks",code="201"}"#,
            2.0,
        ),
        (
            r#"worker_pool_http_requests_total{method="POST",route="/tasks",code="503"}"#,
            1.0,
        ),
        (
            r#"worker_pool_http_requests_total{method="GET",route="/tasks/{id}",code="404"}"#,
            1.0,
        ),
        (
            r#"worker_pool_http_requests_total{method="GET",route="unmatched",code="404"}"#,
            1.0,
        ),
        ("worker_pool_task_run_seconds_bucket{le=\"+Inf\"}", 0.0),
    ];
    for (sample, value) in expected {
        assert_eq!(metrics.get(sample), Some(&value), "{sample}");
    }
    let never = r#"worker_pool_http_requests_total{method="GET",route="/tasks/{id}",code="200"}"#;
    assert_eq!(
        metrics.get(never),
        None,
        "only series counted at least once are written"
    );
    let again = scrape(&server);
    let scraped = r#"worker_pool_http_requests_total{method="GET",route="/metrics",code="200"}"#;
    assert_eq!(again[scraped], 1.0);
}

#[test]
fn the_openapi_document_describes_the_routes_the_server_has() {
    let server = Server::start(&SLOW);
    server.create_task("t");
    let document = server.get("/openapi.json").json();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, methods) in paths {
        for method in methods.as_object().expect("path item").keys() {
            let target = path.replace("{id}", "1");
            let method = method.to_uppercase();
            let body: &[u8] = if method == "POST" { br#"{"title":"t"}"# } else { b"" };
            let response = server.request(&method, &target, &[("Content-Type", "application/json")], body);
            assert!(
                ![404, 405].contains(&response.status),
                "{method} {target} is documented but not served: {response:?}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 8, "{paths:?}");
    assert_eq!(server.get("/nowhere").status, 404);
}

/// Each answer's `Link` line is written per answer into a response the
/// connection reuses from request to request: pipelined in one write, every
/// answer must still carry its own.
#[test]
fn pipelined_pages_each_carry_their_own_link() {
    let server = Server::start(&SLOW);
    for i in 0..8 {
        server.create_task(&format!("task {i}"));
    }
    let mut conn = server.connect();
    let batch: Vec<u8> = (0..7)
        .flat_map(|after| common::request_bytes("GET", &format!("/tasks?limit=1&after={after}"), &[], b""))
        .collect();
    conn.send(batch);
    for (after, response) in conn.read_responses(7).into_iter().enumerate() {
        assert_eq!(ids_of(&response.json()), [after as i64 + 1], "{response:?}");
        let expected = format!("</tasks?after={}&limit=1>; rel=\"next\"", after + 1);
        assert_eq!(response.header("link"), Some(expected.as_str()), "{response:?}");
    }
    let last = conn.get("/tasks?limit=1&after=7");
    assert_eq!((ids_of(&last.json()), last.header("link")), (vec![8], None));
}

#[test]
fn head_of_the_listing_keeps_the_link() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    server.create_task("b");
    let mut conn = server.connect();
    conn.send(common::request_bytes("HEAD", "/tasks?limit=1", &[], b""));
    let head = conn.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("link"), Some("</tasks?after=1&limit=1>; rel=\"next\""));
    assert_eq!(conn.get("/tasks?limit=1&after=1").header("link"), None);
}
