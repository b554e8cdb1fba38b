//! The warehouse: where ingested imagery lives, safely and readably.
//!
//! ```text
//! warehouse/
//!   pixelquery.json                 grid spec, format version, fragment compression
//!   fragments/{tile}/{band}/        Arrow IPC files, one per (tile, band, product) and write
//!   catalog/                        a Delta Lake table of GeoParquet parts, partitioned by kind
//!     kind=fragment/part-*.parquet  one row per fragment
//!     kind=scene/part-*.parquet     one row per scene
//!     _delta_log/{version:020}.json the commit log; checkpoints every 10 versions
//! ```
//!
//! Nothing is ever modified in place. A [`Batch`] writes fragments (in parallel, from any
//! thread), then [`Batch::commit`] writes its catalog parts, makes everything durable, and
//! creates the next Delta log entry with create-if-absent; losing that race to another writer
//! just means reading the commits it missed, checking them for conflicts and trying the next
//! version. Readers take a [`Snapshot`] of one version and see whole commits only; every
//! version stays readable until [`vacuum`] expires it. Any Delta reader (deltalake, Polars,
//! DuckDB, Spark) sees the same catalog at every version; fragments live outside the table's
//! folder, so a third-party VACUUM of `catalog/` cannot touch them.
//!
//! ```
//! use pixelquery::store::*;
//! use pixelquery::{DataType, GeoTransform, GridSpec, TileId};
//! let dir = tempfile::tempdir().unwrap();
//! let grid = GridSpec { epsg: 32633, origin_x: 0.0, origin_y: 0.0, tile_size: 40.0 };
//! let wh = Warehouse::create(dir.path(), WarehouseConfig::new(grid)).unwrap();
//! let batch = wh.begin_batch();
//! let time = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
//! batch.write_fragment(FragmentData {
//!     tile: TileId::new(0, 0), band: "B04".into(), product: "S2".into(),
//!     dtype: DataType::U16, nodata: Some(0.0), scale: 1.0, offset: 0.0,
//!     tile_transform: GeoTransform::north_up(0.0, 40.0, 10.0, 10.0), width: 4, height: 4,
//!     footprint_lonlat: vec![(15.0, 0.0), (15.1, 0.0), (15.1, 0.1), (15.0, 0.1)],
//!     resolution: 10.0,
//!     observations: vec![Observation {
//!         time, scene_id: "scene-1".into(), pixels: vec![7u16; 16].into(), valid: None }],
//! }).unwrap();
//! let version = batch.commit().unwrap().version;
//! let snap = wh.snapshot(None).unwrap();
//! assert_eq!(snap.version(), version);
//! let fragment = snap.read_fragment(&snap.fragments()[0]).unwrap();
//! assert_eq!(fragment.pixels::<u16>(0).unwrap(), &[7u16; 16]);
//! ```

mod batch;
mod bitmap;
mod cache;
mod catalog;
mod codec;
mod compact;
mod confine;
mod delta;
mod fragment;
pub(crate) mod fuzz;
mod health;
mod history;
mod info;
mod ipc;
mod layout;
mod location;
mod merge;
mod parquet_check;
mod published;
mod reader;
mod scene_names;
mod snapshot;
mod storage;
mod syncer;
mod vacuum;
mod verify;
mod zstd_decode;
mod zstd_encode;

pub use arrow_buffer::BooleanBuffer;
pub use batch::{Batch, Committed, SkippedScene};
pub use bitmap::{pack_mask, pack_where};
pub use cache::{CacheStats, FragmentCache};
pub use catalog::{
    parse_wkb_polygon, wkb_polygon, BandScaling, FragmentEntry, PartKind, SceneEntry, SceneRecord,
};
pub use compact::auto::AutoCompaction;
pub use compact::background::{Background as BackgroundCompaction, CompactionTotals};
pub use compact::{compact, CompactPeriod, CompactReport};
pub use delta::{Version, CHECKPOINT_INTERVAL};
pub use fragment::{
    ChunkIndex, ChunkRun, ChunkShape, Fragment, FragmentData, FragmentMeta, Observation, Pixel,
    PixelBuffer, PixelStats, PixelWindow, FRAGMENT_FORMAT_VERSION,
};
pub use health::{check_latest_complete, completeness, restore, Completeness, RestoreReport};
pub use history::{CommitSummary, Operation};
pub use info::{BandSummary as InfoBand, WarehouseInfo};
pub use layout::validate_name;
pub use location::Location;
pub use merge::merge_catalog_parts;
pub use snapshot::{FragmentFilter, PartRef, Snapshot};
pub use storage::{EntryKind, Listed, LocalStorage, ObjectStorage, Storage};
pub use vacuum::{parse_duration, vacuum, SkipReason, Skipped, VacuumReport};
pub use verify::{verify, Problem, ProblemKind, VerifyReport};

use crate::dtype::DataType;
use crate::grid::{GridSpec, TileId};
use delta::action::{self, Action, CommitInfo, Metadata, Protocol};
use delta::{DeltaLog, TableState};
use layout::CONFIG_FILE;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the warehouse layout written by this code: 3 cuts fragments into chunks and
/// keeps each fragment's chunk index in its catalog row; 2 kept the catalog as a Delta Lake
/// table (version 1 had its own `_log/`).
pub const FORMAT_VERSION: u32 = 3;

