//! Delta Lake log actions, the subset PixelQuery writes and reads, and commit files (one JSON
//! action per line, as the Delta protocol defines them).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Highest reader protocol version understood here (no reader features).
pub const READER_VERSION: i32 = 1;
/// Highest writer protocol version written and honoured here (column invariants and
/// append-only are the writer-2 features; PixelQuery uses neither).
pub const WRITER_VERSION: i32 = 2;

/// `protocol`: what a client must support to read or write the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    /// Reader version required.
    pub min_reader_version: i32,
    /// Writer version required.
    pub min_writer_version: i32,
    /// Reader features (reader version 3 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_features: Option<Vec<String>>,
    /// Writer features (writer version 7 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_features: Option<Vec<String>>,
}

impl Protocol {
    /// The protocol PixelQuery writes: reader 1, writer 2, no table features.
    pub fn minimal() -> Protocol {
        Protocol {
            min_reader_version: READER_VERSION,
            min_writer_version: WRITER_VERSION,
            reader_features: None,
            writer_features: None,
        }
    }
}

/// `metaData.format`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    /// Always `parquet`.
    pub provider: String,
    /// Format options (none).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `metaData`: the table's identity, schema, partitioning and properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Unique table id (a UUID).
    pub id: String,
    /// Optional name.
    #[serde(default)]
    pub name: Option<String>,
    /// Optional description.
    #[serde(default)]
    pub description: Option<String>,
    /// Data file format.
    pub format: Format,
    /// The schema as Delta's JSON struct type.
    pub schema_string: String,
    /// Partition columns.
    #[serde(default)]
    pub partition_columns: Vec<String>,
    /// Table properties.
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    /// Creation time, milliseconds since the epoch.
    #[serde(default)]
    pub created_time: Option<i64>,
}

/// `add`: a data file joins the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Path relative to the table root (URI-encoded; PixelQuery's names need no escaping).
    pub path: String,
    /// Partition column values.
    #[serde(default)]
    pub partition_values: BTreeMap<String, Option<String>>,
    /// File size in bytes.
    pub size: i64,
    /// Write time, milliseconds since the epoch.
    pub modification_time: i64,
    /// False for rearrangements that change no data (merging catalog parts).
    pub data_change: bool,
    /// Column statistics, a JSON string (`numRecords`, `minValues`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
    /// Free-form tags; PixelQuery keeps the file's checksum here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Option<String>>>,
    /// Deletion vectors are a reader-3 feature PixelQuery never enables: any value is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_vector: Option<serde_json::Value>,
}

/// `remove`: a data file leaves the table (it stays on disk for older versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    /// Path relative to the table root.
    pub path: String,
    /// When it was removed, milliseconds since the epoch.
    #[serde(default)]
    pub deletion_timestamp: Option<i64>,
    /// False for rearrangements that change no data.
    pub data_change: bool,
    /// True when the partition values and size below are present.
    #[serde(default)]
    pub extended_file_metadata: Option<bool>,
    /// Partition column values of the removed file.
    #[serde(default)]
    pub partition_values: Option<BTreeMap<String, Option<String>>>,
    /// Size of the removed file.
    #[serde(default)]
    pub size: Option<i64>,
}

impl Remove {
    /// The tombstone of `add`, removed at `now_ms`.
    pub fn of(add: &Add, now_ms: i64, data_change: bool) -> Remove {
        Remove {
            path: add.path.clone(),
            deletion_timestamp: Some(now_ms),
            data_change,
            extended_file_metadata: Some(true),
            partition_values: Some(add.partition_values.clone()),
            size: Some(add.size),
        }
    }
}

