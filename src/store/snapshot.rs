//! A consistent, read-only view of the warehouse at one commit version.

use super::cache::FragmentCache;
use super::catalog::{self, FragmentEntry, PartKind, SceneEntry};
use super::delta::action::Add;
use super::delta::{TableState, Version, TABLE_DIR};
use super::fragment::{Fragment, PixelWindow};
use super::layout;
use super::reader::FragmentReader;
use super::scene_names::SceneNames;
use super::storage::Storage;
use super::{Error, Result, Warehouse};
use crate::geo::Bounds;
use crate::grid::TileId;
use chrono::{DateTime, Utc};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    storage: Arc<dyn Storage>,
    version: Version,
    timestamp: Option<DateTime<Utc>>,
    parts: Vec<PartRef>,
    products: BTreeMap<String, serde_json::Value>,
    searches: BTreeMap<String, serde_json::Value>,
    fragments: Vec<FragmentEntry>,
    scenes: Vec<SceneEntry>,
    fingerprints: HashSet<String>,
    /// (product, scene id) → index into `scenes`.
    scene_index: HashMap<(String, String), usize>,
    /// Opens and decodes fragments, shared by clones of the snapshot; its cache may be shared
    /// by other snapshots too. Files are immutable, so what it caches stays right for as long
    /// as any snapshot names it.
    reader: Arc<FragmentReader>,
}

/// A catalog part (a data file of the catalog table) as the Delta log describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    /// Path relative to the warehouse root (`catalog/kind=fragment/part-....parquet`).
    pub path: String,
    /// Row kind (the `kind` partition value).
    pub kind: PartKind,
    /// Number of rows (`numRecords` of its statistics), when recorded.
    pub rows: Option<u64>,
    /// File size in bytes.
    pub bytes: u64,
    /// XXH3-64 checksum (`xxh3:<hex>`, the `pixelquery.checksum` tag), when recorded.
    pub checksum: Option<String>,
}

/// The tag of an `add` action that holds the part's checksum.
pub(crate) const CHECKSUM_TAG: &str = "pixelquery.checksum";

impl PartRef {
    /// Reads what the log says about a data file; `Err` names what is wrong with it.
    pub(crate) fn from_add(add: &Add) -> std::result::Result<PartRef, String> {
        let rel = percent_decode(&add.path).ok_or_else(|| format!("bad path {:?}", add.path))?;
        let path = format!("{TABLE_DIR}/{rel}");
        if !layout::validate_rel_path(&path) || rel.starts_with("_delta_log/") {
            return Err(format!(
                "part path {:?} is not a file of the table",
                add.path
            ));
        }
        let kind = add
            .partition_values
            .get(catalog::KIND_COLUMN)
            .and_then(|v| v.as_deref())
            .and_then(PartKind::parse)
            .ok_or_else(|| format!("{}: no kind=fragment|scene partition value", add.path))?;
        let rows = add.stats.as_deref().and_then(|s| {
            serde_json::from_str::<serde_json::Value>(s)
                .ok()?
                .get("numRecords")?
                .as_u64()
        });
        let checksum = add
            .tags
            .as_ref()
            .and_then(|t| t.get(CHECKSUM_TAG).cloned().flatten());
        Ok(PartRef {
            path,
            kind,
            rows,
            bytes: u64::try_from(add.size).map_err(|_| format!("{}: negative size", add.path))?,
            checksum,
        })
    }
}

/// Decodes `%XX` escapes of a Delta path (PixelQuery's own names never need them).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The live parts of a table state; a file the log describes badly is corruption of the log.
pub(crate) fn parts_of(storage: &dyn Storage, state: &TableState) -> Result<Vec<PartRef>> {
    state
        .files
        .values()
        .map(|add| {
            PartRef::from_add(add).map_err(|reason| Error::CorruptLog {
                path: storage.locate(&super::delta::commit_key(state.version)),
                reason,
            })
        })
        .collect()
}

/// Largest catalog part read.
pub const MAX_PART_BYTES: u64 = 1 << 30;

