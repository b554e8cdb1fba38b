//! A resolved query ([`QueryPlan`]): its time axis, bands and output grid are known, pixels are
//! painted on demand, whole or one window (time steps x rows x columns) at a time.
//!
//! Painting a window opens only the fragments whose tiles reach it; plans made for windows
//! ([`Query::prepare`](super::Query::prepare)) release fragments once the windows that follow
//! (row-major) no longer need them, so memory stays bounded by the window size.

use super::budget::{human_bytes, split_windows, Alignment};
use super::composite::{reduce, reduce_native, Reducer, TimeGroup};
use super::cube::{Cube, NativeCube, Values};
use super::engine::{clip_mask, paint_cube, Error, Result, SlabWork};
use super::expr::Expr;
use super::paint::{
    default_kernel, kernel_margin, tile_kernel, AsF32, Native, Neighbour, OutGrid, Painter,
    Placement,
};
use super::recycle;
use super::region::Region;
use crate::crs::Crs;
use crate::profile::CloudMaskRule;
use crate::store::{Fragment, FragmentEntry, Pixel, PixelWindow, Snapshot};
use crate::warp::Resampling;
use crate::{DataType, GeoTransform, GridSpec, TileId};
use chrono::{DateTime, Utc};
use ndarray::{Array3, Array4, Axis};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// How a plan opens fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Through the snapshot's shared cache, kept open (queries built whole, repeated).
    Shared,
    /// Opened per window and released when no later window needs them (exports).
    Transient,
}

/// A band of the query: the name asked for and the stored band it reads in each product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BandChoice {
    /// As requested (`red`), or the stored name when all bands were asked for.
    pub name: String,
    /// The warehouse band (`B04`) of each product of the query, in [`Parts::products`] order.
    pub stored: Vec<String>,
}

/// One input time step: an acquisition time (or solar day) of one product and the scenes
/// painted into it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Step {
    pub time: DateTime<Utc>,
    pub scenes: Vec<String>,
    /// Index into [`Parts::products`].
    pub product: usize,
}

impl Step {
    pub fn new(time: DateTime<Utc>, product: usize) -> Step {
        Step {
            time,
            scenes: Vec::new(),
            product,
        }
    }
}

/// One output time step: a run of input steps (one, or a composite period).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Group {
    pub time: DateTime<Utc>,
    pub members: Range<usize>,
}

/// What [`Query`](super::Query) resolved, handed to [`QueryPlan::new`].
pub(super) struct Parts<'w> {
    pub snapshot: Cow<'w, Snapshot>,
    pub grid_spec: GridSpec,
    pub entries: Vec<FragmentEntry>,
    /// Per entry, the input step of each observation (`None`: not part of the query). Empty
    /// for fragments of tiles just outside the region, read only for the samples kernels
    /// reach across tile seams.
    pub obs_steps: Vec<Vec<Option<usize>>>,
    /// Per entry, the scale and offset of each observation's scene when it declares its own
    /// (empty: the fragment's for all; only filled for physical values).
    pub obs_scaling: Vec<Vec<Option<(f32, f32)>>>,
    /// Per entry, the view the plan keeps open for painting (with [`Access::Shared`]: the
    /// part of the fragment the cube needs); `None` for exports, which read each window's
    /// part when they paint it.
    pub opened: Vec<Option<Arc<Fragment>>>,
    pub steps: Vec<Step>,
    pub groups: Vec<Group>,
    /// The products of the query (several: a multi-sensor series).
    pub products: Vec<String>,
    pub inputs: Vec<BandChoice>,
    /// Per product, its cloud rule and the stored band it reads.
    pub cloud: Option<Vec<(CloudMaskRule, String)>>,
    /// Output name, expression text, parsed expression.
    pub expr: Option<(String, String, Expr)>,
    pub composite: Option<Reducer>,
    pub physical: bool,
    /// Kernel asked for (`None`: nearest, or average where the output is coarser).
    pub resampling: Option<Resampling>,
    /// The grid CRS.
    pub crs: Crs,
    pub region: Region,
    pub grid: OutGrid,
    pub epsg: u32,
    pub values: Values,
    /// Sample type and nodata shared by the input bands (`None` when they differ).
    pub stored: Option<(DataType, Option<f64>)>,
    pub budget: u64,
    /// The query's time range (microseconds, inclusive): views hold its observations.
    pub times: Option<(i64, i64)>,
}

/// A part of a cube: output time steps, rows and columns (half-open ranges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CubeWindow {
    /// Time steps (indices along the cube's time axis).
    pub steps: Range<usize>,
    /// Rows.
    pub rows: Range<usize>,
    /// Columns.
    pub cols: Range<usize>,
}

impl CubeWindow {
    /// Number of pixels of one (time, band) slab of the window.
    pub fn pixels(&self) -> usize {
        self.rows.len() * self.cols.len()
    }
}

