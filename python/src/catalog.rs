//! Catalog rows as columns for `pyarrow`: one entry per GeoParquet catalog column, built from
//! the snapshot's rows (`Snapshot::fragments()` / `scenes()`), never from the files, so the
//! Python table follows whatever storage the snapshot comes from. `pixelquery/_catalog.py`
//! gives them their Arrow types and the GeoParquet metadata.

use numpy::PyArray1;
use pixelquery::store::{wkb_polygon, FragmentEntry, SceneEntry};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

fn bounds_of(ring: &[(f64, f64)]) -> Option<[f64; 4]> {
    if ring.is_empty() {
        return None;
    }
    let b = pixelquery::Bounds::from_points(ring.iter().copied());
    Some([b.min_x, b.min_y, b.max_x, b.max_y])
}

fn f64s<'py>(py: Python<'py>, v: impl Iterator<Item = f64>) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_vec(py, v.collect())
}

fn i64s<'py>(py: Python<'py>, v: impl Iterator<Item = i64>) -> Bound<'py, PyArray1<i64>> {
    PyArray1::from_vec(py, v.collect())
}

fn wkb<'py>(py: Python<'py>, ring: &[(f64, f64)]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &wkb_polygon(ring))
}

/// Columns of the fragment rows (times in microseconds since 1970, UTC).
pub fn fragment_columns<'py>(
    py: Python<'py>,
    rows: &[FragmentEntry],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let strings = |f: fn(&FragmentEntry) -> String| rows.iter().map(f).collect::<Vec<_>>();
    d.set_item("tile", strings(|r| r.tile.to_string()))?;
    d.set_item("band", strings(|r| r.band.clone()))?;
    d.set_item("product", strings(|r| r.product.clone()))?;
    d.set_item(
        "time_min",
        i64s(py, rows.iter().map(|r| r.time_min.timestamp_micros())),
    )?;
    d.set_item(
        "time_max",
        i64s(py, rows.iter().map(|r| r.time_max.timestamp_micros())),
    )?;
    d.set_item(
        "observations",
        i64s(py, rows.iter().map(|r| r.observations as i64)),
    )?;
    let geometry: Vec<_> = rows.iter().map(|r| wkb(py, &r.footprint_lonlat)).collect();
    d.set_item("geometry", geometry)?;
    let boxes: Vec<Option<[f64; 4]>> = rows
        .iter()
        .map(|r| bounds_of(&r.footprint_lonlat))
        .collect();
    d.set_item("bbox", boxes)?;
    d.set_item("resolution", f64s(py, rows.iter().map(|r| r.resolution)))?;
    d.set_item("path", strings(|r| r.path.clone()))?;
    d.set_item("bytes", i64s(py, rows.iter().map(|r| r.bytes as i64)))?;
    d.set_item("checksum", strings(|r| r.checksum.clone()))?;
    d.set_item("dtype", strings(|r| r.dtype.name().to_string()))?;
    d.set_item("width", i64s(py, rows.iter().map(|r| i64::from(r.width))))?;
    d.set_item("height", i64s(py, rows.iter().map(|r| i64::from(r.height))))?;
    d.set_item(
        "valid_count",
        i64s(py, rows.iter().map(|r| r.valid_count as i64)),
    )?;
    d.set_item(
        "valid_min",
        rows.iter().map(|r| r.valid_min).collect::<Vec<_>>(),
    )?;
    d.set_item(
        "valid_max",
        rows.iter().map(|r| r.valid_max).collect::<Vec<_>>(),
    )?;
    d.set_item(
        "valid_mean",
        rows.iter().map(|r| r.valid_mean).collect::<Vec<_>>(),
    )?;
    Ok(d)
}

/// Columns of the scene rows (times in microseconds since 1970, UTC).
pub fn scene_columns<'py>(py: Python<'py>, rows: &[SceneEntry]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let strings = |f: fn(&SceneEntry) -> String| rows.iter().map(f).collect::<Vec<_>>();
    d.set_item("scene_id", strings(|r| r.scene.scene_id.clone()))?;
    d.set_item("source", strings(|r| r.scene.source.clone()))?;
    d.set_item(
        "acquired",
        i64s(py, rows.iter().map(|r| r.scene.acquired.timestamp_micros())),
    )?;
    d.set_item("product", strings(|r| r.scene.product.clone()))?;
    let geometry: Vec<_> = rows
        .iter()
        .map(|r| wkb(py, &r.scene.footprint_lonlat))
        .collect();
    d.set_item("geometry", geometry)?;
    let boxes: Vec<Option<[f64; 4]>> = rows
        .iter()
        .map(|r| bounds_of(&r.scene.footprint_lonlat))
        .collect();
    d.set_item("bbox", boxes)?;
    d.set_item(
        "cloud_cover",
        rows.iter().map(|r| r.scene.cloud_cover).collect::<Vec<_>>(),
    )?;
    d.set_item(
        "ingested",
        i64s(py, rows.iter().map(|r| r.ingested.timestamp_micros())),
    )?;
    d.set_item("fingerprint", strings(|r| r.scene.fingerprint.clone()))?;
    Ok(d)
}
