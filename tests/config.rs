//! Start-up configuration and the command line: invalid values stop the
//! process with exit code 2, a flag wins over the environment, which wins
//! over `.env` in the working directory; `--help` lists every setting, and
//! the README, `.env.example` and the load scripts list the same ones.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use common::{EXIT_TIMEOUT, LOG_TIMEOUT, Server, empty_dir, run_binary, server_vars};

/// Launches with `env`, expects exit code 2 and returns the log.
fn refused_config(env: &[(&str, &str)]) -> String {
    let mut server = Server::launch(env);
    let status = server.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(2), "{status}\n{}", server.log_dump());
    server.log_text()
}

#[test]
fn a_non_numeric_worker_count_exits_2_naming_it() {
    let log = refused_config(&[("WORKERS", "abc")]);
    assert!(log.contains("WORKERS") && log.contains("abc"), "{log}");
}

#[test]
fn a_zero_pool_size_exits_2() {
    let log = refused_config(&[("POOL_SIZE", "0")]);
    assert!(log.contains("POOL_SIZE"), "{log}");
}

#[test]
fn a_minimum_work_above_the_maximum_exits_2() {
    let log = refused_config(&[("WORK_MIN_MS", "300"), ("WORK_MAX_MS", "200")]);
    assert!(log.contains("WORK_MIN_MS"), "{log}");
}

#[test]
fn a_cors_origin_with_a_path_exits_2_naming_it() {
    let log = refused_config(&[("CORS_ALLOWED_ORIGINS", "http://localhost:3000,https://a.example/app")]);
    assert!(log.contains("CORS_ALLOWED_ORIGINS"), "{log}");
    assert!(log.contains("'https://a.example/app' is not one"), "{log}");
}

#[test]
fn a_port_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut server = Server::launch_in(empty_dir(), port, &[]);
    let status = server.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{status}\n{}", server.log_dump());
}

/// A `.env` for one worker, a queue of one and long work.
const DOT_ENV: &str = "WORKERS=1\nPOOL_SIZE=1\nWORK_MIN_MS=60000\nWORK_MAX_MS=60000\n";