/// A query resolved against a snapshot: time axis, bands, output grid and the fragments that
/// paint it, ready to paint the cube whole ([`QueryPlan::cube`], [`QueryPlan::native_cube`])
/// or window by window ([`QueryPlan::chunk_f32`], [`QueryPlan::chunk_native`]). Built by
/// [`Query::prepare`](super::Query::prepare).
pub struct QueryPlan<'w> {
    parts: Parts<'w>,
    /// Output steps shown (indices into `groups`), after [`QueryPlan::retain_steps`].
    keep: Vec<usize>,
    /// Pixel rectangle of each entry's tile on the output grid: (rows, cols).
    rects: Vec<(Range<usize>, Range<usize>)>,
    /// Views read for windows (entries the plan did not keep open), by entry and window of
    /// its tile.
    pool: Mutex<ViewPool>,
    /// Entries by product, band and tile: where kernels find the neighbouring tiles.
    by_tile: HashMap<(String, String, TileId), Vec<usize>>,
}

/// Views read for windows, by entry index and window of its tile.
type ViewPool = HashMap<(usize, Option<PixelWindow>), Arc<Fragment>>;

impl std::fmt::Debug for QueryPlan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (t, b, h, w) = self.dim();
        write!(f, "QueryPlan({t} x {b} x {h} x {w})")
    }
}

/// Fragments, placements and per-observation steps for one window.
struct Layers<'p> {
    fragments: Vec<(&'p FragmentEntry, Arc<Fragment>)>,
    placements: Vec<Option<Placement>>,
    /// Per fragment: the fragments of neighbouring tiles its kernel reads across the seams.
    neighbours: Vec<Vec<Neighbour>>,
    /// Per fragment: its entry index.
    index: Vec<usize>,
}

impl<'w> QueryPlan<'w> {
    pub(super) fn new(parts: Parts<'w>) -> QueryPlan<'w> {
        let g = &parts.grid;
        let res_x = g.transform.pixel_width;
        let res_y = -g.transform.pixel_height;
        let rects = parts
            .entries
            .iter()
            .map(|e| {
                let b = parts.grid_spec.tile_bounds(e.tile);
                let px = |v: f64, max: usize| (v.max(0.0) as usize).min(max);
                let c0 = px(((b.min_x - g.transform.origin_x) / res_x).floor(), g.width);
                let c1 = px(((b.max_x - g.transform.origin_x) / res_x).ceil(), g.width);
                let r0 = px(((g.transform.origin_y - b.max_y) / res_y).floor(), g.height);
                let r1 = px(((g.transform.origin_y - b.min_y) / res_y).ceil(), g.height);
                (r0..r1, c0..c1)
            })
            .collect();
        let mut by_tile: HashMap<(String, String, TileId), Vec<usize>> = HashMap::new();
        for (i, e) in parts.entries.iter().enumerate() {
            by_tile
                .entry((e.product.clone(), e.band.clone(), e.tile))
                .or_default()
                .push(i);
        }
        QueryPlan {
            keep: (0..parts.groups.len()).collect(),
            parts,
            rects,
            pool: Mutex::new(HashMap::new()),
            by_tile,
        }
    }

    /// `(time, band, y, x)` sizes of the cube.
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        (
            self.keep.len(),
            self.band_names().len(),
            self.parts.grid.height,
            self.parts.grid.width,
        )
    }

    /// Time of each step (UTC): acquisition time, or composite period start.
    pub fn times(&self) -> Vec<DateTime<Utc>> {
        self.keep
            .iter()
            .map(|&g| self.parts.groups[g].time)
            .collect()
    }

    /// Scene ids behind each step.
    pub fn scenes(&self) -> Vec<Vec<String>> {
        self.keep
            .iter()
            .map(|&g| {
                let mut out: Vec<String> = Vec::new();
                for s in self.parts.groups[g].members.clone() {
                    for id in &self.parts.steps[s].scenes {
                        if !out.contains(id) {
                            out.push(id.clone());
                        }
                    }
                }
                out
            })
            .collect()
    }

    /// Product of each step (`a+b` for a step mosaicked or composited from several).
    pub fn products(&self) -> Vec<String> {
        let p = &self.parts;
        self.keep
            .iter()
            .map(|&g| {
                let mut ids: Vec<usize> = Vec::new();
                for s in p.groups[g].members.clone() {
                    if let Some(step) = p.steps.get(s) {
                        if !ids.contains(&step.product) {
                            ids.push(step.product);
                        }
                    }
                }
                ids.sort_unstable();
                let names: Vec<&str> = ids.iter().map(|&k| p.products[k].as_str()).collect();
                names.join("+")
            })
            .collect()
    }

