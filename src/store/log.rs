//! The commit log: `_log/{version:020}.json`, one immutable JSON entry per commit.
//!
//! A snapshot is the replay of entries `0..=version`: the set of live catalog parts (added
//! and not yet removed) and the registered products. An entry is created with
//! create-if-absent after everything it names is durable, so a reader sees a whole commit
//! or none of it; two writers racing for the same version cannot both win, and the loser
//! re-reads the log and retries with the next number.

use super::layout::{self, create_if_absent, log_path, parse_log_name, read_file, LOG_DIR};
use super::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A commit version (0 is the warehouse's creation).
pub type Version = u64;

/// What kind of rows a catalog part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartKind {
    /// One row per fragment.
    Fragments,
    /// One row per scene.
    Scenes,
}

/// A catalog part named by a log entry, with what is needed to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// Path relative to the warehouse root.
    pub path: String,
    /// Row kind.
    pub kind: PartKind,
    /// Number of rows.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// XXH3-64 checksum (`xxh3:<hex>`).
    pub checksum: String,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// The warehouse was created.
    Create,
    /// A batch of fragments and scenes was appended.
    Append,
    /// Fragments were merged and the catalog rewritten.
    Compact,
    /// Old snapshots were expired (their files may then be deleted).
    Vacuum,
}

/// One commit-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The version this entry creates.
    pub version: Version,
    /// Commit time.
    pub timestamp: DateTime<Utc>,
    /// What the commit did.
    pub operation: Operation,
    /// Catalog parts added.
    #[serde(default)]
    pub add: Vec<PartRef>,
    /// Catalog parts removed (paths).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Product profiles registered by this commit.
    #[serde(default)]
    pub products: BTreeMap<String, serde_json::Value>,
    /// For `vacuum`: snapshots before this version are no longer readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_before: Option<Version>,
}

