//! Completeness of published versions, and going back to a complete one.
//!
//! A version is *complete* when every catalog part it names and every fragment those parts
//! name exist. Files only disappear from a complete version by data loss (a bug, a hand
//! edit, a foreign tool); orphans (files no version names) are harmless and `vacuum`'s job.
//! Writers refuse to build on an incomplete latest version ([`check_latest_complete`]), and
//! [`restore`] commits a new version equal to the newest complete one, after which re-running
//! the ingest re-adds the scenes that were lost.

use super::catalog::PartKind;
use super::delta::action::{Action, Add, Remove};
use super::delta::{commit_key, TableState, Version};
use super::layout::FRAGMENTS_DIR;
use super::snapshot::{parts_of, read_fragment_part, PartRef};
use super::{Commit, Error, Operation, Result, Warehouse};
use std::collections::{BTreeMap, BTreeSet};

/// Which files exist, asked once per file or with one listing per folder.
struct Presence<'w> {
    wh: &'w Warehouse,
    /// On object stores: every key under `fragments/` and `catalog/` (one listing each).
    listed: Option<BTreeSet<String>>,
}

impl<'w> Presence<'w> {
    fn new(wh: &'w Warehouse) -> Result<Presence<'w>> {
        let listed = match wh.local_root() {
            Some(_) => None,
            None => {
                let mut keys = BTreeSet::new();
                for dir in [FRAGMENTS_DIR, super::delta::TABLE_DIR] {
                    keys.extend(wh.storage().list(dir)?.into_iter().map(|f| f.key));
                }
                Some(keys)
            }
        };
        Ok(Presence { wh, listed })
    }

    fn exists(&self, key: &str) -> Result<bool> {
        match &self.listed {
            Some(keys) => Ok(keys.contains(key)),
            None => self.wh.storage().exists(key),
        }
    }
}

/// The files a version names that are missing.
fn missing_in(
    wh: &Warehouse,
    presence: &Presence<'_>,
    parts: &[PartRef],
    part_cache: &mut BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for part in parts {
        if let Some(m) = part_cache.get(&part.path) {
            missing.extend(m.iter().cloned());
            continue;
        }
        let mut lost = Vec::new();
        if !presence.exists(&part.path)? {
            lost.push(part.path.clone());
        } else if part.kind == PartKind::Fragment {
            for row in read_fragment_part(wh.storage(), part)? {
                if !presence.exists(&row.path)? {
                    lost.push(row.path);
                }
            }
        }
        missing.extend(lost.iter().cloned());
        part_cache.insert(part.path.clone(), lost);
    }
    Ok(missing)
}

/// Fails with [`Error::DataLoss`] when the latest version names files that are gone.
/// Writers call it before their first commit, so they never bury lost data under new
/// versions.
pub fn check_latest_complete(wh: &Warehouse) -> Result<()> {
    let state = wh.log().state(None, false)?;
    let presence = Presence::new(wh)?;
    let parts = parts_of(wh.storage(), &state)?;
    let missing = missing_in(wh, &presence, &parts, &mut BTreeMap::new())?;
    match missing.first() {
        None => Ok(()),
        Some(example) => Err(Error::DataLoss {
            path: wh.root().to_path_buf(),
            version: state.version,
            missing: missing.len(),
            example: wh.storage().locate(example).display().to_string(),
        }),
    }
}

/// The completeness of every retained version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completeness {
    /// Retained versions that name missing files, with how many.
    pub incomplete: BTreeMap<Version, usize>,
    /// Incomplete versions that a later `restore` went back past (they stay readable by
    /// time travel only until vacuum expires them, and are not counted as problems).
    pub abandoned: BTreeMap<Version, usize>,
    /// Missing files named by versions that are not abandoned.
    pub missing: BTreeSet<String>,
    /// The newest retained version whose files all exist.
    pub newest_complete: Option<Version>,
    /// The latest version.
    pub latest: Version,
}

/// Commit-info key of a restore commit: the version whose contents it restored.
const RESTORED_VERSION: &str = "pixelquery.restoredVersion";

