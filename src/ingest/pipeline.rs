//! The ingestion pipeline: scenes fanned out on rayon, each cut onto the grid by a plan that
//! fits the memory budget (read whole when small, streamed a row of tiles at a time when
//! large); observations gathered per (tile, band) and written as fragments; one atomic
//! commit per batch of scenes. Re-running skips committed scenes.
//!
//! A scene whose observations do not fit in its share of the budget until it is cut whole
//! writes them as it goes into a batch of its own, committed when the scene is done: a
//! scene that fails half-way never leaves part of itself behind.

use super::budget::{mib_ceil, Ledger, Reservation};
use super::buffer::{add_cuts, write_entries, Entries, Shared, Written};
use super::cut::{plan_file, CutOptions, TileCut, Unit};
use super::discover::{discover_with, SceneSource};
use super::scene::{prepare, Mismatch, PreparedScene, SceneOptions};
use super::shard::Shard;
use super::stac::AssetRules;
use crate::crs::Crs;
use crate::grid::GridSpec;
use crate::profile::ProductProfile;
use crate::source::RemoteOptions;
use crate::store::{
    Batch, ChunkShape, Committed, Error as StoreError, FragmentCompression, OpenOptions,
    SceneRecord, SkippedScene, Snapshot, Warehouse, WarehouseConfig,
};
use crate::warp::Resampling;
use crate::{Bounds, TileId};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// The memory budget cannot hold what cutting one scene needs.
    #[error("--memory-budget {budget_mb} MB is too small to cut {scene}: the smallest budget that works is {needed_mb} MB")]
    BudgetTooSmall {
        /// The scene.
        scene: String,
        /// The budget given, in MiB.
        budget_mb: u64,
        /// The smallest budget that cuts the scene, in MiB.
        needed_mb: u64,
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
    /// Regex with the acquisition date in its first group (`--date-pattern`); when it matches
    /// a file name it wins over the time in STAC or the file's metadata.
    pub date_pattern: Option<String>,
    /// Kernel for continuous bands.
    pub resampling: Resampling,
    /// Grid CRS for a new warehouse (`--crs`).
    pub crs: Option<u32>,
    /// Tile size in grid units for a new warehouse (`--tile-size`).
    pub tile_size: Option<f64>,
    /// Scenes per commit (`--commit-every`); `None` = one commit for the run.
    pub commit_every: Option<usize>,
    /// Memory budget in bytes (`--memory-budget`): bounds the decoded pixels, the tiles
    /// being cut, the observations waiting to be written and the encode buffers of the run
    /// (see [`super::budget`]).
    pub memory_budget: u64,
    /// Fragment compression for a new warehouse.
    pub compression: FragmentCompression,
    /// Whether a new warehouse crops fragments to their valid pixels (default `true`).
    pub crop: bool,
    /// How a new warehouse cuts fragments into chunks.
    pub chunk: ChunkShape,
    /// Remote settings, for sources and for an `s3://` warehouse.
    pub remote: RemoteOptions,
    /// Only this shard of the scenes found (`--shard K/N`).
    pub shard: Option<Shard>,
    /// Write to an object store even if it ignores conditional creates
    /// (`--unsafe-single-writer`; safe only with one writer).
    pub unsafe_single_writer: bool,
    /// Do not merge fragments automatically after commits (`--no-auto-compact`).
    pub no_auto_compact: bool,
    /// With `bands` given, STAC items also bring the product's cloud band (default `true`).
    pub cloud_band: bool,
    /// When a STAC item's projection or footprint disagrees with its files (`--allow-mismatch`
    /// warns instead of failing the scene).
    pub mismatch: Mismatch,
    /// A search to record in the warehouse with this run's commits: (id, search as JSON).
    pub search: Option<(String, serde_json::Value)>,
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
            compression: FragmentCompression::default(),
            crop: true,
            chunk: ChunkShape::DEFAULT,
            remote: RemoteOptions::default(),
            shard: None,
            unsafe_single_writer: false,
            no_auto_compact: false,
            cloud_band: true,
            mismatch: Mismatch::Error,
            search: None,
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
    /// A STAC API search has found `items` so far, of `matched` when the API counts them.
    fn searching(&self, _items: usize, _matched: Option<u64>) {}
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
    /// Scenes ingested with a warning (a STAC item that disagrees with its files, with
    /// `--allow-mismatch`; a nodata value the item and the file disagree on).
    pub warnings: Vec<SceneOutcome>,
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
    /// Requests and bytes exchanged with an `s3://` warehouse (zero for a local one).
    pub warehouse_transfer: crate::source::TransferStats,
    /// Automatic compaction after the commits: merges made and bytes they wrote.
    pub compaction_merges: usize,
    /// Bytes of fragments automatic compaction wrote.
    pub compaction_bytes: u64,
    /// Milliseconds automatic compaction spent merging and committing.
    pub compaction_ms: (u64, u64),
    /// Why automatic compaction did not finish, when it failed (the commits stand).
    pub compaction_errors: Vec<String>,
    /// What each STAC API search did, when the scenes came from searches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stac: Vec<super::stac::StacReport>,
}

