//! Serving HTTP/1.1 on one connection: read a head, call the service in
//! this task (reading the request body as it asks), write the response,
//! and again while the connection is kept alive.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::{Service, ServiceExt};

use super::request::{self, Parsed, Refusal, RequestHead};
use super::{
    encode_chunk, encode_end, encode_head, http_date, BodyLength, ChunkedDecoder, Deadline,
};
use super::{Decoded, Sending};
use crate::body::{trailers_frame, BodyError, BodyShared, Interim, InterimShared, RequestBody};
use crate::conn::ConnInfo;
use crate::error::BoxError;
use crate::io::WriteTimeout;
use crate::server::HttpConfig;
use crate::shutdown::Shutdown;

/// How a connection ended.
pub(crate) enum Ended<IO> {
    /// It is closed (or to be dropped).
    Closed,
    /// A request wants a protocol switch or a tunnel: hyper serves the
    /// rest of the connection, starting with `buffered`.
    HandOver { io: IO, buffered: Bytes },
}

/// Room kept free in the read buffer before each read.
const READ_ROOM: usize = 8 * 1024;
/// Response bytes gathered before a write.
const WRITE_HIGH: usize = 64 * 1024;
/// Chunk extensions and trailers allowed per request body.
const CHUNK_METADATA_LIMIT: usize = 16 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves requests on `io` until the client closes, keep-alive ends, the
/// server drains, or a request is handed to hyper.
pub(crate) async fn serve<IO, S, B>(
    io: IO,
    buffered: BytesMut,
    info: ConnInfo,
    service: S,
    config: &HttpConfig,
    drain: &Shutdown,
) -> Ended<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let drained = drain;
    let mut conn = Conn {
        io: WriteTimeout::new(io, config.write_timeout).min_rate(config.min_write_rate),
        read_buf: buffered,
        write_buf: Vec::with_capacity(4 * 1024),
        config,
        deadline: Deadline::new(),
        read_closed: false,
        drain,
        drained: Box::pin(drained.waiter()),
        interim: Arc::new(InterimShared::default()),
    };
    loop {
        let head = match conn.read_head().await {
            Next::Head(head) => head,
            Next::Closed => return Ended::Closed,
            Next::HandOver => {
                return Ended::HandOver {
                    io: conn.io.into_inner(),
                    buffered: conn.read_buf.freeze(),
                }
            }
            Next::Refused(refusal) => {
                conn.refuse(refusal).await;
                return Ended::Closed;
            }
        };
        let RequestHead {
            parts,
            body,
            keep_alive,
            expect_continue,
        } = *head;
        let head_request = parts.method == Method::HEAD;
        let version = parts.version;
        let (body, mut reader) = conn.body(body, expect_continue);
        let mut req = Request::from_parts(parts, body);
        req.extensions_mut().insert(info.clone());
        if version == Version::HTTP_11 {
            conn.interim.lock().closed = false;
            req.extensions_mut()
                .insert(Interim::new(conn.interim.clone()));
        }

        let call = service.clone().oneshot(req);
        let response = match conn.call(call, &mut reader).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(peer = %info.peer, %error, "the service failed; answering 500");
                conn.refuse(Refusal {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    reason: "internal server error",
                })
                .await;
                return Ended::Closed;
            }
        };
        let request = Exchange {
            head_request,
            version,
            keep_alive: keep_alive && config.keep_alive,
        };
        if !conn.respond(response, &request, &mut reader).await {
            conn.close().await;
            return Ended::Closed;
        }
    }
}

/// What reading the next head gave.
enum Next {
    Head(Box<RequestHead>),
    Closed,
    HandOver,
    Refused(Refusal),
}

/// What the response depends on from its request.
struct Exchange {
    head_request: bool,
    version: Version,
    keep_alive: bool,
}

/// The request body being read for the service.
struct Reader {
    shared: Arc<BodyShared>,
    framing: Framing,
    /// `100 Continue` is owed before the first read.
    continue_owed: bool,
}

enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
    Done,
    /// The body was cut short or malformed: where the next request would
    /// start is unknown, so the connection closes after the response.
    Failed,
}

struct Conn<'a, IO> {
    io: WriteTimeout<IO>,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
    config: &'a HttpConfig,
    /// The header read timeout, and the body read timeout while the
    /// service waits for the request body (the two never overlap).
    deadline: Deadline,
    /// The client ended its side (half-close).
    read_closed: bool,
    drain: &'a Shutdown,
    drained: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// Interim responses the service sends before its final one.
    interim: Arc<InterimShared>,
}

