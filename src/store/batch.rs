//! A batch of writes that becomes visible atomically: fragments are written (and fsynced)
//! as they come, from any number of threads; `commit` writes the catalog parts and creates
//! the next version of the catalog table.

use super::catalog::{self, EncodedPart, FragmentEntry, PartKind, SceneEntry, SceneRecord};
use super::compact::auto::{self, AutoCompaction, Group};
use super::confine;
use super::delta::action::{Action, Add};
use super::delta::{TableState, Version, TABLE_DIR};
use super::fragment::write::{write_fragment_bytes, write_fragment_file};
use super::fragment::FragmentData;
use super::layout::{self, validate_name, FRAGMENTS_DIR};
use super::published;
use super::snapshot::{open_checked, read_scene_part, PartRef, CHECKSUM_TAG};
use super::syncer::Syncer;
use super::{check_metadata, Commit, Error, Operation, Result, Snapshot, Warehouse};
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
    searches: BTreeMap<String, serde_json::Value>,
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
    /// Catalog parts written for commit attempts whose fate is not settled yet.
    attempted_parts: Vec<String>,
    /// A commit attempt may have landed: nothing may be deleted.
    outcome_unknown: bool,
}

impl<'w> Batch<'w> {
    pub(crate) fn new(warehouse: &'w Warehouse) -> Self {
        Batch {
            warehouse,
            base: warehouse.latest_version().ok(),
            state: Mutex::new(BatchState::default()),
            syncer: Syncer::new(),
            committed: false,
            attempted_parts: Vec::new(),
            outcome_unknown: false,
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
    /// caught by [`Batch::commit`], which drops them from the batch and reports them.
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

    /// Records a search (by id) in the table's metadata as part of this commit, so the
    /// warehouse keeps it (`ingest --update` runs it again). A search already recorded under
    /// the id is kept as it is.
    pub fn register_search(&self, id: &str, search: serde_json::Value) -> Result<()> {
        validate_name("search id", id)?;
        self.state().searches.insert(id.to_string(), search);
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
    ///
    /// Scenes of the batch that another writer committed since the batch began are dropped
    /// from it (their observations are taken out of the batch's fragments) and reported in
    /// [`Committed::skipped`]; the rest is committed.
    pub fn commit(mut self) -> Result<Committed> {
        let mut st = std::mem::take(&mut *self.state());
        let wh = self.warehouse;
        let mut skipped = Vec::new();
        loop {
            if st.fragments.is_empty() && st.scenes.is_empty() {
                // Products and searches alone are only worth a version when they are new.
                let state = wh.log().state(None, false)?;
                if !skipped.is_empty()
                    || check_metadata(&state, &st.products, &st.searches)?.is_none()
                {
                    self.committed = true;
                    return Ok(Committed {
                        version: state.version,
                        created: false,
                        skipped,
                        compaction: None,
                    });
                }
            }
            match self.try_commit(&mut st)? {
                Attempt::Done(version, compaction) => {
                    return Ok(Committed {
                        version,
                        created: true,
                        skipped,
                        compaction,
                    })
                }
                Attempt::Conflicts { scenes, seen } => {
                    self.drop_scenes(&mut st, &scenes)?;
                    skipped.extend(scenes);
                    self.base = Some(seen);
                }
            }
        }
    }

    /// Writes the catalog parts of `st` and tries to commit them once (retrying only version
    /// races that bring no conflict).
    fn try_commit(&mut self, st: &mut BatchState) -> Result<Attempt> {
        let wh = self.warehouse;
        // Keep the rows in the shared state too, so that a failure below cleans up on drop.
        self.state().fragments = st.fragments.clone();
        let now = Utc::now();
        let id = format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), layout::unique_id());
        let mut adds = Vec::new();
        if !st.fragments.is_empty() {
            adds.push(write_part(wh, &id, PartKind::Fragment, |p| {
                catalog::encode_fragments(p, &st.fragments)
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
                .iter()
                .map(|scene| SceneEntry {
                    scene: scene.clone(),
                    ingested: now,
                })
                .collect();
            adds.push(write_part(wh, &id, PartKind::Scene, |p| {
                catalog::encode_scenes(p, &rows)
            })?);
        }
        let part_keys: Vec<String> = adds.iter().map(part_key).collect();
        self.attempted_parts.extend(part_keys.iter().cloned());
        // Everything the commit will name must be durable first: fragment files (synced in
        // the background as they were written), their directory entries, the catalog parts.
        self.syncer.finish()?;
        let dirs: Vec<PathBuf> = st.dirs.iter().cloned().collect();
        layout::sync_all_paths(&dirs)?;
        wh.storage().persist(&part_keys)?;
        let base = self.base.unwrap_or(0);
        let mut conflicts: Option<(Vec<SkippedScene>, Version)> = None;
        let committed = wh.commit(|state| {
            let metadata = check_metadata(state, &st.products, &st.searches)?;
            let found = scenes_committed_since(wh, state, base, &fingerprints)?;
            if !found.is_empty() {
                conflicts = Some((found, state.version));
                return Ok(None);
            }
            let mut actions: Vec<Action> = metadata.into_iter().map(Action::Metadata).collect();
            actions.extend(adds.iter().cloned().map(Action::Add));
            Ok(Some(Commit {
                operation: Operation::Append,
                actions,
                info: Default::default(),
            }))
        });
        match committed {
            Ok(Some((version, state))) => {
                self.committed = true;
                // Upkeep, best effort (the commit stands either way): merge the touched
                // tile-bands' fragments size-tiered, then keep the catalog parts few.
                let groups: BTreeSet<Group> = st
                    .fragments
                    .iter()
                    .map(|f| (f.tile, f.band.clone(), f.product.clone()))
                    .collect();
                let mut compaction = None;
                let mut latest = state;
                let groups = match wh.compaction_queue() {
                    Some(queue) if !groups.is_empty() => queue.send(groups).unwrap_or_default(),
                    _ => groups,
                };
                if !wh.options().no_auto_compact && !groups.is_empty() {
                    let merged = Snapshot::load(wh, &latest, Default::default())
                        .and_then(|snap| auto::after_commit(wh, &snap, &groups));
                    compaction = Some(merged.map_err(|e| e.to_string()));
                    if let Some(Ok(AutoCompaction {
                        version: Some(_), ..
                    })) = &compaction
                    {
                        if let Ok(s) = wh.log().state(None, false) {
                            latest = s;
                        }
                    }
                }
                let _ = super::merge::merge_if_needed(wh, &latest);
                Ok(Attempt::Done(version, compaction))
            }
            Ok(None) => {
                // Nothing was committed with these parts: another writer's scenes conflict.
                for k in &part_keys {
                    let _ = wh.storage().delete(k);
                }
                self.attempted_parts.clear();
                let (scenes, seen) =
                    conflicts.expect("the commit closure only declines on conflicts");
                Ok(Attempt::Conflicts { scenes, seen })
            }
            Err(e) => {
                if matches!(e, Error::CommitUnknown { .. }) {
                    // It may have landed: keep everything it names.
                    self.outcome_unknown = true;
                } else if published::delete_unless_published(wh, self.base, &part_keys, &[]) {
                    self.attempted_parts.clear();
                } else {
                    self.outcome_unknown = true;
                }
                Err(e)
            }
        }
    }

    /// Takes `scenes` out of the batch: their rows, and their observations from the batch's
    /// fragments (rewritten without them, or deleted when nothing else is left).
    fn drop_scenes(&mut self, st: &mut BatchState, scenes: &[SkippedScene]) -> Result<()> {
        let wh = self.warehouse;
        let ids: BTreeSet<&str> = scenes.iter().map(|s| s.scene_id.as_str()).collect();
        st.scenes.retain(|s| !ids.contains(s.scene_id.as_str()));
        let mut kept = Vec::with_capacity(st.fragments.len());
        for entry in std::mem::take(&mut st.fragments) {
            let fragment = open_checked(wh.storage(), &entry, false)?;
            let hit = (0..fragment.len()).any(|i| ids.contains(fragment.scene_id(i)));
            if !hit {
                kept.push(entry);
                continue;
            }
            let mut observations = Vec::new();
            for i in 0..fragment.len() {
                if !ids.contains(fragment.scene_id(i)) {
                    observations.push(fragment.observation(i)?);
                }
            }
            let meta = fragment.meta().clone();
            drop(fragment);
            if !observations.is_empty() {
                let data = FragmentData::refill(
                    &meta,
                    entry.footprint_lonlat.clone(),
                    entry.resolution,
                    observations,
                );
                let (new_entry, placed) = write_new_fragment(wh, data)?;
                if let Placed::Local { dirs, file } = placed {
                    self.syncer
                        .sync(file, layout::resolve(wh.root(), &new_entry.path));
                    st.dirs.extend(dirs);
                }
                kept.push(new_entry);
            }
            // Ours and never published (the commit declined before naming it).
            let _ = wh.storage().delete(&entry.path);
        }
        st.fragments = kept;
        self.state().fragments = st.fragments.clone();
        Ok(())
    }
}

/// What one commit attempt of a batch came to.
enum Attempt {
    /// Committed as this version (and what automatic compaction did after it).
    Done(Version, Option<std::result::Result<AutoCompaction, String>>),
    /// Scenes another writer committed first (seen up to version `seen`).
    Conflicts {
        scenes: Vec<SkippedScene>,
        seen: Version,
    },
}

/// The outcome of [`Batch::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The version that holds the batch (the latest one when nothing was left to commit).
    pub version: Version,
    /// True when this commit created `version`.
    pub created: bool,
    /// Scenes dropped from the batch because another writer committed them first.
    pub skipped: Vec<SkippedScene>,
    /// What automatic compaction did after the commit (`None` when it did not run; an
    /// error leaves the commit standing and the fragments as they were).
    pub compaction: Option<std::result::Result<AutoCompaction, String>>,
}

/// A scene another writer committed while this batch was being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedScene {
    /// The scene (as this batch named it).
    pub scene_id: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// The version that committed it.
    pub version: Version,
}

/// The warehouse key of a part added to the table.
pub(crate) fn part_key(add: &Add) -> String {
    format!("{TABLE_DIR}/{}", add.path)
}

/// Scenes with one of these fingerprints that a commit after `base` added (two writers
/// ingesting the same scene at once: the second to commit drops it).
fn scenes_committed_since(
    wh: &Warehouse,
    state: &TableState,
    base: Version,
    fingerprints: &BTreeMap<String, String>,
) -> Result<Vec<SkippedScene>> {
    let mut found = Vec::new();
    if fingerprints.is_empty() || state.version <= base {
        return Ok(found);
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
                    found.push(SkippedScene {
                        scene_id: id.clone(),
                        fingerprint: row.scene.fingerprint,
                        version,
                    });
                }
            }
        }
    }
    Ok(found)
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
        if self.committed || self.outcome_unknown {
            return;
        }
        // Best effort: anything left behind is an unreferenced orphan that vacuum removes.
        let fragments: Vec<String> = self
            .state()
            .fragments
            .iter()
            .map(|f| f.path.clone())
            .collect();
        let parts = std::mem::take(&mut self.attempted_parts);
        published::delete_unless_published(self.warehouse, self.base, &parts, &fragments);
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

