//! Serving one accepted connection: the connection stage, then HTTP.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use super::handoff::{Handled, RawConnection};
use super::HttpConfig;
use crate::conn::{Accepted, ConnInfo};
use crate::error::BoxError;
use crate::io::{Rewind, WriteTimeout};
use crate::shutdown::Shutdown;

/// What every connection task of one server shares.
pub(crate) struct Shared<C, H, S> {
    pub(crate) conn_stage: C,
    pub(crate) handler: H,
    pub(crate) http: S,
    pub(crate) http_config: Arc<HttpConfig>,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) first_bytes_timeout: Option<Duration>,
    pub(crate) drain: Shutdown,
    pub(crate) force: CancellationToken,
}

/// How much of a new connection's first bytes the server reads itself.
const FIRST_READ: usize = 4096;

pub(crate) async fn serve<C, H, IO, S, B>(
    stream: TcpStream,
    info: ConnInfo,
    shared: Arc<Shared<C, H, S>>,
) where
    C: Service<Accepted<TcpStream>, Response = Accepted<IO>> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    H: Service<RawConnection<IO>, Response = Handled<IO>> + Clone + Send + 'static,
    H::Error: Into<BoxError>,
    H::Future: Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let _active = ActiveConnection::open();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let peer = info.peer;

    // The connection stage (firewall, limits, TLS). Nothing is in flight
    // yet, so a drain abandons it at once.
    let stage = shared
        .conn_stage
        .clone()
        .oneshot(Accepted::new(stream, info));
    let accepted = tokio::select! {
        result = stage => match result {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%peer, error = %error.into(), "connection refused by a connection layer");
                return;
            }
        },
        () = shared.drain.wait() => return,
    };
    let Accepted { mut io, info } = accepted;

    // The first bytes, under the header timeout: hyper's own header timer
    // starts only once it has seen them.
    let mut first = BytesMut::with_capacity(FIRST_READ);
    let read = async {
        match shared.first_bytes_timeout {
            Some(limit) => tokio::time::timeout(limit, io.read_buf(&mut first))
                .await
                .ok(),
            None => Some(io.read_buf(&mut first).await),
        }
    };
    let read = tokio::select! {
        read = read => read,
        () = shared.drain.wait() => return,
    };
    match read {
        Some(Ok(n)) if n > 0 => {}
        Some(Ok(_)) => return,
        Some(Err(error)) => {
            tracing::debug!(%peer, %error, "read failed before the first request");
            return;
        }
        None => {
            tracing::debug!(%peer, "no request bytes within the header timeout");
            metrics::counter!("foobar_header_timeouts_total").increment(1);
            return;
        }
    }

    // The connection handler first; it may serve the whole connection. It
    // obeys the drain signal itself, finishing the request in progress.
    let raw = RawConnection {
        io,
        info: info.clone(),
        buffered: first,
        http: shared.http_config.clone(),
        drain: shared.drain.clone(),
    };
    let handled = async {
        tokio::select! {
            result = shared.handler.clone().oneshot(raw) => Some(result),
            () = shared.force.cancelled() => None,
        }
    };
    let (io, buffered) = match handled.await {
        None => return,
        Some(Ok(Handled::Http { io, buffered })) => (io, buffered),
        Some(Ok(Handled::Closed)) => return,
        Some(Err(error)) => {
            tracing::debug!(%peer, error = %error.into(), "connection handler failed");
            return;
        }
    };

    let service = WithConnInfo {
        inner: shared.http.clone(),
        info,
    };
    let io = TokioIo::new(WriteTimeout::new(
        Rewind::new(buffered, io),
        shared.http_config.write_timeout,
    ));
    let mut conn = pin!(shared.builder.serve_connection_with_upgrades(io, service));
    let mut drain = pin!(shared.drain.wait());
    let mut drain_registered = false;
    let ended = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        // The drain signal keeps the task's waker from its first poll (a
        // task's waker does not change), so later wakes, one or more per
        // request, need only the flag, not the signal's lock.
        if !drain_registered || shared.drain.is_triggered() {
            drain_registered = true;
            if drain.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await;
    if let Some(result) = ended {
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
        return;
    }
    // Draining: finish in-flight requests, close idle keep-alive connections,
    // send GOAWAY on HTTP/2; cut off at the server's deadline.
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn => {}
        () = shared.force.cancelled() => tracing::debug!(%peer, "connection cut off at the shutdown deadline"),
    }
}

/// Counts open connections in a gauge, closing on every exit path.
struct ActiveConnection;

impl ActiveConnection {
    fn open() -> Self {
        metrics::counter!("foobar_connections_accepted_total").increment(1);
        metrics::gauge!("foobar_connections_open").increment(1.0);
        Self
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        metrics::gauge!("foobar_connections_open").decrement(1.0);
    }
}

/// Adapts a tower service to hyper, inserting [`ConnInfo`] into each request.
#[derive(Clone, Debug)]
struct WithConnInfo<S> {
    inner: S,
    info: ConnInfo,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for WithConnInfo<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Oneshot<S, Request<Incoming>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.info.clone());
        self.inner.clone().oneshot(req)
    }
}

/// The identity connection stage: plain TCP, no connection layers.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainTcp;

impl<IO> Service<Accepted<IO>> for PlainTcp {
    type Response = Accepted<IO>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Accepted<IO>, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, accepted: Accepted<IO>) -> Self::Future {
        std::future::ready(Ok(accepted))
    }
}
