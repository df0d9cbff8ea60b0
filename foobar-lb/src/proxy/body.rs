//! The body type the proxy sends upstream and returns downstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use foobar_core::http1::{ChunkedDecoder, Decoded};
use foobar_core::{BoxError, RequestBody};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::upstream::PooledConn;
use crate::backends::InFlight;
use crate::error::UpstreamError;

/// Chunk extensions and trailers allowed in a backend's response body.
const CHUNK_METADATA_LIMIT: usize = 16 * 1024;

/// A streamed body: a peer's body passed through, or a small body the
/// proxy made itself (error pages). Never buffered whole.
#[derive(Debug, Default)]
pub struct ProxyBody {
    kind: Kind,
    /// Set on a client's request body: what became of it upstream.
    progress: Option<Arc<BodyProgress>>,
}

#[derive(Debug, Default)]
enum Kind {
    #[default]
    Empty,
    Full(Option<Bytes>),
    /// A client's request body, as the server hands it out.
    Request(RequestBody),
    /// An HTTP/1.1 backend's response body, read from its connection.
    Http1(Http1Body),
    /// An HTTP/2 backend's response body.
    Http2(Http2Body),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

/// How far a client's request body got on its way to the backend: tells a
/// failure of the client's upload (its fault) from the backend's.
#[derive(Debug, Default)]
pub(crate) struct BodyProgress(AtomicU8);

impl BodyProgress {
    const SENDING: u8 = 0;
    /// The last poll found no bytes from the client.
    const WAITING: u8 = 1;
    const ENDED: u8 = 2;
    /// The client's body failed: malformed, or cut short.
    const FAILED: u8 = 3;
    /// The client's body sent nothing within the server's body read
    /// timeout.
    const TIMED_OUT: u8 = 4;

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }

    /// Whether reading the client's body failed.
    pub(crate) fn failed(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::FAILED
    }

    /// Whether the client's body stopped coming (the server's body read
    /// timeout ran out).
    pub(crate) fn timed_out(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::TIMED_OUT
    }

    /// Whether the upload is waiting for the client (not for the backend
    /// to take more).
    pub(crate) fn waiting_on_client(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::WAITING
    }
}

impl ProxyBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::of(Kind::Full(Some(bytes.into())))
    }

    fn of(kind: Kind) -> Self {
        Self {
            kind,
            progress: None,
        }
    }

    /// Any other body (boxed).
    pub fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self::of(Kind::Boxed(body.map_err(Into::into).boxed_unsync()))
    }

    /// This body, reporting its progress to `progress` as it is read.
    pub(crate) fn watched(mut self, progress: Arc<BodyProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// An HTTP/1.1 backend's response body of `length`, read from `conn`;
    /// the request stays in flight until its end, and the connection goes
    /// back to its pool then if `reusable`. A body whose next bytes do not
    /// come within `stall` ends in an error.
    pub(crate) fn http1(
        conn: PooledConn,
        length: foobar_core::http1::BodyLength,
        reusable: bool,
        in_flight: Option<InFlight>,
        stall: Option<Duration>,
    ) -> Self {
        use foobar_core::http1::BodyLength;
        let framing = match length {
            BodyLength::None | BodyLength::Length(0) => Framing::Done,
            BodyLength::Length(n) => Framing::Length(n),
            BodyLength::Chunked => Framing::Chunked(ChunkedDecoder::new(CHUNK_METADATA_LIMIT)),
            _ => Framing::UntilClose,
        };
        let mut body = Http1Body {
            conn: Some(conn),
            framing,
            reusable,
            in_flight,
            stall: Stall::new(stall),
        };
        if matches!(body.framing, Framing::Done) {
            body.finish();
        }
        Self::of(Kind::Http1(body))
    }

    /// An HTTP/2 backend's response body (see [`http1`](Self::http1)).
    pub(crate) fn http2(
        body: Incoming,
        in_flight: Option<InFlight>,
        stall: Option<Duration>,
    ) -> Self {
        Self::of(Kind::Http2(Http2Body {
            body,
            in_flight,
            stall: Stall::new(stall),
        }))
    }

    fn poll_kind(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Request(body) => Pin::new(body).poll_frame(cx),
            Kind::Http1(body) => body.poll_next(cx),
            Kind::Http2(body) => body.poll_next(cx),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }
}

impl From<Incoming> for ProxyBody {
    fn from(body: Incoming) -> Self {
        Self::of(Kind::Request(body.into()))
    }
}

/// Waits for a body's next bytes, failing when none come within a limit.
#[derive(Debug)]
struct Stall {
    limit: Option<Duration>,
    /// Set to `limit` from now when a poll finds nothing; kept (not
    /// re-allocated) for the next wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` times the current wait.
    waiting: bool,
}

impl Stall {
    fn new(limit: Option<Duration>) -> Self {
        Self {
            limit,
            timer: None,
            waiting: false,
        }
    }

    /// Bytes came.
    fn progressed(&mut self) {
        self.waiting = false;
    }

    /// Nothing came: ready with the error once the limit has passed.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<BoxError> {
        let Some(limit) = self.limit else {
            return Poll::Pending;
        };
        let restart = !std::mem::replace(&mut self.waiting, true);
        let timer = match &mut self.timer {
            Some(sleep) => {
                if restart {
                    sleep.set(tokio::time::sleep(limit));
                }
                sleep
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(limit))),
        };
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(UpstreamError::BodyTimeout(limit).into())
    }
}

#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

