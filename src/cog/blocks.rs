//! Block-level reads, for callers that keep decoded pixels themselves (streaming ingest):
//! the block grid of a level, what a block costs compressed and decoded, and blocks fetched
//! in one batch and decoded in parallel, each handed back whole so that the caller copies
//! out only the parts it still needs and drops the rest.

use super::ifd::Level;
use super::tags::Interleave;
use super::{Cog, Error, Result, Window};
use crate::Sample;
use bytemuck::Pod;
use bytes::Bytes;
use rayon::prelude::*;
use std::ops::Range;

/// The block layout of one image level: blocks of `block_width` x `block_height` pixels in
/// row-major order, the last column and row clipped by the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockGrid {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Block width (the image width for strips).
    pub block_width: u32,
    /// Block height (rows per strip for strips).
    pub block_height: u32,
}

impl BlockGrid {
    fn of(level: &Level) -> Self {
        BlockGrid {
            width: level.width,
            height: level.height,
            block_width: level.block_width,
            block_height: level.block_height,
        }
    }

    /// Blocks per row of blocks.
    pub fn cols(&self) -> u32 {
        self.width.div_ceil(self.block_width)
    }

    /// Rows of blocks.
    pub fn rows(&self) -> u32 {
        self.height.div_ceil(self.block_height)
    }

    /// The image pixels of block (`bx`, `by`), clipped to the image.
    pub fn block_window(&self, bx: u32, by: u32) -> Window {
        let c0 = bx as u64 * self.block_width as u64;
        let r0 = by as u64 * self.block_height as u64;
        let c1 = (c0 + self.block_width as u64).min(self.width as u64);
        let r1 = (r0 + self.block_height as u64).min(self.height as u64);
        Window::new(
            c0 as u32,
            r0 as u32,
            c1.saturating_sub(c0) as u32,
            r1.saturating_sub(r0) as u32,
        )
    }

    /// The block columns and rows a window (inside the image) touches.
    pub fn blocks_of(&self, w: &Window) -> (Range<u32>, Range<u32>) {
        if w.width == 0 || w.height == 0 {
            return (0..0, 0..0);
        }
        let last_col = w.col_off as u64 + w.width as u64 - 1;
        let last_row = w.row_off as u64 + w.height as u64 - 1;
        (
            w.col_off / self.block_width..(last_col / self.block_width as u64) as u32 + 1,
            w.row_off / self.block_height..(last_row / self.block_height as u64) as u32 + 1,
        )
    }
}

/// Decoded samples of one plane of a block, native-endian.
enum Plane<T> {
    /// The decoder's bytes, whose address suits `T`.
    Bytes(Vec<u8>),
    /// Copied into `T`s because the decoder's buffer was not aligned for `T`.
    Typed(Vec<T>),
    /// A sparse block (no bytes in the file): every sample is the fill value.
    Sparse,
}

/// One decoded block: the samples of the bands a read asked for over the block's pixels.
pub struct DecodedBlock<T> {
    window: Window,
    /// Samples per decoded row (block width times samples per block pixel).
    stride: usize,
    /// Samples per pixel in a plane.
    spp: usize,
    /// For each requested band: its plane and its sample offset inside a pixel.
    bands: Vec<(usize, usize)>,
    planes: Vec<Plane<T>>,
    fill: T,
}

impl<T: Pod> DecodedBlock<T> {
    /// The image pixels the block holds.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Number of requested bands.
    pub fn band_count(&self) -> usize {
        self.bands.len()
    }

    /// Bytes of decoded samples held.
    pub fn heap_bytes(&self) -> usize {
        self.planes
            .iter()
            .map(|p| match p {
                Plane::Bytes(b) => b.len(),
                Plane::Typed(t) => std::mem::size_of_val(t.as_slice()),
                Plane::Sparse => 0,
            })
            .sum()
    }

