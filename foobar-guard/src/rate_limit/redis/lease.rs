//! Local allowance leases: tokens an instance took from Redis ahead of
//! time and spends without asking it, per key.
//!
//! A request spends a leased token when one is left. When the lease falls
//! to half its size, one background call refills it; a request that finds
//! it empty asks Redis itself for a whole lease if no call is on its way,
//! and otherwise waits for that call (then, if the lease is empty again,
//! asks for its own token only). When Redis says the bucket is empty, requests are
//! refused locally until it said a token is back. An instance thus holds at
//! most one and a half leases per key.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Independent parts of the table, so that requests for different keys
/// rarely wait for one another's lock (held for a few instructions).
const SHARDS: usize = 16;
/// How many decisions pass between checks for idle leases.
const CHECK_EVERY: usize = 1024;
/// A lease unused this long is dropped (its tokens are forfeited).
const IDLE: Duration = Duration::from_secs(10);

/// What a request does next.
#[derive(Debug)]
pub(super) enum Take {
    /// It spent a leased token; `refill`: it must start the background
    /// refill.
    Spent { refill: bool },
    /// The bucket was empty when Redis was last asked: refused for this
    /// long.
    Wait(Duration),
    /// No token here: it asks Redis for `want` tokens (the first is its
    /// own); `lease_call`: the rest refill the lease, which it must settle.
    Fetch { want: u32, lease_call: bool },
    /// No token here, and a call for a whole lease is on its way: it waits
    /// for that call (the receiver closes when it is settled) rather than
    /// asking Redis itself.
    Await(watch::Receiver<()>),
}

#[derive(Debug)]
struct Lease {
    tokens: u32,
    /// A call for a whole lease is on its way.
    fetching: bool,
    /// Redis said the bucket is empty until then.
    empty_until: Option<Instant>,
    used: Instant,
    /// Dropped when the lease call is settled, waking the requests that
    /// wait for it.
    refilled: Option<watch::Sender<()>>,
}

pub(super) struct Leases<Key> {
    shards: Box<[Mutex<HashMap<Key, Lease>>]>,
    hasher: RandomState,
    size: u32,
    low: u32,
    max_keys: usize,
    calls: AtomicUsize,
    started: Instant,
    last_cleanup_ms: AtomicU64,
}

