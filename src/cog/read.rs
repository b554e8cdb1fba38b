//! Window reads: plan the blocks a window needs, fetch their byte ranges in one batch
//! (merged when adjacent), decode them in parallel and copy each into the output once.

use super::codec::{self, BlockShape};
use super::ifd::Level;
use super::predictor;
use super::tags::{Compression, Interleave, Photometric, Predictor};
use super::{Cog, Error, Result};
use crate::{DataType, Sample};
use bytemuck::Pod;
use bytes::Bytes;
use ndarray::{Array2, Array3};
use rayon::prelude::*;
use serde::Serialize;
use std::ops::Range;

/// Largest output one read may allocate; a bigger window must be read in pieces.
pub const MAX_READ_BYTES: u64 = 4 << 30;

/// A rectangle of pixels of one image level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// First column.
    pub col_off: u32,
    /// First row.
    pub row_off: u32,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}

impl Window {
    /// A window from its offset and size.
    pub fn new(col_off: u32, row_off: u32, width: u32, height: u32) -> Self {
        Self {
            col_off,
            row_off,
            width,
            height,
        }
    }

    /// The whole of a `width` x `height` image.
    pub fn full(width: u32, height: u32) -> Self {
        Self::new(0, 0, width, height)
    }

    fn col_end(&self) -> u64 {
        self.col_off as u64 + self.width as u64
    }

    fn row_end(&self) -> u64 {
        self.row_off as u64 + self.height as u64
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{} at column {}, row {}",
            self.width, self.height, self.col_off, self.row_off
        )
    }
}

/// A window of pixels whose type is only known at run time: `(band, row, col)` arrays.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum RasterData {
    U8(Array3<u8>),
    I8(Array3<i8>),
    U16(Array3<u16>),
    I16(Array3<i16>),
    U32(Array3<u32>),
    I32(Array3<i32>),
    F32(Array3<f32>),
    F64(Array3<f64>),
}

/// Runs `$body` with `$a` bound to the typed array inside a [`RasterData`].
macro_rules! with_array {
    ($data:expr, $a:ident => $body:expr) => {
        match $data {
            RasterData::U8($a) => $body,
            RasterData::I8($a) => $body,
            RasterData::U16($a) => $body,
            RasterData::I16($a) => $body,
            RasterData::U32($a) => $body,
            RasterData::I32($a) => $body,
            RasterData::F32($a) => $body,
            RasterData::F64($a) => $body,
        }
    };
}

impl RasterData {
    /// The sample type.
    pub fn dtype(&self) -> DataType {
        match self {
            RasterData::U8(_) => DataType::U8,
            RasterData::I8(_) => DataType::I8,
            RasterData::U16(_) => DataType::U16,
            RasterData::I16(_) => DataType::I16,
            RasterData::U32(_) => DataType::U32,
            RasterData::I32(_) => DataType::I32,
            RasterData::F32(_) => DataType::F32,
            RasterData::F64(_) => DataType::F64,
        }
    }

    /// `(bands, rows, cols)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        with_array!(self, a => a.dim())
    }

    /// Appends the samples as little-endian bytes, band-sequential.
    pub fn extend_le_bytes(&self, out: &mut Vec<u8>) {
        with_array!(self, a => {
            for v in a.iter() {
                out.extend_from_slice(bytemuck::bytes_of(&v.to_le()));
            }
        })
    }

    /// One sample widened to `f64`.
    pub fn get_f64(&self, band: usize, row: usize, col: usize) -> Option<f64> {
        with_array!(self, a => a.get((band, row, col)).map(|v| v.to_f64()))
    }
}

/// Little-endian conversion for every sample type (floats by their bit pattern).
trait ToLe: Pod {
    fn to_le(self) -> Self;
}

macro_rules! to_le_int {
    ($($t:ty),*) => {$(impl ToLe for $t { fn to_le(self) -> Self { <$t>::to_le(self) } })*};
}
to_le_int!(u8, i8, u16, i16, u32, i32);

