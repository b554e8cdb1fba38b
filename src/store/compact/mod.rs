//! Compaction: merges the fragments of each (tile, band, product) and period into one
//! fragment sorted by time, and rewrites the catalog as one part per row kind, all in one
//! atomic commit, then checkpoints the log. The replaced files stay readable by older
//! snapshots until vacuumed.

pub mod auto;
mod rewrite;

use super::batch::{part_key, write_new_fragment, write_part, Placed};
use super::catalog::{self, FragmentEntry, PartKind};
use super::delta::action::{Action, Remove};
use super::delta::Version;
use super::fragment::{Fragment, FragmentData};
use super::layout;
use super::snapshot::{open_checked, parts_of, read_parts};
use super::{published, Commit, Error, Operation, Result, Warehouse};
use chrono::{DateTime, Datelike, Utc};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The time span whose fragments are merged into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactPeriod {
    /// One fragment per calendar month (by first observation).
    Month,
    /// One fragment per calendar year.
    Year,
    /// One fragment for all time.
    All,
}

impl CompactPeriod {
    /// Parses `month`, `year` or `all`.
    pub fn parse(s: &str) -> Option<CompactPeriod> {
        match s.to_ascii_lowercase().as_str() {
            "month" => Some(CompactPeriod::Month),
            "year" => Some(CompactPeriod::Year),
            "all" => Some(CompactPeriod::All),
            _ => None,
        }
    }