/// Errors of the warehouse. Every variant about a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system error on a file or directory.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file the warehouse refers to does not exist.
    #[error("{path}: missing")]
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// A band, product or other name that would become a path is not acceptable.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What the name is for (`band`, `product`).
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The directory is not a warehouse (no `pixelquery.json`).
    #[error("{path}: not a PixelQuery warehouse (no {CONFIG_FILE})")]
    NotAWarehouse {
        /// The directory.
        path: PathBuf,
    },
    /// `create` on a directory that already holds a warehouse.
    #[error("{path}: a warehouse already exists here")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// `pixelquery.json` cannot be understood.
    #[error("{path}: bad warehouse configuration: {reason}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `open_or_create` with a grid that differs from the stored one.
    #[error("{path}: the warehouse uses grid {stored:?}, not {requested:?}")]
    GridMismatch {
        /// The configuration file.
        path: PathBuf,
        /// The stored grid.
        stored: GridSpec,
        /// The requested grid.
        requested: GridSpec,
    },
    /// Data handed to `write_fragment` is inconsistent.
    #[error("fragment {tile}/{band}: {reason}")]
    InvalidFragment {
        /// The tile.
        tile: TileId,
        /// The band.
        band: String,
        /// What is wrong.
        reason: String,
    },
    /// An Arrow error while writing a file.
    #[error("{path}: {source}")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: arrow_schema::ArrowError,
    },
    /// A Parquet error while writing a file.
    #[error("{path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// A fragment file is damaged or not a fragment.
    #[error("{path}: corrupt fragment: {reason}")]
    CorruptFragment {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A fragment written in a layout this program does not read (older or newer).
    #[error("{path}: fragment format version {found}; this program reads version {supported} only (re-ingest the scenes into a new warehouse)")]
    FragmentVersion {
        /// The file.
        path: PathBuf,
        /// The version the file declares.
        found: u32,
        /// The version this program reads.
        supported: u32,
    },
    /// A catalog part is damaged.
    #[error("{path}: corrupt catalog part: {reason}")]
    CorruptCatalog {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A commit-log entry is damaged or missing.
    #[error("{path}: corrupt commit log: {reason}")]
    CorruptLog {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The warehouse was written in an older layout this version cannot read.
    #[error("{path}: warehouse format version {version} ({layout}) is not readable by this version of PixelQuery, which reads format {FORMAT_VERSION} (fragments cut into chunks, indexed by a Delta Lake catalog); ingest the scenes again into a new warehouse")]
    OldFormat {
        /// The configuration file.
        path: PathBuf,
        /// Its format version.
        version: u32,
        /// What that layout was.
        layout: &'static str,
    },
    /// The catalog table needs Delta protocol features PixelQuery does not implement (e.g.
    /// another writer enabled deletion vectors).
    #[error("{path}: unsupported Delta table: {reason}")]
    UnsupportedTable {
        /// The log file or checkpoint that requires them.
        path: PathBuf,
        /// What is required.
        reason: String,
    },
    /// A file's size differs from what the catalog or log recorded.
    #[error("{path}: size is {actual} bytes, the warehouse recorded {expected}")]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Recorded size.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A file's checksum differs from the recorded one (neither value is shown: the file
    /// changed or is damaged, and that is all a reader needs to know).
    #[error("{path}: checksum differs from the one the warehouse recorded (the file was changed or damaged)")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
    },
    /// The log records no usable checksum for a catalog part (every part PixelQuery writes
    /// has one, in the `pixelquery.checksum` tag of its `add` action).
    #[error("{path}: the commit log records no valid checksum for this catalog part (tag pixelquery.checksum)")]
    MissingChecksum {
        /// The catalog part.
        path: PathBuf,
    },
    /// A path below the warehouse folder is a symbolic link: PixelQuery follows none, so
    /// nothing outside the warehouse is read, written or deleted through it.
    #[error("{path}: is a symbolic link; PixelQuery follows no link inside a warehouse (only the warehouse folder itself may be one)")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A key that would leave the warehouse folder (absolute, `..`, empty components).
    #[error("{key:?}: not a path inside the warehouse")]
    OutsideWarehouse {
        /// The key.
        key: String,
    },
    /// A file larger than any PixelQuery writes for its kind (a limit against hostile files).
    #[error("{path}: {size} bytes, more than the {limit} bytes a {what} may have")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What the file is (`commit`, `checkpoint`, `catalog part`...).
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A product profile registered in the catalog table is not a valid profile.
    #[error("{path}: product {product:?} (table property pixelquery.products): {reason}")]
    InvalidProfile {
        /// The log file (commit or checkpoint) that holds the table metadata.
        path: PathBuf,
        /// The product.
        product: String,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot version that does not exist yet.
    #[error("version {version} does not exist (latest is {latest})")]
    UnknownVersion {
        /// Requested version.
        version: Version,
        /// Latest version.
        latest: Version,
    },
    /// A snapshot version that was vacuumed.
    #[error("version {version} was vacuumed (the oldest readable is {oldest})")]
    Vacuumed {
        /// Requested version.
        version: Version,
        /// Oldest readable version.
        oldest: Version,
    },
    /// A batch registers a product whose profile differs from the committed one.
    #[error("product {product:?} is already registered with a different profile")]
    ProductConflict {
        /// The product.
        product: String,
    },
    /// A commit whose outcome could not be learnt: its request may have landed (a lost
    /// answer) and its log entry could not be read back. Nothing it names was deleted.
    #[error("{path}: the outcome of this commit is unknown ({reason}); nothing it names was deleted: run the same command again (it finds out what landed and finishes), then `pixelquery verify`")]
    CommitUnknown {
        /// The log entry.
        path: PathBuf,
        /// What the store answered.
        reason: String,
    },
    /// The warehouse's latest version names files that are gone: data was lost (by a bug,
    /// a hand edit or a foreign tool), and writing on top of it would bury the damage.
    #[error("{path}: version {version} references {missing} missing file(s), e.g. {example} (data loss); run `pixelquery verify` to list them and `pixelquery restore` to go back to the newest complete version, then re-run the ingest")]
    DataLoss {
        /// The warehouse.
        path: PathBuf,
        /// The damaged version.
        version: Version,
        /// How many referenced files are missing.
        missing: usize,
        /// One of them.
        example: String,
    },
    /// `restore` cannot go back to the version asked for.
    #[error("{path}: cannot restore: {reason}")]
    Restore {
        /// The warehouse.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A compaction lost a race with another compaction (nothing was changed).
    #[error("{path}: catalog part was removed by a concurrent commit; compaction abandoned")]
    CompactionConflict {
        /// A part this compaction meant to replace.
        path: PathBuf,
    },
    /// The log kept moving for too long while committing.
    #[error("{path}: gave up committing after {attempts} version conflicts")]
    TooManyConflicts {
        /// The log directory.
        path: PathBuf,
        /// Attempts made.
        attempts: u32,
    },
    /// Typed pixel access with the wrong type.
    #[error("{path}: pixels are {stored}, not {requested}")]
    DtypeMismatch {
        /// The fragment.
        path: PathBuf,
        /// The stored type.
        stored: DataType,
        /// The requested type.
        requested: DataType,
    },
    /// Pixel access past the last observation.
    #[error("{path}: observation {index} out of range (fragment has {len})")]
    ObservationIndex {
        /// The fragment.
        path: PathBuf,
        /// Requested index.
        index: usize,
        /// Number of observations.
        len: usize,
    },
    /// An object store (or HTTP server) failed or refused a request.
    #[error(transparent)]
    Remote(#[from] crate::source::Error),
    /// A warehouse location with a scheme no storage handles.
    #[error("{location}: unsupported warehouse location: {reason}")]
    UnsupportedLocation {
        /// The location as given.
        location: String,
        /// Why.
        reason: String,
    },
    /// The object store does not honour conditional creates, so concurrent commits could
    /// silently overwrite each other.
    #[error("{location}: the object store ignores conditional writes (If-None-Match: *): a second create of the probe object {probe} succeeded, so concurrent commits could overwrite each other; use a store that supports them (AWS S3, MinIO, SeaweedFS, R2...), or pass --unsafe-single-writer if only one process ever writes to this warehouse")]
    NoConditionalWrites {
        /// The warehouse.
        location: String,
        /// The probe object.
        probe: String,
    },
    /// A duration that `parse_duration` cannot read.
    #[error("invalid duration {text:?}: expected a number and a unit (s, m, h, d, w), e.g. 7d")]
    Duration {
        /// The text.
        text: String,
    },
}

/// Result of warehouse operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Body compression of fragment files (a warehouse setting, chosen when it is created).
///
/// Every setting is standard Arrow IPC that pyarrow and arrow-rs' reader understand (arrow-rs
/// reads ZSTD only with its C-based `zstd` feature). ZSTD (the default) writes the fewest
/// bytes and, with this crate's own encoder, compresses faster than LZ4; LZ4 writes about a
/// fifth more; `None` keeps reads zero-copy (memory-mapped) at about 1.4 times ZSTD's bytes.
/// Compressed fragments are decompressed once, when a snapshot opens them. The README lists
/// the measured costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FragmentCompression {
    /// Uncompressed IPC bodies: memory-mapped reads are zero-copy.
    None,
    /// LZ4 frame compression of each buffer (Arrow IPC `LZ4_FRAME`).
    Lz4,
    /// ZSTD compression of each buffer (Arrow IPC `ZSTD`): Huffman-coded blocks from this
    /// crate's own pure-Rust encoder.
    #[default]
    Zstd,
}

impl FragmentCompression {
    /// Parses `none`, `lz4` or `zstd` (any case).
    pub fn parse(s: &str) -> Option<FragmentCompression> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(FragmentCompression::None),
            "lz4" => Some(FragmentCompression::Lz4),
            "zstd" => Some(FragmentCompression::Zstd),
            _ => None,
        }
    }

    /// The setting's name as `parse` reads it.
    pub fn name(self) -> &'static str {
        match self {
            FragmentCompression::None => "none",
            FragmentCompression::Lz4 => "lz4",
            FragmentCompression::Zstd => "zstd",
        }
    }
}

