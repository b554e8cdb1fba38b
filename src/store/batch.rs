//! A batch of writes that becomes visible atomically: fragments are written (and fsynced)
//! as they come, from any number of threads; `commit` writes the catalog parts and creates
//! the next version of the catalog table.

use super::catalog::{self, EncodedPart, FragmentEntry, PartKind, SceneEntry, SceneRecord};
use super::confine;
use super::delta::action::{Action, Add};
use super::delta::{TableState, Version, TABLE_DIR};
use super::fragment::{write_fragment_bytes, write_fragment_file, FragmentData};
use super::layout::{self, validate_name, FRAGMENTS_DIR};
use super::snapshot::{read_scene_part, PartRef, CHECKSUM_TAG};
use super::syncer::Syncer;
use super::{check_products, Commit, Error, Operation, Result, Warehouse};
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
            base: warehouse.latest_version().ok(),
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
        let (entry, placed) = write_new_fragment(self.warehouse, data)?;
        let mut dirs = None;
        if let Placed::Local { dirs: d, file } = placed {
            // The disk writes this file while the next ones are encoded.
            self.syncer
                .sync(file, layout::resolve(self.warehouse.root(), &entry.path));
            dirs = Some(d);
        }
        let mut st = self.state();
        st.fragments.push(entry.clone());
        st.dirs.extend(dirs.into_iter().flatten());
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

    /// Registers a product profile (a [`crate::profile::ProductProfile`] as JSON) as part of
    /// this commit. An invalid profile is [`Error::InvalidProfile`] at once; committing fails
    /// with [`Error::ProductConflict`] if the product is already registered differently.
    pub fn register_product(&self, name: &str, profile: serde_json::Value) -> Result<()> {
        validate_name("product", name)?;
        super::check_profile(name, &profile).map_err(|reason| Error::InvalidProfile {
            path: self.warehouse.storage().locate(super::delta::LOG_DIR),
            product: name.to_string(),
            reason,
        })?;
        self.state().products.insert(name.to_string(), profile);
        Ok(())
    }

    /// Number of fragments written so far.
    pub fn fragment_count(&self) -> usize {
        self.state().fragments.len()
    }

    /// Makes the batch visible: writes its catalog parts, makes them and its fragments
    /// durable, then creates the next version of the catalog table (retrying on version
    /// conflicts). A batch that adds nothing (no fragment, no scene, no new product) creates
    /// no version and returns the latest one.
    pub fn commit(mut self) -> Result<Version> {
        let st = std::mem::take(&mut *self.state());
        let wh = self.warehouse;
        if st.fragments.is_empty() && st.scenes.is_empty() {
            // Products alone are only worth a version when they are new.
            let state = wh.log().state(None, false)?;
            if check_products(&state, &st.products)?.is_none() {
                self.committed = true;
                return Ok(state.version);
            }
        }
        // Put the rows back so that a failure below still cleans up on drop.
        let fragments = st.fragments.clone();
        self.state().fragments = st.fragments;
        let now = Utc::now();
        let id = format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), layout::unique_id());
        let mut adds = Vec::new();
        if !fragments.is_empty() {
            adds.push(write_part(wh, &id, PartKind::Fragment, |p| {
                catalog::encode_fragments(p, &fragments)
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
            adds.push(write_part(wh, &id, PartKind::Scene, |p| {
                catalog::encode_scenes(p, &rows)
            })?);
        }
        // Everything the commit will name must be durable first: fragment files (synced in
        // the background as they were written), their directory entries, the catalog parts.
        self.syncer.finish()?;
        let dirs: Vec<PathBuf> = st.dirs.iter().cloned().collect();
        layout::sync_all_paths(&dirs)?;
        let part_keys: Vec<String> = adds.iter().map(part_key).collect();
        wh.storage().persist(&part_keys)?;
        let products = st.products;
        let base = self.base.unwrap_or(0);
        let committed = wh.commit(|state| {
            let metadata = check_products(state, &products)?;
            check_new_scenes(wh, state, base, &fingerprints)?;
            let mut actions: Vec<Action> = metadata.into_iter().map(Action::Metadata).collect();
            actions.extend(adds.iter().cloned().map(Action::Add));
            Ok(Some(Commit {
                operation: Operation::Append,
                actions,
            }))
        });
        match committed {
            Ok(Some((version, state))) => {
                self.committed = true;
                // Keep the number of catalog parts bounded (best effort, like checkpoints).
                let _ = super::merge::merge_if_needed(wh, &state);
                Ok(version)
            }
            Ok(None) => {
                self.committed = true;
                wh.latest_version()
            }
            Err(e) => {
                // Not committed: the parts are orphans, remove them with the fragments.
                for k in &part_keys {
                    let _ = wh.storage().delete(k);
                }
                Err(e)
            }
        }
    }
}

/// The warehouse key of a part added to the table.
pub(crate) fn part_key(add: &Add) -> String {
    format!("{TABLE_DIR}/{}", add.path)
}

/// Fails if a commit after `base` added a scene with one of these fingerprints (two writers
/// ingesting the same scene at once: the second to commit backs off).
fn check_new_scenes(
    wh: &Warehouse,
    state: &TableState,
    base: Version,
    fingerprints: &BTreeMap<String, String>,
) -> Result<()> {
    if fingerprints.is_empty() || state.version <= base {
        return Ok(());
    }
    let log = wh.log();
    for version in base + 1..=state.version {
        let Some(actions) = log.read_commit(version)? else {
            return Err(Error::CorruptLog {
                path: wh.storage().locate(&super::delta::commit_key(version)),
                reason: "missing (vacuumed while this batch was being written?)".into(),
            });
        };
        for a in actions {
            let Action::Add(add) = a else { continue };
            if !add.data_change {
                continue; // merged parts repeat rows committed before
            }
            let part = PartRef::from_add(&add).map_err(|reason| Error::CorruptLog {
                path: wh.storage().locate(&super::delta::commit_key(version)),
                reason,
            })?;
            if part.kind != PartKind::Scene {
                continue;
            }
            for row in read_scene_part(wh.storage(), &part)? {
                if let Some(id) = fingerprints.get(&row.scene.fingerprint) {
                    return Err(Error::SceneAlreadyCommitted {
                        scene_id: id.clone(),
                        fingerprint: row.scene.fingerprint,
                        version,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Encodes a catalog part and writes it under a fresh name (the caller makes it durable);
/// returns the `add` action that names it.
pub(crate) fn write_part(
    wh: &Warehouse,
    id: &str,
    kind: PartKind,
    encode: impl FnOnce(&Path) -> Result<EncodedPart>,
) -> Result<Add> {
    let rel = format!("{}={}/part-{id}.parquet", catalog::KIND_COLUMN, kind.name());
    let key = format!("{TABLE_DIR}/{rel}");
    let part = encode(&wh.storage().locate(&key))?;
    wh.storage().put(&key, &part.bytes)?;
    Ok(Add {
        path: rel,
        partition_values: BTreeMap::from([(
            catalog::KIND_COLUMN.to_string(),
            Some(kind.name().to_string()),
        )]),
        size: part.bytes.len() as i64,
        modification_time: Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(part.stats),
        tags: Some(BTreeMap::from([(
            CHECKSUM_TAG.to_string(),
            Some(layout::checksum(&part.bytes)),
        )])),
        deletion_vector: None,
    })
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Best effort: anything left behind is an unreferenced orphan that vacuum removes.
        for f in &self.state().fragments {
            let _ = self.warehouse.storage().delete(&f.path);
        }
    }
}

/// Where a new fragment went.
pub(crate) enum Placed {
    /// A local file, written but not yet fsynced, and the directories whose entries must be
    /// fsynced before the commit names it.
    Local {
        /// The fragment directories (fragments/, the tile's, the band's).
        dirs: [PathBuf; 3],
        /// The open file.
        file: File,
    },
    /// An object in object storage: durable once uploaded.
    Uploaded,
}

/// Writes a fragment under a fresh unique name and returns its catalog row and where it
/// went.
pub(crate) fn write_new_fragment(
    wh: &Warehouse,
    mut data: FragmentData,
) -> Result<(FragmentEntry, Placed)> {
    validate_name("band", &data.band)?;
    validate_name("product", &data.product)?;
    let tile = data.tile.to_string();
    let start = data
        .observations
        .iter()
        .map(|o| o.time)
        .min()
        .unwrap_or_default();
    let key = layout::fragment_key(
        &tile,
        &data.band,
        &data.product,
        &start.format("%Y%m%dT%H%M%SZ").to_string(),
        &layout::unique_id(),
    );
    let config = wh.config();
    let (epsg, compression, crop) = (config.grid.epsg, config.compression, config.crop);
    let (written, placed) = match wh.local_root() {
        Some(root) => {
            // Folders made one at a time, refusing links: nothing is written outside.
            let dir = confine::create_dirs(root, &format!("{FRAGMENTS_DIR}/{tile}/{}", data.band))?;
            let tile_dir = root.join(FRAGMENTS_DIR).join(&tile);
            let path = confine::path(root, &key)?;
            let (written, file) =
                write_fragment_file(&path, &mut data, epsg, compression, crop)?.with_out(());
            let dirs = [root.join(FRAGMENTS_DIR), tile_dir, dir];
            (written, Placed::Local { dirs, file })
        }
        None => {
            let path = wh.storage().locate(&key);
            let (written, bytes) =
                write_fragment_bytes(&path, &mut data, epsg, compression, crop)?.with_out(());
            wh.storage().put(&key, &bytes)?;
            (written, Placed::Uploaded)
        }
    };
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
        path: key,
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
    Ok((entry, placed))
}