/// Versions present in the log, ascending. Temporary files and foreign names are ignored.
pub fn list_versions(root: &Path) -> Result<Vec<Version>> {
    let dir = root.join(LOG_DIR);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(layout::io_err(&dir))? {
        let e = e.map_err(layout::io_err(&dir))?;
        if let Some(v) = e.file_name().to_str().and_then(parse_log_name) {
            out.push(v);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads and checks one entry.
pub fn read_entry(root: &Path, version: Version) -> Result<LogEntry> {
    let path = log_path(root, version);
    let bytes = read_file(&path)?;
    let corrupt = |reason: String| Error::CorruptLog {
        path: path.clone(),
        reason,
    };
    let entry: LogEntry =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not a log entry: {e}")))?;
    if entry.version != version {
        return Err(corrupt(format!(
            "entry says version {}, file name says {version}",
            entry.version
        )));
    }
    for p in entry.add.iter().map(|p| &p.path).chain(&entry.remove) {
        if !layout::validate_rel_path(p) || !p.starts_with("catalog/") {
            return Err(corrupt(format!("part path {p:?} is not inside catalog/")));
        }
    }
    Ok(entry)
}

/// Tries to create the entry's file; `Ok(false)` when that version already exists.
pub fn try_create(root: &Path, entry: &LogEntry) -> Result<bool> {
    let path = log_path(root, entry.version);
    let bytes = serde_json::to_vec_pretty(entry).map_err(|e| Error::CorruptLog {
        path: path.clone(),
        reason: format!("cannot serialise entry: {e}"),
    })?;
    create_if_absent(&path, &bytes)
}

/// The whole log, read and checked: entries `0..=latest` with no gap.
#[derive(Debug, Clone)]
pub struct Log {
    /// Every entry, index = version.
    pub entries: Vec<LogEntry>,
}

impl Log {
    /// Reads every entry. A missing version in the middle is corruption.
    pub fn read(root: &Path) -> Result<Log> {
        let versions = list_versions(root)?;
        let mut entries = Vec::with_capacity(versions.len());
        for (i, v) in versions.iter().enumerate() {
            if *v != i as u64 {
                return Err(Error::CorruptLog {
                    path: log_path(root, i as u64),
                    reason: "missing: the log has a gap".into(),
                });
            }
            entries.push(read_entry(root, *v)?);
        }
        if entries.is_empty() {
            return Err(Error::CorruptLog {
                path: log_path(root, 0),
                reason: "missing: the warehouse has no initial commit".into(),
            });
        }
        Ok(Log { entries })
    }

    /// The latest version.
    pub fn latest(&self) -> Version {
        self.entries.len() as u64 - 1
    }

    /// Oldest version still readable (versions before it were vacuumed).
    pub fn oldest_retained(&self) -> Version {
        self.entries
            .iter()
            .filter_map(|e| e.expire_before)
            .max()
            .unwrap_or(0)
            .min(self.latest())
    }

    /// The state after replaying entries `0..=version`.
    pub fn state_at(&self, version: Version) -> LogState {
        let mut s = LogState::default();
        for e in &self.entries[..=(version as usize).min(self.entries.len() - 1)] {
            s.apply(e);
        }
        s
    }
}

/// The replayed state of the log at one version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogState {
    /// The version replayed up to.
    pub version: Version,
    /// Commit time of that version.
    pub timestamp: Option<DateTime<Utc>>,
    /// Live catalog parts by path.
    pub parts: BTreeMap<String, PartRef>,
    /// Products registered so far.
    pub products: BTreeMap<String, serde_json::Value>,
}

impl LogState {
    /// Applies one entry.
    pub fn apply(&mut self, e: &LogEntry) {
        for r in &e.remove {
            self.parts.remove(r);
        }
        for a in &e.add {
            self.parts.insert(a.path.clone(), a.clone());
        }
        for (k, v) in &e.products {
            self.products.insert(k.clone(), v.clone());
        }
        self.version = e.version;
        self.timestamp = Some(e.timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(p: &str) -> PartRef {
        PartRef {
            path: p.into(),
            kind: PartKind::Fragments,
            rows: 1,
            bytes: 10,
            checksum: "xxh3:00".into(),
        }
    }

    fn entry(version: u64, add: &[&str], remove: &[&str]) -> LogEntry {
        LogEntry {
            version,
            timestamp: Utc::now(),
            operation: Operation::Append,
            add: add.iter().map(|p| part(p)).collect(),
            remove: remove.iter().map(|s| s.to_string()).collect(),
            products: BTreeMap::new(),
            expire_before: None,
        }
    }

    #[test]
    fn replay_adds_and_removes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(LOG_DIR)).unwrap();
        assert!(try_create(d.path(), &entry(0, &[], &[])).unwrap());
        assert!(try_create(d.path(), &entry(1, &["catalog/a"], &[])).unwrap());
        assert!(!try_create(d.path(), &entry(1, &["catalog/b"], &[])).unwrap());
        assert!(try_create(d.path(), &entry(2, &["catalog/b"], &[])).unwrap());
        assert!(try_create(
            d.path(),
            &entry(3, &["catalog/c"], &["catalog/a", "catalog/b"])
        )
        .unwrap());
        let log = Log::read(d.path()).unwrap();
        assert_eq!(log.latest(), 3);
        let keys = |v| log.state_at(v).parts.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(1), ["catalog/a"]);
        assert_eq!(keys(2), ["catalog/a", "catalog/b"]);
        assert_eq!(keys(3), ["catalog/c"]);
    }

    #[test]
    fn gaps_and_garbage_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(LOG_DIR)).unwrap();
        try_create(d.path(), &entry(0, &[], &[])).unwrap();
        try_create(d.path(), &entry(2, &[], &[])).unwrap();
        let e = Log::read(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("00000000000000000001.json") && e.contains("gap"),
            "{e}"
        );
        std::fs::write(log_path(d.path(), 1), b"{ trunc").unwrap();
        let e = Log::read(d.path()).unwrap_err().to_string();
        assert!(e.contains("00000000000000000001.json"), "{e}");
        std::fs::remove_file(log_path(d.path(), 1)).unwrap();
        try_create(d.path(), &entry(1, &["../../etc/passwd"], &[])).unwrap();
        let e = Log::read(d.path()).unwrap_err().to_string();
        assert!(e.contains("not inside catalog"), "{e}");
    }
}
