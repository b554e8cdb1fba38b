//! The output grid of a query, worked out without reading pixels, so that a chunked (Dask)
//! query can split it into blocks of grid tiles and read each block as a box query. It
//! follows the engine's rules: the region in the grid's CRS, the finest resolution of the
//! bands read (unless `resolution` is given), pixel edges aligned to the tile grid. The
//! Python tests check that chunked results equal the engine's eager ones.

use crate::errors::{Error, Result};
use crate::spec::QuerySpec;
use ndarray::Array2;
use pixelquery::crs::Crs;
use pixelquery::profile::{BandRole, ProductProfile};
use pixelquery::query::{Expr, Region};
use pixelquery::store::{Snapshot, Warehouse};
use pixelquery::GeoTransform;
use std::collections::BTreeSet;

/// Where a query's pixels are.
pub struct OutputGrid {
    /// Geotransform of pixel (0, 0).
    pub transform: GeoTransform,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

/// The spec's region in the warehouse grid's CRS.
fn grid_region(warehouse: &Warehouse, spec: &QuerySpec) -> Result<Region> {
    let grid_crs = warehouse.config().grid.crs()?;
    Ok(spec
        .region()?
        .to_crs(&Crs::from_epsg(spec.crs)?, &grid_crs)?)
}

/// The output grid of `spec` on `snapshot`.
pub fn output_grid(
    warehouse: &Warehouse,
    snapshot: &Snapshot,
    spec: &QuerySpec,
) -> Result<OutputGrid> {
    let grid = warehouse.config().grid;
    let region = grid_region(warehouse, spec)?;
    let res = match spec.resolution {
        Some(r) => r,
        None => finest_resolution(snapshot, spec)?,
    };
    if !(res.is_finite() && res > 0.0) {
        return Err(Error::invalid(format!("invalid resolution {res}")));
    }
    let b = region.bounds();
    if let Region::Point(x, y) = region {
        let col = ((x - grid.origin_x) / res).floor();
        let row = ((grid.origin_y - y) / res).floor();
        return Ok(OutputGrid {
            transform: GeoTransform::north_up(
                grid.origin_x + col * res,
                grid.origin_y - row * res,
                res,
                res,
            ),
            width: 1,
            height: 1,
        });
    }
    let c0 = ((b.min_x - grid.origin_x) / res).floor();
    let c1 = ((b.max_x - grid.origin_x) / res).ceil();
    let r0 = ((grid.origin_y - b.max_y) / res).floor();
    let r1 = ((grid.origin_y - b.min_y) / res).ceil();
    let (w, h) = ((c1 - c0).max(1.0), (r1 - r0).max(1.0));
    if w * h > 1e12 {
        return Err(Error::invalid("the area is too large for this resolution"));
    }
    Ok(OutputGrid {
        transform: GeoTransform::north_up(
            grid.origin_x + c0 * res,
            grid.origin_y - r0 * res,
            res,
            res,
        ),
        width: w as usize,
        height: h as usize,
    })
}

/// The finest native resolution of the bands the query reads (expression variables, the
/// bands asked for, or every non-quality band; plus the cloud-mask band), over the products
/// the query reads: those named, else every product holding the bands (as the engine picks
/// them).
fn finest_resolution(snapshot: &Snapshot, spec: &QuerySpec) -> Result<f64> {
    let all: BTreeSet<&str> = snapshot
        .fragments()
        .iter()
        .map(|f| f.product.as_str())
        .collect();
    let named = spec.product.as_deref().unwrap_or_default();
    let expression = match (&spec.expr, &spec.index) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(i)) => pixelquery::query::preset(i).map(str::to_string),
        (None, None) => None,
    };
    let bands_named = spec.bands.as_ref().is_some_and(|b| !b.is_empty());
    let candidates: Vec<&str> = if named.is_empty() {
        if all.len() > 1 && expression.is_none() && !bands_named {
            return Err(Error::invalid(format!(
                "the warehouse holds several products ({}); choose one with product=, or \
                 name the bands (aliases such as red, nir) to query them together",
                all.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        all.iter().copied().collect()
    } else {
        named.iter().map(String::as_str).collect()
    };
    let mut finest: Option<f64> = None;
    for product in &candidates {
        let strict = candidates.len() > 1;
        if let Some(r) = product_resolution(snapshot, spec, product, expression.as_deref(), strict)?
        {
            finest = Some(finest.map_or(r, |f| f.min(r)));
        }
    }
    finest.ok_or_else(|| Error {
        kind: crate::errors::Kind::NoData,
        message: "no data: no fragment holds the bands asked for".into(),
    })
}

/// The finest native resolution of the bands `product` would read for `spec`; `None` when
/// it holds no fragment of them, or with `strict` when it lacks one of them (the engine
/// fails or leaves that product out; alone, the engine's own error names the band).
fn product_resolution(
    snapshot: &Snapshot,
    spec: &QuerySpec,
    product: &str,
    expression: Option<&str>,
    strict: bool,
) -> Result<Option<f64>> {
    let profile: Option<ProductProfile> = snapshot
        .products()
        .get(product)
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let available: BTreeSet<&str> = snapshot
        .fragments()
        .iter()
        .filter(|f| f.product == product)
        .map(|f| f.band.as_str())
        .collect();
    let resolve = |name: &str| -> Option<String> {
        if let Some(b) = available.iter().find(|b| b.eq_ignore_ascii_case(name)) {
            return Some(b.to_string());
        }
        profile
            .as_ref()
            .and_then(|p| p.band(name))
            .filter(|b| available.contains(b.name.as_str()))
            .map(|b| b.name.clone())
    };
    let mut read: Vec<String> = match (expression, &spec.bands) {
        (Some(text), _) => Expr::parse(text)
            .map_err(|e| Error::invalid(e.to_string()))?
            .variables(),
        (None, Some(bands)) if !bands.is_empty() => bands.clone(),
        _ => available
            .iter()
            .filter(|b| {
                profile
                    .as_ref()
                    .and_then(|p| p.band(b))
                    .is_none_or(|bp| bp.role != BandRole::Quality)
            })
            .map(|b| b.to_string())
            .collect(),
    };
    if spec.mask_clouds {
        if let Some(qa) = profile.as_ref().and_then(|p| p.cloud_mask.band()) {
            read.push(qa.to_string());
        }
    }
    let resolved: Vec<Option<String>> = read.iter().map(|b| resolve(b)).collect();
    if strict && resolved.iter().any(Option::is_none) {
        return Ok(None);
    }
    let read: BTreeSet<String> = resolved.into_iter().flatten().collect();
    Ok(snapshot
        .fragments()
        .iter()
        .filter(|f| f.product == product && read.contains(&f.band))
        .map(|f| f.resolution)
        .min_by(f64::total_cmp))
}

/// The polygon mask of `spec` on a grid (pixel centres inside), or `None` for points and
/// boxes.
pub fn region_mask(
    warehouse: &Warehouse,
    spec: &QuerySpec,
    transform: [f64; 6],
    width: usize,
    height: usize,
) -> Result<Option<Array2<bool>>> {
    let region = grid_region(warehouse, spec)?;
    Ok(region.raster_mask(&GeoTransform::from_gdal(transform), width, height))
}
