//! Where things live inside a warehouse directory, which names may become paths, unique
//! names and checksums, and the local durable-write primitives (write a new file, fsync files
//! and folders) that [`super::storage::LocalStorage`] and the fragment writer build on.

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
/// Prefix of temporary files (ignored by readers, swept by vacuum).
pub const TMP_PREFIX: &str = ".tmp-";

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
}
