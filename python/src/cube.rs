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

/// A cube's buffer as the numpy array's base object. When numpy frees the array, the buffer
/// goes back to the engine's pool ([`pixelquery::query::recycle`]), so the next query of a
/// similar size paints into warm memory instead of fresh pages.
#[pyclass(frozen, module = "pixelquery._pixelquery")]
pub struct CubeBuffer {
    held: Option<Box<dyn Held>>,
}

/// A cube's array of some sample type, held for numpy.
trait Held: Send + Sync {
    /// A numpy array over the held memory with `owner` (the holder) as its base.
    fn numpy<'py>(&self, owner: Bound<'py, PyAny>) -> Bound<'py, PyAny>;
    /// Hands the buffer to the engine's pool.
    fn give_back(self: Box<Self>);
}

impl<T: Element + Send + Sync + 'static> Held for ndarray::Array4<T> {
    fn numpy<'py>(&self, owner: Bound<'py, PyAny>) -> Bound<'py, PyAny> {
        // SAFETY: `owner` is the `CubeBuffer` holding `self`, set as the array's base, so the
        // memory lives as long as the numpy array; nothing resizes or moves the held array's
        // buffer while it is held (the holder is frozen and only gives it up when dropped).
        unsafe { PyArray::borrow_from_array(self, owner) }.into_any()
    }

    fn give_back(self: Box<Self>) {
        pixelquery::query::recycle::give_array(*self);
    }
}

impl Drop for CubeBuffer {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            held.give_back();
        }
    }
}

/// Hands the cube's buffer to numpy (no copy) and records where the buffer lives, so tests
/// can check that numpy looks at the very memory Rust filled.
fn hand_over<'py, T: Element + Send + Sync + 'static>(
    py: Python<'py>,
    d: &Bound<'py, PyDict>,
    data: ndarray::Array4<T>,
) -> PyResult<()> {
    let address = data.as_ptr() as usize;
    let owner = Bound::new(
        py,
        CubeBuffer {
            held: Some(Box::new(data)),
        },
    )?;
    let held = owner.get().held.as_deref().ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("pixelquery: a cube buffer was empty")
    })?;
    let array = held.numpy(owner.clone().into_any());
    d.set_item("data_address", address)?;
    d.set_item("data", array)?;
    Ok(())
}

macro_rules! native {
    ($py:expr, $c:expr) => {{
        let mut c = $c;
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
        hand_over($py, &d, std::mem::take(&mut c.data))?;
        d
    }};
}

impl AnyCube {
    /// `{data, data_address, times_ns, scenes, products, bands, band_sources, epsg, transform,
    /// nodata}`.
    pub fn into_py<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        Ok(match self {
            AnyCube::F32(mut c) => {
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
                hand_over(py, &d, std::mem::take(&mut c.data))?;
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