/// An HTTP/1.1 backend's response body, decoded from its connection as
/// the client takes it.
#[derive(Debug)]
struct Http1Body {
    conn: Option<PooledConn>,
    framing: Framing,
    reusable: bool,
    in_flight: Option<InFlight>,
    stall: Stall,
}

impl Http1Body {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let Some(pooled) = &mut self.conn else {
                return Poll::Ready(None);
            };
            let conn = &mut pooled.conn;
            let buffered = !conn.read_buf.is_empty();
            match &mut self.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(left) if buffered => {
                    #[allow(clippy::cast_possible_truncation)]
                    let n = (*left).min(conn.read_buf.len() as u64) as usize;
                    *left -= n as u64;
                    let data = conn.read_buf.split_to(n).freeze();
                    if *left == 0 {
                        self.framing = Framing::Done;
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(decoder) if buffered => match decoder.decode(&mut conn.read_buf) {
                    Ok(Some(Decoded::Data(data))) => {
                        return Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Ok(Some(Decoded::End(trailers))) => {
                        self.framing = Framing::Done;
                        self.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(None) => {}
                    Err(error) => return Poll::Ready(Some(Err(self.fail(error.into())))),
                },
                Framing::UntilClose if buffered => {
                    let data = conn.read_buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                _ => {}
            }
            if conn.eof {
                if matches!(self.framing, Framing::UntilClose) {
                    self.framing = Framing::Done;
                    self.reusable = false;
                    self.finish();
                    return Poll::Ready(None);
                }
                let cut = UpstreamError::Connection(std::io::ErrorKind::UnexpectedEof.into());
                return Poll::Ready(Some(Err(self.fail(cut.into()))));
            }
            match conn.poll_read_more(cx) {
                Poll::Ready(Ok(_)) => self.stall.progressed(),
                Poll::Ready(Err(error)) => {
                    return Poll::Ready(Some(Err(
                        self.fail(UpstreamError::Connection(error).into())
                    )))
                }
                Poll::Pending => {
                    let error = ready!(self.stall.poll_stalled(cx));
                    return Poll::Ready(Some(Err(self.fail(error))));
                }
            }
        }
    }

    /// The body has been read to its end: the exchange is over, and the
    /// connection serves the next request if nothing came after it.
    fn finish(&mut self) {
        self.in_flight.take();
        if let Some(conn) = self.conn.take() {
            if self.reusable {
                conn.release();
            }
        }
    }

    /// The body failed: the connection is closed.
    fn fail(&mut self, error: BoxError) -> BoxError {
        self.framing = Framing::Done;
        self.in_flight.take();
        self.conn.take();
        error
    }
}

/// An HTTP/2 backend's response body.
#[derive(Debug)]
struct Http2Body {
    body: Incoming,
    in_flight: Option<InFlight>,
    stall: Stall,
}

impl Http2Body {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.stall.progressed();
                if frame.is_none() || self.body.is_end_stream() {
                    self.in_flight.take();
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let error = ready!(self.stall.poll_stalled(cx));
                self.in_flight.take();
                Poll::Ready(Some(Err(error)))
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let poll = this.poll_kind(cx);
        if let Some(progress) = &this.progress {
            progress.set(match &poll {
                Poll::Pending => BodyProgress::WAITING,
                Poll::Ready(Some(Ok(_))) => BodyProgress::SENDING,
                Poll::Ready(Some(Err(error))) if body_timed_out(&**error) => {
                    BodyProgress::TIMED_OUT
                }
                Poll::Ready(Some(Err(_))) => BodyProgress::FAILED,
                Poll::Ready(None) => BodyProgress::ENDED,
            });
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Request(body) => body.is_end_stream(),
            Kind::Http1(body) => matches!(body.framing, Framing::Done),
            Kind::Http2(body) => body.body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Request(body) => body.size_hint(),
            Kind::Http1(body) => match body.framing {
                Framing::Length(n) => SizeHint::with_exact(n),
                Framing::Done => SizeHint::with_exact(0),
                _ => SizeHint::default(),
            },
            Kind::Http2(body) => body.body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

/// Request bodies the proxy accepts: the server's [`RequestBody`] passes
/// through without boxing.
pub trait IntoProxyBody {
    /// Converts the body.
    fn into_proxy_body(self) -> ProxyBody;
}

impl IntoProxyBody for ProxyBody {
    fn into_proxy_body(self) -> ProxyBody {
        self
    }
}

impl IntoProxyBody for RequestBody {
    fn into_proxy_body(self) -> ProxyBody {
        ProxyBody::of(Kind::Request(self))
    }
}

impl IntoProxyBody for Incoming {
    fn into_proxy_body(self) -> ProxyBody {
        self.into()
    }
}

impl IntoProxyBody for http_body_util::Full<Bytes> {
    fn into_proxy_body(self) -> ProxyBody {
        ProxyBody::new(self)
    }
}

impl IntoProxyBody for http_body_util::Empty<Bytes> {
    fn into_proxy_body(self) -> ProxyBody {
        ProxyBody::empty()
    }
}

impl IntoProxyBody for UnsyncBoxBody<Bytes, BoxError> {
    fn into_proxy_body(self) -> ProxyBody {
        ProxyBody::of(Kind::Boxed(self))
    }
}

/// Whether `error` is, or was caused by, the server's body read timeout.
fn body_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        matches!(
            e.downcast_ref::<foobar_core::BodyError>(),
            Some(foobar_core::BodyError::TimedOut)
        )
    })
}
