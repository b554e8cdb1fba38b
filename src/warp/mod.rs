//! Warping a scene window onto one grid tile, in pure Rust.
//!
//! Input is a raster already in memory ([`SourceRaster`]: bands as an `ArrayView3` (band, y,
//! x), its geotransform and CRS, optional nodata and validity mask); output is one tile
//! ([`TargetGrid`]) of the same sample type with a per-band validity mask ([`Warped`]).
//! [`plan_read`] tells the caller which overview level and pixel window to read first.
//!
//! The path is chosen automatically ([`WarpPath`]):
//! 1. **Copy** — same CRS and pixel size, integer pixel offset: rows are copied bit-exact.
//! 2. **Separable** — same CRS, north-up, other resolution or sub-pixel offset: per-axis tap
//!    tables, a horizontal then a vertical pass over contiguous rows.
//! 3. **General** — other CRS (or rotated grids): an approximate transformer (exact
//!    projection at a few points per row, linear in between, max error 0.125 source pixel by
//!    default like GDAL) feeds per-row source coordinates to the kernels.
//!
//! Kernels follow GDAL (`gdalwarp -r`): `near`, `bilinear`, `cubic` (Keys a = -0.5, widened
//! when downsampling), `average` (area-weighted) and `mode` (most frequent valid value).
//! Nodata and masked source pixels never contribute: interpolation weights are renormalised
//! over valid pixels, and a target pixel with no valid contribution is invalid. Integer
//! outputs are rounded to nearest and saturated.
//!
//! ```
//! use ndarray::Array3;
//! use pixelquery::crs::Crs;
//! use pixelquery::geo::GeoTransform;
//! use pixelquery::warp::{warp, Resampling, SourceRaster, TargetGrid, WarpOptions, WarpPath};
//!
//! let utm = Crs::from_epsg(32652).unwrap();
//! let pixels = Array3::from_shape_fn((1, 4, 4), |(_, y, x)| (10 * y + x) as u16);
//! let src = SourceRaster::new(
//!     pixels.view(),
//!     GeoTransform::north_up(1000.0, 2000.0, 10.0, 10.0),
//!     utm.clone(),
//! )
//! .with_nodata(Some(0.0));
//! // A 2x2 tile one pixel in from the top-left corner: an aligned copy.
//! let dst = TargetGrid::new(GeoTransform::north_up(1010.0, 1990.0, 10.0, 10.0), 2, 2, utm);
//! let out = warp(&src, &dst, &WarpOptions::new(Resampling::Bilinear)).unwrap();
//! assert_eq!(out.path, WarpPath::Copy);
//! assert_eq!(out.pixels.as_slice().unwrap(), &[11, 12, 21, 22]);
//! assert!(!out.is_empty);
//! ```

mod approx;
mod copy;
mod general;
mod kernel;
mod mode;
mod plan;
mod separable;
mod validity;

pub(crate) use copy::aligned_offset;
pub use plan::{plan_read, ReadPlan, SceneLayout, Window};

use crate::crs::{self, Crs};
use crate::dtype::Sample;
use crate::geo::GeoTransform;
use ndarray::{Array3, ArrayView2, ArrayView3, Axis};
use std::fmt;
use std::str::FromStr;

/// Errors from warping and read planning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source raster has no pixels or no bands.
    #[error("source raster is empty (no bands or zero width/height)")]
    EmptySource,
    /// The target grid has no pixels or is too large to allocate safely.
    #[error("invalid target size {width} x {height} x {bands} bands (at most {MAX_TARGET_SAMPLES} samples)")]
    TargetSize {
        /// Target width.
        width: usize,
        /// Target height.
        height: usize,
        /// Bands to produce.
        bands: usize,
    },
    /// The validity mask does not have the raster's shape.
    #[error("mask shape {mask:?} does not match raster shape {raster:?} (height, width)")]
    MaskShape {
        /// Mask (height, width).
        mask: (usize, usize),
        /// Raster (height, width).
        raster: (usize, usize),
    },
    /// A geotransform that cannot be inverted or is not finite.
    #[error("{which} geotransform is singular or not finite")]
    SingularTransform {
        /// `"source"` or `"target"`.
        which: &'static str,
    },
    /// An overview size that is zero or larger than the full resolution.
    #[error("invalid overview size {width} x {height}")]
    Overview {
        /// Overview width.
        width: u32,
        /// Overview height.
        height: u32,
    },
    /// The approximation error threshold is negative or not finite.
    #[error("invalid max error {0}: must be finite and >= 0 (source pixels)")]
    MaxError(f64),
    /// CRS failure.
    #[error(transparent)]
    Crs(#[from] crs::Error),
    /// An unknown resampling name.
    #[error("unknown resampling {0:?}: expected near, bilinear, cubic, average or mode")]
    ResamplingName(String),
}

