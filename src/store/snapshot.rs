//! A consistent, read-only view of the warehouse at one commit version.

use super::catalog::{self, FragmentEntry, SceneEntry};
use super::fragment::Fragment;
use super::layout::{self, read_file};
use super::log::{Log, PartKind, PartRef, Version};
use super::{Error, Result, Warehouse};
use crate::geo::Bounds;
use crate::grid::TileId;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Most fragments a snapshot keeps open for reuse (each is one memory mapping).
const CACHE_MAX_FRAGMENTS: usize = 4096;
/// Most heap bytes (decompressed fragments) the snapshot's cache may hold.
const CACHE_MAX_HEAP_BYTES: u64 = 1 << 30;

/// Which fragments to select from a snapshot; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FragmentFilter {
    /// Only this tile.
    pub tile: Option<TileId>,
    /// Only this band.
    pub band: Option<String>,
    /// Only this product.
    pub product: Option<String>,
    /// Only fragments with observations that may fall in `[start, end)`.
    pub time: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Only fragments whose lon/lat footprint bbox intersects this one.
    pub bbox: Option<Bounds>,
}

impl FragmentFilter {
    /// True when `e` passes every condition.
    pub fn matches(&self, e: &FragmentEntry) -> bool {
        self.tile.is_none_or(|t| t == e.tile)
            && self.band.as_ref().is_none_or(|b| *b == e.band)
            && self.product.as_ref().is_none_or(|p| *p == e.product)
            && self
                .time
                .is_none_or(|(start, end)| e.time_max >= start && e.time_min < end)
            && self.bbox.is_none_or(|b| {
                e.bbox.min_x <= b.max_x
                    && b.min_x <= e.bbox.max_x
                    && e.bbox.min_y <= b.max_y
                    && b.min_y <= e.bbox.max_y
            })
    }
}

/// The warehouse as of one version: its catalog rows and a way to read fragments.
#[derive(Debug, Clone)]
pub struct Snapshot {
    root: PathBuf,
    version: Version,
    timestamp: Option<DateTime<Utc>>,
    parts: Vec<PartRef>,
    products: BTreeMap<String, serde_json::Value>,
    fragments: Vec<FragmentEntry>,
    scenes: Vec<SceneEntry>,
    fingerprints: HashSet<String>,
    /// Fragments opened through [`Snapshot::fragment`], shared by clones of the snapshot.
    cache: Arc<Mutex<FragmentCache>>,
}

/// Opened fragments by catalog path. Files are immutable, so an opened fragment stays right
/// for as long as any snapshot names it.
#[derive(Debug, Default)]
struct FragmentCache {
    open: HashMap<String, Arc<Fragment>>,
    /// Bytes held on the heap (fragments that are not zero-copy views of their mapping).
    heap_bytes: u64,
}

/// Reads a catalog part after checking its size and checksum against the log.
pub(crate) fn read_part_bytes(root: &Path, part: &PartRef) -> Result<(PathBuf, Vec<u8>)> {
    let path = layout::resolve(root, &part.path);
    let bytes = read_file(&path)?;
    if bytes.len() as u64 != part.bytes {
        return Err(Error::SizeMismatch {
            path,
            expected: part.bytes,
            actual: bytes.len() as u64,
        });
    }
    let sum = layout::checksum(&bytes);
    if sum != part.checksum {
        return Err(Error::ChecksumMismatch {
            path,
            expected: part.checksum.clone(),
            actual: sum,
        });
    }
    Ok((path, bytes))
}

/// Reads the fragment rows of a part.
pub(crate) fn read_fragment_part(root: &Path, part: &PartRef) -> Result<Vec<FragmentEntry>> {
    let (path, bytes) = read_part_bytes(root, part)?;
    let rows = catalog::decode_fragments(&path, bytes)?;
    check_rows(&path, part, rows.len())?;
    Ok(rows)
}

/// Reads the scene rows of a part.
pub(crate) fn read_scene_part(root: &Path, part: &PartRef) -> Result<Vec<SceneEntry>> {
    let (path, bytes) = read_part_bytes(root, part)?;
    let rows = catalog::decode_scenes(&path, bytes)?;
    check_rows(&path, part, rows.len())?;
    Ok(rows)
}