/// Reads a catalog part after checking its size and checksum against the log. Both are
/// required: a part whose `add` carries no valid checksum is not read.
pub(crate) fn read_part_bytes(storage: &dyn Storage, part: &PartRef) -> Result<(PathBuf, Vec<u8>)> {
    let path = storage.locate(&part.path);
    let expected = match &part.checksum {
        Some(c) if layout::is_checksum(c) => c,
        _ => return Err(Error::MissingChecksum { path }),
    };
    if part.bytes > MAX_PART_BYTES {
        return Err(Error::TooLarge {
            path,
            what: "catalog part",
            size: part.bytes,
            limit: MAX_PART_BYTES,
        });
    }
    let bytes = match storage.read_limited(&part.path, part.bytes, "catalog part") {
        // Larger than the log says: a size mismatch, found before reading it all.
        Err(Error::TooLarge { size, .. }) => {
            return Err(Error::SizeMismatch {
                path,
                expected: part.bytes,
                actual: size,
            })
        }
        r => r?,
    };
    if bytes.len() as u64 != part.bytes {
        return Err(Error::SizeMismatch {
            path,
            expected: part.bytes,
            actual: bytes.len() as u64,
        });
    }
    if layout::checksum(&bytes) != *expected {
        return Err(Error::ChecksumMismatch { path });
    }
    Ok((path, bytes))
}

/// Reads the fragment rows of a part.
pub(crate) fn read_fragment_part(
    storage: &dyn Storage,
    part: &PartRef,
) -> Result<Vec<FragmentEntry>> {
    let (path, bytes) = read_part_bytes(storage, part)?;
    let rows = catalog::decode_fragments(&path, bytes)?;
    check_rows(&path, part, rows.len())?;
    Ok(rows)
}

/// Reads the scene rows of a part.
pub(crate) fn read_scene_part(storage: &dyn Storage, part: &PartRef) -> Result<Vec<SceneEntry>> {
    let (path, bytes) = read_part_bytes(storage, part)?;
    let rows = catalog::decode_scenes(&path, bytes)?;
    check_rows(&path, part, rows.len())?;
    Ok(rows)
}

fn check_rows(path: &Path, part: &PartRef, rows: usize) -> Result<()> {
    if part.rows.is_some_and(|r| r != rows as u64) {
        return Err(Error::CorruptCatalog {
            path: path.to_path_buf(),
            reason: format!("{rows} rows, the log recorded {}", part.rows.unwrap_or(0)),
        });
    }
    Ok(())
}

/// The rows of many parts, read in parallel.
pub(crate) fn read_parts(
    storage: &dyn Storage,
    parts: &[PartRef],
) -> Result<(Vec<FragmentEntry>, Vec<SceneEntry>)> {
    enum Rows {
        Fragments(Vec<FragmentEntry>),
        Scenes(Vec<SceneEntry>),
    }
    let read: Vec<Result<Rows>> = parts
        .par_iter()
        .map(|part| match part.kind {
            PartKind::Fragment => read_fragment_part(storage, part).map(Rows::Fragments),
            PartKind::Scene => read_scene_part(storage, part).map(Rows::Scenes),
        })
        .collect();
    let mut fragments = Vec::new();
    let mut scenes = Vec::new();
    for r in read {
        match r? {
            Rows::Fragments(f) => fragments.extend(f),
            Rows::Scenes(s) => scenes.extend(s),
        }
    }
    Ok((fragments, scenes))
}