/// Largest target (width x height x bands) a single warp will allocate.
pub const MAX_TARGET_SAMPLES: usize = 1 << 28;

/// Resampling kernel, named as in `gdalwarp -r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Resampling {
    /// Nearest neighbour: the source pixel containing the target pixel centre.
    #[default]
    Nearest,
    /// Bilinear interpolation (2x2 taps, widened when downsampling).
    Bilinear,
    /// Cubic convolution, a = -0.5 (4x4 taps, widened when downsampling).
    Cubic,
    /// Area-weighted mean of the source pixels the target pixel covers (for downsampling).
    Average,
    /// Most frequent valid value of the covered source pixels (class and QA bands).
    Mode,
}

impl Resampling {
    /// The `gdalwarp -r` name.
    pub fn name(self) -> &'static str {
        match self {
            Resampling::Nearest => "near",
            Resampling::Bilinear => "bilinear",
            Resampling::Cubic => "cubic",
            Resampling::Average => "average",
            Resampling::Mode => "mode",
        }
    }
}

impl fmt::Display for Resampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Resampling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "near" | "nearest" => Resampling::Nearest,
            "bilinear" => Resampling::Bilinear,
            "cubic" => Resampling::Cubic,
            "average" | "mean" => Resampling::Average,
            "mode" => Resampling::Mode,
            _ => return Err(Error::ResamplingName(s.to_string())),
        })
    }
}

/// A source raster in memory: the window that was read, georeferenced.
#[derive(Debug, Clone)]
pub struct SourceRaster<'a, T> {
    /// Pixels, (band, y, x).
    pub data: ArrayView3<'a, T>,
    /// Geotransform of `data`'s top-left pixel (the window's transform).
    pub transform: GeoTransform,
    /// CRS of the transform.
    pub crs: Crs,
    /// Nodata value (GDAL convention: one `f64` for all bands; NaN allowed for floats).
    pub nodata: Option<f64>,
    /// Per-pixel validity (y, x), non-zero = valid (e.g. a GDAL internal mask, 255 = valid).
    pub mask: Option<ArrayView2<'a, u8>>,
}

impl<'a, T: Sample> SourceRaster<'a, T> {
    /// A source with no nodata and no mask.
    pub fn new(data: ArrayView3<'a, T>, transform: GeoTransform, crs: Crs) -> Self {
        SourceRaster {
            data,
            transform,
            crs,
            nodata: None,
            mask: None,
        }
    }

    /// Sets the nodata value.
    pub fn with_nodata(mut self, nodata: Option<f64>) -> Self {
        self.nodata = nodata;
        self
    }

    /// Sets the validity mask.
    pub fn with_mask(mut self, mask: Option<ArrayView2<'a, u8>>) -> Self {
        self.mask = mask;
        self
    }

    /// The same source restricted to one band (for warping bands one at a time).
    pub fn band(&self, band: usize) -> Option<SourceRaster<'a, T>> {
        if band >= self.data.len_of(Axis(0)) {
            return None;
        }
        let mut one = self.clone();
        one.data = self.data.slice_move(ndarray::s![band..band + 1, .., ..]);
        Some(one)
    }
}

/// The target: one grid tile (or any north-up or rotated grid).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGrid {
    /// Geotransform of the target's top-left pixel.
    pub transform: GeoTransform,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Target CRS.
    pub crs: Crs,
}

impl TargetGrid {
    /// A target grid.
    pub fn new(transform: GeoTransform, width: usize, height: usize, crs: Crs) -> Self {
        TargetGrid {
            transform,
            width,
            height,
            crs,
        }
    }

