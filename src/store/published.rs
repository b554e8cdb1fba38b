//! Cleaning up after a commit that did not happen, without ever deleting what a published
//! version names.
//!
//! A writer that gives up on a commit (another writer's conflict, an error) deletes the
//! fragments and catalog parts it wrote for it. That is only safe when no version of the log
//! adds those parts: a commit whose answer was lost may have landed. So the log is read first
//! (the commits after the version the writer started from), and nothing is deleted when one of
//! them adds a part of ours, or when the log cannot be read. Fragments are named only by
//! catalog parts, and a writer's parts and fragments have fresh unique names, so "none of our
//! parts is published" means "none of our files is referenced".

use super::batch::part_key;
use super::delta::action::Action;
use super::delta::Version;
use super::{Result, Warehouse};
use std::collections::BTreeSet;

/// True when a commit after `since` (every retained commit when `None`) adds one of
/// `part_keys` (warehouse keys of catalog parts).
pub(crate) fn published_since(
    wh: &Warehouse,
    since: Option<Version>,
    part_keys: &[String],
) -> Result<bool> {
    if part_keys.is_empty() {
        return Ok(false);
    }
    let wanted: BTreeSet<&str> = part_keys.iter().map(String::as_str).collect();
    let log = wh.log();
    let latest = log.latest_version()?;
    let first = match since {
        Some(v) => v + 1,
        None => log.listing()?.commits.first().copied().unwrap_or(0),
    };
    for version in first..=latest {
        let Some(actions) = log.read_commit(version)? else {
            continue;
        };
        let adds_ours = actions.iter().any(|a| match a {
            Action::Add(add) => wanted.contains(part_key(add).as_str()),
            _ => false,
        });
        if adds_ours {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes `part_keys` and `other_keys` (files written for a commit that was abandoned)
/// unless a commit after `since` published one of the parts, or the log cannot tell.
/// Best effort: a file that stays is an orphan `vacuum` removes. Returns true when the files
/// were deleted.
pub(crate) fn delete_unless_published(
    wh: &Warehouse,
    since: Option<Version>,
    part_keys: &[String],
    other_keys: &[String],
) -> bool {
    if !matches!(published_since(wh, since, part_keys), Ok(false)) {
        return false;
    }
    for key in part_keys.iter().chain(other_keys) {
        let _ = wh.storage().delete(key);
    }
    true
}
