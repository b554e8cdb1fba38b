//! Cutting one file of a scene into grid tiles.
//!
//! A file's bands are grouped by resolution and kernel; each group at one image level is a
//! [`Unit`]: its tiles, the source window each tile reads (with the kernel's margin) and
//! what cutting them costs. A unit is cut by the [`Plan`] chosen for the memory it may
//! hold: small files are read whole (the union of the windows, each block decoded once);
//! large ones stream through the grid a row of tiles at a time, decoding each block once and
//! keeping its pixels as pieces only until the last tile needing them is cut. Tiles go to a
//! sink after every step, so the caller can write them out before the next step.

use super::pieces::{PieceGrid, Pieces};
use super::scene::{BandTarget, SceneFile};
use super::schedule::{Costs, MaskCosts, Plan};
use crate::cog::{Cog, Window};
use crate::crs::Crs;
use crate::grid::GridSpec;
use crate::store::{pack_mask, PixelBuffer};
use crate::warp::{
    self, plan_read, ReadPlan, Resampling, SceneLayout, SourceRaster, TargetGrid, WarpOptions,
};
use crate::{DataType, GeoTransform, Sample, TileId};
use arrow_buffer::BooleanBuffer;
use bytemuck::Pod;
use ndarray::{s, Array2, Array3, ArrayView2, ArrayView3};
use rayon::prelude::*;

/// Errors from cutting a file into tiles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the file failed.
    #[error(transparent)]
    Cog(#[from] crate::cog::Error),
    /// The grid or CRS rejected the scene.
    #[error("{file}: {source}")]
    Grid {
        /// The file.
        file: String,
        /// What the grid said.
        #[source]
        source: crate::grid::Error,
    },
    /// The CRS is unknown.
    #[error("{file}: {source}")]
    Crs {
        /// The file.
        file: String,
        /// What the CRS module said.
        #[source]
        source: crate::crs::Error,
    },
    /// Planning or warping failed.
    #[error("{file}: {source}")]
    Warp {
        /// The file.
        file: String,
        /// What the warper said.
        #[source]
        source: warp::Error,
    },
    /// The sink that receives the tiles failed (e.g. writing fragments).
    #[error("{0}")]
    Sink(String),
}

/// Where a band's pixels sit on a tile and how to read their values.
#[derive(Debug, Clone, PartialEq)]
pub struct TileLayout {
    /// Geotransform of the tile at the band's resolution.
    pub transform: GeoTransform,
    /// Tile side in pixels.
    pub size: u32,
    /// Resolution in grid units.
    pub resolution: f64,
    /// Nodata value of the band.
    pub nodata: Option<f64>,
    /// Scale to physical values.
    pub scale: f64,
    /// Offset to physical values.
    pub offset: f64,
}

/// One band of one scene on one grid tile.
#[derive(Debug, Clone)]
pub struct TileCut {
    /// The tile.
    pub tile: TileId,
    /// Warehouse band name.
    pub band: String,
    /// Placement and value encoding.
    pub layout: TileLayout,
    /// Pixels, row-major.
    pub pixels: PixelBuffer,
    /// Validity bits; `None` when every pixel is valid.
    pub valid: Option<BooleanBuffer>,
}

impl TileCut {
    /// Bytes of pixels and validity it holds.
    pub fn heap_bytes(&self) -> u64 {
        (self.pixels.as_bytes().len() + self.valid.as_ref().map_or(0, |v| v.len() / 8)) as u64
    }
}

/// How files are cut.
#[derive(Debug, Clone, Copy)]
pub struct CutOptions {
    /// Kernel for continuous bands (quality bands always use nearest).
    pub resampling: Resampling,
    /// Worker threads the cut runs on (for its memory estimates).
    pub threads: usize,
}

/// Bytes of warp scratch per band besides its output (tap tables, row buffers).
const WARP_SCRATCH: u64 = 64 << 10;

/// Resolution of a band snapped so that a tile holds a whole number of pixels.
fn snapped_resolution(grid: &GridSpec, wanted: f64) -> f64 {
    let n = (grid.tile_size / wanted).round().max(1.0);
    grid.tile_size / n
}

