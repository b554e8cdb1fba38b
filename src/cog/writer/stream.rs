//! [`CogWriter`]: writes a COG window by window, so an image far larger than memory streams
//! to disk. Blocks of each window are encoded in parallel and appended after a reserved
//! header; the directories (whose size is known up front) are written last. With overviews,
//! each level is built from the rows as they pass (2x2 averages of valid pixels) and the file
//! is assembled at the end in COG order: directories, overviews smallest first, full
//! resolution last.

use super::encode::{encode_interleaved_block, encode_plane_block};
use super::sink::Sink;
use super::tiff::{Layout, Level};
use super::{Interleave, WriteError, WriteOptions};
use crate::Sample;
use bytemuck::Pod;
use ndarray::{s, Array2, Array3, ArrayView3, Axis};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Files over this many bytes (uncompressed, as an upper bound) are written as BigTIFF.
const CLASSIC_TIFF_LIMIT: u64 = 3_900_000_000;

/// A COG being written window by window; see [`CogWriter::create`].
pub struct CogWriter<T> {
    /// Final path and temporary name (file output).
    target: Option<(PathBuf, PathBuf)>,
    width: usize,
    height: usize,
    bands: usize,
    block: usize,
    options: WriteOptions,
    levels: Vec<Level>,
    bigtiff: bool,
    dir_len: u64,
    main: Sink,
    offsets: Vec<Vec<u64>>,
    counts: Vec<Vec<u64>>,
    pyramid: Option<Pyramid<T>>,
    ovr: Vec<Sink>,
}

impl<T> std::fmt::Debug for CogWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CogWriter({} bands, {}x{}, block {})",
            self.bands, self.width, self.height, self.block
        )
    }
}

impl<T: Sample + Pod> CogWriter<T> {
    /// Starts writing a `width` x `height` COG of `bands` bands to `path` (written under a
    /// temporary name beside it and renamed by [`CogWriter::finish`]; nothing is left
    /// behind when the writer is dropped unfinished).
    pub fn create(
        path: impl AsRef<Path>,
        width: usize,
        height: usize,
        bands: usize,
        options: &WriteOptions,
    ) -> Result<CogWriter<T>, WriteError> {
        let path = path.as_ref().to_path_buf();
        let file = path.display().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out.tif".into());
        let part = path.with_file_name(format!(".{name}.part"));
        let io = |source| WriteError::Io {
            file: file.clone(),
            source,
        };
        let main = Sink::create(&part).map_err(io)?;
        let mut w = CogWriter::start(width, height, bands, options, main, &file)?;
        for level in 1..w.levels.len() {
            let p = path.with_file_name(format!(".{name}.ovr{level}.part"));
            w.ovr.push(Sink::create(&p).map_err(io)?);
        }
        w.target = Some((path, part));
        Ok(w)
    }

    /// Starts writing a COG into memory ([`CogWriter::finish`] returns its bytes).
    pub fn in_memory(
        width: usize,
        height: usize,
        bands: usize,
        options: &WriteOptions,
    ) -> Result<CogWriter<T>, WriteError> {
        let mut w = CogWriter::start(width, height, bands, options, Sink::memory(), "memory")?;
        for _ in 1..w.levels.len() {
            w.ovr.push(Sink::memory());
        }
        Ok(w)
    }

