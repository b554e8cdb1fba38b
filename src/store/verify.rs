//! Verify: checks that every file a retained snapshot references exists and matches its
//! recorded size, checksum and schema. Problems are collected, never raised.

use super::catalog::FragmentEntry;
use super::layout::{self, log_path, CATALOG_DIR, FRAGMENTS_DIR};
use super::log::{list_versions, read_entry, Log, LogState, PartKind, Version};
use super::snapshot::{open_checked, read_fragment_part, read_scene_part};
use super::{Error, Warehouse};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

/// What kind of problem `verify` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A referenced file does not exist.
    Missing,
    /// A file's size differs from the recorded one.
    Size,
    /// A file's checksum differs from the recorded one.
    Checksum,
    /// A fragment is not a valid fragment or disagrees with its catalog row.
    Fragment,
    /// A catalog part cannot be decoded.
    Catalog,
    /// A commit-log entry is damaged or missing.
    Log,
    /// Anything else (I/O errors, configuration).
    Other,
}

/// One problem: the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file concerned.
    pub path: PathBuf,
    /// The kind of problem.
    pub kind: ProblemKind,
    /// A one-line description (includes the path).
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl Problem {
    fn from_error(e: Error, fallback: PathBuf) -> Problem {
        let detail = e.to_string();
        let (path, kind) = match e {
            Error::MissingFile { path } => (path, ProblemKind::Missing),
            Error::SizeMismatch { path, .. } => (path, ProblemKind::Size),
            Error::ChecksumMismatch { path, .. } => (path, ProblemKind::Checksum),
            Error::CorruptFragment { path, .. } => (path, ProblemKind::Fragment),
            Error::CorruptCatalog { path, .. } => (path, ProblemKind::Catalog),
            Error::CorruptLog { path, .. } => (path, ProblemKind::Log),
            Error::Io { path, .. } => (path, ProblemKind::Other),
            _ => (fallback, ProblemKind::Other),
        };
        Problem { path, kind, detail }
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// The latest version, when the log could be read.
    pub version: Option<Version>,
    /// Oldest retained version checked.
    pub oldest_version: Option<Version>,
    /// Catalog parts checked.
    pub parts_checked: usize,
    /// Fragments checked.
    pub fragments_checked: usize,
    /// Bytes of fragments checksummed.
    pub bytes_checked: u64,
    /// Files under `fragments/` and `catalog/` that no retained snapshot references
    /// (left by interrupted writes or compactions; `vacuum` removes them). Not a problem.
    pub unreferenced_files: usize,
    /// Everything wrong.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the log, every catalog part of every retained snapshot, and every fragment they
/// reference (size, checksum, Arrow structure, schema and agreement with its row).
pub fn verify(wh: &Warehouse) -> VerifyReport {
    let root = wh.root();
    let mut report = VerifyReport::default();
    // The log: report every damaged entry, not just the first.
    let versions = match list_versions(root) {
        Ok(v) => v,
        Err(e) => {
            report
                .problems
                .push(Problem::from_error(e, root.join("_log")));
            return report;
        }
    };
    for (i, v) in versions.iter().enumerate() {
        if *v != i as u64 {
            let missing = log_path(root, i as u64);
            report.problems.push(Problem {
                detail: format!(
                    "{}: corrupt commit log: missing: the log has a gap",
                    missing.display()
                ),
                path: missing,
                kind: ProblemKind::Log,
            });
            break;
        }
    }
    for v in &versions {
        if let Err(e) = read_entry(root, *v) {
            report
                .problems
                .push(Problem::from_error(e, log_path(root, *v)));
        }
    }
    if !report.problems.is_empty() {
        return report;
    }
    let log = match Log::read(root) {
        Ok(l) => l,
        Err(e) => {
            report
                .problems
                .push(Problem::from_error(e, root.join("_log")));
            return report;
        }
    };
    let oldest = log.oldest_retained();
    report.version = Some(log.latest());
    report.oldest_version = Some(oldest);
    let mut parts = BTreeMap::new();
    let mut state = LogState::default();
    for e in &log.entries {
        state.apply(e);
        if e.version >= oldest {
            parts.extend(state.parts.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let mut fragments: BTreeMap<String, FragmentEntry> = BTreeMap::new();
    let mut referenced: BTreeSet<PathBuf> = BTreeSet::new();
    for part in parts.values() {
        report.parts_checked += 1;
        let path = layout::resolve(root, &part.path);
        referenced.insert(path.clone());
        let result = match part.kind {
            PartKind::Fragments => read_fragment_part(root, part).map(|rows| {
                for r in rows {
                    fragments.entry(r.path.clone()).or_insert(r);
                }
            }),
            PartKind::Scenes => read_scene_part(root, part).map(|_| ()),
        };
        if let Err(e) = result {
            report.problems.push(Problem::from_error(e, path));
        }
    }
    let checks: Vec<Result<u64, Problem>> = fragments
        .values()
        .collect::<Vec<_>>()
        .par_iter()
        .map(|e| {
            let path = layout::resolve(root, &e.path);
            open_checked(root, e, true)
                .map(|_| e.bytes)
                .map_err(|err| Problem::from_error(err, path))
        })
        .collect();
    for c in checks {
        report.fragments_checked += 1;
        match c {
            Ok(bytes) => report.bytes_checked += bytes,
            Err(p) => report.problems.push(p),
        }
    }
    referenced.extend(fragments.keys().map(|p| layout::resolve(root, p)));
    let mut files = Vec::new();
    for dir in [FRAGMENTS_DIR, CATALOG_DIR] {
        if let Err(e) = super::vacuum::walk(&root.join(dir), &mut files) {
            report.problems.push(Problem::from_error(e, root.join(dir)));
        }
    }
    report.unreferenced_files = files.iter().filter(|f| !referenced.contains(*f)).count();
    report
}
