//! One TIFF image directory as the reader needs it: an image level (full resolution,
//! overview or mask) with its block layout, codec and block byte ranges.

use super::tags::{Compression, Interleave, Photometric, Predictor, SampleFormat};
use crate::DataType;
use bytes::Bytes;
use serde::Serialize;

/// Largest decoded block the reader accepts (a block is decoded into memory at once).
pub const MAX_BLOCK_BYTES: u64 = 256 * 1024 * 1024;

/// Why a directory cannot be used as an image level.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LayoutProblem {
    /// A required tag is missing.
    Missing(&'static str),
    /// A tag has a value the reader cannot accept.
    Invalid(String),
}

/// Raw tag values of one directory, read by the `tiff` crate.
#[derive(Debug, Default, Clone)]
pub(crate) struct RawIfd {
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub bits_per_sample: Vec<u16>,
    pub samples_per_pixel: Option<u16>,
    pub sample_format: Vec<u16>,
    pub compression: Option<u16>,
    pub predictor: Option<u16>,
    pub planar: Option<u16>,
    pub photometric: Option<u16>,
    pub subfile_type: Option<u32>,
    pub tile_width: Option<u64>,
    pub tile_height: Option<u64>,
    pub rows_per_strip: Option<u64>,
    pub offsets: Option<Vec<u64>>,
    pub byte_counts: Option<Vec<u64>>,
    pub jpeg_tables: Option<Vec<u8>>,
    pub ycbcr_subsampling: Vec<u16>,
}

/// One image level of a TIFF file: the full-resolution image, an overview or a mask.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    /// Position of the directory in the file's IFD chain (0 = first).
    pub ifd_index: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Block width (tile width, or the image width for strips).
    pub block_width: u32,
    /// Block height (tile height, or rows per strip).
    pub block_height: u32,
    /// Tiled (true) or striped (false).
    pub tiled: bool,
    /// Samples per pixel (bands).
    pub samples_per_pixel: u16,
    /// Bits per sample (1 for masks, else 8/16/32/64).
    pub bits_per_sample: u16,
    /// Sample type; `None` for 1-bit masks.
    pub dtype: Option<DataType>,
    /// Block codec.
    pub compression: Compression,
    /// Predictor applied before compression.
    pub predictor: Predictor,
    /// Pixel- or band-interleaved.
    pub interleave: Interleave,
    /// Photometric interpretation.
    pub photometric: Photometric,
    /// `NewSubfileType` bits (1 = reduced resolution, 4 = transparency mask).
    pub subfile_type: u32,
    /// Chroma subsampling of YCbCr JPEG data (horizontal, vertical).
    pub ycbcr_subsampling: (u16, u16),
    /// Shared JPEG tables (`JPEGTables`) for abbreviated JPEG blocks.
    #[serde(skip)]
    pub jpeg_tables: Option<Bytes>,
    /// Byte offset of every block (band-major for band-interleaved files).
    #[serde(skip)]
    pub offsets: Vec<u64>,
    /// Byte count of every block.
    #[serde(skip)]
    pub byte_counts: Vec<u64>,
}