    /// The products the query reads (several for a multi-sensor series).
    pub fn source_products(&self) -> &[String] {
        &self.parts.products
    }

    /// Band names as requested (or the expression's name).
    pub fn band_names(&self) -> Vec<String> {
        match &self.parts.expr {
            Some((name, _, _)) => vec![name.clone()],
            None => self.parts.inputs.iter().map(|b| b.name.clone()).collect(),
        }
    }

    /// The stored band each band reads (`product:band ...` with several products), or the
    /// expression text.
    pub fn band_sources(&self) -> Vec<String> {
        let p = &self.parts;
        match &p.expr {
            Some((_, text, _)) => vec![text.clone()],
            None if p.products.len() == 1 => p.inputs.iter().map(|b| b.stored[0].clone()).collect(),
            None => p
                .inputs
                .iter()
                .map(|b| {
                    let each: Vec<String> = p
                        .products
                        .iter()
                        .zip(&b.stored)
                        .map(|(id, s)| format!("{id}:{s}"))
                        .collect();
                    each.join(" ")
                })
                .collect(),
        }
    }

    /// What the values are.
    pub fn values(&self) -> &Values {
        &self.parts.values
    }

    /// EPSG code of the output grid.
    pub fn epsg(&self) -> u32 {
        self.parts.epsg
    }

    /// Geotransform of output pixel (0, 0).
    pub fn transform(&self) -> GeoTransform {
        self.parts.grid.transform
    }

    /// The region in the grid CRS.
    pub fn region(&self) -> &Region {
        &self.parts.region
    }

    /// The memory budget windows must fit in.
    pub fn memory_budget(&self) -> u64 {
        self.parts.budget
    }

    /// The sample type and nodata value the cube keeps natively, or why it cannot: band
    /// math, physical values and median, mean or count composites need floats; bands must
    /// share one sample type and nodata value, and integer bands need a nodata value to
    /// mark invalid pixels.
    pub fn native_type(&self) -> std::result::Result<(DataType, f64), String> {
        let p = &self.parts;
        if p.expr.is_some() {
            return Err("band math gives floating-point values".into());
        }
        if p.physical {
            return Err("physical values (scale and offset) are floating-point".into());
        }
        if let Some(r) = p.composite {
            if matches!(r, Reducer::Median | Reducer::Mean | Reducer::Count) {
                return Err(format!("{r} composites give floating-point values"));
            }
        }
        let Some((dtype, nodata)) = p.stored else {
            return Err("the bands differ in sample type or nodata value".into());
        };
        match nodata {
            Some(nd) if dtype.is_float() || nd.fract() == 0.0 => Ok((dtype, nd)),
            None if dtype.is_float() => Ok((dtype, f64::NAN)),
            _ => Err(format!(
                "the {dtype} bands have no nodata value to mark invalid pixels"
            )),
        }
    }

    /// Keeps only the output steps flagged in `keep` (one flag per current step).
    pub fn retain_steps(&mut self, keep: &[bool]) {
        let kept: Vec<usize> = self
            .keep
            .iter()
            .zip(keep.iter().chain(std::iter::repeat(&true)))
            .filter(|(_, &k)| k)
            .map(|(&g, _)| g)
            .collect();
        self.keep = kept;
    }

    /// Drops the time steps without a single valid pixel (reads the cube once, window by
    /// window within the memory budget).
    pub fn drop_empty_steps(&mut self) -> Result<()> {
        let mut any = vec![false; self.dim().0];
        let native = self.native_type().ok();
        let align = Alignment { rows: 1, cols: 1 };
        for win in self.windows(self.step_elem_size(), align) {
            let flags: Vec<bool> = match native {
                Some((DataType::U8, _)) => self.valid_steps::<u8>(&win)?,
                Some((DataType::I8, _)) => self.valid_steps::<i8>(&win)?,
                Some((DataType::U16, _)) => self.valid_steps::<u16>(&win)?,
                Some((DataType::I16, _)) => self.valid_steps::<i16>(&win)?,
                Some((DataType::U32, _)) => self.valid_steps::<u32>(&win)?,
                Some((DataType::I32, _)) => self.valid_steps::<i32>(&win)?,
                Some((DataType::F64, _)) => self.valid_steps::<f64>(&win)?,
                _ => {
                    let c = self.chunk_f32(&win)?;
                    c.axis_iter(Axis(0))
                        .map(|s| s.iter().any(|v| !v.is_nan()))
                        .collect()
                }
            };
            for (i, f) in win.steps.clone().zip(flags) {
                any[i] |= f;
            }
        }
        self.retain_steps(&any);
        Ok(())
    }

