//! Painting fragment observations onto a cube's output grid.
//!
//! A cube slab (one time step, one band) is written by the observations that belong to it, in
//! priority order: the first valid value of a pixel wins. Pixels without one get the painter's
//! empty marker: NaN for `f32` cubes, the nodata value for native ones. Every element of the
//! slab is written exactly once in the usual case (tiles are disjoint on the output grid): the
//! first observation of a tile writes its values or the marker, later ones only replace the
//! marker, and pixels no tile covers get the marker, so the cube can be allocated
//! uninitialised. Validity bits are read 64 at a time, so fully valid or fully invalid runs
//! are plain slice loops that vectorise.

use crate::crs::Crs;
use crate::store::{Fragment, FragmentEntry, Pixel, PixelWindow};
use crate::warp::{aligned_offset, warp, Resampling, SourceRaster, TargetGrid, WarpOptions};
use crate::{DataType, GeoTransform, Sample};
use arrow_buffer::bit_chunk_iterator::BitChunks;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Arc;

/// The output pixel grid of a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OutGrid {
    /// Georeferencing of output pixel (0, 0).
    pub transform: GeoTransform,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// Where a fragment's tile lands on the output grid: the output pixels whose centres fall in
/// the tile, and for those that fall in the fragment's stored window the source row and
/// column in that window (nearest neighbour); the tile's other pixels are invalid. The same
/// for every observation of the fragment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Placement {
    /// Output columns and rows whose centres fall in the tile.
    xs: Range<usize>,
    ys: Range<usize>,
    /// The part of `xs` and `ys` that falls in the stored window.
    win_xs: Range<usize>,
    win_ys: Range<usize>,
    /// Window column of each output column in `win_xs`.
    cols: Vec<usize>,
    /// Window row of each output row in `win_ys`.
    rows: Vec<usize>,
    /// Window columns are consecutive (same resolution, aligned): whole row slices.
    contiguous: bool,
    /// Window width in source pixels (the row stride of the stored pixels).
    stride: usize,
    /// Size of the output grid this placement is for.
    out: (usize, usize),
    /// Set when the tile is resampled with a kernel other than nearest neighbour.
    resample: Option<Resample>,
}

/// A tile painted through the warp kernels: its stored window, widened across the tile's
/// edges by the neighbour tiles' samples of the same scene, is warped onto the output
/// rectangle of the placement (a tile-sized temporary, never a copy of the whole cube).
#[derive(Debug, Clone, PartialEq)]
struct Resample {
    kernel: Resampling,
    /// Georeferencing of the stored window's pixel (0, 0).
    window: GeoTransform,
    /// The stored window in tile pixels, and the tile's size in pixels.
    stored: PixelWindow,
    tile: (u32, u32),
    /// Georeferencing of output pixel (`xs.start`, `ys.start`).
    target: GeoTransform,
    /// The grid CRS (source and target share it).
    crs: Crs,
}

/// Source pixels a kernel may reach beyond the pixels under the output grid, when output
/// pixels are `ratio` source pixels wide: the widest kernel (cubic, 2 taps a side) widened
/// when downsampling, plus slack for the output pixels' half-pixel reach.
pub(crate) fn kernel_margin(ratio: f64) -> f64 {
    3.0 + (2.0 * ratio.max(1.0)).ceil()
}

/// A fragment of a neighbouring tile (same product, band and resolution) whose samples a
/// kernel reads across the seam: `offset` is where the neighbour tile's pixel (0, 0) lies in
/// the painted tile's pixel lattice (columns, rows).
#[derive(Debug, Clone)]
pub(crate) struct Neighbour {
    /// The neighbour's view (its window near the output grid).
    pub fragment: Arc<Fragment>,
    /// Offset of the neighbour tile in pixels of the painted tile.
    pub offset: (i64, i64),
}

/// The kernel that paints a tile (pixel (0, 0) at `tile`, `resolution` pixels) onto `out`:
/// `kernel`, except on the tile's own lattice at its resolution, where every kernel copies
/// the samples (the warp's aligned path) and nearest neighbour paints the same values
/// without reading across seams.
pub(crate) fn tile_kernel(
    kernel: Resampling,
    tile: &GeoTransform,
    resolution: f64,
    out: &GeoTransform,
) -> Resampling {
    let lattice = GeoTransform::north_up(tile.origin_x, tile.origin_y, resolution, resolution);
    if aligned_offset(&lattice, out).is_some() {
        Resampling::Nearest
    } else {
        kernel
    }
}

/// The kernel a query uses when none is asked for, as the warp layer chooses at ingest:
/// nearest neighbour when the output is as fine as the source or finer, the area-weighted
/// average when it is coarser.
pub(crate) fn default_kernel(source_resolution: f64, output_resolution: f64) -> Resampling {
    if output_resolution > source_resolution * (1.0 + 1e-9) {
        Resampling::Average
    } else {
        Resampling::Nearest
    }
}

impl Placement {
    /// Placement of an opened fragment (its catalog row gives the native resolution) on
    /// `out`; `None` when it does not reach the output.
    pub fn of_fragment(entry: &FragmentEntry, fragment: &Fragment, out: &OutGrid) -> Option<Self> {
        let m = fragment.meta();
        Placement::new(
            &m.transform,
            (m.width as usize, m.height as usize),
            &fragment.window(),
            entry.resolution,
            out,
        )
    }