impl<Key> std::fmt::Debug for Leases<Key> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<Key: Hash + Eq + Clone> Leases<Key> {
    /// Leases of `size` tokens (at least one), refilled at half.
    pub(super) fn new(size: u32, max_keys: usize) -> Self {
        let size = size.max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            size,
            low: size / 2,
            max_keys: max_keys.max(1),
            calls: AtomicUsize::new(0),
            started: Instant::now(),
            last_cleanup_ms: AtomicU64::new(0),
        }
    }

    /// The tokens of one lease.
    pub(super) fn size(&self) -> u32 {
        self.size
    }

    /// The most tokens an instance holds for one key: a lease refilled
    /// when half spent.
    pub(super) fn most_held(&self) -> u32 {
        self.size + self.low
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Lease>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[index]
    }

    /// What a request for `key` does at `now`.
    pub(super) fn take(&self, key: &Key, now: Instant) -> Take {
        self.maintain(now);
        self.take_inner(key, now, true)
    }

    /// What a request that waited for a lease call does: never waits
    /// again (at worst it asks Redis for its own token).
    pub(super) fn take_after_wait(&self, key: &Key, now: Instant) -> Take {
        self.take_inner(key, now, false)
    }

    fn take_inner(&self, key: &Key, now: Instant, may_wait: bool) -> Take {
        let mut shard = lock(self.shard(key));
        let lease = match shard.get_mut(key) {
            Some(lease) => lease,
            None => shard.entry(key.clone()).or_insert(Lease {
                tokens: 0,
                fetching: false,
                empty_until: None,
                used: now,
                refilled: None,
            }),
        };
        lease.used = now;
        let empty = lease.empty_until.filter(|until| *until > now);
        if lease.tokens > 0 {
            lease.tokens -= 1;
            let refill = !lease.fetching && lease.tokens <= self.low && empty.is_none();
            lease.fetching |= refill;
            return Take::Spent { refill };
        }
        if let Some(until) = empty {
            return Take::Wait(until - now);
        }
        if lease.fetching {
            if may_wait {
                let sender = lease.refilled.get_or_insert_with(|| watch::channel(()).0);
                return Take::Await(sender.subscribe());
            }
            return Take::Fetch {
                want: 1,
                lease_call: false,
            };
        }
        lease.fetching = true;
        Take::Fetch {
            want: self.size,
            lease_call: true,
        }
    }

    /// Records the answer to a call for a whole lease (`lease_call`) or for
    /// one request's token: `tokens` left over for the lease, and how long
    /// the bucket is empty if Redis said so.
    pub(super) fn settle(
        &self,
        key: &Key,
        lease_call: bool,
        tokens: u32,
        empty_for: Option<Duration>,
        now: Instant,
    ) {
        let mut shard = lock(self.shard(key));
        // A lease dropped meanwhile forfeits the tokens (fewer admitted,
        // never more).
        let Some(lease) = shard.get_mut(key) else {
            return;
        };
        lease.tokens = lease.tokens.saturating_add(tokens);
        if lease_call {
            lease.fetching = false;
            lease.refilled = None;
        }
        if let Some(wait) = empty_for {
            lease.empty_until = Some(now + wait);
        }
    }

    /// Drops idle leases every few seconds; forgets every lease if the keys
    /// still exceed `max_keys`.
    fn maintain(&self, now: Instant) {
        if self.calls.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY != 0 {
            return;
        }
        let now_ms = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        let last = self.last_cleanup_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < IDLE.as_millis() as u64 / 2 {
            return;
        }
        if self
            .last_cleanup_ms
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut keys = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.retain(|_, lease| {
                lease.fetching || now.saturating_duration_since(lease.used) < IDLE
            });
            keys += shard.len();
        }
        if keys > self.max_keys {
            tracing::warn!(
                max_keys = self.max_keys,
                "rate limit lease table full; resetting it"
            );
            for shard in self.shards.iter() {
                lock(shard).clear();
            }
        }
    }

    /// The number of keys holding a lease.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }
}

/// Locks a shard; a panic elsewhere while it was held leaves plain
/// counters behind, still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_spent_locally_and_refilled_at_half() {
        let leases = Leases::new(10, 100);
        let now = Instant::now();
        assert!(matches!(
            leases.take(&1, now),
            Take::Fetch {
                want: 10,
                lease_call: true
            }
        ));
        // Meanwhile another request waits for that call...
        let Take::Await(waiting) = leases.take(&1, now) else {
            panic!("the second request does not wait for the lease call");
        };
        // ...or, having waited once, asks for its own token only.
        assert!(matches!(
            leases.take_after_wait(&1, now),
            Take::Fetch {
                want: 1,
                lease_call: false
            }
        ));
        leases.settle(&1, true, 9, None, now);
        // Settling wakes the waiting request.
        assert!(waiting.has_changed().is_err());
        for _ in 0..3 {
            assert!(matches!(
                leases.take(&1, now),
                Take::Spent { refill: false }
            ));
        }
        // Down to five: the refill starts, once.
        assert!(matches!(leases.take(&1, now), Take::Spent { refill: true }));
        assert!(matches!(
            leases.take(&1, now),
            Take::Spent { refill: false }
        ));
        leases.settle(&1, true, 10, None, now);
        assert!(leases.most_held() >= 13);
    }

    #[test]
    fn an_empty_bucket_refuses_locally_until_a_token_is_back() {
        let leases = Leases::new(4, 100);
        let now = Instant::now();
        let lease_call = |take: Take| {
            matches!(
                take,
                Take::Fetch {
                    want: 4,
                    lease_call: true
                }
            )
        };
        assert!(lease_call(leases.take(&"k", now)));
        leases.settle(&"k", true, 0, Some(Duration::from_millis(30)), now);
        assert!(matches!(
            leases.take(&"k", now + Duration::from_millis(10)),
            Take::Wait(wait) if wait == Duration::from_millis(20)
        ));
        assert!(lease_call(
            leases.take(&"k", now + Duration::from_millis(30))
        ));
    }
}
