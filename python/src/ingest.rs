//! Ingest from Python: the CLI's options as keyword arguments, the report as JSON text.
//!
//! The run happens on its own thread (and rayon's) without the GIL; the calling thread waits,
//! waking a few times a second to hand the progress counters to a Python callback. Rayon
//! workers never call into Python.

use crate::errors::{Error, Result};
use chrono::{DateTime, Utc};
use pixelquery::ingest::pipeline::{self, IngestOptions, IngestReport, Progress};
use pixelquery::ingest::scene::Mismatch;
use pixelquery::ingest::stac::{self, SearchSpec, SigningOptions};
use pixelquery::ingest::{Asset, SceneSource};
use pixelquery::store::FragmentCompression;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

fn item<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<T>> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => Ok(Some(v.extract::<T>().map_err(Into::<PyErr>::into)?)),
        _ => Ok(None),
    }
}

/// The CLI's ingest options from the normalised dict of `pixelquery/_ingest.py`, and the
/// number of worker threads (`jobs`).
fn options(d: &Bound<'_, PyDict>) -> PyResult<(IngestOptions, Option<usize>)> {
    let compression = match item::<String>(d, "compression")?.as_deref() {
        None | Some("none") => FragmentCompression::None,
        Some("lz4") => FragmentCompression::Lz4,
        Some(other) => {
            return Err(Error::invalid(format!(
                "invalid compression {other:?}: use \"none\" or \"lz4\""
            ))
            .into())
        }
    };
    let resampling = match item::<String>(d, "resampling")? {
        Some(r) => r
            .parse::<pixelquery::warp::Resampling>()
            .map_err(|e| Error::invalid(format!("invalid resampling: {e}")))?,
        None => Default::default(),
    };
    let memory_budget_mb: u64 = item(d, "memory_budget")?.unwrap_or(256);
    let options = IngestOptions {
        product: item(d, "product")?,
        bands: item(d, "bands")?,
        glob: item(d, "glob")?,
        date_pattern: item(d, "date_pattern")?,
        resampling,
        crs: item(d, "crs")?,
        tile_size: item(d, "tile_size")?,
        commit_every: item(d, "commit_every")?,
        memory_budget: memory_budget_mb.max(1) << 20,
        compression,
        cloud_band: item::<bool>(d, "cloud_band")?.unwrap_or(true),
        mismatch: if item::<bool>(d, "allow_mismatch")?.unwrap_or(false) {
            Mismatch::Warn
        } else {
            Mismatch::Error
        },
        ..Default::default()
    };
    let jobs: Option<usize> = item(d, "jobs")?;
    if jobs == Some(0) {
        return Err(Error::invalid("jobs must be at least 1").into());
    }
    Ok((options, jobs))
}

/// Progress counters the waiting thread reads.
#[derive(Default)]
struct Counters {
    total: AtomicUsize,
    done: AtomicUsize,
    bytes: AtomicU64,
    last: Mutex<String>,
}

impl Progress for Counters {
    fn begin(&self, scenes: usize) {
        self.total.store(scenes, Ordering::Relaxed);
    }

    fn searching(&self, items: usize, matched: Option<u64>) {
        if let Ok(mut last) = self.last.lock() {
            *last = match matched {
                Some(m) => format!("searching: {items} of {m} items"),
                None => format!("searching: {items} items"),
            };
        }
    }

    fn scene_done(&self, scene: &str, bytes: u64, _tiles: usize) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            scene.clone_into(&mut *last);
        }
    }
}

