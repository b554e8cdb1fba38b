//! Query results handed to Python without copying the pixels: the cube's `ndarray` buffer
//! becomes the numpy array's memory (its base object owns the Rust allocation), and the
//! coordinates travel as small arrays and lists.

use crate::errors::{Error, Result};
use chrono::{DateTime, Utc};
use numpy::{Element, PyArray, PyArray1};
use pixelquery::query::{Cube, NativeCube};
use pixelquery::GeoTransform;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A finished cube of any sample type, before it meets Python.
pub enum AnyCube {
    /// `f32` with NaN where invalid.
    F32(Cube),
    /// Native samples, nodata where invalid.
    U8(NativeCube<u8>),
    /// Native samples.
    I8(NativeCube<i8>),
    /// Native samples.
    U16(NativeCube<u16>),
    /// Native samples.
    I16(NativeCube<i16>),
    /// Native samples.
    U32(NativeCube<u32>),
    /// Native samples.
    I32(NativeCube<i32>),
    /// Native samples.
    F32Native(NativeCube<f32>),
    /// Native samples.
    F64(NativeCube<f64>),
}

/// Nanoseconds since 1970 (numpy's `datetime64[ns]`).
fn nanos(times: &[DateTime<Utc>]) -> Result<Vec<i64>> {
    times
        .iter()
        .map(|t| {
            t.timestamp_nanos_opt().ok_or_else(|| {
                Error::invalid(format!(
                    "time {t} is outside numpy's datetime64[ns] range (1678-2262)"
                ))
            })
        })
        .collect()
}

struct Parts<'a> {
    times: &'a [DateTime<Utc>],
    scenes: &'a [Vec<String>],
    products: &'a [String],
    bands: &'a [String],
    band_sources: &'a [String],
    epsg: u32,
    transform: GeoTransform,
    nodata: Option<f64>,
}

fn describe<'py>(py: Python<'py>, p: Parts<'_>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("times_ns", PyArray1::from_vec(py, nanos(p.times)?))?;
    d.set_item("scenes", p.scenes.to_vec())?;
    d.set_item("products", p.products.to_vec())?;
    d.set_item("bands", p.bands.to_vec())?;
    d.set_item("band_sources", p.band_sources.to_vec())?;
    d.set_item("epsg", p.epsg)?;
    d.set_item("transform", p.transform.to_gdal().to_vec())?;
    d.set_item("nodata", p.nodata)?;
    Ok(d)
}

/// Moves the cube's buffer into a numpy array (no copy) and records where the buffer lives,
/// so tests can check that numpy looks at the very memory Rust filled.
fn hand_over<'py, T: Element>(
    py: Python<'py>,
    d: &Bound<'py, PyDict>,
    data: ndarray::Array4<T>,
) -> PyResult<()> {
    let address = data.as_ptr() as usize;
    d.set_item("data_address", address)?;
    d.set_item("data", PyArray::from_owned_array(py, data))?;
    Ok(())
}

macro_rules! native {
    ($py:expr, $c:expr) => {{
        let c = $c;
        let d = describe(
            $py,
            Parts {
                times: &c.times,
                scenes: &c.scenes,
                products: &c.products,
                bands: &c.bands,
                band_sources: &c.band_sources,
                epsg: c.epsg,
                transform: c.transform,
                nodata: Some(pixelquery::Sample::to_f64(c.fill)),
            },
        )?;
        hand_over($py, &d, c.data)?;
        d
    }};
}

impl AnyCube {
    /// `{data, data_address, times_ns, scenes, products, bands, band_sources, epsg, transform,
    /// nodata}`.
    pub fn into_py<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        Ok(match self {
            AnyCube::F32(c) => {
                let d = describe(
                    py,
                    Parts {
                        times: &c.times,
                        scenes: &c.scenes,
                        products: &c.products,
                        bands: &c.bands,
                        band_sources: &c.band_sources,
                        epsg: c.epsg,
                        transform: c.transform,
                        nodata: None,
                    },
                )?;
                hand_over(py, &d, c.data)?;
                d
            }
            AnyCube::U8(c) => native!(py, c),
            AnyCube::I8(c) => native!(py, c),
            AnyCube::U16(c) => native!(py, c),
            AnyCube::I16(c) => native!(py, c),
            AnyCube::U32(c) => native!(py, c),
            AnyCube::I32(c) => native!(py, c),
            AnyCube::F32Native(c) => native!(py, c),
            AnyCube::F64(c) => native!(py, c),
        })
    }
}
