//! What reading fragments keeps for reuse: opened files, decoded batches and whole views,
//! bounded in bytes and in open files, least recently used out first.
//!
//! Every [`Snapshot`](super::Snapshot) reads fragments through one of these. By default each
//! snapshot has its own; a long-lived reader that follows new versions (a server, a Python
//! `Warehouse` kept open while ingests commit) gives all its snapshots one cache with
//! [`Warehouse::snapshot_with_cache`](super::Warehouse::snapshot_with_cache), so a new version
//! reuses what the previous one decoded, a superseded snapshot takes nothing with it when it
//! is dropped, and memory stays within the cache's budget however many versions go by.
//! Fragment files are immutable and their paths unique, so what was read for one version is
//! right for every version that names the file.

use super::fragment::read::{ChunkedFile, DecodedBatch};
use super::fragment::Fragment;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

/// Most files a cache keeps open (each may be one memory mapping).
pub const DEFAULT_MAX_FILES: usize = 4096;
/// Bytes a snapshot's own cache may hold (see [`FragmentCache::new`]).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A shared, bounded cache of what reading fragments opens and decodes (cheap to clone:
/// clones share it).
///
/// Decoded pixels and bytes fetched from object storage count at their size, and a
/// memory-mapped file at its size too (the pages reads touch are resident memory). Keeping
/// something beyond the byte budget or [`DEFAULT_MAX_FILES`] open files evicts the least
/// recently used entries; one larger than the whole budget is not kept. Evicted entries live
/// on for as long as a query holds them.
#[derive(Clone)]
pub struct FragmentCache {
    state: Arc<Mutex<State>>,
    /// Signalled whenever a decode in flight ends.
    done: Arc<Condvar>,
}

/// What a cache holds and how it has been used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Open files.
    pub files: usize,
    /// Entries of every kind (files, decoded batches, whole fragments).
    pub entries: usize,
    /// Bytes they account for.
    pub bytes: u64,
    /// The byte budget.
    pub max_bytes: u64,
    /// Lookups that found their entry.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries evicted to make room (or dropped by [`FragmentCache::retain`]).
    pub evictions: u64,
}

/// An entry's key: its fragment's path and what of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// The opened file.
    File(String),
    /// Batch `block` of run `run`, decoded.
    Batch(String, usize, usize),
    /// Every observation over the stored window.
    Whole(String),
}

impl Key {
    fn path(&self) -> &str {
        match self {
            Key::File(p) | Key::Batch(p, ..) | Key::Whole(p) => p,
        }
    }
}

/// A cached value.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    File(Arc<ChunkedFile>),
    Batch(Arc<DecodedBatch>),
    Whole(Arc<Fragment>),
}

struct Slot {
    item: Item,
    bytes: u64,
    tick: u64,
}

struct State {
    slots: HashMap<Key, Slot>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, Key>,
    /// Keys being made by one caller of [`FragmentCache::get_or_make`] (and its thread).
    making: HashMap<Key, ThreadId>,
    tick: u64,
    max_files: usize,
    stats: CacheStats,
}

impl fmt::Debug for FragmentCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        write!(
            f,
            "FragmentCache({} entries, {} of {} bytes)",
            s.entries, s.bytes, s.max_bytes
        )
    }
}

impl Default for FragmentCache {
    fn default() -> Self {
        FragmentCache::new(DEFAULT_MAX_BYTES)
    }
}

impl FragmentCache {
    /// An empty cache holding at most `max_bytes` (and [`DEFAULT_MAX_FILES`] open files).
    pub fn new(max_bytes: u64) -> FragmentCache {
        FragmentCache::with_limits(max_bytes, DEFAULT_MAX_FILES)
    }

