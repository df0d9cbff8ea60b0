//! First-match-wins CIDR rules compiled into disjoint address ranges.
//!
//! CIDR blocks nest or are disjoint, never partly overlap. Sorting the
//! blocks outermost-first and sweeping them with a stack splits one address
//! family into disjoint ranges, each carrying the action of the first rule
//! (lowest index) that covers it. Adjacent ranges with the same action are
//! merged, so the actions alternate: the table keeps only the range starts
//! and the first range's action. A lookup is a binary search over the
//! starts; large tables add a bucket index so that a lookup usually reads
//! one cache line whatever the table's size.

/// An unsigned address of one family: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait Key: Copy + Ord + std::fmt::Debug {
    const ZERO: Self;
    const BITS: u32;
    fn succ(self) -> Option<Self>;
    /// The last address of the block `self/prefix_len`.
    fn block_end(self, prefix_len: u8) -> Self;
    /// `self - base`; `self >= base`.
    fn minus(self, base: Self) -> Self;
    /// `self >> shift`; `shift` is less than the width.
    fn shr(self, shift: u32) -> Self;
    /// `self` as `usize`, saturated.
    fn to_usize(self) -> usize;
    /// The top 32 of the low `shift` bits (zero-padded on the right);
    /// `shift` is less than the width.
    fn low_bits_key(self, shift: u32) -> u32;
    fn leading_zeros(self) -> u32;
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
            fn minus(self, base: Self) -> Self {
                self - base
            }
            fn shr(self, shift: u32) -> Self {
                self >> shift
            }
            fn to_usize(self) -> usize {
                usize::try_from(self).unwrap_or(usize::MAX)
            }
            fn low_bits_key(self, shift: u32) -> u32 {
                // Truncating to 32 bits drops the bucket bits above `shift`.
                if shift > 32 {
                    (self >> (shift - 32)) as u32
                } else {
                    (self as u32).checked_shl(32 - shift).unwrap_or(0)
                }
            }
            fn leading_zeros(self) -> u32 {
                <$t>::leading_zeros(self)
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
/// Keys a bucket line holds inline: the line is one 64-byte cache line.
const LINE_KEYS: usize = 14;
/// log2 of the average number of starts per bucket aimed at: about eight,
/// so that nearly every bucket fits its line.
const STARTS_PER_BUCKET_BITS: u32 = 3;
/// log2 of the number of buckets allowed.
const INDEX_BITS: std::ops::RangeInclusive<u32> = 6..=22;

/// The compiled rules of one address family.
#[derive(Clone, Debug)]
pub(crate) struct Table<K> {
    /// Sorted starts of the disjoint ranges; `starts[0]` is always zero.
    starts: Box<[K]>,
    /// The action of `starts[0]`'s range; the next range has the other one.
    first_allow: bool,
    index: Option<BucketIndex<K>>,
}

/// One bucket of the index, sized and aligned to one cache line so that a
/// lookup usually reads just this line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line {
    /// Position in `starts` of the bucket's first start (or of the next
    /// bucket's, when empty).
    first: u32,
    /// How many starts the bucket holds.
    count: u32,
    /// Their keys when `count <= LINE_KEYS`; otherwise `keys[0]` is where
    /// they begin in `BucketIndex::overflow`.
    keys: [u32; LINE_KEYS],
}

/// Splits the span of the starts (from `base`, the first non-zero start)
/// into equal buckets of `2^shift` addresses, and keeps for each start a
/// 32-bit key: the top bits of its offset inside its bucket. A lookup reads
/// its bucket's line and counts the keys at or below the address's own; the
/// full starts are read only when a key ties with the address's key (IPv6,
/// where 32 bits cannot tell every offset apart).
#[derive(Clone, Debug)]
struct BucketIndex<K> {
    base: K,
    shift: u32,
    /// Keys are the whole offset (`shift <= 32`): a tie is equality.
    exact: bool,
    /// The bucket of the last start.
    last_bucket: K,
    lines: Box<[Line]>,
    /// Keys of the buckets too full for their line.
    overflow: Box<[u32]>,
}

