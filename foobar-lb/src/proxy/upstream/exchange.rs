//! One HTTP/1.1 exchange with a backend on a pooled connection: the
//! request head and body go out (the body chunked when its length is not
//! known), interim answers are passed on, and the final response head
//! comes back with the connection, whose body is read as the client takes
//! it.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use foobar_core::http1::{
    encode_chunk, encode_end, parse_response, push_decimal, Deadline, ResponseHead,
};
use foobar_core::Interim;
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{Method, StatusCode};
use http_body::Body;

use super::conn::Conn;
use super::pool::{Http1Pool, PooledConn};
use crate::error::UpstreamError;
use crate::proxy::body::ProxyBody;

/// Longest response head accepted from a backend.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// How long a request that expects `100 Continue` waits for the backend's
/// before its body goes anyway (RFC 9110 section 10.1.1).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);
/// Stale pooled connections tried in a row before opening a new one.
const STALE_RETRIES: u32 = 3;
/// Request body bytes gathered before a write.
const WRITE_HIGH: usize = 64 * 1024;

/// A backend's final answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) head: ResponseHead,
    /// The connection, its body still to be read from it.
    pub(crate) conn: PooledConn,
    /// The whole request went out: the connection may be reused once the
    /// response has been read.
    pub(crate) request_complete: bool,
}

/// A request head encoded for an HTTP/1.1 backend once, and sent as often
/// as retries need it (a retried request never needs its `http` form
/// again).
#[derive(Debug)]
pub(crate) struct UpstreamHead {
    /// The request line and the header fields; framing, a `Host` when it
    /// has none, and the final CRLF are added per attempt.
    bytes: Vec<u8>,
    has_host: bool,
    has_body: bool,
    /// The body's length, when known.
    length: Option<u64>,
    /// The client said `Content-Length` (an empty body keeps saying it).
    had_length: bool,
    head_request: bool,
    idempotent: bool,
    expect_continue: bool,
}

impl UpstreamHead {
    /// The head of a request whose body is `body`, with its header fields
    /// as `fields` writes them (without the framing ones).
    pub(crate) fn new(
        parts: &http::request::Parts,
        body: &ProxyBody,
        fields: impl FnOnce(&mut Vec<u8>),
    ) -> Self {
        let mut bytes = Vec::with_capacity(512);
        bytes.extend_from_slice(parts.method.as_str().as_bytes());
        bytes.push(b' ');
        if parts.method == Method::CONNECT {
            let authority = parts.uri.authority().map_or("", |a| a.as_str());
            bytes.extend_from_slice(authority.as_bytes());
        } else {
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            bytes.extend_from_slice(target.as_bytes());
        }
        bytes.extend_from_slice(b" HTTP/1.1\r\n");
        fields(&mut bytes);
        let has_body = !body.is_end_stream();
        Self {
            bytes,
            has_host: parts.headers.contains_key(HOST),
            has_body,
            length: body.size_hint().exact(),
            had_length: parts.headers.contains_key(CONTENT_LENGTH),
            head_request: parts.method == Method::HEAD,
            idempotent: super::super::is_idempotent(&parts.method),
            expect_continue: has_body
                && parts
                    .headers
                    .get(EXPECT)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
        }
    }

