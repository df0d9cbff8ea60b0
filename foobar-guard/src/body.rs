//! The response body of the request-level layers.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Either the inner service's response body or the short plain-text
    /// message of a response that a guard layer made itself (403, 408, 413,
    /// 429, 504).
    #[derive(Debug)]
    pub struct GuardBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[derive(Debug)]
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // `None` once sent.
        Message { message: Option<&'static str> },
    }
}

impl<B> GuardBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// An empty body.
    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Message { message: None },
        }
    }

    /// A body holding `message`.
    pub fn message(message: &'static str) -> Self {
        Self {
            kind: Kind::Message {
                message: Some(message),
            },
        }
    }
}

impl<B> Body for GuardBody<B>
where
    B: Body,
    B::Data: From<&'static [u8]>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Message { message } => Poll::Ready(
                message
                    .take()
                    .map(|text| Ok(Frame::data(B::Data::from(text.as_bytes())))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Message { message } => message.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Message { message } => {
                SizeHint::with_exact(message.map_or(0, |m| m.len() as u64))
            }
        }
    }
}

/// A plain-text response made by a guard layer.
pub(crate) fn plain<B>(status: StatusCode, message: &'static str) -> Response<GuardBody<B>> {
    let mut response = Response::new(GuardBody::message(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
