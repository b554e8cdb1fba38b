//! Writing Cloud-Optimized GeoTIFFs: tiled, DEFLATE-compressed (with predictor), optional
//! overviews, georeferencing, nodata, band descriptions and per-band metadata; whole arrays
//! ([`write_cog`], [`encode_cog`]) or window by window ([`CogWriter`]).
//!
//! The layout follows what GDAL's COG validator checks: all directories right after the
//! header (main image first, then overviews from largest to smallest), then tag data, then
//! block data from the smallest overview to the full-resolution image. Blocks are encoded
//! in parallel with a fast DEFLATE (see `encode`).

mod encode;
mod sink;
mod stream;
mod tiff;

use crate::{GeoTransform, Sample};
use bytemuck::Pod;
use ndarray::ArrayView3;
use std::path::Path;

pub use stream::CogWriter;

/// Errors from writing a GeoTIFF.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The file could not be created or written.
    #[error("{file}: {source}")]
    Io {
        /// The output path.
        file: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The raster or options cannot be written.
    #[error("{file}: cannot write: {reason}")]
    Invalid {
        /// The output path.
        file: String,
        /// Why.
        reason: String,
    },
}

/// Block compression of a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCompression {
    /// No compression.
    None,
    /// DEFLATE (zlib stream, `fdeflate`'s fast single-pass encoder) after a predictor: 2
    /// (horizontal differencing) for integers, 3 (floating point) for floats.
    Deflate,
}

/// How the samples of several bands are arranged in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interleave {
    /// Every block holds all bands of its pixels (GDAL's `INTERLEAVE=PIXEL`).
    Pixel,
    /// Every band has its own blocks (`INTERLEAVE=BAND`, TIFF planar configuration 2): one
    /// band reads alone, and files of many bands (a time series) stream band by band.
    Band,
}

/// Options for [`write_cog`].
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Tile width and height in pixels (a multiple of 16).
    pub block_size: u32,
    /// Block compression.
    pub compression: WriteCompression,
    /// Build overviews (2x averages, nodata-aware) until the image fits in one block.
    pub overviews: bool,
    /// Sample arrangement of multi-band files.
    pub interleave: Interleave,
    /// Pixel-to-map transform of the full-resolution image.
    pub transform: Option<GeoTransform>,
    /// EPSG code of the CRS (projected codes are written as projected, 4326-style codes as
    /// geographic).
    pub epsg: Option<u32>,
    /// Nodata value (written as `GDAL_NODATA`, skipped when averaging overviews).
    pub nodata: Option<f64>,
    /// Band descriptions, one per band (or empty).
    pub band_descriptions: Vec<String>,
    /// Dataset metadata items written to `GDAL_METADATA`.
    pub metadata: Vec<(String, String)>,
    /// Per-band metadata items (GDAL's band metadata), one list per band (or empty).
    pub band_metadata: Vec<Vec<(String, String)>>,
    /// TIFF `DateTime` tag (`YYYY:MM:DD HH:MM:SS`).
    pub datetime: Option<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            block_size: 256,
            compression: WriteCompression::Deflate,
            overviews: true,
            interleave: Interleave::Pixel,
            transform: None,
            epsg: None,
            nodata: None,
            band_descriptions: Vec::new(),
            metadata: Vec::new(),
            band_metadata: Vec::new(),
            datetime: None,
        }
    }
}

/// Writes a `(band, row, col)` array as a Cloud-Optimized GeoTIFF.
pub fn write_cog<T: Sample + Pod>(
    path: impl AsRef<Path>,
    data: ArrayView3<'_, T>,
    options: &WriteOptions,
) -> Result<(), WriteError> {
    let (bands, height, width) = data.dim();
    let mut w = CogWriter::<T>::create(path, width, height, bands, options)?;
    w.write(0, 0, 0, data)?;
    w.finish()?;
    Ok(())
}