    /// Placement of a `width` x `height` tile with geotransform `tile` and pixel size
    /// `resolution`, of which `window` is stored, on `out`; `None` when no output pixel
    /// centre falls in the tile.
    pub fn new(
        tile: &GeoTransform,
        (width, height): (usize, usize),
        window: &PixelWindow,
        resolution: f64,
        out: &OutGrid,
    ) -> Option<Placement> {
        if width == 0 || height == 0 {
            return None;
        }
        let ot = &out.transform;
        let r = ot.pixel_width;
        let rs = resolution;
        let (tx0, tx1) = (tile.origin_x, tile.origin_x + width as f64 * rs);
        let (ty1, ty0) = (tile.origin_y, tile.origin_y - height as f64 * rs);
        let first = |v: f64, max: usize| ((v - 0.5).ceil().max(0.0) as usize).min(max);
        let xs =
            first((tx0 - ot.origin_x) / r, out.width)..first((tx1 - ot.origin_x) / r, out.width);
        let ys =
            first((ot.origin_y - ty1) / r, out.height)..first((ot.origin_y - ty0) / r, out.height);
        if xs.is_empty() || ys.is_empty() {
            return None;
        }
        // Tile column and row of each output column and row (non-decreasing), then the run
        // of them inside the window.
        let tile_cols: Vec<usize> = xs
            .clone()
            .map(|x| {
                ((((ot.origin_x + (x as f64 + 0.5) * r) - tx0) / rs).floor() as usize)
                    .min(width - 1)
            })
            .collect();
        let tile_rows: Vec<usize> = ys
            .clone()
            .map(|y| {
                (((ty1 - (ot.origin_y - (y as f64 + 0.5) * r)) / rs).floor() as usize)
                    .min(height - 1)
            })
            .collect();
        let inside =
            |v: &[usize], keep: Range<usize>, start: usize| -> (Range<usize>, Vec<usize>) {
                let a = v.partition_point(|&c| c < keep.start);
                let b = v.partition_point(|&c| c < keep.end);
                let a = a.min(b);
                (
                    start + a..start + b,
                    v[a..b].iter().map(|c| c - keep.start).collect(),
                )
            };
        let (win_xs, cols) = inside(&tile_cols, window.cols(), xs.start);
        let (win_ys, rows) = inside(&tile_rows, window.rows(), ys.start);
        let contiguous = cols.windows(2).all(|w| w[1] == w[0] + 1);
        Some(Placement {
            xs,
            ys,
            win_xs,
            win_ys,
            cols,
            rows,
            contiguous,
            stride: window.width as usize,
            out: (out.width, out.height),
            resample: None,
        })
    }

    /// Paints with `kernel` instead of nearest neighbour (`crs` is the grid's), given the
    /// fragment's tile geotransform and size in pixels, native `resolution` and stored
    /// window.
    #[allow(clippy::too_many_arguments)]
    pub fn with_kernel(
        mut self,
        kernel: Resampling,
        tile: &GeoTransform,
        tile_size: (u32, u32),
        resolution: f64,
        window: &PixelWindow,
        out: &OutGrid,
        crs: &Crs,
    ) -> Placement {
        self.resample = (kernel != Resampling::Nearest).then(|| Resample {
            kernel,
            window: GeoTransform::north_up(
                tile.origin_x + window.col as f64 * resolution,
                tile.origin_y - window.row as f64 * resolution,
                resolution,
                resolution,
            ),
            stored: *window,
            tile: tile_size,
            target: out
                .transform
                .window(self.xs.start as f64, self.ys.start as f64, 1.0, 1.0),
            crs: crs.clone(),
        });
        self
    }

    /// The output rectangle `(columns, rows)` this placement writes.
    pub fn rect(&self) -> (Range<usize>, Range<usize>) {
        (self.xs.clone(), self.ys.clone())
    }
}

/// One observation to paint: observation `obs` of `fragment`, placed by `placement`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layer<'a> {
    /// The fragment holding the observation.
    pub fragment: &'a Fragment,
    /// Index of the observation in the fragment.
    pub obs: usize,
    /// Where the fragment's tile lands.
    pub placement: &'a Placement,
    /// The observation's own scale and offset (its scene declares them), over the
    /// fragment's, for physical values.
    pub scaling: Option<(f32, f32)>,
    /// Fragments of the neighbouring tiles kernels read across the tile's edges (empty for
    /// nearest neighbour).
    pub neighbours: &'a [Neighbour],
}

/// An output element type: `f32` (NaN marks "no valid value") or a native sample type (the
/// fill value marks it).
pub(crate) trait Elem: Copy + PartialEq + Send + Sync + 'static {
    /// True when `self` is the empty marker `empty` (or NaN).
    #[inline(always)]
    fn vacant(self, empty: Self) -> bool {
        #[allow(clippy::eq_op)]
        let nan = self != self;
        (self == empty) | nan
    }
}
impl<T: Copy + PartialEq + Send + Sync + 'static> Elem for T {}

/// One output element as a painter sees it: either not yet written (the first observation
/// of a tile writes its value or the empty marker) or already written (a later observation
/// only replaces the empty marker). Monomorphised, so both are plain loops.
pub(crate) trait Slot<E: Elem> {
    /// True when every element must be written (not yet initialised); otherwise storing the
    /// empty marker changes nothing and may be skipped.
    const MUST_WRITE: bool;
    /// Stores `v` (`empty` = no valid value from this observation).
    fn put(&mut self, v: E, empty: E);
}

impl<E: Elem> Slot<E> for MaybeUninit<E> {
    const MUST_WRITE: bool = true;
    #[inline(always)]
    fn put(&mut self, v: E, _empty: E) {
        self.write(v);
    }
}

impl<E: Elem> Slot<E> for E {
    const MUST_WRITE: bool = false;
    #[inline(always)]
    fn put(&mut self, v: E, empty: E) {
        // Branch-free so fill loops vectorise too.
        *self = if Elem::vacant(*self, empty) { v } else { *self };
    }
}

/// How observations become output elements.
pub(crate) trait Painter: Sync {
    /// The output element type.
    type Elem: Elem;
    /// The marker of pixels without a valid value.
    fn empty(&self) -> Self::Elem;
    /// Paints one layer onto `slab`.
    fn paint<S: Slot<Self::Elem>>(&self, slab: &mut [S], width: usize, layer: &Layer<'_>);
}

/// `f32` output: NaN where invalid; with `physical`, scaled by each observation's scale and
/// offset (its scene's when it declares them, else its fragment's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AsF32 {
    /// Apply scale and offset.
    pub physical: bool,
}

impl Painter for AsF32 {
    type Elem = f32;
    fn empty(&self) -> f32 {
        f32::NAN
    }
    fn paint<S: Slot<f32>>(&self, slab: &mut [S], width: usize, layer: &Layer<'_>) {
        let f = layer.fragment;
        let meta = f.meta();
        let (scale, offset) = match (self.physical, layer.scaling) {
            (false, _) => (1.0, 0.0),
            (true, Some(own)) => own,
            (true, None) => (meta.scale as f32, meta.offset as f32),
        };
        let c = ToF32 {
            scale,
            offset,
            nodata: meta.nodata.map(|v| v as f32),
        };
        macro_rules! typed {
            ($t:ty) => {
                match f.pixels::<$t>(layer.obs) {
                    Ok(px) => paint_typed(px, slab, width, layer, c),
                    // A dtype the catalog check let through cannot be read: nothing valid.
                    Err(_) => paint_invalid(slab, width, layer.placement, f32::NAN),
                }
            };
        }
        match meta.dtype {
            DataType::U8 => typed!(u8),
            DataType::I8 => typed!(i8),
            DataType::U16 => typed!(u16),
            DataType::I16 => typed!(i16),
            DataType::U32 => typed!(u32),
            DataType::I32 => typed!(i32),
            DataType::F32 => typed!(f32),
            DataType::F64 => typed!(f64),
        }
    }
}