    /// Writes the fields of `headers` as they are, less the framing ones.
    pub(crate) fn write_plain_fields(out: &mut Vec<u8>, headers: &http::HeaderMap) {
        for (name, value) in headers {
            if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The whole head for one attempt on `pool`'s backend.
    fn finish(&self, pool: &Http1Pool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 64);
        out.extend_from_slice(&self.bytes);
        if !self.has_host {
            // An HTTP/1.0 client's request, a health check: the backend's.
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(pool.authority.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        match (self.has_body, self.length) {
            (true, None) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            (true, Some(n)) => {
                out.extend_from_slice(b"content-length: ");
                push_decimal(&mut out, n);
                out.extend_from_slice(b"\r\n");
            }
            (false, _) if self.had_length => out.extend_from_slice(b"content-length: 0\r\n"),
            (false, _) => {}
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Sends a request on a pooled connection (a new one when none is idle, or
/// when a reused one turns out closed before anything came back and the
/// request can go again).
pub(crate) async fn send(
    pool: &Arc<Http1Pool>,
    head: &UpstreamHead,
    mut body: Pin<&mut ProxyBody>,
    interim: Option<&Interim>,
    response_timeout: Option<Duration>,
) -> Result<Answer, UpstreamError> {
    let chunked = head.has_body && head.length.is_none();
    let mut stale = 0;
    loop {
        let mut pooled = match pool.checkout() {
            Some(pooled) => pooled,
            None => Box::pin(pool.connect()).await?,
        };
        if let Some(limit) = response_timeout {
            pooled.conn.deadline.arm(limit);
        } else {
            pooled.conn.deadline.disarm();
        }
        let mut sender = Sender {
            response_timeout,
            conn: &mut pooled.conn,
            out: head.finish(pool),
            written: 0,
            body: body.as_mut(),
            body_done: !head.has_body,
            body_started: false,
            chunked,
            waiting_for_continue: head.expect_continue.then(|| {
                let mut deadline = Deadline::new();
                deadline.arm(CONTINUE_WAIT);
                deadline
            }),
            head_request: head.head_request,
            interim,
            idempotent: head.idempotent,
            head_written: false,
            answered_anything: false,
        };
        match poll_fn(|cx| sender.poll(cx)).await {
            Ok(response) => {
                let request_complete = sender.body_done;
                return Ok(Answer {
                    head: response,
                    conn: pooled,
                    request_complete,
                });
            }
            Err(Failure::Stale) if pooled.reused && stale < STALE_RETRIES => {
                // A pooled connection the backend had closed, found out
                // before any of the request's body was taken: nothing was
                // done, so it goes again.
                stale += 1;
            }
            Err(Failure::Stale) => return Err(UpstreamError::Closed),
            Err(Failure::Upstream(error)) => return Err(error),
        }
    }
}

/// Why an exchange failed before its final response head.
enum Failure {
    /// The connection was closed or reset before anything came back and
    /// before any of the body was taken.
    Stale,
    Upstream(UpstreamError),
}

/// The state of one attempt: what is left to write, the body, the wait
/// for the answer.
struct Sender<'a, 'b> {
    /// From sending to the response head (the connection's deadline).
    response_timeout: Option<Duration>,
    conn: &'a mut Conn,
    out: Vec<u8>,
    written: usize,
    body: Pin<&'a mut ProxyBody>,
    body_done: bool,
    /// A frame of the body has been taken: the request cannot go again.
    body_started: bool,
    chunked: bool,
    /// The body waits for the backend's `100 Continue`, until then.
    waiting_for_continue: Option<Deadline>,
    head_request: bool,
    interim: Option<&'b Interim>,
    /// The request may be sent again after a connection failure whose
    /// effect is unknown.
    idempotent: bool,
    /// The head has gone out whole.
    head_written: bool,
    answered_anything: bool,
}

impl Sender<'_, '_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<ResponseHead, Failure>> {
        loop {
            let mut progressed = false;
            // What the backend sent, first: a final answer ends the upload.
            if !self.conn.eof {
                match self.conn.poll_read_more(cx) {
                    Poll::Ready(Ok(_)) => progressed = true,
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(self.lost(error))),
                    Poll::Pending => {}
                }
            }
            if !self.conn.read_buf.is_empty() {
                self.answered_anything = true;
                match parse_response(
                    &mut self.conn.read_buf,
                    self.head_request,
                    MAX_RESPONSE_HEAD,
                ) {
                    // `101` ends the exchange: a tunnel, or an error.
                    Ok(Some(head))
                        if head.is_informational()
                            && head.parts.status != StatusCode::SWITCHING_PROTOCOLS =>
                    {
                        self.interim_answer(&head);
                        continue;
                    }
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => {}
                    Err(bad) => {
                        return Poll::Ready(Err(Failure::Upstream(UpstreamError::BadResponse(bad))))
                    }
                }
            }
            if self.conn.eof {
                return Poll::Ready(Err(self.lost(std::io::ErrorKind::UnexpectedEof.into())));
            }
            // Then what is left of the request.
            if self.written < self.out.len() {
                let mut written = self.written;
                let sent = self.conn.poll_write_all(cx, &self.out, &mut written);
                self.written = written;
                match sent {
                    Poll::Ready(Ok(())) => {
                        self.out.clear();
                        self.written = 0;
                        self.head_written = true;
                        progressed = true;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(self.lost(error))),
                    Poll::Pending => {}
                }
            }
            if let Some(deadline) = &mut self.waiting_for_continue {
                if deadline.poll_expired(cx).is_ready() {
                    self.waiting_for_continue = None;
                    progressed = true;
                }
            }
            if !self.body_done && self.waiting_for_continue.is_none() && self.out.len() < WRITE_HIGH
            {
                match self.body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        self.body_started = true;
                        match frame.into_data() {
                            Ok(mut data) => {
                                let n = data.remaining();
                                if self.chunked {
                                    let bytes = data.copy_to_bytes(n);
                                    encode_chunk(&mut self.out, &bytes);
                                } else {
                                    while data.has_remaining() {
                                        let chunk = data.chunk();
                                        self.out.extend_from_slice(chunk);
                                        let k = chunk.len();
                                        data.advance(k);
                                    }
                                }
                            }
                            Err(frame) => {
                                if let (Ok(trailers), true) = (frame.into_trailers(), self.chunked)
                                {
                                    encode_end(&mut self.out, Some(&trailers));
                                    self.chunked = false;
                                    self.body_done = true;
                                }
                            }
                        }
                        progressed = true;
                    }
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(Failure::Upstream(UpstreamError::RequestBody(
                            error,
                        ))));
                    }
                    Poll::Ready(None) => {
                        if self.chunked {
                            encode_end(&mut self.out, None);
                        }
                        self.body_done = true;
                        progressed = true;
                    }
                    Poll::Pending => {}
                }
            }
            if !progressed {
                if let Some(limit) = self.response_timeout {
                    if self.conn.deadline.poll_expired(cx).is_ready() {
                        return Poll::Ready(Err(Failure::Upstream(
                            UpstreamError::ResponseTimeout(limit),
                        )));
                    }
                }
                return Poll::Pending;
            }
        }
    }

    /// A `1xx` before the final answer: `100` lets the body go; the rest
    /// go on to the client when it can take them.
    fn interim_answer(&mut self, head: &ResponseHead) {
        if head.parts.status == StatusCode::CONTINUE {
            self.waiting_for_continue = None;
            return;
        }
        if let Some(interim) = self.interim {
            interim.send(&head.parts);
        }
    }

    /// What a lost connection means: stale when nothing came back and none
    /// of the body was taken, and either the head never went whole or the
    /// request may be repeated anyway.
    fn lost(&self, error: std::io::Error) -> Failure {
        if !self.answered_anything && !self.body_started && (!self.head_written || self.idempotent)
        {
            Failure::Stale
        } else {
            Failure::Upstream(UpstreamError::Connection(error))
        }
    }
}
