use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::GuardBody;
use crate::response_future::{is_grpc, Rejection};

/// The handler is not waiting on the request body.
const NOT_WAITING: u8 = 0;
/// The handler's last read of the body found no data yet: it waits on the
/// client.
const WAITING_FOR_CLIENT: u8 = 1;

/// Bounds the time to a response head. See the [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Answers 408 or 504 to requests without a response head after
    /// `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The request-timeout service; made by [`TimeoutLayer`].
#[derive(Clone, Copy, Debug)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    /// A layer that wraps services in `Timeout`.
    pub fn layer(timeout: Duration) -> TimeoutLayer {
        TimeoutLayer::new(timeout)
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<TimedBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<GuardBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let grpc = is_grpc(req.headers());
        // Only a request with a body to wait for needs the shared state.
        let state = (!req.body().is_end_stream()).then(|| Arc::new(AtomicU8::new(NOT_WAITING)));
        let req = req.map(|body| TimedBody {
            inner: body,
            state: state.clone(),
        });
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: tokio::time::sleep(self.timeout),
            state,
            grpc,
        }
    }
}

pin_project! {
    /// A request body that tells its [`Timeout`] whether the handler is
    /// waiting on the client.
    #[derive(Debug)]
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        state: Option<Arc<AtomicU8>>,
    }
}

impl<B: Body> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(state) = this.state {
            let now = if polled.is_pending() {
                WAITING_FOR_CLIENT
            } else {
                NOT_WAITING
            };
            state.store(now, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Response future of [`Timeout`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        state: Option<Arc<AtomicU8>>,
        grpc: bool,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GuardBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map(|response| response.map(GuardBody::inner)));
        }
        ready!(this.sleep.poll(cx));
        let client_slow = this
            .state
            .as_ref()
            .is_some_and(|state| state.load(Ordering::Relaxed) == WAITING_FOR_CLIENT);
        let rejection = if client_slow {
            Rejection::new(
                StatusCode::REQUEST_TIMEOUT,
                "request timeout: the request body arrived too slowly\n",
            )
        } else {
            Rejection::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout: no response in time\n",
            )
        };
        let rejection = Rejection {
            grpc: *this.grpc,
            ..rejection
        };
        Poll::Ready(Ok(rejection.into_response()))
    }
}
