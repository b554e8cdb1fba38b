//! A query as the Python layer hands it over (a dict of already normalised values) and its
//! translation into the core's [`Query`] builder, option by option as the CLI does it.

use crate::errors::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use pixelquery::query::{Period, Query, Reducer, Region};
use pixelquery::time::parse_datetime;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Every query option, typed. Built from the dict `pixelquery/_query.py` produces.
#[derive(Debug, Clone, Default)]
pub struct QuerySpec {
    /// One location `(x, y)` in `crs`.
    pub point: Option<(f64, f64)>,
    /// A box `(minx, miny, maxx, maxy)` in `crs`.
    pub bbox: Option<(f64, f64, f64, f64)>,
    /// GeoJSON text of (multi)polygons in `crs`.
    pub geometry: Option<String>,
    /// EPSG code of the coordinates.
    pub crs: u32,
    /// Inclusive time range as text (either side open).
    pub time: Option<(Option<String>, Option<String>)>,
    /// Band names or aliases.
    pub bands: Option<Vec<String>>,
    /// Product ids (several: one time axis over all, values physical).
    pub product: Option<Vec<String>>,
    /// Skip a named product that lacks a requested band instead of failing.
    pub skip_missing: bool,
    /// Kernel used to paint observations onto the query grid (default: nearest when
    /// upsampling, average when downsampling).
    pub resampling: Option<String>,
    /// With `group_by="solar_day"`: one mosaic per solar day across products.
    pub across_products: bool,
    /// Band math.
    pub expr: Option<String>,
    /// Index preset.
    pub index: Option<String>,
    /// Cloud masking with the product's rule.
    pub mask_clouds: bool,
    /// Scale/offset applied.
    pub physical: bool,
    /// Temporal reducer.
    pub composite: Option<String>,
    /// Composite period.
    pub period: Option<String>,
    /// `solar_day` mosaicking.
    pub group_by: Option<String>,
    /// Output resolution in grid units.
    pub resolution: Option<f64>,
    /// Snapshot version.
    pub as_of: Option<u64>,
    /// Drop time steps without a valid pixel in the region.
    pub drop_empty: bool,
    /// Largest cube held in memory, in MiB (default: the engine's, a quarter of the RAM).
    pub memory_budget: Option<u64>,
}

fn item<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<T>> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => Ok(Some(v.extract::<T>().map_err(Into::<PyErr>::into)?)),
        _ => Ok(None),
    }
}

impl QuerySpec {
    /// Reads the normalised dict (unknown keys are the Python layer's own business).
    pub fn from_dict(d: &Bound<'_, PyDict>) -> PyResult<QuerySpec> {
        Ok(QuerySpec {
            point: item(d, "point")?,
            bbox: item(d, "bbox")?,
            geometry: item(d, "geometry")?,
            crs: item(d, "crs")?.unwrap_or(4326),
            time: item(d, "time")?,
            bands: item(d, "bands")?,
            product: item(d, "product")?,
            skip_missing: item(d, "skip_missing")?.unwrap_or(false),
            resampling: item(d, "resampling")?,
            across_products: item(d, "across_products")?.unwrap_or(false),
            expr: item(d, "expr")?,
            index: item(d, "index")?,
            mask_clouds: item(d, "mask_clouds")?.unwrap_or(false),
            physical: item(d, "physical")?.unwrap_or(false),
            composite: item(d, "composite")?,
            period: item(d, "period")?,
            group_by: item(d, "group_by")?,
            resolution: item(d, "resolution")?,
            as_of: item(d, "as_of")?,
            drop_empty: item(d, "drop_empty")?.unwrap_or(false),
            memory_budget: item(d, "memory_budget")?,
        })
    }

