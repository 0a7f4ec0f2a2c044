//! Routing as Go's `net/http` mux does it: 405 with `Allow` for a known path
//! with another method, HEAD wherever GET is, the query string ignored, 404
//! for everything else; and `OPTIONS` on a known path, 204 with `Allow`.

mod common;

use common::Server;
use serde_json::json;
use worker_pool::http::Resource;

const SLOW: [(&str, &str); 3] = [("WORKERS", "1"), ("WORK_MIN_MS", "60000"), ("WORK_MAX_MS", "60000")];

#[test]
fn other_methods_on_the_collection_are_405_with_allow() {
    let server = Server::start(&SLOW);
    for method in ["DELETE", "PUT", "PATCH"] {
        let response = server.request(method, "/tasks", &[], b"");
        assert_eq!(response.status, 405, "{method}: {response:?}");
        assert_eq!(
            response.header("Allow"),
            Some("GET, HEAD, POST, OPTIONS"),
            "{method}: {response:?}"
        );
        assert_eq!(response.json(), json!({"error":"method not allowed"}), "{method}");
    }
}

#[test]
fn other_methods_on_a_task_are_405_with_allow() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    for method in ["POST", "PUT", "PATCH"] {
        let response = server.request(method, "/tasks/1", &[], b"");
        assert_eq!(response.status, 405, "{method}: {response:?}");
        assert_eq!(
            response.header("Allow"),
            Some(Resource::Task.allow()),
            "{method}: {response:?}"
        );
        assert_eq!(response.json(), json!({"error":"method not allowed"}), "{method}");
    }
}

#[test]
fn options_is_204_with_allow_and_no_body() {
    let server = Server::start(&SLOW);
    let mut conn = server.connect();
    for (target, allow) in [
        ("/tasks", "GET, HEAD, POST, OPTIONS"),
        ("/tasks/1", "GET, HEAD, DELETE, OPTIONS"),
        ("/metrics", "GET, HEAD, OPTIONS"),
    ] {
        let response = conn.request("OPTIONS", target, &[], b"");
        assert_eq!(response.status, 204, "{target}: {response:?}");
        assert_eq!(response.header("Allow"), Some(allow), "{target}: {response:?}");
        assert!(response.body.is_empty(), "{target}: {response:?}");
        assert_eq!(response.header("Access-Control-Allow-Origin"), None, "{target}");
    }
    let missing = conn.request("OPTIONS", "/nope", &[], b"");
    assert_eq!(missing.status, 404, "{missing:?}");
}

#[test]
fn head_is_answered_like_get_without_a_body() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    let mut conn = server.connect();
    for target in ["/tasks", "/tasks/1"] {
        let response = conn.request("HEAD", target, &[], b"");
        assert_eq!(response.status, 200, "{target}: {response:?}");
        assert!(response.body.is_empty(), "{target}: {response:?}");
    }
    // Nothing was left on the connection: the next request is read correctly.
    let after = conn.get("/tasks/1");
    assert_eq!((after.status, &after.json()["id"]), (200, &json!(1)));
}

#[test]
fn the_query_string_is_ignored() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    let listed = server.get("/tasks?x=1");
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.json()[0]["id"], json!(1));
    let one = server.get("/tasks/1?verbose=true");
    assert_eq!((one.status, &one.json()["id"]), (200, &json!(1)));
    let created = server.post_json("/tasks?x=1", r#"{"title":"b"}"#);
    assert_eq!((created.status, &created.json()["id"]), (201, &json!(2)));
}

#[test]
fn unknown_paths_are_404() {
    let server = Server::start(&SLOW);
    server.create_task("a");
    for target in ["/", "/nope", "/tasks/", "/tasks/1/x", "/tasks/1/", "/task", "/TASKS"] {
        let response = server.get(target);
        assert_eq!(response.status, 404, "{target}: {response:?}");
        assert_eq!(response.json(), json!({"error":"not found"}), "{target}");
    }
    let response = server.post_json("/nope", r#"{"title":"a"}"#);
    assert_eq!((response.status, response.json()), (404, json!({"error":"not found"})));
}
