//! Cloud-Optimized GeoTIFF reader.
//!
//! [`Cog::open`] parses the TIFF/BigTIFF structure (with the `tiff` crate), the GeoTIFF
//! georeferencing and GDAL's metadata into an immutable [`CogMeta`]. Reads plan which blocks a
//! window needs, fetch their byte ranges through the [`ByteSource`] (merged when adjacent),
//! and decode them in parallel with this module's own codec layer; each block is decoded
//! exactly once per read.
//!
//! ```no_run
//! use pixelquery::cog::{Cog, Window};
//! let cog = Cog::open("scene.tif")?;
//! let meta = cog.meta();
//! println!("{}x{} px, {} bands of {:?}", meta.width(), meta.height(), meta.band_count(), meta.dtype());
//! let red = cog.read_window::<u16>(0, Window::new(0, 0, 256, 256), &[2])?;
//! # Ok::<(), pixelquery::cog::Error>(())
//! ```

mod blocks;
pub mod codec;
mod cursor;
mod gdal_metadata;
pub mod georef;
mod hash;
pub mod ifd;
mod info;
mod open;
mod predictor;
mod read;
pub mod tags;
pub mod writer;

pub use blocks::{BlockGrid, DecodedBlock};
pub use georef::{Georef, ModelType, RasterType};
pub use hash::PIXEL_HASH_DIGITS;
pub use ifd::Level;
pub use info::{BandSummary, CogInfo, OverviewSummary};
pub use read::{RasterData, Window};
pub use writer::{
    encode_cog, write_cog, CogWriter, Interleave, WriteCompression, WriteError, WriteOptions,
};

