//! Writing cubes out, in the format the path names:
//!
//! | path | holds |
//! |---|---|
//! | `cube.tif` | one COG, one band per (time, band), with band descriptions and per-band `TIME` metadata |
//! | `dir/` (ends with `/`, or an existing folder) | one COG per time step, `YYYYMMDDTHHMMSS.tif`, bands named as requested |
//! | `cube.zarr` | a Zarr v3 store: `cube (time, band, y, x)` with coordinates and CRS, readable by xarray and GDAL |
//! | `pixels.parquet`, `.csv` | the pixels as a long table `time, product, band, x, y, value` (points: `time, scene, product, band, x, y, value`) |
//! | `.csv`, `.json`, `.parquet` with [`ExportOptions::stats`] | per (time, band) statistics of the valid pixels |
//! | `.png` | a time-series chart (points, polygons) or a picture of a box |
//!
//! Files are written window by window from a [`QueryPlan`] within its memory budget
//! ([`write_plan`]), or from a cube in memory ([`write`], [`write_cube`]); values keep the
//! bands' sample type unless the query needs floats or [`ExportOptions::dtype`] says
//! otherwise.

mod chart;
pub mod colormap;
mod folder;
mod font;
mod geotiff;
mod image;
mod parquet;
mod pixels;
mod source;
mod stats;
mod table;
mod zarr;

use super::budget::human_bytes;
use super::plan::QueryPlan;
use super::{Cube, NativeCube};
use crate::store::Pixel;
use crate::{DataType, Sample};
use std::path::{Path, PathBuf};

pub use source::{CubeInfo, Source};
pub use table::{csv, json, print_point_table, rows, Row};

/// Errors from exporting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The output could not be written.
    #[error("{file}: {source}")]
    Io {
        /// The output path.
        file: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The extension names no supported format.
    #[error("{file}: unknown output format {ext:?}: use .tif, a folder (DIR/), .zarr, .parquet, .csv, .json or .png")]
    Format {
        /// The output path.
        file: String,
        /// Its extension.
        ext: String,
    },
    /// The cube cannot be written in that format or sample type.
    #[error("{file}: {reason}")]
    Unsuitable {
        /// The output path.
        file: String,
        /// Why.
        reason: String,
    },
    /// Painting the cube failed.
    #[error(transparent)]
    Query(#[from] super::engine::Error),
    /// The GeoTIFF writer failed.
    #[error(transparent)]
    Tiff(#[from] crate::cog::WriteError),
}

/// What a PNG shows for this query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngKind {
    /// A picture of the area (one time step, colour-mapped or RGB).
    Image,
    /// A time-series chart (point and polygon queries).
    Chart,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One COG of (time, band) bands.
    Tif,
    /// A folder of one COG per time step.
    Folder,
    /// A Zarr v3 store.
    Zarr,
    /// Parquet: the long pixel table, or statistics.
    Parquet,
    /// CSV: the long pixel table, or statistics.
    Csv,
    /// JSON statistics (areas) or values (points).
    Json,
    /// PNG chart or picture.
    Png,
}

impl Format {
    /// The format a path names: a trailing `/` or an existing folder is [`Format::Folder`],
    /// else the extension decides.
    pub fn of(path: &Path) -> Result<Format, Error> {
        let text = path.to_string_lossy();
        if text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) {
            return Ok(Format::Folder);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        Ok(match ext.as_str() {
            "tif" | "tiff" => Format::Tif,
            "zarr" => Format::Zarr,
            "parquet" => Format::Parquet,
            "csv" => Format::Csv,
            "json" => Format::Json,
            "png" => Format::Png,
            _ if path.is_dir() => Format::Folder,
            _ => {
                return Err(Error::Format {
                    file: path.display().to_string(),
                    ext,
                })
            }
        })
    }

    /// True for formats written whole from memory (charts and pictures).
    pub fn needs_memory(self) -> bool {
        self == Format::Png
    }
}

/// The sample type of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputType {
    /// The bands' own type when the query allows it (no band math, physical values or
    /// float composites; one type and nodata value), else `f32`.
    #[default]
    Auto,
    /// The bands' own type, or an error saying why not.
    Native,
    /// This type: `f32`/`f64` always (NaN nodata); an integer type when it holds every
    /// value of the bands' type (same nodata value).
    Exact(DataType),
}

