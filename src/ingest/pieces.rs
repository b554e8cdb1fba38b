//! Decoded source pixels kept between the grid rows that share them.
//!
//! A source block usually serves tiles of several grid rows (a 1024-px block spans almost
//! three rows of 384-px tiles). To decode it once without holding whole blocks, its pixels
//! are kept as small square pieces on a fixed lattice over the image; every piece counts
//! the tiles still to cut whose read window meets it and is freed when that count reaches
//! zero. Only pieces some remaining tile needs are ever filled.

use crate::cog::{DecodedBlock, Window};
use bytemuck::Pod;
use rayon::prelude::*;
use std::ops::Range;

/// Side of a piece in pixels.
pub(crate) const PIECE: u32 = 128;

/// The piece lattice over one image level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PieceGrid {
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
}

impl PieceGrid {
    pub fn cols(&self) -> u32 {
        self.width.div_ceil(PIECE)
    }

    pub fn rows(&self) -> u32 {
        self.height.div_ceil(PIECE)
    }

    pub fn len(&self) -> usize {
        self.cols() as usize * self.rows() as usize
    }

    pub fn index(&self, px: u32, py: u32) -> usize {
        py as usize * self.cols() as usize + px as usize
    }

    /// The pixels of piece (`px`, `py`), clipped to the image.
    pub fn window(&self, px: u32, py: u32) -> Window {
        let (c0, r0) = (px * PIECE, py * PIECE);
        Window::new(
            c0,
            r0,
            PIECE.min(self.width - c0),
            PIECE.min(self.height - r0),
        )
    }

    /// Pixels of piece `index`.
    pub fn area(&self, index: usize) -> u64 {
        let cols = self.cols() as usize;
        let w = self.window((index % cols) as u32, (index / cols) as u32);
        w.width as u64 * w.height as u64
    }

    /// The piece columns and rows a window (inside the image) meets.
    pub fn pieces_of(&self, w: &Window) -> (Range<u32>, Range<u32>) {
        if w.width == 0 || w.height == 0 {
            return (0..0, 0..0);
        }
        (
            w.col_off / PIECE..(w.col_off + w.width - 1) / PIECE + 1,
            w.row_off / PIECE..(w.row_off + w.height - 1) / PIECE + 1,
        )
    }

    /// Indices of the pieces a window meets.
    pub fn indices_of(&self, w: &Window) -> impl Iterator<Item = usize> + '_ {
        let (cols, rows) = self.pieces_of(w);
        rows.flat_map(move |py| cols.clone().map(move |px| self.index(px, py)))
    }
}

/// The part of `a` inside `b`, if any.
pub(crate) fn intersect(a: &Window, b: &Window) -> Option<Window> {
    let c0 = a.col_off.max(b.col_off);
    let r0 = a.row_off.max(b.row_off);
    let c1 = (a.col_off as u64 + a.width as u64).min(b.col_off as u64 + b.width as u64);
    let r1 = (a.row_off as u64 + a.height as u64).min(b.row_off as u64 + b.height as u64);
    (c1 > c0 as u64 && r1 > r0 as u64)
        .then(|| Window::new(c0, r0, (c1 - c0 as u64) as u32, (r1 - r0 as u64) as u32))
}

/// Decoded pixels of the requested bands, piece by piece (band-sequential inside a piece).
pub(crate) struct Pieces<T> {
    grid: PieceGrid,
    bands: usize,
    fill: T,
    slots: Vec<Option<Box<[T]>>>,
    /// Tiles still to cut whose window meets each piece.
    needed: Vec<u32>,
    held: u64,
}

impl<T: Pod + Send + Sync> Pieces<T> {
    /// An empty store for the read windows of every tile still to cut.
    pub fn new(grid: PieceGrid, bands: usize, fill: T, windows: &[Window]) -> Self {
        let mut needed = vec![0u32; grid.len()];
        for w in windows {
            for i in grid.indices_of(w) {
                needed[i] += 1;
            }
        }
        Pieces {
            grid,
            bands,
            fill,
            slots: (0..grid.len()).map(|_| None).collect(),
            needed,
            held: 0,
        }
    }

