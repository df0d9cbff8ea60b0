use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_service::Service;

/// Histogram buckets for every `*_seconds` metric: 0.5 ms to 10 s, dense
/// where web latencies live.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into buckets when nobody scrapes:
/// without it they would pile up in memory.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The text format's content type.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The outcome of the one installation attempt of this process: a global
/// recorder can be set only once, so a failure is final too.
static INSTALLED: OnceLock<Result<PrometheusHandle, ExporterError>> = OnceLock::new();

/// This process's CPU time in seconds (`f64` bits), for the one series the
/// facade cannot carry: its counters are whole numbers, and
/// `process_cpu_seconds_total` must be a counter (a Pushgateway exports its
/// own under that name and refuses another type). `u64::MAX`: not sampled.
static PROCESS_CPU_SECONDS: AtomicU64 = AtomicU64::new(u64::MAX);

/// `process_cpu_seconds_total` in fractional seconds, rendered by the
/// exporter beside what the facade recorded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProcessCpu;

impl ProcessCpu {
    /// Whether this crate's exporter is the process's recorder: only then
    /// is the figure rendered (others get it through the facade).
    #[cfg(feature = "host-metrics")]
    pub(crate) fn exported() -> bool {
        matches!(INSTALLED.get(), Some(Ok(_)))
    }

    /// Records this process's CPU time.
    #[cfg(feature = "host-metrics")]
    pub(crate) fn set(seconds: f64) {
        PROCESS_CPU_SECONDS.store(seconds.to_bits(), Ordering::Relaxed);
    }

    fn render(text: &mut String) {
        let bits = PROCESS_CPU_SECONDS.load(Ordering::Relaxed);
        if bits == u64::MAX {
            return;
        }
        let _ = write!(
            text,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total {}\n",
            f64::from_bits(bits)
        );
    }
}

/// Why the Prometheus recorder could not be installed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExporterError {
    /// Another `metrics` recorder was installed first; there can be one per
    /// process.
    #[error("another metrics recorder was installed first")]
    RecorderTaken,
    /// The thread that folds histogram samples could not be started.
    #[error("cannot start the metrics upkeep thread: {0}")]
    UpkeepThread(#[source] Arc<std::io::Error>),
}

/// The process-wide Prometheus recorder behind the `metrics` facade.
#[derive(Clone, Debug)]
pub struct PrometheusExporter {
    handle: PrometheusHandle,
}

impl PrometheusExporter {
    /// Installs the Prometheus recorder as the process's `metrics` recorder
    /// (with histogram buckets for `*_seconds` metrics) and starts its upkeep
    /// thread. Calling it again returns the same exporter.
    ///
    /// # Errors
    /// [`ExporterError::RecorderTaken`] if another recorder was installed
    /// first (the same error again on every later call).
    pub fn install() -> Result<Self, ExporterError> {
        match INSTALLED.get_or_init(install_recorder) {
            Ok(handle) => Ok(Self {
                handle: handle.clone(),
            }),
            Err(error) => Err(error.clone()),
        }
    }

    /// The current metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        ProcessCpu::render(&mut text);
        text
    }

    /// A service that answers every request with [`render`](Self::render),
    /// for the admin listener's `/metrics`.
    pub fn endpoint(&self) -> MetricsEndpoint {
        MetricsEndpoint {
            exporter: self.clone(),
        }
    }
}

/// Serves the Prometheus text format; made by [`PrometheusExporter::endpoint`].
#[derive(Clone, Debug)]
pub struct MetricsEndpoint {
    exporter: PrometheusExporter,
}

impl<B> Service<Request<B>> for MetricsEndpoint {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        let mut response = Response::new(Full::new(Bytes::from(self.exporter.render())));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        std::future::ready(Ok(response))
    }
}

fn install_recorder() -> Result<PrometheusHandle, ExporterError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        // It only refuses an empty list.
        .expect("SECONDS_BUCKETS is not empty")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| ExporterError::RecorderTaken)?;
    super::help::describe();
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("foobar-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        })
        .map_err(|error| ExporterError::UpkeepThread(Arc::new(error)))?;
    Ok(handle)
}
