//! [`RequestBody`]: the body of every request the server hands to the
//! application, whichever protocol carried it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::http1::Deadline;

/// A request body: read lazily from the client's connection as the
/// service asks for it, never buffered whole.
///
/// HTTP/1 bodies come from foobar's own HTTP/1 path: small ones that came
/// with their head are handed over at once, longer ones are read from the
/// connection on demand (and `100 Continue` is sent when the client asked
/// for it, on the first read). HTTP/2 bodies, and those of requests that
/// switch protocols, come from hyper.
///
/// A body that keeps the service waiting longer than the server's
/// [`body_read_timeout`](crate::HttpConfig::body_read_timeout) for its
/// next bytes yields [`BodyError::TimedOut`].
#[derive(Debug, Default)]
pub struct RequestBody {
    kind: Kind,
}

#[derive(Debug, Default)]
enum Kind {
    #[default]
    Empty,
    Full(Option<Bytes>),
    Streamed(Streamed),
    Hyper(Hyper),
    /// Failed for good; the error is given on every poll.
    Failed(BodyError),
}

/// Why a request body could not be read to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The client closed the connection before the end of the body.
    #[error("the client closed the connection before the end of the body")]
    Incomplete,
    /// The body's chunked framing was invalid.
    #[error("the request body's chunked framing is invalid")]
    Framing,
    /// Reading from the client failed.
    #[error("reading the request body failed")]
    Io,
    /// Nothing of the body came within the server's body read timeout
    /// while the service waited for it.
    #[error("the request body sent nothing within the body read timeout")]
    TimedOut,
}

impl BodyError {
    /// [`BodyError::TimedOut`], counted in
    /// `foobar_request_body_timeouts_total`.
    pub(crate) fn timed_out() -> Self {
        metrics::counter!("foobar_request_body_timeouts_total").increment(1);
        Self::TimedOut
    }
}

impl RequestBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A body of these bytes.
    pub fn full(bytes: Bytes) -> Self {
        Self {
            kind: if bytes.is_empty() {
                Kind::Empty
            } else {
                Kind::Full(Some(bytes))
            },
        }
    }

    /// A body that hyper reads (HTTP/2, protocol switches), failing when
    /// it keeps the service waiting for longer than `idle` (if set).
    pub(crate) fn hyper(body: hyper::body::Incoming, idle: Option<Duration>) -> Self {
        Self {
            kind: Kind::Hyper(Hyper {
                body,
                idle: idle.map(|limit| IdleLimit {
                    limit,
                    deadline: None,
                }),
            }),
        }
    }

    /// A body the HTTP/1 connection feeds through `shared`, of `length`
    /// bytes when known.
    pub(crate) fn streamed(shared: Arc<BodyShared>, length: Option<u64>) -> Self {
        Self {
            kind: Kind::Streamed(Streamed { shared, length }),
        }
    }
}

impl From<hyper::body::Incoming> for RequestBody {
    /// The body as hyper reads it, with no idle limit.
    fn from(body: hyper::body::Incoming) -> Self {
        Self::hyper(body, None)
    }
}

/// A body hyper reads, and how long it may keep the service waiting.
#[derive(Debug)]
struct Hyper {
    body: hyper::body::Incoming,
    idle: Option<IdleLimit>,
}

/// The body read timeout of one body.
#[derive(Debug)]
struct IdleLimit {
    limit: Duration,
    /// Made at the first wait: most bodies come whole with their request
    /// or at once, and never need a timer.
    deadline: Option<Deadline>,
}

impl IdleLimit {
    /// Something came: the next wait starts the clock again.
    fn came(&mut self) {
        if let Some(deadline) = &mut self.deadline {
            deadline.disarm();
        }
    }

    /// The service waits for the body: ready once it has waited too long.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline.get_or_insert_with(Deadline::new);
        deadline.poll_wait(self.limit, cx)
    }
}

/// The receiving end of a body the connection reads for it.
#[derive(Debug)]
struct Streamed {
    shared: Arc<BodyShared>,
    /// Bytes still to come, when the length is known.
    length: Option<u64>,
}

impl Drop for Streamed {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.dropped = true;
        state.want = false;
        if let Some(conn) = state.conn_waker.take() {
            conn.wake();
        }
    }
}

/// What a streamed body and its connection share.
#[derive(Debug, Default)]
pub(crate) struct BodyShared {
    state: Mutex<BodyState>,
}

