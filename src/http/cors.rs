//! Requests from pages on other origins. A browser lets a page read an
//! answer from another origin only if the answer says so (CORS), and asks
//! first, with a preflight `OPTIONS`, before a request a form could not
//! send (a JSON `POST`). [`AllowedOrigins`] is the `CORS_ALLOWED_ORIGINS`
//! setting and writes those headers.
//!
//! A request a form can send (a `text/plain` or form `POST`) is sent without
//! asking, and would change state even though the page cannot read the
//! answer; so a state-changing request from an origin that is neither
//! allowed nor the server's own is refused with 403, whatever the setting.

use crate::http::router::{Resource, Route};
use crate::server::{Request, Response};

/// The origins whose pages may call the API (`CORS_ALLOWED_ORIGINS`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// None (the setting is empty): answers carry no CORS headers.
    #[default]
    None,
    /// Any origin (`*`).
    Any,
    /// These origins, each `scheme://host[:port]`, lowercase.
    List(Vec<Box<str>>),
}

/// Seconds a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: &str = "600";

/// `Access-Control-Allow-Headers` when the preflight names none, or names
/// them in a form not echoed back.
const DEFAULT_ALLOW_HEADERS: &str = "Content-Type";

/// Longest `Access-Control-Request-Headers` echoed back.
const MAX_ECHOED_HEADERS: usize = 512;

/// What a bad setting is told.
const EXPECTED: &str = "expected * or comma-separated origins, each scheme://host[:port] with no path \
                        (such as https://app.example.com,http://localhost:3000)";

impl AllowedOrigins {
    /// Parses the setting: empty, `*`, or comma-separated origins, each
    /// `scheme://host[:port]` with no path (white space around each is
    /// ignored). The parser of `CORS_ALLOWED_ORIGINS`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "" => Ok(Self::None),
            "*" => Ok(Self::Any),
            list => list
                .split(',')
                .map(checked_origin)
                .collect::<Result<_, _>>()
                .map(Self::List),
        }
    }

    /// Whether CORS is configured at all: only then do answers carry CORS
    /// headers, so with the default nothing is added to any answer.
    pub fn is_set(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// Whether a page on `origin` may read answers.
    fn allows(&self, origin: &[u8]) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::List(origins) => origins
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin)),
        }
    }

    /// Whether `request`, sent with `Origin: origin`, is refused (403): it
    /// changes state, and comes from a page on an origin neither allowed
    /// nor the one the request was sent to (its `Host`).
    pub(crate) fn refuses(&self, request: &Request<'_>, origin: &[u8]) -> bool {
        !is_safe(request.method()) && !self.allows(origin) && !same_origin(origin, request.header("Host"))
    }

    /// Adds the CORS headers to the answer to `request` for `route`, which
    /// came with `origin` (if any). Called only when [`is_set`](Self::is_set).
    #[inline(never)] // a large frame, kept out of every request's: see `handlers::answer`
    pub(crate) fn write_headers(
        &self,
        request: &Request<'_>,
        origin: Option<&[u8]>,
        route: &Route,
        reply: &mut Response,
    ) {
        let preflight = match route {
            Route::Options(resource) if request.header("Access-Control-Request-Method").is_some() => Some(*resource),
            _ => None,
        };
        // Whether an answer carries CORS headers depends on these request
        // headers, so a cache must not serve it for other values.
        reply.header(
            "Vary",
            match preflight {
                Some(_) => "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
                None => "Origin",
            },
        );
        let Some(allowed) = origin.and_then(|origin| self.allow_origin(origin)) else {
            return;
        };
        reply.header("Access-Control-Allow-Origin", allowed);
        match preflight {
            Some(resource) => preflight_headers(request, resource, reply),
            None => reply.header("Access-Control-Expose-Headers", "Link"),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a page on `origin`, if
    /// it is allowed: `*` when any is, else the origin itself.
    fn allow_origin<'o>(&self, origin: &'o [u8]) -> Option<&'o str> {
        match self {
            Self::Any => Some("*"),
            _ if self.allows(origin) => std::str::from_utf8(origin).ok(),
            _ => None,
        }
    }
}

/// The headers that tell a browser what a page may send to `resource`.
fn preflight_headers(request: &Request<'_>, resource: Resource, reply: &mut Response) {
    reply.header("Access-Control-Allow-Methods", resource.allow());
    reply.header("Access-Control-Allow-Headers", allow_headers(request));
    reply.header("Access-Control-Max-Age", PREFLIGHT_MAX_AGE);
}

/// Writes the 403 answer to a state-changing request from another origin.
pub(crate) fn refuse(reply: &mut Response) {
    reply.set_status(403);
    reply.set_content_type("application/json");
    reply
        .body_mut()
        .extend_from_slice(b"{\"error\":\"origin not allowed\"}\n");
}

