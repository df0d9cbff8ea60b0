//! One backend: its identity, weight and live state (health, in-flight
//! requests, latency), kept in atomics so the request path never locks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use foobar_core::status::Health;
use metrics::{Counter, Gauge, Histogram};
use tokio::sync::Notify;

use crate::latency::{LatencyHistogram, PeakEwma};
use crate::status::BackendStatus;

/// How a backend is declared: a name, an optional address, a weight.
///
/// ```
/// use foobar_lb::BackendConfig;
/// let web1 = BackendConfig::new("web1").addr("127.0.0.1:8081".parse().unwrap()).weight(3);
/// assert_eq!(web1.id(), "web1");
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct BackendConfig {
    id: String,
    addr: Option<SocketAddr>,
    weight: u32,
}

impl BackendConfig {
    /// A backend named `id` (unique within its set), weight 1, no address.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            addr: None,
            weight: 1,
        }
    }

    /// The socket address (used by TCP health checks).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// The balancing weight. 0 keeps the backend in the set without traffic.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The backend's name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Result of active health checks, as the checker last decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ActiveHealth {
    Unknown = 0,
    Up = 1,
    Down = 2,
}

/// A backend in a [`Backends`](crate::Backends) set: identity plus live
/// state. Shared (`Arc`) between the set, policies, health checks and
/// in-flight requests; its state survives every change of the set.
#[derive(Debug)]
pub struct Backend {
    id: Arc<str>,
    addr: Option<SocketAddr>,
    weight: AtomicU32,
    in_flight: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    active: AtomicU8,
    draining: AtomicBool,
    /// Monotonic milliseconds (see [`now_ms`]) until which the backend is
    /// ejected; 0 when it is not.
    ejected_until_ms: AtomicU64,
    ejection_level: AtomicU32,
    last_ejection_end_ms: AtomicU64,
    ejections: AtomicU64,
    consecutive_failures: AtomicU32,
    pub(crate) ewma: PeakEwma,
    latency: LatencyHistogram,
    idle: Notify,
    metrics: BackendMetrics,
}

/// Metric handles registered once per backend, so the request path never
/// formats a label.
#[derive(Debug)]
struct BackendMetrics {
    requests: Counter,
    errors: Counter,
    duration: Histogram,
    in_flight: Gauge,
    healthy: Gauge,
    ejections: Counter,
}

impl BackendMetrics {
    fn register(id: &str) -> Self {
        let labels = [("backend", id.to_owned())];
        Self {
            requests: metrics::counter!("foobar_lb_backend_requests_total", &labels),
            errors: metrics::counter!("foobar_lb_backend_errors_total", &labels),
            duration: metrics::histogram!("foobar_lb_backend_response_seconds", &labels),
            in_flight: metrics::gauge!("foobar_lb_backend_in_flight", &labels),
            healthy: metrics::gauge!("foobar_lb_backend_healthy", &labels),
            ejections: metrics::counter!("foobar_lb_backend_ejections_total", &labels),
        }
    }
}

impl Backend {
    pub(crate) fn new(config: BackendConfig, initial_rtt: Duration) -> Self {
        let metrics = BackendMetrics::register(&config.id);
        metrics.healthy.set(1.0);
        Self {
            id: config.id.into(),
            addr: config.addr,
            weight: AtomicU32::new(config.weight),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            active: AtomicU8::new(ActiveHealth::Unknown as u8),
            draining: AtomicBool::new(false),
            ejected_until_ms: AtomicU64::new(0),
            ejection_level: AtomicU32::new(0),
            last_ejection_end_ms: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ewma: PeakEwma::new(initial_rtt),
            latency: LatencyHistogram::new(),
            idle: Notify::new(),
            metrics,
        }
    }

    /// The backend's name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its name, shared (no copy).
    pub(crate) fn shared_id(&self) -> Arc<str> {
        self.id.clone()
    }

