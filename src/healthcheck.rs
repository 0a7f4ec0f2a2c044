//! `worker-pool healthcheck`: asks the server on the configured host and
//! port for `GET /healthz`, for a container's `HEALTHCHECK` (a distroless
//! image has no shell and no curl). A plain `TcpStream` with one deadline;
//! no HTTP client.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use log::error;

use crate::config::Config;

/// How long the whole check may take: connect, send, read the status line.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The longest status line read before giving up on it.
const MAX_STATUS_LINE: usize = 1024;

/// Checks the server `config` describes: exit code 0 when it answers 200,
/// else 1 after logging one line saying why.
pub fn run(config: &Config) -> ExitCode {
    let addr = probe_address(config.http_host, config.http_port);
    match check(addr, TIMEOUT) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            error!("healthcheck: GET http://{addr}/healthz: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// Where to reach a server listening on `host`: an unspecified address
/// (0.0.0.0 or ::) listens on every interface, so the loopback one is asked.
pub fn probe_address(host: IpAddr, port: u16) -> SocketAddr {
    let host = if host.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host
    };
    SocketAddr::new(host, port)
}

/// Sends `GET /healthz` to `addr` and reads the status line, all within
/// `timeout`; `Ok` only for status 200.
pub fn check(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(time_left(deadline)?))?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let line = read_status_line(&mut stream, deadline)?;
    match line.split(' ').nth(1) {
        Some("200") => Ok(()),
        _ => Err(io::Error::other(format!("answered {line:?}"))),
    }
}

/// Reads up to the end of the first line, before `deadline`.
fn read_status_line(stream: &mut TcpStream, deadline: Instant) -> io::Result<String> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 256];
    while !received.contains(&b'\n') && received.len() < MAX_STATUS_LINE {
        stream.set_read_timeout(Some(time_left(deadline)?))?;
        match stream.read(&mut chunk)? {
            0 => break,
            n => received.extend_from_slice(&chunk[..n]),
        }
    }
    let line = received.split(|&byte| byte == b'\n').next().unwrap_or_default();
    match String::from_utf8_lossy(line).trim_end() {
        "" => Err(io::Error::new(ErrorKind::UnexpectedEof, "closed without an answer")),
        line => Ok(line.to_owned()),
    }
}

/// The time until `deadline`, or a timeout error once it has passed (a zero
/// socket timeout would mean none).
fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(ErrorKind::TimedOut, "timed out"));
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A one-shot server answering its first connection with `answer`;
    /// returns its address and the request it read.
    fn answering(answer: &'static [u8]) -> (SocketAddr, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let n = conn.read(&mut request).unwrap();
            conn.write_all(answer).unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (addr, server)
    }

    #[test]
    fn a_200_is_healthy_and_the_request_asks_for_healthz() {
        let (addr, server) = answering(b"HTTP/1.1 200 Ok\r\nContent-Length: 0\r\n\r\n");
        check(addr, TIMEOUT).unwrap();
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /healthz HTTP/1.1\r\n"), "{request}");
        assert!(request.contains(&format!("\r\nHost: {addr}\r\n")), "{request}");
    }

    #[test]
    fn any_other_status_is_unhealthy_and_named() {
        let (addr, server) = answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let failure = check(addr, TIMEOUT).unwrap_err();
        assert!(failure.to_string().contains("503 Service Unavailable"), "{failure}");
        server.join().unwrap();
    }

    #[test]
    fn a_closed_connection_is_unhealthy() {
        let (addr, server) = answering(b"");
        let failure = check(addr, TIMEOUT).unwrap_err();
        assert_eq!(failure.kind(), ErrorKind::UnexpectedEof, "{failure}");
        server.join().unwrap();
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        let failure = check(listener.local_addr().unwrap(), Duration::from_millis(200)).unwrap_err();
        assert!(
            matches!(failure.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock),
            "{failure}"
        );
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    }

    #[test]
    fn a_closed_port_is_unhealthy() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let failure = check(probe_address(IpAddr::from([127, 0, 0, 1]), port), TIMEOUT).unwrap_err();
        assert_eq!(failure.kind(), ErrorKind::ConnectionRefused, "{failure}");
    }

    #[test]
    fn an_unspecified_host_is_probed_on_loopback() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 80));
        assert_eq!(probe_address("0.0.0.0".parse().unwrap(), 80), loopback);
        assert_eq!(probe_address("::".parse().unwrap(), 80), loopback);
        let host: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(probe_address(host, 80), SocketAddr::new(host, 80));
    }
}
