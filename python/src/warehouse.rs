//! `_pixelquery.Warehouse`: an open warehouse pinned to one version (its current snapshot)
//! until `refresh()`, older snapshots asked for by `as_of` kept for repeated queries, and the
//! calls the Python package builds on (info, catalog columns, queries, output grids).

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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Snapshots of other versions (`as_of`) kept open besides the current one (their catalogs;
/// opened fragments live in the warehouse's one cache).
const KEPT_SNAPSHOTS: usize = 4;

/// An open warehouse (the Python `pixelquery.Warehouse` wraps it). Queries without `as_of`
/// answer from `current`, the version pinned at open or by the last `refresh()`, so separate
/// queries share one time axis while ingests commit.
#[pyclass(frozen, module = "pixelquery._pixelquery")]
pub struct Warehouse {
    inner: pixelquery::store::Warehouse,
    /// The pinned snapshot (shared with running queries, so `refresh` never waits for them).
    current: Mutex<Arc<Snapshot>>,
    /// Recently used snapshots of other versions, newest last.
    kept: Mutex<VecDeque<Arc<Snapshot>>>,
    /// The opened fragments of every snapshot, bounded: a warehouse kept open while ingests
    /// commit shares them between versions instead of holding a copy per version.
    cache: FragmentCache,
}

/// Locks a mutex whose data stays valid if a holder panicked (it only swaps `Arc`s).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Warehouse {
    /// The snapshot at `as_of` (the pinned one when `None`), from the kept ones when possible.
    fn snapshot(&self, as_of: Option<Version>) -> Result<Arc<Snapshot>> {
        let current = lock(&self.current).clone();
        let version = match as_of {
            None => return Ok(current),
            Some(v) if v == current.version() => return Ok(current),
            Some(v) => v,
        };
        if let Some(s) = lock(&self.kept).iter().find(|s| s.version() == version) {
            return Ok(s.clone());
        }
        let snapshot = Arc::new(self.inner.snapshot_with_cache(Some(version), &self.cache)?);
        let mut kept = lock(&self.kept);
        if !kept.iter().any(|s| s.version() == version) {
            if kept.len() == KEPT_SNAPSHOTS {
                kept.pop_front();
            }
            kept.push_back(snapshot.clone());
        }
        Ok(snapshot)
    }

    /// Runs a query on a snapshot, in the sample type asked for.
    fn run(&self, spec: &QuerySpec, dtype: Option<&str>) -> Result<AnyCube> {
        let snapshot = self.snapshot(spec.as_of)?;
        self.run_on(&snapshot, spec, dtype)
    }

    /// Runs a query on `snapshot`.
    fn run_on(
        &self,
        snapshot: &Snapshot,
        spec: &QuerySpec,
        dtype: Option<&str>,
    ) -> Result<AnyCube> {
        let query = || spec.apply(self.inner.query().on_snapshot(snapshot));
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
    /// Opens the warehouse at `path`, pinned to its latest version, caching opened fragments
    /// in at most `cache_mb` MiB.
    #[staticmethod]
    #[pyo3(signature = (path, cache_mb=256))]
    fn open(py: Python<'_>, path: std::path::PathBuf, cache_mb: u64) -> PyResult<Warehouse> {
        let cache = FragmentCache::new(cache_mb.saturating_mul(1 << 20));
        let (inner, current) = py.detach(|| -> Result<_> {
            let inner = pixelquery::store::Warehouse::open(&path)?;
            let current = inner.snapshot_with_cache(None, &cache)?;
            Ok((inner, current))
        })?;
        Ok(Warehouse {
            inner,
            current: Mutex::new(Arc::new(current)),
            kept: Mutex::new(VecDeque::new()),
            cache,
        })
    }

    /// The version queries answer from when they name none.
    #[getter]
    fn version(&self) -> u64 {
        lock(&self.current).version()
    }

    /// Pins the latest committed version and lets the old snapshot go (its catalog and
    /// opened fragments are freed once no running query holds them). Returns the version.
    fn refresh(&self, py: Python<'_>) -> PyResult<u64> {
        let latest = py.detach(|| self.inner.latest_version().map_err(Error::from))?;
        if latest == self.version() {
            return Ok(latest);
        }
        let kept = lock(&self.kept)
            .iter()
            .find(|s| s.version() == latest)
            .cloned();
        let fresh = match kept {
            Some(s) => s,
            None => Arc::new(py.detach(|| {
                self.inner
                    .snapshot_with_cache(Some(latest), &self.cache)
                    .map_err(Error::from)
            })?),
        };
        let old = std::mem::replace(&mut *lock(&self.current), fresh);
        lock(&self.kept).retain(|s| s.version() != latest && s.version() != old.version());
        drop(old);
        Ok(latest)
    }

    /// Versions of the snapshots held: the current one first, then those kept for `as_of`.
    fn held_versions(&self) -> Vec<u64> {
        let mut out = vec![self.version()];
        out.extend(lock(&self.kept).iter().map(|s| s.version()));
        out
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
        d.set_item("snapshots", self.held_versions())?;
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

    /// What `pixelquery info --json` prints for snapshot `as_of` (the pinned one by
    /// default), as JSON text.
    #[pyo3(signature = (as_of=None))]
    fn info_json(&self, py: Python<'_>, as_of: Option<u64>) -> PyResult<String> {
        let info = py.detach(|| {
            let snapshot = self.snapshot(as_of)?;
            self.inner.info_of(&snapshot).map_err(Error::from)
        })?;
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

    /// Runs the query `runs` times in Rust alone (no Python objects built) and returns the
    /// seconds of each run: the engine's own time, for benchmarks.
    #[pyo3(signature = (spec, dtype=None, runs=1))]
    fn time_engine(
        &self,
        py: Python<'_>,
        spec: &Bound<'_, PyDict>,
        dtype: Option<String>,
        runs: usize,
    ) -> PyResult<Vec<f64>> {
        let spec = QuerySpec::from_dict(spec)?;
        Ok(py.detach(|| -> Result<Vec<f64>> {
            let snapshot = self.snapshot(spec.as_of)?;
            (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    drop(self.run_on(&snapshot, &spec, dtype.as_deref())?);
                    Ok(start.elapsed().as_secs_f64())
                })
                .collect()
        })?)
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
