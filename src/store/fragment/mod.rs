//! Fragments: one Arrow IPC file per (tile, band, product) and write, holding that tile's
//! observations sorted by time, cut into independently compressed chunks.
//!
//! Columns: `time` (timestamp[us, UTC]), `scene_id` (utf8) and `pixels` (a fixed-size list of
//! the band's native type: one chunk's pixels, row-major; the list's child validity marks
//! invalid pixels). Each record batch is one chunk of the tile for one block of observations;
//! the batches of a chunk follow each other (its *run*), so a pixel's whole history is one
//! contiguous byte range. The schema metadata (`pixelquery.*` keys) carries tile id, band,
//! product, grid CRS, tile geotransform, tile size, the stored window, dtype, nodata,
//! scale/offset, the chunk shape, the time blocks and the present chunks, so any Arrow reader
//! (pyarrow, DuckDB, arrow-rs) can interpret a fragment on its own. `FORMAT.md` beside this
//! file documents every field and invariant.
//!
//! Writes ([`write`]) cut whole-tile observations into chunk batches; reads ([`read`]) decode
//! only the batches a query touches and assemble a [`Fragment`] view of its window.

mod chunks;
pub(crate) mod read;
mod stats;
mod view;
pub(crate) mod write;

pub use chunks::{ChunkIndex, ChunkRun, ChunkShape};
pub use stats::PixelStats;
pub use view::Fragment;

use crate::dtype::{DataType, Sample};
use crate::geo::GeoTransform;
use crate::grid::TileId;
use crate::store::Result;
use arrow_buffer::{BooleanBuffer, Buffer};
use arrow_schema::{DataType as ArrowType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Version of the fragment layout written by this code (`pixelquery.format_version`).
/// Version 3 cut the pixels into chunks (one record batch per chunk and block of
/// observations); version 2 added the stored window and ZSTD buffers. Older fragments are
/// not read.
pub const FRAGMENT_FORMAT_VERSION: u32 = 3;

/// A rectangle of a tile's pixels: the part of the tile a fragment stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PixelWindow {
    /// First column (pixels from the tile's left edge).
    pub col: u32,
    /// First row (pixels from the tile's top edge).
    pub row: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl PixelWindow {
    /// The window of `width` x `height` pixels starting at column `col`, row `row`.
    pub fn new(col: u32, row: u32, width: u32, height: u32) -> Self {
        PixelWindow {
            col,
            row,
            width,
            height,
        }
    }

    /// The whole of a `width` x `height` tile.
    pub fn full(width: u32, height: u32) -> Self {
        PixelWindow::new(0, 0, width, height)
    }

    /// Number of pixels.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// True when this window is the whole `width` x `height` tile.
    pub fn is_full(&self, width: u32, height: u32) -> bool {
        *self == PixelWindow::full(width, height)
    }

    /// True when the window is not empty and lies inside a `width` x `height` tile.
    pub fn fits(&self, width: u32, height: u32) -> bool {
        self.width > 0
            && self.height > 0
            && self.col.checked_add(self.width).is_some_and(|e| e <= width)
            && self
                .row
                .checked_add(self.height)
                .is_some_and(|e| e <= height)
    }

    /// The tile columns the window covers.
    pub fn cols(&self) -> Range<usize> {
        self.col as usize..(self.col + self.width) as usize
    }

    /// The tile rows the window covers.
    pub fn rows(&self) -> Range<usize> {
        self.row as usize..(self.row + self.height) as usize
    }

    /// The smallest window holding both.
    pub fn union(&self, other: &PixelWindow) -> PixelWindow {
        let (c0, r0) = (self.col.min(other.col), self.row.min(other.row));
        let c1 = (self.col + self.width).max(other.col + other.width);
        let r1 = (self.row + self.height).max(other.row + other.height);
        PixelWindow::new(c0, r0, c1 - c0, r1 - r0)
    }

    pub(crate) fn from_ranges((cols, rows): (Range<usize>, Range<usize>)) -> Self {
        PixelWindow::new(
            cols.start as u32,
            rows.start as u32,
            cols.len() as u32,
            rows.len() as u32,
        )
    }
}

const META_PREFIX: &str = "pixelquery.";

/// A tile's pixels for one observation, in the band's native type.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PixelBuffer {
    /// Unsigned 8-bit samples.
    U8(Vec<u8>),
    /// Signed 8-bit samples.
    I8(Vec<i8>),
    /// Unsigned 16-bit samples.
    U16(Vec<u16>),
    /// Signed 16-bit samples.
    I16(Vec<i16>),
    /// Unsigned 32-bit samples.
    U32(Vec<u32>),
    /// Signed 32-bit samples.
    I32(Vec<i32>),
    /// 32-bit float samples.
    F32(Vec<f32>),
    /// 64-bit float samples.
    F64(Vec<f64>),
}

