//! Delta checkpoints: the whole table state at one version in one Parquet file
//! (`_delta_log/{version:020}.checkpoint.parquet`), one action per row in the columns `txn`,
//! `add`, `remove`, `metaData` and `protocol` (the classic single-file checkpoint every Delta
//! reader understands). Every field is nullable, as Spark writes them.
//!
//! The live state (protocol, metadata, files) is written first, in its own row group, and the
//! tombstones after it in another: a reader that needs no tombstones skips their row group by
//! its statistics, so opening a snapshot costs the same however many parts were ever removed.

use super::action::{Add, Format, Metadata, Protocol, Remove};
use super::TableState;
use crate::store::parquet_check::{check_layout, guarded};
use arrow_array::builder::{
    BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, MapBuilder, MapFieldNames,
    StringBuilder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, ListArray, MapArray, RecordBatch,
    StringArray, StructArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{Field, Fields, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::sync::Arc;

type StringMap = BTreeMap<String, Option<String>>;

fn map_array<'a>(rows: impl Iterator<Item = Option<&'a StringMap>>) -> ArrayRef {
    let names = MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut b = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for row in rows {
        match row {
            Some(map) => {
                for (k, v) in map {
                    b.keys().append_value(k);
                    b.values().append_option(v.as_deref());
                }
                b.append(true).expect("keys and values stay aligned");
            }
            None => b.append(false).expect("keys and values stay aligned"),
        }
    }
    Arc::new(b.finish())
}

fn strings<'a>(rows: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(rows.collect::<StringArray>())
}

