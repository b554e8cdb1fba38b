//! Reading fragments for a snapshot: files opened once (memory-mapped locally; on object
//! storage only the chunk runs a read needs, fetched by range, neighbours merged), batches
//! decoded once, and views of any window and time range assembled from them. Everything is
//! shared by clones of a snapshot and bounded in memory.

use super::cache::{FragmentCache, Item, Key};
use super::catalog::FragmentEntry;
use super::fragment::read::{self, ChunkedFile, DecodedBatch, Decoding, FileBytes};
use super::fragment::{Fragment, FragmentMeta, PixelWindow, FRAGMENT_FORMAT_VERSION};
use super::scene_names::SceneNames;
use super::storage::Storage;
use super::{Error, FragmentCompression, Result};
use std::ops::Range;
use std::sync::Arc;

/// Runs of one fragment closer than this are fetched by one ranged request.
const MERGE_GAP: u64 = 64 << 10;

/// Observations' index range and their (time in microseconds, scene id).
pub(crate) type Observations = (Range<usize>, Vec<(i64, String)>);

/// Opens, decodes and caches the fragments of one warehouse, in a cache that may be shared
/// with the readers of other snapshots.
#[derive(Debug)]
pub(crate) struct FragmentReader {
    storage: Arc<dyn Storage>,
    compression: FragmentCompression,
    cache: FragmentCache,
    /// On object storage, names observations without fetching scene dictionaries.
    scene_names: Option<Arc<SceneNames>>,
}

/// The metadata a fragment's catalog row and chunk index give (what the file's schema
/// holds, without reading it).
pub(crate) fn meta_of(entry: &FragmentEntry) -> FragmentMeta {
    let index = &entry.index;
    FragmentMeta {
        tile: entry.tile,
        band: entry.band.clone(),
        product: entry.product.clone(),
        epsg: index.epsg,
        transform: index.transform,
        width: entry.width,
        height: entry.height,
        window: entry.window,
        dtype: entry.dtype,
        nodata: index.nodata,
        scale: index.scale,
        offset: index.offset,
        format_version: FRAGMENT_FORMAT_VERSION,
        chunk: index.shape,
        blocks: index.blocks.clone(),
        chunks: index.runs.iter().map(|r| r.chunk).collect(),
    }
}

