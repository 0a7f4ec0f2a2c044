//! Test harness: runs the built `worker-pool` binary on a free port and talks
//! to it over real sockets.
//!
//! - [`Server`] starts the binary in an empty temporary directory (so no stray
//!   `.env` is read), optionally under a file descriptor limit, collects its
//!   log (stderr) line by line, reads its memory, CPU time and descriptors,
//!   sends it signals and kills it when dropped.
//! - [`Conn`] is a raw HTTP/1.1 client on one `TcpStream`: it sends arbitrary
//!   bytes and reads responses one at a time, so tests can pipeline, send
//!   broken requests and see when the server closes the connection.
//! - [`Response`] is one parsed answer, with [`Response::json`] for its body.
//!
//! Every wait has a deadline and fails with the server's log attached; no test
//! sleeps in place of synchronising.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::fmt;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use socket2::{Domain, Socket, Type};
use tempfile::TempDir;
use worker_pool::config::Config;

/// How long the server may take to accept connections after being spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Read and write timeout of every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for a log line.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for the process to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Every variable the server reads: its settings' and the log filter's.
/// Cleared from the inherited environment so only what a test passes is seen.
pub fn server_vars() -> Vec<String> {
    let mut vars = Config::variables();
    vars.push("RUST_LOG".to_owned());
    vars
}

/// The path of the built binary.
pub const BINARY: &str = env!("CARGO_BIN_EXE_worker-pool");

/// Runs the binary to completion with `args`, in `dir`, with `env` added to
/// a cleaned environment (as [`Server`] runs it); for the command line
/// itself: `--help`, `healthcheck`, refused settings.
pub fn run_binary(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BINARY);
    for name in server_vars() {
        command.env_remove(name);
    }
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output();
    output.expect("run the worker-pool binary")
}

/// A port nothing listens on right now: bind port 0, read it, let it go.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A fresh empty directory to run the server in.
pub fn empty_dir() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// Polls `check` every 25 ms until it returns `Some`, or panics after
/// `timeout` saying what was awaited.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------

/// The `worker-pool` binary running as a child process.
pub struct Server {
    child: Child,
    /// The port it was told to listen on (127.0.0.1).
    pub port: u16,
    log: Arc<Log>,
    /// The working directory; removed after the child is gone.
    dir: Option<TempDir>,
}

