//! An Arrow schema in Delta's JSON schema spelling (`metaData.schemaString`).

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde_json::{json, Value};

/// The Delta type of an Arrow type; `None` for types the catalog never uses.
fn delta_type(t: &DataType) -> Option<Value> {
    Some(match t {
        DataType::Utf8 => json!("string"),
        DataType::Binary => json!("binary"),
        DataType::Boolean => json!("boolean"),
        DataType::Int32 => json!("integer"),
        DataType::Int64 => json!("long"),
        DataType::Float32 => json!("float"),
        DataType::Float64 => json!("double"),
        // Delta's `timestamp` is microseconds, adjusted to UTC.
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => json!("timestamp"),
        DataType::Struct(fields) => struct_type(fields.iter().map(|f| f.as_ref()))?,
        _ => return None,
    })
}

fn struct_type<'a>(fields: impl Iterator<Item = &'a Field>) -> Option<Value> {
    let fields: Option<Vec<Value>> = fields
        .map(|f| {
            Some(json!({
                "name": f.name(),
                "type": delta_type(f.data_type())?,
                "nullable": f.is_nullable(),
                "metadata": {},
            }))
        })
        .collect();
    Some(json!({ "type": "struct", "fields": fields? }))
}

/// `schema` as a Delta schema string.
///
/// # Panics
/// On a column type the catalog does not use (a programming error, not input).
pub fn schema_string(schema: &Schema) -> String {
    struct_type(schema.fields().iter().map(|f| f.as_ref()))
        .expect("catalog columns have Delta types")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Fields;

    #[test]
    fn types_are_spelled_as_delta_spells_them() {
        let s = Schema::new(vec![
            Field::new("kind", DataType::Utf8, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "bbox",
                DataType::Struct(Fields::from(vec![Field::new(
                    "xmin",
                    DataType::Float64,
                    false,
                )])),
                true,
            ),
        ]);
        let v: Value = serde_json::from_str(&schema_string(&s)).unwrap();
        assert_eq!(v["type"], "struct");
        assert_eq!(v["fields"][0]["type"], "string");
        assert_eq!(v["fields"][1]["type"], "timestamp");
        assert_eq!(v["fields"][2]["type"]["fields"][0]["type"], "double");
        assert_eq!(v["fields"][2]["type"]["fields"][0]["nullable"], false);
    }
}
