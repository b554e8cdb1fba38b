//! Automatic compaction: after a commit, the fragments of each (tile, band, product) the
//! commit touched are merged size-tiered, so a tile-band holds a bounded number of fragments
//! however long the archive grows, and each observation is rewritten a bounded number of
//! times.
//!
//! A fragment of `n` observations is in tier `floor(log4 n)`. Whenever [`FAN_IN`] fragments of
//! one tier follow each other in time, they are merged into one of the next tier (and the
//! check repeats, so merges cascade). A daily archive of `N` scenes therefore holds about the
//! base-4 digit sum of `N` fragments per tile-band (7 for 1,825 scenes, at most 3 per tier),
//! and an observation is copied once per tier it climbs (about log4 N times, its bytes as they
//! are) and re-encoded once, when its small batches are gathered into a full time block (see
//! [`super::rewrite`]).
//!
//! Fragments that overlap in time (the flushes of one large batch, or writers feeding
//! different dates at once) are merged first, up to 16 at a time, their observations
//! interleaved; without that a batch-ingested tile-band kept one fragment per flush.
//!
//! The merge is a commit that changes no data (`dataChange: false`, like the catalog part
//! merges): the new fragments and the catalog parts that swap the rows are written first, then
//! the next log entry is created; a crash leaves the old or the new state, and the replaced
//! files stay for older snapshots until `vacuum`. Another writer that committed meanwhile is
//! rebased on; one that merged the same fragments wins and this merge is dropped, its files
//! deleted once the log shows nothing names them.

use super::rewrite::{self, MergedFragment};
use crate::grid::TileId;
use crate::store::batch::{part_key, write_part, Placed};
use crate::store::catalog::{self, FragmentEntry, PartKind};
use crate::store::delta::action::{Action, Remove};
use crate::store::delta::{TableState, Version};
use crate::store::snapshot::{parts_of, read_fragment_part, PartRef};
use crate::store::{layout, published, Commit, Error, Operation, Result, Snapshot, Warehouse};
use chrono::Utc;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Fragments of one tier merged at once, and the size ratio between tiers.
pub const FAN_IN: usize = 4;
/// Memory automatic compaction uses when not told otherwise.
const DEFAULT_MEMORY: u64 = 256 << 20;

/// A (tile, band, product) a commit wrote fragments for.
pub type Group = (TileId, String, String);

/// What an automatic compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoCompaction {
    /// The version it committed, `None` when nothing was due (or it lost to another writer).
    pub version: Option<Version>,
    /// Merges made (a cascade counts each step).
    pub merges: usize,
    /// Fragments replaced.
    pub fragments_replaced: usize,
    /// Bytes of fragments written.
    pub bytes_written: u64,
    /// Batches copied as they were, and encoded again.
    pub batches_copied: usize,
    /// Batches encoded again (small blocks gathered into full ones).
    pub batches_encoded: usize,
    /// Time spent writing merged fragments (and making them durable), in milliseconds.
    pub merge_ms: u64,
    /// Time spent committing the swap (catalog parts rewritten, log entry), in milliseconds.
    pub commit_ms: u64,
}

/// The size tier of a fragment of `n` observations.
pub fn tier(n: u64) -> u32 {
    let mut t = 0;
    let mut limit = FAN_IN as u64;
    while n >= limit && t < 31 {
        limit = limit.saturating_mul(FAN_IN as u64);
        t += 1;
    }
    t
}

/// Most fragments that overlap in time merged at once.
const MAX_OVERLAPPING: usize = FAN_IN * FAN_IN;

/// What to merge next in `list` (sorted by start time), as indices in time order, and whether
/// they overlap in time: fragments that overlap first (unless `overlaps` is false), then a
/// tier's run.
fn due(list: &[FragmentEntry], overlaps: bool) -> Option<(Vec<usize>, bool)> {
    overlaps
        .then(|| overlapping(list))
        .flatten()
        .map(|picked| (picked, true))
        .or_else(|| tiered(list).map(|r| (r.collect(), false)))
}