/// `commitInfo`: provenance of a commit. Free-form in the protocol; the fields PixelQuery
/// reads are typed, the rest kept as they are.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CommitInfo {
    /// Commit time, milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// What the commit did (`WRITE`, `OPTIMIZE`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// A unique id of the commit attempt: after an ambiguous failure the writer reads the
    /// entry back and recognises its own commit by it.
    #[serde(
        rename = "pixelquery.commitId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub commit_id: Option<String>,
    /// PixelQuery's name for the operation (`create`, `append`, `compact`, `merge`).
    #[serde(
        rename = "pixelquery.operation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pixelquery_operation: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// One line of a commit file.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Provenance.
    CommitInfo(CommitInfo),
    /// Protocol versions.
    Protocol(Protocol),
    /// Table metadata.
    Metadata(Metadata),
    /// A file added.
    Add(Add),
    /// A file removed.
    Remove(Remove),
    /// An action PixelQuery does not use (`txn`, `cdc`, `domainMetadata`...), kept by name.
    Other(String),
}

/// Why a commit file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

fn line_of<T: Serialize>(key: &str, value: &T) -> String {
    let mut map = serde_json::Map::new();
    map.insert(
        key.to_string(),
        serde_json::to_value(value).expect("actions serialise"),
    );
    serde_json::Value::Object(map).to_string()
}

/// Serialises actions as a commit file: newline-delimited JSON, one action per line.
pub fn encode_commit(actions: &[Action]) -> Vec<u8> {
    let mut out = String::new();
    for a in actions {
        let line = match a {
            Action::CommitInfo(c) => line_of("commitInfo", c),
            Action::Protocol(p) => line_of("protocol", p),
            Action::Metadata(m) => line_of("metaData", m),
            Action::Add(a) => line_of("add", a),
            Action::Remove(r) => line_of("remove", r),
            Action::Other(_) => continue,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.into_bytes()
}

/// Reads a commit file, one line at a time. Every line must be a JSON object with one
/// action; unknown action kinds are kept as [`Action::Other`] (the protocol check decides
/// whether they matter). More than `max_actions` actions is an error, raised before they
/// are all held: memory stays proportional to what is kept.
pub fn read_commit(
    input: impl std::io::BufRead,
    max_actions: usize,
) -> Result<Vec<Action>, ParseError> {
    let mut out = Vec::new();
    for_each_action(input, max_actions, |a| {
        out.push(a);
        true
    })?;
    Ok(out)
}

/// Streams the actions of a commit file to `f` until it returns `false` (or the file
/// ends); at most `max_actions` actions (see [`read_commit`]). Lines are decoded straight
/// into their action type, never through a generic JSON tree.
pub fn for_each_action(
    mut input: impl std::io::BufRead,
    max_actions: usize,
    mut f: impl FnMut(Action) -> bool,
) -> Result<(), ParseError> {
    let mut line = Vec::new();
    let mut number = 0;
    let mut actions = 0;
    loop {
        line.clear();
        number += 1;
        let err = |reason: String| ParseError {
            line: number,
            reason,
        };
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| err(format!("read failed: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        let text = std::str::from_utf8(&line).map_err(|_| err("not UTF-8".into()))?;
        if text.trim().is_empty() {
            continue;
        }
        actions += 1;
        if actions > max_actions {
            return Err(err(format!(
                "more than {max_actions} actions in one commit, more than any writer of this table makes"
            )));
        }
        let ActionLine(action) = serde_json::from_str(text).map_err(|e| {
            err(match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    format!("not JSON: {e}")
                }
                _ => e.to_string(),
            })
        })?;
        if !f(action) {
            return Ok(());
        }
    }
}

/// One line of a commit file: an object with exactly one key, the action kind.
struct ActionLine(Action);

impl<'de> Deserialize<'de> for ActionLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ActionLine;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object with one action")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ActionLine, A::Error> {
                use serde::de::Error;
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::custom("0 keys, an action has one"));
                };
                let bad = |e: A::Error| A::Error::custom(format!("bad {key} action: {e}"));
                let action = match key.as_str() {
                    "commitInfo" => Action::CommitInfo(map.next_value().map_err(bad)?),
                    "protocol" => Action::Protocol(map.next_value().map_err(bad)?),
                    "metaData" => Action::Metadata(map.next_value().map_err(bad)?),
                    "add" => Action::Add(map.next_value().map_err(bad)?),
                    "remove" => Action::Remove(map.next_value().map_err(bad)?),
                    _ => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        Action::Other(key)
                    }
                };
                if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom("more than one key, an action has one"));
                }
                Ok(ActionLine(action))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A UUID (version 4 layout) from two unique 64-bit values.
