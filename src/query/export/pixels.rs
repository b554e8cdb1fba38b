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
    ArrayRef, Float32Array, Float64Array, Int16Array, Int32Array, Int8Array, UInt16Array,
    UInt32Array, UInt8Array,
};
use arrow_schema::{Field, Schema, TimeUnit};
use ndarray::{Array4, ArrayView2};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::column::writer::{get_column_writer, ColumnCloseResult, ColumnWriter};
use parquet::data_type::ByteArray;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
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

/// Appends one (time, band) slab of a window to `out` as CSV lines.
fn csv_slab<T: CsvValue>(
    slab: ArrayView2<'_, T>,
    head: &str,
    xs: &[String],
    ys: &[String],
    mask: Option<&[bool]>,
    nodata: f64,
    out: &mut Vec<u8>,
) {
    let (h, w) = slab.dim();
    out.reserve(h * w * (head.len() + 24));
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
                v.text(out);
            }
            out.push(b'\n');
        }
    }
}

/// An array of `T` as an array of `U`: they are the same type (checked).
fn same_type<T: 'static, U: 'static>(a: &Array4<T>) -> &Array4<U> {
    (a as &dyn std::any::Any)
        .downcast_ref::<Array4<U>>()
        .expect("the sample type matches its DataType")
}

/// The CSV text shared by the slabs of a window: pixel centres and the region mask.
struct CsvWindow<'a> {
    info: &'a CubeInfo,
    win: &'a CubeWindow,
    xs: Vec<String>,
    ys: Vec<String>,
    mask: Option<Vec<bool>>,
}

impl<'a> CsvWindow<'a> {
    fn new(info: &'a CubeInfo, win: &'a CubeWindow) -> Self {
        let (xs, ys) = centres(info, win);
        let fmt = |v: f64| {
            ryu::Buffer::new()
                .format_finite(v)
                .trim_end_matches(".0")
                .to_string()
        };
        CsvWindow {
            info,
            win,
            xs: xs.into_iter().map(fmt).collect(),
            ys: ys.into_iter().map(fmt).collect(),
            mask: region_mask(info, win),
        }
    }

    /// Rows per (time, band) slab.
    fn rows(&self) -> u64 {
        match &self.mask {
            Some(m) => m.iter().filter(|&&k| k).count() as u64,
            None => (self.xs.len() * self.ys.len()) as u64,
        }
    }

