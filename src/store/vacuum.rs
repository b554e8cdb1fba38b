//! Vacuum: expires versions older than a retention window and deletes what no retained
//! version references, following Delta's rules: a version is readable while its log (a
//! checkpoint at or before it and the JSON commits after) and its files exist.

use super::catalog::PartKind;
use super::delta::TABLE_DIR;
use super::delta::{checkpoint_key, commit_key, DeltaLog, Listing, Version, LOG_DIR};
use super::layout::{is_part_key, is_temp_name, parse_fragment_key, CONFIG_FILE, FRAGMENTS_DIR};
use super::snapshot::{parts_of, read_fragment_part, PartRef};
use super::storage::{EntryKind, Listed, Storage};
use super::{Error, Result, Warehouse};
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What a vacuum did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VacuumReport {
    /// Versions before this one are no longer readable.
    pub expire_before: Version,
    /// Log files (JSON commits and checkpoints of expired versions) deleted.
    pub log_files_deleted: usize,
    /// Data files (fragments, catalog parts) and temporary files deleted.
    pub deleted: Vec<PathBuf>,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Unreferenced files kept because they are younger than the window (possibly being
    /// written by a concurrent batch).
    pub kept_recent: usize,
    /// Names under `fragments/` and `catalog/` that vacuum left alone because PixelQuery did
    /// not write them: links (never followed), special files, other names.
    pub skipped: Vec<Skipped>,
}

/// A name vacuum did not delete because it is not PixelQuery's to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The name.
    pub path: PathBuf,
    /// Why it was left alone.
    pub reason: SkipReason,
}

/// Why vacuum left a name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// A symbolic link: not followed, not deleted.
    Link,
    /// A socket, FIFO or device.
    Special,
    /// A file whose name does not follow the warehouse's layout.
    ForeignName,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::Link => "a symbolic link, not followed",
            SkipReason::Special => "not a regular file",
            SkipReason::ForeignName => "not a name PixelQuery writes",
        })
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.reason)
    }
}

/// Parses a duration such as `30s`, `15m`, `12h`, `7d`, `2w` (or `0`).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let bad = || Error::Duration {
        text: text.to_string(),
    };
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

/// Expires every version that stopped being current more than `older_than` ago (the latest
/// always stays) and deletes the log files of expired versions, then every fragment, catalog
/// part and temporary file that no retained version references and that is older than
/// `older_than`. Files younger than the window are kept even when unreferenced, since a
/// concurrent batch may be about to commit them: vacuuming with a zero window while another
/// process writes can break that writer's commit.
///
/// Only names PixelQuery writes are ever deleted (fragment files under
/// `fragments/{tile}/{band}/`, catalog parts, temporary files, log files of expired
/// versions); links are never followed and, like other names, are left alone and listed in
/// [`VacuumReport::skipped`].
pub fn vacuum(wh: &Warehouse, older_than: Duration) -> Result<VacuumReport> {
    let storage = wh.storage();
    let log = wh.log();
    let now = SystemTime::now();
    let cutoff_sys = now
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let cutoff_ms = chrono::DateTime::<Utc>::from(cutoff_sys).timestamp_millis();
    let latest = log.latest_version()?;
    let listing = log.listing()?;
    let oldest = listing.oldest_readable().unwrap_or(0);
    let expire_before = current_at(&log, &listing, oldest, latest, cutoff_ms)?;
    let mut report = VacuumReport {
        expire_before,
        ..Default::default()
    };
    if expire_before > oldest {
        // The new oldest version must be readable on its own: a checkpoint of it first.
        if !listing.checkpoints.contains(&expire_before) {
            wh.checkpoint(expire_before)?;
        }
        report.log_files_deleted = expire_log(storage, &listing, expire_before)?;
    }
    let keep = referenced(wh, expire_before)?;
    for f in candidates(storage, &mut report.skipped)? {
        if keep.contains(&f.key) {
            continue;
        }
        if f.modified > cutoff_sys {
            report.kept_recent += 1;
            continue;
        }
        storage.delete(&f.key)?;
        report.bytes_freed += f.size;
        report.deleted.push(storage.locate(&f.key));
    }
    Ok(report)
}