/// Where a new fragment goes: its key, and in a local warehouse its file and the folders
/// whose entries must be made durable (created here).
pub(crate) struct NewFragment {
    /// The warehouse key (`fragments/{tile}/{band}/{product}_{start}_{id}.arrow`).
    pub key: String,
    /// The file and its folders (fragments/, the tile's, the band's), when local.
    pub local: Option<(PathBuf, [PathBuf; 3])>,
}

/// A fresh, unique location for a fragment of `tile`, `band` and `product` whose first
/// observation is at `start`.
pub(crate) fn new_fragment_location(
    wh: &Warehouse,
    tile: crate::grid::TileId,
    band: &str,
    product: &str,
    start: chrono::DateTime<Utc>,
) -> Result<NewFragment> {
    validate_name("band", band)?;
    validate_name("product", product)?;
    let tile = tile.to_string();
    let key = layout::fragment_key(
        &tile,
        band,
        product,
        &start.format("%Y%m%dT%H%M%SZ").to_string(),
        &layout::unique_id(),
    );
    let local = match wh.local_root() {
        Some(root) => {
            // Folders made one at a time, refusing links: nothing is written outside.
            let dir = confine::create_dirs(root, &format!("{FRAGMENTS_DIR}/{tile}/{band}"))?;
            let tile_dir = root.join(FRAGMENTS_DIR).join(&tile);
            let path = confine::path(root, &key)?;
            Some((path, [root.join(FRAGMENTS_DIR), tile_dir, dir]))
        }
        None => None,
    };
    Ok(NewFragment { key, local })
}

/// Writes a fragment under a fresh unique name and returns its catalog row and where it
/// went.
pub(crate) fn write_new_fragment(
    wh: &Warehouse,
    mut data: FragmentData,
) -> Result<(FragmentEntry, Placed)> {
    let start = data
        .observations
        .iter()
        .map(|o| o.time)
        .min()
        .unwrap_or_default();
    let at = new_fragment_location(wh, data.tile, &data.band, &data.product, start)?;
    let key = at.key.clone();
    let settings = wh.fragment_settings();
    let (written, placed) = match at.local {
        Some((path, dirs)) => {
            let (written, file) = write_fragment_file(&path, &mut data, &settings)?.with_out(());
            (written, Placed::Local { dirs, file })
        }
        None => {
            let path = wh.storage().locate(&key);
            let (written, bytes) = write_fragment_bytes(&path, &mut data, &settings)?.with_out(());
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
        index: written.index,
    };
    Ok((entry, placed))
}
