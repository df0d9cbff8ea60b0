//! The layer, its service and its response future.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderName, REFERER, USER_AGENT};
use http::{Extensions, HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::body::AccessLogBody;
use super::entry::{Entry, Format};
use super::writer::AccessLogWriter;
use crate::conn::{ConnInfo, UpstreamName};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Finds a request's client address: see [`AccessLogLayer::client`].
type ClientFn = dyn Fn(&Extensions, &HeaderMap) -> Option<IpAddr> + Send + Sync;

/// Writes one access log line per request of the wrapped service. See the
/// [module docs](super).
#[derive(Clone)]
pub struct AccessLogLayer {
    writer: Option<AccessLogWriter>,
    format: Format,
    client: Option<Arc<ClientFn>>,
}

impl std::fmt::Debug for AccessLogLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogLayer")
            .field("writer", &self.writer)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl AccessLogLayer {
    /// Logs to `writer` in `format`.
    pub fn new(writer: AccessLogWriter, format: Format) -> Self {
        Self::optional(Some(writer), format)
    }

    /// Logs to `writer` if there is one, else logs nothing: one service
    /// type whether or not a configuration asks for an access log.
    pub fn optional(writer: Option<AccessLogWriter>, format: Format) -> Self {
        Self {
            writer,
            format,
            client: None,
        }
    }

    /// Finds the client address with `client` (given the request's
    /// extensions and headers) instead of [`ConnInfo::client_addr`]: for
    /// servers that record the peer elsewhere (axum's `ConnectInfo`), or
    /// to log the client behind trusted proxies. foobar-guard's
    /// `TrustedProxies::client_of` does both.
    #[must_use]
    pub fn client(
        mut self,
        client: impl Fn(&Extensions, &HeaderMap) -> Option<IpAddr> + Send + Sync + 'static,
    ) -> Self {
        self.client = Some(Arc::new(client));
        self
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            writer: self.writer.clone(),
            format: self.format,
            client: self.client.clone(),
        }
    }
}

/// The access log service; made by [`AccessLogLayer`].
#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    writer: Option<AccessLogWriter>,
    format: Format,
    client: Option<Arc<ClientFn>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for AccessLog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("inner", &self.inner)
            .field("writer", &self.writer)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl<S> AccessLog<S> {
    /// Wraps `inner`, logging to `writer` in `format`.
    pub fn new(inner: S, writer: AccessLogWriter, format: Format) -> Self {
        Self {
            inner,
            writer: Some(writer),
            format,
            client: None,
        }
    }

    /// A layer that wraps services in `AccessLog`.
    pub fn layer(writer: AccessLogWriter, format: Format) -> AccessLogLayer {
        AccessLogLayer::new(writer, format)
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

/// A request being served: its entry so far.
pub(super) struct Pending {
    entry: Box<Entry>,
    started: Instant,
    writer: AccessLogWriter,
    format: Format,
}

impl Pending {
    pub(super) fn add_bytes_out(&mut self, bytes: u64) {
        self.entry.bytes_out += bytes;
    }

    /// Hands the entry to the writer.
    pub(super) fn finish(mut self) {
        self.entry.duration = self.started.elapsed();
        self.writer.send(self.entry, self.format);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AccessLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<AccessLogBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(writer) = &self.writer else {
            return ResponseFuture {
                inner: self.inner.call(req),
                pending: None,
            };
        };
        let info = req.extensions().get::<ConnInfo>();
        let headers = req.headers();
        let entry = Box::new(Entry {
            time: SystemTime::now(),
            client: match &self.client {
                Some(client) => client(req.extensions(), headers),
                None => info.map(|info| info.client_addr().ip()),
            },
            method: req.method().clone(),
            uri: req.uri().clone(),
            protocol: req.version(),
            status: StatusCode::OK,
            bytes_in: req.body().size_hint().exact(),
            bytes_out: 0,
            duration: Duration::ZERO,
            upstream: None,
            request_id: headers.get(&X_REQUEST_ID).cloned(),
            tls: info.and_then(|info| info.tls.clone()),
            referer: headers.get(REFERER).cloned(),
            user_agent: headers.get(USER_AGENT).cloned(),
        });
        let pending = Pending {
            entry,
            started: Instant::now(),
            writer: writer.clone(),
            format: self.format,
        };
        ResponseFuture {
            inner: self.inner.call(req),
            pending: Some(pending),
        }
    }
}

pin_project! {
    /// Response future of [`AccessLog`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the response: the client went away (nginx's
            // 499).
            if let Some(mut pending) = this.project().pending.take() {
                pending.entry.status = CLIENT_CLOSED;
                pending.finish();
            }
        }
    }
}

/// nginx's status for a request whose client closed the connection first.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<AccessLogBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut pending) = this.pending.take() else {
            // Logging is off.
            return Poll::Ready(result.map(|response| response.map(AccessLogBody::unlogged)));
        };
        match result {
            Ok(response) => {
                let entry = &mut pending.entry;
                entry.status = response.status();
                entry.upstream = response
                    .extensions()
                    .get::<UpstreamName>()
                    .map(|name| name.0.clone());
                if entry.request_id.is_none() {
                    entry.request_id = response.headers().get(&X_REQUEST_ID).cloned();
                }
                Poll::Ready(Ok(response.map(|body| AccessLogBody::new(body, pending))))
            }
            Err(error) => {
                pending.entry.status = StatusCode::INTERNAL_SERVER_ERROR;
                pending.finish();
                Poll::Ready(Err(error))
            }
        }
    }
}
