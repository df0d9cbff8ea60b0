use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::Response;
use pin_project_lite::pin_project;

use super::service::{InFlight, MethodIndex};

pin_project! {
    /// Response future of [`Metrics`](super::Metrics): records the outcome
    /// when the inner future completes.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        method: MethodIndex,
        started: Instant,
        in_flight: InFlight,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        inner: F,
        method: MethodIndex,
        started: Instant,
        in_flight: InFlight,
    ) -> Self {
        Self {
            inner,
            method,
            started,
            in_flight,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let metrics = &this.in_flight.metrics;
        match &result {
            Ok(response) => metrics.record_response(*this.method, response.status(), *this.started),
            Err(_) => metrics.record_error(*this.method),
        }
        Poll::Ready(result)
    }
}