impl ToLe for f32 {
    fn to_le(self) -> Self {
        f32::from_bits(self.to_bits().to_le())
    }
}

impl ToLe for f64 {
    fn to_le(self) -> Self {
        f64::from_bits(self.to_bits().to_le())
    }
}

/// Which blocks a read touches.
struct Plan<'a> {
    level_index: usize,
    level: &'a Level,
    window: Window,
    bands: &'a [usize],
    /// Block planes to decode: `[0]` for pixel-interleaved, the distinct bands otherwise.
    planes: Vec<usize>,
    block_cols: Range<u32>,
    block_rows: Range<u32>,
}

impl Cog {
    /// Reads `bands` (0-based) of a window of image `level` (0 = full resolution, 1.. =
    /// overviews) as a `(band, row, col)` array of the file's sample type.
    ///
    /// Missing (sparse) blocks read as the nodata value, or 0 without one.
    pub fn read_window<T: Sample + Pod>(
        &self,
        level: usize,
        window: Window,
        bands: &[usize],
    ) -> Result<Array3<T>> {
        let lvl = self.level(level)?;
        if lvl.dtype != Some(T::DTYPE) {
            return Err(self.bad_request(format!(
                "pixels are {}, but {} was asked for",
                lvl.dtype.map(|d| d.name()).unwrap_or("1-bit"),
                T::DTYPE
            )));
        }
        let fill = self
            .meta
            .nodata
            .map(T::from_f64)
            .filter(|v| v.to_f64() == self.meta.nodata.unwrap_or(0.0))
            .unwrap_or_default();
        let plan = self.plan(level, lvl, window, bands)?;
        let data = self.read_planned(&plan, fill)?;
        Array3::from_shape_vec(
            (bands.len(), window.height as usize, window.width as usize),
            data,
        )
        .map_err(|e| self.bad_request(e.to_string()))
    }

    /// [`read_window`](Cog::read_window) for a sample type known only at run time.
    pub fn read_window_any(
        &self,
        level: usize,
        window: Window,
        bands: &[usize],
    ) -> Result<RasterData> {
        Ok(match self.meta.dtype() {
            DataType::U8 => RasterData::U8(self.read_window(level, window, bands)?),
            DataType::I8 => RasterData::I8(self.read_window(level, window, bands)?),
            DataType::U16 => RasterData::U16(self.read_window(level, window, bands)?),
            DataType::I16 => RasterData::I16(self.read_window(level, window, bands)?),
            DataType::U32 => RasterData::U32(self.read_window(level, window, bands)?),
            DataType::I32 => RasterData::I32(self.read_window(level, window, bands)?),
            DataType::F32 => RasterData::F32(self.read_window(level, window, bands)?),
            DataType::F64 => RasterData::F64(self.read_window(level, window, bands)?),
        })
    }

    /// Reads the GDAL internal mask of a window (255 = valid, 0 = masked), or `None` when the
    /// level has no mask.
    pub fn read_mask(&self, level: usize, window: Window) -> Result<Option<Array2<u8>>> {
        self.level(level)?;
        let Some(mask) = self.meta.masks.get(level).and_then(|m| m.as_ref()) else {
            return Ok(None);
        };
        if mask.dtype.is_some_and(|d| d != DataType::U8) {
            return Err(Error::Unsupported {
                file: self.meta.name.clone(),
                what: "mask type",
                value: format!("{}-bit mask", mask.bits_per_sample),
            });
        }
        let plan = self.plan(level, mask, window, &[0])?;
        // Sparse mask blocks mean "all valid" in GDAL.
        let data = self.read_planned(&plan, 255u8)?;
        let mut mask =
            Array2::from_shape_vec((window.height as usize, window.width as usize), data)
                .map_err(|e| self.bad_request(e.to_string()))?;
        // 8-bit masks may use any non-zero value for "valid".
        mask.mapv_inplace(|v| if v == 0 { 0 } else { 255 });
        Ok(Some(mask))
    }