    fn valid_steps<T: Pixel>(&self, win: &CubeWindow) -> Result<Vec<bool>> {
        let fill = self.native_fill::<T>()?;
        let c = self.chunk_native::<T>(win)?;
        #[allow(clippy::eq_op)]
        let valid = |v: T| v == v && v != fill;
        Ok(c.axis_iter(Axis(0))
            .map(|s| s.iter().any(|&v| valid(v)))
            .collect())
    }

    /// Bytes per element of the cube as computed (native sample size, or 4 for `f32`).
    fn step_elem_size(&self) -> usize {
        match self.native_type() {
            Ok((d, _)) => d.size(),
            Err(_) => 4,
        }
    }

    /// Memory a window takes while it is painted: its inputs (all bands and input steps it
    /// needs, the cloud band, band-math temporaries) and its output, with elements of
    /// `elem` bytes.
    pub fn window_bytes(&self, win: &CubeWindow, elem: usize) -> u64 {
        let p = &self.parts;
        let px = win.pixels() as u64;
        let inputs = self.input_steps(&win.steps).len() as u64;
        let nin = p.inputs.len() as u64;
        let mut bytes = inputs * nin * px * elem as u64;
        if p.cloud.is_some() {
            bytes += inputs * px * 4;
        }
        if p.expr.is_some() {
            // Band copies for the evaluator and a few intermediate arrays.
            bytes += inputs * px * 4 * (nin + 3);
        }
        let out = win.steps.len() as u64 * self.band_names().len() as u64 * px * elem as u64;
        if p.composite.is_some() || p.expr.is_some() {
            bytes += out;
        }
        bytes
    }

    /// Windows covering the cube in row-major order (steps outermost, then rows, then
    /// columns), aligned to `align` (the blocks of the output file) and each within the
    /// memory budget (and [`FILE_WINDOW_BYTES`](super::budget::FILE_WINDOW_BYTES)) when
    /// possible; elements of `elem` bytes. See
    /// [`split_windows`](super::budget::split_windows).
    pub fn windows(&self, elem: usize, align: Alignment) -> Vec<CubeWindow> {
        let (t, _, h, w) = self.dim();
        let budget = self.parts.budget.min(super::budget::FILE_WINDOW_BYTES);
        split_windows(t, h, w, budget, align, |win| self.window_bytes(win, elem))
    }

    /// Output steps `steps` start and end on composite period boundaries already; input
    /// steps are whole. Returns the run of input steps the window needs.
    fn input_steps(&self, steps: &Range<usize>) -> Range<usize> {
        if steps.is_empty() {
            return 0..0;
        }
        let first = &self.parts.groups[self.keep[steps.start]];
        let last = &self.parts.groups[self.keep[steps.end - 1]];
        first.members.start..last.members.end
    }

    /// The whole cube as `f32` with NaN where invalid, if it fits in the memory budget.
    pub fn cube(&self) -> Result<Cube> {
        let data = self.paint_whole(4, "f32", |win| self.paint_f32(win))?;
        Ok(Cube {
            data,
            times: self.times(),
            scenes: self.scenes(),
            products: self.products(),
            bands: self.band_names(),
            band_sources: self.band_sources(),
            values: self.parts.values.clone(),
            epsg: self.parts.epsg,
            transform: self.parts.grid.transform,
        })
    }

    /// Paints the whole cube with `paint`. When its inputs do not fit in the memory budget
    /// but its output does with room to spare (a composite's periods, an index of several
    /// bands), it is painted in runs of steps whose inputs fit, one after the other: a
    /// yearly median over five years of daily scenes holds one year's inputs at a time.
    fn paint_whole<E: Clone>(
        &self,
        elem: usize,
        dtype: &str,
        paint: impl Fn(&CubeWindow) -> Result<Array4<E>>,
    ) -> Result<Array4<E>> {
        let (t, b, h, w) = self.dim();
        let steps = |s: Range<usize>| CubeWindow {
            steps: s,
            rows: 0..h,
            cols: 0..w,
        };
        let whole = steps(0..t);
        let budget = self.parts.budget;
        let out = (t * b * h * w * elem) as u64;
        if self.window_bytes(&whole, elem) <= budget || t < 2 || out > budget / 2 {
            self.check_budget(&whole, elem, dtype)?;
            return paint(&whole);
        }
        let room = budget - out;
        let mut runs: Vec<Range<usize>> = Vec::new();
        let mut start = 0;
        for end in 1..=t {
            if end - start > 1 && self.window_bytes(&steps(start..end), elem) > room {
                runs.push(start..end - 1);
                start = end - 1;
            }
        }
        runs.push(start..t);
        if runs
            .iter()
            .any(|r| self.window_bytes(&steps(r.clone()), elem) > room)
        {
            // One step's inputs alone are too many: the whole cube's error says how large.
            self.check_budget(&whole, elem, dtype)?;
        }
        let parts = runs
            .into_iter()
            .map(|r| paint(&steps(r)))
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
        ndarray::concatenate(Axis(0), &views)
            .map_err(|e| Error::Invalid(format!("assembling the cube's steps: {e}")))
    }

