//! In which order the tiles of one file (one band group at one image level) are cut, so
//! that what the cut holds stays within an allowance, and what each order costs in bytes.
//!
//! Two plans:
//! - [`Plan::Whole`]: read the union of every tile's window at once, then cut every tile
//!   from it. Fastest; what small scenes use.
//! - [`Plan::Stream`]: cut the tiles in steps, one grid row of a chunk of block columns at a
//!   time. The blocks a step needs are decoded once (in waves of a few blocks) and their
//!   pixels kept as pieces ([`super::pieces`]) until the last tile needing them is cut. A
//!   chunk leaves the next one a fringe: the pieces of its last block column that the next
//!   chunk's first tiles need. Chunk boundaries are chosen (by dynamic programming over
//!   block columns) for the fewest chunks whose held pieces fit, and the peak of a plan is
//!   found by simulating the pieces exactly as the cut keeps them.

use super::pieces::{intersect, PieceGrid};
use crate::cog::{BlockGrid, Window};

/// What one unit of cutting costs, in bytes: the tiles' read windows (at one level), the
/// source's block layout and the sizes of everything the cut allocates.
#[derive(Debug, Clone)]
pub(crate) struct Costs {
    /// Read window of every tile.
    pub windows: Vec<Window>,
    /// Grid row and column of every tile (steps are grid rows).
    pub rows: Vec<i64>,
    /// Grid column of every tile.
    pub cols: Vec<i64>,
    /// Output bytes of every tile (all bands: pixels and validity bits).
    pub tile_out: Vec<u64>,
    /// Bytes a worker holds while cutting a tile, besides its output (the assembled window,
    /// one band's warp output and validity, warp scratch).
    pub tile_work: Vec<u64>,
    /// Block layout of the level read.
    pub data: BlockGrid,
    /// Compressed bytes of every block (row-major), over the planes read.
    pub data_compressed: Vec<u64>,
    /// Bytes one block decodes into.
    pub data_decoded: u64,
    /// Bytes per pixel of the bands kept.
    pub sample_bytes: u64,
    /// The internal mask, when the file has one: its blocks cost these, pixels 1 byte.
    pub mask: Option<MaskCosts>,
    /// Worker threads.
    pub threads: usize,
}

/// Block costs of an internal mask.
#[derive(Debug, Clone)]
pub(crate) struct MaskCosts {
    /// Block layout of the mask level.
    pub grid: BlockGrid,
    /// Compressed bytes of every block (row-major).
    pub compressed: Vec<u64>,
    /// Bytes one block decodes into.
    pub decoded: u64,
}

/// How a unit is cut.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Read the union of the windows once; cut every tile from it.
    Whole {
        /// Most bytes held at once.
        peak: u64,
    },
    /// Cut tile steps in order, keeping decoded pieces between steps.
    Stream {
        /// Tile indices of each step, in order.
        steps: Vec<Vec<usize>>,
        /// Blocks decoded at once.
        wave: usize,
        /// Most bytes held at once.
        peak: u64,
    },
}

impl Plan {
    /// Most bytes the plan holds at once.
    pub fn peak(&self) -> u64 {
        match self {
            Plan::Whole { peak } | Plan::Stream { peak, .. } => *peak,
        }
    }
}

/// Most chunk boundaries considered: wider files place boundaries every few block columns.
const MAX_CHUNK_SLOTS: u32 = 64;

impl Costs {
    fn pieces(&self) -> PieceGrid {
        PieceGrid {
            width: self.data.width,
            height: self.data.height,
        }
    }

    /// The union of all windows.
    fn union(&self) -> Option<Window> {
        let mut it = self.windows.iter();
        let first = *it.next()?;
        Some(it.fold(first, |u, w| {
            let c0 = u.col_off.min(w.col_off);
            let r0 = u.row_off.min(w.row_off);
            let c1 = (u.col_off + u.width).max(w.col_off + w.width);
            let r1 = (u.row_off + u.height).max(w.row_off + w.height);
            Window::new(c0, r0, c1 - c0, r1 - r0)
        }))
    }

