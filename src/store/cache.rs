//! Opened fragments kept for reuse, bounded in bytes and count, least recently used out first.
//!
//! Every [`Snapshot`](super::Snapshot) reads fragments through one of these. By default each
//! snapshot has its own; a long-lived reader that follows new versions (a server, a Python
//! `Warehouse` kept open while ingests commit) gives all its snapshots one cache with
//! [`Warehouse::snapshot_with_cache`](super::Warehouse::snapshot_with_cache), so a new version
//! reuses what the previous one opened, a superseded snapshot takes nothing with it when it is
//! dropped, and memory stays within the cache's budget however many versions go by.
//! Fragment files are immutable and their paths unique, so a fragment opened for one version
//! is right for every version that names it.

use super::fragment::Fragment;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Most fragments a cache keeps open (each may be one memory mapping).
pub const DEFAULT_MAX_FRAGMENTS: usize = 4096;
/// Bytes a snapshot's own cache may hold (see [`FragmentCache::new`]).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A shared, bounded cache of opened fragments (cheap to clone: clones share it).
///
/// A fragment costs its decompressed pixels plus its file's bytes (mapped pages that reads
/// touch count towards the process's resident memory too). Inserting beyond the byte budget
/// or [`DEFAULT_MAX_FRAGMENTS`] evicts the least recently used fragments; one larger than the
/// whole budget is not kept. Evicted fragments stay alive for as long as a query holds them.
#[derive(Clone)]
pub struct FragmentCache {
    inner: Arc<Mutex<Lru>>,
    /// Signalled whenever an open in flight ends.
    opened: Arc<Condvar>,
}

/// What a cache holds and how it has been used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Fragments held.
    pub fragments: usize,
    /// Bytes they account for.
    pub bytes: u64,
    /// The byte budget.
    pub max_bytes: u64,
    /// Lookups that found the fragment.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Fragments evicted to make room (or dropped by [`FragmentCache::retain`]).
    pub evictions: u64,
}

struct Slot {
    fragment: Arc<Fragment>,
    bytes: u64,
    tick: u64,
}

struct Lru {
    slots: HashMap<String, Slot>,
    /// Paths being opened by one caller of [`FragmentCache::get_or_open`] (and its thread);
    /// others wait.
    opening: HashMap<String, std::thread::ThreadId>,
    /// Last use → path, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
    max_bytes: u64,
    max_fragments: usize,
    stats: CacheStats,
}

impl fmt::Debug for FragmentCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        write!(
            f,
            "FragmentCache({} fragments, {} of {} bytes)",
            s.fragments, s.bytes, s.max_bytes
        )
    }
}

impl Default for FragmentCache {
    fn default() -> Self {
        FragmentCache::new(DEFAULT_MAX_BYTES)
    }
}

impl FragmentCache {
    /// An empty cache holding at most `max_bytes` (and [`DEFAULT_MAX_FRAGMENTS`] fragments).
    pub fn new(max_bytes: u64) -> FragmentCache {
        FragmentCache::with_limits(max_bytes, DEFAULT_MAX_FRAGMENTS)
    }