macro_rules! for_each_pixel_buffer {
    ($value:expr, $v:ident => $body:expr) => {
        match $value {
            PixelBuffer::U8($v) => $body,
            PixelBuffer::I8($v) => $body,
            PixelBuffer::U16($v) => $body,
            PixelBuffer::I16($v) => $body,
            PixelBuffer::U32($v) => $body,
            PixelBuffer::I32($v) => $body,
            PixelBuffer::F32($v) => $body,
            PixelBuffer::F64($v) => $body,
        }
    };
}

impl PixelBuffer {
    /// The sample type.
    pub fn dtype(&self) -> DataType {
        match self {
            PixelBuffer::U8(_) => DataType::U8,
            PixelBuffer::I8(_) => DataType::I8,
            PixelBuffer::U16(_) => DataType::U16,
            PixelBuffer::I16(_) => DataType::I16,
            PixelBuffer::U32(_) => DataType::U32,
            PixelBuffer::I32(_) => DataType::I32,
            PixelBuffer::F32(_) => DataType::F32,
            PixelBuffer::F64(_) => DataType::F64,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        for_each_pixel_buffer!(self, v => v.len())
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples as little-endian bytes (native order on every supported target).
    pub fn as_bytes(&self) -> &[u8] {
        for_each_pixel_buffer!(self, v => bytemuck::cast_slice(v.as_slice()))
    }

    /// Copies little-endian sample bytes into a buffer of `dtype`; `None` when the byte count
    /// is not a multiple of the sample size.
    pub fn from_bytes(dtype: DataType, bytes: &[u8]) -> Option<PixelBuffer> {
        fn typed<T: bytemuck::Pod>(bytes: &[u8]) -> Option<Vec<T>> {
            let size = std::mem::size_of::<T>();
            if !bytes.len().is_multiple_of(size) {
                return None;
            }
            // Copy into a correctly aligned Vec.
            let mut v = vec![T::zeroed(); bytes.len() / size];
            bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(bytes);
            Some(v)
        }
        Some(match dtype {
            DataType::U8 => PixelBuffer::U8(bytes.to_vec()),
            DataType::I8 => PixelBuffer::I8(typed(bytes)?),
            DataType::U16 => PixelBuffer::U16(typed(bytes)?),
            DataType::I16 => PixelBuffer::I16(typed(bytes)?),
            DataType::U32 => PixelBuffer::U32(typed(bytes)?),
            DataType::I32 => PixelBuffer::I32(typed(bytes)?),
            DataType::F32 => PixelBuffer::F32(typed(bytes)?),
            DataType::F64 => PixelBuffer::F64(typed(bytes)?),
        })
    }
}

macro_rules! pixel_buffer_from {
    ($t:ty, $variant:ident) => {
        impl From<Vec<$t>> for PixelBuffer {
            fn from(v: Vec<$t>) -> Self {
                PixelBuffer::$variant(v)
            }
        }
    };
}
pixel_buffer_from!(u8, U8);
pixel_buffer_from!(i8, I8);
pixel_buffer_from!(u16, U16);
pixel_buffer_from!(i16, I16);
pixel_buffer_from!(u32, U32);
pixel_buffer_from!(i32, I32);
pixel_buffer_from!(f32, F32);
pixel_buffer_from!(f64, F64);

/// A sample type that can be viewed zero-copy from fragment bytes.
pub trait Pixel: Sample + bytemuck::Pod {}
impl<T: Sample + bytemuck::Pod> Pixel for T {}

/// One scene's pixels on one tile and band.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Acquisition time (UTC).
    pub time: DateTime<Utc>,
    /// The scene the pixels come from.
    pub scene_id: String,
    /// Row-major tile pixels (`width * height` samples).
    pub pixels: PixelBuffer,
    /// Per-pixel validity bits (set = valid; build one with
    /// [`pack_mask`](super::pack_mask) or `BooleanBuffer::from(Vec<bool>)`). `None` derives
    /// it from the fragment's nodata value (and NaN for floats); with no nodata every pixel
    /// is valid.
    pub valid: Option<BooleanBuffer>,
}

/// Everything needed to write one fragment: a tile's observations for one band and product.
#[derive(Debug, Clone, PartialEq)]
pub struct FragmentData {
    /// The grid tile.
    pub tile: TileId,
    /// Band name (becomes a path component: validated).
    pub band: String,
    /// Product name (becomes part of a file name: validated).
    pub product: String,
    /// Sample type of every observation.
    pub dtype: DataType,
    /// Nodata value of the band, if any.
    pub nodata: Option<f64>,
    /// Scale applied to raw values to get physical values.
    pub scale: f64,
    /// Offset applied after scaling.
    pub offset: f64,
    /// Georeferencing of the tile's pixels in the grid CRS.
    pub tile_transform: GeoTransform,
    /// Tile width in pixels.
    pub width: u32,
    /// Tile height in pixels.
    pub height: u32,
    /// The tile footprint as a lon/lat polygon ring (closed or not).
    pub footprint_lonlat: Vec<(f64, f64)>,
    /// Native resolution of the band in grid units.
    pub resolution: f64,
    /// The observations, in any order (they are sorted by time when written).
    pub observations: Vec<Observation>,
}

impl FragmentData {
    /// New fragment contents with the tile, band and georeferencing of an existing
    /// fragment (`meta`), its catalog row's footprint and resolution, and `observations`
    /// (compaction and rewrites).
    pub fn refill(
        meta: &FragmentMeta,
        footprint_lonlat: Vec<(f64, f64)>,
        resolution: f64,
        observations: Vec<Observation>,
    ) -> FragmentData {
        FragmentData {
            tile: meta.tile,
            band: meta.band.clone(),
            product: meta.product.clone(),
            dtype: meta.dtype,
            nodata: meta.nodata,
            scale: meta.scale,
            offset: meta.offset,
            tile_transform: meta.transform,
            width: meta.width,
            height: meta.height,
            footprint_lonlat,
            resolution,
            observations,
        }
    }
}

/// Metadata of a fragment as stored in its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FragmentMeta {
    /// The grid tile.
    pub tile: TileId,
    /// Band name.
    pub band: String,
    /// Product name.
    pub product: String,
    /// EPSG code of the grid CRS.
    pub epsg: u32,
    /// Tile geotransform in the grid CRS.
    pub transform: GeoTransform,
    /// Tile width in pixels.
    pub width: u32,
    /// Tile height in pixels.
    pub height: u32,
    /// The window of the tile the fragment stores (pixels outside it are invalid).
    pub window: PixelWindow,
    /// Sample type.
    pub dtype: DataType,
    /// Nodata value, if any.
    pub nodata: Option<f64>,
    /// Scale to physical values.
    pub scale: f64,
    /// Offset to physical values.
    pub offset: f64,
    /// Fragment format version.
    pub format_version: u32,
    /// The chunk shape.
    pub chunk: ChunkShape,
    /// Observations of each time block, in order (every chunk run has these batches).
    pub blocks: Vec<u32>,
    /// The present chunks, in file order (ascending index).
    pub chunks: Vec<u32>,
}