impl IngestReport {
    /// Adds what automatic compaction did to the report's totals.
    fn add_compaction(&mut self, totals: crate::store::CompactionTotals) {
        self.compaction_merges += totals.merges;
        self.compaction_bytes += totals.bytes_written;
        self.compaction_ms.0 += totals.merge_ms;
        self.compaction_ms.1 += totals.commit_ms;
        self.compaction_errors.extend(totals.errors);
    }
}

/// Bytes the block cache of a remote file may hold during ingest: each block is read once,
/// so the cache only serves the header.
const REMOTE_CACHE: usize = 1 << 20;

/// Everything the scenes of one batch share.
struct Run<'a> {
    warehouse: &'a Warehouse,
    grid: GridSpec,
    grid_crs: Crs,
    profile: Option<&'a ProductProfile>,
    product_json: Option<serde_json::Value>,
    product: String,
    scene_options: SceneOptions,
    cut_options: CutOptions,
    compressed: bool,
    ledger: &'a Ledger,
    progress: &'a dyn Progress,
    /// Scenes cut at once in the parallel phase.
    lanes: usize,
    /// Set when a scene cannot fit the budget: the others stop.
    stop: AtomicBool,
    /// The batch of scenes small enough to hold until they are cut whole.
    main: Batch<'a>,
    /// Their observations, waiting to be written.
    shared: Shared,
    /// The committed state when the batch began.
    committed: Snapshot,
    fragments: AtomicUsize,
    bytes_out: AtomicU64,
    /// Automatic compaction after this group's commits: merges, bytes, errors, milliseconds.
    compaction: std::sync::Mutex<crate::store::CompactionTotals>,
}

