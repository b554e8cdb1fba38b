//! WKT of the grid CRS for the `spatial_ref` coordinate.
//!
//! The text comes from the same EPSG table (`crs-definitions`) whose proj4 strings the core's
//! `crate::crs` uses, with its `wkt` column switched on here only: OGC WKT1 as GDAL writes it,
//! ending in `AUTHORITY["EPSG", code]`, so pyproj, rasterio, rioxarray and odc-geo recognise
//! the EPSG code exactly. That covers every code the core can use, needs no pyproj at run time
//! and adds no hand-written projection naming that could drift from EPSG. (The table costs
//! about 4 MB in the extension module, not in the core library or the CLI.)
//!
//! `TOWGS84[...]` clauses are dropped, as GDAL 3 does when it writes WKT1: with one, PROJ
//! reads a "bound" CRS that no longer reports its EPSG code, and the code already names the
//! datum's transformations.

use crate::errors::{Error, Result};
use pyo3::prelude::*;

/// The WKT of EPSG `code`.
pub fn wkt(code: u32) -> Result<String> {
    // Web Mercator's old aliases, as the core accepts them.
    let code = match code {
        3785 | 900913 => 3857,
        c => c,
    };
    u16::try_from(code)
        .ok()
        .and_then(crs_definitions::from_code)
        .map(|d| without_towgs84(d.wkt))
        .ok_or_else(|| {
            Error::invalid(format!(
                "unknown EPSG code {code}: not in the built-in CRS definitions"
            ))
        })
}

/// `wkt` without its `,TOWGS84[...]` clauses (their lists hold numbers only).
fn without_towgs84(wkt: &str) -> String {
    let mut out = String::with_capacity(wkt.len());
    let mut rest = wkt;
    while let Some(start) = rest.find(",TOWGS84[") {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        match rest.find(']') {
            Some(end) => rest = &rest[end + 1..],
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// `crs_wkt(epsg)`: the WKT of an EPSG code (what the cube's `spatial_ref` holds).
#[pyfunction]
pub fn crs_wkt(epsg: u32) -> PyResult<String> {
    Ok(wkt(epsg)?)
}
