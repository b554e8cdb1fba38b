//! The catalog: GeoParquet 1.1 files listing every fragment and every scene of a commit.
//!
//! Each commit writes at most two immutable parts, `catalog/part-{id}-fragments.parquet`
//! (one row per fragment) and `catalog/part-{id}-scenes.parquet` (one row per scene). Both
//! have a WKB `geometry` column (the lon/lat footprint polygon, CRS84), a `bbox` covering
//! struct and the `geo` file metadata, so GeoPandas' `read_parquet` and DuckDB's spatial
//! extension open them unaided. Which parts form a snapshot is decided by the commit log.

use super::fragment::PixelWindow;
use super::layout::validate_rel_path;
use super::{Error, Result};
use crate::dtype::DataType;
use crate::geo::Bounds;
use crate::grid::TileId;
use arrow_array::builder::{
    BinaryBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    StructArray, TimestampMicrosecondArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType as ArrowType, Field, Fields, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
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
}

/// A scene as recorded when ingested.
#[derive(Debug, Clone, PartialEq)]
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

fn fragment_fields() -> Vec<Field> {
    vec![
        Field::new("tile", ArrowType::Utf8, false),
        Field::new("band", ArrowType::Utf8, false),
        Field::new("product", ArrowType::Utf8, false),
        Field::new("time_min", ts_type(), false),
        Field::new("time_max", ts_type(), false),
        Field::new("observations", ArrowType::Int64, false),
        Field::new("geometry", ArrowType::Binary, false),
        Field::new("bbox", ArrowType::Struct(bbox_fields()), true),
        Field::new("resolution", ArrowType::Float64, false),
        Field::new("path", ArrowType::Utf8, false),
        Field::new("bytes", ArrowType::Int64, false),
        Field::new("checksum", ArrowType::Utf8, false),
        Field::new("dtype", ArrowType::Utf8, false),
        Field::new("width", ArrowType::Int32, false),
        Field::new("height", ArrowType::Int32, false),
        Field::new("valid_count", ArrowType::Int64, false),
        Field::new("valid_min", ArrowType::Float64, true),
        Field::new("valid_max", ArrowType::Float64, true),
        Field::new("valid_mean", ArrowType::Float64, true),
        Field::new("window_col", ArrowType::Int32, false),
        Field::new("window_row", ArrowType::Int32, false),
        Field::new("window_width", ArrowType::Int32, false),
        Field::new("window_height", ArrowType::Int32, false),
    ]
}

fn scene_fields() -> Vec<Field> {
    vec![
        Field::new("scene_id", ArrowType::Utf8, false),
        Field::new("source", ArrowType::Utf8, false),
        Field::new("acquired", ts_type(), false),
        Field::new("product", ArrowType::Utf8, false),
        Field::new("geometry", ArrowType::Binary, false),
        Field::new("bbox", ArrowType::Struct(bbox_fields()), true),
        Field::new("cloud_cover", ArrowType::Float64, true),
        Field::new("ingested", ts_type(), false),
        Field::new("fingerprint", ArrowType::Utf8, false),
    ]
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

fn write_parquet(path: &Path, batch: &RecordBatch, boxes: &[Option<Bounds>]) -> Result<Vec<u8>> {
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
    w.write(batch).map_err(pq)?;
    w.close().map_err(pq)?;
    Ok(out)
}

/// Encodes fragment rows as a GeoParquet file (returned as bytes; `path` names errors).
pub(crate) fn encode_fragments(path: &Path, rows: &[FragmentEntry]) -> Result<Vec<u8>> {
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
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(tile.finish()),
        Arc::new(band.finish()),
        Arc::new(product.finish()),
        Arc::new(tmin.finish()),
        Arc::new(tmax.finish()),
        Arc::new(obs.finish()),
        Arc::new(geom.finish()),
        bbox_array(&boxes),
        Arc::new(res.finish()),
        Arc::new(rel.finish()),
        Arc::new(bytes.finish()),
        Arc::new(sum.finish()),
        Arc::new(dtype.finish()),
        Arc::new(width.finish()),
        Arc::new(height.finish()),
        Arc::new(vcount.finish()),
        Arc::new(vmin.finish()),
        Arc::new(vmax.finish()),
        Arc::new(vmean.finish()),
    ];
    let columns: Vec<ArrayRef> = columns
        .into_iter()
        .chain(window.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef))
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fragment_fields())), columns).map_err(
        |source| Error::Arrow {
            path: path.to_path_buf(),
            source,
        },
    )?;
    write_parquet(path, &batch, &boxes)
}

