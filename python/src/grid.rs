//! The output grid of a query, worked out without reading pixels (the engine's
//! `Query::output_grid`), so that a chunked (Dask) query can split it into blocks of grid
//! tiles and read each block as a box query; and the polygon mask over such a grid. The
//! Python tests check that chunked results equal the engine's eager ones.

use crate::errors::Result;
use crate::spec::QuerySpec;
use ndarray::Array2;
use pixelquery::crs::Crs;
use pixelquery::query::Region;
use pixelquery::store::{Snapshot, Warehouse};
use pixelquery::GeoTransform;

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

/// The output grid of `spec` on `snapshot`: the engine's own (`Query::output_grid`), so
/// chunks line up with what an eager query paints.
pub fn output_grid(
    warehouse: &Warehouse,
    snapshot: &Snapshot,
    spec: &QuerySpec,
) -> Result<OutputGrid> {
    let query = spec.apply(warehouse.query().on_snapshot(snapshot))?;
    let (transform, width, height) = query.output_grid()?;
    Ok(OutputGrid {
        transform,
        width,
        height,
    })
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
