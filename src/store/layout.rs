//! Where things live inside a warehouse directory, which names may become paths, unique
//! names and checksums, and the local durable-write primitives (write a new file, fsync files
//! and folders) that [`super::storage::LocalStorage`] and the fragment writer build on.

use super::{Error, Result};
use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The warehouse's configuration file.
pub const CONFIG_FILE: &str = "pixelquery.json";
/// Directory of the Arrow IPC fragments: `fragments/{tile}/{band}/{product}_{start}_{id}.arrow`.
pub const FRAGMENTS_DIR: &str = "fragments";
/// Prefix of temporary files (ignored by readers, swept by vacuum).
pub const TMP_PREFIX: &str = ".tmp-";

/// Catalog parts: `catalog/kind={fragment|scene}/part-{stamp}-{id}.parquet`.
pub const PART_PREFIX: &str = "part-";

/// The key of a new fragment file: `fragments/{tile}/{band}/{product}_{stamp}_{id}.arrow`,
/// `stamp` the first observation's time (`20240501T103000Z`), `id` a [`unique_id`].
pub fn fragment_key(tile: &str, band: &str, product: &str, stamp: &str, id: &str) -> String {
    format!("{FRAGMENTS_DIR}/{tile}/{band}/{product}_{stamp}_{id}.arrow")
}

/// What a fragment key names, as [`fragment_key`] writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentKey<'a> {
    /// The tile (`x3_y-7`).
    pub tile: &'a str,
    /// The band.
    pub band: &'a str,
    /// The product.
    pub product: &'a str,
}

/// Reads a key written by [`fragment_key`]; `None` for any other name.
pub fn parse_fragment_key(key: &str) -> Option<FragmentKey<'_>> {
    let rest = key.strip_prefix(FRAGMENTS_DIR)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (tile, band, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || tile.parse::<crate::grid::TileId>().is_err() {
        return None;
    }
    validate_name("band", band).ok()?;
    let (rest, id) = name.strip_suffix(".arrow")?.rsplit_once('_')?;
    let (product, stamp) = rest.rsplit_once('_')?;
    validate_name("product", product).ok()?;
    (is_stamp(stamp) && is_unique_id(id)).then_some(FragmentKey {
        tile,
        band,
        product,
    })
}

/// True for a catalog part key as the writers name them:
/// `catalog/kind={fragment|scene}/part-{stamp}-{id}.parquet`.
pub fn is_part_key(key: &str) -> bool {
    let Some(rest) = key
        .strip_prefix("catalog/kind=fragment/")
        .or_else(|| key.strip_prefix("catalog/kind=scene/"))
    else {
        return false;
    };
    let Some(name) = rest
        .strip_prefix(PART_PREFIX)
        .and_then(|r| r.strip_suffix(".parquet"))
    else {
        return false;
    };
    let stamped = |r: &str| {
        r.rsplit_once('-')
            .is_some_and(|(stamp, id)| is_stamp(stamp) && is_unique_id(id))
    };
    // Compaction's swaps add a suffix: the rewritten parts (`-{n}`) and the new rows (`-new`).
    stamped(name)
        || name.rsplit_once('-').is_some_and(|(r, suffix)| {
            (suffix == "new" || (!suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())))
                && stamped(r)
        })
}

/// True for the name of a temporary file (`.tmp-{id}`).
pub fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(TMP_PREFIX).is_some_and(is_unique_id)
}

/// A UTC time stamp as the writers format it (`%Y%m%dT%H%M%SZ`, years may be signed or
/// longer than four digits).
fn is_stamp(s: &str) -> bool {
    !s.is_empty()
        && s.ends_with('Z')
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'T' | b'Z' | b'+' | b'-'))
}

/// 16 lowercase hex digits, as [`unique_id`] makes them.
fn is_unique_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when `s` is a checksum as [`checksum`] writes it (`xxh3:` and 16 hex digits).
pub fn is_checksum(s: &str) -> bool {
    s.strip_prefix("xxh3:").is_some_and(is_unique_id)
}

/// Checks a name that becomes a path component (band, product): 1 to 128 characters out of
/// `A-Z a-z 0-9 . _ - +`, not starting with a dot (so never `.` or `..`).
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 128 {
        Some("is longer than 128 bytes")
    } else if name.starts_with('.') {
        Some("starts with a dot")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
    {
        Some("may only contain A-Z a-z 0-9 . _ - + (no path separators or spaces)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A name unique across processes and threads: 16 hex digits of a hash of the process id,
/// the clock and a process-wide counter.
pub fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = twox_hash::XxHash3_64::with_seed(0x5049_5845_4c51);
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    // Address of a stack local: differs between processes started in the same nanosecond.
    let local = 0u8;
    h.write_usize(&local as *const u8 as usize);
    format!("{:016x}", h.finish())
}

/// The checksum stored for every warehouse file: XXH3-64 of its bytes, `xxh3:<16 hex>`.
pub fn checksum(bytes: &[u8]) -> String {
    format_checksum(twox_hash::XxHash3_64::oneshot(bytes))
}

/// Formats an XXH3-64 value the way [`checksum`] does.
pub fn format_checksum(h: u64) -> String {
    format!("xxh3:{h:016x}")
}

/// Wraps an I/O error with the file it concerns.
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `path` (which must not exist), writes `bytes` and fsyncs the file.
pub fn write_new_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    let f = write_new(path, bytes)?;
    f.sync_all().map_err(io_err(path))
}

/// Creates `path` (which must not exist) and writes `bytes`, without fsync (the caller
/// syncs it together with other files, see [`sync_all_paths`]).
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<File> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    Ok(f)
}

