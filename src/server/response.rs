//! What a handler writes, and how the server puts it on the wire: status
//! line with the standard reason phrase, `Date`, the handler's headers,
//! `Content-Length` and `Connection`, then the body unless the status or
//! the method says there is none.

use crate::server::date::LINE_LEN;
use crate::server::head::Refusal;

/// One answer being written by a handler.
#[derive(Debug)]
pub struct Response {
    status: u16,
    content_type: Option<&'static str>,
    /// Header lines, each ending in CRLF.
    headers: Vec<u8>,
    body: Vec<u8>,
    /// The handler parked before answering: see [`Response::set_delayed`].
    delayed: bool,
}

impl Default for Response {
    fn default() -> Self {
        Self {
            status: 200,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
            delayed: false,
        }
    }
}

impl Response {
    /// Sets the status code (200 until set).
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Sets the `Content-Type`: kept apart from the other headers because
    /// nearly every answer has one, and it is then written in one piece.
    pub fn set_content_type(&mut self, value: &'static str) {
        self.content_type = Some(value);
    }

    /// Adds a header line. The server writes `Date`, `Content-Length` and
    /// `Connection` itself.
    pub fn header(&mut self, name: &str, value: &str) {
        let headers = &mut self.headers;
        headers.reserve(name.len() + value.len() + 4);
        headers.extend_from_slice(name.as_bytes());
        headers.extend_from_slice(b": ");
        headers.extend_from_slice(value.as_bytes());
        headers.extend_from_slice(b"\r\n");
    }

    /// The value of the first header line named `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        if name.eq_ignore_ascii_case("content-type") {
            return self.content_type;
        }
        let text = std::str::from_utf8(&self.headers).ok()?;
        text.split("\r\n").find_map(|line| {
            let (line_name, value) = line.split_once(": ")?;
            line_name.eq_ignore_ascii_case(name).then_some(value)
        })
    }

    /// The body, to write into.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// The body written so far.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Tells the server that the handler parked (waited) before answering.
    /// The server reads the clock for `Date` once per batch of requests,
    /// before answering them; after a wait it reads it again, so the answer
    /// is dated when it was made, not when the wait began.
    pub fn set_delayed(&mut self) {
        self.delayed = true;
    }

    /// Whether [`set_delayed`](Self::set_delayed) was called.
    pub fn is_delayed(&self) -> bool {
        self.delayed
    }

    /// Its header and body buffers, for the pool that keeps them between
    /// requests.
    pub(crate) fn buffers_mut(&mut self) -> [&mut Vec<u8>; 2] {
        [&mut self.headers, &mut self.body]
    }

    /// Empties it for the next answer, keeping its buffers.
    pub fn clear(&mut self) {
        self.status = 200;
        self.content_type = None;
        self.headers.clear();
        self.body.clear();
        self.delayed = false;
    }

    /// Appends the answer to `out` as HTTP/1.1. `date` is the `Date` line;
    /// `without_body` is set for a HEAD request.
    ///
    /// Written for the common answer (200, JSON, no other header): one
    /// reservation of enough room, then each piece a copy whose length is
    /// known when compiling wherever it can be, so that most are a few moves
    /// rather than a call to `memcpy`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>, date: &[u8], without_body: bool, connection: ConnectionHeader) {
        let body_allowed = !matches!(self.status, 100..=199 | 204 | 304);
        let send_body = body_allowed && !without_body;
        let body: &[u8] = if send_body { &self.body } else { b"" };
        out.reserve(MAX_FIXED_HEAD + self.headers.len() + MAX_LENGTH_DIGITS + body.len());
        put_status_line(out, self.status);
        put_date(out, date);
        if self.content_type == Some(JSON) && self.headers.is_empty() && body_allowed {
            // The usual head, from here to the length, in one copy.
            out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        } else {
            self.put_content_type(out);
            out.extend_from_slice(&self.headers);
            if body_allowed {
                out.extend_from_slice(b"Content-Length: ");
            }
        }
        if body_allowed {
            put_length(out, self.body.len());
        }
        connection.put_end_of_head(out, body_allowed);
        out.extend_from_slice(body);
    }

    /// Appends the `Content-Type` line, if there is one.
    fn put_content_type(&self, out: &mut Vec<u8>) {
        match self.content_type {
            Some(JSON) => out.extend_from_slice(b"Content-Type: application/json\r\n"),
            Some(other) => {
                out.extend_from_slice(b"Content-Type: ");
                out.extend_from_slice(other.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            None => {}
        }
    }

    /// The body-less form of `encode` for tests.
    #[cfg(test)]
    fn encoded(&self, date: &[u8], without_body: bool, connection: ConnectionHeader) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out, date, without_body, connection);
        out
    }
}

