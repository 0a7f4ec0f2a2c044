//! A real browser: headless Chromium (Debian's `chromium`), driven by
//! `playwright-core` from `tests/browser/cors.mjs`, uses the API from a page
//! on another origin, allowed by `CORS_ALLOWED_ORIGINS`: a preflighted JSON
//! POST, a GET, the listing followed by its `Link` header; and a page on an
//! origin not allowed can neither read an answer nor create a task.
//!
//! Needs `/usr/bin/chromium` and `node` (the test fails, saying so, without
//! them; CI installs both) and installs `playwright-core`, pinned, into
//! `target/browser-test` with npm when it is not there.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{Server, eventually, free_port};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The `playwright-core` the driver runs on (`npm view playwright-core version`).
const PLAYWRIGHT_CORE: &str = "1.65.1";

/// Longest the driver may take: launching Chromium and a dozen requests.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(120);

/// Tasks stay pending: one worker, a minute of work each.
const SLOW: [(&str, &str); 3] = [("WORKERS", "1"), ("WORK_MIN_MS", "60000"), ("WORK_MAX_MS", "60000")];

fn project_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Fails unless Chromium and node are installed.
fn require_browser_and_node() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Chromium (Debian: apt-get install chromium); CI installs it"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|output| output.status.success()),
        "node is missing: install Node.js (Debian: apt-get install nodejs npm)"
    );
}

/// The directory holding `node_modules/playwright-core` at the pinned
/// version, installed with npm if it is not.
fn playwright_core() -> PathBuf {
    let dir = project_path("target/browser-test");
    let manifest = dir.join("node_modules/playwright-core/package.json");
    let installed = std::fs::read_to_string(&manifest).unwrap_or_default();
    if !installed.contains(&format!("\"version\": \"{PLAYWRIGHT_CORE}\"")) {
        let status = Command::new("npm")
            .args(["install", "--prefix"])
            .arg(&dir)
            .args(["--no-audit", "--no-fund", "--save-exact", "--silent"])
            .arg(format!("playwright-core@{PLAYWRIGHT_CORE}"))
            .stdin(Stdio::null())
            .status()
            .expect("run npm (install it with Node.js)");
        assert!(
            status.success(),
            "npm install playwright-core@{PLAYWRIGHT_CORE}: {status}"
        );
    }
    dir
}

/// A child process killed (and reaped) when dropped, so that a failing
/// test leaves no driver or browser behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the driver against `api` for a page on `page_port`; its exit status,
/// stdout and stderr. Fails the test past [`DRIVER_TIMEOUT`].
fn run_driver(api: &str, page_port: u16, modules: &Path) -> (ExitStatus, String, String) {
    let out = tempfile::tempdir().expect("create a temporary directory");
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let child = Command::new("node")
        .arg(project_path("tests/browser/cors.mjs"))
        .arg(api)
        .arg(page_port.to_string())
        .arg(modules)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("create stdout file"))
        .stderr(File::create(&stderr).expect("create stderr file"))
        .spawn()
        .expect("spawn node");
    let mut driver = KillOnDrop(child);
    let status = eventually(DRIVER_TIMEOUT, "the browser driver to finish", || {
        driver.0.try_wait().expect("try_wait")
    });
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    (status, read(&stdout), read(&stderr))
}

/// The count on the `worker_pool_http_requests_total` line with `labels`.
fn requests_counted(server: &Server, labels: &str) -> u64 {
    let page = server.get("/metrics").text();
    let prefix = format!("worker_pool_http_requests_total{{{labels}}} ");
    let line = page.lines().find_map(|line| line.strip_prefix(&prefix));
    line.map_or(0, |count| count.parse().expect("a count"))
}

#[test]
fn a_page_on_an_allowed_origin_uses_the_api_and_one_on_another_cannot() {
    require_browser_and_node();
    let modules = playwright_core();
    let page_port = free_port();
    let allowed = format!("http://127.0.0.1:{page_port}");
    let mut env = SLOW.to_vec();
    env.push(("CORS_ALLOWED_ORIGINS", &allowed));
    let server = Server::start(&env);
    let api = format!("http://127.0.0.1:{}", server.port);
    let (status, stdout, stderr) = run_driver(&api, page_port, &modules);
    assert!(
        status.success(),
        "the browser driver failed ({status})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
        server.log_dump()
    );
    // The foreign page's text/plain POST reached the server and was refused;
    // its JSON POST was stopped by the browser after the preflight.
    let tasks = server.get("/tasks").json();
    assert_eq!(tasks.as_array().map(Vec::len), Some(3), "{tasks}");
    let refused = requests_counted(&server, r#"method="POST",route="/tasks",code="403""#);
    assert_eq!(refused, 1);
    let preflights = requests_counted(&server, r#"method="OPTIONS",route="/tasks",code="204""#);
    assert!(preflights >= 2, "{preflights} preflights: one allowed, one not");
}