    /// Checks size and transform.
    fn check(&self) -> Result<(), Error> {
        self.check_samples(1)?;
        if self.transform.inverse().is_none()
            || !self.transform.to_gdal().iter().all(|v| v.is_finite())
        {
            return Err(Error::SingularTransform { which: "target" });
        }
        Ok(())
    }

    fn check_samples(&self, bands: usize) -> Result<(), Error> {
        let n = self
            .width
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(bands.max(1)));
        match n {
            Some(n) if n > 0 && n <= MAX_TARGET_SAMPLES => Ok(()),
            _ => Err(Error::TargetSize {
                width: self.width,
                height: self.height,
                bands,
            }),
        }
    }
}

/// Warp settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarpOptions {
    /// Kernel.
    pub resampling: Resampling,
    /// Largest error of the approximate transformer, in source pixels (GDAL's `-et`,
    /// default 0.125); 0 projects every pixel exactly.
    pub max_error: f64,
}

impl WarpOptions {
    /// Options with a kernel and the default error threshold.
    pub fn new(resampling: Resampling) -> Self {
        WarpOptions {
            resampling,
            max_error: 0.125,
        }
    }
}

impl Default for WarpOptions {
    fn default() -> Self {
        WarpOptions::new(Resampling::Nearest)
    }
}

/// Which implementation a warp used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarpPath {
    /// Aligned grids: bit-exact row copy.
    Copy,
    /// Same CRS, separable kernels over rows.
    Separable,
    /// Other CRS or rotated grids: approximate transformer.
    General,
}

/// One warped tile.
#[derive(Debug, Clone, PartialEq)]
pub struct Warped<T> {
    /// Pixels, (band, y, x); invalid pixels hold the nodata value (0 without one).
    pub pixels: Array3<T>,
    /// Validity per band, (band, y, x): 1 = valid, 0 = no valid source contribution.
    pub valid: Array3<u8>,
    /// True when no pixel of any band is valid (the scene does not cover the tile).
    pub is_empty: bool,
    /// The path taken.
    pub path: WarpPath,
}

impl<T> Warped<T> {
    /// Number of valid pixels over all bands.
    pub fn valid_count(&self) -> usize {
        self.valid.iter().filter(|&&v| v != 0).count()
    }
}

/// Band `b` of a standard-layout (band, y, x) array as a slice of `n` samples.
fn band_slice<'a, T>(
    data: &'a ndarray::CowArray<'_, T, ndarray::Ix3>,
    b: usize,
    n: usize,
) -> &'a [T] {
    // `as_standard_layout` guarantees a contiguous buffer.
    let all = data.as_slice().unwrap_or(&[]);
    all.get(b * n..(b + 1) * n).unwrap_or(&[])
}