/// Whether `method` is safe (RFC 9110, 9.2.1): it changes nothing.
fn is_safe(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// Whether `origin` (`scheme://host[:port]`) names the authority the
/// request was sent to (its `Host` header), a default port written or not.
/// The scheme is not compared: behind a proxy ending TLS the page is
/// `https` and the request `http`.
fn same_origin(origin: &[u8], host: Option<&[u8]>) -> bool {
    let (Some(host), Some(scheme_end)) = (host, origin.windows(3).position(|three| three == b"://")) else {
        return false;
    };
    let default_port: &[u8] = match &origin[..scheme_end] {
        scheme if scheme.eq_ignore_ascii_case(b"https") => b":443",
        _ => b":80",
    };
    let authority = &origin[scheme_end + 3..];
    let bare = without_suffix(authority, default_port);
    bare.eq_ignore_ascii_case(without_suffix(host.trim_ascii(), default_port))
}

/// `bytes` without `suffix` at its end, if it ends so.
fn without_suffix<'b>(bytes: &'b [u8], suffix: &[u8]) -> &'b [u8] {
    bytes.strip_suffix(suffix).unwrap_or(bytes)
}

/// `Access-Control-Allow-Headers` for a preflight: the headers it asks for
/// when they are a plain list of names, else [`DEFAULT_ALLOW_HEADERS`].
fn allow_headers<'r>(request: &Request<'r>) -> &'r str {
    let plain_names = |value: &[u8]| {
        value.len() <= MAX_ECHOED_HEADERS
            && value.iter().any(u8::is_ascii_alphabetic)
            && value
                .iter()
                .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b',' | b' '))
    };
    match request.header("Access-Control-Request-Headers") {
        Some(value) if plain_names(value) => std::str::from_utf8(value).unwrap_or(DEFAULT_ALLOW_HEADERS),
        _ => DEFAULT_ALLOW_HEADERS,
    }
}

/// One origin of the setting, checked and lowercased.
fn checked_origin(item: &str) -> Result<Box<str>, String> {
    let item = item.trim();
    let well_formed = item
        .split_once("://")
        .is_some_and(|(scheme, authority)| is_scheme(scheme) && is_authority(authority));
    if well_formed {
        Ok(item.to_ascii_lowercase().into())
    } else {
        Err(format!("{EXPECTED}; '{item}' is not one"))
    }
}

/// A URI scheme (RFC 3986, 3.1): a letter, then letters, digits, `+-.`.
fn is_scheme(scheme: &str) -> bool {
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|first| first.is_ascii_alphabetic())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
}

