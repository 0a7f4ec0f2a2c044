//! A request's line and headers, parsed (RFC 9112), and what they say
//! about how it is framed and how its connection goes on: the one place
//! that decides where a request's body ends, whether the connection stays
//! open, and which requests are refused before any handler sees them.
//!
//! The parser is the project's own: one pass reads the syntax and the
//! framing headers together, where httparse (which it replaced) needed a
//! second pass over the headers for framing. A property test holds it to
//! accepting exactly what httparse accepts.

use httparse::Header;
use smallvec::SmallVec;

use crate::server::MAX_HEADER_LINES;

/// A request the server answers itself, with the status and message of its
/// JSON error, after which it closes the connection.
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
    /// The body did not arrive within `BODY_TIMEOUT` of the end of the head.
    BodyTimeout,
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
            Self::HeadTimeout | Self::BodyTimeout => 408,
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
            Self::BodyTimeout => "request body not received in time",
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

/// Header lines kept on the stack; a head with more spills them to the
/// heap. Most heads fit (browsers send 12 to 20 lines), and a connection's
/// stack, resident for as long as it is open, stays small.
const INLINE_HEADER_LINES: usize = 24;

/// The header lines of one request, in the order sent.
pub type HeaderLines<'b> = SmallVec<[Header<'b>; INLINE_HEADER_LINES]>;

/// A complete request head, borrowed from the buffer it was read into;
/// its header lines are in the [`HeaderLines`] given to [`parse`] (kept
/// apart so that this stays small to move).
pub struct ParsedHead<'b> {
    /// The method, a token (`GET`, `POST`, ...).
    pub method: &'b str,
    /// The request target, as sent.
    pub target: &'b str,
    /// Bytes of the request line and headers, with the blank line.
    pub len: usize,
    /// What the head says about framing and the connection, or why the
    /// request is refused although its syntax is sound.
    pub head: Result<Head, Refusal>,
}

/// Parses the head at the start of `buf`, its header lines into `headers`
/// (emptied first): [`Stop::Incomplete`] while it is incomplete, and a
/// refusal as soon as a byte breaks the syntax of RFC 9112 (a bare LF ends
/// a line, as the RFC allows; leading blank lines are skipped). Syntax and
/// framing are read in one pass over the bytes. The scan's result is
/// returned as the scan makes it, with no second shape to convert to.
pub fn parse<'b>(buf: &'b [u8], headers: &mut HeaderLines<'b>) -> Result<ParsedHead<'b>, Stop> {
    headers.clear();
    Scanner { buf, at: 0 }.head(headers)
}

/// Why [`parse`] stopped before a complete head.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The buffer ends first.
    Incomplete,
    /// A byte breaks the syntax, or the head breaks a limit.
    Refused(Refusal),
}

impl Stop {
    /// The refusal of a head that should be whole: one that ends too
    /// early is malformed.
    pub fn of_whole_head(self) -> Refusal {
        match self {
            Stop::Incomplete => Refusal::MalformedHead,
            Stop::Refused(refusal) => refusal,
        }
    }
}

const MALFORMED: Stop = Stop::Refused(Refusal::MalformedHead);

/// Byte classes of the head's grammar, one bit each in [`CLASSES`].
const TCHAR: u8 = 1;
/// Bytes of a request target: visible ASCII, and bytes of UTF-8 text.
const TARGET: u8 = 2;
/// Bytes of a field value: visible ASCII, space, tab and obs-text.
const VALUE: u8 = 4;

/// The classes of every byte value.
static CLASSES: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut classes = [0; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let tchar = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        let visible = b.is_ascii_graphic();
        classes[byte] = if tchar { TCHAR } else { 0 }
            | if visible || b >= 0x80 { TARGET } else { 0 }
            | if visible || b >= 0x80 || b == b' ' || b == b'\t' {
                VALUE
            } else {
                0
            };
        byte += 1;
    }
    classes
}