/// The warehouse configuration: the grid and compression kept in `pixelquery.json`, and the
/// product profiles a new warehouse starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarehouseConfig {
    /// The tile grid every fragment is on.
    pub grid: GridSpec,
    /// Fragment body compression.
    #[serde(default)]
    pub compression: FragmentCompression,
    /// Crop each fragment to the window of its valid pixels (the default); `false` stores
    /// whole tiles, so every fragment of a band has the same shape.
    #[serde(default = "crop_by_default")]
    pub crop: bool,
    /// How fragments are cut into chunks (pixels per side, observations per block).
    #[serde(default)]
    pub chunk: ChunkShape,
    /// Product profiles registered when the warehouse is created (more can be registered by
    /// commits). They live in the catalog table's metadata, so every version has its own;
    /// [`Snapshot::products`] gives them. Empty on an opened warehouse.
    #[serde(default, skip_serializing)]
    pub products: BTreeMap<String, serde_json::Value>,
}

impl WarehouseConfig {
    /// A configuration with this grid, the default compression and no products.
    pub fn new(grid: GridSpec) -> Self {
        Self {
            grid,
            compression: FragmentCompression::default(),
            crop: true,
            chunk: ChunkShape::DEFAULT,
            products: BTreeMap::new(),
        }
    }
}

fn crop_by_default() -> bool {
    true
}

#[derive(Serialize, Deserialize)]
struct ConfigFile {
    format_version: u32,
    #[serde(flatten)]
    config: WarehouseConfig,
}

