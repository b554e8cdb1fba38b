//! Vacuum: expires snapshots older than a retention window and deletes the files that no
//! retained snapshot references.

use super::layout::{self, CATALOG_DIR, FRAGMENTS_DIR, LOG_DIR, TMP_PREFIX};
use super::log::{Log, LogEntry, Operation, PartKind, Version};
use super::snapshot::read_fragment_part;
use super::{Error, Result, Warehouse};
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a vacuum did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VacuumReport {
    /// Snapshots before this version are no longer readable.
    pub expire_before: Version,
    /// The vacuum commit, when a new expiry point was recorded.
    pub version: Option<Version>,
    /// Files deleted.
    pub deleted: Vec<PathBuf>,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Unreferenced files kept because they are younger than the window (possibly being
    /// written by a concurrent batch).
    pub kept_recent: usize,
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

/// Expires every snapshot that stopped being current more than `older_than` ago (the
/// latest always stays) and deletes unreferenced fragments, catalog parts and temporary
/// files older than `older_than`. Files younger than the window are kept even when
/// unreferenced, since a concurrent batch may be about to commit them: vacuuming with a
/// zero window while another process writes can break that writer's commit.
pub fn vacuum(wh: &Warehouse, older_than: Duration) -> Result<VacuumReport> {
    let root = wh.root();
    let now = SystemTime::now();
    let cutoff_sys = now
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let cutoff = chrono::DateTime::<Utc>::from(cutoff_sys);
    let log = Log::read(root)?;
    // The snapshot current at the cutoff is the last one committed before it.
    let current_at_cutoff = log
        .entries
        .iter()
        .rev()
        .find(|e| e.timestamp < cutoff)
        .map(|e| e.version)
        .unwrap_or(0);
    let expire_before = current_at_cutoff.max(log.oldest_retained());
    let mut report = VacuumReport {
        expire_before,
        ..Default::default()
    };
    if expire_before > log.oldest_retained() {
        report.version = Some(wh.commit_entry(|_| {
            Ok(LogEntry {
                version: 0,
                timestamp: Utc::now(),
                operation: Operation::Vacuum,
                add: vec![],
                remove: vec![],
                products: BTreeMap::new(),
                expire_before: Some(expire_before),
            })
        })?);
    }
    // Everything any retained snapshot (including commits made meanwhile) references.
    let log = Log::read(root)?;
    let mut parts = BTreeMap::new();
    let mut state = super::log::LogState::default();
    for e in &log.entries {
        state.apply(e);
        if e.version >= expire_before {
            parts.extend(state.parts.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let mut keep: BTreeSet<PathBuf> = BTreeSet::new();
    for part in parts.values() {
        keep.insert(layout::resolve(root, &part.path));
        if part.kind == PartKind::Fragments {
            // A part we cannot read means we cannot know what it references: stop.
            for row in read_fragment_part(root, part)? {
                keep.insert(layout::resolve(root, &row.path));
            }
        }
    }
    let mut candidates = Vec::new();
    walk(&root.join(FRAGMENTS_DIR), &mut candidates)?;
    walk(&root.join(CATALOG_DIR), &mut candidates)?;
    for dir in [root.to_path_buf(), root.join(LOG_DIR)] {
        for e in std::fs::read_dir(&dir).map_err(layout::io_err(&dir))? {
            let e = e.map_err(layout::io_err(&dir))?;
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                candidates.push(e.path());
            }
        }
    }
    for path in candidates {
        if keep.contains(&path) {
            continue;
        }
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(_) => continue, // already gone (another vacuum)
        };
        let modified = meta.modified().unwrap_or(now);
        if modified > cutoff_sys {
            report.kept_recent += 1;
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                report.bytes_freed += meta.len();
                report.deleted.push(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(layout::io_err(&path)(e)),
        }
    }
    Ok(report)
}

/// Every regular file below `dir` (which may not exist).
pub(crate) fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(layout::io_err(dir)(e)),
    };
    for e in entries {
        let e = e.map_err(layout::io_err(dir))?;
        let t = e.file_type().map_err(layout::io_err(&e.path()))?;
        if t.is_dir() {
            walk(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
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