fn longs(rows: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    let mut b = Int64Builder::new();
    rows.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

fn ints(rows: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    let mut b = Int32Builder::new();
    rows.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

fn bools(rows: impl Iterator<Item = Option<bool>>) -> ArrayRef {
    let mut b = BooleanBuilder::new();
    rows.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

/// A nullable struct column from named children; `valid[i]` says whether row `i` holds one.
fn struct_column(children: Vec<(&str, ArrayRef)>, valid: &[bool]) -> ArrayRef {
    let fields: Fields = children
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let arrays = children.into_iter().map(|(_, a)| a).collect();
    Arc::new(StructArray::new(
        fields,
        arrays,
        Some(NullBuffer::from(valid.to_vec())),
    ))
}

/// Encodes `state` as a checkpoint; returns the file and its number of actions. Tombstones
/// removed before `keep_tombstones_after_ms` are dropped (Delta's tombstone retention).
pub fn encode(
    state: &TableState,
    keep_tombstones_after_ms: i64,
) -> Result<(Vec<u8>, usize), parquet::errors::ParquetError> {
    let tombstones: Vec<&Remove> = state
        .tombstones
        .values()
        .filter(|r| r.deletion_timestamp.unwrap_or(i64::MAX) > keep_tombstones_after_ms)
        .collect();
    // Rows: protocol, metaData, the live files, the tombstones.
    let n = 2 + state.files.len() + tombstones.len();
    let at = |row: usize, first: usize, len: usize| {
        (row >= first && row < first + len).then(|| row - first)
    };
    let files: Vec<&Add> = state.files.values().collect();
    let adds: Vec<Option<&Add>> = (0..n)
        .map(|r| at(r, 2, files.len()).map(|i| files[i]))
        .collect();
    let removes: Vec<Option<&Remove>> = (0..n)
        .map(|r| at(r, 2 + state.files.len(), tombstones.len()).map(|i| tombstones[i]))
        .collect();
    let metas: Vec<Option<&Metadata>> = (0..n)
        .map(|r| (r == 1).then_some(&state.metadata))
        .collect();
    let protos: Vec<Option<&Protocol>> = (0..n)
        .map(|r| (r == 0).then_some(&state.protocol))
        .collect();
    let valid_adds: Vec<bool> = adds.iter().map(Option::is_some).collect();
    let valid_removes: Vec<bool> = removes.iter().map(Option::is_some).collect();
    let valid_metas: Vec<bool> = metas.iter().map(Option::is_some).collect();
    let valid_protos: Vec<bool> = protos.iter().map(Option::is_some).collect();

    let txn = struct_column(
        vec![
            ("appId", strings((0..n).map(|_| None))),
            ("version", longs((0..n).map(|_| None))),
            ("lastUpdated", longs((0..n).map(|_| None))),
        ],
        &vec![false; n],
    );
    let add = struct_column(
        vec![
            (
                "path",
                strings(adds.iter().map(|a| a.map(|a| a.path.as_str()))),
            ),
            (
                "partitionValues",
                map_array(adds.iter().map(|a| a.map(|a| &a.partition_values))),
            ),
            ("size", longs(adds.iter().map(|a| a.map(|a| a.size)))),
            (
                "modificationTime",
                longs(adds.iter().map(|a| a.map(|a| a.modification_time))),
            ),
            (
                "dataChange",
                bools(adds.iter().map(|a| a.map(|a| a.data_change))),
            ),
            (
                "stats",
                strings(adds.iter().map(|a| a.and_then(|a| a.stats.as_deref()))),
            ),
            (
                "tags",
                map_array(adds.iter().map(|a| a.and_then(|a| a.tags.as_ref()))),
            ),
        ],
        &valid_adds,
    );
    let remove = struct_column(
        vec![
            (
                "path",
                strings(removes.iter().map(|r| r.map(|r| r.path.as_str()))),
            ),
            (
                "deletionTimestamp",
                longs(removes.iter().map(|r| r.and_then(|r| r.deletion_timestamp))),
            ),
            (
                "dataChange",
                bools(removes.iter().map(|r| r.map(|r| r.data_change))),
            ),
            (
                "extendedFileMetadata",
                bools(
                    removes
                        .iter()
                        .map(|r| r.and_then(|r| r.extended_file_metadata)),
                ),
            ),
            (
                "partitionValues",
                map_array(
                    removes
                        .iter()
                        .map(|r| r.and_then(|r| r.partition_values.as_ref())),
                ),
            ),
            (
                "size",
                longs(removes.iter().map(|r| r.and_then(|r| r.size))),
            ),
        ],
        &valid_removes,
    );
    let widen = |m: &BTreeMap<String, String>| -> StringMap {
        m.iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect()
    };
    let options: Vec<Option<StringMap>> = metas
        .iter()
        .map(|m| m.map(|m| widen(&m.format.options)))
        .collect();
    let configuration: Vec<Option<StringMap>> = metas
        .iter()
        .map(|m| m.map(|m| widen(&m.configuration)))
        .collect();
    let mut partition_columns = ListBuilder::new(StringBuilder::new());
    for m in &metas {
        if let Some(m) = m {
            for c in &m.partition_columns {
                partition_columns.values().append_value(c);
            }
        }
        partition_columns.append(m.is_some());
    }
    let format = struct_column(
        vec![
            (
                "provider",
                strings(metas.iter().map(|m| m.map(|m| m.format.provider.as_str()))),
            ),
            ("options", map_array(options.iter().map(Option::as_ref))),
        ],
        &valid_metas,
    );
    let meta = struct_column(
        vec![
            (
                "id",
                strings(metas.iter().map(|m| m.map(|m| m.id.as_str()))),
            ),
            (
                "name",
                strings(metas.iter().map(|m| m.and_then(|m| m.name.as_deref()))),
            ),
            (
                "description",
                strings(
                    metas
                        .iter()
                        .map(|m| m.and_then(|m| m.description.as_deref())),
                ),
            ),
            ("format", format),
            (
                "schemaString",
                strings(metas.iter().map(|m| m.map(|m| m.schema_string.as_str()))),
            ),
            ("partitionColumns", Arc::new(partition_columns.finish())),
            (
                "configuration",
                map_array(configuration.iter().map(Option::as_ref)),
            ),
            (
                "createdTime",
                longs(metas.iter().map(|m| m.and_then(|m| m.created_time))),
            ),
        ],
        &valid_metas,
    );
    let proto = struct_column(
        vec![
            (
                "minReaderVersion",
                ints(protos.iter().map(|p| p.map(|p| p.min_reader_version))),
            ),
            (
                "minWriterVersion",
                ints(protos.iter().map(|p| p.map(|p| p.min_writer_version))),
            ),
        ],
        &valid_protos,
    );
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("txn", txn),
        ("add", add),
        ("remove", remove),
        ("metaData", meta),
        ("protocol", proto),
    ];
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    let live = 2 + files.len();
    w.write(&batch.slice(0, live))?;
    if n > live {
        w.flush()?; // tombstones in a row group of their own
        w.write(&batch.slice(live, n - live))?;
    }
    w.close()?;
    Ok((out, n))
}

/// The actions of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// The protocol (exactly one in a valid checkpoint).
    pub protocol: Option<Protocol>,
    /// The metadata (exactly one in a valid checkpoint).
    pub metadata: Option<Metadata>,
    /// Live files.
    pub adds: Vec<Add>,
    /// Tombstones (only when asked for).
    pub removes: Vec<Remove>,
}

fn child<'a, T: Array + 'static>(s: &'a StructArray, name: &str) -> Result<Option<&'a T>, String> {
    match s.column_by_name(name) {
        None => Ok(None),
        Some(a) => a
            .as_any()
            .downcast_ref::<T>()
            .map(Some)
            .ok_or_else(|| format!("checkpoint field {name:?} has type {}", a.data_type())),
    }
}

fn need<'a, T: Array + 'static>(s: &'a StructArray, name: &str) -> Result<&'a T, String> {
    child(s, name)?.ok_or_else(|| format!("checkpoint has no field {name:?}"))
}

fn str_at(a: Option<&StringArray>, i: usize) -> Option<String> {
    a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string())
}

fn required_str(a: &StringArray, i: usize, what: &str) -> Result<String, String> {
    str_at(Some(a), i).ok_or_else(|| format!("checkpoint row {i}: {what} is null"))
}

fn long_at(a: Option<&Int64Array>, i: usize) -> Option<i64> {
    a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
}

fn bool_at(a: Option<&BooleanArray>, i: usize) -> Option<bool> {
    a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
}

fn map_at(a: Option<&MapArray>, i: usize) -> Result<Option<StringMap>, String> {
    let Some(a) = a.filter(|a| a.is_valid(i)) else {
        return Ok(None);
    };
    let entries = a.value(i);
    let keys = entries
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or("checkpoint map keys are not strings")?;
    let values = entries
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or("checkpoint map values are not strings")?;
    Ok(Some(
        (0..keys.len())
            .map(|k| (keys.value(k).to_string(), str_at(Some(values), k)))
            .collect(),
    ))
}

/// Reads a checkpoint. The `remove` column is skipped unless `with_tombstones` (opening a
/// snapshot never needs tombstones, so their number does not slow it down).
pub fn decode(bytes: Vec<u8>, with_tombstones: bool) -> Result<Decoded, String> {
    let build = || {
        let bytes = bytes::Bytes::from(bytes);
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).map_err(|e| e.to_string())?;
        check_layout(builder.metadata(), &bytes)?;
        let mut wanted = vec!["add", "metaData", "protocol"];
        if with_tombstones {
            wanted.push("remove");
        }
        let roots: Vec<usize> = builder
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| wanted.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let groups: Vec<usize> = if with_tombstones {
            (0..builder.metadata().num_row_groups()).collect()
        } else {
            groups_with_live_actions(builder.metadata())
        };
        // Rows can cost nothing on disk (a run of nulls): bound the work before decoding.
        let rows: i64 = groups
            .iter()
            .map(|&g| builder.metadata().row_group(g).num_rows().max(0))
            .sum();
        let max_rows = (super::MAX_LIVE_FILES + super::MAX_TOMBSTONES + 1_000) as i64;
        if rows > max_rows {
            return Err(format!(
                "{rows} rows, more than the {max_rows} a PixelQuery checkpoint may have"
            ));
        }
        builder
            .with_projection(mask)
            .with_row_groups(groups)
            .build()
            .map_err(|e| e.to_string())
    };
    // A decoder panic on hostile bytes is an error like any other corruption; our own
    // decoding of each batch runs outside the guard.
    let mut reader = guarded(build)?;
    let mut out = Decoded::default();
    while let Some(batch) = guarded(|| reader.next().transpose().map_err(|e| e.to_string()))? {
        decode_batch(&batch, &mut out)?;
    }
    Ok(out)
}

/// The row groups that may hold a live action: those whose `add.path`, `metaData.id` or
/// `protocol.minReaderVersion` is not entirely null by the statistics (a group without
/// statistics is read).
fn groups_with_live_actions(meta: &parquet::file::metadata::ParquetMetaData) -> Vec<usize> {
    const LIVE: [&str; 3] = ["add.path", "metaData.id", "protocol.minReaderVersion"];
    (0..meta.num_row_groups())
        .filter(|&g| {
            let rg = meta.row_group(g);
            let all_null = |leaf: &str| {
                rg.columns()
                    .iter()
                    .find(|c| c.column_path().string() == leaf)
                    .and_then(|c| c.statistics())
                    .and_then(|s| s.null_count_opt())
                    .is_some_and(|nulls| nulls == rg.num_rows() as u64)
            };
            !LIVE.iter().all(|leaf| all_null(leaf))
        })
        .collect()
}

fn struct_col<'a>(b: &'a RecordBatch, name: &str) -> Result<Option<&'a StructArray>, String> {
    match b.column_by_name(name) {
        None => Ok(None),
        Some(a) => a
            .as_any()
            .downcast_ref::<StructArray>()
            .map(Some)
            .ok_or_else(|| format!("checkpoint column {name:?} is not a struct")),
    }
}