impl std::str::FromStr for OutputType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(OutputType::Auto),
            "native" => Ok(OutputType::Native),
            other => DataType::parse(other).map(OutputType::Exact).ok_or_else(|| {
                format!(
                    "unknown --dtype {s:?}: use native, float32, float64, uint8, int8, uint16, int16, uint32 or int32"
                )
            }),
        }
    }
}

/// How to write.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportOptions {
    /// Sample type.
    pub dtype: OutputType,
    /// Tables (`.csv`, `.json`, `.parquet`) hold per (time, band) statistics instead of pixels.
    pub stats: bool,
    /// GeoTIFFs get overviews (2x averages) too.
    pub overviews: bool,
    /// Block compression of GeoTIFFs and Zarr chunks.
    pub compression: OutputCompression,
    /// What a PNG shows.
    pub png: Option<PngKind>,
    /// Where the query looked, for chart titles (e.g. `lon 127.94, lat 36.45`).
    pub place: Option<String>,
}

/// Block compression of file outputs (`query --compress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputCompression {
    /// GeoTIFF: DEFLATE with a predictor (what every reader opens); Zarr: none.
    #[default]
    Auto,
    /// GeoTIFF: DEFLATE with a predictor; Zarr: gzip.
    Deflate,
    /// Uncompressed.
    None,
}

impl OutputCompression {
    /// The compression named by `auto`, `deflate` or `none`.
    pub fn parse(name: &str) -> Option<OutputCompression> {
        Some(match name {
            "auto" => OutputCompression::Auto,
            "deflate" => OutputCompression::Deflate,
            "none" => OutputCompression::None,
            _ => return None,
        })
    }
}

/// What was written, for the CLI's "wrote" line.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The output path.
    pub path: PathBuf,
    /// What it holds, e.g. `one COG of 48 uint16 bands (12 times x 4 bands), 768 x 768 px`.
    pub what: String,
    /// Bytes written (all files).
    pub bytes: u64,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {}: {} ({})",
            self.path.display(),
            self.what,
            human_bytes(self.bytes)
        )
    }
}

/// Writes the cube a plan describes to `path`, painting it window by window within the
/// plan's memory budget (PNGs are drawn from the whole cube, which must fit). A plan without
/// time steps writes nothing and returns `None`.
pub fn write_plan(
    plan: &QueryPlan<'_>,
    path: &Path,
    options: &ExportOptions,
) -> Result<Option<Written>, Error> {
    let format = Format::of(path)?;
    let (t, ..) = plan.dim();
    let file = path.display().to_string();
    let point = plan.dim().2 * plan.dim().3 == 1;
    let table = matches!(format, Format::Csv | Format::Json | Format::Parquet);
    if format.needs_memory() || (point && table) {
        // Charts, pictures and a point's values: the cube in memory.
        if t == 0 {
            return Ok(None);
        }
        let cube = plan.cube()?;
        return write_cube(&cube, path, options).map(Some);
    }
    if t == 0 {
        return match format {
            Format::Tif => Ok(None),
            _ => write_typed::<f32>(&source::FloatPlan::new(plan), path, format, options).map(Some),
        };
    }
    let native = plan.native_type();
    let want = match options.dtype {
        OutputType::Auto => native.as_ref().map(|n| n.0).unwrap_or(DataType::F32),
        OutputType::Native => match &native {
            Ok((d, _)) => *d,
            Err(why) => {
                return Err(Error::Unsuitable {
                    file,
                    reason: format!(
                        "cannot keep the bands' sample type: {why}; use --dtype float32"
                    ),
                })
            }
        },
        OutputType::Exact(d) => d,
    };
    macro_rules! native_as {
        ($t:ty) => {{
            let src = source::NativePlan::<$t>::new(plan)?;
            widen_and_write::<$t>(&src, want, path, format, options)
        }};
    }
    let result = match native {
        Ok((stored, _)) if source::widens(stored, want) => match stored {
            DataType::U8 => native_as!(u8),
            DataType::I8 => native_as!(i8),
            DataType::U16 => native_as!(u16),
            DataType::I16 => native_as!(i16),
            DataType::U32 => native_as!(u32),
            DataType::I32 => native_as!(i32),
            DataType::F32 => native_as!(f32),
            DataType::F64 => native_as!(f64),
        },
        _ if want.is_float() => {
            let src = source::FloatPlan::new(plan);
            widen_and_write::<f32>(&src, want, path, format, options)
        }
        Ok((stored, _)) => Err(Error::Unsuitable {
            file,
            reason: format!(
                "--dtype {}: the bands hold {}, which {} cannot hold",
                want.gdal_name(),
                stored.gdal_name(),
                want.gdal_name()
            ),
        }),
        Err(why) => Err(Error::Unsuitable {
            file,
            reason: format!(
                "--dtype {}: {why}; use --dtype float32 or float64",
                want.gdal_name()
            ),
        }),
    };
    result.map(Some)
}