/// Creates tasks until one is refused with 503; returns how many were accepted.
fn tasks_accepted_before_overflow(server: &Server) -> i64 {
    server.create_task("running");
    server.wait_for_log("task 1 started", LOG_TIMEOUT);
    for attempt in 2..=10 {
        let response = server.post_json("/tasks", r#"{"title":"queued"}"#);
        match response.status {
            201 => continue,
            503 => return attempt - 1,
            _ => panic!("unexpected answer {response:?}"),
        }
    }
    panic!("no overflow within 10 tasks\n{}", server.log_dump());
}

#[test]
fn the_dot_env_file_is_read() {
    let dir = empty_dir();
    std::fs::write(dir.path().join(".env"), DOT_ENV).unwrap();
    let server = Server::start_in(dir, &[]);
    // One running, one queued, the third refused.
    assert_eq!(tasks_accepted_before_overflow(&server), 2);
}

#[test]
fn the_environment_wins_over_the_dot_env_file() {
    let dir = empty_dir();
    std::fs::write(dir.path().join(".env"), DOT_ENV).unwrap();
    let server = Server::start_in(dir, &[("POOL_SIZE", "3")]);
    // One running, three queued, the fifth refused.
    assert_eq!(tasks_accepted_before_overflow(&server), 4);
}

#[test]
fn a_flag_wins_over_the_environment_which_wins_over_the_dot_env_file() {
    let dir = empty_dir();
    std::fs::write(dir.path().join(".env"), "WORKERS=7\nPOOL_SIZE=1\n").unwrap();
    let env = [("WORKERS", "6"), ("POOL_SIZE", "3")];
    let server = Server::start_with_args(dir, &["--workers", "4"], &env);
    let page = server.get("/metrics").text();
    for line in ["worker_pool_workers 4", "worker_pool_queue_capacity 3"] {
        assert!(page.lines().any(|l| l == line), "{line} not in\n{page}");
    }
}

/// Runs the binary with `args` in an empty directory and a cleaned environment.
fn run(args: &[&str]) -> Output {
    run_binary(empty_dir().path(), args, &[])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_flag_value_exits_2_naming_the_flag_the_variable_and_the_value() {
    let output = run(&["--http-port", "70000"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let message = stderr(&output);
    assert!(message.contains("'70000' for '--http-port <HTTP_PORT>'"), "{message}");
    assert!(message.contains("1 to 65535"), "{message}");
}

#[test]
fn an_unknown_flag_exits_2_with_the_usage() {
    let output = run(&["--wrokers", "3"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let message = stderr(&output);
    assert!(message.contains("unexpected argument '--wrokers'"), "{message}");
    assert!(message.contains("Usage: worker-pool "), "{message}");
    assert!(
        message.contains("tip: a similar argument exists: '--workers'"),
        "{message}"
    );
}

#[test]
fn version_prints_the_crate_version() {
    let output = run(&["--version"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), format!("worker-pool {}\n", env!("CARGO_PKG_VERSION")));
}

/// `--help`, whitespace runs (its line wrapping) folded to single spaces.
fn help() -> String {
    let output = run(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    stdout(&output).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Each variable `--help` names, with the default it shows:
/// `[env: NAME=] [default: VALUE]`.
fn help_defaults(help: &str) -> BTreeMap<String, String> {
    let entries = help.split("[env: ").skip(1).map(|entry| {
        let (name, rest) = entry
            .split_once("=] [default: ")
            .unwrap_or_else(|| panic!("no default after [env: {entry}"));
        let (default, _) = rest.split_once(']').expect("] after the default");
        (name.to_owned(), default.to_owned())
    });
    entries.collect()
}

#[test]
fn help_lists_every_setting_with_its_flag_variable_and_default() {
    let help = help();
    let defaults = help_defaults(&help);
    assert_eq!(defaults.keys().cloned().collect::<BTreeSet<_>>(), variables());
    for name in server_vars().iter().filter(|name| *name != "RUST_LOG") {
        let flag = format!("--{} <{name}>", name.to_lowercase().replace('_', "-"));
        assert!(help.contains(&flag), "{flag} not in {help}");
    }
    assert_eq!(defaults["WORKERS"], "5");
    assert_eq!(defaults["RUST_LOG"], "info,may=warn");
    assert!(help.contains("healthcheck"), "{help}");
}

/// The variables every list must name: the settings, and the log filter.
fn variables() -> BTreeSet<String> {
    server_vars().into_iter().collect()
}

fn project_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// The rows of README's configuration table: variable and default, as written.
fn readme_table() -> BTreeMap<String, String> {
    let readme = project_file("README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("a Configuration section");
    let rows = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'));
    let cells = rows.skip(2).map(|row| {
        let cells: Vec<&str> = row.split('|').map(|cell| cell.trim().trim_matches('`')).collect();
        (cells[1].to_owned(), cells[2].to_owned())
    });
    cells.collect()
}

/// `NAME=value` lines of `.env.example`, commented out or not.
fn env_example() -> BTreeMap<String, String> {
    let text = project_file(".env.example");
    let assignments = text.lines().filter_map(|line| {
        let (name, value) = line.trim_start_matches(['#', ' ']).split_once('=')?;
        let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
        is_name.then(|| (name.to_owned(), value.to_owned()))
    });
    assignments.collect()
}

/// The variables the load scripts clear before starting a server.
fn load_script_variables() -> BTreeSet<String> {
    let script = project_file("benches/load/lib.sh");
    let list = script
        .split("WORKER_POOL_VARS=(")
        .nth(1)
        .expect("WORKER_POOL_VARS in lib.sh");
    let (list, _) = list.split_once(')').expect("the end of WORKER_POOL_VARS");
    list.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn readme_env_example_and_load_scripts_list_the_settings_help_lists_with_its_defaults() {
    let defaults = help_defaults(&help());
    let readme = readme_table();
    let example = env_example();
    let names = |map: &BTreeMap<String, String>| map.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(names(&readme), variables(), "README.md's configuration table");
    assert_eq!(names(&example), variables(), ".env.example");
    assert_eq!(
        load_script_variables(),
        variables(),
        "WORKER_POOL_VARS in benches/load/lib.sh"
    );
    // THREADS defaults to this machine's CPU count, which no file can show.
    for (name, default) in defaults.iter().filter(|(name, _)| *name != "THREADS") {
        assert_eq!(&readme[name], default, "README.md's default for {name}");
        assert_eq!(&example[name], default, ".env.example's value for {name}");
    }
}