/// `host[:port]`: a DNS name or IPv4 address, or an IPv6 address in
/// brackets; a port from 1 to 65535. Nothing else: no path, no user.
fn is_authority(authority: &str) -> bool {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let port_ok = port.is_none_or(|port| {
        port.bytes().all(|byte| byte.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    port_ok && (is_host_name(host) || is_ipv6_literal(host))
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits and
/// `-`, none empty.
fn is_host_name(host: &str) -> bool {
    host.split('.')
        .all(|label| !label.is_empty() && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-'))
}

/// An IPv6 address in brackets, as a URL writes it.
fn is_ipv6_literal(host: &str) -> bool {
    host.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|address| address.parse::<std::net::Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use httparse::Header;

    use super::*;
    use crate::http::Api;
    use crate::http::handlers::tests::test_api;
    use crate::server::Handler;

    const PAGE: &str = "https://app.example.com";

    fn origins(raw: &str) -> AllowedOrigins {
        AllowedOrigins::parse(raw).unwrap()
    }

    /// `method target` with `headers` and `body`, answered by `api`.
    fn handle(api: &Api, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let headers: Vec<Header<'_>> = headers
            .iter()
            .map(|(name, value)| Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        let mut reply = Response::default();
        api.handle(&Request::new(method, target, &headers, body.as_bytes()), &mut reply);
        reply
    }

    fn api_allowing(raw: &str) -> Api {
        test_api(10).allowing_origins(origins(raw))
    }

    const CORS_HEADERS: [&str; 6] = [
        "Access-Control-Allow-Origin",
        "Access-Control-Allow-Methods",
        "Access-Control-Allow-Headers",
        "Access-Control-Max-Age",
        "Access-Control-Expose-Headers",
        "Vary",
    ];

    fn assert_no_cors_headers(reply: &Response) {
        for name in CORS_HEADERS {
            assert_eq!(reply.header_value(name), None, "{name}");
        }
    }

    #[test]
    fn the_setting_is_empty_a_star_or_a_list_of_origins() {
        assert_eq!(origins(""), AllowedOrigins::None);
        assert_eq!(origins(" * "), AllowedOrigins::Any);
        assert_eq!(
            origins("https://App.Example.com, http://localhost:3000,http://[::1]:8080,http://10.0.0.1"),
            AllowedOrigins::List(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
                "http://[::1]:8080".into(),
                "http://10.0.0.1".into(),
            ])
        );
        assert!(!AllowedOrigins::None.is_set());
        assert!(origins("*").is_set());
    }

    #[test]
    fn origins_with_a_path_or_without_a_scheme_are_refused() {
        for raw in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/api",
            "https://app.example.com?x",
            "https://user@app.example.com",
            "https://",
            "https://app..com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://app.example.com:",
            "https://[::1",
            "1http://a",
            "*,https://a.com",
            "https://a.com,",
            "null",
        ] {
            let message = AllowedOrigins::parse(raw).unwrap_err();
            assert!(
                message.starts_with("expected * or comma-separated origins"),
                "{raw}: {message}"
            );
        }
    }

    #[test]
    fn without_the_setting_or_an_origin_nothing_is_added() {
        let api = test_api(10);
        let reply = handle(&api, "GET", "/tasks", &[("Origin", PAGE)], "");
        assert_eq!(reply.status(), 200);
        assert_no_cors_headers(&reply);
        let api = api_allowing(PAGE);
        let reply = handle(&api, "GET", "/tasks", &[], "");
        assert_eq!(reply.header_value("Access-Control-Allow-Origin"), None);
        assert_eq!(reply.header_value("Vary"), Some("Origin"));
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_is_told_what_it_may_send() {
        let api = api_allowing(&format!("http://localhost:3000,{PAGE}"));
        let preflight = [
            ("Origin", PAGE),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,x-request-id"),
        ];
        let reply = handle(&api, "OPTIONS", "/tasks", &preflight, "");
        assert_eq!(reply.status(), 204);
        assert!(reply.body().is_empty());
        for (name, value) in [
            ("Allow", "GET, HEAD, POST, OPTIONS"),
            ("Access-Control-Allow-Origin", PAGE),
            ("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", "content-type,x-request-id"),
            ("Access-Control-Max-Age", "600"),
            (
                "Vary",
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        ] {
            assert_eq!(reply.header_value(name), Some(value), "{name}");
        }
        assert_eq!(reply.header_value("Access-Control-Expose-Headers"), None);
        let reply = handle(&api, "OPTIONS", "/tasks/7", &preflight[..2], "");
        assert_eq!(
            reply.header_value("Access-Control-Allow-Methods"),
            Some("GET, HEAD, DELETE, OPTIONS")
        );
        assert_eq!(reply.header_value("Access-Control-Allow-Headers"), Some("Content-Type"));
    }

    #[test]
    fn requested_headers_are_echoed_only_as_a_plain_list_of_names() {
        let api = api_allowing("*");
        for (requested, allowed) in [
            ("X-A, X-B", "X-A, X-B"),
            ("x\r\nSet-Cookie: a=b", "Content-Type"),
            ("x;y", "Content-Type"),
            (" , ", "Content-Type"),
            (&"x".repeat(600), "Content-Type"),
        ] {
            let headers = [
                ("Origin", PAGE),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", requested),
            ];
            let reply = handle(&api, "OPTIONS", "/tasks", &headers, "");
            assert_eq!(
                reply.header_value("Access-Control-Allow-Headers"),
                Some(allowed),
                "{requested}"
            );
            assert_eq!(reply.header_value("Access-Control-Allow-Origin"), Some("*"));
        }
    }

    #[test]
    fn a_preflight_from_another_origin_gets_no_cors_headers() {
        let api = api_allowing(PAGE);
        let headers = [
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ];
        let reply = handle(&api, "OPTIONS", "/tasks", &headers, "");
        assert_eq!(reply.status(), 204);
        assert_eq!(reply.header_value("Allow"), Some("GET, HEAD, POST, OPTIONS"));
        for name in &CORS_HEADERS[..5] {
            assert_eq!(reply.header_value(name), None, "{name}");
        }
    }

    #[test]
    fn options_that_is_no_preflight_answers_204_with_allow() {
        for api in [test_api(1), api_allowing(PAGE)] {
            for (target, allow) in [
                ("/tasks", "GET, HEAD, POST, OPTIONS"),
                ("/healthz", "GET, HEAD, OPTIONS"),
            ] {
                let reply = handle(&api, "OPTIONS", target, &[], "");
                assert_eq!((reply.status(), reply.header_value("Allow")), (204, Some(allow)));
                assert!(reply.body().is_empty());
                assert_eq!(reply.header_value("Access-Control-Allow-Methods"), None);
            }
            let reply = handle(&api, "OPTIONS", "/tasks", &[("Origin", PAGE)], "");
            assert_eq!(reply.status(), 204);
            assert_eq!(reply.header_value("Access-Control-Allow-Methods"), None);
        }
    }

    #[test]
    fn answers_to_an_allowed_origin_let_the_page_read_them_and_their_link() {
        let api = api_allowing(PAGE);
        let json = [("Origin", PAGE), ("Content-Type", "application/json")];
        assert_eq!(handle(&api, "POST", "/tasks", &json, r#"{"title":"a"}"#).status(), 201);
        assert_eq!(handle(&api, "POST", "/tasks", &json, r#"{"title":"b"}"#).status(), 201);
        for (method, target) in [("GET", "/tasks?limit=1"), ("GET", "/tasks/1"), ("HEAD", "/nope")] {
            let reply = handle(&api, method, target, &[("Origin", "HTTPS://APP.example.com")], "");
            assert_eq!(
                reply.header_value("Access-Control-Allow-Origin"),
                Some("HTTPS://APP.example.com")
            );
            assert_eq!(reply.header_value("Access-Control-Expose-Headers"), Some("Link"));
            assert_eq!(reply.header_value("Vary"), Some("Origin"));
        }
        let any = api_allowing("*");
        let reply = handle(&any, "GET", "/healthz", &[("Origin", "http://x.test")], "");
        assert_eq!(reply.header_value("Access-Control-Allow-Origin"), Some("*"));
    }

    #[test]
    fn a_state_changing_request_from_another_origin_is_refused_and_creates_nothing() {
        for api in [test_api(10), api_allowing(PAGE)] {
            let form = [
                ("Origin", "https://evil.example"),
                ("Content-Type", "text/plain"),
                ("Host", "api.example.com"),
            ];
            let reply = handle(&api, "POST", "/tasks", &form, r#"{"title":"csrf"}"#);
            assert_eq!(reply.status(), 403);
            assert_eq!(reply.body(), b"{\"error\":\"origin not allowed\"}\n");
            assert_eq!(reply.header_value("Content-Type"), Some("application/json"));
            assert_eq!(reply.header_value("Access-Control-Allow-Origin"), None);
            assert_eq!(handle(&api, "DELETE", "/tasks", &form, "").status(), 403);
            assert_eq!(
                handle(&api, "POST", "/tasks", &[("Origin", "null")], r#"{"title":"a"}"#).status(),
                403
            );
            let listed = handle(&api, "GET", "/tasks", &form, "");
            assert_eq!((listed.status(), listed.body()), (200, &b"[]\n"[..]));
        }
    }

    #[test]
    fn a_state_changing_request_from_an_allowed_or_the_same_origin_or_none_is_served() {
        let api = api_allowing(PAGE);
        let body = r#"{"title":"a"}"#;
        assert_eq!(handle(&api, "POST", "/tasks", &[("Origin", PAGE)], body).status(), 201);
        assert_eq!(handle(&api, "POST", "/tasks", &[], body).status(), 201);
        assert_eq!(handle(&test_api(10), "POST", "/tasks", &[], body).status(), 201);
        for (origin, host) in [
            ("http://api.example.com", "api.example.com"),
            ("https://API.example.com", "api.example.com"),
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://api.example.com", "api.example.com:80"),
            ("https://api.example.com:443", "api.example.com"),
        ] {
            let headers = [("Origin", origin), ("Host", host)];
            let reply = handle(&test_api(10), "POST", "/tasks", &headers, body);
            assert_eq!(reply.status(), 201, "{origin} to {host}");
        }
        for (origin, host) in [
            ("http://127.0.0.1:3000", "127.0.0.1:8080"),
            ("http://api.example.com", "api.example.com:443"),
            ("http://api.example.com.evil", "api.example.com"),
            ("api.example.com", "api.example.com"),
        ] {
            let headers = [("Origin", origin), ("Host", host)];
            let reply = handle(&test_api(10), "POST", "/tasks", &headers, body);
            assert_eq!(reply.status(), 403, "{origin} to {host}");
        }
        let reply = handle(&test_api(10), "POST", "/tasks", &[("Origin", PAGE)], body);
        assert_eq!(reply.status(), 403, "no Host");
    }

    #[test]
    fn refusals_are_counted_as_403() {
        let api = test_api(10);
        handle(&api, "POST", "/tasks", &[("Origin", PAGE)], "{}");
        let metrics = handle(&api, "GET", "/metrics", &[], "");
        let text = String::from_utf8_lossy(metrics.body()).into_owned();
        let line = r#"worker_pool_http_requests_total{method="POST",route="/tasks",code="403"} 1"#;
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}
