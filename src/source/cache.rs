//! A small LRU cache of fetched byte spans ("blocks"), bounded in bytes.
//!
//! Remote reads are not aligned to a fixed block size: aligning tile reads would fetch bytes
//! nobody asked for. A block is whatever one request fetched (the header read-ahead, a merged
//! run of tiles); a read is a hit when one cached block contains all of it. Blocks are
//! reference-counted [`Bytes`], so a hit is a zero-copy slice.

use bytes::Bytes;
use std::ops::Range;

/// LRU cache of byte spans of one file, holding at most `capacity` bytes in at most
/// [`BlockCache::MAX_BLOCKS`] blocks.
#[derive(Debug)]
pub struct BlockCache {
    capacity: usize,
    used: usize,
    tick: u64,
    blocks: Vec<Block>,
}

#[derive(Debug)]
struct Block {
    start: u64,
    data: Bytes,
    last_use: u64,
}

impl Block {
    fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}

impl BlockCache {
    /// Upper bound on the number of blocks, which keeps lookups (a linear scan) cheap.
    pub const MAX_BLOCKS: usize = 256;

    /// An empty cache holding at most `capacity` bytes (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            used: 0,
            tick: 0,
            blocks: Vec::new(),
        }
    }

    /// Bytes currently held.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The bytes of `range` if one block holds all of them.
    pub fn get(&mut self, range: Range<u64>) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let block = self
            .blocks
            .iter_mut()
            .find(|b| b.start <= range.start && range.end <= b.end())?;
        block.last_use = tick;
        let from = (range.start - block.start) as usize;
        let to = (range.end - block.start) as usize;
        Some(block.data.slice(from..to))
    }

    /// The cached bytes from `offset` up to the end of the block holding `offset` that reaches
    /// furthest, if any: lets a read that starts in the cache fetch only the rest.
    pub fn prefix(&mut self, offset: u64) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let block = self
            .blocks
            .iter_mut()
            .filter(|b| b.start <= offset && offset < b.end())
            .max_by_key(|b| b.end())?;
        block.last_use = tick;
        Some(block.data.slice((offset - block.start) as usize..))
    }

    /// Remembers the bytes fetched at `start`, evicting the least recently used blocks to make
    /// room. Blocks larger than the whole cache, and spans already held, are not stored.
    pub fn insert(&mut self, start: u64, data: Bytes) {
        let len = data.len();
        if len == 0 || len > self.capacity {
            return;
        }
        let end = start + len as u64;
        if self
            .blocks
            .iter()
            .any(|b| b.start <= start && end <= b.end())
        {
            return;
        }
        // Blocks inside the new one are now redundant.
        self.blocks.retain(|b| {
            let inside = start <= b.start && b.end() <= end;
            if inside {
                self.used -= b.data.len();
            }
            !inside
        });
        while self.used + len > self.capacity || self.blocks.len() >= Self::MAX_BLOCKS {
            let Some(lru) = self
                .blocks
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.last_use)
                .map(|(i, _)| i)
            else {
                break;
            };
            let evicted = self.blocks.swap_remove(lru);
            self.used -= evicted.data.len();
        }
        self.tick += 1;
        self.used += len;
        self.blocks.push(Block {
            start,
            data,
            last_use: self.tick,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(start: u8, len: usize) -> Bytes {
        (0..len).map(|i| start.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn hit_only_when_one_block_holds_the_whole_range() {
        let mut c = BlockCache::new(1000);
        c.insert(100, bytes(0, 100));
        assert_eq!(&c.get(110..120).unwrap()[..], &bytes(10, 10)[..]);
        assert!(c.get(90..110).is_none());
        assert!(c.get(150..201).is_none());
        assert_eq!(&c.prefix(190).unwrap()[..], &bytes(90, 10)[..]);
        assert!(c.prefix(200).is_none());
    }

    #[test]
    fn evicts_least_recently_used_and_stays_bounded() {
        let mut c = BlockCache::new(250);
        c.insert(0, bytes(0, 100));
        c.insert(1000, bytes(0, 100));
        assert!(c.get(0..10).is_some()); // 0 is now more recent than 1000
        c.insert(2000, bytes(0, 100));
        assert_eq!(c.used(), 200);
        assert!(c.get(1000..1010).is_none());
        assert!(c.get(0..10).is_some() && c.get(2000..2010).is_some());
        c.insert(5000, bytes(0, 251)); // larger than the cache: ignored
        assert_eq!(c.used(), 200);
    }

    #[test]
    fn a_covering_block_replaces_the_blocks_inside_it() {
        let mut c = BlockCache::new(1000);
        c.insert(10, bytes(10, 10));
        c.insert(30, bytes(30, 10));
        c.insert(0, bytes(0, 100));
        assert_eq!(c.used(), 100);
        c.insert(20, bytes(20, 5)); // already held
        assert_eq!(c.used(), 100);
        assert_eq!(&c.get(35..40).unwrap()[..], &bytes(35, 5)[..]);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut c = BlockCache::new(0);
        c.insert(0, bytes(0, 1));
        assert!(c.get(0..1).is_none());
    }
}