    /// The whole cube in the bands' sample type `T` (nodata where invalid), if it fits in
    /// the memory budget. Errors when the query needs floats or `T` is not the bands' type
    /// (see [`QueryPlan::native_type`]).
    pub fn native_cube<T: Pixel>(&self) -> Result<NativeCube<T>> {
        let fill = self.native_fill::<T>()?;
        let data = self.paint_whole(T::DTYPE.size(), T::DTYPE.name(), |win| {
            self.paint_native::<T>(win, fill)
        })?;
        Ok(NativeCube {
            data,
            fill,
            times: self.times(),
            scenes: self.scenes(),
            products: self.products(),
            bands: self.band_names(),
            band_sources: self.band_sources(),
            values: self.parts.values.clone(),
            epsg: self.parts.epsg,
            transform: self.parts.grid.transform,
        })
    }

    /// One window of the cube as `f32` (NaN where invalid). Fragments stay open for the
    /// windows that follow in row-major order (see [`QueryPlan::windows`]).
    pub fn chunk_f32(&self, win: &CubeWindow) -> Result<Array4<f32>> {
        self.check_window(win)?;
        let out = self.paint_f32(win);
        self.release(win);
        out
    }

    /// One window of the cube in the bands' sample type `T` (see [`QueryPlan::native_cube`]).
    pub fn chunk_native<T: Pixel>(&self, win: &CubeWindow) -> Result<Array4<T>> {
        self.check_window(win)?;
        let fill = self.native_fill::<T>()?;
        let out = self.paint_native::<T>(win, fill);
        self.release(win);
        out
    }

    /// The fill value of native cubes of type `T`, or why there is none.
    pub fn native_fill<T: Pixel>(&self) -> Result<T> {
        let (dtype, nodata) = self.native_type().map_err(|why| {
            Error::Invalid(format!(
                "{why}: ask for float32 values (NaN where invalid) instead of the bands' own type: `--dtype float32` in the CLI, `dtype=\"float32\"` in Python, `Query::run` in Rust"
            ))
        })?;
        if dtype != T::DTYPE {
            return Err(Error::SampleType {
                stored: dtype,
                requested: T::DTYPE,
            });
        }
        let fill = T::from_f64(nodata);
        if !(fill.to_f64() == nodata || nodata.is_nan() && dtype.is_float()) {
            return Err(Error::Invalid(format!(
                "the nodata value {nodata} does not fit {dtype}: ask for float32 values (NaN where invalid): `--dtype float32` in the CLI, `dtype=\"float32\"` in Python, `Query::run` in Rust"
            )));
        }
        Ok(fill)
    }

    fn check_window(&self, win: &CubeWindow) -> Result<()> {
        let (t, _, h, w) = self.dim();
        if win.steps.end > t || win.rows.end > h || win.cols.end > w {
            return Err(Error::Invalid(format!(
                "window {win:?} is outside the {t} x {h} x {w} cube"
            )));
        }
        Ok(())
    }

    fn check_budget(&self, win: &CubeWindow, elem: usize, dtype: &str) -> Result<()> {
        let bytes = self.window_bytes(win, elem);
        if bytes > self.parts.budget {
            let (t, b, h, w) = self.dim();
            return Err(Error::TooLarge {
                bytes,
                shape: format!("{t} times x {b} bands x {h} x {w} px, {dtype}"),
                limit: format!("the memory budget of {}", human_bytes(self.parts.budget)),
            });
        }
        Ok(())
    }

