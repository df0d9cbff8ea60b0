//! First-match-wins CIDR rules compiled into disjoint address ranges.
//!
//! CIDR blocks nest or are disjoint, never partly overlap. Sorting the
//! blocks outermost-first and sweeping them with a stack splits one address
//! family into disjoint ranges, each carrying the action of the first rule
//! (lowest index) that covers it. Adjacent ranges with the same action are
//! merged, so the actions alternate: the table keeps only the range starts
//! and the first range's action. A lookup is one binary search, narrowed by
//! a bucket index when the table is large.

/// An unsigned address of one family: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait Key: Copy + Ord + std::fmt::Debug {
    const ZERO: Self;
    const BITS: u32;
    fn succ(self) -> Option<Self>;
    /// The last address of the block `self/prefix_len`.
    fn block_end(self, prefix_len: u8) -> Self;
    /// `(self - base) >> shift`, saturated to `usize`.
    fn offset(self, base: Self, shift: u32) -> usize;
    fn leading_zeros_of_diff(self, base: Self) -> u32;
}

macro_rules! impl_key {
    ($t:ty) => {
        impl Key for $t {
            const ZERO: Self = 0;
            const BITS: u32 = <$t>::BITS;
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn block_end(self, prefix_len: u8) -> Self {
                let host_bits = Self::BITS - u32::from(prefix_len);
                if host_bits == Self::BITS {
                    <$t>::MAX
                } else {
                    self | ((1 << host_bits) - 1)
                }
            }
            fn offset(self, base: Self, shift: u32) -> usize {
                let diff = self.saturating_sub(base);
                let shifted = if shift >= Self::BITS {
                    0
                } else {
                    diff >> shift
                };
                usize::try_from(shifted).unwrap_or(usize::MAX)
            }
            fn leading_zeros_of_diff(self, base: Self) -> u32 {
                self.saturating_sub(base).leading_zeros()
            }
        }
    };
}
impl_key!(u32);
impl_key!(u128);

/// One rule of one family, as the compiler sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block<K> {
    pub(crate) start: K,
    pub(crate) end: K,
    pub(crate) index: u32,
    pub(crate) allow: bool,
}

/// Tables at least this long get a bucket index; smaller ones are searched
/// directly (the index would cost more memory than it saves time).
const INDEX_FROM: usize = 256;
/// log2 of the number of index buckets: about one bucket per range, so a
/// lookup touches the index and then one or two cache lines of starts.
const INDEX_BITS: std::ops::RangeInclusive<u32> = 8..=22;

/// The compiled rules of one address family.
#[derive(Clone, Debug)]
pub(crate) struct Table<K> {
    /// Sorted starts of the disjoint ranges; `starts[0]` is always zero.
    starts: Box<[K]>,
    /// The action of `starts[0]`'s range; the next range has the other one.
    first_allow: bool,
    index: Option<BucketIndex<K>>,
}

/// Maps an address to the slice of `starts` that can hold its range:
/// bucket `b` covers addresses whose `(addr - base) >> shift` is `b - 1`
/// (bucket 0 holds everything below `base`).
#[derive(Clone, Debug)]
struct BucketIndex<K> {
    base: K,
    shift: u32,
    /// The number of buckets, a power of two.
    buckets: usize,
    /// `bounds[b]` is the first position in `starts` of bucket `b` or later.
    bounds: Box<[u32]>,
}

impl<K: Key> BucketIndex<K> {
    fn bucket(&self, addr: K) -> usize {
        if addr < self.base {
            0
        } else {
            addr.offset(self.base, self.shift)
                .saturating_add(1)
                .min(self.buckets - 1)
        }
    }

    fn build(starts: &[K]) -> Option<Self> {
        if starts.len() < INDEX_FROM || u32::try_from(starts.len()).is_err() {
            return None;
        }
        // Spread the buckets over the span that holds the starts.
        let base = starts[1];
        let last = starts[starts.len() - 1];
        let span_bits = K::BITS - last.leading_zeros_of_diff(base);
        let index_bits = (usize::BITS - starts.len().leading_zeros())
            .clamp(*INDEX_BITS.start(), *INDEX_BITS.end());
        let shift = span_bits.saturating_sub(index_bits - 1);
        let buckets = 1usize << index_bits;
        let mut index = Self {
            base,
            shift,
            buckets,
            bounds: Box::default(),
        };
        let mut bounds = Vec::with_capacity(buckets + 1);
        let mut position = 0usize;
        for bucket in 0..=buckets {
            while position < starts.len() && index.bucket(starts[position]) < bucket {
                position += 1;
            }
            // Fits: the length was checked above.
            bounds.push(u32::try_from(position).unwrap_or(u32::MAX));
        }
        index.bounds = bounds.into_boxed_slice();
        Some(index)
    }
}

