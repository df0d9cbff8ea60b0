use std::sync::Arc;

use tower_layer::Layer;

use super::service::{Metrics, RequestMetrics};
#[cfg(feature = "monitor")]
use crate::monitor::RequestRates;

/// Records HTTP request metrics for the wrapped service. See the
/// [module docs](super) for the metrics.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Arc<RequestMetrics>,
}

impl MetricsLayer {
    /// Records metrics labelled `service="<service>"`.
    pub fn new(service: impl Into<String>) -> Self {
        super::help::describe();
        Self {
            metrics: Arc::new(RequestMetrics::new(service.into())),
        }
    }

    /// Also counts requests and failures (5xx or no response) into `rates`
    /// under this layer's service name, for the monitor's 1- and 5-minute
    /// rates. Two relaxed atomic adds per request.
    #[cfg(feature = "monitor")]
    #[cfg_attr(docsrs, doc(cfg(feature = "monitor")))]
    pub fn with_rates(self, rates: &RequestRates) -> Self {
        let service = self.metrics.service().to_owned();
        let counters = rates.service(&service);
        Self {
            metrics: Arc::new(RequestMetrics::new(service).with_rates(counters)),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::from_parts(inner, self.metrics.clone())
    }
}