    fn start(
        width: usize,
        height: usize,
        bands: usize,
        options: &WriteOptions,
        mut main: Sink,
        file: &str,
    ) -> Result<CogWriter<T>, WriteError> {
        let invalid = |reason: String| WriteError::Invalid {
            file: file.to_string(),
            reason,
        };
        let bs = options.block_size;
        if bands == 0 || height == 0 || width == 0 {
            return Err(invalid(format!(
                "empty raster ({bands} bands, {width}x{height})"
            )));
        }
        if bands > u16::MAX as usize || width > u32::MAX as usize || height > u32::MAX as usize {
            return Err(invalid(format!(
                "raster too large ({bands} bands, {width}x{height})"
            )));
        }
        if bs < 16 || !bs.is_multiple_of(16) {
            return Err(invalid(format!("block size {bs} is not a multiple of 16")));
        }
        for (what, n) in [
            ("band descriptions", options.band_descriptions.len()),
            ("band metadata lists", options.band_metadata.len()),
        ] {
            if n != 0 && n != bands {
                return Err(invalid(format!("{n} {what} for {bands} bands")));
            }
        }
        let block = bs as usize;
        let mut levels = vec![Level::new(width, height, block)];
        if options.overviews {
            while {
                let l = levels[levels.len() - 1];
                l.width > block || l.height > block
            } {
                let l = levels[levels.len() - 1];
                levels.push(Level::new(l.width.div_ceil(2), l.height.div_ceil(2), block));
            }
        }
        let raw: u64 = levels
            .iter()
            .map(|l| (l.blocks() * block * block * bands * T::DTYPE.size()) as u64)
            .sum();
        let bigtiff = raw > CLASSIC_TIFF_LIMIT;
        let layout = Layout {
            levels: &levels,
            bands,
            dtype: T::DTYPE,
            options,
            bigtiff,
        };
        let planes = layout.planes();
        let offsets: Vec<Vec<u64>> = levels
            .iter()
            .map(|l| vec![0; l.blocks() * planes])
            .collect();
        let counts = offsets.clone();
        let dir_len = layout.directories(&offsets, &counts).len() as u64;
        main.append(&vec![0u8; dir_len as usize])
            .map_err(|source| WriteError::Io {
                file: file.to_string(),
                source,
            })?;
        let pyramid = (levels.len() > 1).then(|| Pyramid::new(&levels[1..], block, options));
        Ok(CogWriter {
            target: None,
            width,
            height,
            bands,
            block,
            options: options.clone(),
            levels,
            bigtiff,
            dir_len,
            main,
            offsets,
            counts,
            pyramid,
            ovr: Vec::new(),
        })
    }

    /// Block size in pixels: windows start on multiples of it.
    pub fn block_size(&self) -> usize {
        self.block
    }

    /// True when the file is BigTIFF (decided from the uncompressed size).
    pub fn is_bigtiff(&self) -> bool {
        self.bigtiff
    }

    fn file(&self) -> String {
        self.target
            .as_ref()
            .map(|(p, _)| p.display().to_string())
            .unwrap_or_else(|| "memory".into())
    }

