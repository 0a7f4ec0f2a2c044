//! What running the server under a container runtime and Prometheus relies
//! on, through the real binary: `worker-pool healthcheck` (the image's
//! `HEALTHCHECK`), a metrics page that Prometheus's own checker accepts, and
//! a Dockerfile whose files, settings and health check exist (no Docker
//! engine runs the tests, so its build is not).

mod common;

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Server, empty_dir, free_port, run_binary, server_vars};

/// Runs `worker-pool healthcheck` told the server is on `host`:`port`.
fn healthcheck(port: u16, host: &str) -> Output {
    let port = port.to_string();
    run_binary(
        empty_dir().path(),
        &["healthcheck"],
        &[("HTTP_HOST", host), ("HTTP_PORT", &port)],
    )
}

#[test]
fn healthcheck_exits_0_silently_while_the_server_runs() {
    let server = Server::start(&[]);
    for host in ["127.0.0.1", "0.0.0.0", "::"] {
        let output = healthcheck(server.port, host);
        assert_eq!(output.status.code(), Some(0), "HTTP_HOST={host}: {output:?}");
        assert!(output.stdout.is_empty() && output.stderr.is_empty(), "{output:?}");
    }
}

#[test]
fn healthcheck_takes_the_port_from_its_flag() {
    let server = Server::start(&[]);
    let port = server.port.to_string();
    let args = ["healthcheck", "--http-port", &port];
    let output = run_binary(empty_dir().path(), &args, &[("HTTP_PORT", "1")]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

#[test]
fn healthcheck_exits_1_with_one_line_when_nothing_listens() {
    let port = free_port();
    let output = healthcheck(port, "127.0.0.1");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}/healthz")), "{message}");
    assert!(output.stdout.is_empty(), "{output:?}");
}

/// Runs `promtool check metrics` on `page`: parse errors and lint problems
/// (names, suffixes, units, help) alike fail it. Fails, never skips, when
/// promtool is missing.
fn promtool_check(page: &str) -> Output {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            panic!("promtool is not on PATH: install it (apt-get install prometheus), as .ci/run does")
        }
        Err(err) => panic!("cannot run promtool: {err}"),
    };
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    child.wait_with_output().expect("wait for promtool")
}

#[test]
fn promtool_accepts_the_metrics_page() {
    let server = Server::start(&[("WORK_MIN_MS", "0"), ("WORK_MAX_MS", "0"), ("POOL_SIZE", "1")]);
    let id = server.create_task("observed");
    server.await_task_status(id, "done");
    assert_eq!(server.get("/nope").status, 404);
    let page = server.get("/metrics").text();
    for family in [
        "worker_pool_task_run_seconds_bucket",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(page.contains(family), "{family} not in\n{page}");
    }
    let checked = promtool_check(&page);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && report.is_empty(),
        "promtool: {checked:?}\n{report}\n{page}"
    );
    let broken = promtool_check("# TYPE jobs counter\njobs 1\n");
    assert!(
        !broken.status.success(),
        "promtool accepts a counter without _total: {broken:?}"
    );
}

fn project_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped:
/// (instruction, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = project_file("Dockerfile").replace("\\\n", " ");
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let instructions = lines.map(|line| {
        let (instruction, arguments) = line.split_once(' ').unwrap_or((line, ""));
        (
            instruction.to_uppercase(),
            arguments.split_whitespace().collect::<Vec<_>>().join(" "),
        )
    });
    instructions.collect()
}

fn arguments_of<'a>(instructions: &'a [(String, String)], wanted: &str) -> Vec<&'a str> {
    let found = instructions.iter().filter(|(instruction, _)| instruction == wanted);
    found.map(|(_, arguments)| arguments.as_str()).collect()
}

/// Whether `.dockerignore` keeps `path` out of the build context (its
/// entries here are names and `*.ext` patterns).
fn docker_ignores(path: &str) -> bool {
    let ignore = project_file(".dockerignore");
    let entries = ignore
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    entries
        .map(|entry| entry.trim_end_matches('/'))
        .any(|entry| match entry.strip_prefix('*') {
            Some(suffix) => !path.contains('/') && path.ends_with(suffix),
            None => path == entry || path.starts_with(&format!("{entry}/")),
        })
}

#[test]
fn the_dockerfile_copies_files_that_exist_and_are_in_the_build_context() {
    let instructions = dockerfile();
    let copies = arguments_of(&instructions, "COPY");
    let from_context = copies.iter().filter(|arguments| !arguments.starts_with("--from"));
    let mut sources = 0;
    for arguments in from_context {
        let words: Vec<&str> = arguments.split(' ').collect();
        for source in &words[..words.len() - 1] {
            let path = source.trim_end_matches('/');
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(path).exists(),
                "COPY {path}: no such file"
            );
            assert!(!docker_ignores(path), "COPY {path}, which .dockerignore leaves out");
            sources += 1;
        }
    }
    assert!(sources >= 3, "{copies:?}");
    assert!(docker_ignores("target") && docker_ignores(".env") && !docker_ignores("Cargo.toml"));
}

#[test]
fn the_images_health_check_runs_the_healthcheck_command_with_the_images_settings() {
    let instructions = dockerfile();
    let env_line = arguments_of(&instructions, "ENV").join(" ");
    let env: Vec<(&str, &str)> = env_line
        .split(' ')
        .map(|pair| pair.split_once('=').expect("NAME=value"))
        .collect();
    for (name, _) in &env {
        assert!(
            server_vars().iter().any(|known| known == name),
            "ENV {name} is no setting"
        );
    }
    let (_, shutdown) = env
        .iter()
        .find(|(name, _)| *name == "SHUTDOWN_TIMEOUT")
        .expect("ENV SHUTDOWN_TIMEOUT");
    assert!(
        shutdown.parse::<u64>().unwrap() < 10,
        "SHUTDOWN_TIMEOUT={shutdown}: docker stop kills after 10 s"
    );
    let healthcheck = arguments_of(&instructions, "HEALTHCHECK").join(" ");
    let (_, command) = healthcheck.split_once("CMD ").expect("HEALTHCHECK ... CMD");
    let command: Vec<String> = serde_json::from_str(command).expect("the exec (JSON) form: distroless has no shell");
    let entrypoint: Vec<String> = serde_json::from_str(arguments_of(&instructions, "ENTRYPOINT")[0]).unwrap();
    assert_eq!(command[0], entrypoint[0], "the health check runs the image's binary");
    assert!(arguments_of(&instructions, "USER").contains(&"nonroot"));
    // The image's settings, with the port of a running server.
    let server = Server::start(&[]);
    let port = server.port.to_string();
    let mut settings = env.clone();
    settings.push(("HTTP_PORT", &port));
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    let output = run_binary(empty_dir().path(), &args, &settings);
    assert_eq!(output.status.code(), Some(0), "{command:?}: {output:?}");
}
