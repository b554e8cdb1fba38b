//! The ingestion pipeline: scenes fanned out on rayon, each decoded once and cut into grid
//! tiles; observations buffered per (tile, band) within a memory budget and flushed as
//! fragments; one atomic commit per batch of scenes. Re-running skips committed scenes.

use super::cut::{cut_file, CutOptions, TileCut, TileLayout};
use super::discover::{discover, SceneSource};
use super::scene::{prepare, PreparedScene, SceneOptions};
use crate::crs::Crs;
use crate::grid::GridSpec;
use crate::profile::ProductProfile;
use crate::source::RemoteOptions;
use crate::store::{
    Batch, FragmentCompression, FragmentData, Observation, SceneRecord, Warehouse, WarehouseConfig,
};
use crate::warp::Resampling;
use crate::{Bounds, TileId};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Errors that stop a whole run (a bad scene only fails itself).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Inputs could not be listed.
    #[error(transparent)]
    Discover(#[from] super::discover::Error),
    /// The product profile is unknown or invalid.
    #[error(transparent)]
    Profile(#[from] crate::profile::Error),
    /// The warehouse could not be opened, written or committed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The grid could not be set up.
    #[error("grid: {0}")]
    Grid(#[from] crate::grid::Error),
    /// An option is invalid.
    #[error("{0}")]
    Option(String),
    /// No scene could be prepared to derive the warehouse grid from.
    #[error("cannot create the warehouse: no scene could be opened to choose its grid ({reason})")]
    NoGrid {
        /// Why the first scene failed.
        reason: String,
    },
}

/// Settings of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Product profile id or file (`--product`); `None` ingests bands as they are named.
    pub product: Option<String>,
    /// Band names for multi-band files (`--bands`).
    pub bands: Option<Vec<String>>,
    /// Folder filter (`--glob`).
    pub glob: Option<String>,
    /// Regex with the acquisition date in its first group (`--date-pattern`).
    pub date_pattern: Option<String>,
    /// Kernel for continuous bands.
    pub resampling: Resampling,
    /// Grid CRS for a new warehouse (`--crs`).
    pub crs: Option<u32>,
    /// Tile size in grid units for a new warehouse (`--tile-size`).
    pub tile_size: Option<f64>,
    /// Scenes per commit (`--commit-every`); `None` = one commit for the run.
    pub commit_every: Option<usize>,
    /// Memory budget for buffered observations, in bytes (`--memory-budget`).
    pub memory_budget: u64,
    /// Fragment compression for a new warehouse.
    pub compression: FragmentCompression,
    /// Remote source settings.
    pub remote: RemoteOptions,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            product: None,
            bands: None,
            glob: None,
            date_pattern: None,
            resampling: Resampling::Nearest,
            crs: None,
            tile_size: None,
            commit_every: None,
            memory_budget: 256 << 20,
            compression: FragmentCompression::None,
            remote: RemoteOptions::default(),
        }
    }
}

/// Progress callbacks (the CLI draws a bar; the library default does nothing).
pub trait Progress: Sync {
    /// The run found `scenes` scenes.
    fn begin(&self, _scenes: usize) {}
    /// A scene finished (ingested, skipped or failed), having read `bytes` and cut `tiles`.
    fn scene_done(&self, _scene: &str, _bytes: u64, _tiles: usize) {}
    /// Buffered fragments are being written.
    fn flushing(&self, _fragments: usize) {}
}

/// A [`Progress`] that reports nothing.
pub struct Quiet;
impl Progress for Quiet {}

/// A scene that was not ingested, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SceneOutcome {
    /// Scene id.
    pub scene: String,
    /// Why it was skipped or failed.
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestReport {
    /// Scenes found in the inputs.
    pub scenes_found: usize,
    /// Scenes ingested now.
    pub scenes_ingested: usize,
    /// Scenes already in the warehouse.
    pub skipped: Vec<SceneOutcome>,
    /// Scenes that failed.
    pub failed: Vec<SceneOutcome>,
    /// (tile, band) observations written.
    pub tile_observations: usize,
    /// Distinct tiles touched.
    pub tiles: usize,
    /// Fragment files written.
    pub fragments: usize,
    /// Bytes of input files read.
    pub bytes_in: u64,
    /// Bytes of fragments written.
    pub bytes_out: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Versions committed.
    pub versions: Vec<u64>,
}