impl<IO> Conn<'_, IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Reads until a complete request head is in, under the header read
    /// timeout (which also bounds the idle time between requests).
    async fn read_head(&mut self) -> Next {
        match self.config.header_read_timeout {
            Some(limit) => self.deadline.arm(limit),
            // Nothing of a body's wait may carry over.
            None => self.deadline.disarm(),
        }
        let max_headers = self.config.max_headers.min(request::MAX_HEADERS);
        poll_fn(|cx| loop {
            if !self.read_buf.is_empty() {
                match request::parse(
                    &mut self.read_buf,
                    max_headers,
                    self.config.max_header_bytes,
                ) {
                    Parsed::Partial => {}
                    Parsed::Head(head) => {
                        self.deadline.disarm();
                        return Poll::Ready(Next::Head(head));
                    }
                    Parsed::Refused(refusal) => return Poll::Ready(Next::Refused(refusal)),
                    Parsed::HandOver => return Poll::Ready(Next::HandOver),
                }
            }
            let idle = self.read_buf.is_empty();
            if self.read_closed || (idle && self.drain.is_triggered()) {
                return Poll::Ready(Next::Closed);
            }
            match self.poll_read(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Next::Closed),
                Poll::Pending => {}
            }
            if idle && self.drained.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Next::Closed);
            }
            if self.deadline.poll_expired(cx).is_ready() {
                if !idle {
                    metrics::counter!("foobar_header_timeouts_total").increment(1);
                }
                return Poll::Ready(Next::Closed);
            }
            return Poll::Pending;
        })
        .await
    }

    /// Reads more bytes into the read buffer; a client that ended its side
    /// leaves `read_closed` set.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_ROOM {
            self.read_buf.reserve(2 * READ_ROOM);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read_buf
        ))?;
        self.read_closed |= n == 0;
        Poll::Ready(Ok(()))
    }

    /// The request body for the service, and what reads it.
    fn body(&mut self, length: BodyLength, expect_continue: bool) -> (RequestBody, Option<Reader>) {
        let framing = match length {
            BodyLength::None | BodyLength::UntilClose => return (RequestBody::empty(), None),
            // A body that came with its head is handed over whole.
            BodyLength::Length(n) if !expect_continue && n <= self.read_buf.len() as u64 => {
                #[allow(clippy::cast_possible_truncation)]
                let bytes = self.read_buf.split_to(n as usize).freeze();
                return (RequestBody::full(bytes), None);
            }
            BodyLength::Length(n) => Framing::Length(n),
            BodyLength::Chunked => Framing::Chunked(ChunkedDecoder::new(CHUNK_METADATA_LIMIT)),
        };
        let shared = Arc::new(BodyShared::default());
        let known = match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let body = RequestBody::streamed(shared.clone(), known);
        let reader = Reader {
            shared,
            framing,
            continue_owed: expect_continue,
        };
        (body, Some(reader))
    }

    /// Drives the service's future to its response, reading the request
    /// body whenever it asks for more.
    async fn call<F, R, E>(&mut self, call: F, reader: &mut Option<Reader>) -> Result<R, BoxError>
    where
        F: Future<Output = Result<R, E>>,
        E: Into<BoxError>,
    {
        let mut call = pin!(call);
        let result = poll_fn(|cx| loop {
            if let Poll::Ready(result) = call.as_mut().poll(cx) {
                return Poll::Ready(result.map_err(Into::into));
            }
            let interim = self.poll_interim(cx);
            if self.pump(reader, cx).is_pending() && interim.is_pending() {
                return Poll::Pending;
            }
        })
        .await;
        let mut interim = self.interim.lock();
        interim.closed = true;
        // Interim heads queued with the final answer go first.
        self.write_buf.append(&mut interim.pending);
        result
    }

    /// Writes the interim responses the service queued; ready when some
    /// went out.
    fn poll_interim(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut interim = self.interim.lock();
            interim.register_conn(cx);
            if interim.pending.is_empty() && self.write_buf.is_empty() {
                return Poll::Pending;
            }
            self.write_buf.append(&mut interim.pending);
        }
        match self.poll_write_out(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            // The response write that follows fails the same way.
            Poll::Ready(Err(_)) => {
                self.write_buf.clear();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads for the request body if it asked for more; ready when it got
    /// something (bytes, its end, or an error).
    fn pump(&mut self, reader: &mut Option<Reader>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(r) = reader else {
            return Poll::Pending;
        };
        {
            let mut state = r.shared.lock();
            state.register_conn(cx);
            if state.dropped || !state.want || state.finished || state.error.is_some() {
                // Nobody waits for the body: no body read timeout.
                self.deadline.disarm();
                return Poll::Pending;
            }
        }
        if r.continue_owed {
            r.continue_owed = false;
            self.write_buf.extend_from_slice(CONTINUE);
        }
        if !self.write_buf.is_empty() {
            // `100 Continue` must reach the client before it sends.
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return fail(r, BodyError::Io, cx),
                Poll::Pending => return Poll::Pending,
            }
        }
        loop {
            match decode(&mut self.read_buf, r) {
                Ok(true) => {
                    self.deadline.disarm();
                    let mut state = r.shared.lock();
                    state.want = false;
                    state.wake_body(cx);
                    return Poll::Ready(());
                }
                Ok(false) => {}
                Err(error) => return fail(r, error, cx),
            }
            if self.read_closed {
                return fail(r, BodyError::Incomplete, cx);
            }
            match self.poll_read(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return fail(r, BodyError::Io, cx),
                Poll::Pending => return self.poll_body_timeout(r, cx),
            }
        }
    }

    /// The service waits for body bytes that have not come: the body
    /// fails once it has waited for the body read timeout.
    fn poll_body_timeout(&mut self, r: &mut Reader, cx: &mut Context<'_>) -> Poll<()> {
        let Some(limit) = self.config.body_read_timeout else {
            return Poll::Pending;
        };
        ready!(self.deadline.poll_wait(limit, cx));
        self.deadline.disarm();
        fail(r, BodyError::timed_out(), cx)
    }

    /// Writes the response: head, then body frames as they come, while
    /// still reading for the request body if the service asks. Whether the
    /// connection can carry another request.
    async fn respond<B>(
        &mut self,
        response: Response<B>,
        request: &Exchange,
        reader: &mut Option<Reader>,
    ) -> bool
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = response.into_parts();
        let sending = sending(&parts, &body, request);
        let asked_close = parts
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| super::list_items(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close")));
        let body_unread = reader
            .as_ref()
            .is_some_and(|r| !matches!(r.framing, Framing::Done));
        let close = !request.keep_alive
            || asked_close
            || sending == Sending::UntilClose
            || self.drain.is_triggered()
            || body_unread;
        let keep_alive_10 = request.version == Version::HTTP_10 && !close;
        http_date(|date| {
            encode_head(
                &mut self.write_buf,
                &parts,
                sending,
                close,
                keep_alive_10,
                date,
            );
        });
        let complete = if sending == Sending::None {
            true
        } else {
            let mut body = pin!(body);
            let mut left = match sending {
                Sending::Length(n) => Some(n),
                _ => None,
            };
            let chunked = sending == Sending::Chunked;
            poll_fn(|cx| loop {
                if self.write_buf.len() < WRITE_HIGH {
                    match body.as_mut().poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            match frame.into_data() {
                                Ok(data) => {
                                    if !self.push_data(data, chunked, &mut left) {
                                        return Poll::Ready(false);
                                    }
                                }
                                Err(frame) => {
                                    if let (Ok(trailers), true) = (frame.into_trailers(), chunked) {
                                        encode_end(&mut self.write_buf, Some(&trailers));
                                        return Poll::Ready(true);
                                    }
                                }
                            }
                            continue;
                        }
                        Poll::Ready(Some(Err(error))) => {
                            let error: BoxError = error.into();
                            tracing::debug!(%error, "response body failed; closing the connection");
                            return Poll::Ready(false);
                        }
                        Poll::Ready(None) => {
                            if chunked {
                                encode_end(&mut self.write_buf, None);
                            }
                            // A body shorter than its length leaves the
                            // client waiting: only a close ends it.
                            return Poll::Ready(left.is_none_or(|n| n == 0));
                        }
                        Poll::Pending => {}
                    }
                }
                let mut progressed = false;
                if !self.write_buf.is_empty() {
                    match self.poll_write_out(cx) {
                        Poll::Ready(Ok(())) => progressed = true,
                        Poll::Ready(Err(_)) => return Poll::Ready(false),
                        Poll::Pending => {}
                    }
                }
                if self.pump(reader, cx).is_ready() {
                    progressed = true;
                }
                if !progressed {
                    return Poll::Pending;
                }
            })
            .await
        };
        let written = poll_fn(|cx| {
            let out = ready!(self.poll_write_out(cx));
            Poll::Ready(out.and_then(|()| ready_flush(&mut self.io, cx)))
        })
        .await;
        if written.is_err() || !complete || close {
            return false;
        }
        // A request body the service left unread ends the connection: the
        // next request starts after it.
        match reader {
            Some(r) => {
                let _ = decode(&mut self.read_buf, r);
                matches!(r.framing, Framing::Done)
            }
            None => true,
        }
    }

    /// Appends a data frame, chunked or counted against the length; false
    /// when the body overran its length.
    fn push_data<D: Buf>(&mut self, mut data: D, chunked: bool, left: &mut Option<u64>) -> bool {
        let len = data.remaining();
        if len == 0 {
            return true;
        }
        if let Some(left) = left {
            if len as u64 > *left {
                tracing::debug!("response body longer than its Content-Length; closing");
                return false;
            }
            *left -= len as u64;
        }
        if chunked && data.chunk().len() == len {
            encode_chunk(&mut self.write_buf, data.chunk());
            return true;
        }
        if chunked {
            let mut joined = Vec::with_capacity(len);
            while data.has_remaining() {
                let chunk = data.chunk();
                joined.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
            encode_chunk(&mut self.write_buf, &joined);
            return true;
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            self.write_buf.extend_from_slice(chunk);
            let n = chunk.len();
            data.advance(n);
        }
        true
    }

    /// Writes the whole write buffer.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut at = 0;
        while at < self.write_buf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.write_buf[at..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => at += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    self.write_buf.drain(..at);
                    return Poll::Pending;
                }
            }
        }
        self.write_buf.clear();
        Poll::Ready(Ok(()))
    }

    /// Answers a refused request and closes.
    async fn refuse(&mut self, refusal: Refusal) {
        metrics::counter!("foobar_http1_refused_total").increment(1);
        let message = refusal.reason.as_bytes();
        let out = &mut self.write_buf;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(refusal.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(refusal.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
        super::push_decimal(out, message.len() as u64 + 1);
        out.extend_from_slice(b"\r\nconnection: close\r\ndate: ");
        http_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(message);
        out.push(b'\n');
        let _ = poll_fn(|cx| {
            let out = ready!(self.poll_write_out(cx));
            Poll::Ready(out.and_then(|()| ready_flush(&mut self.io, cx)))
        })
        .await;
        self.close().await;
    }

    /// Ends our side of the connection.
    async fn close(&mut self) {
        let _ = poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await;
    }
}

/// Flushes, passing on `Pending`.
fn ready_flush<IO: AsyncWrite + Unpin>(io: &mut IO, cx: &mut Context<'_>) -> io::Result<()> {
    match Pin::new(io).poll_flush(cx) {
        Poll::Ready(result) => result,
        // Plain TCP is always flushed; TLS flushes within its writes.
        Poll::Pending => Ok(()),
    }
}

/// Moves what the read buffer holds of the body into the body's frames;
/// whether anything (bytes or the end) was added.
fn decode(read_buf: &mut BytesMut, r: &mut Reader) -> Result<bool, BodyError> {
    let mut added = false;
    loop {
        match &mut r.framing {
            Framing::Done | Framing::Failed => return Ok(added),
            Framing::Length(left) => {
                if read_buf.is_empty() {
                    return Ok(added);
                }
                #[allow(clippy::cast_possible_truncation)]
                let n = (*left).min(read_buf.len() as u64) as usize;
                *left -= n as u64;
                let data = read_buf.split_to(n).freeze();
                let mut state = r.shared.lock();
                state.frames.push_back(http_body::Frame::data(data));
                if *left == 0 {
                    state.finished = true;
                    r.framing = Framing::Done;
                }
                added = true;
            }
            Framing::Chunked(decoder) => match decoder.decode(read_buf) {
                Ok(Some(Decoded::Data(data))) => {
                    r.shared
                        .lock()
                        .frames
                        .push_back(http_body::Frame::data(data));
                    added = true;
                }
                Ok(Some(Decoded::End(trailers))) => {
                    let mut state = r.shared.lock();
                    if let Some(trailers) = trailers {
                        state.frames.push_back(trailers_frame(trailers));
                    }
                    state.finished = true;
                    r.framing = Framing::Done;
                    added = true;
                }
                Ok(None) => return Ok(added),
                Err(_) => return Err(BodyError::Framing),
            },
        }
    }
}

/// Hands the body an error; the connection cannot go on after it.
fn fail(r: &mut Reader, error: BodyError, cx: &Context<'_>) -> Poll<()> {
    let mut state = r.shared.lock();
    state.error = Some(error);
    state.want = false;
    state.wake_body(cx);
    drop(state);
    r.framing = Framing::Failed;
    Poll::Ready(())
}

/// How the response body goes: the service's `Transfer-Encoding` or
/// `Content-Length`, else the body's known size, else chunked (or until
/// close for an HTTP/1.0 client).
fn sending<B: Body>(parts: &http::response::Parts, body: &B, request: &Exchange) -> Sending {
    let status = parts.status;
    if request.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Sending::None;
    }
    let http10 = request.version == Version::HTTP_10;
    if parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return if http10 {
            Sending::UntilClose
        } else {
            Sending::Chunked
        };
    }
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| super::content_length(v.as_bytes()))
        .or_else(|| body.size_hint().exact());
    match length {
        Some(n) => Sending::Length(n),
        None if http10 => Sending::UntilClose,
        None => Sending::Chunked,
    }
}
