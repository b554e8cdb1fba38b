//! Fragments: one Arrow IPC file per (tile, band, product) and write, holding that tile's
//! observations sorted by time.
//!
//! Columns: `time` (timestamp[us, UTC]), `scene_id` (utf8) and `pixels` (a fixed-size list
//! of the band's native type, row-major tile pixels; the list's child validity marks nodata).
//! The schema metadata (`pixelquery.*` keys) carries tile id, band, product, grid CRS, tile
//! geotransform, size, dtype, nodata, scale/offset and the format version, so any Arrow
//! reader (pyarrow, DuckDB, arrow-rs) can interpret a fragment on its own.
//!
//! Reads memory-map the file and decode it zero-copy: pixel slices point into the mapping
//! when the file is uncompressed (LZ4 bodies are decompressed once per read).

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
    Array, ArrayRef, ArrowPrimitiveType, FixedSizeListArray, PrimitiveArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, ScalarBuffer};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the fragment layout written by this code (`pixelquery.format_version`).
pub const FRAGMENT_FORMAT_VERSION: u32 = 1;

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
        Ok(FragmentMeta {
            tile,
            band: get("band")?.to_string(),
            product: get("product")?.to_string(),
            epsg,
            transform: GeoTransform::from_gdal(gt),
            width: int("width")?,
            height: int("height")?,
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
pub(crate) struct WrittenFragment {
    pub bytes: u64,
    pub checksum: String,
    pub time_min: DateTime<Utc>,
    pub time_max: DateTime<Utc>,
    pub observations: u64,
    pub stats: PixelStats,
    /// The written file, still open: not yet fsynced.
    pub file: File,
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

/// The Arrow schema of a fragment with this metadata.
pub fn fragment_schema(meta: &FragmentMeta) -> Schema {
    let fields = base_fields(meta.dtype, meta.width as i32 * meta.height as i32);
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
/// writes it to `path` (which must not exist). The caller fsyncs it before committing.
pub(crate) fn write_fragment_file(
    path: &Path,
    data: &mut FragmentData,
    epsg: u32,
    compression: FragmentCompression,
) -> Result<WrittenFragment> {
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

    let meta = FragmentMeta {
        tile: data.tile,
        band: data.band.clone(),
        product: data.product.clone(),
        epsg,
        transform: data.tile_transform,
        width: data.width,
        height: data.height,
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
    let (nulls, stats) = match data.dtype {
        DataType::U8 => validity_and_stats::<u8>(data),
        DataType::I8 => validity_and_stats::<i8>(data),
        DataType::U16 => validity_and_stats::<u16>(data),
        DataType::I16 => validity_and_stats::<i16>(data),
        DataType::U32 => validity_and_stats::<u32>(data),
        DataType::I32 => validity_and_stats::<i32>(data),
        DataType::F32 => validity_and_stats::<f32>(data),
        DataType::F64 => validity_and_stats::<f64>(data),
    };

    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    let mut sink = HashingWriter {
        inner: BufWriter::with_capacity(256 * 1024, file),
        hasher: twox_hash::XxHash3_64::with_seed(0),
        bytes: 0,
    };
    let arrow_err = |e| Error::Arrow {
        path: path.to_path_buf(),
        source: e,
    };
    match compression {
        FragmentCompression::None => {
            // Streamed from the observations' own buffers: no concatenated copy.
            let scene_ids: Vec<&str> = data
                .observations
                .iter()
                .map(|o| o.scene_id.as_str())
                .collect();
            let pixel_bytes: Vec<&[u8]> = data
                .observations
                .iter()
                .map(|o| o.pixels.as_bytes())
                .collect();
            let columns = ipc::FragmentColumns {
                times: &times,
                scene_ids: &scene_ids,
                pixels: &pixel_bytes,
                pixels_per_row: pixels,
                validity: nulls.as_ref().map(|n| (n.inner(), n.null_count())),
            };
            ipc::write_fragment_ipc(&mut sink, &schema, &columns).map_err(arrow_err)?;
        }
        FragmentCompression::Lz4 => {
            let batch = record_batch(&schema, data, times, nulls).map_err(invalid)?;
            let options = IpcWriteOptions::default()
                .try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))
                .map_err(arrow_err)?;
            let mut writer =
                FileWriter::try_new_with_options(&mut sink, &schema, options).map_err(arrow_err)?;
            writer.write(&batch).map_err(arrow_err)?;
            writer.finish().map_err(arrow_err)?;
        }
    }
    let file = sink
        .inner
        .into_inner()
        .map_err(|e| io_err(path)(e.into_error()))?;
    // Not fsynced here: the caller hands the file to background sync threads or fsyncs
    // it with the other files of its commit.
    Ok(WrittenFragment {
        file,
        bytes: sink.bytes,
        checksum: format_checksum(sink.hasher.finish()),
        time_min,
        time_max,
        observations: data.observations.len() as u64,
        stats,
    })
}

/// The fragment as one Arrow record batch (pixels concatenated), for Arrow's own writer.
fn record_batch(
    schema: &SchemaRef,
    data: &FragmentData,
    times: Vec<i64>,
    nulls: Option<NullBuffer>,
) -> std::result::Result<RecordBatch, String> {
    let pixels = data.width as usize * data.height as usize;
    let time = TimestampMicrosecondArray::new(ScalarBuffer::from(times), None).with_timezone("UTC");
    let scene =
        StringArray::from_iter_values(data.observations.iter().map(|o| o.scene_id.as_str()));
    let values = match data.dtype {
        DataType::U8 => concat_values::<UInt8Type>(data, nulls),
        DataType::I8 => concat_values::<Int8Type>(data, nulls),
        DataType::U16 => concat_values::<UInt16Type>(data, nulls),
        DataType::I16 => concat_values::<Int16Type>(data, nulls),
        DataType::U32 => concat_values::<UInt32Type>(data, nulls),
        DataType::I32 => concat_values::<Int32Type>(data, nulls),
        DataType::F32 => concat_values::<Float32Type>(data, nulls),
        DataType::F64 => concat_values::<Float64Type>(data, nulls),
    };
    let item = Arc::new(Field::new("item", arrow_type(data.dtype), true));
    let list = FixedSizeListArray::try_new(item, pixels as i32, values, None)
        .map_err(|e| e.to_string())?;
    RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(time), Arc::new(scene), Arc::new(list)],
    )
    .map_err(|e| e.to_string())
}

/// The observations' pixels of type `T` (the dtype was checked against the fragment's).
fn typed<T: Pixel>(buf: &PixelBuffer) -> &[T] {
    bytemuck::try_cast_slice(buf.as_bytes()).unwrap_or(&[])
}

/// The validity of every pixel (the observations' own bits, else derived from the nodata
/// value and NaN; `None` when all are valid) and the statistics of the valid values.
fn validity_and_stats<T: Pixel + StatSample>(
    data: &FragmentData,
) -> (Option<NullBuffer>, PixelStats) {
    let pixels = data.width as usize * data.height as usize;
    let nodata = data.nodata.map(T::from_f64);
    let nodata_is_nan = data.nodata.is_some_and(f64::is_nan);
    let is_float = data.dtype.is_float();
    let derives = nodata.is_some() || is_float;
    let mut acc = StatAcc::default();
    let parts: Vec<Option<BooleanBuffer>> = data
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
    let parts: Vec<Option<&BooleanBuffer>> = parts.iter().map(Option::as_ref).collect();
    let nulls = bitmap::concat(&parts, pixels)
        .map(NullBuffer::new)
        .filter(|n| n.null_count() > 0);
    (nulls, acc.finish())
}

/// The arrow primitive type matching a pixel type.
trait ArrowPixel: ArrowPrimitiveType<Native: Sample + PartialOrd> {
    fn slice(buf: &PixelBuffer) -> &[Self::Native];
}

macro_rules! arrow_pixel {
    ($a:ty, $variant:ident) => {
        impl ArrowPixel for $a {
            fn slice(buf: &PixelBuffer) -> &[Self::Native] {
                match buf {
                    PixelBuffer::$variant(v) => v,
                    // write_fragment_file checked every dtype before calling build_values.
                    _ => &[],
                }
            }
        }
    };
}
arrow_pixel!(UInt8Type, U8);
arrow_pixel!(Int8Type, I8);
arrow_pixel!(UInt16Type, U16);
arrow_pixel!(Int16Type, I16);
arrow_pixel!(UInt32Type, U32);
arrow_pixel!(Int32Type, I32);
arrow_pixel!(Float32Type, F32);
arrow_pixel!(Float64Type, F64);

/// Concatenates the observations' pixels into one Arrow array with the given validity.
fn concat_values<A: ArrowPixel>(data: &FragmentData, nulls: Option<NullBuffer>) -> ArrayRef {
    let total = data.width as usize * data.height as usize * data.observations.len();
    let mut values: Vec<A::Native> = Vec::with_capacity(total);
    for o in &data.observations {
        values.extend_from_slice(A::slice(&o.pixels));
    }
    Arc::new(PrimitiveArray::<A>::new(ScalarBuffer::from(values), nulls))
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

/// A fragment opened for reading: memory-mapped, decoded into an Arrow record batch whose
/// pixel buffer points into the mapping when the file is uncompressed.
#[derive(Debug, Clone)]
pub struct Fragment {
    path: PathBuf,
    meta: FragmentMeta,
    batch: RecordBatch,
    times: ScalarBuffer<i64>,
    scene_ids: StringArray,
    values: Buffer,
    validity: Option<BooleanBuffer>,
    pixels: usize,
    zero_copy: bool,
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

    /// Opens a fragment whose recorded size and (optionally) checksum are known.
    pub(crate) fn open_expecting(
        path: &Path,
        bytes: u64,
        checksum: Option<&str>,
    ) -> Result<Fragment> {
        Self::open_impl(path, checksum, Some(bytes))
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
        if let Some(expected) = checksum {
            let actual = super::layout::checksum(buffer.as_slice());
            if actual != expected {
                return Err(Error::ChecksumMismatch {
                    path: path.to_path_buf(),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        let decoded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(&buffer, len)));
        let (schema, batch) = match decoded {
            Ok(r) => r.map_err(corrupt)?,
            // Defence in depth: the structure is validated before Arrow decodes it, but a
            // decoder panic on hostile bytes must still become an error naming the file.
            Err(_) => return Err(corrupt("Arrow decoder failed on malformed data".into())),
        };
        let meta = FragmentMeta::from_metadata(schema.metadata()).map_err(corrupt)?;
        Self::from_batch(path, meta, batch, &buffer).map_err(corrupt)
    }

    fn from_batch(
        path: &Path,
        meta: FragmentMeta,
        batch: RecordBatch,
        file: &Buffer,
    ) -> std::result::Result<Fragment, String> {
        let pixels = meta.width as usize * meta.height as usize;
        let expected = base_fields(meta.dtype, pixels as i32);
        let fields = batch.schema().fields().clone();
        if fields.len() != 3
            || expected
                .iter()
                .zip(fields.iter())
                .any(|(e, f)| e.name() != f.name() || e.data_type() != f.data_type())
        {
            return Err(format!(
                "schema does not match a {} {}x{} fragment",
                meta.dtype, meta.width, meta.height
            ));
        }
        let times = batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or("time column is not timestamp[us]")?;
        let scene_ids = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("scene_id column is not utf8")?
            .clone();
        let list = batch
            .column(2)
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .ok_or("pixels column is not a fixed-size list")?;
        if times.null_count() > 0 || scene_ids.null_count() > 0 || list.null_count() > 0 {
            return Err("null time, scene id or pixel list".into());
        }
        let child = list.values();
        if child.offset() != 0 || child.len() != batch.num_rows() * pixels {
            return Err("pixel values do not cover every row".into());
        }
        let data = child.to_data();
        let values = data
            .buffers()
            .first()
            .ok_or("pixel values have no data buffer")?
            .clone();
        if values.len() < child.len() * meta.dtype.size() {
            return Err("pixel data buffer too short".into());
        }
        let validity = child.nulls().map(|n| n.inner().clone());
        let file_range = file.as_ptr() as usize..file.as_ptr() as usize + file.len();
        let zero_copy = file_range.contains(&(values.as_ptr() as usize));
        Ok(Fragment {
            path: path.to_path_buf(),
            meta,
            times: times.values().clone(),
            scene_ids,
            values,
            validity,
            pixels,
            zero_copy,
            batch,
        })
    }

    /// The file this fragment was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Metadata from the schema.
    pub fn meta(&self) -> &FragmentMeta {
        &self.meta
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

    /// Raw little-endian pixel bytes of observation `i` (zero-copy).
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn pixel_bytes(&self, i: usize) -> &[u8] {
        assert!(i < self.len(), "observation {i} out of range");
        let size = self.pixels * self.meta.dtype.size();
        &self.values.as_slice()[i * size..(i + 1) * size]
    }

    /// Typed pixels of observation `i`, zero-copy; errors when `T` is not the fragment's
    /// dtype or `i` is out of range.
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
        let size = self.pixels * T::DTYPE.size();
        let bytes = &self.values.as_slice()[i * size..(i + 1) * size];
        // Arrow aligns buffers to 8 bytes inside IPC files and the mapping is page aligned;
        // a misaligned buffer would have been copied (aligned) by the decoder.
        bytemuck::try_cast_slice(bytes).map_err(|e| Error::CorruptFragment {
            path: self.path.clone(),
            reason: format!("pixel buffer cannot be viewed as {}: {e}", T::DTYPE),
        })
    }

    /// Validity bits of observation `i` (`None` = every pixel valid), zero-copy.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn validity(&self, i: usize) -> Option<BooleanBuffer> {
        assert!(i < self.len(), "observation {i} out of range");
        self.validity
            .as_ref()
            .map(|v| v.slice(i * self.pixels, self.pixels))
    }

    /// Validity of observation `i` as one bool per pixel.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn valid_mask(&self, i: usize) -> Vec<bool> {
        match self.validity(i) {
            Some(v) => v.iter().collect(),
            None => vec![true; self.pixels],
        }
    }

    /// The whole fragment as an Arrow record batch.
    pub fn record_batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// True when the pixel data is read straight from the memory mapping (uncompressed).
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Checks the IPC file structure (magic, footer, block bounds, buffer bounds, decompressed
/// sizes) and decodes its single record batch.
fn decode(buffer: &Buffer, len: usize) -> std::result::Result<(SchemaRef, RecordBatch), String> {
    let bytes = buffer.as_slice();
    if &bytes[..6] != b"ARROW1" || &bytes[len - 6..] != b"ARROW1" {
        return Err("missing ARROW1 magic: not an Arrow IPC file or truncated".into());
    }
    let footer_len = le_u32(bytes, len - 10).ok_or("truncated footer")? as usize;
    if footer_len == 0 || footer_len > len - 18 {
        return Err(format!("footer length {footer_len} out of range"));
    }
    let footer_start = len - 10 - footer_len;
    let footer = arrow_ipc::root_as_footer(&bytes[footer_start..len - 10])
        .map_err(|e| format!("bad footer: {e}"))?;
    let schema = footer.schema().ok_or("footer has no schema")?;
    let schema = Arc::new(
        arrow_ipc::convert::try_fb_to_schema(schema).map_err(|e| format!("bad schema: {e}"))?,
    );
    // The schema must be exactly the one its own metadata describes, before any decoding.
    let meta = FragmentMeta::from_metadata(schema.metadata())?;
    let pixels = (meta.width as u64) * (meta.height as u64);
    if pixels == 0 || pixels > i32::MAX as u64 {
        return Err(format!(
            "tile size {}x{} out of range",
            meta.width, meta.height
        ));
    }
    let expected = base_fields(meta.dtype, pixels as i32);
    if schema.fields().len() != expected.len()
        || expected
            .iter()
            .zip(schema.fields().iter())
            .any(|(e, f)| e.name() != f.name() || e.data_type() != f.data_type())
    {
        return Err(format!(
            "schema does not match a {} {}x{} fragment",
            meta.dtype, meta.width, meta.height
        ));
    }
    let blocks = footer
        .recordBatches()
        .ok_or("footer lists no record batch")?;
    if blocks.len() != 1 {
        return Err(format!("{} record batches, expected 1", blocks.len()));
    }
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err("unexpected dictionary batches".into());
    }
    let block = blocks.get(0);
    let offset = usize::try_from(block.offset()).map_err(|_| "negative block offset")?;
    let meta_len =
        usize::try_from(block.metaDataLength()).map_err(|_| "negative metadata length")?;
    let body_len = usize::try_from(block.bodyLength()).map_err(|_| "negative body length")?;
    let end = offset
        .checked_add(meta_len)
        .and_then(|e| e.checked_add(body_len))
        .filter(|&e| e <= footer_start && meta_len >= 8)
        .ok_or("record batch block lies outside the file")?;
    let msg = &bytes[offset..offset + meta_len];
    let fb = if msg[..4] == [0xff; 4] {
        &msg[8..]
    } else {
        &msg[4..]
    };
    let message = arrow_ipc::root_as_message(fb).map_err(|e| format!("bad message: {e}"))?;
    let rb = message
        .header_as_record_batch()
        .ok_or("message is not a record batch")?;
    let rows = usize::try_from(rb.length()).map_err(|_| "negative row count")?;
    if rows > body_len.max(1) * 8 + 1 {
        return Err(format!("{rows} rows cannot fit in {body_len} bytes"));
    }
    if (offset + meta_len) % 8 != 0 {
        return Err("record batch body is not 8-byte aligned".into());
    }
    // Field nodes: time, scene_id, pixels (one per row) and the pixel values (rows x pixels).
    let nodes = rb.nodes().ok_or("record batch has no field nodes")?;
    let expected_lens = [rows, rows, rows, rows.saturating_mul(pixels as usize)];
    if nodes.len() != expected_lens.len()
        || nodes.iter().zip(expected_lens).any(|(n, want)| {
            usize::try_from(n.length()).ok() != Some(want)
                || n.null_count() < 0
                || n.null_count() > n.length()
        })
    {
        return Err("field node lengths do not match the row count".into());
    }
    let compressed = rb.compression().is_some();
    // The largest buffer this schema can need: the pixel values of every row.
    let max_buffer = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            ArrowType::FixedSizeList(item, n) => (*n.max(&0) as usize)
                .saturating_mul(item.data_type().primitive_width().unwrap_or(8)),
            _ => 8,
        })
        .sum::<usize>()
        .saturating_mul(rows.max(1))
        .saturating_add(16 << 20);
    let body = &bytes[offset + meta_len..end];
    for b in rb.buffers().into_iter().flatten() {
        let (o, l) = (
            usize::try_from(b.offset()).map_err(|_| "negative buffer offset")?,
            usize::try_from(b.length()).map_err(|_| "negative buffer length")?,
        );
        if o.checked_add(l).is_none_or(|e| e > body_len) {
            return Err("a buffer lies outside the record batch body".into());
        }
        // The IPC format aligns every buffer to 8 bytes.
        if o % 8 != 0 {
            return Err(format!("buffer offset {o} is not 8-byte aligned"));
        }
        if compressed && l > 0 {
            if l < 8 {
                return Err("compressed buffer shorter than its length prefix".into());
            }
            let raw = i64::from_le_bytes(body[o..o + 8].try_into().map_err(|_| "prefix")?);
            if raw != -1 && (raw < 0 || raw as u64 > max_buffer as u64) {
                return Err(format!("implausible decompressed buffer size {raw}"));
            }
        }
    }
    let decoder = arrow_ipc::reader::FileDecoder::new(schema.clone(), footer.version());
    let data = buffer.slice_with_length(offset, meta_len + body_len);
    let batch = decoder
        .read_record_batch(block, &data)
        .map_err(|e| format!("cannot decode record batch: {e}"))?
        .ok_or("empty record batch message")?;
    Ok((schema, batch))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for compression in [FragmentCompression::None, FragmentCompression::Lz4] {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("f.arrow");
            let mut data = sample(Some(0.0));
            let w = write_fragment_file(&p, &mut data, 32633, compression).unwrap();
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
            if compression == FragmentCompression::None {
                assert!(f.is_zero_copy());
            }
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
    fn streamed_file_reads_like_arrows_own_writer() {
        // The uncompressed writer streams buffers itself; Arrow's FileReader must see the
        // same batch as the one Arrow's writer is given for LZ4 files.
        let d = tempfile::tempdir().unwrap();
        for (nodata, mask) in [(None, false), (Some(0.0), false), (None, true)] {
            let mut data = sample(nodata);
            if mask {
                data.observations[0].valid = Some(BooleanBuffer::from(vec![
                    true, true, false, true, true, true, true, false,
                ]));
            }
            let p = d.path().join(format!("{nodata:?}{mask}.arrow"));
            write_fragment_file(&p, &mut data, 32633, FragmentCompression::None).unwrap();
            let reader =
                arrow_ipc::reader::FileReader::try_new(File::open(&p).unwrap(), None).unwrap();
            let schema = reader.schema();
            let got: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
            assert_eq!(got.len(), 1);
            let times = data
                .observations
                .iter()
                .map(|o| o.time.timestamp_micros())
                .collect();
            let (nulls, _) = validity_and_stats::<u16>(&data);
            let want = record_batch(&schema, &data, times, nulls).unwrap();
            assert_eq!(got[0], want, "nodata {nodata:?}, mask {mask}");
        }
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
        let w = write_fragment_file(&p, &mut data, 4326, FragmentCompression::None).unwrap();
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
        let e = write_fragment_file(&d.path().join("a"), &mut data, 1, FragmentCompression::None)
            .unwrap_err();
        assert!(e.to_string().contains("expected 4x2=8"), "{e}");
        let mut data = sample(None);
        data.observations[1].pixels = vec![1u8; 8].into();
        assert!(
            write_fragment_file(&d.path().join("b"), &mut data, 1, FragmentCompression::None)
                .is_err()
        );
        let mut data = sample(None);
        data.observations.clear();
        assert!(
            write_fragment_file(&d.path().join("c"), &mut data, 1, FragmentCompression::None)
                .is_err()
        );
    }

    #[test]
    fn every_truncation_and_many_flips_are_errors_not_panics() {
        for compression in [FragmentCompression::None, FragmentCompression::Lz4] {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("f.arrow");
            write_fragment_file(&p, &mut sample(Some(0.0)), 1, compression).unwrap();
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