/// A position in the buffer being parsed.
struct Scanner<'b> {
    buf: &'b [u8],
    at: usize,
}

impl<'b> Scanner<'b> {
    fn head(&mut self, headers: &mut HeaderLines<'b>) -> Result<ParsedHead<'b>, Stop> {
        self.skip_blank_lines()?;
        let method = self.method();
        self.expect(b' ')?;
        let target = self.take_long(TARGET, b'!');
        self.expect(b' ')?;
        if method.is_empty() || target.is_empty() {
            return Err(MALFORMED);
        }
        let target = target_text(target)?;
        let http11 = self.version()?;
        self.line_end()?;
        let mut facts = HeaderFacts::default();
        while !self.blank_line()? {
            if headers.len() == MAX_HEADER_LINES {
                return Err(Stop::Refused(Refusal::TooManyHeaders));
            }
            let header = self.header()?;
            facts.note(&header, http11);
            headers.push(header);
        }
        Ok(ParsedHead {
            method: ascii_text(method),
            target,
            len: self.at,
            head: facts.head(self.at, http11, method == b"HEAD"),
        })
    }

    /// The method: a token, and most often `GET`, which one comparison
    /// finds without a look-up per byte.
    fn method(&mut self) -> &'b [u8] {
        let start = self.at;
        if self.buf[start..].starts_with(b"GET ") {
            self.at += 3;
            return &self.buf[start..self.at];
        }
        self.take(TCHAR)
    }

    /// The longest run of bytes of `class` from here.
    fn take(&mut self, class: u8) -> &'b [u8] {
        let start = self.at;
        self.take_rest(class);
        &self.buf[start..self.at]
    }

    /// [`take`](Self::take) for [`TARGET`] and [`VALUE`], whose runs are long
    /// and made of bytes no lower than `lowest` and not DEL: skipped sixteen
    /// or eight at a time up to the first byte that is not such (see
    /// [`run_no_lower_than`]), then one at a time
    /// (a tab in a value goes on; a line's end stops). Inlined into both
    /// callers: the call cost 18 instructions per request.
    #[inline(always)]
    fn take_long(&mut self, class: u8, lowest: u8) -> &'b [u8] {
        let start = self.at;
        self.at += run_no_lower_than(&self.buf[start..], lowest);
        self.take_rest(class);
        &self.buf[start..self.at]
    }

    fn take_rest(&mut self, class: u8) {
        while self.at < self.buf.len() && CLASSES[usize::from(self.buf[self.at])] & class != 0 {
            self.at += 1;
        }
    }

    /// The next byte, not consumed.
    fn peek(&self) -> Result<u8, Stop> {
        self.buf.get(self.at).copied().ok_or(Stop::Incomplete)
    }

    fn expect(&mut self, byte: u8) -> Result<(), Stop> {
        if self.peek()? != byte {
            return Err(MALFORMED);
        }
        self.at += 1;
        Ok(())
    }

    /// `CRLF`, or a bare `LF`.
    fn line_end(&mut self) -> Result<(), Stop> {
        if self.peek()? == b'\r' {
            self.at += 1;
        }
        self.expect(b'\n')
    }

    /// Consumes an empty line if one starts here.
    fn blank_line(&mut self) -> Result<bool, Stop> {
        let blank = matches!(self.peek()?, b'\r' | b'\n');
        if blank {
            self.line_end()?;
        }
        Ok(blank)
    }

    /// Empty lines before the request line, which RFC 9112 (section 2.2)
    /// lets a server ignore.
    fn skip_blank_lines(&mut self) -> Result<(), Stop> {
        while self.blank_line()? {}
        Ok(())
    }

    /// `HTTP/1.0` or `HTTP/1.1`: true for 1.1. A prefix that cannot become
    /// either is refused at once.
    fn version(&mut self) -> Result<bool, Stop> {
        const PREFIX: &[u8] = b"HTTP/1.";
        let rest = &self.buf[self.at..];
        // Compared as whole arrays: one 8-byte comparison each, where a
        // slice pattern compiled to a comparison per byte.
        if let Some(version) = rest.first_chunk::<8>() {
            let http11 = if *version == *b"HTTP/1.1" {
                true
            } else if *version == *b"HTTP/1.0" {
                false
            } else {
                return Err(MALFORMED);
            };
            self.at += 8;
            return Ok(http11);
        }
        let compared = rest.len().min(PREFIX.len());
        if rest[..compared] != PREFIX[..compared] {
            return Err(MALFORMED);
        }
        let minor = *rest.get(PREFIX.len()).ok_or(Stop::Incomplete)?;
        self.at += PREFIX.len() + 1;
        match minor {
            b'0' => Ok(false),
            b'1' => Ok(true),
            _ => Err(MALFORMED),
        }
    }

    /// `field-name ":" OWS field-value OWS` and the line's end.
    fn header(&mut self) -> Result<Header<'b>, Stop> {
        let name = self.take(TCHAR);
        self.expect(b':')?;
        if name.is_empty() {
            return Err(MALFORMED);
        }
        while matches!(self.buf.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        let value = self.take_long(VALUE, b' ');
        match self.peek()? {
            b'\r' | b'\n' => self.line_end()?,
            _ => return Err(MALFORMED),
        }
        Ok(Header {
            name: ascii_text(name),
            value: value.trim_ascii_end(),
        })
    }
}