impl Server {
    /// Starts the server with `env` (pairs such as `("WORKERS", "1")`) in a
    /// fresh empty directory and waits until it accepts connections.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Self::start_in(empty_dir(), env)
    }

    /// As [`start`](Self::start), in `dir` (which may hold a `.env`).
    pub fn start_in(dir: TempDir, env: &[(&str, &str)]) -> Server {
        Self::start_with(dir, &[], env, None)
    }

    /// As [`start_in`](Self::start_in), with command-line `args`.
    pub fn start_with_args(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_with(dir, args, env, None)
    }

    /// As [`start`](Self::start), with at most `limit` open file descriptors
    /// (`RLIMIT_NOFILE`), to run the server out of them.
    pub fn start_with_fd_limit(env: &[(&str, &str)], limit: u64) -> Server {
        Self::start_with(empty_dir(), &[], env, Some(limit))
    }

    fn start_with(dir: TempDir, args: &[&str], env: &[(&str, &str)], fd_limit: Option<u64>) -> Server {
        let mut dir = dir;
        // The free port can be taken by someone else between our probe and
        // the server's bind: then try another one.
        for _attempt in 0..3 {
            let mut server = Self::spawn(dir, free_port(), args, env, fd_limit);
            match server.wait_ready() {
                Ok(()) => return server,
                Err(_) if server.log_text().contains("in use") => dir = server.into_dir(),
                Err(exited) => panic!(
                    "server exited before accepting connections ({exited})\n{}",
                    server.log_dump()
                ),
            }
        }
        panic!("no free port found in 3 attempts");
    }

    /// Spawns the server with `env` in a fresh empty directory on a free
    /// port, without waiting for it (for start-up failures).
    pub fn launch(env: &[(&str, &str)]) -> Server {
        Self::launch_in(empty_dir(), free_port(), env)
    }

    /// Spawns the server in `dir`, told to listen on 127.0.0.1:`port`, with
    /// `env` added to a cleaned environment. Does not wait for it.
    pub fn launch_in(dir: TempDir, port: u16, env: &[(&str, &str)]) -> Server {
        Self::launch_with_args(dir, port, &[], env)
    }

    /// As [`launch_in`](Self::launch_in), with command-line `args`.
    pub fn launch_with_args(dir: TempDir, port: u16, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn(dir, port, args, env, None)
    }

    fn spawn(dir: TempDir, port: u16, args: &[&str], env: &[(&str, &str)], fd_limit: Option<u64>) -> Server {
        let mut command = Command::new(BINARY);
        if let Some(limit) = fd_limit {
            limit_descriptors(&mut command, limit);
        }
        for name in server_vars() {
            command.env_remove(name);
        }
        command
            .args(args)
            .env("HTTP_HOST", "127.0.0.1")
            .env("HTTP_PORT", port.to_string())
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the worker-pool binary");
        let log = Log::collect(child.stderr.take().expect("piped stderr"));
        Server {
            child,
            port,
            log,
            dir: Some(dir),
        }
    }

    /// Waits until this server says it listens on its port (a connect alone
    /// could reach another test's server that took the same free port
    /// first); `Err` if the process exits before.
    fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let listening = format!("listening on 127.0.0.1:{}:", self.port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.log.wait_ended(LOG_TIMEOUT);
                return Err(status);
            }
            if self.log_text().contains(&listening) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "server not listening on port {} after {START_TIMEOUT:?}\n{}",
                    self.port,
                    self.log_dump()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Gives back the working directory of a server that has exited.
    fn into_dir(mut self) -> TempDir {
        let _ = self.child.wait();
        self.dir.take().expect("the directory is only taken here")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The working directory the server runs in.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("set until into_dir").path()
    }

    // --- process ------------------------------------------------------------

    /// The server's resident memory (`VmRSS` in /proc/PID/status), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/PID/status");
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .unwrap_or_else(|| panic!("no VmRSS in {status}"));
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().expect("VmRSS in kB");
        kib * 1024
    }

    /// How many file descriptors the server has open (/proc/PID/fd).
    pub fn open_descriptors(&self) -> usize {
        let entries = std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("read /proc/PID/fd");
        entries.count()
    }

    /// The CPU time the server has used (user + system, /proc/PID/stat).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("read /proc/PID/stat");
        // The fields after the command name, which is in parentheses: state
        // is field 3, utime field 14 and stime field 15.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("(comm)") + 2..].split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf only reads a system constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Duration::from_secs_f64(ticks as f64 / per_second as f64)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill only sends a signal to our own child; no memory is involved.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal}): {}", io::Error::last_os_error());
    }

    /// Waits up to `timeout` for the process to exit, then for the rest of
    /// its log; panics with the log if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.log.wait_ended(LOG_TIMEOUT);
                return status;
            }
            if Instant::now() >= deadline {
                panic!("server still running after {timeout:?}\n{}", self.log_dump());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("server exited unexpectedly ({status})\n{}", self.log_dump());
        }
    }

    // --- log ----------------------------------------------------------------

    /// Waits up to `timeout` for a log line containing `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_line(&[needle], timeout)
    }

    /// Waits up to `timeout` for a log line containing every one of
    /// `needles`; returns it. Fails at once if the log has ended without one.
    pub fn wait_for_log_line(&self, needles: &[&str], timeout: Duration) -> String {
        let found = self.log.wait_until(timeout, |state| {
            let line = state.lines.iter().find(|line| needles.iter().all(|n| line.contains(n)));
            match line {
                Some(line) => Some(Some(line.clone())),
                None if state.ended => Some(None),
                None => None,
            }
        });
        match found.flatten() {
            Some(line) => line,
            None => panic!(
                "no log line containing {needles:?} within {timeout:?}\n{}",
                self.log_dump()
            ),
        }
    }

    /// Every log line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.state.lock().unwrap().lines.clone()
    }

    /// The log so far as one text.
    pub fn log_text(&self) -> String {
        self.log_lines().join("\n")
    }

    /// The log, framed for a panic message.
    pub fn log_dump(&self) -> String {
        format!("--- server log ---\n{}\n--- end of log ---", self.log_text())
    }

    /// Index of the first log line containing `needle`; panics if none.
    pub fn log_position(&self, needle: &str) -> usize {
        let lines = self.log_lines();
        match lines.iter().position(|line| line.contains(needle)) {
            Some(index) => index,
            None => panic!("no log line containing {needle:?}\n{}", self.log_dump()),
        }
    }

    // --- HTTP ---------------------------------------------------------------

    /// A new connection to the server.
    pub fn connect(&self) -> Conn {
        Conn::open(self.port)
    }

    /// One request on a new connection.
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.connect().request(method, target, headers, body)
    }

    /// `GET target` on a new connection.
    pub fn get(&self, target: &str) -> Response {
        self.connect().get(target)
    }

    /// `POST target` with a JSON `body` on a new connection.
    pub fn post_json(&self, target: &str, body: &str) -> Response {
        self.connect().post_json(target, body)
    }

    /// Creates a task titled `title`, asserts 201 and returns its id.
    pub fn create_task(&self, title: &str) -> i64 {
        let response = self.post_json("/tasks", &serde_json::json!({ "title": title }).to_string());
        assert_eq!(
            response.status,
            201,
            "creating {title:?}: {response:?}\n{}",
            self.log_dump()
        );
        response.json()["id"].as_i64().expect("numeric id")
    }

    /// Waits until task `id` is in `status`, asking with `GET /tasks/{id}`.
    pub fn await_task_status(&self, id: i64, status: &str) {
        eventually(LOG_TIMEOUT, &format!("task {id} to be {status}"), || {
            (self.get(&format!("/tasks/{id}")).json()["status"] == status).then_some(())
        });
    }
}

