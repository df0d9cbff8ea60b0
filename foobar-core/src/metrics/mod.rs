//! HTTP metrics through the [`metrics`](https://docs.rs/metrics) facade, and
//! the Prometheus exporter that serves them.
//!
//! [`MetricsLayer`] records, for every request of the service it wraps:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_server_requests_total` | counter | `service`, `method`, `status` (`2xx`…) |
//! | `http_server_request_duration_seconds` | histogram (time to response head) | `service`, `method`, `status` |
//! | `http_server_requests_in_flight` | gauge | `service` |
//! | `http_server_errors_total` | counter (the service failed, no response) | `service`, `method` |
//!
//! Label sets are built once per (method, status class) and kept as metric
//! handles, so the request path neither formats strings nor allocates.
//!
//! ```
//! use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
//! use tower::ServiceBuilder;
//!
//! // Install the recorder before the first request is served.
//! let exporter = PrometheusExporter::install().expect("no other recorder installed");
//! let app = tower::service_fn(|_req: http::Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! });
//! let app = ServiceBuilder::new().layer(MetricsLayer::new("web")).service(app);
//! // Serve `exporter.endpoint()` on the admin listener at `/metrics`.
//! # let _ = (app, exporter);
//! ```

mod future;
pub(crate) mod help;
mod layer;
#[cfg(feature = "prometheus")]
mod prometheus;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::MetricsLayer;
#[cfg(all(feature = "prometheus", feature = "host-metrics"))]
pub(crate) use self::prometheus::ProcessCpu;
#[cfg(feature = "admin")]
pub(crate) use self::prometheus::CONTENT_TYPE;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use self::prometheus::{ExporterError, MetricsEndpoint, PrometheusExporter};
pub use self::service::Metrics;
