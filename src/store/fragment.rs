//! Fragments: one Arrow IPC file per (tile, band, product) and write, holding that tile's
//! observations sorted by time.
//!
//! Columns: `time` (timestamp[us, UTC]), `scene_id` (utf8) and `pixels` (a fixed-size list
//! of the band's native type, row-major pixels of the stored window; the list's child validity
//! marks nodata). The schema metadata (`pixelquery.*` keys) carries tile id, band, product,
//! grid CRS, tile geotransform, tile size, the stored window, dtype, nodata, scale/offset and
//! the format version, so any Arrow reader (pyarrow, DuckDB, arrow-rs) can interpret a
//! fragment on its own.
//!
//! A fragment stores only the window of its tile that holds data: the smallest rectangle
//! holding every valid pixel of every observation (the whole tile when a pixel on each side
//! is valid). Pixels outside it are invalid. Its buffers are compressed as the warehouse
//! says ([`FragmentCompression`]).
//!
//! Reads take the file's bytes (memory-mapped locally, or any in-memory [`Buffer`]) and
//! decode them once: pixel slices point into the mapping when the file is uncompressed, and
//! compressed buffers are decompressed when the fragment is opened.

use super::codec::Codec;
use super::layout::{format_checksum, io_err};
use super::{bitmap, ipc};
use super::{Error, FragmentCompression, Result};
use crate::dtype::{DataType, Sample};
use crate::geo::GeoTransform;
use crate::grid::TileId;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int8Type, UInt16Type, UInt32Type, UInt8Type,
};
use arrow_array::{
    ArrayRef, ArrowPrimitiveType, FixedSizeListArray, PrimitiveArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the fragment layout written by this code (`pixelquery.format_version`).
/// Version 2 added the stored window (`pixelquery.window`) and ZSTD buffers; version 1
/// fragments are not read.
pub const FRAGMENT_FORMAT_VERSION: u32 = 2;

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

    fn from_ranges((cols, rows): (Range<usize>, Range<usize>)) -> Self {
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
}

impl FragmentMeta {
    fn to_metadata(&self) -> HashMap<String, String> {
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
        ];
        kv.into_iter()
            .map(|(k, v)| (format!("{META_PREFIX}{k}"), v))
            .collect()
    }

    fn from_metadata(md: &arrow_schema::Metadata) -> std::result::Result<Self, String> {
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

/// Statistics of the valid pixels of a fragment (raw values, before scale/offset).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PixelStats {
    /// Number of valid pixels over all observations.
    pub valid_count: u64,
    /// Smallest valid value.
    pub min: Option<f64>,
    /// Largest valid value.
    pub max: Option<f64>,
    /// Mean of the valid values.
    pub mean: Option<f64>,
}

/// What writing a fragment produced (feeds the catalog row).
#[derive(Debug)]
pub(crate) struct WrittenFragment<W = File> {
    pub bytes: u64,
    pub checksum: String,
    pub time_min: DateTime<Utc>,
    pub time_max: DateTime<Utc>,
    pub observations: u64,
    /// The window of the tile the fragment stores.
    pub window: PixelWindow,
    pub stats: PixelStats,
    /// Where it was written: the file, still open and not yet fsynced, or the bytes.
    pub out: W,
}

impl<W> WrittenFragment<W> {
    /// The same facts with another `out`.
    pub(crate) fn with_out<V>(self, out: V) -> (WrittenFragment<V>, W) {
        let facts = WrittenFragment {
            bytes: self.bytes,
            checksum: self.checksum,
            time_min: self.time_min,
            time_max: self.time_max,
            observations: self.observations,
            window: self.window,
            stats: self.stats,
            out,
        };
        (facts, self.out)
    }
}

fn arrow_type(dtype: DataType) -> ArrowType {
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
fn format_version(md: &arrow_schema::Metadata) -> std::result::Result<u32, String> {
    let v = md
        .get(&format!("{META_PREFIX}format_version"))
        .ok_or_else(|| format!("schema metadata lacks {META_PREFIX}format_version"))?;
    v.parse()
        .map_err(|_| format!("bad {META_PREFIX}format_version {v:?}"))
}

/// The Arrow schema of a fragment with this metadata.
pub fn fragment_schema(meta: &FragmentMeta) -> Schema {
    let fields = base_fields(meta.dtype, meta.window.pixels() as i32);
    Schema::new_with_metadata(fields, meta.to_metadata())
}

fn base_fields(dtype: DataType, pixels: i32) -> Vec<Field> {
    vec![
        Field::new(
            "time",
            ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("scene_id", ArrowType::Utf8, false),
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

/// A writer that hashes (XXH3-64) and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: twox_hash::XxHash3_64,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.write(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Validates `data` against itself (sizes, dtypes), sorts its observations by time and
/// writes it to `path` (which must not exist), cropped to the window of its valid pixels
/// when `crop` is set. The caller fsyncs it before committing.
pub(crate) fn write_fragment_file(
    path: &Path,
    data: &mut FragmentData,
    epsg: u32,
    compression: FragmentCompression,
    crop: bool,
) -> Result<WrittenFragment> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    let out = BufWriter::with_capacity(256 * 1024, file);
    let (written, out) = encode_fragment(out, path, data, epsg, compression, crop)?.with_out(());
    let file = out.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    // Not fsynced here: the caller hands the file to background sync threads or fsyncs
    // it with the other files of its commit.
    Ok(written.with_out(file).0)
}

/// Like [`write_fragment_file`], into memory (for object storage, which takes whole
/// objects); `name` names the fragment in errors.
pub(crate) fn write_fragment_bytes(
    name: &Path,
    data: &mut FragmentData,
    epsg: u32,
    compression: FragmentCompression,
    crop: bool,
) -> Result<WrittenFragment<Vec<u8>>> {
    encode_fragment(Vec::new(), name, data, epsg, compression, crop)
}

/// Checks, sorts, crops and encodes `data` into `out`; `path` names it in errors.
fn encode_fragment<W: Write>(
    out: W,
    path: &Path,
    data: &mut FragmentData,
    epsg: u32,
    compression: FragmentCompression,
    crop: bool,
) -> Result<WrittenFragment<W>> {
    let (tile, band) = (data.tile, data.band.clone());
    let invalid = move |reason: String| Error::InvalidFragment {
        tile,
        band: band.clone(),
        reason,
    };
    let pixels = (data.width as u64) * (data.height as u64);
    if pixels == 0 || pixels > i32::MAX as u64 {
        return Err(invalid(format!(
            "tile size {}x{} is empty or too large",
            data.width, data.height
        )));
    }
    if data.observations.is_empty() {
        return Err(invalid("no observations".into()));
    }
    let pixels = pixels as usize;
    for o in &data.observations {
        if o.pixels.dtype() != data.dtype {
            return Err(invalid(format!(
                "observation {} has {} pixels, fragment dtype is {}",
                o.scene_id,
                o.pixels.dtype(),
                data.dtype
            )));
        }
        if o.pixels.len() != pixels {
            return Err(invalid(format!(
                "observation {} has {} pixels, expected {}x{}={pixels}",
                o.scene_id,
                o.pixels.len(),
                data.width,
                data.height
            )));
        }
        if let Some(v) = &o.valid {
            if v.len() != pixels {
                return Err(invalid(format!(
                    "observation {} has a validity mask of {} entries, expected {pixels}",
                    o.scene_id,
                    v.len()
                )));
            }
        }
    }
    data.observations.sort_by(|a, b| {
        a.time
            .cmp(&b.time)
            .then_with(|| a.scene_id.cmp(&b.scene_id))
    });

    let (w, h) = (data.width as usize, data.height as usize);
    let (parts, stats) = match data.dtype {
        DataType::U8 => validity_and_stats::<u8>(data),
        DataType::I8 => validity_and_stats::<i8>(data),
        DataType::U16 => validity_and_stats::<u16>(data),
        DataType::I16 => validity_and_stats::<i16>(data),
        DataType::U32 => validity_and_stats::<u32>(data),
        DataType::I32 => validity_and_stats::<i32>(data),
        DataType::F32 => validity_and_stats::<f32>(data),
        DataType::F64 => validity_and_stats::<f64>(data),
    };
    let parts: Vec<Option<&BooleanBuffer>> = parts.iter().map(Option::as_ref).collect();
    let window = if crop {
        valid_window(&parts, w, h)
    } else {
        PixelWindow::full(data.width, data.height)
    };
    let meta = FragmentMeta {
        tile: data.tile,
        band: data.band.clone(),
        product: data.product.clone(),
        epsg,
        transform: data.tile_transform,
        width: data.width,
        height: data.height,
        window,
        dtype: data.dtype,
        nodata: data.nodata,
        scale: data.scale,
        offset: data.offset,
        format_version: FRAGMENT_FORMAT_VERSION,
    };
    let schema = Arc::new(fragment_schema(&meta));
    let times: Vec<i64> = data
        .observations
        .iter()
        .map(|o| o.time.timestamp_micros())
        .collect();
    let time_min = data.observations[0].time;
    let time_max = data.observations[data.observations.len() - 1].time;
    // The window's pixels, streamed from the observations' own buffers: whole observations
    // for a full tile, else row slices. No concatenated copy.
    let full = window.is_full(data.width, data.height);
    let bits = if full {
        bitmap::concat(&parts, pixels)
    } else {
        bitmap::crop(&parts, w, (window.cols(), window.rows()))
    };
    let nulls = bits.map(NullBuffer::new).filter(|n| n.null_count() > 0);
    let size = data.dtype.size();
    let pixel_bytes: Vec<&[u8]> = if full {
        data.observations
            .iter()
            .map(|o| o.pixels.as_bytes())
            .collect()
    } else {
        let cols = window.cols();
        data.observations
            .iter()
            .flat_map(|o| {
                let bytes = o.pixels.as_bytes();
                let cols = cols.clone();
                window
                    .rows()
                    .map(move |r| &bytes[(r * w + cols.start) * size..(r * w + cols.end) * size])
            })
            .collect()
    };
    let scene_ids: Vec<&str> = data
        .observations
        .iter()
        .map(|o| o.scene_id.as_str())
        .collect();
    let columns = ipc::FragmentColumns {
        times: &times,
        scene_ids: &scene_ids,
        pixels: &pixel_bytes,
        pixels_per_row: window.pixels(),
        validity: nulls.as_ref().map(|n| (n.inner(), n.null_count())),
    };
    let codec = match compression {
        FragmentCompression::None => None,
        FragmentCompression::Lz4 => Some(Codec::Lz4Frame),
        FragmentCompression::Zstd => Some(Codec::Zstd),
    };

    let mut sink = HashingWriter {
        inner: out,
        hasher: twox_hash::XxHash3_64::with_seed(0),
        bytes: 0,
    };
    ipc::write_fragment_ipc(&mut sink, &schema, &columns, codec).map_err(|e| Error::Arrow {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(WrittenFragment {
        out: sink.inner,
        bytes: sink.bytes,
        checksum: format_checksum(sink.hasher.finish()),
        time_min,
        time_max,
        observations: data.observations.len() as u64,
        window,
        stats,
    })
}

/// The union of the windows of the observations' valid pixels (`None` = all valid); a
/// single corner pixel when no observation has any.
fn valid_window(parts: &[Option<&BooleanBuffer>], width: usize, height: usize) -> PixelWindow {
    let mut union: Option<PixelWindow> = None;
    for part in parts {
        let Some(bits) = part else {
            return PixelWindow::full(width as u32, height as u32);
        };
        if let Some(rect) = bitmap::set_rect(bits, width) {
            let w = PixelWindow::from_ranges(rect);
            union = Some(union.map_or(w, |u| u.union(&w)));
        }
    }
    union.unwrap_or(PixelWindow::new(0, 0, 1, 1))
}

/// The observations' pixels of type `T` (the dtype was checked against the fragment's).
fn typed<T: Pixel>(buf: &PixelBuffer) -> &[T] {
    bytemuck::try_cast_slice(buf.as_bytes()).unwrap_or(&[])
}

/// The validity of each observation's pixels (its own bits, else derived from the nodata
/// value and NaN; `None` when all are valid) and the statistics of the valid values.
fn validity_and_stats<T: Pixel + StatSample>(
    data: &FragmentData,
) -> (Vec<Option<BooleanBuffer>>, PixelStats) {
    let nodata = data.nodata.map(T::from_f64);
    let nodata_is_nan = data.nodata.is_some_and(f64::is_nan);
    let is_float = data.dtype.is_float();
    let derives = nodata.is_some() || is_float;
    let mut acc = StatAcc::default();
    let parts = data
        .observations
        .iter()
        .map(|o| {
            let px: &[T] = typed(&o.pixels);
            let bits = match &o.valid {
                Some(bits) => Some(bits.clone()),
                // A vectorised scan first: most tiles have no nodata at all.
                None if derives
                    && px.chunks(4096).any(|c| {
                        c.iter().fold(false, |acc, &v| {
                            acc | !pixel_valid(v, nodata, nodata_is_nan, is_float)
                        })
                    }) =>
                {
                    bitmap::pack_where(px, |v| pixel_valid(v, nodata, nodata_is_nan, is_float))
                }
                None => None,
            };
            accumulate_stats(&mut acc, px, bits.as_ref());
            bits
        })
        .collect();
    (parts, acc.finish())
}

#[inline]
fn pixel_valid<T: Sample + PartialOrd>(
    v: T,
    nodata: Option<T>,
    nodata_is_nan: bool,
    is_float: bool,
) -> bool {
    // NaN is never a valid measurement (NaN != NaN, so `v == v` is the NaN test).
    #[allow(clippy::eq_op)]
    let not_nan = !is_float || v == v;
    not_nan && (nodata_is_nan || nodata != Some(v))
}

/// Min, max, mean and count of the valid values.
#[cfg(test)]
fn pixel_stats<T: StatSample>(values: &[T], valid: Option<&BooleanBuffer>) -> PixelStats {
    let mut acc = StatAcc::default();
    accumulate_stats(&mut acc, values, valid);
    acc.finish()
}

/// Adds the valid values to `acc`: runs of valid values in vectorised blocks, the rest one
/// by one.
fn accumulate_stats<T: StatSample>(acc: &mut StatAcc, values: &[T], valid: Option<&BooleanBuffer>) {
    match valid {
        None => {
            for block in values.chunks(4096) {
                acc.add_block(block);
            }
        }
        Some(bits) => {
            // Runs of all-valid words go through the vectorised block path; mixed words
            // are added value by value.
            let mut run_start = 0;
            let chunks = bits.bit_chunks();
            for (i, word) in chunks.iter_padded().enumerate() {
                let start = i * 64;
                if start >= values.len() {
                    break;
                }
                let block = &values[start..(start + 64).min(values.len())];
                if word == u64::MAX && block.len() == 64 {
                    continue;
                }
                if start > run_start {
                    acc.add_block(&values[run_start..start]);
                }
                run_start = start + block.len();
                if word != 0 {
                    for (j, &v) in block.iter().enumerate() {
                        if word >> j & 1 == 1 {
                            acc.add_one(v);
                        }
                    }
                }
            }
            if values.len() > run_start {
                acc.add_block(&values[run_start..]);
            }
        }
    }
}

/// Sums a block of samples exactly and fast: integers in `i64` (vectorised, exact),
/// floats in eight independent `f64` lanes.
pub(crate) trait StatSample: Sample + PartialOrd {
    fn block_sum(block: &[Self]) -> f64;
}

macro_rules! int_stat_sample {
    ($($t:ty),*) => {$(
        impl StatSample for $t {
            fn block_sum(block: &[Self]) -> f64 {
                // 2^16 samples of at most 2^32 fit an i64 many times over.
                block
                    .chunks(1 << 16)
                    .map(|c| c.iter().map(|&v| v as i64).sum::<i64>() as f64)
                    .sum()
            }
        }
    )*};
}
int_stat_sample!(u8, i8, u16, i16, u32, i32);

macro_rules! float_stat_sample {
    ($($t:ty),*) => {$(
        impl StatSample for $t {
            fn block_sum(block: &[Self]) -> f64 {
                // Independent lanes: no serial dependency, so the loop vectorises.
                let mut lanes = [0.0f64; 8];
                let chunks = block.chunks_exact(8);
                let rest: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
                for c in chunks {
                    for j in 0..8 {
                        lanes[j] += c[j] as f64;
                    }
                }
                lanes.iter().sum::<f64>() + rest
            }
        }
    )*};
}
float_stat_sample!(f32, f64);

#[derive(Default)]
struct StatAcc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl StatAcc {
    #[inline]
    fn add_block<T: StatSample>(&mut self, block: &[T]) {
        let Some(&first) = block.first() else {
            return;
        };
        // Sixteen independent min/max lanes so the compiler emits packed min/max.
        let mut mins = [first; 16];
        let mut maxs = [first; 16];
        let chunks = block.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..16 {
                if c[j] < mins[j] {
                    mins[j] = c[j];
                }
                if c[j] > maxs[j] {
                    maxs[j] = c[j];
                }
            }
        }
        let (mut mn, mut mx) = (first, first);
        for &v in mins.iter().chain(maxs.iter()).chain(rest) {
            if v < mn {
                mn = v;
            }
            if v > mx {
                mx = v;
            }
        }
        let sum = T::block_sum(block);
        if self.count == 0 {
            self.min = mn.to_f64();
            self.max = mx.to_f64();
        } else {
            self.min = self.min.min(mn.to_f64());
            self.max = self.max.max(mx.to_f64());
        }
        self.count += block.len() as u64;
        self.sum += sum;
    }

    #[inline]
    fn add_one<T: Sample>(&mut self, v: T) {
        let x = v.to_f64();
        if self.count == 0 {
            (self.min, self.max) = (x, x);
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        self.sum += x;
    }

    fn finish(self) -> PixelStats {
        if self.count == 0 {
            return PixelStats::default();
        }
        PixelStats {
            valid_count: self.count,
            min: Some(self.min),
            max: Some(self.max),
            mean: Some(self.sum / self.count as f64),
        }
    }
}

/// A fragment opened for reading: decoded into an Arrow record batch whose pixel buffer
/// points into the file's bytes (a memory mapping, or any buffer) when the file is
/// uncompressed, and into one decompressed copy when it is compressed.
#[derive(Debug, Clone)]
pub struct Fragment {
    path: PathBuf,
    meta: FragmentMeta,
    batch: RecordBatch,
    times: ScalarBuffer<i64>,
    scene_ids: StringArray,
    values: Buffer,
    validity: Option<BooleanBuffer>,
    /// Samples per observation (the stored window).
    pixels: usize,
    zero_copy: bool,
    compression: FragmentCompression,
}

impl Fragment {
    /// Memory-maps and decodes the fragment at `path`, checking its structure and schema.
    /// Any corruption is an error naming the file, never a panic.
    pub fn open(path: &Path) -> Result<Fragment> {
        Self::open_impl(path, None, None)
    }

    /// Like [`Fragment::open`], and first checks the file's XXH3 checksum (`xxh3:<hex>`)
    /// so that no damaged byte reaches the decoder.
    pub fn open_verified(path: &Path, checksum: &str) -> Result<Fragment> {
        Self::open_impl(path, Some(checksum), None)
    }

    /// Decodes a fragment file held in memory (fetched from object storage, say); `path`
    /// names it in errors. Uncompressed pixels stay views into `bytes`.
    pub fn from_buffer(path: &Path, bytes: Buffer) -> Result<Fragment> {
        Self::decode_checked(path, bytes, None)
    }

    /// Like [`Fragment::from_buffer`], first checking the bytes' checksum when one is given.
    pub(crate) fn from_buffer_checked(
        path: &Path,
        bytes: Buffer,
        checksum: Option<&str>,
    ) -> Result<Fragment> {
        Self::decode_checked(path, bytes, checksum)
    }

    /// Maps a fragment file opened by the caller (the warehouse opens it without following
    /// links) whose recorded size and (optionally) checksum are known; `path` names it.
    pub(crate) fn open_file_expecting(
        path: &Path,
        file: File,
        bytes: u64,
        checksum: Option<&str>,
    ) -> Result<Fragment> {
        Self::map_file(path, file, checksum, Some(bytes))
    }

    fn open_impl(path: &Path, checksum: Option<&str>, bytes: Option<u64>) -> Result<Fragment> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::MissingFile {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(path)(e)
            }
        })?;
        Self::map_file(path, file, checksum, bytes)
    }

    fn map_file(
        path: &Path,
        file: File,
        checksum: Option<&str>,
        bytes: Option<u64>,
    ) -> Result<Fragment> {
        let len = file.metadata().map_err(io_err(path))?.len();
        if let Some(expected) = bytes.filter(|&b| b != len) {
            return Err(Error::SizeMismatch {
                path: path.to_path_buf(),
                expected,
                actual: len,
            });
        }
        let corrupt = |reason: String| Error::CorruptFragment {
            path: path.to_path_buf(),
            reason,
        };
        if len < 32 {
            return Err(corrupt(format!("only {len} bytes: truncated")));
        }
        let len = usize::try_from(len).map_err(|_| corrupt("file too large".into()))?;
        // SAFETY: warehouse files are immutable once written (the commit protocol never
        // rewrites or truncates a file; only vacuum deletes unreferenced ones), so the
        // mapping stays valid and unchanged while this Fragment holds it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))?;
        let ptr = std::ptr::NonNull::new(map.as_ptr() as *mut u8)
            .ok_or_else(|| corrupt("empty mapping".into()))?;
        // SAFETY: `ptr` points to `len` readable bytes owned by `map`, which the Buffer keeps
        // alive (the Arc is its owner) for as long as any slice of it exists.
        let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(map)) };
        Self::decode_checked(path, buffer, checksum)
    }

    /// Checks the checksum if one is given, then decodes.
    fn decode_checked(path: &Path, bytes: Buffer, checksum: Option<&str>) -> Result<Fragment> {
        if let Some(expected) = checksum {
            let actual = super::layout::checksum(bytes.as_slice());
            if actual != expected {
                return Err(Error::ChecksumMismatch {
                    path: path.to_path_buf(),
                });
            }
        }
        // Typed views need 8-byte alignment: a mapping is page aligned, other buffers may
        // not be.
        let bytes = if bytes.as_ptr().align_offset(8) == 0 {
            bytes
        } else {
            Buffer::from_slice_ref(bytes.as_slice())
        };
        let decoded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(path, &bytes)));
        match decoded {
            Ok(r) => r,
            // Defence in depth: the structure is validated before anything is built from
            // it, but a panic on hostile bytes must still become an error naming the file.
            Err(_) => Err(Error::CorruptFragment {
                path: path.to_path_buf(),
                reason: "decoder failed on malformed data".into(),
            }),
        }
    }

    /// The file this fragment was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Metadata from the schema.
    pub fn meta(&self) -> &FragmentMeta {
        &self.meta
    }

    /// The window of the tile this fragment stores: [`Fragment::pixels`] and
    /// [`Fragment::validity`] cover it, row-major; the tile's other pixels are invalid.
    pub fn window(&self) -> PixelWindow {
        self.meta.window
    }

    /// How the file's buffers are compressed.
    pub fn compression(&self) -> FragmentCompression {
        self.compression
    }

    /// Number of observations.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// True when the fragment holds no observation.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Acquisition time of observation `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`, like slice indexing.
    pub fn time(&self, i: usize) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.times[i]).unwrap_or_default()
    }

    /// All observation times as microseconds since the Unix epoch (sorted).
    pub fn times_micros(&self) -> &[i64] {
        &self.times
    }

    /// Scene id of observation `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn scene_id(&self, i: usize) -> &str {
        self.scene_ids.value(i)
    }

    /// Raw little-endian pixel bytes of observation `i`'s window (zero-copy).
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn pixel_bytes(&self, i: usize) -> &[u8] {
        assert!(i < self.len(), "observation {i} out of range");
        let size = self.pixels * self.meta.dtype.size();
        &self.values.as_slice()[i * size..(i + 1) * size]
    }

    /// Typed pixels of observation `i`'s window (see [`Fragment::window`]), zero-copy;
    /// errors when `T` is not the fragment's dtype or `i` is out of range.
    pub fn pixels<T: Pixel>(&self, i: usize) -> Result<&[T]> {
        if T::DTYPE != self.meta.dtype {
            return Err(Error::DtypeMismatch {
                path: self.path.clone(),
                stored: self.meta.dtype,
                requested: T::DTYPE,
            });
        }
        if i >= self.len() {
            return Err(Error::ObservationIndex {
                path: self.path.clone(),
                index: i,
                len: self.len(),
            });
        }
        // Aligned: the file's bytes are (see `decode_checked`), IPC buffers are 8-byte
        // aligned in them, and decompressed buffers are allocated aligned.
        bytemuck::try_cast_slice(self.pixel_bytes(i)).map_err(|e| Error::CorruptFragment {
            path: self.path.clone(),
            reason: format!("pixel buffer cannot be viewed as {}: {e}", T::DTYPE),
        })
    }

    /// Validity bits of observation `i`'s window (`None` = every pixel valid), zero-copy.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn validity(&self, i: usize) -> Option<BooleanBuffer> {
        assert!(i < self.len(), "observation {i} out of range");
        self.validity
            .as_ref()
            .map(|v| v.slice(i * self.pixels, self.pixels))
    }

    /// Validity of observation `i`'s window as one bool per pixel.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn valid_mask(&self, i: usize) -> Vec<bool> {
        match self.validity(i) {
            Some(v) => v.iter().collect(),
            None => vec![true; self.pixels],
        }
    }

    /// Observation `i` over the whole tile (a copy): the window's pixels in place, the
    /// nodata value (else 0) and invalid bits around them. Writing it back gives the same
    /// fragment.
    pub fn observation(&self, i: usize) -> Result<Observation> {
        macro_rules! expand {
            ($t:ty) => {
                PixelBuffer::from(self.tile_pixels::<$t>(i)?)
            };
        }
        let pixels = match self.meta.dtype {
            DataType::U8 => expand!(u8),
            DataType::I8 => expand!(i8),
            DataType::U16 => expand!(u16),
            DataType::I16 => expand!(i16),
            DataType::U32 => expand!(u32),
            DataType::I32 => expand!(i32),
            DataType::F32 => expand!(f32),
            DataType::F64 => expand!(f64),
        };
        let m = &self.meta;
        let valid = if m.window.is_full(m.width, m.height) {
            self.validity(i)
        } else {
            Some(bitmap::expand(
                self.validity(i).as_ref(),
                (m.width as usize, m.height as usize),
                (m.window.cols(), m.window.rows()),
            ))
        };
        Ok(Observation {
            time: self.time(i),
            scene_id: self.scene_id(i).to_string(),
            pixels,
            valid,
        })
    }

    /// Observation `i`'s pixels over the whole tile, nodata (else 0) outside the window.
    fn tile_pixels<T: Pixel>(&self, i: usize) -> Result<Vec<T>> {
        let window = self.pixels::<T>(i)?;
        let m = &self.meta;
        let w = m.width as usize;
        let fill = T::from_f64(m.nodata.unwrap_or(0.0));
        let mut tile = vec![fill; w * m.height as usize];
        let cols = m.window.cols();
        for (src, r) in window.chunks_exact(cols.len()).zip(m.window.rows()) {
            tile[r * w + cols.start..r * w + cols.end].copy_from_slice(src);
        }
        Ok(tile)
    }

    /// The whole fragment as an Arrow record batch.
    pub fn record_batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// True when the pixel data is read straight from the file's bytes (uncompressed).
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }
}

