//! HTTP-01 answers on the plain-HTTP listener.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::challenges::{Challenges, HTTP01_PREFIX};
use super::manager::AcmeManager;

/// Answers `GET /.well-known/acme-challenge/<token>` with the key
/// authorization of an open order (this instance's or, through the shared
/// storage, another's), `404` for unknown tokens, and hands every other
/// request to the inner service (typically a redirect to HTTPS, such as
/// [`RedirectToHttps`](super::RedirectToHttps)).
///
/// Made by [`AcmeManager::http01_layer`](super::AcmeManager::http01_layer).
#[derive(Clone, Debug)]
pub struct Http01Layer {
    challenges: Arc<Challenges>,
}

impl Http01Layer {
    /// Answers the HTTP-01 challenges of this manager (and, through the
    /// shared storage, of the other instances).
    pub fn new(manager: &AcmeManager) -> Self {
        Self {
            challenges: manager.challenges(),
        }
    }
}

impl<S> Layer<S> for Http01Layer {
    type Service = Http01<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Http01 {
            inner,
            challenges: self.challenges.clone(),
        }
    }
}

/// The service of [`Http01Layer`].
#[derive(Clone, Debug)]
pub struct Http01<S> {
    inner: S,
    challenges: Arc<Challenges>,
}

impl<S> Http01<S> {
    /// Wraps `inner`, answering this manager's HTTP-01 challenges.
    pub fn new(inner: S, manager: &AcmeManager) -> Self {
        Http01Layer::new(manager).layer(inner)
    }

    /// An [`Http01Layer`] for this manager.
    pub fn layer(manager: &AcmeManager) -> Http01Layer {
        Http01Layer::new(manager)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Http01<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ChallengeBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(token) = req.uri().path().strip_prefix(HTTP01_PREFIX) else {
            return ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                },
            };
        };
        let response = match self.challenges.http01(token) {
            Some(answer) => {
                let mut response = Response::new(ChallengeBody::answer(Bytes::from(answer)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
            None => {
                let mut response = Response::new(ChallengeBody::answer(Bytes::from_static(
                    b"no such challenge\n",
                )));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        };
        ResponseFuture {
            kind: Kind::Answer {
                response: Some(response),
            },
        }
    }
}

pin_project! {
    /// The response future of [`Http01`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Answer { response: Option<Response<ChallengeBody<Infallible>>> },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<ChallengeBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(ChallengeBody::inner))),
            KindProj::Answer { response } => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(ChallengeBody::retype)))
            }
        }
    }
}

pin_project! {
    /// The response body of [`Http01`]: the inner service's, or an answer.
    #[derive(Debug)]
    pub struct ChallengeBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[derive(Debug)]
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner { #[pin] body: B },
        Answer { bytes: Option<Bytes> },
    }
}

impl<B> ChallengeBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: BodyKind::Inner { body },
        }
    }

    fn answer(bytes: Bytes) -> Self {
        Self {
            kind: BodyKind::Answer { bytes: Some(bytes) },
        }
    }
}

impl ChallengeBody<Infallible> {
    fn retype<B>(self) -> ChallengeBody<B> {
        match self.kind {
            BodyKind::Inner { body } => match body {},
            BodyKind::Answer { bytes } => ChallengeBody {
                kind: BodyKind::Answer { bytes },
            },
        }
    }
}

impl<B> Body for ChallengeBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body.poll_frame(cx),
            BodyKindProj::Answer { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Answer { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Answer { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
