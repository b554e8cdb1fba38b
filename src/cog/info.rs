//! A printable summary of a GeoTIFF: what `pixelquery inspect` shows, as text or JSON.

use super::codec;
use super::{CogMeta, Georef};
use crate::Bounds;
use serde::Serialize;
use std::fmt;

/// One band as `inspect` describes it.
#[derive(Debug, Clone, Serialize)]
pub struct BandSummary {
    /// 1-based band number, as GDAL counts.
    pub band: usize,
    /// Sample type (`u16`, `f32`, ...).
    pub dtype: String,
    /// Band description.
    pub description: Option<String>,
    /// Nodata value (`null` when none; NaN printed as a string).
    pub nodata: Option<String>,
    /// Scale to physical values.
    pub scale: Option<f64>,
    /// Offset to physical values.
    pub offset: Option<f64>,
}

/// One overview level.
#[derive(Debug, Clone, Serialize)]
pub struct OverviewSummary {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Downsampling factor relative to full resolution.
    pub factor: f64,
}

/// Everything `inspect` reports about a file.
#[derive(Debug, Clone, Serialize)]
pub struct CogInfo {
    /// File name or URL.
    pub file: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// `TIFF` or `BigTIFF`.
    pub format: &'static str,
    /// `little` or `big`.
    pub byte_order: &'static str,
    /// `EPSG:n`, or a description when there is no code.
    pub crs: Option<String>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bands.
    pub bands: Vec<BandSummary>,
    /// Codec name.
    pub compression: String,
    /// Whether the reader can decode that codec.
    pub compression_supported: bool,
    /// Predictor code (1 none, 2 horizontal, 3 floating point).
    pub predictor: u16,
    /// `tiled` or `striped`.
    pub layout: &'static str,
    /// Block size `[width, height]`.
    pub block: [u32; 2],
    /// `PIXEL` or `BAND`.
    pub interleave: &'static str,
    /// Overview levels.
    pub overviews: Vec<OverviewSummary>,
    /// Validity comes from an internal mask.
    pub internal_mask: bool,
    /// GDAL geotransform.
    pub geotransform: Option<[f64; 6]>,
    /// `area` or `point` pixels.
    pub raster_type: Option<&'static str>,
    /// Bounds in the native CRS.
    pub bounds: Option<Bounds>,
    /// Acquisition time (RFC 3339), when known.
    pub acquired: Option<String>,
    /// Dataset metadata items.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Oddities found while reading the header.
    pub warnings: Vec<String>,
    /// `pixels_sha256_16`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixels_sha256_16: Option<String>,
}

fn crs_text(georef: Option<&Georef>) -> Option<String> {
    let g = georef?;
    match (g.epsg, &g.citation) {
        (Some(code), _) => Some(format!("EPSG:{code}")),
        (None, Some(c)) => Some(format!("user-defined ({c})")),
        (None, None) => None,
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else {
        format!("{v}")
    }
}

impl CogInfo {
    /// Summarises parsed metadata.
    pub fn new(meta: &CogMeta) -> CogInfo {
        let l0 = &meta.levels[0];
        let dtype = meta.dtype();
        CogInfo {
            file: meta.name.clone(),
            size_bytes: meta.file_size,
            format: if meta.bigtiff { "BigTIFF" } else { "TIFF" },
            byte_order: if meta.big_endian { "big" } else { "little" },
            crs: crs_text(meta.georef.as_ref()),
            width: meta.width(),
            height: meta.height(),
            bands: meta
                .bands
                .iter()
                .enumerate()
                .map(|(i, b)| BandSummary {
                    band: i + 1,
                    dtype: dtype.name().to_string(),
                    description: b.description.clone(),
                    nodata: meta.nodata.map(number),
                    scale: b.scale,
                    offset: b.offset,
                })
                .collect(),
            compression: l0.compression.name(),
            compression_supported: codec::is_supported(l0.compression),
            predictor: l0.predictor.code(),
            layout: if l0.tiled { "tiled" } else { "striped" },
            block: [l0.block_width, l0.block_height],
            interleave: l0.interleave.name(),
            overviews: meta.levels[1..]
                .iter()
                .map(|l| OverviewSummary {
                    width: l.width,
                    height: l.height,
                    factor: meta.width() as f64 / l.width as f64,
                })
                .collect(),
            internal_mask: meta.has_mask(),
            geotransform: meta.transform().map(|t| t.to_gdal()),
            raster_type: meta.georef.as_ref().map(|g| match g.raster_type {
                super::RasterType::PixelIsArea => "area",
                super::RasterType::PixelIsPoint => "point",
            }),
            bounds: meta.bounds(),
            acquired: meta.acquired.map(|t| t.to_rfc3339()),
            metadata: meta.metadata.clone(),
            warnings: meta.warnings.clone(),
            pixels_sha256_16: None,
        }
    }
}

impl fmt::Display for CogInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "file         {}", self.file)?;
        writeln!(
            f,
            "format       {} ({}-endian), {} bytes",
            self.format, self.byte_order, self.size_bytes
        )?;
        writeln!(
            f,
            "size         {} x {} px, {} band(s)",
            self.width,
            self.height,
            self.bands.len()
        )?;
        writeln!(f, "crs          {}", self.crs.as_deref().unwrap_or("none"))?;
        if let Some(gt) = self.geotransform {
            writeln!(
                f,
                "geotransform [{}, {}, {}, {}, {}, {}] (pixel is {})",
                gt[0],
                gt[1],
                gt[2],
                gt[3],
                gt[4],
                gt[5],
                self.raster_type.unwrap_or("area")
            )?;
        }
        if let Some(b) = self.bounds {
            writeln!(
                f,
                "bounds       x {} .. {}, y {} .. {}",
                b.min_x, b.max_x, b.min_y, b.max_y
            )?;
        }
        let support = if self.compression_supported {
            ""
        } else {
            " (not supported by this reader)"
        };
        writeln!(
            f,
            "compression  {}{support}, predictor {}",
            self.compression, self.predictor
        )?;
        writeln!(
            f,
            "layout       {}, {}x{} blocks, {}-interleaved",
            self.layout,
            self.block[0],
            self.block[1],
            self.interleave.to_lowercase()
        )?;
        let ovr: Vec<String> = self
            .overviews
            .iter()
            .map(|o| format!("{}x{} (1/{:.0})", o.width, o.height, o.factor))
            .collect();
        writeln!(
            f,
            "overviews    {}",
            if ovr.is_empty() {
                "none".into()
            } else {
                ovr.join(", ")
            }
        )?;
        writeln!(
            f,
            "mask         {}",
            if self.internal_mask {
                "internal (GDAL mask IFD)"
            } else {
                "none"
            }
        )?;
        writeln!(
            f,
            "acquired     {}",
            self.acquired.as_deref().unwrap_or("unknown")
        )?;
        for b in &self.bands {
            write!(f, "band {:<7} {}", b.band, b.dtype)?;
            if let Some(d) = &b.description {
                write!(f, "  {d:?}")?;
            }
            if let Some(n) = &b.nodata {
                write!(f, "  nodata={n}")?;
            }
            if let Some(s) = b.scale {
                write!(f, "  scale={s}")?;
            }
            if let Some(o) = b.offset {
                write!(f, "  offset={o}")?;
            }
            writeln!(f)?;
        }
        for (k, v) in &self.metadata {
            writeln!(f, "metadata     {k}={v}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning      {w}")?;
        }
        if let Some(h) = &self.pixels_sha256_16 {
            writeln!(f, "pixels_sha256_16 {h}")?;
        }
        Ok(())
    }
}