/// Writes `src` converted to `want` (a type that holds all of `T`).
fn widen_and_write<T: Pixel>(
    src: &dyn Source<T>,
    want: DataType,
    path: &Path,
    format: Format,
    options: &ExportOptions,
) -> Result<Written, Error> {
    macro_rules! to {
        ($o:ty) => {{
            if T::DTYPE == <$o>::DTYPE {
                write_typed::<T>(src, path, format, options)
            } else {
                let w = source::Widened::<T, $o>::new(src);
                write_typed::<$o>(&w, path, format, options)
            }
        }};
    }
    match want {
        DataType::U8 => to!(u8),
        DataType::I8 => to!(i8),
        DataType::U16 => to!(u16),
        DataType::I16 => to!(i16),
        DataType::U32 => to!(u32),
        DataType::I32 => to!(i32),
        DataType::F32 => to!(f32),
        DataType::F64 => to!(f64),
    }
}

/// Writes a source in its own sample type.
fn write_typed<T: Pixel>(
    src: &dyn Source<T>,
    path: &Path,
    format: Format,
    options: &ExportOptions,
) -> Result<Written, Error> {
    match format {
        Format::Tif => geotiff::write(src, path, options),
        Format::Folder => folder::write(src, path, options),
        Format::Zarr => zarr::write(src, path, options),
        Format::Csv | Format::Parquet | Format::Json if options.stats => {
            stats::write(src, path, format)
        }
        Format::Csv => pixels::write_csv(src, path),
        Format::Parquet => pixels::write_parquet(src, path),
        Format::Json => Err(Error::Unsuitable {
            file: path.display().to_string(),
            reason: "JSON holds statistics of areas: add --stats, or write the pixels to .parquet, .csv, .zarr or .tif".into(),
        }),
        Format::Png => Err(Error::Unsuitable {
            file: path.display().to_string(),
            reason: "PNGs are drawn from a cube in memory".into(),
        }),
    }
}

/// Per-date statistics of the area a plan covers, as CSV (what `query` prints for an area
/// without `--out`), computed window by window.
pub fn statistics_csv(plan: &QueryPlan<'_>) -> Result<String, Error> {
    let src = source::FloatPlan::new(plan);
    let info = src.info();
    let stats = stats::compute(&src)?;
    Ok(table::csv_of(
        &table::stats_rows(
            &info.times,
            &info.scenes,
            &info.products,
            &info.bands,
            &stats,
        ),
        false,
    ))
}

/// Per-date statistics of the area a plan covers, in memory: the CSV or JSON bytes that
/// `query --stats --out FILE.csv|.json` writes (other formats are an error).
pub fn statistics(plan: &QueryPlan<'_>, format: Format) -> Result<Vec<u8>, Error> {
    if !matches!(format, Format::Csv | Format::Json) {
        return Err(Error::Unsuitable {
            file: "statistics".into(),
            reason: "statistics in memory are CSV or JSON".into(),
        });
    }
    stats::encode(&source::FloatPlan::new(plan), format, "statistics")
}