    /// Writes a window: `data` is `(band, y, x)` for bands `first_band..`, its top-left pixel
    /// at (`row`, `col`), both multiples of [`CogWriter::block_size`]; its size is whole
    /// blocks except where it reaches the image's right or bottom edge. Pixel-interleaved
    /// files take windows of all bands. With overviews, windows must come in row-major order
    /// for each run of bands, each run covering the whole image.
    pub fn write(
        &mut self,
        first_band: usize,
        row: usize,
        col: usize,
        data: ArrayView3<'_, T>,
    ) -> Result<(), WriteError> {
        let (nb, rows, cols) = data.dim();
        let bs = self.block;
        let whole = |start: usize, len: usize, max: usize| {
            start.is_multiple_of(bs)
                && start + len <= max
                && (len.is_multiple_of(bs) || start + len == max)
        };
        if nb == 0
            || first_band + nb > self.bands
            || !whole(row, rows, self.height)
            || !whole(col, cols, self.width)
            || (self.options.interleave == Interleave::Pixel && nb != self.bands)
        {
            return Err(WriteError::Invalid {
                file: self.file(),
                reason: format!(
                    "window of bands {first_band}..{} at ({col}, {row}), {cols}x{rows}, does not fit the {}x{}x{} image's {bs}-pixel blocks",
                    first_band + nb,
                    self.bands,
                    self.width,
                    self.height
                ),
            });
        }
        let level = self.levels[0];
        let (by0, bx0) = (row / bs, col / bs);
        let (down, across) = (rows.div_ceil(bs), cols.div_ceil(bs));
        let compression = self.options.compression;
        let encoded: Vec<(usize, Vec<u8>)> = match self.options.interleave {
            Interleave::Band => (0..nb * down * across)
                .into_par_iter()
                .map(|i| {
                    let (b, by, bx) = (i / (down * across), i / across % down, i % across);
                    let part = data.slice(s![
                        b,
                        by * bs..((by + 1) * bs).min(rows),
                        bx * bs..((bx + 1) * bs).min(cols)
                    ]);
                    let index =
                        (first_band + b) * level.blocks() + (by0 + by) * level.across + bx0 + bx;
                    (index, encode_plane_block(part, bs, compression))
                })
                .collect(),
            Interleave::Pixel => (0..down * across)
                .into_par_iter()
                .map(|i| {
                    let (by, bx) = (i / across, i % across);
                    let part = data.slice(s![
                        ..,
                        by * bs..((by + 1) * bs).min(rows),
                        bx * bs..((bx + 1) * bs).min(cols)
                    ]);
                    let index = (by0 + by) * level.across + bx0 + bx;
                    (index, encode_interleaved_block(part, bs, compression))
                })
                .collect(),
        };
        let file = self.file();
        for (index, bytes) in encoded {
            let at = self.main.append(&bytes).map_err(|source| WriteError::Io {
                file: file.clone(),
                source,
            })?;
            self.offsets[0][index] = at;
            self.counts[0][index] = bytes.len() as u64;
        }
        if let Some(pyramid) = &mut self.pyramid {
            let emitted = pyramid.feed(first_band, col, data, self.width, self.height);
            for (level, index, bytes) in emitted {
                let sink = &mut self.ovr[level - 1];
                let at = sink.append(&bytes).map_err(|source| WriteError::Io {
                    file: file.clone(),
                    source,
                })?;
                self.offsets[level][index] = at;
                self.counts[level][index] = bytes.len() as u64;
            }
        }
        Ok(())
    }

    /// Writes the directories, assembles overviews and renames the file into place; for an
    /// in-memory writer, returns the file's bytes. Errors when a block was never written.
    pub fn finish(mut self) -> Result<Option<Vec<u8>>, WriteError> {
        let file = self.file();
        let io = |source| WriteError::Io {
            file: file.clone(),
            source,
        };
        if let Some(i) = self.counts[0].iter().position(|&c| c == 0) {
            let planes = self.counts[0].len() / self.levels[0].blocks();
            let per = self.levels[0].blocks();
            return Err(WriteError::Invalid {
                file: file.clone(),
                reason: format!(
                    "block {} of plane {} of {planes} was never written",
                    i % per,
                    i / per
                ),
            });
        }
        let layout = Layout {
            levels: &self.levels,
            bands: self.bands,
            dtype: T::DTYPE,
            options: &self.options,
            bigtiff: self.bigtiff,
        };
        let out = if self.levels.len() == 1 {
            let dir = layout.directories(&self.offsets, &self.counts);
            self.main.patch(0, &dir).map_err(io)?;
            std::mem::replace(&mut self.main, Sink::memory())
        } else {
            // Directories, overview blocks (smallest level first), full-resolution blocks.
            let mut assembled = match &self.target {
                Some((path, _)) => {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Sink::create(&path.with_file_name(format!(".{name}.cog.part"))).map_err(io)?
                }
                None => Sink::memory(),
            };
            assembled
                .append(&vec![0u8; self.dir_len as usize])
                .map_err(io)?;
            let mut offsets = self.offsets.clone();
            for level in (1..self.levels.len()).rev() {
                let base = assembled.len();
                self.ovr[level - 1].copy_to(0, &mut assembled).map_err(io)?;
                for (o, &c) in offsets[level].iter_mut().zip(&self.counts[level]) {
                    if c > 0 {
                        *o += base;
                    }
                }
            }
            let base = assembled.len();
            self.main
                .copy_to(self.dir_len, &mut assembled)
                .map_err(io)?;
            for o in offsets[0].iter_mut() {
                *o = *o - self.dir_len + base;
            }
            let dir = layout.directories(&offsets, &self.counts);
            assembled.patch(0, &dir).map_err(io)?;
            assembled
        };
        let path_of = |s: &Sink| match s {
            Sink::File { path, .. } => Some(path.clone()),
            Sink::Memory(_) => None,
        };
        let written = path_of(&out);
        let bytes = out.finish().map_err(io)?;
        if let (Some((path, _)), Some(from)) = (&self.target, written) {
            std::fs::rename(&from, path).map_err(io)?;
        }
        Ok(bytes)
    }
}

