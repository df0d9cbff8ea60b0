use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Policy;
use crate::backend::Backend;
use crate::key::hash_bytes;

/// Consistent hashing on the request key (client IP, a header, a cookie:
/// see [`HttpKey`](crate::HttpKey)) for sticky sessions.
///
/// Every backend owns `virtual_nodes × weight` points on a 64-bit ring,
/// placed by hashing its id, so adding or removing one of N backends moves
/// about 1/N of the keys and no others. Requests without a key go round
/// robin.
#[derive(Debug)]
pub struct ConsistentHash {
    virtual_nodes: u32,
    fallback: AtomicUsize,
}

impl Default for ConsistentHash {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsistentHash {
    /// A ring with 256 virtual nodes per unit of weight.
    pub fn new() -> Self {
        Self::with_virtual_nodes(256)
    }

    /// A ring with this many virtual nodes per unit of weight (more: a more
    /// even spread, a larger ring).
    pub fn with_virtual_nodes(virtual_nodes: u32) -> Self {
        Self {
            virtual_nodes: virtual_nodes.max(1),
            fallback: AtomicUsize::new(0),
        }
    }
}

/// The most points one backend gets, whatever its weight.
const MAX_POINTS_PER_BACKEND: u64 = 1 << 14;

impl Policy for ConsistentHash {
    /// Ring points `(hash, backend index)`, sorted by hash.
    type Prepared = Vec<(u64, u32)>;

    fn name(&self) -> &str {
        "consistent_hash"
    }

    fn prepare(&self, backends: &[Arc<Backend>]) -> Self::Prepared {
        let mut ring = Vec::new();
        let mut buf = Vec::new();
        for (index, backend) in backends.iter().enumerate() {
            let points = (u64::from(self.virtual_nodes) * u64::from(backend.weight().max(1)))
                .min(MAX_POINTS_PER_BACKEND);
            for point in 0..points {
                buf.clear();
                buf.extend_from_slice(backend.id().as_bytes());
                buf.push(b'#');
                buf.extend_from_slice(&point.to_le_bytes());
                ring.push((hash_bytes(&buf), index as u32));
            }
        }
        ring.sort_unstable();
        ring
    }

    fn pick(
        &self,
        ring: &Vec<(u64, u32)>,
        backends: &[Arc<Backend>],
        key: Option<u64>,
    ) -> Option<usize> {
        let Some(key) = key else {
            return Some(self.fallback.fetch_add(1, Ordering::Relaxed) % backends.len());
        };
        if ring.is_empty() {
            return None;
        }
        let at = ring.partition_point(|&(hash, _)| hash < key);
        let (_, index) = ring[if at == ring.len() { 0 } else { at }];
        Some(index as usize)
    }
}