/// Native output: samples copied as they are, `fill` where invalid (nodata, NaN, masked).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Native<T> {
    /// The marker of invalid pixels: the nodata value of every fragment painted (exactly), or
    /// NaN for float fragments without one. Callers check this.
    pub fill: T,
}

impl<T: Sample + bytemuck::Pod> Painter for Native<T> {
    type Elem = T;
    fn empty(&self) -> T {
        self.fill
    }
    fn paint<S: Slot<T>>(&self, slab: &mut [S], width: usize, layer: &Layer<'_>) {
        let c = SameType { fill: self.fill };
        match layer.fragment.pixels::<T>(layer.obs) {
            Ok(px) => paint_typed(px, slab, width, layer, c),
            Err(_) => paint_invalid(slab, width, layer.placement, self.fill),
        }
    }
}

/// Paints `layers` (highest priority first) onto `slab` (`width` columns, row-major) and
/// returns it initialised: every element holds the first valid value of its pixel, or the
/// painter's empty marker where no layer has one.
pub(crate) fn paint_slab<'s, P: Painter>(
    slab: &'s mut [MaybeUninit<P::Elem>],
    width: usize,
    layers: &[Layer<'_>],
    painter: &P,
) -> &'s mut [P::Elem] {
    // An invariant of the callers, and what makes every element written: placements are
    // made for this slab's grid.
    assert!(
        layers
            .iter()
            .all(|l| l.placement.out.0 == width
                && l.placement.out.0 * l.placement.out.1 == slab.len()),
        "placements made for another output grid"
    );
    let empty = painter.empty();
    if let [only] = layers {
        if width > 0 && slab.len().is_multiple_of(width) {
            return paint_one(slab, width, only, painter);
        }
    }
    let rects: Vec<(Range<usize>, Range<usize>)> =
        layers.iter().map(|l| l.placement.rect()).collect();
    // Tiles of one grid are either the same rectangle or disjoint on the output grid. Then
    // the first layer of each rectangle writes it, the gaps between rectangles are written
    // once, and only later layers of a rectangle read what is there. Any other overlap (not
    // expected) is filled with the empty marker first and every layer fills.
    let overlaps = |a: &(Range<usize>, Range<usize>), b: &(Range<usize>, Range<usize>)| {
        a.0.start < b.0.end && b.0.start < a.0.end && a.1.start < b.1.end && b.1.start < a.1.end
    };
    let tidy = width > 0
        && slab.len().is_multiple_of(width)
        && rects
            .iter()
            .enumerate()
            .all(|(i, a)| rects[..i].iter().all(|b| a == b || !overlaps(a, b)));
    let mut first = vec![false; layers.len()];
    let mut distinct: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    if tidy {
        for (i, rect) in rects.iter().enumerate() {
            if !distinct.contains(rect) {
                distinct.push(rect.clone());
                first[i] = true;
            }
        }
        for (l, _) in layers.iter().zip(&first).filter(|(_, &f)| f) {
            painter.paint(slab, width, l);
        }
        // Empty where no tile lands: per row, the gaps between the covered column ranges.
        let mut spans: Vec<Range<usize>> = Vec::with_capacity(distinct.len());
        for (y, row) in slab.chunks_exact_mut(width).enumerate() {
            spans.clear();
            spans.extend(
                distinct
                    .iter()
                    .filter(|(_, ys)| ys.contains(&y))
                    .map(|(xs, _)| xs.clone()),
            );
            spans.sort_unstable_by_key(|s| s.start);
            fill_gaps(row, &spans, empty);
        }
    } else {
        slab.fill(MaybeUninit::new(empty));
    }
    // SAFETY: in the tidy case each row is partitioned into the column ranges of the distinct
    // rectangles covering it (written in full by their first layer) and the gaps between them
    // (written just above); otherwise the whole slab was filled.
    let slab = unsafe { assume_written(slab) };
    for (l, _) in layers.iter().zip(&first).filter(|(_, &f)| !f) {
        painter.paint(slab, width, l);
    }
    slab
}

/// [`paint_slab`] of a single layer on a slab of whole rows (a pixel's history paints one
/// per step and band): the layer, then the empty marker around its rectangle.
fn paint_one<'s, P: Painter>(
    slab: &'s mut [MaybeUninit<P::Elem>],
    width: usize,
    layer: &Layer<'_>,
    painter: &P,
) -> &'s mut [P::Elem] {
    painter.paint(slab, width, layer);
    let (xs, ys) = layer.placement.rect();
    for (y, row) in slab.chunks_exact_mut(width).enumerate() {
        let covered = if ys.contains(&y) {
            &[xs.clone()][..]
        } else {
            &[]
        };
        fill_gaps(row, covered, painter.empty());
    }
    // SAFETY: the layer wrote its rectangle and the loop above every other element.
    unsafe { assume_written(slab) }
}

/// Writes `empty` into the columns of `row` outside `covered` (column ranges sorted by their
/// start; they may overlap).
fn fill_gaps<E: Copy>(row: &mut [MaybeUninit<E>], covered: &[Range<usize>], empty: E) {
    let mut x = 0;
    for s in covered {
        row[x..s.start.max(x)].fill(MaybeUninit::new(empty));
        x = x.max(s.end);
    }
    row[x..].fill(MaybeUninit::new(empty));
}

/// The slab as written elements.
///
/// # Safety
/// Every element of `slab` must have been written. Painters do write every element of every
/// row of a placement (`paint_typed`, `paint_invalid`); `MaybeUninit<E>` has the layout of `E`.
unsafe fn assume_written<E>(slab: &mut [MaybeUninit<E>]) -> &mut [E] {
    unsafe { std::slice::from_raw_parts_mut(slab.as_mut_ptr().cast::<E>(), slab.len()) }
}

