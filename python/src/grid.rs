//! The polygon mask of a query over a block of its output grid (the grid itself is the
//! engine's `Query::output_grid`), for chunked (Dask) queries. The Python tests check that
//! chunked results equal the engine's eager ones.

use crate::errors::Result;
use crate::spec::QuerySpec;
use ndarray::Array2;
use pixelquery::crs::Crs;
use pixelquery::query::Region;
use pixelquery::store::Warehouse;
use pixelquery::GeoTransform;

/// The spec's region in the warehouse grid's CRS.
fn grid_region(warehouse: &Warehouse, spec: &QuerySpec) -> Result<Region> {
    let grid_crs = warehouse.config().grid.crs()?;
    Ok(spec
        .region()?
        .to_crs(&Crs::from_epsg(spec.crs)?, &grid_crs)?)
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