    /// Peak of [`Plan::Whole`]: the union window (and its mask), the read's fetched bytes
    /// and in-flight blocks, then every tile's output plus the workers' transients.
    pub fn whole_peak(&self) -> u64 {
        let Some(u) = self.union() else {
            return 0;
        };
        let area = u.width as u64 * u.height as u64;
        let mut held = area * self.sample_bytes;
        let (bc, br) = self.data.blocks_of(&u);
        let compressed: u64 = br
            .clone()
            .flat_map(|by| bc.clone().map(move |bx| (bx, by)))
            .map(|(bx, by)| self.data_compressed[self.block_index(bx, by)])
            .sum();
        // The read decodes a row of blocks per worker at once.
        let rows_at_once = (self.threads as u64).min(br.len() as u64);
        let mut read = compressed + rows_at_once * bc.len() as u64 * self.data_decoded;
        if let Some(m) = &self.mask {
            held += area;
            let (mc, mr) = m.grid.blocks_of(&u);
            let mask_read: u64 = mr
                .clone()
                .flat_map(|by| mc.clone().map(move |bx| (bx, by)))
                .map(|(bx, by)| m.compressed[(by * m.grid.cols() + bx) as usize])
                .sum::<u64>()
                + (self.threads as u64).min(mr.len() as u64) * mc.len() as u64 * m.decoded;
            read = read.max(mask_read);
        }
        held + read.max(self.tile_phase(0..self.windows.len()))
    }

    /// Bytes held while cutting `tiles`: their outputs and the busy workers' transients.
    fn tile_phase(&self, tiles: impl Iterator<Item = usize> + Clone) -> u64 {
        let n = tiles.clone().count() as u64;
        let work = tiles.clone().map(|t| self.tile_work[t]).max().unwrap_or(0);
        let out: u64 = tiles.map(|t| self.tile_out[t]).sum();
        out + work * n.min(self.threads as u64)
    }

    fn block_index(&self, bx: u32, by: u32) -> usize {
        (by * self.data.cols() + bx) as usize
    }

    /// Chunk key of every tile: the chunk slot of the block column holding its window's
    /// last column (a tile straddling two block columns goes with the right one, so the
    /// fringe a chunk leaves is at most a tile wide).
    fn keys(&self, group: u32) -> Vec<u32> {
        self.windows
            .iter()
            .map(|w| (w.col_off + w.width.max(1) - 1) / self.data.block_width / group)
            .collect()
    }

    /// Steps of the tiles whose key is in `keys`: grid rows, north to south, west to east.
    fn steps(&self, key: &[u32], keys: std::ops::Range<u32>) -> Vec<Vec<usize>> {
        let mut tiles: Vec<usize> = (0..self.windows.len())
            .filter(|&t| keys.contains(&key[t]))
            .collect();
        tiles.sort_by_key(|&t| (self.rows[t], self.cols[t]));
        let mut steps: Vec<Vec<usize>> = Vec::new();
        for t in tiles {
            match steps.last_mut() {
                Some(s) if self.rows[s[0]] == self.rows[t] => s.push(t),
                _ => steps.push(vec![t]),
            }
        }
        steps
    }

    /// The plan for `allowance` bytes: the whole read when it fits, else the stream with the
    /// fewest chunks that fits. `Err` carries the smallest peak any plan reaches.
    pub fn choose(&self, allowance: u64) -> Result<Plan, u64> {
        let whole = self.whole_peak();
        if whole <= allowance {
            return Ok(Plan::Whole { peak: whole });
        }
        // Decoding a whole step's new blocks at once balances the workers best (and makes
        // fewer, larger remote reads); a few or one at a time holds less.
        let mut waves = vec![usize::MAX, self.threads.max(1), 1];
        waves.dedup();
        for &wave in &waves {
            if let Some((steps, peak)) = self.stream(allowance, wave, false) {
                return Ok(Plan::Stream { steps, wave, peak });
            }
        }
        Err(self.smallest())
    }

    /// The smallest peak of any plan.
    pub fn smallest(&self) -> u64 {
        let stream = self.stream(0, 1, true).map(|(_, p)| p).unwrap_or(u64::MAX);
        stream.min(self.whole_peak())
    }

