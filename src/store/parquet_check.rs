//! Checks of a Parquet footer before anything is decoded with it: the `parquet` crate
//! asserts some of its invariants (a column chunk's offset and length are not negative)
//! instead of returning an error, and a hostile catalog part or checkpoint must be an error,
//! never a panic.

use parquet::file::metadata::ParquetMetaData;

/// Every column chunk of every row group lies inside the file's `len` bytes, and row counts
/// are not negative.
pub fn check_layout(meta: &ParquetMetaData, len: u64) -> Result<(), String> {
    for (g, group) in meta.row_groups().iter().enumerate() {
        if group.num_rows() < 0 {
            return Err(format!("row group {g} has {} rows", group.num_rows()));
        }
        for (c, column) in group.columns().iter().enumerate() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or(column.data_page_offset());
            let size = column.compressed_size();
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(size).ok())
                .and_then(|(s, n)| s.checked_add(n))
                .is_some_and(|end| end <= len);
            if !inside {
                return Err(format!(
                    "row group {g}, column {c}: chunk at {start} of {size} bytes is not inside the {len}-byte file"
                ));
            }
        }
    }
    Ok(())
}
