//! What the header block of a request says about its framing and its
//! connection (RFC 9112): the body length, whether the connection stays
//! open, whether the client waits for `100 Continue`.
//!
//! may_minihttp parses the header lines but trusts them: it would panic on a
//! `Content-Length` that is not a number and read a chunked body as the next
//! request. Everything here is checked before the library is asked for the
//! body.

use httparse::Header;

/// The parts of a request's header block the server acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Length of the body that follows the headers (0 without `Content-Length`).
    pub content_length: u64,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// HTTP/1.0 keep-alive must be confirmed in the answer.
    pub confirm_keep_alive: bool,
    /// The client sent `Expect: 100-continue` and waits before sending its body.
    pub expects_continue: bool,
}

/// A header block the server will not act on. Each is answered with its
/// status and message, and the connection is closed: the body's extent is
/// unknown or the request is not one HTTP/1.1 allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// `Content-Length` is not a decimal number of bytes.
    InvalidContentLength,
    /// Several `Content-Length` lines disagree.
    ConflictingContentLength,
    /// `Transfer-Encoding` (chunked bodies) is not supported.
    TransferEncoding,
    /// An HTTP/1.1 request without exactly one `Host`.
    BadHost,
    /// An `Expect` other than `100-continue`.
    UnsupportedExpectation,
}

impl HeadError {
    /// The status code and reason phrase of the answer.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Self::InvalidContentLength | Self::ConflictingContentLength | Self::BadHost => (400, "Bad Request"),
            Self::TransferEncoding => (411, "Length Required"),
            Self::UnsupportedExpectation => (417, "Expectation Failed"),
        }
    }

    /// The `error` message of the answer.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidContentLength => "invalid Content-Length header",
            Self::ConflictingContentLength => "conflicting Content-Length headers",
            Self::TransferEncoding => "Transfer-Encoding is not supported: send the body with a Content-Length",
            Self::BadHost => "an HTTP/1.1 request needs exactly one Host header",
            Self::UnsupportedExpectation => "only the expectation 100-continue is supported",
        }
    }
}

/// Reads the framing and connection headers of a request. `minor_version`
/// is 0 for HTTP/1.0 and 1 for HTTP/1.1.
pub fn inspect(minor_version: u8, headers: &[Header<'_>]) -> Result<RequestHead, HeadError> {
    let http11 = minor_version >= 1;
    let mut content_length = None;
    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive = false;
    let mut expects_continue = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_content_length(header.value).ok_or(HeadError::InvalidContentLength)?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(HeadError::ConflictingContentLength);
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::TransferEncoding);
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= has_token(header.value, "close");
            keep_alive |= has_token(header.value, "keep-alive");
        } else if name.eq_ignore_ascii_case("expect") {
            if !header.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                return Err(HeadError::UnsupportedExpectation);
            }
            expects_continue = http11;
        }
    }
    if http11 && hosts != 1 {
        return Err(HeadError::BadHost);
    }
    let keep_alive = !close && (http11 || keep_alive);
    Ok(RequestHead {
        content_length: content_length.unwrap_or(0),
        keep_alive,
        confirm_keep_alive: keep_alive && !http11,
        expects_continue,
    })
}

/// `Content-Length = 1*DIGIT`, surrounding white space allowed; no sign, no
/// list, and small enough to count.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(minor: u8, lines: &[(&'static str, &'static str)]) -> Result<RequestHead, HeadError> {
        let headers: Vec<Header<'static>> = lines
            .iter()
            .map(|(name, value)| Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        inspect(minor, &headers)
    }

    const HOST: (&str, &str) = ("Host", "localhost");

    #[test]
    fn plain_http11_request_keeps_alive_without_body() {
        let head = head(1, &[HOST]).unwrap();
        assert_eq!(
            head,
            RequestHead {
                content_length: 0,
                keep_alive: true,
                confirm_keep_alive: false,
                expects_continue: false
            }
        );
    }

    #[test]
    fn content_length_must_be_digits() {
        assert_eq!(head(1, &[HOST, ("Content-Length", " 42 ")]).unwrap().content_length, 42);
        for bad in ["", "abc", "-1", "+5", "1.5", "5, 5", "0x10", "99999999999999999999"] {
            assert_eq!(
                head(1, &[HOST, ("content-length", bad)]),
                Err(HeadError::InvalidContentLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn repeated_content_length_must_agree() {
        let same = [HOST, ("Content-Length", "3"), ("Content-Length", "3")];
        assert_eq!(head(1, &same).unwrap().content_length, 3);
        let differ = [HOST, ("Content-Length", "3"), ("Content-Length", "4")];
        assert_eq!(head(1, &differ), Err(HeadError::ConflictingContentLength));
    }

    #[test]
    fn transfer_encoding_is_refused() {
        let chunked = [HOST, ("Transfer-Encoding", "chunked")];
        assert_eq!(head(1, &chunked), Err(HeadError::TransferEncoding));
        assert_eq!(HeadError::TransferEncoding.status().0, 411);
    }

    #[test]
    fn http11_needs_exactly_one_host() {
        assert_eq!(head(1, &[]), Err(HeadError::BadHost));
        assert_eq!(head(1, &[HOST, HOST]), Err(HeadError::BadHost));
        assert!(head(0, &[]).is_ok());
    }

    #[test]
    fn connection_close_and_http10_end_the_connection() {
        assert!(!head(1, &[HOST, ("Connection", "close")]).unwrap().keep_alive);
        assert!(!head(1, &[HOST, ("connection", "Upgrade, Close")]).unwrap().keep_alive);
        assert!(!head(0, &[]).unwrap().keep_alive);
    }

    #[test]
    fn http10_keep_alive_is_kept_and_confirmed() {
        let head = head(0, &[("Connection", "Keep-Alive")]).unwrap();
        assert!(head.keep_alive && head.confirm_keep_alive);
    }

    #[test]
    fn expect_100_continue_is_noted_for_http11_only() {
        assert!(head(1, &[HOST, ("Expect", "100-Continue")]).unwrap().expects_continue);
        assert!(!head(0, &[("Expect", "100-continue")]).unwrap().expects_continue);
        assert_eq!(
            head(1, &[HOST, ("Expect", "something-else")]),
            Err(HeadError::UnsupportedExpectation)
        );
    }
}