    /// An empty cache holding at most `max_bytes` in at most `max_fragments` fragments.
    pub fn with_limits(max_bytes: u64, max_fragments: usize) -> FragmentCache {
        FragmentCache {
            opened: Arc::new(Condvar::new()),
            inner: Arc::new(Mutex::new(Lru {
                slots: HashMap::new(),
                opening: Default::default(),
                order: BTreeMap::new(),
                tick: 0,
                max_bytes,
                max_fragments: max_fragments.max(1),
                stats: CacheStats {
                    max_bytes,
                    ..CacheStats::default()
                },
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // The cache holds no invariant a panicking holder could break: use it anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fragment at `path` if the cache holds it (and marks it used).
    pub fn get(&self, path: &str) -> Option<Arc<Fragment>> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let Some(slot) = lru.slots.get_mut(path) else {
            lru.stats.misses += 1;
            return None;
        };
        let old = std::mem::replace(&mut slot.tick, tick);
        let fragment = slot.fragment.clone();
        lru.order.remove(&old);
        lru.order.insert(tick, path.to_string());
        lru.stats.hits += 1;
        Some(fragment)
    }

    /// The fragment at `path`, from the cache or opened by `open` (which also gives the bytes
    /// to account) and kept. Concurrent callers asking for one path open it once: the others
    /// wait for it (and open it themselves only when that failed or was too large to keep).
    /// The thread opening a path never waits for itself (a work-stealing pool may hand it
    /// another task asking for the same path while it opens); `open` must not wait for other
    /// threads that could ask this cache for the same path.
    pub fn get_or_open<E>(
        &self,
        path: &str,
        open: impl FnOnce() -> Result<(Arc<Fragment>, u64), E>,
    ) -> Result<Arc<Fragment>, E> {
        let mut lru = self.lock();
        loop {
            lru.tick += 1;
            let tick = lru.tick;
            if let Some(slot) = lru.slots.get_mut(path) {
                let old = std::mem::replace(&mut slot.tick, tick);
                let fragment = slot.fragment.clone();
                lru.order.remove(&old);
                lru.order.insert(tick, path.to_string());
                lru.stats.hits += 1;
                return Ok(fragment);
            }
            match lru.opening.get(path) {
                None => break,
                Some(t) if *t == std::thread::current().id() => {
                    drop(lru);
                    return open().map(|(f, _)| f);
                }
                Some(_) => {}
            }
            lru = self.opened.wait(lru).unwrap_or_else(|e| e.into_inner());
            if !lru.opening.contains_key(path) && !lru.slots.contains_key(path) {
                // The open failed or was not kept: open it here.
                drop(lru);
                let (fragment, _) = open()?;
                return Ok(fragment);
            }
        }
        lru.stats.misses += 1;
        lru.opening
            .insert(path.to_string(), std::thread::current().id());
        drop(lru);
        let result = open();
        let kept = result
            .as_ref()
            .ok()
            .map(|(f, bytes)| self.insert(path, f.clone(), *bytes));
        self.lock().opening.remove(path);
        self.opened.notify_all();
        result.map(|(f, _)| kept.unwrap_or(f))
    }

    /// The fragment at `path` if the cache holds it, without counting a lookup or marking it
    /// used.
    pub fn peek(&self, path: &str) -> Option<Arc<Fragment>> {
        self.lock().slots.get(path).map(|s| s.fragment.clone())
    }

    /// Keeps `fragment` (accounting `bytes`) under `path`, evicting the least recently used
    /// to make room, and returns the fragment the cache now holds for `path` (an earlier
    /// insert by another thread wins, so everyone shares one copy).
    pub fn insert(&self, path: &str, fragment: Arc<Fragment>, bytes: u64) -> Arc<Fragment> {
        let mut lru = self.lock();
        if let Some(slot) = lru.slots.get(path) {
            return slot.fragment.clone();
        }
        if bytes > lru.max_bytes {
            return fragment;
        }
        while lru.stats.fragments >= lru.max_fragments || lru.stats.bytes + bytes > lru.max_bytes {
            if !lru.evict_oldest() {
                break;
            }
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.order.insert(tick, path.to_string());
        lru.slots.insert(
            path.to_string(),
            Slot {
                fragment: fragment.clone(),
                bytes,
                tick,
            },
        );
        lru.stats.fragments += 1;
        lru.stats.bytes += bytes;
        fragment
    }

    /// Drops every fragment whose path `keep` rejects (e.g. those a new version no longer
    /// names).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut lru = self.lock();
        let gone: Vec<String> = lru.slots.keys().filter(|p| !keep(p)).cloned().collect();
        for path in gone {
            lru.remove(&path);
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.retain(|_| false);
    }

    /// Size, budget and counters.
    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }
}

impl Lru {
    /// Evicts the least recently used fragment; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, path)) = self.order.pop_first() else {
            return false;
        };
        if let Some(slot) = self.slots.remove(&path) {
            self.stats.fragments -= 1;
            self.stats.bytes -= slot.bytes;
            self.stats.evictions += 1;
        }
        true
    }

    fn remove(&mut self, path: &str) {
        if let Some(slot) = self.slots.remove(path) {
            self.order.remove(&slot.tick);
            self.stats.fragments -= 1;
            self.stats.bytes -= slot.bytes;
            self.stats.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FragmentData, Observation, Warehouse, WarehouseConfig};
    use crate::{DataType, GeoTransform, GridSpec, TileId};

    /// A real fragment to put in caches (the cache never looks inside).
    fn fragment() -> Arc<Fragment> {
        let dir = tempfile::tempdir().unwrap();
        let grid = GridSpec {
            epsg: 32633,
            origin_x: 0.0,
            origin_y: 0.0,
            tile_size: 40.0,
        };
        let wh = Warehouse::create(dir.path(), WarehouseConfig::new(grid)).unwrap();
        let batch = wh.begin_batch();
        batch
            .write_fragment(FragmentData {
                tile: TileId::new(0, 0),
                band: "B04".into(),
                product: "S2".into(),
                dtype: DataType::U16,
                nodata: Some(0.0),
                scale: 1.0,
                offset: 0.0,
                tile_transform: GeoTransform::north_up(0.0, 40.0, 10.0, 10.0),
                width: 4,
                height: 4,
                footprint_lonlat: vec![(15.0, 0.0), (15.1, 0.0), (15.1, 0.1), (15.0, 0.1)],
                resolution: 10.0,
                observations: vec![Observation {
                    time: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                    scene_id: "s".into(),
                    pixels: vec![7u16; 16].into(),
                    valid: None,
                }],
            })
            .unwrap();
        batch.commit().unwrap();
        let snap = wh.snapshot(None).unwrap();
        Arc::new(snap.read_fragment(&snap.fragments()[0]).unwrap())
    }

    #[test]
    fn evicts_least_recently_used_within_the_budget() {
        let f = fragment();
        let cache = FragmentCache::new(300);
        cache.insert("a", f.clone(), 100);
        cache.insert("b", f.clone(), 100);
        cache.insert("c", f.clone(), 100);
        assert!(cache.get("a").is_some(), "a is now the most recent");
        cache.insert("d", f.clone(), 100);
        assert!(cache.peek("b").is_none(), "b was the least recently used");
        assert!(cache.peek("a").is_some() && cache.peek("c").is_some());
        let s = cache.stats();
        assert_eq!((s.fragments, s.bytes, s.evictions), (3, 300, 1));
        // Larger than the budget: handed back, not kept, nothing evicted for it.
        let big = cache.insert("e", f.clone(), 301);
        assert!(Arc::ptr_eq(&big, &f) && cache.peek("e").is_none());
        assert_eq!(cache.stats().fragments, 3);
    }

    #[test]
    fn concurrent_misses_open_a_fragment_once() {
        let f = fragment();
        let cache = FragmentCache::new(1 << 20);
        let opens = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let got = cache
                        .get_or_open("a", || {
                            opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok::<_, ()>((f.clone(), 10))
                        })
                        .unwrap();
                    assert!(Arc::ptr_eq(&got, &f));
                });
            }
        });
        assert_eq!(opens.into_inner(), 1);
        let s = cache.stats();
        assert_eq!((s.misses, s.hits, s.fragments), (1, 7, 1));
        // A failed open leaves nothing behind; the next caller tries again.
        assert!(cache
            .get_or_open("b", || Err::<(Arc<Fragment>, u64), _>("broken"))
            .is_err());
        assert!(cache
            .get_or_open("b", || Ok::<_, ()>((f.clone(), 10)))
            .is_ok());
    }

    #[test]
    fn the_first_insert_wins_and_retain_releases() {
        let (f1, f2) = (fragment(), fragment());
        let cache = FragmentCache::with_limits(1000, 2);
        let kept = cache.insert("a", f1.clone(), 10);
        assert!(Arc::ptr_eq(&kept, &f1));
        let again = cache.insert("a", f2, 10);
        assert!(Arc::ptr_eq(&again, &f1), "one shared copy per path");
        cache.insert("b", f1.clone(), 10);
        cache.insert("c", f1.clone(), 10);
        assert_eq!(cache.stats().fragments, 2, "count bound");
        cache.retain(|p| p == "c");
        assert_eq!(cache.stats().fragments, 1);
        assert_eq!(cache.stats().bytes, 10);
        cache.clear();
        assert_eq!(cache.stats().bytes, 0);
        drop((kept, again));
        assert_eq!(Arc::strong_count(&f1), 1, "the cache let go of every copy");
    }
}
