//! The catalog rows and their files: one Delta Lake table at `catalog/`, partitioned by
//! `kind` (`fragment` or `scene`), whose data files ("parts") are GeoParquet 1.1.
//!
//! A commit writes at most one part per kind (`catalog/kind=fragment/part-{id}.parquet`,
//! `catalog/kind=scene/part-{id}.parquet`). Every part has the table's full column set (the
//! union of fragment and scene columns; the other kind's columns are null), a WKB `geometry`
//! column (the lon/lat footprint polygon, CRS84), a `bbox` covering struct and the `geo` file
//! metadata, so GeoPandas and DuckDB's spatial extension also open a single part unaided.
//! Which parts form a version is decided by the Delta log (`super::delta`).

use super::fragment::{ChunkIndex, PixelWindow};
use super::layout::{is_checksum, parse_fragment_key, validate_name};
use super::{Error, Result};
use crate::dtype::DataType;
use crate::geo::Bounds;
use crate::grid::TileId;
use arrow_array::builder::{
    BinaryBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{
    new_null_array, Array, ArrayRef, BinaryArray, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType as ArrowType, Field, Fields, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// The catalog row of one fragment.
#[derive(Debug, Clone, PartialEq)]
pub struct FragmentEntry {
    /// Grid tile.
    pub tile: TileId,
    /// Band name.
    pub band: String,
    /// Product name.
    pub product: String,
    /// Earliest observation time.
    pub time_min: DateTime<Utc>,
    /// Latest observation time.
    pub time_max: DateTime<Utc>,
    /// Number of observations (rows of the fragment).
    pub observations: u64,
    /// Tile footprint as a lon/lat polygon ring.
    pub footprint_lonlat: Vec<(f64, f64)>,
    /// Lon/lat bounding box of the footprint.
    pub bbox: Bounds,
    /// Native resolution in grid units.
    pub resolution: f64,
    /// Path of the fragment file relative to the warehouse root (`/`-separated).
    pub path: String,
    /// File size in bytes.
    pub bytes: u64,
    /// XXH3-64 checksum of the file (`xxh3:<hex>`).
    pub checksum: String,
    /// Sample type.
    pub dtype: DataType,
    /// Tile width in pixels.
    pub width: u32,
    /// Tile height in pixels.
    pub height: u32,
    /// Number of valid pixels over all observations.
    pub valid_count: u64,
    /// Smallest valid raw value.
    pub valid_min: Option<f64>,
    /// Largest valid raw value.
    pub valid_max: Option<f64>,
    /// Mean valid raw value.
    pub valid_mean: Option<f64>,
    /// The window of the tile the fragment stores (the whole tile unless cropped).
    pub window: PixelWindow,
    /// Where the fragment's chunks are, and its scalar metadata: a reader goes straight to
    /// the bytes it needs.
    pub index: ChunkIndex,
}

/// The scale and offset that make one band of one scene physical: `raw * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BandScaling {
    /// Multiplier.
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
}

/// A scene as recorded when ingested.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SceneRecord {
    /// Scene identifier (unique per product).
    pub scene_id: String,
    /// Source path or URL.
    pub source: String,
    /// Acquisition time (UTC).
    pub acquired: DateTime<Utc>,
    /// Product name.
    pub product: String,
    /// Scene footprint as a lon/lat polygon ring (may be empty when unknown).
    pub footprint_lonlat: Vec<(f64, f64)>,
    /// Cloud cover in percent, if known.
    pub cloud_cover: Option<f64>,
    /// Content fingerprint: re-ingesting a scene with a committed fingerprint is a no-op.
    pub fingerprint: String,
    /// Per warehouse band, the scale and offset of this scene when its source declares its
    /// own (a STAC item's `raster:bands`, a Sentinel-2 processing baseline); bands not listed
    /// take the fragment's, the product profile's. Kept per scene because fragments hold many
    /// scenes and compaction merges them. Column `scaling` (JSON), null when empty; parts
    /// written before it existed read as empty.
    pub scaling: BTreeMap<String, BandScaling>,
}

/// A committed scene: the record plus when it was ingested.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneEntry {
    /// What the writer recorded.
    pub scene: SceneRecord,
    /// When the batch holding it was committed.
    pub ingested: DateTime<Utc>,
}

/// Encodes a ring as a WKB polygon (little endian; the ring is closed if it is not).
/// An empty ring gives an empty polygon.
pub fn wkb_polygon(ring: &[(f64, f64)]) -> Vec<u8> {
    let mut pts: Vec<(f64, f64)> = ring.to_vec();
    if let (Some(&first), Some(&last)) = (pts.first(), pts.last()) {
        if first != last {
            pts.push(first);
        }
    }
    let mut out = Vec::with_capacity(13 + pts.len() * 16);
    out.push(1u8);
    out.extend_from_slice(&3u32.to_le_bytes());
    if pts.is_empty() {
        out.extend_from_slice(&0u32.to_le_bytes());
        return out;
    }
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(pts.len() as u32).to_le_bytes());
    for (x, y) in pts {
        out.extend_from_slice(&x.to_le_bytes());
        out.extend_from_slice(&y.to_le_bytes());
    }
    out
}

