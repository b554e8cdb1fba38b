//! The warehouse: where ingested imagery lives, safely and readably.
//!
//! ```text
//! warehouse/
//!   pixelquery.json              grid spec, format version, fragment compression, products
//!   fragments/{tile}/{band}/     Arrow IPC files, one per (tile, band, product) and write
//!   catalog/part-*.parquet       GeoParquet: one row per fragment / per scene
//!   _log/{version:020}.json      commit log: which catalog parts each commit adds/removes
//! ```
//!
//! Nothing is ever modified in place. A [`Batch`] writes fragments (in parallel, from any
//! thread), then [`Batch::commit`] writes its catalog parts, fsyncs, and creates the next
//! log entry with create-if-absent; losing that race to another writer just means re-reading
//! the log and trying the next version. Readers take a [`Snapshot`] of one version and see
//! whole commits only; every version stays readable until [`vacuum`] expires it.
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
//! let version = batch.commit().unwrap();
//! let snap = wh.snapshot(None).unwrap();
//! assert_eq!(snap.version(), version);
//! let fragment = snap.read_fragment(&snap.fragments()[0]).unwrap();
//! assert_eq!(fragment.pixels::<u16>(0).unwrap(), &[7u16; 16]);
//! ```

mod batch;
mod bitmap;
mod catalog;
mod codec;
mod compact;
mod fragment;
mod info;
mod ipc;
mod layout;
mod log;
mod snapshot;
mod syncer;
mod vacuum;
mod verify;
mod zstd_decode;
mod zstd_encode;

pub use arrow_buffer::BooleanBuffer;
pub use batch::Batch;
pub use bitmap::{pack_mask, pack_where};
pub use catalog::{parse_wkb_polygon, wkb_polygon, FragmentEntry, SceneEntry, SceneRecord};
pub use compact::{compact, CompactPeriod, CompactReport};
pub use fragment::{
    Fragment, FragmentData, FragmentMeta, Observation, Pixel, PixelBuffer, PixelStats, PixelWindow,
    FRAGMENT_FORMAT_VERSION,
};
pub use info::{BandSummary as InfoBand, WarehouseInfo};
pub use layout::validate_name;
pub use log::{LogEntry, Operation, PartKind, PartRef, Version};
pub use snapshot::{FragmentFilter, Snapshot};
pub use vacuum::{parse_duration, vacuum, VacuumReport};
pub use verify::{verify, Problem, ProblemKind, VerifyReport};

use crate::dtype::DataType;
use crate::grid::{GridSpec, TileId};
use layout::{
    create_if_absent, io_err, read_file, CATALOG_DIR, CONFIG_FILE, FRAGMENTS_DIR, LOG_DIR,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the warehouse layout written by this code.
pub const FORMAT_VERSION: u32 = 1;

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
    /// A file's checksum differs from the recorded one.
    #[error("{path}: checksum {actual} does not match the recorded {expected}")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Recorded checksum.
        expected: String,
        /// Computed checksum.
        actual: String,
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
    #[error("version {version} was vacuumed (oldest readable is {oldest})")]
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
    /// A batch's scene was committed by another writer since the batch began (or before:
    /// ingest should have skipped it). Nothing of the batch was committed.
    #[error(
        "scene {scene_id:?} (fingerprint {fingerprint:?}) is already committed (version {version})"
    )]
    SceneAlreadyCommitted {
        /// The scene.
        scene_id: String,
        /// Its fingerprint.
        fingerprint: String,
        /// The version that committed it.
        version: Version,
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

/// The warehouse configuration kept in `pixelquery.json`.
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
    /// Product profiles known at creation (more can be registered by commits).
    #[serde(default)]
    pub products: BTreeMap<String, serde_json::Value>,
}

impl WarehouseConfig {
    /// A configuration with this grid, the default compression and no products.
    pub fn new(grid: GridSpec) -> Self {
        Self {
            grid,
            compression: FragmentCompression::default(),
            crop: true,
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

/// An open warehouse. Cheap to clone; safe to share between threads.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
    config: WarehouseConfig,
}

impl Warehouse {
    /// Creates a new warehouse in `path` (created if needed; must not hold one already).
    pub fn create(path: impl AsRef<Path>, config: WarehouseConfig) -> Result<Warehouse> {
        let root = path.as_ref().to_path_buf();
        for name in config.products.keys() {
            layout::validate_name("product", name)?;
        }
        for d in [FRAGMENTS_DIR, CATALOG_DIR, LOG_DIR] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let cfg_path = root.join(CONFIG_FILE);
        let bytes = serde_json::to_vec_pretty(&ConfigFile {
            format_version: FORMAT_VERSION,
            config: config.clone(),
        })
        .map_err(|e| Error::Config {
            path: cfg_path.clone(),
            reason: e.to_string(),
        })?;
        if !create_if_absent(&cfg_path, &bytes)? {
            return Err(Error::AlreadyExists { path: root });
        }
        layout::sync_dir(&root)?;
        let wh = Warehouse { root, config };
        wh.ensure_initial_commit()?;
        Ok(wh)
    }

    /// Opens an existing warehouse.
    pub fn open(path: impl AsRef<Path>) -> Result<Warehouse> {
        let root = path.as_ref().to_path_buf();
        let cfg_path = root.join(CONFIG_FILE);
        let bytes = match read_file(&cfg_path) {
            Err(Error::MissingFile { .. }) => return Err(Error::NotAWarehouse { path: root }),
            r => r?,
        };
        let cfg: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            path: cfg_path.clone(),
            reason: e.to_string(),
        })?;
        if cfg.format_version > FORMAT_VERSION {
            return Err(Error::Config {
                path: cfg_path,
                reason: format!(
                    "format version {} is newer than this program's {FORMAT_VERSION}",
                    cfg.format_version
                ),
            });
        }
        let wh = Warehouse {
            root,
            config: cfg.config,
        };
        wh.ensure_initial_commit()?;
        Ok(wh)
    }