/// Decodes a fragment file: structure, then the schema against its own metadata (format
/// version first), then the batch's buffers against the schema.
fn decode(path: &Path, file: &Buffer) -> Result<Fragment> {
    let corrupt = |reason: String| Error::CorruptFragment {
        path: path.to_path_buf(),
        reason,
    };
    let (schema, block) = ipc::read_footer(file.as_slice()).map_err(corrupt)?;
    let version = format_version(schema.metadata()).map_err(corrupt)?;
    if version != FRAGMENT_FORMAT_VERSION {
        return Err(Error::FragmentVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FRAGMENT_FORMAT_VERSION,
        });
    }
    // The schema must be exactly the one its own metadata describes, before any decoding.
    let meta = FragmentMeta::from_metadata(schema.metadata()).map_err(corrupt)?;
    let pixels = meta.window.pixels();
    if pixels > i32::MAX as usize {
        return Err(corrupt(format!(
            "window of {}x{} pixels out of range",
            meta.window.width, meta.window.height
        )));
    }
    let expected = base_fields(meta.dtype, pixels as i32);
    if schema.fields().len() != expected.len()
        || expected
            .iter()
            .zip(schema.fields().iter())
            .any(|(e, f)| e.name() != f.name() || e.data_type() != f.data_type())
    {
        return Err(corrupt(format!(
            "schema does not match a {} fragment of a {}x{} window",
            meta.dtype, meta.window.width, meta.window.height
        )));
    }
    let shape = ipc::BatchShape {
        pixels_per_row: pixels,
        sample_size: meta.dtype.size(),
    };
    let buffers = ipc::read_batch(file, block, shape).map_err(corrupt)?;
    from_buffers(path, meta, Arc::new(schema), buffers, file).map_err(corrupt)
}