fn paint_invalid<E: Elem, S: Slot<E>>(slab: &mut [S], width: usize, p: &Placement, empty: E) {
    for y in p.ys.clone() {
        for d in &mut slab[y * width + p.xs.start..y * width + p.xs.end] {
            d.put(empty, empty);
        }
    }
}

/// How one fragment's samples convert, branch-free: the output element of a sample, or the
/// empty marker when it is nodata or NaN.
trait Convert<T: Sample>: Copy {
    /// Output element type.
    type Elem: Elem;
    /// The element for `raw`.
    fn value(&self, raw: T) -> Self::Elem;
    /// The empty marker.
    fn empty(&self) -> Self::Elem;
}

/// Samples to `f32`, optionally scaled.
#[derive(Clone, Copy)]
struct ToF32 {
    scale: f32,
    offset: f32,
    nodata: Option<f32>,
}

impl<T: Sample> Convert<T> for ToF32 {
    type Elem = f32;
    #[inline(always)]
    fn value(&self, raw: T) -> f32 {
        let v = raw.to_f64() as f32;
        #[allow(clippy::eq_op)]
        let ok = (v == v) & self.nodata.is_none_or(|nd| v != nd);
        if ok {
            v * self.scale + self.offset
        } else {
            f32::NAN
        }
    }
    #[inline(always)]
    fn empty(&self) -> f32 {
        f32::NAN
    }
}

/// Samples kept as they are; NaN becomes `fill`. Nodata needs no test: `fill` is the
/// fragments' nodata value (see [`Native`]), so a nodata sample already is `fill`, and for
/// integer samples this is a plain copy.
#[derive(Clone, Copy)]
struct SameType<T> {
    fill: T,
}

impl<T: Sample> Convert<T> for SameType<T> {
    type Elem = T;
    #[inline(always)]
    fn value(&self, raw: T) -> T {
        #[allow(clippy::eq_op)]
        let number = raw == raw;
        if number {
            raw
        } else {
            self.fill
        }
    }
    #[inline(always)]
    fn empty(&self) -> T {
        self.fill
    }
}

/// A run of samples, all valid by their bits: a plain loop the compiler vectorises.
#[inline(always)]
fn run<T: Sample, C: Convert<T>, S: Slot<C::Elem>>(dst: &mut [S], src: &[T], c: C) {
    let empty = c.empty();
    for (d, &s) in dst.iter_mut().zip(src) {
        d.put(c.value(s), empty);
    }
}

/// A run of at most 64 samples with their validity bits (bit `k` for sample `k`).
#[inline(always)]
fn run_bits<T: Sample, C: Convert<T>, S: Slot<C::Elem>>(dst: &mut [S], src: &[T], bits: u64, c: C) {
    let empty = c.empty();
    let all = if dst.len() == 64 {
        u64::MAX
    } else {
        (1u64 << dst.len()) - 1
    };
    if bits & all == all {
        run(dst, src, c);
    } else if bits & all == 0 {
        for d in dst {
            d.put(empty, empty);
        }
    } else {
        for (k, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
            let v = c.value(s);
            d.put(if (bits >> k) & 1 == 1 { v } else { empty }, empty);
        }
    }
}

fn paint_typed<T: Pixel, C: Convert<T>, S: Slot<C::Elem>>(
    pixels: &[T],
    slab: &mut [S],
    width: usize,
    layer: &Layer<'_>,
    c: C,
) {
    let p = layer.placement;
    let empty = c.empty();
    if let Some(r) = &p.resample {
        paint_resampled(pixels, slab, width, layer, c, r);
        return;
    }
    let vacate = |dst: &mut [S]| {
        if S::MUST_WRITE {
            for d in dst {
                d.put(empty, empty);
            }
        }
    };
    // Tile rows outside the stored window hold no valid pixel.
    for y in p.ys.start..p.win_ys.start.max(p.ys.start) {
        vacate(&mut slab[y * width + p.xs.start..y * width + p.xs.end]);
    }
    for y in p.win_ys.end.max(p.ys.start)..p.ys.end {
        vacate(&mut slab[y * width + p.xs.start..y * width + p.xs.end]);
    }
    if p.win_xs.is_empty() {
        for y in p.win_ys.clone() {
            vacate(&mut slab[y * width + p.xs.start..y * width + p.xs.end]);
        }
        return;
    }
    let validity = layer.fragment.validity(layer.obs);
    let bits = validity.as_ref().map(|v| (v.values(), v.offset()));
    let n = p.stride;
    let len = p.win_xs.len();
    let mut scratch = RowScratch {
        converted: Vec::new(),
        expanded: Vec::new(),
    };
    if !p.contiguous {
        let span = p.cols[len - 1] + 1 - p.cols[0];
        scratch.converted = vec![Fresh(empty); span];
        scratch.expanded = vec![Fresh(empty); len];
    }
    let mut expanded_row: Option<usize> = None;
    for (y, &ty) in p.win_ys.clone().zip(&p.rows) {
        let row = y * width;
        vacate(&mut slab[row + p.xs.start..row + p.win_xs.start]);
        vacate(&mut slab[row + p.win_xs.end..row + p.xs.end]);
        let src = &pixels[ty * n..(ty + 1) * n];
        let dst = &mut slab[row + p.win_xs.start..row + p.win_xs.end];
        if p.contiguous {
            let c0 = p.cols[0];
            let bits = bits.map(|(bytes, off)| (bytes, off + ty * n + c0));
            convert_span(dst, &src[c0..c0 + len], bits, c);
        } else {
            // Nearest neighbour off the source lattice (e.g. 30 m onto 10 m): the source
            // row is converted once (validity read 64 bits at a time), expanded through the
            // column table, and reused by every output row that maps to the same source row.
            if expanded_row != Some(ty) {
                let lo = p.cols[0];
                let hi = p.cols[len - 1] + 1;
                let conv = &mut scratch.converted[..hi - lo];
                convert_span(
                    conv,
                    &src[lo..hi],
                    bits.map(|(b, o)| (b, o + ty * n + lo)),
                    c,
                );
                for (e, &tx) in scratch.expanded.iter_mut().zip(&p.cols) {
                    *e = conv[tx - lo];
                }
                expanded_row = Some(ty);
            }
            for (d, &Fresh(v)) in dst.iter_mut().zip(&scratch.expanded) {
                d.put(v, empty);
            }
        }
    }
}

/// An element that is always written: the slot of the scratch rows of [`paint_typed`].
#[derive(Clone, Copy)]
struct Fresh<E>(E);