/// Makes `command` run with at most `limit` open file descriptors.
fn limit_descriptors(command: &mut Command, limit: u64) {
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: the closure runs in the child between fork and exec, and only
    // calls setrlimit, which is async-signal-safe, on a value it owns.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The server's stderr, collected line by line by a reader thread.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    /// The pipe reached end-of-file: the process has exited.
    ended: bool,
}

impl Log {
    fn collect(stderr: ChildStderr) -> Arc<Log> {
        let log = Arc::new(Log::default());
        let writer = log.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                writer.state.lock().unwrap().lines.push(text);
                writer.changed.notify_all();
                line.clear();
            }
            writer.state.lock().unwrap().ended = true;
            writer.changed.notify_all();
        });
        log
    }

    /// Waits up to `timeout` for `check` to return `Some`; `None` on timeout.
    fn wait_until<T>(&self, timeout: Duration, mut check: impl FnMut(&LogState) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(value) = check(&state) {
                return Some(value);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    fn wait_ended(&self, timeout: Duration) {
        self.wait_until(timeout, |state| state.ended.then_some(()));
    }
}

// ---------------------------------------------------------------------------
// The raw HTTP/1.1 client
// ---------------------------------------------------------------------------

/// The bytes of one request. Adds `Host: localhost` unless `headers` has a
/// Host, and `Content-Length` when `body` is not empty and `headers` has no
/// Content-Length or Transfer-Encoding.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One client connection, reading responses from a buffer of what arrived.
pub struct Conn {
    stream: TcpStream,
    /// Bytes received and not yet parsed.
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to 127.0.0.1:`port` with [`IO_TIMEOUT`] on reads and writes.
    pub fn open(port: u16) -> Conn {
        Self::wrap(TcpStream::connect(("127.0.0.1", port)).expect("connect to the server"))
    }

    /// Connects to 127.0.0.1:`port` from the local address `from` (any
    /// 127.x.y.z is this host), as another client would.
    pub fn open_from(port: u16, from: IpAddr) -> Conn {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
        socket
            .bind(&SocketAddr::new(from, 0).into())
            .expect("bind the client address");
        let server = SocketAddr::from(([127, 0, 0, 1], port));
        socket.connect(&server.into()).expect("connect to the server");
        Self::wrap(socket.into())
    }

    fn wrap(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("write to the server");
    }

    /// Sends one request (see [`request_bytes`]) and reads its response.
    pub fn request(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.send(request_bytes(method, target, headers, body));
        if method == "HEAD" {
            self.read_head_response()
        } else {
            self.read_response()
        }
    }

    /// `GET target`.
    pub fn get(&mut self, target: &str) -> Response {
        self.request("GET", target, &[], b"")
    }

    /// `POST target` with a JSON `body`.
    pub fn post_json(&mut self, target: &str, body: &str) -> Response {
        self.request("POST", target, &[("Content-Type", "application/json")], body.as_bytes())
    }

    /// Reads one response; its body is as long as its `Content-Length` (none
    /// without one, as for `100 Continue`).
    pub fn read_response(&mut self) -> Response {
        self.read_one(true)
    }

    /// Reads the response to a `HEAD` request: headers only, whatever its
    /// `Content-Length` says.
    pub fn read_head_response(&mut self) -> Response {
        self.read_one(false)
    }

    /// Reads one response, or `None` if the connection closes, fails or
    /// times out first (for clients racing a server that exits).
    pub fn try_read_response(&mut self) -> Option<Response> {
        loop {
            if let Some(response) = Response::parse(&mut self.buf, true) {
                return Some(response);
            }
            if !matches!(self.fill(), Ok(n) if n > 0) {
                return None;
            }
        }
    }

    /// Reads `count` responses, in the order they arrive.
    pub fn read_responses(&mut self, count: usize) -> Vec<Response> {
        (0..count).map(|_| self.read_response()).collect()
    }

    /// Reads exactly `len` raw bytes.
    pub fn read_raw(&mut self, len: usize) -> Vec<u8> {
        while self.buf.len() < len {
            if self.fill().expect("read from the server") == 0 {
                panic!("connection closed after {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
        self.buf.drain(..len).collect()
    }

    /// The underlying stream, for writes that may fail on purpose.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads until one complete response has arrived or the server closed
    /// the connection, and returns what arrived unparsed.
    pub fn read_until_closed_or_answered(&mut self) -> Vec<u8> {
        while Response::parse(&mut self.buf.clone(), true).is_none() {
            match self.fill() {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Closes our sending side (the server reads end-of-file).
    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
    }

    /// Asserts that nothing more arrives and the server closes the
    /// connection (end-of-file or reset) within [`IO_TIMEOUT`].
    pub fn assert_closed(&mut self) {
        let rest = self.read_until_closed();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got more bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Reads until the server closes the connection and returns everything
    /// unparsed; panics if it is still open after [`IO_TIMEOUT`].
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => continue,
                Err(err) if matches!(err.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => break,
                Err(err) => panic!(
                    "connection not closed by the server ({err}); unread bytes: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Reads more bytes into the buffer; 0 at end-of-file.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn read_one(&mut self, with_body: bool) -> Response {
        loop {
            if let Some(response) = Response::parse(&mut self.buf, with_body) {
                return response;
            }
            match self.fill() {
                Ok(0) => panic!(
                    "connection closed before a complete response; received {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(err) => panic!(
                    "no complete response within {IO_TIMEOUT:?} ({err}); received {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }
}

/// One HTTP response.
pub struct Response {
    /// `HTTP/1.1` (or whatever the status line said).
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// In order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Takes one response off the front of `buf` if it is all there.
    pub fn parse(buf: &mut Vec<u8>, with_body: bool) -> Option<Response> {
        let head_end = buf.windows(4).position(|window| window == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts.next().and_then(|code| code.parse().ok());
        let status = status.unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad header line {line:?}"));
                (name.trim().to_owned(), value.trim().to_owned())
            })
            .collect();
        let length = match headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        {
            Some((_, value)) if with_body => value.parse().unwrap_or_else(|_| panic!("bad Content-Length {value:?}")),
            _ => 0,
        };
        let total = head_end + 4 + length;
        if buf.len() < total {
            return None;
        }
        let body = buf[head_end + 4..total].to_vec();
        buf.drain(..total);
        Some(Response {
            version,
            status,
            reason,
            headers,
            body,
        })
    }

    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON. Asserts what every JSON answer promises:
    /// `Content-Type: application/json` and a body ending in a newline.
    pub fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        assert_eq!(
            self.body.last(),
            Some(&b'\n'),
            "JSON body must end with a newline: {self:?}"
        );
        serde_json::from_slice(&self.body).unwrap_or_else(|err| panic!("body is not JSON ({err}): {self:?}"))
    }

    /// The `error` message of a JSON error body.
    pub fn error_message(&self) -> String {
        match self.json().get("error") {
            Some(Value::String(message)) => message.clone(),
            _ => panic!("no string \"error\" in {self:?}"),
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.version, self.status, self.reason)?;
        for (name, value) in &self.headers {
            write!(f, "\n  {name}: {value}")?;
        }
        write!(f, "\n  body: {:?}", self.text())
    }
}
