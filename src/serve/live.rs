//! The warehouse as the server sees it: one current snapshot that follows new commits (the
//! latest version is checked at most once per refresh interval) or stays pinned at one
//! version, plus what every request needs from it, worked out once per version.
//!
//! All snapshots open fragments through one bounded [`FragmentCache`]. When a new version
//! replaces the current one, the old snapshot is dropped as soon as the requests using it end,
//! and the cache lets go of fragments the new version no longer names: memory stays within
//! the cache budget however many versions go by.

use super::tms::TileMatrixSet;
use super::Error;
use crate::geo::Bounds;
use crate::grid::TileId;
use crate::profile::ProductProfile;
use crate::store::{FragmentCache, Snapshot, Version, Warehouse};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One version of the warehouse and what requests need from it.
#[derive(Debug)]
pub struct Current {
    /// The snapshot requests read.
    pub snapshot: Snapshot,
    /// Tiles holding data, sorted.
    pub tiles: Vec<TileId>,
    /// Lon/lat bounds of the data (scene footprints), when there is any.
    pub lonlat: Option<Bounds>,
    /// Bounds of the data tiles in the grid CRS, when there is any.
    pub extent: Option<Bounds>,
    /// Finest stored resolution (grid units).
    pub finest: f64,
    /// Acquisition days, oldest first.
    pub days: Vec<NaiveDate>,
    /// Products with data.
    pub products: BTreeSet<String>,
    /// Default stretch per (product, band) from the catalog's statistics of valid pixels.
    pub stretch: BTreeMap<(String, String), (f64, f64)>,
    /// The warehouse grid's tile matrix set (`None` for an empty warehouse).
    pub grid_tms: Option<TileMatrixSet>,
    /// What `/info` answers.
    pub info: Value,
}

impl Current {
    /// The version shown.
    pub fn version(&self) -> Version {
        self.snapshot.version()
    }

    /// Data tiles whose bounds (grid CRS) meet `bounds`.
    pub fn tiles_in(&self, grid: &crate::GridSpec, bounds: &Bounds) -> usize {
        self.tiles
            .iter()
            .filter(|t| {
                let b = grid.tile_bounds(**t);
                b.min_x < bounds.max_x
                    && bounds.min_x < b.max_x
                    && b.min_y < bounds.max_y
                    && bounds.min_y < b.max_y
            })
            .count()
    }

