//! The load clients of the reliability suite, `scripts/stress`: one
//! subcommand per experiment. The script starts the server, runs one of
//! these against it on 127.0.0.1, reads the server's `/proc` entries, and
//! decides PASS or FAIL from the figures each subcommand prints on its last
//! line of stdout as `key=value` pairs.
//!
//! ```text
//! cargo build --release --example stress
//! target/release/examples/stress --help
//! ```
//!
//! Every loop here is bounded in count or time, and every socket operation
//! by a timeout, so a client always ends by itself. Thousands of
//! connections are held by may coroutines (one scheduler thread, so the
//! client stays on the one CPU the script pins it to); the few clients that
//! measure latency are plain threads.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use may::sync::Semphore;

#[derive(Parser)]
#[command(about = "Load clients for scripts/stress (127.0.0.1 only)")]
struct Cli {
    #[command(subcommand)]
    command: Experiment,
}

#[derive(Subcommand)]
enum Experiment {
    /// Pipelined `POST /tasks` from several connections across a SIGTERM
    /// sent to `--pid`; writes the ids answered 201 to `--ids`.
    Shutdown(ShutdownArgs),
    /// Checks the ids a `shutdown` run was answered 201 against the server
    /// log: each must be logged done or named in the exit-1 line.
    ShutdownCheck(ShutdownCheckArgs),
    /// Connections dripping a request head one byte at a time, with probe
    /// clients measuring `GET /tasks/1` meanwhile.
    Slowloris(SlowlorisArgs),
    /// Idle keep-alive connections, each served one request first.
    Idle(IdleArgs),
    /// Creates tasks with pipelined `POST /tasks`.
    Create(CreateArgs),
    /// One kind of flood, with a probe of `/healthz` every 100 ms.
    Flood(FloodArgs),
    /// A seeded mutation fuzzer over raw requests, in batches of
    /// connections, with a `/healthz` check after every batch.
    Fuzz(FuzzArgs),
    /// Many connections at once against a server short of descriptors.
    Fd(FdArgs),
    /// Mixed load for a fixed time: reads, writes, lists, bad requests,
    /// new connections, pipelining and idle connections.
    Soak(SoakArgs),
}

fn main() {
    let cli = Cli::parse();
    // One scheduler thread, not pinned: the script pins the whole client
    // to one CPU with taskset.
    may::config().set_workers(1).set_stack_size(0x4000);
    may::config().set_worker_pin(false);
    let outcome = match cli.command {
        Experiment::Shutdown(args) => shutdown(&args),
        Experiment::ShutdownCheck(args) => shutdown_check(&args),
        Experiment::Slowloris(args) => slowloris(&args),
        Experiment::Idle(args) => idle(&args),
        Experiment::Create(args) => create(&args),
        Experiment::Flood(args) => flood(&args),
        Experiment::Fuzz(args) => fuzz(&args),
        Experiment::Fd(args) => fd(&args),
        Experiment::Soak(args) => soak(&args),
    };
    if let Err(err) = outcome {
        eprintln!("stress: {err}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// HTTP on raw sockets
// ---------------------------------------------------------------------------

/// The server's address: loopback only.
fn server(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const TASK_BODY: &[u8] = br#"{"title":"s","description":"d"}"#;

/// One HTTP/1.1 request; `extra` is header lines, each ending in CRLF.
fn request(method: &str, target: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}");
    if method == "POST" || !body.is_empty() {
        let _ = write!(
            head,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A request with a chunked body made of `pieces`.
fn chunked_request(target: &str, pieces: &[&[u8]]) -> Vec<u8> {
    let mut bytes =
        format!("POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for piece in pieces {
        bytes.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        bytes.extend_from_slice(piece);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\nTrailer: t\r\n\r\n");
    bytes
}

/// One answer (the server frames every answer with `Content-Length`).
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// Reads answers one at a time from a stream, keeping what follows.
#[derive(Default)]
struct AnswerReader {
    buf: Vec<u8>,
}

impl AnswerReader {
    /// The next answer; `None` if the stream ended cleanly between answers.
    fn next(&mut self, stream: &mut impl Read) -> io::Result<Option<Answer>> {
        loop {
            if let Some((answer, used)) = parse_answer(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(answer));
            }
            let filled = self.buf.len();
            self.buf.resize(filled + 16 * 1024, 0);
            let read = stream.read(&mut self.buf[filled..]);
            self.buf.truncate(filled + read.as_ref().map_or(0, |read| *read));
            match read? {
                0 if self.buf.is_empty() => return Ok(None),
                0 => return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed inside an answer")),
                _ => {}
            }
        }
    }
}

/// The first answer in `buf` and its length, once complete.
fn parse_answer(buf: &[u8]) -> io::Result<Option<(Answer, usize)>> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("not an HTTP answer: {err}"),
            ));
        }
    };
    let status = response.code.unwrap_or(0);
    let mut length = 0;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|value| value.trim().parse().ok())
                .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "an answer with a bad Content-Length"))?;
        }
    }
    if (100..200).contains(&status) {
        length = 0;
    }
    if buf.len() < head + length {
        return Ok(None);
    }
    let body = buf[head..head + length].to_vec();
    Ok(Some((Answer { status, body }, head + length)))
}