enum SceneResult {
    Ingested {
        bytes: u64,
        /// What was not right but did not stop it.
        warnings: Vec<String>,
        /// (tile, band) observations cut.
        observations: usize,
        /// Distinct tiles they are on.
        cuts: Vec<TileId>,
        /// The version of the scene's own commit, when it had one.
        version: Option<u64>,
        /// The scene went into the main batch.
        in_main: bool,
    },
    Skipped(SceneOutcome),
    Failed(SceneOutcome),
    /// Other scenes hold the memory: cut this one once they are done.
    Wait,
    /// The scene does not fit the budget even alone.
    TooSmall {
        needed: u64,
    },
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
    if options.memory_budget == 0 {
        return Err(Error::Option(
            "--memory-budget must be at least 1 MB".into(),
        ));
    }
    let mut remote = options.remote.clone();
    remote.cache_bytes = remote.cache_bytes.min(REMOTE_CACHE);
    let scene_options = SceneOptions {
        bands: options.bands.clone(),
        date_pattern,
        remote,
        mismatch: options.mismatch,
    };
    let mut unusable = Vec::new();
    let scenes = match sources {
        Sources::Inputs(inputs) => {
            let rules = AssetRules {
                profile: profile.clone(),
                bands: options.bands.clone(),
                cloud_band: options.cloud_band,
            };
            rules.check().map_err(Error::Option)?;
            let found = discover_with(inputs, options.glob.as_deref(), &rules)?;
            unusable = found.failed;
            std::borrow::Cow::Owned(found.scenes)
        }
        Sources::Scenes(scenes) => std::borrow::Cow::Borrowed(scenes),
    };
    let scenes = match options.shard {
        Some(shard) => std::borrow::Cow::Owned(shard.select(&scenes)),
        None => scenes,
    };
    progress.begin(scenes.len());
    let warehouse = open_warehouse(path, &scenes, profile.as_ref(), &scene_options, options)?;
    // Never build on a version that lost files: new commits would bury the damage.
    crate::store::check_latest_complete(&warehouse)?;
    // Commits hand their merges to a worker, so the next scenes are cut meanwhile.
    let (warehouse, background) = if warehouse.options().no_auto_compact {
        (warehouse, None)
    } else {
        let (handle, worker) = warehouse.background_compaction();
        (handle, Some(worker))
    };
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
    let product_json = profile
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| Error::Option(e.to_string()))?;
    let threads = rayon::current_num_threads().max(1);
    let compressed = warehouse.config().compression != FragmentCompression::None;
    let ledger = Ledger::new(options.memory_budget, threads, compressed);
    let mut report = IngestReport {
        scenes_found: scenes.len() + unusable.len(),
        failed: unusable
            .into_iter()
            .map(|(scene, reason)| SceneOutcome { scene, reason })
            .collect(),
        ..Default::default()
    };
    let mut tiles_seen = std::collections::BTreeSet::new();
    let chunk = options.commit_every.unwrap_or(scenes.len().max(1));
    for group in scenes.chunks(chunk) {
        let main = warehouse.begin_batch();
        if let Some((id, search)) = &options.search {
            main.register_search(id, search.clone())?;
        }
        // Taken after the batch began, so a scene another process commits meanwhile is
        // caught by the commit (and dropped from the batch) rather than duplicated.
        let committed = warehouse.snapshot(None)?;
        let run = Run {
            warehouse: &warehouse,
            grid,
            grid_crs: grid_crs.clone(),
            profile: profile.as_ref(),
            product_json: product_json.clone(),
            product: product_id.clone(),
            scene_options: scene_options.clone(),
            cut_options: CutOptions {
                resampling: options.resampling,
                threads,
            },
            compressed,
            ledger: &ledger,
            progress,
            lanes: threads.min(group.len()).max(1),
            stop: AtomicBool::new(false),
            main,
            shared: Shared::default(),
            committed,
            fragments: AtomicUsize::new(0),
            bytes_out: AtomicU64::new(0),
            compaction: Default::default(),
        };
        let mut outcomes: Vec<(usize, SceneResult)> = group
            .par_iter()
            .enumerate()
            .map(|(i, scene)| (i, run.scene(scene, false)))
            .collect();
        // Scenes that waited for memory are cut one at a time, each with the whole budget.
        for (i, outcome) in outcomes.iter_mut() {
            if matches!(outcome, SceneResult::Wait) {
                *outcome = run.scene(&group[*i], true);
            }
        }
        let mut main_has_scenes = false;
        for (i, outcome) in outcomes {
            match outcome {
                SceneResult::Ingested {
                    bytes,
                    warnings,
                    observations,
                    cuts,
                    version,
                    in_main,
                } => {
                    report.scenes_ingested += 1;
                    report
                        .warnings
                        .extend(warnings.into_iter().map(|reason| SceneOutcome {
                            scene: group[i].id.clone(),
                            reason,
                        }));
                    report.bytes_in += bytes;
                    report.tile_observations += observations;
                    tiles_seen.extend(cuts.into_iter().map(|t| t.to_string()));
                    report.versions.extend(version);
                    main_has_scenes |= in_main;
                }
                SceneResult::Skipped(o) => report.skipped.push(o),
                SceneResult::Failed(o) => report.failed.push(o),
                SceneResult::TooSmall { needed } => {
                    return Err(Error::BudgetTooSmall {
                        scene: group[i].id.clone(),
                        budget_mb: options.memory_budget >> 20,
                        needed_mb: mib_ceil(needed),
                    })
                }
                // Cut alone above; cannot wait again.
                SceneResult::Wait => {}
            }
        }
        run.flush_shared()?;
        report.fragments += run.fragments.load(Ordering::Relaxed);
        report.bytes_out += run.bytes_out.load(Ordering::Relaxed);
        let totals = std::mem::take(&mut *run.compaction.lock().unwrap_or_else(|e| e.into_inner()));
        report.add_compaction(totals);
        if main_has_scenes {
            if let (Some(p), Some(json)) = (&profile, &run.product_json) {
                run.main.register_product(&p.id, json.clone())?;
            }
            let committed = run.main.commit()?;
            if committed.created {
                report.versions.push(committed.version);
            }
            let mut totals = crate::store::CompactionTotals::default();
            match &committed.compaction {
                Some(Ok(c)) => totals.add(c),
                Some(Err(e)) => totals.errors.push(e.clone()),
                None => {}
            }
            report.add_compaction(totals);
            for scene in committed.skipped {
                report.scenes_ingested = report.scenes_ingested.saturating_sub(1);
                report.skipped.push(committed_elsewhere(scene));
            }
        }
    }
    // The search is kept even when it found nothing new (a no-op when already recorded).
    if let Some((id, search)) = &options.search {
        let batch = warehouse.begin_batch();
        batch.register_search(id, search.clone())?;
        batch.commit()?;
    }
    if let Some(worker) = background {
        report.add_compaction(worker.finish());
    }
    report.versions.sort_unstable();
    report.versions.dedup();
    report.tiles = tiles_seen.len();
    report.seconds = start.elapsed().as_secs_f64();
    report.warehouse_transfer = warehouse.storage().transfer_stats();
    Ok(report)
}

