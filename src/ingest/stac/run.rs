//! From a STAC API search to committed scenes: search, drop duplicates, choose each item's
//! assets by its product, sign what needs signing, and hand the scenes to the ingest
//! pipeline, which skips items already committed (by their fingerprint, before reading any
//! file) and records the search in the warehouse. [`update`] runs every recorded search
//! again.

use super::assets::{scene_of, AssetRules};
use super::dedup::dedup;
use super::item::{self, Item};
use super::provider::{Signer, SigningOptions};
use super::search::{self, FilterMode, SearchProgress, SearchSpec};
use crate::ingest::discover::SceneSource;
use crate::ingest::pipeline::{self, IngestOptions, IngestReport, Progress, SceneOutcome};
use crate::profile::ProductProfile;
use crate::source::api::JsonClient;
use crate::store::{Error as StoreError, OpenOptions, Warehouse};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Errors that stop a search-driven ingest (a bad item only fails itself).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The search could not be made.
    #[error(transparent)]
    Search(#[from] search::Error),
    /// The ingest could not go on.
    #[error(transparent)]
    Ingest(#[from] pipeline::Error),
    /// The product profile is unknown or invalid.
    #[error(transparent)]
    Profile(#[from] crate::profile::Error),
    /// The warehouse could not be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An option cannot be used.
    #[error("{0}")]
    Option(String),
    /// `--update` on a warehouse that keeps no search.
    #[error(
        "{warehouse}: no STAC API search is recorded here to update (ingest with --stac-api first)"
    )]
    NoSearches {
        /// The warehouse.
        warehouse: String,
    },
    /// A recorded search cannot be read back.
    #[error("recorded search {id}: {reason}")]
    StoredSearch {
        /// Its id.
        id: String,
        /// Why.
        reason: String,
    },
}

/// What the search part of an ingest did (`stac` in the ingest report).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct StacReport {
    /// The search's id in the warehouse.
    pub search: String,
    /// The API.
    pub api: String,
    /// Whose API (`earth-search`, `planetary-computer`, `generic`).
    pub provider: String,
    /// Items the API counted as matching, when it says.
    pub matched: Option<u64>,
    /// Items returned, over all pages.
    pub returned: usize,
    /// Pages fetched.
    pub pages: usize,
    /// How the filter was applied.
    pub filter: FilterMode,
    /// Items returned that did not pass the filter (applied to the items too).
    pub filtered_out: usize,
    /// Items returned twice.
    pub repeated: usize,
    /// Items left out as duplicates of another (also in the report's `skipped`).
    pub duplicates: usize,
    /// Items without an asset for a band asked for (also in the report's `failed`).
    pub unusable: usize,
    /// Items per product.
    pub products: BTreeMap<String, usize>,
    /// Requests to the API and token endpoints.
    pub requests: u64,
    /// SAS tokens fetched.
    pub tokens: u64,
    /// Seconds searching (all pages).
    pub search_seconds: f64,
    /// Seconds from the first request until scenes were ready to ingest (search, duplicates,
    /// assets, signing).
    pub discovery_seconds: f64,
}

/// Scenes ready for the pipeline, per product, and what the search and discovery did.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Scenes of each product (`None`: no profile, bands as named).
    pub groups: BTreeMap<Option<String>, Vec<SceneSource>>,
    /// Items that cannot be ingested, and duplicates left out: (item, reason).
    pub failed: Vec<SceneOutcome>,
    /// Duplicates left out.
    pub duplicates: Vec<SceneOutcome>,
    /// What happened.
    pub report: StacReport,
}

/// The built-in product of an item, from its collection and platform.
pub fn product_of(item: &Item) -> Option<&'static str> {
    let collection = item
        .collection
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    if collection.contains("sentinel-2") && collection.contains("l2a") {
        return Some("sentinel2_l2a");
    }
    if collection.contains("landsat") {
        let platform = item.platform().unwrap_or_default();
        let id = item.id.to_ascii_uppercase();
        let is = |n: &str, prefix: &str| platform.ends_with(n) || id.starts_with(prefix);
        return if is("landsat-9", "LC09") {
            Some("landsat9_c2l2")
        } else if is("landsat-8", "LC08") {
            Some("landsat8_c2l2")
        } else if is("landsat-7", "LE07") {
            Some("landsat7_c2l2")
        } else if is("landsat-5", "LT05") || is("landsat-4", "LT04") {
            Some("landsat5_c2l2")
        } else {
            None
        };
    }
    None
}

