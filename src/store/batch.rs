//! A batch of writes that becomes visible atomically: fragments are written (and fsynced)
//! as they come, from any number of threads; `commit` writes the catalog parts and creates
//! the log entry.

use super::catalog::{self, FragmentEntry, SceneEntry, SceneRecord};
use super::fragment::{write_fragment_file, FragmentData};
use super::layout::{self, io_err, validate_name, CATALOG_DIR, FRAGMENTS_DIR};
use super::log::{LogEntry, Operation, PartKind, PartRef, Version};
use super::syncer::Syncer;
use super::{check_products, Error, Result, Warehouse};
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Default)]
struct BatchState {
    fragments: Vec<FragmentEntry>,
    scenes: Vec<SceneRecord>,
    products: BTreeMap<String, serde_json::Value>,
    dirs: BTreeSet<PathBuf>,
}

/// Writes collected for one atomic commit. `write_fragment` and `add_scene` take `&self`
/// and may be called concurrently (e.g. from rayon threads). Dropping a batch without
/// committing deletes the fragments it wrote.
pub struct Batch<'w> {
    warehouse: &'w Warehouse,
    /// The latest version when the batch began: commits after it are checked for scenes
    /// this batch also holds.
    base: Option<Version>,
    state: Mutex<BatchState>,
    /// Fsyncs written fragments in the background.
    syncer: Syncer,
    committed: bool,
}