impl<E: Elem> Slot<E> for Fresh<E> {
    const MUST_WRITE: bool = true;
    #[inline(always)]
    fn put(&mut self, v: E, _empty: E) {
        self.0 = v;
    }
}

/// Scratch rows of the nearest-neighbour path off the source lattice: one source row's
/// converted samples, and the same expanded to the output columns.
struct RowScratch<E> {
    converted: Vec<Fresh<E>>,
    expanded: Vec<Fresh<E>>,
}

/// Converts `src` into `dst` (the empty marker where invalid), reading the validity bits
/// (`bytes`, bit offset of `src[0]`) a word at a time, so fully valid or invalid runs are
/// plain loops.
#[inline(always)]
fn convert_span<T: Sample, C: Convert<T>, S: Slot<C::Elem>>(
    dst: &mut [S],
    src: &[T],
    bits: Option<(&[u8], usize)>,
    c: C,
) {
    let len = src.len();
    match bits {
        None => run(dst, src, c),
        Some((bytes, off)) => {
            let chunks = BitChunks::new(bytes, off, len);
            let mut k = 0;
            for word in chunks.iter() {
                run_bits(&mut dst[k..k + 64], &src[k..k + 64], word, c);
                k += 64;
            }
            if k < len {
                run_bits(&mut dst[k..], &src[k..], chunks.remainder_bits(), c);
            }
        }
    }
}

/// Paints a layer through the warp kernels: the stored window (its nodata and validity bits
/// excluded, as `gdalwarp` excludes nodata), widened across the tile's edges by the same
/// scene's samples in the neighbouring tiles (see [`source_mosaic`]), is warped onto the
/// placement's output rectangle, then converted. So pixels near a tile's edge are
/// interpolated from the samples on both sides, as `gdalwarp` of the scene does.
fn paint_resampled<T: Pixel, C: Convert<T>, S: Slot<C::Elem>>(
    pixels: &[T],
    slab: &mut [S],
    width: usize,
    layer: &Layer<'_>,
    c: C,
    r: &Resample,
) {
    let p = layer.placement;
    let empty = c.empty();
    let stride = p.stride;
    let rows = pixels.len().checked_div(stride).unwrap_or(0);
    let warped = (rows > 0)
        .then(|| {
            let own = ndarray::ArrayView3::from_shape((1, rows, stride), &pixels[..rows * stride])
                .ok()?;
            let (data, mask, transform) = match source_mosaic(own, layer, r) {
                Some((data, mask, transform)) => {
                    (ndarray::CowArray::from(data), Some(mask), transform)
                }
                None => {
                    let mask = layer.fragment.validity(layer.obs).map(|bits| {
                        ndarray::Array2::from_shape_fn((rows, stride), |(y, x)| {
                            u8::from(bits.value(y * stride + x))
                        })
                    });
                    (ndarray::CowArray::from(own), mask, r.window)
                }
            };
            let src = SourceRaster::new(data.view(), transform, r.crs.clone())
                .with_nodata(layer.fragment.meta().nodata)
                .with_mask(mask.as_ref().map(|m| m.view()));
            let dst = TargetGrid::new(r.target, p.xs.len(), p.ys.len(), r.crs.clone());
            warp(&src, &dst, &WarpOptions::new(r.kernel)).ok()
        })
        .flatten();
    let Some(w) = warped else {
        paint_invalid(slab, width, p, empty);
        return;
    };
    for (k, y) in p.ys.clone().enumerate() {
        let dst = &mut slab[y * width + p.xs.start..y * width + p.xs.end];
        let px = w.pixels.index_axis(ndarray::Axis(0), 0);
        let ok = w.valid.index_axis(ndarray::Axis(0), 0);
        for (j, d) in dst.iter_mut().enumerate() {
            let v = if ok[[k, j]] != 0 {
                c.value(px[[k, j]])
            } else {
                empty
            };
            d.put(v, empty);
        }
    }
}

/// The layer's stored window `own` widened by the kernel's margin across every tile edge it
/// reaches, filled with the samples of the same observation (same scene and time) in the
/// neighbouring tiles' fragments: the samples, their validity (validity bits, nodata and NaN
/// of each fragment) and the georeferencing of pixel (0, 0). `None` when no neighbour holds
/// that observation near the edges (the stored window alone is warped then).
fn source_mosaic<T: Pixel>(
    own: ndarray::ArrayView3<'_, T>,
    layer: &Layer<'_>,
    r: &Resample,
) -> Option<(ndarray::Array3<T>, ndarray::Array2<u8>, GeoTransform)> {
    if layer.neighbours.is_empty() {
        return None;
    }
    let w = r.stored;
    let (tw, th) = r.tile;
    let ratio = r.target.pixel_width.abs() / r.window.pixel_width.abs();
    let m = kernel_margin(ratio) as i64;
    let edge = |at: bool| if at { m } else { 0 };
    let (left, top) = (edge(w.col == 0), edge(w.row == 0));
    let (right, bottom) = (edge(w.col + w.width >= tw), edge(w.row + w.height >= th));
    if left + top + right + bottom == 0 {
        return None;
    }
    // The same observation in each neighbour: same time, same scene.
    let f = layer.fragment;
    let (time, scene) = (f.times_micros()[layer.obs], f.scene_id(layer.obs));
    let found: Vec<(&Fragment, usize, (i64, i64))> = layer
        .neighbours
        .iter()
        .filter_map(|n| {
            let times = n.fragment.times_micros();
            let first = times.partition_point(|&t| t < time);
            let j = (first..times.len())
                .take_while(|&j| times[j] == time)
                .find(|&j| n.fragment.scene_id(j) == scene)?;
            Some((n.fragment.as_ref(), j, n.offset))
        })
        .collect();
    if found.is_empty() {
        return None;
    }
    let (_, rows, stride) = own.dim();
    let (ec0, er0) = (w.col as i64 - left, w.row as i64 - top);
    let ew = stride + (left + right) as usize;
    let eh = rows + (top + bottom) as usize;
    let src = own.as_slice()?;
    let mut data = vec![*src.first()?; eh * ew];
    let mut mask = vec![0u8; eh * ew];
    let own_bits = f.validity(layer.obs);
    for (y, row) in src.chunks_exact(stride).enumerate() {
        let at = (y + top as usize) * ew + left as usize;
        data[at..at + stride].copy_from_slice(row);
        let valid = &mut mask[at..at + stride];
        match &own_bits {
            Some(bits) => {
                for (x, m) in valid.iter_mut().enumerate() {
                    *m = u8::from(bits.value(y * stride + x));
                }
            }
            None => valid.fill(1),
        }
    }
    for (nf, j, (oc, or)) in found {
        let Ok(px) = nf.pixels::<T>(j) else {
            continue;
        };
        let nw = nf.window();
        let bits = nf.validity(j);
        let nodata = nf.meta().nodata;
        let (c0, r0) = (oc + nw.col as i64, or + nw.row as i64);
        let cols = c0.max(ec0)..(c0 + nw.width as i64).min(ec0 + ew as i64);
        let rows = r0.max(er0)..(r0 + nw.height as i64).min(er0 + eh as i64);
        for yy in rows {
            for xx in cols.clone() {
                let k = ((yy - r0) * nw.width as i64 + (xx - c0)) as usize;
                let (dy, dx) = ((yy - er0) as usize, (xx - ec0) as usize);
                let v = px[k];
                let raw = v.to_f64();
                #[allow(clippy::eq_op)]
                let ok = raw == raw
                    && nodata.is_none_or(|nd| raw != nd)
                    && bits.as_ref().is_none_or(|b| b.value(k));
                data[dy * ew + dx] = v;
                mask[dy * ew + dx] = u8::from(ok);
            }
        }
    }
    let res = r.window.pixel_width.abs();
    let transform = GeoTransform::north_up(
        r.window.origin_x - left as f64 * res,
        r.window.origin_y + top as f64 * res,
        res,
        res,
    );
    Some((
        ndarray::Array3::from_shape_vec((1, eh, ew), data).ok()?,
        ndarray::Array2::from_shape_vec((eh, ew), mask).ok()?,
        transform,
    ))
}

