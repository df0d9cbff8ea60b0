//! The monitor's sampling task: one tick samples the host and this process
//! and advances the request rates.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::host::{HostSnapshot, ProcessSnapshot};
use super::rates::{RequestRates, ServiceRates};
use crate::shutdown::Shutdown;

/// How many ticks of host history the monitor keeps for sparklines.
const HISTORY_LEN: usize = 300;

/// Samples the host, this process and the request rates on an interval.
/// Cloning shares the same monitor. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct Monitor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    interval: Duration,
    rates: RequestRates,
    latest: Mutex<Latest>,
    /// Run on every tick, after the rates advanced.
    on_tick: TickHooks,
    stopped: CancellationToken,
}

/// Work the monitor's tick also does (the admin's rate history).
pub(crate) type TickHook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct TickHooks(Mutex<Vec<TickHook>>);

impl TickHooks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TickHook>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for TickHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TickHooks({})", self.lock().len())
    }
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
            host_metrics: cfg!(feature = "host-metrics"),
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
    /// monitor only advances request rates (as it does without the
    /// `host-metrics` feature).
    #[cfg(feature = "host-metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "host-metrics")))]
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
            on_tick: TickHooks::default(),
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

    /// Runs `hook` on every tick from now on.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn on_tick(&self, hook: TickHook) {
        self.shared.on_tick.lock().push(hook);
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
    let mut host = HostTick::new(host_metrics);
    let mut ticker = tokio::time::interval(shared.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.wait() => break,
        }
        shared.rates.sample();
        for hook in shared.on_tick.lock().iter() {
            hook();
        }
        let reading = host.sample().await;
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

/// The host side of a tick: a [`HostSampler`](super::HostSampler) run off
/// the async threads, when host metrics are on.
struct HostTick {
    #[cfg(feature = "host-metrics")]
    sampler: Option<super::host::HostSampler>,
}

impl HostTick {
    fn new(on: bool) -> Self {
        #[cfg(feature = "host-metrics")]
        return Self {
            sampler: on.then(super::host::HostSampler::new),
        };
        #[cfg(not(feature = "host-metrics"))]
        {
            let _ = on;
            Self {}
        }
    }

    async fn sample(&mut self) -> Option<(HostSnapshot, ProcessSnapshot)> {
        #[cfg(feature = "host-metrics")]
        {
            let mut sampler = self.sampler.take()?;
            // procfs reads are short but still blocking file I/O.
            match tokio::task::spawn_blocking(move || {
                let reading = sampler.sample();
                (sampler, reading)
            })
            .await
            {
                Ok((sampler, reading)) => {
                    self.sampler = Some(sampler);
                    Some(reading)
                }
                Err(error) => {
                    tracing::error!(%error, "host sampling failed; host metrics stop");
                    None
                }
            }
        }
        #[cfg(not(feature = "host-metrics"))]
        None
    }
}

fn push_capped(history: &mut VecDeque<f64>, value: f64) {
    if history.len() == HISTORY_LEN {
        history.pop_front();
    }
    history.push_back(value);
}