/// Encodes a `(band, row, col)` array as the bytes of a Cloud-Optimized GeoTIFF.
pub fn encode_cog<T: Sample + Pod>(
    data: ArrayView3<'_, T>,
    options: &WriteOptions,
) -> Result<Vec<u8>, String> {
    let (bands, height, width) = data.dim();
    let run = || -> Result<Vec<u8>, WriteError> {
        let mut w = CogWriter::<T>::in_memory(width, height, bands, options)?;
        w.write(0, 0, 0, data)?;
        Ok(w.finish()?.unwrap_or_default())
    };
    run().map_err(|e| match e {
        WriteError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cog::{Cog, Window};
    use crate::source::InMemory;
    use ndarray::{s, Array3};
    use std::sync::Arc;

    fn open(bytes: Vec<u8>) -> Cog {
        Cog::from_source(Arc::new(InMemory::new("mem.tif", bytes))).unwrap()
    }

    fn ramp<T: Sample>(bands: usize, h: usize, w: usize) -> Array3<T> {
        Array3::from_shape_fn((bands, h, w), |(b, y, x)| {
            T::from_f64(((b * 7919 + y * 131 + x * 17) % 251) as f64)
        })
    }

    fn round_trip<T: Sample + Pod>(compression: WriteCompression, interleave: Interleave) {
        let data = ramp::<T>(3, 70, 45);
        let options = WriteOptions {
            block_size: 32,
            compression,
            interleave,
            transform: Some(GeoTransform::north_up(500000.0, 4000000.0, 10.0, 10.0)),
            epsg: Some(32652),
            nodata: Some(0.0),
            band_descriptions: vec!["B02".into(), "B03".into(), "B04".into()],
            metadata: vec![("ACQUISITION_DATETIME".into(), "2023-06-11T02:16:59Z".into())],
            ..Default::default()
        };
        let bytes = encode_cog(data.view(), &options).unwrap();
        let cog = open(bytes);
        let m = cog.meta();
        assert_eq!((m.width(), m.height(), m.band_count()), (45, 70, 3));
        assert_eq!(m.dtype(), T::DTYPE);
        assert_eq!(m.epsg(), Some(32652));
        assert_eq!(m.transform(), options.transform);
        assert_eq!(m.nodata, Some(0.0));
        assert_eq!(m.bands[2].description.as_deref(), Some("B04"));
        assert!(m.acquired.is_some());
        assert_eq!(m.overview_count(), 2, "70 -> 35 -> 18 px");
        let back = cog
            .read_window::<T>(0, Window::full(45, 70), &[0, 1, 2])
            .unwrap();
        assert_eq!(back, data);
        let ovr = cog.read_window::<T>(1, Window::full(23, 35), &[0]).unwrap();
        assert_eq!(ovr.dim(), (1, 35, 23));
    }

    #[test]
    fn round_trips_every_type_through_the_reader() {
        for il in [Interleave::Pixel, Interleave::Band] {
            round_trip::<u8>(WriteCompression::Deflate, il);
            round_trip::<i8>(WriteCompression::Deflate, il);
            round_trip::<u16>(WriteCompression::Deflate, il);
            round_trip::<i16>(WriteCompression::None, il);
            round_trip::<u32>(WriteCompression::Deflate, il);
            round_trip::<i32>(WriteCompression::Deflate, il);
            round_trip::<f32>(WriteCompression::Deflate, il);
            round_trip::<f64>(WriteCompression::Deflate, il);
        }
    }

    #[test]
    fn overviews_average_valid_pixels_only() {
        let mut data = Array3::<u16>::from_elem((1, 40, 40), 0);
        data[[0, 0, 0]] = 10;
        data[[0, 1, 1]] = 20;
        data[[0, 38, 39]] = 7;
        let options = WriteOptions {
            block_size: 16,
            nodata: Some(0.0),
            ..Default::default()
        };
        let cog = open(encode_cog(data.view(), &options).unwrap());
        assert_eq!(cog.meta().overview_count(), 2, "40 -> 20 -> 10");
        let o1 = cog
            .read_window::<u16>(1, Window::full(20, 20), &[0])
            .unwrap();
        assert_eq!((o1[[0, 0, 0]], o1[[0, 19, 19]], o1[[0, 5, 5]]), (15, 7, 0));
        let o2 = cog
            .read_window::<u16>(2, Window::full(10, 10), &[0])
            .unwrap();
        assert_eq!((o2[[0, 0, 0]], o2[[0, 9, 9]]), (15, 7));
    }

    #[test]
    fn windows_in_any_grouping_write_the_same_image() {
        let data = ramp::<u16>(5, 100, 90);
        for (interleave, overviews) in [
            (Interleave::Band, false),
            (Interleave::Band, true),
            (Interleave::Pixel, true),
        ] {
            let options = WriteOptions {
                block_size: 16,
                interleave,
                overviews,
                nodata: Some(0.0),
                ..Default::default()
            };
            let whole = open(encode_cog(data.view(), &options).unwrap());
            let mut w = CogWriter::<u16>::in_memory(90, 100, 5, &options).unwrap();
            // Runs of bands (all bands when pixel-interleaved), bands of 32 rows, 48 columns.
            let runs: Vec<(usize, usize)> = match interleave {
                Interleave::Band => vec![(0, 2), (2, 5)],
                Interleave::Pixel => vec![(0, 5)],
            };
            for (b0, b1) in runs {
                for r0 in (0..100).step_by(32) {
                    for c0 in (0..90).step_by(48) {
                        let (r1, c1) = ((r0 + 32).min(100), (c0 + 48).min(90));
                        let part = data.slice(s![b0..b1, r0..r1, c0..c1]);
                        w.write(b0, r0, c0, part).unwrap();
                    }
                }
            }
            let streamed = open(w.finish().unwrap().unwrap());
            for level in 0..=whole.meta().overview_count() {
                let (lw, lh) = (90u32.div_ceil(1 << level), 100u32.div_ceil(1 << level));
                let bands: Vec<usize> = (0..5).collect();
                let a = whole
                    .read_window::<u16>(level, Window::full(lw, lh), &bands)
                    .unwrap();
                let b = streamed
                    .read_window::<u16>(level, Window::full(lw, lh), &bands)
                    .unwrap();
                assert_eq!(a, b, "{interleave:?} level {level}");
            }
        }
    }

    #[test]
    fn misplaced_or_missing_windows_are_errors() {
        let options = WriteOptions {
            block_size: 16,
            interleave: Interleave::Band,
            overviews: false,
            ..Default::default()
        };
        let data = ramp::<u8>(2, 40, 40);
        let mut w = CogWriter::<u8>::in_memory(40, 40, 2, &options).unwrap();
        assert!(w.write(0, 8, 0, data.slice(s![.., 0..16, ..])).is_err());
        assert!(
            w.write(1, 0, 0, data.view()).is_err(),
            "band 1 + 2 bands > 2"
        );
        w.write(0, 0, 0, data.slice(s![.., 0..32, ..])).unwrap();
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("never written"), "{err}");
    }

    #[test]
    fn files_appear_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tif");
        let data = ramp::<u8>(1, 20, 20);
        let w = CogWriter::<u8>::create(&path, 20, 20, 1, &WriteOptions::default()).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_cog(&path, data.view(), &WriteOptions::default()).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.tif"]);
    }

    #[test]
    fn rejects_bad_options() {
        let data = ramp::<u16>(2, 10, 10);
        let bad_block = WriteOptions {
            block_size: 20,
            ..Default::default()
        };
        assert!(encode_cog(data.view(), &bad_block).is_err());
        let bad_desc = WriteOptions {
            band_descriptions: vec!["only one".into()],
            ..Default::default()
        };
        assert!(encode_cog(data.view(), &bad_desc).is_err());
    }
}