    /// Its socket address, if one was given.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Its balancing weight.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    /// Requests in flight now (until their response body ends).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests sent to it since it was added.
    pub fn requests_total(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Failed requests (transport errors, timeouts, 5xx) since it was added.
    pub fn errors_total(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Times outlier detection has ejected it.
    pub fn ejections_total(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// The peak-EWMA latency estimate the P2C policy uses now (decayed for
    /// the time since the last answer).
    pub fn rtt_estimate(&self) -> Duration {
        Duration::from_nanos(self.ewma.load_nanos() as u64)
    }

    /// The 99th percentile response time over the last 10–20 s, if any
    /// request completed in that window.
    pub fn latency_p99(&self) -> Option<Duration> {
        self.latency.quantile(0.99, now_ms())
    }

    /// Whether it is being drained (no new requests).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether outlier detection has it ejected right now.
    pub fn is_ejected(&self) -> bool {
        self.ejected_at(now_ms())
    }

    fn ejected_at(&self, now: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now
    }

    /// Whether it may take new requests: not draining, not ejected, not
    /// marked down by health checks, weight above zero.
    pub fn is_available(&self) -> bool {
        self.available_at(now_ms())
    }

    pub(crate) fn available_at(&self, now: u64) -> bool {
        !self.is_draining()
            && !self.ejected_at(now)
            && self.active_health() != ActiveHealth::Down
            && self.weight() > 0
    }

    /// Its health as the status page shows it.
    pub fn health(&self) -> Health {
        if self.is_draining() {
            Health::Draining
        } else if self.is_ejected() {
            Health::Ejected
        } else {
            match self.active_health() {
                ActiveHealth::Unknown => Health::Unknown,
                ActiveHealth::Up => Health::Up,
                ActiveHealth::Down => Health::Down,
            }
        }
    }

    pub(crate) fn active_health(&self) -> ActiveHealth {
        match self.active.load(Ordering::Relaxed) {
            1 => ActiveHealth::Up,
            2 => ActiveHealth::Down,
            _ => ActiveHealth::Unknown,
        }
    }

    /// Records the checker's verdict; true when it changed availability.
    pub(crate) fn set_active_health(&self, health: ActiveHealth) -> bool {
        let old = self.active.swap(health as u8, Ordering::Relaxed);
        self.update_health_gauge();
        (old == ActiveHealth::Down as u8) != (health == ActiveHealth::Down)
    }

    fn update_health_gauge(&self) {
        let up = self.available_at(now_ms());
        self.metrics.healthy.set(if up { 1.0 } else { 0.0 });
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.update_health_gauge();
        if self.in_flight() == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Completes once no request is in flight.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn start_request(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics.requests.increment(1);
        self.metrics.in_flight.increment(1.0);
    }

    pub(crate) fn end_request(&self) {
        let before = self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.in_flight.decrement(1.0);
        if before == 1 && self.is_draining() {
            self.idle.notify_waiters();
        }
    }

    /// Records a response (or failure) after `elapsed`; returns the number
    /// of consecutive failures so far (0 after a success).
    pub(crate) fn record(&self, elapsed: Duration, failed: bool) -> u32 {
        let now = now_ms();
        self.latency.record(elapsed, now);
        self.metrics.duration.record(elapsed.as_secs_f64());
        self.ewma.observe(elapsed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.metrics.errors.increment(1);
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            self.maybe_forget_ejections(now);
            0
        }
    }

    /// Ejects until `now + base × 2^level` (capped); returns the period.
    pub(crate) fn eject(&self, base: Duration, max: Duration) -> Duration {
        let level = self.ejection_level.fetch_add(1, Ordering::Relaxed).min(16);
        let period = base.saturating_mul(1 << level).min(max);
        let until = now_ms() + duration_ms(period);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        self.last_ejection_end_ms.store(until, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.metrics.ejections.increment(1);
        self.update_health_gauge();
        period
    }

    /// Ends an ejection whose period is over; true if it did.
    pub(crate) fn end_ejection_if_due(&self, now: u64) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until != 0 && until <= now {
            self.ejected_until_ms.store(0, Ordering::Relaxed);
            self.update_health_gauge();
            return true;
        }
        false
    }

    /// After a quiet period as long as the longest ejection, repeated
    /// ejections start again from the base period.
    fn maybe_forget_ejections(&self, now: u64) {
        if self.ejection_level.load(Ordering::Relaxed) == 0 {
            return;
        }
        let end = self.last_ejection_end_ms.load(Ordering::Relaxed);
        if now > end.saturating_add(FORGET_EJECTIONS_AFTER_MS) {
            self.ejection_level.store(0, Ordering::Relaxed);
        }
    }

    /// The status page's view of this backend.
    pub fn status(&self) -> BackendStatus {
        BackendStatus {
            id: self.id.to_string(),
            weight: self.weight(),
            health: self.health(),
            in_flight: self.in_flight(),
            requests_total: self.requests_total(),
            errors_total: self.errors_total(),
            latency_p99_seconds: self.latency_p99().map(|d| d.as_secs_f64()),
            ejections_total: self.ejections_total(),
        }
    }
}

/// Repeated ejections escalate only while they come within this time of
/// each other.
const FORGET_EJECTIONS_AFTER_MS: u64 = 5 * 60 * 1000;

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// Milliseconds since the first call in this process (monotonic), never 0.
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    duration_ms(start.elapsed()) + 1
}
