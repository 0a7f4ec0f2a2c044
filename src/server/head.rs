//! What a request's line and headers say about how it is framed and how its
//! connection goes on (RFC 9112): the one place that decides where a
//! request's body ends, whether the connection stays open, and which
//! requests are refused before any handler sees them.

use std::mem::MaybeUninit;

use httparse::{Header, Status};

use crate::server::MAX_HEADER_LINES;

/// A request the server answers itself, with the status and message of its
/// JSON error; every one but a timeout ends the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request line or a header line is not HTTP/1.x.
    MalformedHead,
    /// The request line and headers exceed `MAX_HEADER_BYTES`.
    HeadTooLarge,
    /// More than [`MAX_HEADER_LINES`] header lines.
    TooManyHeaders,
    /// The head did not arrive within `HEADER_TIMEOUT` of its first byte.
    HeadTimeout,
    /// `Content-Length` is not a decimal number of bytes.
    InvalidContentLength,
    /// Several `Content-Length` lines disagree.
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: the length is ambiguous.
    LengthAndTransferEncoding,
    /// A transfer coding other than a single `chunked`.
    UnsupportedTransferCoding,
    /// A chunked body that does not follow the chunked syntax.
    MalformedChunkedBody,
    /// An HTTP/1.1 request without exactly one `Host`.
    BadHost,
    /// An `Expect` other than `100-continue`.
    UnsupportedExpectation,
    /// The body is longer than `MAX_BODY_BYTES`.
    BodyTooLarge,
    /// `MAX_CONNECTIONS` connections are open.
    TooManyConnections,
    /// `MAX_CONNECTIONS_PER_CLIENT` connections from this address are open.
    TooManyClientConnections,
    /// The process has no file descriptor left for the connection.
    OutOfDescriptors,
    /// The handler panicked; the connection's state cannot be trusted.
    HandlerFailed,
}

impl Refusal {
    /// The status code of the answer.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedHead
            | Self::InvalidContentLength
            | Self::ConflictingContentLength
            | Self::LengthAndTransferEncoding
            | Self::UnsupportedTransferCoding
            | Self::MalformedChunkedBody
            | Self::BadHost => 400,
            Self::HeadTimeout => 408,
            Self::BodyTooLarge => 413,
            Self::UnsupportedExpectation => 417,
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::HandlerFailed => 500,
            Self::TooManyConnections | Self::TooManyClientConnections | Self::OutOfDescriptors => 503,
        }
    }

    /// The `error` message of the answer.
    pub fn message(self) -> &'static str {
        match self {
            Self::MalformedHead => "malformed request line or header",
            Self::HeadTooLarge => "request header block too large",
            Self::TooManyHeaders => "too many header lines",
            Self::HeadTimeout => "request headers not received in time",
            Self::InvalidContentLength => "invalid Content-Length header",
            Self::ConflictingContentLength => "conflicting Content-Length headers",
            Self::LengthAndTransferEncoding => "both Content-Length and Transfer-Encoding are set",
            Self::UnsupportedTransferCoding => "only the chunked transfer coding is supported",
            Self::MalformedChunkedBody => "malformed chunked body",
            Self::BadHost => "an HTTP/1.1 request needs exactly one Host header",
            Self::UnsupportedExpectation => "only the expectation 100-continue is supported",
            Self::BodyTooLarge => "request body too large",
            Self::TooManyConnections => "too many open connections",
            Self::TooManyClientConnections => "too many open connections from this client",
            Self::OutOfDescriptors => "server out of file descriptors",
            Self::HandlerFailed => "internal server error",
        }
    }
}

/// How the body after the head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0 without `Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the server acts on in a request's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the request line and headers, with the blank line.
    pub len: usize,
    /// Where the body ends.
    pub framing: Framing,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// HTTP/1.0 keep-alive, which the answer must confirm.
    pub confirm_keep_alive: bool,
    /// The client waits for `100 Continue` before it sends its body.
    pub expects_continue: bool,
    /// A `HEAD` request: the answer has no body.
    pub is_head: bool,
}

/// Header lines parsed into slots on the stack; a head with more gets
/// slots on the heap. Most heads fit (browsers send 12 to 20 lines), and a
/// connection's stack, resident for as long as it is open, stays small.
const INLINE_HEADER_LINES: usize = 24;

/// Where one parse puts the headers it finds.
pub struct HeaderSlots<'b> {
    inline: [MaybeUninit<Header<'b>>; INLINE_HEADER_LINES],
    spilled: Vec<MaybeUninit<Header<'b>>>,
}

/// Empty header slots.
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    HeaderSlots {
        inline: [const { MaybeUninit::uninit() }; INLINE_HEADER_LINES],
        spilled: Vec::new(),
    }
}

/// Parses the head at the start of `buf`, with its length: `Ok(None)`
/// while it is incomplete.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
) -> Result<Option<(httparse::Request<'h, 'b>, usize)>, Refusal> {
    match parse_into(buf, &mut slots.inline) {
        Err(Refusal::TooManyHeaders) => {
            slots.spilled.resize_with(MAX_HEADER_LINES, MaybeUninit::uninit);
            parse_into(buf, &mut slots.spilled)
        }
        parsed => parsed,
    }
}

fn parse_into<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<Option<(httparse::Request<'h, 'b>, usize)>, Refusal> {
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(buf, slots) {
        Ok(Status::Complete(len)) => Ok(Some((request, len))),
        Ok(Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::TooManyHeaders),
        Err(_) => Err(Refusal::MalformedHead),
    }
}