/// Largest `pixelquery.json` read (they are a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads `pixelquery.json` (`path` names it in errors): its format version, then every
/// field, checked as the writer checks them (grid CRS known, origin and tile size
/// plausible). Any problem is one error naming the file and the field.
pub(crate) fn parse_config(path: &Path, bytes: &[u8]) -> Result<WarehouseConfig> {
    #[derive(Deserialize)]
    struct VersionOnly {
        format_version: u32,
    }
    let bad = |reason: String| Error::Config {
        path: path.to_path_buf(),
        reason,
    };
    let version: VersionOnly = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    match version.format_version {
        FORMAT_VERSION => {}
        1 => {
            return Err(Error::OldFormat {
                path: path.to_path_buf(),
                version: 1,
                layout: "catalog replayed from its own _log/ folder",
            })
        }
        2 => {
            return Err(Error::OldFormat {
                path: path.to_path_buf(),
                version: 2,
                layout: "fragments compressed whole, one record batch each",
            })
        }
        v => {
            return Err(bad(format!(
                "format version {v} is not {FORMAT_VERSION}, the one this program reads"
            )))
        }
    }
    let cfg: ConfigFile = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    check_grid(&cfg.config.grid).map_err(bad)?;
    Ok(cfg.config)
}

/// Checks a grid, naming the field of `pixelquery.json` that is wrong.
fn check_grid(grid: &GridSpec) -> std::result::Result<(), String> {
    use crate::grid::Error as G;
    grid.validate().map_err(|e| {
        let field = match e {
            G::TileSize { .. } => "grid.tile_size",
            G::Origin { .. } => "grid.origin_x/origin_y",
            _ => "grid.epsg",
        };
        format!("{field}: {e}")
    })
}

/// Table property holding the product profiles (a JSON object, name → profile).
const PRODUCTS_PROPERTY: &str = "pixelquery.products";

/// Table property holding the searches whose results the warehouse keeps (a JSON object,
/// search id → search), re-run by `ingest --update`.
const SEARCHES_PROPERTY: &str = "pixelquery.searches";

/// The product profiles of a table state, each checked to be a valid profile with
/// plausible numbers (as ingest checks them): a bad one is an error naming the log file
/// that holds the metadata, the product and the field.
pub(crate) fn products_checked(
    storage: &dyn Storage,
    state: &TableState,
) -> Result<BTreeMap<String, serde_json::Value>> {
    let bad = |product: &str, reason: String| Error::InvalidProfile {
        path: storage.locate(&delta::log_file_key(state.metadata_from)),
        product: product.to_string(),
        reason,
    };
    let products = parse_products(&state.metadata).map_err(|reason| bad("", reason))?;
    for (name, value) in &products {
        check_profile(name, value).map_err(|reason| bad(name, reason))?;
    }
    Ok(products)
}

/// The products property as JSON (an absent property is no product).
fn parse_products(
    metadata: &Metadata,
) -> std::result::Result<BTreeMap<String, serde_json::Value>, String> {
    match metadata.configuration.get(PRODUCTS_PROPERTY) {
        None => Ok(BTreeMap::new()),
        Some(text) => {
            serde_json::from_str(text).map_err(|e| format!("not a JSON object of profiles: {e}"))
        }
    }
}

/// Checks one registered product: its name, and its profile as `ProductProfile::validate`
/// checks a profile file.
pub(crate) fn check_profile(
    name: &str,
    value: &serde_json::Value,
) -> std::result::Result<(), String> {
    layout::validate_name("product", name).map_err(|e| e.to_string())?;
    let profile: crate::profile::ProductProfile =
        serde_json::from_value(value.clone()).map_err(|e| format!("not a product profile: {e}"))?;
    profile.validate()
}

/// The stored searches recorded in the catalog table's metadata.
pub(crate) fn searches_of(metadata: &Metadata) -> BTreeMap<String, serde_json::Value> {
    metadata
        .configuration
        .get(SEARCHES_PROPERTY)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// The metadata of the catalog table of a new warehouse.
fn initial_metadata(products: &BTreeMap<String, serde_json::Value>) -> Metadata {
    let now = chrono::Utc::now();
    let seed = |s: &str| {
        use std::hash::Hasher;
        let mut h = twox_hash::XxHash3_64::with_seed(0);
        h.write(s.as_bytes());
        h.finish()
    };
    let configuration = BTreeMap::from([
        (
            "delta.checkpointInterval".to_string(),
            delta::CHECKPOINT_INTERVAL.to_string(),
        ),
        (
            PRODUCTS_PROPERTY.to_string(),
            serde_json::to_string(products).expect("JSON values serialise"),
        ),
        (
            "pixelquery.formatVersion".to_string(),
            FORMAT_VERSION.to_string(),
        ),
    ]);
    Metadata {
        id: action::uuid_from(seed(&layout::unique_id()), seed(&layout::unique_id())),
        name: Some("pixelquery_catalog".into()),
        description: Some(
            "PixelQuery catalog: one row per fragment (kind=fragment) and per scene (kind=scene); \
             fragment paths are relative to the warehouse root (the folder above this table)"
                .into(),
        ),
        format: action::Format {
            provider: "parquet".into(),
            options: BTreeMap::new(),
        },
        schema_string: delta::schema::schema_string(&catalog::table_schema()),
        partition_columns: vec![catalog::KIND_COLUMN.to_string()],
        configuration,
        created_time: Some(now.timestamp_millis()),
    }
}

/// One commit to make: built from the latest table state by the committer.
pub(crate) struct Commit {
    /// PixelQuery's name of the operation (`append`, `compact`, `merge`).
    pub operation: Operation,
    /// The actions (adds, removes, metadata); commit info is added.
    pub actions: Vec<Action>,
    /// Fields added to the commit info.
    pub info: serde_json::Map<String, serde_json::Value>,
}

/// How a warehouse is opened: settings that are not part of the warehouse itself.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Network settings for `s3://` warehouses (endpoint, region, timeouts, retries).
    pub remote: crate::source::RemoteOptions,
    /// Write even to an object store that ignores conditional creates. Safe only when a
    /// single process ever writes to the warehouse (`--unsafe-single-writer`).
    pub unsafe_single_writer: bool,
    /// Do not merge fragments automatically after commits (`ingest --no-auto-compact`).
    pub no_auto_compact: bool,
    /// Memory automatic compaction may use, in bytes (0: 256 MiB). Ingest passes its
    /// `--memory-budget`.
    pub compaction_memory: u64,
}

