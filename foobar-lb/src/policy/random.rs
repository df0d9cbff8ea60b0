use std::sync::Arc;

use super::{random_index, Policy};
use crate::backend::Backend;

/// A random backend, in proportion to the weights.
#[derive(Debug, Default)]
pub struct Random {
    _private: (),
}

impl Random {
    /// A weighted random policy.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Policy for Random {
    /// Cumulative weights.
    type Prepared = Vec<u64>;

    fn name(&self) -> &str {
        "random"
    }

    fn prepare(&self, backends: &[Arc<Backend>]) -> Self::Prepared {
        let mut sum = 0;
        backends
            .iter()
            .map(|b| {
                sum += u64::from(b.weight());
                sum
            })
            .collect()
    }

    fn pick(
        &self,
        cumulative: &Vec<u64>,
        backends: &[Arc<Backend>],
        _key: Option<u64>,
    ) -> Option<usize> {
        let total = *cumulative.last()?;
        if total == 0 {
            return Some(random_index(backends.len()));
        }
        let target = rand::Rng::random_range(&mut rand::rng(), 0..total);
        let i = cumulative.partition_point(|&c| c <= target);
        (i < backends.len()).then_some(i)
    }
}
