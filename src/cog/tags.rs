//! Typed TIFF tag values: compression, predictor, layout, photometric interpretation.
//!
//! Unknown values stay representable (`Unknown(u16)`) so an unusual file is described, and
//! rejected with a clear message only when its pixels are actually needed.

use serde::Serialize;
use std::fmt;

/// TIFF `Compression` (tag 259).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Compression {
    /// 1: uncompressed.
    None,
    /// 5: LZW.
    Lzw,
    /// 6: old-style JPEG (not supported).
    OldJpeg,
    /// 7: JPEG (with shared tables in `JPEGTables`).
    Jpeg,
    /// 8 and 32946: DEFLATE (zlib stream).
    Deflate,
    /// 32773: PackBits run-length encoding.
    PackBits,
    /// 34887: LERC (not supported).
    Lerc,
    /// 34925: LZMA2 in an xz container.
    Lzma,
    /// 50000: Zstandard.
    Zstd,
    /// 50001: WebP.
    WebP,
    /// 50002: JPEG-XL (not supported).
    JpegXl,
    /// Any other code.
    Unknown(u16),
}

impl Compression {
    /// Interprets the tag value.
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::None,
            5 => Self::Lzw,
            6 => Self::OldJpeg,
            7 => Self::Jpeg,
            8 | 32946 => Self::Deflate,
            32773 => Self::PackBits,
            34887 => Self::Lerc,
            34925 => Self::Lzma,
            50000 => Self::Zstd,
            50001 => Self::WebP,
            50002 | 52546 => Self::JpegXl,
            other => Self::Unknown(other),
        }
    }

    /// GDAL's name for the codec (`DEFLATE`, `LZW`, ...).
    pub fn name(&self) -> String {
        match self {
            Self::None => "NONE".into(),
            Self::Lzw => "LZW".into(),
            Self::OldJpeg => "OJPEG".into(),
            Self::Jpeg => "JPEG".into(),
            Self::Deflate => "DEFLATE".into(),
            Self::PackBits => "PACKBITS".into(),
            Self::Lerc => "LERC".into(),
            Self::Lzma => "LZMA".into(),
            Self::Zstd => "ZSTD".into(),
            Self::WebP => "WEBP".into(),
            Self::JpegXl => "JXL".into(),
            Self::Unknown(c) => format!("unknown compression code {c}"),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// TIFF `Predictor` (tag 317).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Predictor {
    /// 1: no prediction.
    None,
    /// 2: horizontal differencing of integer samples.
    Horizontal,
    /// 3: floating-point predictor (byte-shuffled differencing).
    FloatingPoint,
    /// Any other code.
    Unknown(u16),
}

impl Predictor {
    /// Interprets the tag value.
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::None,
            2 => Self::Horizontal,
            3 => Self::FloatingPoint,
            other => Self::Unknown(other),
        }
    }

    /// The tag value.
    pub fn code(&self) -> u16 {
        match self {
            Self::None => 1,
            Self::Horizontal => 2,
            Self::FloatingPoint => 3,
            Self::Unknown(c) => *c,
        }
    }
}

/// How samples of different bands are stored (`PlanarConfiguration`, tag 284).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Interleave {
    /// 1: pixel-interleaved (`RGBRGB...`): every block holds all bands.
    Pixel,
    /// 2: band-interleaved: every block holds one band.
    Band,
}

impl Interleave {
    /// GDAL's name (`PIXEL` / `BAND`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pixel => "PIXEL",
            Self::Band => "BAND",
        }
    }
}

/// TIFF `PhotometricInterpretation` (tag 262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Photometric {
    /// 0: grey, 0 is white.
    WhiteIsZero,
    /// 1: grey or generic multi-band data.
    BlackIsZero,
    /// 2: RGB.
    Rgb,
    /// 3: palette colour.
    Palette,
    /// 4: a transparency mask (GDAL internal masks).
    Mask,
    /// 5: CMYK.
    Cmyk,
    /// 6: YCbCr (GDAL's JPEG default for RGB).
    YCbCr,
    /// Any other code.
    Unknown(u16),
}

impl Photometric {
    /// Interprets the tag value.
    pub fn from_code(code: u16) -> Self {
        match code {
            0 => Self::WhiteIsZero,
            1 => Self::BlackIsZero,
            2 => Self::Rgb,
            3 => Self::Palette,
            4 => Self::Mask,
            5 => Self::Cmyk,
            6 => Self::YCbCr,
            other => Self::Unknown(other),
        }
    }
}

/// TIFF `SampleFormat` (tag 339).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SampleFormat {
    /// 1: unsigned integer.
    Uint,
    /// 2: signed integer.
    Int,
    /// 3: IEEE float.
    Float,
    /// Anything else (void, complex, ...).
    Unknown(u16),
}

impl SampleFormat {
    /// Interprets the tag value.
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::Uint,
            2 => Self::Int,
            3 => Self::Float,
            other => Self::Unknown(other),
        }
    }
}

/// Numeric tag codes the reader looks up that the `tiff` crate has no name for.
pub mod code {
    /// GDAL's XML metadata (band descriptions, scale/offset, items).
    pub const GDAL_METADATA: u16 = 42112;
    /// GDAL's nodata value as ASCII.
    pub const GDAL_NODATA: u16 = 42113;
    /// LERC parameters.
    pub const LERC_PARAMETERS: u16 = 50674;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_stay_representable() {
        assert_eq!(Compression::from_code(8), Compression::Deflate);
        assert_eq!(Compression::from_code(32946), Compression::Deflate);
        assert_eq!(Compression::from_code(65000), Compression::Unknown(65000));
        assert_eq!(Compression::Lerc.to_string(), "LERC");
        assert_eq!(Predictor::from_code(9), Predictor::Unknown(9));
        assert_eq!(Photometric::from_code(6), Photometric::YCbCr);
        assert_eq!(SampleFormat::from_code(6), SampleFormat::Unknown(6));
    }
}
