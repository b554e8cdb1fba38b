//! The warehouse's commit history, read from the Delta log.

use super::delta::action::Action;
use super::delta::Version;
use super::{Result, Warehouse};
use chrono::{DateTime, Utc};

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// The warehouse was created.
    Create,
    /// A batch of fragments and scenes was appended.
    Append,
    /// Fragments were merged and the catalog rewritten.
    Compact,
    /// Small catalog parts were merged into one (no data changed).
    Merge,
    /// The catalog was set back to the contents of an earlier version.
    Restore,
    /// A commit by another Delta writer, with the operation it recorded.
    Foreign(String),
}

impl Operation {
    /// PixelQuery's name (`create`, `append`, `compact`, `merge`, `restore`), kept in
    /// `commitInfo`.
    pub fn name(&self) -> &str {
        match self {
            Operation::Create => "create",
            Operation::Append => "append",
            Operation::Compact => "compact",
            Operation::Merge => "merge",
            Operation::Restore => "restore",
            Operation::Foreign(op) => op,
        }
    }

    /// The operation as Delta writers spell it in `commitInfo.operation`.
    pub fn delta_name(&self) -> &str {
        match self {
            Operation::Create => "CREATE TABLE",
            Operation::Append => "WRITE",
            Operation::Compact => "OPTIMIZE",
            Operation::Merge => "OPTIMIZE",
            Operation::Restore => "RESTORE",
            Operation::Foreign(op) => op,
        }
    }

    fn parse(pixelquery: Option<&str>, delta: Option<&str>) -> Operation {
        match pixelquery {
            Some("create") => Operation::Create,
            Some("append") => Operation::Append,
            Some("compact") => Operation::Compact,
            Some("merge") => Operation::Merge,
            Some("restore") => Operation::Restore,
            _ => Operation::Foreign(delta.unwrap_or("UNKNOWN").to_string()),
        }
    }
}

/// One commit of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitSummary {
    /// Its version.
    pub version: Version,
    /// When it was committed.
    pub timestamp: Option<DateTime<Utc>>,
    /// What it did.
    pub operation: Operation,
    /// Catalog parts it added.
    pub parts_added: usize,
    /// Catalog parts it removed.
    pub parts_removed: usize,
}

/// Every commit still in the log (vacuum deletes old ones), oldest first.
pub(crate) fn read(wh: &Warehouse) -> Result<Vec<CommitSummary>> {
    let log = wh.log();
    let listing = log.listing()?;
    let mut out = Vec::with_capacity(listing.commits.len());
    for &version in &listing.commits {
        let Some(actions) = log.read_commit(version)? else {
            continue; // vacuumed meanwhile
        };
        let mut summary = CommitSummary {
            version,
            timestamp: None,
            operation: Operation::Foreign("UNKNOWN".into()),
            parts_added: 0,
            parts_removed: 0,
        };
        for a in &actions {
            match a {
                Action::CommitInfo(c) => {
                    summary.timestamp = c.timestamp.and_then(DateTime::from_timestamp_millis);
                    summary.operation =
                        Operation::parse(c.pixelquery_operation.as_deref(), c.operation.as_deref());
                }
                Action::Add(_) => summary.parts_added += 1,
                Action::Remove(_) => summary.parts_removed += 1,
                _ => {}
            }
        }
        out.push(summary);
    }
    Ok(out)
}