fn decode_batch(b: &RecordBatch, out: &mut Decoded) -> Result<(), String> {
    if let Some(s) = struct_col(b, "protocol")? {
        let reader = need::<Int32Array>(s, "minReaderVersion")?;
        let writer = need::<Int32Array>(s, "minWriterVersion")?;
        for i in (0..s.len()).filter(|i| s.is_valid(*i)) {
            out.protocol = Some(Protocol {
                min_reader_version: reader.value(i),
                min_writer_version: writer.value(i),
                reader_features: None,
                writer_features: None,
            });
        }
    }
    if let Some(s) = struct_col(b, "metaData")? {
        let id = need::<StringArray>(s, "id")?;
        let name = child::<StringArray>(s, "name")?;
        let description = child::<StringArray>(s, "description")?;
        let format = need::<StructArray>(s, "format")?;
        let provider = need::<StringArray>(format, "provider")?;
        let options = child::<MapArray>(format, "options")?;
        let schema = need::<StringArray>(s, "schemaString")?;
        let partition = child::<ListArray>(s, "partitionColumns")?;
        let configuration = child::<MapArray>(s, "configuration")?;
        let created = child::<Int64Array>(s, "createdTime")?;
        for i in (0..s.len()).filter(|i| s.is_valid(*i)) {
            let partition_columns = match partition.filter(|p| p.is_valid(i)) {
                None => Vec::new(),
                Some(p) => {
                    let v = p.value(i);
                    let v = v
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or("partitionColumns are not strings")?;
                    (0..v.len()).map(|k| v.value(k).to_string()).collect()
                }
            };
            let plain = |m: Option<StringMap>| -> BTreeMap<String, String> {
                m.unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect()
            };
            out.metadata = Some(Metadata {
                id: required_str(id, i, "metaData.id")?,
                name: str_at(name, i),
                description: str_at(description, i),
                format: Format {
                    provider: required_str(provider, i, "metaData.format.provider")?,
                    options: plain(map_at(options, i)?),
                },
                schema_string: required_str(schema, i, "metaData.schemaString")?,
                partition_columns,
                configuration: plain(map_at(configuration, i)?),
                created_time: long_at(created, i),
            });
        }
    }
    if let Some(s) = struct_col(b, "add")? {
        let path = need::<StringArray>(s, "path")?;
        let partition = child::<MapArray>(s, "partitionValues")?;
        let size = need::<Int64Array>(s, "size")?;
        let modified = child::<Int64Array>(s, "modificationTime")?;
        let data_change = child::<BooleanArray>(s, "dataChange")?;
        let stats = child::<StringArray>(s, "stats")?;
        let tags = child::<MapArray>(s, "tags")?;
        if let Some(dv) = s.column_by_name("deletionVector") {
            if dv.null_count() < dv.len() && (0..s.len()).any(|i| s.is_valid(i) && dv.is_valid(i)) {
                return Err(
                    "the table uses deletion vectors, which PixelQuery does not read".into(),
                );
            }
        }
        for i in (0..s.len()).filter(|i| s.is_valid(*i)) {
            out.adds.push(Add {
                path: required_str(path, i, "add.path")?,
                partition_values: map_at(partition, i)?.unwrap_or_default(),
                size: long_at(Some(size), i).ok_or("add.size is null")?,
                modification_time: long_at(modified, i).unwrap_or(0),
                data_change: bool_at(data_change, i).unwrap_or(false),
                stats: str_at(stats, i),
                tags: map_at(tags, i)?,
                deletion_vector: None,
            });
            if out.adds.len() > super::MAX_LIVE_FILES {
                return Err(format!(
                    "more than {} live files; PixelQuery merges its catalog parts to a few dozen",
                    super::MAX_LIVE_FILES
                ));
            }
        }
    }
    if let Some(s) = struct_col(b, "remove")? {
        let path = need::<StringArray>(s, "path")?;
        let deleted = child::<Int64Array>(s, "deletionTimestamp")?;
        let data_change = child::<BooleanArray>(s, "dataChange")?;
        let extended = child::<BooleanArray>(s, "extendedFileMetadata")?;
        let partition = child::<MapArray>(s, "partitionValues")?;
        let size = child::<Int64Array>(s, "size")?;
        for i in (0..s.len()).filter(|i| s.is_valid(*i)) {
            out.removes.push(Remove {
                path: required_str(path, i, "remove.path")?,
                deletion_timestamp: long_at(deleted, i),
                data_change: bool_at(data_change, i).unwrap_or(false),
                extended_file_metadata: bool_at(extended, i),
                partition_values: map_at(partition, i)?,
                size: long_at(size, i),
            });
            if out.removes.len() > super::MAX_TOMBSTONES {
                return Err(format!("more than {} tombstones", super::MAX_TOMBSTONES));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::action::Remove;
    use super::*;

    pub(crate) fn state() -> TableState {
        let add = |p: &str| Add {
            path: p.into(),
            partition_values: [("kind".to_string(), Some("scene".to_string()))].into(),
            size: 42,
            modification_time: 7,
            data_change: true,
            stats: Some(r#"{"numRecords":1}"#.into()),
            tags: Some(
                [(
                    "pixelquery.checksum".to_string(),
                    Some("xxh3:ab".to_string()),
                )]
                .into(),
            ),
            deletion_vector: None,
        };
        let mut s = TableState::new(
            Protocol::minimal(),
            Metadata {
                id: "id-1".into(),
                name: None,
                description: Some("catalog".into()),
                format: Format {
                    provider: "parquet".into(),
                    options: BTreeMap::new(),
                },
                schema_string: "{}".into(),
                partition_columns: vec!["kind".into()],
                configuration: [("pixelquery.products".to_string(), "{}".to_string())].into(),
                created_time: Some(1),
            },
        );
        s.files.insert("a".into(), add("a"));
        s.files.insert("b".into(), add("b"));
        s.tombstones
            .insert("old".into(), Remove::of(&add("old"), 100, true));
        s.tombstones
            .insert("older".into(), Remove::of(&add("older"), 10, true));
        s
    }

    #[test]
    fn fuzz_finds_are_errors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/warehouse/fuzz");
        let bytes = std::fs::read(dir.join("checkpoint-negative-chunk-offset.parquet")).unwrap();
        for tombstones in [false, true] {
            // The layout check answers, not the panic guard around the decoder.
            let e = decode(bytes.clone(), tombstones).unwrap_err();
            assert!(e.contains("is not inside the"), "{e}");
        }
        let bytes = std::fs::read(dir.join("checkpoint-empty-dictionary.parquet")).unwrap();
        for tombstones in [false, true] {
            let e = decode(bytes.clone(), tombstones).unwrap_err();
            assert!(e.contains("holds no value"), "{e}");
        }
    }

    #[test]
    fn checkpoints_round_trip_and_drop_expired_tombstones() {
        let s = state();
        let (bytes, actions) = encode(&s, 50).unwrap();
        assert_eq!(actions, 5, "protocol, metadata, 2 adds, 1 live tombstone");
        let d = decode(bytes.clone(), true).unwrap();
        assert_eq!(d.protocol.as_ref(), Some(&s.protocol));
        assert_eq!(d.metadata.as_ref(), Some(&s.metadata));
        assert_eq!(d.adds, s.files.values().cloned().collect::<Vec<_>>());
        assert_eq!(d.removes, vec![s.tombstones["old"].clone()]);
        let live = decode(bytes.clone(), false).unwrap();
        assert!(live.removes.is_empty());
        assert_eq!(live.adds.len(), 2);
        // The tombstones' row group is skipped by its statistics.
        let meta = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .metadata()
            .clone();
        assert_eq!(meta.num_row_groups(), 2);
        assert_eq!(groups_with_live_actions(&meta), vec![0]);
    }

    #[test]
    fn damaged_checkpoints_are_errors() {
        let (bytes, _) = encode(&state(), 0).unwrap();
        for cut in [0, 8, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(bytes[..cut].to_vec(), true).is_err());
        }
        for i in (0..bytes.len()).step_by(5) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let _ = decode(b, true);
        }
    }
}