/// Runs `work` on its own thread without the GIL, calling `callback(done, total, bytes,
/// scene)` from this thread while it runs and once at the end.
fn run_with_progress(
    py: Python<'_>,
    jobs: Option<usize>,
    callback: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(&Counters) -> Result<IngestReport> + Send,
) -> PyResult<String> {
    let counters = Counters::default();
    let report = std::thread::scope(|scope| -> PyResult<Result<IngestReport>> {
        let (tx, rx) = mpsc::channel();
        // Receivers are not Sync: the GIL-free wait borrows it through a mutex.
        let rx = Mutex::new(rx);
        let counters = &counters;
        scope.spawn(move || {
            let run = || work(counters);
            let result = match jobs {
                Some(n) => rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| Error::invalid(format!("cannot start {n} threads: {e}")))
                    .and_then(|pool| pool.install(run)),
                None => run(),
            };
            let _ = tx.send(result);
        });
        let notify = |cb: &Bound<'_, PyAny>| -> PyResult<()> {
            let last = counters.last.lock().map(|l| l.clone()).unwrap_or_default();
            cb.call1((
                counters.done.load(Ordering::Relaxed),
                counters.total.load(Ordering::Relaxed),
                counters.bytes.load(Ordering::Relaxed),
                last,
            ))?;
            Ok(())
        };
        loop {
            let waited = py.detach(|| match rx.lock() {
                Ok(rx) => rx.recv_timeout(Duration::from_millis(250)),
                Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
            });
            match waited {
                Ok(result) => {
                    if let Some(cb) = callback {
                        notify(cb)?;
                    }
                    return Ok(result);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(cb) = callback {
                        notify(cb)?;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Ok(Err(Error::invalid(
                        "the ingest thread stopped without a report",
                    )))
                }
            }
        }
    })??;
    serde_json::to_string(&report).map_err(|e| Error::invalid(e.to_string()).into())
}

/// `ingest(warehouse, inputs, options, progress=None)`: ingests files, folders, URL lists and
/// STAC items into the warehouse (created when missing); returns the report as JSON.
#[pyfunction]
#[pyo3(signature = (warehouse, inputs, options, progress=None))]
pub fn ingest(
    py: Python<'_>,
    warehouse: PathBuf,
    inputs: Vec<String>,
    options: &Bound<'_, PyDict>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let (options, jobs) = self::options(options)?;
    run_with_progress(py, jobs, progress, |p| {
        pipeline::ingest(&warehouse, &inputs, &options, p).map_err(Error::from)
    })
}

/// `ingest_search(warehouse, search, options, progress=None)`: searches a STAC API (`search`:
/// the JSON of a `SearchSpec`) and ingests what it finds; returns the report as JSON.
#[pyfunction]
#[pyo3(signature = (warehouse, search, options, progress=None))]
pub fn ingest_search(
    py: Python<'_>,
    warehouse: PathBuf,
    search: String,
    options: &Bound<'_, PyDict>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let mut spec: SearchSpec = serde_json::from_str(&search)
        .map_err(|e| Error::invalid(format!("invalid search: {e}")))?;
    spec.check()
        .map_err(|e| Error::from(stac::run::Error::from(e)))?;
    let (options, jobs) = self::options(options)?;
    run_with_progress(py, jobs, progress, |p| {
        stac::ingest_search(&warehouse, &spec, &options, &SigningOptions::default(), p)
            .map_err(Error::from)
    })
}

/// `ingest_update(warehouse, options, progress=None)`: runs every search recorded in the
/// warehouse again and ingests what is new; returns the report as JSON.
#[pyfunction]
#[pyo3(signature = (warehouse, options, progress=None))]
pub fn ingest_update(
    py: Python<'_>,
    warehouse: PathBuf,
    options: &Bound<'_, PyDict>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let (options, jobs) = self::options(options)?;
    run_with_progress(py, jobs, progress, |p| {
        stac::update(&warehouse, &options, &SigningOptions::default(), p).map_err(Error::from)
    })
}