/// The `Connection` line an answer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectionHeader {
    /// None: the HTTP/1.1 default, persistence.
    Default,
    /// `Connection: keep-alive`, confirming HTTP/1.0 persistence.
    KeepAlive,
    /// `Connection: close`: nothing follows this answer.
    Close,
}

impl ConnectionHeader {
    /// Appends the end of the head: the end of the `Content-Length` line if
    /// one was started, this header, and the blank line. Each arm copies a
    /// constant, which compiles to a few moves rather than a `memcpy` call.
    fn put_end_of_head(self, out: &mut Vec<u8>, after_length: bool) {
        match (self, after_length) {
            (Self::Default, true) => out.extend_from_slice(b"\r\n\r\n"),
            (Self::Default, false) => out.extend_from_slice(b"\r\n"),
            (Self::KeepAlive, true) => out.extend_from_slice(b"\r\nConnection: keep-alive\r\n\r\n"),
            (Self::KeepAlive, false) => out.extend_from_slice(b"Connection: keep-alive\r\n\r\n"),
            (Self::Close, true) => out.extend_from_slice(b"\r\nConnection: close\r\n\r\n"),
            (Self::Close, false) => out.extend_from_slice(b"Connection: close\r\n\r\n"),
        }
    }
}

/// The `Content-Type` of nearly every answer, written as one constant.
const JSON: &str = "application/json";

/// The most [`Response::encode`] writes besides the handler's headers, the
/// `Content-Length` digits and the body: the longest status line (46) and
/// `Connection` line (26), the `Date` line (37), a JSON `Content-Type`
/// line (32; a longer content type only costs the copy a second
/// reservation), and `Content-Length: ` with its CRLF (18).
const MAX_FIXED_HEAD: usize = 160;

/// The most digits a `Content-Length` has (`usize::MAX` on 64 bits).
const MAX_LENGTH_DIGITS: usize = 20;

/// Appends the `Content-Length` digits. A body under 1000 bytes (nearly
/// every answer of this API) takes one copy of a fixed size, a few moves;
/// itoa formats into a buffer of its own whose digits then take a `memcpy`
/// call of variable length (40 instructions fewer per answer, by
/// `benches/load/instructions.sh`).
fn put_length(out: &mut Vec<u8>, length: usize) {
    let digit = |value: usize| b'0' + (value % 10) as u8;
    match length {
        0..=9 => out.push(digit(length)),
        10..=99 => out.extend_from_slice(&[digit(length / 10), digit(length)]),
        100..=999 => out.extend_from_slice(&[digit(length / 100), digit(length / 10), digit(length)]),
        _ => out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes()),
    }
}

/// The complete answer to a refused request: a JSON error, closing the
/// connection. For answers the server writes before or without a handler.
pub(crate) fn refusal_bytes(refusal: Refusal) -> Vec<u8> {
    let mut out = Vec::new();
    let mut response = Response::default();
    write_refusal(&mut response, refusal);
    response.encode(&mut out, &crate::server::date::line(), false, ConnectionHeader::Close);
    out
}

/// Writes `refusal` as a `{"error": ...}` answer into `response`.
pub(crate) fn write_refusal(response: &mut Response, refusal: Refusal) {
    response.clear();
    response.set_status(refusal.status());
    response.set_content_type("application/json");
    let body = response.body_mut();
    body.extend_from_slice(b"{\"error\":\"");
    body.extend_from_slice(refusal.message().as_bytes());
    body.extend_from_slice(b"\"}\n");
}

