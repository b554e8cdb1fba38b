//! Cutting one file of a scene into grid tiles: plan each tile's read, read the union of the
//! windows once (so each source block is decoded once), and warp every tile in parallel.

use super::scene::{BandTarget, SceneFile};
use crate::cog::{Cog, Window};
use crate::crs::Crs;
use crate::grid::GridSpec;
use crate::store::{pack_mask, PixelBuffer};
use crate::warp::{
    self, plan_read, ReadPlan, Resampling, SceneLayout, SourceRaster, TargetGrid, WarpOptions,
};
use crate::{DataType, GeoTransform, Sample, TileId};
use arrow_buffer::BooleanBuffer;
use ndarray::{s, Array2, Array3};
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

/// How a file is cut.
#[derive(Debug, Clone, Copy)]
pub struct CutOptions {
    /// Kernel for continuous bands (quality bands always use nearest).
    pub resampling: Resampling,
    /// Largest union window (bytes of decoded pixels) read at once; bigger scenes are read
    /// one row of tiles at a time.
    pub max_read_bytes: u64,
}

/// Resolution of a band snapped so that a tile holds a whole number of pixels.
fn snapped_resolution(grid: &GridSpec, wanted: f64) -> f64 {
    let n = (grid.tile_size / wanted).round().max(1.0);
    grid.tile_size / n
}

/// Cuts every band of `file` onto the tiles of `grid` it covers; `emit` receives each
/// non-empty (tile, band). Returns the number of (tile, band) cuts emitted.
pub fn cut_file(
    file: &SceneFile,
    grid: &GridSpec,
    grid_crs: &Crs,
    options: &CutOptions,
    emit: &(dyn Fn(TileCut) + Sync),
) -> Result<usize, Error> {
    let meta = file.cog.meta();
    let name = meta.name.clone();
    let scene_crs = Crs::from_epsg(file.epsg).map_err(|source| Error::Crs {
        file: name.clone(),
        source,
    })?;
    let Some(transform) = meta.transform() else {
        return Ok(0);
    };
    let bounds = transform.bounds(meta.width() as u64, meta.height() as u64);
    let tiles = grid
        .tiles_covering(&bounds, &scene_crs)
        .map_err(|source| Error::Grid {
            file: name.clone(),
            source,
        })?;
    // Bands sharing a resolution and kernel are read and warped together.
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
    let mut emitted = 0;
    for (resolution, kernel, members) in groups {
        let job = GroupJob {
            file,
            grid,
            grid_crs,
            scene_crs: &scene_crs,
            tiles: &tiles,
            resolution,
            kernel,
            members: &members,
            options,
        };
        emitted += match meta.dtype() {
            DataType::U8 => cut_group::<u8>(&job, emit),
            DataType::I8 => cut_group::<i8>(&job, emit),
            DataType::U16 => cut_group::<u16>(&job, emit),
            DataType::I16 => cut_group::<i16>(&job, emit),
            DataType::U32 => cut_group::<u32>(&job, emit),
            DataType::I32 => cut_group::<i32>(&job, emit),
            DataType::F32 => cut_group::<f32>(&job, emit),
            DataType::F64 => cut_group::<f64>(&job, emit),
        }?;
    }
    Ok(emitted)
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

/// Bands of one file that share a resolution and a kernel, to cut onto `tiles`.
struct GroupJob<'a> {
    file: &'a SceneFile,
    grid: &'a GridSpec,
    grid_crs: &'a Crs,
    scene_crs: &'a Crs,
    tiles: &'a [TileId],
    resolution: f64,
    kernel: Resampling,
    /// Indices into `file.bands`.
    members: &'a [usize],
    options: &'a CutOptions,
}