impl FragmentMeta {
    pub(crate) fn to_metadata(&self) -> HashMap<String, String> {
        let gt = self.transform.to_gdal();
        let kv = [
            ("tile", self.tile.to_string()),
            ("band", self.band.clone()),
            ("product", self.product.clone()),
            ("crs", format!("EPSG:{}", self.epsg)),
            (
                "geotransform",
                serde_json::to_string(&gt).unwrap_or_default(),
            ),
            ("width", self.width.to_string()),
            ("height", self.height.to_string()),
            (
                "window",
                format!(
                    "[{}, {}, {}, {}]",
                    self.window.col, self.window.row, self.window.width, self.window.height
                ),
            ),
            ("dtype", self.dtype.name().to_string()),
            (
                "nodata",
                self.nodata.map(json_f64).unwrap_or_else(|| "null".into()),
            ),
            ("scale", json_f64(self.scale)),
            ("offset", json_f64(self.offset)),
            ("format_version", self.format_version.to_string()),
            (
                "chunk",
                format!(
                    "[{}, {}, {}]",
                    self.chunk.rows, self.chunk.cols, self.chunk.observations
                ),
            ),
            (
                "blocks",
                serde_json::to_string(&self.blocks).unwrap_or_default(),
            ),
            (
                "chunks",
                serde_json::to_string(&self.chunks).unwrap_or_default(),
            ),
        ];
        kv.into_iter()
            .map(|(k, v)| (format!("{META_PREFIX}{k}"), v))
            .collect()
    }

