//! Merging small catalog parts, so that opening a snapshot reads a bounded number of files
//! however many commits the warehouse has had.
//!
//! Every append adds a part or two. Parts are sorted into size tiers (each [`FAN_IN`] times
//! larger than the one below); when a tier holds [`FAN_IN`] parts of one kind, they are
//! rewritten as one part of the next tier in a commit that changes no data (`dataChange:
//! false`, as Delta's OPTIMIZE does). A warehouse therefore holds at most `FAN_IN - 1` parts
//! per tier and kind, a handful in all, and each row is rewritten about once per tier.

use super::batch::{part_key, write_part};
use super::catalog::{self, PartKind};
use super::delta::action::{Action, Remove};
use super::delta::{TableState, Version};
use super::snapshot::{parts_of, read_parts, PartRef};
use super::{published, Commit, Error, Operation, Result, Warehouse};
use chrono::Utc;
use std::collections::BTreeSet;

/// Parts merged at once, and the size ratio between tiers.
pub const FAN_IN: usize = 4;
/// Parts up to this size are in the lowest tier.
const SMALLEST_TIER_BYTES: u64 = 64 << 10;

fn tier(bytes: u64) -> u32 {
    let mut t = 0;
    let mut limit = SMALLEST_TIER_BYTES;
    while bytes > limit && t < 30 {
        limit = limit.saturating_mul(FAN_IN as u64);
        t += 1;
    }
    t
}

/// The parts of the lowest tier that has filled up, for some kind; empty when none has.
fn plan(parts: &[PartRef]) -> Vec<PartRef> {
    for kind in PartKind::ALL {
        let mut tiers: std::collections::BTreeMap<u32, Vec<&PartRef>> = Default::default();
        for p in parts.iter().filter(|p| p.kind == kind) {
            tiers.entry(tier(p.bytes)).or_default().push(p);
        }
        if let Some(group) = tiers.into_values().find(|g| g.len() >= FAN_IN) {
            return group.into_iter().cloned().collect();
        }
    }
    Vec::new()
}

/// Merges filled-up tiers of `state` until none is left; returns the last merge's version.
/// A merge that loses a race with another merge of the same parts is dropped (the other one
/// did the job).
pub(crate) fn merge_if_needed(wh: &Warehouse, state: &TableState) -> Result<Option<Version>> {
    let mut parts = parts_of(wh.storage(), state)?;
    let mut last = None;
    // Each merge lowers the part count by FAN_IN - 1: this ends.
    loop {
        let group = plan(&parts);
        if group.is_empty() {
            return Ok(last);
        }
        match merge_group(wh, &group, state.version)? {
            Some((version, after)) => {
                last = Some(version);
                parts = parts_of(wh.storage(), &after)?;
            }
            None => return Ok(last),
        }
    }
}

/// Merges the filled-up tiers of the latest version (what `pixelquery compact` also does).
pub fn merge_catalog_parts(wh: &Warehouse) -> Result<Option<Version>> {
    let state = wh.log().state(None, false)?;
    merge_if_needed(wh, &state)
}

/// Rewrites `group` (parts of one kind, live at version `seen`) as one part and commits the
/// swap.
fn merge_group(
    wh: &Warehouse,
    group: &[PartRef],
    seen: Version,
) -> Result<Option<(Version, TableState)>> {
    let kind = group[0].kind;
    let (fragments, scenes) = read_parts(wh.storage(), group)?;
    let id = format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        super::layout::unique_id()
    );
    let mut add = write_part(wh, &id, kind, |p| match kind {
        PartKind::Fragment => catalog::encode_fragments(p, &fragments),
        PartKind::Scene => catalog::encode_scenes(p, &scenes),
    })?;
    add.data_change = false;
    let key = part_key(&add);
    wh.storage().persist(std::slice::from_ref(&key))?;
    let merged: BTreeSet<String> = group
        .iter()
        .map(|p| p.path[catalog_prefix_len()..].to_string())
        .collect();
    let result = wh.commit(|state| {
        // Another merge (or a compaction) got there first: nothing left to do.
        if !merged.iter().all(|p| state.files.contains_key(p)) {
            return Ok(None);
        }
        let now = Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = merged
            .iter()
            .map(|p| Action::Remove(Remove::of(&state.files[p], now, false)))
            .collect();
        actions.push(Action::Add(add.clone()));
        Ok(Some(Commit {
            operation: Operation::Merge,
            actions,
            info: Default::default(),
        }))
    });
    match &result {
        Ok(Some(_)) => {}
        // It may have landed: keep the part it names.
        Err(Error::CommitUnknown { .. }) => {}
        _ => {
            published::delete_unless_published(wh, Some(seen), std::slice::from_ref(&key), &[]);
        }
    }
    result
}

/// Length of `catalog/`, the prefix of a part's warehouse key before its table path.
fn catalog_prefix_len() -> usize {
    super::delta::TABLE_DIR.len() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(kind: PartKind, bytes: u64, i: usize) -> PartRef {
        PartRef {
            path: format!("catalog/kind={}/p{i}.parquet", kind.name()),
            kind,
            rows: None,
            bytes,
            checksum: None,
        }
    }

    #[test]
    fn tiers_grow_by_the_fan_in() {
        assert_eq!(tier(0), 0);
        assert_eq!(tier(64 << 10), 0);
        assert_eq!(tier((64 << 10) + 1), 1);
        assert_eq!(tier(256 << 10), 1);
        assert!(tier(u64::MAX) <= 30, "bounded");
    }

    #[test]
    fn a_full_tier_of_one_kind_is_planned() {
        let mut parts: Vec<PartRef> = (0..3).map(|i| part(PartKind::Fragment, 1000, i)).collect();
        parts.extend((3..6).map(|i| part(PartKind::Scene, 1000, i)));
        parts.push(part(PartKind::Fragment, 10 << 20, 9));
        assert!(plan(&parts).is_empty(), "3 small parts per kind stay");
        parts.push(part(PartKind::Scene, 2000, 7));
        let g = plan(&parts);
        assert_eq!(g.len(), 4);
        assert!(g.iter().all(|p| p.kind == PartKind::Scene));
    }
}
