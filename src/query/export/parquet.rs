//! Per (time, band) tables as Parquet (snappy): the pixel value of a point query, or
//! statistics of the valid pixels of an area.

use super::table::{rows, Row};
use crate::query::cube::Cube;
use arrow_array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

pub(super) fn encode(cube: &Cube) -> Result<Vec<u8>, String> {
    encode_rows(&rows(cube), cube.is_point(), cube.epsg)
}

/// Encodes rows (point values when `point`, else statistics).
pub(super) fn encode_rows(rows: &[Row], point: bool, epsg: u32) -> Result<Vec<u8>, String> {
    let time: Vec<i64> = rows
        .iter()
        .map(|r| {
            crate::time::parse_datetime(&r.time)
                .map(|t| t.timestamp_micros())
                .unwrap_or_default()
        })
        .collect();
    let mut fields = vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("scene", DataType::Utf8, false),
        Field::new("product", DataType::Utf8, false),
        Field::new("band", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(time).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.scene.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.product.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.band.as_str()),
        )),
    ];
    let float = |name: &str,
                 values: Vec<Option<f64>>,
                 fields: &mut Vec<Field>,
                 columns: &mut Vec<ArrayRef>| {
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(Arc::new(Float64Array::from(values)));
    };
    let finite = |v: f64| v.is_finite().then_some(v);
    if point {
        float(
            "x",
            rows.iter().map(|r| r.x).collect(),
            &mut fields,
            &mut columns,
        );
        float(
            "y",
            rows.iter().map(|r| r.y).collect(),
            &mut fields,
            &mut columns,
        );
        float(
            "value",
            rows.iter().map(|r| r.value).collect(),
            &mut fields,
            &mut columns,
        );
    } else {
        let stats: Vec<_> = rows.iter().filter_map(|r| r.stats).collect();
        fields.push(Field::new("count", DataType::UInt64, false));
        columns.push(Arc::new(UInt64Array::from_iter_values(
            stats.iter().map(|s| s.count as u64),
        )));
        float(
            "mean",
            stats.iter().map(|s| finite(s.mean)).collect(),
            &mut fields,
            &mut columns,
        );
        float(
            "std",
            stats.iter().map(|s| finite(s.std)).collect(),
            &mut fields,
            &mut columns,
        );
        float(
            "min",
            stats.iter().map(|s| finite(s.min)).collect(),
            &mut fields,
            &mut columns,
        );
        float(
            "median",
            stats.iter().map(|s| finite(s.median)).collect(),
            &mut fields,
            &mut columns,
        );
        float(
            "max",
            stats.iter().map(|s| finite(s.max)).collect(),
            &mut fields,
            &mut columns,
        );
    }
    let schema = Arc::new(
        Schema::new(fields).with_metadata(
            [("pixelquery.crs".to_string(), format!("EPSG:{epsg}"))]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        ),
    );
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::export::table::tests::sample_cube;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn point_and_area_tables_read_back() {
        for (h, cols) in [(1, 7), (2, 10)] {
            let bytes = encode(&sample_cube(h, h)).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap();
            let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
            assert_eq!(batches[0].num_rows(), 6);
            assert_eq!(batches[0].num_columns(), cols);
        }
    }
}