impl Level {
    /// Builds a level from raw tags, checking sizes and block counts before anything is
    /// allocated from them.
    pub(crate) fn from_raw(ifd_index: usize, raw: RawIfd) -> Result<Level, LayoutProblem> {
        use LayoutProblem::{Invalid, Missing};
        let width = raw.width.ok_or(Missing("ImageWidth"))?;
        let height = raw.height.ok_or(Missing("ImageLength"))?;
        if width == 0 || height == 0 || width > u32::MAX as u64 || height > u32::MAX as u64 {
            return Err(Invalid(format!("image size {width}x{height}")));
        }
        let samples = raw.samples_per_pixel.unwrap_or(1);
        if samples == 0 {
            return Err(Invalid("SamplesPerPixel is 0".into()));
        }
        let bits = match raw.bits_per_sample.as_slice() {
            [] => 1,
            [first, rest @ ..] => {
                if rest.iter().any(|b| b != first) {
                    return Err(Invalid(format!(
                        "bands with different bit depths {:?}",
                        raw.bits_per_sample
                    )));
                }
                *first
            }
        };
        let format = SampleFormat::from_code(raw.sample_format.first().copied().unwrap_or(1));
        let dtype = match (format, bits) {
            (_, 1) => None,
            (SampleFormat::Uint, 8) => Some(DataType::U8),
            (SampleFormat::Int, 8) => Some(DataType::I8),
            (SampleFormat::Uint, 16) => Some(DataType::U16),
            (SampleFormat::Int, 16) => Some(DataType::I16),
            (SampleFormat::Uint, 32) => Some(DataType::U32),
            (SampleFormat::Int, 32) => Some(DataType::I32),
            (SampleFormat::Float, 32) => Some(DataType::F32),
            (SampleFormat::Float, 64) => Some(DataType::F64),
            (f, b) => {
                return Err(Invalid(format!(
                    "unsupported sample type: {b}-bit {f:?} samples"
                )))
            }
        };
        let interleave = match raw.planar.unwrap_or(1) {
            1 => Interleave::Pixel,
            2 => Interleave::Band,
            p => return Err(Invalid(format!("PlanarConfiguration {p}"))),
        };
        let (tiled, block_width, block_height) = match (raw.tile_width, raw.tile_height) {
            (Some(tw), Some(th)) => (true, tw, th),
            (None, None) => {
                let rows = raw.rows_per_strip.unwrap_or(height).min(height);
                (false, width, rows)
            }
            _ => return Err(Invalid("only one of TileWidth/TileLength is set".into())),
        };
        if block_width == 0 || block_height == 0 || block_width > u32::MAX as u64 {
            return Err(Invalid(format!("block size {block_width}x{block_height}")));
        }
        let block_height = block_height.min(u32::MAX as u64);
        let block_samples = if interleave == Interleave::Pixel {
            samples as u64
        } else {
            1
        };
        let block_bits = (block_width * block_height)
            .checked_mul(block_samples)
            .and_then(|n| n.checked_mul(bits as u64));
        if block_bits.is_none_or(|b| b.div_ceil(8) > MAX_BLOCK_BYTES) {
            return Err(Invalid(format!(
                "block of {block_width}x{block_height}x{block_samples} samples is larger than {MAX_BLOCK_BYTES} bytes"
            )));
        }
        let across = width.div_ceil(block_width);
        let down = height.div_ceil(block_height);
        let planes = if interleave == Interleave::Band {
            samples as u64
        } else {
            1
        };
        let needed = across * down * planes;
        let (offsets_tag, counts_tag) = if tiled {
            ("TileOffsets", "TileByteCounts")
        } else {
            ("StripOffsets", "StripByteCounts")
        };
        let offsets = raw.offsets.ok_or(Missing(offsets_tag))?;
        let byte_counts = raw.byte_counts.ok_or(Missing(counts_tag))?;
        if (offsets.len() as u64) < needed || (byte_counts.len() as u64) < needed {
            return Err(Invalid(format!(
                "{needed} blocks needed for {width}x{height} in {block_width}x{block_height} blocks, but {offsets_tag} has {} and {counts_tag} {} entries",
                offsets.len(),
                byte_counts.len()
            )));
        }
        let ycbcr = match raw.ycbcr_subsampling.as_slice() {
            [h, v, ..] => (*h, *v),
            _ => (2, 2),
        };
        Ok(Level {
            ifd_index,
            width: width as u32,
            height: height as u32,
            block_width: block_width as u32,
            block_height: block_height as u32,
            tiled,
            samples_per_pixel: samples,
            bits_per_sample: bits,
            dtype,
            compression: Compression::from_code(raw.compression.unwrap_or(1)),
            predictor: Predictor::from_code(raw.predictor.unwrap_or(1)),
            interleave,
            photometric: Photometric::from_code(raw.photometric.unwrap_or(1)),
            subfile_type: raw.subfile_type.unwrap_or(0),
            ycbcr_subsampling: ycbcr,
            jpeg_tables: raw.jpeg_tables.map(Bytes::from),
            offsets,
            byte_counts,
        })
    }

