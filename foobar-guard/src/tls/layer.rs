//! The layer that wraps a connection service in TLS termination.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::config::TlsConfig;
use super::metrics::HandshakeMetrics;
use super::service::Tls;

/// The default limit for a client to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Applies [`Tls`] to a connection service. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct TlsLayer {
    pub(crate) config: TlsConfig,
    pub(crate) timeout: Duration,
    pub(crate) metrics: Arc<HandshakeMetrics>,
}

impl TlsLayer {
    /// A layer terminating TLS with this configuration and the default
    /// handshake timeout ([`DEFAULT_HANDSHAKE_TIMEOUT`]).
    ///
    /// Metric handles are registered here, so install the metrics recorder
    /// (e.g. `PrometheusExporter::install`) before building the layer.
    pub fn new(config: TlsConfig) -> Self {
        Self {
            config,
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            metrics: Arc::new(HandshakeMetrics::register()),
        }
    }

    /// How long a client may take to complete the handshake, counted from
    /// the moment the connection reaches this layer.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<S> Layer<S> for TlsLayer {
    type Service = Tls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tls {
            inner,
            config: self.config.clone(),
            timeout: self.timeout,
            metrics: self.metrics.clone(),
        }
    }
}