impl<K: Key> BucketIndex<K> {
    fn build(starts: &[K]) -> Option<Self> {
        if starts.len() < INDEX_FROM || u32::try_from(starts.len()).is_err() {
            return None;
        }
        let base = starts[1];
        let span = starts[starts.len() - 1].minus(base);
        let span_bits = K::BITS - span.leading_zeros();
        let index_bits = (usize::BITS - starts.len().leading_zeros())
            .saturating_sub(STARTS_PER_BUCKET_BITS)
            .clamp(*INDEX_BITS.start(), *INDEX_BITS.end());
        let shift = span_bits.saturating_sub(index_bits);
        let last_bucket = span.shr(shift);
        let count = last_bucket.to_usize() + 1;
        let key = |start: K| start.minus(base).low_bits_key(shift);
        let mut lines = Vec::with_capacity(count);
        let mut overflow = Vec::new();
        // `starts[0]` (zero, below `base`) is in no bucket.
        let mut position = 1usize;
        for bucket in 0..count {
            let first = position;
            while position < starts.len()
                && starts[position].minus(base).shr(shift).to_usize() == bucket
            {
                position += 1;
            }
            let members = &starts[first..position];
            let mut keys = [0u32; LINE_KEYS];
            if members.len() <= LINE_KEYS {
                for (slot, &start) in keys.iter_mut().zip(members) {
                    *slot = key(start);
                }
            } else {
                keys[0] = u32::try_from(overflow.len()).ok()?;
                overflow.extend(members.iter().map(|&start| key(start)));
            }
            lines.push(Line {
                // Both fit: the length was checked above.
                first: u32::try_from(first).ok()?,
                count: u32::try_from(members.len()).ok()?,
                keys,
            });
        }
        Some(Self {
            base,
            shift,
            exact: shift <= 32,
            last_bucket,
            lines: lines.into_boxed_slice(),
            overflow: overflow.into_boxed_slice(),
        })
    }

    /// The number of starts `<= addr`.
    #[inline]
    fn position(&self, starts: &[K], addr: K) -> usize {
        if addr < self.base {
            return 1;
        }
        let offset = addr.minus(self.base);
        let bucket = offset.shr(self.shift);
        if bucket > self.last_bucket {
            return starts.len();
        }
        let line = &self.lines[bucket.to_usize()];
        let (first, count) = (line.first as usize, line.count as usize);
        let probe = offset.low_bits_key(self.shift);
        let (keys, at_most) = if count <= LINE_KEYS {
            let keys = &line.keys[..count];
            // Counting beats a binary search over a line's few keys: no
            // unpredictable branches.
            (keys, keys.iter().filter(|&&k| k <= probe).count())
        } else {
            let from = line.keys[0] as usize;
            let keys = &self.overflow[from..from + count];
            (keys, keys.partition_point(|&k| k <= probe))
        };
        if self.exact || at_most == 0 || keys[at_most - 1] != probe {
            return first + at_most;
        }
        // Starts whose key ties with the address may lie on either side.
        let below = keys.partition_point(|&k| k < probe);
        first + below + starts[first + below..first + at_most].partition_point(|&s| s <= addr)
    }

