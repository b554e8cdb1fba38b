//! Checks of a Parquet file before anything is decoded with it: the `parquet` crate asserts
//! some of its invariants (a column chunk's offset and length are not negative, a dictionary
//! holds values) instead of returning an error, and a hostile catalog part or checkpoint must
//! be an error, never a panic.

use bytes::Bytes;
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::serialized_reader::SerializedPageReader;
use std::sync::Arc;

/// Every column chunk of every row group lies inside `file`, row counts are not negative,
/// and a chunk's dictionary page (read and decompressed here; dictionaries are small) holds
/// values if it holds bytes.
pub fn check_layout(meta: &ParquetMetaData, file: &Bytes) -> Result<(), String> {
    let len = file.len() as u64;
    let file = Arc::new(file.clone());
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
            if column.dictionary_page_offset().is_none() {
                continue;
            }
            let rows = group.num_rows() as usize;
            let mut pages = SerializedPageReader::new(file.clone(), column, rows, None)
                .map_err(|e| e.to_string())?;
            if let Some(Page::DictionaryPage {
                buf, num_values, ..
            }) = pages.get_next_page().map_err(|e| e.to_string())?
            {
                if num_values == 0 && !buf.is_empty() {
                    return Err(format!(
                        "row group {g}, column {c}: a dictionary of {} bytes holds no value",
                        buf.len()
                    ));
                }
            }
        }
    }
    Ok(())
}

thread_local! {
    /// Set while this thread runs the Parquet decoder under [`guarded`].
    static IN_DECODER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, a call into the Parquet decoder, turning a panic into an error. Some of the
/// decoder's checks of hostile bytes are assertions (a run-length integer longer than ten
/// bytes, among others) that no check before decoding can rule out without decoding every
/// page; such a panic is reported as the one error line naming the file, not printed.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_DECODER.with(|d| d.get()) {
                previous(info);
            }
        }));
    });
    let was = IN_DECODER.with(|d| d.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_DECODER.with(|d| d.set(was));
    r.unwrap_or_else(|_| Err("the Parquet decoder failed on malformed data".into()))
}
