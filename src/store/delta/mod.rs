//! The catalog's commit log: a Delta Lake transaction log at `catalog/_delta_log/`.
//!
//! Version `v` is the file `{v:020}.json` (one action per line). A writer creates the next
//! version with create-if-absent (the Delta protocol's own commit rule); losing that race means
//! reading the commits it missed, checking them for conflicts and trying the next version.
//! Every [`CHECKPOINT_INTERVAL`] versions (and after a compaction) the whole state is written
//! as a checkpoint (`{v:020}.checkpoint.parquet`) and `_last_checkpoint` points to it, so
//! opening the latest version reads one checkpoint and at most a few JSON commits, however
//! long the history.
//!
//! Only the protocol's minimal subset is used: reader version 1, writer version 2, no table
//! features (so no deletion vectors), classic single-file checkpoints.

pub mod action;
pub mod checkpoint;
pub mod schema;

use super::storage::Storage;
use super::{Error, Result};
use action::{parse_commit, Action, Add, CommitInfo, Metadata, Protocol, Remove};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// A version of the catalog table (0 is the warehouse's creation).
pub type Version = u64;

/// The Delta table's folder (relative to the warehouse root).
pub const TABLE_DIR: &str = "catalog";
/// The Delta log's folder.
pub const LOG_DIR: &str = "catalog/_delta_log";
/// The pointer to the newest checkpoint.
pub const LAST_CHECKPOINT: &str = "catalog/_delta_log/_last_checkpoint";
/// A checkpoint every this many versions (`delta.checkpointInterval`).
pub const CHECKPOINT_INTERVAL: u64 = 10;
/// Tombstones stay in checkpoints this long (Delta's default `deletedFileRetentionDuration`).
pub const TOMBSTONE_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// Key of the JSON commit of `version`.
pub fn commit_key(version: Version) -> String {
    format!("{LOG_DIR}/{version:020}.json")
}

/// Key of the checkpoint of `version`.
pub fn checkpoint_key(version: Version) -> String {
    format!("{LOG_DIR}/{version:020}.checkpoint.parquet")
}

/// Whose commit a version holds after [`DeltaLog::try_commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Ours: the version is committed, with everything it names.
    Landed,
    /// Another writer's: ours did not land and never will at this version.
    Lost,
}

/// What a file in the log folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFile {
    /// `{v:020}.json`.
    Commit(Version),
    /// `{v:020}.checkpoint.parquet`.
    Checkpoint(Version),
}

