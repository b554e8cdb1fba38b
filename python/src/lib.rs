//! `pixelquery._pixelquery`: the Rust half of the `pixelquery` Python package.
//!
//! It stays thin: it turns normalised Python values into the core's builders and options,
//! runs them without the GIL, and hands results back, cubes without copying their pixels.
//! Argument checking, xarray, pyarrow and Dask live in the Python modules beside it.

use pyo3::prelude::*;

mod catalog;
mod crs;
mod cube;
mod errors;
mod grid;
mod ingest;
mod spec;
mod warehouse;

#[pymodule]
fn _pixelquery(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<warehouse::Warehouse>()?;
    m.add_function(wrap_pyfunction!(crs::crs_wkt, m)?)?;
    m.add_function(wrap_pyfunction!(ingest::ingest, m)?)?;
    m.add_function(wrap_pyfunction!(ingest::discover, m)?)?;
    m.add_function(wrap_pyfunction!(ingest::ingest_scenes, m)?)?;
    m.add_function(wrap_pyfunction!(ingest::ingest_search, m)?)?;
    m.add_function(wrap_pyfunction!(ingest::ingest_update, m)?)?;
    m.add_function(wrap_pyfunction!(ingest::write_demo_scenes, m)?)?;
    m.add_function(wrap_pyfunction!(ingest::demo_sample_point, m)?)?;
    m.add("DEMO_DATES", pixelquery::demo::DATES.to_vec())?;
    m.add("DEMO_CLOUDY_DATE", pixelquery::demo::CLOUDY_DATE)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