    /// True for a transparency-mask directory (GDAL internal mask).
    pub fn is_mask(&self) -> bool {
        self.subfile_type & 4 != 0 || self.photometric == Photometric::Mask
    }

    /// True for a reduced-resolution (overview) directory.
    pub fn is_reduced(&self) -> bool {
        self.subfile_type & 1 != 0
    }

    /// Blocks per row of blocks.
    pub fn blocks_across(&self) -> u32 {
        self.width.div_ceil(self.block_width)
    }

    /// Rows of blocks.
    pub fn blocks_down(&self) -> u32 {
        self.height.div_ceil(self.block_height)
    }

    /// Samples stored per pixel in one block (all bands, or 1 for band-interleaved).
    pub fn samples_per_block_pixel(&self) -> usize {
        match self.interleave {
            Interleave::Pixel => self.samples_per_pixel as usize,
            Interleave::Band => 1,
        }
    }

    /// Bytes per sample (0 for 1-bit data, which is handled bitwise).
    pub fn bytes_per_sample(&self) -> usize {
        self.dtype.map(|d| d.size()).unwrap_or(0)
    }

    /// Index into `offsets` of block (`bx`, `by`) of `plane` (band for band-interleaved files).
    pub fn block_index(&self, bx: u32, by: u32, plane: usize) -> usize {
        let per_plane = self.blocks_across() as usize * self.blocks_down() as usize;
        plane * per_plane + by as usize * self.blocks_across() as usize + bx as usize
    }

    /// Rows of real image data in block row `by` (the last strip may be shorter).
    pub fn rows_in_block(&self, by: u32) -> u32 {
        if self.tiled {
            self.block_height
        } else {
            (self.height - by * self.block_height).min(self.block_height)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_tiled(w: u64, h: u64, tile: u64, n: usize) -> RawIfd {
        RawIfd {
            width: Some(w),
            height: Some(h),
            bits_per_sample: vec![16, 16],
            samples_per_pixel: Some(2),
            sample_format: vec![1, 1],
            tile_width: Some(tile),
            tile_height: Some(tile),
            offsets: Some(vec![8; n]),
            byte_counts: Some(vec![1; n]),
            ..Default::default()
        }
    }

    #[test]
    fn tiled_level_geometry() {
        let l = Level::from_raw(0, raw_tiled(100, 75, 32, 12)).unwrap();
        assert_eq!((l.blocks_across(), l.blocks_down()), (4, 3));
        assert_eq!(l.dtype, Some(DataType::U16));
        assert_eq!(l.block_index(3, 2, 0), 11);
        assert_eq!(l.rows_in_block(2), 32);
    }

    #[test]
    fn too_few_offsets_is_rejected() {
        let err = Level::from_raw(0, raw_tiled(100, 75, 32, 11)).unwrap_err();
        assert!(matches!(err, LayoutProblem::Invalid(m) if m.contains("12 blocks needed")));
    }

    #[test]
    fn huge_dimensions_do_not_allocate() {
        let err = Level::from_raw(0, raw_tiled(1 << 31, 1 << 31, 16, 1)).unwrap_err();
        assert!(matches!(err, LayoutProblem::Invalid(_)));
        let mut raw = raw_tiled(1 << 20, 1 << 20, 1 << 20, 1);
        raw.tile_height = Some(1 << 20);
        assert!(Level::from_raw(0, raw).is_err());
    }

    #[test]
    fn last_strip_is_short() {
        let raw = RawIfd {
            width: Some(10),
            height: Some(15),
            bits_per_sample: vec![8],
            rows_per_strip: Some(7),
            offsets: Some(vec![8; 3]),
            byte_counts: Some(vec![70; 3]),
            ..Default::default()
        };
        let l = Level::from_raw(0, raw).unwrap();
        assert!(!l.tiled);
        assert_eq!((l.rows_in_block(0), l.rows_in_block(2)), (7, 1));
    }
}