    /// Appends slab `i` (time step `i / b`, band `i % b` of the window) to `out`.
    fn slab<T: Pixel>(&self, data: &Array4<T>, i: usize, out: &mut Vec<u8>) {
        macro_rules! typed {
            ($t:ty) => {{
                let data: &Array4<$t> = same_type(data);
                self.typed_slab(data, i, out)
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

    fn typed_slab<T: CsvValue>(&self, data: &Array4<T>, i: usize, out: &mut Vec<u8>) {
        let b = data.dim().1;
        let (k, bi) = (i / b, i % b);
        let t = self.win.steps.start + k;
        let head = format!(
            "{},{},{},",
            super::geotiff::time_text(&self.info.times[t]),
            csv_field(product_of(self.info, t)),
            csv_field(&self.info.bands[bi])
        );
        csv_slab(
            data.slice(ndarray::s![k, bi, .., ..]),
            &head,
            &self.xs,
            &self.ys,
            self.mask.as_deref(),
            self.info.nodata,
            out,
        )
    }
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
///
/// Slabs are formatted on all cores a few at a time while a writer thread writes the previous
/// ones, in order; their buffers go back to be reused, so memory stays at a few slabs' text.
pub(super) fn write_csv<T: Pixel>(
    src: &dyn Source<T>,
    path: &Path,
) -> Result<Written, super::Error> {
    let info = src.info();
    let file = std::fs::File::create(path).map_err(io_error(path))?;
    const HEADER: &[u8] = b"time,product,band,x,y,value\n";
    let (mut rows, mut bytes) = (0u64, HEADER.len() as u64);
    let group = rayon::current_num_threads().max(1);
    let (to_writer, texts) = std::sync::mpsc::sync_channel::<Vec<Vec<u8>>>(1);
    let (to_reuse, spares) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            out.write_all(HEADER)?;
            for text in texts {
                for block in text {
                    out.write_all(&block)?;
                    // The formatter may have finished: nothing to hand the buffer back to.
                    let _ = to_reuse.send(block);
                }
            }
            out.flush()
        });
        let formatted = (|| -> Result<(), super::Error> {
            for win in table_windows(src) {
                let data = src.read(&win)?;
                let (s, b, _, _) = data.dim();
                let csv = CsvWindow::new(info, &win);
                let per_slab = csv.rows();
                let slabs: Vec<usize> = (0..s * b).collect();
                for part in slabs.chunks(group) {
                    let mut blocks: Vec<Vec<u8>> = part
                        .iter()
                        .map(|_| {
                            let mut v = spares.try_recv().unwrap_or_default();
                            v.clear();
                            v
                        })
                        .collect();
                    blocks
                        .par_iter_mut()
                        .zip(part)
                        .for_each(|(out, &i)| csv.slab(&data, i, out));
                    rows += per_slab * part.len() as u64;
                    bytes += blocks.iter().map(|v| v.len() as u64).sum::<u64>();
                    if to_writer.send(blocks).is_err() {
                        // The writer stopped on an error: it says which.
                        return Ok(());
                    }
                }
                crate::query::recycle::give_array(data);
            }
            Ok(())
        })();
        drop(to_writer);
        let written = writer.join().expect("the CSV writer thread does not panic");
        formatted?;
        written.map_err(io_error(path))
    })?;
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
fn value_column<T: Pixel>(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    macro_rules! col {
        ($arr:ty, $t:ty) => {
            Arc::new(<$arr>::from_iter(values.map(|v| v.map(|x| x as $t)))) as ArrayRef
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

/// The Arrow schema of the long table, with the cube's georeferencing in its metadata.
fn table_schema(info: &CubeInfo) -> Arc<Schema> {
    Arc::new(
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
    )
}

/// Column positions in [`table_schema`].
const TIME: usize = 0;
const PRODUCT: usize = 1;
const BAND: usize = 2;
const X: usize = 3;
const Y: usize = 4;

/// The values of a column chunk that is the same in several row groups of a window: the
/// time, product and band of a slab (one value repeated) and the pixel centres.
enum Repeated<'a> {
    Time(i64),
    Text(&'a str),
    Coords(Vec<f64>),
}

/// A column chunk encoded once and copied into every row group that holds it.
struct SharedChunk {
    bytes: bytes::Bytes,
    close: ColumnCloseResult,
}

/// Encodes `values` (`rows` of them) as one column chunk of column `column`.
fn encode_shared(
    descr: ColumnDescPtr,
    props: &WriterPropertiesPtr,
    values: &Repeated<'_>,
    rows: usize,
) -> parquet::errors::Result<SharedChunk> {
    let mut sink = TrackedWrite::new(Vec::new());
    let close = {
        let pages = Box::new(SerializedPageWriter::new(&mut sink));
        match (get_column_writer(descr, props.clone(), pages), values) {
            (ColumnWriter::Int64ColumnWriter(mut w), Repeated::Time(t)) => {
                w.write_batch(&vec![*t; rows], None, None)?;
                w.close()?
            }
            (ColumnWriter::ByteArrayColumnWriter(mut w), Repeated::Text(s)) => {
                w.write_batch(&vec![ByteArray::from(*s); rows], None, None)?;
                w.close()?
            }
            (ColumnWriter::DoubleColumnWriter(mut w), Repeated::Coords(v)) => {
                w.write_batch(v, None, None)?;
                w.close()?
            }
            _ => {
                return Err(parquet::errors::ParquetError::General(
                    "a long-table column has an unexpected Parquet type".into(),
                ))
            }
        }
    };
    Ok(SharedChunk {
        bytes: bytes::Bytes::from(sink.into_inner()?),
        close,
    })
}

/// One piece of encoding work of a window.
enum Job<'a> {
    Shared(usize, Repeated<'a>),
    /// The value column of slab `i` (time step `i / b`, band `i % b` of the window).
    Values(usize),
}

enum Encoded {
    Shared(SharedChunk),
    Values(ArrowColumnChunk),
}

/// Writes the long table as Parquet (snappy), one row group per (time, band) slab.
///
/// Only the value column differs between the slabs of a window: its chunks are encoded on all
/// cores, while the time, product, band, x and y chunks are encoded once per distinct value
/// and copied into each row group that repeats them.
pub(super) fn write_parquet<T: Pixel>(
    src: &dyn Source<T>,
    path: &Path,
) -> Result<Written, super::Error> {
    let info = src.info();
    let schema = table_schema(info);
    let bad = |e: parquet::errors::ParquetError| super::Error::Unsuitable {
        file: path.display().to_string(),
        reason: e.to_string(),
    };
    let file = std::fs::File::create(path).map_err(io_error(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let (mut writer, factory) = ArrowWriter::try_new(file, schema.clone(), Some(props))
        .and_then(ArrowWriter::into_serialized_writer)
        .map_err(bad)?;
    let props = writer.properties().clone();
    let columns: Vec<ColumnDescPtr> = writer.schema_descr().columns().to_vec();
    let value_field = schema.field(columns.len() - 1);
    let (mut rows, mut groups) = (0u64, 0usize);
    for win in table_windows(src) {
        let data = src.read(&win)?;
        let (s, b, _, _) = data.dim();
        let mask = region_mask(info, &win);
        let (xs, ys) = centres(info, &win);
        let w = win.cols.len();
        let keep = |y: usize, x: usize| mask.as_ref().is_none_or(|m| m[y * w + x]);
        let (mut cx, mut cy) = (Vec::new(), Vec::new());
        for (y, &py) in ys.iter().enumerate() {
            for (x, &px) in xs.iter().enumerate() {
                if keep(y, x) {
                    cx.push(px);
                    cy.push(py);
                }
            }
        }
        let n = cx.len();
        if n == 0 {
            // No pixel of this window lies in the region: no rows, no row groups.
            continue;
        }
        let step = |k: usize| win.steps.start + k;
        let mut products: Vec<&str> = (0..s).map(|k| product_of(info, step(k))).collect();
        products.sort_unstable();
        products.dedup();
        let mut jobs = vec![
            Job::Shared(X, Repeated::Coords(cx)),
            Job::Shared(Y, Repeated::Coords(cy)),
        ];
        let first_time = jobs.len();
        jobs.extend(
            (0..s)
                .map(|k| Job::Shared(TIME, Repeated::Time(info.times[step(k)].timestamp_micros()))),
        );
        let first_product = jobs.len();
        jobs.extend(
            products
                .iter()
                .map(|p| Job::Shared(PRODUCT, Repeated::Text(p))),
        );
        let first_band = jobs.len();
        jobs.extend((0..b).map(|bi| Job::Shared(BAND, Repeated::Text(&info.bands[bi]))));
        let first_values = jobs.len();
        jobs.extend((0..s * b).map(Job::Values));
        let encoded: Vec<Encoded> = jobs
            .par_iter()
            .map(|job| match job {
                Job::Shared(c, values) => {
                    encode_shared(columns[*c].clone(), &props, values, n).map(Encoded::Shared)
                }
                Job::Values(i) => {
                    let (k, bi) = (i / b, i % b);
                    let slab = data.slice(ndarray::s![k, bi, .., ..]);
                    let values = value_column::<T>(
                        slab.indexed_iter()
                            .filter(|&((y, x), _)| keep(y, x))
                            .map(|(_, &v)| valid(v, info.nodata).then(|| v.to_f64())),
                    );
                    let mut writer = factory
                        .create_column_writers(groups + i)?
                        .pop()
                        .expect("the table has a value column");
                    for leaf in compute_leaves(value_field, &values)? {
                        writer.write(&leaf)?;
                    }
                    writer.close().map(Encoded::Values)
                }
            })
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        crate::query::recycle::give_array(data);
        let mut encoded = encoded.into_iter();
        let mut shared: Vec<SharedChunk> = Vec::with_capacity(first_values);
        for e in encoded.by_ref().take(first_values) {
            if let Encoded::Shared(c) = e {
                shared.push(c);
            }
        }
        for (i, e) in encoded.enumerate() {
            let Encoded::Values(values) = e else {
                unreachable!("value chunks follow the shared ones")
            };
            let (k, bi) = (i / b, i % b);
            let product = products
                .binary_search(&product_of(info, step(k)))
                .expect("every product is listed");
            let mut group = writer.next_row_group().map_err(bad)?;
            for c in [
                first_time + k,
                first_product + product,
                first_band + bi,
                0, // x
                1, // y
            ] {
                let chunk = &shared[c];
                group
                    .append_column(&chunk.bytes, chunk.close.clone())
                    .map_err(bad)?;
            }
            values.append_to_row_group(&mut group).map_err(bad)?;
            group.close().map_err(bad)?;
            rows += n as u64;
        }
        groups += s * b;
    }
    writer.close().map_err(bad)?;
    let bytes = std::fs::metadata(path).map_err(io_error(path))?.len();
    Ok(Written {
        path: path.to_path_buf(),
        what: describe(info, rows, "null"),
        bytes,
    })
}