fn cut_group<T: Sample + bytemuck::Pod>(
    job: &GroupJob<'_>,
    emit: &(dyn Fn(TileCut) + Sync),
) -> Result<usize, Error>
where
    PixelBuffer: From<Vec<T>>,
{
    let GroupJob {
        file,
        grid,
        grid_crs,
        scene_crs,
        tiles,
        resolution,
        kernel,
        members,
        options,
    } = *job;
    let cog: &Cog = &file.cog;
    let meta = cog.meta();
    let name = meta.name.clone();
    let warp_err = |source| Error::Warp {
        file: name.clone(),
        source,
    };
    let overviews: Vec<(u32, u32)> = meta.levels[1..]
        .iter()
        .map(|l| (l.width, l.height))
        .collect();
    let layout = SceneLayout {
        width: meta.width(),
        height: meta.height(),
        transform: meta
            .transform()
            .unwrap_or(crate::GeoTransform::north_up(0.0, 0.0, 1.0, 1.0)),
        crs: scene_crs,
        overviews: &overviews,
    };
    // Plan every tile.
    let mut plans: Vec<(TileId, TargetGrid, ReadPlan)> = Vec::new();
    for &tile in tiles {
        let (transform, size) =
            grid.tile_geotransform(tile, resolution)
                .map_err(|source| Error::Grid {
                    file: name.clone(),
                    source,
                })?;
        let target = TargetGrid::new(transform, size as usize, size as usize, grid_crs.clone());
        if let Some(plan) = plan_read(&layout, &target, kernel).map_err(warp_err)? {
            plans.push((tile, target, plan));
        }
    }
    let band_indices: Vec<usize> = members.iter().map(|&i| file.bands[i].index).collect();
    let sample_bytes = (T::DTYPE.size() * band_indices.len()) as u64;
    // Read the union of the windows once per level; fall back to one row of tiles at a time
    // when that would be too large.
    let mut levels: Vec<usize> = plans.iter().map(|p| p.2.level).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for level in levels {
        let idx: Vec<usize> = (0..plans.len())
            .filter(|&i| plans[i].2.level == level)
            .collect();
        let whole = union(idx.iter().map(|&i| plans[i].2.window));
        let fits = whole.is_some_and(|w| {
            w.width as u64 * w.height as u64 * sample_bytes <= options.max_read_bytes
        });
        if fits {
            batches.push(idx);
        } else {
            let mut rows: Vec<i64> = idx.iter().map(|&i| plans[i].0.row).collect();
            rows.sort_unstable();
            rows.dedup();
            for r in rows {
                batches.push(
                    idx.iter()
                        .copied()
                        .filter(|&i| plans[i].0.row == r)
                        .collect(),
                );
            }
        }
    }
    let mut emitted = 0;
    for batch in batches {
        let Some(win) = union(batch.iter().map(|&i| plans[i].2.window)) else {
            continue;
        };
        let level = plans[batch[0]].2.level;
        let data: Array3<T> = cog.read_window(level, win, &band_indices)?;
        let mask: Option<Array2<u8>> = cog.read_mask(level, win)?;
        let counts: Vec<usize> = batch
            .par_iter()
            .map(|&i| {
                let (tile, target, plan) = &plans[i];
                let (c0, r0) = (
                    (plan.window.col_off - win.col_off) as usize,
                    (plan.window.row_off - win.row_off) as usize,
                );
                let (w, h) = (plan.window.width as usize, plan.window.height as usize);
                let view = data.slice(s![.., r0..r0 + h, c0..c0 + w]);
                let src = SourceRaster::new(view, plan.transform, scene_crs.clone())
                    .with_nodata(meta.nodata)
                    .with_mask(mask.as_ref().map(|m| m.slice(s![r0..r0 + h, c0..c0 + w])));
                let mut n = 0;
                // One band at a time, so each tile's pixels move into the fragment uncopied.
                for (k, &member) in members.iter().enumerate() {
                    let Some(one) = src.band(k) else { continue };
                    let warped =
                        warp::warp(&one, target, &WarpOptions::new(kernel)).map_err(warp_err)?;
                    if warped.is_empty {
                        continue;
                    }
                    let band: &BandTarget = &file.bands[member];
                    let valid = warped.valid.as_slice().and_then(pack_mask);
                    let (pixels, _) = warped.pixels.into_raw_vec_and_offset();
                    emit(TileCut {
                        tile: *tile,
                        band: band.name.clone(),
                        layout: TileLayout {
                            transform: target.transform,
                            size: target.width as u32,
                            resolution,
                            nodata: band.profile.nodata.or(meta.nodata),
                            scale: band.profile.scale,
                            offset: band.profile.offset,
                        },
                        pixels: PixelBuffer::from(pixels),
                        valid,
                    });
                    n += 1;
                }
                Ok(n)
            })
            .collect::<Result<_, Error>>()?;
        emitted += counts.iter().sum::<usize>();
    }
    Ok(emitted)
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