/// Encodes scene rows as a GeoParquet file.
pub(crate) fn encode_scenes(path: &Path, rows: &[SceneEntry]) -> Result<Vec<u8>> {
    let mut id = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut acquired = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut product = StringBuilder::new();
    let mut geom = BinaryBuilder::new();
    let mut cloud = Float64Builder::new();
    let mut ingested = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut fp = StringBuilder::new();
    let mut boxes = Vec::with_capacity(rows.len());
    for r in rows {
        let s = &r.scene;
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
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(source.finish()),
        Arc::new(acquired.finish()),
        Arc::new(product.finish()),
        Arc::new(geom.finish()),
        bbox_array(&boxes),
        Arc::new(cloud.finish()),
        Arc::new(ingested.finish()),
        Arc::new(fp.finish()),
    ];
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(scene_fields())), columns).map_err(|source| {
            Error::Arrow {
                path: path.to_path_buf(),
                source,
            }
        })?;
    write_parquet(path, &batch, &boxes)
}

/// Reads all record batches of a Parquet file held in memory, checking the column names
/// and types against `fields`.
fn read_batches(path: &Path, bytes: Vec<u8>, fields: &[Field]) -> Result<Vec<RecordBatch>> {
    let corrupt = |reason: String| Error::CorruptCatalog {
        path: path.to_path_buf(),
        reason,
    };
    let read = || -> std::result::Result<Vec<RecordBatch>, String> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .map_err(|e| e.to_string())?;
        let geo = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == "geo"))
            .is_some();
        if !geo {
            return Err("no GeoParquet `geo` metadata".into());
        }
        let schema = builder.schema().clone();
        if schema.fields().len() != fields.len()
            || schema
                .fields()
                .iter()
                .zip(fields)
                .any(|(a, b)| a.name() != b.name() || a.data_type() != b.data_type())
        {
            return Err("columns do not match the catalog schema".into());
        }
        let reader = builder.build().map_err(|e| e.to_string())?;
        reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    };
    // Parts are checksummed before they get here; catching a decoder panic is defence in
    // depth so that even a file with a matching checksum but hostile content is an error.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(r) => r.map_err(corrupt),
        Err(_) => Err(corrupt("Parquet decoder failed on malformed data".into())),
    }
}

