//! The query builder on a warehouse: resolve the region, bands and time axis against a
//! snapshot ([`Query::prepare`] gives a [`QueryPlan`]), then paint the fragments' observations
//! onto the output grid, whole ([`Query::run`]) or window by window (exports), and mask,
//! compute band math and composite.

use super::budget::{default_memory_budget, human_bytes};
use super::composite::{group_times, Period, Reducer};
use super::cube::{Cube, NativeCube, Values};
use super::expr::{preset, Expr};
use super::paint::{
    advise_huge_pages, default_kernel, paint_slab, tile_kernel, Layer, Neighbour, OutGrid, Painter,
    Placement,
};
use super::plan::{read_window, Access, BandChoice, QueryPlan, Step};
use super::region::Region;
use crate::crs::Crs;
use crate::profile::{BandRole, CloudMaskRule, ProductProfile};
use crate::store::{Fragment, FragmentEntry, FragmentFilter, Pixel, Snapshot, Version, Warehouse};
use crate::warp::Resampling;
use crate::{Bounds, DataType, GeoTransform, TileId};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

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
    /// One of several products asked for lacks a band (or its cloud mask band).
    #[error("band {band:?} is not in product {product:?} (its bands: {available}): leave the product out, or skip it with --skip-missing (Query::skip_missing)")]
    MissingBand {
        /// The name asked for.
        band: String,
        /// The product without it.
        product: String,
        /// The product's bands.
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
    /// The cube would not fit in the memory budget (or could not be allocated).
    #[error("the cube would take {} in memory ({shape}), more than {limit}: query a smaller area or time range, write it to a file with --out (files are written in chunks within the budget; a lower --memory-budget makes them smaller), or load it in chunks (Python: chunks=...)", human_bytes(*bytes))]
    TooLarge {
        /// Bytes needed.
        bytes: u64,
        /// Cube shape and sample type.
        shape: String,
        /// The budget, or why the memory was not there.
        limit: String,
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
    products: Vec<String>,
    skip_missing: bool,
    resampling: Option<Resampling>,
    across_products: bool,
    expr: Option<(String, String)>,
    mask_clouds: bool,
    physical: bool,
    composite: Option<(Reducer, Period)>,
    solar_day: bool,
    resolution: Option<f64>,
    as_of: Option<Version>,
    drop_empty: bool,
    memory_budget: Option<u64>,
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
            products: Vec::new(),
            skip_missing: false,
            resampling: None,
            across_products: false,
            expr: None,
            mask_clouds: false,
            physical: false,
            composite: None,
            solar_day: false,
            resolution: None,
            as_of: None,
            drop_empty: false,
            memory_budget: None,
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

    /// Inclusive time range. A range without observations gives an empty cube (zero steps).
    pub fn time(mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        self.time = Some((start, end));
        self
    }

    /// Bands (names or aliases, kept as the cube's band names); empty = all bands of the
    /// product but quality bands.
    pub fn bands<S: AsRef<str>>(mut self, bands: &[S]) -> Self {
        self.bands = bands.iter().map(|b| b.as_ref().to_string()).collect();
        self
    }

    /// One product (without [`Query::product`] or [`Query::products`], every product that
    /// has the requested bands takes part).
    pub fn product(mut self, id: &str) -> Self {
        self.products = vec![id.to_string()];
        self
    }

    /// Several products on one time axis (a multi-sensor series): bands are named by alias
    /// (`red`, `nir`) and resolved per product through its profile, each product is resampled
    /// onto the query grid, and values are physical (each product's own scale and offset).
    pub fn products<S: AsRef<str>>(mut self, ids: &[S]) -> Self {
        self.products = ids.iter().map(|p| p.as_ref().to_string()).collect();
        self
    }

    /// Leaves out the products asked for that lack a requested band (or their cloud band)
    /// instead of failing with [`Error::MissingBand`].
    pub fn skip_missing(mut self, yes: bool) -> Self {
        self.skip_missing = yes;
        self
    }

    /// Kernel that resamples stored tiles onto the query grid (`near`, `bilinear`, `cubic`,
    /// `average`, `mode`; default: nearest when the output is as fine as a band or finer,
    /// average when it is coarser, as at ingest). Cloud bands always use nearest.
    pub fn resampling(mut self, kernel: Resampling) -> Self {
        self.resampling = Some(kernel);
        self
    }

    /// With [`Query::group_by_solar_day`], mosaics the products of one solar day too (first
    /// valid pixel in acquisition order wins); by default a solar day mosaics within a product.
    pub fn across_products(mut self, yes: bool) -> Self {
        self.across_products = yes;
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

    /// Drops time steps without a single valid pixel. By default the time axis holds every
    /// observation whose scene covers the region, all-invalid ones included, so two queries
    /// over one place share one time axis.
    pub fn drop_empty(mut self, yes: bool) -> Self {
        self.drop_empty = yes;
        self
    }

    /// Most bytes a query may hold in memory: a cube built whole ([`Query::run`]) larger than
    /// this is an error, and exports work in chunks that fit. Default:
    /// [`default_memory_budget`] (a quarter of the machine's memory).
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// The snapshot to read: the one given, else the warehouse's (at `as_of`) loaded now.
    fn resolve_snapshot(&self) -> Result<Cow<'w, Snapshot>> {
        Ok(match self.snapshot {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(self.warehouse.snapshot(self.as_of)?),
        })
    }

    /// Runs the query: the whole cube in memory, `f32` with NaN where invalid.
    ///
    /// Errors with [`Error::TooLarge`] when the cube would not fit in the memory budget.
    pub fn run(self) -> Result<Cube> {
        let drop = self.drop_empty;
        let plan = self.plan_with(Access::Shared)?;
        let cube = plan.cube()?;
        if drop {
            let keep = (0..cube.dim().0)
                .map(|t| {
                    cube.data
                        .index_axis(ndarray::Axis(0), t)
                        .iter()
                        .any(|v| !v.is_nan())
                })
                .collect::<Vec<_>>();
            return Ok(select_steps_f32(cube, &keep));
        }
        Ok(cube)
    }

    /// Runs the query keeping the bands' sample type `T` (see [`NativeCube`]): for `u16`
    /// bands half the memory of [`Query::run`]'s `f32` cube, and faster. Pixels without a valid
    /// sample hold the bands' nodata value (NaN for float bands without one).
    ///
    /// Errors when `T` is not the bands' sample type, when the bands differ in nodata value
    /// or integer bands have none, and with options that need `f32` values (expressions,
    /// indices, physical values, median, mean and count composites: use [`Query::run`]).
    pub fn run_native<T: Pixel>(self) -> Result<NativeCube<T>> {
        let drop = self.drop_empty;
        let plan = self.plan_with(Access::Shared)?;
        let cube = plan.native_cube::<T>()?;
        if drop {
            let keep = (0..cube.dim().0)
                .map(|t| {
                    cube.data
                        .index_axis(ndarray::Axis(0), t)
                        .iter()
                        .any(|&v| cube.is_valid(v))
                })
                .collect::<Vec<_>>();
            return Ok(select_steps_native(cube, &keep));
        }
        Ok(cube)
    }

    /// The pixel grid the query paints ([`Query::run`], [`Query::prepare`]) worked out from the
    /// catalog alone, no fragment opened: the georeferencing of pixel (0, 0) in the warehouse
    /// grid's CRS, the width and the height. What a caller splits into blocks to run a large
    /// area as box queries (the Python package's Dask chunks do).
    pub fn output_grid(&self) -> Result<(GeoTransform, usize, usize)> {
        let snapshot = self.resolve_snapshot()?;
        let out = self.select(&snapshot)?.out;
        Ok((out.transform, out.width, out.height))
    }

    /// Resolves the query against its snapshot (region, bands, time axis, output grid)
    /// without painting any pixel: the plan then paints the cube whole or window by window
    /// (what exports do to stay within the memory budget). Fragments are opened as windows
    /// need them and released after, so a plan over a large area holds only a few at once.
    ///
    /// With [`Query::drop_empty`], call [`QueryPlan::drop_empty_steps`] (it reads the pixels
    /// once to find the empty steps).
    pub fn prepare(self) -> Result<QueryPlan<'w>> {
        self.plan_with(Access::Transient)
    }

    /// Region, products, bands, catalog pruning and output grid: everything a query decides
    /// from the catalog alone, before any fragment is opened.
    fn select<'s>(&self, snapshot: &'s Snapshot) -> Result<Selection<'s>> {
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
        let region_lonlat = region.to_crs(&region_crs, &Crs::wgs84())?;
        let region = region.to_crs(&region_crs, &grid_crs)?;

        // Products and their profiles: the ones named, else every product with the bands.
        let all: BTreeSet<String> = snapshot
            .fragments()
            .iter()
            .map(|f| f.product.clone())
            .collect();
        if all.is_empty() {
            return Err(Error::NoData("the warehouse is empty".into()));
        }
        let mut named: Vec<String> = Vec::new();
        for p in &self.products {
            if !all.contains(p) {
                return Err(Error::NoData(format!(
                    "product {p:?} is not in the warehouse (products: {})",
                    all.iter().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            if !named.contains(p) {
                named.push(p.clone());
            }
        }
        let explicit = !named.is_empty();
        let candidates: Vec<String> = if explicit {
            named
        } else {
            all.iter().cloned().collect()
        };
        let expr = self
            .expr
            .as_ref()
            .map(|(name, text)| Expr::parse(text).map(|e| (name.clone(), text.clone(), e)))
            .transpose()?;
        if candidates.len() > 1 && expr.is_none() && self.bands.is_empty() {
            return Err(Error::Invalid(format!(
                "the warehouse holds several products ({}); choose one with --product, or name \
                 the bands (aliases such as red, nir) to query them together",
                candidates.join(", ")
            )));
        }
        let mut chosen: Vec<Chosen> = Vec::new();
        let mut first_error = None;
        for id in &candidates {
            let profile: Option<ProductProfile> = snapshot
                .products()
                .get(id)
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            let available: BTreeSet<String> = snapshot
                .fragments()
                .iter()
                .filter(|f| &f.product == id)
                .map(|f| f.band.clone())
                .collect();
            let requested: Vec<String> = match &expr {
                Some((_, _, e)) => e.variables(),
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
            match resolve_product(id, profile, &available, &requested, self.mask_clouds) {
                Ok(c) => chosen.push(c),
                Err(e) => {
                    let e = match (e, candidates.len() > 1) {
                        (Error::UnknownBand { band, available }, true) => Error::MissingBand {
                            band,
                            product: id.clone(),
                            available,
                        },
                        (e, _) => e,
                    };
                    if explicit && !self.skip_missing {
                        return Err(e);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        if chosen.is_empty() {
            return Err(match (first_error, candidates.len()) {
                (Some(e), 1) => e,
                _ => Error::NoData(format!(
                    "no product of the warehouse has {} (products: {})",
                    describe_request(&self.bands, expr.as_ref().map(|e| &e.1)),
                    candidates.join(", ")
                )),
            });
        }
        let products: Vec<String> = chosen.iter().map(|c| c.id.clone()).collect();
        let multi = products.len() > 1;
        // Values of several products only mix in physical units.
        let physical = self.physical || multi;

        // Bands as asked, each with the stored band it reads in every product.
        let mut inputs: Vec<BandChoice> = Vec::new();
        for (k, name) in chosen[0].requested.iter().enumerate() {
            let stored: Vec<String> = chosen.iter().map(|c| c.stored[k].clone()).collect();
            if !inputs.iter().any(|b| b.stored == stored) {
                inputs.push(BandChoice {
                    name: name.clone(),
                    stored,
                });
            }
        }
        let cloud: Option<Vec<(CloudMaskRule, String)>> = self
            .mask_clouds
            .then(|| chosen.iter().filter_map(|c| c.cloud.clone()).collect());
        let load = |product: usize, band: &str| {
            inputs.iter().any(|b| b.stored[product] == band)
                || cloud
                    .as_ref()
                    .is_some_and(|c| c.get(product).is_some_and(|(_, qa)| qa == band))
        };
        let product_index = |id: &str| products.iter().position(|p| p == id);

        // Prune with the catalog: every fragment of the region's tiles (time comes later, so
        // the grid does not depend on the time range).
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
        // Kernels other than nearest neighbour also read the tiles around the region, near
        // its edges (which ones is decided once the output grid is known).
        let kernels = self.resampling != Some(Resampling::Nearest);
        let span = |f: fn(&TileId) -> i64| {
            let v = tiles.iter().map(f);
            (v.clone().min().unwrap_or(0), v.max().unwrap_or(-1))
        };
        let ((c0, c1), (r0, r1)) = (span(|t| t.col), span(|t| t.row));
        let around = |t: &TileId| {
            (c0 - 1..=c1 + 1).contains(&t.col)
                && (r0 - 1..=r1 + 1).contains(&t.row)
                && !tiles.contains(t)
        };
        let mut region_fragments: Vec<&FragmentEntry> = Vec::new();
        let mut nearby: Vec<&FragmentEntry> = Vec::new();
        for (k, id) in products.iter().enumerate() {
            for f in snapshot.select(&FragmentFilter {
                product: Some(id.clone()),
                ..Default::default()
            }) {
                if tiles.contains(&f.tile) && load(k, &f.band) {
                    region_fragments.push(f);
                } else if kernels && inputs.iter().any(|b| b.stored[k] == f.band) && around(&f.tile)
                {
                    nearby.push(f);
                }
            }
        }
        // Those that may hold observations in the time range (catalog time span).
        let in_region: Vec<&FragmentEntry> = match self.time {
            Some((start, end)) => region_fragments
                .iter()
                .copied()
                .filter(|f| f.time_max >= start && f.time_min <= end)
                .collect(),
            None => region_fragments.clone(),
        };
        // Scenes of the products whose footprint (a lon/lat polygon) covers the region.
        let covering: Vec<(i64, usize, &str)> = snapshot
            .scenes()
            .iter()
            .map(|s| &s.scene)
            .filter(|s| {
                s.footprint_lonlat.len() >= 3 && region_lonlat.intersects_ring(&s.footprint_lonlat)
            })
            .filter_map(|s| {
                let k = product_index(&s.product)?;
                Some((s.acquired.timestamp_micros(), k, s.scene_id.as_str()))
            })
            .collect();
        if region_fragments.is_empty() && covering.is_empty() {
            return Err(Error::NoData(
                "no scene of the warehouse covers this place".into(),
            ));
        }

        // Output grid, aligned to the tile grid.
        let res = match self.resolution {
            Some(r) => r,
            None => {
                let finest = |it: &mut dyn Iterator<Item = f64>| it.fold(f64::INFINITY, f64::min);
                let wanted = |f: &FragmentEntry| {
                    product_index(&f.product)
                        .is_some_and(|k| inputs.iter().any(|b| b.stored[k] == f.band))
                };
                let r = finest(
                    &mut region_fragments
                        .iter()
                        .filter(|f| wanted(f))
                        .map(|f| f.resolution),
                );
                if r.is_finite() {
                    r
                } else {
                    // No fragment here: the products' native resolution of these bands.
                    finest(
                        &mut snapshot
                            .fragments()
                            .iter()
                            .filter(|f| wanted(f))
                            .map(|f| f.resolution),
                    )
                }
            }
        };
        if !(res.is_finite() && res > 0.0) {
            return Err(Error::Invalid(format!("invalid resolution {res}")));
        }
        let out = output_grid(&region, &grid, res)?;
        let in_time = |f: &FragmentEntry| {
            self.time
                .is_none_or(|(start, end)| f.time_max >= start && f.time_min <= end)
        };
        let resampled = |f: &FragmentEntry| {
            let k = self
                .resampling
                .unwrap_or_else(|| default_kernel(f.resolution, res));
            tile_kernel(k, &f.index.transform, f.resolution, &out.transform) != Resampling::Nearest
        };
        let seam_sources: Vec<&FragmentEntry> = nearby
            .into_iter()
            .filter(|f| resampled(f) && in_time(f) && read_window(f, &out).is_some())
            .collect();
        Ok(Selection {
            grid,
            grid_crs,
            region,
            lon_center,
            products,
            physical,
            inputs,
            cloud,
            expr,
            in_region,
            seam_sources,
            covering,
            out,
        })
    }

    /// Everything up to painting: region, bands, catalog pruning, output grid, time steps and
    /// which observation belongs to which step.
    fn plan_with(self, access: Access) -> Result<QueryPlan<'w>> {
        let snapshot = self.resolve_snapshot()?;
        let Selection {
            grid,
            grid_crs,
            region,
            lon_center,
            products,
            physical,
            inputs,
            cloud,
            expr,
            in_region,
            seam_sources,
            covering,
            out,
        } = self.select(&snapshot)?;
        let product_index = |id: &str| products.iter().position(|p| p == id);

        // Open the fragments once to learn their observations, sample type and nodata.
        let range = self
            .time
            .map(|(s, e)| (s.timestamp_micros(), e.timestamp_micros()));
        let in_range = |t: i64| range.is_none_or(|(s, e)| t >= s && t <= e);
        type Seen = (Observed, DataType, Option<f64>);
        // Whole cubes read the window of each fragment the cube needs (only the chunks it
        // meets are decoded) and keep it for painting; exports only learn the observations
        // here and read each window's pixels when they paint it.
        let budget = self.memory_budget.unwrap_or_else(default_memory_budget);
        let seen: Vec<Seen> = in_region
            .par_iter()
            .map(|e| -> Result<Seen> {
                let (dtype, nodata) = (e.dtype, e.index.nodata);
                let window = read_window(e, &out);
                let observed = match (access, window) {
                    (Access::Shared, Some(window)) => Observed::Viewed(Arc::new(
                        snapshot.fragment_window(e, Some(window), range)?,
                    )),
                    _ => Observed::Listed(snapshot.fragment_observations(e, range, window)?),
                };
                Ok((observed, dtype, nodata))
            })
            .collect::<Result<_>>()?;

        // Time steps: scenes covering the region, plus observations of scenes the catalog
        // has no footprint for; one step per acquisition time and product, or per solar day
        // and product, in time order.
        let known: HashSet<(usize, &str), ahash::RandomState> = snapshot
            .scenes()
            .iter()
            .filter(|s| s.scene.footprint_lonlat.len() >= 3)
            .filter_map(|s| Some((product_index(&s.scene.product)?, s.scene.scene_id.as_str())))
            .collect();
        let mut observations: BTreeSet<(i64, usize, &str)> = covering
            .iter()
            .copied()
            .filter(|&(t, ..)| in_range(t))
            .collect();
        for (e, (obs, ..)) in in_region.iter().zip(&seen) {
            let Some(k) = product_index(&e.product) else {
                continue;
            };
            for (t, scene) in obs.iter() {
                if in_range(t) && !known.contains(&(k, scene)) {
                    observations.insert((t, k, scene));
                }
            }
        }
        let solar_date = |time: DateTime<Utc>| {
            (time + Duration::milliseconds((lon_center / 15.0 * 3_600_000.0) as i64)).date_naive()
        };
        let mut steps: Vec<Step> = Vec::new();
        let mut step_of: HashMap<(usize, &str), usize, ahash::RandomState> =
            HashMap::with_capacity_and_hasher(observations.len(), ahash::RandomState::new());
        let mut day_index: BTreeMap<(NaiveDate, usize), usize> = BTreeMap::new();
        for &(t, k, scene) in &observations {
            let time = DateTime::from_timestamp_micros(t).unwrap_or_default();
            let idx = if self.solar_day {
                *day_index.entry((solar_date(time), k)).or_insert_with(|| {
                    steps.push(Step::new(time, k));
                    steps.len() - 1
                })
            } else {
                match steps.last() {
                    Some(last) if last.time == time && last.product == k => steps.len() - 1,
                    _ => {
                        steps.push(Step::new(time, k));
                        steps.len() - 1
                    }
                }
            };
            if !steps[idx].scenes.iter().any(|s| s == scene) {
                steps[idx].scenes.push(scene.to_string());
            }
            step_of.insert((k, scene), idx);
        }

        // Fragments with observations on these steps, and the step of each observation.
        let mut entries = Vec::new();
        let mut obs_steps = Vec::new();
        let mut obs_scaling = Vec::new();
        let mut opened = Vec::new();
        let mut stored_types: Vec<(DataType, Option<f64>)> = Vec::new();
        for (e, (obs, dtype, nodata)) in in_region.iter().zip(&seen) {
            let Some(k) = product_index(&e.product) else {
                continue;
            };
            let s: Vec<Option<usize>> = obs
                .iter()
                .map(|(t, scene)| {
                    in_range(t)
                        .then(|| step_of.get(&(k, scene)).copied())
                        .flatten()
                })
                .collect();
            if inputs.iter().any(|b| b.stored[k] == e.band) {
                stored_types.push((*dtype, *nodata));
            }
            if s.iter().any(Option::is_some) {
                // Scenes that declare their own scale and offset (STAC raster:bands, a
                // Sentinel-2 baseline) override the fragment's, per observation.
                let scaling: Vec<Option<(f32, f32)>> = if physical {
                    obs.iter()
                        .map(|(_, scene)| {
                            let b = snapshot
                                .scene(&e.product, scene)?
                                .scene
                                .scaling
                                .get(&e.band)?;
                            Some((b.scale as f32, b.offset as f32))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                entries.push((*e).clone());
                obs_steps.push(s);
                obs_scaling.push(scaling);
                opened.push(obs.viewed());
            }
        }
        let seam_views: Vec<Option<Arc<Fragment>>> = seam_sources
            .par_iter()
            .map(|e| -> Result<Option<Arc<Fragment>>> {
                match (access, read_window(e, &out)) {
                    (Access::Shared, Some(window)) => Ok(Some(Arc::new(
                        snapshot.fragment_window(e, Some(window), range)?,
                    ))),
                    _ => Ok(None),
                }
            })
            .collect::<Result<_>>()?;
        for (e, f) in seam_sources.iter().zip(seam_views) {
            entries.push((*e).clone());
            obs_steps.push(Vec::new());
            obs_scaling.push(Vec::new());
            opened.push(f);
        }
        if stored_types.is_empty() {
            // No fragment in the region: the catalog's types of these bands.
            stored_types = snapshot
                .fragments()
                .iter()
                .filter(|f| {
                    product_index(&f.product)
                        .is_some_and(|k| inputs.iter().any(|b| b.stored[k] == f.band))
                })
                .map(|f| (f.dtype, None))
                .take(1)
                .collect();
        }

        // Output steps: composite periods, solar days across products, or one per step.
        let times: Vec<DateTime<Utc>> = steps.iter().map(|s| s.time).collect();
        let across = self.across_products && self.solar_day && self.composite.is_none();
        if self.across_products && !self.solar_day {
            return Err(Error::Invalid(
                "mosaicking across products needs solar-day grouping (--group-by solar-day)".into(),
            ));
        }
        let groups: Vec<super::plan::Group> = match self.composite {
            Some((_, period)) => group_times(&times, period)
                .into_iter()
                .map(|g| super::plan::Group {
                    time: g.start,
                    members: g.members.first().copied().unwrap_or(0)
                        ..g.members.last().map_or(0, |m| m + 1),
                })
                .collect(),
            None if across => {
                // Steps are in time order, so the steps of one solar day are consecutive.
                let mut groups: Vec<super::plan::Group> = Vec::new();
                for (i, &time) in times.iter().enumerate() {
                    match groups.last_mut() {
                        Some(g) if solar_date(g.time) == solar_date(time) => g.members.end = i + 1,
                        _ => groups.push(super::plan::Group {
                            time,
                            members: i..i + 1,
                        }),
                    }
                }
                groups
            }
            None => times
                .iter()
                .enumerate()
                .map(|(i, &time)| super::plan::Group {
                    time,
                    members: i..i + 1,
                })
                .collect(),
        };
        let values = Values {
            physical,
            expression: expr.as_ref().map(|(name, _, _)| name.clone()),
            composite: match self.composite {
                Some((r, p)) => Some(match p {
                    Period::All => format!("{r} over the time range"),
                    Period::Month => format!("{r} per month"),
                    Period::Year => format!("{r} per year"),
                    Period::Days(n) => format!("{r} per {n} days"),
                }),
                None if across => Some("solar days mosaicked across products".into()),
                None => None,
            },
            products: products.clone(),
            reduced: self.composite,
            observed: times.first().copied().zip(times.last().copied()),
        };
        let composite = match self.composite {
            Some((r, _)) => Some(r),
            None if across => Some(Reducer::First),
            None => None,
        };
        Ok(QueryPlan::new(super::plan::Parts {
            snapshot,
            grid_spec: grid,
            entries,
            obs_steps,
            obs_scaling,
            opened,
            steps,
            groups,
            products,
            inputs,
            cloud,
            expr,
            composite,
            physical,
            resampling: self.resampling,
            crs: grid_crs,
            region,
            grid: out,
            epsg: grid.epsg,
            values,
            stored: common_type(&stored_types),
            budget,
            times: range,
        }))
    }
}

/// The observations of one fragment in a query's time range: read with the pixels of the
/// window a cube paints, or listed alone (exports read pixels when they paint).
enum Observed {
    Viewed(Arc<Fragment>),
    Listed(Vec<(i64, String)>),
}

impl Observed {
    /// (time in microseconds, scene id) of each observation, in the fragment's order.
    fn iter(&self) -> Box<dyn Iterator<Item = (i64, &str)> + '_> {
        match self {
            Observed::Viewed(f) => Box::new(
                f.times_micros()
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (t, f.scene_id(i))),
            ),
            Observed::Listed(list) => Box::new(list.iter().map(|(t, id)| (*t, id.as_str()))),
        }
    }

    /// The view read, if any.
    fn viewed(&self) -> Option<Arc<Fragment>> {
        match self {
            Observed::Viewed(f) => Some(f.clone()),
            Observed::Listed(_) => None,
        }
    }
}

/// What a query reads and where it paints, decided from the catalog alone.
struct Selection<'s> {
    grid: crate::GridSpec,
    grid_crs: Crs,
    /// The region in the grid's CRS.
    region: Region,
    /// Longitude of the region's centre (for solar days).
    lon_center: f64,
    /// The products read, in the order of [`Chosen`].
    products: Vec<String>,
    /// Whether values are physical (asked, or implied by several products).
    physical: bool,
    inputs: Vec<BandChoice>,
    cloud: Option<Vec<(CloudMaskRule, String)>>,
    expr: Option<(String, String, Expr)>,
    /// Fragments of the region's tiles that may hold observations in the time range.
    in_region: Vec<&'s FragmentEntry>,
    /// Fragments of the tiles around the region within a kernel's reach of the output grid:
    /// read for the samples kernels take across tile seams, never painted.
    seam_sources: Vec<&'s FragmentEntry>,
    /// (time, product index, scene id) of each scene whose footprint covers the region.
    covering: Vec<(i64, usize, &'s str)>,
    out: OutGrid,
}

/// One product of a query: its bands resolved.
struct Chosen {
    id: String,
    /// Band names as requested.
    requested: Vec<String>,
    /// The stored band of each requested name.
    stored: Vec<String>,
    /// The cloud rule and its stored band (when clouds are masked).
    cloud: Option<(CloudMaskRule, String)>,
}

/// Resolves the requested bands (and the cloud band) of one product.
fn resolve_product(
    id: &str,
    profile: Option<ProductProfile>,
    available: &BTreeSet<String>,
    requested: &[String],
    mask_clouds: bool,
) -> Result<Chosen> {
    let stored = requested
        .iter()
        .map(|name| resolve_band(name, profile.as_ref(), available))
        .collect::<Result<Vec<_>>>()?;
    let cloud = if mask_clouds {
        let rule = profile
            .as_ref()
            .map(|p| p.cloud_mask.clone())
            .unwrap_or_default();
        let Some(qa) = rule.band() else {
            return Err(Error::Invalid(format!(
                "product {id:?} has no cloud mask rule"
            )));
        };
        let qa = resolve_band(qa, profile.as_ref(), available)?;
        Some((rule, qa))
    } else {
        None
    };
    Ok(Chosen {
        id: id.to_string(),
        requested: requested.to_vec(),
        stored,
        cloud,
    })
}

/// "bands red, nir" or "the bands of EXPR", for messages.
fn describe_request(bands: &[String], expr: Option<&String>) -> String {
    match expr {
        Some(e) => format!("the bands of {e:?}"),
        None => format!("bands {}", bands.join(", ")),
    }
}

/// The sample type and nodata value all input bands share, if they do.
fn common_type(types: &[(DataType, Option<f64>)]) -> Option<(DataType, Option<f64>)> {
    let first = *types.first()?;
    types
        .iter()
        .all(|(d, n)| *d == first.0 && n.map(f64::to_bits) == first.1.map(f64::to_bits))
        .then_some(first)
}

/// The output pixel grid of a region at resolution `res`, aligned to the tile grid.
fn output_grid(region: &Region, grid: &crate::GridSpec, res: f64) -> Result<OutGrid> {
    let (transform, width, height) = match *region {
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
            let bounds = region.bounds();
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
    Ok(OutGrid {
        transform,
        width,
        height,
    })
}

/// Keeps the time steps flagged in `keep`.
fn select_steps_f32(mut cube: Cube, keep: &[bool]) -> Cube {
    let idx: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
    if idx.len() == keep.len() {
        return cube;
    }
    let data = cube.data.select(ndarray::Axis(0), &idx);
    super::recycle::give_array(std::mem::replace(&mut cube.data, data));
    cube.times = idx.iter().map(|&i| cube.times[i]).collect();
    cube.scenes = idx.iter().map(|&i| cube.scenes[i].clone()).collect();
    cube.products = idx.iter().map(|&i| cube.products[i].clone()).collect();
    cube
}

/// Keeps the time steps flagged in `keep`.
fn select_steps_native<T: Pixel>(mut cube: NativeCube<T>, keep: &[bool]) -> NativeCube<T> {
    let idx: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
    if idx.len() == keep.len() {
        return cube;
    }
    let data = cube.data.select(ndarray::Axis(0), &idx);
    super::recycle::give_array(std::mem::replace(&mut cube.data, data));
    cube.times = idx.iter().map(|&i| cube.times[i]).collect();
    cube.scenes = idx.iter().map(|&i| cube.scenes[i].clone()).collect();
    cube.products = idx.iter().map(|&i| cube.products[i].clone()).collect();
    cube
}

/// Polygon clip as one flag per output pixel, row-major (`None` for points and boxes).
pub(super) fn clip_mask(
    region: &Region,
    transform: &GeoTransform,
    width: usize,
    height: usize,
) -> Option<Vec<bool>> {
    region
        .raster_mask(transform, width, height)
        .map(|m| m.iter().copied().collect())
}

/// The observations each slab of a cube paints, held flat in one buffer (a pixel's history
/// has thousands of slabs of one observation each): `(slab, time, fragment, observation)`,
/// sorted, so a slab's observations are consecutive and in the order they are painted.
pub(super) struct SlabWork {
    items: Vec<(usize, i64, usize, usize)>,
    /// Where each slab's observations start in `items`, and the end.
    starts: Vec<usize>,
}

impl SlabWork {
    /// The work of `slabs` slabs from `(slab, time, fragment, observation)` items.
    pub(super) fn new(slabs: usize, mut items: Vec<(usize, i64, usize, usize)>) -> SlabWork {
        debug_assert!(
            items.iter().all(|item| item.0 < slabs),
            "an item past the slabs"
        );
        items.sort_unstable();
        let mut starts = Vec::with_capacity(slabs + 1);
        let mut at = 0;
        for slab in 0..slabs {
            starts.push(at);
            while items.get(at).is_some_and(|item| item.0 == slab) {
                at += 1;
            }
        }
        starts.push(at);
        SlabWork { items, starts }
    }

    /// Number of slabs.
    fn slabs(&self) -> usize {
        self.starts.len() - 1
    }

    /// The observations of each slab.
    fn lists(&self) -> Vec<&[(usize, i64, usize, usize)]> {
        self.starts
            .windows(2)
            .map(|w| &self.items[w[0]..w[1]])
            .collect()
    }
}

/// Paints every slab (`work` lists its observations) on rayon and returns the cube's
/// elements, `(slab, y, x)` row-major. The cube's buffer is uninitialised (a recycled one
/// when a dropped cube's fits, see [`super::recycle`]): the painters write each element
/// once (and fault fresh pages in on their own threads) instead of a fill first. Pixels
/// outside `clip` get the painter's empty marker. `None` when the memory cannot be had.
#[allow(clippy::too_many_arguments)]
pub(super) fn paint_cube<P: Painter>(
    work: &SlabWork,
    fragments: &[(&FragmentEntry, Arc<Fragment>)],
    placements: &[Option<Placement>],
    neighbours: &[Vec<Neighbour>],
    scaling: &(dyn Fn(usize, usize) -> Option<(f32, f32)> + Sync),
    (width, height): (usize, usize),
    clip: Option<&[bool]>,
    painter: &P,
) -> Option<Vec<P::Elem>> {
    let slab_len = width * height;
    let len = work.slabs() * slab_len;
    // Warm pages of a cube dropped earlier when one fits, else new memory.
    let mut data: Vec<P::Elem> = super::recycle::take(len)?;
    advise_huge_pages(&mut data.spare_capacity_mut()[..len]);
    let empty = painter.empty();
    // Small slabs (a pixel's history) go to the threads in batches of about 4096 pixels.
    let per_task = (4096 / slab_len.max(1)).max(1);
    data.spare_capacity_mut()[..len]
        .par_chunks_mut(slab_len.max(1))
        .zip(work.lists().into_par_iter())
        .with_min_len(per_task)
        .for_each_init(Vec::new, |layers: &mut Vec<Layer<'_>>, (slab, items)| {
            layers.clear();
            layers.extend(items.iter().filter_map(|&(_, _, fi, obs)| {
                let placement = placements[fi].as_ref()?;
                Some(Layer {
                    fragment: &fragments[fi].1,
                    obs,
                    placement,
                    scaling: scaling(fi, obs),
                    neighbours: neighbours.get(fi).map_or(&[], Vec::as_slice),
                })
            }));
            let slab = paint_slab(slab, width, layers, painter);
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
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::SlabWork;

    #[test]
    fn slab_work_lists_each_slabs_observations_in_paint_order() {
        // (slab, time, fragment, observation), given out of order; slab 1 has none.
        let work = SlabWork::new(
            4,
            vec![
                (2, 30, 0, 1),
                (0, 20, 1, 0),
                (3, 5, 0, 0),
                (0, 10, 0, 2),
                (2, 30, 0, 0),
            ],
        );
        assert_eq!(work.slabs(), 4);
        let lists = work.lists();
        assert_eq!(lists[0], &[(0, 10, 0, 2), (0, 20, 1, 0)][..]);
        assert!(lists[1].is_empty());
        assert_eq!(lists[2], &[(2, 30, 0, 0), (2, 30, 0, 1)][..]);
        assert_eq!(lists[3], &[(3, 5, 0, 0)][..]);
        assert!(SlabWork::new(2, Vec::new())
            .lists()
            .iter()
            .all(|l| l.is_empty()));
    }
}
