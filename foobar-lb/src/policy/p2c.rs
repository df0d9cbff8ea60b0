use std::sync::Arc;

use super::{random_index, Policy};
use crate::backend::Backend;

/// Power of two choices over peak-EWMA latency: pick two backends at
/// random, send to the one with the lower `latency estimate × (in-flight +
/// 1) / weight`.
///
/// The estimate jumps up to any slower response and decays towards faster
/// ones; a new backend starts at
/// [`BackendsBuilder::initial_rtt`](crate::BackendsBuilder::initial_rtt)
/// (default 10 ms), above zero, so it is probed rather than flooded.
#[derive(Debug, Default)]
pub struct PeakEwmaP2c {
    _private: (),
}

impl PeakEwmaP2c {
    /// A P2C peak-EWMA policy.
    pub fn new() -> Self {
        Self::default()
    }
}

fn cost(backend: &Backend) -> f64 {
    backend.ewma.load_nanos().max(1.0) * (backend.in_flight() as f64 + 1.0)
        / f64::from(backend.weight().max(1))
}

impl Policy for PeakEwmaP2c {
    type Prepared = ();

    fn name(&self) -> &str {
        "p2c_peak_ewma"
    }

    fn prepare(&self, _backends: &[Arc<Backend>]) -> Self::Prepared {}

    fn pick(&self, (): &(), backends: &[Arc<Backend>], _key: Option<u64>) -> Option<usize> {
        let n = backends.len();
        if n == 1 {
            return Some(0);
        }
        let a = random_index(n);
        // A second index different from the first.
        let b = (a + 1 + random_index(n - 1)) % n;
        Some(if cost(&backends[a]) <= cost(&backends[b]) {
            a
        } else {
            b
        })
    }
}