/// A blocking connection with read and write timeouts.
fn connect(port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&server(port), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends `bytes` on a new connection and reads one answer.
fn exchange(port: u16, bytes: &[u8], timeout: Duration) -> io::Result<Answer> {
    let mut stream = connect(port, timeout)?;
    stream.write_all(bytes)?;
    AnswerReader::default()
        .next(&mut stream)?
        .ok_or_else(|| io::Error::new(ErrorKind::UnexpectedEof, "closed without an answer"))
}

/// Whether an error is a read or write timeout (may reports `TimedOut`,
/// std `WouldBlock`).
fn timed_out(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

/// The status of the answer that `bytes` start with, if they do.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The `percent` percentile of samples in microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], percent: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((percent / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

/// Counts by key, printed `k:v,k:v`.
#[derive(Default)]
struct Histogram(BTreeMap<String, usize>);

impl Histogram {
    fn add(&mut self, key: impl ToString) {
        *self.0.entry(key.to_string()).or_default() += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (key, count) in &other.0 {
            *self.0.entry(key.clone()).or_default() += count;
        }
    }

    fn get(&self, key: &str) -> usize {
        self.0.get(key).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let items: Vec<String> = self.0.iter().map(|(key, count)| format!("{key}:{count}")).collect();
        f.write_str(&items.join(","))
    }
}

/// A small seeded generator (SplitMix64): the fuzzer and the soak repeat
/// their choices for a seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` above 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Sends `GET /healthz` every `interval` on a new connection while `stop`
/// is unset; the answers that failed or were not 200 within `timeout`.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<ProbeStats>,
}

#[derive(Default)]
struct ProbeStats {
    sent: usize,
    failed: usize,
    first_failure: Option<String>,
    latencies_us: Vec<u64>,
}

impl ProbeStats {
    fn record(&mut self, outcome: io::Result<u16>, took: Duration) {
        self.sent += 1;
        match outcome {
            Ok(200) => self.latencies_us.push(took.as_micros() as u64),
            Ok(status) => self.fail(format!("status {status}")),
            Err(err) => self.fail(err.to_string()),
        }
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        self.first_failure.get_or_insert(why);
    }

    fn merge(&mut self, other: ProbeStats) {
        self.sent += other.sent;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies_us.extend(other.latencies_us);
    }

    /// `probes=... probe_failures=... probe_p50_ms=... ...`
    fn figures(mut self) -> String {
        self.latencies_us.sort_unstable();
        format!(
            "probes={} probe_failures={} probe_p50_ms={:.2} probe_p99_ms={:.2} probe_max_ms={:.2} probe_first_failure={}",
            self.sent,
            self.failed,
            percentile_ms(&self.latencies_us, 50.0),
            percentile_ms(&self.latencies_us, 99.0),
            percentile_ms(&self.latencies_us, 100.0),
            self.first_failure.unwrap_or_else(|| "none".into()).replace(' ', "_"),
        )
    }
}

impl Prober {
    fn start(port: u16, interval: Duration, timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let healthz = request("GET", "/healthz", "", b"");
        let thread = thread::spawn(move || {
            let mut stats = ProbeStats::default();
            while !stopping.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = exchange(port, &healthz, timeout).map(|answer| answer.status);
                stats.record(outcome, started.elapsed());
                thread::sleep(interval.saturating_sub(started.elapsed()));
            }
            stats
        });
        Self { stop, thread }
    }

    fn finish(self) -> ProbeStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// shutdown
// ---------------------------------------------------------------------------

#[derive(Args)]
struct ShutdownArgs {
    #[arg(long)]
    port: u16,
    /// The server's process id, sent SIGTERM.
    #[arg(long)]
    pid: u32,
    /// Connections, each pipelining.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Requests per write.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Batches a connection may have written and not yet had answered.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// When the signal is sent, from the start of the flood.
    #[arg(long, default_value_t = 3000)]
    signal_after_ms: u64,
    /// How long the clients go on posting after the signal.
    #[arg(long, default_value_t = 2000)]
    post_after_signal_ms: u64,
    /// Where the ids answered 201 are written, one a line.
    #[arg(long)]
    ids: PathBuf,
}

#[derive(Default)]
struct ShutdownCounts {
    created: AtomicUsize,
    closed: AtomicUsize,
    full: AtomicUsize,
    other: AtomicUsize,
    stop: AtomicBool,
}

impl ShutdownCounts {
    fn answered(&self) -> usize {
        self.created.load(Ordering::Relaxed)
            + self.closed.load(Ordering::Relaxed)
            + self.full.load(Ordering::Relaxed)
            + self.other.load(Ordering::Relaxed)
    }
}

/// What one pipelining connection was answered.
#[derive(Default)]
struct Acknowledged {
    ids: Vec<i64>,
    other: Vec<String>,
}

/// One connection: a writer thread sends batches, never more than `window`
/// ahead of the reader thread, which takes the answers.
fn pipelining_client(args: &ShutdownArgs, counts: Arc<ShutdownCounts>) -> io::Result<thread::JoinHandle<Acknowledged>> {
    let mut reader = connect(args.port, Duration::from_secs(10))?;
    let mut writer = reader.try_clone()?;
    let batch = request("POST", "/tasks", "", TASK_BODY).repeat(args.batch);
    let (written, batches) = sync_channel::<()>(args.window);
    let stop = counts.clone();
    thread::spawn(move || {
        while !stop.stop.load(Ordering::Relaxed) {
            if writer.write_all(&batch).is_err() || written.send(()).is_err() {
                break;
            }
        }
    });
    let per_batch = args.batch;
    Ok(thread::spawn(move || {
        let mut answers = AnswerReader::default();
        let mut acknowledged = Acknowledged::default();
        for () in batches {
            for _ in 0..per_batch {
                let Ok(Some(answer)) = answers.next(&mut reader) else {
                    return acknowledged;
                };
                let body = answer.json();
                match (answer.status, body["error"].as_str()) {
                    (201, _) => {
                        if let Some(id) = body["id"].as_i64() {
                            acknowledged.ids.push(id);
                        }
                        counts.created.fetch_add(1, Ordering::Relaxed);
                    }
                    (503, Some("task pool is closed")) => {
                        counts.closed.fetch_add(1, Ordering::Relaxed);
                    }
                    (503, Some("task pool is full")) => {
                        counts.full.fetch_add(1, Ordering::Relaxed);
                    }
                    (status, _) => {
                        counts.other.fetch_add(1, Ordering::Relaxed);
                        acknowledged.other.push(format!("{status}"));
                    }
                }
            }
        }
        acknowledged
    }))
}

fn shutdown(args: &ShutdownArgs) -> io::Result<()> {
    let counts = Arc::new(ShutdownCounts::default());
    let clients = (0..args.clients)
        .map(|_| pipelining_client(args, counts.clone()))
        .collect::<io::Result<Vec<_>>>()?;
    let last = Duration::from_millis(500);
    thread::sleep(Duration::from_millis(args.signal_after_ms).saturating_sub(last));
    let before = counts.answered();
    thread::sleep(last);
    let answered_last_500ms = counts.answered() - before;
    let created_before_signal = counts.created.load(Ordering::Relaxed);
    let signalled_at = epoch_ms();
    let kill = Command::new("kill").args(["-TERM", &args.pid.to_string()]).status()?;
    if !kill.success() {
        return Err(io::Error::other(format!("kill -TERM {} failed", args.pid)));
    }
    thread::sleep(Duration::from_millis(args.post_after_signal_ms));
    counts.stop.store(true, Ordering::Relaxed);
    let mut ids = Vec::new();
    let mut other = Vec::new();
    for client in clients {
        let acknowledged = client.join().unwrap_or_default();
        ids.extend(acknowledged.ids);
        other.extend(acknowledged.other);
    }
    let mut listing = String::new();
    for id in &ids {
        let _ = writeln!(listing, "{id}");
    }
    fs::write(&args.ids, listing)?;
    println!(
        "acknowledged={} acknowledged_before_signal={} answered_in_last_500ms_before_signal={} \
         closed_503={} full_503={} other={} other_statuses={} signal_epoch_ms={signalled_at}",
        ids.len(),
        created_before_signal,
        answered_last_500ms,
        counts.closed.load(Ordering::Relaxed),
        counts.full.load(Ordering::Relaxed),
        other.len(),
        if other.is_empty() {
            "none".into()
        } else {
            other[..other.len().min(5)].join(",")
        },
    );
    Ok(())
}

#[derive(Args)]
struct ShutdownCheckArgs {
    /// The ids answered 201, one a line.
    #[arg(long)]
    ids: PathBuf,
    /// The server's log.
    #[arg(long)]
    log: PathBuf,
}

/// The ids in an exit-1 line: `... queued [2, 5-7], running [1]`.
fn named_unfinished(line: &str) -> HashSet<i64> {
    let mut ids = HashSet::new();
    for list in ["queued [", "running ["] {
        let Some(start) = line.find(list).map(|at| at + list.len()) else {
            continue;
        };
        let Some(end) = line[start..].find(']').map(|at| start + at) else {
            continue;
        };
        for item in line[start..end].split(", ").filter(|item| !item.is_empty()) {
            let (first, last) = item.split_once('-').unwrap_or((item, item));
            if let (Ok(first), Ok(last)) = (first.parse::<i64>(), last.parse::<i64>()) {
                ids.extend(first..=last);
            }
        }
    }
    ids
}

fn shutdown_check(args: &ShutdownCheckArgs) -> io::Result<()> {
    let acknowledged: Vec<i64> = fs::read_to_string(&args.ids)?
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    let log = fs::read_to_string(&args.log)?;
    let mut done = HashSet::new();
    let mut named = HashSet::new();
    for line in log.lines() {
        if let Some((before, _)) = line.split_once(" done in ")
            && let Some((_, id)) = before.rsplit_once("task ")
            && let Ok(id) = id.parse::<i64>()
        {
            done.insert(id);
        }
        if line.contains("not completed:") {
            named.extend(named_unfinished(line));
        }
    }
    let distinct: HashSet<i64> = acknowledged.iter().copied().collect();
    let mut lost: Vec<i64> = distinct
        .iter()
        .copied()
        .filter(|id| !done.contains(id) && !named.contains(id))
        .collect();
    lost.sort_unstable();
    let shown: Vec<String> = lost.iter().take(20).map(i64::to_string).collect();
    println!(
        "acknowledged={} duplicate_ids={} logged_done={} named_unfinished={} lost={} first_lost={}",
        acknowledged.len(),
        acknowledged.len() - distinct.len(),
        done.len(),
        named.len(),
        lost.len(),
        if shown.is_empty() {
            "none".into()
        } else {
            shown.join(",")
        },
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// slowloris
// ---------------------------------------------------------------------------

#[derive(Args)]
struct SlowlorisArgs {
    #[arg(long)]
    port: u16,
    /// Dripping connections.
    #[arg(long, default_value_t = 2000)]
    conns: usize,
    /// Time between two bytes of a head.
    #[arg(long, default_value_t = 500)]
    drip_ms: u64,
    /// Probe threads (half keep-alive, half a new connection per request).
    #[arg(long, default_value_t = 4)]
    probes: usize,
    /// Time between two requests of one probe thread.
    #[arg(long, default_value_t = 10)]
    probe_interval_ms: u64,
    /// Connections opening at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// A dripper still open this long after its first byte stops.
    #[arg(long, default_value_t = 20)]
    give_up_s: u64,
    /// Seconds the probes run alone first, for a baseline on this machine.
    #[arg(long, default_value_t = 3)]
    baseline_s: u64,
    /// Send a `POST /tasks` head whole and drip its body instead of a head.
    #[arg(long)]
    body: bool,
}

/// What a dripper sends before the bytes it drips: the start of a head
/// that never ends, or (`body`, sent at once) a whole head whose body
/// (`Content-Length` within the default `MAX_BODY_BYTES`) never ends.
fn drip_start(body: bool) -> &'static [u8] {
    if body {
        b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
    } else {
        b"GET /tasks/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: "
    }
}

/// How a dripping connection ended.
enum DripEnd {
    /// The server answered with this status and closed, this long after the first byte.
    Answered(u16, Duration),
    /// The server closed without an answer.
    ClosedSilently(Duration),
    /// Still open when the client gave up.
    StillOpen,
    ConnectFailed,
}

fn drip(
    port: u16,
    index: usize,
    args: (Duration, Duration, bool),
    connecting: &Semphore,
    connected: &AtomicUsize,
) -> DripEnd {
    let (interval, give_up, body) = args;
    connecting.wait();
    let stream = may::net::TcpStream::connect(server(port));
    connecting.post();
    let Ok(mut stream) = stream else {
        return DripEnd::ConnectFailed;
    };
    connected.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_read_timeout(Some(interval));
    // Spread the drips over one interval.
    may::coroutine::sleep(interval.mul_f64((index % 100) as f64 / 100.0));
    let start = drip_start(body);
    let started = Instant::now();
    let mut sent = 0;
    if body {
        if stream.write_all(start).is_err() {
            return DripEnd::ClosedSilently(started.elapsed());
        }
        sent = start.len();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        if started.elapsed() > give_up {
            return DripEnd::StillOpen;
        }
        if got.is_empty() {
            let byte = start.get(sent).copied().unwrap_or(b'a');
            if stream.write_all(&[byte]).is_ok() {
                sent += 1;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => got.extend_from_slice(&buf[..read]),
            Err(err) if timed_out(&err) => {}
            Err(_) => break,
        }
    }
    match status_of(&got) {
        Some(status) => DripEnd::Answered(status, started.elapsed()),
        None => DripEnd::ClosedSilently(started.elapsed()),
    }
}

/// Requests `GET /tasks/1` every `interval` until `stop`; on one
/// keep-alive connection, or on a new connection each time.
fn probe_task(port: u16, keep_alive: bool, interval: Duration, stop: &AtomicBool) -> ProbeStats {
    let get = request("GET", "/tasks/1", "", b"");
    let timeout = Duration::from_secs(2);
    let mut stats = ProbeStats::default();
    let mut conn: Option<(TcpStream, AnswerReader)> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let outcome = (|| {
            if conn.is_none() || !keep_alive {
                conn = Some((connect(port, timeout)?, AnswerReader::default()));
            }
            let (stream, reader) = conn.as_mut().expect("just opened");
            stream.write_all(&get)?;
            match reader.next(stream)? {
                Some(answer) => Ok(answer.status),
                None => Err(io::Error::new(ErrorKind::UnexpectedEof, "closed without an answer")),
            }
        })();
        if outcome.is_err() {
            conn = None;
        }
        stats.record(outcome, started.elapsed());
        thread::sleep(interval.saturating_sub(started.elapsed()));
    }
    stats
}

/// Creates one task, so that `GET /tasks/1` finds it.
fn create_task_1(port: u16) -> io::Result<()> {
    let answer = exchange(port, &request("POST", "/tasks", "", TASK_BODY), Duration::from_secs(5))?;
    match answer.status {
        201 => Ok(()),
        status => Err(io::Error::other(format!("POST /tasks answered {status}"))),
    }
}

/// The server's `worker_pool_http_connections` gauge.
fn open_connections(port: u16) -> Option<usize> {
    let answer = exchange(port, &request("GET", "/metrics", "", b""), Duration::from_secs(2)).ok()?;
    let text = String::from_utf8(answer.body).ok()?;
    let line = text
        .lines()
        .find(|line| line.starts_with("worker_pool_http_connections "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts the probe threads; they run until `stop` is set.
fn run_probes(args: &SlowlorisArgs, stop: &Arc<AtomicBool>) -> Vec<thread::JoinHandle<ProbeStats>> {
    (0..args.probes)
        .map(|index| {
            let (port, stop) = (args.port, stop.clone());
            let interval = Duration::from_millis(args.probe_interval_ms);
            thread::spawn(move || probe_task(port, index % 2 == 0, interval, &stop))
        })
        .collect()
}

fn join_probes(probes: Vec<thread::JoinHandle<ProbeStats>>) -> ProbeStats {
    let mut stats = ProbeStats::default();
    for probe in probes {
        stats.merge(probe.join().unwrap_or_default());
    }
    stats
}

fn slowloris(args: &SlowlorisArgs) -> io::Result<()> {
    create_task_1(args.port)?;
    let alone = Arc::new(AtomicBool::new(false));
    let probes = run_probes(args, &alone);
    thread::sleep(Duration::from_secs(args.baseline_s));
    alone.store(true, Ordering::Relaxed);
    let mut baseline = join_probes(probes);
    baseline.latencies_us.sort_unstable();
    let connecting = Arc::new(Semphore::new(args.concurrency));
    let connected = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let timing = (
        Duration::from_millis(args.drip_ms),
        Duration::from_secs(args.give_up_s),
        args.body,
    );
    let started = Instant::now();
    let drippers: Vec<_> = (0..args.conns)
        .map(|index| {
            let (port, connecting, connected, finished) =
                (args.port, connecting.clone(), connected.clone(), finished.clone());
            may::go!(move || {
                let end = drip(port, index, timing, &connecting, &connected);
                finished.fetch_add(1, Ordering::Relaxed);
                end
            })
        })
        .collect();
    let deadline = started + Duration::from_secs(30);
    while connected.load(Ordering::Relaxed) + finished.load(Ordering::Relaxed) < args.conns && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(10));
    }
    // Connected is not yet accepted: wait until the server holds them all
    // (its own gauge), so that the probes measure the dripping, not the
    // burst of accepts.
    while open_connections(args.port).is_some_and(|open| open < args.conns) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    // The probes run from when every dripper is open until every one is
    // closed: through the dripping and through the storm of 408s.
    let stop = Arc::new(AtomicBool::new(false));
    let probes = run_probes(args, &stop);
    let deadline = Instant::now() + timing.1 + Duration::from_secs(5);
    while finished.load(Ordering::Relaxed) < args.conns && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let probe_stats = join_probes(probes);
    let (mut statuses, mut silent, mut open, mut failed) = (Histogram::default(), 0, 0, 0);
    let (mut first_close, mut last_close) = (f64::INFINITY, 0.0f64);
    for dripper in drippers {
        let closed_after = match dripper.join() {
            Ok(DripEnd::Answered(status, after)) => {
                statuses.add(status);
                after
            }
            Ok(DripEnd::ClosedSilently(after)) => {
                silent += 1;
                after
            }
            Ok(DripEnd::StillOpen) => {
                open += 1;
                continue;
            }
            Ok(DripEnd::ConnectFailed) | Err(_) => {
                failed += 1;
                continue;
            }
        };
        first_close = first_close.min(closed_after.as_secs_f64());
        last_close = last_close.max(closed_after.as_secs_f64());
    }
    println!(
        "conns={} connected={} connect_failed={failed} connect_seconds={connect_seconds:.1} answered_408={} \
         statuses={statuses} closed_without_answer={silent} still_open={open} close_min_s={first_close:.2} \
         close_max_s={last_close:.2} baseline_probes={} baseline_p50_ms={:.2} baseline_p99_ms={:.2} \
         baseline_max_ms={:.2} {}",
        args.conns,
        connected.load(Ordering::Relaxed),
        statuses.get("408"),
        baseline.sent,
        percentile_ms(&baseline.latencies_us, 50.0),
        percentile_ms(&baseline.latencies_us, 99.0),
        percentile_ms(&baseline.latencies_us, 100.0),
        probe_stats.figures(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// idle
// ---------------------------------------------------------------------------

#[derive(Args)]
struct IdleArgs {
    #[arg(long)]
    port: u16,
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Connections opening (or waiting for their answer) at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// How long the connections are held once all are open.
    #[arg(long, default_value_t = 15)]
    hold_s: u64,
    /// Only connect, sending nothing (to tell what serving one request
    /// leaves behind from what a bare connection costs).
    #[arg(long)]
    no_request: bool,
}

/// Opens a connection, sends `GET path`, reads the answer within `timeout`.
fn open_served(port: u16, path: &str, timeout: Duration) -> io::Result<(may::net::TcpStream, u16)> {
    let mut stream = may::net::TcpStream::connect(server(port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&request("GET", path, "", b""))?;
    let answer = AnswerReader::default()
        .next(&mut stream)?
        .ok_or_else(|| io::Error::new(ErrorKind::UnexpectedEof, "closed without an answer"))?;
    Ok((stream, answer.status))
}

/// Blocks until the server closes `stream`.
fn hold(mut stream: may::net::TcpStream) {
    let _ = stream.set_read_timeout(None);
    let mut buf = [0u8; 256];
    while let Ok(read) = stream.read(&mut buf) {
        if read == 0 {
            break;
        }
    }
}

fn idle(args: &IdleArgs) -> io::Result<()> {
    let opening = Arc::new(Semphore::new(args.concurrency));
    let held = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Histogram::default()));
    let started = Instant::now();
    for _ in 0..args.conns {
        let no_request = args.no_request;
        let (port, opening, held, failed, closed, errors) = (
            args.port,
            opening.clone(),
            held.clone(),
            failed.clone(),
            closed.clone(),
            errors.clone(),
        );
        may::go!(move || {
            opening.wait();
            let opened = if no_request {
                may::net::TcpStream::connect(server(port)).map(|stream| (stream, 200))
            } else {
                open_served(port, "/tasks/1", Duration::from_secs(30))
            };
            opening.post();
            match opened {
                Ok((stream, 200)) => {
                    held.fetch_add(1, Ordering::Relaxed);
                    hold(stream);
                    closed.fetch_add(1, Ordering::Relaxed);
                }
                Ok((_, status)) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    errors.lock().unwrap().add(format!("status_{status}"));
                }
                Err(err) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    errors.lock().unwrap().add(format!("{:?}", err.kind()));
                }
            }
        });
    }
    let deadline = started + Duration::from_secs(180);
    while held.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < args.conns && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    println!(
        "ready held={} failed={} errors={} seconds={:.1}",
        held.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        errors.lock().unwrap(),
        started.elapsed().as_secs_f64()
    );
    io::stdout().flush()?;
    thread::sleep(Duration::from_secs(args.hold_s));
    println!(
        "done held={} closed_while_idle={}",
        held.load(Ordering::Relaxed),
        closed.load(Ordering::Relaxed)
    );
    io::stdout().flush()?;
    // The process's end closes every connection at once.
    std::process::exit(0);
}

// ---------------------------------------------------------------------------
// create, flood
// ---------------------------------------------------------------------------

#[derive(Args)]
struct CreateArgs {
    #[arg(long)]
    port: u16,
    #[arg(long, default_value_t = 10_000)]
    count: usize,
}

fn create(args: &CreateArgs) -> io::Result<()> {
    let mut stream = connect(args.port, Duration::from_secs(10))?;
    let mut reader = AnswerReader::default();
    let mut statuses = Histogram::default();
    let post = request("POST", "/tasks", "", TASK_BODY);
    let mut left = args.count;
    while left > 0 {
        let batch = left.min(100);
        stream.write_all(&post.repeat(batch))?;
        for _ in 0..batch {
            let answer = reader
                .next(&mut stream)?
                .ok_or_else(|| io::Error::new(ErrorKind::UnexpectedEof, "closed"))?;
            statuses.add(answer.status);
        }
        left -= batch;
    }
    println!("created={} statuses={statuses}", statuses.get("201"));
    Ok(())
}

#[derive(Args)]
struct FloodArgs {
    #[arg(long)]
    port: u16,
    #[arg(long, value_enum)]
    case: FloodCase,
    /// Connections at once.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The server's MAX_BODY_BYTES.
    #[arg(long, default_value_t = 65536)]
    max_body: usize,
    /// Pipelined requests of a never-reading client.
    #[arg(long, default_value_t = 300)]
    pipelined: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FloodCase {
    /// A header line that never ends (431 expected).
    Header,
    /// A chunked body of endless chunks (413 expected).
    Chunked,
    /// A chunk-size line whose extension never ends (400 expected).
    Extension,
    /// `Content-Length` at the maximum, the body sent slowly (no answer:
    /// held to the end).
    SlowBody,
    /// `Content-Length` or chunk sizes far past the maximum (400 or 413).
    HugeLength,
    /// `GET /tasks?limit=10000` pipelined, the answers never read.
    NeverRead,
}

/// What the connections of one flood case saw.
#[derive(Default)]
struct FloodStats {
    connections: usize,
    connect_failed: usize,
    statuses: Histogram,
    /// Still open, unanswered, when the case ended.
    held_to_end: usize,
    closed_without_answer: usize,
    max_sent: u64,
    requests_written: usize,
}

impl FloodStats {
    fn merge(&mut self, other: &FloodStats) {
        self.connections += other.connections;
        self.connect_failed += other.connect_failed;
        self.statuses.merge(&other.statuses);
        self.held_to_end += other.held_to_end;
        self.closed_without_answer += other.closed_without_answer;
        self.max_sent = self.max_sent.max(other.max_sent);
        self.requests_written += other.requests_written;
    }
}

/// How a streaming connection sends: `head`, then `piece` over and over,
/// `pace` apart, until answered or the case ends.
#[derive(Clone)]
struct Stream {
    head: Vec<u8>,
    piece: Vec<u8>,
    pace: Option<Duration>,
}

/// One connection of a streaming case; a writer coroutine sends while this
/// one reads.
fn stream_once(port: u16, plan: &Stream, deadline: Instant, stats: &mut FloodStats) {
    let Ok(mut stream) = may::net::TcpStream::connect(server(port)) else {
        stats.connect_failed += 1;
        may::coroutine::sleep(Duration::from_millis(10));
        return;
    };
    stats.connections += 1;
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let answered = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let (plan, stop, counted) = (plan.clone(), answered.clone(), sent.clone());
    let writing = may::go!(move || {
        let mut writer = writer;
        let _ = writer.set_write_timeout(Some(Duration::from_secs(1)));
        if writer.write_all(&plan.head).is_err() {
            return;
        }
        counted.fetch_add(plan.head.len() as u64, Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if writer.write_all(&plan.piece).is_err() {
                return;
            }
            counted.fetch_add(plan.piece.len() as u64, Ordering::Relaxed);
            if let Some(pace) = plan.pace {
                may::coroutine::sleep(pace);
            }
        }
    });
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let mut to_the_end = false;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => {
                got.extend_from_slice(&buf[..read]);
                answered.store(true, Ordering::Relaxed);
            }
            Err(err) if timed_out(&err) => {
                if Instant::now() >= deadline {
                    to_the_end = got.is_empty();
                    break;
                }
            }
            Err(_) => break,
        }
    }
    answered.store(true, Ordering::Relaxed);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = writing.join();
    stats.max_sent = stats.max_sent.max(sent.load(Ordering::Relaxed));
    match status_of(&got) {
        Some(status) => stats.statuses.add(status),
        None if to_the_end => stats.held_to_end += 1,
        None => stats.closed_without_answer += 1,
    }
}

/// One connection of the huge-length case: a head claiming far too much,
/// a few body bytes, and the answer.
fn huge_once(port: u16, head: &[u8], stats: &mut FloodStats) {
    let opened = may::net::TcpStream::connect(server(port));
    let Ok(mut stream) = opened else {
        stats.connect_failed += 1;
        return;
    };
    stats.connections += 1;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(3)));
    let _ = stream.write_all(head);
    let _ = stream.write_all(b"0123456789abcdef");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(read) = stream.read(&mut buf) {
        if read == 0 {
            break;
        }
        got.extend_from_slice(&buf[..read]);
    }
    match status_of(&got) {
        Some(status) => stats.statuses.add(status),
        None => stats.closed_without_answer += 1,
    }
}