impl FragmentReader {
    /// A reader of `storage`'s fragments. `scene_names` (a snapshot's scene table) spares
    /// object-storage reads the request for each fragment's scene dictionary.
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        compression: FragmentCompression,
        cache: FragmentCache,
        scene_names: Option<Arc<SceneNames>>,
    ) -> Self {
        FragmentReader {
            storage,
            compression,
            cache,
            scene_names,
        }
    }

    /// The cache it keeps what it reads in.
    pub(crate) fn cache(&self) -> &FragmentCache {
        &self.cache
    }

    /// The file, opened with at least the runs of `chunks` at hand (all runs of a local
    /// file; on object storage, the missing ones are fetched).
    fn file(&self, entry: &FragmentEntry, chunks: &[u32]) -> Result<Arc<ChunkedFile>> {
        let cached = match self.cache.get(&Key::File(entry.path.clone())) {
            Some(Item::File(f)) => Some(f),
            _ => None,
        };
        let path = self.storage.locate(&entry.path);
        if let Some(root) = self.storage.local_root() {
            if let Some(f) = cached {
                return Ok(f);
            }
            let bytes = map_confined(root, entry)?;
            let f = Arc::new(ChunkedFile::from_index(
                &path,
                meta_of(entry),
                &entry.index,
                FileBytes::Whole(bytes),
                Some(self.compression),
            )?);
            self.remember_file(entry, &f);
            return Ok(f);
        }
        let mut have: Vec<(Range<u64>, arrow_buffer::Buffer)> =
            match cached.as_deref().map(ChunkedFile::bytes) {
                Some(FileBytes::Ranges(parts)) => parts.clone(),
                _ => Vec::new(),
            };
        let held = |have: &[(Range<u64>, arrow_buffer::Buffer)], r: &Range<u64>| {
            have.iter()
                .any(|(h, _)| h.start <= r.start && r.end <= h.end)
        };
        // Every view names its scenes: the dictionary is fetched with the runs, unless the
        // snapshot's scene table names them (then the runs alone answer).
        let dictionary = entry.index.dictionary.clone();
        let named = self.scene_names.as_ref().is_some_and(|n| {
            !n.shares_time_in(
                &entry.product,
                entry.time_min.timestamp_micros(),
                entry.time_max.timestamp_micros(),
            )
        });
        let wanted: Vec<Range<u64>> = (!named)
            .then(|| dictionary.clone())
            .into_iter()
            .chain(
                chunks
                    .iter()
                    .filter_map(|&k| entry.index.run(k))
                    .map(|r| r.start..r.end),
            )
            .filter(|r| !held(&have, r))
            .collect();
        if wanted.is_empty() {
            if let Some(f) = cached {
                return Ok(f);
            }
        }
        for range in merge_ranges(wanted) {
            let bytes = self.storage.read_range(&entry.path, range.clone())?;
            have.push((range, arrow_buffer::Buffer::from_vec(bytes)));
        }
        let open = |have: Vec<(Range<u64>, arrow_buffer::Buffer)>| {
            ChunkedFile::from_index(
                &path,
                meta_of(entry),
                &entry.index,
                FileBytes::Ranges(have),
                Some(self.compression),
            )
            .map(|f| f.with_scene_names(self.scene_names.clone()))
        };
        let mut f = open(have.clone())?;
        if !f.can_name_observations()? {
            // Two scenes share a time (or the table does not know one): ask the file.
            let bytes = self.storage.read_range(&entry.path, dictionary.clone())?;
            have.push((dictionary, arrow_buffer::Buffer::from_vec(bytes)));
            f = open(have)?;
        }
        let f = Arc::new(f);
        self.remember_file(entry, &f);
        Ok(f)
    }

    /// Keeps an opened file: a mapping counts at the file's size (the pages reads touch are
    /// resident), fetched runs at theirs.
    fn remember_file(&self, entry: &FragmentEntry, f: &Arc<ChunkedFile>) {
        let bytes = match f.bytes() {
            read::FileBytes::Whole(_) => entry.bytes,
            ranges => ranges.heap_bytes(),
        };
        self.cache.put(
            Key::File(entry.path.clone()),
            Item::File(f.clone()),
            bytes,
            true,
        );
    }

    /// Batch `block` of run `run` of `file`, decoded once.
    fn batch(
        &self,
        entry: &FragmentEntry,
        file: &ChunkedFile,
        run: usize,
        block: usize,
    ) -> Result<Arc<DecodedBatch>> {
        let key = Key::Batch(entry.path.clone(), run, block);
        let item = self.cache.get_or_make(&key, || {
            let b = Arc::new(file.decode(run, block)?);
            let heap = b.heap_bytes();
            Ok::<_, Error>((Item::Batch(b), heap))
        })?;
        match item {
            Item::Batch(b) => Ok(b),
            _ => Err(Error::CorruptFragment {
                path: self.storage.locate(&entry.path),
                reason: "cache entry of the wrong kind".into(),
            }),
        }
    }

    /// The times and scene ids of the fragment's observations in `times` (microseconds,
    /// inclusive), with their index range (what a view of the same range holds).
    pub(crate) fn observations(
        &self,
        entry: &FragmentEntry,
        times: Option<(i64, i64)>,
        window: Option<PixelWindow>,
    ) -> Result<Observations> {
        // Any run holds the times: read those a later view of `window` needs anyway.
        let file = self.file(entry, &chunks_for(entry, window))?;
        let range = file.observations_between(times)?;
        let (t, ids) = file.observations()?;
        let list = range
            .clone()
            .map(|i| (t[i], ids.value(i).to_string()))
            .collect();
        Ok((range, list))
    }

    /// A view of the observations in `times` over `window` (the stored window when
    /// `None`), assembled from cached batches.
    pub(crate) fn view(
        &self,
        entry: &FragmentEntry,
        window: Option<PixelWindow>,
        times: Option<(i64, i64)>,
    ) -> Result<Fragment> {
        self.view_decoding(entry, window, times, Decoding::Parallel)
    }

    fn view_decoding(
        &self,
        entry: &FragmentEntry,
        window: Option<PixelWindow>,
        times: Option<(i64, i64)>,
        decoding: Decoding,
    ) -> Result<Fragment> {
        let window = window.unwrap_or(entry.window);
        let file = self.file(entry, &chunks_for(entry, Some(window)))?;
        let obs = file.observations_between(times)?;
        file.view(
            window,
            obs,
            &|r, b| self.batch(entry, &file, r, b),
            decoding,
        )
    }

    /// The whole fragment (every observation, the stored window), shared.
    pub(crate) fn whole(&self, entry: &FragmentEntry) -> Result<Arc<Fragment>> {
        let item = self
            .cache
            .get_or_make(&Key::Whole(entry.path.clone()), || {
                // Decoded on this thread: others may wait for the entry it makes.
                let f = Arc::new(self.view_decoding(entry, None, None, Decoding::Sequential)?);
                let heap = f.heap_bytes();
                Ok::<_, Error>((Item::Whole(f), heap))
            })?;
        match item {
            Item::Whole(f) => Ok(f),
            _ => Err(Error::CorruptFragment {
                path: self.storage.locate(&entry.path),
                reason: "cache entry of the wrong kind".into(),
            }),
        }
    }

    /// The whole fragment if a view of it is cached.
    pub(crate) fn cached_whole(&self, entry: &FragmentEntry) -> Option<Arc<Fragment>> {
        match self.cache.peek(&Key::Whole(entry.path.clone())) {
            Some(Item::Whole(f)) => Some(f),
            _ => None,
        }
    }
}