    /// Refuses product names the warehouse does not hold (else a typo would draw nothing).
    pub fn check_products(&self, names: &[String]) -> Result<(), Error> {
        match names.iter().find(|p| !self.products.contains(*p)) {
            Some(p) => Err(Error::bad(
                "product",
                &format!(
                    "{p:?} is not in the warehouse (products: {})",
                    self.products.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// The latest acquisition day.
    pub fn latest_day(&self) -> Option<NaiveDate> {
        self.days.last().copied()
    }

    /// Works out what requests need from a snapshot.
    fn of(warehouse: &Warehouse, snapshot: Snapshot, pinned: bool) -> Result<Current, Error> {
        let grid = warehouse.config().grid;
        let fragments = snapshot.fragments();
        let tiles: Vec<TileId> = fragments
            .iter()
            .map(|f| f.tile)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // The data's extent: the scenes' footprints (fragment rows carry their tiles').
        let union = |a: Bounds, b: Bounds| {
            Bounds::new(
                a.min_x.min(b.min_x),
                a.min_y.min(b.min_y),
                a.max_x.max(b.max_x),
                a.max_y.max(b.max_y),
            )
        };
        let scene_bounds = snapshot
            .scenes()
            .iter()
            .filter(|s| s.scene.footprint_lonlat.len() >= 3)
            .map(|s| Bounds::from_points(s.scene.footprint_lonlat.iter().copied()))
            .reduce(union);
        let lonlat = if fragments.is_empty() {
            None
        } else {
            scene_bounds.or_else(|| fragments.iter().map(|f| f.bbox).reduce(union))
        };
        let extent = tiles.iter().map(|t| grid.tile_bounds(*t)).reduce(|a, b| {
            Bounds::new(
                a.min_x.min(b.min_x),
                a.min_y.min(b.min_y),
                a.max_x.max(b.max_x),
                a.max_y.max(b.max_y),
            )
        });
        let product_ids: BTreeSet<String> = fragments.iter().map(|f| f.product.clone()).collect();
        let finest = fragments
            .iter()
            .map(|f| f.resolution)
            .fold(f64::INFINITY, f64::min);
        let times: BTreeSet<DateTime<Utc>> =
            snapshot.scenes().iter().map(|s| s.scene.acquired).collect();
        let days: Vec<NaiveDate> = times
            .iter()
            .map(|t| t.date_naive())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Default stretch: from the darkest valid pixel to 2.5x the mean (bright clouds and
        // glints would wash out a min..max stretch), per (product, band).
        let mut sums: BTreeMap<(String, String), (f64, f64, f64, f64)> = BTreeMap::new();
        for f in fragments {
            let (Some(lo), Some(hi), Some(mean)) = (f.valid_min, f.valid_max, f.valid_mean) else {
                continue;
            };
            let w = f.valid_count as f64;
            let e = sums.entry((f.product.clone(), f.band.clone())).or_insert((
                f64::INFINITY,
                f64::NEG_INFINITY,
                0.0,
                0.0,
            ));
            e.0 = e.0.min(lo);
            e.1 = e.1.max(hi);
            e.2 += mean * w;
            e.3 += w;
        }
        let stretch = sums
            .into_iter()
            .map(|(k, (lo, hi, sum, n))| {
                let mean = if n > 0.0 { sum / n } else { hi };
                let high = (2.5 * mean).min(hi).max(lo + f64::EPSILON);
                (k, (lo.min(0.0), high))
            })
            .collect();
        let grid_tms = if finest.is_finite() {
            Some(TileMatrixSet::warehouse(&grid, finest)?)
        } else {
            None
        };
        let summary = warehouse.info_of(&snapshot)?;
        let mut products = serde_json::Map::new();
        for (id, bands) in &summary.products {
            let profile: Option<ProductProfile> = snapshot
                .products()
                .get(id)
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            let bands: Vec<Value> = bands
                .iter()
                .map(|b| {
                    let aliases = profile
                        .as_ref()
                        .and_then(|p| p.band(&b.band))
                        .map(|bp| bp.aliases.clone())
                        .unwrap_or_default();
                    json!({
                        "band": b.band,
                        "aliases": aliases,
                        "dtype": b.dtype,
                        "resolution": b.resolution,
                        "observations": b.observations,
                    })
                })
                .collect();
            let cloud_mask = profile
                .as_ref()
                .is_some_and(|p| p.cloud_mask.band().is_some());
            products.insert(
                id.clone(),
                json!({ "bands": bands, "cloud_mask": cloud_mask }),
            );
        }
        let center = lonlat.map(|b| {
            let (lon, lat) = ((b.min_x + b.max_x) / 2.0, (b.min_y + b.max_y) / 2.0);
            // The zoom at which the data's width spans about two 256 px tiles.
            let width = (b.max_x - b.min_x).max(1e-6);
            let zoom = (360.0 / width * 2.0).log2().floor().clamp(0.0, 18.0);
            [lon, lat, zoom]
        });
        let info = json!({
            "warehouse": warehouse.location().display(),
            "version": snapshot.version(),
            "latest_version": summary.latest_version,
            "pinned": pinned,
            "committed": snapshot.timestamp().map(|t| t.to_rfc3339()),
            "grid": grid,
            "products": products,
            "scenes": summary.scenes,
            "tiles": summary.tiles,
            "fragments": summary.fragments,
            "time_min": summary.time_min.map(|t| t.to_rfc3339()),
            "time_max": summary.time_max.map(|t| t.to_rfc3339()),
            "dates": days.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "bounds": lonlat.map(|b| [b.min_x, b.min_y, b.max_x, b.max_y]),
            "center": center,
            "finest_resolution": finest.is_finite().then_some(finest),
            "tileMatrixSets": [super::tms::WEB_MERCATOR_QUAD, super::tms::WAREHOUSE_GRID],
        });
        Ok(Current {
            snapshot,
            tiles,
            lonlat,
            extent,
            finest,
            days,
            products: product_ids,
            stretch,
            grid_tms,
            info,
        })
    }
}

/// The followed (or pinned) warehouse.
#[derive(Debug)]
pub struct Live {
    warehouse: Warehouse,
    cache: FragmentCache,
    pinned: Option<Version>,
    refresh: Duration,
    state: Mutex<State>,
    /// Held by the one request that loads a new version; others keep the current one.
    loading: Mutex<()>,
}

#[derive(Debug)]
struct State {
    current: Arc<Current>,
    checked: Instant,
    /// Why the last check for a new version failed, if it did.
    error: Option<String>,
}

impl Live {
    /// Loads `pinned` (or the latest version) with fragments cached in at most `cache_bytes`.
    pub fn open(
        warehouse: Warehouse,
        pinned: Option<Version>,
        cache_bytes: u64,
        refresh: Duration,
    ) -> Result<Live, Error> {
        let cache = FragmentCache::new(cache_bytes);
        let snapshot = warehouse.snapshot_with_cache(pinned, &cache)?;
        let current = Arc::new(Current::of(&warehouse, snapshot, pinned.is_some())?);
        Ok(Live {
            warehouse,
            cache,
            pinned,
            refresh,
            state: Mutex::new(State {
                current,
                checked: Instant::now(),
                error: None,
            }),
            loading: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// The fragment cache every snapshot uses.
    pub fn cache(&self) -> &FragmentCache {
        &self.cache
    }

    /// True when a version was pinned (`--as-of`).
    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// Why the last check for a new version failed, if it did (the previous version is
    /// served meanwhile).
    pub fn last_error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// The current version, after loading a newer one when the refresh interval has passed
    /// since the last check. A request that finds another one loading is answered from the
    /// version before.
    pub fn current(&self) -> Arc<Current> {
        let current = {
            let s = self.lock();
            if self.pinned.is_some() || s.checked.elapsed() < self.refresh {
                return s.current.clone();
            }
            s.current.clone()
        };
        let Ok(_loading) = self.loading.try_lock() else {
            return current;
        };
        {
            let s = self.lock();
            if s.checked.elapsed() < self.refresh {
                return s.current.clone();
            }
        }
        let result = self.load_newer(current.version());
        let mut s = self.lock();
        s.checked = Instant::now();
        match result {
            Ok(Some(newer)) => {
                s.current = newer;
                s.error = None;
            }
            Ok(None) => s.error = None,
            Err(e) => s.error = Some(e.to_string()),
        }
        s.current.clone()
    }

    /// The latest version when it is newer than `shown`.
    fn load_newer(&self, shown: Version) -> Result<Option<Arc<Current>>, Error> {
        let latest = self.warehouse.latest_version()?;
        if latest <= shown {
            return Ok(None);
        }
        let snapshot = self
            .warehouse
            .snapshot_with_cache(Some(latest), &self.cache)?;
        let named: HashSet<&str> = snapshot
            .fragments()
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        self.cache.retain(|path| named.contains(path));
        drop(named);
        Ok(Some(Arc::new(Current::of(
            &self.warehouse,
            snapshot,
            false,
        )?)))
    }
}
