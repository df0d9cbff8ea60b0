//! Monitoring: host and process metrics, request rates over sliding
//! windows, and a client that pushes metrics to a collector.
//!
//! A [`Monitor`] runs one background task that, on every tick, samples the
//! host and this process (CPU, memory, load, network, file descriptors,
//! threads; see [`host`] for the metric names), publishes them through the
//! `metrics` facade, and advances the windowed request rates of its
//! [`RequestRates`]. It stops on the shared [`Shutdown`].
//!
//! - Scrape: serve [`Admin`](crate::admin::Admin) with the monitor attached;
//!   `/metrics` has everything, `/status` and `/status.json` show it.
//! - Push: [`Push`] sends the same text to a Prometheus Pushgateway or any
//!   HTTP collector on an interval, without ever blocking the application.
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

pub mod host;
pub mod push;
pub mod rates;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use self::host::{HostSampler, HostSnapshot, ProcessSnapshot};
pub use self::push::{Push, PushBuilder, PushError, PushHandle, PushStats, PushTarget};
pub use self::rates::{RequestCounters, RequestRates, ServiceRates};
use crate::shutdown::Shutdown;

/// How many ticks of host history the monitor keeps for sparklines.
const HISTORY_LEN: usize = 300;

/// Samples the host, this process and the request rates on an interval.
/// Cloning shares the same monitor. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Monitor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    interval: Duration,
    rates: RequestRates,
    latest: Mutex<Latest>,
    stopped: CancellationToken,
}

#[derive(Debug, Default)]
struct Latest {
    host: Option<HostSnapshot>,
    process: Option<ProcessSnapshot>,
    samples: u64,
    cpu_history: VecDeque<f64>,
    memory_history: VecDeque<f64>,
}

/// Configures a [`Monitor`].
#[derive(Debug)]
#[must_use]
pub struct MonitorBuilder {
    interval: Duration,
    host_metrics: bool,
    rates: RequestRates,
}

impl Default for MonitorBuilder {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            host_metrics: true,
            rates: RequestRates::new(),
        }
    }
}

impl MonitorBuilder {
    /// How often to sample. Default: 1 s (the status page's resolution).
    /// Clamped to at least 100 ms.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(100));
        self
    }

    /// Whether to sample host and process metrics. Default: on. Off, the
    /// monitor only advances request rates.
    pub fn host_metrics(mut self, on: bool) -> Self {
        self.host_metrics = on;
        self
    }

    /// Uses these request counters instead of a fresh set.
    pub fn rates(mut self, rates: RequestRates) -> Self {
        self.rates = rates;
        self
    }

    /// Starts the sampling task; it stops when `shutdown` fires.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start(self, shutdown: &Shutdown) -> Monitor {
        let shared = Arc::new(Shared {
            interval: self.interval,
            rates: self.rates,
            latest: Mutex::new(Latest::default()),
            stopped: CancellationToken::new(),
        });
        tokio::spawn(run(shared.clone(), self.host_metrics, shutdown.clone()));
        Monitor { shared }
    }
}

impl Monitor {
    /// A builder with the defaults.
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder::default()
    }

    /// Starts a monitor with the defaults (1 s interval, host metrics on).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start(shutdown: &Shutdown) -> Self {
        Self::builder().start(shutdown)
    }

    /// The request counters this monitor turns into rates; give them to
    /// [`MetricsLayer::with_rates`](crate::metrics::MetricsLayer::with_rates).
    pub fn rates(&self) -> &RequestRates {
        &self.shared.rates
    }

    /// The sampling interval.
    pub fn interval(&self) -> Duration {
        self.shared.interval
    }

    /// Everything the monitor knows now: host, process, request rates, and
    /// recent host history.
    pub fn snapshot(&self) -> MonitorSnapshot {
        let latest = self
            .shared
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        MonitorSnapshot {
            interval_seconds: self.shared.interval.as_secs_f64(),
            samples: latest.samples,
            host: latest.host.clone(),
            process: latest.process.clone(),
            cpu_history: latest.cpu_history.iter().copied().collect(),
            memory_history: latest.memory_history.iter().copied().collect(),
            services: self.shared.rates.rates(),
        }
    }

    /// Whether the sampling task has stopped (after shutdown).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.is_cancelled()
    }

    /// Completes once the sampling task has stopped.
    pub async fn stopped(&self) {
        self.shared.stopped.cancelled().await;
    }
}

/// What a [`Monitor`] knows at one moment, as served in `/status.json`.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct MonitorSnapshot {
    /// The sampling interval.
    pub interval_seconds: f64,
    /// Samples taken since start.
    pub samples: u64,
    /// The host, once sampled (and if host metrics are on).
    pub host: Option<HostSnapshot>,
    /// This process, once sampled.
    pub process: Option<ProcessSnapshot>,
    /// Host CPU use (0 to 1) per tick, oldest first.
    pub cpu_history: Vec<f64>,
    /// Host memory use (0 to 1) per tick, oldest first.
    pub memory_history: Vec<f64>,
    /// Request counters and windowed rates by service.
    pub services: Vec<ServiceRates>,
}

async fn run(shared: Arc<Shared>, host_metrics: bool, shutdown: Shutdown) {
    let mut sampler = host_metrics.then(host::HostSampler::new);
    let mut ticker = tokio::time::interval(shared.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.wait() => break,
        }
        shared.rates.sample();
        let reading = match sampler.take() {
            // procfs reads are short but still blocking file I/O.
            Some(mut s) => match tokio::task::spawn_blocking(move || {
                let reading = s.sample();
                (s, reading)
            })
            .await
            {
                Ok((s, reading)) => {
                    sampler = Some(s);
                    Some(reading)
                }
                Err(error) => {
                    tracing::error!(%error, "host sampling failed; host metrics stop");
                    None
                }
            },
            None => None,
        };
        let mut latest = shared.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.samples += 1;
        if let Some((host, process)) = reading {
            push_capped(&mut latest.cpu_history, host.cpu_usage_ratio);
            let memory = if host.memory_total_bytes == 0 {
                0.0
            } else {
                host.memory_used_bytes as f64 / host.memory_total_bytes as f64
            };
            push_capped(&mut latest.memory_history, memory);
            latest.host = Some(host);
            latest.process = Some(process);
        }
    }
    shared.stopped.cancel();
}

fn push_capped(history: &mut VecDeque<f64>, value: f64) {
    if history.len() == HISTORY_LEN {
        history.pop_front();
    }
    history.push_back(value);
}
