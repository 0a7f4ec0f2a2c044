//! Behind nginx, configured as README's "Behind a reverse proxy" shows:
//! every route answers through it under the `/api` prefix, over kept-alive
//! upstream connections, with no 502; the listing's `Link` carries the
//! prefix (`X-Forwarded-Prefix`), and a same-origin page's POST passes the
//! origin check (`Host` forwarded).
//!
//! nginx (Debian's `nginx-light`, `/usr/sbin/nginx`) runs in the foreground,
//! unprivileged, with its configuration, pid file, logs and temporary files
//! in a temporary directory. Without it the test fails, saying to install it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Conn, Response, Server, eventually, free_port};
use serde_json::json;
use tempfile::TempDir;

const NGINX: &str = "/usr/sbin/nginx";

/// Tasks stay pending: one worker, a minute of work each.
const SLOW: [(&str, &str); 3] = [("WORKERS", "1"), ("WORK_MIN_MS", "60000"), ("WORK_MAX_MS", "60000")];

/// The `http` block README gives, for an upstream on `upstream_port` and
/// nginx listening on `port`; every path nginx writes is under `dir`.
fn http_block(dir: &Path, port: u16, upstream_port: u16) -> String {
    let dir = dir.display();
    format!(
        r#"
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream worker_pool {{
        server 127.0.0.1:{upstream_port};
        keepalive 16;
        keepalive_timeout 50s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /api/ {{
            proxy_pass http://worker_pool/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Prefix /api;
        }}
    }}
}}
"#
    )
}

/// nginx running in the foreground; stopped (SIGTERM, then awaited) when
/// dropped, so a failing test leaves no process behind.
struct Nginx {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx in front of 127.0.0.1:`upstream_port` and waits until
    /// it answers.
    fn start(upstream_port: u16) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: install nginx (Debian: apt-get install nginx-light); CI installs it"
        );
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let port = free_port();
        let config = format!(
            "daemon off;\nworker_processes 1;\npid {path}/nginx.pid;\nerror_log {path}/error.log notice;\n\
             events {{ worker_connections 64; }}\n{http}",
            path = dir.path().display(),
            http = http_block(dir.path(), port, upstream_port)
        );
        std::fs::write(dir.path().join("nginx.conf"), config).expect("write nginx.conf");
        let child = spawn_unprivileged(dir.path());
        let mut nginx = Nginx { child, port, dir };
        nginx.wait_ready();
        nginx
    }

    fn wait_ready(&mut self) {
        eventually(Duration::from_secs(10), "nginx to answer", || {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("nginx exited ({status}):\n{}", self.error_log());
            }
            let answered = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            answered.then_some(())
        });
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn connect(&self) -> Conn {
        Conn::open(self.port)
    }

    /// Stops nginx (SIGTERM: a fast shutdown of master and worker) and
    /// waits for it to exit.
    fn stop(&mut self) {
        if self.child.try_wait().expect("try_wait").is_none() {
            let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
            // SAFETY: kill only sends a signal to our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let child = &mut self.child;
        eventually(Duration::from_secs(10), "nginx to exit", || {
            child.try_wait().expect("try_wait")
        });
    }
}

impl Drop for Nginx {
    /// As [`stop`](Nginx::stop) but never panicking (the test may already
    /// be failing): SIGKILL if it has not exited after 10 s.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill only sends a signal to our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs nginx in the foreground with its files in `dir`; as `nobody` when
/// the test runs as root (as CI does), so that it never holds root.
fn spawn_unprivileged(dir: &Path) -> Child {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(NGINX);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        command.uid(65534).gid(65534);
    }
    command.spawn().expect("spawn nginx")
}

/// Asserts `response` has `status`, with nginx's error log if not (a 502
/// says why there).
fn expect(nginx: &Nginx, response: Response, status: u16, what: &str) -> Response {
    assert_eq!(response.status, status, "{what}: {response:?}\n{}", nginx.error_log());
    response
}

/// The path of a `Link: <path>; rel="next"` header.
fn next_link(response: &Response) -> Option<String> {
    let link = response.header("Link")?;
    let target = link.strip_prefix('<')?.split_once('>')?.0;
    Some(target.to_owned())
}

/// Lists the tasks one per page through nginx, following `Link`; their ids.
fn list_by_links(nginx: &Nginx, conn: &mut Conn) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut target = Some("/api/tasks?limit=1".to_owned());
    while let Some(path) = target.take() {
        assert!(path.starts_with("/api/tasks?"), "Link outside /api: {path}");
        let page = expect(nginx, conn.get(&path), 200, &path);
        ids.extend(
            page.json()
                .as_array()
                .expect("a page")
                .iter()
                .map(|task| task["id"].as_i64().unwrap()),
        );
        target = next_link(&page);
        assert!(ids.len() <= 10, "the links do not end: {ids:?}");
    }
    ids
}

