//! The response future shared by the request-level layers that answer
//! refusals themselves (firewall 403, rate limit 429, unknown client 500).
//!
//! A refusal of a gRPC request (`content-type: application/grpc…`) is
//! answered the way gRPC clients understand: `200` with `grpc-status` and
//! `grpc-message` in the headers and no body (a trailers-only response).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use crate::body::{plain, GuardBody};

/// Whether a request with these headers is gRPC.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A refusal a layer answers itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) message: &'static str,
    /// Seconds for a `Retry-After` header.
    pub(crate) retry_after: Option<u64>,
    /// Answer as gRPC.
    pub(crate) grpc: bool,
}

impl Rejection {
    pub(crate) fn new(status: StatusCode, message: &'static str) -> Self {
        Self {
            status,
            message,
            retry_after: None,
            grpc: false,
        }
    }

    /// The same refusal, in gRPC form when the request is gRPC.
    pub(crate) fn for_request(mut self, headers: &HeaderMap) -> Self {
        self.grpc = is_grpc(headers);
        self
    }

    /// The gRPC status code for the HTTP status.
    fn grpc_status(&self) -> &'static str {
        match self.status {
            StatusCode::FORBIDDEN => "7", // PERMISSION_DENIED
            StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => "8", // RESOURCE_EXHAUSTED
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "4", // DEADLINE_EXCEEDED
            _ => "13",                                                        // INTERNAL
        }
    }

    pub(crate) fn into_response<B>(self) -> Response<GuardBody<B>> {
        if self.grpc {
            return self.into_grpc_response();
        }
        let mut response = plain(self.status, self.message);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    fn into_grpc_response<B>(self) -> Response<GuardBody<B>> {
        let mut response = Response::new(GuardBody::empty());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static(self.grpc_status()));
        // The messages are plain ASCII: no percent-encoding needed.
        if let Ok(message) = HeaderValue::from_str(self.message.trim_end()) {
            headers.insert("grpc-message", message);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pin_project! {
    /// Response future of the request-level [`Firewall`](crate::firewall::Firewall)
    /// and [`RateLimit`](crate::rate_limit::RateLimit): the inner service's
    /// response, or the layer's own refusal.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Rejected { rejection: Rejection },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn rejected(rejection: Rejection) -> Self {
        Self {
            kind: Kind::Rejected { rejection },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GuardBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(GuardBody::inner)))
            }
            KindProj::Rejected { rejection } => Poll::Ready(Ok(rejection.into_response())),
        }
    }
}