    fn bucket(self, t: DateTime<Utc>) -> i64 {
        match self {
            CompactPeriod::Month => t.year() as i64 * 12 + t.month0() as i64,
            CompactPeriod::Year => t.year() as i64,
            CompactPeriod::All => 0,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactReport {
    /// The version committed, `None` when there was nothing to do.
    pub version: Option<Version>,
    /// Groups of fragments merged.
    pub groups_merged: usize,
    /// Fragments in the snapshot before.
    pub fragments_before: usize,
    /// Fragments in the new snapshot (excluding concurrent appends).
    pub fragments_after: usize,
    /// Catalog parts replaced.
    pub parts_replaced: usize,
}

/// A merged fragment's row and the directories to fsync.
/// A merged fragment's row and the local files and folders to fsync before the commit.
type Merged = (FragmentEntry, Vec<PathBuf>);

type GroupKey = (
    crate::grid::TileId,
    String,
    String,
    &'static str,
    u32,
    u32,
    i64,
);

/// Merges small fragments per (tile, band, product, `period`), rewrites the catalog as one
/// part per kind and checkpoints the log. Concurrent appends and catalog-part merges are kept
/// (the commit rebases on them); a concurrent compaction that replaced the same fragments
/// makes this one fail with [`Error::CompactionConflict`] without changing anything.
pub fn compact(wh: &Warehouse, period: CompactPeriod) -> Result<CompactReport> {
    let snap = wh.snapshot(None)?;
    let mut groups: BTreeMap<GroupKey, Vec<&FragmentEntry>> = BTreeMap::new();
    for e in snap.fragments() {
        let key = (
            e.tile,
            e.band.clone(),
            e.product.clone(),
            e.dtype.name(),
            e.width,
            e.height,
            period.bucket(e.time_min),
        );
        groups.entry(key).or_default().push(e);
    }
    let to_merge: Vec<Vec<&FragmentEntry>> = groups.into_values().filter(|g| g.len() > 1).collect();
    let mut report = CompactReport {
        fragments_before: snap.fragments().len(),
        ..Default::default()
    };
    if to_merge.is_empty() && snap.parts().len() <= 2 {
        report.fragments_after = report.fragments_before;
        return Ok(report);
    }
    let merged: Vec<Result<Option<Merged>>> = to_merge
        .par_iter()
        .map(|group| merge_group(wh, group))
        .collect();
    let mut new_files = Vec::new();
    let mut replaced: BTreeSet<&str> = BTreeSet::new();
    let mut new_rows = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut first_err = None;
    for (group, m) in to_merge.iter().zip(merged) {
        match m {
            Ok(Some((entry, d))) => {
                new_files.push(entry.path.clone());
                replaced.extend(group.iter().map(|e| e.path.as_str()));
                new_rows.push(entry);
                dirs.extend(d);
                report.groups_merged += 1;
            }
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let cleanup = |keys: &[String]| {
        for k in keys {
            let _ = wh.storage().delete(k);
        }
    };
    if let Some(e) = first_err {
        cleanup(&new_files);
        return Err(e);
    }
    let result = commit_catalog(wh, snap.version(), &replaced, &new_rows, &dirs, &new_files);
    match result {
        Ok((version, parts_replaced, fragments_after)) => {
            report.version = Some(version);
            report.parts_replaced = parts_replaced;
            report.fragments_after = fragments_after;
            // One checkpoint right after the rewrite: the next open reads just it.
            let _ = wh.checkpoint(version);
            Ok(report)
        }
        // commit_catalog cleaned up what it could prove unpublished.
        Err(e) => Err(e),
    }
}

/// Commits the rewritten catalog: every live row, with the `replaced` fragments swapped for
/// `new_rows`, as one part per kind replacing every live part. A lost race is retried on the
/// newer version, as long as the replaced fragments are still live there.
fn commit_catalog(
    wh: &Warehouse,
    seen: Version,
    replaced: &BTreeSet<&str>,
    new_rows: &[FragmentEntry],
    to_sync: &BTreeSet<PathBuf>,
    new_files: &[String],
) -> Result<(Version, usize, usize)> {
    let storage = wh.storage();
    // New local fragment files and their folders (nothing for object storage).
    let to_sync: Vec<PathBuf> = to_sync.iter().cloned().collect();
    layout::sync_all_paths(&to_sync)?;
    let mut written: Vec<String> = Vec::new();
    let mut outcome = (0, 0);
    let result = wh.commit(|state| {
        for k in written.drain(..) {
            let _ = storage.delete(&k);
        }
        let parts = parts_of(storage, state)?;
        let (fragments, scenes) = read_parts(storage, &parts)?;
        let live: BTreeSet<&str> = fragments.iter().map(|e| e.path.as_str()).collect();
        if let Some(gone) = replaced.iter().find(|p| !live.contains(**p)) {
            return Err(Error::CompactionConflict {
                path: storage.locate(gone),
            });
        }
        let rows: Vec<FragmentEntry> = fragments
            .into_iter()
            .filter(|e| !replaced.contains(e.path.as_str()))
            .chain(new_rows.iter().cloned())
            .collect();
        let id = format!(
            "{}-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ"),
            layout::unique_id()
        );
        let mut adds = Vec::new();
        if !rows.is_empty() {
            adds.push(write_part(wh, &id, PartKind::Fragment, |p| {
                catalog::encode_fragments(p, &rows)
            })?);
        }
        if !scenes.is_empty() {
            let mut add = write_part(wh, &id, PartKind::Scene, |p| {
                catalog::encode_scenes(p, &scenes)
            })?;
            add.data_change = false; // the same scene rows, rearranged
            adds.push(add);
        }
        written = adds.iter().map(part_key).collect();
        storage.persist(&written)?;
        let now = Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = state
            .files
            .values()
            .map(|a| Action::Remove(Remove::of(a, now, true)))
            .collect();
        actions.extend(adds.into_iter().map(Action::Add));
        outcome = (parts.len(), rows.len());
        Ok(Some(Commit {
            operation: Operation::Compact,
            actions,
            info: Default::default(),
        }))
    });
    match result {
        Ok(Some((version, _))) => Ok((version, outcome.0, outcome.1)),
        // The closure always commits; were it not to, nothing changed.
        Ok(None) => Ok((wh.latest_version()?, 0, outcome.1)),
        // It may have landed: keep everything it names.
        Err(e @ Error::CommitUnknown { .. }) => Err(e),
        Err(e) => {
            published::delete_unless_published(wh, Some(seen), &written, new_files);
            Err(e)
        }
    }
}

/// Reads a group's fragments (checksummed: compaction must not copy damage forward) and
/// writes their observations as one fragment. `None` when the group's georeferencing or
/// nodata disagree (then it is left as is).
fn merge_group(wh: &Warehouse, group: &[&FragmentEntry]) -> Result<Option<Merged>> {
    let frags: Vec<Fragment> = group
        .iter()
        .map(|e| open_checked(wh.storage(), e, true))
        .collect::<Result<_>>()?;
    let m0 = frags[0].meta().clone();
    let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
        (None, None) => true,
        _ => false,
    };
    if frags.iter().any(|f| {
        let m = f.meta();
        m.transform != m0.transform
            || !same(m.nodata, m0.nodata)
            || m.scale != m0.scale
            || m.offset != m0.offset
    }) {
        return Ok(None);
    }
    // Whole-tile observations: the merged fragment stores the union of their windows.
    let mut observations = Vec::new();
    for f in &frags {
        for k in 0..f.len() {
            observations.push(f.observation(k)?);
        }
    }
    let first = group[0];
    let data = FragmentData::refill(
        &m0,
        first.footprint_lonlat.clone(),
        first.resolution,
        observations,
    );
    // The caller fsyncs the new files together with its catalog part.
    let (entry, placed) = write_new_fragment(wh, data)?;
    let to_sync = match placed {
        Placed::Local { dirs, file: _ } => {
            let mut paths = vec![layout::resolve(wh.root(), &entry.path)];
            paths.extend(dirs);
            paths
        }
        Placed::Uploaded => Vec::new(),
    };
    Ok(Some((entry, to_sync)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_bucket_by_calendar() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let m = CompactPeriod::Month;
        assert_eq!(
            m.bucket(t("2024-01-01T00:00:00Z")),
            m.bucket(t("2024-01-31T23:59:59Z"))
        );
        assert_ne!(
            m.bucket(t("2024-01-31T23:59:59Z")),
            m.bucket(t("2024-02-01T00:00:00Z"))
        );
        let y = CompactPeriod::Year;
        assert_eq!(
            y.bucket(t("2024-01-01T00:00:00Z")),
            y.bucket(t("2024-12-31T00:00:00Z"))
        );
        assert_eq!(CompactPeriod::parse("Month"), Some(CompactPeriod::Month));
        assert_eq!(CompactPeriod::parse("week"), None);
    }
}