/// Opens a whole fragment file and checks it against its row (size, checksum when
/// `verify`, footer against the chunk index, schema against the row). `compression` is the
/// warehouse's setting, when known.
pub(crate) fn open_whole(
    storage: &dyn Storage,
    entry: &FragmentEntry,
    verify: bool,
    compression: Option<FragmentCompression>,
) -> Result<ChunkedFile> {
    let path = storage.locate(&entry.path);
    let bytes = match storage.local_root() {
        Some(root) => map_confined(root, entry)?,
        None => {
            let b = storage.read_range(&entry.path, 0..entry.bytes)?;
            arrow_buffer::Buffer::from_vec(b)
        }
    };
    if verify {
        read::check_checksum(&path, bytes.as_slice(), &entry.checksum)?;
    }
    let whole = ChunkedFile::from_whole(&path, bytes.clone())?;
    if !same_meta(whole.meta(), &meta_of(entry)) {
        return Err(Error::CorruptFragment {
            path,
            reason: "contents do not match the catalog row".into(),
        });
    }
    ChunkedFile::from_index(
        &path,
        meta_of(entry),
        &entry.index,
        FileBytes::Whole(bytes),
        compression,
    )
}

/// The present chunks of `entry` that `window` (the stored window when `None`) meets; the
/// first present chunk when it meets none (the observations' times are in every run).
fn chunks_for(entry: &FragmentEntry, window: Option<PixelWindow>) -> Vec<u32> {
    let window = window.unwrap_or(entry.window);
    let mut needed: Vec<u32> = entry
        .index
        .shape
        .touching(&window, entry.width, entry.height)
        .into_iter()
        .filter(|&k| entry.index.run(k).is_some())
        .collect();
    if needed.is_empty() {
        needed.extend(entry.index.runs.first().map(|r| r.chunk));
    }
    needed
}