/// Recognises a log file by its name (anything else, e.g. temporary files, is `None`).
pub fn parse_log_name(name: &str) -> Option<LogFile> {
    let version = |digits: &str| -> Option<Version> {
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    if let Some(d) = name.strip_suffix(".checkpoint.parquet") {
        return version(d).map(LogFile::Checkpoint);
    }
    name.strip_suffix(".json")
        .and_then(version)
        .map(LogFile::Commit)
}

/// The table at one version: protocol, metadata, live files and tombstones.
#[derive(Debug, Clone, PartialEq)]
pub struct TableState {
    /// The version.
    pub version: Version,
    /// Commit time of that version (from its `commitInfo`), when known.
    pub timestamp: Option<DateTime<Utc>>,
    /// Protocol in force.
    pub protocol: Protocol,
    /// Metadata in force.
    pub metadata: Metadata,
    /// Live data files by table-relative path.
    pub files: BTreeMap<String, Add>,
    /// Removed files by path (only complete when loaded with tombstones).
    pub tombstones: BTreeMap<String, Remove>,
    /// The newest checkpoint this state knows of (loaded from or written).
    pub checkpoint: Option<Version>,
}

impl TableState {
    /// A fresh table at version 0.
    pub fn new(protocol: Protocol, metadata: Metadata) -> TableState {
        TableState {
            version: 0,
            timestamp: None,
            protocol,
            metadata,
            files: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            checkpoint: None,
        }
    }

    /// Applies the actions of commit `version` (the next one).
    pub fn apply_commit(
        &mut self,
        version: Version,
        actions: &[Action],
    ) -> std::result::Result<(), String> {
        for a in actions {
            match a {
                Action::Protocol(p) => {
                    check_readable(p)?;
                    self.protocol = p.clone();
                }
                Action::Metadata(m) => self.metadata = m.clone(),
                Action::Add(add) => {
                    if add.deletion_vector.is_some() {
                        return Err(format!(
                            "{} has a deletion vector, which PixelQuery does not read",
                            add.path
                        ));
                    }
                    self.tombstones.remove(&add.path);
                    self.files.insert(add.path.clone(), add.clone());
                }
                Action::Remove(r) => {
                    self.files.remove(&r.path);
                    self.tombstones.insert(r.path.clone(), r.clone());
                }
                Action::CommitInfo(c) => {
                    self.timestamp = c.timestamp.and_then(DateTime::from_timestamp_millis);
                }
                Action::Other(_) => {}
            }
        }
        self.version = version;
        Ok(())
    }

    /// The state from a version-0 commit (which must hold protocol and metadata).
    fn from_first_commit(actions: &[Action]) -> std::result::Result<TableState, String> {
        let protocol = actions.iter().find_map(|a| match a {
            Action::Protocol(p) => Some(p.clone()),
            _ => None,
        });
        let metadata = actions.iter().find_map(|a| match a {
            Action::Metadata(m) => Some(m.clone()),
            _ => None,
        });
        let (Some(protocol), Some(metadata)) = (protocol, metadata) else {
            return Err("version 0 has no protocol or no metaData action".into());
        };
        let mut s = TableState::new(protocol, metadata);
        s.apply_commit(0, actions)?;
        Ok(s)
    }
}

/// Refuses tables that need reader features PixelQuery lacks.
fn check_readable(p: &Protocol) -> std::result::Result<(), String> {
    if p.min_reader_version > action::READER_VERSION
        && p.reader_features.as_ref().is_none_or(|f| !f.is_empty())
    {
        return Err(format!(
            "the table needs Delta reader version {} (features: {}); PixelQuery reads version {}",
            p.min_reader_version,
            p.reader_features
                .as_ref()
                .map(|f| f.join(", "))
                .unwrap_or_else(|| "-".into()),
            action::READER_VERSION
        ));
    }
    Ok(())
}

/// Refuses to write tables that need writer features PixelQuery lacks.
pub fn check_writable(p: &Protocol) -> std::result::Result<(), String> {
    check_readable(p)?;
    if p.min_writer_version > action::WRITER_VERSION {
        return Err(format!(
            "the table needs Delta writer version {}; PixelQuery writes version {}",
            p.min_writer_version,
            action::WRITER_VERSION
        ));
    }
    Ok(())
}

/// The files of the log folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Versions with a JSON commit.
    pub commits: BTreeSet<Version>,
    /// Versions with a checkpoint.
    pub checkpoints: BTreeSet<Version>,
    /// Temporary files (left by interrupted writes).
    pub temporaries: Vec<String>,
}

impl Listing {
    /// The oldest version that can still be rebuilt: a checkpoint, or version 0 when the log
    /// starts there.
    pub fn oldest_readable(&self) -> Option<Version> {
        let from_zero = self.commits.contains(&0).then_some(0);
        from_zero.or_else(|| self.checkpoints.first().copied())
    }

    /// The newest checkpoint at or before `version`.
    pub fn checkpoint_at_or_before(&self, version: Version) -> Option<Version> {
        self.checkpoints.range(..=version).next_back().copied()
    }
}

/// The `_last_checkpoint` file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LastCheckpoint {
    version: Version,
    size: u64,
    #[serde(
        rename = "sizeInBytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    size_in_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<u64>,
}

/// The log of one warehouse's catalog table.
#[derive(Debug, Clone, Copy)]
pub struct DeltaLog<'s> {
    storage: &'s dyn Storage,
}

impl<'s> DeltaLog<'s> {
    /// The log stored in `storage`.
    pub fn new(storage: &'s dyn Storage) -> Self {
        DeltaLog { storage }
    }

    fn corrupt(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::CorruptLog {
            path: self.storage.locate(key),
            reason: reason.into(),
        }
    }

    fn unsupported(&self, key: &str, reason: String) -> Error {
        Error::UnsupportedTable {
            path: self.storage.locate(key),
            reason,
        }
    }

