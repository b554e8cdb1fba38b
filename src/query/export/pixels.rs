//! The pixels of an area as a long table, one row per (time, band, pixel) inside the region:
//! `time, product, band, x, y, value` (product: the time step's product, `+`-joined when
//! mosaicked across products; x, y: pixel centres in the grid CRS; value empty/null where
//! invalid), as CSV or Parquet, written window by window. Rows follow the cube's order
//! (time, band, y, x) within each window.

use super::source::{CubeInfo, Source};
use super::{io_error, type_name, Written};
use crate::query::budget::Alignment;
use crate::query::plan::CubeWindow;
use crate::store::Pixel;
use crate::{DataType, Sample};
use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int16Array, Int32Array, Int8Array, RecordBatch,
    StringArray, TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt8Array,
};
use arrow_schema::{Field, Schema, TimeUnit};
use ndarray::{Array4, ArrayView2};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Which pixels of a window lie in the region (`None`: all).
fn region_mask(info: &CubeInfo, win: &CubeWindow) -> Option<Vec<bool>> {
    let region = info.region.as_ref()?;
    let t = info
        .transform
        .window(win.cols.start as f64, win.rows.start as f64, 1.0, 1.0);
    region
        .raster_mask(&t, win.cols.len(), win.rows.len())
        .map(|m| m.iter().copied().collect())
}

/// True when `v` is a valid value of a cube whose nodata is `nodata`.
fn valid<T: Sample>(v: T, nodata: f64) -> bool {
    let x = v.to_f64();
    !x.is_nan() && x != nodata
}

/// Pixel-centre coordinates of a window's columns and rows.
fn centres(info: &CubeInfo, win: &CubeWindow) -> (Vec<f64>, Vec<f64>) {
    let xs = win
        .cols
        .clone()
        .map(|c| info.transform.apply(c as f64 + 0.5, 0.5).0)
        .collect();
    let ys = win
        .rows
        .clone()
        .map(|r| info.transform.apply(0.5, r as f64 + 0.5).1)
        .collect();
    (xs, ys)
}

/// Windows of whole time slabs where the budget allows (rows come out in cube order).
fn table_windows<T>(src: &dyn Source<T>) -> Vec<CubeWindow> {
    let (_, _, h, w) = src.info().dim();
    src.windows(Alignment {
        rows: h.max(1),
        cols: w.max(1),
    })
}

/// A value as CSV text (empty when invalid).
trait CsvValue: Sample {
    fn text(self, out: &mut Vec<u8>);
}

macro_rules! csv_int {
    ($($t:ty),*) => {$(
        impl CsvValue for $t {
            fn text(self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(self).as_bytes());
            }
        }
    )*};
}
csv_int!(u8, i8, u16, i16, u32, i32);

impl CsvValue for f32 {
    fn text(self, out: &mut Vec<u8>) {
        out.extend_from_slice(ryu::Buffer::new().format_finite(self).as_bytes());
    }
}

impl CsvValue for f64 {
    fn text(self, out: &mut Vec<u8>) {
        out.extend_from_slice(ryu::Buffer::new().format_finite(self).as_bytes());
    }
}

/// Formats one (time, band) slab of a window as CSV lines.
fn csv_slab<T: CsvValue>(
    slab: ArrayView2<'_, T>,
    head: &str,
    xs: &[String],
    ys: &[String],
    mask: Option<&[bool]>,
    nodata: f64,
) -> Vec<u8> {
    let (h, w) = slab.dim();
    let mut out = Vec::with_capacity(h * w * (head.len() + 24));
    for (y, row) in slab.outer_iter().enumerate() {
        for (x, &v) in row.iter().enumerate() {
            if mask.is_some_and(|m| !m[y * w + x]) {
                continue;
            }
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(xs[x].as_bytes());
            out.push(b',');
            out.extend_from_slice(ys[y].as_bytes());
            out.push(b',');
            if valid(v, nodata) {
                v.text(&mut out);
            }
            out.push(b'\n');
        }
    }
    out
}