/// Decodes the exterior ring of a WKB polygon (either byte order); `None` if malformed.
pub fn parse_wkb_polygon(wkb: &[u8]) -> Option<Vec<(f64, f64)>> {
    let le = match *wkb.first()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = wkb.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let f64_at = |at: usize| -> Option<f64> {
        let b: [u8; 8] = wkb.get(at..at + 8)?.try_into().ok()?;
        Some(if le {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    };
    if u32_at(1)? != 3 {
        return None;
    }
    let rings = u32_at(5)?;
    if rings == 0 {
        return Some(Vec::new());
    }
    let n = u32_at(9)? as usize;
    if n > (wkb.len() - 13) / 16 {
        return None;
    }
    (0..n)
        .map(|i| Some((f64_at(13 + i * 16)?, f64_at(21 + i * 16)?)))
        .collect()
}

/// The kind of rows a catalog part holds: the table's partition column `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartKind {
    /// One row per fragment.
    Fragment,
    /// One row per scene.
    Scene,
}

impl PartKind {
    /// Both kinds.
    pub const ALL: [PartKind; 2] = [PartKind::Fragment, PartKind::Scene];

    /// The partition value (`fragment`, `scene`).
    pub fn name(self) -> &'static str {
        match self {
            PartKind::Fragment => "fragment",
            PartKind::Scene => "scene",
        }
    }

    /// Parses a partition value.
    pub fn parse(s: &str) -> Option<PartKind> {
        match s {
            "fragment" => Some(PartKind::Fragment),
            "scene" => Some(PartKind::Scene),
            _ => None,
        }
    }
}

/// The table's partition column.
pub const KIND_COLUMN: &str = "kind";

fn ts_type() -> ArrowType {
    ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn bbox_fields() -> Fields {
    Fields::from(vec![
        Field::new("xmin", ArrowType::Float64, false),
        Field::new("ymin", ArrowType::Float64, false),
        Field::new("xmax", ArrowType::Float64, false),
        Field::new("ymax", ArrowType::Float64, false),
    ])
}

/// Columns shared by both kinds, then fragment columns, then scene columns. All are nullable
/// in the table; a row's own columns are never null.
const SHARED: &[&str] = &["product", "geometry", "bbox"];
const FRAGMENT_ONLY: &[&str] = &[
    "tile",
    "band",
    "time_min",
    "time_max",
    "observations",
    "resolution",
    "path",
    "bytes",
    "checksum",
    "dtype",
    "width",
    "height",
    "valid_count",
    "valid_min",
    "valid_max",
    "valid_mean",
    "window_col",
    "window_row",
    "window_width",
    "window_height",
    "chunk_index",
];
const SCENE_ONLY: &[&str] = &[
    "scene_id",
    "source",
    "acquired",
    "cloud_cover",
    "ingested",
    "fingerprint",
    "scaling",
];
/// Columns that may be null even in their own kind's rows.
const OPTIONAL: &[&str] = &[
    "bbox",
    "valid_min",
    "valid_max",
    "valid_mean",
    "cloud_cover",
    "scaling",
];
/// Columns added after the first format: parts written before them lack them (read as null).
const ADDED_LATER: &[&str] = &["scaling"];

fn column_type(name: &str) -> ArrowType {
    match name {
        "geometry" | "chunk_index" => ArrowType::Binary,
        "bbox" => ArrowType::Struct(bbox_fields()),
        "time_min" | "time_max" | "acquired" | "ingested" => ts_type(),
        "observations" | "bytes" | "valid_count" => ArrowType::Int64,
        "width" | "height" | "window_col" | "window_row" | "window_width" | "window_height" => {
            ArrowType::Int32
        }
        "resolution" | "valid_min" | "valid_max" | "valid_mean" | "cloud_cover" => {
            ArrowType::Float64
        }
        _ => ArrowType::Utf8,
    }
}

/// The columns of every catalog part (the table schema without the partition column).
pub fn part_schema() -> Schema {
    Schema::new(
        SHARED
            .iter()
            .chain(FRAGMENT_ONLY)
            .chain(SCENE_ONLY)
            .map(|n| Field::new(*n, column_type(n), true))
            .collect::<Vec<_>>(),
    )
}

/// The table schema: the partition column `kind`, then [`part_schema`].
pub fn table_schema() -> Schema {
    let mut fields = vec![Field::new(KIND_COLUMN, ArrowType::Utf8, true)];
    fields.extend(part_schema().fields().iter().map(|f| f.as_ref().clone()));
    Schema::new(fields)
}

/// Lon/lat bounds of a ring, `None` when it has no finite point.
fn ring_bounds(ring: &[(f64, f64)]) -> Option<Bounds> {
    let b = Bounds::from_points(ring.iter().copied());
    (b.min_x <= b.max_x && b.min_y <= b.max_y).then_some(b)
}

fn bbox_array(boxes: &[Option<Bounds>]) -> ArrayRef {
    let col = |f: fn(&Bounds) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            boxes.iter().map(|b| b.as_ref().map(f).unwrap_or(0.0)),
        ))
    };
    let nulls = NullBuffer::from_iter(boxes.iter().map(Option::is_some));
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    Arc::new(StructArray::new(
        bbox_fields(),
        vec![
            col(|b| b.min_x),
            col(|b| b.min_y),
            col(|b| b.max_x),
            col(|b| b.max_y),
        ],
        nulls,
    ))
}

/// The GeoParquet 1.1 `geo` metadata for a WKB polygon column covered by `bbox`.
pub fn geo_metadata(boxes: &[Option<Bounds>]) -> serde_json::Value {
    let all = boxes
        .iter()
        .flatten()
        .fold(None::<Bounds>, |acc, b| match acc {
            None => Some(*b),
            Some(a) => Some(Bounds::new(
                a.min_x.min(b.min_x),
                a.min_y.min(b.min_y),
                a.max_x.max(b.max_x),
                a.max_y.max(b.max_y),
            )),
        });
    let mut column = serde_json::json!({
        "encoding": "WKB",
        "geometry_types": ["Polygon"],
        "covering": {
            "bbox": {
                "xmin": ["bbox", "xmin"],
                "ymin": ["bbox", "ymin"],
                "xmax": ["bbox", "xmax"],
                "ymax": ["bbox", "ymax"]
            }
        }
    });
    // No "crs" key: GeoParquet's default is OGC:CRS84 (lon/lat), which is what we store.
    if let Some(b) = all {
        column["bbox"] = serde_json::json!([b.min_x, b.min_y, b.max_x, b.max_y]);
    }
    serde_json::json!({
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": { "geometry": column }
    })
}