    /// Releases pooled fragments that no window after `win` (row-major) needs.
    fn release(&self, win: &CubeWindow) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let last_row = win.rows.end >= self.parts.grid.height;
        let last_col = win.cols.end >= self.parts.grid.width;
        if last_row && last_col {
            // The next window starts a new run of steps from the top.
            pool.clear();
            return;
        }
        // Views belong to their window: the next window reads its own.
        pool.retain(|&(i, window), _| {
            let (rows, cols) = &self.rects[i];
            window.is_none() && (rows.end > win.rows.end || cols.end > win.cols.end)
        });
    }

    /// Opens the fragments that reach `win` and places them on its grid.
    fn layers(&self, win: &CubeWindow, inputs: &Range<usize>) -> Result<Layers<'_>> {
        let p = &self.parts;
        let chosen: Vec<usize> = (0..p.entries.len())
            .filter(|&i| {
                let (rows, cols) = &self.rects[i];
                rows.start < win.rows.end
                    && win.rows.start < rows.end
                    && cols.start < win.cols.end
                    && win.cols.start < cols.end
                    && p.obs_steps[i]
                        .iter()
                        .any(|s| s.is_some_and(|s| inputs.contains(&s)))
            })
            .collect();
        let out = self.window_grid(win);
        let out_res = out.transform.pixel_width;
        let kernel_of = |entry: &FragmentEntry| {
            if self.is_cloud_band(entry) {
                Resampling::Nearest
            } else {
                let k = p
                    .resampling
                    .unwrap_or_else(|| default_kernel(entry.resolution, out_res));
                tile_kernel(k, &entry.index.transform, entry.resolution, &out.transform)
            }
        };
        // Kernels read the neighbouring tiles' samples across the seams: the fragments of
        // the 8 tiles around each resampled one (same product, band and resolution) that
        // reach within a kernel margin of the window.
        let mut wanted = chosen.clone();
        let mut seams: Vec<Vec<usize>> = vec![Vec::new(); chosen.len()];
        for (k, &i) in chosen.iter().enumerate() {
            let e = &p.entries[i];
            if kernel_of(e) == Resampling::Nearest {
                continue;
            }
            for (dc, dr) in (-1..=1).flat_map(|dc| (-1..=1).map(move |dr| (dc, dr))) {
                let tile = TileId::new(e.tile.col + dc, e.tile.row + dr);
                if tile == e.tile {
                    continue;
                }
                let key = (e.product.clone(), e.band.clone(), tile);
                for &j in self.by_tile.get(&key).map_or(&[][..], Vec::as_slice) {
                    let n = &p.entries[j];
                    if n.resolution == e.resolution && read_window(n, &out).is_some() {
                        seams[k].push(j);
                        if !wanted.contains(&j) {
                            wanted.push(j);
                        }
                    }
                }
            }
        }
        let fragments: Vec<Arc<Fragment>> = wanted
            .par_iter()
            .map(|&i| -> Result<Arc<Fragment>> {
                if let Some(f) = &p.opened[i] {
                    return Ok(f.clone());
                }
                let entry = &p.entries[i];
                // Only the part of the tile this window paints is read.
                let window = read_window(entry, &out);
                if let Some(f) = self
                    .pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(i, window))
                {
                    return Ok(f.clone());
                }
                let f = Arc::new(p.snapshot.fragment_window(entry, window, p.times)?);
                self.pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((i, window), f.clone());
                Ok(f)
            })
            .collect::<Result<_>>()?;
        let neighbours: Vec<Vec<Neighbour>> = seams
            .iter()
            .enumerate()
            .map(|(k, near)| {
                let e = &p.entries[chosen[k]];
                near.iter()
                    .filter_map(|&j| {
                        let at = wanted.iter().position(|&w| w == j)?;
                        Some(Neighbour {
                            fragment: fragments[at].clone(),
                            offset: tile_offset(e, &p.entries[j])?,
                        })
                    })
                    .collect()
            })
            .collect();
        // Only the chosen fragments are painted; the others lend samples.
        let fragments: Vec<(&FragmentEntry, Arc<Fragment>)> = chosen
            .iter()
            .zip(fragments)
            .map(|(&i, f)| (&p.entries[i], f))
            .collect();
        let placements = fragments
            .iter()
            .map(|(entry, f)| {
                Placement::of_fragment(entry, f, &out).map(|placement| {
                    let m = f.meta();
                    placement.with_kernel(
                        kernel_of(entry),
                        &m.transform,
                        (m.width, m.height),
                        entry.resolution,
                        &f.window(),
                        &out,
                        &p.crs,
                    )
                })
            })
            .collect();
        Ok(Layers {
            fragments,
            placements,
            neighbours,
            index: chosen,
        })
    }

    /// Index of the product of `entry` in the query's products.
    fn product_of(&self, entry: &FragmentEntry) -> Option<usize> {
        self.parts.products.iter().position(|p| *p == entry.product)
    }

    /// True when `entry` holds its product's cloud band (painted with nearest neighbour).
    fn is_cloud_band(&self, entry: &FragmentEntry) -> bool {
        let cloud = self.parts.cloud.as_deref().unwrap_or(&[]);
        self.product_of(entry)
            .and_then(|k| cloud.get(k))
            .is_some_and(|(_, qa)| *qa == entry.band)
    }

    /// The output grid of a window.
    fn window_grid(&self, win: &CubeWindow) -> OutGrid {
        OutGrid {
            transform: self.parts.grid.transform.window(
                win.cols.start as f64,
                win.rows.start as f64,
                1.0,
                1.0,
            ),
            width: win.cols.len(),
            height: win.rows.len(),
        }
    }

    /// The observations to paint on each (input step, band) slab of `nb` bands (`band_of`
    /// gives the band a fragment paints, if any).
    fn work(
        &self,
        layers: &Layers<'_>,
        nb: usize,
        band_of: impl Fn(&FragmentEntry) -> Option<usize>,
        inputs: &Range<usize>,
    ) -> SlabWork {
        let mut work = Vec::new();
        for (fi, ((entry, f), &ei)) in layers.fragments.iter().zip(&layers.index).enumerate() {
            let Some(b) = band_of(entry) else {
                continue;
            };
            if layers.placements[fi].is_none() {
                continue;
            }
            let times = f.times_micros();
            for (i, step) in self.parts.obs_steps[ei].iter().enumerate() {
                if let Some(s) = step.filter(|s| inputs.contains(s)) {
                    work.push(((s - inputs.start) * nb + b, times[i], fi, i));
                }
            }
        }
        SlabWork::new(inputs.len() * nb, work)
    }

    /// Paints the input steps of `win` for the input bands with `painter`, clips polygons
    /// and masks clouds: `(input step, band, y, x)`.
    fn paint_inputs<P: Painter>(&self, win: &CubeWindow, painter: &P) -> Result<Array4<P::Elem>> {
        let p = &self.parts;
        let inputs = self.input_steps(&win.steps);
        let layers = self.layers(win, &inputs)?;
        let (h, w) = (win.rows.len(), win.cols.len());
        let grid = self.window_grid(win);
        let clip = clip_mask(&p.region, &grid.transform, w, h);
        let nb = p.inputs.len();
        let band_of = |e: &FragmentEntry| {
            let k = self.product_of(e)?;
            p.inputs.iter().position(|b| b.stored[k] == e.band)
        };
        let work = self.work(&layers, nb, band_of, &inputs);
        let too_large = |bytes: u64| Error::TooLarge {
            bytes,
            shape: format!("{} steps x {} bands x {h} x {w} px", inputs.len(), nb),
            limit: "the memory available to this process".into(),
        };
        let elem = std::mem::size_of::<P::Elem>() as u64;
        let scaling = |fi: usize, obs: usize| {
            p.obs_scaling
                .get(layers.index[fi])
                .and_then(|s| s.get(obs).copied().flatten())
        };
        let mut data = paint_cube(
            &work,
            &layers.fragments,
            &layers.placements,
            &layers.neighbours,
            &scaling,
            (w, h),
            clip.as_deref(),
            painter,
        )
        .ok_or_else(|| too_large(self.window_bytes(win, elem as usize)))?;
        if let Some(rules) = &p.cloud {
            let qa_of = |e: &FragmentEntry| {
                let k = self.product_of(e)?;
                rules
                    .get(k)
                    .is_some_and(|(_, qa)| *qa == e.band)
                    .then_some(0)
            };
            let qa_work = self.work(&layers, 1, qa_of, &inputs);
            let qa_values = paint_cube(
                &qa_work,
                &layers.fragments,
                &layers.placements,
                &layers.neighbours,
                &|_, _| None,
                (w, h),
                None,
                &AsF32 { physical: false },
            )
            .ok_or_else(|| too_large(self.window_bytes(win, elem as usize)))?;
            let slab = w * h;
            let empty = painter.empty();
            if slab > 0 {
                data.par_chunks_mut(nb * slab)
                    .zip(qa_values.par_chunks(slab))
                    .enumerate()
                    .for_each(|(k, (step, qa))| {
                        let Some((rule, _)) = rules.get(p.steps[inputs.start + k].product) else {
                            return;
                        };
                        let clear: Vec<bool> = qa
                            .iter()
                            .map(|&v| v.is_nan() || rule.is_clear(v as i64))
                            .collect();
                        for band in step.chunks_exact_mut(slab) {
                            for (v, &c) in band.iter_mut().zip(&clear) {
                                *v = if c { *v } else { empty };
                            }
                        }
                    });
            }
            recycle::give(qa_values);
        }
        Array4::from_shape_vec((inputs.len(), nb, h, w), data)
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Composite groups of `win` relative to its input steps.
    fn window_groups(&self, win: &CubeWindow) -> Vec<TimeGroup> {
        let inputs = self.input_steps(&win.steps);
        win.steps
            .clone()
            .map(|k| {
                let g = &self.parts.groups[self.keep[k]];
                TimeGroup {
                    start: g.time,
                    members: g.members.clone().map(|m| m - inputs.start).collect(),
                }
            })
            .collect()
    }

    fn paint_f32(&self, win: &CubeWindow) -> Result<Array4<f32>> {
        let p = &self.parts;
        let mut data = self.paint_inputs(
            win,
            &AsF32 {
                physical: p.physical,
            },
        )?;
        if let Some((name, _, e)) = &p.expr {
            data = apply_expression(data, &p.inputs, name, e)?;
        }
        Ok(match p.composite {
            Some(r) => {
                let out = reduce(data.view(), &self.window_groups(win), r);
                recycle::give_array(data);
                out
            }
            None => self.select_kept(data, win),
        })
    }

    fn paint_native<T: Pixel>(&self, win: &CubeWindow, fill: T) -> Result<Array4<T>> {
        let data = self.paint_inputs(win, &Native { fill })?;
        Ok(match self.parts.composite {
            Some(r) => {
                let out = reduce_native(data.view(), &self.window_groups(win), r, fill);
                recycle::give_array(data);
                out
            }
            None => self.select_kept(data, win),
        })
    }

    /// Without composites, input steps are output steps; drops the ones between kept steps.
    fn select_kept<E: Clone + Send + 'static>(
        &self,
        data: Array4<E>,
        win: &CubeWindow,
    ) -> Array4<E> {
        let inputs = self.input_steps(&win.steps);
        if inputs.len() == win.steps.len() {
            return data;
        }
        let idx: Vec<usize> = win
            .steps
            .clone()
            .map(|k| self.parts.groups[self.keep[k]].members.start - inputs.start)
            .collect();
        let kept = data.select(Axis(0), &idx);
        recycle::give_array(data);
        kept
    }
}