    /// Chunked streaming: with `minimax`, the plan of least peak (allowance ignored); else
    /// the plan of fewest chunks within `allowance`, if any.
    fn stream(&self, allowance: u64, wave: usize, minimax: bool) -> Option<(Vec<Vec<usize>>, u64)> {
        let slots_wide = self.data.cols();
        let group = slots_wide.div_ceil(MAX_CHUNK_SLOTS).max(1);
        let n = slots_wide.div_ceil(group);
        let key = self.keys(group);
        // best[b]: (chunks, peak, start of the last chunk) of the best plan of slots [0, b).
        let mut best: Vec<Option<(u32, u64, u32)>> = vec![None; n as usize + 1];
        best[0] = Some((0, 0, 0));
        for a in 0..n {
            let Some((chunks, peak_a, _)) = best[a as usize] else {
                continue;
            };
            let start = Sim::start(self, |t| key[t] < a);
            let mut over = 0;
            for b in a + 1..=n {
                let mut sim = start.clone();
                let mut local = sim.held;
                for step in self.steps(&key, a..b) {
                    local = local.max(sim.step(self, &step, wave));
                }
                let peak = peak_a.max(local);
                let candidate = (chunks + 1, peak, a);
                let better = match best[b as usize] {
                    None => true,
                    Some((c, p, _)) if minimax => (peak, chunks + 1) < (p, c),
                    Some((c, p, _)) => (chunks + 1, peak) < (c, p),
                };
                if (minimax || local <= allowance) && better {
                    best[b as usize] = Some(candidate);
                }
                // Wider chunks only hold more; stop after two in a row over the allowance
                // (minimax: over twice the narrowest).
                let limit = if minimax {
                    best[(a + 1) as usize].map_or(u64::MAX, |x| x.1.saturating_mul(2))
                } else {
                    allowance
                };
                if local > limit {
                    over += 1;
                    if over >= 2 {
                        break;
                    }
                } else {
                    over = 0;
                }
            }
        }
        let (_, peak, _) = best[n as usize]?;
        let mut bounds = vec![n];
        let mut b = n;
        while b > 0 {
            let (_, _, a) = best[b as usize]?;
            bounds.push(a);
            b = a;
        }
        bounds.reverse();
        let steps = bounds
            .windows(2)
            .flat_map(|ab| self.steps(&key, ab[0]..ab[1]))
            .collect();
        Some((steps, peak))
    }
}

/// The pieces a stream holds, simulated without pixels: what [`super::pieces::Pieces`]
/// allocates and frees, step by step.
#[derive(Clone)]
struct Sim {
    pieces: PieceGrid,
    /// Tiles still to cut meeting each piece.
    needed: Vec<u32>,
    live: Vec<bool>,
    mask_live: Vec<bool>,
    decoded: Vec<bool>,
    mask_decoded: Vec<bool>,
    held: u64,
}

impl Sim {
    /// The state once the tiles for which `done` holds are cut.
    fn start(c: &Costs, done: impl Fn(usize) -> bool) -> Sim {
        let pieces = c.pieces();
        let mut needed = vec![0u32; pieces.len()];
        let mut decoded = vec![false; (c.data.cols() * c.data.rows()) as usize];
        let mut mask_decoded = c
            .mask
            .as_ref()
            .map(|m| vec![false; (m.grid.cols() * m.grid.rows()) as usize])
            .unwrap_or_default();
        for (t, w) in c.windows.iter().enumerate() {
            if done(t) {
                for_blocks(&c.data, w, |bx, by| decoded[c.block_index(bx, by)] = true);
                if let Some(m) = &c.mask {
                    for_blocks(&m.grid, w, |bx, by| {
                        mask_decoded[(by * m.grid.cols() + bx) as usize] = true
                    });
                }
            } else {
                for i in pieces.indices_of(w) {
                    needed[i] += 1;
                }
            }
        }
        let mut sim = Sim {
            pieces,
            needed,
            live: vec![false; pieces.len()],
            mask_live: vec![false; if c.mask.is_some() { pieces.len() } else { 0 }],
            decoded,
            mask_decoded,
            held: 0,
        };
        for by in 0..c.data.rows() {
            for bx in 0..c.data.cols() {
                if sim.decoded[c.block_index(bx, by)] {
                    sim.fill(c, &c.data.block_window(bx, by), false);
                }
            }
        }
        if let Some(m) = &c.mask {
            for by in 0..m.grid.rows() {
                for bx in 0..m.grid.cols() {
                    if sim.mask_decoded[(by * m.grid.cols() + bx) as usize] {
                        sim.fill(c, &m.grid.block_window(bx, by), true);
                    }
                }
            }
        }
        sim
    }