/// Builds the fragment's arrays from its checked buffers.
fn from_buffers(
    path: &Path,
    meta: FragmentMeta,
    schema: SchemaRef,
    b: ipc::BatchBuffers,
    file: &Buffer,
) -> std::result::Result<Fragment, String> {
    let rows = b.rows;
    let pixels = meta.window.pixels();
    let times = ScalarBuffer::<i64>::new(b.times, 0, rows);
    let offsets = ScalarBuffer::<i32>::new(b.offsets, 0, rows + 1);
    if offsets[0] < 0
        || offsets.windows(2).any(|w| w[1] < w[0])
        || offsets[rows] as usize > b.text.len()
    {
        return Err("scene id offsets are out of order or out of range".into());
    }
    let scene_ids = StringArray::try_new(OffsetBuffer::new(offsets), b.text, None)
        .map_err(|e| format!("scene ids: {e}"))?;
    let n = rows * pixels;
    let validity = b.validity.map(|v| BooleanBuffer::new(v, 0, n));
    let values = b.values.slice_with_length(0, n * meta.dtype.size());
    let file_range = file.as_ptr() as usize..file.as_ptr() as usize + file.len();
    let zero_copy = values.is_empty() || file_range.contains(&(values.as_ptr() as usize));
    let items = primitive_array(
        meta.dtype,
        values.clone(),
        validity.clone().map(NullBuffer::new),
    )?;
    let item = Arc::new(Field::new("item", arrow_type(meta.dtype), true));
    let list = FixedSizeListArray::try_new(item, pixels as i32, items, None)
        .map_err(|e| format!("pixels: {e}"))?;
    let time = TimestampMicrosecondArray::new(times.clone(), None).with_timezone("UTC");
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(time), Arc::new(scene_ids.clone()), Arc::new(list)],
    )
    .map_err(|e| e.to_string())?;
    let compression = match b.codec {
        None => FragmentCompression::None,
        Some(Codec::Lz4Frame) => FragmentCompression::Lz4,
        Some(Codec::Zstd) => FragmentCompression::Zstd,
    };
    Ok(Fragment {
        path: path.to_path_buf(),
        meta,
        batch,
        times,
        scene_ids,
        values,
        validity,
        pixels,
        zero_copy,
        compression,
    })
}