/// CSV text of a sample type, dispatched to [`CsvValue`].
fn csv_window<T: Pixel>(data: &Array4<T>, info: &CubeInfo, win: &CubeWindow) -> Vec<Vec<u8>> {
    macro_rules! typed {
        ($t:ty) => {{
            let data: &Array4<$t> = same_type(data);
            csv_blocks(data, info, win)
        }};
    }
    match T::DTYPE {
        DataType::U8 => typed!(u8),
        DataType::I8 => typed!(i8),
        DataType::U16 => typed!(u16),
        DataType::I16 => typed!(i16),
        DataType::U32 => typed!(u32),
        DataType::I32 => typed!(i32),
        DataType::F32 => typed!(f32),
        DataType::F64 => typed!(f64),
    }
}

/// An array of `T` as an array of `U`: they are the same type (checked).
fn same_type<T: 'static, U: 'static>(a: &Array4<T>) -> &Array4<U> {
    (a as &dyn std::any::Any)
        .downcast_ref::<Array4<U>>()
        .expect("the sample type matches its DataType")
}

fn csv_blocks<T: CsvValue>(data: &Array4<T>, info: &CubeInfo, win: &CubeWindow) -> Vec<Vec<u8>> {
    let (s, b, _, _) = data.dim();
    let mask = region_mask(info, win);
    let (xs, ys) = centres(info, win);
    let fmt = |v: f64| {
        ryu::Buffer::new()
            .format_finite(v)
            .trim_end_matches(".0")
            .to_string()
    };
    let xs: Vec<String> = xs.into_iter().map(fmt).collect();
    let ys: Vec<String> = ys.into_iter().map(fmt).collect();
    (0..s * b)
        .into_par_iter()
        .map(|i| {
            let (k, bi) = (i / b, i % b);
            let t = win.steps.start + k;
            let head = format!(
                "{},{},{},",
                super::geotiff::time_text(&info.times[t]),
                csv_field(product_of(info, t)),
                csv_field(&info.bands[bi])
            );
            csv_slab(
                data.index_axis(ndarray::Axis(0), k)
                    .index_axis(ndarray::Axis(0), bi),
                &head,
                &xs,
                &ys,
                mask.as_deref(),
                info.nodata,
            )
        })
        .collect()
}

