//! The query builder on a warehouse: prune fragments with the catalog, memory-map only the
//! ones needed, paint their observations onto the output grid, then mask, compute band math
//! and composite.

use super::composite::{group_times, reduce, Period, Reducer};
use super::cube::{Cube, NativeCube};
use super::expr::{preset, Expr};
use super::paint::{
    advise_huge_pages, paint_slab, AsF32, Layer, Native, OutGrid, Painter, Placement,
};
use super::region::Region;
use crate::crs::Crs;
use crate::profile::{BandRole, CloudMaskRule, ProductProfile};
use crate::store::{Fragment, FragmentEntry, FragmentFilter, Pixel, Snapshot, Version, Warehouse};
use crate::{Bounds, DataType, GeoTransform};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use ndarray::{Array3, Array4, Axis};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Largest cube a query may allocate.
const MAX_CUBE_BYTES: u64 = 8 << 30;

/// Errors from running a query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the warehouse failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The region could not be used.
    #[error(transparent)]
    Region(#[from] super::region::Error),
    /// The expression is invalid.
    #[error(transparent)]
    Expr(#[from] super::expr::ExprError),
    /// A CRS could not be set up.
    #[error(transparent)]
    Crs(#[from] crate::crs::Error),
    /// A band name matches no band of the product.
    #[error("band {band:?} is not in the warehouse (available: {available})")]
    UnknownBand {
        /// The name asked for.
        band: String,
        /// What exists.
        available: String,
    },
    /// The options contradict each other or are out of range.
    #[error("{0}")]
    Invalid(String),
    /// Nothing matched.
    #[error("no data: {0}")]
    NoData(String),
    /// The bands do not hold the sample type asked for.
    #[error("the bands hold {stored} samples, not {requested}")]
    SampleType {
        /// What the fragments hold.
        stored: DataType,
        /// What was asked for.
        requested: DataType,
    },
    /// The result would be too large.
    #[error("the query would build a {bytes}-byte cube ({shape}), more than the {limit}-byte limit; narrow the area or time range")]
    TooLarge {
        /// Bytes needed.
        bytes: u64,
        /// Cube shape.
        shape: String,
        /// The limit.
        limit: u64,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A query under construction; see [`Warehouse::query`].
#[derive(Debug, Clone)]
pub struct Query<'w> {
    warehouse: &'w Warehouse,
    snapshot: Option<&'w Snapshot>,
    region: Option<Region>,
    crs: u32,
    time: Option<(DateTime<Utc>, DateTime<Utc>)>,
    bands: Vec<String>,
    product: Option<String>,
    expr: Option<(String, String)>,
    mask_clouds: bool,
    physical: bool,
    composite: Option<(Reducer, Period)>,
    solar_day: bool,
    resolution: Option<f64>,
    as_of: Option<Version>,
}

impl Warehouse {
    /// Starts a query (region in lon/lat unless [`Query::crs`] says otherwise).
    pub fn query(&self) -> Query<'_> {
        Query {
            warehouse: self,
            snapshot: None,
            region: None,
            crs: 4326,
            time: None,
            bands: Vec::new(),
            product: None,
            expr: None,
            mask_clouds: false,
            physical: false,
            composite: None,
            solar_day: false,
            resolution: None,
            as_of: None,
        }
    }
}

/// Resolves user band names to warehouse band names through the product profile's aliases.
fn resolve_band(
    name: &str,
    profile: Option<&ProductProfile>,
    available: &BTreeSet<String>,
) -> Result<String> {
    if let Some(b) = available.iter().find(|b| b.eq_ignore_ascii_case(name)) {
        return Ok(b.clone());
    }
    if let Some(b) = profile.and_then(|p| p.band(name)) {
        if available.contains(&b.name) {
            return Ok(b.name.clone());
        }
    }
    Err(Error::UnknownBand {
        band: name.to_string(),
        available: available.iter().cloned().collect::<Vec<_>>().join(", "),
    })
}

impl<'w> Query<'w> {
    /// Reuses an already loaded snapshot (for repeated queries).
    pub fn on_snapshot(mut self, snapshot: &'w Snapshot) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// One location.
    pub fn point(mut self, x: f64, y: f64) -> Self {
        self.region = Some(Region::Point(x, y));
        self
    }

    /// A rectangle.
    pub fn bbox(mut self, bounds: Bounds) -> Self {
        self.region = Some(Region::BBox(bounds));
        self
    }

    /// Any region (point, box, polygons).
    pub fn region(mut self, region: Region) -> Self {
        self.region = Some(region);
        self
    }

    /// EPSG code of the region's coordinates (default 4326, lon/lat).
    pub fn crs(mut self, epsg: u32) -> Self {
        self.crs = epsg;
        self
    }

    /// Inclusive time range.
    pub fn time(mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        self.time = Some((start, end));
        self
    }

    /// Bands (names or aliases); empty = all bands of the product.
    pub fn bands<S: AsRef<str>>(mut self, bands: &[S]) -> Self {
        self.bands = bands.iter().map(|b| b.as_ref().to_string()).collect();
        self
    }

    /// Product id (needed when the warehouse holds several).
    pub fn product(mut self, id: &str) -> Self {
        self.product = Some(id.to_string());
        self
    }

    /// Band math: the result has one band named after the expression.
    pub fn expr(mut self, expression: &str) -> Self {
        self.expr = Some((expression.to_string(), expression.to_string()));
        self
    }

    /// A named index preset (`ndvi`, `evi`, `ndwi`, `nbr`).
    pub fn index(mut self, name: &str) -> Result<Self> {
        let text = preset(name).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown index {name:?}: use ndvi, evi, ndwi or nbr"
            ))
        })?;
        self.expr = Some((name.to_ascii_lowercase(), text.to_string()));
        // Indices are defined on reflectance.
        self.physical = true;
        Ok(self)
    }

    /// Masks cloudy pixels with the product's cloud rule.
    pub fn mask_clouds(mut self, yes: bool) -> Self {
        self.mask_clouds = yes;
        self
    }

    /// Applies scale/offset to physical values.
    pub fn physical(mut self, yes: bool) -> Self {
        self.physical = yes;
        self
    }

    /// Temporal composite per period.
    pub fn composite(mut self, reducer: Reducer, period: Period) -> Self {
        self.composite = Some((reducer, period));
        self
    }

    /// Mosaics scenes of the same solar day into one step (first valid pixel wins).
    pub fn group_by_solar_day(mut self, yes: bool) -> Self {
        self.solar_day = yes;
        self
    }

    /// Output resolution in grid units (default: the finest selected band).
    pub fn resolution(mut self, r: f64) -> Self {
        self.resolution = Some(r);
        self
    }

    /// Reads an older snapshot.
    pub fn as_of(mut self, version: Version) -> Self {
        self.as_of = Some(version);
        self
    }

    /// The snapshot to read: the one given, else the warehouse's (at `as_of`) loaded now.
    fn resolve_snapshot(&self) -> Result<std::borrow::Cow<'w, Snapshot>> {
        Ok(match self.snapshot {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(self.warehouse.snapshot(self.as_of)?),
        })
    }

    /// Runs the query.
    pub fn run(self) -> Result<Cube> {
        let snapshot = self.resolve_snapshot()?;
        let snapshot = snapshot.as_ref();
        let Plan {
            fragments,
            placements,
            mut work,
            steps,
            load,
            wanted,
            cloud_rule,
            expr,
            profile,
            region,
            transform,
            width,
            height,
            epsg,
        } = self.plan(snapshot)?;
        let (nt, nb) = (steps.len(), load.len());
        let slab_len = width * height;
        let clip = clip_mask(&region, &transform, width, height);
        let mut data = paint_cube(
            &mut work,
            &fragments,
            &placements,
            (width, height),
            clip.as_deref(),
            &AsF32 {
                physical: self.physical,
            },
        );
        // Clouds: one step (all its bands) per task.
        if let Some((rule, qa)) = &cloud_rule {
            let q = load.iter().position(|n| n == qa).unwrap_or(0);
            data.par_chunks_mut(nb * slab_len).for_each(|step| {
                let clear: Vec<bool> = step[q * slab_len..(q + 1) * slab_len]
                    .iter()
                    .map(|&v| v.is_nan() || rule.is_clear(v as i64))
                    .collect();
                for band in step.chunks_exact_mut(slab_len) {
                    for (v, &c) in band.iter_mut().zip(&clear) {
                        *v = if c { *v } else { f32::NAN };
                    }
                }
            });
        }
        let data = Array4::from_shape_vec((nt, nb, height, width), data)
            .map_err(|e| Error::Invalid(e.to_string()))?;

        // Keep only the bands asked for.
        let keep: Vec<usize> = wanted
            .iter()
            .filter_map(|w| load.iter().position(|l| l == w))
            .collect();
        let data = if keep.len() == nb {
            data
        } else {
            data.select(Axis(1), &keep)
        };
        let mut cube = Cube {
            data,
            times: steps.iter().map(|s| s.0).collect(),
            scenes: steps.into_iter().map(|s| s.1).collect(),
            bands: wanted.clone(),
            epsg,
            transform,
        };
        if let Some((name, e)) = &expr {
            cube = apply_expression(cube, name, e, profile.as_ref())?;
        }
        if let Some((reducer, period)) = self.composite {
            let groups = group_times(&cube.times, period);
            let data = reduce(cube.data.view(), &groups, reducer);
            let scenes = groups
                .iter()
                .map(|g| {
                    let mut s: Vec<String> = g
                        .members
                        .iter()
                        .flat_map(|&m| cube.scenes[m].clone())
                        .collect();
                    s.dedup();
                    s
                })
                .collect();
            cube = Cube {
                data,
                times: groups.iter().map(|g| g.start).collect(),
                scenes,
                bands: cube
                    .bands
                    .iter()
                    .map(|b| format!("{b}_{reducer}"))
                    .collect(),
                ..cube
            };
        }
        Ok(cube)
    }

    /// Runs the query keeping the bands' sample type `T` (see [`NativeCube`]): for `u16`
    /// bands half the memory of [`Query::run`]'s `f32` cube, and faster. Pixels without a valid
    /// sample hold the bands' nodata value (NaN for float bands without one).
    ///
    /// Errors when `T` is not the bands' sample type, when the bands differ in nodata value
    /// or integer bands have none, and with options that need `f32` values (expressions,
    /// indices, physical values, composites, cloud masks: use [`Query::run`]).
    pub fn run_native<T: Pixel>(self) -> Result<NativeCube<T>> {
        let needs_f32 = [
            (self.expr.is_some(), "expressions and indices"),
            (self.physical, "physical values"),
            (self.composite.is_some(), "composites"),
            (self.mask_clouds, "cloud masks"),
        ];
        if let Some((_, what)) = needs_f32.iter().find(|(on, _)| *on) {
            return Err(Error::Invalid(format!(
                "{what} need f32 values: use run() instead of run_native()"
            )));
        }
        let snapshot = self.resolve_snapshot()?;
        let snapshot = snapshot.as_ref();
        let Plan {
            fragments,
            placements,
            mut work,
            steps,
            wanted,
            region,
            transform,
            width,
            height,
            epsg,
            ..
        } = self.plan(snapshot)?;
        if let Some((_, f)) = fragments.iter().find(|(_, f)| f.meta().dtype != T::DTYPE) {
            return Err(Error::SampleType {
                stored: f.meta().dtype,
                requested: T::DTYPE,
            });
        }
        let mut nodata = fragments.iter().map(|(_, f)| f.meta().nodata);
        let first = nodata.next().flatten();
        if nodata.any(|n| n.map(f64::to_bits) != first.map(f64::to_bits)) {
            return Err(Error::Invalid(
                "the bands differ in nodata value: use run() for a NaN-masked cube".into(),
            ));
        }
        let fill = match first {
            Some(nd) if T::from_f64(nd).to_f64() == nd => T::from_f64(nd),
            Some(nd) if nd.is_nan() && T::DTYPE.is_float() => T::from_f64(nd),
            None if T::DTYPE.is_float() => T::from_f64(f64::NAN),
            _ => {
                return Err(Error::Invalid(format!(
                    "the bands have no {} nodata value to mark invalid pixels: use run() for a NaN-masked cube",
                    T::DTYPE
                )))
            }
        };
        let clip = clip_mask(&region, &transform, width, height);
        let data = paint_cube(
            &mut work,
            &fragments,
            &placements,
            (width, height),
            clip.as_deref(),
            &Native { fill },
        );
        let data = Array4::from_shape_vec((steps.len(), wanted.len(), height, width), data)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(NativeCube {
            data,
            fill,
            times: steps.iter().map(|s| s.0).collect(),
            scenes: steps.into_iter().map(|s| s.1).collect(),
            bands: wanted,
            epsg,
            transform,
        })
    }

    /// Everything up to painting: region, bands, catalog pruning, output grid, fragments,
    /// time steps and which observations paint which slab.
    fn plan<'s>(&self, snapshot: &'s Snapshot) -> Result<Plan<'s>> {
        let grid = self.warehouse.config().grid;
        let grid_crs = grid.crs().map_err(|e| Error::Invalid(e.to_string()))?;
        let region = self
            .region
            .clone()
            .ok_or_else(|| Error::Invalid("a query needs --point, --bbox or --geojson".into()))?;
        let region_crs = Crs::from_epsg(self.crs)?;
        let lon_center = {
            let b = region.bounds();
            let wgs = Crs::wgs84();
            let c = Region::Point((b.min_x + b.max_x) / 2.0, (b.min_y + b.max_y) / 2.0)
                .to_crs(&region_crs, &wgs)?;
            match c {
                Region::Point(lon, _) => lon,
                _ => 0.0,
            }
        };
        let region = region.to_crs(&region_crs, &grid_crs)?;

        // Product and its profile.
        let products: BTreeSet<String> = snapshot
            .fragments()
            .iter()
            .map(|f| f.product.clone())
            .collect();
        let product = match &self.product {
            Some(p) if products.contains(p) => p.clone(),
            Some(p) => {
                return Err(Error::NoData(format!(
                    "product {p:?} is not in the warehouse (products: {})",
                    products.iter().cloned().collect::<Vec<_>>().join(", ")
                )))
            }
            None if products.len() == 1 => products.iter().next().cloned().unwrap_or_default(),
            None if products.is_empty() => {
                return Err(Error::NoData("the warehouse is empty".into()))
            }
            None => {
                return Err(Error::Invalid(format!(
                    "the warehouse holds several products ({}); choose one with --product",
                    products.iter().cloned().collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let profile: Option<ProductProfile> = snapshot
            .products()
            .get(&product)
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let available: BTreeSet<String> = snapshot
            .fragments()
            .iter()
            .filter(|f| f.product == product)
            .map(|f| f.band.clone())
            .collect();

        // Which bands to load.
        let expr = self
            .expr
            .as_ref()
            .map(|(name, text)| Expr::parse(text).map(|e| (name.clone(), e)))
            .transpose()?;
        let mut wanted: Vec<String> = Vec::new();
        let requested: Vec<String> = match &expr {
            Some((_, e)) => e.variables(),
            None if self.bands.is_empty() => available
                .iter()
                .filter(|b| {
                    profile
                        .as_ref()
                        .and_then(|p| p.band(b))
                        .is_none_or(|bp| bp.role != BandRole::Quality)
                })
                .cloned()
                .collect(),
            None => self.bands.clone(),
        };
        for b in &requested {
            let name = resolve_band(b, profile.as_ref(), &available)?;
            if !wanted.contains(&name) {
                wanted.push(name);
            }
        }
        let cloud_rule = if self.mask_clouds {
            let rule = profile
                .as_ref()
                .map(|p| p.cloud_mask.clone())
                .unwrap_or_default();
            let Some(qa) = rule.band() else {
                return Err(Error::Invalid(format!(
                    "product {product:?} has no cloud mask rule"
                )));
            };
            let qa = resolve_band(qa, profile.as_ref(), &available)?;
            Some((rule, qa))
        } else {
            None
        };
        let mut load = wanted.clone();
        if let Some((_, qa)) = &cloud_rule {
            if !load.contains(qa) {
                load.push(qa.clone());
            }
        }

        // Prune with the catalog.
        let end_exclusive = self.time.map(|(s, e)| (s, e + Duration::microseconds(1)));
        let bounds = region.bounds();
        let tiles: BTreeSet<_> = if matches!(region, Region::Point(..)) {
            [grid.tile_at(bounds.min_x, bounds.min_y)]
                .into_iter()
                .collect()
        } else {
            grid.tiles_in(&bounds)
                .map_err(|e| Error::Invalid(e.to_string()))?
                .into_iter()
                .collect()
        };
        let selected: Vec<&FragmentEntry> = snapshot
            .select(&FragmentFilter {
                product: Some(product.clone()),
                time: end_exclusive,
                ..Default::default()
            })
            .into_iter()
            .filter(|f| tiles.contains(&f.tile) && load.contains(&f.band))
            .collect();
        if selected.is_empty() {
            return Err(Error::NoData(
                "no fragment covers this place and time".into(),
            ));
        }

        // Output grid, aligned to the tile grid.
        let res = self.resolution.unwrap_or_else(|| {
            selected
                .iter()
                .map(|f| f.resolution)
                .fold(f64::INFINITY, f64::min)
        });
        if !(res.is_finite() && res > 0.0) {
            return Err(Error::Invalid(format!("invalid resolution {res}")));
        }
        let (transform, width, height) = match region {
            Region::Point(x, y) => {
                let col = ((x - grid.origin_x) / res).floor();
                let row = ((grid.origin_y - y) / res).floor();
                (
                    GeoTransform::north_up(
                        grid.origin_x + col * res,
                        grid.origin_y - row * res,
                        res,
                        res,
                    ),
                    1,
                    1,
                )
            }
            _ => {
                let c0 = ((bounds.min_x - grid.origin_x) / res).floor();
                let c1 = ((bounds.max_x - grid.origin_x) / res).ceil();
                let r0 = ((grid.origin_y - bounds.max_y) / res).floor();
                let r1 = ((grid.origin_y - bounds.min_y) / res).ceil();
                let (w, h) = ((c1 - c0).max(1.0), (r1 - r0).max(1.0));
                if w * h > 1e10 {
                    return Err(Error::Invalid(
                        "the area is too large for this resolution".into(),
                    ));
                }
                (
                    GeoTransform::north_up(
                        grid.origin_x + c0 * res,
                        grid.origin_y - r0 * res,
                        res,
                        res,
                    ),
                    w as usize,
                    h as usize,
                )
            }
        };

        // Open the fragments (once per snapshot) and collect the time steps.
        let fragments: Vec<(&FragmentEntry, Arc<Fragment>)> = selected
            .par_iter()
            .map(|e| snapshot.fragment(e).map(|f| (*e, f)))
            .collect::<std::result::Result<_, _>>()?;
        let range = self
            .time
            .map(|(s, e)| (s.timestamp_micros(), e.timestamp_micros()));
        let mut observations: BTreeSet<(i64, &str)> = BTreeSet::new();
        for (_, f) in &fragments {
            for (i, &t) in f.times_micros().iter().enumerate() {
                if range.is_none_or(|(s, e)| t >= s && t <= e) {
                    observations.insert((t, f.scene_id(i)));
                }
            }
        }
        if observations.is_empty() {
            return Err(Error::NoData("no observation in this time range".into()));
        }
        // Time steps: one per scene, or one per solar day.
        let mut steps: Vec<(DateTime<Utc>, Vec<String>)> = Vec::new();
        let mut step_of: BTreeMap<(i64, &str), usize> = BTreeMap::new();
        let mut day_index: BTreeMap<NaiveDate, usize> = BTreeMap::new();
        for &(t, scene) in &observations {
            let time = DateTime::from_timestamp_micros(t).unwrap_or_default();
            let idx = if self.solar_day {
                let local = time + Duration::milliseconds((lon_center / 15.0 * 3_600_000.0) as i64);
                *day_index.entry(local.date_naive()).or_insert_with(|| {
                    steps.push((time, Vec::new()));
                    steps.len() - 1
                })
            } else {
                match steps.last() {
                    Some((last, _)) if *last == time => steps.len() - 1,
                    _ => {
                        steps.push((time, Vec::new()));
                        steps.len() - 1
                    }
                }
            };
            if !steps[idx].1.iter().any(|s| s == scene) {
                steps[idx].1.push(scene.to_string());
            }
            step_of.insert((t, scene), idx);
        }
        let (nt, nb) = (steps.len(), load.len());
        let bytes = (nt * nb * width * height * 4) as u64;
        if bytes > MAX_CUBE_BYTES {
            return Err(Error::TooLarge {
                bytes,
                shape: format!("{nt} times x {nb} bands x {height} x {width}"),
                limit: MAX_CUBE_BYTES,
            });
        }

        // Paint: each (time, band) slab is written by the observations that belong to it, in
        // time order, first valid pixel winning; every element is written once.
        let out = OutGrid {
            transform,
            width,
            height,
        };
        let placements: Vec<Option<Placement>> = fragments
            .iter()
            .map(|(entry, f)| Placement::of_fragment(entry, f, &out))
            .collect();
        let mut work: Vec<Vec<(i64, usize, usize)>> = vec![Vec::new(); nt * nb];
        for (fi, (entry, f)) in fragments.iter().enumerate() {
            let Some(b) = load.iter().position(|n| *n == entry.band) else {
                continue;
            };
            if placements[fi].is_none() {
                continue;
            }
            for (i, &t) in f.times_micros().iter().enumerate() {
                if let Some(&step) = step_of.get(&(t, f.scene_id(i))) {
                    work[step * nb + b].push((t, fi, i));
                }
            }
        }
        Ok(Plan {
            fragments,
            placements,
            work,
            steps,
            load,
            wanted,
            cloud_rule,
            expr,
            profile,
            region,
            transform,
            width,
            height,
            epsg: grid.epsg,
        })
    }
}

/// Polygon clip as one flag per output pixel, row-major (`None` for points and boxes).
fn clip_mask(
    region: &Region,
    transform: &GeoTransform,
    width: usize,
    height: usize,
) -> Option<Vec<bool>> {
    region
        .raster_mask(transform, width, height)
        .map(|m| m.iter().copied().collect())
}

/// Paints every slab (`work[slab]` lists its observations) on rayon and returns the cube's
/// elements, `(slab, y, x)` row-major. The cube is allocated uninitialised: the painters
/// write each element once (and fault fresh pages in on their own threads) instead of a
/// fill first. Pixels outside `clip` get the painter's empty marker.
fn paint_cube<P: Painter>(
    work: &mut [Vec<(i64, usize, usize)>],
    fragments: &[(&FragmentEntry, Arc<Fragment>)],
    placements: &[Option<Placement>],
    (width, height): (usize, usize),
    clip: Option<&[bool]>,
    painter: &P,
) -> Vec<P::Elem> {
    let slab_len = width * height;
    let len = work.len() * slab_len;
    let mut data: Vec<P::Elem> = Vec::with_capacity(len);
    advise_huge_pages(&mut data.spare_capacity_mut()[..len]);
    let empty = painter.empty();
    data.spare_capacity_mut()[..len]
        .par_chunks_mut(slab_len.max(1))
        .zip(work.par_iter_mut())
        .for_each(|(slab, items)| {
            items.sort_unstable();
            let layers: Vec<Layer<'_>> = items
                .iter()
                .filter_map(|&(_, fi, obs)| {
                    let placement = placements[fi].as_ref()?;
                    Some(Layer {
                        fragment: &fragments[fi].1,
                        obs,
                        placement,
                    })
                })
                .collect();
            let slab = paint_slab(slab, width, &layers, painter);
            // Polygon clip while the slab is still in cache.
            if let Some(inside) = clip {
                for (v, &inside) in slab.iter_mut().zip(inside) {
                    *v = if inside { *v } else { empty };
                }
            }
        });
    // SAFETY: the slabs partition the first `len` elements (`len` is a whole number of slabs
    // and the zip pairs every slab with its work list) and `paint_slab` initialises every
    // element of the slab it is given.
    unsafe { data.set_len(len) };
    data
}

/// What [`Query::plan`] resolved: the inputs of painting and of what follows it.
struct Plan<'s> {
    fragments: Vec<(&'s FragmentEntry, Arc<Fragment>)>,
    placements: Vec<Option<Placement>>,
    /// Per slab (`step * bands + band`): (time, fragment, observation) to paint.
    work: Vec<Vec<(i64, usize, usize)>>,
    steps: Vec<(DateTime<Utc>, Vec<String>)>,
    load: Vec<String>,
    wanted: Vec<String>,
    cloud_rule: Option<(CloudMaskRule, String)>,
    expr: Option<(String, Expr)>,
    profile: Option<ProductProfile>,
    region: Region,
    transform: GeoTransform,
    width: usize,
    height: usize,
    epsg: u32,
}

/// Replaces the cube's bands by one band computed from an expression.
fn apply_expression(
    cube: Cube,
    name: &str,
    expr: &Expr,
    profile: Option<&ProductProfile>,
) -> Result<Cube> {
    let (t, _, h, w) = cube.dim();
    let arrays: Vec<(String, Array3<f32>)> = cube
        .bands
        .iter()
        .enumerate()
        .map(|(b, n)| (n.clone(), cube.data.index_axis(Axis(1), b).to_owned()))
        .collect();
    let lookup = |var: &str| -> Option<&Array3<f32>> {
        let canonical = profile.and_then(|p| p.band(var)).map(|b| b.name.clone());
        arrays
            .iter()
            .find(|(n, _)| {
                n.eq_ignore_ascii_case(var) || canonical.as_deref().is_some_and(|c| c == n)
            })
            .map(|(_, a)| a)
    };
    let result = expr
        .evaluate((t, h, w), &lookup)
        .map_err(|m| Error::Invalid(format!("expression {name:?}: {m}")))?;
    let mut data = result.insert_axis(Axis(1));
    data.mapv_inplace(|v| if v.is_finite() { v } else { f32::NAN });
    Ok(Cube {
        data,
        bands: vec![name.to_string()],
        ..cube
    })
}