/// An encoded part: its bytes and the Delta statistics of its rows.
#[derive(Debug, Clone)]
pub(crate) struct EncodedPart {
    /// The Parquet file.
    pub bytes: Vec<u8>,
    /// Delta `stats` JSON (numRecords, min/max/null counts of the time columns).
    pub stats: String,
}

/// Builds a part from one kind's own columns (the others become null columns).
fn write_part_file(
    path: &Path,
    rows: usize,
    mut own: HashMap<&'static str, ArrayRef>,
    boxes: &[Option<Bounds>],
    stats: String,
) -> Result<EncodedPart> {
    let schema = Arc::new(part_schema());
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            own.remove(f.name().as_str())
                .unwrap_or_else(|| new_null_array(f.data_type(), rows))
        })
        .collect();
    let batch = RecordBatch::try_new(schema, columns).map_err(|source| Error::Arrow {
        path: path.to_path_buf(),
        source,
    })?;
    let pq = |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).map_err(pq)?;
    w.append_key_value_metadata(KeyValue::new(
        "geo".to_string(),
        geo_metadata(boxes).to_string(),
    ));
    w.write(&batch).map_err(pq)?;
    w.close().map_err(pq)?;
    Ok(EncodedPart { bytes: out, stats })
}

/// A timestamp as Delta statistics spell it, rounded outward to the millisecond (Delta's
/// statistics precision) so the bounds always contain the values.
fn stat_time(micros: i64, round_up: bool) -> String {
    let ms = if round_up {
        micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0)
    } else {
        micros.div_euclid(1000)
    };
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Delta statistics: the row count, and min/max of the time columns of this kind. Every other
/// column of the part counts its nulls (all of them, for the other kind's columns).
fn delta_stats(rows: usize, kind: PartKind, times: &[(&str, Vec<i64>)]) -> String {
    let mut min = serde_json::Map::new();
    let mut max = serde_json::Map::new();
    for (name, values) in times {
        if let (Some(lo), Some(hi)) = (values.iter().min(), values.iter().max()) {
            min.insert(name.to_string(), stat_time(*lo, false).into());
            max.insert(name.to_string(), stat_time(*hi, true).into());
        }
    }
    let foreign = match kind {
        PartKind::Fragment => SCENE_ONLY,
        PartKind::Scene => FRAGMENT_ONLY,
    };
    let mut nulls = serde_json::Map::new();
    for name in foreign {
        // The bbox struct's null count is per leaf in Delta; leave it out.
        nulls.insert(name.to_string(), rows.into());
    }
    for (name, _) in times {
        nulls.insert(name.to_string(), 0.into());
    }
    serde_json::json!({
        "numRecords": rows,
        "minValues": min,
        "maxValues": max,
        "nullCount": nulls,
    })
    .to_string()
}

/// Encodes fragment rows as a catalog part (`path` names errors).
pub(crate) fn encode_fragments(path: &Path, rows: &[FragmentEntry]) -> Result<EncodedPart> {
    let mut tile = StringBuilder::new();
    let mut band = StringBuilder::new();
    let mut product = StringBuilder::new();
    let mut tmin = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut tmax = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut obs = Int64Builder::new();
    let mut geom = BinaryBuilder::new();
    let mut res = Float64Builder::new();
    let mut rel = StringBuilder::new();
    let mut bytes = Int64Builder::new();
    let mut sum = StringBuilder::new();
    let mut dtype = StringBuilder::new();
    let mut width = Int32Builder::new();
    let mut height = Int32Builder::new();
    let mut vcount = Int64Builder::new();
    let mut vmin = Float64Builder::new();
    let mut vmax = Float64Builder::new();
    let mut vmean = Float64Builder::new();
    let mut window = [(); 4].map(|_| Int32Builder::new());
    let mut index = BinaryBuilder::new();
    let mut boxes = Vec::with_capacity(rows.len());
    for r in rows {
        tile.append_value(r.tile.to_string());
        band.append_value(&r.band);
        product.append_value(&r.product);
        tmin.append_value(r.time_min.timestamp_micros());
        tmax.append_value(r.time_max.timestamp_micros());
        obs.append_value(r.observations as i64);
        geom.append_value(wkb_polygon(&r.footprint_lonlat));
        boxes.push(ring_bounds(&r.footprint_lonlat));
        res.append_value(r.resolution);
        rel.append_value(&r.path);
        bytes.append_value(r.bytes as i64);
        sum.append_value(&r.checksum);
        dtype.append_value(r.dtype.name());
        width.append_value(r.width as i32);
        height.append_value(r.height as i32);
        vcount.append_value(r.valid_count as i64);
        vmin.append_option(r.valid_min);
        vmax.append_option(r.valid_max);
        vmean.append_option(r.valid_mean);
        let w = r.window;
        for (b, v) in window.iter_mut().zip([w.col, w.row, w.width, w.height]) {
            b.append_value(v as i32);
        }
        index.append_value(r.index.encode());
    }
    let own: HashMap<&'static str, ArrayRef> = HashMap::from([
        ("tile", Arc::new(tile.finish()) as ArrayRef),
        ("band", Arc::new(band.finish())),
        ("product", Arc::new(product.finish())),
        ("time_min", Arc::new(tmin.finish())),
        ("time_max", Arc::new(tmax.finish())),
        ("observations", Arc::new(obs.finish())),
        ("geometry", Arc::new(geom.finish())),
        ("bbox", bbox_array(&boxes)),
        ("resolution", Arc::new(res.finish())),
        ("path", Arc::new(rel.finish())),
        ("bytes", Arc::new(bytes.finish())),
        ("checksum", Arc::new(sum.finish())),
        ("dtype", Arc::new(dtype.finish())),
        ("width", Arc::new(width.finish())),
        ("height", Arc::new(height.finish())),
        ("valid_count", Arc::new(vcount.finish())),
        ("valid_min", Arc::new(vmin.finish())),
        ("valid_max", Arc::new(vmax.finish())),
        ("valid_mean", Arc::new(vmean.finish())),
        ("chunk_index", Arc::new(index.finish())),
    ]);
    let mut own = own;
    for (name, b) in ["window_col", "window_row", "window_width", "window_height"]
        .into_iter()
        .zip(window.iter_mut())
    {
        own.insert(name, Arc::new(b.finish()));
    }
    let stats = delta_stats(
        rows.len(),
        PartKind::Fragment,
        &[
            (
                "time_min",
                rows.iter().map(|r| r.time_min.timestamp_micros()).collect(),
            ),
            (
                "time_max",
                rows.iter().map(|r| r.time_max.timestamp_micros()).collect(),
            ),
        ],
    );
    write_part_file(path, rows.len(), own, &boxes, stats)
}

