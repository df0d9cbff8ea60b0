use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use foobar_core::BoxError;
use http::{header, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::GuardBody;
use crate::response_future::Rejection;

const TOO_LARGE: Rejection = Rejection {
    status: StatusCode::PAYLOAD_TOO_LARGE,
    message: "request body too large\n",
    retry_after: None,
    grpc: false,
};

/// Limits request bodies to a number of bytes. See the
/// [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer {
    max: u64,
}

impl BodyLimitLayer {
    /// Allows bodies of at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self { max: max_bytes }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            max: self.max,
        }
    }
}

/// The body-limit service; made by [`BodyLimitLayer`].
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit<S> {
    inner: S,
    max: u64,
}

impl<S> BodyLimit<S> {
    /// Wraps `inner`, allowing bodies of at most `max_bytes`.
    pub fn new(inner: S, max_bytes: u64) -> Self {
        Self {
            inner,
            max: max_bytes,
        }
    }

    /// A layer that wraps services in `BodyLimit`.
    pub fn layer(max_bytes: u64) -> BodyLimitLayer {
        BodyLimitLayer::new(max_bytes)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S>
where
    S: Service<Request<LimitedBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<GuardBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max) {
            return ResponseFuture::rejected(TOO_LARGE.for_request(req.headers()));
        }
        // A body whose exact size is known and within the limit (hyper
        // enforces Content-Length) needs no overflow flag.
        let hint = req.body().size_hint();
        let overflow = match hint.upper() {
            Some(upper) if upper <= self.max => None,
            _ => Some(Arc::new(AtomicBool::new(false))),
        };
        let req = req.map(|body| LimitedBody {
            inner: body,
            remaining: self.max,
            overflow: overflow.clone(),
        });
        let too_large = TOO_LARGE.for_request(req.headers());
        ResponseFuture::inner(self.inner.call(req), overflow, too_large)
    }
}

pin_project! {
    /// A request body that fails with [`BodyTooLarge`] once more than the
    /// limit has passed through.
    #[derive(Debug)]
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        overflow: Option<Arc<AtomicBool>>,
    }
}

/// The error a [`LimitedBody`] returns past its limit.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than the limit")]
pub struct BodyTooLarge;

impl<B> Body for LimitedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            let len = data.remaining() as u64;
            if len > *this.remaining {
                *this.remaining = 0;
                if let Some(flag) = this.overflow {
                    flag.store(true, Ordering::Release);
                }
                return Poll::Ready(Some(Err(BodyTooLarge.into())));
            }
            *this.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Response future of [`BodyLimit`]: the inner response, replaced by
    /// 413 if the body went over the limit.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        overflow: Option<Arc<AtomicBool>>,
        too_large: Rejection,
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F, overflow: Option<Arc<AtomicBool>>, too_large: Rejection) -> Self {
        Self {
            inner: Some(future),
            overflow,
            too_large,
        }
    }

    fn rejected(too_large: Rejection) -> Self {
        Self {
            inner: None,
            overflow: None,
            too_large,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GuardBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(future) = this.inner.as_pin_mut() else {
            return Poll::Ready(Ok(this.too_large.into_response()));
        };
        let result = ready!(future.poll(cx));
        let overflowed = this
            .overflow
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Acquire));
        if overflowed {
            // Whatever the handler made of the failed read, the answer is 413.
            return Poll::Ready(Ok(this.too_large.into_response()));
        }
        Poll::Ready(result.map(|response| response.map(GuardBody::inner)))
    }
}
