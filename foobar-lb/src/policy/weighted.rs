use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Policy;
use crate::backend::Backend;

/// Smooth weighted round robin, nginx's algorithm: with weights 5, 1, 1 the
/// order is `a a b a c a a` rather than `a a a a a b c`.
///
/// The whole cycle (one pass of nginx's algorithm per unit of total
/// weight) is computed when the set changes; a request only reads the next
/// entry, so picking is lock-free. Weights are reduced by their greatest
/// common divisor and the cycle is capped at 65,536 entries (larger weight
/// sums are scaled down proportionally).
#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    next: AtomicUsize,
}

impl WeightedRoundRobin {
    /// A weighted round robin.
    pub fn new() -> Self {
        Self::default()
    }
}

const MAX_CYCLE: u64 = 1 << 16;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// nginx's smooth weighted round robin, run for one full cycle.
pub(crate) fn smooth_cycle(weights: &[u64]) -> Vec<u32> {
    let divisor = weights
        .iter()
        .copied()
        .filter(|&w| w > 0)
        .fold(0, gcd)
        .max(1);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_CYCLE {
        for w in &mut weights {
            if *w > 0 {
                *w = (*w * MAX_CYCLE / total).max(1);
            }
        }
    }
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        cycle.push(best as u32);
    }
    cycle
}

impl Policy for WeightedRoundRobin {
    type Prepared = Vec<u32>;

    fn name(&self) -> &str {
        "weighted_round_robin"
    }

    fn prepare(&self, backends: &[Arc<Backend>]) -> Self::Prepared {
        let weights: Vec<u64> = backends.iter().map(|b| u64::from(b.weight())).collect();
        smooth_cycle(&weights)
    }

    fn pick(
        &self,
        cycle: &Vec<u32>,
        backends: &[Arc<Backend>],
        _key: Option<u64>,
    ) -> Option<usize> {
        if cycle.is_empty() {
            return None;
        }
        let i = cycle[self.next.fetch_add(1, Ordering::Relaxed) % cycle.len()] as usize;
        (i < backends.len()).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_nginx_order() {
        let order: String = smooth_cycle(&[5, 1, 1])
            .into_iter()
            .map(|i| (b'a' + i as u8) as char)
            .collect();
        assert_eq!(order, "aabacaa");
    }

    #[test]
    fn reduces_and_caps() {
        assert_eq!(smooth_cycle(&[200, 100]).len(), 3);
        let big = smooth_cycle(&[u64::from(u32::MAX), 1]);
        assert!(big.len() as u64 <= MAX_CYCLE + 1);
        assert!(big.contains(&1));
    }
}