/// Replaces the bands of `data` (`(step, band, y, x)`, named by `bands`) by one band computed
/// from an expression.
fn apply_expression(
    data: Array4<f32>,
    bands: &[BandChoice],
    name: &str,
    expr: &Expr,
) -> Result<Array4<f32>> {
    let (t, _, h, w) = data.dim();
    let arrays: Vec<Array3<f32>> = (0..bands.len())
        .map(|b| data.index_axis(Axis(1), b).to_owned())
        .collect();
    recycle::give_array(data);
    let lookup = |var: &str| -> Option<&Array3<f32>> {
        bands
            .iter()
            .position(|b| {
                b.name.eq_ignore_ascii_case(var)
                    || b.stored.iter().any(|s| s.eq_ignore_ascii_case(var))
            })
            .map(|i| &arrays[i])
    };
    let result = expr
        .evaluate((t, h, w), &lookup)
        .map_err(|m| Error::Invalid(format!("expression {name:?}: {m}")))?;
    let mut out = result.insert_axis(Axis(1));
    out.mapv_inplace(|v| if v.is_finite() { v } else { f32::NAN });
    Ok(out)
}

/// Where `neighbour`'s tile pixel (0, 0) lies in `entry`'s tile pixels (columns, rows), when
/// both tiles share a pixel lattice (same resolution, origins a whole number of pixels
/// apart).
fn tile_offset(entry: &FragmentEntry, neighbour: &FragmentEntry) -> Option<(i64, i64)> {
    let (a, b) = (&entry.index.transform, &neighbour.index.transform);
    let res = entry.resolution;
    let whole = |v: f64| ((v - v.round()).abs() < 1e-6).then_some(v.round() as i64);
    Some((
        whole((b.origin_x - a.origin_x) / res)?,
        whole((a.origin_y - b.origin_y) / res)?,
    ))
}