/// Maps the fragment of `entry` below `root`, refusing a link anywhere on its path.
fn map_confined(root: &std::path::Path, entry: &FragmentEntry) -> Result<arrow_buffer::Buffer> {
    let (path, file) = super::confine::open(root, &entry.path)?;
    read::map_opened(&path, &file, Some(entry.bytes))
}

/// Two metadata agree on everything a row and index record (the window and chunk list
/// included).
fn same_meta(file: &FragmentMeta, row: &FragmentMeta) -> bool {
    let same_f64 = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    let same_nodata = match (file.nodata, row.nodata) {
        (Some(a), Some(b)) => same_f64(a, b),
        (None, None) => true,
        _ => false,
    };
    file.tile == row.tile
        && file.band == row.band
        && file.product == row.product
        && file.dtype == row.dtype
        && file.width == row.width
        && file.height == row.height
        && file.window == row.window
        && file.chunk == row.chunk
        && file.blocks == row.blocks
        && file.chunks == row.chunks
        && file.epsg == row.epsg
        && file.transform == row.transform
        && same_nodata
        && same_f64(file.scale, row.scale)
        && same_f64(file.offset, row.offset)
}

/// Sorted ranges, neighbours closer than [`MERGE_GAP`] joined.
fn merge_ranges(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end + MERGE_GAP => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DataType;
    use crate::geo::GeoTransform;
    use crate::grid::{GridSpec, TileId};
    use crate::store::batch::write_new_fragment;
    use crate::store::fragment::{FragmentData, Observation};
    use crate::store::{Warehouse, WarehouseConfig};
    use chrono::DateTime;

    fn fragment(wh: &Warehouse) -> FragmentEntry {
        let observations = (0..3)
            .map(|d| Observation {
                time: DateTime::from_timestamp(1_700_000_000 + d * 86_400, 0).unwrap(),
                scene_id: format!("scene{d}"),
                pixels: (0..256 * 256)
                    .map(|i| (i + d) as u16)
                    .collect::<Vec<_>>()
                    .into(),
                valid: None,
            })
            .collect();
        let data = FragmentData {
            tile: TileId::new(1, -1),
            band: "red".into(),
            product: "S2".into(),
            dtype: DataType::U16,
            nodata: Some(0.0),
            scale: 1.0,
            offset: 0.0,
            tile_transform: GeoTransform::north_up(2560.0, -2560.0, 10.0, 10.0),
            width: 256,
            height: 256,
            footprint_lonlat: vec![(15.0, 0.0), (15.1, 0.0), (15.1, 0.1), (15.0, 0.1)],
            resolution: 10.0,
            observations,
        };
        write_new_fragment(wh, data).unwrap().0
    }

    /// What the catalog row says about the chunks must be what the file holds: `verify`
    /// (and every read of a local file) refuses an index that points elsewhere.
    #[test]
    fn a_chunk_index_unlike_the_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let grid = GridSpec {
            epsg: 32633,
            origin_x: 0.0,
            origin_y: 0.0,
            tile_size: 2560.0,
        };
        let wh = Warehouse::create(d.path(), WarehouseConfig::new(grid)).unwrap();
        let entry = fragment(&wh);
        assert!(entry.index.runs.len() > 1, "{:?}", entry.index);
        let f = open_whole(wh.storage(), &entry, true, None).unwrap();
        assert_eq!(f.observations().unwrap().0.len(), 3);
        let refused = |bad: FragmentEntry| {
            let e = open_whole(wh.storage(), &bad, true, None).unwrap_err();
            assert!(e.to_string().contains("chunk index"), "{e}");
        };
        let mut bad = entry.clone();
        bad.index.runs[1].start += 8;
        refused(bad);
        let mut bad = entry.clone();
        bad.index.dictionary.end -= 8;
        refused(bad);
        let mut bad = entry.clone();
        bad.index.runs.swap(0, 1);
        let e = open_whole(wh.storage(), &bad, true, None).unwrap_err();
        assert!(matches!(e, Error::CorruptFragment { .. }), "{e}");
    }
}