/// Writes a cube held in memory to `path` in the format its extension names.
pub fn write_cube(cube: &Cube, path: &Path, options: &ExportOptions) -> Result<Written, Error> {
    let format = Format::of(path)?;
    let file = path.display().to_string();
    let point = cube.is_point();
    match format {
        Format::Png => {
            let kind = options.png.unwrap_or(if point {
                PngKind::Chart
            } else {
                PngKind::Image
            });
            let bytes = match kind {
                PngKind::Chart => chart::render(cube, options.place.as_deref()),
                PngKind::Image => image::render(cube, options.place.as_deref()),
            }
            .map_err(|reason| Error::Unsuitable {
                file: file.clone(),
                reason,
            })?;
            write_file(path, &bytes)?;
            let what = match kind {
                PngKind::Chart => format!(
                    "a chart of {} over {} dates",
                    cube.bands.join(", "),
                    cube.times.len()
                ),
                PngKind::Image => "a picture of the area".to_string(),
            };
            Ok(Written {
                path: path.to_path_buf(),
                what,
                bytes: bytes.len() as u64,
            })
        }
        Format::Csv | Format::Json | Format::Parquet if point || options.stats => {
            let (text, what) = match format {
                Format::Csv => (
                    table::csv(cube).into_bytes(),
                    if point {
                        "the point's values"
                    } else {
                        "statistics"
                    },
                ),
                Format::Json => (
                    table::json(cube).into_bytes(),
                    if point {
                        "the point's values"
                    } else {
                        "statistics"
                    },
                ),
                _ => (
                    parquet::encode(cube).map_err(|reason| Error::Unsuitable {
                        file: file.clone(),
                        reason,
                    })?,
                    if point {
                        "the point's values"
                    } else {
                        "statistics"
                    },
                ),
            };
            write_file(path, &text)?;
            let (t, b, _, _) = cube.dim();
            Ok(Written {
                path: path.to_path_buf(),
                what: format!("{what}: {} rows ({t} times x {b} bands)", t * b),
                bytes: text.len() as u64,
            })
        }
        _ => {
            let src = source::InMemory::of_cube(cube);
            write_typed::<f32>(&src, path, format, options)
        }
    }
}

/// Writes a native cube held in memory (samples and nodata as they are) to a GeoTIFF, a
/// folder of per-date COGs, a Zarr store or a long pixel table (`.csv`, `.parquet`);
/// statistics with [`ExportOptions::stats`].
pub fn write_native<T: Pixel>(
    cube: &NativeCube<T>,
    path: &Path,
    options: &ExportOptions,
) -> Result<Written, Error> {
    let format = Format::of(path)?;
    let src = source::InMemory::of_native(cube);
    match format {
        Format::Png => Err(Error::Unsuitable {
            file: path.display().to_string(),
            reason: "PNGs are drawn from f32 cubes: use NativeCube::to_f32 and write_cube".into(),
        }),
        _ => write_typed::<T>(&src, path, format, options),
    }
}

/// Writes `cube` to `path` in the format its extension names (`.tif`/`.tiff`, a folder,
/// `.zarr`, `.csv`, `.json`, `.parquet`, `.png`); tables of areas hold statistics, as the
/// demo's outputs do. See [`write_cube`] for the options.
pub fn write(cube: &Cube, path: &Path, png: PngKind) -> Result<(), Error> {
    let options = ExportOptions {
        png: Some(png),
        stats: true,
        ..Default::default()
    };
    write_cube(cube, path, &options).map(|_| ())
}

/// Writes bytes to a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        file: path.display().to_string(),
        source,
    })
}

/// The I/O error of a path.
fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        file: path.display().to_string(),
        source,
    }
}

/// `uint16` for GDAL-minded readers: the type name outputs describe themselves with.
fn type_name(d: DataType) -> &'static str {
    match d {
        DataType::U8 => "uint8",
        DataType::I8 => "int8",
        DataType::U16 => "uint16",
        DataType::I16 => "int16",
        DataType::U32 => "uint32",
        DataType::I32 => "int32",
        DataType::F32 => "float32",
        DataType::F64 => "float64",
    }
}

/// Encodes an RGBA buffer as PNG.
fn encode_png(width: usize, height: usize, rgba: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(rgba).map_err(|e| e.to_string())?;
    }
    Ok(out)
}
