//! Where exports read a cube from: a [`QueryPlan`] painted window by window (streamed within
//! the memory budget), or a cube already in memory; values in the output's sample type.

use super::Error;
use crate::query::budget::{split_windows, Alignment};
use crate::query::cube::{Cube, NativeCube, Values};
use crate::query::plan::{CubeWindow, QueryPlan};
use crate::query::region::Region;
use crate::store::Pixel;
use crate::{DataType, GeoTransform, Sample};
use chrono::{DateTime, Utc};
use ndarray::{s, Array4};

/// Everything an output says about a cube besides its values.
#[derive(Debug, Clone, PartialEq)]
pub struct CubeInfo {
    /// Time of each step.
    pub times: Vec<DateTime<Utc>>,
    /// Scene ids of each step.
    pub scenes: Vec<Vec<String>>,
    /// Product of each step.
    pub products: Vec<String>,
    /// Band names as requested.
    pub bands: Vec<String>,
    /// Stored band (or expression) behind each band.
    pub band_sources: Vec<String>,
    /// What the values are.
    pub values: Values,
    /// EPSG code.
    pub epsg: u32,
    /// Geotransform of pixel (0, 0).
    pub transform: GeoTransform,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Sample type of the output.
    pub dtype: DataType,
    /// The value of invalid pixels (NaN for floats).
    pub nodata: f64,
    /// The query region in the cube's CRS (polygons: pixels outside are not part of it).
    pub region: Option<Region>,
}

impl CubeInfo {
    /// `(time, band, y, x)` sizes.
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        (self.times.len(), self.bands.len(), self.height, self.width)
    }

    /// Bytes of the cube's values.
    pub fn bytes(&self) -> u64 {
        let (t, b, h, w) = self.dim();
        (t * b * h * w * self.dtype.size()) as u64
    }

    fn of_plan(plan: &QueryPlan<'_>, dtype: DataType, nodata: f64) -> CubeInfo {
        let (_, _, h, w) = plan.dim();
        CubeInfo {
            times: plan.times(),
            scenes: plan.scenes(),
            products: plan.products(),
            bands: plan.band_names(),
            band_sources: plan.band_sources(),
            values: plan.values().clone(),
            epsg: plan.epsg(),
            transform: plan.transform(),
            width: w,
            height: h,
            dtype,
            nodata,
            region: Some(plan.region().clone()),
        }
    }
}

/// A cube read window by window in sample type `T`.
pub trait Source<T>: Sync {
    /// Labels, grid, sample type and nodata.
    fn info(&self) -> &CubeInfo;
    /// The values of one window, `(time, band, y, x)`.
    fn read(&self, win: &CubeWindow) -> Result<Array4<T>, Error>;
    /// Windows covering the cube in row-major order (steps, rows, columns), aligned to
    /// `align` and within the memory budget.
    fn windows(&self, align: Alignment) -> Vec<CubeWindow>;
}

/// A plan painted in its bands' sample type.
pub(super) struct NativePlan<'a, 'w, T> {
    pub plan: &'a QueryPlan<'w>,
    pub info: CubeInfo,
    _t: std::marker::PhantomData<T>,
}

impl<'a, 'w, T: Pixel> NativePlan<'a, 'w, T> {
    pub fn new(plan: &'a QueryPlan<'w>) -> Result<Self, Error> {
        let fill: T = plan.native_fill::<T>()?;
        Ok(NativePlan {
            info: CubeInfo::of_plan(plan, T::DTYPE, fill.to_f64()),
            plan,
            _t: std::marker::PhantomData,
        })
    }
}

impl<T: Pixel> Source<T> for NativePlan<'_, '_, T> {
    fn info(&self) -> &CubeInfo {
        &self.info
    }
    fn read(&self, win: &CubeWindow) -> Result<Array4<T>, Error> {
        Ok(self.plan.chunk_native::<T>(win)?)
    }
    fn windows(&self, align: Alignment) -> Vec<CubeWindow> {
        self.plan.windows(T::DTYPE.size(), align)
    }
}

/// A plan painted as `f32` (NaN where invalid).
pub(super) struct FloatPlan<'a, 'w> {
    pub plan: &'a QueryPlan<'w>,
    pub info: CubeInfo,
}

impl<'a, 'w> FloatPlan<'a, 'w> {
    pub fn new(plan: &'a QueryPlan<'w>) -> Self {
        FloatPlan {
            info: CubeInfo::of_plan(plan, DataType::F32, f64::NAN),
            plan,
        }
    }
}