/// Observations waiting to be written, per (tile, band).
struct Pending {
    layout: TileLayout,
    observations: Vec<Observation>,
}

/// Shared state of one batch.
struct BatchBuffer<'a> {
    batch: Batch<'a>,
    pending: Mutex<BTreeMap<(TileId, String), Pending>>,
    buffered: AtomicU64,
    fragments: AtomicUsize,
    bytes_out: AtomicU64,
}

fn ring(b: &Bounds) -> Vec<(f64, f64)> {
    vec![
        (b.min_x, b.min_y),
        (b.max_x, b.min_y),
        (b.max_x, b.max_y),
        (b.min_x, b.max_y),
        (b.min_x, b.min_y),
    ]
}

/// Ingests `inputs` into the warehouse at `path` (created when missing).
pub fn ingest(
    path: &Path,
    inputs: &[String],
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport, Error> {
    run(path, Sources::Inputs(inputs), options, progress)
}

/// Ingests scenes already found by [`discover`] (`options.glob` is not used): lets a
/// caller discover once and hand batches of scenes to several writers (the Python
/// bindings' Dask ingest), each committing its own batches.
pub fn ingest_scenes(
    path: &Path,
    scenes: &[SceneSource],
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport, Error> {
    run(path, Sources::Scenes(scenes), options, progress)
}

/// What a run ingests: inputs to discover, or scenes discovered already.
enum Sources<'a> {
    Inputs(&'a [String]),
    Scenes(&'a [SceneSource]),
}

fn run(
    path: &Path,
    sources: Sources<'_>,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport, Error> {
    let start = Instant::now();
    let profile = options
        .product
        .as_deref()
        .map(ProductProfile::resolve)
        .transpose()?;
    let product_id = profile
        .as_ref()
        .map(|p| p.id.clone())
        .unwrap_or_else(|| "generic".to_string());
    let date_pattern = options
        .date_pattern
        .as_deref()
        .map(|p| {
            regex::Regex::new(p)
                .map_err(|e| Error::Option(format!("invalid --date-pattern {p:?}: {e}")))
        })
        .transpose()?;
    if options.commit_every == Some(0) {
        return Err(Error::Option("--commit-every must be at least 1".into()));
    }
    let scene_options = SceneOptions {
        bands: options.bands.clone(),
        date_pattern,
        remote: options.remote.clone(),
    };
    let scenes = match sources {
        Sources::Inputs(inputs) => {
            std::borrow::Cow::Owned(discover(inputs, options.glob.as_deref())?)
        }
        Sources::Scenes(scenes) => std::borrow::Cow::Borrowed(scenes),
    };
    progress.begin(scenes.len());
    let warehouse = open_warehouse(path, &scenes, profile.as_ref(), &scene_options, options)?;
    let grid = warehouse.config().grid;
    if options.crs.is_some_and(|c| c != grid.epsg)
        || options.tile_size.is_some_and(|t| t != grid.tile_size)
    {
        return Err(Error::Option(format!(
            "the warehouse grid is EPSG:{} with {} m tiles; --crs/--tile-size cannot change it",
            grid.epsg, grid.tile_size
        )));
    }
    let grid_crs = grid.crs()?;
    let mut report = IngestReport {
        scenes_found: scenes.len(),
        ..Default::default()
    };
    let mut tiles_seen = std::collections::BTreeSet::new();
    let chunk = options.commit_every.unwrap_or(scenes.len().max(1));
    let cut_options = CutOptions {
        resampling: options.resampling,
        max_read_bytes: (options.memory_budget / 2).max(16 << 20),
    };
    for group in scenes.chunks(chunk) {
        let buffer = BatchBuffer {
            batch: warehouse.begin_batch(),
            pending: Mutex::new(BTreeMap::new()),
            buffered: AtomicU64::new(0),
            fragments: AtomicUsize::new(0),
            bytes_out: AtomicU64::new(0),
        };
        // Taken after the batch began, so a scene another process commits meanwhile is
        // caught by the commit (SceneAlreadyCommitted) rather than duplicated.
        let committed = warehouse.snapshot(None)?;
        if let Some(p) = &profile {
            let json = serde_json::to_value(p).map_err(|e| Error::Option(e.to_string()))?;
            buffer.batch.register_product(&p.id, json)?;
        }
        let outcomes: Vec<SceneResult> = group
            .par_iter()
            .map(|scene| {
                let r = run_scene(
                    scene,
                    profile.as_ref(),
                    &product_id,
                    &scene_options,
                    &grid,
                    &grid_crs,
                    &cut_options,
                    &committed,
                    &buffer,
                    options.memory_budget,
                    progress,
                );
                let (bytes, tiles) = match &r {
                    SceneResult::Ingested { bytes, cuts } => (*bytes, cuts.len()),
                    _ => (0, 0),
                };
                progress.scene_done(&scene.id, bytes, tiles);
                r
            })
            .collect();
        for outcome in outcomes {
            match outcome {
                SceneResult::Ingested { bytes, cuts } => {
                    report.scenes_ingested += 1;
                    report.bytes_in += bytes;
                    report.tile_observations += cuts.len();
                    tiles_seen.extend(cuts.into_iter().map(|t| t.to_string()));
                }
                SceneResult::Skipped(o) => report.skipped.push(o),
                SceneResult::Failed(o) => report.failed.push(o),
            }
        }
        flush(&buffer, &product_id, &grid, progress)?;
        report.fragments += buffer.fragments.load(Ordering::Relaxed);
        report.bytes_out += buffer.bytes_out.load(Ordering::Relaxed);
        let version = buffer.batch.commit()?;
        if report.versions.last() != Some(&version) {
            report.versions.push(version);
        }
    }
    report.tiles = tiles_seen.len();
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

enum SceneResult {
    Ingested { bytes: u64, cuts: Vec<TileId> },
    Skipped(SceneOutcome),
    Failed(SceneOutcome),
}

fn open_warehouse(
    path: &Path,
    scenes: &[SceneSource],
    profile: Option<&ProductProfile>,
    scene_options: &SceneOptions,
    options: &IngestOptions,
) -> Result<Warehouse, Error> {
    if path.join("pixelquery.json").exists() {
        return Ok(Warehouse::open(path)?);
    }
    // A new warehouse takes its grid from the first scene that opens.
    let mut last_err = String::from("no scenes");
    for scene in scenes {
        match prepare(scene, profile, scene_options) {
            Ok(prepared) => {
                let file = &prepared.files[0];
                let meta = file.cog.meta();
                let crs = Crs::from_epsg(file.epsg).map_err(|e| Error::NoGrid {
                    reason: e.to_string(),
                })?;
                let bounds = meta.bounds().unwrap_or(Bounds::new(0.0, 0.0, 0.0, 0.0));
                let grid =
                    GridSpec::default_for_scene(&crs, &bounds, options.crs, options.tile_size)?;
                let mut config = WarehouseConfig::new(grid);
                config.compression = options.compression;
                return Ok(Warehouse::open_or_create(path, config)?);
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(Error::NoGrid { reason: last_err })
}

#[allow(clippy::too_many_arguments)]
fn run_scene(
    scene: &SceneSource,
    profile: Option<&ProductProfile>,
    product: &str,
    scene_options: &SceneOptions,
    grid: &GridSpec,
    grid_crs: &Crs,
    cut_options: &CutOptions,
    committed: &crate::store::Snapshot,
    buffer: &BatchBuffer<'_>,
    budget: u64,
    progress: &dyn Progress,
) -> SceneResult {
    let failed = |reason: String| {
        SceneResult::Failed(SceneOutcome {
            scene: scene.id.clone(),
            reason,
        })
    };
    let prepared: PreparedScene = match prepare(scene, profile, scene_options) {
        Ok(p) => p,
        Err(e) => return failed(e.to_string()),
    };
    if committed.has_scene_fingerprint(&prepared.fingerprint) {
        return SceneResult::Skipped(SceneOutcome {
            scene: scene.id.clone(),
            reason: format!("already ingested (snapshot {})", committed.version()),
        });
    }
    // Cut the whole scene first: a scene that fails half-way contributes nothing.
    let cuts = Mutex::new(Vec::new());
    for file in &prepared.files {
        let emit = |c: TileCut| cuts.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        if let Err(e) = cut_file(file, grid, grid_crs, cut_options, &emit) {
            return failed(e.to_string());
        }
    }
    let cuts = cuts.into_inner().unwrap_or_else(|p| p.into_inner());
    let footprint = prepared
        .files
        .first()
        .and_then(|f| {
            let b = f.cog.meta().bounds()?;
            Crs::from_epsg(f.epsg).ok()?.lonlat_bounds(&b).ok()
        })
        .map(|b| ring(&b))
        .unwrap_or_default();
    let record = SceneRecord {
        scene_id: prepared.id.clone(),
        source: prepared.source.clone(),
        acquired: prepared.acquired,
        product: product.to_string(),
        footprint_lonlat: footprint,
        cloud_cover: prepared.cloud_cover,
        fingerprint: prepared.fingerprint.clone(),
    };
    if let Err(e) = buffer.batch.add_scene(record) {
        return failed(e.to_string());
    }
    let tiles: Vec<TileId> = cuts.iter().map(|c| c.tile).collect();
    let mut added = 0u64;
    {
        let mut pending = buffer.pending.lock().unwrap_or_else(|p| p.into_inner());
        for cut in cuts {
            added += (cut.pixels.as_bytes().len() + cut.valid.as_ref().map_or(0, |v| v.len() / 8))
                as u64;
            pending
                .entry((cut.tile, cut.band))
                .or_insert_with(|| Pending {
                    layout: cut.layout,
                    observations: Vec::new(),
                })
                .observations
                .push(Observation {
                    time: prepared.acquired,
                    scene_id: prepared.id.clone(),
                    pixels: cut.pixels,
                    valid: cut.valid,
                });
        }
    }
    let total = buffer.buffered.fetch_add(added, Ordering::Relaxed) + added;
    if total > budget {
        if let Err(e) = flush(buffer, product, grid, progress) {
            return failed(format!("writing fragments: {e}"));
        }
    }
    SceneResult::Ingested {
        bytes: prepared.bytes,
        cuts: tiles,
    }
}

/// Writes every buffered (tile, band) as one fragment, in parallel.
fn flush(
    buffer: &BatchBuffer<'_>,
    product: &str,
    grid: &GridSpec,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let pending = std::mem::take(&mut *buffer.pending.lock().unwrap_or_else(|p| p.into_inner()));
    buffer.buffered.store(0, Ordering::Relaxed);
    if pending.is_empty() {
        return Ok(());
    }
    progress.flushing(pending.len());
    let results: Vec<Result<u64, Error>> = pending
        .into_iter()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|((tile, band), p)| {
            let footprint = grid
                .tile_lonlat_bounds(tile)
                .map(|b| ring(&b))
                .unwrap_or_default();
            let l = p.layout;
            let data = FragmentData {
                tile,
                band,
                product: product.to_string(),
                dtype: p.observations[0].pixels.dtype(),
                nodata: l.nodata,
                scale: l.scale,
                offset: l.offset,
                tile_transform: l.transform,
                width: l.size,
                height: l.size,
                footprint_lonlat: footprint,
                resolution: l.resolution,
                observations: p.observations,
            };
            Ok(buffer.batch.write_fragment(data)?.bytes)
        })
        .collect();
    for r in results {
        let bytes = r?;
        buffer.fragments.fetch_add(1, Ordering::Relaxed);
        buffer.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }
    Ok(())
}