impl<K: Key> Table<K> {
    /// Compiles `blocks` (in rule order) with `default` for uncovered
    /// addresses.
    pub(crate) fn compile(mut blocks: Vec<Block<K>>, default_allow: bool) -> Self {
        // Outermost first; among equal blocks the earliest rule first.
        blocks.sort_unstable_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(b.end.cmp(&a.end))
                .then(a.index.cmp(&b.index))
        });
        let mut out = RangeWriter::default();
        // Open blocks, innermost last, each with the action that wins
        // inside it: its own or an enclosing earlier rule's.
        let mut open: Vec<(K, u32, bool)> = Vec::new();
        // The first address not yet written; `None` once past the last.
        let mut next = Some(K::ZERO);
        for block in &blocks {
            while let Some(&(end, _, allow)) = open.last() {
                if end >= block.start {
                    break;
                }
                if let Some(pos) = next.filter(|&pos| pos <= end) {
                    out.push(pos, allow);
                    next = end.succ();
                }
                open.pop();
            }
            if let Some(pos) = next.filter(|&pos| pos < block.start) {
                let allow = open.last().map_or(default_allow, |&(_, _, allow)| allow);
                out.push(pos, allow);
                next = Some(block.start);
            }
            let winner = match open.last() {
                Some(&(_, index, allow)) if index < block.index => (index, allow),
                _ => (block.index, block.allow),
            };
            open.push((block.end, winner.0, winner.1));
        }
        while let Some((end, _, allow)) = open.pop() {
            if let Some(pos) = next.filter(|&pos| pos <= end) {
                out.push(pos, allow);
                next = end.succ();
            }
        }
        if let Some(pos) = next {
            out.push(pos, default_allow);
        }
        let first_allow = out.first_allow.unwrap_or(default_allow);
        let starts = out.starts.into_boxed_slice();
        let index = BucketIndex::build(&starts);
        Self {
            starts,
            first_allow,
            index,
        }
    }

    /// Whether `addr` is allowed.
    #[inline]
    pub(crate) fn allows(&self, addr: K) -> bool {
        let position = match &self.index {
            Some(index) => {
                let bucket = index.bucket(addr);
                let lo = index.bounds[bucket] as usize;
                let hi = index.bounds[bucket + 1] as usize;
                lo + self.starts[lo..hi].partition_point(|&s| s <= addr)
            }
            None => self.starts.partition_point(|&s| s <= addr),
        };
        // `starts[0]` is zero, so `position >= 1`.
        let range = position.saturating_sub(1);
        self.first_allow ^ (range & 1 == 1)
    }

    /// Bytes held by the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<K>()
            + self
                .index
                .as_ref()
                .map_or(0, |index| index.bounds.len() * std::mem::size_of::<u32>())
    }

    /// Number of disjoint ranges.
    #[cfg(test)]
    pub(crate) fn ranges(&self) -> usize {
        self.starts.len()
    }
}

/// Collects range starts, merging neighbours with the same action.
struct RangeWriter<K> {
    starts: Vec<K>,
    first_allow: Option<bool>,
    last_allow: Option<bool>,
}

impl<K> Default for RangeWriter<K> {
    fn default() -> Self {
        Self {
            starts: Vec::new(),
            first_allow: None,
            last_allow: None,
        }
    }
}

impl<K> RangeWriter<K> {
    fn push(&mut self, start: K, allow: bool) {
        if self.last_allow == Some(allow) {
            return;
        }
        self.first_allow.get_or_insert(allow);
        self.last_allow = Some(allow);
        self.starts.push(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(start: u32, prefix: u8, index: u32, allow: bool) -> Block<u32> {
        Block {
            start,
            end: start.block_end(prefix),
            index,
            allow,
        }
    }

    #[test]
    fn first_match_wins_over_nested_blocks() {
        // deny 10.1.0.0/16, allow 10.0.0.0/8, default deny.
        let table = Table::compile(
            vec![
                block(0x0a01_0000, 16, 0, false),
                block(0x0a00_0000, 8, 1, true),
            ],
            false,
        );
        assert!(table.allows(0x0a00_0001));
        assert!(!table.allows(0x0a01_0203));
        assert!(table.allows(0x0a02_0000));
        assert!(!table.allows(0x0b00_0000));
        assert!(!table.allows(0));
        assert!(!table.allows(u32::MAX));
        // The inner rule, listed later, is shadowed by the outer one.
        let shadowed = Table::compile(
            vec![
                block(0x0a00_0000, 8, 0, true),
                block(0x0a01_0000, 16, 1, false),
            ],
            false,
        );
        assert!(shadowed.allows(0x0a01_0203));
        assert_eq!(shadowed.ranges(), 3);
    }

    #[test]
    fn whole_space_and_top_block() {
        let all = Table::compile(vec![block(0, 0, 0, false)], true);
        assert!(!all.allows(0) && !all.allows(u32::MAX));
        let top = Table::compile(vec![block(0xffff_ff00, 24, 0, false)], true);
        assert!(top.allows(0xfffe_ffff));
        assert!(!top.allows(u32::MAX));
    }

    #[test]
    fn indexed_table_agrees_with_a_linear_scan() {
        let blocks: Vec<_> = (0..2000u32)
            .map(|i| {
                let start = i.wrapping_mul(2_654_435_761) & 0xffff_ff00;
                block(start, 24 - (i % 9) as u8, i, i % 3 == 0)
            })
            .map(|mut b| {
                b.start &= !(b.end - b.start);
                b
            })
            .collect();
        let table = Table::compile(blocks.clone(), false);
        assert!(table.index.is_some());
        for probe in (0..200_000u32).map(|i| i.wrapping_mul(2_246_822_519)) {
            let expected = blocks
                .iter()
                .find(|b| b.start <= probe && probe <= b.end)
                .is_some_and(|b| b.allow);
            assert_eq!(table.allows(probe), expected, "{probe:#x}");
        }
    }
}