/// See [`BodyShared`].
#[derive(Debug, Default)]
pub(crate) struct BodyState {
    /// Read and decoded, not taken yet.
    pub(crate) frames: VecDeque<Frame<Bytes>>,
    /// Every frame has been queued.
    pub(crate) finished: bool,
    pub(crate) error: Option<BodyError>,
    /// The body was polled and found nothing: the connection reads more.
    pub(crate) want: bool,
    /// The body is gone: nothing will read what is left.
    pub(crate) dropped: bool,
    body_waker: Option<Waker>,
    conn_waker: Option<Waker>,
}

impl BodyShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, BodyState> {
        // The state stays consistent even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl BodyState {
    /// Hands frames to the body and wakes it, unless it is this task.
    pub(crate) fn wake_body(&mut self, cx: &Context<'_>) {
        if let Some(waker) = self.body_waker.take() {
            if !waker.will_wake(cx.waker()) {
                waker.wake();
            }
        }
    }

    /// Remembers the connection's task, for a body polled elsewhere.
    pub(crate) fn register_conn(&mut self, cx: &Context<'_>) {
        match &mut self.conn_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::BoxError>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Failed(error) => Poll::Ready(Some(Err((*error).into()))),
            Kind::Hyper(hyper) => {
                let polled = Pin::new(&mut hyper.body).poll_frame(cx);
                let Some(idle) = &mut hyper.idle else {
                    return polled.map_err(Into::into);
                };
                if polled.is_ready() {
                    idle.came();
                    return polled.map_err(Into::into);
                }
                if idle.poll_expired(cx).is_pending() {
                    return Poll::Pending;
                }
                // Dropping hyper's body gives up the stream's receiving
                // side (and the data h2 holds for it) at once.
                let error = BodyError::timed_out();
                this.kind = Kind::Failed(error);
                Poll::Ready(Some(Err(error.into())))
            }
            Kind::Streamed(streamed) => {
                let mut state = streamed.shared.lock();
                if let Some(frame) = state.frames.pop_front() {
                    if let (Some(left), Some(data)) = (&mut streamed.length, frame.data_ref()) {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(error) = state.error {
                    return Poll::Ready(Some(Err(error.into())));
                }
                if state.finished {
                    return Poll::Ready(None);
                }
                state.want = true;
                match &mut state.body_waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                // The connection reads for us; wake it if it waits in
                // another task.
                if let Some(conn) = &state.conn_waker {
                    if !conn.will_wake(cx.waker()) {
                        conn.wake_by_ref();
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Hyper(hyper) => hyper.body.is_end_stream(),
            Kind::Failed(_) => false,
            Kind::Streamed(streamed) => {
                streamed.length == Some(0) && {
                    let state = streamed.shared.lock();
                    state.frames.is_empty() && state.finished
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Hyper(hyper) => hyper.body.size_hint(),
            Kind::Failed(_) => SizeHint::default(),
            Kind::Streamed(streamed) => match streamed.length {
                Some(left) => SizeHint::with_exact(left),
                None => SizeHint::default(),
            },
        }
    }
}

/// Trailer fields as a frame.
pub(crate) fn trailers_frame(trailers: HeaderMap) -> Frame<Bytes> {
    Frame::trailers(trailers)
}

/// Sends interim (`1xx`) responses ahead of the final one, such as a
/// backend's `103 Early Hints`. The HTTP/1.1 server puts one in every
/// HTTP/1.1 request's extensions; HTTP/1.0 clients and HTTP/2 get none.
/// What is sent after the final response has started is dropped.
#[derive(Clone, Debug)]
pub struct Interim {
    shared: Arc<InterimShared>,
}

#[derive(Debug, Default)]
pub(crate) struct InterimShared {
    state: Mutex<InterimState>,
}

#[derive(Debug, Default)]
pub(crate) struct InterimState {
    /// Encoded heads waiting to be written.
    pub(crate) pending: Vec<u8>,
    /// The final response has started: no more interim ones.
    pub(crate) closed: bool,
    conn_waker: Option<Waker>,
}

impl Interim {
    pub(crate) fn new(shared: Arc<InterimShared>) -> Self {
        Self { shared }
    }

    /// Queues an interim response for the client (its status must be
    /// `1xx`, and not `101`; others are ignored).
    pub fn send(&self, head: &http::response::Parts) {
        let status = head.status;
        if !status.is_informational() || status == http::StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let mut state = self.shared.lock();
        if state.closed {
            return;
        }
        let out = &mut state.pending;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &head.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if let Some(waker) = state.conn_waker.take() {
            waker.wake();
        }
    }
}

impl InterimShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, InterimState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl InterimState {
    /// Remembers the connection's task, for a sender elsewhere.
    pub(crate) fn register_conn(&mut self, cx: &Context<'_>) {
        match &mut self.conn_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
    }
}