fn scene_dict<'py>(py: Python<'py>, s: &SceneSource) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", &s.id)?;
    let assets = PyList::empty(py);
    for a in &s.assets {
        let ad = PyDict::new(py);
        ad.set_item("location", &a.location)?;
        ad.set_item("band_names", a.band_names.clone())?;
        ad.set_item("single_band_name", a.single_band_name.clone())?;
        assets.append(ad)?;
    }
    d.set_item("assets", assets)?;
    d.set_item("acquired", s.acquired.map(|t| t.to_rfc3339()))?;
    d.set_item("cloud_cover", s.cloud_cover)?;
    d.set_item("epsg", s.epsg)?;
    Ok(d)
}

fn scene_from_dict(d: &Bound<'_, PyDict>) -> PyResult<SceneSource> {
    let id: String = item(d, "id")?.ok_or_else(|| Error::invalid("a scene needs an \"id\""))?;
    let mut assets = Vec::new();
    for a in d
        .get_item("assets")?
        .ok_or_else(|| Error::invalid(format!("scene {id:?} has no \"assets\"")))?
        .cast_into::<PyList>()?
        .iter()
    {
        let a = a.cast_into::<PyDict>()?;
        assets.push(Asset {
            location: item(&a, "location")?.ok_or_else(|| {
                Error::invalid(format!("an asset of scene {id:?} has no \"location\""))
            })?,
            band_names: item(&a, "band_names")?,
            single_band_name: item(&a, "single_band_name")?,
            ..Default::default()
        });
    }
    let acquired = item::<String>(d, "acquired")?
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    Error::invalid(format!("scene {id:?}: invalid acquired time {t:?}: {e}"))
                })
        })
        .transpose()?;
    Ok(SceneSource {
        acquired,
        cloud_cover: item(d, "cloud_cover")?,
        epsg: item(d, "epsg")?,
        id,
        assets,
        ..Default::default()
    })
}

/// `discover(inputs, glob=None)`: the scenes the inputs hold, as dicts (`id`, `assets`,
/// `acquired`, `cloud_cover`, `epsg`) that `ingest_scenes` takes back.
#[pyfunction]
#[pyo3(signature = (inputs, glob=None))]
pub fn discover<'py>(
    py: Python<'py>,
    inputs: Vec<String>,
    glob: Option<String>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let scenes =
        py.detach(|| pixelquery::ingest::discover(&inputs, glob.as_deref()).map_err(Error::from))?;
    scenes.iter().map(|s| scene_dict(py, s)).collect()
}

/// `ingest_scenes(warehouse, scenes, options, progress=None)`: ingests scenes found by
/// `discover` (one writer's share of a distributed ingest); returns the report as JSON.
#[pyfunction]
#[pyo3(signature = (warehouse, scenes, options, progress=None))]
pub fn ingest_scenes(
    py: Python<'_>,
    warehouse: PathBuf,
    scenes: Vec<Bound<'_, PyDict>>,
    options: &Bound<'_, PyDict>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let scenes: Vec<SceneSource> = scenes
        .iter()
        .map(scene_from_dict)
        .collect::<PyResult<_>>()?;
    let (options, jobs) = self::options(options)?;
    run_with_progress(py, jobs, progress, |p| {
        pipeline::ingest_scenes(&warehouse, &scenes, &options, p).map_err(Error::from)
    })
}

/// `write_demo_scenes(dir)`: the demo's synthetic Sentinel-2-like series (8 dates, one file
/// per band plus a 20 m SCL), written with PixelQuery's own COG writer; returns the files.
#[pyfunction]
pub fn write_demo_scenes(py: Python<'_>, dir: PathBuf) -> PyResult<Vec<String>> {
    let files =
        py.detach(|| pixelquery::demo::write_scenes(Path::new(&dir)).map_err(Error::from))?;
    Ok(files.into_iter().map(|p| p.display().to_string()).collect())
}

/// `demo_sample_point()`: a (lon, lat) inside the demo scenes, on a field that greens up.
#[pyfunction]
pub fn demo_sample_point() -> (f64, f64) {
    pixelquery::demo::sample_point()
}