/// Encodes scene rows as a catalog part.
pub(crate) fn encode_scenes(path: &Path, rows: &[SceneEntry]) -> Result<EncodedPart> {
    let mut id = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut acquired = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut product = StringBuilder::new();
    let mut geom = BinaryBuilder::new();
    let mut cloud = Float64Builder::new();
    let mut ingested = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut fp = StringBuilder::new();
    let mut scaling = StringBuilder::new();
    let mut boxes = Vec::with_capacity(rows.len());
    for r in rows {
        let s = &r.scene;
        if s.scaling.is_empty() {
            scaling.append_null();
        } else {
            scaling.append_value(serde_json::to_string(&s.scaling).map_err(|e| {
                Error::CorruptCatalog {
                    path: path.to_path_buf(),
                    reason: format!("scene {}: scaling: {e}", s.scene_id),
                }
            })?);
        }
        id.append_value(&s.scene_id);
        source.append_value(&s.source);
        acquired.append_value(s.acquired.timestamp_micros());
        product.append_value(&s.product);
        geom.append_value(wkb_polygon(&s.footprint_lonlat));
        boxes.push(ring_bounds(&s.footprint_lonlat));
        cloud.append_option(s.cloud_cover);
        ingested.append_value(r.ingested.timestamp_micros());
        fp.append_value(&s.fingerprint);
    }
    let own: HashMap<&'static str, ArrayRef> = HashMap::from([
        ("scene_id", Arc::new(id.finish()) as ArrayRef),
        ("source", Arc::new(source.finish())),
        ("acquired", Arc::new(acquired.finish())),
        ("product", Arc::new(product.finish())),
        ("geometry", Arc::new(geom.finish())),
        ("bbox", bbox_array(&boxes)),
        ("cloud_cover", Arc::new(cloud.finish())),
        ("ingested", Arc::new(ingested.finish())),
        ("fingerprint", Arc::new(fp.finish())),
        ("scaling", Arc::new(scaling.finish())),
    ]);
    let stats = delta_stats(
        rows.len(),
        PartKind::Scene,
        &[
            (
                "acquired",
                rows.iter()
                    .map(|r| r.scene.acquired.timestamp_micros())
                    .collect(),
            ),
            (
                "ingested",
                rows.iter().map(|r| r.ingested.timestamp_micros()).collect(),
            ),
        ],
    );
    write_part_file(path, rows.len(), own, &boxes, stats)
}

/// Fewest bytes a row takes in a part PixelQuery writes, by kind: a fragment row holds a
/// random file id and checksum (32 hex digits that Snappy cannot shrink); a scene row at
/// least its own id, source and fingerprint. A part claiming more rows than its bytes allow
/// (a run of one repeated row costs nothing on disk) is refused before it is decoded.
fn min_bytes_per_row(kind: PartKind) -> u64 {
    match kind {
        PartKind::Fragment => 16,
        PartKind::Scene => 2,
    }
}

/// Reads all record batches of a Parquet part held in memory, with the columns of `kind`.
/// Columns are found by name, so a part rewritten by another Delta writer (other column
/// order, no columns of the other kind) still reads.
fn read_batches(path: &Path, bytes: Vec<u8>, kind: PartKind) -> Result<Vec<RecordBatch>> {
    let corrupt = |reason: String| Error::CorruptCatalog {
        path: path.to_path_buf(),
        reason,
    };
    let wanted: Vec<&str> = SHARED
        .iter()
        .chain(match kind {
            PartKind::Fragment => FRAGMENT_ONLY,
            PartKind::Scene => SCENE_ONLY,
        })
        .copied()
        .collect();
    let len = bytes.len() as u64;
    let read = || -> std::result::Result<Vec<RecordBatch>, String> {
        let bytes = bytes::Bytes::from(bytes);
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).map_err(|e| e.to_string())?;
        super::parquet_check::check_layout(builder.metadata(), &bytes)?;
        // Rows can cost almost nothing on disk (runs of one value): bound what decoding
        // makes by what the file holds.
        let rows = builder.metadata().file_metadata().num_rows();
        let min = min_bytes_per_row(kind);
        if rows < 0 || (rows as u64).saturating_mul(min) > len {
            return Err(format!(
                "{rows} rows in {len} bytes: more than a catalog part of {} rows can hold (at least {min} bytes a row)",
                kind.name()
            ));
        }
        let schema = builder.schema().clone();
        let mut indices = Vec::with_capacity(wanted.len());
        for name in &wanted {
            let found = schema.column_with_name(name);
            if found.is_none() && ADDED_LATER.contains(name) {
                continue;
            }
            let (i, field) = found.ok_or_else(|| format!("no column {name:?}"))?;
            if *field.data_type() != column_type(name) {
                return Err(format!(
                    "column {name:?} is {}, not {}",
                    field.data_type(),
                    column_type(name)
                ));
            }
            indices.push(i);
        }
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|e| e.to_string())?;
        reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    };
    // Parts are checksummed before they get here; catching a decoder panic is defence in
    // depth so that even a file with a matching checksum but hostile content is an error.
    super::parquet_check::guarded(read).map_err(corrupt)
}

