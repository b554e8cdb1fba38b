//! The query result: a `(time, band, y, x)` array with its labels (time, scenes and product of
//! each step; band names as requested and as stored), what its values are, and georeferencing.

use super::composite::{Period, Reducer};
use crate::{GeoTransform, Sample};
use chrono::{DateTime, Duration, Utc};
use ndarray::{Array4, ArrayView2, Axis};
use serde::Serialize;

/// What the numbers in a cube are: raw stored values, physical values, band math, composites.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    /// Scale and offset were applied (physical values, e.g. reflectance); else the numbers
    /// are as stored (digital numbers).
    pub physical: bool,
    /// The band math that computed the cube's band (`None`: bands as stored).
    pub expression: Option<String>,
    /// The temporal composite, e.g. `median per month` (`None`: one step per observation).
    pub composite: Option<String>,
    /// The products the values come from. With several, values are physical, each product's
    /// own scale and offset applied: each sensor's own surface reflectance, not harmonised.
    pub products: Vec<String>,
    /// The composite's reducer and period, typed (`composite` is their description).
    pub reduced: Option<(Reducer, Period)>,
    /// First and last acquisition time of the observations the cube was computed from.
    pub observed: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Values {
    /// A short description for axis labels and metadata, e.g. `digital number`,
    /// `physical value (scale and offset applied)`, `ndvi, median per month`.
    pub fn describe(&self) -> String {
        let base = match (&self.expression, self.physical) {
            (Some(e), _) => e.clone(),
            (None, true) => "physical value (scale and offset applied)".to_string(),
            (None, false) => "digital number".to_string(),
        };
        let base = if self.products.len() > 1 {
            format!("{base} of {}", self.products.join(" + "))
        } else {
            base
        };
        match &self.composite {
            Some(c) => format!("{base}, {c}"),
            None => base,
        }
    }

    /// The quantity alone, for axis labels: the expression's name, `physical value` or
    /// `digital number` (products and composite are said elsewhere).
    pub fn quantity(&self) -> String {
        match (&self.expression, self.physical) {
            (Some(e), _) => e.clone(),
            (None, true) => "physical value (scale and offset applied)".to_string(),
            (None, false) => "digital number".to_string(),
        }
    }

    /// What the step starting at `start` covers, for titles: its date (`2024-03-05`), or for
    /// a composite its period (`2024-05`, `2024`, `2024-05-01 to 2024-05-16`, or the first
    /// to the last observation for a composite over the whole range).
    pub fn step_span(&self, start: DateTime<Utc>) -> String {
        let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
        match self.reduced.map(|(_, p)| p) {
            None => day(start),
            Some(Period::Month) => start.format("%Y-%m").to_string(),
            Some(Period::Year) => start.format("%Y").to_string(),
            Some(Period::Days(n)) => {
                let end = start + Duration::days(i64::from(n.max(1)) - 1);
                format!("{} to {}", day(start), day(end))
            }
            Some(Period::All) => match self.observed {
                Some((first, last)) if day(first) != day(last) => {
                    format!("{} to {}", day(first), day(last))
                }
                _ => day(start),
            },
        }
    }
}

/// A data cube. Invalid pixels (nodata, masked, outside a polygon, cloudy, not covered by the
/// scene of a step) are NaN in `data`; [`Cube::valid`] gives the mask.
///
/// The labels run along the axes: `times`, `scenes` and `products` along time; `bands` and
/// `band_sources` along band.
#[derive(Debug, Clone, PartialEq)]
pub struct Cube {
    /// Values, `(time, band, y, x)`: raw numbers, or physical values after scale/offset.
    pub data: Array4<f32>,
    /// Time of each step (UTC): the acquisition time, or the period start of a composite.
    pub times: Vec<DateTime<Utc>>,
    /// Scene ids behind each step (several when scenes of one solar day were mosaicked or
    /// a composite reduced them; empty for a composite period without observations).
    pub scenes: Vec<Vec<String>>,
    /// Product of each step.
    pub products: Vec<String>,
    /// Band names as requested (`red` stays `red`; an expression's or index's name).
    pub bands: Vec<String>,
    /// What each band is read from: the stored band name (`B04` for `red`), or the
    /// expression text for band math.
    pub band_sources: Vec<String>,
    /// What the values are.
    pub values: Values,
    /// EPSG code of the cube's CRS.
    pub epsg: u32,
    /// Geotransform of pixel (0, 0).
    pub transform: GeoTransform,
}

/// A data cube in the bands' own sample type (`u16` for most optical products): half the
/// memory of a [`Cube`] of 16-bit data and faster to build. Invalid pixels (nodata, outside a
/// polygon, not covered, cloudy) hold [`NativeCube::fill`], the bands' nodata value (NaN for
/// float bands without one). Built by [`Query::run_native`](super::Query::run_native).
#[derive(Debug, Clone, PartialEq)]
pub struct NativeCube<T: Sample> {
    /// Raw samples, `(time, band, y, x)`.
    pub data: Array4<T>,
    /// The value of pixels without a valid sample.
    pub fill: T,
    /// Time of each step (UTC): the acquisition time, or the period start of a composite.
    pub times: Vec<DateTime<Utc>>,
    /// Scene ids behind each step (several when scenes of one solar day were mosaicked).
    pub scenes: Vec<Vec<String>>,
    /// Product of each step.
    pub products: Vec<String>,
    /// Band names as requested.
    pub bands: Vec<String>,
    /// The stored band each band is read from.
    pub band_sources: Vec<String>,
    /// What the values are.
    pub values: Values,
    /// EPSG code of the cube's CRS.
    pub epsg: u32,
    /// Geotransform of pixel (0, 0).
    pub transform: GeoTransform,
}

