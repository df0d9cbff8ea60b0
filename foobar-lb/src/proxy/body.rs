//! The body type the proxy sends upstream and returns downstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use foobar_core::BoxError;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::upstream::PooledConn;
use crate::backends::InFlight;
use crate::error::UpstreamError;

/// A streamed body: a peer's body passed through untouched, or a small
/// body the proxy made itself (error pages). Never buffered.
#[derive(Debug, Default)]
pub struct ProxyBody {
    kind: Kind,
    /// Set on a client's request body: what became of it upstream.
    progress: Option<Arc<BodyProgress>>,
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

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }

    /// Whether reading the client's body failed.
    pub(crate) fn failed(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::FAILED
    }

    /// Whether the upload is waiting for the client (not for the backend
    /// to take more).
    pub(crate) fn waiting_on_client(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::WAITING
    }
}

#[derive(Debug, Default)]
enum Kind {
    #[default]
    Empty,
    Full(Option<Bytes>),
    Incoming(UpstreamBody),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
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

    /// This body, reporting its progress to `progress` as it is read.
    pub(crate) fn watched(mut self, progress: Arc<BodyProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Any other body (boxed).
    pub fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self::of(Kind::Boxed(body.map_err(Into::into).boxed_unsync()))
    }

    /// A backend's response body, keeping its request in flight and its
    /// connection checked out until read to the end; a body whose next
    /// bytes do not come within `stall` ends in an error.
    pub(crate) fn upstream(
        body: Incoming,
        in_flight: Option<InFlight>,
        conn: Option<PooledConn>,
        stall: Option<Duration>,
    ) -> Self {
        Self::of(Kind::Incoming(UpstreamBody {
            body,
            in_flight,
            conn,
            stall,
            stalled: None,
            waiting: false,
        }))
    }
}

impl From<Incoming> for ProxyBody {
    fn from(body: Incoming) -> Self {
        Self::upstream(body, None, None, None)
    }
}

/// A body read from a peer. For a backend's response, the request stays in
/// flight and the connection checked out until the body has been read to
/// its end (or dropped).
#[derive(Debug)]
struct UpstreamBody {
    body: Incoming,
    in_flight: Option<InFlight>,
    conn: Option<PooledConn>,
    /// Longest wait for the next frame.
    stall: Option<Duration>,
    /// Set to `stall` from now when a poll finds no frame ready; kept (not
    /// re-allocated) for the next wait.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Whether `stalled` times the current wait.
    waiting: bool,
}

impl UpstreamBody {
    /// Polls the next frame, failing when none has come within `stall`.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        let Some(limit) = self.stall else {
            return poll.map(|frame| frame.map(|f| f.map_err(Into::into)));
        };
        if let Poll::Ready(frame) = poll {
            self.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let restart = !std::mem::replace(&mut self.waiting, true);
        let stalled = match &mut self.stalled {
            Some(sleep) => {
                if restart {
                    sleep.set(tokio::time::sleep(limit));
                }
                sleep
            }
            None => self.stalled.insert(Box::pin(tokio::time::sleep(limit))),
        };
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Some(Err(UpstreamError::BodyTimeout(limit).into())))
    }

    /// The exchange is over: its connection can serve the next request.
    fn finish(&mut self) {
        self.in_flight.take();
        if let Some(conn) = self.conn.take() {
            conn.release();
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A server stops polling a body that says it has ended (and never
        // polls an empty one): the connection is clean then.
        if self.body.is_end_stream() {
            self.finish();
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
            Kind::Incoming(upstream) => upstream.body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Incoming(upstream) => upstream.body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

impl ProxyBody {
    fn poll_kind(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Incoming(upstream) => {
                let frame = ready!(upstream.poll_next(cx));
                match frame {
                    Some(Ok(frame)) => {
                        if upstream.body.is_end_stream() {
                            upstream.finish();
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(error)) => {
                        // Not reusable: dropped without `finish`.
                        upstream.in_flight.take();
                        upstream.conn.take();
                        Poll::Ready(Some(Err(error)))
                    }
                    None => {
                        upstream.finish();
                        Poll::Ready(None)
                    }
                }
            }
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }
}

/// Request bodies the proxy accepts: hyper's [`Incoming`] (what
/// [`foobar_core::Server`] hands out) passes through without boxing.
pub trait IntoProxyBody {
    /// Converts the body.
    fn into_proxy_body(self) -> ProxyBody;
}

impl IntoProxyBody for ProxyBody {
    fn into_proxy_body(self) -> ProxyBody {
        self
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
