use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Policy;
use crate::backend::Backend;

/// The backend with the fewest requests in flight per unit of weight;
/// ties go round robin so an idle set is still spread evenly.
#[derive(Debug, Default)]
pub struct LeastOutstanding {
    start: AtomicUsize,
}

impl LeastOutstanding {
    /// A least-outstanding-requests policy.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Policy for LeastOutstanding {
    type Prepared = ();

    fn name(&self) -> &str {
        "least_outstanding"
    }

    fn prepare(&self, _backends: &[Arc<Backend>]) -> Self::Prepared {}

    fn pick(&self, (): &(), backends: &[Arc<Backend>], _key: Option<u64>) -> Option<usize> {
        let n = backends.len();
        let start = self.start.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = start;
        let mut best_load = (
            backends[start].in_flight(),
            u64::from(backends[start].weight().max(1)),
        );
        for offset in 1..n {
            let i = (start + offset) % n;
            let load = (
                backends[i].in_flight(),
                u64::from(backends[i].weight().max(1)),
            );
            // a/wa < b/wb  ⇔  a·wb < b·wa
            if u128::from(load.0) * u128::from(best_load.1)
                < u128::from(best_load.0) * u128::from(load.1)
            {
                best = i;
                best_load = load;
            }
        }
        Some(best)
    }
}
