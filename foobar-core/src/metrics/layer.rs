use std::sync::Arc;

use tower_layer::Layer;

use super::service::{Metrics, RequestMetrics};

/// Records HTTP request metrics for the wrapped service. See the
/// [module docs](super) for the metrics.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Arc<RequestMetrics>,
}

impl MetricsLayer {
    /// Records metrics labelled `service="<service>"`.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            metrics: Arc::new(RequestMetrics::new(service.into())),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::from_parts(inner, self.metrics.clone())
    }
}