impl<T: Sample> NativeCube<T> {
    /// `(time, band, y, x)` sizes.
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        self.data.dim()
    }

    /// True where `v` is a valid sample (not the fill value, not NaN).
    pub fn is_valid(&self, v: T) -> bool {
        #[allow(clippy::eq_op)]
        let number = v == v;
        number && v != self.fill
    }

    /// Validity mask: true where the value is valid.
    pub fn valid(&self) -> Array4<bool> {
        self.data.mapv(|v| self.is_valid(v))
    }

    /// The same cube as `f32` with NaN where invalid: what [`Query::run`](super::Query::run)
    /// returns for the same query.
    pub fn to_f32(&self) -> Cube {
        Cube {
            data: self.data.mapv(|v| {
                if self.is_valid(v) {
                    v.to_f64() as f32
                } else {
                    f32::NAN
                }
            }),
            times: self.times.clone(),
            scenes: self.scenes.clone(),
            products: self.products.clone(),
            bands: self.bands.clone(),
            band_sources: self.band_sources.clone(),
            values: self.values.clone(),
            epsg: self.epsg,
            transform: self.transform,
        }
    }
}

/// A dropped cube's buffer goes back to the query buffer pool ([`super::recycle`]), so the
/// next query of a similar size paints into warm memory. (So the fields cannot be moved out
/// of a cube: take its data with `into_data()`.)
impl Drop for Cube {
    fn drop(&mut self) {
        super::recycle::give_array(std::mem::take(&mut self.data));
    }
}

impl Cube {
    /// The values, taking them out of the cube (which then gives nothing back to the pool).
    pub fn into_data(mut self) -> Array4<f32> {
        std::mem::take(&mut self.data)
    }
}

impl<T: Sample> NativeCube<T> {
    /// The samples, taking them out of the cube (which then gives nothing back to the pool).
    pub fn into_data(mut self) -> Array4<T> {
        std::mem::take(&mut self.data)
    }
}

impl<T: Sample> Drop for NativeCube<T> {
    fn drop(&mut self) {
        super::recycle::give_array(std::mem::take(&mut self.data));
    }
}

/// Summary statistics of the valid values of one band at one time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Number of valid pixels.
    pub count: usize,
    /// Mean (NaN when no valid pixel).
    pub mean: f64,
    /// Standard deviation (population).
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Maximum.
    pub max: f64,
}

impl Stats {
    /// Statistics of the non-NaN values of a 2-D slice.
    pub fn of(values: ArrayView2<'_, f32>) -> Stats {
        let mut v: Vec<f64> = values
            .iter()
            .filter(|x| !x.is_nan())
            .map(|&x| x as f64)
            .collect();
        let count = v.len();
        if count == 0 {
            return Stats {
                count,
                mean: f64::NAN,
                std: f64::NAN,
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        }
        let mean = v.iter().sum::<f64>() / count as f64;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / count as f64).sqrt();
        v.sort_unstable_by(f64::total_cmp);
        let median = if count % 2 == 1 {
            v[count / 2]
        } else {
            (v[count / 2 - 1] + v[count / 2]) / 2.0
        };
        Stats {
            count,
            mean,
            std,
            min: v[0],
            median,
            max: v[count - 1],
        }
    }
}

impl Cube {
    /// `(time, band, y, x)` sizes.
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        self.data.dim()
    }

    /// Validity mask: true where the value is valid.
    pub fn valid(&self) -> Array4<bool> {
        self.data.mapv(|v| !v.is_nan())
    }

    /// Index of a band by name (case-insensitive).
    pub fn band_index(&self, name: &str) -> Option<usize> {
        self.bands.iter().position(|b| b.eq_ignore_ascii_case(name))
    }

    /// Map coordinates of the centre of pixel (`x`, `y`).
    pub fn pixel_center(&self, x: usize, y: usize) -> (f64, f64) {
        self.transform.apply(x as f64 + 0.5, y as f64 + 0.5)
    }

    /// Statistics per time step and band, `[time][band]`.
    pub fn stats(&self) -> Vec<Vec<Stats>> {
        self.data
            .axis_iter(Axis(0))
            .map(|t| t.axis_iter(Axis(0)).map(Stats::of).collect())
            .collect()
    }

    /// True when the cube has a single pixel (a point query).
    pub fn is_point(&self) -> bool {
        let (_, _, h, w) = self.dim();
        h == 1 && w == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn stats_ignore_invalid_pixels() {
        let a = array![[1.0f32, f32::NAN], [3.0, 2.0]];
        let s = Stats::of(a.view());
        assert_eq!(s.count, 3);
        assert_eq!((s.min, s.median, s.max, s.mean), (1.0, 2.0, 3.0, 2.0));
        assert!((s.std - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
        let none = array![[f32::NAN]];
        assert!(Stats::of(none.view()).mean.is_nan());
    }
}