/// Asks Linux to back a large buffer with transparent huge pages before it is first written:
/// a fresh multi-megabyte cube otherwise costs one page fault per 4 KiB, which on these
/// machines takes longer than painting it. Buffers under 32 MiB (which the allocator usually
/// serves from memory it already has) are left alone, and so is everything off Linux.
pub(crate) fn advise_huge_pages<T>(buf: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let bytes = std::mem::size_of_val(buf);
        if bytes < 32 << 20 {
            return;
        }
        let start = buf.as_mut_ptr() as usize;
        let (a, b) = (
            start.next_multiple_of(HUGE_PAGE),
            (start + bytes) / HUGE_PAGE * HUGE_PAGE,
        );
        if b > a {
            // SAFETY: MADV_HUGEPAGE changes neither the contents nor the validity of the range
            // (whole pages inside `buf`, which is borrowed mutably here); it only lets the
            // kernel back it with 2 MiB pages. A failure (no THP support) is harmless.
            unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{GridSpec, TileId};
    use crate::store::{
        FragmentCompression, FragmentData, FragmentEntry, Observation, PixelBuffer, Snapshot,
        Warehouse, WarehouseConfig,
    };
    use chrono::DateTime;
    use std::sync::Arc;

    /// A small deterministic generator (no test dependency needed).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
    }

    /// One tile's fragment: `obs` observations of random values with nodata and explicit
    /// invalid pixels (some rows fully valid, some fully invalid, some mixed).
    #[allow(clippy::too_many_arguments)]
    fn tile_data(
        rng: &mut Lcg,
        tile: TileId,
        band: &str,
        origin: (f64, f64),
        size: (u32, u32),
        res: f64,
        pixels: fn(&mut Lcg, usize) -> PixelBuffer,
        nodata: Option<f64>,
        obs: usize,
    ) -> FragmentData {
        let (w, h) = size;
        let n = (w * h) as usize;
        let observations = (0..obs)
            .map(|o| {
                let valid: Vec<bool> = (0..n)
                    .map(|i| match (i / w as usize + o) % 4 {
                        0 => true,
                        1 => false,
                        _ => !rng.next().is_multiple_of(5),
                    })
                    .collect();
                Observation {
                    time: DateTime::from_timestamp(1_700_000_000 + o as i64 * 60, 0).unwrap(),
                    scene_id: format!("s{o}"),
                    pixels: pixels(rng, n),
                    valid: Some(arrow_buffer::BooleanBuffer::from(valid)),
                }
            })
            .collect();
        FragmentData {
            tile,
            band: band.into(),
            product: "P".into(),
            dtype: pixels(rng, 1).dtype(),
            nodata,
            scale: 0.5,
            offset: -3.0,
            tile_transform: GeoTransform::north_up(origin.0, origin.1, res, res),
            width: w,
            height: h,
            footprint_lonlat: vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
            resolution: res,
            observations,
        }
    }

    fn u16_pixels(rng: &mut Lcg, n: usize) -> PixelBuffer {
        // Values 0..8 include the nodata value 0 often.
        (0..n)
            .map(|_| (rng.next() % 8) as u16 * 1000)
            .collect::<Vec<u16>>()
            .into()
    }

    fn f32_pixels(rng: &mut Lcg, n: usize) -> PixelBuffer {
        (0..n)
            .map(|_| match rng.next() % 6 {
                0 => f32::NAN,
                v => v as f32 * 0.25 - 0.5,
            })
            .collect::<Vec<f32>>()
            .into()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        snapshot: Snapshot,
        entries: Vec<FragmentEntry>,
    }

    fn warehouse(data: Vec<FragmentData>) -> Fixture {
        warehouse_with(data, FragmentCompression::default())
    }

    fn warehouse_with(data: Vec<FragmentData>, compression: FragmentCompression) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let grid = GridSpec::new(32652, 0.0, 0.0, 1500.0).unwrap();
        let mut config = WarehouseConfig::new(grid);
        config.compression = compression;
        let wh = Warehouse::create(dir.path().join("wh"), config).unwrap();
        let batch = wh.begin_batch();
        let entries = data
            .into_iter()
            .map(|d| batch.write_fragment(d).unwrap())
            .collect();
        batch.commit().unwrap();
        let snapshot = wh.snapshot(None).unwrap();
        Fixture {
            _dir: dir,
            snapshot,
            entries,
        }
    }

    /// The straightforward painter: every output pixel centre looked up in every layer.
    fn reference(
        out: &OutGrid,
        layers: &[(Arc<Fragment>, usize, f64)],
        physical: bool,
    ) -> Vec<f32> {
        let mut v = vec![f32::NAN; out.width * out.height];
        for (f, obs, rs) in layers {
            let m = f.meta();
            // The whole tile, expanded from the stored window.
            let o = f.observation(*obs).unwrap();
            let valid: Vec<bool> = match &o.valid {
                Some(v) => v.iter().collect(),
                None => vec![true; (m.width * m.height) as usize],
            };
            let raw: Vec<f64> = match &o.pixels {
                PixelBuffer::U16(v) => v.iter().map(|&x| x as f64).collect(),
                PixelBuffer::F32(v) => v.iter().map(|&x| x as f64).collect(),
                p => panic!("untested dtype {}", p.dtype()),
            };
            for y in 0..out.height {
                for x in 0..out.width {
                    let (cx, cy) = out.transform.apply(x as f64 + 0.5, y as f64 + 0.5);
                    let col = ((cx - m.transform.origin_x) / rs).floor();
                    let row = ((m.transform.origin_y - cy) / rs).floor();
                    if col < 0.0 || row < 0.0 || col >= m.width as f64 || row >= m.height as f64 {
                        continue;
                    }
                    let i = row as usize * m.width as usize + col as usize;
                    let r = raw[i] as f32;
                    let ok = valid[i] && !r.is_nan() && m.nodata.is_none_or(|nd| r != nd as f32);
                    let d = &mut v[y * out.width + x];
                    if d.is_nan() && ok {
                        *d = if physical {
                            r * m.scale as f32 + m.offset as f32
                        } else {
                            r
                        };
                    }
                }
            }
        }
        v
    }

    /// Paints `order` (indices into the fixture's fragments, observation) both ways and
    /// compares bit for bit (NaN equal to NaN).
    fn check(fx: &Fixture, out: OutGrid, order: &[(usize, usize)], physical: bool) {
        let frags: Vec<Arc<Fragment>> = fx
            .entries
            .iter()
            .map(|e| fx.snapshot.fragment(e).unwrap())
            .collect();
        let placements: Vec<Option<Placement>> = fx
            .entries
            .iter()
            .zip(&frags)
            .map(|(e, f)| Placement::of_fragment(e, f, &out))
            .collect();
        let layers: Vec<Layer<'_>> = order
            .iter()
            .filter_map(|&(fi, obs)| {
                Some(Layer {
                    fragment: &frags[fi],
                    obs,
                    placement: placements[fi].as_ref()?,
                    scaling: None,
                    neighbours: &[],
                })
            })
            .collect();
        // Garbage first: every element must be written.
        let mut slab = vec![MaybeUninit::new(12345.0f32); out.width * out.height];
        let slab = paint_slab(&mut slab, out.width, &layers, &AsF32 { physical });
        let want = reference(
            &out,
            &order
                .iter()
                .map(|&(fi, obs)| (frags[fi].clone(), obs, fx.entries[fi].resolution))
                .collect::<Vec<_>>(),
            physical,
        );
        for (i, (g, w)) in slab.iter().zip(&want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "pixel ({}, {}): painted {g}, reference {w}",
                i % out.width,
                i / out.width
            );
        }
    }

    /// Four 150x100 tiles at 10 m (wider than 64 px, rows not byte aligned) with nodata and
    /// validity bits, two observations each; a 20 m band on the same tiles.
    fn four_tiles() -> Fixture {
        let mut rng = Lcg(7);
        let mut data = Vec::new();
        for (col, row) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let origin = (col as f64 * 1500.0, -(row as f64) * 1000.0);
            data.push(tile_data(
                &mut rng,
                TileId::new(col, row),
                "B04",
                origin,
                (150, 100),
                10.0,
                u16_pixels,
                Some(0.0),
                2,
            ));
        }
        data.push(tile_data(
            &mut rng,
            TileId::new(0, 0),
            "B11",
            (0.0, 0.0),
            (75, 50),
            20.0,
            u16_pixels,
            Some(0.0),
            2,
        ));
        data.push(tile_data(
            &mut rng,
            TileId::new(1, 0),
            "F",
            (1500.0, 0.0),
            (150, 100),
            10.0,
            f32_pixels,
            None,
            2,
        ));
        warehouse(data)
    }

    #[test]
    fn painting_matches_the_reference_on_partial_and_unaligned_boxes() {
        let fx = four_tiles();
        let grid = |x0: f64, y0: f64, r: f64, w: usize, h: usize| OutGrid {
            transform: GeoTransform::north_up(x0, y0, r, r),
            width: w,
            height: h,
        };
        let outs = [
            // Exactly one tile; a box across all four, cut at odd pixels; a box larger than
            // the data (uncovered margins); a box off the grid's pixel lattice; coarser and
            // finer output resolutions.
            grid(0.0, 0.0, 10.0, 150, 100),
            grid(730.0, -370.0, 10.0, 217, 93),
            grid(-200.0, 300.0, 10.0, 360, 260),
            grid(733.0, -371.0, 10.0, 120, 90),
            grid(-40.0, 40.0, 30.0, 110, 75),
            grid(1410.0, -910.0, 5.0, 41, 37),
            grid(5000.0, 5000.0, 10.0, 8, 8),
        ];
        let orders: [&[(usize, usize)]; 5] = [
            // One observation per tile; two observations of each tile (the later fills);
            // the 20 m band; a float band with NaN and no nodata; nothing at all.
            &[(0, 0), (1, 0), (2, 0), (3, 0)],
            &[
                (0, 1),
                (0, 0),
                (1, 0),
                (2, 1),
                (3, 0),
                (1, 1),
                (3, 1),
                (2, 0),
            ],
            &[(4, 0), (4, 1), (1, 1)],
            &[(5, 1), (5, 0), (0, 0)],
            &[],
        ];
        for out in outs {
            for order in orders {
                for physical in [false, true] {
                    check(&fx, out, order, physical);
                }
            }
        }
    }

    /// Like [`four_tiles`], but each observation is valid only in a rectangle of its tile
    /// (a different one per observation and tile), so the fragments are cropped; one
    /// observation has no valid pixel at all.
    fn cropped_tiles(compression: FragmentCompression) -> Fixture {
        let mut rng = Lcg(3);
        let mut data = Vec::new();
        for (k, (col, row)) in [(0, 0), (1, 0), (0, 1), (1, 1)].into_iter().enumerate() {
            let origin = (col as f64 * 1500.0, -(row as f64) * 1000.0);
            let mut d = tile_data(
                &mut rng,
                TileId::new(col, row),
                "B04",
                origin,
                (150, 100),
                10.0,
                u16_pixels,
                Some(0.0),
                3,
            );
            for (o, obs) in d.observations.iter_mut().enumerate() {
                let (x0, x1) = (3 + 13 * k + 7 * o, 150 - 11 * o - 20 * (k % 2));
                let (y0, y1) = (2 + 5 * o + 9 * k, 97 - 17 * k);
                let bits: Vec<bool> = obs
                    .valid
                    .as_ref()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let (x, y) = (i % 150, i / 150);
                        v && (x0..x1).contains(&x) && (y0..y1).contains(&y) && !(k == 3 && o == 1)
                    })
                    .collect();
                obs.valid = Some(arrow_buffer::BooleanBuffer::from(bits));
            }
            data.push(d);
        }
        warehouse_with(data, compression)
    }

    #[test]
    fn painting_cropped_fragments_matches_the_reference() {
        for compression in [FragmentCompression::None, FragmentCompression::Zstd] {
            let fx = cropped_tiles(compression);
            for e in &fx.entries {
                let w = e.window;
                assert!(!w.is_full(e.width, e.height), "{:?} not cropped", e.tile);
            }
            let grid = |x0: f64, y0: f64, r: f64, w: usize, h: usize| OutGrid {
                transform: GeoTransform::north_up(x0, y0, r, r),
                width: w,
                height: h,
            };
            for out in [
                grid(0.0, 0.0, 10.0, 150, 100),
                grid(730.0, -370.0, 10.0, 217, 93),
                grid(-200.0, 300.0, 10.0, 360, 260),
                grid(733.0, -371.0, 10.0, 120, 90),
                grid(-40.0, 40.0, 30.0, 110, 75),
                grid(1410.0, -910.0, 5.0, 41, 37),
                // Single pixels: inside a window, in a tile outside its window.
                grid(300.0, -200.0, 10.0, 1, 1),
                grid(5.0, -5.0, 10.0, 1, 1),
            ] {
                for order in [
                    &[(0, 0), (1, 0), (2, 0), (3, 0)][..],
                    &[(0, 2), (0, 0), (0, 1), (3, 1), (3, 2), (1, 1), (2, 2)][..],
                ] {
                    for physical in [false, true] {
                        check(&fx, out, order, physical);
                    }
                }
            }
        }
    }

    #[test]
    fn native_painting_matches_f32_painting() {
        let fx = four_tiles();
        let frags: Vec<Arc<Fragment>> = fx
            .entries
            .iter()
            .map(|e| fx.snapshot.fragment(e).unwrap())
            .collect();
        let out = OutGrid {
            transform: GeoTransform::north_up(730.0, -370.0, 10.0, 10.0),
            width: 217,
            height: 93,
        };
        let placements: Vec<Option<Placement>> = fx
            .entries
            .iter()
            .zip(&frags)
            .map(|(e, f)| Placement::of_fragment(e, f, &out))
            .collect();
        let layers = |order: &[(usize, usize)]| -> Vec<Layer<'_>> {
            order
                .iter()
                .filter_map(|&(fi, obs)| {
                    Some(Layer {
                        fragment: &frags[fi],
                        obs,
                        placement: placements[fi].as_ref()?,
                        scaling: None,
                        neighbours: &[],
                    })
                })
                .collect()
        };
        let n = out.width * out.height;
        let f32_slab = |order: &[(usize, usize)]| {
            let mut slab = vec![MaybeUninit::new(7.0f32); n];
            paint_slab(
                &mut slab,
                out.width,
                &layers(order),
                &AsF32 { physical: false },
            )
            .to_vec()
        };
        // u16 bands (nodata 0) with two observations per tile and the 20 m band.
        for order in [
            &[
                (0, 1),
                (0, 0),
                (1, 0),
                (2, 1),
                (3, 0),
                (1, 1),
                (3, 1),
                (2, 0),
            ][..],
            &[(4, 0), (4, 1)][..],
        ] {
            let mut slab = vec![MaybeUninit::new(7u16); n];
            let native = paint_slab(&mut slab, out.width, &layers(order), &Native { fill: 0u16 });
            for (i, (&v, w)) in native.iter().zip(f32_slab(order)).enumerate() {
                assert_eq!(v == 0, w.is_nan(), "pixel {i}");
                assert!(v == 0 || v as f32 == w, "pixel {i}: {v} vs {w}");
            }
        }
        // A float band without nodata: NaN is the fill.
        let order = &[(5, 1), (5, 0)][..];
        let mut slab = vec![MaybeUninit::new(7.0f32); n];
        let native = paint_slab(
            &mut slab,
            out.width,
            &layers(order),
            &Native { fill: f32::NAN },
        );
        for (i, (&v, w)) in native.iter().zip(f32_slab(order)).enumerate() {
            assert!(
                v == w || (v.is_nan() && w.is_nan()),
                "pixel {i}: {v} vs {w}"
            );
        }
    }

    #[test]
    fn overlapping_unequal_rectangles_fall_back_to_fill() {
        // A 20 m tile offset by half a tile overlaps two 10 m tiles partly: not the grid's
        // identical-or-disjoint layout, so the slab is NaN-filled first.
        let mut rng = Lcg(11);
        let data = vec![
            tile_data(
                &mut rng,
                TileId::new(0, 0),
                "A",
                (0.0, 0.0),
                (150, 100),
                10.0,
                u16_pixels,
                Some(0.0),
                1,
            ),
            tile_data(
                &mut rng,
                TileId::new(1, 0),
                "A",
                (1500.0, 0.0),
                (150, 100),
                10.0,
                u16_pixels,
                Some(0.0),
                1,
            ),
            tile_data(
                &mut rng,
                TileId::new(0, 1),
                "B",
                (750.0, -300.0),
                (75, 50),
                20.0,
                u16_pixels,
                Some(0.0),
                1,
            ),
        ];
        let fx = warehouse(data);
        let out = OutGrid {
            transform: GeoTransform::north_up(-100.0, 100.0, 10.0, 10.0),
            width: 330,
            height: 150,
        };
        check(&fx, out, &[(0, 0), (2, 0), (1, 0)], false);
        check(&fx, out, &[(2, 0), (1, 0), (0, 0)], true);
    }
}