#[test]
fn every_route_answers_through_nginx_under_a_prefix() {
    let server = Server::start(&SLOW);
    let mut nginx = Nginx::start(server.port);
    let mut conn = nginx.connect();
    for title in ["a", "b", "c"] {
        let created = expect(
            &nginx,
            conn.post_json("/api/tasks", &json!({ "title": title }).to_string()),
            201,
            "POST",
        );
        assert_eq!(created.json()["title"], title);
    }
    let one = expect(&nginx, conn.get("/api/tasks/1"), 200, "GET /api/tasks/1");
    assert_eq!(one.json()["id"], 1);
    assert_eq!(list_by_links(&nginx, &mut conn), [1, 2, 3]);
    let head = expect(&nginx, conn.request("HEAD", "/api/tasks/1", &[], b""), 200, "HEAD");
    assert!(head.body.is_empty(), "{head:?}");
    assert_eq!(
        expect(&nginx, conn.get("/api/healthz"), 200, "healthz").json(),
        json!({"status":"ok"})
    );
    assert_eq!(
        expect(&nginx, conn.get("/api/readyz"), 200, "readyz").json(),
        json!({"status":"ready"})
    );
    let metrics = expect(&nginx, conn.get("/api/metrics"), 200, "metrics").text();
    assert!(metrics.contains("worker_pool_http_requests_total{"), "{metrics}");
    let document = expect(&nginx, conn.get("/api/openapi.json"), 200, "openapi").json();
    assert_eq!(document["openapi"], "3.1.0");
    let missing = expect(&nginx, conn.get("/api/nope"), 404, "404");
    assert_eq!(missing.json(), json!({"error":"not found"}));
    let refused = expect(&nginx, conn.request("DELETE", "/api/tasks", &[], b""), 405, "405");
    assert_eq!(refused.header("Allow"), Some("GET, HEAD, POST, OPTIONS"));
    nginx.stop();
}

/// What a browser sends along: a Referer, cookies and a dozen more.
fn browser_headers(origin: &str) -> Vec<(&'static str, String)> {
    let cookie = format!("session={}; theme=dark; consent=yes", "x".repeat(200));
    vec![
        ("Host", origin.trim_start_matches("http://").to_owned()),
        ("Origin", origin.to_owned()),
        ("Referer", format!("{origin}/app/index.html?tab=tasks")),
        ("Cookie", cookie),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0".to_owned(),
        ),
        ("Accept", "application/json, text/plain, */*".to_owned()),
        ("Accept-Language", "en-GB,en;q=0.9,fr;q=0.8".to_owned()),
        ("Accept-Encoding", "gzip, deflate, br".to_owned()),
        ("Cache-Control", "no-cache".to_owned()),
        ("Pragma", "no-cache".to_owned()),
        ("Sec-Fetch-Site", "same-origin".to_owned()),
        ("Sec-Fetch-Mode", "cors".to_owned()),
        ("Sec-Fetch-Dest", "empty".to_owned()),
        ("Sec-CH-UA", r#""Chromium";v="120", "Not_A Brand";v="24""#.to_owned()),
        ("Sec-CH-UA-Mobile", "?0".to_owned()),
        ("Sec-CH-UA-Platform", r#""Linux""#.to_owned()),
        ("DNT", "1".to_owned()),
        ("Content-Type", "application/json".to_owned()),
    ]
}

#[test]
fn a_same_origin_page_with_many_headers_creates_and_a_foreign_one_cannot() {
    let server = Server::start(&SLOW);
    let mut nginx = Nginx::start(server.port);
    let mut conn = nginx.connect();
    let origin = format!("http://127.0.0.1:{}", nginx.port);
    let owned = browser_headers(&origin);
    let headers: Vec<(&str, &str)> = owned.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let created = expect(
        &nginx,
        conn.request("POST", "/api/tasks", &headers, br#"{"title":"mine"}"#),
        201,
        "same origin",
    );
    assert_eq!(created.json()["id"], 1);
    let read = expect(
        &nginx,
        conn.request("GET", "/api/tasks/1", &headers, b""),
        200,
        "GET with cookies",
    );
    assert_eq!(read.json()["title"], "mine");
    let foreign = [("Origin", "http://127.0.0.1:1"), ("Content-Type", "text/plain")];
    let refused = expect(
        &nginx,
        conn.request("POST", "/api/tasks", &foreign, br#"{"title":"csrf"}"#),
        403,
        "foreign",
    );
    assert_eq!(refused.json(), json!({"error":"origin not allowed"}));
    let listed = expect(&nginx, conn.get("/api/tasks"), 200, "list");
    assert_eq!(listed.json().as_array().map(Vec::len), Some(1), "{listed:?}");
    nginx.stop();
}