    fn samples(&self, plane: usize) -> Option<&[T]> {
        match &self.planes[plane] {
            Plane::Bytes(b) => bytemuck::try_cast_slice(b).ok(),
            Plane::Typed(t) => Some(t),
            Plane::Sparse => None,
        }
    }

    /// Copies every requested band over `rect` (image pixels inside the block) into `dst`:
    /// band `k`, row `r`, column `c` of `rect` go to
    /// `dst[k * band_stride + r * row_stride + c]`. Rows the decoder did not produce are
    /// filled like sparse blocks.
    pub fn copy_into(&self, rect: Window, dst: &mut [T], band_stride: usize, row_stride: usize) {
        let w = &self.window;
        debug_assert!(
            rect.col_off >= w.col_off
                && rect.row_off >= w.row_off
                && rect.col_off as u64 + rect.width as u64 <= w.col_off as u64 + w.width as u64
                && rect.row_off as u64 + rect.height as u64 <= w.row_off as u64 + w.height as u64
        );
        let n = rect.width as usize;
        let dx = (rect.col_off - w.col_off) as usize;
        let dy = (rect.row_off - w.row_off) as usize;
        // Pixel-interleaved planes holding several requested bands are de-interleaved a
        // short run of pixels at a time, so the source run stays in L1.
        if self.spp > 1 && self.planes.len() == 1 {
            if let Some(src) = self.samples(0) {
                const RUN: usize = 256;
                for r in 0..rect.height as usize {
                    let start = (dy + r) * self.stride + dx * self.spp;
                    let Some(row) = src.get(start..start + n * self.spp) else {
                        for k in 0..self.bands.len() {
                            let at = k * band_stride + r * row_stride;
                            dst[at..at + n].fill(self.fill);
                        }
                        continue;
                    };
                    for x0 in (0..n).step_by(RUN) {
                        let x1 = (x0 + RUN).min(n);
                        let run = &row[x0 * self.spp..x1 * self.spp];
                        for (k, &(_, offset)) in self.bands.iter().enumerate() {
                            let at = k * band_stride + r * row_stride;
                            for (d, px) in dst[at + x0..at + x1]
                                .iter_mut()
                                .zip(run.chunks_exact(self.spp))
                            {
                                *d = px[offset];
                            }
                        }
                    }
                }
                return;
            }
        }
        for (k, &(plane, offset)) in self.bands.iter().enumerate() {
            let src = self.samples(plane);
            for r in 0..rect.height as usize {
                let at = k * band_stride + r * row_stride;
                let out = &mut dst[at..at + n];
                let start = (dy + r) * self.stride + dx * self.spp + offset;
                let row = src.and_then(|s| s.get(start..start + (n - 1) * self.spp + 1));
                match row {
                    Some(row) if self.spp == 1 => out.copy_from_slice(row),
                    Some(row) => {
                        for (d, s) in out.iter_mut().zip(row.iter().step_by(self.spp)) {
                            *d = *s;
                        }
                    }
                    None => out.fill(self.fill),
                }
            }
        }
    }
}

impl Cog {
    /// The block layout of image `level`.
    pub fn block_grid(&self, level: usize) -> Result<BlockGrid> {
        Ok(BlockGrid::of(self.level(level)?))
    }

    /// The block layout of the internal mask of `level`, if the file has one.
    pub fn mask_block_grid(&self, level: usize) -> Result<Option<BlockGrid>> {
        self.level(level)?;
        Ok(self.mask_level(level).map(BlockGrid::of))
    }

    fn mask_level(&self, level: usize) -> Option<&Level> {
        self.meta.masks.get(level).and_then(|m| m.as_ref())
    }

    /// Bytes block (`bx`, `by`) of `level` occupies in the file, over the planes that
    /// reading `bands` decodes (0 for sparse or missing blocks).
    pub fn block_compressed_bytes(&self, level: usize, bx: u32, by: u32, bands: &[usize]) -> u64 {
        let Ok(lvl) = self.level(level) else {
            return 0;
        };
        planes_of(lvl, bands)
            .into_iter()
            .map(|p| compressed(lvl, bx, by, p))
            .sum()
    }

