use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use foobar_core::BoxError;
use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use crate::body::{plain, GuardBody};
use crate::error::Error;

pin_project! {
    /// Response future of the connection-level [`Firewall`](super::Firewall).
    #[derive(Debug)]
    pub struct AcceptFuture<F> {
        #[pin]
        kind: AcceptKind<F>,
    }
}

pin_project! {
    #[project = AcceptKindProj]
    #[derive(Debug)]
    enum AcceptKind<F> {
        Inner { #[pin] future: F },
        Denied { error: Option<Error> },
    }
}

impl<F> AcceptFuture<F> {
    pub(super) fn inner(future: F) -> Self {
        Self {
            kind: AcceptKind::Inner { future },
        }
    }

    pub(super) fn denied(error: Error) -> Self {
        Self {
            kind: AcceptKind::Denied { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for AcceptFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            AcceptKindProj::Inner { future } => future.poll(cx).map_err(Into::into),
            AcceptKindProj::Denied { error } => Poll::Ready(Err(error.take().map_or_else(
                || "firewall future polled after completion".into(),
                Into::into,
            ))),
        }
    }
}

pin_project! {
    /// Response future of the request-level [`Firewall`](super::Firewall).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: ResponseKind<F>,
    }
}

pin_project! {
    #[project = ResponseKindProj]
    #[derive(Debug)]
    enum ResponseKind<F> {
        Inner { #[pin] future: F },
        Rejected { status: StatusCode, message: &'static str },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(future: F) -> Self {
        Self {
            kind: ResponseKind::Inner { future },
        }
    }

    pub(super) fn rejected(status: StatusCode, message: &'static str) -> Self {
        Self {
            kind: ResponseKind::Rejected { status, message },
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
            ResponseKindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(GuardBody::inner)))
            }
            ResponseKindProj::Rejected { status, message } => {
                Poll::Ready(Ok(plain(*status, message)))
            }
        }
    }
}