/// Overview levels built while the image streams: each level pairs rows of the level above
/// (2x2 averages of valid pixels) and emits a row of blocks whenever it has one.
struct Pyramid<T> {
    block: usize,
    nodata: Option<f64>,
    interleave: Interleave,
    compression: super::WriteCompression,
    levels: Vec<OvLevel<T>>,
    /// Bands of the current pass.
    pass: Option<(usize, usize)>,
    /// Columns assembled for the current band of rows (windows narrower than the image).
    assembly: Option<Array3<T>>,
    assembled_cols: usize,
}

struct OvLevel<T> {
    size: Level,
    /// An input row waiting for its pair, `(band, x)`.
    pending: Option<Array2<T>>,
    /// Output rows of the block row being filled, `(band, y, x)`.
    buf: Array3<T>,
    filled: usize,
    /// Level row of `buf`'s first row.
    row0: usize,
}

impl<T: Sample + Pod> Pyramid<T> {
    fn new(levels: &[Level], block: usize, options: &WriteOptions) -> Pyramid<T> {
        Pyramid {
            block,
            nodata: options.nodata,
            interleave: options.interleave,
            compression: options.compression,
            levels: levels
                .iter()
                .map(|&size| OvLevel {
                    size,
                    pending: None,
                    buf: Array3::default((0, 0, 0)),
                    filled: 0,
                    row0: 0,
                })
                .collect(),
            pass: None,
            assembly: None,
            assembled_cols: 0,
        }
    }

    /// Takes a window of the full-resolution image; returns encoded overview blocks as
    /// (level, block index, bytes).
    fn feed(
        &mut self,
        first_band: usize,
        col: usize,
        data: ArrayView3<'_, T>,
        width: usize,
        height: usize,
    ) -> Vec<(usize, usize, Vec<u8>)> {
        let (nb, rows, cols) = data.dim();
        if self.pass != Some((first_band, nb)) {
            self.pass = Some((first_band, nb));
            for l in &mut self.levels {
                l.pending = None;
                l.filled = 0;
                l.row0 = 0;
                l.buf = Array3::default((nb, self.block, l.size.width));
            }
        }
        // Whole rows only: collect narrower windows until the band of rows is complete.
        let full: Array3<T> = if col == 0 && cols == width {
            data.to_owned()
        } else {
            let asm = self
                .assembly
                .get_or_insert_with(|| Array3::default((nb, rows, width)));
            asm.slice_mut(s![.., .., col..col + cols]).assign(&data);
            self.assembled_cols += cols;
            if self.assembled_cols < width {
                return Vec::new();
            }
            self.assembled_cols = 0;
            self.assembly
                .take()
                .unwrap_or_else(|| Array3::default((nb, 0, width)))
        };
        let mut out = Vec::new();
        self.rows_in(0, full, height, &mut out);
        out
    }