/// An open warehouse. Cheap to clone; safe to share between threads.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
    location: Location,
    storage: Arc<dyn Storage>,
    config: WarehouseConfig,
    options: OpenOptions,
    /// Whether the store's conditional creates were checked (once, before the first write).
    writes_checked: Arc<std::sync::OnceLock<()>>,
    /// Where commits hand the tile-bands they touched when a background worker compacts.
    compaction_queue: Option<compact::background::Queue>,
}

impl Warehouse {
    /// Creates a new warehouse at `location` (a folder, created if needed, or
    /// `s3://bucket/prefix`; it must not hold one already).
    pub fn create(location: impl AsRef<OsStr>, config: WarehouseConfig) -> Result<Warehouse> {
        Warehouse::create_with(location, config, &OpenOptions::default())
    }

    /// Like [`Warehouse::create`], with explicit [`OpenOptions`].
    pub fn create_with(
        location: impl AsRef<OsStr>,
        config: WarehouseConfig,
        options: &OpenOptions,
    ) -> Result<Warehouse> {
        let location = Location::parse(location)?;
        let storage = location.storage(&options.remote)?;
        let root = root_of(&location);
        check_grid(&config.grid).map_err(|reason| Error::Config {
            path: storage.locate(CONFIG_FILE),
            reason,
        })?;
        for (name, profile) in &config.products {
            check_profile(name, profile).map_err(|reason| Error::InvalidProfile {
                path: storage.locate(CONFIG_FILE),
                product: name.clone(),
                reason,
            })?;
        }
        let bytes = serde_json::to_vec_pretty(&ConfigFile {
            format_version: FORMAT_VERSION,
            config: config.clone(),
        })
        .map_err(|e| Error::Config {
            path: storage.locate(CONFIG_FILE),
            reason: e.to_string(),
        })?;
        let wh = Warehouse {
            root,
            location,
            storage,
            config,
            options: options.clone(),
            writes_checked: Arc::default(),
            compaction_queue: None,
        };
        wh.check_writes()?;
        if !wh.storage.put_if_absent(CONFIG_FILE, &bytes)? {
            return Err(Error::AlreadyExists { path: wh.root });
        }
        wh.ensure_initial_commit(&wh.config.products, false)?;
        Ok(wh)
    }

    /// Opens an existing warehouse (a folder or `s3://bucket/prefix`).
    pub fn open(location: impl AsRef<OsStr>) -> Result<Warehouse> {
        Warehouse::open_with(location, &OpenOptions::default())
    }

    /// Like [`Warehouse::open`], with explicit [`OpenOptions`].
    pub fn open_with(location: impl AsRef<OsStr>, options: &OpenOptions) -> Result<Warehouse> {
        let location = Location::parse(location)?;
        let storage = location.storage(&options.remote)?;
        let root = root_of(&location);
        let cfg_path = storage.locate(CONFIG_FILE);
        let bytes = match storage.read_limited(CONFIG_FILE, MAX_CONFIG_BYTES, "configuration") {
            Err(Error::MissingFile { .. }) => return Err(Error::NotAWarehouse { path: root }),
            r => r?,
        };
        let config = parse_config(&cfg_path, &bytes)?;
        let wh = Warehouse {
            root,
            location,
            storage,
            config,
            options: options.clone(),
            writes_checked: Arc::default(),
            compaction_queue: None,
        };
        wh.ensure_initial_commit(&BTreeMap::new(), true)?;
        Ok(wh)
    }

    /// Opens the warehouse at `location`, creating it with `config` if there is none. Safe
    /// when several processes race to create the same warehouse.
    pub fn open_or_create(
        location: impl AsRef<OsStr>,
        config: WarehouseConfig,
    ) -> Result<Warehouse> {
        Warehouse::open_or_create_with(location, config, &OpenOptions::default())
    }

    /// Like [`Warehouse::open_or_create`], with explicit [`OpenOptions`].
    pub fn open_or_create_with(
        location: impl AsRef<OsStr>,
        config: WarehouseConfig,
        options: &OpenOptions,
    ) -> Result<Warehouse> {
        let location = location.as_ref();
        let wh = match Warehouse::open_with(location, options) {
            Ok(wh) => wh,
            Err(Error::NotAWarehouse { .. }) => {
                match Warehouse::create_with(location, config.clone(), options) {
                    Err(Error::AlreadyExists { .. }) => Warehouse::open_with(location, options)?,
                    r => r?,
                }
            }
            Err(e) => return Err(e),
        };
        if wh.config.grid != config.grid {
            return Err(Error::GridMismatch {
                path: wh.storage.locate(CONFIG_FILE),
                stored: wh.config.grid,
                requested: config.grid,
            });
        }
        Ok(wh)
    }

    /// A crash between writing `pixelquery.json` and the first commit leaves no log; creating
    /// version 0 is idempotent (create-if-absent), so open simply finishes the job.
    /// `may_have_history` is false right after this process created `pixelquery.json`: no
    /// log can exist yet, so the listing below is skipped.
    fn ensure_initial_commit(
        &self,
        products: &BTreeMap<String, serde_json::Value>,
        may_have_history: bool,
    ) -> Result<()> {
        let log = self.log();
        let s = self.storage.as_ref();
        if s.exists(&delta::commit_key(0))? || s.exists(delta::LAST_CHECKPOINT)? {
            return Ok(());
        }
        // Vacuum deletes commit 0 once a checkpoint replaces it, and a killed checkpoint can
        // leave no `_last_checkpoint`: any commit or checkpoint means the table exists.
        if may_have_history {
            let listing = log.listing()?;
            if !listing.commits.is_empty() || !listing.checkpoints.is_empty() {
                return Ok(());
            }
        }
        let actions = [
            Action::CommitInfo(CommitInfo {
                timestamp: Some(chrono::Utc::now().timestamp_millis()),
                operation: Some("CREATE TABLE".into()),
                commit_id: Some(layout::unique_id()),
                pixelquery_operation: Some(Operation::Create.name().into()),
                other: Default::default(),
            }),
            Action::Protocol(Protocol::minimal()),
            Action::Metadata(initial_metadata(products)),
        ];
        log.try_commit(0, &actions)?;
        Ok(())
    }

