//! One token bucket per key, in a table that stays bounded: shared by the
//! request rate limit and the handshake rate limit.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use metrics::Counter;

/// How often idle buckets are dropped.
const CLEANUP_EVERY: Duration = Duration::from_secs(10);
/// How many checks pass between looks at the key count.
const CHECK_EVERY: usize = 1024;

/// Token buckets (GCRA, via `governor`) keyed by `Key`.
///
/// Idle buckets (full again, so indistinguishable from new ones) are
/// dropped every few seconds; if the live keys still exceed `max_keys`
/// (a flood of distinct keys) the whole table starts over, and every key
/// with it gets a full bucket again, rather than memory growing without
/// bound.
pub(crate) struct Buckets<Key: Hash + Eq + Clone> {
    /// Swapped for an empty one when the table must start over.
    limiter: ArcSwap<DefaultKeyedRateLimiter<Key>>,
    quota: Quota,
    max_keys: usize,
    checks: AtomicUsize,
    started: Instant,
    /// Milliseconds since `started` of the last cleanup.
    last_cleanup: AtomicU64,
    resets: Counter,
}

impl<Key: Hash + Eq + Clone> std::fmt::Debug for Buckets<Key> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buckets")
            .field("quota", &self.quota)
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl<Key: Hash + Eq + Clone> Buckets<Key> {
    /// An empty table; `resets` counts the times it starts over.
    pub(crate) fn new(quota: Quota, max_keys: usize, resets: Counter) -> Self {
        Self {
            limiter: ArcSwap::from_pointee(DefaultKeyedRateLimiter::keyed(quota)),
            quota,
            max_keys: max_keys.max(1),
            checks: AtomicUsize::new(0),
            started: Instant::now(),
            last_cleanup: AtomicU64::new(0),
            resets,
        }
    }

    pub(crate) fn quota(&self) -> Quota {
        self.quota
    }

    pub(crate) fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The number of keys with a bucket now.
    pub(crate) fn len(&self) -> usize {
        self.limiter.load().len()
    }

    /// Takes a token from `key`'s bucket: `None` when there was one, else
    /// how long until there is.
    pub(crate) fn check(&self, key: &Key) -> Option<Duration> {
        let limiter = self.limiter.load();
        let not_until = limiter.check_key(key).err()?;
        Some(not_until.wait_time_from(limiter.clock().now()))
    }

    /// Keeps the table bounded; cheap except on the rare call that cleans
    /// up. Called once per check.
    pub(crate) fn maintain(&self) {
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        if checks % CHECK_EVERY != 0 {
            return;
        }
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_cleanup.load(Ordering::Relaxed);
        let due = now_ms.saturating_sub(last) >= CLEANUP_EVERY.as_millis() as u64;
        let limiter = self.limiter.load();
        let over = limiter.len() > self.max_keys;
        if !(due || over) {
            return;
        }
        // One caller cleans up; the others go on.
        if self
            .last_cleanup
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        limiter.retain_recent();
        if limiter.len() > self.max_keys {
            tracing::warn!(
                max_keys = self.max_keys,
                "rate limiter key table full; starting it over"
            );
            self.resets.increment(1);
            self.limiter
                .store(Arc::new(DefaultKeyedRateLimiter::keyed(self.quota)));
        } else {
            limiter.shrink_to_fit();
        }
    }
}