/// A column of a batch by name and type; `required` columns may hold no null.
fn col<'b, T: Array + 'static>(
    b: &'b RecordBatch,
    name: &str,
) -> std::result::Result<&'b T, String> {
    let array = b
        .column_by_name(name)
        .ok_or_else(|| format!("no column {name:?}"))?;
    if !OPTIONAL.contains(&name) && array.null_count() > 0 {
        return Err(format!("column {name:?} has nulls"));
    }
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name:?} has an unexpected type"))
}

fn ts(v: i64) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| format!("timestamp {v} out of range"))
}

fn opt_f64(a: &Float64Array, i: usize) -> Option<f64> {
    a.is_valid(i).then(|| a.value(i))
}

fn non_negative(v: i64, what: &str) -> std::result::Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("negative {what} {v}"))
}

/// Decodes a fragments part.
pub(crate) fn decode_fragments(path: &Path, bytes: Vec<u8>) -> Result<Vec<FragmentEntry>> {
    let batches = read_batches(path, bytes, PartKind::Fragment)?;
    let mut out = Vec::new();
    let decode = |b: &RecordBatch,
                  out: &mut Vec<FragmentEntry>|
     -> std::result::Result<(), String> {
        let tile = col::<StringArray>(b, "tile")?;
        let band = col::<StringArray>(b, "band")?;
        let product = col::<StringArray>(b, "product")?;
        let tmin = col::<TimestampMicrosecondArray>(b, "time_min")?;
        let tmax = col::<TimestampMicrosecondArray>(b, "time_max")?;
        let obs = col::<Int64Array>(b, "observations")?;
        let geom = col::<BinaryArray>(b, "geometry")?;
        let res = col::<Float64Array>(b, "resolution")?;
        let rel = col::<StringArray>(b, "path")?;
        let bytes = col::<Int64Array>(b, "bytes")?;
        let sum = col::<StringArray>(b, "checksum")?;
        let dtype = col::<StringArray>(b, "dtype")?;
        let width = col::<Int32Array>(b, "width")?;
        let height = col::<Int32Array>(b, "height")?;
        let vcount = col::<Int64Array>(b, "valid_count")?;
        let vmin = col::<Float64Array>(b, "valid_min")?;
        let vmax = col::<Float64Array>(b, "valid_max")?;
        let vmean = col::<Float64Array>(b, "valid_mean")?;
        let wc = col::<Int32Array>(b, "window_col")?;
        let wr = col::<Int32Array>(b, "window_row")?;
        let ww = col::<Int32Array>(b, "window_width")?;
        let wh = col::<Int32Array>(b, "window_height")?;
        let chunk_index = col::<BinaryArray>(b, "chunk_index")?;
        for i in 0..b.num_rows() {
            let footprint = parse_wkb_polygon(geom.value(i))
                .ok_or_else(|| format!("row {i}: malformed WKB footprint"))?;
            let path = rel.value(i).to_string();
            let named = parse_fragment_key(&path).ok_or_else(|| {
                format!(
                    "row {i}: fragment path {path:?} is not fragments/{{tile}}/{{band}}/{{product}}_{{time}}_{{id}}.arrow inside the warehouse"
                )
            })?;
            if (named.tile, named.band, named.product)
                != (tile.value(i), band.value(i), product.value(i))
            {
                return Err(format!(
                    "row {i}: fragment path {path:?} does not match the row's tile, band and product"
                ));
            }
            let dt = dtype.value(i);
            let (w, h) = (
                u32::try_from(width.value(i)).map_err(|_| "negative width")?,
                u32::try_from(height.value(i)).map_err(|_| "negative height")?,
            );
            let window = [wc, wr, ww, wh].map(|a| u32::try_from(a.value(i)).unwrap_or(u32::MAX));
            let window = PixelWindow::new(window[0], window[1], window[2], window[3]);
            if !window.fits(w, h) {
                return Err(format!(
                    "row {i}: window {window:?} is not inside the {w}x{h} tile"
                ));
            }
            if w == 0 || h == 0 || u64::from(w) * u64::from(h) > i32::MAX as u64 {
                return Err(format!("row {i}: tile size {w}x{h} is empty or too large"));
            }

            let index = ChunkIndex::decode(chunk_index.value(i))
                .map_err(|e| format!("row {i}: chunk index: {e}"))?;
            let observations = non_negative(obs.value(i), "observation count")?;
            let file_bytes = non_negative(bytes.value(i), "byte size")?;
            check_index(&index, observations, file_bytes, w, h)
                .map_err(|e| format!("row {i}: chunk index: {e}"))?;
            let entry = FragmentEntry {
                tile: tile
                    .value(i)
                    .parse()
                    .map_err(|_| format!("row {i}: bad tile id {:?}", tile.value(i)))?,
                band: band.value(i).to_string(),
                product: product.value(i).to_string(),
                time_min: ts(tmin.value(i))?,
                time_max: ts(tmax.value(i))?,
                observations,
                bbox: ring_bounds(&footprint).unwrap_or(Bounds::new(0.0, 0.0, 0.0, 0.0)),
                footprint_lonlat: footprint,
                resolution: res.value(i),
                path,
                bytes: file_bytes,
                checksum: sum.value(i).to_string(),
                dtype: DataType::parse(dt).ok_or_else(|| format!("row {i}: bad dtype {dt:?}"))?,
                width: w,
                height: h,
                valid_count: non_negative(vcount.value(i), "valid count")?,
                valid_min: opt_f64(vmin, i),
                valid_max: opt_f64(vmax, i),
                valid_mean: opt_f64(vmean, i),
                window,
                index,
            };
            check_fragment_row(&entry).map_err(|reason| format!("row {i}: {reason}"))?;
            out.push(entry);
        }
        Ok(())
    };
    for b in &batches {
        decode(b, &mut out).map_err(|reason| Error::CorruptCatalog {
            path: path.to_path_buf(),
            reason,
        })?;
    }
    Ok(out)
}

