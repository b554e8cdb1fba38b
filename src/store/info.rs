//! A summary of a warehouse: what `pixelquery info` prints.

use super::{Result, Snapshot, Version, Warehouse};
use crate::GridSpec;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One band of one product.
#[derive(Debug, Clone, Serialize)]
pub struct BandSummary {
    /// Band name.
    pub band: String,
    /// Sample type.
    pub dtype: String,
    /// Resolution in grid units.
    pub resolution: f64,
    /// Fragments holding it.
    pub fragments: usize,
    /// Observations stored.
    pub observations: u64,
}

/// What a warehouse holds, as of its latest snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct WarehouseInfo {
    /// The directory.
    pub path: String,
    /// Grid definition.
    pub grid: GridSpec,
    /// Fragment compression.
    pub compression: String,
    /// The version summarised.
    pub version: Version,
    /// The latest version.
    pub latest_version: Version,
    /// The oldest version still readable (older ones were vacuumed).
    pub oldest_version: Version,
    /// Live catalog parts (files of the catalog's Delta table) at this version.
    pub catalog_parts: usize,
    /// Products and their bands.
    pub products: BTreeMap<String, Vec<BandSummary>>,
    /// Scenes committed.
    pub scenes: usize,
    /// Earliest acquisition.
    pub time_min: Option<DateTime<Utc>>,
    /// Latest acquisition.
    pub time_max: Option<DateTime<Utc>>,
    /// Distinct tiles.
    pub tiles: usize,
    /// Fragment files referenced.
    pub fragments: usize,
    /// Bytes of referenced fragments.
    pub bytes: u64,
    /// STAC API searches the warehouse keeps up to date (`ingest --update`), by id.
    pub searches: BTreeMap<String, serde_json::Value>,
}

impl Warehouse {
    /// Summarises the latest snapshot.
    pub fn info(&self) -> Result<WarehouseInfo> {
        self.info_of(&self.snapshot(None)?)
    }

    /// Summarises a snapshot of this warehouse.
    pub fn info_of(&self, snapshot: &Snapshot) -> Result<WarehouseInfo> {
        let log = self.log();
        let latest = log.latest_version()?;
        let oldest = log.listing()?.oldest_readable().unwrap_or(0);
        let mut products: BTreeMap<String, BTreeMap<String, BandSummary>> = BTreeMap::new();
        let mut tiles = BTreeSet::new();
        let mut bytes = 0;
        for f in snapshot.fragments() {
            tiles.insert(f.tile);
            bytes += f.bytes;
            let band = products
                .entry(f.product.clone())
                .or_default()
                .entry(f.band.clone())
                .or_insert_with(|| BandSummary {
                    band: f.band.clone(),
                    dtype: f.dtype.name().to_string(),
                    resolution: f.resolution,
                    fragments: 0,
                    observations: 0,
                });
            band.fragments += 1;
            band.observations += f.observations;
        }
        let times: Vec<DateTime<Utc>> =
            snapshot.scenes().iter().map(|s| s.scene.acquired).collect();
        Ok(WarehouseInfo {
            path: self.root().display().to_string(),
            grid: self.config().grid,
            compression: format!("{:?}", self.config().compression).to_lowercase(),
            version: snapshot.version(),
            latest_version: latest,
            oldest_version: oldest,
            catalog_parts: snapshot.parts().len(),
            products: products
                .into_iter()
                .map(|(p, bands)| (p, bands.into_values().collect()))
                .collect(),
            scenes: snapshot.scenes().len(),
            time_min: times.iter().min().copied(),
            time_max: times.iter().max().copied(),
            tiles: tiles.len(),
            fragments: snapshot.fragments().len(),
            bytes,
            searches: snapshot.searches().clone(),
        })
    }
}

impl std::fmt::Display for WarehouseInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "warehouse   {}", self.path)?;
        writeln!(
            f,
            "grid        EPSG:{}, origin ({}, {}), tiles of {} units",
            self.grid.epsg, self.grid.origin_x, self.grid.origin_y, self.grid.tile_size
        )?;
        writeln!(
            f,
            "version     {} (latest {}, readable from {}; catalog in {} parts)",
            self.version, self.latest_version, self.oldest_version, self.catalog_parts
        )?;
        let span = match (self.time_min, self.time_max) {
            (Some(a), Some(b)) => format!("{} .. {}", a.format("%Y-%m-%d"), b.format("%Y-%m-%d")),
            _ => "-".into(),
        };
        writeln!(f, "scenes      {} ({span})", self.scenes)?;
        writeln!(
            f,
            "storage     {} tiles, {} fragments, {:.1} MB, compression {}",
            self.tiles,
            self.fragments,
            self.bytes as f64 / 1e6,
            self.compression
        )?;
        for (product, bands) in &self.products {
            writeln!(f, "product     {product}")?;
            for b in bands {
                writeln!(
                    f,
                    "  band {:<8} {:<4} {:>5} m  {} fragments, {} observations",
                    b.band, b.dtype, b.resolution, b.fragments, b.observations
                )?;
            }
        }
        for (id, search) in &self.searches {
            writeln!(f, "search      {id}  {}", describe_search(search))?;
        }
        Ok(())
    }
}

/// One line for a stored search: its API, then each criterion as `key value`.
fn describe_search(search: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let mut parts = vec![search.get("api").map(text).unwrap_or_default()];
    for key in [
        "collections",
        "bbox",
        "intersects",
        "datetime",
        "filter",
        "max_items",
        "product",
        "bands",
    ] {
        if let Some(v) = search.get(key).filter(|v| !v.is_null()) {
            let v = if key == "intersects" {
                "(geometry)".to_string()
            } else {
                text(v)
            };
            parts.push(format!("{key} {v}"));
        }
    }
    parts.join("  ")
}