/// Checks every retained version (from `oldest`) for missing files.
pub fn completeness(wh: &Warehouse, oldest: Version) -> Result<Completeness> {
    let log = wh.log();
    let presence = Presence::new(wh)?;
    let mut cache = BTreeMap::new();
    let mut out = Completeness::default();
    let mut missing_by_version: BTreeMap<Version, Vec<String>> = BTreeMap::new();
    let mut abandoned: BTreeSet<Version> = BTreeSet::new();
    let mut state = log.state(Some(oldest), false)?;
    loop {
        let parts = parts_of(wh.storage(), &state)?;
        let missing = missing_in(wh, &presence, &parts, &mut cache)?;
        if missing.is_empty() {
            out.newest_complete = Some(state.version);
        } else {
            missing_by_version.insert(state.version, missing);
        }
        out.latest = state.version;
        let next = state.version + 1;
        let Some(actions) = log.read_commit(next)? else {
            break;
        };
        if let Some(restored) = restored_version(&actions) {
            abandoned.extend(restored + 1..next);
        }
        state
            .apply_commit(next, &actions)
            .map_err(|reason| Error::UnsupportedTable {
                path: wh.storage().locate(&commit_key(next)),
                reason,
            })?;
    }
    for (version, missing) in missing_by_version {
        if abandoned.contains(&version) {
            out.abandoned.insert(version, missing.len());
        } else {
            out.incomplete.insert(version, missing.len());
            out.missing.extend(missing);
        }
    }
    Ok(out)
}

/// The version a restore commit restored, when `actions` are one.
fn restored_version(actions: &[Action]) -> Option<Version> {
    actions.iter().find_map(|a| match a {
        Action::CommitInfo(c) if c.pixelquery_operation.as_deref() == Some("restore") => {
            c.other.get(RESTORED_VERSION).and_then(|v| v.as_u64())
        }
        _ => None,
    })
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The version whose contents were restored.
    pub restored: Version,
    /// The new version that holds them (`None` when the latest already did).
    pub version: Option<Version>,
    /// Catalog parts removed and re-added by the new version.
    pub parts_removed: usize,
    /// Catalog parts re-added.
    pub parts_added: usize,
}

/// Commits a new version whose catalog equals version `to` (the newest complete version
/// when `None`), like Delta's `RESTORE`. `to` must be retained and complete. Scenes committed
/// after it leave the catalog (their files stay until `vacuum`), so re-running their ingest
/// adds them again.
pub fn restore(wh: &Warehouse, to: Option<Version>) -> Result<RestoreReport> {
    let log = wh.log();
    let oldest = log.listing()?.oldest_readable().unwrap_or(0);
    let health = completeness(wh, oldest)?;
    let target = match to {
        Some(v) => {
            if let Some(&missing) = health.incomplete.get(&v) {
                return Err(Error::Restore {
                    path: wh.root().to_path_buf(),
                    reason: format!("version {v} is incomplete too ({missing} missing files)"),
                });
            }
            v
        }
        None => health.newest_complete.ok_or_else(|| Error::Restore {
            path: wh.root().to_path_buf(),
            reason: "no retained version is complete".into(),
        })?,
    };
    let wanted = log.state(Some(target), false)?;
    let mut report = RestoreReport {
        restored: target,
        version: None,
        parts_removed: 0,
        parts_added: 0,
    };
    let committed = wh.commit(|state: &TableState| {
        let (removes, adds) = difference(state, &wanted);
        if removes.is_empty() && adds.is_empty() {
            return Ok(None);
        }
        report.parts_removed = removes.len();
        report.parts_added = adds.len();
        // The metadata (product profiles) stays as it is: profiles only ever grow.
        let mut actions: Vec<Action> = removes.into_iter().map(Action::Remove).collect();
        actions.extend(adds.into_iter().map(Action::Add));
        let mut info = serde_json::Map::new();
        info.insert(RESTORED_VERSION.into(), target.into());
        Ok(Some(Commit {
            operation: Operation::Restore,
            actions,
            info,
        }))
    })?;
    if let Some((version, _)) = committed {
        report.version = Some(version);
        let _ = wh.checkpoint(version);
    }
    Ok(report)
}

/// The removes and adds that turn `current` into `wanted`.
fn difference(current: &TableState, wanted: &TableState) -> (Vec<Remove>, Vec<Add>) {
    let now = chrono::Utc::now().timestamp_millis();
    let removes = current
        .files
        .iter()
        .filter(|(path, _)| !wanted.files.contains_key(*path))
        .map(|(_, add)| Remove::of(add, now, true))
        .collect();
    let adds = wanted
        .files
        .iter()
        .filter(|(path, _)| !current.files.contains_key(*path))
        .map(|(_, add)| {
            let mut add = add.clone();
            add.data_change = true;
            add.modification_time = now;
            add
        })
        .collect();
    (removes, adds)
}
