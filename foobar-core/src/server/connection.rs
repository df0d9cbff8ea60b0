//! Serving one accepted connection: the connection stage, then HTTP.

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

use super::HttpConfig;
use crate::body::RequestBody;
use crate::conn::{Accepted, ConnInfo};
use crate::error::BoxError;
use crate::http1::{self, server::Ended};
use crate::io::{Rewind, WriteTimeout};
use crate::shutdown::Shutdown;

/// What every connection task of one server shares.
pub(crate) struct Shared<C, S> {
    pub(crate) conn_stage: C,
    pub(crate) http: S,
    pub(crate) http_config: Arc<HttpConfig>,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) first_bytes_timeout: Option<Duration>,
    pub(crate) drain: Shutdown,
    pub(crate) force: CancellationToken,
}

/// How much of a new connection's first bytes the server reads itself.
const FIRST_READ: usize = 4096;

/// The HTTP/2 connection preface's first bytes.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

pub(crate) async fn serve<C, IO, S, B>(stream: TcpStream, info: ConnInfo, shared: Arc<Shared<C, S>>)
where
    C: Service<Accepted<TcpStream>, Response = Accepted<IO>> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
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

    // The first bytes, under the header timeout: they tell HTTP/1 from
    // HTTP/2, and a client that connects and sends nothing is dropped.
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

    // HTTP/1.1 on foobar's own path; it hands a protocol switch to hyper
    // at a request boundary. HTTP/2 goes to hyper from the start.
    let h2 = info.tls.as_ref().is_some_and(|tls| tls.is_h2())
        || H2_PREFACE.starts_with(&first[..first.len().min(H2_PREFACE.len())]);
    let (io, buffered) = if h2 {
        (io, first.freeze())
    } else {
        let served = http1::server::serve(
            io,
            first,
            info.clone(),
            shared.http.clone(),
            &shared.http_config,
            &shared.drain,
        );
        let ended = tokio::select! {
            ended = served => ended,
            () = shared.force.cancelled() => {
                tracing::debug!(%peer, "connection cut off at the shutdown deadline");
                return;
            }
        };
        match ended {
            Ended::Closed => return,
            Ended::HandOver { io, buffered } => (io, buffered),
        }
    };

    let service = WithConnInfo {
        inner: shared.http.clone(),
        info,
        body_read_timeout: shared.http_config.body_read_timeout,
    };
    let io = TokioIo::new(
        WriteTimeout::new(Rewind::new(buffered, io), shared.http_config.write_timeout)
            .min_rate(shared.http_config.min_write_rate),
    );
    let conn = shared.builder.serve_connection_with_upgrades(io, service);
    let mut conn = pin!(conn);
    let drained = tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
                if h2 {
                    count_h2_error(&*error);
                }
            }
            return;
        }
        () = shared.drain.wait() => true,
    };
    // Draining: finish in-flight requests, close idle keep-alive connections,
    // send GOAWAY on HTTP/2; cut off at the server's deadline.
    if drained {
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            result = conn => {
                if let (Err(error), true) = (result, h2) {
                    count_h2_error(&*error);
                }
            }
            () = shared.force.cancelled() => tracing::debug!(%peer, "connection cut off at the shutdown deadline"),
        }
    }
}

/// Counts an HTTP/2 connection's end by a limit or a protocol error, as far
/// as hyper's error tells: a `GOAWAY` that h2 sent with an error code, by
/// that code, or a keep-alive ping left unanswered. Limits that h2 enforces
/// on single streams (`REFUSED_STREAM`, an oversized header list) never
/// reach here.
fn count_h2_error(error: &(dyn std::error::Error + 'static)) {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(error) = error.downcast_ref::<h2::Error>() {
            // Only ours: a client's own GOAWAY says nothing of our limits.
            if error.is_go_away() && error.is_library() {
                if let Some(reason) = error.reason().filter(|r| *r != h2::Reason::NO_ERROR) {
                    metrics::counter!("foobar_http2_goaways_sent_total", "reason" => reason_label(reason))
                        .increment(1);
                }
            }
            return;
        }
        // On an HTTP/2 connection hyper's only timeout is the keep-alive one.
        if let Some(error) = error.downcast_ref::<hyper::Error>() {
            if error.is_timeout() {
                metrics::counter!("foobar_http2_keep_alive_timeouts_total").increment(1);
                return;
            }
        }
        source = error.source();
    }
}

/// The name of an HTTP/2 error code (RFC 9113 section 7), lower case.
fn reason_label(reason: h2::Reason) -> &'static str {
    match u32::from(reason) {
        0x0 => "no_error",
        0x1 => "protocol_error",
        0x2 => "internal_error",
        0x3 => "flow_control_error",
        0x4 => "settings_timeout",
        0x5 => "stream_closed",
        0x6 => "frame_size_error",
        0x7 => "refused_stream",
        0x8 => "cancel",
        0x9 => "compression_error",
        0xa => "connect_error",
        0xb => "enhance_your_calm",
        0xc => "inadequate_security",
        0xd => "http_1_1_required",
        // h2 sends none other; a label per unknown code would be unbounded.
        _ => "other",
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
    /// [`HttpConfig::body_read_timeout`], for the bodies hyper reads.
    body_read_timeout: Option<Duration>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for WithConnInfo<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Oneshot<S, Request<RequestBody>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let mut req = req.map(|body| RequestBody::hyper(body, self.body_read_timeout));
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