fn huge_heads() -> Vec<Vec<u8>> {
    let length = |value: &str| {
        format!("POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {value}\r\n\r\n")
            .into_bytes()
    };
    let chunk = |size: &str| {
        format!("POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\n").into_bytes()
    };
    let mut heads: Vec<Vec<u8>> = [
        "65537",
        "1000000000",
        "999999999999999999",
        "9999999999999999999",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999",
    ]
    .into_iter()
    .map(length)
    .collect();
    heads.extend(
        ["10001", "FFFFFFFF", "FFFFFFFFFFFFFFFF", "FFFFFFFFFFFFFFFFFFFF"]
            .into_iter()
            .map(chunk),
    );
    heads
}

/// One connection of the never-reading case: pipelines the listings, then
/// holds the connection without reading until the case ends.
fn never_read_once(port: u16, pipelined: usize, deadline: Instant, stats: &mut FloodStats) {
    let Ok(mut stream) = may::net::TcpStream::connect(server(port)) else {
        stats.connect_failed += 1;
        return;
    };
    stats.connections += 1;
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let listing = request("GET", "/tasks?limit=10000", "", b"");
    if stream.write_all(&listing.repeat(pipelined)).is_ok() {
        stats.requests_written += pipelined;
    }
    may::coroutine::sleep(deadline.saturating_duration_since(Instant::now()));
    stats.held_to_end += 1;
}

