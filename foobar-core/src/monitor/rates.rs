//! Request and error rates over sliding windows (1 and 5 minutes).
//!
//! The request path only bumps two atomic counters per service
//! ([`RequestCounters`]); the monitor's sampling task records their
//! cumulative values once per tick in a short ring, and a rate over a window
//! is the difference between the newest sample and the one a window ago.
//! Windowing therefore costs nothing per request, and the ring doubles as the
//! history behind the status page's sparklines.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Gauge, Label};
use serde::Serialize;

/// The short window.
pub const WINDOW_1M: Duration = Duration::from_secs(60);
/// The long window; the ring keeps samples this far back.
pub const WINDOW_5M: Duration = Duration::from_secs(300);

/// Upper bound on samples kept per service, whatever the tick interval.
const MAX_SAMPLES: usize = 601;

/// Cumulative request and error counts of one service, fed by
/// [`MetricsLayer`](crate::metrics::MetricsLayer) (or by hand with
/// [`record`](Self::record)). Two relaxed atomic adds per request.
#[derive(Debug, Default)]
pub struct RequestCounters {
    requests: AtomicU64,
    errors: AtomicU64,
}

impl RequestCounters {
    /// Counts one finished request; `failed` for a 5xx response or a
    /// service error.
    #[inline]
    pub fn record(&self, failed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests counted since start.
    pub fn requests_total(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Failed requests counted since start.
    pub fn errors_total(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Request counters by service, and their rates over sliding windows.
///
/// Cloning shares the same counters. Rates advance only while something
/// calls [`sample`](Self::sample) on a regular tick: the
/// [`Monitor`](super::Monitor) does, for the `RequestRates` it hands out.
#[derive(Clone, Debug, Default)]
pub struct RequestRates {
    services: Arc<Mutex<Vec<Arc<ServiceEntry>>>>,
}

#[derive(Debug)]
struct ServiceEntry {
    name: String,
    counters: Arc<RequestCounters>,
    ring: Mutex<VecDeque<Sample>>,
    gauges: RateGauges,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    requests: u64,
    errors: u64,
}

/// Gauges that publish the windowed rates through the `metrics` facade, for
/// collectors that cannot compute rates themselves (a push to a log service).
#[derive(Debug)]
struct RateGauges {
    qps_1m: Gauge,
    qps_5m: Gauge,
    error_ratio_1m: Gauge,
    error_ratio_5m: Gauge,
}

impl RateGauges {
    fn new(service: &str) -> Self {
        let labels = |window: &'static str| {
            [
                Label::new("service", service.to_owned()),
                Label::new("window", window),
            ]
        };
        Self {
            qps_1m: metrics::gauge!("http_server_requests_per_second", labels("1m").iter()),
            qps_5m: metrics::gauge!("http_server_requests_per_second", labels("5m").iter()),
            error_ratio_1m: metrics::gauge!("http_server_error_ratio", labels("1m").iter()),
            error_ratio_5m: metrics::gauge!("http_server_error_ratio", labels("5m").iter()),
        }
    }
}

/// One service's counters and windowed rates, as shown on the status page.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ServiceRates {
    /// The service label.
    pub service: String,
    /// Requests since start.
    pub requests_total: u64,
    /// Failed requests (5xx or no response) since start.
    pub errors_total: u64,
    /// Requests per second over the last minute.
    pub qps_1m: f64,
    /// Requests per second over the last five minutes.
    pub qps_5m: f64,
    /// Share of requests that failed over the last minute (0 to 1).
    pub error_ratio_1m: f64,
    /// Share of requests that failed over the last five minutes (0 to 1).
    pub error_ratio_5m: f64,
    /// Requests per second between successive samples, oldest first (up to
    /// five minutes), for sparklines.
    pub qps_history: Vec<f64>,
}

impl RequestRates {
    /// An empty set of counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of `service`, registered on first use. Call it once at
    /// set-up and keep the `Arc`; it takes a lock.
    pub fn service(&self, service: &str) -> Arc<RequestCounters> {
        crate::metrics::help::describe();
        let mut services = lock(&self.services);
        if let Some(entry) = services.iter().find(|e| e.name == service) {
            return entry.counters.clone();
        }
        let entry = Arc::new(ServiceEntry {
            name: service.to_owned(),
            counters: Arc::new(RequestCounters::default()),
            // Counted from now: requests before the first tick are in the
            // windows too.
            ring: Mutex::new(VecDeque::from([Sample {
                at: Instant::now(),
                requests: 0,
                errors: 0,
            }])),
            gauges: RateGauges::new(service),
        });
        let counters = entry.counters.clone();
        services.push(entry);
        counters
    }

    /// Records the counters' current values as a sample taken now, and
    /// updates the rate gauges. Call it on a steady tick (the monitor does).
    pub fn sample(&self) {
        self.sample_at(Instant::now());
    }

    pub(crate) fn sample_at(&self, now: Instant) {
        for entry in self.entries() {
            let sample = Sample {
                at: now,
                requests: entry.counters.requests_total(),
                errors: entry.counters.errors_total(),
            };
            let mut ring = lock(&entry.ring);
            ring.push_back(sample);
            // Keep one sample at or beyond the long window, so a 5-minute
            // rate spans five full minutes once the history is that long.
            while ring.len() > MAX_SAMPLES
                || (ring.len() > 2 && now.duration_since(ring[1].at) >= WINDOW_5M)
            {
                ring.pop_front();
            }
            let rates = compute(&entry.name, &ring, false);
            drop(ring);
            entry.gauges.qps_1m.set(rates.qps_1m);
            entry.gauges.qps_5m.set(rates.qps_5m);
            entry.gauges.error_ratio_1m.set(rates.error_ratio_1m);
            entry.gauges.error_ratio_5m.set(rates.error_ratio_5m);
        }
    }

    /// Every service's totals and windowed rates as of the last sample, in
    /// registration order, with their history for sparklines.
    pub fn rates(&self) -> Vec<ServiceRates> {
        self.entries()
            .iter()
            .map(|entry| {
                let mut rates = compute(&entry.name, &lock(&entry.ring), true);
                // Totals are read live: they are exact even between samples.
                rates.requests_total = entry.counters.requests_total();
                rates.errors_total = entry.counters.errors_total();
                rates
            })
            .collect()
    }

    fn entries(&self) -> Vec<Arc<ServiceEntry>> {
        lock(&self.services).clone()
    }
}

fn compute(service: &str, ring: &VecDeque<Sample>, with_history: bool) -> ServiceRates {
    let (qps_1m, error_ratio_1m) = window_rate(ring, WINDOW_1M);
    let (qps_5m, error_ratio_5m) = window_rate(ring, WINDOW_5M);
    let qps_history = if with_history {
        ring.iter()
            .zip(ring.iter().skip(1))
            .map(|(a, b)| per_second(b.requests - a.requests, b.at - a.at))
            .collect()
    } else {
        Vec::new()
    };
    let newest = ring.back();
    ServiceRates {
        service: service.to_owned(),
        requests_total: newest.map_or(0, |s| s.requests),
        errors_total: newest.map_or(0, |s| s.errors),
        qps_1m,
        qps_5m,
        error_ratio_1m,
        error_ratio_5m,
        qps_history,
    }
}

/// Requests per second and error ratio between the newest sample and the
/// newest one at least `window` older (or the oldest there is).
fn window_rate(ring: &VecDeque<Sample>, window: Duration) -> (f64, f64) {
    let Some(newest) = ring.back() else {
        return (0.0, 0.0);
    };
    let start = ring
        .iter()
        .rev()
        .find(|s| newest.at.duration_since(s.at) >= window)
        .or_else(|| ring.front())
        .copied()
        .unwrap_or(*newest);
    let requests = newest.requests - start.requests;
    let errors = newest.errors - start.errors;
    let qps = per_second(requests, newest.at.duration_since(start.at));
    let ratio = if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    };
    (qps, ratio)
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent at every step: a panic elsewhere
    // must not take the monitor down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_windows() {
        let rates = RequestRates::new();
        let web = rates.service("web");
        assert!(Arc::ptr_eq(&web, &rates.service("web")));
        let start = Instant::now();
        // 10 requests per second for 6 minutes, one in ten failing during
        // the last minute only.
        for second in 0..=360u64 {
            rates.sample_at(start + Duration::from_secs(second));
            for i in 0..10 {
                web.record(second >= 300 && i == 0);
            }
        }
        let web_rates = &rates.rates()[0];
        assert!((web_rates.qps_1m - 10.0).abs() < 1e-9, "{web_rates:?}");
        assert!((web_rates.qps_5m - 10.0).abs() < 1e-9, "{web_rates:?}");
        assert!((web_rates.error_ratio_1m - 0.1).abs() < 1e-9);
        assert!((web_rates.error_ratio_5m - 0.02).abs() < 1e-9);
        assert_eq!(web_rates.requests_total, 3610);
        assert_eq!(web_rates.errors_total, 61);
        assert!(web_rates.qps_history.len() <= 301);
        assert!(web_rates
            .qps_history
            .iter()
            .all(|q| (q - 10.0).abs() < 1e-9));
    }

    #[test]
    fn short_history_uses_what_it_has() {
        let rates = RequestRates::new();
        let api = rates.service("api");
        let start = Instant::now();
        rates.sample_at(start);
        for _ in 0..20 {
            api.record(false);
        }
        rates.sample_at(start + Duration::from_secs(2));
        let api_rates = &rates.rates()[0];
        // From registration, a moment before `start`.
        assert!((api_rates.qps_1m - 10.0).abs() < 1e-3, "{api_rates:?}");
        assert!((api_rates.qps_5m - 10.0).abs() < 1e-3, "{api_rates:?}");
        assert_eq!(api_rates.error_ratio_1m, 0.0);
    }

    #[test]
    fn no_samples_no_rates() {
        let rates = RequestRates::new();
        rates.service("idle").record(true);
        let idle = &rates.rates()[0];
        assert_eq!(
            (idle.qps_1m, idle.requests_total, idle.errors_total),
            (0.0, 1, 1)
        );
    }
}