    /// The region, in `crs`.
    pub fn region(&self) -> Result<Region> {
        match (self.point, self.bbox, &self.geometry) {
            (Some((x, y)), None, None) => {
                if !(x.is_finite() && y.is_finite()) {
                    return Err(Error::invalid(format!(
                        "invalid point ({x}, {y}): coordinates must be finite numbers"
                    )));
                }
                Ok(Region::Point(x, y))
            }
            (None, Some((a, b, c, d)), None) => {
                if ![a, b, c, d].iter().all(|v| v.is_finite()) || a >= c || b >= d {
                    return Err(Error::invalid(format!(
                        "invalid bbox ({a}, {b}, {c}, {d}): expected finite (minx, miny, maxx, maxy) with minx < maxx and miny < maxy"
                    )));
                }
                Ok(Region::BBox(pixelquery::Bounds::new(a, b, c, d)))
            }
            (None, None, Some(text)) => {
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| Error::invalid(format!("geometry: not GeoJSON: {e}")))?;
                Ok(Region::from_geojson(&value, "geometry")?)
            }
            (None, None, None) => Err(Error::invalid("a query needs point=, bbox= or geometry=")),
            _ => Err(Error::invalid(
                "give only one of point=, bbox= and geometry=",
            )),
        }
    }

    /// The core query for this spec on `query` (a fresh `Warehouse::query()`).
    pub fn apply<'w>(&self, mut q: Query<'w>) -> Result<Query<'w>> {
        q = q
            .region(self.region()?)
            .crs(self.crs)
            .physical(self.physical)
            .mask_clouds(self.mask_clouds);
        if let Some((start, end)) = &self.time {
            let (start, end) = time_range(start.as_deref(), end.as_deref())?;
            q = q.time(start, end);
        }
        if let Some(bands) = &self.bands {
            q = q.bands(bands);
        }
        match self.product.as_deref() {
            None | Some([]) => {}
            Some([one]) => q = q.product(one),
            Some(several) => q = q.products(several),
        }
        q = q
            .skip_missing(self.skip_missing)
            .across_products(self.across_products);
        if let Some(name) = &self.resampling {
            let kernel: pixelquery::warp::Resampling = name
                .parse()
                .map_err(|e| Error::invalid(format!("invalid resampling: {e}")))?;
            q = q.resampling(kernel);
        }
        match (&self.expr, &self.index) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("give expr= or index=, not both"));
            }
            (Some(e), None) => q = q.expr(e),
            (None, Some(i)) => q = q.index(i)?,
            (None, None) => {}
        }
        match self.group_by.as_deref() {
            None => {}
            Some("solar_day" | "solar-day") => q = q.group_by_solar_day(true),
            Some(other) => {
                return Err(Error::invalid(format!(
                    "invalid group_by {other:?}: use \"solar_day\""
                )))
            }
        }
        match (&self.composite, &self.period) {
            (Some(c), period) => {
                let reducer: Reducer = c.parse().map_err(Error::invalid)?;
                let period: Period = match period {
                    Some(p) => p.parse().map_err(Error::invalid)?,
                    None => Period::All,
                };
                q = q.composite(reducer, period);
            }
            (None, Some(_)) => return Err(Error::invalid("period= needs composite=")),
            (None, None) => {}
        }
        if let Some(r) = self.resolution {
            if !(r.is_finite() && r > 0.0) {
                return Err(Error::invalid(format!(
                    "invalid resolution {r}: expected a positive number of grid units"
                )));
            }
            q = q.resolution(r);
        }
        if let Some(v) = self.as_of {
            q = q.as_of(v);
        }
        if let Some(mb) = self.memory_budget {
            if mb == 0 {
                return Err(Error::invalid(
                    "invalid memory_budget=0: give megabytes, e.g. 1024",
                ));
            }
            q = q.memory_budget(mb.saturating_mul(1 << 20));
        }
        Ok(q.drop_empty(self.drop_empty))
    }
}

/// An inclusive time range from its two ends (dates or RFC 3339 times; `None` is open). A
/// bare date as the end means the whole day, as on the command line.
pub fn time_range(
    start: Option<&str>,
    end: Option<&str>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let parse = |s: Option<&str>, is_end: bool| -> Result<DateTime<Utc>> {
        let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
            return Ok(if is_end {
                DateTime::<Utc>::MAX_UTC
            } else {
                DateTime::<Utc>::MIN_UTC
            });
        };
        let t = parse_datetime(s).ok_or_else(|| {
            Error::invalid(format!(
                "invalid date {s:?} in time=: use YYYY-MM-DD or an ISO 8601 / RFC 3339 time"
            ))
        })?;
        Ok(if is_end && s.trim().len() <= 10 {
            t + Duration::days(1) - Duration::microseconds(1)
        } else {
            t
        })
    };
    let (a, b) = (parse(start, false)?, parse(end, true)?);
    if a > b {
        return Err(Error::invalid(format!(
            "invalid time=({:?}, {:?}): the start is after the end",
            start.unwrap_or(""),
            end.unwrap_or("")
        )));
    }
    Ok((a, b))
}