fn check_rows(path: &Path, part: &PartRef, rows: usize) -> Result<()> {
    if rows as u64 != part.rows {
        return Err(Error::CorruptCatalog {
            path: path.to_path_buf(),
            reason: format!("{rows} rows, the log recorded {}", part.rows),
        });
    }
    Ok(())
}

impl Snapshot {
    pub(crate) fn load(wh: &Warehouse, log: &Log, version: Option<Version>) -> Result<Snapshot> {
        let latest = log.latest();
        let version = version.unwrap_or(latest);
        if version > latest {
            return Err(Error::UnknownVersion { version, latest });
        }
        let oldest = log.oldest_retained();
        if version < oldest {
            return Err(Error::Vacuumed { version, oldest });
        }
        let state = log.state_at(version);
        let root = wh.root().to_path_buf();
        let mut fragments = Vec::new();
        let mut scenes = Vec::new();
        for part in state.parts.values() {
            match part.kind {
                PartKind::Fragments => fragments.extend(read_fragment_part(&root, part)?),
                PartKind::Scenes => scenes.extend(read_scene_part(&root, part)?),
            }
        }
        // Stable, meaningful order: by tile, band, product, time.
        fragments.sort_by(|a, b| {
            (a.tile, &a.band, &a.product, a.time_min, &a.path)
                .cmp(&(b.tile, &b.band, &b.product, b.time_min, &b.path))
        });
        scenes.sort_by(|a, b| {
            (a.scene.acquired, &a.scene.scene_id).cmp(&(b.scene.acquired, &b.scene.scene_id))
        });
        let fingerprints = scenes.iter().map(|s| s.scene.fingerprint.clone()).collect();
        let mut products = wh.config().products.clone();
        products.extend(state.products);
        Ok(Snapshot {
            root,
            version,
            timestamp: state.timestamp,
            parts: state.parts.into_values().collect(),
            products,
            fragments,
            scenes,
            fingerprints,
            cache: Arc::default(),
        })
    }

    /// The version this snapshot shows.
    pub fn version(&self) -> Version {
        self.version
    }

