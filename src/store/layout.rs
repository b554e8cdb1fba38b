//! Where things live inside a warehouse directory, which names may become paths, and the
//! two durable-write primitives the commit protocol is built on: "write a new file and
//! fsync it" and "create this file only if it does not exist yet".

use super::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The warehouse's configuration file.
pub const CONFIG_FILE: &str = "pixelquery.json";
/// Directory of the Arrow IPC fragments: `fragments/{tile}/{band}/{product}_{start}_{id}.arrow`.
pub const FRAGMENTS_DIR: &str = "fragments";
/// Directory of the GeoParquet catalog parts.
pub const CATALOG_DIR: &str = "catalog";
/// Directory of the commit log: `_log/{version:020}.json`.
pub const LOG_DIR: &str = "_log";
/// Prefix of temporary files (ignored by readers, swept by vacuum).
pub const TMP_PREFIX: &str = ".tmp-";

/// Path of the log entry of `version`.
pub fn log_path(root: &Path, version: u64) -> PathBuf {
    root.join(LOG_DIR).join(format!("{version:020}.json"))
}

/// The version encoded in a log file name (`00000000000000000012.json` -> 12).
pub fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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

/// Atomically creates `path` with `bytes` unless it already exists; returns `false` when it
/// did. Readers never see a partial file: the content is written and fsynced under a
/// temporary name, then hard-linked to the final name (`link` fails if the name exists).
/// On object storage the same step is a conditional put (`If-None-Match: *`).
pub fn create_if_absent(path: &Path, bytes: &[u8]) -> Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("{TMP_PREFIX}{}", unique_id()));
    write_new_durable(&tmp, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    // The temporary name is garbage either way; a crash here leaves it for vacuum.
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })
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
    fn log_names_round_trip() {
        let p = log_path(Path::new("/w"), 42);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000000042.json");
        assert_eq!(parse_log_name(name), Some(42));
        assert_eq!(parse_log_name("42.json"), None);
        assert_eq!(parse_log_name(".tmp-abc"), None);
    }

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

    #[test]
    fn create_if_absent_refuses_second_writer() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("00000000000000000001.json");
        assert!(create_if_absent(&p, b"first").unwrap());
        assert!(!create_if_absent(&p, b"second").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"first");
        // No temporary files left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