/// The product of time step `t` (empty when the cube does not say).
fn product_of(info: &CubeInfo, t: usize) -> &str {
    info.products.get(t).map_or("", String::as_str)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes the long table as CSV.
pub(super) fn write_csv<T: Pixel>(
    src: &dyn Source<T>,
    path: &Path,
) -> Result<Written, super::Error> {
    let info = src.info();
    let file = std::fs::File::create(path).map_err(io_error(path))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    const HEADER: &[u8] = b"time,product,band,x,y,value\n";
    out.write_all(HEADER).map_err(io_error(path))?;
    let (mut rows, mut bytes) = (0u64, HEADER.len() as u64);
    for win in table_windows(src) {
        let data = src.read(&win)?;
        for block in csv_window(&data, info, &win) {
            rows += block.iter().filter(|&&c| c == b'\n').count() as u64;
            bytes += block.len() as u64;
            out.write_all(&block).map_err(io_error(path))?;
        }
    }
    out.flush().map_err(io_error(path))?;
    Ok(Written {
        path: path.to_path_buf(),
        what: describe(info, rows, "empty"),
        bytes,
    })
}

fn describe(info: &CubeInfo, rows: u64, invalid: &str) -> String {
    let (t, b, h, w) = info.dim();
    format!(
        "the pixels as a long table (time, product, band, x, y, value), {rows} rows: {t} times x {b} bands x pixels of a {w} x {h} grid, EPSG:{}, {} values ({invalid} where invalid)",
        info.epsg,
        type_name(info.dtype)
    )
}

/// The Arrow type of the value column.
fn value_type(d: DataType) -> arrow_schema::DataType {
    use arrow_schema::DataType as A;
    match d {
        DataType::U8 => A::UInt8,
        DataType::I8 => A::Int8,
        DataType::U16 => A::UInt16,
        DataType::I16 => A::Int16,
        DataType::U32 => A::UInt32,
        DataType::I32 => A::Int32,
        DataType::F32 => A::Float32,
        DataType::F64 => A::Float64,
    }
}

/// The value column of one slab: valid values, nulls elsewhere.
fn value_column<T: Pixel>(values: Vec<Option<f64>>) -> ArrayRef {
    macro_rules! col {
        ($arr:ty, $t:ty) => {
            Arc::new(<$arr>::from_iter(values.iter().map(|v| v.map(|x| x as $t)))) as ArrayRef
        };
    }
    match T::DTYPE {
        DataType::U8 => col!(UInt8Array, u8),
        DataType::I8 => col!(Int8Array, i8),
        DataType::U16 => col!(UInt16Array, u16),
        DataType::I16 => col!(Int16Array, i16),
        DataType::U32 => col!(UInt32Array, u32),
        DataType::I32 => col!(Int32Array, i32),
        DataType::F32 => col!(Float32Array, f32),
        DataType::F64 => col!(Float64Array, f64),
    }
}

/// Writes the long table as Parquet (snappy), one row group per (time, band) slab or more.
pub(super) fn write_parquet<T: Pixel>(
    src: &dyn Source<T>,
    path: &Path,
) -> Result<Written, super::Error> {
    let info = src.info();
    let schema = Arc::new(
        Schema::new(vec![
            Field::new(
                "time",
                arrow_schema::DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("product", arrow_schema::DataType::Utf8, false),
            Field::new("band", arrow_schema::DataType::Utf8, false),
            Field::new("x", arrow_schema::DataType::Float64, false),
            Field::new("y", arrow_schema::DataType::Float64, false),
            Field::new("value", value_type(info.dtype), true),
        ])
        .with_metadata(
            [
                ("pixelquery.crs".to_string(), format!("EPSG:{}", info.epsg)),
                (
                    "pixelquery.geotransform".to_string(),
                    format!("{:?}", info.transform.to_gdal()),
                ),
                ("pixelquery.shape".to_string(), format!("{:?}", info.dim())),
                ("pixelquery.nodata".to_string(), format!("{}", info.nodata)),
                ("pixelquery.values".to_string(), info.values.describe()),
            ]
            .into_iter()
            .collect::<std::collections::HashMap<String, String>>(),
        ),
    );
    let bad = |e: parquet::errors::ParquetError| super::Error::Unsuitable {
        file: path.display().to_string(),
        reason: e.to_string(),
    };
    let file = std::fs::File::create(path).map_err(io_error(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(bad)?;
    let mut rows = 0u64;
    for win in table_windows(src) {
        let data = src.read(&win)?;
        let (s, b, _, _) = data.dim();
        let mask = region_mask(info, &win);
        let (xs, ys) = centres(info, &win);
        let w = win.cols.len();
        let batches: Vec<Result<RecordBatch, arrow_schema::ArrowError>> = (0..s * b)
            .into_par_iter()
            .map(|i| {
                let (k, bi) = (i / b, i % b);
                let step = data.index_axis(ndarray::Axis(0), k);
                let slab = step.index_axis(ndarray::Axis(0), bi);
                let keep = |y: usize, x: usize| mask.as_ref().is_none_or(|m| m[y * w + x]);
                let (mut cx, mut cy, mut vals) = (Vec::new(), Vec::new(), Vec::new());
                for ((y, x), &v) in slab.indexed_iter() {
                    if keep(y, x) {
                        cx.push(xs[x]);
                        cy.push(ys[y]);
                        vals.push(valid(v, info.nodata).then(|| v.to_f64()));
                    }
                }
                let n = cx.len();
                let step_index = win.steps.start + k;
                let t = info.times[step_index].timestamp_micros();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(TimestampMicrosecondArray::from(vec![t; n]).with_timezone("UTC")),
                        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                            product_of(info, step_index),
                            n,
                        ))),
                        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                            info.bands[bi].as_str(),
                            n,
                        ))),
                        Arc::new(Float64Array::from(cx)),
                        Arc::new(Float64Array::from(cy)),
                        value_column::<T>(vals),
                    ],
                )
            })
            .collect();
        for batch in batches {
            let batch = batch.map_err(|e| super::Error::Unsuitable {
                file: path.display().to_string(),
                reason: e.to_string(),
            })?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(bad)?;
        }
    }
    writer.close().map_err(bad)?;
    let bytes = std::fs::metadata(path).map_err(io_error(path))?.len();
    Ok(Written {
        path: path.to_path_buf(),
        what: describe(info, rows, "null"),
        bytes,
    })
}
