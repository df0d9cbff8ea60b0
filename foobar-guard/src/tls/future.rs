//! The response future of [`Tls`](super::Tls): handshake, then the inner
//! service.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use foobar_core::{Accepted, BoxError, ConnInfo, TlsInfo};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_rustls::Accept;
use tower_service::Service;

use super::metrics::HandshakeMetrics;
use crate::error::Refused;

pin_project! {
    /// Response future of [`Tls`](super::Tls).
    pub struct ResponseFuture<IO, S, F> {
        #[pin]
        state: State<IO, S, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<IO, S, F> {
        Handshake {
            #[pin]
            accept: Accept<IO>,
            #[pin]
            deadline: Sleep,
            // Taken when the handshake completes.
            next: Option<(S, ConnInfo)>,
            peer: SocketAddr,
            started: Instant,
            timeout: Duration,
            metrics: Arc<HandshakeMetrics>,
        },
        Inner {
            #[pin]
            future: F,
        },
    }
}

impl<IO, S, F> ResponseFuture<IO, S, F> {
    pub(crate) fn new(
        accept: Accept<IO>,
        inner: S,
        info: ConnInfo,
        timeout: Duration,
        metrics: Arc<HandshakeMetrics>,
    ) -> Self {
        Self {
            state: State::Handshake {
                accept,
                deadline: tokio::time::sleep(timeout),
                peer: info.peer,
                next: Some((inner, info)),
                started: Instant::now(),
                timeout,
                metrics,
            },
        }
    }
}

impl<IO, S, F> std::fmt::Debug for ResponseFuture<IO, S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<IO, S, E> Future for ResponseFuture<IO, S, S::Future>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<Accepted<TlsStream<IO>>, Error = E>,
    E: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next_state = match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    return Poll::Ready(ready!(future.poll(cx)).map_err(Into::into));
                }
                StateProj::Handshake {
                    accept,
                    deadline,
                    next,
                    peer,
                    started,
                    timeout,
                    metrics,
                } => {
                    let stream = match accept.poll(cx) {
                        Poll::Ready(Ok(stream)) => stream,
                        Poll::Ready(Err(source)) => {
                            metrics.failed.increment(1);
                            return Poll::Ready(Err(Refused::TlsHandshake {
                                peer: *peer,
                                source,
                            }
                            .into()));
                        }
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            metrics.timed_out.increment(1);
                            return Poll::Ready(Err(Refused::TlsHandshakeTimeout {
                                peer: *peer,
                                timeout: *timeout,
                            }
                            .into()));
                        }
                    };
                    metrics.succeeded.increment(1);
                    metrics.duration.record(started.elapsed().as_secs_f64());
                    #[cfg(feature = "acme")]
                    if stream.get_ref().1.alpn_protocol() == Some(crate::acme::ACME_TLS_ALPN) {
                        return Poll::Ready(Err(Refused::AcmeValidation { peer: *peer }.into()));
                    }
                    let (mut inner, mut info) = next
                        .take()
                        .expect("the handshake state is left as soon as it completes");
                    info.tls = Some(Arc::new(tls_info(&stream)));
                    State::Inner {
                        future: inner.call(Accepted::new(stream, info)),
                    }
                }
            };
            this.state.set(next_state);
        }
    }
}

/// What the handshake negotiated.
fn tls_info<IO>(stream: &TlsStream<IO>) -> TlsInfo {
    let (_, conn) = stream.get_ref();
    let mut info = TlsInfo::default();
    info.server_name = conn.server_name().map(str::to_owned);
    info.alpn_protocol = conn.alpn_protocol().map(<[u8]>::to_vec);
    info.protocol_version = conn.protocol_version();
    info.cipher_suite = conn.negotiated_cipher_suite().map(|suite| suite.suite());
    info.peer_certificates = conn
        .peer_certificates()
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    info
}