/// Fragments that overlap in time (the flushes of a large batch, or writers feeding
/// different dates at once), found as the first run of fragments each starting before the
/// latest end of those before it, at most [`MAX_OVERLAPPING`]. Their observations are
/// interleaved by the merge, which encodes every block again, so a fragment more than
/// [`FAN_IN`] times the size of the others together is left out (a late scene inside a
/// year's fragment waits for more of its kind instead of rewriting the year): each
/// observation is then rewritten a bounded number of times, as with the tiers.
fn overlapping(list: &[FragmentEntry]) -> Option<Vec<usize>> {
    let mut start = 0;
    let mut end = list.first()?.time_max;
    for (i, e) in list.iter().enumerate().skip(1) {
        if e.time_min < end && i - start < MAX_OVERLAPPING {
            end = end.max(e.time_max);
            continue;
        }
        if let Some(chosen) = worth_interleaving(list, start..i) {
            return Some(chosen);
        }
        start = i;
        end = e.time_max;
    }
    worth_interleaving(list, start..list.len())
}

/// The fragments of `run` (overlapping in time) worth merging: the largest left out while it
/// outweighs the others [`FAN_IN`] times; `None` unless two that overlap remain.
fn worth_interleaving(list: &[FragmentEntry], run: std::ops::Range<usize>) -> Option<Vec<usize>> {
    let mut chosen: Vec<usize> = run.collect();
    while chosen.len() >= 2 {
        let total: u64 = chosen.iter().map(|&i| list[i].observations).sum();
        let (at, largest) = chosen
            .iter()
            .enumerate()
            .map(|(at, &i)| (at, list[i].observations))
            .max_by_key(|&(_, n)| n)?;
        if largest <= FAN_IN as u64 * (total - largest) {
            break;
        }
        chosen.remove(at);
    }
    // What is left must still overlap (else the tiers take it).
    let overlaps = chosen
        .windows(2)
        .any(|w| list[w[0]].time_max > list[w[1]].time_min);
    (chosen.len() >= 2 && overlaps).then_some(chosen)
}

/// The first run of [`FAN_IN`] fragments of one tier that follow each other in time, as
/// indices.
fn tiered(list: &[FragmentEntry]) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    for i in 1..=list.len() {
        let same = i < list.len()
            && tier(list[i].observations) == tier(list[start].observations)
            && list[i - 1].time_max <= list[i].time_min;
        if !same {
            start = i;
            continue;
        }
        if i + 1 - start == FAN_IN {
            return Some(start..i + 1);
        }
    }
    None
}

/// Merges what is due in `groups` of `snapshot` and commits the swap. Best effort for the
/// caller: an error means nothing was committed (the files it wrote are cleaned up).
pub(crate) fn after_commit(
    wh: &Warehouse,
    snapshot: &Snapshot,
    groups: &BTreeSet<Group>,
) -> Result<AutoCompaction> {
    let mut report = AutoCompaction::default();
    let settings = wh.fragment_settings();
    let memory = match wh.options().compaction_memory {
        0 => DEFAULT_MEMORY,
        m => m,
    };
    let mut by_group: BTreeMap<Group, Vec<FragmentEntry>> = BTreeMap::new();
    for e in snapshot.fragments() {
        let key = (e.tile, e.band.clone(), e.product.clone());
        if groups.contains(&key) {
            by_group.entry(key).or_default().push(e.clone());
        }
    }
    let remote = wh.local_root().is_none();
    let started = std::time::Instant::now();
    // Tile-bands are merged side by side (one at a time on object storage, whose merges are
    // held in memory); each group's merges cascade in order.
    let work = |list: &mut Vec<FragmentEntry>| compact_group(wh, list, &settings, remote, memory);
    let outcomes: Vec<GroupOutcome> = if remote {
        by_group.values_mut().map(work).collect()
    } else {
        by_group
            .values_mut()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(work)
            .collect()
    };
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let mut written: Vec<MergedFragment> = Vec::new();
    let mut failure = None;
    for o in outcomes {
        replaced.extend(o.replaced);
        written.extend(o.written);
        if let Err(e) = o.result {
            failure.get_or_insert(e);
        }
    }
    for m in &written {
        report.merges += 1;
        report.bytes_written += m.bytes;
        report.batches_copied += m.copied;
        report.batches_encoded += m.encoded;
    }
    // Intermediate results of a cascade are not committed: only what survives.
    let (kept, dropped): (Vec<MergedFragment>, Vec<MergedFragment>) =
        written.into_iter().partition(|m| {
            by_group
                .values()
                .any(|l| l.iter().any(|e| e.path == m.entry.path))
        });
    for m in &dropped {
        let _ = wh.storage().delete(&m.entry.path);
    }
    let new_files: Vec<String> = kept.iter().map(|m| m.entry.path.clone()).collect();
    if let Some(e) = failure {
        for k in &new_files {
            let _ = wh.storage().delete(k);
        }
        return Err(e);
    }
    if kept.is_empty() {
        return Ok(report);
    }
    report.fragments_replaced = replaced.len();
    // New local files and their folders must be durable before the commit names them.
    let synced: Vec<Result<()>> = kept
        .par_iter()
        .map(|m| match &m.placed {
            Placed::Local { file, .. } => file
                .sync_all()
                .map_err(layout::io_err(&wh.storage().locate(&m.entry.path))),
            Placed::Uploaded => Ok(()),
        })
        .collect();
    synced.into_iter().collect::<Result<()>>()?;
    let mut to_sync: Vec<PathBuf> = Vec::new();
    let mut rows = Vec::new();
    for m in kept {
        if let Placed::Local { dirs, .. } = m.placed {
            to_sync.extend(dirs);
        }
        rows.push(m.entry);
    }
    to_sync.sort();
    to_sync.dedup();
    layout::sync_all_paths(&to_sync)?;
    report.merge_ms = started.elapsed().as_millis() as u64;
    let committing = std::time::Instant::now();
    report.version = commit_swap(wh, snapshot.version(), &replaced, &rows, &new_files)?;
    report.commit_ms = committing.elapsed().as_millis() as u64;
    Ok(report)
}