fn put_status_line(out: &mut Vec<u8>, status: u16) {
    match status {
        200 => out.extend_from_slice(b"HTTP/1.1 200 OK\r\n"),
        201 => out.extend_from_slice(b"HTTP/1.1 201 Created\r\n"),
        _ => {
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
            out.push(b' ');
            out.extend_from_slice(reason(status).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Appends the `Date` line: as a fixed-size copy (a few moves) when it
/// has the length every line `date::line` makes has.
fn put_date(out: &mut Vec<u8>, date: &[u8]) {
    match <&[u8; LINE_LEN]>::try_from(date) {
        Ok(line) => out.extend_from_slice(line),
        Err(_) => out.extend_from_slice(date),
    }
}

/// The standard reason phrase of `status` (RFC 9110 section 15).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n";

    fn encoded(response: &Response, without_body: bool, connection: ConnectionHeader) -> String {
        String::from_utf8(response.encoded(DATE, without_body, connection)).unwrap()
    }

    fn json(status: u16, body: &str) -> Response {
        let mut response = Response::default();
        response.set_status(status);
        response.set_content_type("application/json");
        response.body_mut().extend_from_slice(body.as_bytes());
        response
    }

    #[test]
    fn an_answer_has_its_status_date_headers_length_and_body() {
        let text = encoded(&json(201, "{}\n"), false, ConnectionHeader::Default);
        assert_eq!(
            text,
            "HTTP/1.1 201 Created\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{}\n"
        );
        assert!(encoded(&json(200, ""), false, ConnectionHeader::Default).starts_with("HTTP/1.1 200 OK\r\n"));
    }

    /// `encode` as it was first written, piece by piece: the bytes the
    /// faster one must still produce.
    fn encoded_plainly(response: &Response, without_body: bool, connection: ConnectionHeader) -> Vec<u8> {
        let body_allowed = !matches!(response.status, 100..=199 | 204 | 304);
        let mut out = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status)).into_bytes();
        out.extend_from_slice(DATE);
        if let Some(content_type) = response.content_type {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        out.extend_from_slice(&response.headers);
        if body_allowed {
            out.extend_from_slice(format!("Content-Length: {}\r\n", response.body.len()).as_bytes());
        }
        out.extend_from_slice(match connection {
            ConnectionHeader::Default => b"",
            ConnectionHeader::KeepAlive => b"Connection: keep-alive\r\n",
            ConnectionHeader::Close => b"Connection: close\r\n",
        });
        out.extend_from_slice(b"\r\n");
        if body_allowed && !without_body {
            out.extend_from_slice(&response.body);
        }
        out
    }

    #[test]
    fn every_kind_of_answer_is_encoded_as_written_plainly() {
        let connections = [
            ConnectionHeader::Default,
            ConnectionHeader::KeepAlive,
            ConnectionHeader::Close,
        ];
        for status in [200, 201, 204, 304, 100, 404, 431, 503, 299, 999] {
            for content_type in [None, Some("application/json"), Some("text/plain; charset=utf-8")] {
                for headers in [
                    &[][..],
                    &[("Allow", "GET, HEAD")],
                    &[("Vary", "Origin"), ("Link", "<x>")],
                ] {
                    // Lengths on each side of every digit count `put_length` tells apart.
                    for body in [0, 3, 9, 10, 99, 100, 999, 1000, 12_345].map(|length| "x".repeat(length)) {
                        let mut response = Response::default();
                        response.set_status(status);
                        if let Some(content_type) = content_type {
                            response.set_content_type(content_type);
                        }
                        for (name, value) in headers {
                            response.header(name, value);
                        }
                        response.body_mut().extend_from_slice(body.as_bytes());
                        for connection in connections {
                            for without_body in [false, true] {
                                let mut out = b"earlier answer".to_vec();
                                response.encode(&mut out, DATE, without_body, connection);
                                let mut expected = b"earlier answer".to_vec();
                                expected.extend(encoded_plainly(&response, without_body, connection));
                                assert_eq!(
                                    String::from_utf8(out).unwrap(),
                                    String::from_utf8(expected).unwrap(),
                                    "{status} {content_type:?} {headers:?} {connection:?} {without_body}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_head_answer_has_the_length_of_the_body_it_omits() {
        let text = encoded(&json(200, "[1,2]\n"), true, ConnectionHeader::Close);
        assert!(
            text.ends_with("Content-Length: 6\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn statuses_without_a_body_have_neither_body_nor_length() {
        for status in [100, 204, 304] {
            let text = encoded(&json(status, "ignored"), false, ConnectionHeader::KeepAlive);
            assert!(!text.contains("Content-Length") && !text.contains("ignored"), "{text}");
            assert!(text.ends_with("Connection: keep-alive\r\n\r\n"), "{text}");
        }
    }

    #[test]
    fn refusals_are_json_errors_that_close() {
        let text = String::from_utf8(refusal_bytes(Refusal::HeadTooLarge)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        assert!(text.contains("Connection: close\r\n"));
        assert!(
            text.ends_with("\r\n\r\n{\"error\":\"request header block too large\"}\n"),
            "{text}"
        );
    }

    #[test]
    fn header_values_are_found_by_name() {
        let mut response = json(200, "");
        response.header("Link", "</tasks?after=2>; rel=\"next\"");
        assert_eq!(response.header_value("link"), Some("</tasks?after=2>; rel=\"next\""));
        assert_eq!(response.header_value("Allow"), None);
    }

    #[test]
    fn a_delay_is_noted_for_one_answer_only() {
        let mut response = json(200, "");
        assert!(!response.is_delayed());
        response.set_delayed();
        assert!(response.is_delayed());
        response.clear();
        assert!(
            !response.is_delayed(),
            "the next answer on the connection starts afresh"
        );
    }
}