/// How many bytes at the start of `bytes` are all no lower than `lowest`
/// (at most 0x7F) and not DEL (bytes past ASCII count as such), read
/// sixteen at a time where the CPU has SSE2 (every x86-64 does), then eight
/// at a time: exact up to the first byte that is neither, or to the last
/// whole eight-byte word if there is none (the caller goes on from there
/// one byte at a time). A subtraction borrows only out of a byte that is
/// lower, so the lowest flagged byte of a word is always one that breaks
/// the run.
fn run_no_lower_than(bytes: &[u8], lowest: u8) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);
    const DELS: u64 = u64::from_ne_bytes([0x7F; 8]);
    let lowests = ONES * u64::from(lowest);
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: the function needs SSE2, which this build's target has
    // (checked by the `cfg` above; part of every x86-64 CPU).
    let mut at = match unsafe { sse2::run_no_lower_than(bytes, lowest) } {
        Ok(stop) => return stop,
        Err(scanned) => scanned,
    };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("a chunk of eight"));
        let lower = word.wrapping_sub(lowests) & !word & HIGH_BITS;
        let not_del = word ^ DELS;
        let del = not_del.wrapping_sub(ONES) & !not_del & HIGH_BITS;
        let flagged = lower | del;
        if flagged != 0 {
            // Little-endian: the first byte is the lowest.
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at
}

/// [`run_no_lower_than`] sixteen bytes at a time, with SSE2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_set1_epi8};

    /// `Ok` with the position of the first byte lower than `lowest` or DEL,
    /// or `Err` with how many bytes it read (whole sixteen-byte chunks)
    /// without finding one. A byte is no lower than `lowest` when the
    /// unsigned maximum of the two is the byte itself.
    #[target_feature(enable = "sse2")]
    pub(super) fn run_no_lower_than(bytes: &[u8], lowest: u8) -> Result<usize, usize> {
        let lowests = _mm_set1_epi8(lowest as i8);
        let dels = _mm_set1_epi8(0x7F);
        let mut at = 0;
        while let Some(chunk) = bytes.get(at..at + 16) {
            // SAFETY: `chunk` is 16 bytes inside `bytes`, which is what an
            // unaligned 128-bit load reads.
            let chunk = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
            let in_range = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(chunk, lowests), chunk));
            let del = _mm_movemask_epi8(_mm_cmpeq_epi8(chunk, dels));
            let stops = (!in_range | del) & 0xFFFF;
            if stops != 0 {
                return Ok(at + stops.trailing_zeros() as usize);
            }
            at += 16;
        }
        Err(at)
    }
}