/// What merging one tile-band's fragments did.
struct GroupOutcome {
    /// Catalog fragments replaced.
    replaced: BTreeSet<String>,
    /// Every fragment written (intermediate results of a cascade included).
    written: Vec<MergedFragment>,
    result: Result<()>,
}

/// Merges what is due in one tile-band's `list` (sorted here by time), cascading; `list` ends
/// as the tile-band's fragments after the merges.
fn compact_group(
    wh: &Warehouse,
    list: &mut Vec<FragmentEntry>,
    settings: &crate::store::fragment::write::FragmentSettings,
    remote: bool,
    memory: u64,
) -> GroupOutcome {
    let mut out = GroupOutcome {
        replaced: BTreeSet::new(),
        written: Vec::new(),
        result: Ok(()),
    };
    list.sort_by_key(|e| (e.time_min, e.time_max));
    // Overlapping fragments a merge declined (or that would not fit in memory) are left for
    // this round: the tiers go on without them.
    let mut overlaps = true;
    while let Some((picked, from_overlap)) = due(list, overlaps) {
        let sources: Vec<&FragmentEntry> = picked.iter().map(|&i| &list[i]).collect();
        let bytes: u64 = sources.iter().map(|e| e.bytes).sum();
        // Object storage holds the sources and the result in memory.
        let merged = if remote && bytes.saturating_mul(2) > memory {
            Ok(None)
        } else {
            rewrite::merge(wh, &sources, settings)
        };
        let merged = match merged {
            Ok(Some(m)) => m,
            Ok(None) if from_overlap => {
                overlaps = false;
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                out.result = Err(e);
                break;
            }
        };
        for e in &sources {
            // A fragment this compaction wrote is not in the catalog: only its file.
            if !out.written.iter().any(|m| m.entry.path == e.path) {
                out.replaced.insert(e.path.clone());
            }
        }
        for &i in picked.iter().rev() {
            list.remove(i);
        }
        let at = list.partition_point(|e| {
            (e.time_min, e.time_max) <= (merged.entry.time_min, merged.entry.time_max)
        });
        list.insert(at, merged.entry.clone());
        out.written.push(merged);
    }
    out
}