/// The pixels of `entry`'s tile that painting `out` may sample: the tile pixels under the
/// output grid, widened by a margin for interpolation kernels and for averaging when the
/// output is coarser, clipped to the tile. `None` when the tile does not reach the grid.
pub(super) fn read_window(entry: &FragmentEntry, out: &OutGrid) -> Option<PixelWindow> {
    let t = &entry.index.transform;
    let res = entry.resolution;
    if !(res.is_finite() && res > 0.0) {
        return None;
    }
    let ot = &out.transform;
    let (x0, x1) = (ot.origin_x, ot.origin_x + out.width as f64 * ot.pixel_width);
    let (y1, y0) = (
        ot.origin_y,
        ot.origin_y + out.height as f64 * ot.pixel_height,
    );
    // An output on the tile's own pixel lattice is painted by copying: no kernel reaches
    // past the pixels under it (a point's history then reads one chunk, not its neighbours).
    let margin = if tile_kernel(Resampling::Bilinear, t, res, ot) == Resampling::Nearest {
        0.0
    } else {
        kernel_margin(ot.pixel_width.abs() / res)
    };
    let (w, h) = (entry.width as f64, entry.height as f64);
    let c0 = (((x0.min(x1) - t.origin_x) / res).floor() - margin).clamp(0.0, w);
    let c1 = (((x0.max(x1) - t.origin_x) / res).ceil() + margin).clamp(0.0, w);
    let r0 = (((t.origin_y - y1.max(y0)) / res).floor() - margin).clamp(0.0, h);
    let r1 = (((t.origin_y - y1.min(y0)) / res).ceil() + margin).clamp(0.0, h);
    (c1 > c0 && r1 > r0)
        .then(|| PixelWindow::new(c0 as u32, r0 as u32, (c1 - c0) as u32, (r1 - r0) as u32))
}