    /// An empty cache holding at most `max_bytes` and `max_files` open files.
    pub fn with_limits(max_bytes: u64, max_files: usize) -> FragmentCache {
        FragmentCache {
            state: Arc::new(Mutex::new(State {
                slots: HashMap::new(),
                order: BTreeMap::new(),
                making: HashMap::new(),
                tick: 0,
                max_files: max_files.max(1),
                stats: CacheStats {
                    max_bytes,
                    ..CacheStats::default()
                },
            })),
            done: Arc::new(Condvar::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The cache holds no invariant a panicking holder could break: use it anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Size, budget and counters.
    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }

    /// Drops every entry of a fragment whose path `keep` rejects (e.g. those a new version
    /// no longer names).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut s = self.lock();
        let gone: Vec<Key> = s
            .slots
            .keys()
            .filter(|k| !keep(k.path()))
            .cloned()
            .collect();
        for key in gone {
            s.remove(&key);
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.retain(|_| false);
    }

    /// The entry under `key`, marked used (counted as a hit or a miss).
    pub(crate) fn get(&self, key: &Key) -> Option<Item> {
        let mut s = self.lock();
        let item = s.touch(key);
        if item.is_some() {
            s.stats.hits += 1;
        } else {
            s.stats.misses += 1;
        }
        item
    }

    /// The entry under `key`, neither counted nor marked used.
    pub(crate) fn peek(&self, key: &Key) -> Option<Item> {
        self.lock().slots.get(key).map(|s| s.item.clone())
    }

    /// Keeps `item` (accounting `bytes`) under `key`, evicting the least recently used to
    /// make room; an entry already there is replaced when `replace`, else it wins and is
    /// returned (so everyone shares one copy).
    pub(crate) fn put(&self, key: Key, item: Item, bytes: u64, replace: bool) -> Item {
        self.lock().put(key, item, bytes, replace)
    }

    /// The entry under `key`, or the one `make` makes (with its bytes), kept. Concurrent
    /// callers asking for one key make it once: the others wait (and make it themselves
    /// only when that failed or was too large to keep). The thread making a key never waits
    /// for itself (a work-stealing pool may hand it another task wanting the same key while
    /// it makes it); `make` must not wait for other threads that could want the same key.
    pub(crate) fn get_or_make<E>(
        &self,
        key: &Key,
        make: impl FnOnce() -> Result<(Item, u64), E>,
    ) -> Result<Item, E> {
        let me = std::thread::current().id();
        let mut s = self.lock();
        let mut waited = false;
        loop {
            if let Some(item) = s.touch(key) {
                s.stats.hits += 1;
                return Ok(item);
            }
            match s.making.get(key) {
                None if waited => {
                    // Made by another thread but not kept (failed, or too large).
                    drop(s);
                    return make().map(|(item, _)| item);
                }
                None => break,
                Some(t) if *t == me => {
                    drop(s);
                    return make().map(|(item, _)| item);
                }
                Some(_) => {
                    s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
                    waited = true;
                }
            }
        }
        s.stats.misses += 1;
        s.making.insert(key.clone(), me);
        drop(s);
        let made = make();
        let mut s = self.lock();
        s.making.remove(key);
        let result = made.map(|(item, bytes)| s.put(key.clone(), item, bytes, false));
        drop(s);
        self.done.notify_all();
        result
    }
}

impl State {
    fn touch(&mut self, key: &Key) -> Option<Item> {
        self.tick += 1;
        let tick = self.tick;
        let slot = self.slots.get_mut(key)?;
        let old = std::mem::replace(&mut slot.tick, tick);
        let item = slot.item.clone();
        self.order.remove(&old);
        self.order.insert(tick, key.clone());
        Some(item)
    }

    fn put(&mut self, key: Key, item: Item, bytes: u64, replace: bool) -> Item {
        if self.slots.contains_key(&key) {
            if !replace {
                return self.touch(&key).unwrap_or(item);
            }
            self.remove(&key);
            self.stats.evictions -= 1;
        }
        if bytes > self.stats.max_bytes {
            return item;
        }
        let file = matches!(key, Key::File(_));
        while self.stats.bytes + bytes > self.stats.max_bytes
            || (file && self.stats.files >= self.max_files)
        {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.slots.remove(&oldest) {
                self.forget(&oldest, slot.bytes);
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.slots.insert(
            key,
            Slot {
                item: item.clone(),
                bytes,
                tick: self.tick,
            },
        );
        self.stats.entries += 1;
        self.stats.files += usize::from(file);
        self.stats.bytes += bytes;
        item
    }

    fn remove(&mut self, key: &Key) {
        if let Some(slot) = self.slots.remove(key) {
            self.order.remove(&slot.tick);
            self.forget(key, slot.bytes);
        }
    }

    /// Accounts for an entry that left.
    fn forget(&mut self, key: &Key, bytes: u64) {
        self.stats.entries -= 1;
        self.stats.files -= usize::from(matches!(key, Key::File(_)));
        self.stats.bytes -= bytes;
        self.stats.evictions += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FragmentData, Observation, Warehouse, WarehouseConfig};
    use crate::{DataType, GeoTransform, GridSpec, TileId};

    /// A warehouse of `n` one-observation fragments (one per tile), compressed.
    fn warehouse(n: i64) -> (tempfile::TempDir, Warehouse) {
        let dir = tempfile::tempdir().unwrap();
        let grid = GridSpec {
            epsg: 32633,
            origin_x: 0.0,
            origin_y: 0.0,
            tile_size: 40.0,
        };
        let wh = Warehouse::create(dir.path(), WarehouseConfig::new(grid)).unwrap();
        let batch = wh.begin_batch();
        for i in 0..n {
            let tile = TileId::new(i, 0);
            let b = grid.tile_bounds(tile);
            batch
                .write_fragment(FragmentData {
                    tile,
                    band: "B04".into(),
                    product: "S2".into(),
                    dtype: DataType::U16,
                    nodata: Some(0.0),
                    scale: 1.0,
                    offset: 0.0,
                    tile_transform: GeoTransform::north_up(b.min_x, b.max_y, 10.0, 10.0),
                    width: 4,
                    height: 4,
                    footprint_lonlat: vec![(15.0, 0.0), (15.1, 0.0), (15.1, 0.1), (15.0, 0.1)],
                    resolution: 10.0,
                    observations: vec![Observation {
                        time: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                        scene_id: format!("s{i}"),
                        pixels: vec![7u16 + i as u16; 16].into(),
                        valid: None,
                    }],
                })
                .unwrap();
        }
        batch.commit().unwrap();
        (dir, wh)
    }

    #[test]
    fn snapshots_of_one_cache_share_what_they_read_within_its_budget() {
        let (_dir, wh) = warehouse(6);
        let cache = FragmentCache::new(1 << 20);
        let a = wh.snapshot_with_cache(None, &cache).unwrap();
        let b = wh.snapshot_with_cache(None, &cache).unwrap();
        for e in a.fragments() {
            a.fragment(e).unwrap();
        }
        let misses = cache.stats().misses;
        for e in b.fragments() {
            let f = b.fragment(e).unwrap();
            assert!(Arc::ptr_eq(&f, &a.fragment(e).unwrap()), "one shared copy");
        }
        assert_eq!(
            cache.stats().misses,
            misses,
            "the second snapshot read nothing again"
        );
        // A budget of about two fragments' files: the least recently used go.
        let file = a.fragments()[0].bytes;
        let small = FragmentCache::new(2 * file + file / 2);
        let c = wh.snapshot_with_cache(None, &small).unwrap();
        for e in c.fragments() {
            let f = c.fragment(e).unwrap();
            assert_eq!(f.pixels::<u16>(0).unwrap()[0], 7 + e.tile.col as u16);
            assert!(small.stats().bytes <= small.stats().max_bytes);
        }
        assert!(small.stats().evictions > 0);
        // Retain drops what a version no longer names; clear drops the rest.
        let keep = a.fragments()[0].path.clone();
        cache.retain(|p| p == keep);
        assert!(cache.stats().entries > 0);
        assert!(cache
            .peek(&Key::Whole(a.fragments()[1].path.clone()))
            .is_none());
        cache.clear();
        assert_eq!((cache.stats().entries, cache.stats().bytes), (0, 0));
    }

    #[test]
    fn concurrent_misses_make_an_entry_once() {
        let (_dir, wh) = warehouse(1);
        let snap = wh.snapshot(None).unwrap();
        let f = Arc::new(snap.read_fragment(&snap.fragments()[0]).unwrap());
        let cache = FragmentCache::new(1 << 20);
        let made = std::sync::atomic::AtomicUsize::new(0);
        let key = Key::Whole("a".into());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let got = cache
                        .get_or_make(&key, || {
                            made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok::<_, ()>((Item::Whole(f.clone()), 10))
                        })
                        .unwrap();
                    assert!(matches!(got, Item::Whole(g) if Arc::ptr_eq(&g, &f)));
                });
            }
        });
        assert_eq!(made.into_inner(), 1);
        let s = cache.stats();
        assert_eq!((s.misses, s.hits, s.entries), (1, 7, 1));
        // A failed make leaves nothing behind; the next caller tries again.
        let b = Key::Whole("b".into());
        assert!(cache
            .get_or_make(&b, || Err::<(Item, u64), _>("broken"))
            .is_err());
        assert!(cache
            .get_or_make(&b, || Ok::<_, ()>((Item::Whole(f.clone()), 10)))
            .is_ok());
        // Larger than the budget: handed back, not kept.
        let tiny = FragmentCache::new(5);
        tiny.put(Key::Whole("c".into()), Item::Whole(f.clone()), 6, false);
        assert_eq!(tiny.stats().entries, 0);
    }
}