/// The identity of an API item without its files: id, collection, update time, and the
/// chosen assets (unsigned locations, band names, declared values). An item reprocessed or
/// re-described gets a new one.
fn fingerprint(item: &Item, scene: &SceneSource) -> String {
    let mut h = Sha256::new();
    h.update(b"stac-item-1\0");
    for part in [
        item.id.as_str(),
        item.collection.as_deref().unwrap_or(""),
        item.text("updated")
            .or_else(|| item.text("created"))
            .unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(
        item.datetime
            .map(|t| t.timestamp_micros())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    for a in &scene.assets {
        h.update(a.location.as_bytes());
        h.update([0]);
        h.update(format!("{:?}{:?}", a.band_names, a.values).as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("stac:{hex}")
}

/// Runs the search and prepares its items as scenes, grouped by product.
pub fn discover(
    spec: &SearchSpec,
    options: &IngestOptions,
    signing: &SigningOptions,
    progress: &dyn SearchProgress,
) -> Result<Discovery, Error> {
    let start = Instant::now();
    let mut spec = spec.clone();
    spec.check()?;
    let forced = spec
        .product
        .as_deref()
        .map(ProductProfile::resolve)
        .transpose()?;
    let rules_for = |profile: Option<ProductProfile>| AssetRules {
        profile,
        bands: spec.bands.clone(),
        cloud_band: spec.cloud_band,
    };
    rules_for(forced.clone()).check().map_err(Error::Option)?;
    let client = JsonClient::new(&options.remote);
    let found = search::search(&spec, &client, progress)?;
    let provider = spec.provider();
    let signer = Signer::new(provider, signing);
    let mut out = Discovery::default();
    let mut items = Vec::with_capacity(found.items.len());
    for v in &found.items {
        match item::parse(v, None) {
            Ok(i) => items.push(i),
            Err(reason) => out.failed.push(SceneOutcome {
                scene: v
                    .get("id")
                    .and_then(|i| i.as_str())
                    .unwrap_or("?")
                    .to_string(),
                reason,
            }),
        }
    }
    let (items, duplicates) = dedup(items);
    out.duplicates = duplicates
        .into_iter()
        .map(|d| SceneOutcome {
            scene: d.item,
            reason: d.reason,
        })
        .collect();
    let mut rules: BTreeMap<Option<String>, AssetRules> = BTreeMap::new();
    for item in &items {
        let product = match &forced {
            Some(p) => Some(p.id.clone()),
            None => product_of(item).map(str::to_string),
        };
        if !rules.contains_key(&product) {
            let profile = product
                .as_deref()
                .map(ProductProfile::resolve)
                .transpose()?;
            rules.insert(product.clone(), rules_for(profile));
        }
        let r = &rules[&product];
        // Bands the item's product does not have fail every item of it: say so once.
        r.check().map_err(|reason| {
            Error::Option(format!(
                "{reason}; item {} of collection {} is {} (set --product, or --bands by that product's names)",
                item.id,
                item.collection.as_deref().unwrap_or("?"),
                product.as_deref().unwrap_or("generic")
            ))
        })?;
        let scene = scene_of(item, r).and_then(|mut scene| {
            signer.sign(&mut scene, item.collection.as_deref(), &client)?;
            scene.fingerprint = Some(fingerprint(item, &scene));
            Ok(scene)
        });
        match scene {
            Ok(scene) => {
                *out.report
                    .products
                    .entry(product.clone().unwrap_or_else(|| "generic".into()))
                    .or_default() += 1;
                out.groups.entry(product).or_default().push(scene);
            }
            Err(reason) => {
                out.report.unusable += 1;
                out.failed.push(SceneOutcome {
                    scene: item.id.clone(),
                    reason,
                });
            }
        }
    }
    let stats = client.stats();
    out.report = StacReport {
        search: spec.id(),
        api: spec.api.clone(),
        provider: provider.name().to_string(),
        matched: found.matched,
        returned: found.returned,
        pages: found.pages,
        filter: found.filter_mode,
        filtered_out: found.filtered_out,
        repeated: found.repeated,
        duplicates: out.duplicates.len(),
        requests: stats.requests,
        tokens: signer.tokens_fetched(),
        search_seconds: found.seconds,
        discovery_seconds: start.elapsed().as_secs_f64(),
        ..out.report
    };
    Ok(out)
}

/// Adds one run's report to another's.
fn merge(into: &mut IngestReport, r: IngestReport) {
    into.scenes_found += r.scenes_found;
    into.scenes_ingested += r.scenes_ingested;
    into.skipped.extend(r.skipped);
    into.failed.extend(r.failed);
    into.warnings.extend(r.warnings);
    into.tile_observations += r.tile_observations;
    into.tiles += r.tiles;
    into.fragments += r.fragments;
    into.bytes_in += r.bytes_in;
    into.bytes_out += r.bytes_out;
    into.seconds += r.seconds;
    into.versions.extend(r.versions);
    into.versions.sort_unstable();
    into.versions.dedup();
    let t = &mut into.warehouse_transfer;
    t.requests += r.warehouse_transfer.requests;
    t.bytes += r.warehouse_transfer.bytes;
    t.retries += r.warehouse_transfer.retries;
    into.stac.extend(r.stac);
}

/// A [`Progress`] also told of search pages.
struct Pages<'a>(&'a dyn Progress);

impl SearchProgress for Pages<'_> {
    fn page(&self, items: usize, matched: Option<u64>) {
        self.0.searching(items, matched);
    }
}

/// Ingests the items `spec` finds into the warehouse at `path` (created when missing) and
/// records the search there, so [`update`] runs it again. `options` are the pipeline's
/// (memory budget, jobs, grid of a new warehouse, `--shard`, ...); the product and bands
/// come from the search. Items already committed are skipped without reading their files.
pub fn ingest_search(
    path: &Path,
    spec: &SearchSpec,
    options: &IngestOptions,
    signing: &SigningOptions,
    progress: &dyn Progress,
) -> Result<IngestReport, Error> {
    let start = Instant::now();
    let mut spec = spec.clone();
    spec.check()?;
    let found = discover(&spec, options, signing, &Pages(progress))?;
    let record = (
        spec.id(),
        serde_json::to_value(&spec).map_err(|e| Error::Option(e.to_string()))?,
    );
    let mut report = IngestReport {
        scenes_found: found.failed.len(),
        failed: found.failed,
        skipped: found.duplicates,
        ..Default::default()
    };
    let mut any = false;
    for (product, scenes) in found.groups {
        // Workers of a sharded run each search; an item's shard depends on its id alone, so
        // they agree even when the API gained items between their searches.
        let scenes = match options.shard {
            Some(shard) => shard.select_by_id(&scenes),
            None => scenes,
        };
        if scenes.is_empty() {
            continue;
        }
        any = true;
        let group = IngestOptions {
            product: product.clone(),
            bands: None,
            shard: None,
            search: Some(record.clone()),
            ..options.clone()
        };
        merge(
            &mut report,
            pipeline::ingest_scenes(path, &scenes, &group, progress)?,
        );
    }
    if !any {
        // Nothing to ingest: still record the search where there is a warehouse to keep it.
        let open = OpenOptions {
            remote: options.remote.clone(),
            unsafe_single_writer: options.unsafe_single_writer,
            no_auto_compact: options.no_auto_compact,
            compaction_memory: options.memory_budget,
        };
        match Warehouse::open_with(path, &open) {
            Ok(wh) => {
                let batch = wh.begin_batch();
                batch.register_search(&record.0, record.1.clone())?;
                batch.commit()?;
            }
            Err(StoreError::NotAWarehouse { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    report.stac = vec![found.report];
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs every search recorded in the warehouse again and ingests what is new (`ingest
/// --update`, for cron or a Kubernetes CronJob). `options.shard` shares each search's items
/// between workers.
pub fn update(
    path: &Path,
    options: &IngestOptions,
    signing: &SigningOptions,
    progress: &dyn Progress,
) -> Result<IngestReport, Error> {
    let start = Instant::now();
    let open = OpenOptions {
        remote: options.remote.clone(),
        unsafe_single_writer: options.unsafe_single_writer,
        no_auto_compact: options.no_auto_compact,
        compaction_memory: options.memory_budget,
    };
    let wh = Warehouse::open_with(path, &open)?;
    let searches = wh.snapshot(None)?.searches().clone();
    if searches.is_empty() {
        return Err(Error::NoSearches {
            warehouse: path.display().to_string(),
        });
    }
    let mut report = IngestReport::default();
    for (id, value) in searches {
        let spec: SearchSpec = serde_json::from_value(value).map_err(|e| Error::StoredSearch {
            id: id.clone(),
            reason: e.to_string(),
        })?;
        merge(
            &mut report,
            ingest_search(path, &spec, options, signing, progress)?,
        );
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn products_from_collection_and_platform() {
        let item = |collection: &str, platform: &str, id: &str| {
            item::parse(
                &json!({"id": id, "collection": collection,
                        "properties": {"datetime": "2023-01-01T00:00:00Z", "platform": platform}, "assets": {}}),
                None,
            )
            .unwrap()
        };
        assert_eq!(
            product_of(&item("sentinel-2-c1-l2a", "sentinel-2b", "x")),
            Some("sentinel2_l2a")
        );
        assert_eq!(
            product_of(&item("landsat-c2-l2", "landsat-9", "x")),
            Some("landsat9_c2l2")
        );
        assert_eq!(
            product_of(&item("landsat-c2l2-sr", "LANDSAT_7", "x")),
            Some("landsat7_c2l2")
        );
        assert_eq!(
            product_of(&item("landsat-c2-l2", "", "LT05_L2SP_x")),
            Some("landsat5_c2l2")
        );
        assert_eq!(
            product_of(&item("landsat-c2-l2", "landsat-1", "LM01")),
            None
        );
        assert_eq!(product_of(&item("naip", "", "x")), None);
        assert_eq!(product_of(&item("sentinel-2-l1c", "", "x")), None);
    }

    #[test]
    fn reports_merge() {
        let mut a = IngestReport {
            scenes_found: 2,
            versions: vec![3],
            ..Default::default()
        };
        let b = IngestReport {
            scenes_found: 1,
            versions: vec![3, 4],
            stac: vec![StacReport::default()],
            ..Default::default()
        };
        merge(&mut a, b);
        assert_eq!(
            (a.scenes_found, a.versions.clone(), a.stac.len()),
            (3, vec![3, 4], 1)
        );
    }
}