pub fn uuid_from(a: u64, b: u64) -> String {
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000; // version 4
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000; // RFC 4122 variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_commit(bytes: &[u8]) -> Result<Vec<Action>, ParseError> {
        read_commit(bytes, usize::MAX)
    }

    fn add(path: &str) -> Add {
        Add {
            path: path.into(),
            partition_values: [("kind".to_string(), Some("fragment".to_string()))].into(),
            size: 10,
            modification_time: 1_700_000_000_000,
            data_change: true,
            stats: Some(r#"{"numRecords":3}"#.into()),
            tags: Some(
                [(
                    "pixelquery.checksum".to_string(),
                    Some("xxh3:1".to_string()),
                )]
                .into(),
            ),
            deletion_vector: None,
        }
    }

    #[test]
    fn commits_round_trip_in_deltas_spelling() {
        let actions = vec![
            Action::CommitInfo(CommitInfo {
                timestamp: Some(5),
                operation: Some("WRITE".into()),
                commit_id: Some("abc".into()),
                pixelquery_operation: Some("append".into()),
                other: Default::default(),
            }),
            Action::Protocol(Protocol::minimal()),
            Action::Add(add("kind=fragment/part-1.parquet")),
            Action::Remove(Remove::of(&add("kind=fragment/part-0.parquet"), 7, false)),
        ];
        let bytes = encode_commit(&actions);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains(r#""minReaderVersion":1"#), "{text}");
        assert!(
            text.contains(r#""partitionValues":{"kind":"fragment"}"#),
            "{text}"
        );
        assert!(text.contains(r#""pixelquery.commitId":"abc""#), "{text}");
        assert!(text.contains(r#""deletionTimestamp":7"#), "{text}");
        assert_eq!(parse_commit(&bytes).unwrap(), actions);
    }

    #[test]
    fn foreign_actions_are_kept_by_name_and_garbage_is_an_error() {
        let text = b"{\"txn\":{\"appId\":\"x\",\"version\":1}}\n{\"commitInfo\":{\"operation\":\"VACUUM END\",\"operationParameters\":{}}}\n";
        let parsed = parse_commit(text).unwrap();
        assert_eq!(parsed[0], Action::Other("txn".into()));
        match &parsed[1] {
            Action::CommitInfo(c) => {
                assert_eq!(c.operation.as_deref(), Some("VACUUM END"));
                assert!(c.other.contains_key("operationParameters"));
            }
            a => panic!("{a:?}"),
        }
        for bad in [
            &b"{\"add\":{}}"[..],
            b"[1]",
            b"{trunc",
            b"{\"a\":1,\"b\":2}",
            b"\xff",
        ] {
            assert!(
                parse_commit(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_commit(b"{\"add\":3}\n{").unwrap_err().line, 1);
        assert_eq!(parse_commit(b"\n{\"txn\":{}}\n{").unwrap_err().line, 3);
    }

    #[test]
    fn too_many_actions_stop_the_read() {
        let line = b"{\"txn\":{\"appId\":\"x\"}}\n";
        let text: Vec<u8> = line.repeat(11);
        assert_eq!(read_commit(&text[..], 11).unwrap().len(), 11);
        let e = read_commit(&text[..], 10).unwrap_err();
        assert_eq!(e.line, 11);
        assert!(e.reason.contains("more than 10 actions"), "{e}");
        let mut seen = 0;
        for_each_action(&text[..], 10, |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
        assert_eq!(seen, 3);
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let u = uuid_from(u64::MAX, 0);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    }
}