/// Reads the framing and connection semantics of a parsed head of `len` bytes.
pub fn inspect(request: &httparse::Request<'_, '_>, len: usize) -> Result<Head, Refusal> {
    let http11 = request.version.unwrap_or(1) >= 1;
    let mut lengths = None;
    let mut transfer_encoding = None;
    let mut hosts = 0;
    let (mut close, mut keep_alive, mut expects_continue) = (false, false, false);
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_content_length(header.value).ok_or(Refusal::InvalidContentLength)?;
            if lengths.is_some_and(|seen| seen != length) {
                return Err(Refusal::ConflictingContentLength);
            }
            lengths = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() || !header.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Refusal::UnsupportedTransferCoding);
            }
            transfer_encoding = Some(());
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= has_token(header.value, b"close");
            keep_alive |= has_token(header.value, b"keep-alive");
        } else if name.eq_ignore_ascii_case("expect") {
            if !header.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                return Err(Refusal::UnsupportedExpectation);
            }
            expects_continue = http11;
        }
    }
    if http11 && hosts != 1 {
        return Err(Refusal::BadHost);
    }
    let framing = match (lengths, transfer_encoding) {
        (Some(_), Some(())) => return Err(Refusal::LengthAndTransferEncoding),
        (_, Some(())) if !http11 => return Err(Refusal::UnsupportedTransferCoding),
        (_, Some(())) => Framing::Chunked,
        (length, None) => Framing::Length(length.unwrap_or(0)),
    };
    let keep_alive = !close && (http11 || keep_alive);
    Ok(Head {
        len,
        framing,
        keep_alive,
        confirm_keep_alive: keep_alive && !http11,
        expects_continue: expects_continue && framing != Framing::Length(0),
        is_head: request.method == Some("HEAD"),
    })
}

/// `Content-Length = 1*DIGIT`, surrounding white space allowed; no sign, no
/// list, and small enough to count.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, digit| n * 10 + u64::from(digit - b'0')))
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Head, Refusal> {
        let mut slots = header_slots();
        let (request, len) = parse(raw.as_bytes(), &mut slots)?.expect("a complete head");
        assert_eq!(len, raw.len());
        inspect(&request, len)
    }

    fn get(lines: &str) -> Result<Head, Refusal> {
        head(&format!("GET / HTTP/1.1\r\nHost: h\r\n{lines}\r\n"))
    }

    #[test]
    fn a_plain_http11_request_keeps_alive_without_a_body() {
        let plain = get("").unwrap();
        assert_eq!(plain.framing, Framing::Length(0));
        assert!(plain.keep_alive && !plain.confirm_keep_alive && !plain.expects_continue && !plain.is_head);
        assert_eq!(plain.len, "GET / HTTP/1.1\r\nHost: h\r\n\r\n".len());
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        assert_eq!(get("Content-Length:  42 \r\n").unwrap().framing, Framing::Length(42));
        for bad in ["abc", "-1", "+5", "1.5", "5, 5", "0x10", "99999999999999999999"] {
            assert_eq!(
                get(&format!("Content-Length: {bad}\r\n")),
                Err(Refusal::InvalidContentLength),
                "{bad}"
            );
        }
        let same = get("Content-Length: 3\r\nContent-Length: 3\r\n").unwrap();
        assert_eq!(same.framing, Framing::Length(3));
        assert_eq!(
            get("Content-Length: 3\r\nContent-Length: 4\r\n"),
            Err(Refusal::ConflictingContentLength)
        );
    }

    #[test]
    fn chunked_is_the_one_transfer_coding() {
        assert_eq!(get("Transfer-Encoding: Chunked\r\n").unwrap().framing, Framing::Chunked);
        for bad in ["gzip", "gzip, chunked", "chunked, gzip", "identity"] {
            assert_eq!(
                get(&format!("Transfer-Encoding: {bad}\r\n")),
                Err(Refusal::UnsupportedTransferCoding),
                "{bad}"
            );
        }
        assert_eq!(
            get("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            Err(Refusal::UnsupportedTransferCoding)
        );
        assert_eq!(
            get("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"),
            Err(Refusal::LengthAndTransferEncoding)
        );
        assert_eq!(
            head("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Refusal::UnsupportedTransferCoding)
        );
    }

    #[test]
    fn http11_needs_exactly_one_host() {
        assert_eq!(head("GET / HTTP/1.1\r\n\r\n"), Err(Refusal::BadHost));
        assert_eq!(get("Host: again\r\n"), Err(Refusal::BadHost));
        assert!(head("GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn connection_semantics_follow_the_version_and_the_tokens() {
        assert!(!get("Connection: close\r\n").unwrap().keep_alive);
        assert!(!get("connection: Upgrade, Close\r\n").unwrap().keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        let kept = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(kept.keep_alive && kept.confirm_keep_alive);
    }

    #[test]
    fn expect_100_continue_is_noted_when_a_body_follows() {
        assert!(
            get("Expect: 100-Continue\r\nContent-Length: 2\r\n")
                .unwrap()
                .expects_continue
        );
        assert!(!get("Expect: 100-continue\r\n").unwrap().expects_continue);
        assert_eq!(get("Expect: something\r\n"), Err(Refusal::UnsupportedExpectation));
    }

    #[test]
    fn heads_over_the_line_limit_and_malformed_heads_are_refused() {
        let many: String = (0..MAX_HEADER_LINES).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(get(&many), Err(Refusal::TooManyHeaders));
        let most: String = (0..MAX_HEADER_LINES - 1).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(get(&most).is_ok());
        for bad in [
            "\x16\x03\x01\x02\x00\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /\0 HTTP/1.1\r\n\r\n",
            "\r\r\n\r\n",
        ] {
            let mut slots = header_slots();
            assert_eq!(
                parse(bad.as_bytes(), &mut slots).err(),
                Some(Refusal::MalformedHead),
                "{bad:?}"
            );
        }
    }
}
