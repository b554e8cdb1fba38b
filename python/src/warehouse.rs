//! `_pixelquery.Warehouse`: an open warehouse, its snapshots kept for repeated queries, and
//! the calls the Python package builds on (info, catalog columns, queries, output grids).

use crate::catalog;
use crate::cube::AnyCube;
use crate::errors::{Error, Result};
use crate::grid;
use crate::spec::QuerySpec;
use pixelquery::store::{FragmentCache, Snapshot, Version};
use pixelquery::DataType;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Snapshots kept open (their catalogs; opened fragments live in the warehouse's one cache).
const KEPT_SNAPSHOTS: usize = 4;

/// An open warehouse (the Python `pixelquery.Warehouse` wraps it).
#[pyclass(frozen, module = "pixelquery._pixelquery")]
pub struct Warehouse {
    inner: pixelquery::store::Warehouse,
    /// Recently used snapshots, newest last: repeated queries reuse opened fragments.
    snapshots: Mutex<VecDeque<Snapshot>>,
    /// The opened fragments of every snapshot, bounded: a warehouse kept open while ingests
    /// commit shares them between versions instead of holding a copy per version.
    cache: FragmentCache,
}

impl Warehouse {
    /// The snapshot at `as_of` (the latest when `None`), from the kept ones when possible.
    fn snapshot(&self, as_of: Option<Version>) -> Result<Snapshot> {
        let version = match as_of {
            Some(v) => v,
            None => self.inner.latest_version()?,
        };
        let mut kept = self
            .snapshots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(s) = kept.iter().find(|s| s.version() == version) {
            return Ok(s.clone());
        }
        let snapshot = self.inner.snapshot_with_cache(Some(version), &self.cache)?;
        if kept.len() == KEPT_SNAPSHOTS {
            kept.pop_front();
        }
        kept.push_back(snapshot.clone());
        Ok(snapshot)
    }

    /// Runs a query on a snapshot, in the sample type asked for.
    fn run(&self, spec: &QuerySpec, dtype: Option<&str>) -> Result<AnyCube> {
        let snapshot = self.snapshot(spec.as_of)?;
        let query = || spec.apply(self.inner.query().on_snapshot(&snapshot));
        let requested = match dtype {
            None | Some("float32") => return Ok(AnyCube::F32(query()?.run()?)),
            Some("native") => None,
            Some(name) => Some(DataType::parse(name).ok_or_else(|| {
                Error::invalid(format!(
                    "invalid dtype {name:?}: use None/\"float32\" (NaN where invalid), \"native\", or the bands' type (uint8, int8, uint16, int16, uint32, int32, float32, float64)"
                ))
            })?),
        };
        // The bands' type is what the fragments hold: try the common u16, and the error
        // names the stored type when it is another.
        let first = requested.unwrap_or(DataType::U16);
        match run_native(query()?, first) {
            Err(e) if requested.is_none() => match e.stored {
                Some(stored) => run_native(query()?, stored).map_err(|e| e.error),
                None => Err(e.error),
            },
            r => r.map_err(|e| e.error),
        }
    }
}

/// A failed native run, with the stored sample type when that was the reason.
struct NativeFailure {
    error: Error,
    stored: Option<DataType>,
}

fn run_native(
    q: pixelquery::query::Query<'_>,
    dtype: DataType,
) -> std::result::Result<AnyCube, NativeFailure> {
    use pixelquery::query::engine::Error as E;
    let r = match dtype {
        DataType::U8 => q.run_native::<u8>().map(AnyCube::U8),
        DataType::I8 => q.run_native::<i8>().map(AnyCube::I8),
        DataType::U16 => q.run_native::<u16>().map(AnyCube::U16),
        DataType::I16 => q.run_native::<i16>().map(AnyCube::I16),
        DataType::U32 => q.run_native::<u32>().map(AnyCube::U32),
        DataType::I32 => q.run_native::<i32>().map(AnyCube::I32),
        DataType::F32 => q.run_native::<f32>().map(AnyCube::F32Native),
        DataType::F64 => q.run_native::<f64>().map(AnyCube::F64),
    };
    r.map_err(|e| NativeFailure {
        stored: match &e {
            E::SampleType { stored, .. } => Some(*stored),
            _ => None,
        },
        error: e.into(),
    })
}

#[pymethods]
impl Warehouse {
    /// Opens the warehouse at `path`, caching opened fragments in at most `cache_mb` MiB.
    #[staticmethod]
    #[pyo3(signature = (path, cache_mb=256))]
    fn open(py: Python<'_>, path: std::path::PathBuf, cache_mb: u64) -> PyResult<Warehouse> {
        let inner = py.detach(|| pixelquery::store::Warehouse::open(&path).map_err(Error::from))?;
        Ok(Warehouse {
            inner,
            snapshots: Mutex::new(VecDeque::new()),
            cache: FragmentCache::new(cache_mb.saturating_mul(1 << 20)),
        })
    }

    /// The fragment cache: `{files, entries, bytes, max_bytes, hits, misses, evictions}` and the
    /// versions of the snapshots kept.
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.cache.stats();
        let d = PyDict::new(py);
        d.set_item("files", s.files)?;
        d.set_item("entries", s.entries)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("max_bytes", s.max_bytes)?;
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("evictions", s.evictions)?;
        let kept: Vec<u64> = self
            .snapshots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|s| s.version())
            .collect();
        d.set_item("snapshots", kept)?;
        Ok(d)
    }

    /// The warehouse directory.
    #[getter]
    fn path(&self) -> String {
        self.inner.root().display().to_string()
    }

    /// `(epsg, origin_x, origin_y, tile_size)` of the tile grid.
    #[getter]
    fn grid(&self) -> (u32, f64, f64, f64) {
        let g = self.inner.config().grid;
        (g.epsg, g.origin_x, g.origin_y, g.tile_size)
    }

    /// The latest committed version.
    fn latest_version(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(py.detach(|| self.inner.latest_version().map_err(Error::from))?)
    }

    /// What `pixelquery info --json` prints, as JSON text.
    fn info_json(&self, py: Python<'_>) -> PyResult<String> {
        let info = py.detach(|| self.inner.info().map_err(Error::from))?;
        serde_json::to_string(&info).map_err(|e| Error::invalid(e.to_string()).into())
    }

    /// The catalog rows of snapshot `as_of` as columns (`kind`: "fragments" or "scenes").
    #[pyo3(signature = (kind, as_of=None))]
    fn catalog_columns<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        as_of: Option<u64>,
    ) -> PyResult<(u64, Bound<'py, PyDict>)> {
        let snapshot = py.detach(|| self.snapshot(as_of))?;
        let columns = match kind {
            "fragments" => catalog::fragment_columns(py, snapshot.fragments())?,
            "scenes" => catalog::scene_columns(py, snapshot.scenes())?,
            other => {
                return Err(Error::invalid(format!(
                    "invalid kind {other:?}: use \"fragments\" or \"scenes\""
                ))
                .into())
            }
        };
        Ok((snapshot.version(), columns))
    }

    /// Runs a query; `spec` is the normalised dict of `pixelquery/_query.py`. Returns
    /// `{data, data_address, times_ns, scenes, products, bands, epsg, transform, nodata}`
    /// where `data` is the cube's own buffer as a numpy array.
    #[pyo3(signature = (spec, dtype=None))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        spec: &Bound<'py, PyDict>,
        dtype: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let spec = QuerySpec::from_dict(spec)?;
        let cube = py.detach(|| self.run(&spec, dtype.as_deref()))?;
        cube.into_py(py)
    }

    /// The grid the query paints, without reading pixels: `(geotransform, width, height)` in
    /// the warehouse grid's CRS (what a chunked query splits).
    fn output_grid(
        &self,
        py: Python<'_>,
        spec: &Bound<'_, PyDict>,
    ) -> PyResult<([f64; 6], usize, usize)> {
        let spec = QuerySpec::from_dict(spec)?;
        let (transform, width, height) = py.detach(|| -> Result<_> {
            let snapshot = self.snapshot(spec.as_of)?;
            Ok(spec
                .apply(self.inner.query().on_snapshot(&snapshot))?
                .output_grid()?)
        })?;
        Ok((transform.to_gdal(), width, height))
    }

    /// Which pixels of a `width` x `height` grid at `transform` (grid CRS) lie inside the
    /// spec's polygons (pixel centres); `None` for points and boxes.
    fn region_mask<'py>(
        &self,
        py: Python<'py>,
        spec: &Bound<'py, PyDict>,
        transform: [f64; 6],
        width: usize,
        height: usize,
    ) -> PyResult<Option<Bound<'py, numpy::PyArray2<bool>>>> {
        let spec = QuerySpec::from_dict(spec)?;
        let mask = py.detach(|| grid::region_mask(&self.inner, &spec, transform, width, height))?;
        Ok(mask.map(|m| numpy::PyArray::from_owned_array(py, m)))
    }
}