/// Bands of one file sharing a resolution and a kernel, read from one image level: the
/// tiles they cover and what cutting them costs.
pub struct Unit<'a> {
    file: &'a SceneFile,
    scene_crs: Crs,
    resolution: f64,
    kernel: Resampling,
    /// Indices into `file.bands`.
    members: Vec<usize>,
    /// Band indices in the file.
    band_indices: Vec<usize>,
    level: usize,
    tiles: Vec<(TileId, TargetGrid, ReadPlan)>,
    costs: Costs,
}

/// Plans every unit of `file`: which tiles of `grid` its bands cover and what each tile
/// reads. A file without georeferencing has no units.
pub fn plan_file<'a>(
    file: &'a SceneFile,
    grid: &GridSpec,
    grid_crs: &Crs,
    options: &CutOptions,
) -> Result<Vec<Unit<'a>>, Error> {
    let meta = file.cog.meta();
    let name = meta.name.clone();
    let scene_crs = Crs::from_epsg(file.epsg).map_err(|source| Error::Crs {
        file: name.clone(),
        source,
    })?;
    let Some(transform) = meta.transform() else {
        return Ok(Vec::new());
    };
    let bounds = transform.bounds(meta.width() as u64, meta.height() as u64);
    let tiles = grid
        .tiles_covering(&bounds, &scene_crs)
        .map_err(|source| Error::Grid {
            file: name.clone(),
            source,
        })?;
    let mut groups: Vec<(f64, Resampling, Vec<usize>)> = Vec::new();
    for (i, b) in file.bands.iter().enumerate() {
        let res = snapped_resolution(grid, b.profile.resolution);
        let kernel = if b.profile.role == crate::profile::BandRole::Quality {
            Resampling::Nearest
        } else {
            options.resampling
        };
        match groups.iter_mut().find(|g| g.0 == res && g.1 == kernel) {
            Some(g) => g.2.push(i),
            None => groups.push((res, kernel, vec![i])),
        }
    }
    let overviews: Vec<(u32, u32)> = meta.levels[1..]
        .iter()
        .map(|l| (l.width, l.height))
        .collect();
    let layout = SceneLayout {
        width: meta.width(),
        height: meta.height(),
        transform,
        crs: &scene_crs,
        overviews: &overviews,
    };
    let warp_err = |source| Error::Warp {
        file: name.clone(),
        source,
    };
    let mut units = Vec::new();
    for (resolution, kernel, members) in groups {
        let mut planned: Vec<(TileId, TargetGrid, ReadPlan)> = Vec::new();
        for &tile in &tiles {
            let (transform, size) =
                grid.tile_geotransform(tile, resolution)
                    .map_err(|source| Error::Grid {
                        file: name.clone(),
                        source,
                    })?;
            let target = TargetGrid::new(transform, size as usize, size as usize, grid_crs.clone());
            if let Some(plan) = plan_read(&layout, &target, kernel).map_err(warp_err)? {
                planned.push((tile, target, plan));
            }
        }
        let band_indices: Vec<usize> = members.iter().map(|&i| file.bands[i].index).collect();
        let mut levels: Vec<usize> = planned.iter().map(|p| p.2.level).collect();
        levels.sort_unstable();
        levels.dedup();
        for level in levels {
            let tiles: Vec<_> = planned
                .iter()
                .filter(|p| p.2.level == level)
                .cloned()
                .collect();
            let costs = unit_costs(&file.cog, level, &band_indices, &tiles, options.threads)?;
            units.push(Unit {
                file,
                scene_crs: scene_crs.clone(),
                resolution,
                kernel,
                members: members.clone(),
                band_indices: band_indices.clone(),
                level,
                tiles,
                costs,
            });
        }
    }
    Ok(units)
}