/// Fsyncs a directory so the names created in it survive a crash.
pub fn sync_dir(path: &Path) -> Result<()> {
    // Opening a directory read-only and fsyncing it is the POSIX way to persist its entries.
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

/// Fsyncs many files and directories at once, from several threads: concurrent fsyncs
/// are coalesced by the filesystem journal into a few commits, which makes a batch of
/// new files durable for a fraction of the cost of syncing them one by one.
pub fn sync_all_paths(paths: &[PathBuf]) -> Result<()> {
    const THREADS: usize = 16;
    if paths.is_empty() {
        return Ok(());
    }
    let chunk = paths.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|group| {
                s.spawn(move || -> Result<()> {
                    for p in group {
                        File::open(p)
                            .and_then(|f| f.sync_all())
                            .map_err(io_err(p))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Ok(())))
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

/// Converts a warehouse-relative path (always `/`-separated) to a filesystem path.
pub fn resolve(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in rel.split('/') {
        p.push(c);
    }
    p
}

/// Checks that a warehouse-relative path read from a catalog or log stays inside the
/// warehouse (no absolute paths, no `..`, no empty components).
pub fn validate_rel_path(rel: &str) -> bool {
    !rel.is_empty()
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in ["B04", "sentinel-2-l2a", "SR_B4", "nir.v2"] {
            validate_name("band", ok).unwrap();
        }
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "a b", "x\0"] {
            let e = validate_name("band", bad).unwrap_err();
            assert!(e.to_string().contains("band"), "{e}");
        }
    }

    #[test]
    fn rel_paths_stay_inside() {
        assert!(validate_rel_path("fragments/x1_y2/B04/a.arrow"));
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a"] {
            assert!(!validate_rel_path(bad), "{bad}");
        }
    }

    #[test]
    fn layout_names_are_recognised() {
        let key = fragment_key(
            "x3_y-7",
            "B04",
            "sentinel2_l2a",
            "20240501T103000Z",
            &unique_id(),
        );
        assert_eq!(
            parse_fragment_key(&key),
            Some(FragmentKey {
                tile: "x3_y-7",
                band: "B04",
                product: "sentinel2_l2a"
            })
        );
        for bad in [
            "fragments/x3_y-7/B04/notes.txt",
            "fragments/x3_y-7/B04/a.arrow",
            "fragments/x3_y-7/B04/S2_20240501T103000Z_0123456789abcdef.parquet",
            "fragments/x3_y-7/B04/sub/S2_20240501T103000Z_0123456789abcdef.arrow",
            "fragments/tile/B04/S2_20240501T103000Z_0123456789abcdef.arrow",
            "fragments/x3_y-7/.B04/S2_20240501T103000Z_0123456789abcdef.arrow",
            "fragments/x3_y-7/B04/S2_20240501T103000Z_0123456789ABCDEF.arrow",
            "catalog/x3_y-7/B04/S2_20240501T103000Z_0123456789abcdef.arrow",
        ] {
            assert_eq!(parse_fragment_key(bad), None, "{bad}");
        }
        for good in ["", "-new", "-0", "-12"] {
            let key = format!(
                "catalog/kind=fragment/part-20240501T103000Z-0123456789abcdef{good}.parquet"
            );
            assert!(is_part_key(&key), "{key}");
        }
        for bad in [
            "catalog/kind=scene/part-x.parquet",
            "catalog/kind=scene/part-20240501T103000Z-0123456789abcdef-old.parquet",
            "catalog/kind=scene/part-20240501T103000Z-0123456789abcdef-.parquet",
            "catalog/kind=other/part-20240501T103000Z-0123456789abcdef.parquet",
            "catalog/kind=scene/data.parquet",
            "catalog/part-20240501T103000Z-0123456789abcdef.parquet",
        ] {
            assert!(!is_part_key(bad), "{bad}");
        }
        assert!(is_temp_name(&format!("{TMP_PREFIX}{}", unique_id())));
        assert!(!is_temp_name(".tmp-notes"));
        assert!(is_checksum(&checksum(b"x")) && !is_checksum("xxh3:12") && !is_checksum(""));
    }

    #[test]
    fn unique_ids_differ() {
        let a: std::collections::HashSet<_> = (0..1000).map(|_| unique_id()).collect();
        assert_eq!(a.len(), 1000);
    }

    #[test]
    fn sync_all_paths_syncs_files_and_dirs_and_names_missing_ones() {
        let d = tempfile::tempdir().unwrap();
        let mut paths = vec![d.path().to_path_buf()];
        for i in 0..40 {
            let p = d.path().join(format!("f{i}"));
            write_new(&p, b"x").unwrap();
            paths.push(p);
        }
        sync_all_paths(&paths).unwrap();
        sync_all_paths(&[]).unwrap();
        paths.push(d.path().join("gone"));
        let e = sync_all_paths(&paths).unwrap_err().to_string();
        assert!(e.contains("gone"), "{e}");
    }
}