    /// Bytes block (`bx`, `by`) of the mask of `level` occupies in the file.
    pub fn mask_block_compressed_bytes(&self, level: usize, bx: u32, by: u32) -> u64 {
        self.mask_level(level)
            .map(|m| compressed(m, bx, by, 0))
            .unwrap_or(0)
    }

    /// Bytes one block of `level` decodes into when `bands` are read: a pixel-interleaved
    /// block decodes every band it stores.
    pub fn block_decoded_bytes(&self, level: usize, bands: &[usize]) -> u64 {
        let Ok(lvl) = self.level(level) else {
            return 0;
        };
        plane_bytes(lvl) * planes_of(lvl, bands).len() as u64
    }

    /// Bytes one block of the mask of `level` decodes into (one byte per pixel).
    pub fn mask_block_decoded_bytes(&self, level: usize) -> u64 {
        self.mask_level(level)
            .map(|m| m.block_width as u64 * m.block_height as u64)
            .unwrap_or(0)
    }

    /// Fetches blocks (`(column, row)` in the level's [`BlockGrid`]) of `level` in one batch
    /// and decodes each once, in parallel, keeping `bands` (0-based). Sparse blocks read as
    /// the nodata value (0 without one), like [`read_window`](Cog::read_window).
    pub fn read_blocks<T: Sample + Pod>(
        &self,
        level: usize,
        blocks: &[(u32, u32)],
        bands: &[usize],
    ) -> Result<Vec<DecodedBlock<T>>> {
        let lvl = self.level(level)?;
        if lvl.dtype != Some(T::DTYPE) {
            return Err(self.block_request(format!(
                "pixels are {}, but {} was asked for",
                lvl.dtype.map(|d| d.name()).unwrap_or("1-bit"),
                T::DTYPE
            )));
        }
        if bands.is_empty() {
            return Err(self.block_request("no band was asked for".into()));
        }
        if let Some(&b) = bands.iter().find(|&&b| b >= lvl.samples_per_pixel as usize) {
            return Err(self.block_request(format!(
                "band index {b} does not exist (the file has {} bands, numbered from 0)",
                lvl.samples_per_pixel
            )));
        }
        let fill = self
            .meta
            .nodata
            .map(T::from_f64)
            .filter(|v| v.to_f64() == self.meta.nodata.unwrap_or(0.0))
            .unwrap_or_default();
        self.fetch_and_decode(level, lvl, blocks, bands, fill, false)
    }

    /// [`read_blocks`](Cog::read_blocks) for the GDAL internal mask of `level` (255 = valid,
    /// 0 = masked; sparse blocks are all valid).
    pub fn read_mask_blocks(
        &self,
        level: usize,
        blocks: &[(u32, u32)],
    ) -> Result<Vec<DecodedBlock<u8>>> {
        self.level(level)?;
        let Some(mask) = self.mask_level(level) else {
            return Err(self.block_request(format!("level {level} has no internal mask")));
        };
        if mask.dtype.is_some_and(|d| d != crate::DataType::U8) {
            return Err(Error::Unsupported {
                file: self.meta.name.clone(),
                what: "mask type",
                value: format!("{}-bit mask", mask.bits_per_sample),
            });
        }
        self.fetch_and_decode(level, mask, blocks, &[0], 255u8, true)
    }

    fn block_request(&self, reason: String) -> Error {
        Error::BadRequest {
            file: self.meta.name.clone(),
            reason,
        }
    }

