//! Writing a [`Cube`](super::Cube) out: GeoTIFF (COG), CSV, Parquet, JSON and PNG, chosen by the
//! file extension.

mod chart;
mod font;
mod geotiff;
mod image;
mod parquet;
mod table;

use super::Cube;
use std::path::Path;

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
    #[error("{file}: unknown output format {ext:?}: use .tif, .csv, .parquet, .json or .png")]
    Format {
        /// The output path.
        file: String,
        /// Its extension.
        ext: String,
    },
    /// The cube cannot be written in that format.
    #[error("{file}: {reason}")]
    Unsuitable {
        /// The output path.
        file: String,
        /// Why.
        reason: String,
    },
}

/// What a PNG shows for this query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngKind {
    /// A picture of the area (one time step, colour-mapped or RGB).
    Image,
    /// A time-series chart (point and polygon queries).
    Chart,
}

/// Writes `cube` to `path` in the format its extension names (`.tif`/`.tiff`, `.csv`,
/// `.json`, `.png`).
pub fn write(cube: &Cube, path: &Path, png: PngKind) -> Result<(), Error> {
    let file = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let bytes = match ext.as_str() {
        "tif" | "tiff" => geotiff::encode(cube).map_err(|reason| Error::Unsuitable {
            file: file.clone(),
            reason,
        })?,
        "csv" => table::csv(cube).into_bytes(),
        "json" => table::json(cube).into_bytes(),
        "parquet" => parquet::encode(cube).map_err(|reason| Error::Unsuitable {
            file: file.clone(),
            reason,
        })?,
        "png" => match png {
            PngKind::Chart => chart::render(cube),
            PngKind::Image => image::render(cube),
        }
        .map_err(|reason| Error::Unsuitable {
            file: file.clone(),
            reason,
        })?,
        _ => return Err(Error::Format { file, ext }),
    };
    std::fs::write(path, bytes).map_err(|source| Error::Io { file, source })
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
