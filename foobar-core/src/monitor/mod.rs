//! Monitoring: host and process metrics, request rates over sliding
//! windows, and a client that pushes metrics to a collector.
//!
//! A [`Monitor`] runs one background task that, on every tick, samples the
//! host and this process (CPU, memory, load, network, file descriptors,
//! threads; see [`host`] for the metric names), publishes them through the
//! `metrics` facade, and advances the windowed request rates of its
//! [`RequestRates`]. It stops on the shared [`Shutdown`](crate::Shutdown).
//!
//! - Scrape: serve [`Admin`](crate::admin::Admin) with the monitor attached;
//!   `/metrics` has everything, `/status` and `/status.json` show it.
//! - Push: [`Push`] sends the same text to a Prometheus Pushgateway or any
//!   HTTP collector on an interval, without ever blocking the application.
//!
//! The monitor comes with the `monitor` feature, host and process metrics
//! with `host-metrics`, the push client with `push`.
//!
//! ```no_run
//! use std::time::Duration;
//! use foobar_core::admin::Admin;
//! use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
//! use foobar_core::monitor::{Monitor, Push, PushTarget};
//! use foobar_core::{Server, Shutdown};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = PrometheusExporter::install()?;
//! let shutdown = Shutdown::on_signals();
//! let monitor = Monitor::start(&shutdown);
//!
//! // Request metrics also feed the 1- and 5-minute rates.
//! let web_metrics = MetricsLayer::new("web").with_rates(monitor.rates());
//! # let _ = web_metrics;
//!
//! // Scrape: /metrics, /healthz, /readyz, /status, /status.json.
//! let admin = Admin::new(exporter.clone()).with_monitor(monitor.clone());
//! let admin_server = Server::builder()
//!     .bind("127.0.0.1:9090")?
//!     .shutdown(shutdown.clone())
//!     .build()?;
//!
//! // Push: every 15 s to a Pushgateway.
//! let target = PushTarget::pushgateway("http://127.0.0.1:9091", "web", "web-1")?;
//! let _push = Push::builder(target)
//!     .interval(Duration::from_secs(15))
//!     .spawn(exporter, &shutdown)?;
//!
//! admin_server.serve(admin).await?;
//! # Ok(()) }
//! ```

#[cfg(feature = "monitor")]
pub mod host;
#[cfg(feature = "push")]
#[cfg_attr(docsrs, doc(cfg(feature = "push")))]
pub mod push;
#[cfg(feature = "monitor")]
pub mod rates;
#[cfg(feature = "monitor")]
mod sampling;

#[cfg(feature = "host-metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "host-metrics")))]
pub use self::host::HostSampler;
#[cfg(feature = "monitor")]
pub use self::host::{HostSnapshot, ProcessSnapshot};
#[cfg(feature = "push")]
pub use self::push::{
    HeaderProblem, Push, PushBuilder, PushError, PushFailure, PushHandle, PushStats, PushTarget,
    TransportError, UrlProblem,
};
#[cfg(feature = "monitor")]
pub use self::rates::{RequestCounters, RequestRates, ServiceRates};
#[cfg(feature = "monitor")]
pub use self::sampling::{Monitor, MonitorBuilder, MonitorSnapshot};
