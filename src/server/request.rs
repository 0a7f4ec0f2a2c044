//! What a handler reads: one request, borrowed from the connection's buffer.

use std::net::{IpAddr, Ipv4Addr};

use httparse::Header;

/// One HTTP request, complete with its body (decoded if it was chunked).
#[derive(Debug)]
pub struct Request<'a> {
    method: &'a str,
    target: &'a str,
    headers: &'a [Header<'a>],
    body: &'a [u8],
    peer: IpAddr,
}

impl<'a> Request<'a> {
    /// A request as the server hands it over; public so that handlers can be
    /// called without a socket, in tests and benchmarks.
    pub fn new(method: &'a str, target: &'a str, headers: &'a [Header<'a>], body: &'a [u8]) -> Self {
        Self::with_peer(method, target, headers, body, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// The same, from `peer`: what the server builds for each request,
    /// in one piece.
    pub fn with_peer(
        method: &'a str,
        target: &'a str,
        headers: &'a [Header<'a>],
        body: &'a [u8],
        peer: IpAddr,
    ) -> Self {
        Self {
            method,
            target,
            headers,
            body,
            peer,
        }
    }

    /// The method, as sent (`GET`, `POST`, ...).
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target, as sent: path and query, percent-escapes included.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The header lines, in the order sent.
    pub fn headers(&self) -> &'a [Header<'a>] {
        self.headers
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    }

    /// The body; empty when the request has none.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The client's address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }
}
