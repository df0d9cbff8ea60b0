//! The TLS termination service.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use foobar_core::{Accepted, BoxError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use super::config::TlsConfig;
use super::future::ResponseFuture;
use super::layer::TlsLayer;
use super::metrics::HandshakeMetrics;

/// Performs the TLS handshake on an accepted connection, then hands
/// `Accepted<TlsStream<IO>>`, with [`ConnInfo::tls`](foobar_core::ConnInfo)
/// filled in, to the inner service.
///
/// Fails with a [`TlsError`](super::TlsError) (boxed, as tower services do)
/// when the handshake fails or times out; the server then closes the
/// connection.
#[derive(Clone, Debug)]
pub struct Tls<S> {
    pub(crate) inner: S,
    pub(crate) config: TlsConfig,
    pub(crate) timeout: Duration,
    pub(crate) metrics: Arc<HandshakeMetrics>,
}

impl<S> Tls<S> {
    /// Wraps `inner` with the default handshake timeout.
    pub fn new(inner: S, config: TlsConfig) -> Self {
        tower_layer::Layer::layer(&TlsLayer::new(config), inner)
    }

    /// A [`TlsLayer`] with this configuration.
    pub fn layer(config: TlsConfig) -> TlsLayer {
        TlsLayer::new(config)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The live configuration (reload it through this handle or any clone).
    pub fn config(&self) -> &TlsConfig {
        &self.config
    }
}

impl<S, IO> Service<Accepted<IO>> for Tls<S>
where
    S: Service<Accepted<TlsStream<IO>>> + Clone,
    S::Error: Into<BoxError>,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<IO, S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, accepted: Accepted<IO>) -> Self::Future {
        // The ready service goes with this connection; `self` keeps a
        // fresh clone for the next one (the usual tower pattern).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let accept = TlsAcceptor::from(self.config.current()).accept(accepted.io);
        ResponseFuture::new(
            accept,
            inner,
            accepted.info,
            self.timeout,
            self.metrics.clone(),
        )
    }
}