/// A chunk index agrees with its row: its blocks hold the row's observations, its chunks lie
/// in the tile, its runs and footer in the file.
fn check_index(
    index: &ChunkIndex,
    observations: u64,
    bytes: u64,
    width: u32,
    height: u32,
) -> std::result::Result<(), String> {
    if index.observations() != observations {
        return Err(format!(
            "blocks hold {} observations, the row {observations}",
            index.observations()
        ));
    }
    if index.shape.rows > height || index.shape.cols > width {
        return Err("chunks larger than the tile".into());
    }
    let count = index.shape.count(width, height);
    if index.runs.is_empty() || index.runs.iter().any(|r| r.chunk >= count) {
        return Err(format!("chunks outside the tile's {count}"));
    }
    if index.footer >= bytes || index.runs.iter().any(|r| r.end > index.footer) {
        return Err("runs or footer past the end of the file".into());
    }
    Ok(())
}

/// Checks the numbers of a fragment row: finite and consistent with each other, so that
/// nothing downstream computes with a NaN or an impossible count.
fn check_fragment_row(e: &FragmentEntry) -> std::result::Result<(), String> {
    if !(e.resolution.is_finite()
        && e.resolution > 0.0
        && e.resolution <= crate::grid::MAX_TILE_SIZE)
    {
        return Err(format!(
            "resolution {} is not a positive finite number of grid units up to {:e}",
            crate::grid::short(e.resolution),
            crate::grid::MAX_TILE_SIZE
        ));
    }
    if e.footprint_lonlat
        .iter()
        .any(|(x, y)| !(x.is_finite() && y.is_finite()))
    {
        return Err("footprint has a non-finite coordinate".into());
    }
    if e.observations == 0 {
        return Err("no observations".into());
    }
    if e.time_min > e.time_max {
        return Err("time_min is after time_max".into());
    }
    let pixels = e.observations.saturating_mul(e.window.pixels() as u64);
    if e.valid_count > pixels {
        return Err(format!(
            "valid count {} exceeds the {pixels} pixels of its observations",
            e.valid_count
        ));
    }
    for (name, v) in [
        ("valid_min", e.valid_min),
        ("valid_max", e.valid_max),
        ("valid_mean", e.valid_mean),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(format!("{name} is not finite"));
        }
    }
    if let (Some(lo), Some(hi)) = (e.valid_min, e.valid_max) {
        if lo > hi {
            return Err("valid_min is above valid_max".into());
        }
    }
    if e.bytes == 0 {
        return Err("byte size 0".into());
    }
    if !is_checksum(&e.checksum) {
        return Err(format!(
            "checksum {:?} is not xxh3:<16 hex digits>",
            e.checksum
        ));
    }
    Ok(())
}

/// Checks the fields of a scene row that are used as names or numbers.
fn check_scene_row(s: &SceneRecord) -> std::result::Result<(), String> {
    validate_name("product", &s.product).map_err(|e| e.to_string())?;
    if s.scene_id.is_empty() {
        return Err("empty scene id".into());
    }
    if s.cloud_cover.is_some_and(|c| !c.is_finite()) {
        return Err("cloud_cover is not finite".into());
    }
    if s.footprint_lonlat
        .iter()
        .any(|(x, y)| !(x.is_finite() && y.is_finite()))
    {
        return Err("footprint has a non-finite coordinate".into());
    }
    Ok(())
}