fn flood(args: &FloodArgs) -> io::Result<()> {
    let prober = Prober::start(args.port, Duration::from_millis(100), Duration::from_secs(1));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let post_chunked = b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let plan = match args.case {
        FloodCase::Header => Some(Stream {
            head: b"GET /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ".to_vec(),
            piece: vec![b'a'; 4096],
            pace: None,
        }),
        FloodCase::Chunked => Some(Stream {
            head: post_chunked.to_vec(),
            piece: [b"1000\r\n".as_slice(), &[b'a'; 4096], b"\r\n"].concat(),
            pace: None,
        }),
        FloodCase::Extension => Some(Stream {
            head: [post_chunked.as_slice(), b"1;ext="].concat(),
            piece: vec![b'e'; 1024],
            pace: None,
        }),
        FloodCase::SlowBody => Some(Stream {
            head: format!(
                "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                args.max_body
            )
            .into_bytes(),
            piece: vec![b' '; 256],
            pace: Some(Duration::from_millis(250)),
        }),
        FloodCase::HugeLength | FloodCase::NeverRead => None,
    };
    let heads = Arc::new(huge_heads());
    let slots: Vec<_> = (0..args.conns)
        .map(|slot| {
            let (plan, heads, case, port, pipelined) =
                (plan.clone(), heads.clone(), args.case, args.port, args.pipelined);
            may::go!(move || {
                let mut stats = FloodStats::default();
                let mut round = slot;
                while Instant::now() < deadline {
                    match (&plan, case) {
                        (Some(plan), _) => stream_once(port, plan, deadline, &mut stats),
                        (None, FloodCase::HugeLength) => huge_once(port, &heads[round % heads.len()], &mut stats),
                        (None, _) => {
                            never_read_once(port, pipelined, deadline, &mut stats);
                            break;
                        }
                    }
                    round += 1;
                }
                stats
            })
        })
        .collect();
    let mut stats = FloodStats::default();
    for slot in slots {
        if let Ok(slot) = slot.join() {
            stats.merge(&slot);
        }
    }
    let probes = prober.finish();
    let expected: &[&str] = match args.case {
        FloodCase::Header => &["431"],
        FloodCase::Chunked => &["413"],
        FloodCase::Extension => &["400"],
        FloodCase::HugeLength => &["400", "413"],
        FloodCase::SlowBody | FloodCase::NeverRead => &[],
    };
    let answered_as_expected: usize = expected.iter().map(|status| stats.statuses.get(status)).sum();
    println!(
        "case={:?} seconds={:.1} connections={} connect_failed={} statuses={} expected={} unexpected={} \
         held_to_end={} closed_without_answer={} max_sent_kib={} requests_written={} {}",
        args.case,
        started.elapsed().as_secs_f64(),
        stats.connections,
        stats.connect_failed,
        stats.statuses,
        answered_as_expected + if expected.is_empty() { stats.held_to_end } else { 0 },
        stats.statuses.total() - answered_as_expected + stats.closed_without_answer,
        stats.held_to_end,
        stats.closed_without_answer,
        stats.max_sent / 1024,
        stats.requests_written,
        probes.figures(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// fuzz
// ---------------------------------------------------------------------------

#[derive(Args)]
struct FuzzArgs {
    #[arg(long)]
    port: u16,
    #[arg(long, default_value_t = 20_261_129)]
    seed: u64,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Connections per batch, all at once.
    #[arg(long, default_value_t = 32)]
    conns: usize,
    /// The time `/healthz` has to answer after each batch.
    #[arg(long, default_value_t = 1000)]
    healthz_timeout_ms: u64,
    /// A directory for the inputs of the last batch and of findings.
    #[arg(long)]
    save: Option<PathBuf>,
}

/// Valid requests, the fuzzer's starting points.
fn corpus() -> Vec<Vec<u8>> {
    let expect = br#"{"title":"expect"}"#;
    vec![
        request("GET", "/tasks/1", "", b""),
        request("GET", "/tasks/2", "Connection: keep-alive\r\n", b""),
        request("GET", "/tasks?limit=10&after=0&status=pending", "", b""),
        request("GET", "/tasks?limit=10000&status=failed", "", b""),
        request("POST", "/tasks", "", br#"{"title":"fuzz","description":"d"}"#),
        request(
            "POST",
            "/tasks",
            "",
            br#"{"title":"  x  ","description":null,"extra":[1,{"a":2}]}"#,
        ),
        chunked_request("/tasks", &[br#"{"title":"#, br#""chunked","description":"c"}"#]),
        b"HEAD /tasks/1 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        b"GET /readyz HTTP/1.0\r\n\r\n".to_vec(),
        request("GET", "/metrics", "", b""),
        request("GET", "/openapi.json", "", b""),
        [
            format!(
                "POST /tasks HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                expect.len()
            )
            .as_bytes(),
            expect,
        ]
        .concat(),
        request("DELETE", "/tasks/1", "", b""),
        request("GET", "/tasks/%31", "", b""),
        request("GET", "/nope", "Connection: close\r\n", b""),
    ]
}

const INTERESTING_BYTES: &[u8] = b"\0\r\n \t:;,\"\\/%?#=\x7f\x80\xff0-+";
const CONTENT_LENGTHS: &[&str] = &[
    "0",
    "1",
    "-1",
    "+5",
    " 7 ",
    "65536",
    "65537",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1, 1",
    "1,2",
    "0x10",
    "",
    "1e3",
    "5\0",
];
const TRANSFER_ENCODINGS: &[&str] = &[
    "chunked",
    "Chunked",
    "gzip",
    "chunked, chunked",
    "gzip, chunked",
    "identity",
    " chunked ",
    "chunked;q=1",
    "",
];
const HUGE_NUMBERS: &[&str] = &[
    "99999999999999999999",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "0000000000000000000000001",
    "FFFFFFFFFFFFFFFF",
    "1e308",
];
const LINE_ENDS: &[&[u8]] = &[b"\n", b"\r", b"\n\r", b"\r\r\n", b""];
const VERSIONS: &[&str] = &[
    "HTTP/1.0",
    "HTTP/2.0",
    "HTTP/0.9",
    "HTTP/1.10",
    "HTTP/1",
    "http/1.1",
    "HTTP/9.9",
    "",
];

/// Inserts a header line after the request line.
fn insert_header(bytes: &mut Vec<u8>, line: &str) {
    let at = find(bytes, b"\r\n").map_or(bytes.len(), |at| at + 2);
    bytes.splice(at..at, format!("{line}\r\n").into_bytes());
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Applies one to four random mutations to a request.
fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        let at = rng.below(len + 1);
        match rng.below(14) {
            0 if len > 0 => bytes[at.min(len - 1)] ^= 1 << rng.below(8),
            1 => bytes.insert(at, *rng.pick(INTERESTING_BYTES)),
            2 => bytes.insert(at, rng.next() as u8),
            3 if len > 0 => {
                let end = (at + 1 + rng.below(8)).min(len);
                bytes.drain(at.min(len - 1)..end);
            }
            4 => {
                // Duplicate one header line.
                let head_end = find(&bytes, b"\r\n\r\n").unwrap_or(len);
                let lines: Vec<usize> = (0..head_end)
                    .filter(|&i| bytes[i..].starts_with(b"\r\n"))
                    .map(|i| i + 2)
                    .collect();
                if lines.len() >= 2 {
                    let pick = rng.below(lines.len() - 1);
                    let line = bytes[lines[pick]..lines[pick + 1]].to_vec();
                    bytes.splice(lines[pick]..lines[pick], line);
                }
            }
            5 => insert_header(&mut bytes, &format!("Content-Length: {}", rng.pick(CONTENT_LENGTHS))),
            6 => insert_header(
                &mut bytes,
                &format!("Transfer-Encoding: {}", rng.pick(TRANSFER_ENCODINGS)),
            ),
            7 => {
                let count = 1 + rng.below(4);
                bytes.splice(at..at, std::iter::repeat_n(0u8, count));
            }
            8 => {
                // Replace a run of digits with a huge number.
                let digits: Vec<usize> = (0..len).filter(|&i| bytes[i].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    let start = *rng.pick(&digits);
                    let end = (start..len).find(|&i| !bytes[i].is_ascii_digit()).unwrap_or(len);
                    bytes.splice(start..end, rng.pick(HUGE_NUMBERS).bytes());
                }
            }
            9 => bytes.truncate(at),
            10 if len > 0 => {
                // Repeat a slice, up to a few KiB.
                let start = at.min(len - 1);
                let end = (start + 1 + rng.below(32)).min(len);
                let slice = bytes[start..end].to_vec();
                let times = 1 + rng.below(4096 / slice.len());
                bytes.splice(end..end, slice.repeat(times));
            }
            11 => {
                if let Some(line_end) = find(&bytes[at.min(len)..], b"\r\n").map(|i| i + at) {
                    let replacement = *rng.pick(LINE_ENDS);
                    bytes.splice(line_end..line_end + 2, replacement.iter().copied());
                }
            }
            12 => {
                if let Some(version) = find(&bytes, b"HTTP/1.") {
                    let end = (version + 8).min(len);
                    bytes.splice(version..end, rng.pick(VERSIONS).bytes());
                }
            }
            _ if len > 0 => bytes[at.min(len - 1)] = rng.next() as u8,
            _ => bytes.push(rng.next() as u8),
        }
    }
    bytes
}

/// What one fuzzed connection sent and saw.
#[derive(Default)]
struct FuzzStats {
    connections: usize,
    connect_failed: usize,
    requests: usize,
    bytes_sent: usize,
    statuses: Histogram,
    /// Connections that got bytes not starting with an HTTP/1.1 status line.
    malformed: usize,
    no_answer: usize,
    findings: Vec<(String, Vec<u8>)>,
}

impl FuzzStats {
    fn merge(&mut self, other: FuzzStats) {
        self.connections += other.connections;
        self.connect_failed += other.connect_failed;
        self.requests += other.requests;
        self.bytes_sent += other.bytes_sent;
        self.statuses.merge(&other.statuses);
        self.malformed += other.malformed;
        self.no_answer += other.no_answer;
        self.findings.extend(other.findings);
    }
}

/// The input one fuzzed connection sends: one to three requests, most of
/// them mutated, in one to six writes.
fn fuzz_input(rng: &mut Rng, corpus: &[Vec<u8>]) -> (Vec<Vec<u8>>, usize) {
    let requests = 1 + rng.below(3);
    let mut input = Vec::new();
    for _ in 0..requests {
        let base = rng.pick(corpus).clone();
        input.extend(if rng.chance(85) { mutate(rng, base) } else { base });
    }
    let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(input.len() + 1)).collect();
    cuts.push(0);
    cuts.push(input.len());
    cuts.sort_unstable();
    cuts.dedup();
    let pieces = cuts.windows(2).map(|pair| input[pair[0]..pair[1]].to_vec()).collect();
    (pieces, requests)
}

/// Sends `pieces` on one connection and reads what comes back: until the
/// server closes, or is quiet for 250 ms after answering, or 1 s passes.
fn fuzz_connection(port: u16, mut rng: Rng, pieces: &[Vec<u8>], requests: usize) -> FuzzStats {
    let mut stats = FuzzStats::default();
    let Ok(mut stream) = connect(port, Duration::from_secs(1)) else {
        stats.connect_failed += 1;
        return stats;
    };
    stats.connections += 1;
    stats.requests += requests;
    for piece in pieces {
        if stream.write_all(piece).is_err() {
            break;
        }
        stats.bytes_sent += piece.len();
        if rng.chance(30) {
            thread::sleep(Duration::from_millis(rng.below(20) as u64));
        }
    }
    if rng.chance(50) {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while started.elapsed() < Duration::from_millis(1000) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => got.extend_from_slice(&buf[..read]),
            Err(err) if timed_out(&err) && !got.is_empty() => break,
            Err(err) if timed_out(&err) => {}
            Err(_) => break,
        }
    }
    if got.is_empty() {
        stats.no_answer += 1;
        return stats;
    }
    if status_of(&got).is_none() {
        stats.malformed += 1;
        stats.findings.push(("malformed".into(), pieces.concat()));
        return stats;
    }
    // Answers start at the beginning or after a newline (every body ends
    // in one, and JSON escapes newlines inside strings).
    for at in 0..got.len() {
        if (at == 0 || got[at - 1] == b'\n')
            && let Some(status) = status_of(&got[at..])
        {
            stats.statuses.add(status);
            if status == 500 {
                stats.findings.push(("500".into(), pieces.concat()));
            }
        }
    }
    stats
}

fn fuzz(args: &FuzzArgs) -> io::Result<()> {
    let corpus = corpus();
    let healthz = request("GET", "/healthz", "", b"");
    let healthz_timeout = Duration::from_millis(args.healthz_timeout_ms);
    if let Some(dir) = &args.save {
        fs::create_dir_all(dir)?;
    }
    let mut rng = Rng::new(args.seed);
    let mut stats = FuzzStats::default();
    let (mut batches, mut healthz_failures, mut healthz_max) = (0, 0, Duration::ZERO);
    let mut first_healthz_failure = String::from("none");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        let inputs: Vec<_> = (0..args.conns).map(|_| fuzz_input(&mut rng, &corpus)).collect();
        if let Some(dir) = &args.save {
            save_batch(dir, &inputs)?;
        }
        let seeds: Vec<u64> = (0..args.conns).map(|_| rng.next()).collect();
        thread::scope(|scope| {
            let handles: Vec<_> = inputs
                .iter()
                .zip(&seeds)
                .map(|((pieces, requests), &seed)| {
                    scope.spawn(move || fuzz_connection(args.port, Rng::new(seed), pieces, *requests))
                })
                .collect();
            for handle in handles {
                if let Ok(connection) = handle.join() {
                    stats.merge(connection);
                }
            }
        });
        batches += 1;
        let asked = Instant::now();
        let health = exchange(args.port, &healthz, healthz_timeout);
        let took = asked.elapsed();
        healthz_max = healthz_max.max(took);
        match health {
            Ok(answer) if answer.status == 200 && took <= healthz_timeout => {}
            outcome => {
                healthz_failures += 1;
                first_healthz_failure = match outcome {
                    Ok(answer) => format!("batch_{batches}:status_{}_in_{:.0}ms", answer.status, millis(took)),
                    Err(err) => format!("batch_{batches}:{:?}", err.kind()),
                };
                // The server is gone or stuck: the inputs of this batch are saved.
                break;
            }
        }
    }
    if let Some(dir) = &args.save {
        for (index, (kind, input)) in stats.findings.iter().take(20).enumerate() {
            fs::write(dir.join(format!("finding-{index}-{kind}.bin")), input)?;
        }
    }
    let class = |prefix: char| {
        stats
            .statuses
            .0
            .iter()
            .filter(|(status, _)| status.starts_with(prefix))
            .map(|(_, count)| count)
            .sum::<usize>()
    };
    println!(
        "seed={} seconds={:.1} batches={batches} connections={} connect_failed={} requests={} bytes_sent={} \
         answers={} s1xx={} s2xx={} s4xx={} s5xx={} s500={} statuses={} malformed={} no_answer={} \
         healthz_failures={healthz_failures} healthz_max_ms={:.1} first_healthz_failure={first_healthz_failure}",
        args.seed,
        started.elapsed().as_secs_f64(),
        stats.connections,
        stats.connect_failed,
        stats.requests,
        stats.bytes_sent,
        stats.statuses.total(),
        class('1'),
        class('2'),
        class('4'),
        class('5'),
        stats.statuses.get("500"),
        stats.statuses,
        stats.malformed,
        stats.no_answer,
        millis(healthz_max),
    );
    Ok(())
}

/// Writes each connection's input of the batch about to run.
fn save_batch(dir: &Path, inputs: &[(Vec<Vec<u8>>, usize)]) -> io::Result<()> {
    for (index, (pieces, _)) in inputs.iter().enumerate() {
        fs::write(dir.join(format!("last-batch-{index:02}.bin")), pieces.concat())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// fd
// ---------------------------------------------------------------------------

#[derive(Args)]
struct FdArgs {
    #[arg(long)]
    port: u16,
    #[arg(long, default_value_t = 400)]
    conns: usize,
    /// How long a connection waits for its answer before it counts as waiting.
    #[arg(long, default_value_t = 3)]
    wait_s: u64,
    /// How long the connections are held once every one has its outcome.
    #[arg(long, default_value_t = 6)]
    hold_s: u64,
    /// New connections per second while holding, each expecting 503.
    #[arg(long, default_value_t = 20)]
    knock_per_s: u64,
}

fn fd(args: &FdArgs) -> io::Result<()> {
    let outcomes = Arc::new(Mutex::new(Histogram::default()));
    let started = Instant::now();
    for _ in 0..args.conns {
        let (port, outcomes, wait) = (args.port, outcomes.clone(), Duration::from_secs(args.wait_s));
        may::go!(move || {
            let opened = may::net::TcpStream::connect(server(port)).and_then(|mut stream| {
                stream.set_read_timeout(Some(wait))?;
                stream.write_all(&request("GET", "/healthz", "", b""))?;
                let answer = AnswerReader::default().next(&mut stream);
                Ok((stream, answer))
            });
            let (outcome, kept) = match opened {
                Ok((stream, Ok(Some(answer)))) if answer.status == 200 => ("held", Some(stream)),
                Ok((_, Ok(Some(answer)))) if answer.status == 503 => ("refused_503", None),
                Ok((_, Ok(Some(_)))) => ("other_status", None),
                Ok((_, Ok(None))) => ("closed_without_answer", None),
                Ok((stream, Err(err))) if timed_out(&err) => ("waiting", Some(stream)),
                Ok((_, Err(_))) => ("reset", None),
                Err(_) => ("connect_failed", None),
            };
            outcomes.lock().unwrap().add(outcome);
            if let Some(stream) = kept {
                hold(stream);
            }
        });
    }
    let deadline = started + Duration::from_secs(args.wait_s + 30);
    while outcomes.lock().unwrap().total() < args.conns && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    {
        let outcomes = outcomes.lock().unwrap();
        println!(
            "ready held={} refused_503={} waiting={} closed_without_answer={} reset={} connect_failed={} \
             other_status={} seconds={:.1}",
            outcomes.get("held"),
            outcomes.get("refused_503"),
            outcomes.get("waiting"),
            outcomes.get("closed_without_answer"),
            outcomes.get("reset"),
            outcomes.get("connect_failed"),
            outcomes.get("other_status"),
            started.elapsed().as_secs_f64(),
        );
    }
    io::stdout().flush()?;
    // Knock while the server is out of descriptors: each new client should
    // get its 503 at once.
    let mut knocks = Histogram::default();
    let holding = Instant::now();
    let interval = Duration::from_millis(1000 / args.knock_per_s.max(1));
    let healthz = request("GET", "/healthz", "", b"");
    while holding.elapsed() < Duration::from_secs(args.hold_s) {
        let asked = Instant::now();
        match exchange(args.port, &healthz, Duration::from_secs(1)) {
            Ok(answer) => knocks.add(answer.status),
            Err(err) if timed_out(&err) => knocks.add("waiting"),
            Err(err) => knocks.add(format!("{:?}", err.kind())),
        }
        thread::sleep(interval.saturating_sub(asked.elapsed()));
    }
    println!(
        "done knocks={} knock_503={} knock_outcomes={knocks}",
        knocks.total(),
        knocks.get("503")
    );
    io::stdout().flush()?;
    std::process::exit(0);
}

// ---------------------------------------------------------------------------
// soak
// ---------------------------------------------------------------------------

#[derive(Args)]
struct SoakArgs {
    #[arg(long)]
    port: u16,
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Client threads, each doing one operation at a time.
    #[arg(long, default_value_t = 6)]
    threads: usize,
    /// Pause between two operations of a thread.
    #[arg(long, default_value_t = 2)]
    pause_ms: u64,
    #[arg(long, default_value_t = 20_261_129)]
    seed: u64,
}

/// What the soak's threads did, by operation, and what went wrong.
#[derive(Default)]
struct SoakStats {
    ops: Histogram,
    errors: Histogram,
    first_error: Option<String>,
}

impl SoakStats {
    fn error(&mut self, op: &str, what: String) {
        self.errors.add(op);
        self.first_error.get_or_insert_with(|| format!("{op}:{what}"));
    }
}

/// Requests that every server refuses, each on a connection of its own.
const BAD_REQUESTS: &[&[u8]] = &[
    b"GARBAGE\r\n\r\n",
    b"GET /tasks HTTP/1.1\r\n\r\n",
    b"POST /tasks HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
    b"POST /tasks HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n",
    b"POST /tasks HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET /tasks HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n",
    b"POST /tasks HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
];

/// A keep-alive connection, opened again when it fails.
struct KeepAlive {
    port: u16,
    conn: Option<(TcpStream, AnswerReader)>,
}

impl KeepAlive {
    /// Sends `bytes` (holding `count` requests) and reads `count` answers.
    fn exchange(&mut self, bytes: &[u8], count: usize) -> io::Result<Vec<Answer>> {
        if self.conn.is_none() {
            self.conn = Some((connect(self.port, Duration::from_secs(5))?, AnswerReader::default()));
        }
        let (stream, reader) = self.conn.as_mut().expect("just opened");
        let outcome = (|| -> io::Result<Vec<Answer>> {
            stream.write_all(bytes)?;
            (0..count)
                .map(|_| {
                    reader
                        .next(stream)?
                        .ok_or_else(|| io::Error::new(ErrorKind::UnexpectedEof, "closed"))
                })
                .collect()
        })();
        if outcome.is_err() {
            self.conn = None;
        }
        outcome
    }
}

fn soak_thread(args: &SoakArgs, index: usize, highest_id: &AtomicI64) -> SoakStats {
    let mut rng = Rng::new(args.seed ^ ((index as u64) << 32));
    let mut stats = SoakStats::default();
    let mut keep = KeepAlive {
        port: args.port,
        conn: None,
    };
    let mut idle: VecDeque<(TcpStream, Instant)> = VecDeque::new();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let pause = Duration::from_millis(args.pause_ms);
    while Instant::now() < deadline {
        while idle.front().is_some_and(|(_, until)| *until <= Instant::now()) {
            idle.pop_front();
        }
        let id = 1 + rng.below(highest_id.load(Ordering::Relaxed).max(1) as usize);
        let roll = rng.below(100);
        let (op, outcome): (&str, io::Result<bool>) = match roll {
            0..40 => (
                "get",
                keep.exchange(&request("GET", &format!("/tasks/{id}"), "", b""), 1)
                    .map(|answers| matches!(answers[0].status, 200 | 404 | 410)),
            ),
            40..55 => (
                "post",
                keep.exchange(&request("POST", "/tasks", "", TASK_BODY), 1)
                    .map(|answers| {
                        let answer = &answers[0];
                        if let Some(id) = answer.json()["id"].as_i64() {
                            highest_id.fetch_max(id, Ordering::Relaxed);
                        }
                        matches!(answer.status, 201 | 503)
                    }),
            ),
            55..65 => (
                "list",
                keep.exchange(
                    &request("GET", &format!("/tasks?limit=100&after={}", id / 2), "", b""),
                    1,
                )
                .map(|answers| answers[0].status == 200),
            ),
            65..68 => (
                "bad",
                exchange(
                    args.port,
                    BAD_REQUESTS[rng.below(BAD_REQUESTS.len())],
                    Duration::from_secs(5),
                )
                .map(|answer| (400..500).contains(&answer.status)),
            ),
            68..78 => (
                "new_connection",
                exchange(
                    args.port,
                    &request("GET", "/healthz", "Connection: close\r\n", b""),
                    Duration::from_secs(5),
                )
                .map(|answer| answer.status == 200),
            ),
            78..81 => (
                "metrics",
                keep.exchange(&request("GET", "/metrics", "", b""), 1)
                    .map(|answers| answers[0].status == 200),
            ),
            81..83 => ("idle", {
                let opened = connect(args.port, Duration::from_secs(5)).and_then(|mut stream| {
                    stream.write_all(&request("GET", "/readyz", "", b""))?;
                    let answer = AnswerReader::default()
                        .next(&mut stream)?
                        .ok_or_else(|| io::Error::new(ErrorKind::UnexpectedEof, "closed"))?;
                    Ok((stream, answer.status))
                });
                opened.map(|(stream, status)| {
                    let held = Duration::from_millis(1000 + rng.below(20_000) as u64);
                    idle.push_back((stream, Instant::now() + held));
                    idle.make_contiguous().sort_by_key(|(_, until)| *until);
                    status == 200
                })
            }),
            _ => (
                "pipelined",
                keep.exchange(&request("GET", &format!("/tasks/{id}"), "", b"").repeat(8), 8)
                    .map(|answers| answers.iter().all(|answer| matches!(answer.status, 200 | 404 | 410))),
            ),
        };
        stats.ops.add(op);
        match outcome {
            Ok(true) => {}
            Ok(false) => stats.error(op, "unexpected_status".into()),
            Err(err) => stats.error(op, format!("{:?}", err.kind())),
        }
        thread::sleep(pause);
    }
    stats
}

fn soak(args: &SoakArgs) -> io::Result<()> {
    let highest_id = AtomicI64::new(0);
    let started = Instant::now();
    let mut total = SoakStats::default();
    thread::scope(|scope| {
        let threads: Vec<_> = (0..args.threads)
            .map(|index| {
                let highest_id = &highest_id;
                scope.spawn(move || soak_thread(args, index, highest_id))
            })
            .collect();
        for handle in threads {
            if let Ok(stats) = handle.join() {
                total.ops.merge(&stats.ops);
                total.errors.merge(&stats.errors);
                if total.first_error.is_none() {
                    total.first_error = stats.first_error;
                }
            }
        }
    });
    println!(
        "seconds={:.1} ops={} errors={} ops_by_kind={} errors_by_kind={} first_error={}",
        started.elapsed().as_secs_f64(),
        total.ops.total(),
        total.errors.total(),
        total.ops,
        total.errors,
        total.first_error.unwrap_or_else(|| "none".into()).replace(' ', "_"),
    );
    Ok(())
}
