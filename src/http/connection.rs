//! One client connection: checks each request's framing, reads its body
//! within the size limit, routes and answers it, and closes the connection
//! when HTTP says so.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::BytesMut;
use may_minihttp::{HttpService, Request, Response};

use crate::http::guard::{Admission, Guard};
use crate::http::handlers::{self, Reply, closing_answer};
use crate::http::message::{self, HeadError, RequestHead};
use crate::http::metrics::{self, RequestCounters};
use crate::http::router::{self, Route};
use crate::http::wire::Socket;
use crate::pool::WorkerGauge;
use crate::service::TaskService;

/// What every connection shares.
pub struct Shared {
    /// The use-cases requests are answered with.
    pub service: Arc<TaskService>,
    /// The connection limits and their watchdog.
    pub guard: Arc<Guard>,
    /// The workers' activity, for the metrics.
    pub workers: WorkerGauge,
    /// Every answer, counted.
    pub requests: RequestCounters,
}

/// The per-connection service may_minihttp calls for each request.
pub struct Connection {
    state: ConnectionState,
    /// Header lines built for the current answer; see [`LibraryReply`].
    /// Apart from `state` so that an answer can borrow both at once.
    built_headers: Vec<String>,
}

/// What a connection keeps between its requests.
struct ConnectionState {
    socket: Socket,
    shared: Arc<Shared>,
    /// The connection's place under the guard; `None` if it was refused.
    admission: Option<Admission>,
    /// Set once the connection is being closed: later requests already in
    /// the library's buffer are not processed.
    closing: bool,
    /// The current request's body, reused across requests.
    body: Vec<u8>,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Connection {
    /// The service for the connection whose socket descriptor may_minihttp
    /// passed as the service id. Over the connection limit, the client is
    /// told so and the connection closed.
    pub fn new(connection_id: usize, shared: Arc<Shared>) -> Self {
        let socket = Socket::from_connection_id(connection_id);
        let admission = shared.guard.admit(socket);
        let mut state = ConnectionState {
            socket,
            shared,
            admission,
            closing: false,
            body: Vec::new(),
        };
        if state.admission.is_none() {
            state.refuse((503, "Service Unavailable"), "too many open connections");
        }
        Self {
            state,
            built_headers: Vec::new(),
        }
    }
}

impl ConnectionState {
    fn max_body_bytes(&self) -> usize {
        self.shared.guard.limits().max_body_bytes
    }

    /// The request's head if its body can be framed and is within the
    /// limit; otherwise the request is refused and the connection closed.
    fn check_framing(&mut self, head: Result<RequestHead, HeadError>) -> Option<RequestHead> {
        let limit = self.max_body_bytes();
        match head {
            Err(refused) => self.refuse(refused.status(), refused.message()),
            Ok(head) if head.content_length > limit as u64 => {
                let message = format!("request body too large: the limit is {limit} bytes");
                self.refuse((413, "Content Too Large"), &message);
            }
            Ok(head) => return Some(head),
        }
        None
    }

    /// Reads the body into `self.body` (after a `100 Continue` if the client
    /// waits for one); false, with the connection closing, if the peer went
    /// away first.
    fn receive_body(&mut self, request: Request, head: &RequestHead) -> bool {
        self.body.clear();
        if head.content_length == 0 {
            return true;
        }
        if head.expects_continue {
            self.socket.send(CONTINUE);
        }
        self.body.resize(head.content_length as usize, 0);
        if request.body().read_exact(&mut self.body).is_err() {
            self.socket.close();
            self.closing = true;
            return false;
        }
        true
    }

    /// Answers straight on the socket and closes the connection. For
    /// requests whose body cannot be framed or is refused unread: answered
    /// through the library, the unread body would be parsed as the next
    /// request and the answer lost.
    fn refuse(&mut self, status: (u16, &str), message: &str) {
        self.shared.requests.count(None, status.0);
        self.socket.send(&closing_answer(status, message));
        self.socket.close();
        self.closing = true;
    }

    /// Leaves unprocessed a request that arrived after the connection began
    /// closing (RFC 9112 section 9.6). The library answers every request it
    /// parses, so it gets a 503; its body, when it can be framed, is
    /// consumed so the library does not take it for the next request and
    /// drop the answers still waiting to be written.
    fn skip(&mut self, request: Request, head: Result<RequestHead, HeadError>, response: &mut impl Reply) {
        let limit = self.max_body_bytes();
        if head.is_ok_and(|head| head.content_length <= limit as u64) {
            drop(request.body());
        }
        response.header("Connection: close");
        handlers::error(response, 503, "Service Unavailable", "connection is closing");
        self.shared.requests.count(None, 503);
    }

    /// Applies the request's connection semantics to the answer.
    fn end_of_exchange(&mut self, head: &RequestHead, response: &mut impl Reply) {
        if !head.keep_alive {
            response.header("Connection: close");
            self.socket.stop_reading();
            self.closing = true;
        } else if head.confirm_keep_alive {
            response.header("Connection: keep-alive");
        }
    }
}

impl HttpService for Connection {
    fn call(&mut self, request: Request, response: &mut Response) -> io::Result<()> {
        if !self.built_headers.is_empty() {
            self.built_headers.clear();
        }
        let mut reply = LibraryReply {
            response,
            code: 200,
            built_headers: &mut self.built_headers,
        };
        self.state.serve(request, &mut reply);
        Ok(())
    }
}

impl ConnectionState {
    /// Answers one request.
    fn serve(&mut self, request: Request, response: &mut LibraryReply) {
        let head = message::inspect(request.version(), request.headers());
        if self.closing {
            return self.skip(request, head, response);
        }
        if let Some(admission) = &self.admission {
            admission.request_started();
        }
        let Some(head) = self.check_framing(head) else {
            return;
        };
        let routed = router::route(request.method(), request.path());
        if !self.receive_body(request, &head) {
            return;
        }
        match &routed.route {
            Route::Metrics => metrics::answer(&self.shared, response),
            route => handlers::answer(&self.shared.service, route, &self.body, response),
        }
        self.shared.requests.count(Some(&routed.route), response.code);
        if routed.head {
            response.body().clear();
        }
        self.end_of_exchange(&head, response);
    }
}

/// The library's response as a [`Reply`]. may_minihttp takes header lines
/// only as `&'static str`; a line built for one answer is kept in a String
/// the connection owns until its next request.
struct LibraryReply<'a, 'r> {
    response: &'a mut Response<'r>,
    /// The status code set, for the request counts.
    code: u16,
    built_headers: &'a mut Vec<String>,
}

impl Reply for LibraryReply<'_, '_> {
    fn status(&mut self, code: u16, reason: &'static str) {
        self.code = code;
        self.response.status_code(usize::from(code), reason);
    }

    fn header(&mut self, line: &'static str) {
        self.response.header(line);
    }

    fn header_built(&mut self, line: String) {
        self.built_headers.push(line);
        let line: *const str = self.built_headers.last().map_or("", String::as_str) as *const str;
        // SAFETY: the line's bytes live in a String's heap buffer, which does
        // not move when `built_headers` grows, and which `Connection` keeps
        // until the start of its next `call` (or its drop). may_minihttp 0.1.11
        // encodes the response into its write buffer as soon as `call`
        // returns, before calling the service again (http_server.rs:
        // `service.call(req, &mut rsp)` then `response::encode(rsp, ..)`), and
        // never reads the line after that; `Response` cannot escape `call`.
        self.response.header(unsafe { &*line });
    }

    fn body(&mut self) -> &mut BytesMut {
        self.response.body_mut()
    }
}