    /// Opens the warehouse in `path`, creating it with `config` if there is none. Safe when
    /// several processes race to create the same warehouse.
    pub fn open_or_create(path: impl AsRef<Path>, config: WarehouseConfig) -> Result<Warehouse> {
        let path = path.as_ref();
        let wh = match Warehouse::open(path) {
            Ok(wh) => wh,
            Err(Error::NotAWarehouse { .. }) => match Warehouse::create(path, config.clone()) {
                Err(Error::AlreadyExists { .. }) => Warehouse::open(path)?,
                r => r?,
            },
            Err(e) => return Err(e),
        };
        if wh.config.grid != config.grid {
            return Err(Error::GridMismatch {
                path: path.join(CONFIG_FILE),
                stored: wh.config.grid,
                requested: config.grid,
            });
        }
        Ok(wh)
    }

    /// A crash between writing `pixelquery.json` and the first log entry leaves no log;
    /// creating version 0 is idempotent (create-if-absent), so open simply finishes the job.
    fn ensure_initial_commit(&self) -> Result<()> {
        let dir = self.root.join(LOG_DIR);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        if log::list_versions(&self.root)?.first() == Some(&0) {
            return Ok(());
        }
        log::try_create(
            &self.root,
            &LogEntry {
                version: 0,
                timestamp: chrono::Utc::now(),
                operation: Operation::Create,
                add: vec![],
                remove: vec![],
                products: BTreeMap::new(),
                expire_before: None,
            },
        )?;
        Ok(())
    }

    /// The warehouse directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration from `pixelquery.json`.
    pub fn config(&self) -> &WarehouseConfig {
        &self.config
    }

    /// The latest committed version.
    pub fn latest_version(&self) -> Result<Version> {
        Ok(log::Log::read(&self.root)?.latest())
    }

    /// Every commit-log entry, oldest first.
    pub fn history(&self) -> Result<Vec<LogEntry>> {
        Ok(log::Log::read(&self.root)?.entries)
    }

    /// A consistent view of the warehouse at `version` (the latest when `None`).
    pub fn snapshot(&self, version: Option<Version>) -> Result<Snapshot> {
        let log = log::Log::read(&self.root)?;
        Snapshot::load(self, &log, version)
    }

    /// Starts a batch of writes that becomes visible atomically on commit.
    pub fn begin_batch(&self) -> Batch<'_> {
        Batch::new(self)
    }

    /// Creates the next log entry built by `make` from the current log, retrying with a
    /// fresh log whenever another writer took the version first.
    pub(crate) fn commit_entry(
        &self,
        mut make: impl FnMut(&log::Log) -> Result<LogEntry>,
    ) -> Result<Version> {
        const MAX_ATTEMPTS: u32 = 10_000;
        for attempt in 0..MAX_ATTEMPTS {
            let log = log::Log::read(&self.root)?;
            let mut entry = make(&log)?;
            entry.version = log.latest() + 1;
            if log::try_create(&self.root, &entry)? {
                return Ok(entry.version);
            }
            // Lost the race: back off a little (grows with the attempts) and rebase.
            if attempt > 2 {
                std::thread::sleep(std::time::Duration::from_micros(
                    50 * u64::from(attempt.min(200)),
                ));
            }
        }
        Err(Error::TooManyConflicts {
            path: self.root.join(LOG_DIR),
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// Products registered by a commit must agree with what the log already holds.
pub(crate) fn check_products(
    state: &log::LogState,
    config: &WarehouseConfig,
    products: &BTreeMap<String, serde_json::Value>,
) -> Result<()> {
    for (name, profile) in products {
        let existing = state
            .products
            .get(name)
            .or_else(|| config.products.get(name));
        if existing.is_some_and(|e| e != profile) {
            return Err(Error::ProductConflict {
                product: name.clone(),
            });
        }
    }
    Ok(())
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
        std::fs::remove_file(layout::log_path(d.path(), 0)).unwrap();
        let wh = Warehouse::open(d.path()).unwrap();
        assert_eq!(wh.latest_version().unwrap(), 0);
    }
}