    pub(super) fn level(&self, level: usize) -> Result<&Level> {
        self.meta.levels.get(level).ok_or_else(|| {
            self.bad_request(format!(
                "there is no level {level} (the file has full resolution and {} overviews)",
                self.meta.overview_count()
            ))
        })
    }

    fn bad_request(&self, reason: String) -> Error {
        Error::BadRequest {
            file: self.meta.name.clone(),
            reason,
        }
    }

    fn plan<'a>(
        &self,
        level_index: usize,
        level: &'a Level,
        window: Window,
        bands: &'a [usize],
    ) -> Result<Plan<'a>> {
        if window.width == 0
            || window.height == 0
            || window.col_end() > level.width as u64
            || window.row_end() > level.height as u64
        {
            return Err(self.bad_request(format!(
                "window {window} is empty or not inside the {}x{} image",
                level.width, level.height
            )));
        }
        if bands.is_empty() {
            return Err(self.bad_request("no band was asked for".into()));
        }
        if let Some(&b) = bands
            .iter()
            .find(|&&b| b >= level.samples_per_pixel as usize)
        {
            return Err(self.bad_request(format!(
                "band index {b} does not exist (the file has {} bands, numbered from 0)",
                level.samples_per_pixel
            )));
        }
        let bytes = window.width as u64
            * window.height as u64
            * bands.len() as u64
            * level.bytes_per_sample().max(1) as u64;
        if bytes > MAX_READ_BYTES {
            return Err(Error::TooLarge {
                file: self.meta.name.clone(),
                what: format!("window {window} of {} bands", bands.len()),
                bytes,
                limit: MAX_READ_BYTES,
            });
        }
        let planes = match level.interleave {
            Interleave::Pixel => vec![0],
            Interleave::Band => {
                let mut p = bands.to_vec();
                p.sort_unstable();
                p.dedup();
                p
            }
        };
        let bw = level.block_width;
        let bh = level.block_height;
        Ok(Plan {
            level_index,
            level,
            window,
            bands,
            planes,
            block_cols: window.col_off / bw..((window.col_end() - 1) / bw as u64) as u32 + 1,
            block_rows: window.row_off / bh..((window.row_end() - 1) / bh as u64) as u32 + 1,
        })
    }

    /// Fetches and decodes the planned blocks into a band-sequential buffer.
    fn read_planned<T: Pod + Default + Send + Sync>(
        &self,
        plan: &Plan<'_>,
        fill: T,
    ) -> Result<Vec<T>> {
        let level = plan.level;
        let file_size = self.meta.file_size;
        // Byte ranges of every non-sparse block, fetched in one batch.
        let mut wanted: Vec<(u32, u32, usize, usize)> = Vec::new();
        let mut ranges = Vec::new();
        for by in plan.block_rows.clone() {
            for bx in plan.block_cols.clone() {
                for &plane in &plan.planes {
                    let idx = level.block_index(bx, by, plane);
                    let (start, count) = (level.offsets[idx], level.byte_counts[idx]);
                    if count == 0 {
                        continue;
                    }
                    let end = start.saturating_add(count);
                    if end > file_size {
                        return Err(Error::BlockOutsideFile {
                            file: self.meta.name.clone(),
                            level: plan.level_index,
                            block: idx,
                            start,
                            end,
                            size: file_size,
                        });
                    }
                    wanted.push((bx, by, plane, idx));
                    ranges.push(start..end);
                }
            }
        }
        let fetched = self.source.read_ranges(&ranges)?;
        let mut blocks_by_row: Vec<Vec<(u32, usize, usize, Bytes)>> =
            vec![Vec::new(); plan.block_rows.len()];
        for ((bx, by, plane, idx), bytes) in wanted.into_iter().zip(fetched) {
            blocks_by_row[(by - plan.block_rows.start) as usize].push((bx, plane, idx, bytes));
        }

        let (w, h) = (plan.window.width as usize, plan.window.height as usize);
        let mut out = vec![fill; plan.bands.len() * w * h];
        // Each row of blocks owns a horizontal stripe of every output band.
        let mut stripes: Vec<Vec<&mut [T]>> = (0..plan.block_rows.len())
            .map(|_| Vec::with_capacity(plan.bands.len()))
            .collect();
        for band_plane in out.chunks_mut(w * h) {
            let mut rest = band_plane;
            for (i, by) in plan.block_rows.clone().enumerate() {
                let rows = self.rows_of(plan, by);
                let (head, tail) = rest.split_at_mut(rows.len() * w);
                stripes[i].push(head);
                rest = tail;
            }
        }
        stripes
            .into_par_iter()
            .zip(blocks_by_row)
            .enumerate()
            .try_for_each(|(i, (mut stripe, blocks))| {
                let by = plan.block_rows.start + i as u32;
                let decoded: Vec<(u32, usize, Vec<u8>)> = blocks
                    .into_par_iter()
                    .map(|(bx, plane, idx, bytes)| {
                        self.decode_block(plan.level_index, level, by, idx, &bytes)
                            .map(|buf| (bx, plane, buf))
                    })
                    .collect::<Result<_>>()?;
                for (bx, plane, buf) in decoded {
                    place_block::<T>(
                        plan,
                        bx,
                        by,
                        plane,
                        &buf,
                        &mut stripe,
                        &self.rows_of(plan, by),
                    );
                }
                Ok::<(), Error>(())
            })?;
        Ok(out)
    }

    /// Image rows of block row `by` that fall inside the window.
    fn rows_of(&self, plan: &Plan<'_>, by: u32) -> Range<u32> {
        let bh = plan.level.block_height as u64;
        let start = (by as u64 * bh).max(plan.window.row_off as u64);
        let end = ((by as u64 + 1) * bh).min(plan.window.row_end());
        start as u32..end as u32
    }

    /// Decompresses one block and undoes byte order and predictor: native-endian samples
    /// (1-bit masks are expanded to one byte per pixel).
    pub(super) fn decode_block(
        &self,
        level_index: usize,
        level: &Level,
        by: u32,
        idx: usize,
        bytes: &[u8],
    ) -> Result<Vec<u8>> {
        let rows = level.rows_in_block(by) as usize;
        let bw = level.block_width as usize;
        let spp = level.samples_per_block_pixel();
        let bits = level.bits_per_sample as usize;
        let expected = (bw * spp * bits).div_ceil(8) * rows;
        let shape = BlockShape {
            width: bw,
            height: rows,
            samples: spp,
            jpeg_tables: level.jpeg_tables.as_deref(),
            ycbcr: level.photometric == Photometric::YCbCr,
        };
        let decode_err = |source| Error::Decode {
            file: self.meta.name.clone(),
            level: level_index,
            block: idx,
            source,
        };
        if !codec::is_supported(level.compression) {
            return Err(Error::Unsupported {
                file: self.meta.name.clone(),
                what: "compression",
                value: level.compression.name(),
            });
        }
        let mut buf = Vec::new();
        codec::decompress(level.compression, bytes, &mut buf, expected, &shape)
            .map_err(decode_err)?;
        if bits == 1 {
            return Ok(unpack_bits(&buf, bw, rows));
        }
        if matches!(level.compression, Compression::Jpeg | Compression::WebP) {
            return Ok(buf);
        }
        let bps = level.bytes_per_sample();
        match level.predictor {
            Predictor::FloatingPoint => {
                let mut scratch = Vec::new();
                predictor::undo_floating_point(&mut buf, bps, spp, bw * spp, &mut scratch);
            }
            Predictor::None | Predictor::Horizontal => {
                if self.meta.big_endian {
                    predictor::swap_bytes(&mut buf, bps);
                }
                if level.predictor == Predictor::Horizontal {
                    predictor::undo_horizontal(&mut buf, bps, spp, bw * spp);
                }
            }
            Predictor::Unknown(code) => {
                return Err(Error::Unsupported {
                    file: self.meta.name.clone(),
                    what: "predictor",
                    value: code.to_string(),
                })
            }
        }
        Ok(buf)
    }
}