use crate::source::{ByteSource, LocalFile};
use crate::{Bounds, DataType};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Errors from opening or reading a GeoTIFF.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading bytes failed (the message names the file).
    #[error(transparent)]
    Source(#[from] crate::source::Error),
    /// The file is not a TIFF at all.
    #[error("{file}: not a TIFF file: {reason}")]
    NotTiff {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The TIFF structure (header, directories, tags) is damaged.
    #[error("{file}: damaged TIFF structure: {reason}")]
    Structure {
        /// The file.
        file: String,
        /// What the parser found.
        reason: String,
    },
    /// An image directory's tags describe an image the reader cannot use.
    #[error("{file}: image directory {ifd}: {reason}")]
    Layout {
        /// The file.
        file: String,
        /// Directory index in the IFD chain.
        ifd: usize,
        /// What is wrong.
        reason: String,
    },
    /// A block's byte range does not fit in the file.
    #[error("{file}: block {block} of level {level} claims bytes {start}..{end}, but the file has {size} bytes")]
    BlockOutsideFile {
        /// The file.
        file: String,
        /// Image level (0 = full resolution).
        level: usize,
        /// Block index.
        block: usize,
        /// Claimed start.
        start: u64,
        /// Claimed end.
        end: u64,
        /// File size.
        size: u64,
    },
    /// A block could not be decoded.
    #[error("{file}: block {block} of level {level}: {source}")]
    Decode {
        /// The file.
        file: String,
        /// Image level (0 = full resolution).
        level: usize,
        /// Block index.
        block: usize,
        /// What the codec said.
        #[source]
        source: codec::Error,
    },
    /// The file uses a compression, predictor or sample layout the reader does not implement.
    #[error("{file}: unsupported {what}: {value}")]
    Unsupported {
        /// The file.
        file: String,
        /// Which feature (`compression`, `predictor`, ...).
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// The caller asked for something the file does not have.
    #[error("{file}: {reason}")]
    BadRequest {
        /// The file.
        file: String,
        /// What was wrong with the request.
        reason: String,
    },
    /// A read would need more memory than the reader allows for one call.
    #[error(
        "{file}: reading {what} needs {bytes} bytes, more than the {limit}-byte limit of one read"
    )]
    TooLarge {
        /// The file.
        file: String,
        /// What was asked for.
        what: String,
        /// Bytes needed.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Per-band properties from GDAL's metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BandInfo {
    /// Band description (GDAL `DESCRIPTION`), e.g. `B04`.
    pub description: Option<String>,
    /// Multiplicative scale to physical values.
    pub scale: Option<f64>,
    /// Additive offset to physical values.
    pub offset: Option<f64>,
    /// Unit of the physical values.
    pub unit: Option<String>,
    /// Other band-level metadata items.
    pub metadata: BTreeMap<String, String>,
}

/// Everything known about a GeoTIFF after reading its header: immutable and cheap to share.
#[derive(Debug, Clone, Serialize)]
pub struct CogMeta {
    /// The file name or URL.
    pub name: String,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// BigTIFF (64-bit offsets) or classic TIFF.
    pub bigtiff: bool,
    /// Big-endian (`MM`) byte order.
    pub big_endian: bool,
    /// Image levels: `[0]` is full resolution, then overviews from largest to smallest.
    pub levels: Vec<Level>,
    /// Internal mask (GDAL mask IFD) per level, when present.
    pub masks: Vec<Option<Level>>,
    /// Georeferencing, when the file has any.
    pub georef: Option<Georef>,
    /// Band properties (one entry per band).
    pub bands: Vec<BandInfo>,
    /// Nodata value (GDAL applies one value to all bands).
    pub nodata: Option<f64>,
    /// Dataset-level GDAL metadata items (default domain), plus `TIFFTAG_DATETIME`.
    pub metadata: BTreeMap<String, String>,
    /// Acquisition time from the metadata (`ACQUISITION_DATETIME` and similar), else the TIFF
    /// `DateTime` tag.
    pub acquired: Option<DateTime<Utc>>,
    /// Things that were odd but not fatal (an IFD loop, an unusable extra directory).
    pub warnings: Vec<String>,
}

impl CogMeta {
    /// Full-resolution width in pixels.
    pub fn width(&self) -> u32 {
        self.levels[0].width
    }

    /// Full-resolution height in pixels.
    pub fn height(&self) -> u32 {
        self.levels[0].height
    }

    /// Number of bands.
    pub fn band_count(&self) -> usize {
        self.levels[0].samples_per_pixel as usize
    }

    /// Sample type of every band.
    pub fn dtype(&self) -> DataType {
        // Level 0 is only accepted with a byte-sized sample type (checked at open).
        self.levels[0].dtype.unwrap_or(DataType::U8)
    }

    /// Pixel-to-map transform of the full-resolution image.
    pub fn transform(&self) -> Option<crate::GeoTransform> {
        self.georef.as_ref().and_then(|g| g.transform)
    }

    /// EPSG code of the CRS.
    pub fn epsg(&self) -> Option<u32> {
        self.georef.as_ref().and_then(|g| g.epsg)
    }

    /// Bounds in the native CRS.
    pub fn bounds(&self) -> Option<Bounds> {
        self.transform()
            .map(|t| t.bounds(self.width() as u64, self.height() as u64))
    }

    /// Number of overview levels (excluding full resolution).
    pub fn overview_count(&self) -> usize {
        self.levels.len() - 1
    }

    /// True when the file has an internal (GDAL) mask for full resolution.
    pub fn has_mask(&self) -> bool {
        self.masks.first().is_some_and(|m| m.is_some())
    }
}

/// An opened GeoTIFF: shared metadata plus the byte source. Cheap to clone; reads take `&self`
/// and may run from many threads at once.
#[derive(Clone)]
pub struct Cog {
    source: Arc<dyn ByteSource>,
    meta: Arc<CogMeta>,
}

impl std::fmt::Debug for Cog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cog")
            .field("name", &self.meta.name)
            .finish()
    }
}

impl Cog {
    /// Opens a local GeoTIFF and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Cog> {
        let source = LocalFile::open(path)?;
        Cog::from_source(Arc::new(source))
    }

    /// Reads the header of a GeoTIFF from any byte source.
    pub fn from_source(source: Arc<dyn ByteSource>) -> Result<Cog> {
        let meta = open::read_meta(source.as_ref())?;
        Ok(Cog {
            source,
            meta: Arc::new(meta),
        })
    }

    /// The parsed header.
    pub fn meta(&self) -> &CogMeta {
        &self.meta
    }

    /// The byte source the file is read from.
    pub fn source(&self) -> &Arc<dyn ByteSource> {
        &self.source
    }

    /// SHA-256 over the full-resolution pixels (native type, little-endian, band-sequential),
    /// first [`PIXEL_HASH_DIGITS`] hex digits — the `pixels_sha256_16` of the corpus manifest.
    pub fn pixel_hash(&self) -> Result<String> {
        hash::pixel_hash(self, 0)
    }

    /// The same hash over one overview level (1 = first overview).
    pub fn level_hash(&self, level: usize) -> Result<String> {
        hash::pixel_hash(self, level)
    }
}