fn col<T: 'static>(b: &RecordBatch, i: usize) -> std::result::Result<&T, String> {
    b.column(i).as_any().downcast_ref::<T>().ok_or_else(|| {
        format!(
            "column {} has an unexpected type",
            b.schema().field(i).name()
        )
    })
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
    let batches = read_batches(path, bytes, &fragment_fields())?;
    let mut out = Vec::new();
    let decode = |b: &RecordBatch,
                  out: &mut Vec<FragmentEntry>|
     -> std::result::Result<(), String> {
        let tile = col::<StringArray>(b, 0)?;
        let band = col::<StringArray>(b, 1)?;
        let product = col::<StringArray>(b, 2)?;
        let tmin = col::<TimestampMicrosecondArray>(b, 3)?;
        let tmax = col::<TimestampMicrosecondArray>(b, 4)?;
        let obs = col::<Int64Array>(b, 5)?;
        let geom = col::<BinaryArray>(b, 6)?;
        let res = col::<Float64Array>(b, 8)?;
        let rel = col::<StringArray>(b, 9)?;
        let bytes = col::<Int64Array>(b, 10)?;
        let sum = col::<StringArray>(b, 11)?;
        let dtype = col::<StringArray>(b, 12)?;
        let width = col::<Int32Array>(b, 13)?;
        let height = col::<Int32Array>(b, 14)?;
        let vcount = col::<Int64Array>(b, 15)?;
        let vmin = col::<Float64Array>(b, 16)?;
        let vmax = col::<Float64Array>(b, 17)?;
        let vmean = col::<Float64Array>(b, 18)?;
        let wc = col::<Int32Array>(b, 19)?;
        let wr = col::<Int32Array>(b, 20)?;
        let ww = col::<Int32Array>(b, 21)?;
        let wh = col::<Int32Array>(b, 22)?;
        for i in 0..b.num_rows() {
            let footprint = parse_wkb_polygon(geom.value(i))
                .ok_or_else(|| format!("row {i}: malformed WKB footprint"))?;
            let path = rel.value(i).to_string();
            if !validate_rel_path(&path) || !path.starts_with("fragments/") {
                return Err(format!(
                    "row {i}: fragment path {path:?} leaves the warehouse"
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
            out.push(FragmentEntry {
                tile: tile
                    .value(i)
                    .parse()
                    .map_err(|_| format!("row {i}: bad tile id {:?}", tile.value(i)))?,
                band: band.value(i).to_string(),
                product: product.value(i).to_string(),
                time_min: ts(tmin.value(i))?,
                time_max: ts(tmax.value(i))?,
                observations: non_negative(obs.value(i), "observation count")?,
                bbox: ring_bounds(&footprint).unwrap_or(Bounds::new(0.0, 0.0, 0.0, 0.0)),
                footprint_lonlat: footprint,
                resolution: res.value(i),
                path,
                bytes: non_negative(bytes.value(i), "byte size")?,
                checksum: sum.value(i).to_string(),
                dtype: DataType::parse(dt).ok_or_else(|| format!("row {i}: bad dtype {dt:?}"))?,
                width: w,
                height: h,
                valid_count: non_negative(vcount.value(i), "valid count")?,
                valid_min: opt_f64(vmin, i),
                valid_max: opt_f64(vmax, i),
                valid_mean: opt_f64(vmean, i),
                window,
            });
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

/// Decodes a scenes part.
pub(crate) fn decode_scenes(path: &Path, bytes: Vec<u8>) -> Result<Vec<SceneEntry>> {
    let batches = read_batches(path, bytes, &scene_fields())?;
    let mut out = Vec::new();
    let decode = |b: &RecordBatch, out: &mut Vec<SceneEntry>| -> std::result::Result<(), String> {
        let id = col::<StringArray>(b, 0)?;
        let source = col::<StringArray>(b, 1)?;
        let acquired = col::<TimestampMicrosecondArray>(b, 2)?;
        let product = col::<StringArray>(b, 3)?;
        let geom = col::<BinaryArray>(b, 4)?;
        let cloud = col::<Float64Array>(b, 6)?;
        let ingested = col::<TimestampMicrosecondArray>(b, 7)?;
        let fp = col::<StringArray>(b, 8)?;
        for i in 0..b.num_rows() {
            out.push(SceneEntry {
                scene: SceneRecord {
                    scene_id: id.value(i).to_string(),
                    source: source.value(i).to_string(),
                    acquired: ts(acquired.value(i))?,
                    product: product.value(i).to_string(),
                    footprint_lonlat: parse_wkb_polygon(geom.value(i))
                        .ok_or_else(|| format!("row {i}: malformed WKB footprint"))?,
                    cloud_cover: opt_f64(cloud, i),
                    fingerprint: fp.value(i).to_string(),
                },
                ingested: ts(ingested.value(i))?,
            });
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
mod tests {
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
            path: format!("fragments/x{i}_y{}/B08/S2_a.arrow", -i),
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
        let bytes = encode_fragments(p, &rows).unwrap();
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
            },
            ingested: when(1_700_000_000),
        }];
        let p = Path::new("s.parquet");
        let back = decode_scenes(p, encode_scenes(p, &rows).unwrap()).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn corrupt_parts_are_errors_naming_the_file() {
        let p = Path::new("catalog/part-bad-fragments.parquet");
        let good = encode_fragments(p, &[entry(1)]).unwrap();
        for cut in [0, 4, good.len() / 2, good.len() - 1] {
            let e = decode_fragments(p, good[..cut].to_vec()).unwrap_err();
            assert!(e.to_string().contains("part-bad-fragments.parquet"), "{e}");
        }
        for i in (0..good.len()).step_by(7) {
            let mut b = good.clone();
            b[i] ^= 0xff;
            let _ = decode_fragments(p, b);
        }
        // A scenes part is not a fragments part.
        let s = encode_scenes(p, &[]).unwrap();
        assert!(decode_fragments(p, s).is_err());
    }
}
