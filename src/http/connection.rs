//! One client connection: checks each request's framing, reads its body
//! within the size limit, routes and answers it, and closes the connection
//! when HTTP says so.

use std::io::{self, Read};
use std::sync::Arc;

use may_minihttp::{HttpService, Request, Response};

use crate::http::guard::{Admission, Guard};
use crate::http::handlers::{self, closing_answer};
use crate::http::message::{self, HeadError, RequestHead};
use crate::http::router;
use crate::http::wire::Socket;
use crate::service::TaskService;

/// What every connection shares.
pub struct Shared {
    /// The use-cases requests are answered with.
    pub service: Arc<TaskService>,
    /// The connection limits and their watchdog.
    pub guard: Arc<Guard>,
}

/// The per-connection state may_minihttp calls for each request.
pub struct Connection {
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
    /// State for the connection whose socket descriptor may_minihttp passed
    /// as the service id. Over the connection limit, the client is told so
    /// and the connection closed.
    pub fn new(connection_id: usize, shared: Arc<Shared>) -> Self {
        let socket = Socket::from_connection_id(connection_id);
        let admission = shared.guard.admit(socket);
        let mut connection = Self {
            socket,
            shared,
            admission,
            closing: false,
            body: Vec::new(),
        };
        if connection.admission.is_none() {
            connection.refuse((503, "Service Unavailable"), "too many open connections");
        }
        connection
    }

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
        self.socket.send(&closing_answer(status, message));
        self.socket.close();
        self.closing = true;
    }

    /// Leaves unprocessed a request that arrived after the connection began
    /// closing (RFC 9112 section 9.6). The library answers every request it
    /// parses, so it gets a 503; its body, when it can be framed, is
    /// consumed so the library does not take it for the next request and
    /// drop the answers still waiting to be written.
    fn skip(&mut self, request: Request, head: Result<RequestHead, HeadError>, response: &mut Response) {
        let limit = self.max_body_bytes();
        if head.is_ok_and(|head| head.content_length <= limit as u64) {
            drop(request.body());
        }
        response.header("Connection: close");
        handlers::error(response, 503, "Service Unavailable", "connection is closing");
    }

    /// Applies the request's connection semantics to the answer.
    fn end_of_exchange(&mut self, head: &RequestHead, response: &mut Response) {
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
        let head = message::inspect(request.version(), request.headers());
        if self.closing {
            self.skip(request, head, response);
            return Ok(());
        }
        if let Some(admission) = &self.admission {
            admission.request_started();
        }
        let Some(head) = self.check_framing(head) else {
            return Ok(());
        };
        let routed = router::route(request.method(), request.path());
        if !self.receive_body(request, &head) {
            return Ok(());
        }
        handlers::answer(&self.shared.service, &routed.route, &self.body, response);
        if routed.head {
            response.body_mut().clear();
        }
        self.end_of_exchange(&head, response);
        Ok(())
    }
}