    fn piece_bytes(&self, c: &Costs, i: usize, mask: bool) -> u64 {
        self.pieces.area(i) * if mask { 1 } else { c.sample_bytes }
    }

    /// A decoded block fills the pieces it meets that a tile still needs.
    fn fill(&mut self, c: &Costs, block: &Window, mask: bool) {
        let indices: Vec<usize> = self.pieces.indices_of(block).collect();
        for i in indices {
            let live = if mask {
                &mut self.mask_live[i]
            } else {
                &mut self.live[i]
            };
            if self.needed[i] > 0 && !*live {
                *live = true;
                self.held += self.piece_bytes(c, i, mask);
            }
        }
    }

    /// Cuts `tiles` (decoding the blocks they need first, `wave` blocks at a time) and
    /// returns the most bytes held meanwhile.
    fn step(&mut self, c: &Costs, tiles: &[usize], wave: usize) -> u64 {
        let mut new_blocks = Vec::new();
        let mut new_mask = Vec::new();
        for &t in tiles {
            let w = c.windows[t];
            for_blocks(&c.data, &w, |bx, by| {
                let i = c.block_index(bx, by);
                if !self.decoded[i] {
                    self.decoded[i] = true;
                    new_blocks.push((bx, by));
                }
            });
            if let Some(m) = &c.mask {
                for_blocks(&m.grid, &w, |bx, by| {
                    let i = (by * m.grid.cols() + bx) as usize;
                    if !self.mask_decoded[i] {
                        self.mask_decoded[i] = true;
                        new_mask.push((bx, by));
                    }
                });
            }
        }
        let mut decode = 0u64;
        for chunk in new_blocks.chunks(wave.max(1)) {
            let bytes: u64 = chunk
                .iter()
                .map(|&(bx, by)| c.data_compressed[c.block_index(bx, by)] + c.data_decoded)
                .sum();
            decode = decode.max(bytes);
        }
        for &(bx, by) in &new_blocks {
            self.fill(c, &c.data.block_window(bx, by), false);
        }
        if let Some(m) = &c.mask {
            for chunk in new_mask.chunks(wave.max(1)) {
                let bytes: u64 = chunk
                    .iter()
                    .map(|&(bx, by)| m.compressed[(by * m.grid.cols() + bx) as usize] + m.decoded)
                    .sum();
                decode = decode.max(bytes);
            }
            for &(bx, by) in &new_mask {
                self.fill(c, &m.grid.block_window(bx, by), true);
            }
        }
        let peak = self.held + decode.max(c.tile_phase(tiles.iter().copied()));
        for &t in tiles {
            let indices: Vec<usize> = self.pieces.indices_of(&c.windows[t]).collect();
            for i in indices {
                self.needed[i] = self.needed[i].saturating_sub(1);
                if self.needed[i] == 0 {
                    if std::mem::take(&mut self.live[i]) {
                        self.held -= self.piece_bytes(c, i, false);
                    }
                    if c.mask.is_some() && std::mem::take(&mut self.mask_live[i]) {
                        self.held -= self.piece_bytes(c, i, true);
                    }
                }
            }
        }
        peak
    }
}