/// Expands 1-bit rows (most significant bit first, rows padded to a byte) to 0/255 bytes.
fn unpack_bits(packed: &[u8], width: usize, rows: usize) -> Vec<u8> {
    let row_bytes = width.div_ceil(8);
    let mut out = Vec::with_capacity(width * rows);
    for row in packed.chunks_exact(row_bytes).take(rows) {
        out.extend((0..width).map(|x| {
            if row[x / 8] & (0x80 >> (x % 8)) != 0 {
                255
            } else {
                0
            }
        }));
    }
    out
}

/// Copies the part of one decoded block that lies in the window into the output stripes
/// (one stripe per requested band, covering `rows` of the image).
fn place_block<T: Pod>(
    plan: &Plan<'_>,
    bx: u32,
    by: u32,
    plane: usize,
    buf: &[u8],
    stripes: &mut [&mut [T]],
    rows: &Range<u32>,
) {
    let aligned;
    let samples: &[T] = match bytemuck::try_cast_slice(buf) {
        Ok(s) => s,
        Err(_) => {
            // Decoders hand back `Vec<u8>`; copy when its address does not suit `T`.
            let len = buf.len() / std::mem::size_of::<T>();
            let mut v = vec![T::zeroed(); len];
            bytemuck::cast_slice_mut::<T, u8>(&mut v)
                .copy_from_slice(&buf[..len * std::mem::size_of::<T>()]);
            aligned = v;
            &aligned
        }
    };
    let level = plan.level;
    let bw = level.block_width as usize;
    let spp = level.samples_per_block_pixel();
    let win = &plan.window;
    let block_x0 = bx as usize * bw;
    let c0 = block_x0.max(win.col_off as usize);
    let c1 = (block_x0 + bw)
        .min(win.col_end() as usize)
        .min(level.width as usize);
    if c1 <= c0 {
        return;
    }
    let n = c1 - c0;
    let block_y0 = by as usize * level.block_height as usize;
    let w = win.width as usize;
    let dst_col = c0 - win.col_off as usize;
    if spp > 1 && level.interleave == Interleave::Pixel {
        // Pixel-interleaved: de-interleave a short run of pixels at a time, so the source
        // run stays in L1 while each requested band is picked out of it.
        const RUN: usize = 256;
        for r in rows.clone() {
            let src_start = ((r as usize - block_y0) * bw + (c0 - block_x0)) * spp;
            let Some(src) = samples.get(src_start..src_start + n * spp) else {
                continue;
            };
            let dst_start = (r - rows.start) as usize * w + dst_col;
            for x0 in (0..n).step_by(RUN) {
                let x1 = (x0 + RUN).min(n);
                let run = &src[x0 * spp..x1 * spp];
                for (stripe, &band) in stripes.iter_mut().zip(plan.bands) {
                    let dst = &mut stripe[dst_start + x0..dst_start + x1];
                    for (d, px) in dst.iter_mut().zip(run.chunks_exact(spp)) {
                        *d = px[band];
                    }
                }
            }
        }
        return;
    }
    for (k, &band) in plan.bands.iter().enumerate() {
        if level.interleave == Interleave::Band && band != plane {
            continue;
        }
        let stripe = &mut stripes[k];
        for r in rows.clone() {
            let src_start = ((r as usize - block_y0) * bw + (c0 - block_x0)) * spp;
            let dst_start = (r - rows.start) as usize * w + dst_col;
            let Some(src) = samples.get(src_start..src_start + n) else {
                continue;
            };
            stripe[dst_start..dst_start + n].copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_msb_first_bits() {
        assert_eq!(
            unpack_bits(&[0b1010_0000, 0b1000_0000], 3, 2),
            [255, 0, 255, 255, 0, 0]
        );
    }
}
