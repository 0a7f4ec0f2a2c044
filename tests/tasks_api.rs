//! The task API: creating, reading and listing tasks, the queue overflow and
//! a task's lifecycle, through the real binary.

mod common;

use std::time::Duration;

use common::{LOG_TIMEOUT, Server, eventually};
use serde_json::{Value, json};

/// One worker, and work long enough that nothing finishes during a test.
const SLOW: [(&str, &str); 3] = [("WORKERS", "1"), ("WORK_MIN_MS", "60000"), ("WORK_MAX_MS", "60000")];

#[test]
fn create_returns_201_with_the_trimmed_pending_task() {
    let server = Server::start(&SLOW);
    let response = server.post_json(
        "/tasks",
        r#"{"title":"  Write docs \t","description":"\n for the API  "}"#,
    );
    assert_eq!(response.status, 201, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"id":1,"title":"Write docs","description":"for the API","status":"pending"})
    );
}

#[test]
fn create_without_description_gives_an_empty_one() {
    let server = Server::start(&SLOW);
    let response = server.post_json("/tasks", r#"{"title":"t"}"#);
    assert_eq!(response.status, 201, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"id":1,"title":"t","description":"","status":"pending"})
    );
}

#[test]
fn ids_start_at_1_and_increase() {
    let server = Server::start(&SLOW);
    let ids: Vec<i64> = ["a", "b", "c"].iter().map(|title| server.create_task(title)).collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[test]
fn missing_blank_or_null_title_is_invalid_input() {
    let server = Server::start(&SLOW);
    for body in [
        r#"{}"#,
        r#"{"title":""}"#,
        r#"{"title":"  \t\n "}"#,
        r#"{"title":null}"#,
        r#"{"description":"only a description"}"#,
    ] {
        let response = server.post_json("/tasks", body);
        assert_eq!(response.status, 400, "{body}: {response:?}");
        assert_eq!(response.json(), json!({"error":"invalid input"}), "{body}");
    }
    assert_eq!(server.get("/tasks").json(), json!([]), "no task may be created");
}

#[test]
fn a_body_that_is_not_a_task_object_is_invalid_json() {
    let server = Server::start(&SLOW);
    for body in [
        "{",
        "nope",
        "[1]",
        r#"["title"]"#,
        r#""a string""#,
        "42",
        "null",
        r#"{"title":5}"#,
        r#"{"title":"a","description":7}"#,
        r#"{"title":"a"} trailing"#,
    ] {
        let response = server.post_json("/tasks", body);
        assert_eq!(response.status, 400, "{body}: {response:?}");
        let message = response.error_message();
        assert!(message.starts_with("invalid JSON body: "), "{body}: {message}");
    }
    assert_eq!(server.get("/tasks").json(), json!([]), "no task may be created");
}

#[test]
fn an_empty_body_is_refused_as_empty() {
    let server = Server::start(&SLOW);
    let with_zero_length = server.request("POST", "/tasks", &[("Content-Length", "0")], b"");
    let without_length = server.request("POST", "/tasks", &[], b"");
    for response in [with_zero_length, without_length] {
        assert_eq!(response.status, 400, "{response:?}");
        let message = response.error_message();
        assert!(message.starts_with("request body is empty"), "{message}");
    }
}

#[test]
fn a_full_queue_fails_the_task_with_503() {
    let server = Server::start(&[
        ("WORKERS", "1"),
        ("POOL_SIZE", "1"),
        ("WORK_MIN_MS", "60000"),
        ("WORK_MAX_MS", "60000"),
    ]);
    assert_eq!(server.create_task("first"), 1);
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    assert_eq!(server.create_task("second"), 2, "the queue has room for one");
    let refused = server.post_json("/tasks", r#"{"title":"third","description":"d"}"#);
    assert_eq!(refused.status, 503, "{refused:?}");
    let failed = json!({"id":3,"title":"third","description":"d","status":"failed","error":"task pool is full"});
    assert_eq!(refused.json(), failed);
    let stored = server.get("/tasks/3");
    assert_eq!((stored.status, stored.json()), (200, failed));
}

#[test]
fn get_returns_the_task() {
    let server = Server::start(&SLOW);
    server.post_json("/tasks", r#"{"title":"a","description":"b"}"#);
    let response = server.get("/tasks/1");
    assert_eq!(response.status, 200, "{response:?}");
    let task = response.json();
    let status = task["status"].clone();
    assert!(status == "pending" || status == "running", "{task}");
    assert_eq!(task, json!({"id":1,"title":"a","description":"b","status":status}));
}

#[test]
fn get_with_a_percent_encoded_id_finds_the_task() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    let response = server.get("/tasks/%31");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["id"], json!(1));
}

#[test]
fn get_with_a_malformed_id_is_400() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    for id in ["abc", "0", "-1", "9223372036854775808", "1.0"] {
        let response = server.get(&format!("/tasks/{id}"));
        assert_eq!(response.status, 400, "{id}: {response:?}");
        assert_eq!(response.json(), json!({"error":"invalid task id"}), "{id}");
    }
}

#[test]
fn get_with_an_unknown_id_is_404() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    for id in ["2", "9223372036854775807"] {
        let response = server.get(&format!("/tasks/{id}"));
        assert_eq!(response.status, 404, "{id}: {response:?}");
        assert_eq!(response.json(), json!({"error":"task not found"}), "{id}");
    }
}

#[test]
fn list_is_empty_at_first() {
    let server = Server::start(&SLOW);
    let response = server.get("/tasks");
    assert_eq!((response.status, response.json()), (200, json!([])));
}

#[test]
fn list_gives_id_title_status_ordered_by_id() {
    let server = Server::start(&SLOW);
    for title in ["a", "b", "c"] {
        server.create_task(title);
    }
    let response = server.get("/tasks");
    assert_eq!(response.status, 200, "{response:?}");
    let listed = response.json();
    let items = listed.as_array().expect("an array");
    let ids: Vec<&Value> = items.iter().map(|item| &item["id"]).collect();
    let titles: Vec<&Value> = items.iter().map(|item| &item["title"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2), &json!(3)], "{listed}");
    assert_eq!(titles, [&json!("a"), &json!("b"), &json!("c")], "{listed}");
    for item in items {
        let keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 3, "only id, title and status: {item}");
        assert!(
            ["pending", "running"].contains(&item["status"].as_str().unwrap()),
            "{item}"
        );
    }
    assert_eq!(items[1]["status"], json!("pending"), "one worker, busy with task 1");
}

#[test]
fn a_task_goes_from_pending_through_running_to_done() {
    let server = Server::start(&[("WORKERS", "1"), ("WORK_MIN_MS", "300"), ("WORK_MAX_MS", "300")]);
    let created = server.post_json("/tasks", r#"{"title":"short"}"#);
    assert_eq!((created.status, &created.json()["status"]), (201, &json!("pending")));
    let mut seen = Vec::new();
    eventually(Duration::from_secs(20), "task 1 to be done", || {
        let task = server.get("/tasks/1").json();
        let status = task["status"].as_str().expect("a status").to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        (status == "done").then_some(())
    });
    let allowed = [
        vec!["pending", "running", "done"],
        vec!["pending", "done"],
        vec!["running", "done"],
        vec!["done"],
    ];
    assert!(
        allowed.contains(&seen.iter().map(String::as_str).collect()),
        "statuses seen: {seen:?}"
    );
    server.wait_for_log("worker 1: task 1 started, planned 300ms", LOG_TIMEOUT);
    server.wait_for_log_line(&["task 1 done in", "planned 300ms"], LOG_TIMEOUT);
}