/// What cutting `tiles` from `level` costs, in bytes.
fn unit_costs(
    cog: &Cog,
    level: usize,
    bands: &[usize],
    tiles: &[(TileId, TargetGrid, ReadPlan)],
    threads: usize,
) -> Result<Costs, Error> {
    let meta = cog.meta();
    let size = meta.dtype().size() as u64;
    let data = cog.block_grid(level)?;
    let data_compressed = (0..data.rows())
        .flat_map(|by| (0..data.cols()).map(move |bx| (bx, by)))
        .map(|(bx, by)| cog.block_compressed_bytes(level, bx, by, bands))
        .collect();
    let mask = cog.mask_block_grid(level)?.map(|grid| MaskCosts {
        grid,
        compressed: (0..grid.rows())
            .flat_map(|by| (0..grid.cols()).map(move |bx| (bx, by)))
            .map(|(bx, by)| cog.mask_block_compressed_bytes(level, bx, by))
            .collect(),
        decoded: cog.mask_block_decoded_bytes(level),
    });
    let sample_bytes = size * bands.len() as u64;
    let mut costs = Costs {
        windows: tiles.iter().map(|t| t.2.window).collect(),
        rows: tiles.iter().map(|t| t.0.row).collect(),
        cols: tiles.iter().map(|t| t.0.col).collect(),
        tile_out: Vec::with_capacity(tiles.len()),
        tile_work: Vec::with_capacity(tiles.len()),
        data,
        data_compressed,
        data_decoded: cog.block_decoded_bytes(level, bands),
        sample_bytes,
        mask,
        threads: threads.max(1),
    };
    for (_, target, plan) in tiles {
        let px = target.width as u64 * target.height as u64;
        let area = plan.window.width as u64 * plan.window.height as u64;
        let band_out = px * size + px.div_ceil(8);
        costs.tile_out.push(band_out * bands.len() as u64);
        // The assembled window (all bands and the mask), one band's warp output with its
        // byte-per-pixel validity, and scratch.
        let mask_area = if costs.mask.is_some() { area } else { 0 };
        costs
            .tile_work
            .push(area * sample_bytes + mask_area + px * (size + 1) + WARP_SCRATCH);
    }
    Ok(costs)
}