    /// When that version was committed.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        self.timestamp
    }

    /// The live catalog parts.
    pub fn parts(&self) -> &[PartRef] {
        &self.parts
    }

    /// Product profiles (from `pixelquery.json` and the commits so far).
    pub fn products(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.products
    }

    /// Every fragment row, ordered by tile, band, product and time.
    pub fn fragments(&self) -> &[FragmentEntry] {
        &self.fragments
    }

    /// The fragment rows that pass `filter`.
    pub fn select(&self, filter: &FragmentFilter) -> Vec<&FragmentEntry> {
        self.fragments
            .iter()
            .filter(|e| filter.matches(e))
            .collect()
    }

    /// Every scene row, ordered by acquisition time.
    pub fn scenes(&self) -> &[SceneEntry] {
        &self.scenes
    }

    /// True when a scene with this content fingerprint is committed (so ingest can skip it).
    pub fn has_scene_fingerprint(&self, fingerprint: &str) -> bool {
        self.fingerprints.contains(fingerprint)
    }

    /// Filesystem path of a fragment.
    pub fn fragment_path(&self, entry: &FragmentEntry) -> PathBuf {
        layout::resolve(&self.root, &entry.path)
    }

    /// Memory-maps and decodes a fragment, checking that it is the file the catalog
    /// describes (size, tile, band, product, dtype, size, observation count).
    pub fn read_fragment(&self, entry: &FragmentEntry) -> Result<Fragment> {
        open_checked(&self.root, entry, false)
    }

    /// Like [`Snapshot::read_fragment`], shared: a fragment is opened and checked once per
    /// snapshot and reused by later calls (and by clones of the snapshot), so repeated queries
    /// skip mapping and decoding. Up to a few thousand fragments (and 1 GiB of decompressed
    /// ones) are kept; beyond that the cache starts over.
    pub fn fragment(&self, entry: &FragmentEntry) -> Result<Arc<Fragment>> {
        if let Some(f) = self.lock_cache().open.get(&entry.path) {
            return Ok(f.clone());
        }
        let f = Arc::new(self.read_fragment(entry)?);
        let heap = if f.is_zero_copy() {
            0
        } else {
            // Decompressed pixel values.
            entry.observations * entry.window.pixels() as u64 * entry.dtype.size() as u64
        };
        let mut cache = self.lock_cache();
        if cache.open.len() >= CACHE_MAX_FRAGMENTS || cache.heap_bytes + heap > CACHE_MAX_HEAP_BYTES
        {
            cache.open.clear();
            cache.heap_bytes = 0;
        }
        if heap <= CACHE_MAX_HEAP_BYTES {
            let cached = cache.open.entry(entry.path.clone()).or_insert_with(|| {
                // Another thread may have inserted it meanwhile; count only our insert.
                f.clone()
            });
            if Arc::ptr_eq(cached, &f) {
                cache.heap_bytes += heap;
            }
        }
        Ok(f)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, FragmentCache> {
        // The cache holds no invariant a panicking holder could break: use it anyway.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Like [`Snapshot::read_fragment`], and also checks the file's checksum before
    /// decoding it (one extra pass over the bytes).
    pub fn read_fragment_verified(&self, entry: &FragmentEntry) -> Result<Fragment> {
        open_checked(&self.root, entry, true)
    }
}

/// Opens a fragment and checks it against its catalog row.
pub(crate) fn open_checked(root: &Path, entry: &FragmentEntry, verify: bool) -> Result<Fragment> {
    let path = layout::resolve(root, &entry.path);
    let checksum = verify.then_some(entry.checksum.as_str());
    let f = Fragment::open_expecting(&path, entry.bytes, checksum)?;
    let m = f.meta();
    if m.tile != entry.tile
        || m.band != entry.band
        || m.product != entry.product
        || m.dtype != entry.dtype
        || m.width != entry.width
        || m.height != entry.height
        || m.window != entry.window
        || f.len() as u64 != entry.observations
    {
        return Err(Error::CorruptFragment {
            path,
            reason: "contents do not match the catalog row".into(),
        });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DataType;

    fn entry(tile: TileId, band: &str, t0: i64, t1: i64, lon: f64) -> FragmentEntry {
        let when = |s| DateTime::from_timestamp(s, 0).unwrap();
        FragmentEntry {
            tile,
            band: band.into(),
            product: "S2".into(),
            time_min: when(t0),
            time_max: when(t1),
            observations: 1,
            footprint_lonlat: vec![],
            bbox: Bounds::new(lon, 10.0, lon + 1.0, 11.0),
            resolution: 10.0,
            path: "fragments/a".into(),
            bytes: 1,
            checksum: String::new(),
            dtype: DataType::U8,
            width: 1,
            height: 1,
            valid_count: 1,
            valid_min: None,
            valid_max: None,
            valid_mean: None,
            window: crate::store::PixelWindow::full(1, 1),
        }
    }

    #[test]
    fn filters_match_tile_band_time_and_bbox() {
        let e = entry(TileId::new(1, 2), "B04", 100, 200, 5.0);
        assert!(FragmentFilter::default().matches(&e));
        let when = |s| DateTime::from_timestamp(s, 0).unwrap();
        let f = |g: fn(&mut FragmentFilter)| {
            let mut f = FragmentFilter::default();
            g(&mut f);
            f.matches(&e)
        };
        assert!(f(|f| f.tile = Some(TileId::new(1, 2))));
        assert!(!f(|f| f.tile = Some(TileId::new(2, 1))));
        assert!(!f(|f| f.band = Some("B08".into())));
        assert!(f(|f| f.product = Some("S2".into())));
        // Half-open time ranges overlapping [100, 200].
        let t = |a, b| FragmentFilter {
            time: Some((when(a), when(b))),
            ..Default::default()
        };
        assert!(t(200, 300).matches(&e));
        assert!(t(0, 101).matches(&e));
        assert!(!t(0, 100).matches(&e));
        assert!(!t(201, 300).matches(&e));
        let b = |x0, x1| FragmentFilter {
            bbox: Some(Bounds::new(x0, 10.5, x1, 10.6)),
            ..Default::default()
        };
        assert!(b(5.5, 5.6).matches(&e));
        assert!(b(6.0, 7.0).matches(&e), "touching edges count");
        assert!(!b(6.1, 7.0).matches(&e));
    }
}
