//! The response future shared by the connection-level layers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use foobar_core::BoxError;
use pin_project_lite::pin_project;

use crate::error::Refused;

pin_project! {
    /// Response future of the connection-level layers (firewall, connection
    /// limit): the inner service's future, or an immediate refusal.
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
        Denied { error: Option<Refused> },
    }
}

impl<F> AcceptFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: AcceptKind::Inner { future },
        }
    }

    pub(crate) fn denied(error: Refused) -> Self {
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
                || "connection refusal polled after completion".into(),
                Into::into,
            ))),
        }
    }
}