    /// Bytes of pixels held.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    fn piece_bytes(&self, index: usize) -> u64 {
        self.grid.area(index) * self.bands as u64 * std::mem::size_of::<T>() as u64
    }

    /// Copies decoded blocks into every piece they cover that a tile still to cut needs.
    pub fn fill_from(&mut self, blocks: &[DecodedBlock<T>]) {
        let mut wanted = vec![false; self.grid.len()];
        for b in blocks {
            for i in self.grid.indices_of(&b.window()) {
                if self.needed[i] > 0 {
                    wanted[i] = true;
                }
            }
        }
        for (i, &w) in wanted.iter().enumerate() {
            if w && self.slots[i].is_none() {
                let n = self.grid.area(i) as usize * self.bands;
                self.slots[i] = Some(vec![self.fill; n].into_boxed_slice());
                self.held += self.piece_bytes(i);
            }
        }
        let grid = self.grid;
        let cols = grid.cols() as usize;
        let targets: Vec<(usize, &mut Box<[T]>)> = self
            .slots
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| wanted[*i])
            .filter_map(|(i, s)| s.as_mut().map(|s| (i, s)))
            .collect();
        targets.into_par_iter().for_each(|(i, piece)| {
            let pw = grid.window((i % cols) as u32, (i / cols) as u32);
            let band_stride = pw.width as usize * pw.height as usize;
            for b in blocks {
                if let Some(part) = intersect(&pw, &b.window()) {
                    let at = (part.row_off - pw.row_off) as usize * pw.width as usize
                        + (part.col_off - pw.col_off) as usize;
                    b.copy_into(part, &mut piece[at..], band_stride, pw.width as usize);
                }
            }
        });
    }

    /// Copies window `w` of every band out of the pieces into `out` (band-sequential,
    /// `bands x w.height x w.width`). Every piece it meets must have been filled.
    pub fn assemble(&self, w: &Window, out: &mut [T]) {
        let (ww, wh) = (w.width as usize, w.height as usize);
        let cols = self.grid.cols() as usize;
        for i in self.grid.indices_of(w) {
            let pw = self.grid.window((i % cols) as u32, (i / cols) as u32);
            let Some(part) = intersect(&pw, w) else {
                continue;
            };
            let piece_stride = pw.width as usize * pw.height as usize;
            let (n, rows) = (part.width as usize, part.height as usize);
            let src_c = (part.col_off - pw.col_off) as usize;
            let src_r = (part.row_off - pw.row_off) as usize;
            let dst_c = (part.col_off - w.col_off) as usize;
            let dst_r = (part.row_off - w.row_off) as usize;
            for k in 0..self.bands {
                for r in 0..rows {
                    let d = k * ww * wh + (dst_r + r) * ww + dst_c;
                    match &self.slots[i] {
                        Some(piece) => {
                            let s = k * piece_stride + (src_r + r) * pw.width as usize + src_c;
                            out[d..d + n].copy_from_slice(&piece[s..s + n]);
                        }
                        None => {
                            debug_assert!(false, "piece {i} read before it was filled");
                            out[d..d + n].fill(self.fill);
                        }
                    }
                }
            }
        }
    }

    /// A tile whose read window was `w` has been cut: pieces no other tile needs are freed.
    pub fn release(&mut self, w: &Window) {
        let indices: Vec<usize> = self.grid.indices_of(w).collect();
        for i in indices {
            self.needed[i] = self.needed[i].saturating_sub(1);
            if self.needed[i] == 0 && self.slots[i].take().is_some() {
                self.held -= self.piece_bytes(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cog::{write_cog, Cog, WriteOptions};
    use ndarray::Array3;

    #[test]
    fn lattice_geometry() {
        let g = PieceGrid {
            width: 300,
            height: 130,
        };
        assert_eq!((g.cols(), g.rows(), g.len()), (3, 2, 6));
        assert_eq!(g.window(2, 1), Window::new(256, 128, 44, 2));
        assert_eq!(g.area(5), 88);
        assert_eq!(g.pieces_of(&Window::new(127, 0, 2, 129)), (0..2, 0..2));
        assert_eq!(
            g.indices_of(&Window::new(200, 100, 100, 30))
                .collect::<Vec<_>>(),
            [1, 2, 4, 5]
        );
        assert_eq!(
            intersect(&Window::new(0, 0, 10, 10), &Window::new(5, 8, 10, 10)),
            Some(Window::new(5, 8, 5, 2))
        );
        assert_eq!(
            intersect(&Window::new(0, 0, 10, 10), &Window::new(10, 0, 5, 5)),
            None
        );
    }

    #[test]
    fn pieces_serve_windows_and_are_freed_after_their_last_tile() {
        let dir = tempfile::tempdir().unwrap();
        let data = Array3::from_shape_fn((2, 300, 400), |(b, y, x)| (b * 7 + y * 400 + x) as u32);
        let path = dir.path().join("s.tif");
        let options = WriteOptions {
            block_size: 96,
            ..Default::default()
        };
        write_cog(&path, data.view(), &options).unwrap();
        let cog = Cog::open(&path).unwrap();
        let grid = PieceGrid {
            width: 400,
            height: 300,
        };
        let windows = [
            Window::new(10, 20, 150, 100),
            Window::new(140, 110, 200, 150),
        ];
        let mut pieces = Pieces::<u32>::new(grid, 2, 0, &windows);
        // Decode only the blocks the first window needs, then cut it.
        let blocks = cog.block_grid(0).unwrap();
        let (bc, br) = blocks.blocks_of(&windows[0]);
        let list: Vec<(u32, u32)> = br
            .flat_map(|by| bc.clone().map(move |bx| (bx, by)))
            .collect();
        let decoded = cog.read_blocks::<u32>(0, &list, &[1, 0]).unwrap();
        pieces.fill_from(&decoded);
        let mut out = vec![0u32; 2 * 150 * 100];
        pieces.assemble(&windows[0], &mut out);
        assert_eq!(out[0], data[[1, 20, 10]]);
        assert_eq!(out[150 * 100 + 99 * 150 + 149], data[[0, 119, 159]]);
        let before = pieces.held_bytes();
        assert!(before > 0);
        pieces.release(&windows[0]);
        // What the second window shares with the first stays; the rest is freed.
        let kept = pieces.held_bytes();
        assert!(kept > 0 && kept < before, "{kept} {before}");
        let (bc, br) = blocks.blocks_of(&windows[1]);
        let rest: Vec<(u32, u32)> = br
            .flat_map(|by| bc.clone().map(move |bx| (bx, by)))
            .filter(|b| !list.contains(b))
            .collect();
        pieces.fill_from(&cog.read_blocks::<u32>(0, &rest, &[1, 0]).unwrap());
        let mut out = vec![0u32; 2 * 200 * 150];
        pieces.assemble(&windows[1], &mut out);
        for (k, band) in [1usize, 0].into_iter().enumerate() {
            for y in 0..150 {
                for x in 0..200 {
                    assert_eq!(out[k * 30000 + y * 200 + x], data[[band, 110 + y, 140 + x]]);
                }
            }
        }
        pieces.release(&windows[1]);
        assert_eq!(pieces.held_bytes(), 0);
    }
}
