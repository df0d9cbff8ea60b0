//! Balancing policies: which available backend takes the next request.
//!
//! | policy | picks | state |
//! |---|---|---|
//! | [`RoundRobin`] | each backend in turn | one counter |
//! | [`WeightedRoundRobin`] | in proportion to weights, smoothly interleaved (nginx) | a precomputed sequence |
//! | [`LeastOutstanding`] | fewest in-flight requests per unit of weight | reads counters |
//! | [`PeakEwmaP2c`] | the cheaper of two random backends, cost = peak-EWMA latency × (in-flight + 1) / weight | reads estimates |
//! | [`ConsistentHash`] | the backend owning the request key on a hash ring (sticky sessions) | a ring of virtual nodes |
//! | [`Random`] | at random, in proportion to weights | cumulative weights |
//!
//! A policy sees only the backends that may take traffic now (healthy, not
//! ejected, not draining, weight > 0). [`Policy::prepare`] runs when that
//! set changes, off the request path; [`Policy::pick`] runs per request and
//! must not lock or allocate.
//!
//! Write your own by implementing [`Policy`]:
//!
//! ```
//! use std::sync::Arc;
//! use foobar_lb::{Backend, Policy};
//!
//! /// Always the first available backend (active/passive fail-over).
//! #[derive(Debug)]
//! struct FirstAvailable;
//!
//! impl Policy for FirstAvailable {
//!     type Prepared = ();
//!     fn name(&self) -> &str { "first_available" }
//!     fn prepare(&self, _backends: &[Arc<Backend>]) {}
//!     fn pick(&self, _: &(), backends: &[Arc<Backend>], _key: Option<u64>) -> Option<usize> {
//!         (!backends.is_empty()).then_some(0)
//!     }
//! }
//! ```

mod consistent_hash;
mod least_outstanding;
mod p2c;
mod random;
mod round_robin;
mod weighted;

use std::sync::Arc;

pub use self::consistent_hash::ConsistentHash;
pub use self::least_outstanding::LeastOutstanding;
pub use self::p2c::PeakEwmaP2c;
pub use self::random::Random;
pub use self::round_robin::RoundRobin;
pub use self::weighted::WeightedRoundRobin;
use crate::backend::Backend;

/// A balancing policy. See the [module docs](self).
pub trait Policy: Send + Sync + 'static {
    /// What the policy precomputes from a set of backends (a ring, a
    /// sequence); `()` when it needs nothing.
    type Prepared: Send + Sync + 'static;

    /// A short name for the status page (`"round_robin"`).
    fn name(&self) -> &str;

    /// Precomputes whatever `pick` needs for this set. Called whenever the
    /// set of available backends or a weight changes.
    fn prepare(&self, backends: &[Arc<Backend>]) -> Self::Prepared;

    /// The index in `backends` of the backend for the next request, or
    /// `None` to refuse it. `backends` is never empty; `key` is the hash of
    /// the request's affinity key when the balancer extracts one.
    fn pick(
        &self,
        prepared: &Self::Prepared,
        backends: &[Arc<Backend>],
        key: Option<u64>,
    ) -> Option<usize>;
}

impl<P: Policy> Policy for Arc<P> {
    type Prepared = P::Prepared;

    fn name(&self) -> &str {
        (**self).name()
    }

    fn prepare(&self, backends: &[Arc<Backend>]) -> Self::Prepared {
        (**self).prepare(backends)
    }

    fn pick(
        &self,
        prepared: &Self::Prepared,
        backends: &[Arc<Backend>],
        key: Option<u64>,
    ) -> Option<usize> {
        (**self).pick(prepared, backends, key)
    }
}

/// A uniformly random index below `n` (`n > 0`).
pub(crate) fn random_index(n: usize) -> usize {
    use rand::Rng;
    rand::rng().random_range(0..n)
}