/// The pixel values as an Arrow array of the fragment's type.
fn primitive_array(
    dtype: DataType,
    values: Buffer,
    nulls: Option<NullBuffer>,
) -> std::result::Result<ArrayRef, String> {
    fn typed<A: ArrowPrimitiveType>(
        values: Buffer,
        nulls: Option<NullBuffer>,
    ) -> std::result::Result<ArrayRef, String> {
        let len = values.len() / std::mem::size_of::<A::Native>();
        PrimitiveArray::<A>::try_new(ScalarBuffer::new(values, 0, len), nulls)
            .map(|a| Arc::new(a) as ArrayRef)
            .map_err(|e| format!("pixel values: {e}"))
    }
    match dtype {
        DataType::U8 => typed::<UInt8Type>(values, nulls),
        DataType::I8 => typed::<Int8Type>(values, nulls),
        DataType::U16 => typed::<UInt16Type>(values, nulls),
        DataType::I16 => typed::<Int16Type>(values, nulls),
        DataType::U32 => typed::<UInt32Type>(values, nulls),
        DataType::I32 => typed::<Int32Type>(values, nulls),
        DataType::F32 => typed::<Float32Type>(values, nulls),
        DataType::F64 => typed::<Float64Type>(values, nulls),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FragmentCompression; 3] = [
        FragmentCompression::None,
        FragmentCompression::Lz4,
        FragmentCompression::Zstd,
    ];

    fn sample(dtype_nodata: Option<f64>) -> FragmentData {
        let t = |d: u32| DateTime::from_timestamp(1_700_000_000 + d as i64 * 86_400, 0).unwrap();
        FragmentData {
            tile: TileId::new(3, -2),
            band: "B04".into(),
            product: "S2".into(),
            dtype: DataType::U16,
            nodata: dtype_nodata,
            scale: 1e-4,
            offset: -0.1,
            tile_transform: GeoTransform::north_up(500_000.0, 4_000_000.0, 10.0, 10.0),
            width: 4,
            height: 2,
            footprint_lonlat: vec![(15.0, 36.0), (15.1, 36.0), (15.1, 36.1), (15.0, 36.1)],
            resolution: 10.0,
            observations: vec![
                Observation {
                    time: t(5),
                    scene_id: "late".into(),
                    pixels: vec![0u16, 1, 2, 3, 4, 5, 6, 7].into(),
                    valid: None,
                },
                Observation {
                    time: t(1),
                    scene_id: "early".into(),
                    pixels: vec![10u16, 11, 12, 13, 14, 15, 16, 17].into(),
                    valid: None,
                },
            ],
        }
    }

    #[test]
    fn round_trip_sorted_with_nodata_mask_and_stats() {
        for compression in ALL {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("f.arrow");
            let mut data = sample(Some(0.0));
            let w = write_fragment_file(&p, &mut data, 32633, compression, true).unwrap();
            assert_eq!(w.observations, 2);
            assert_eq!(w.bytes, std::fs::metadata(&p).unwrap().len());
            assert_eq!(
                w.checksum,
                super::super::layout::checksum(&std::fs::read(&p).unwrap())
            );
            // Pixel 0 of "late" is nodata: 15 valid values 1..=7 and 10..=17.
            assert_eq!(w.stats.valid_count, 15);
            assert_eq!(w.stats.min, Some(1.0));
            assert_eq!(w.stats.max, Some(17.0));
            let sum: u32 = (1..=7).sum::<u32>() + (10..=17).sum::<u32>();
            assert!((w.stats.mean.unwrap() - sum as f64 / 15.0).abs() < 1e-12);

            let f = Fragment::open(&p).unwrap();
            assert_eq!(f.len(), 2);
            assert_eq!(f.scene_id(0), "early");
            assert_eq!(f.scene_id(1), "late");
            assert!(f.time(0) < f.time(1));
            assert_eq!(
                f.pixels::<u16>(0).unwrap(),
                &[10, 11, 12, 13, 14, 15, 16, 17]
            );
            assert_eq!(f.pixels::<u16>(1).unwrap(), &[0, 1, 2, 3, 4, 5, 6, 7]);
            assert!(f.validity(0).is_some_and(|v| v.count_set_bits() == 8));
            assert_eq!(f.valid_mask(1)[..3], [false, true, true]);
            // (Compressed files store buffers this small as they are: zero-copy too.)
            assert!(f.is_zero_copy() || compression != FragmentCompression::None);
            assert_eq!(f.compression(), compression);
            assert_eq!(f.window(), PixelWindow::full(4, 2));
            assert!(f.pixels::<f32>(0).is_err());
            assert!(f.pixels::<u16>(2).is_err());
            let m = f.meta();
            assert_eq!(
                (m.tile, m.band.as_str(), m.product.as_str()),
                (TileId::new(3, -2), "B04", "S2")
            );
            assert_eq!(
                (m.epsg, m.width, m.height, m.dtype),
                (32633, 4, 2, DataType::U16)
            );
            assert_eq!((m.nodata, m.scale, m.offset), (Some(0.0), 1e-4, -0.1));
            assert_eq!(m.transform, data.tile_transform);
        }
    }

    #[test]
    fn arrows_own_reader_sees_what_the_fragment_holds() {
        // The store writes and reads IPC itself; arrow-rs' FileReader (uncompressed and
        // LZ4: its ZSTD needs C) must read the same batch, cropped or not.
        let d = tempfile::tempdir().unwrap();
        for compression in [FragmentCompression::None, FragmentCompression::Lz4] {
            for (nodata, mask) in [(None, false), (Some(0.0), false), (None, true)] {
                let mut data = sample(nodata);
                if mask {
                    // Column 0 is invalid in both observations: cropped to columns 1..4.
                    data.observations[0].valid = Some(BooleanBuffer::from(vec![
                        false, true, false, true, false, true, true, true,
                    ]));
                    data.observations[1].valid = Some(BooleanBuffer::from(vec![
                        false, true, true, true, false, true, true, false,
                    ]));
                }
                let p = d
                    .path()
                    .join(format!("{compression:?}{nodata:?}{mask}.arrow"));
                write_fragment_file(&p, &mut data, 32633, compression, true).unwrap();
                let reader =
                    arrow_ipc::reader::FileReader::try_new(File::open(&p).unwrap(), None).unwrap();
                let got: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
                assert_eq!(got.len(), 1);
                let f = Fragment::open(&p).unwrap();
                assert_eq!(
                    &got[0],
                    f.record_batch(),
                    "{compression:?} {nodata:?} {mask}"
                );
                let window = if mask {
                    PixelWindow::new(1, 0, 3, 2)
                } else {
                    PixelWindow::full(4, 2)
                };
                assert_eq!(f.window(), window);
                // Observations come back sorted, whole-tile, with their validity.
                for (k, o) in data.observations.iter().enumerate() {
                    let back = f.observation(k).unwrap();
                    let want_valid: Vec<bool> = match (&o.valid, nodata) {
                        (Some(v), _) => v.iter().collect(),
                        (None, Some(nd)) => typed::<u16>(&o.pixels)
                            .iter()
                            .map(|&v| v as f64 != nd)
                            .collect(),
                        (None, None) => vec![true; 8],
                    };
                    let got_valid: Vec<bool> =
                        back.valid.map_or(vec![true; 8], |v| v.iter().collect());
                    assert_eq!(got_valid, want_valid);
                    let (a, b) = (typed::<u16>(&back.pixels), typed::<u16>(&o.pixels));
                    for i in 0..8 {
                        if want_valid[i] {
                            assert_eq!(a[i], b[i]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn crops_to_the_union_of_valid_windows() {
        // A 7x6 tile; observation 0 valid in columns 2..5 of rows 1..3, observation 1 in
        // column 1 of row 4 only: the union is columns 1..5, rows 1..5.
        let d = tempfile::tempdir().unwrap();
        for compression in ALL {
            for crop in [true, false] {
                let mut data = sample(Some(0.0));
                (data.width, data.height) = (7, 6);
                let inside0 = |i: usize| (2..5).contains(&(i % 7)) && (1..3).contains(&(i / 7));
                let inside1 = |i: usize| i == 4 * 7 + 1;
                data.observations[0].pixels = (0..42)
                    .map(|i| if inside0(i) { 100 + i as u16 } else { 0 })
                    .collect::<Vec<_>>()
                    .into();
                data.observations[1].pixels = (0..42)
                    .map(|i| if inside1(i) { 7u16 } else { 0 })
                    .collect::<Vec<_>>()
                    .into();
                let p = d.path().join(format!("{compression:?}{crop}.arrow"));
                let mut copy = data.clone();
                let w = write_fragment_file(&p, &mut copy, 1, compression, crop).unwrap();
                let window = if crop {
                    PixelWindow::new(1, 1, 4, 4)
                } else {
                    PixelWindow::full(7, 6)
                };
                assert_eq!(w.window, window);
                assert_eq!(w.stats.valid_count, 7);
                let f = Fragment::open(&p).unwrap();
                assert_eq!(f.window(), window);
                assert_eq!(f.meta().window, window);
                assert_eq!((f.meta().width, f.meta().height), (7, 6));
                // "late" (observation 0) is second after sorting.
                let late = f.pixels::<u16>(1).unwrap();
                assert_eq!(late.len(), window.pixels());
                if crop {
                    assert_eq!(late[0..4], [0, 100 + 9, 100 + 10, 100 + 11]);
                    assert!(f.valid_mask(0)[3 * 4]);
                    assert_eq!(f.valid_mask(0).iter().filter(|&&v| v).count(), 1);
                }
                // Back to the whole tile: nodata and invalid outside the window.
                let back = f.observation(1).unwrap();
                assert_eq!(back.pixels, data.observations[0].pixels);
                let valid: Vec<bool> = back.valid.unwrap().iter().collect();
                assert_eq!(valid, (0..42).map(inside0).collect::<Vec<_>>());
                // Rewriting the expanded observations gives the same fragment content.
                let mut again = data.clone();
                again.observations = (0..2).map(|k| f.observation(k).unwrap()).collect();
                let q = d.path().join(format!("{compression:?}{crop}again.arrow"));
                write_fragment_file(&q, &mut again, 1, compression, crop).unwrap();
                assert_eq!(Fragment::open(&q).unwrap().record_batch(), f.record_batch());
            }
        }
        // No valid pixel at all: one (invalid) corner pixel is stored.
        let mut data = sample(Some(0.0));
        for o in &mut data.observations {
            o.pixels = vec![0u16; 8].into();
        }
        let p = d.path().join("empty.arrow");
        let w = write_fragment_file(&p, &mut data, 1, FragmentCompression::Zstd, true).unwrap();
        assert_eq!(w.window, PixelWindow::new(0, 0, 1, 1));
        let f = Fragment::open(&p).unwrap();
        assert_eq!(f.valid_mask(0), vec![false]);
        assert!(f.observation(0).unwrap().valid.unwrap().iter().all(|v| !v));
    }

    #[test]
    fn in_memory_buffers_read_like_files() {
        let d = tempfile::tempdir().unwrap();
        for compression in ALL {
            let p = d.path().join(format!("{compression:?}.arrow"));
            write_fragment_file(&p, &mut sample(Some(0.0)), 1, compression, true).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            let f = Fragment::open(&p).unwrap();
            // A misaligned copy of the bytes (as a network read may hand over).
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(&bytes);
            let buffer = Buffer::from_vec(shifted).slice(1);
            let m = Fragment::from_buffer(Path::new("s3://bucket/f.arrow"), buffer).unwrap();
            assert_eq!(m.record_batch(), f.record_batch());
            assert_eq!(m.path(), Path::new("s3://bucket/f.arrow"));
            let e = Fragment::from_buffer(Path::new("mem"), Buffer::from_vec(bytes[..40].to_vec()))
                .unwrap_err();
            assert!(e.to_string().starts_with("mem: corrupt fragment"), "{e}");
        }
    }

    #[test]
    fn other_format_versions_are_a_clear_error() {
        // A version 1 fragment: no window, Arrow's own writer.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v1.arrow");
        let mut md: HashMap<String, String> = [
            ("tile", "x3_y-2"),
            ("band", "B04"),
            ("product", "S2"),
            ("crs", "EPSG:32633"),
            ("geotransform", "[0.0, 10.0, 0.0, 0.0, 0.0, -10.0]"),
            ("width", "4"),
            ("height", "2"),
            ("dtype", "uint16"),
            ("nodata", "null"),
            ("scale", "1.0"),
            ("offset", "0.0"),
            ("format_version", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{META_PREFIX}{k}"), v.to_string()))
        .collect();
        let schema = Arc::new(Schema::new_with_metadata(
            base_fields(DataType::U16, 8),
            md.clone(),
        ));
        let item = Arc::new(Field::new("item", ArrowType::UInt16, true));
        let values = Arc::new(PrimitiveArray::<UInt16Type>::from(vec![1u16; 8]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![0i64]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec!["s"])),
                Arc::new(FixedSizeListArray::try_new(item, 8, values, None).unwrap()),
            ],
        )
        .unwrap();
        let write = |p: &Path, schema: &Arc<Schema>, batch: &RecordBatch| {
            let mut w =
                arrow_ipc::writer::FileWriter::try_new(File::create(p).unwrap(), schema).unwrap();
            w.write(batch).unwrap();
            w.finish().unwrap();
        };
        write(&p, &schema, &batch);
        let e = Fragment::open(&p).unwrap_err();
        assert!(
            matches!(
                e,
                Error::FragmentVersion {
                    found: 1,
                    supported: 2,
                    ..
                }
            ),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("v1.arrow") && text.contains("format version 1"),
            "{text}"
        );
        // A newer one.
        md.insert(format!("{META_PREFIX}format_version"), "3".into());
        let schema = Arc::new(Schema::new_with_metadata(base_fields(DataType::U16, 8), md));
        let q = d.path().join("v3.arrow");
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).unwrap();
        write(&q, &schema, &batch);
        assert!(matches!(
            Fragment::open(&q).unwrap_err(),
            Error::FragmentVersion { found: 3, .. }
        ));
    }

    #[test]
    fn explicit_masks_and_float_nan() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.arrow");
        let mut data = sample(None);
        data.dtype = DataType::F32;
        data.nodata = Some(f64::NAN);
        data.observations[0].pixels = vec![f32::NAN, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0].into();
        data.observations[1].pixels = vec![1.5f32; 8].into();
        data.observations[1].valid = Some(BooleanBuffer::from(vec![
            true, false, true, false, true, false, true, false,
        ]));
        let w = write_fragment_file(&p, &mut data, 4326, FragmentCompression::None, true).unwrap();
        assert_eq!(w.stats.valid_count, 7 + 4);
        let f = Fragment::open(&p).unwrap();
        assert!(f.meta().nodata.unwrap().is_nan());
        assert_eq!(
            f.valid_mask(0),
            vec![true, false, true, false, true, false, true, false]
        );
        assert!(!f.valid_mask(1)[0]);
        assert_eq!(f.pixels::<f32>(1).unwrap()[7], 7.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let mut data = sample(None);
        data.observations[0].pixels = vec![1u16; 3].into();
        let e = write_fragment_file(
            &d.path().join("a"),
            &mut data,
            1,
            FragmentCompression::None,
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("expected 4x2=8"), "{e}");
        let mut data = sample(None);
        data.observations[1].pixels = vec![1u8; 8].into();
        assert!(write_fragment_file(
            &d.path().join("b"),
            &mut data,
            1,
            FragmentCompression::None,
            true
        )
        .is_err());
        let mut data = sample(None);
        data.observations.clear();
        assert!(write_fragment_file(
            &d.path().join("c"),
            &mut data,
            1,
            FragmentCompression::None,
            true
        )
        .is_err());
    }

    #[test]
    fn every_truncation_and_many_flips_are_errors_not_panics() {
        for compression in ALL {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("f.arrow");
            let mut data = sample(Some(0.0));
            // Cropped: column 3 is nodata everywhere.
            for o in &mut data.observations {
                if let PixelBuffer::U16(v) = &mut o.pixels {
                    (v[3], v[7]) = (0, 0);
                }
            }
            write_fragment_file(&p, &mut data, 1, compression, true).unwrap();
            let good = std::fs::read(&p).unwrap();
            let q = d.path().join("bad.arrow");
            // Remove before rewriting: ext4 flushes files replaced by truncation on close.
            let put = |b: &[u8]| {
                let _ = std::fs::remove_file(&q);
                std::fs::write(&q, b).unwrap();
            };
            for cut in 0..good.len() {
                put(&good[..cut]);
                let e = Fragment::open(&q).unwrap_err();
                assert!(e.to_string().contains("bad.arrow"), "{e}");
            }
            for i in 0..good.len() {
                let mut b = good.clone();
                b[i] ^= 0x5a;
                put(&b);
                // Either an error or a readable fragment (a flipped pixel); never a panic.
                if let Ok(f) = Fragment::open(&q) {
                    for k in 0..f.len() {
                        let _ = f.pixels::<u16>(k);
                        let _ = f.validity(k);
                        let _ = f.scene_id(k);
                    }
                }
            }
        }
    }

    #[test]
    fn stats_blocks_match_naive() {
        let v: Vec<i16> = (0..1000).map(|i| ((i * 37) % 211) as i16 - 100).collect();
        let mask = BooleanBuffer::collect_bool(v.len(), |i| i % 3 != 0);
        let s = pixel_stats(&v, Some(&mask));
        let kept: Vec<f64> = v
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, &x)| x as f64)
            .collect();
        assert_eq!(s.valid_count, kept.len() as u64);
        assert_eq!(s.min, kept.iter().copied().reduce(f64::min));
        assert_eq!(s.max, kept.iter().copied().reduce(f64::max));
        assert!((s.mean.unwrap() - kept.iter().sum::<f64>() / kept.len() as f64).abs() < 1e-9);
        assert_eq!(pixel_stats::<u8>(&[], None), PixelStats::default());
    }
}