    /// Feeds rows `(band, y, x)` of the level above (`above_height` rows in all) into level
    /// `li`, emitting its blocks and feeding the level below as block rows complete.
    fn rows_in(
        &mut self,
        li: usize,
        rows: Array3<T>,
        above_height: usize,
        out: &mut Vec<(usize, usize, Vec<u8>)>,
    ) {
        let (_, n, w_in) = rows.dim();
        let nodata = self.nodata;
        let size = self.levels[li].size;
        let mut produced: Vec<Array2<T>> = Vec::new();
        let mut input: Vec<Array2<T>> = Vec::with_capacity(n + 1);
        if let Some(p) = self.levels[li].pending.take() {
            input.push(p);
        }
        input.extend(rows.axis_iter(Axis(1)).map(|r| r.to_owned()));
        // Rows of the level above consumed before this call, to know when it ends.
        let consumed_before = {
            let l = &self.levels[li];
            (l.row0 + l.filled) * 2
        };
        let total_in = consumed_before + input.len();
        let at_end = total_in >= above_height;
        let mut i = 0;
        while i + 1 < input.len() || (at_end && i < input.len()) {
            let a = &input[i];
            let b = input.get(i + 1).filter(|_| i + 1 < input.len());
            produced.push(average_rows(a, b, size.width, w_in, nodata));
            i += 2;
        }
        if i < input.len() {
            self.levels[li].pending = Some(input.swap_remove(i));
        }
        for r in produced {
            let lvl = &mut self.levels[li];
            lvl.buf.slice_mut(s![.., lvl.filled, ..]).assign(&r);
            lvl.filled += 1;
            let level_done = lvl.row0 + lvl.filled >= size.height;
            if lvl.filled == self.block || level_done {
                let filled = lvl.filled;
                let chunk = lvl.buf.slice(s![.., ..filled, ..]).to_owned();
                let by = lvl.row0 / self.block;
                lvl.row0 += filled;
                lvl.filled = 0;
                self.emit(li, by, chunk.view(), out);
                if li + 1 < self.levels.len() {
                    self.rows_in(li + 1, chunk, size.height, out);
                }
            }
        }
    }

    /// Encodes one row of blocks of level `li` (`rows` is `(band, y, x)` of the pass's bands).
    fn emit(
        &self,
        li: usize,
        by: usize,
        rows: ArrayView3<'_, T>,
        out: &mut Vec<(usize, usize, Vec<u8>)>,
    ) {
        let size = self.levels[li].size;
        let bs = self.block;
        let (nb, h, w) = rows.dim();
        let first = self.pass.map_or(0, |p| p.0);
        let compression = self.compression;
        let blocks: Vec<(usize, usize, Vec<u8>)> = match self.interleave {
            Interleave::Band => (0..nb * size.across)
                .into_par_iter()
                .map(|i| {
                    let (b, bx) = (i / size.across, i % size.across);
                    let part = rows.slice(s![b, ..h, bx * bs..((bx + 1) * bs).min(w)]);
                    let index = (first + b) * size.blocks() + by * size.across + bx;
                    (li + 1, index, encode_plane_block(part, bs, compression))
                })
                .collect(),
            Interleave::Pixel => (0..size.across)
                .into_par_iter()
                .map(|bx| {
                    let part = rows.slice(s![.., ..h, bx * bs..((bx + 1) * bs).min(w)]);
                    let index = by * size.across + bx;
                    (
                        li + 1,
                        index,
                        encode_interleaved_block(part, bs, compression),
                    )
                })
                .collect(),
        };
        out.extend(blocks);
    }
}

/// One output row from two input rows (`b` absent at an odd bottom edge): the mean of the
/// valid pixels of each 2x2 cell, nodata (or 0) where none is valid.
fn average_rows<T: Sample>(
    a: &Array2<T>,
    b: Option<&Array2<T>>,
    out_width: usize,
    in_width: usize,
    nodata: Option<f64>,
) -> Array2<T> {
    let nb = a.dim().0;
    let fill = T::from_f64(nodata.unwrap_or(0.0));
    let is_nodata = |v: f64| match nodata {
        Some(n) if n.is_nan() => v.is_nan(),
        Some(n) => v == n || v.is_nan(),
        None => v.is_nan(),
    };
    let mut out = Array2::from_elem((nb, out_width), fill);
    for band in 0..nb {
        for x in 0..out_width {
            let (mut sum, mut n) = (0.0f64, 0u32);
            for xx in [2 * x, 2 * x + 1] {
                if xx >= in_width {
                    continue;
                }
                for row in [Some(a), b].into_iter().flatten() {
                    let v = row[[band, xx]].to_f64();
                    if !is_nodata(v) {
                        sum += v;
                        n += 1;
                    }
                }
            }
            if n > 0 {
                out[[band, x]] = T::from_f64(sum / n as f64);
            }
        }
    }
    out
}