    /// The warehouse directory (for `s3://` warehouses, the URL as a path: use
    /// [`Warehouse::storage`] to reach their files).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The warehouse's folder when it is a local one (fragments are memory-mapped from it).
    pub fn local_root(&self) -> Option<&Path> {
        match &self.location {
            Location::Local(_) => Some(&self.root),
            Location::S3(_) => None,
        }
    }

    /// Where the warehouse lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Makes sure concurrent writers cannot overwrite each other's commits: on an object
    /// store, once per open warehouse, creates a probe object twice and expects the second
    /// create to be refused. Local folders always honour create-if-absent.
    pub(crate) fn check_writes(&self) -> Result<()> {
        if matches!(self.location, Location::Local(_)) || self.writes_checked.get().is_some() {
            return Ok(());
        }
        let probe = format!("_pixelquery_probe/{}", layout::unique_id());
        let first = self.storage.put_if_absent(&probe, b"probe");
        let second = first
            .as_ref()
            .ok()
            .map(|_| self.storage.put_if_absent(&probe, b"probe again"));
        let _ = self.storage.delete(&probe);
        first?;
        let honoured = !second.expect("probed twice")?;
        if !honoured && !self.options.unsafe_single_writer {
            return Err(Error::NoConditionalWrites {
                location: self.location.display(),
                probe: self.storage.locate(&probe).display().to_string(),
            });
        }
        let _ = self.writes_checked.set(());
        Ok(())
    }

    /// The configuration from `pixelquery.json`.
    pub fn config(&self) -> &WarehouseConfig {
        &self.config
    }

    /// The options it was opened with.
    pub fn options(&self) -> &OpenOptions {
        &self.options
    }

    /// Starts automatic compaction on a worker thread: commits made through the returned
    /// handle hand the tile-bands they touched to the worker instead of merging before they
    /// return, so a long ingest decodes its next scenes while the last ones are merged.
    /// [`BackgroundCompaction::finish`] waits for the worker.
    pub fn background_compaction(&self) -> (Warehouse, BackgroundCompaction) {
        BackgroundCompaction::start(self)
    }

    fn with_compaction_queue(&self, queue: compact::background::Queue) -> Warehouse {
        Warehouse {
            compaction_queue: Some(queue),
            ..self.clone()
        }
    }

    /// The background worker's queue, when commits hand compaction to one.
    pub(crate) fn compaction_queue(&self) -> Option<&compact::background::Queue> {
        self.compaction_queue.as_ref()
    }

    /// How this warehouse writes fragments.
    pub(crate) fn fragment_settings(&self) -> fragment::write::FragmentSettings {
        fragment::write::FragmentSettings {
            epsg: self.config.grid.epsg,
            compression: self.config.compression,
            crop: self.config.crop,
            chunk: self.config.chunk,
        }
    }

    /// Where the warehouse's files are.
    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    pub(crate) fn storage_arc(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    pub(crate) fn log(&self) -> DeltaLog<'_> {
        DeltaLog::new(self.storage.as_ref())
    }

    /// The latest committed version.
    pub fn latest_version(&self) -> Result<Version> {
        self.log().latest_version()
    }

    /// Every commit still in the log, oldest first.
    pub fn history(&self) -> Result<Vec<CommitSummary>> {
        history::read(self)
    }

    /// A consistent view of the warehouse at `version` (the latest when `None`), with a
    /// fragment cache of its own.
    pub fn snapshot(&self, version: Option<Version>) -> Result<Snapshot> {
        self.snapshot_with_cache(version, &FragmentCache::default())
    }

    /// Like [`Warehouse::snapshot`], opening fragments through `cache`: snapshots of many
    /// versions given one cache share what they open, and memory stays within its budget
    /// however many versions a long-lived reader follows.
    pub fn snapshot_with_cache(
        &self,
        version: Option<Version>,
        cache: &FragmentCache,
    ) -> Result<Snapshot> {
        let state = self.log().state(version, false)?;
        Snapshot::load(self, &state, cache.clone())
    }