    pub(crate) fn from_metadata(md: &arrow_schema::Metadata) -> std::result::Result<Self, String> {
        let get = |k: &str| -> std::result::Result<&str, String> {
            md.get(&format!("{META_PREFIX}{k}"))
                .map(String::as_str)
                .ok_or_else(|| format!("schema metadata lacks {META_PREFIX}{k}"))
        };
        let bad = |k: &str, v: &str| format!("bad {META_PREFIX}{k} {v:?}");
        let tile = get("tile")?;
        let tile: TileId = tile.parse().map_err(|_| bad("tile", tile))?;
        let crs = get("crs")?;
        let epsg = crs
            .strip_prefix("EPSG:")
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("crs", crs))?;
        let gt = get("geotransform")?;
        let gt: [f64; 6] = serde_json::from_str(gt).map_err(|_| bad("geotransform", gt))?;
        let num = |k: &str| -> std::result::Result<f64, String> {
            let v = get(k)?;
            parse_json_f64(v).ok_or_else(|| bad(k, v))
        };
        let int = |k: &str| -> std::result::Result<u32, String> {
            let v = get(k)?;
            v.parse().map_err(|_| bad(k, v))
        };
        let dtype = get("dtype")?;
        let nodata = get("nodata")?;
        let (width, height) = (int("width")?, int("height")?);
        let window = get("window")?;
        let window = serde_json::from_str::<[u32; 4]>(window)
            .ok()
            .map(|[c, r, w, h]| PixelWindow::new(c, r, w, h))
            .filter(|w| w.fits(width, height))
            .ok_or_else(|| bad("window", window))?;
        let text = get("chunk")?;
        let chunk = serde_json::from_str::<[u32; 3]>(text)
            .ok()
            .map(|[rows, cols, observations]| ChunkShape {
                rows,
                cols,
                observations,
            })
            .filter(|c| c.check().is_ok() && c.rows <= height && c.cols <= width)
            .ok_or_else(|| bad("chunk", text))?;
        let text = get("blocks")?;
        let blocks: Vec<u32> = serde_json::from_str(text)
            .ok()
            .filter(|b: &Vec<u32>| !b.is_empty() && b.iter().all(|&n| n > 0))
            .ok_or_else(|| bad("blocks", text))?;
        let text = get("chunks")?;
        let count = chunk.count(width, height);
        let chunks: Vec<u32> = serde_json::from_str(text)
            .ok()
            .filter(|c: &Vec<u32>| {
                !c.is_empty() && c.windows(2).all(|w| w[0] < w[1]) && c.iter().all(|&k| k < count)
            })
            .ok_or_else(|| bad("chunks", text))?;
        Ok(FragmentMeta {
            tile,
            band: get("band")?.to_string(),
            product: get("product")?.to_string(),
            epsg,
            transform: GeoTransform::from_gdal(gt),
            width,
            height,
            window,
            dtype: DataType::parse(dtype).ok_or_else(|| bad("dtype", dtype))?,
            nodata: if nodata == "null" {
                None
            } else {
                Some(parse_json_f64(nodata).ok_or_else(|| bad("nodata", nodata))?)
            },
            scale: num("scale")?,
            offset: num("offset")?,
            format_version: int("format_version")?,
            chunk,
            blocks,
            chunks,
        })
    }
}