impl Source<f32> for FloatPlan<'_, '_> {
    fn info(&self) -> &CubeInfo {
        &self.info
    }
    fn read(&self, win: &CubeWindow) -> Result<Array4<f32>, Error> {
        Ok(self.plan.chunk_f32(win)?)
    }
    fn windows(&self, align: Alignment) -> Vec<CubeWindow> {
        self.plan.windows(4, align)
    }
}

/// The [`CubeInfo`] of a [`Cube`] or a [`NativeCube`] (same field names, other sample types).
macro_rules! cube_info {
    ($cube:expr, $width:expr, $height:expr, $dtype:expr, $nodata:expr) => {
        CubeInfo {
            times: $cube.times.clone(),
            scenes: $cube.scenes.clone(),
            products: $cube.products.clone(),
            bands: $cube.bands.clone(),
            band_sources: $cube.band_sources.clone(),
            values: $cube.values.clone(),
            epsg: $cube.epsg,
            transform: $cube.transform,
            width: $width,
            height: $height,
            dtype: $dtype,
            nodata: $nodata,
            region: None,
        }
    };
}

/// A cube in memory (`f32` or native), read by slicing.
pub(super) struct InMemory<'c, T> {
    pub data: &'c Array4<T>,
    pub info: CubeInfo,
}

impl<'c> InMemory<'c, f32> {
    pub fn of_cube(cube: &'c Cube) -> Self {
        let (_, _, h, w) = cube.dim();
        InMemory {
            data: &cube.data,
            info: cube_info!(cube, w, h, DataType::F32, f64::NAN),
        }
    }
}

impl<'c, T: Pixel> InMemory<'c, T> {
    /// A native cube in memory.
    pub fn of_native(cube: &'c NativeCube<T>) -> Self {
        let (_, _, h, w) = cube.dim();
        InMemory {
            data: &cube.data,
            info: cube_info!(cube, w, h, T::DTYPE, cube.fill.to_f64()),
        }
    }
}

impl<T: Sample> Source<T> for InMemory<'_, T> {
    fn info(&self) -> &CubeInfo {
        &self.info
    }
    fn read(&self, win: &CubeWindow) -> Result<Array4<T>, Error> {
        Ok(self
            .data
            .slice(s![
                win.steps.clone(),
                ..,
                win.rows.clone(),
                win.cols.clone()
            ])
            .to_owned())
    }
    fn windows(&self, align: Alignment) -> Vec<CubeWindow> {
        // Already in memory: windows only bound the copies the writers make.
        let (t, b, h, w) = self.info.dim();
        let elem = std::mem::size_of::<T>() as u64;
        split_windows(t, h, w, 256 << 20, align, |win| {
            (win.steps.len() * b * win.pixels()) as u64 * elem
        })
    }
}

/// Another source's values converted to a wider sample type `O` (every value of the source
/// type exists in `O`; invalid pixels get `O`'s nodata: the same number, or NaN for floats).
pub(super) struct Widened<'s, T, O> {
    pub inner: &'s dyn Source<T>,
    pub info: CubeInfo,
    _o: std::marker::PhantomData<O>,
}

impl<'s, T: Sample, O: Sample> Widened<'s, T, O> {
    pub fn new(inner: &'s dyn Source<T>) -> Self {
        let mut info = inner.info().clone();
        info.dtype = O::DTYPE;
        if O::DTYPE.is_float() && !T::DTYPE.is_float() {
            info.nodata = f64::NAN;
        }
        Widened {
            inner,
            info,
            _o: std::marker::PhantomData,
        }
    }
}

impl<T: Sample, O: Sample> Source<O> for Widened<'_, T, O> {
    fn info(&self) -> &CubeInfo {
        &self.info
    }
    fn read(&self, win: &CubeWindow) -> Result<Array4<O>, Error> {
        let fill_in = self.inner.info().nodata;
        let fill_out = O::from_f64(self.info.nodata);
        let data = self.inner.read(win)?;
        let out = data.mapv(|v| {
            let x = v.to_f64();
            if x.is_nan() || x == fill_in {
                fill_out
            } else {
                O::from_f64(x)
            }
        });
        crate::query::recycle::give_array(data);
        Ok(out)
    }
    fn windows(&self, align: Alignment) -> Vec<CubeWindow> {
        self.inner.windows(align)
    }
}

/// True when every value of `from` is a value of `to`.
pub(super) fn widens(from: DataType, to: DataType) -> bool {
    use DataType::*;
    from == to
        || matches!(
            (from, to),
            (U8, U16 | I16 | U32 | I32 | F32 | F64)
                | (I8, I16 | I32 | F32 | F64)
                | (U16, U32 | I32 | F32 | F64)
                | (I16, I32 | F32 | F64)
                | (U32 | I32, F64)
                | (F32, F64)
        )
}