/// Commits the swap of the `replaced` fragment rows for `rows`: the catalog parts holding
/// replaced rows are rewritten without them, and one new part holds the new rows. `None`
/// when another writer replaced some of the same fragments first (then nothing changed and
/// the new files are deleted).
fn commit_swap(
    wh: &Warehouse,
    seen: Version,
    replaced: &BTreeSet<String>,
    rows: &[FragmentEntry],
    new_files: &[String],
) -> Result<Option<Version>> {
    let storage = wh.storage();
    let mut written: Vec<String> = Vec::new();
    let mut lost = false;
    let result = wh.commit(|state: &TableState| {
        // Parts of an earlier attempt lost to another writer: never published.
        for k in written.drain(..) {
            let _ = storage.delete(&k);
        }
        let parts = parts_of(storage, state)?;
        let mut affected: Vec<(&PartRef, Vec<FragmentEntry>)> = Vec::new();
        let mut found = 0usize;
        for part in parts.iter().filter(|p| p.kind == PartKind::Fragment) {
            let all = read_fragment_part(storage, part)?;
            let hits = all.iter().filter(|e| replaced.contains(&e.path)).count();
            if hits > 0 {
                found += hits;
                let rest = all
                    .into_iter()
                    .filter(|e| !replaced.contains(&e.path))
                    .collect();
                affected.push((part, rest));
            }
        }
        if found != replaced.len() {
            // Some were merged by another writer: leave it to that one.
            lost = true;
            return Ok(None);
        }
        let id = format!(
            "{}-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ"),
            layout::unique_id()
        );
        let mut adds = Vec::new();
        for (k, (_, rest)) in affected.iter().enumerate() {
            if rest.is_empty() {
                continue;
            }
            let mut add = write_part(wh, &format!("{id}-{k}"), PartKind::Fragment, |p| {
                catalog::encode_fragments(p, rest)
            })?;
            add.data_change = false;
            adds.push(add);
        }
        let mut add = write_part(wh, &format!("{id}-new"), PartKind::Fragment, |p| {
            catalog::encode_fragments(p, rows)
        })?;
        add.data_change = false;
        adds.push(add);
        written = adds.iter().map(part_key).collect();
        storage.persist(&written)?;
        let now = Utc::now().timestamp_millis();
        let prefix = crate::store::delta::TABLE_DIR.len() + 1;
        let mut actions: Vec<Action> = affected
            .iter()
            .map(|(part, _)| {
                let path = &part.path[prefix..];
                Action::Remove(Remove::of(&state.files[path], now, false))
            })
            .collect();
        actions.extend(adds.into_iter().map(Action::Add));
        Ok(Some(Commit {
            operation: Operation::Compact,
            actions,
            info: Default::default(),
        }))
    });
    match result {
        Ok(Some((version, _))) => Ok(Some(version)),
        Ok(None) => {
            debug_assert!(lost);
            published::delete_unless_published(wh, Some(seen), &written, new_files);
            Ok(None)
        }
        Err(e @ Error::CommitUnknown { .. }) => Err(e),
        Err(e) => {
            published::delete_unless_published(wh, Some(seen), &written, new_files);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(spans: &[(i64, i64)], observations: u64) -> Vec<FragmentEntry> {
        spans
            .iter()
            .map(|&(a, b)| FragmentEntry {
                time_min: chrono::DateTime::from_timestamp(a, 0).unwrap(),
                time_max: chrono::DateTime::from_timestamp(b, 0).unwrap(),
                observations,
                ..crate::store::catalog::tests::entry(0)
            })
            .collect()
    }

    #[test]
    fn overlapping_fragments_are_due_before_tiers() {
        // Following each other: only tiers decide (four of tier 0).
        let list = spans(&[(0, 0), (1, 1), (2, 2), (3, 3)], 1);
        assert_eq!(overlapping(&list), None);
        assert_eq!(due(&list, true), Some((vec![0, 1, 2, 3], false)));
        // 1..5 overlaps 2..3 and 4..9; 10..11 follows.
        let list = spans(&[(0, 0), (1, 5), (2, 3), (4, 9), (10, 11)], 1);
        assert_eq!(due(&list, true), Some((vec![1, 2, 3], true)));
        // Declined overlaps leave the tiers to go on.
        assert_eq!(due(&list, false), None);
        // A run ends at the cap.
        let many: Vec<(i64, i64)> = (0..40).map(|i| (i, i + 2)).collect();
        assert_eq!(
            overlapping(&spans(&many, 1)),
            Some((0..MAX_OVERLAPPING).collect())
        );
        // A late scene inside a large fragment does not rewrite it; two late ones merge.
        let mut list = spans(&[(0, 100), (50, 50)], 1);
        list[0].observations = 100;
        assert_eq!(overlapping(&list), None);
        let mut list = spans(&[(0, 100), (50, 60), (55, 55)], 1);
        list[0].observations = 100;
        assert_eq!(overlapping(&list), Some(vec![1, 2]));
        list[1].observations = 30;
        assert_eq!(overlapping(&list), Some(vec![0, 1, 2]));
    }

    #[test]
    fn tiers_are_powers_of_the_fan_in() {
        assert_eq!(
            [1, 3, 4, 15, 16, 63, 64, 1825].map(tier),
            [0, 0, 1, 1, 2, 2, 3, 5]
        );
    }
}