/// Numbers are stored as JSON numbers, with NaN/inf as strings JSON can hold.
fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        format!("\"{v}\"")
    }
}

fn parse_json_f64(s: &str) -> Option<f64> {
    let s = s.trim_matches('"');
    match s {
        "NaN" => Some(f64::NAN),
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

pub(crate) fn arrow_type(dtype: DataType) -> ArrowType {
    match dtype {
        DataType::U8 => ArrowType::UInt8,
        DataType::I8 => ArrowType::Int8,
        DataType::U16 => ArrowType::UInt16,
        DataType::I16 => ArrowType::Int16,
        DataType::U32 => ArrowType::UInt32,
        DataType::I32 => ArrowType::Int32,
        DataType::F32 => ArrowType::Float32,
        DataType::F64 => ArrowType::Float64,
    }
}

/// The `pixelquery.format_version` of a fragment's schema metadata.
pub(crate) fn format_version(md: &arrow_schema::Metadata) -> std::result::Result<u32, String> {
    let v = md
        .get(&format!("{META_PREFIX}format_version"))
        .ok_or_else(|| format!("schema metadata lacks {META_PREFIX}format_version"))?;
    v.parse()
        .map_err(|_| format!("bad {META_PREFIX}format_version {v:?}"))
}

/// The Arrow schema of a fragment file with this metadata: one chunk's pixels per row, the
/// scene ids dictionary-encoded (the dictionary holds each observation's scene once).
pub fn fragment_schema(meta: &FragmentMeta) -> Schema {
    let scene = ArrowType::Dictionary(Box::new(ArrowType::Int32), Box::new(ArrowType::Utf8));
    let fields = base_fields(meta.dtype, meta.chunk.samples() as i32, scene);
    Schema::new_with_metadata(fields, meta.to_metadata())
}

/// The Arrow schema of a view's record batch (its window's pixels per row).
pub(crate) fn view_schema(meta: &FragmentMeta) -> Schema {
    let fields = base_fields(meta.dtype, meta.window.pixels() as i32, ArrowType::Utf8);
    Schema::new_with_metadata(fields, meta.to_metadata())
}

fn base_fields(dtype: DataType, pixels: i32, scene: ArrowType) -> Vec<Field> {
    vec![
        Field::new(
            "time",
            ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("scene_id", scene, false),
        Field::new(
            "pixels",
            ArrowType::FixedSizeList(
                Arc::new(Field::new("item", arrow_type(dtype), true)),
                pixels,
            ),
            false,
        ),
    ]
}

impl Fragment {
    /// Memory-maps the fragment file at `path` and decodes all of it, checking its structure
    /// and schema. Any corruption is an error naming the file, never a panic.
    pub fn open(path: &Path) -> Result<Fragment> {
        let file = read::ChunkedFile::from_whole(path, read::map_file(path, None)?)?;
        whole_view(&file)
    }

    /// Like [`Fragment::open`], and first checks the file's XXH3 checksum (`xxh3:<hex>`)
    /// so that no damaged byte reaches the decoder.
    pub fn open_verified(path: &Path, checksum: &str) -> Result<Fragment> {
        let bytes = read::map_file(path, None)?;
        read::check_checksum(path, bytes.as_slice(), checksum)?;
        whole_view(&read::ChunkedFile::from_whole(path, bytes)?)
    }

    /// Decodes a whole fragment file held in memory (fetched from object storage, say);
    /// `path` names it in errors.
    pub fn from_buffer(path: &Path, bytes: Buffer) -> Result<Fragment> {
        whole_view(&read::ChunkedFile::from_whole(path, bytes)?)
    }
}

/// Every observation over the whole stored window, decoding each batch once.
pub(crate) fn whole_view(file: &read::ChunkedFile) -> Result<Fragment> {
    let window = file.meta().window;
    let n = file.observations()?.0.len();
    file.view(
        window,
        0..n,
        &|r, b| file.decode(r, b).map(Arc::new),
        read::Decoding::Parallel,
    )
}

#[cfg(test)]
mod tests;