impl Unit<'_> {
    /// Bytes of every tile this unit can produce.
    pub fn output_bytes(&self) -> u64 {
        self.costs.tile_out.iter().sum()
    }

    /// Bytes the fastest plan (reading the union of the windows at once) holds.
    pub fn whole_peak(&self) -> u64 {
        self.costs.whole_peak()
    }

    /// The least memory any plan of this unit needs.
    pub fn smallest(&self) -> u64 {
        self.costs.smallest()
    }

    /// The fastest plan within `allowance` bytes; `Err` carries the least memory any plan
    /// needs.
    pub fn choose(&self, allowance: u64) -> Result<Plan, u64> {
        self.costs.choose(allowance)
    }

    /// Number of tiles the unit covers.
    pub fn tile_count(&self) -> usize {
        self.tiles.len()
    }

    /// Cuts the unit by `plan`, handing the non-empty (tile, band) cuts of each step to
    /// `sink` (with whether more steps follow) before the next step starts. Returns the
    /// number of cuts.
    pub fn cut(
        &self,
        plan: &Plan,
        sink: &mut dyn FnMut(Vec<TileCut>, bool) -> Result<(), String>,
    ) -> Result<usize, Error> {
        match self.file.cog.meta().dtype() {
            DataType::U8 => self.cut_typed::<u8>(plan, sink),
            DataType::I8 => self.cut_typed::<i8>(plan, sink),
            DataType::U16 => self.cut_typed::<u16>(plan, sink),
            DataType::I16 => self.cut_typed::<i16>(plan, sink),
            DataType::U32 => self.cut_typed::<u32>(plan, sink),
            DataType::I32 => self.cut_typed::<i32>(plan, sink),
            DataType::F32 => self.cut_typed::<f32>(plan, sink),
            DataType::F64 => self.cut_typed::<f64>(plan, sink),
        }
    }

    fn name(&self) -> String {
        self.file.cog.meta().name.clone()
    }

    fn cut_typed<T: Sample + Pod>(
        &self,
        plan: &Plan,
        sink: &mut dyn FnMut(Vec<TileCut>, bool) -> Result<(), String>,
    ) -> Result<usize, Error>
    where
        PixelBuffer: From<Vec<T>>,
    {
        match plan {
            Plan::Whole { .. } => {
                let cuts = self.cut_whole::<T>()?;
                let n = cuts.len();
                sink(cuts, false).map_err(Error::Sink)?;
                Ok(n)
            }
            Plan::Stream { steps, wave, peak } => self.cut_stream::<T>(steps, *wave, *peak, sink),
        }
    }

    /// Reads the union of the windows once and cuts every tile from it.
    fn cut_whole<T: Sample + Pod>(&self) -> Result<Vec<TileCut>, Error>
    where
        PixelBuffer: From<Vec<T>>,
    {
        let Some(win) = union(self.tiles.iter().map(|t| t.2.window)) else {
            return Ok(Vec::new());
        };
        let cog = &self.file.cog;
        let data: Array3<T> = cog.read_window(self.level, win, &self.band_indices)?;
        let mask: Option<Array2<u8>> = cog.read_mask(self.level, win)?;
        let per_tile: Vec<Vec<TileCut>> = self
            .tiles
            .par_iter()
            .map(|(tile, target, plan)| {
                let (c0, r0) = (
                    (plan.window.col_off - win.col_off) as usize,
                    (plan.window.row_off - win.row_off) as usize,
                );
                let (w, h) = (plan.window.width as usize, plan.window.height as usize);
                let view = data.slice(s![.., r0..r0 + h, c0..c0 + w]);
                let mask = mask.as_ref().map(|m| m.slice(s![r0..r0 + h, c0..c0 + w]));
                self.cut_tile(*tile, target, plan, view, mask)
            })
            .collect::<Result<_, Error>>()?;
        Ok(per_tile.into_iter().flatten().collect())
    }

    /// Cuts the tiles step by step, keeping decoded pixels as pieces between steps.
    fn cut_stream<T: Sample + Pod>(
        &self,
        steps: &[Vec<usize>],
        wave: usize,
        peak: u64,
        sink: &mut dyn FnMut(Vec<TileCut>, bool) -> Result<(), String>,
    ) -> Result<usize, Error>
    where
        PixelBuffer: From<Vec<T>>,
    {
        let cog = &self.file.cog;
        let nodata = self.file.nodata;
        let fill = nodata
            .map(T::from_f64)
            .filter(|v| v.to_f64() == nodata.unwrap_or(0.0))
            .unwrap_or_default();
        let windows = &self.costs.windows;
        let lattice = PieceGrid {
            width: self.costs.data.width,
            height: self.costs.data.height,
        };
        let mut pieces = Pieces::<T>::new(lattice, self.band_indices.len(), fill, windows);
        let mask_grid = self.costs.mask.as_ref().map(|m| m.grid);
        let mut mask_pieces = mask_grid.map(|_| Pieces::<u8>::new(lattice, 1, 255, windows));
        let data_grid = self.costs.data;
        let mut decoded = vec![false; (data_grid.cols() * data_grid.rows()) as usize];
        let mut mask_decoded = mask_grid
            .map(|g| vec![false; (g.cols() * g.rows()) as usize])
            .unwrap_or_default();
        let mut emitted = 0;
        for (s, step) in steps.iter().enumerate() {
            let mut new_blocks = Vec::new();
            let mut new_mask = Vec::new();
            for &t in step {
                let w = &windows[t];
                for (bx, by) in blocks_meeting(&data_grid, w) {
                    let i = (by * data_grid.cols() + bx) as usize;
                    if !std::mem::replace(&mut decoded[i], true) {
                        new_blocks.push((bx, by));
                    }
                }
                if let Some(g) = &mask_grid {
                    for (bx, by) in blocks_meeting(g, w) {
                        let i = (by * g.cols() + bx) as usize;
                        if !std::mem::replace(&mut mask_decoded[i], true) {
                            new_mask.push((bx, by));
                        }
                    }
                }
            }
            for chunk in new_blocks.chunks(wave.max(1)) {
                let blocks = cog.read_blocks::<T>(self.level, chunk, &self.band_indices)?;
                pieces.fill_from(&blocks);
            }
            if let Some(mp) = mask_pieces.as_mut() {
                for chunk in new_mask.chunks(wave.max(1)) {
                    mp.fill_from(&cog.read_mask_blocks(self.level, chunk)?);
                }
            }
            let bands = self.band_indices.len();
            let per_tile: Vec<Vec<TileCut>> = step
                .par_iter()
                .map(|&t| {
                    let (tile, target, plan) = &self.tiles[t];
                    let w = &plan.window;
                    let (ww, wh) = (w.width as usize, w.height as usize);
                    let mut window = vec![fill; bands * ww * wh];
                    pieces.assemble(w, &mut window);
                    let mask = mask_pieces.as_ref().map(|mp| {
                        let mut m = vec![255u8; ww * wh];
                        mp.assemble(w, &mut m);
                        m
                    });
                    let view = ArrayView3::from_shape((bands, wh, ww), &window[..])
                        .expect("the window buffer has the window's shape");
                    let mask = mask.as_ref().map(|m| {
                        ArrayView2::from_shape((wh, ww), &m[..])
                            .expect("the mask buffer has the window's shape")
                    });
                    self.cut_tile(*tile, target, plan, view, mask)
                })
                .collect::<Result<_, Error>>()?;
            debug_assert!(
                pieces.held_bytes() + mask_pieces.as_ref().map_or(0, |m| m.held_bytes()) <= peak,
                "pieces hold more than the plan allows"
            );
            for &t in step {
                pieces.release(&windows[t]);
                if let Some(mp) = mask_pieces.as_mut() {
                    mp.release(&windows[t]);
                }
            }
            let cuts: Vec<TileCut> = per_tile.into_iter().flatten().collect();
            emitted += cuts.len();
            sink(cuts, s + 1 < steps.len()).map_err(Error::Sink)?;
        }
        Ok(emitted)
    }

    /// Warps one tile's window onto it, band by band; empty bands are left out.
    fn cut_tile<T: Sample>(
        &self,
        tile: TileId,
        target: &TargetGrid,
        plan: &ReadPlan,
        view: ArrayView3<'_, T>,
        mask: Option<ArrayView2<'_, u8>>,
    ) -> Result<Vec<TileCut>, Error>
    where
        PixelBuffer: From<Vec<T>>,
    {
        let src = SourceRaster::new(view, plan.transform, self.scene_crs.clone())
            .with_nodata(self.file.nodata)
            .with_mask(mask);
        let mut cuts = Vec::new();
        // One band at a time, so each tile's pixels move into the fragment uncopied.
        for (k, &member) in self.members.iter().enumerate() {
            let Some(one) = src.band(k) else { continue };
            let warped =
                warp::warp(&one, target, &WarpOptions::new(self.kernel)).map_err(|source| {
                    Error::Warp {
                        file: self.name(),
                        source,
                    }
                })?;
            if warped.is_empty {
                continue;
            }
            let band: &BandTarget = &self.file.bands[member];
            let valid = warped.valid.as_slice().and_then(pack_mask);
            let (pixels, _) = warped.pixels.into_raw_vec_and_offset();
            cuts.push(TileCut {
                tile,
                band: band.name.clone(),
                layout: TileLayout {
                    transform: target.transform,
                    size: target.width as u32,
                    resolution: self.resolution,
                    nodata: band.profile.nodata.or(self.file.nodata),
                    scale: band.profile.scale,
                    offset: band.profile.offset,
                },
                pixels: PixelBuffer::from(pixels),
                valid,
            });
        }
        Ok(cuts)
    }
}