    /// Starts a batch of writes that becomes visible atomically on commit.
    pub fn begin_batch(&self) -> Batch<'_> {
        Batch::new(self)
    }

    /// Creates the next version with the commit `make` builds from the latest state, retrying
    /// on a fresh state whenever another writer took the version first. `make` returning
    /// `None` commits nothing. Returns the version and the state it created.
    pub(crate) fn commit(
        &self,
        mut make: impl FnMut(&TableState) -> Result<Option<Commit>>,
    ) -> Result<Option<(Version, TableState)>> {
        const MAX_ATTEMPTS: u32 = 10_000;
        self.check_writes()?;
        let log = self.log();
        let mut state = log.state(None, false)?;
        let commit_id = layout::unique_id();
        for attempt in 0..MAX_ATTEMPTS {
            delta::check_writable(&state.protocol).map_err(|reason| Error::UnsupportedTable {
                path: self.storage.locate(delta::LOG_DIR),
                reason,
            })?;
            let Some(mut commit) = make(&state)? else {
                return Ok(None);
            };
            // Parts this version writes may hold columns an older table lacks: declare them.
            if commit.actions.iter().any(|a| matches!(a, Action::Add(_))) {
                if let Some(schema) = upgraded_schema(&state.metadata.schema_string) {
                    match commit.actions.iter_mut().find_map(|a| match a {
                        Action::Metadata(m) => Some(m),
                        _ => None,
                    }) {
                        Some(m) => m.schema_string = schema,
                        None => {
                            let mut m = state.metadata.clone();
                            m.schema_string = schema;
                            commit.actions.insert(0, Action::Metadata(m));
                        }
                    }
                }
            }
            let version = state.version + 1;
            let now = chrono::Utc::now().timestamp_millis();
            let mut other = serde_json::Map::new();
            other.insert("readVersion".into(), state.version.into());
            other.insert(
                "engineInfo".into(),
                concat!("pixelquery/", env!("CARGO_PKG_VERSION")).into(),
            );
            let blind_append = commit.operation == Operation::Append
                && commit
                    .actions
                    .iter()
                    .all(|a| matches!(a, Action::Add(_) | Action::Metadata(_)));
            other.insert("isBlindAppend".into(), blind_append.into());
            other.extend(commit.info);
            let mut actions = vec![Action::CommitInfo(CommitInfo {
                timestamp: Some(now),
                operation: Some(commit.operation.delta_name().into()),
                commit_id: Some(format!("{commit_id}-{attempt}")),
                pixelquery_operation: Some(commit.operation.name().into()),
                other,
            })];
            actions.extend(commit.actions);
            if log.try_commit(version, &actions)? == delta::CommitOutcome::Landed {
                let mut after = state;
                if let Err(reason) = after.apply_commit(version, &actions) {
                    return Err(Error::UnsupportedTable {
                        path: self.storage.locate(&delta::commit_key(version)),
                        reason,
                    });
                }
                self.maintain(&after);
                return Ok(Some((version, after)));
            }
            // Lost the race: catch up with the commits we missed and rebuild the commit.
            log.advance(&mut state)?;
            if attempt > 2 {
                std::thread::sleep(std::time::Duration::from_micros(
                    50 * u64::from(attempt.min(200)),
                ));
            }
        }
        Err(Error::TooManyConflicts {
            path: self.storage.locate(delta::LOG_DIR),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Upkeep after a commit: a checkpoint when one is due. Best effort: the commit stands
    /// either way, and a missed checkpoint is written by a later commit.
    fn maintain(&self, state: &TableState) {
        let due = state.version.is_multiple_of(delta::CHECKPOINT_INTERVAL)
            || state.version - state.checkpoint.unwrap_or(0) >= 2 * delta::CHECKPOINT_INTERVAL;
        if due {
            let _ = self.checkpoint(state.version);
        }
    }

    /// Writes a Delta checkpoint of `version` (with its tombstones).
    pub(crate) fn checkpoint(&self, version: Version) -> Result<()> {
        let log = self.log();
        let full = log.state(Some(version), true)?;
        log.write_checkpoint(&full)
    }
}

/// What [`Warehouse::root`] shows for a location.
fn root_of(location: &Location) -> PathBuf {
    match location {
        Location::Local(p) => p.clone(),
        Location::S3(url) => PathBuf::from(url),
    }
}

/// The metadata a commit must carry for the products and searches it registers, or `None`
/// when the table already holds them. Products must agree with what the table holds
/// ([`check_products`]); searches are added by id (the same id is the same search).
pub(crate) fn check_metadata(
    state: &TableState,
    products: &BTreeMap<String, serde_json::Value>,
    searches: &BTreeMap<String, serde_json::Value>,
) -> Result<Option<Metadata>> {
    let mut metadata = check_products(state, products)?;
    let base = metadata.as_ref().unwrap_or(&state.metadata);
    let mut all = searches_of(base);
    let before = all.len();
    for (id, search) in searches {
        all.entry(id.clone()).or_insert_with(|| search.clone());
    }
    if all.len() != before {
        let mut m = metadata.unwrap_or_else(|| state.metadata.clone());
        m.configuration.insert(
            SEARCHES_PROPERTY.to_string(),
            serde_json::to_string(&all).expect("JSON values serialise"),
        );
        metadata = Some(m);
    }
    Ok(metadata)
}

/// The table schema a commit that adds catalog parts must declare: the table's own when it
/// has every column this version writes, else the table's columns followed by the missing
/// ones (a table created by an older version; adding nullable columns is a plain Delta
/// schema change that readers apply to older files as nulls).
fn upgraded_schema(current: &str) -> Option<String> {
    let ours: serde_json::Value =
        serde_json::from_str(&delta::schema::schema_string(&catalog::table_schema())).ok()?;
    let mut theirs: serde_json::Value = serde_json::from_str(current).ok()?;
    let names: std::collections::HashSet<String> = theirs["fields"]
        .as_array()?
        .iter()
        .filter_map(|f| f["name"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<serde_json::Value> = ours["fields"]
        .as_array()?
        .iter()
        .filter(|f| f["name"].as_str().is_some_and(|n| !names.contains(n)))
        .cloned()
        .collect();
    if missing.is_empty() {
        return None;
    }
    theirs["fields"].as_array_mut()?.extend(missing);
    Some(theirs.to_string())
}

/// Products registered by a commit must agree with what the table already holds.
pub(crate) fn check_products(
    state: &TableState,
    products: &BTreeMap<String, serde_json::Value>,
) -> Result<Option<Metadata>> {
    // Products registered before must read: a commit rewrites the whole property.
    let mut all = parse_products(&state.metadata).map_err(|reason| Error::InvalidProfile {
        path: PathBuf::from(delta::log_file_key(state.metadata_from)),
        product: String::new(),
        reason,
    })?;
    let mut changed = false;
    for (name, profile) in products {
        match all.get(name) {
            Some(existing) if existing == profile => {}
            Some(_) => {
                return Err(Error::ProductConflict {
                    product: name.clone(),
                })
            }
            None => {
                all.insert(name.clone(), profile.clone());
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    let mut metadata = state.metadata.clone();
    metadata.configuration.insert(
        PRODUCTS_PROPERTY.to_string(),
        serde_json::to_string(&all).expect("JSON values serialise"),
    );
    Ok(Some(metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> GridSpec {
        GridSpec {
            epsg: 32633,
            origin_x: 0.0,
            origin_y: 0.0,
            tile_size: 2560.0,
        }
    }

    #[test]
    fn create_open_and_refuse_twice() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = WarehouseConfig::new(grid());
        cfg.compression = FragmentCompression::Lz4;
        Warehouse::create(d.path(), cfg.clone()).unwrap();
        let wh = Warehouse::open(d.path()).unwrap();
        assert_eq!(wh.config(), &cfg);
        assert_eq!(wh.latest_version().unwrap(), 0);
        assert!(matches!(
            Warehouse::create(d.path(), cfg.clone()),
            Err(Error::AlreadyExists { .. })
        ));
        Warehouse::open_or_create(d.path(), cfg.clone()).unwrap();
        let mut other = cfg;
        other.grid.tile_size = 1.0;
        assert!(matches!(
            Warehouse::open_or_create(d.path(), other),
            Err(Error::GridMismatch { .. })
        ));
    }

    #[test]
    fn open_reports_missing_and_bad_config() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            Warehouse::open(d.path()),
            Err(Error::NotAWarehouse { .. })
        ));
        std::fs::write(d.path().join(CONFIG_FILE), b"{").unwrap();
        let e = Warehouse::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("pixelquery.json"), "{e}");
    }

    #[test]
    fn missing_initial_commit_is_repaired_on_open() {
        let d = tempfile::tempdir().unwrap();
        Warehouse::create(d.path(), WarehouseConfig::new(grid())).unwrap();
        std::fs::remove_file(
            d.path()
                .join("catalog/_delta_log/00000000000000000000.json"),
        )
        .unwrap();
        let wh = Warehouse::open(d.path()).unwrap();
        assert_eq!(wh.latest_version().unwrap(), 0);
    }

    #[test]
    fn implausible_grids_are_one_error_naming_the_file_and_field() {
        for (grid, field) in [
            (
                r#"{"epsg":32633,"origin_x":0,"origin_y":0,"tile_size":0}"#,
                "grid.tile_size",
            ),
            (
                r#"{"epsg":32633,"origin_x":0,"origin_y":0,"tile_size":-3840}"#,
                "grid.tile_size",
            ),
            (
                r#"{"epsg":32633,"origin_x":0,"origin_y":0,"tile_size":1e300}"#,
                "grid.tile_size",
            ),
            (
                r#"{"epsg":32633,"origin_x":1e308,"origin_y":0,"tile_size":3840}"#,
                "grid.origin",
            ),
            (
                r#"{"epsg":1,"origin_x":0,"origin_y":0,"tile_size":3840}"#,
                "grid.epsg",
            ),
        ] {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(
                d.path().join(CONFIG_FILE),
                format!(r#"{{"format_version":{FORMAT_VERSION},"grid":{grid}}}"#),
            )
            .unwrap();
            let e = Warehouse::open(d.path()).unwrap_err().to_string();
            assert!(e.contains(CONFIG_FILE) && e.contains(field), "{e}");
            let mut bad: GridSpec = serde_json::from_str(grid).unwrap();
            bad.epsg = bad.epsg.max(1);
            let e = Warehouse::create(d.path().join("new"), WarehouseConfig::new(bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn an_old_layout_is_one_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(CONFIG_FILE),
            br#"{"format_version":1,"grid":{"epsg":32633,"origin_x":0,"origin_y":0,"tile_size":1}}"#,
        )
        .unwrap();
        let e = Warehouse::open(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("format version 1") && e.contains("new warehouse"),
            "{e}"
        );
    }

    #[test]
    fn products_are_table_metadata_and_conflicts_are_refused() {
        let profile = |id: &str, res: f64| serde_json::json!({"id": id, "bands": [{"name": "B04", "resolution": res}]});
        let d = tempfile::tempdir().unwrap();
        let mut cfg = WarehouseConfig::new(grid());
        cfg.products.insert("S2".into(), profile("S2", 10.0));
        let wh = Warehouse::create(d.path(), cfg).unwrap();
        let state = wh.log().state(None, false).unwrap();
        let products = products_checked(wh.storage(), &state).unwrap();
        assert_eq!(products["S2"]["bands"][0]["name"], "B04");
        let same = BTreeMap::from([("S2".to_string(), profile("S2", 10.0))]);
        assert!(check_products(&state, &same).unwrap().is_none());
        let other = BTreeMap::from([("S2".to_string(), profile("S2", 20.0))]);
        assert!(matches!(
            check_products(&state, &other),
            Err(Error::ProductConflict { .. })
        ));
        let new = BTreeMap::from([("L8".to_string(), profile("L8", 30.0))]);
        let m = check_products(&state, &new).unwrap().unwrap();
        assert_eq!(parse_products(&m).unwrap().len(), 2);
    }

    #[test]
    fn invalid_products_are_refused_when_created_registered_and_read() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = WarehouseConfig::new(grid());
        let huge = serde_json::json!({"id": "S2", "bands": [{"name": "B04", "resolution": 10, "scale": 1e308}]});
        cfg.products.insert("S2".into(), huge.clone());
        let e = Warehouse::create(d.path(), cfg).unwrap_err().to_string();
        assert!(e.contains("\"S2\"") && e.contains("scale"), "{e}");
        let wh = Warehouse::create(d.path(), WarehouseConfig::new(grid())).unwrap();
        let e = wh
            .begin_batch()
            .register_product("S2", huge)
            .unwrap_err()
            .to_string();
        assert!(e.contains("scale 1e308"), "{e}");
        let e = wh
            .begin_batch()
            .register_product("S2", serde_json::json!({"bands": ["B04"]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a product profile"), "{e}");
    }
}