    fn fetch_and_decode<T: Pod + Send + Sync>(
        &self,
        level_index: usize,
        lvl: &Level,
        blocks: &[(u32, u32)],
        bands: &[usize],
        fill: T,
        is_mask: bool,
    ) -> Result<Vec<DecodedBlock<T>>> {
        let grid = BlockGrid::of(lvl);
        let planes = planes_of(lvl, bands);
        let mut ranges = Vec::new();
        // Per block and plane: the index of its range in `ranges`, or None when sparse.
        let mut wanted: Vec<Vec<(usize, Option<usize>)>> = Vec::with_capacity(blocks.len());
        for &(bx, by) in blocks {
            if bx >= grid.cols() || by >= grid.rows() {
                return Err(self.block_request(format!(
                    "block ({bx}, {by}) is outside the {}x{} blocks of level {level_index}",
                    grid.cols(),
                    grid.rows()
                )));
            }
            let mut per_plane = Vec::with_capacity(planes.len());
            for &plane in &planes {
                let idx = lvl.block_index(bx, by, plane);
                let (start, count) = (lvl.offsets[idx], lvl.byte_counts[idx]);
                if count == 0 {
                    per_plane.push((idx, None));
                    continue;
                }
                let end = start.saturating_add(count);
                if end > self.meta.file_size {
                    return Err(Error::BlockOutsideFile {
                        file: self.meta.name.clone(),
                        level: level_index,
                        block: idx,
                        start,
                        end,
                        size: self.meta.file_size,
                    });
                }
                per_plane.push((idx, Some(ranges.len())));
                ranges.push(start..end);
            }
            wanted.push(per_plane);
        }
        let fetched: Vec<Bytes> = self.source.read_ranges(&ranges)?;
        let spp = lvl.samples_per_block_pixel();
        let band_map: Vec<(usize, usize)> = bands
            .iter()
            .map(|&b| match lvl.interleave {
                Interleave::Pixel => (0, b),
                Interleave::Band => (planes.iter().position(|&p| p == b).unwrap_or(0), 0),
            })
            .collect();
        blocks
            .par_iter()
            .zip(wanted)
            .map(|(&(bx, by), per_plane)| {
                let planes = per_plane
                    .into_iter()
                    .map(|(idx, range)| match range {
                        None => Ok(Plane::Sparse),
                        Some(r) => {
                            let mut buf =
                                self.decode_block(level_index, lvl, by, idx, &fetched[r])?;
                            if is_mask {
                                // 8-bit masks may use any non-zero value for "valid".
                                for v in buf.iter_mut() {
                                    *v = if *v == 0 { 0 } else { 255 };
                                }
                            }
                            Ok(typed_plane::<T>(buf))
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(DecodedBlock {
                    window: grid.block_window(bx, by),
                    stride: lvl.block_width as usize * spp,
                    spp,
                    bands: band_map.clone(),
                    planes,
                    fill,
                })
            })
            .collect()
    }
}

/// The decoder's bytes as samples of `T`, copied only when their address does not suit `T`.
fn typed_plane<T: Pod>(buf: Vec<u8>) -> Plane<T> {
    if bytemuck::try_cast_slice::<u8, T>(&buf).is_ok() {
        return Plane::Bytes(buf);
    }
    let len = buf.len() / std::mem::size_of::<T>();
    let mut v = vec![T::zeroed(); len];
    bytemuck::cast_slice_mut::<T, u8>(&mut v)
        .copy_from_slice(&buf[..len * std::mem::size_of::<T>()]);
    Plane::Typed(v)
}

/// Block planes reading `bands` decodes: `[0]` when pixel-interleaved, else each band once.
fn planes_of(lvl: &Level, bands: &[usize]) -> Vec<usize> {
    match lvl.interleave {
        Interleave::Pixel => vec![0],
        Interleave::Band => {
            let mut p = bands.to_vec();
            p.sort_unstable();
            p.dedup();
            p
        }
    }
}

fn compressed(lvl: &Level, bx: u32, by: u32, plane: usize) -> u64 {
    if bx >= lvl.blocks_across() || by >= lvl.blocks_down() {
        return 0;
    }
    lvl.byte_counts
        .get(lvl.block_index(bx, by, plane))
        .copied()
        .unwrap_or(0)
}

/// Decoded bytes of one plane of a full block (1-bit masks expand to a byte per pixel).
fn plane_bytes(lvl: &Level) -> u64 {
    lvl.block_width as u64
        * lvl.block_height as u64
        * lvl.samples_per_block_pixel() as u64
        * lvl.bytes_per_sample().max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cog::{write_cog, WriteOptions};
    use ndarray::Array3;

    fn scene(dir: &std::path::Path, bands: usize) -> (Cog, Array3<u16>) {
        let data = Array3::from_shape_fn((bands, 150, 200), |(b, y, x)| {
            (b * 1000 + y * 3 + x * 7 % 13) as u16
        });
        let path = dir.join("s.tif");
        let options = WriteOptions {
            block_size: 64,
            nodata: Some(0.0),
            ..Default::default()
        };
        write_cog(&path, data.view(), &options).unwrap();
        (Cog::open(&path).unwrap(), data)
    }

    #[test]
    fn grid_and_windows() {
        let g = BlockGrid {
            width: 200,
            height: 150,
            block_width: 64,
            block_height: 64,
        };
        assert_eq!((g.cols(), g.rows()), (4, 3));
        assert_eq!(g.block_window(3, 2), Window::new(192, 128, 8, 22));
        assert_eq!(g.blocks_of(&Window::new(60, 0, 10, 65)), (0..2, 0..2));
        assert_eq!(g.blocks_of(&Window::new(64, 64, 64, 64)), (1..2, 1..2));
    }

    #[test]
    fn blocks_copy_out_what_a_window_read_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (cog, data) = scene(dir.path(), 3);
        let grid = cog.block_grid(0).unwrap();
        let blocks: Vec<(u32, u32)> = (0..grid.rows())
            .flat_map(|by| (0..grid.cols()).map(move |bx| (bx, by)))
            .collect();
        // Bands out of order and repeated, like a group of warehouse bands may ask.
        let bands = [2, 0, 2];
        let decoded = cog.read_blocks::<u16>(0, &blocks, &bands).unwrap();
        assert_eq!(decoded.len(), 12);
        let (w, h) = (200usize, 150usize);
        let mut out = vec![0u16; bands.len() * w * h];
        for b in &decoded {
            let win = b.window();
            let at = win.row_off as usize * w + win.col_off as usize;
            b.copy_into(win, &mut out[at..], w * h, w);
            assert!(b.heap_bytes() > 0);
        }
        for (k, &band) in bands.iter().enumerate() {
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(out[k * w * h + y * w + x], data[[band, y, x]]);
                }
            }
        }
        // A part of one block.
        let b = &decoded[5];
        let rect = Window::new(b.window().col_off + 3, b.window().row_off + 10, 5, 2);
        let mut part = vec![0u16; 3 * 10];
        b.copy_into(rect, &mut part, 10, 5);
        assert_eq!(part[0], data[[2, 74, 67]]);
        assert_eq!(part[10 + 5 + 4], data[[0, 75, 71]]);
    }

    #[test]
    fn bad_block_requests_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (cog, _) = scene(dir.path(), 1);
        let err = cog.read_blocks::<u16>(0, &[(9, 0)], &[0]).err().unwrap();
        assert!(err.to_string().contains("outside"), "{err}");
        assert!(cog.read_blocks::<u8>(0, &[(0, 0)], &[0]).is_err());
        assert!(cog.read_blocks::<u16>(0, &[(0, 0)], &[1]).is_err());
        assert!(cog.read_mask_blocks(0, &[(0, 0)]).is_err());
        assert!(cog.block_compressed_bytes(0, 0, 0, &[0]) > 0);
        assert_eq!(cog.block_decoded_bytes(0, &[0]), 64 * 64 * 2);
        assert_eq!(cog.mask_block_grid(0).unwrap(), None);
    }
}
