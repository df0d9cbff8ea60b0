//! Lock-free latency tracking: a small windowed histogram for the status
//! page's p99, and the peak-EWMA estimate the P2C policy balances on.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Four buckets per power of two of microseconds (≤ 19% error), up to
/// 2^27 µs (~134 s); slower responses land in the last bucket.
const BUCKETS: usize = 27 * 4;
/// Each window covers this many milliseconds; two windows are kept.
const WINDOW_MS: u64 = 10_000;

/// A latency histogram over the current and the previous 10 s window.
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    windows: [Window; 2],
}

#[derive(Debug)]
struct Window {
    epoch: AtomicU64,
    counts: [AtomicU32; BUCKETS],
}

impl Window {
    fn new() -> Self {
        Self {
            epoch: AtomicU64::new(u64::MAX),
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let msb = 63 - u64::from(micros.leading_zeros());
    let sub = (micros >> (msb - 2)) & 3;
    ((msb as usize) * 4 + sub as usize).min(BUCKETS - 1)
}

/// The upper bound of a bucket, in microseconds.
fn bucket_upper(bucket: usize) -> u64 {
    if bucket < 4 {
        return bucket as u64 + 1;
    }
    let msb = bucket / 4;
    let sub = (bucket % 4) as u64;
    (4 + sub + 1) << (msb - 2)
}

impl LatencyHistogram {
    pub(crate) fn new() -> Self {
        Self {
            windows: [Window::new(), Window::new()],
        }
    }

    pub(crate) fn record(&self, elapsed: Duration, now_ms: u64) {
        let epoch = now_ms / WINDOW_MS;
        let window = &self.windows[(epoch % 2) as usize];
        let seen = window.epoch.load(Ordering::Acquire);
        if seen != epoch
            && window
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // The first recorder of a new window clears it; a few samples
            // racing with the reset may be lost, which a p99 tolerates.
            for count in &window.counts {
                count.store(0, Ordering::Relaxed);
            }
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        window.counts[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile over the current and previous windows.
    pub(crate) fn quantile(&self, q: f64, now_ms: u64) -> Option<Duration> {
        let epoch = now_ms / WINDOW_MS;
        let mut counts = [0u64; BUCKETS];
        let mut total = 0u64;
        for window in &self.windows {
            let e = window.epoch.load(Ordering::Acquire);
            if e == epoch || e.wrapping_add(1) == epoch {
                for (sum, count) in counts.iter_mut().zip(&window.counts) {
                    let n = u64::from(count.load(Ordering::Relaxed));
                    *sum += n;
                    total += n;
                }
            }
        }
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_upper(bucket)));
            }
        }
        None
    }
}

/// Peak-EWMA latency: jumps up to any slower sample at once, decays towards
/// faster samples with time constant [`PeakEwma::DECAY`] (Finagle's and
/// linkerd's estimator for power-of-two-choices balancing).
#[derive(Debug)]
pub(crate) struct PeakEwma {
    /// The estimate in nanoseconds, as `f64` bits.
    estimate: AtomicU64,
    /// When it was last updated, in nanoseconds since `origin`.
    updated: AtomicU64,
    origin: Instant,
}

impl PeakEwma {
    const DECAY: f64 = 10e9;

    pub(crate) fn new(initial: Duration) -> Self {
        Self {
            estimate: AtomicU64::new((initial.as_nanos() as f64).to_bits()),
            updated: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// The estimate as of the last sample.
    pub(crate) fn get_nanos(&self) -> f64 {
        f64::from_bits(self.estimate.load(Ordering::Relaxed))
    }

    /// The estimate now: decayed towards zero for the time since the last
    /// sample. A backend whose estimate jumped once (its first request
    /// paid for the connection, say) and that then lost every comparison
    /// gets no new sample to bring it down; decaying when read lets it be
    /// chosen again, as tower's and Finagle's estimators do.
    pub(crate) fn load_nanos(&self) -> f64 {
        let idle = self
            .now()
            .saturating_sub(self.updated.load(Ordering::Relaxed));
        decayed(self.get_nanos(), idle)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn observe(&self, rtt: Duration) {
        let now = self.now();
        let last = self.updated.swap(now, Ordering::Relaxed);
        let rtt = rtt.as_nanos() as f64;
        let current = self.get_nanos();
        let next = if rtt > current {
            rtt
        } else {
            let keep = decayed(1.0, now.saturating_sub(last));
            current * keep + rtt * (1.0 - keep)
        };
        // Concurrent updates may overwrite each other; either value is a
        // valid estimate.
        self.estimate.store(next.to_bits(), Ordering::Relaxed);
    }
}

/// `value` after `elapsed_nanos` of exponential decay with time constant
/// [`PeakEwma::DECAY`].
fn decayed(value: f64, elapsed_nanos: u64) -> f64 {
    value * (-(elapsed_nanos as f64) / PeakEwma::DECAY).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for micros in [0u64, 1, 3, 4, 5, 7, 8, 100, 999, 1000, 65_000, 10_000_000] {
            let b = bucket_of(micros);
            assert!(b >= last, "{micros}");
            assert!(bucket_upper(b) > micros, "{micros} -> {b}");
            last = b;
        }
    }

    #[test]
    fn p99_finds_the_slow_tail() {
        let h = LatencyHistogram::new();
        for _ in 0..990 {
            h.record(Duration::from_micros(100), 5);
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(50), 5);
        }
        let p99 = h.quantile(0.99, 5).unwrap();
        assert!(p99 <= Duration::from_micros(130), "{p99:?}");
        let p999 = h.quantile(0.999, 5).unwrap();
        assert!(p999 >= Duration::from_millis(50), "{p999:?}");
        assert_eq!(h.quantile(0.99, 5 + 3 * WINDOW_MS), None);
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let e = PeakEwma::new(Duration::from_millis(10));
        e.observe(Duration::from_millis(50));
        assert_eq!(e.get_nanos() as u64, 50_000_000);
        e.observe(Duration::from_millis(1));
        assert!(e.get_nanos() <= 50e6);
    }

    #[test]
    fn an_estimate_without_new_samples_decays_when_read() {
        let e = PeakEwma::new(Duration::from_millis(10));
        e.observe(Duration::from_millis(200));
        // Just read: as observed, give or take the nanoseconds since.
        assert!(e.load_nanos() > 199e6 && e.load_nanos() <= 200e6);
        // One time constant idle: down to 1/e of it.
        let after = decayed(200e6, 10_000_000_000);
        assert!((after - 200e6 / std::f64::consts::E).abs() < 1.0, "{after}");
        // Long idle: cheaper than a steady 40 ms backend.
        assert!(decayed(200e6, 20_000_000_000) < 40e6);
    }
}