/// Blocks of `grid` a window meets.
fn blocks_meeting(grid: &crate::cog::BlockGrid, w: &Window) -> Vec<(u32, u32)> {
    let (cols, rows) = grid.blocks_of(w);
    rows.flat_map(|by| cols.clone().map(move |bx| (bx, by)))
        .collect()
}

/// The smallest window containing all `windows`.
fn union(windows: impl Iterator<Item = Window>) -> Option<Window> {
    let mut acc: Option<(u32, u32, u64, u64)> = None;
    for w in windows {
        let (c1, r1) = (
            w.col_off as u64 + w.width as u64,
            w.row_off as u64 + w.height as u64,
        );
        acc = Some(match acc {
            None => (w.col_off, w.row_off, c1, r1),
            Some((c0, r0, e1, f1)) => {
                (c0.min(w.col_off), r0.min(w.row_off), e1.max(c1), f1.max(r1))
            }
        });
    }
    acc.map(|(c0, r0, c1, r1)| {
        Window::new(c0, r0, (c1 - c0 as u64) as u32, (r1 - r0 as u64) as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_of_windows() {
        let u = union([Window::new(10, 5, 10, 10), Window::new(0, 12, 5, 20)].into_iter()).unwrap();
        assert_eq!(u, Window::new(0, 5, 20, 27));
        assert!(union(std::iter::empty()).is_none());
    }

    #[test]
    fn resolutions_snap_to_whole_pixels_per_tile() {
        let grid = GridSpec::new(32652, 0.0, 0.0, 3840.0).unwrap();
        assert_eq!(snapped_resolution(&grid, 10.0), 10.0);
        assert_eq!(snapped_resolution(&grid, 30.0), 30.0);
        assert_eq!(snapped_resolution(&grid, 9.99), 10.0);
    }
}