/// Calls `f` for every block of `grid` that window `w` meets.
fn for_blocks(grid: &BlockGrid, w: &Window, mut f: impl FnMut(u32, u32)) {
    let (cols, rows) = grid.blocks_of(w);
    for by in rows {
        for bx in cols.clone() {
            if intersect(&grid.block_window(bx, by), w).is_some() {
                f(bx, by);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    /// Tiles of `tile` px (read with a 1-px margin) over a `size`-px scene in `block`-px
    /// blocks of 4 u16 bands, the grid starting `phase` px before the scene.
    fn scene(size: u32, block: u32, tile: u32, phase: u32, threads: usize) -> Costs {
        let grid = BlockGrid {
            width: size,
            height: size,
            block_width: block,
            block_height: block,
        };
        let mut c = Costs {
            windows: vec![],
            rows: vec![],
            cols: vec![],
            tile_out: vec![],
            tile_work: vec![],
            data: grid,
            data_compressed: vec![
                block as u64 * block as u64 * 8 / 4;
                (grid.cols() * grid.rows()) as usize
            ],
            data_decoded: block as u64 * block as u64 * 8,
            sample_bytes: 8,
            mask: None,
            threads,
        };
        let n = (size + phase).div_ceil(tile) as i64;
        for row in 0..n {
            for col in 0..n {
                let c0 = (col * tile as i64 - phase as i64 - 1).max(0) as u32;
                let r0 = (row * tile as i64 - phase as i64 - 1).max(0) as u32;
                let c1 = ((col + 1) * tile as i64 - phase as i64 + 1).min(size as i64) as u32;
                let r1 = ((row + 1) * tile as i64 - phase as i64 + 1).min(size as i64) as u32;
                c.windows.push(Window::new(c0, r0, c1 - c0, r1 - r0));
                c.rows.push(row);
                c.cols.push(col);
                let out = tile as u64 * tile as u64 * 4 * 2 + tile as u64 * tile as u64 / 2;
                c.tile_out.push(out);
                c.tile_work
                    .push((c1 - c0) as u64 * (r1 - r0) as u64 * 8 + out);
            }
        }
        c
    }

    #[test]
    fn small_scenes_are_read_whole() {
        let c = scene(1024, 256, 384, 60, 2);
        let plan = c.choose(256 * MB).unwrap();
        assert!(matches!(plan, Plan::Whole { .. }), "{plan:?}");
        assert!(
            plan.peak() > 8 * MB && plan.peak() < 40 * MB,
            "{}",
            plan.peak()
        );
    }

    #[test]
    fn full_size_scenes_stream_within_small_allowances() {
        let c = scene(10980, 1024, 384, 60, 2);
        assert!(c.whole_peak() > 1900 * MB, "{}", c.whole_peak() / MB);
        let smallest = c.smallest();
        eprintln!(
            "smallest peak of the full-size scene: {:.1} MiB",
            smallest as f64 / MB as f64
        );
        assert!(smallest < 56 * MB, "smallest {} MB", smallest / MB);
        for allowance in [smallest, 100 * MB, 200 * MB, 900 * MB] {
            let plan = c.choose(allowance).unwrap();
            let Plan::Stream { steps, peak, .. } = &plan else {
                panic!("{plan:?}")
            };
            assert!(*peak <= allowance);
            eprintln!(
                "allowance {} MiB: {} steps, peak {:.1} MiB",
                allowance / MB,
                steps.len(),
                *peak as f64 / MB as f64
            );
            // Every tile once.
            let mut all: Vec<usize> = steps.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..c.windows.len()).collect::<Vec<_>>());
        }
        // A roomy allowance streams the scene a whole grid row at a time.
        let Plan::Stream { steps, .. } = c.choose(900 * MB).unwrap() else {
            unreachable!()
        };
        assert_eq!(steps.len(), 29);
        assert_eq!(c.choose(smallest - 1), Err(smallest));
    }

    #[test]
    fn the_simulated_peak_follows_the_pieces() {
        // One 512-px block under four rows of 128-px tiles: the block is decoded for the
        // first row, and each later row is cut from pieces kept since; a piece row is freed
        // once the last tile row reading it is cut.
        let c = scene(512, 512, 128, 0, 1);
        let key = c.keys(1);
        let steps = c.steps(&key, 0..1);
        assert_eq!(steps.len(), 4);
        let full = 512 * 512 * 8;
        let mut sim = Sim::start(&c, |_| false);
        assert_eq!(sim.held, 0);
        let first = sim.step(&c, &steps[0], 1);
        assert!(first >= 2 * full, "{first}");
        assert_eq!(sim.held, full);
        let second = sim.step(&c, &steps[1], 1);
        assert!(second < first, "{second} {first}");
        assert_eq!(sim.held, full / 4 * 3);
        sim.step(&c, &steps[2], 1);
        assert_eq!(sim.held, full / 4 * 2);
        sim.step(&c, &steps[3], 1);
        assert_eq!(sim.held, 0);
        // The state after the first two rows, found directly, is the same.
        let done: Vec<usize> = steps[..2].concat();
        assert_eq!(Sim::start(&c, |t| done.contains(&t)).held, full / 4 * 3);
    }
}