impl Snapshot {
    pub(crate) fn load(
        wh: &Warehouse,
        state: &TableState,
        cache: FragmentCache,
    ) -> Result<Snapshot> {
        let storage = wh.storage();
        let products = super::products_checked(storage, state)?;
        let parts = parts_of(storage, state)?;
        let (mut fragments, mut scenes) = read_parts(storage, &parts)?;
        // Stable, meaningful order: by tile, band, product, time.
        fragments.sort_by(|a, b| {
            (a.tile, &a.band, &a.product, a.time_min, &a.path)
                .cmp(&(b.tile, &b.band, &b.product, b.time_min, &b.path))
        });
        scenes.sort_by(|a, b| {
            (a.scene.acquired, &a.scene.scene_id).cmp(&(b.scene.acquired, &b.scene.scene_id))
        });
        let fingerprints = scenes.iter().map(|s| s.scene.fingerprint.clone()).collect();
        let scene_index = scenes
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.scene.product.clone(), s.scene.scene_id.clone()), i))
            .collect();
        // Local files are mapped whole (their dictionaries come free); on object storage the
        // scene table names observations, saving a request per fragment.
        let scene_names = storage.local_root().is_none().then(|| {
            Arc::new(SceneNames::new(scenes.iter().map(|s| {
                (
                    s.scene.product.as_str(),
                    s.scene.acquired.timestamp_micros(),
                    s.scene.scene_id.as_str(),
                )
            })))
        });
        Ok(Snapshot {
            storage: wh.storage_arc(),
            version: state.version,
            timestamp: state.timestamp,
            parts,
            products,
            searches: super::searches_of(&state.metadata),
            fragments,
            scenes,
            fingerprints,
            scene_index,
            reader: Arc::new(FragmentReader::new(
                wh.storage_arc(),
                wh.config().compression,
                cache,
                scene_names,
            )),
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

    /// Product profiles registered up to this version (the catalog table's metadata).
    pub fn products(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.products
    }

    /// Searches the warehouse keeps up to date (`ingest --update`), by id, as recorded.
    pub fn searches(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.searches
    }

    /// The committed scene of `product` with this id, if any.
    pub fn scene(&self, product: &str, scene_id: &str) -> Option<&SceneEntry> {
        self.scene_index
            .get(&(product.to_string(), scene_id.to_string()))
            .map(|&i| &self.scenes[i])
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

    /// Where a fragment is: its path in a local warehouse, its URL in object storage.
    pub fn fragment_path(&self, entry: &FragmentEntry) -> PathBuf {
        self.storage.locate(&entry.path)
    }

    /// Requests sent and bytes moved so far by this snapshot's warehouse (object storage;
    /// zero for a local folder). Take the difference around a query to see its share.
    pub fn transfer_stats(&self) -> crate::source::TransferStats {
        self.storage.transfer_stats()
    }

    /// Reads and decodes a whole fragment (memory-mapped from a local warehouse, one ranged
    /// read from object storage), checking that it is the file the catalog describes (size,
    /// tile, band, product, dtype, window, chunk index). Not cached.
    pub fn read_fragment(&self, entry: &FragmentEntry) -> Result<Fragment> {
        open_checked(self.storage.as_ref(), entry, false)
    }

    /// The whole fragment if this snapshot (or a clone) has it open already; never opens
    /// or caches anything (exports use it to reuse what queries opened).
    pub fn cached_fragment(&self, entry: &FragmentEntry) -> Option<Arc<Fragment>> {
        self.reader.cached_whole(entry)
    }

    /// Every observation of a fragment over its stored window, shared: decoded once (also
    /// when threads ask for it at the same moment) and reused by later calls, by clones of the
    /// snapshot and by snapshots given the same [`FragmentCache`]. The cache is bounded (by
    /// default 1 GiB and a few thousand open files), least recently used out first.
    pub fn fragment(&self, entry: &FragmentEntry) -> Result<Arc<Fragment>> {
        self.reader.whole(entry)
    }

    /// The observations of a fragment whose times fall in `times` (microseconds since the
    /// epoch, inclusive), over `window` of its tile (clipped to the stored window; the
    /// stored window when `None`). Only the chunks the window meets are read and decoded
    /// (once per snapshot); on object storage only their byte ranges are fetched.
    pub fn fragment_window(
        &self,
        entry: &FragmentEntry,
        window: Option<PixelWindow>,
        times: Option<(i64, i64)>,
    ) -> Result<Fragment> {
        self.reader.view(entry, window, times)
    }

    /// The times (microseconds) and scene ids of a fragment's observations in `times`, in
    /// the order [`Snapshot::fragment_window`] gives them, without decoding pixels. `window`
    /// is the part of the tile a later read will want, if known: on object storage the times
    /// are read from its chunks, so that read fetches nothing more.
    pub fn fragment_observations(
        &self,
        entry: &FragmentEntry,
        times: Option<(i64, i64)>,
        window: Option<PixelWindow>,
    ) -> Result<Vec<(i64, String)>> {
        Ok(self.reader.observations(entry, times, window)?.1)
    }

    /// The cache this snapshot reads fragments through.
    pub fn cache(&self) -> &FragmentCache {
        self.reader.cache()
    }

    /// Like [`Snapshot::read_fragment`], and also checks the file's checksum before
    /// decoding it (one extra pass over the bytes).
    pub fn read_fragment_verified(&self, entry: &FragmentEntry) -> Result<Fragment> {
        open_checked(self.storage.as_ref(), entry, true)
    }
}

/// Opens a whole fragment and checks it against its catalog row (and its checksum when
/// `verify`).
pub(crate) fn open_checked(
    storage: &dyn Storage,
    entry: &FragmentEntry,
    verify: bool,
) -> Result<Fragment> {
    let file = super::reader::open_whole(storage, entry, verify, None)?;
    super::fragment::whole_view(&file)
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
            index: crate::store::ChunkIndex {
                shape: crate::store::ChunkShape::DEFAULT.for_tile(1, 1),
                blocks: vec![1],
                dictionary: 7..8,
                runs: vec![crate::store::ChunkRun {
                    chunk: 0,
                    start: 8,
                    end: 9,
                }],
                footer: 10,
                epsg: 4326,
                transform: crate::geo::GeoTransform::north_up(0.0, 1.0, 1.0, 1.0),
                nodata: None,
                scale: 1.0,
                offset: 0.0,
            },
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
