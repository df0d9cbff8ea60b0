use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use crate::body::{plain, GuardBody};

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