    /// The actions of `version`, `None` when it does not exist.
    pub fn read_commit(&self, version: Version) -> Result<Option<Vec<Action>>> {
        let key = commit_key(version);
        let bytes = match self.storage.read(&key) {
            Ok(b) => b,
            Err(Error::MissingFile { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        parse_commit(&bytes)
            .map(Some)
            .map_err(|e| self.corrupt(&key, e.to_string()))
    }

    /// The `commitInfo` of `version`, when the commit exists and has one.
    pub fn commit_info(&self, version: Version) -> Result<Option<CommitInfo>> {
        Ok(self.read_commit(version)?.and_then(|actions| {
            actions.into_iter().find_map(|a| match a {
                Action::CommitInfo(c) => Some(c),
                _ => None,
            })
        }))
    }

    /// Every log file.
    pub fn listing(&self) -> Result<Listing> {
        let mut out = Listing::default();
        for f in self.storage.list(LOG_DIR)? {
            let name = f.key.rsplit('/').next().unwrap_or("");
            match parse_log_name(name) {
                Some(LogFile::Commit(v)) => {
                    out.commits.insert(v);
                }
                Some(LogFile::Checkpoint(v)) => {
                    out.checkpoints.insert(v);
                }
                None if name.starts_with(super::layout::TMP_PREFIX) => out.temporaries.push(f.key),
                None => {}
            }
        }
        Ok(out)
    }

    /// The checkpoint `_last_checkpoint` points to. It is a hint: a damaged or missing file
    /// means "look for checkpoints by listing".
    fn last_checkpoint_hint(&self) -> Result<Option<Version>> {
        match self.storage.read(LAST_CHECKPOINT) {
            Ok(bytes) => Ok(serde_json::from_slice::<LastCheckpoint>(&bytes)
                .ok()
                .filter(|l| l.parts.is_none())
                .map(|l| l.version)),
            Err(Error::MissingFile { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The state stored in the checkpoint of `version`.
    pub fn load_checkpoint(&self, version: Version, tombstones: bool) -> Result<TableState> {
        let key = checkpoint_key(version);
        let bytes = self.storage.read(&key)?;
        let d = checkpoint::decode(bytes, tombstones).map_err(|r| self.corrupt(&key, r))?;
        let (Some(protocol), Some(metadata)) = (d.protocol, d.metadata) else {
            return Err(self.corrupt(&key, "no protocol or metaData row"));
        };
        check_readable(&protocol).map_err(|r| self.unsupported(&key, r))?;
        let mut s = TableState::new(protocol, metadata);
        s.version = version;
        s.checkpoint = Some(version);
        for add in d.adds {
            s.files.insert(add.path.clone(), add);
        }
        for r in d.removes {
            s.tombstones.insert(r.path.clone(), r);
        }
        if let Some(info) = self.commit_info(version).ok().flatten() {
            s.timestamp = info.timestamp.and_then(DateTime::from_timestamp_millis);
        }
        Ok(s)
    }

    /// Applies `version`'s commit to `state`; `false` when the commit does not exist.
    fn apply_next(&self, state: &mut TableState, version: Version) -> Result<bool> {
        let Some(actions) = self.read_commit(version)? else {
            return Ok(false);
        };
        state
            .apply_commit(version, &actions)
            .map_err(|r| self.unsupported(&commit_key(version), r))?;
        Ok(true)
    }

    /// Brings `state` up to the latest version; returns the versions applied.
    ///
    /// The latest version is the last of an unbroken run of commits. A commit right after
    /// the first missing one means a commit was lost (a damaged log): that is an error, not
    /// an older latest version that writers would then build on.
    pub fn advance(&self, state: &mut TableState) -> Result<Vec<Version>> {
        let mut applied = Vec::new();
        while self.apply_next(state, state.version + 1)? {
            applied.push(state.version);
        }
        let missing = state.version + 1;
        if self.storage.exists(&commit_key(missing + 1))? {
            return Err(self.corrupt(&commit_key(missing), "missing: the log has a gap"));
        }
        Ok(applied)
    }

    /// The state that reading starts from for `target` (the latest when `None`): a
    /// checkpoint at or before it, or version 0.
    fn starting_point(&self, target: Option<Version>, tombstones: bool) -> Result<TableState> {
        match self.last_checkpoint_hint()? {
            Some(c) if target.is_none_or(|t| c <= t) => {
                match self.load_checkpoint(c, tombstones) {
                    Ok(s) => return Ok(s),
                    // A stale hint (the checkpoint is gone): find another by listing.
                    Err(Error::MissingFile { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            // Time travel before the newest checkpoint: an older one, by listing.
            Some(_) => {}
            // No checkpoint yet (a young table): version 0, without listing the log.
            None => {
                if let Some(actions) = self.read_commit(0)? {
                    return TableState::from_first_commit(&actions)
                        .map_err(|r| self.corrupt(&commit_key(0), r));
                }
            }
        }
        let listing = self.listing()?;
        let checkpoint = match target {
            Some(t) => listing.checkpoint_at_or_before(t),
            None => listing.checkpoints.last().copied(),
        };
        if let Some(c) = checkpoint {
            return self.load_checkpoint(c, tombstones);
        }
        if let Some(actions) = self.read_commit(0)? {
            return TableState::from_first_commit(&actions)
                .map_err(|r| self.corrupt(&commit_key(0), r));
        }
        match (target, listing.oldest_readable()) {
            (Some(version), Some(oldest)) => Err(Error::Vacuumed { version, oldest }),
            _ => Err(self.corrupt(
                &commit_key(0),
                "missing: the catalog has no commit 0 and no checkpoint",
            )),
        }
    }

    /// The table at `version` (the latest when `None`). Tombstones are only loaded when asked
    /// for (checkpoints and vacuum need them; readers do not).
    pub fn state(&self, version: Option<Version>, tombstones: bool) -> Result<TableState> {
        let mut state = self.starting_point(version, tombstones)?;
        match version {
            None => {
                self.advance(&mut state)?;
            }
            Some(target) => {
                while state.version < target {
                    let next = state.version + 1;
                    if !self.apply_next(&mut state, next)? {
                        let latest = state.version;
                        return Err(Error::UnknownVersion {
                            version: target,
                            latest,
                        });
                    }
                }
                if state.version > target {
                    let oldest = self.listing()?.oldest_readable().unwrap_or(state.version);
                    return Err(Error::Vacuumed {
                        version: target,
                        oldest,
                    });
                }
            }
        }
        Ok(state)
    }

    /// The latest version (cheap: the checkpoint hint, then probing forward).
    pub fn latest_version(&self) -> Result<Version> {
        let mut v = match self.last_checkpoint_hint()? {
            Some(c) => c,
            None => self.listing()?.commits.last().copied().ok_or_else(|| {
                self.corrupt(&commit_key(0), "missing: the catalog has no commit")
            })?,
        };
        while self.storage.exists(&commit_key(v + 1))? {
            v += 1;
        }
        Ok(v)
    }

    /// Creates the commit of `version` unless it exists, and says whose commit is there.
    ///
    /// A create that the store confirms is [`CommitOutcome::Landed`]. Every other answer is
    /// settled by reading the entry back and comparing its commit id with ours, because a
    /// request can land while its answer is lost: a 412 on a retry (our own first attempt
    /// created the key), a 409, a 5xx or a timeout. Our id there means landed; another id
    /// means [`CommitOutcome::Lost`] to another writer; no entry means the create did not
    /// land, and it is tried again. When the entry cannot be read back the outcome stays
    /// unknown: [`Error::CommitUnknown`], and the caller must not delete anything the
    /// commit names. Actions without a commit id (tests, foreign writers) cannot be told
    /// apart: an existing entry counts as lost.
    pub fn try_commit(&self, version: Version, actions: &[Action]) -> Result<CommitOutcome> {
        const ROUNDS: u32 = 3;
        let key = commit_key(version);
        let bytes = action::encode_commit(actions);
        let ours = actions.iter().find_map(|a| match a {
            Action::CommitInfo(c) => c.commit_id.clone(),
            _ => None,
        });
        let mut last_error = None;
        for _ in 0..ROUNDS {
            match self.storage.put_if_absent(&key, &bytes) {
                Ok(true) => return Ok(CommitOutcome::Landed),
                Ok(false) if ours.is_none() => return Ok(CommitOutcome::Lost),
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
            match self.read_commit(version) {
                Ok(Some(entry)) => {
                    let theirs = entry.iter().find_map(|a| match a {
                        Action::CommitInfo(c) => c.commit_id.as_deref(),
                        _ => None,
                    });
                    let landed = ours.is_some() && theirs == ours.as_deref();
                    return Ok(if landed {
                        CommitOutcome::Landed
                    } else {
                        CommitOutcome::Lost
                    });
                }
                // Not there: the create did not land. Try again.
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::CommitUnknown {
                        path: self.storage.locate(&key),
                        reason: format!(
                            "{}; reading it back failed: {e}",
                            last_error.map_or_else(
                                || "the store said it exists".to_string(),
                                |e| e.to_string()
                            )
                        ),
                    })
                }
            }
        }
        Err(Error::CommitUnknown {
            path: self.storage.locate(&key),
            reason: last_error.map_or_else(
                || "the store kept answering that it exists, yet it could not be read".into(),
                |e| e.to_string(),
            ),
        })
    }

    /// Writes the checkpoint of `state` (if none exists yet for its version) and points
    /// `_last_checkpoint` to it unless a newer one is already named. `state` must have been
    /// loaded with tombstones for the checkpoint to keep them.
    pub fn write_checkpoint(&self, state: &TableState) -> Result<()> {
        let key = checkpoint_key(state.version);
        let keep_after = Utc::now().timestamp_millis() - TOMBSTONE_RETENTION_MS;
        let (bytes, actions) =
            checkpoint::encode(state, keep_after).map_err(|source| Error::Parquet {
                path: self.storage.locate(&key),
                source,
            })?;
        // Another writer may have checkpointed the same version: its file is as good.
        self.storage.put_if_absent(&key, &bytes)?;
        if self
            .last_checkpoint_hint()?
            .is_none_or(|c| c < state.version)
        {
            let last = LastCheckpoint {
                version: state.version,
                size: actions as u64,
                size_in_bytes: Some(bytes.len() as u64),
                parts: None,
            };
            let body = serde_json::to_vec(&last).expect("serialisable");
            self.storage.replace(LAST_CHECKPOINT, &body)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::action::{encode_commit, Format};
    use super::*;
    use crate::store::storage::LocalStorage;

    fn metadata() -> Metadata {
        Metadata {
            id: "t".into(),
            name: None,
            description: None,
            format: Format {
                provider: "parquet".into(),
                options: BTreeMap::new(),
            },
            schema_string: "{}".into(),
            partition_columns: vec![],
            configuration: BTreeMap::new(),
            created_time: None,
        }
    }

    fn add(path: &str) -> Action {
        Action::Add(Add {
            path: path.into(),
            partition_values: BTreeMap::new(),
            size: 1,
            modification_time: 0,
            data_change: true,
            stats: None,
            tags: None,
            deletion_vector: None,
        })
    }

    fn remove(path: &str) -> Action {
        Action::Remove(Remove {
            path: path.into(),
            deletion_timestamp: Some(Utc::now().timestamp_millis()),
            data_change: true,
            extended_file_metadata: None,
            partition_values: None,
            size: None,
        })
    }

    fn new_log(d: &std::path::Path) -> LocalStorage {
        let s = LocalStorage::new(d);
        let first = [
            Action::Protocol(Protocol::minimal()),
            Action::Metadata(metadata()),
        ];
        assert_eq!(
            DeltaLog::new(&s).try_commit(0, &first).unwrap(),
            CommitOutcome::Landed
        );
        s
    }

    fn files(s: &TableState) -> Vec<String> {
        s.files.keys().cloned().collect()
    }

    #[test]
    fn names_are_recognised() {
        assert_eq!(
            parse_log_name("00000000000000000012.json"),
            Some(LogFile::Commit(12))
        );
        assert_eq!(
            parse_log_name("00000000000000000010.checkpoint.parquet"),
            Some(LogFile::Checkpoint(10))
        );
        for other in [
            "12.json",
            "_last_checkpoint",
            ".tmp-abc",
            "00000000000000000012.crc",
        ] {
            assert_eq!(parse_log_name(other), None, "{other}");
        }
    }

    #[test]
    fn commits_race_replay_and_time_travel() {
        let d = tempfile::tempdir().unwrap();
        let s = new_log(d.path());
        let log = DeltaLog::new(&s);
        let landed = CommitOutcome::Landed;
        assert_eq!(log.try_commit(1, &[add("a")]).unwrap(), landed);
        assert_eq!(
            log.try_commit(1, &[add("b")]).unwrap(),
            CommitOutcome::Lost,
            "version 1 is taken"
        );
        assert_eq!(log.try_commit(2, &[add("b")]).unwrap(), landed);
        assert_eq!(log.try_commit(3, &[remove("a"), add("c")]).unwrap(), landed);
        assert_eq!(log.latest_version().unwrap(), 3);
        assert_eq!(files(&log.state(None, false).unwrap()), ["b", "c"]);
        assert_eq!(files(&log.state(Some(1), false).unwrap()), ["a"]);
        assert!(matches!(
            log.state(Some(9), false),
            Err(Error::UnknownVersion {
                version: 9,
                latest: 3
            })
        ));
    }

    #[test]
    fn checkpoints_bound_the_replay_and_survive_log_cleanup() {
        let d = tempfile::tempdir().unwrap();
        let s = new_log(d.path());
        let log = DeltaLog::new(&s);
        for v in 1..=25 {
            assert_eq!(
                log.try_commit(v, &[add(&format!("f{v:02}"))]).unwrap(),
                CommitOutcome::Landed
            );
            if v % 10 == 0 {
                log.write_checkpoint(&log.state(None, true).unwrap())
                    .unwrap();
            }
        }
        let latest = log.state(None, false).unwrap();
        assert_eq!(latest.version, 25);
        assert_eq!(latest.checkpoint, Some(20));
        assert_eq!(latest.files.len(), 25);
        // Time travel before the newest checkpoint uses the older one.
        let at15 = log.state(Some(15), false).unwrap();
        assert_eq!(at15.checkpoint, Some(10));
        assert_eq!(at15.files.len(), 15);
        // The log before checkpoint 20 is deleted: 20.. still reads, 19 is vacuumed.
        for v in 0..20 {
            s.delete(&commit_key(v)).unwrap();
        }
        s.delete(&checkpoint_key(10)).unwrap();
        assert_eq!(log.state(Some(22), false).unwrap().files.len(), 22);
        assert!(matches!(
            log.state(Some(19), false),
            Err(Error::Vacuumed {
                version: 19,
                oldest: 20
            })
        ));
        assert_eq!(log.latest_version().unwrap(), 25);
    }

    #[test]
    fn a_stale_or_damaged_hint_falls_back_to_listing() {
        let d = tempfile::tempdir().unwrap();
        let s = new_log(d.path());
        let log = DeltaLog::new(&s);
        for v in 1..=12 {
            log.try_commit(v, &[add(&format!("f{v}"))]).unwrap();
        }
        log.write_checkpoint(&log.state(Some(10), true).unwrap())
            .unwrap();
        s.replace(LAST_CHECKPOINT, b"{garbage").unwrap();
        assert_eq!(log.state(None, false).unwrap().files.len(), 12);
        s.replace(LAST_CHECKPOINT, br#"{"version":11,"size":3}"#)
            .unwrap();
        assert_eq!(log.state(None, false).unwrap().files.len(), 12);
    }

    #[test]
    fn damaged_commits_and_foreign_features_are_named() {
        let d = tempfile::tempdir().unwrap();
        let s = new_log(d.path());
        let log = DeltaLog::new(&s);
        s.put(&commit_key(1), b"{\"add\": trunc").unwrap();
        let e = log.state(None, false).unwrap_err().to_string();
        assert!(
            e.contains("00000000000000000001.json") && e.contains("line 1"),
            "{e}"
        );
        s.delete(&commit_key(1)).unwrap();
        let dv = Action::Protocol(Protocol {
            min_reader_version: 3,
            min_writer_version: 7,
            reader_features: Some(vec!["deletionVectors".into()]),
            writer_features: Some(vec!["deletionVectors".into()]),
        });
        s.put(&commit_key(1), &encode_commit(&[dv])).unwrap();
        let e = log.state(None, false).unwrap_err().to_string();
        assert!(e.contains("deletionVectors"), "{e}");
    }
}