/// Decodes a scenes part.
pub(crate) fn decode_scenes(path: &Path, bytes: Vec<u8>) -> Result<Vec<SceneEntry>> {
    let batches = read_batches(path, bytes, PartKind::Scene)?;
    let mut out = Vec::new();
    let decode = |b: &RecordBatch, out: &mut Vec<SceneEntry>| -> std::result::Result<(), String> {
        let id = col::<StringArray>(b, "scene_id")?;
        let source = col::<StringArray>(b, "source")?;
        let acquired = col::<TimestampMicrosecondArray>(b, "acquired")?;
        let product = col::<StringArray>(b, "product")?;
        let geom = col::<BinaryArray>(b, "geometry")?;
        let cloud = col::<Float64Array>(b, "cloud_cover")?;
        let ingested = col::<TimestampMicrosecondArray>(b, "ingested")?;
        let fp = col::<StringArray>(b, "fingerprint")?;
        let scaling = match b.column_by_name("scaling") {
            Some(_) => Some(col::<StringArray>(b, "scaling")?),
            None => None,
        };
        for i in 0..b.num_rows() {
            let scaling = match scaling.filter(|a| a.is_valid(i)) {
                Some(a) => serde_json::from_str(a.value(i))
                    .map_err(|e| format!("row {i}: scaling {:?}: {e}", a.value(i)))?,
                None => BTreeMap::new(),
            };
            let entry = SceneEntry {
                scene: SceneRecord {
                    scene_id: id.value(i).to_string(),
                    source: source.value(i).to_string(),
                    acquired: ts(acquired.value(i))?,
                    product: product.value(i).to_string(),
                    footprint_lonlat: parse_wkb_polygon(geom.value(i))
                        .ok_or_else(|| format!("row {i}: malformed WKB footprint"))?,
                    cloud_cover: opt_f64(cloud, i),
                    fingerprint: fp.value(i).to_string(),
                    scaling,
                },
                ingested: ts(ingested.value(i))?,
            };
            check_scene_row(&entry.scene).map_err(|reason| format!("row {i}: {reason}"))?;
            out.push(entry);
        }
        Ok(())
    };
    for b in &batches {
        decode(b, &mut out).map_err(|reason| Error::CorruptCatalog {
            path: path.to_path_buf(),
            reason,
        })?;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn when(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    pub(crate) fn entry(i: i64) -> FragmentEntry {
        let ring = vec![
            (10.0 + i as f64, 45.0),
            (10.5 + i as f64, 45.0),
            (10.5 + i as f64, 45.5),
            (10.0 + i as f64, 45.5),
        ];
        FragmentEntry {
            tile: TileId::new(i, -i),
            band: "B08".into(),
            product: "S2".into(),
            time_min: when(1_600_000_000 + i),
            time_max: when(1_600_100_000 + i),
            observations: 3,
            bbox: ring_bounds(&ring).unwrap(),
            footprint_lonlat: {
                let mut r = ring.clone();
                r.push(ring[0]);
                r
            },
            resolution: 10.0,
            path: format!(
                "fragments/x{i}_y{}/B08/S2_20200913T122640Z_0123456789abcdef.arrow",
                -i
            ),
            bytes: 1234,
            checksum: "xxh3:0123456789abcdef".into(),
            dtype: DataType::U16,
            width: 256,
            height: 256,
            valid_count: 100,
            valid_min: Some(1.0),
            valid_max: if i == 0 { None } else { Some(9.0) },
            valid_mean: Some(4.5),
            window: PixelWindow::new(i as u32, 0, 256 - i as u32, 200),
            index: ChunkIndex {
                shape: crate::store::ChunkShape::DEFAULT,
                blocks: vec![3],
                dictionary: 100..200,
                runs: vec![crate::store::ChunkRun {
                    chunk: 1,
                    start: 200,
                    end: 900,
                }],
                footer: 908,
                epsg: 32633,
                transform: crate::geo::GeoTransform::north_up(0.0, 2560.0, 10.0, 10.0),
                nodata: Some(0.0),
                scale: 1e-4,
                offset: 0.0,
            },
        }
    }

    #[test]
    fn wkb_round_trip_closes_rings() {
        let ring = [(1.0, 2.0), (3.0, 2.0), (3.0, 4.0)];
        let wkb = wkb_polygon(&ring);
        assert_eq!(wkb.len(), 1 + 4 + 4 + 4 + 4 * 16);
        assert_eq!(&wkb[..5], &[1, 3, 0, 0, 0]);
        assert_eq!(
            parse_wkb_polygon(&wkb).unwrap(),
            vec![(1.0, 2.0), (3.0, 2.0), (3.0, 4.0), (1.0, 2.0)]
        );
        assert_eq!(parse_wkb_polygon(&wkb_polygon(&[])).unwrap(), vec![]);
        assert!(parse_wkb_polygon(&wkb[..20]).is_none());
        assert!(parse_wkb_polygon(&[]).is_none());
    }

    #[test]
    fn fragments_round_trip_with_geo_metadata() {
        let rows = vec![entry(0), entry(1), entry(2)];
        let p = Path::new("catalog/part-x-fragments.parquet");
        let part = encode_fragments(p, &rows).unwrap();
        let stats: serde_json::Value = serde_json::from_str(&part.stats).unwrap();
        assert_eq!(stats["numRecords"], 3);
        assert_eq!(stats["minValues"]["time_min"], "2020-09-13T12:26:40.000Z");
        assert_eq!(stats["maxValues"]["time_max"], "2020-09-14T16:13:22.000Z");
        assert_eq!(stats["nullCount"]["scene_id"], 3);
        let bytes = part.bytes;
        assert_eq!(&bytes[..4], b"PAR1");
        let back = decode_fragments(p, bytes.clone()).unwrap();
        assert_eq!(back, rows);
        let r = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        let geo = r
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .find(|k| k.key == "geo")
            .unwrap()
            .value
            .clone()
            .unwrap();
        let geo: serde_json::Value = serde_json::from_str(&geo).unwrap();
        assert_eq!(geo["version"], "1.1.0");
        assert_eq!(geo["primary_column"], "geometry");
        assert_eq!(geo["columns"]["geometry"]["encoding"], "WKB");
        assert_eq!(
            geo["columns"]["geometry"]["bbox"],
            serde_json::json!([10.0, 45.0, 12.5, 45.5])
        );
    }

    #[test]
    fn scenes_round_trip() {
        let rows = vec![SceneEntry {
            scene: SceneRecord {
                scene_id: "S2A_1".into(),
                source: "s3://bucket/a.tif".into(),
                acquired: when(1_650_000_000),
                product: "S2".into(),
                footprint_lonlat: vec![],
                cloud_cover: None,
                fingerprint: "fp1".into(),
                scaling: BTreeMap::new(),
            },
            ingested: when(1_700_000_000),
        }];
        let mut rows = rows;
        let mut scaled = rows[0].clone();
        scaled.scene.scene_id = "S2A_2".into();
        scaled.scene.scaling = BTreeMap::from([(
            "B04".to_string(),
            BandScaling {
                scale: 1e-4,
                offset: -0.1,
            },
        )]);
        rows.push(scaled);
        let p = Path::new("s.parquet");
        let back = decode_scenes(p, encode_scenes(p, &rows).unwrap().bytes).unwrap();
        assert_eq!(back, rows);
        // A scenes part is not a fragments part: its fragment columns are null.
        let e = decode_fragments(p, encode_scenes(p, &rows).unwrap().bytes).unwrap_err();
        assert!(e.to_string().contains("has nulls"), "{e}");
    }

    #[test]
    fn scene_parts_written_before_the_scaling_column_read_as_unscaled() {
        let row = SceneEntry {
            scene: SceneRecord {
                scene_id: "old".into(),
                source: "a.tif".into(),
                acquired: when(1_650_000_000),
                product: "S2".into(),
                fingerprint: "fp".into(),
                ..Default::default()
            },
            ingested: when(1_700_000_000),
        };
        let p = Path::new("old.parquet");
        let bytes = encode_scenes(p, std::slice::from_ref(&row)).unwrap().bytes;
        // Drop the column, as a part of an older warehouse lacks it.
        let batch = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| batch.schema().field(i).name() != "scaling")
            .collect();
        let old = batch.project(&keep).unwrap();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, old.schema(), None).unwrap();
        w.write(&old).unwrap();
        w.close().unwrap();
        assert_eq!(decode_scenes(p, out).unwrap(), vec![row]);
    }

    #[test]
    fn stat_times_round_outward_to_milliseconds() {
        assert_eq!(stat_time(1_500, false), "1970-01-01T00:00:00.001Z");
        assert_eq!(stat_time(1_500, true), "1970-01-01T00:00:00.002Z");
        assert_eq!(stat_time(2_000, true), "1970-01-01T00:00:00.002Z");
        assert_eq!(stat_time(-1, false), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn table_schema_is_kind_then_the_union_of_both_kinds() {
        let t = table_schema();
        assert_eq!(t.field(0).name(), KIND_COLUMN);
        assert_eq!(
            t.fields().len(),
            1 + SHARED.len() + FRAGMENT_ONLY.len() + SCENE_ONLY.len()
        );
        assert!(t.fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn real_parts_have_room_per_row_and_repeated_rows_are_refused() {
        let p = Path::new("catalog/kind=fragment/part-x.parquet");
        let rows: Vec<FragmentEntry> = (0..20_000)
            .map(|i| {
                let mut e = entry(i % 50);
                e.path = super::super::layout::fragment_key(
                    &e.tile.to_string(),
                    "B08",
                    "S2",
                    "20200913T122640Z",
                    &super::super::layout::unique_id(),
                );
                e.checksum = super::super::layout::checksum(&i.to_le_bytes());
                e
            })
            .collect();
        let bytes = encode_fragments(p, &rows).unwrap().bytes;
        let per_row = bytes.len() as u64 / rows.len() as u64;
        assert!(
            per_row >= 2 * min_bytes_per_row(PartKind::Fragment),
            "{per_row}"
        );
        assert_eq!(decode_fragments(p, bytes).unwrap().len(), rows.len());
        // Scene rows as short as the catalog bench's.
        let scenes: Vec<SceneEntry> = (0..20_000)
            .map(|day| SceneEntry {
                scene: SceneRecord {
                    scene_id: format!("S2_{day:05}"),
                    source: format!("/d/{day}.tif"),
                    acquired: when(1_600_000_000 + day * 86_400),
                    product: "S2".into(),
                    footprint_lonlat: vec![],
                    cloud_cover: None,
                    fingerprint: format!("fp-{day}"),
                    scaling: BTreeMap::new(),
                },
                ingested: when(1_700_000_000),
            })
            .collect();
        let bytes = encode_scenes(p, &scenes).unwrap().bytes;
        let per_row = bytes.len() as u64 / scenes.len() as u64;
        assert!(
            per_row >= 2 * min_bytes_per_row(PartKind::Scene),
            "{per_row}"
        );
        // The same row 200,000 times costs almost nothing on disk: refused unread.
        let same = vec![entry(1); 200_000];
        let bytes = encode_fragments(p, &same).unwrap().bytes;
        let e = decode_fragments(p, bytes).unwrap_err().to_string();
        assert!(e.contains("200000 rows in"), "{e}");
    }

    #[test]
    fn fuzz_finds_are_errors() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/warehouse/fuzz");
        let bytes = std::fs::read(dir.join("part-negative-chunk-offset.parquet")).unwrap();
        let p = Path::new("part.parquet");
        // The layout check answers, not the panic guard around the decoder.
        let e = decode_fragments(p, bytes.clone()).unwrap_err().to_string();
        assert!(e.contains("is not inside the"), "{e}");
        let e = decode_scenes(p, bytes).unwrap_err().to_string();
        assert!(e.contains("is not inside the"), "{e}");
        // A run-length integer longer than ten bytes: the decoder asserts, the guard answers.
        let bytes = std::fs::read(dir.join("part-long-run-length.parquet")).unwrap();
        for e in [
            decode_fragments(p, bytes.clone()).unwrap_err(),
            decode_scenes(p, bytes).unwrap_err(),
        ] {
            let e = e.to_string();
            assert!(e.contains("part.parquet") && e.lines().count() == 1, "{e}");
        }
    }

    #[test]
    fn corrupt_parts_are_errors_naming_the_file() {
        let p = Path::new("catalog/part-bad-fragments.parquet");
        let good = encode_fragments(p, &[entry(1)]).unwrap().bytes;
        for cut in [0, 4, good.len() / 2, good.len() - 1] {
            let e = decode_fragments(p, good[..cut].to_vec()).unwrap_err();
            assert!(e.to_string().contains("part-bad-fragments.parquet"), "{e}");
        }
        for i in (0..good.len()).step_by(7) {
            let mut b = good.clone();
            b[i] ^= 0xff;
            let _ = decode_fragments(p, b);
        }
    }
}
