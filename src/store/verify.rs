//! Verify: checks the catalog's Delta log and that every file a retained version references
//! exists and matches its recorded size, checksum and schema. Problems are collected, never
//! raised.

use super::catalog::{FragmentEntry, PartKind};
use super::delta::{checkpoint, checkpoint_key, commit_key, Version, LOG_DIR, TABLE_DIR};
use super::health::completeness;
use super::layout::FRAGMENTS_DIR;
use super::snapshot::{open_checked, read_fragment_part, read_scene_part};
use super::vacuum::retained_parts;
use super::{Error, Warehouse};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

/// What kind of problem `verify` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A file a published version references does not exist: data loss (unlike
    /// unreferenced files, which are harmless orphans).
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
            Error::MissingFile { path } => {
                let detail = format!(
                    "{}: missing, but a published version references it (data loss)",
                    path.display()
                );
                return Problem {
                    path,
                    kind: ProblemKind::Missing,
                    detail,
                };
            }
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
    /// Data loss: retained versions that name missing files, with how many are missing.
    pub incomplete_versions: BTreeMap<Version, usize>,
    /// Incomplete versions that a later `restore` went back past, with how many files they
    /// miss: not problems (the warehouse as it stands is whole), but time travel to them
    /// fails until `vacuum` expires them.
    pub abandoned_versions: BTreeMap<Version, usize>,
    /// The newest retained version whose files all exist (when some version is
    /// incomplete): `pixelquery restore` goes back to it.
    pub newest_complete: Option<Version>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the log (every JSON commit and checkpoint of the retained versions parses and
/// there is no gap), every catalog part of every retained version, and every fragment they
/// reference (size, checksum, Arrow structure, schema and agreement with its row).
pub fn verify(wh: &Warehouse) -> VerifyReport {
    let storage = wh.storage();
    let log = wh.log();
    let mut report = VerifyReport::default();
    let log_problem = |key: &str, e: Error| Problem::from_error(e, storage.locate(key));
    let listing = match log.listing() {
        Ok(l) => l,
        Err(e) => {
            report.problems.push(log_problem(LOG_DIR, e));
            return report;
        }
    };
    let Some(oldest) = listing.oldest_readable() else {
        report.problems.push(Problem {
            path: storage.locate(&commit_key(0)),
            kind: ProblemKind::Log,
            detail: format!(
                "{}: corrupt commit log: missing: no commit 0 and no checkpoint",
                storage.locate(&commit_key(0)).display()
            ),
        });
        return report;
    };
    // Every version from the oldest readable one on must have its JSON commit (a checkpoint
    // replaces the commits before it, not its own).
    let latest = listing.commits.last().copied().unwrap_or(oldest);
    for v in oldest..=latest {
        let key = commit_key(v);
        if !listing.commits.contains(&v) {
            if v == oldest && listing.checkpoints.contains(&v) {
                continue;
            }
            report.problems.push(Problem {
                path: storage.locate(&key),
                kind: ProblemKind::Log,
                detail: format!(
                    "{}: corrupt commit log: missing: the log has a gap",
                    storage.locate(&key).display()
                ),
            });
            continue;
        }
        if let Err(e) = log.read_commit(v) {
            report.problems.push(log_problem(&key, e));
        }
    }
    for &v in listing.checkpoints.range(oldest..) {
        let key = checkpoint_key(v);
        let decoded = storage.read(&key).and_then(|b| {
            checkpoint::decode(b, true).map_err(|reason| Error::CorruptLog {
                path: storage.locate(&key),
                reason,
            })
        });
        if let Err(e) = decoded {
            report.problems.push(log_problem(&key, e));
        }
    }
    if !report.problems.is_empty() {
        return report;
    }
    report.version = Some(latest);
    report.oldest_version = Some(oldest);
    let parts = match retained_parts(wh, oldest) {
        Ok(p) => p,
        Err(e) => {
            report.problems.push(log_problem(LOG_DIR, e));
            return report;
        }
    };
    let mut fragments: BTreeMap<String, FragmentEntry> = BTreeMap::new();
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for part in parts.values() {
        report.parts_checked += 1;
        referenced.insert(part.path.clone());
        let result = match part.kind {
            PartKind::Fragment => read_fragment_part(storage, part).map(|rows| {
                for r in rows {
                    fragments.entry(r.path.clone()).or_insert(r);
                }
            }),
            PartKind::Scene => read_scene_part(storage, part).map(|_| ()),
        };
        if let Err(e) = result {
            report
                .problems
                .push(Problem::from_error(e, storage.locate(&part.path)));
        }
    }
    let checks: Vec<Result<u64, Problem>> = fragments
        .values()
        .collect::<Vec<_>>()
        .par_iter()
        .map(|e| {
            let path = storage.locate(&e.path);
            open_checked(storage, e, true)
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
    referenced.extend(fragments.into_keys());
    if report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Missing)
    {
        match completeness(wh, oldest) {
            Ok(c) => {
                // Files missing only from versions a restore went back past are history,
                // not damage to the warehouse as it stands.
                let live: BTreeSet<PathBuf> = c.missing.iter().map(|k| storage.locate(k)).collect();
                report
                    .problems
                    .retain(|p| p.kind != ProblemKind::Missing || live.contains(&p.path));
                report.incomplete_versions = c.incomplete;
                report.abandoned_versions = c.abandoned;
                report.newest_complete = c.newest_complete;
            }
            Err(e) => report.problems.push(log_problem(LOG_DIR, e)),
        }
    }
    let log_prefix = format!("{LOG_DIR}/");
    for dir in [FRAGMENTS_DIR, TABLE_DIR] {
        match storage.list(dir) {
            Ok(files) => {
                report.unreferenced_files += files
                    .iter()
                    .filter(|f| !f.key.starts_with(&log_prefix) && !referenced.contains(&f.key))
                    .count()
            }
            Err(e) => report
                .problems
                .push(Problem::from_error(e, storage.locate(dir))),
        }
    }
    report
}