/// ASCII bytes as text, without `from_utf8`'s cost on every name.
fn ascii_text(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every caller passes only ASCII bytes: the method and header
    // names come from `Scanner::take(TCHAR)`, which checked each byte
    // against `CLASSES`, where every TCHAR byte is ASCII; `target_text`
    // passes bytes it has just checked with `is_ascii`. ASCII is valid
    // UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// The request target as text: bytes past ASCII must be UTF-8.
fn target_text(bytes: &[u8]) -> Result<&str, Stop> {
    if bytes.is_ascii() {
        // Checked in one pass; `from_utf8` would cost more than the parse.
        return Ok(ascii_text(bytes));
    }
    std::str::from_utf8(bytes).map_err(|_| MALFORMED)
}

/// What the header lines read so far say about framing and the connection.
#[derive(Default)]
struct HeaderFacts {
    /// The first header that makes the request refused, in header order.
    refusal: Option<Refusal>,
    length: Option<u64>,
    chunked: bool,
    hosts: usize,
    close: bool,
    keep_alive: bool,
    expects_continue: bool,
}

impl HeaderFacts {
    /// Takes in one header line of a request of version 1.1 (`http11`) or 1.0.
    fn note(&mut self, header: &Header<'_>, http11: bool) {
        if let Err(refusal) = self.note_header(header.name.as_bytes(), header.value, http11) {
            self.refusal.get_or_insert(refusal);
        }
    }

    fn note_header(&mut self, name: &[u8], value: &[u8], http11: bool) -> Result<(), Refusal> {
        // Names are compared only where the length matches: most lines are
        // none of these, and cost one comparison of lengths.
        match name.len() {
            4 if is_name(name, b"host") => self.hosts += 1,
            6 if is_name(name, b"expect") => {
                if !value.eq_ignore_ascii_case(b"100-continue") {
                    return Err(Refusal::UnsupportedExpectation);
                }
                self.expects_continue = http11;
            }
            10 if is_name(name, b"connection") => self.note_connection(value),
            14 if is_name(name, b"content-length") => {
                let length = parse_content_length(value).ok_or(Refusal::InvalidContentLength)?;
                if self.length.is_some_and(|seen| seen != length) {
                    return Err(Refusal::ConflictingContentLength);
                }
                self.length = Some(length);
            }
            17 if is_name(name, b"transfer-encoding") => {
                if self.chunked || !value.eq_ignore_ascii_case(b"chunked") {
                    return Err(Refusal::UnsupportedTransferCoding);
                }
                self.chunked = true;
            }
            _ => {}
        }
        Ok(())
    }

    /// Takes in a `Connection` value, a comma-separated list of options,
    /// in one pass for both options the server acts on.
    fn note_connection(&mut self, value: &[u8]) {
        for option in value.split(|&byte| byte == b',') {
            let option = option.trim_ascii();
            self.close |= option.eq_ignore_ascii_case(b"close");
            self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
        }
    }

    /// The head of `len` bytes these lines make, or why it is refused.
    /// Inlined into `parse`: the call cost 24 instructions per request.
    #[inline(always)]
    fn head(self, len: usize, http11: bool, is_head: bool) -> Result<Head, Refusal> {
        if let Some(refusal) = self.refusal {
            return Err(refusal);
        }
        if http11 && self.hosts != 1 {
            return Err(Refusal::BadHost);
        }
        let framing = match (self.length, self.chunked) {
            (Some(_), true) => return Err(Refusal::LengthAndTransferEncoding),
            (_, true) if !http11 => return Err(Refusal::UnsupportedTransferCoding),
            (_, true) => Framing::Chunked,
            (length, false) => Framing::Length(length.unwrap_or(0)),
        };
        let keep_alive = !self.close && (http11 || self.keep_alive);
        Ok(Head {
            len,
            framing,
            keep_alive,
            confirm_keep_alive: keep_alive && !http11,
            expects_continue: self.expects_continue && framing != Framing::Length(0),
            is_head,
        })
    }
}

/// Whether the header name `name`, a token, is `lower` (lowercase letters
/// and `-`) in any case. Setting bit 0x20 lowercases a letter, and no other
/// token byte becomes a lowercase letter or `-` by it, so one OR per byte
/// decides where `eq_ignore_ascii_case` needs a range check. Done on the
/// whole array at once, it compiles to a few wide ORs and comparisons
/// rather than a comparison per byte.
fn is_name<const N: usize>(name: &[u8], lower: &[u8; N]) -> bool {
    let Ok(name) = <&[u8; N]>::try_from(name) else {
        return false;
    };
    name.map(|byte| byte | 0x20) == *lower
}

/// `Content-Length = 1*DIGIT` (the parser has taken off the surrounding
/// white space); no sign, no list, and small enough to count.
fn parse_content_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, digit| n * 10 + u64::from(digit - b'0')))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn head(raw: &str) -> Result<Head, Refusal> {
        let parsed = match parse(raw.as_bytes(), &mut HeaderLines::new()) {
            Ok(parsed) => parsed,
            Err(Stop::Refused(refusal)) => return Err(refusal),
            Err(Stop::Incomplete) => panic!("an incomplete head: {raw:?}"),
        };
        assert_eq!(parsed.len, raw.len());
        parsed.head
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
        // Lists, and values that only look like a token.
        assert!(!get("Connection: keep-alive, close\r\n").unwrap().keep_alive);
        assert!(get("Connection: closed\r\n").unwrap().keep_alive);
        assert!(
            !head("GET / HTTP/1.0\r\nConnection: keep-alive2\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        let listed = head("GET / HTTP/1.0\r\nConnection: Upgrade,keep-alive \r\n\r\n").unwrap();
        assert!(listed.keep_alive && listed.confirm_keep_alive);
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
            assert_eq!(
                parse(bad.as_bytes(), &mut HeaderLines::new()).err(),
                Some(Stop::Refused(Refusal::MalformedHead)),
                "{bad:?}"
            );
        }
    }

    /// A head as both parsers see it: method, target, headers and length;
    /// `None` while incomplete, `Err` when refused.
    type Outcome = Result<Option<(String, String, Vec<(String, Vec<u8>)>, usize)>, ()>;

    /// What httparse, the parser this one replaced, makes of `bytes`.
    fn httparse_head(bytes: &[u8]) -> Outcome {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADER_LINES];
        let mut request = httparse::Request::new(&mut slots);
        match request.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => Ok(Some((
                request.method.unwrap().to_owned(),
                request.path.unwrap().to_owned(),
                request
                    .headers
                    .iter()
                    .map(|header| (header.name.to_owned(), header.value.to_vec()))
                    .collect(),
                len,
            ))),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// The same, from this parser.
    fn own_head(bytes: &[u8]) -> Outcome {
        let mut headers = HeaderLines::new();
        match parse(bytes, &mut headers) {
            Ok(parsed) => Ok(Some((
                parsed.method.to_owned(),
                parsed.target.to_owned(),
                headers
                    .iter()
                    .map(|header| (header.name.to_owned(), header.value.to_vec()))
                    .collect(),
                parsed.len,
            ))),
            Err(Stop::Incomplete) => Ok(None),
            Err(Stop::Refused(_)) => Err(()),
        }
    }

    /// Heads assembled from pieces that are valid, nearly valid or not,
    /// cut anywhere: what a client, broken or not, could send.
    fn heads() -> impl Strategy<Value = Vec<u8>> {
        let piece = |options: &'static [&'static [u8]]| proptest::sample::select(options);
        let line_end = piece(&[b"\r\n", b"\n", b"\r", b"\r\r\n"]);
        let header = (
            piece(&[b"Host", b"Content-Length", b"X-Y", b"", b"X Y", b"N\xc3\xa9", b"A\x01"]),
            piece(&[b":", b": ", b" :", b":\t", b""]),
            piece(&[
                b"v",
                b" v ",
                b"v\t",
                b"a\x01b",
                b"\xe9t\xc3\xa9",
                b"a\tb",
                b"",
                b"\x7f",
                b"127.0.0.1:8080",
                b"text/html,application/xhtml+xml\t;q=0.9",
                b"0123456789abcdef\x01",
                b"0123456789\x7f",
            ]),
            line_end.clone(),
        )
            .prop_map(|(name, separator, value, end)| [name, separator, value, end].concat());
        (
            piece(&[b"", b"\r\n", b"\n"]),
            piece(&[b"GET", b"POST", b"HEAD", b"X-Y~", b"", b"G\x01T", b"G(T"]),
            piece(&[b" ", b"  ", b"\t"]),
            piece(&[
                b"/",
                b"/tasks/1?x=y",
                b"*",
                b"/\xc3\xa9",
                b"/\xff",
                b"/a\x7fb",
                b"",
                b"/tasks?limit=10&after=12345",
                b"/0123456789abcdef\x7f",
                b"/01234567\t",
            ]),
            piece(&[b" ", b"  "]),
            piece(&[
                b"HTTP/1.1",
                b"HTTP/1.0",
                b"HTTP/2.0",
                b"HTTP/1.",
                b"http/1.1",
                b"HTTP/1.12",
            ]),
            line_end.clone(),
            proptest::collection::vec(header, 0..4),
            line_end,
            any::<proptest::sample::Index>(),
        )
            .prop_map(
                |(blank, method, space, target, space2, version, end, headers, last, cut)| {
                    let mut bytes = [blank, method, space, target, space2, version, end].concat();
                    bytes.extend(headers.concat());
                    bytes.extend_from_slice(last);
                    let keep = cut.index(bytes.len() + 1);
                    bytes.truncate(keep.max(bytes.len().saturating_sub(keep % 4)));
                    bytes
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The parser agrees with httparse on every head it is given: the
        /// same heads complete, with the same parts, the same ones wait for
        /// more, and the same ones are refused.
        #[test]
        fn it_agrees_with_httparse(bytes in heads()) {
            prop_assert_eq!(own_head(&bytes), httparse_head(&bytes));
        }
    }

    proptest! {
        /// The scan by sixteen and eight bytes stops where a byte-by-byte
        /// one does, or at the last whole eight-byte word before the end
        /// when no byte stops it.
        #[test]
        fn the_word_scan_stops_at_the_first_byte_out_of_range(
            bytes in proptest::collection::vec(prop_oneof![4 => 0x20u8..0x7F, 1 => any::<u8>()], 0..72),
            lowest in prop_oneof![Just(b' '), Just(b'!')],
        ) {
            let in_run = |byte: u8| (byte >= lowest && byte != 0x7F) || byte >= 0x80;
            let first_out = bytes.iter().position(|&byte| !in_run(byte));
            let whole_words = bytes.len() / 8 * 8;
            let expected = match first_out {
                Some(at) if at < whole_words => at,
                _ => whole_words,
            };
            prop_assert_eq!(run_no_lower_than(&bytes, lowest), expected);
        }
    }

    #[test]
    fn framing_header_names_match_in_any_case_and_nothing_else() {
        assert!(is_name(b"Host", b"host") && is_name(b"HOST", b"host") && is_name(b"hOsT", b"host"));
        assert!(is_name(b"Content-Length", b"content-length"));
        assert!(!is_name(b"Hosts", b"host") && !is_name(b"Hist", b"host"));
        // Every token byte but a letter's other case differs after the OR.
        for byte in (0u8..=0x7F).filter(|byte| CLASSES[usize::from(*byte)] & TCHAR != 0) {
            assert_eq!(is_name(&[byte], b"h"), byte.eq_ignore_ascii_case(&b'h'), "{byte:#x}");
            assert_eq!(is_name(&[byte], b"-"), byte == b'-', "{byte:#x}");
        }
    }
}