/// The files vacuum may delete when nothing references them: fragment files under
/// `fragments/{tile}/{band}/`, catalog parts and temporary files, each named as PixelQuery
/// names them. Links, special files and other names are added to `skipped`.
fn candidates(storage: &dyn Storage, skipped: &mut Vec<Skipped>) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let log_prefix = format!("{LOG_DIR}/");
    let mut consider = |f: Listed, ours: bool, report: bool| {
        let reason = match f.kind {
            EntryKind::Link => Some(SkipReason::Link),
            EntryKind::Other => Some(SkipReason::Special),
            EntryKind::File if ours => None,
            EntryKind::File => Some(SkipReason::ForeignName),
        };
        match reason {
            None => out.push(f),
            Some(reason) if report => skipped.push(Skipped {
                path: storage.locate(&f.key),
                reason,
            }),
            Some(_) => {}
        }
    };
    for f in storage.list(FRAGMENTS_DIR)? {
        let ours = parse_fragment_key(&f.key).is_some() || is_temp_name(file_name(&f.key));
        consider(f, ours, true);
    }
    for f in storage.list(TABLE_DIR)? {
        if f.key.starts_with(&log_prefix) {
            // Log files are expired by version above; only temporaries are swept here.
            let ours = is_temp_name(file_name(&f.key));
            consider(f, ours, false);
        } else {
            let ours = is_part_key(&f.key) || is_temp_name(file_name(&f.key));
            consider(f, ours, true);
        }
    }
    for f in storage.list("")? {
        if !f.key.contains('/') && f.key != CONFIG_FILE {
            let ours = is_temp_name(&f.key);
            consider(f, ours, false);
        }
    }
    Ok(out)
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The version that was current at `cutoff_ms` (the last one committed before it), never
/// below `oldest`.
fn current_at(
    log: &DeltaLog<'_>,
    listing: &Listing,
    oldest: Version,
    latest: Version,
    cutoff_ms: i64,
) -> Result<Version> {
    let mut current = oldest;
    for &v in listing.commits.range(oldest..=latest) {
        let Some(info) = log.commit_info(v)? else {
            continue;
        };
        match info.timestamp {
            Some(t) if t < cutoff_ms => current = v,
            Some(_) => break,
            None => {}
        }
    }
    Ok(current)
}

/// Deletes the JSON commits and checkpoints of versions before `expire_before`, oldest
/// first, so an interruption leaves a log that still starts at a readable version.
fn expire_log(storage: &dyn Storage, listing: &Listing, expire_before: Version) -> Result<usize> {
    let mut keys: BTreeMap<Version, Vec<String>> = BTreeMap::new();
    for &v in listing.commits.range(..expire_before) {
        keys.entry(v).or_default().push(commit_key(v));
    }
    for &v in listing.checkpoints.range(..expire_before) {
        keys.entry(v).or_default().push(checkpoint_key(v));
    }
    let mut deleted = 0;
    for key in keys.into_values().flatten() {
        storage.delete(&key)?;
        deleted += 1;
    }
    Ok(deleted)
}

/// Every warehouse key a version from `from` to the latest references: catalog parts and
/// the fragments their rows name.
pub(crate) fn referenced(wh: &Warehouse, from: Version) -> Result<BTreeSet<String>> {
    let storage = wh.storage();
    let parts = retained_parts(wh, from)?;
    let mut keep: BTreeSet<String> = BTreeSet::new();
    for part in parts.values() {
        keep.insert(part.path.clone());
        if part.kind == PartKind::Fragment {
            // A part we cannot read means we cannot know what it references: stop.
            for row in read_fragment_part(storage, part)? {
                keep.insert(row.path);
            }
        }
    }
    Ok(keep)
}

/// A catalog part as one version's log describes it: key, size, checksum.
pub(crate) type PartDescription = (String, u64, Option<String>);

/// Every catalog part live at some version from `from` to the latest, by key and then by
/// how the log describes it (size, checksum): a part added again with another description
/// is listed under each, so that every description a reader may meet gets checked.
pub(crate) fn retained_parts(
    wh: &Warehouse,
    from: Version,
) -> Result<BTreeMap<PartDescription, PartRef>> {
    let log = wh.log();
    let mut state = log.state(Some(from), false)?;
    let mut parts = BTreeMap::new();
    let mut collect = |state: &super::delta::TableState| -> Result<()> {
        for p in parts_of(wh.storage(), state)? {
            let key = (p.path.clone(), p.bytes, p.checksum.clone());
            parts.entry(key).or_insert(p);
        }
        Ok(())
    };
    collect(&state)?;
    while let Some(actions) = log.read_commit(state.version + 1)? {
        let v = state.version + 1;
        state
            .apply_commit(v, &actions)
            .map_err(|reason| Error::UnsupportedTable {
                path: wh.storage().locate(&commit_key(v)),
                reason,
            })?;
        collect(&state)?;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(1_209_600)
        );
        for bad in ["", "d", "7", "7y", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
