use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Policy;
use crate::backend::Backend;

/// Each available backend in turn, ignoring weights: exactly even.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round robin starting at the first backend.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Policy for RoundRobin {
    type Prepared = ();

    fn name(&self) -> &str {
        "round_robin"
    }

    fn prepare(&self, _backends: &[Arc<Backend>]) -> Self::Prepared {}

    fn pick(&self, (): &(), backends: &[Arc<Backend>], _key: Option<u64>) -> Option<usize> {
        Some(self.next.fetch_add(1, Ordering::Relaxed) % backends.len())
    }
}