    fn heap_bytes(&self) -> usize {
        self.lines.len() * std::mem::size_of::<Line>()
            + self.overflow.len() * std::mem::size_of::<u32>()
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
            Some(index) => index.position(&self.starts, addr),
            None => self.starts.partition_point(|&s| s <= addr),
        };
        // `starts[0]` is zero, so `position >= 1`.
        let range = position.saturating_sub(1);
        self.first_allow ^ (range & 1 == 1)
    }

    /// Bytes held by the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<K>()
            + self.index.as_ref().map_or(0, BucketIndex::heap_bytes)
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

    /// Linear first-match scan, the reference.
    fn scan<K: Key>(blocks: &[Block<K>], probe: K) -> bool {
        blocks
            .iter()
            .find(|b| b.start <= probe && probe <= b.end)
            .is_some_and(|b| b.allow)
    }

    /// Probes at every block edge and just past it, plus spread-out ones
    /// (callers add the address just below each block).
    fn probes<K: Key>(blocks: &[Block<K>], spread: impl Iterator<Item = K>) -> Vec<K> {
        let mut out: Vec<K> = spread.collect();
        for b in blocks {
            out.extend([b.start, b.end]);
            out.extend(b.start.succ());
            out.extend(b.end.succ());
        }
        out
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
        let mut all = probes(
            &blocks,
            (0..200_000u32).map(|i| i.wrapping_mul(2_246_822_519)),
        );
        all.extend(blocks.iter().filter(|b| b.start > 0).map(|b| b.start - 1));
        for probe in all {
            assert_eq!(table.allows(probe), scan(&blocks, probe), "{probe:#x}");
        }
    }

    #[test]
    fn random_tables_of_every_density_agree_with_a_linear_scan() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..60 {
            let count = [20, 200, 400, 3000][rng.random_range(0..4)];
            // Rules packed into a span of 2^span_bits addresses.
            let span_bits = [8, 10, 11, 12, 16, 24, 32][rng.random_range(0..7)];
            let base = rng.random::<u32>() & !u32::MAX.checked_shr(32 - span_bits).unwrap_or(0);
            let blocks: Vec<Block<u32>> = (0..count)
                .map(|i| {
                    let prefix = rng.random_range((32 - span_bits) as u8..=32);
                    let addr = base | (rng.random::<u32>() >> (32 - span_bits).min(31));
                    let start = addr & !u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                    block(start, prefix, i, rng.random_bool(0.5))
                })
                .collect();
            let default = rng.random_bool(0.5);
            let table = Table::compile(blocks.clone(), default);
            let mut all = probes(
                &blocks,
                (0..2000).map(|_| base | (rng.random::<u32>() >> (32 - span_bits).min(31))),
            );
            all.extend(blocks.iter().filter(|b| b.start > 0).map(|b| b.start - 1));
            for probe in all {
                let expected = blocks
                    .iter()
                    .find(|b| b.start <= probe && probe <= b.end)
                    .map_or(default, |b| b.allow);
                assert_eq!(
                    table.allows(probe),
                    expected,
                    "{probe:#x} in a 2^{span_bits} span"
                );
            }
        }
    }

    #[test]
    fn dense_tables_index_single_addresses() {
        // 600 single addresses in 10.0.0.0/22: buckets of eight addresses.
        let blocks: Vec<_> = (0..600u32)
            .map(|i| block(0x0a00_0000 + i * 7 % 1024, 32, i, i % 2 == 0))
            .collect();
        let table = Table::compile(blocks.clone(), false);
        assert!(table.index.as_ref().is_some_and(|i| i.shift <= 3));
        for probe in 0x09ff_ff00..0x0a00_0500u32 {
            assert_eq!(table.allows(probe), scan(&blocks, probe), "{probe:#x}");
        }
    }

    #[test]
    fn crowded_buckets_overflow_their_line_and_still_agree() {
        // 400 blocks spread over the space, and 200 single addresses packed
        // into one /24: that bucket holds far more starts than a line.
        let spread = (0..400u32).map(|i| {
            block(
                i.wrapping_mul(2_654_435_761) & 0xffff_ff00,
                24,
                i,
                i % 2 == 0,
            )
        });
        let packed = (0..200u32).map(|i| block(0x0a00_0000 + i, 32, 400 + i, i % 2 == 0));
        let blocks: Vec<_> = spread.chain(packed).collect();
        let table = Table::compile(blocks.clone(), false);
        assert!(table.index.as_ref().is_some_and(|i| !i.overflow.is_empty()));
        let mut all = probes(
            &blocks,
            (0..50_000u32).map(|i| i.wrapping_mul(2_246_822_519)),
        );
        all.extend(0x09ff_ff00..0x0a00_0200u32);
        for probe in all {
            assert_eq!(table.allows(probe), scan(&blocks, probe), "{probe:#x}");
        }
    }

    #[test]
    fn indexed_ipv6_table_agrees_with_a_linear_scan() {
        // Clustered in one /32, as real IPv6 lists are, with long and
        // short prefixes.
        let base = 0x2001_0db8_u128 << 96;
        let mut x = 0x9e37_79b9_7f4a_7c15_u128;
        let blocks: Vec<Block<u128>> = (0..3000u32)
            .map(|i| {
                x = x.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(1);
                let prefix = 40 + (i % 89) as u8;
                let start =
                    (base | (x >> 32)) & !u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                Block {
                    start,
                    end: start.block_end(prefix),
                    index: i,
                    allow: i % 2 == 0,
                }
            })
            .collect();
        let table = Table::compile(blocks.clone(), true);
        assert!(table.index.is_some());
        let mut all = probes(
            &blocks,
            (0..50_000u128)
                .map(|i| base | (i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) >> 32)),
        );
        all.extend(blocks.iter().map(|b| b.start - 1));
        all.extend([0, 1, u128::MAX, base - 1]);
        let scan_default = |p| {
            blocks
                .iter()
                .find(|b| b.start <= p && p <= b.end)
                .is_none_or(|b| b.allow)
        };
        for probe in all {
            assert_eq!(table.allows(probe), scan_default(probe), "{probe:#x}");
        }
    }
}