/// Warps all bands of `src` onto `dst` (use [`SourceRaster::band`] for one band).
pub fn warp<T: Sample>(
    src: &SourceRaster<'_, T>,
    dst: &TargetGrid,
    opts: &WarpOptions,
) -> Result<Warped<T>, Error> {
    let (bands, sh, sw) = src.data.dim();
    if bands == 0 || sh == 0 || sw == 0 {
        return Err(Error::EmptySource);
    }
    if let Some(m) = &src.mask {
        if m.dim() != (sh, sw) {
            return Err(Error::MaskShape {
                mask: m.dim(),
                raster: (sh, sw),
            });
        }
    }
    dst.check()?;
    dst.check_samples(bands)?;
    if !(opts.max_error.is_finite() && opts.max_error >= 0.0) {
        return Err(Error::MaxError(opts.max_error));
    }
    if src.transform.inverse().is_none() || !src.transform.to_gdal().iter().all(|v| v.is_finite()) {
        return Err(Error::SingularTransform { which: "source" });
    }
    let (w, h) = (dst.width, dst.height);
    let fill = src.nodata.map(T::from_f64).unwrap_or_default();
    let test = validity::NodataTest::<T>::new(src.nodata);

    let same_crs = src.crs == dst.crs;
    let aligned = if same_crs {
        copy::aligned_offset(&src.transform, &dst.transform)
    } else {
        None
    };
    let path = if aligned.is_some() {
        WarpPath::Copy
    } else if same_crs && src.transform.is_north_up() && dst.transform.is_north_up() {
        WarpPath::Separable
    } else {
        WarpPath::General
    };

    enum Prepared {
        Copy((i64, i64)),
        Separable(Box<separable::Plan>),
        General(approx::Approx),
    }
    let prepared = match (path, aligned) {
        (WarpPath::Copy, Some(off)) => Prepared::Copy(off),
        (WarpPath::Separable, _) | (WarpPath::Copy, None) => {
            let maps = separable::AxisMaps::new(&src.transform, &dst.transform, w, h);
            Prepared::Separable(Box::new(separable::Plan::new(
                opts.resampling,
                &maps,
                &src.transform,
                &dst.transform,
                sw,
                sh,
            )))
        }
        (WarpPath::General, _) => {
            let px =
                approx::PixelTransform::new(&src.transform, &src.crs, &dst.transform, &dst.crs)
                    .ok_or(Error::SingularTransform { which: "source" })?;
            Prepared::General(approx::Approx::new(px, opts.max_error))
        }
    };

    let (pixels, valid) = if let Prepared::Copy(off) = prepared {
        // Straight from the (possibly strided) view, each output element written once.
        let (mut pixels, mut valid) = (
            Vec::with_capacity(bands * h * w),
            Vec::with_capacity(bands * h * w),
        );
        for b in 0..bands {
            let band = src.data.index_axis(Axis(0), b);
            copy::copy_band(
                band,
                src.mask,
                test,
                off,
                fill,
                &mut pixels,
                &mut valid,
                (w, h),
            );
        }
        let shape = (bands, h, w);
        (
            Array3::from_shape_vec(shape, pixels).map_err(|_| Error::EmptySource)?,
            Array3::from_shape_vec(shape, valid).map_err(|_| Error::EmptySource)?,
        )
    } else {
        let mut pixels = Array3::from_elem((bands, h, w), fill);
        let mut valid = Array3::zeros((bands, h, w));
        let data = src.data.as_standard_layout();
        let band_valid: Vec<Vec<u8>> = (0..bands)
            .map(|b| validity::band_validity(data.index_axis(Axis(0), b), test, src.mask))
            .collect();
        match &prepared {
            Prepared::General(ap) => {
                let g = general::General::new(ap, opts.resampling, w, h, sw, sh);
                let srcs: Vec<general::Band<'_, T>> = (0..bands)
                    .map(|b| general::Band {
                        src: band_slice(&data, b, sh * sw),
                        valid: &band_valid[b],
                        src_w: sw,
                    })
                    .collect();
                // Freshly allocated standard-layout arrays: both slices exist.
                if let (Some(out), Some(ov)) = (pixels.as_slice_mut(), valid.as_slice_mut()) {
                    g.run(&srcs, out, ov);
                }
            }
            Prepared::Separable(plan) => {
                for (b, bv) in band_valid.iter().enumerate() {
                    let mut out_b = pixels.index_axis_mut(Axis(0), b);
                    let mut val_b = valid.index_axis_mut(Axis(0), b);
                    let (Some(out), Some(ov)) = (out_b.as_slice_mut(), val_b.as_slice_mut()) else {
                        unreachable!("new arrays are contiguous")
                    };
                    plan.run(data.index_axis(Axis(0), b), bv, out, ov, w);
                }
            }
            Prepared::Copy(_) => {}
        }
        (pixels, valid)
    };
    // Validity bytes are 0 or 1: a memchr for 1 is the fast emptiness test.
    let is_empty = !match valid.as_slice() {
        Some(v) => v.contains(&1),
        None => valid.iter().any(|&v| v != 0),
    };
    Ok(Warped {
        pixels,
        valid,
        is_empty,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn utm() -> Crs {
        Crs::from_epsg(32652).unwrap()
    }

    fn ramp(h: usize, w: usize) -> Array3<u16> {
        Array3::from_shape_fn((1, h, w), |(_, y, x)| (100 + 3 * x + 7 * y) as u16)
    }

    #[test]
    fn resampling_names_round_trip() {
        for r in [
            Resampling::Nearest,
            Resampling::Bilinear,
            Resampling::Cubic,
            Resampling::Average,
            Resampling::Mode,
        ] {
            assert_eq!(r.name().parse::<Resampling>().unwrap(), r);
        }
        assert!("lanczos".parse::<Resampling>().is_err());
    }

    #[test]
    fn paths_are_chosen_automatically() {
        let px = ramp(16, 16);
        let sgt = GeoTransform::north_up(1000.0, 2000.0, 10.0, 10.0);
        let src = SourceRaster::new(px.view(), sgt, utm());
        let o = WarpOptions::new(Resampling::Bilinear);
        let t = TargetGrid::new(
            GeoTransform::north_up(1020.0, 1980.0, 10.0, 10.0),
            8,
            8,
            utm(),
        );
        assert_eq!(warp(&src, &t, &o).unwrap().path, WarpPath::Copy);
        let t = TargetGrid::new(
            GeoTransform::north_up(1020.0, 1980.0, 20.0, 20.0),
            4,
            4,
            utm(),
        );
        assert_eq!(warp(&src, &t, &o).unwrap().path, WarpPath::Separable);
        let t = TargetGrid::new(
            GeoTransform::north_up(1025.0, 1980.0, 10.0, 10.0),
            4,
            4,
            utm(),
        );
        assert_eq!(warp(&src, &t, &o).unwrap().path, WarpPath::Separable);
        let t = TargetGrid::new(
            GeoTransform::north_up(1020.0, 1980.0, 10.0, 10.0),
            4,
            4,
            Crs::from_epsg(32651).unwrap(),
        );
        assert_eq!(warp(&src, &t, &o).unwrap().path, WarpPath::General);
    }

    #[test]
    fn linear_ramp_is_reproduced_by_every_interpolating_kernel_on_every_path() {
        // Bilinear and cubic reproduce a linear function exactly away from the edges; the
        // general path (identity CRS via a rotated-free but forced-general transform) must
        // agree with the separable one.
        let px = Array3::from_shape_fn((1, 40, 40), |(_, y, x)| (1000 + 30 * x + 70 * y) as u16);
        let sgt = GeoTransform::north_up(0.0, 0.0, 10.0, 10.0);
        let src = SourceRaster::new(px.view(), sgt, utm());
        let dgt = GeoTransform::north_up(103.0, -104.0, 5.0, 5.0);
        let t = TargetGrid::new(dgt, 40, 40, utm());
        for r in [Resampling::Bilinear, Resampling::Cubic] {
            let out = warp(&src, &t, &WarpOptions::new(r)).unwrap();
            assert_eq!(out.path, WarpPath::Separable);
            for y in 0..40 {
                for x in 0..40 {
                    let sx = (103.0 + 5.0 * (x as f64 + 0.5)) / 10.0 - 0.5;
                    let sy = (104.0 + 5.0 * (y as f64 + 0.5)) / 10.0 - 0.5;
                    let expect = 1000.0 + 30.0 * sx + 70.0 * sy;
                    let got = out.pixels[[0, y, x]] as f64;
                    assert!(
                        (got - expect).abs() <= 0.5 + 1e-9,
                        "{r} {x},{y}: {got} vs {expect}"
                    );
                }
            }
        }
    }

    #[test]
    fn general_path_matches_separable_for_same_crs_rotated_by_zero() {
        // Force the general path with a tiny rotation term that does not move any centre by
        // more than 1e-6 px, then compare with the separable path.
        let px = ramp(30, 30);
        let sgt = GeoTransform::north_up(0.0, 0.0, 10.0, 10.0);
        let src = SourceRaster::new(px.view(), sgt, utm()).with_nodata(Some(0.0));
        let mut rot = GeoTransform::north_up(33.0, -27.0, 7.0, 7.0);
        let t_sep = TargetGrid::new(rot, 30, 30, utm());
        rot.row_rotation = 1e-9;
        let t_gen = TargetGrid::new(rot, 30, 30, utm());
        for r in [
            Resampling::Nearest,
            Resampling::Bilinear,
            Resampling::Cubic,
            Resampling::Average,
            Resampling::Mode,
        ] {
            let a = warp(&src, &t_sep, &WarpOptions::new(r)).unwrap();
            let b = warp(&src, &t_gen, &WarpOptions::new(r)).unwrap();
            assert_eq!(a.path, WarpPath::Separable);
            assert_eq!(b.path, WarpPath::General);
            assert_eq!(a.valid, b.valid, "{r}");
            let diff = a
                .pixels
                .iter()
                .zip(b.pixels.iter())
                .map(|(&x, &y)| (x as i32 - y as i32).abs())
                .max()
                .unwrap();
            assert!(diff <= 1, "{r}: {diff}");
        }
    }

    #[test]
    fn nodata_never_bleeds() {
        // Left half nodata (0), right half 1000: no output pixel may take a value below 1000.
        let px = Array3::from_shape_fn((1, 20, 20), |(_, _, x)| if x < 10 { 0u16 } else { 1000 });
        let sgt = GeoTransform::north_up(0.0, 0.0, 10.0, 10.0);
        let src = SourceRaster::new(px.view(), sgt, utm()).with_nodata(Some(0.0));
        let t = TargetGrid::new(GeoTransform::north_up(3.0, -3.0, 7.0, 7.0), 27, 27, utm());
        for r in [
            Resampling::Nearest,
            Resampling::Bilinear,
            Resampling::Cubic,
            Resampling::Average,
            Resampling::Mode,
        ] {
            let out = warp(&src, &t, &WarpOptions::new(r)).unwrap();
            for (v, ok) in out.pixels.iter().zip(out.valid.iter()) {
                if *ok != 0 {
                    assert_eq!(*v, 1000, "{r}");
                } else {
                    assert_eq!(*v, 0, "{r}");
                }
            }
            assert!(!out.is_empty);
        }
    }

    #[test]
    fn mask_is_honoured_and_empty_tiles_reported() {
        let px = ramp(8, 8);
        let mut mask = Array2::from_elem((8, 8), 255u8);
        mask[[2, 3]] = 0;
        let sgt = GeoTransform::north_up(0.0, 0.0, 1.0, 1.0);
        let src = SourceRaster::new(px.view(), sgt, utm()).with_mask(Some(mask.view()));
        let t = TargetGrid::new(sgt, 8, 8, utm());
        let out = warp(&src, &t, &WarpOptions::default()).unwrap();
        assert_eq!(out.valid[[0, 2, 3]], 0);
        assert_eq!(out.valid_count(), 63);
        let far = TargetGrid::new(GeoTransform::north_up(500.0, 0.0, 1.0, 1.0), 8, 8, utm());
        for r in [Resampling::Nearest, Resampling::Cubic, Resampling::Average] {
            assert!(warp(&src, &far, &WarpOptions::new(r)).unwrap().is_empty);
        }
        let bad = Array2::from_elem((3, 3), 255u8);
        let src2 = src.clone().with_mask(Some(bad.view()));
        assert!(matches!(
            warp(&src2, &t, &WarpOptions::default()),
            Err(Error::MaskShape { .. })
        ));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let px = ramp(4, 4);
        let sgt = GeoTransform::north_up(0.0, 0.0, 1.0, 1.0);
        let src = SourceRaster::new(px.view(), sgt, utm());
        let o = WarpOptions::default();
        let zero = TargetGrid::new(sgt, 0, 4, utm());
        assert!(matches!(
            warp(&src, &zero, &o),
            Err(Error::TargetSize { .. })
        ));
        let huge = TargetGrid::new(sgt, 1 << 20, 1 << 20, utm());
        assert!(matches!(
            warp(&src, &huge, &o),
            Err(Error::TargetSize { .. })
        ));
        let singular = TargetGrid::new(GeoTransform::from_gdal([0.0; 6]), 4, 4, utm());
        assert!(warp(&src, &singular, &o).is_err());
        let mut s2 = src.clone();
        s2.transform = GeoTransform::from_gdal([f64::NAN, 1.0, 0.0, 0.0, 0.0, -1.0]);
        assert!(warp(&s2, &TargetGrid::new(sgt, 4, 4, utm()), &o).is_err());
        let empty = Array3::<u16>::zeros((0, 4, 4));
        let s3 = SourceRaster::new(empty.view(), sgt, utm());
        assert!(matches!(
            warp(&s3, &TargetGrid::new(sgt, 4, 4, utm()), &o),
            Err(Error::EmptySource)
        ));
        let o = WarpOptions {
            max_error: f64::NAN,
            ..o
        };
        assert!(warp(&src, &TargetGrid::new(sgt, 4, 4, utm()), &o).is_err());
        assert!(src.band(1).is_none() && src.band(0).is_some());
    }

    #[test]
    fn planned_window_gives_the_same_tile_as_the_whole_scene() {
        // A 300x300 scene at 10 m in UTM 52N with a nodata hole; targets in the same CRS
        // (shifted, coarser) and in lon/lat, some crossing the scene edge. Warping only the
        // planned window must give exactly what warping the whole scene gives.
        let px = Array3::from_shape_fn((2, 300, 300), |(b, y, x)| {
            if (120..140).contains(&x) && (60..90).contains(&y) {
                0u16
            } else {
                (1000 + 7 * x + 3 * y + 50 * b + (x * y) % 13) as u16
            }
        });
        let sgt = GeoTransform::north_up(400_000.0, 4_040_000.0, 10.0, 10.0);
        let full = SourceRaster::new(px.view(), sgt, utm()).with_nodata(Some(0.0));
        let layout = SceneLayout {
            width: 300,
            height: 300,
            transform: sgt,
            crs: &utm(),
            overviews: &[],
        };
        let wgs = Crs::wgs84();
        let targets = [
            TargetGrid::new(
                GeoTransform::north_up(400_503.0, 4_039_496.0, 10.0, 10.0),
                64,
                64,
                utm(),
            ),
            TargetGrid::new(
                GeoTransform::north_up(399_800.0, 4_038_000.0, 7.0, 7.0),
                80,
                80,
                utm(),
            ),
            TargetGrid::new(
                GeoTransform::north_up(400_400.0, 4_039_700.0, 25.0, 25.0),
                40,
                40,
                utm(),
            ),
            TargetGrid::new(
                GeoTransform::north_up(127.885, 36.49, 0.0001, 0.0001),
                90,
                90,
                wgs.clone(),
            ),
            TargetGrid::new(
                GeoTransform::north_up(127.8835, 36.4935, 0.00025, 0.00025),
                30,
                30,
                wgs,
            ),
        ];
        for t in &targets {
            for r in [
                Resampling::Nearest,
                Resampling::Bilinear,
                Resampling::Cubic,
                Resampling::Average,
                Resampling::Mode,
            ] {
                let o = WarpOptions::new(r);
                let whole = warp(&full, t, &o).unwrap();
                let plan = plan_read(&layout, t, r).unwrap().unwrap();
                let w = plan.window;
                let (c0, r0) = (w.col_off as usize, w.row_off as usize);
                let view = px.slice(ndarray::s![
                    ..,
                    r0..r0 + w.height as usize,
                    c0..c0 + w.width as usize
                ]);
                let part = SourceRaster::new(view, plan.transform, utm()).with_nodata(Some(0.0));
                let windowed = warp(&part, t, &o).unwrap();
                assert_eq!(whole.valid, windowed.valid, "{r} {t:?}");
                assert_eq!(whole.pixels, windowed.pixels, "{r} {t:?}");
                assert!(!whole.is_empty);
            }
        }
    }

    #[test]
    fn float_nan_nodata() {
        let px = Array3::from_shape_fn(
            (1, 4, 4),
            |(_, y, x)| {
                if x == 0 {
                    f32::NAN
                } else {
                    (x + y) as f32
                }
            },
        );
        let sgt = GeoTransform::north_up(0.0, 0.0, 1.0, 1.0);
        let src = SourceRaster::new(px.view(), sgt, utm()).with_nodata(Some(f64::NAN));
        let t = TargetGrid::new(GeoTransform::north_up(0.75, 0.0, 1.0, 1.0), 3, 4, utm());
        let out = warp(&src, &t, &WarpOptions::new(Resampling::Bilinear)).unwrap();
        // Target pixel 0's centre (1.25) is a quarter pixel from NaN pixel 0: its weight is
        // dropped and the rest renormalised onto pixel 1.
        assert_eq!(out.pixels[[0, 0, 0]], 1.0);
        assert!(out.valid.iter().all(|&v| v == 1));
        assert!(out.pixels.iter().all(|v| v.is_finite()));
    }
}