fn open_warehouse(
    path: &Path,
    scenes: &[SceneSource],
    profile: Option<&ProductProfile>,
    scene_options: &SceneOptions,
    options: &IngestOptions,
) -> Result<Warehouse, Error> {
    let open_options = OpenOptions {
        remote: options.remote.clone(),
        unsafe_single_writer: options.unsafe_single_writer,
        no_auto_compact: options.no_auto_compact,
        compaction_memory: options.memory_budget,
    };
    match Warehouse::open_with(path, &open_options) {
        Ok(wh) => return Ok(wh),
        Err(StoreError::NotAWarehouse { .. }) => {}
        Err(e) => return Err(e.into()),
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
                config.crop = options.crop;
                config.chunk = options.chunk;
                return Ok(Warehouse::open_or_create_with(path, config, &open_options)?);
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(Error::NoGrid { reason: last_err })
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

/// What a scene cut into, while it is being cut.
struct SceneOutput<'a> {
    /// Observations held until the scene is done.
    local: Entries,
    local_bytes: u64,
    /// The scene's own batch, once its observations no longer fit until it is done.
    own: Option<Batch<'a>>,
    tiles: Vec<TileId>,
    observations: usize,
}

impl<'a> Run<'a> {
    /// Prepares, plans and cuts one scene. `alone`: no other scene is being cut.
    fn scene(&self, scene: &SceneSource, alone: bool) -> SceneResult {
        let result = self.scene_inner(scene, alone);
        // The scene's decode buffers are freed: their pages go back when memory is short.
        super::budget::release_freed_memory(self.ledger.budget());
        if let SceneResult::Ingested { bytes, cuts, .. } = &result {
            self.progress.scene_done(&scene.id, *bytes, cuts.len());
        } else if matches!(result, SceneResult::Skipped(_) | SceneResult::Failed(_)) {
            self.progress.scene_done(&scene.id, 0, 0);
        }
        result
    }

    fn scene_inner(&self, scene: &SceneSource, alone: bool) -> SceneResult {
        let failed = |reason: String| {
            SceneResult::Failed(SceneOutcome {
                scene: scene.id.clone(),
                reason,
            })
        };
        if self.stop.load(Ordering::Relaxed) {
            return failed("not cut: the run stopped (memory budget too small)".into());
        }
        // An identity known without the files (a STAC item from an API): skip before reading.
        if let Some(fingerprint) = &scene.fingerprint {
            if self.committed.has_scene_fingerprint(fingerprint) {
                return SceneResult::Skipped(SceneOutcome {
                    scene: scene.id.clone(),
                    reason: format!("already ingested (snapshot {})", self.committed.version()),
                });
            }
            if let Some(earlier) = self.committed.scene(&self.product, &scene.id) {
                return SceneResult::Skipped(SceneOutcome {
                    scene: scene.id.clone(),
                    reason: format!(
                        "already ingested on {} from another version of the item (it changed since: fingerprint {} now {fingerprint}); committed scenes are not replaced",
                        earlier.ingested.format("%Y-%m-%d"),
                        earlier.scene.fingerprint
                    ),
                });
            }
        }
        let prepared: PreparedScene = match prepare(scene, self.profile, &self.scene_options) {
            Ok(p) => p,
            Err(e) => return failed(e.to_string()),
        };
        if self.committed.has_scene_fingerprint(&prepared.fingerprint) {
            return SceneResult::Skipped(SceneOutcome {
                scene: scene.id.clone(),
                reason: format!("already ingested (snapshot {})", self.committed.version()),
            });
        }
        let mut units: Vec<Unit<'_>> = Vec::new();
        for file in &prepared.files {
            match plan_file(file, &self.grid, &self.grid_crs, &self.cut_options) {
                Ok(u) => units.extend(u),
                Err(e) => return failed(e.to_string()),
            }
        }
        // What the scene holds besides its cuts: the block caches of its remote files.
        let fixed = prepared
            .files
            .iter()
            .filter(|f| f.cog.source().stats().is_some())
            .count() as u64
            * REMOTE_CACHE as u64;
        // Every unit read whole, its observations held until the scene is done.
        let mut held = 0;
        let mut comfortable = fixed;
        for unit in &units {
            comfortable = comfortable.max(fixed + held + unit.whole_peak());
            held += unit.output_bytes();
        }
        let share = if alone {
            self.ledger.usable()
        } else {
            self.ledger.usable() / self.lanes as u64
        };
        let (least, wanted) = if comfortable <= share {
            (comfortable, comfortable)
        } else {
            let least = fixed + units.iter().map(Unit::smallest).max().unwrap_or(0);
            (least, share.max(least))
        };
        let grant = loop {
            match self.ledger.reserve(least, wanted) {
                Reservation::Granted(g) => break g,
                Reservation::Flush => {
                    if let Err(e) = self.flush_shared() {
                        return failed(format!("writing fragments: {e}"));
                    }
                }
                Reservation::Wait if !alone => return SceneResult::Wait,
                Reservation::Wait => {
                    return SceneResult::TooSmall {
                        needed: least + self.ledger.encode_reserve(),
                    }
                }
                Reservation::TooSmall(needed) => {
                    self.stop.store(true, Ordering::Relaxed);
                    return SceneResult::TooSmall { needed };
                }
            }
        };
        let mut out = SceneOutput {
            local: Entries::new(),
            local_bytes: 0,
            own: None,
            tiles: Vec::new(),
            observations: 0,
        };
        let working = grant - fixed;
        if let Err(e) = self.cut_units(&prepared, &units, working, &mut out) {
            self.ledger.release(grant);
            // Dropping the scene's own batch deletes what it wrote.
            return match e {
                CutStop::Skipped(reason) => SceneResult::Skipped(SceneOutcome {
                    scene: scene.id.clone(),
                    reason,
                }),
                CutStop::Failed(reason) => failed(reason),
            };
        }
        let record = self.record(&prepared);
        let SceneOutput {
            local,
            local_bytes,
            own,
            tiles,
            observations,
        } = out;
        let result = match own {
            Some(own) => {
                let committed = self
                    .write_local(&own, local)
                    .and_then(|_| self.commit_own(own, record));
                self.ledger.release(grant);
                match committed {
                    Ok(mut c) if !c.skipped.is_empty() => {
                        SceneResult::Skipped(committed_elsewhere(c.skipped.remove(0)))
                    }
                    Ok(c) => SceneResult::Ingested {
                        bytes: prepared.bytes,
                        warnings: prepared.warnings.clone(),
                        observations,
                        cuts: tiles,
                        version: c.created.then_some(c.version),
                        in_main: false,
                    },
                    Err(e) => failed(e),
                }
            }
            None => {
                if let Err(e) = self.main.add_scene(record) {
                    self.ledger.release(grant);
                    return failed(e.to_string());
                }
                let moved = self.shared.merge(local);
                debug_assert_eq!(moved, local_bytes);
                let over = self.ledger.hand_over(grant, local_bytes);
                if over {
                    if let Err(e) = self.flush_shared() {
                        return failed(format!("writing fragments: {e}"));
                    }
                }
                SceneResult::Ingested {
                    bytes: prepared.bytes,
                    warnings: prepared.warnings.clone(),
                    observations,
                    cuts: tiles,
                    version: None,
                    in_main: true,
                }
            }
        };
        result
    }

    fn record(&self, prepared: &PreparedScene) -> SceneRecord {
        let footprint = prepared
            .files
            .first()
            .and_then(|f| {
                let b = f.cog.meta().bounds()?;
                Crs::from_epsg(f.epsg).ok()?.lonlat_bounds(&b).ok()
            })
            .map(|b| ring(&b))
            .unwrap_or_default();
        SceneRecord {
            scene_id: prepared.id.clone(),
            source: prepared.source.clone(),
            acquired: prepared.acquired,
            product: self.product.clone(),
            footprint_lonlat: footprint,
            cloud_cover: prepared.cloud_cover,
            fingerprint: prepared.fingerprint.clone(),
            scaling: prepared.scaling.clone(),
        }
    }

    /// Cuts every unit of a scene within `working` bytes, keeping its observations in
    /// `out.local` while they fit and moving them to the scene's own batch when not.
    fn cut_units(
        &self,
        prepared: &PreparedScene,
        units: &[Unit<'_>],
        working: u64,
        out: &mut SceneOutput<'a>,
    ) -> Result<(), CutStop> {
        for unit in units {
            let plan = match unit.choose(working.saturating_sub(out.local_bytes)) {
                Ok(plan) => plan,
                Err(_) => {
                    self.move_to_own(prepared, out)?;
                    unit.choose(working)
                        .map_err(|n| CutStop::Failed(format!("needs {n} bytes to cut")))?
                }
            };
            // Observations held before a step may not pass this.
            let cap = working.saturating_sub(plan.peak());
            let mut sink = |cuts: Vec<TileCut>, more: bool| -> Result<(), String> {
                out.tiles.extend(cuts.iter().map(|c| c.tile));
                out.observations += cuts.len();
                out.local_bytes += add_cuts(&mut out.local, &prepared.id, prepared.acquired, cuts);
                if more && out.local_bytes > cap {
                    self.move_to_own(prepared, out).map_err(|e| match e {
                        CutStop::Skipped(r) | CutStop::Failed(r) => r,
                    })?;
                }
                Ok(())
            };
            if let Err(e) = unit.cut(&plan, &mut sink) {
                return Err(CutStop::Failed(e.to_string()));
            }
        }
        out.tiles.sort_unstable();
        out.tiles.dedup();
        Ok(())
    }

    /// Writes the scene's held observations into its own batch (begun on first use).
    fn move_to_own(
        &self,
        prepared: &PreparedScene,
        out: &mut SceneOutput<'a>,
    ) -> Result<(), CutStop> {
        if out.own.is_none() {
            let own = self.warehouse.begin_batch();
            // A scene another writer committed since this run's snapshot is not cut twice;
            // one committed after this batch began is caught by its commit.
            let now = self
                .warehouse
                .snapshot(None)
                .map_err(|e| CutStop::Failed(e.to_string()))?;
            if now.has_scene_fingerprint(&prepared.fingerprint) {
                return Err(CutStop::Skipped(format!(
                    "already ingested (snapshot {})",
                    now.version()
                )));
            }
            out.own = Some(own);
        }
        let local = std::mem::take(&mut out.local);
        out.local_bytes = 0;
        if let Some(own) = &out.own {
            self.write_local(own, local)
                .map_err(|e| CutStop::Failed(format!("writing fragments: {e}")))?;
        }
        Ok(())
    }

    fn write_local(&self, batch: &Batch<'_>, local: Entries) -> Result<(), String> {
        if local.is_empty() {
            return Ok(());
        }
        self.progress.flushing(local.len());
        let written = write_entries(
            batch,
            local,
            &self.product,
            &self.grid,
            self.compressed,
            self.ledger.encode_reserve(),
            &|_| {},
        )
        .map_err(|e| e.to_string())?;
        self.count(written);
        Ok(())
    }

    fn commit_own(&self, own: Batch<'_>, record: SceneRecord) -> Result<Committed, String> {
        own.add_scene(record).map_err(|e| e.to_string())?;
        if let (Some(p), Some(json)) = (self.profile, &self.product_json) {
            own.register_product(&p.id, json.clone())
                .map_err(|e| e.to_string())?;
        }
        let committed = own.commit().map_err(|e| e.to_string())?;
        self.count_compaction(&committed.compaction);
        Ok(committed)
    }

    /// Adds what automatic compaction did after a commit to the run's totals.
    fn count_compaction(&self, compaction: &Option<Result<crate::store::AutoCompaction, String>>) {
        let mut totals = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        match compaction {
            Some(Ok(c)) => totals.add(c),
            Some(Err(e)) => totals.errors.push(e.clone()),
            None => {}
        }
    }

    fn count(&self, written: Written) {
        self.fragments
            .fetch_add(written.fragments, Ordering::Relaxed);
        self.bytes_out.fetch_add(written.bytes, Ordering::Relaxed);
    }

    /// Writes every observation waiting in the main batch as fragments.
    fn flush_shared(&self) -> Result<(), Error> {
        let entries = self.shared.take();
        if entries.is_empty() {
            return Ok(());
        }
        self.progress.flushing(entries.len());
        let written = write_entries(
            &self.main,
            entries,
            &self.product,
            &self.grid,
            self.compressed,
            self.ledger.encode_reserve(),
            &|bytes| self.ledger.written(bytes),
        )?;
        self.count(written);
        super::budget::release_freed_memory(self.ledger.budget());
        Ok(())
    }
}

/// The report of a scene another writer committed while this run was writing it.
fn committed_elsewhere(scene: SkippedScene) -> SceneOutcome {
    SceneOutcome {
        scene: scene.scene_id,
        reason: format!(
            "already ingested (committed by another writer as version {})",
            scene.version
        ),
    }
}

/// Why a scene's cut stopped.
enum CutStop {
    Skipped(String),
    Failed(String),
}