impl<'w> Batch<'w> {
    pub(crate) fn new(warehouse: &'w Warehouse) -> Self {
        Batch {
            warehouse,
            base: super::log::list_versions(warehouse.root())
                .ok()
                .and_then(|v| v.last().copied()),
            state: Mutex::new(BatchState::default()),
            syncer: Syncer::new(),
            committed: false,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BatchState> {
        // A panic while holding the lock only ever interrupts a Vec push; the data is fine.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one fragment file (durably) and records its catalog row for the commit.
    /// Observations are sorted by time; validity defaults to "not nodata".
    pub fn write_fragment(&self, data: FragmentData) -> Result<FragmentEntry> {
        let (entry, dirs, file) = write_new_fragment(self.warehouse, data)?;
        // The disk writes this file while the next ones are encoded.
        self.syncer
            .sync(file, layout::resolve(self.warehouse.root(), &entry.path));
        let mut st = self.state();
        st.fragments.push(entry.clone());
        st.dirs.extend(dirs);
        Ok(entry)
    }

    /// Records a scene (committed with the batch; used to skip re-ingests by fingerprint).
    ///
    /// To skip scenes that are already in the warehouse, check
    /// [`Snapshot::has_scene_fingerprint`](super::Snapshot::has_scene_fingerprint) on a
    /// snapshot taken *after* `begin_batch`: scenes committed later by another writer are
    /// caught by [`Batch::commit`], which then fails with [`Error::SceneAlreadyCommitted`].
    pub fn add_scene(&self, scene: SceneRecord) -> Result<()> {
        validate_name("product", &scene.product)?;
        self.state().scenes.push(scene);
        Ok(())
    }

    /// Registers a product profile as part of this commit. Committing fails with
    /// [`Error::ProductConflict`] if the product is already registered differently.
    pub fn register_product(&self, name: &str, profile: serde_json::Value) -> Result<()> {
        validate_name("product", name)?;
        self.state().products.insert(name.to_string(), profile);
        Ok(())
    }

    /// Number of fragments written so far.
    pub fn fragment_count(&self) -> usize {
        self.state().fragments.len()
    }

    /// Makes the batch visible: writes and fsyncs its catalog parts, fsyncs the directories
    /// of its fragments, then creates the next log entry (retrying on version conflicts).
    /// An empty batch commits nothing and returns the latest version.
    pub fn commit(mut self) -> Result<Version> {
        let st = std::mem::take(&mut *self.state());
        let wh = self.warehouse;
        if st.fragments.is_empty() && st.scenes.is_empty() && st.products.is_empty() {
            self.committed = true;
            return wh.latest_version();
        }
        // Put the rows back so that a failure below still cleans up on drop.
        let fragments = st.fragments.clone();
        self.state().fragments = st.fragments;
        let now = Utc::now();
        let mut add = Vec::new();
        let id = format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), layout::unique_id());
        if !fragments.is_empty() {
            add.push(write_part(wh.root(), &id, PartKind::Fragments, |p| {
                catalog::encode_fragments(p, &fragments).map(|b| (b, fragments.len()))
            })?);
        }
        let fingerprints: BTreeMap<String, String> = st
            .scenes
            .iter()
            .map(|s| (s.fingerprint.clone(), s.scene_id.clone()))
            .collect();
        if !st.scenes.is_empty() {
            let rows: Vec<SceneEntry> = st
                .scenes
                .into_iter()
                .map(|scene| SceneEntry {
                    scene,
                    ingested: now,
                })
                .collect();
            add.push(write_part(wh.root(), &id, PartKind::Scenes, |p| {
                catalog::encode_scenes(p, &rows).map(|b| (b, rows.len()))
            })?);
        }
        // Everything the log entry will name must be durable first: fragment files (synced
        // in the background as they were written), their directory entries, the catalog
        // parts and the catalog directory.
        self.syncer.finish()?;
        let mut durable: Vec<PathBuf> = st.dirs.iter().cloned().collect();
        durable.extend(add.iter().map(|p| layout::resolve(wh.root(), &p.path)));
        durable.push(wh.root().join(CATALOG_DIR));
        layout::sync_all_paths(&durable)?;
        let products = st.products;
        let base = self.base.unwrap_or(0);
        let version = wh.commit_entry(|log| {
            check_products(&log.state_at(log.latest()), wh.config(), &products)?;
            check_new_scenes(wh, log, base, &fingerprints)?;
            Ok(LogEntry {
                version: 0,
                timestamp: Utc::now(),
                operation: Operation::Append,
                add: add.clone(),
                remove: vec![],
                products: products.clone(),
                expire_before: None,
            })
        });
        if version.is_err() {
            // Not committed: the parts are orphans, remove them with the fragments.
            for p in &add {
                let _ = std::fs::remove_file(layout::resolve(wh.root(), &p.path));
            }
        } else {
            self.committed = true;
        }
        version
    }
}

/// Fails if a commit after `base` added a scene with one of these fingerprints (two
/// writers ingesting the same scene at once: the second to commit backs off).
fn check_new_scenes(
    wh: &Warehouse,
    log: &super::log::Log,
    base: Version,
    fingerprints: &BTreeMap<String, String>,
) -> Result<()> {
    if fingerprints.is_empty() {
        return Ok(());
    }
    for e in log.entries.iter().skip(base as usize + 1) {
        for part in e.add.iter().filter(|p| p.kind == PartKind::Scenes) {
            for row in super::snapshot::read_scene_part(wh.root(), part)? {
                if let Some(id) = fingerprints.get(&row.scene.fingerprint) {
                    return Err(Error::SceneAlreadyCommitted {
                        scene_id: id.clone(),
                        fingerprint: row.scene.fingerprint,
                        version: e.version,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Encodes a catalog part and writes it under a fresh name (the caller fsyncs it).
pub(crate) fn write_part(
    root: &Path,
    id: &str,
    kind: PartKind,
    encode: impl FnOnce(&Path) -> Result<(Vec<u8>, usize)>,
) -> Result<PartRef> {
    let suffix = match kind {
        PartKind::Fragments => "fragments",
        PartKind::Scenes => "scenes",
    };
    let rel = format!("{CATALOG_DIR}/part-{id}-{suffix}.parquet");
    let path = layout::resolve(root, &rel);
    let (bytes, rows) = encode(&path)?;
    layout::write_new(&path, &bytes)?;
    Ok(PartRef {
        path: rel,
        kind,
        rows: rows as u64,
        bytes: bytes.len() as u64,
        checksum: layout::checksum(&bytes),
    })
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Best effort: anything left behind is an unreferenced orphan that vacuum removes.
        for f in &self.state().fragments {
            let _ = std::fs::remove_file(layout::resolve(self.warehouse.root(), &f.path));
        }
    }
}

/// Writes a fragment under a fresh unique name and returns its catalog row and the
/// directories whose entries must be fsynced before the commit.
pub(crate) fn write_new_fragment(
    wh: &Warehouse,
    mut data: FragmentData,
) -> Result<(FragmentEntry, [PathBuf; 3], File)> {
    validate_name("band", &data.band)?;
    validate_name("product", &data.product)?;
    let root = wh.root();
    let tile = data.tile.to_string();
    let tile_dir = root.join(FRAGMENTS_DIR).join(&tile);
    let dir = tile_dir.join(&data.band);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let start = data
        .observations
        .iter()
        .map(|o| o.time)
        .min()
        .unwrap_or_default();
    let name = format!(
        "{}_{}_{}.arrow",
        data.product,
        start.format("%Y%m%dT%H%M%SZ"),
        layout::unique_id()
    );
    let path = dir.join(&name);
    let config = wh.config();
    let written = write_fragment_file(
        &path,
        &mut data,
        config.grid.epsg,
        config.compression,
        config.crop,
    )?;
    let mut footprint = data.footprint_lonlat;
    if let (Some(&a), Some(&b)) = (footprint.first(), footprint.last()) {
        if a != b {
            footprint.push(a);
        }
    }
    let entry = FragmentEntry {
        tile: data.tile,
        band: data.band.clone(),
        product: data.product,
        time_min: written.time_min,
        time_max: written.time_max,
        observations: written.observations,
        bbox: crate::geo::Bounds::from_points(footprint.iter().copied()),
        footprint_lonlat: footprint,
        resolution: data.resolution,
        path: format!("{FRAGMENTS_DIR}/{tile}/{}/{name}", data.band),
        bytes: written.bytes,
        checksum: written.checksum,
        dtype: data.dtype,
        width: data.width,
        height: data.height,
        valid_count: written.stats.valid_count,
        valid_min: written.stats.min,
        valid_max: written.stats.max,
        valid_mean: written.stats.mean,
        window: written.window,
    };
    Ok((
        entry,
        [root.join(FRAGMENTS_DIR), tile_dir, dir],
        written.file,
    ))
}
