//! Where a warehouse's files live. Every file is named by a key, a `/`-separated path relative
//! to the warehouse root (`catalog/_delta_log/00000000000000000003.json`); the commit protocol,
//! the catalog and vacuum are written once against [`Storage`] and work the same on every
//! backend.
//!
//! The protocol needs three guarantees from a backend: a new file is written under a unique key
//! and made durable before anything names it ([`Storage::put`] + [`Storage::persist`]); the
//! next log entry is created only if absent, atomically ([`Storage::put_if_absent`]); and a
//! reader never sees a partial file.

use super::confine;
use super::layout::{self, io_err, TMP_PREFIX};
use super::{Error, Result};
use crate::source::TransferStats;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use super::confine::EntryKind;

/// A name found by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Size in bytes (0 unless a regular file).
    pub size: u64,
    /// Last modification.
    pub modified: SystemTime,
    /// A file, or a link or other special file found in a local folder (never followed).
    pub kind: EntryKind,
}

/// A warehouse's file store. Implementations are shared between threads.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// How `key` is shown to people (a path or a URL): errors name it.
    fn locate(&self, key: &str) -> PathBuf;

    /// The whole file; [`Error::MissingFile`] when there is none.
    fn read(&self, key: &str) -> Result<Vec<u8>>;

    /// Bytes `range` of the file; [`Error::MissingFile`] when there is none, an error when
    /// the file is shorter.
    fn read_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>>;

    /// True when the file exists.
    fn exists(&self, key: &str) -> Result<bool>;

    /// Writes a new file under a key nobody else uses. It may not be durable until
    /// [`Storage::persist`] names it.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;

    /// Makes files written by [`Storage::put`] (and the names of their folders) durable.
    fn persist(&self, keys: &[String]) -> Result<()>;

    /// Creates the file only if it does not exist yet, atomically and durably; `Ok(false)`
    /// when another writer created it first.
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool>;

    /// Replaces the file (or creates it) atomically: readers see the old or the new bytes.
    fn replace(&self, key: &str, bytes: &[u8]) -> Result<()>;

    /// Every name below the folder `prefix` (recursively), in no particular order. A missing
    /// folder lists nothing. Local folders also list symbolic links and special files, with
    /// their [`EntryKind`], and never enter a link: a link at or above `prefix` is listed
    /// alone.
    fn list(&self, prefix: &str) -> Result<Vec<Listed>>;

    /// The whole file when it has at most `limit` bytes; [`Error::TooLarge`] (calling it a
    /// `what`) otherwise, before reading it where the store can tell.
    fn read_limited(&self, key: &str, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        let bytes = self.read(key)?;
        check_size(self.locate(key), bytes.len() as u64, limit, what)?;
        Ok(bytes)
    }

    /// A reader over the file (at most `limit` bytes, as [`Storage::read_limited`]): streamed
    /// from a local disk, fetched whole from an object store.
    fn reader(&self, key: &str, limit: u64, what: &'static str) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(io::Cursor::new(
            self.read_limited(key, limit, what)?,
        )))
    }

    /// Deletes the file; a file that is already gone is not an error.
    fn delete(&self, key: &str) -> Result<()>;

    /// The folder of a local store (its files can be memory-mapped); `None` for remote ones.
    fn local_root(&self) -> Option<&Path> {
        None
    }

    /// Requests sent and bytes moved so far (remote stores; zero for local ones).
    fn transfer_stats(&self) -> TransferStats {
        TransferStats::default()
    }
}

/// A warehouse in a local folder: create-if-absent is a hard link of a fully written and
/// fsynced temporary file, replace is a rename, durability is fsync of files and folders.
/// No symbolic link below the folder is followed (see `confine`): every access to a path
/// through one is [`Error::Symlink`].
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Files below `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `key`, checked to pass no link.
    fn path(&self, key: &str) -> Result<PathBuf> {
        confine::path(&self.root, key)
    }

    /// Creates the folder of `key` (refusing links) and returns it with the file's path.
    fn ensure_parent(&self, key: &str) -> Result<(PathBuf, PathBuf)> {
        let parent = key.rsplit_once('/').map_or("", |(dir, _)| dir);
        let dir = confine::create_dirs(&self.root, parent)?;
        Ok((dir, self.path(key)?))
    }

    fn temp_beside(dir: &Path) -> PathBuf {
        dir.join(format!("{TMP_PREFIX}{}", layout::unique_id()))
    }

    /// Opens `key` and checks its size against `limit`.
    fn open_limited(&self, key: &str, limit: u64, what: &'static str) -> Result<fs::File> {
        let (path, f) = confine::open(&self.root, key)?;
        let size = f.metadata().map_err(io_err(&path))?.len();
        check_size(path, size, limit, what)?;
        Ok(f)
    }
}

/// [`Error::TooLarge`] when `size` exceeds `limit`.
fn check_size(path: PathBuf, size: u64, limit: u64, what: &'static str) -> Result<()> {
    if size > limit {
        return Err(Error::TooLarge {
            path,
            what,
            size,
            limit,
        });
    }
    Ok(())
}

impl Storage for LocalStorage {
    fn locate(&self, key: &str) -> PathBuf {
        layout::resolve(&self.root, key)
    }

    fn read(&self, key: &str) -> Result<Vec<u8>> {
        self.read_limited(key, u64::MAX, "file")
    }

    fn read_limited(&self, key: &str, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        let f = self.open_limited(key, limit, what)?;
        let mut buf = Vec::new();
        // A file that grows after the size check is still cut at the limit.
        f.take(limit.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(io_err(&self.locate(key)))?;
        check_size(self.locate(key), buf.len() as u64, limit, what)?;
        Ok(buf)
    }

    fn reader(&self, key: &str, limit: u64, what: &'static str) -> Result<Box<dyn Read + '_>> {
        let f = self.open_limited(key, limit, what)?;
        Ok(Box::new(f.take(limit)))
    }

    fn read_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        let (path, mut f) = confine::open(&self.root, key)?;
        let len = range.end.saturating_sub(range.start);
        let mut buf = Vec::with_capacity(len.min(1 << 30) as usize);
        f.seek(SeekFrom::Start(range.start))
            .map_err(io_err(&path))?;
        f.take(len).read_to_end(&mut buf).map_err(io_err(&path))?;
        if buf.len() as u64 != len {
            return Err(Error::SizeMismatch {
                path,
                expected: range.end,
                actual: range.start + buf.len() as u64,
            });
        }
        Ok(buf)
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => Err(Error::Symlink { path }),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let (_, path) = self.ensure_parent(key)?;
        // `create_new` never follows a link: an existing name, link or not, is an error.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(bytes).map_err(io_err(&path))
    }

    fn persist(&self, keys: &[String]) -> Result<()> {
        let mut paths: Vec<PathBuf> = keys.iter().map(|k| self.path(k)).collect::<Result<_>>()?;
        let dirs: std::collections::BTreeSet<PathBuf> = paths
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        paths.extend(dirs);
        layout::sync_all_paths(&paths)
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let (dir, path) = self.ensure_parent(key)?;
        let tmp = Self::temp_beside(&dir);
        layout::write_new_durable(&tmp, bytes)?;
        // `link` fails when the name exists (a link included): the atomic "create if
        // absent" of POSIX.
        let linked = fs::hard_link(&tmp, &path);
        // The temporary name is garbage either way; a crash here leaves it for vacuum.
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                layout::sync_dir(&dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    fn replace(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let (dir, path) = self.ensure_parent(key)?;
        let tmp = Self::temp_beside(&dir);
        layout::write_new_durable(&tmp, bytes)?;
        // A rename replaces the name itself, never what a link there points to.
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&path)(e));
        }
        layout::sync_dir(&dir)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        Ok(confine::walk(&self.root, prefix)?
            .into_iter()
            .map(|e| Listed {
                key: e.key,
                size: e.size,
                modified: e.modified,
                kind: e.kind,
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        // The folders on the way are checked; unlinking a link removes the link only.
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

/// A warehouse in an S3 bucket (or an S3-compatible store): a create-if-absent is a PUT with
/// `If-None-Match: *`, and a PUT is durable when it returns, so there is nothing to persist.
#[derive(Debug)]
pub struct ObjectStorage {
    bucket: crate::source::bucket::Bucket,
}

impl ObjectStorage {
    /// The objects under `s3://bucket/prefix`.
    pub fn new(bucket: crate::source::bucket::Bucket) -> Self {
        ObjectStorage { bucket }
    }

    /// The bucket client (transfer statistics).
    pub fn bucket(&self) -> &crate::source::bucket::Bucket {
        &self.bucket
    }
}

impl Storage for ObjectStorage {
    fn locate(&self, key: &str) -> PathBuf {
        PathBuf::from(self.bucket.url_of(key))
    }

    fn read(&self, key: &str) -> Result<Vec<u8>> {
        self.bucket.get(key)?.ok_or_else(|| Error::MissingFile {
            path: self.locate(key),
        })
    }

    fn read_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.bucket
            .get_range(key, range)?
            .ok_or_else(|| Error::MissingFile {
                path: self.locate(key),
            })
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.bucket.exists(key)?)
    }

    fn transfer_stats(&self) -> TransferStats {
        self.bucket.stats()
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        Ok(self.bucket.put(key, bytes)?)
    }

    fn persist(&self, _keys: &[String]) -> Result<()> {
        Ok(())
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        use crate::source::bucket::Created;
        Ok(self.bucket.create(key, bytes)? == Created::Yes)
    }

    fn replace(&self, key: &str, bytes: &[u8]) -> Result<()> {
        Ok(self.bucket.put(key, bytes)?)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let folder = if prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", prefix.trim_end_matches('/'))
        };
        Ok(self
            .bucket
            .list(&folder)?
            .into_iter()
            .map(|o| Listed {
                key: o.key,
                size: o.size,
                modified: o.modified,
                kind: EntryKind::File,
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        Ok(self.bucket.delete(key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_if_absent_refuses_a_second_writer_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(d.path());
        assert!(s.put_if_absent("log/1.json", b"first").unwrap());
        assert!(!s.put_if_absent("log/1.json", b"second").unwrap());
        assert_eq!(s.read("log/1.json").unwrap(), b"first");
        let listed = s.list("log").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "log/1.json");
        assert_eq!(listed[0].size, 5);
    }

    #[test]
    fn put_persist_replace_list_delete() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(d.path());
        s.put("a/b/c.bin", b"xyz").unwrap();
        assert!(
            s.put("a/b/c.bin", b"again").is_err(),
            "put never overwrites"
        );
        s.persist(&["a/b/c.bin".to_string()]).unwrap();
        s.replace("a/last", b"1").unwrap();
        s.replace("a/last", b"22").unwrap();
        assert_eq!(s.read("a/last").unwrap(), b"22");
        let mut keys: Vec<String> = s.list("a").unwrap().into_iter().map(|l| l.key).collect();
        keys.sort();
        assert_eq!(keys, ["a/b/c.bin", "a/last"]);
        assert!(s.exists("a/last").unwrap());
        s.delete("a/last").unwrap();
        s.delete("a/last").unwrap();
        assert!(!s.exists("a/last").unwrap());
        assert!(matches!(s.read("a/last"), Err(Error::MissingFile { .. })));
        assert!(s.list("nothing/here").unwrap().is_empty());
    }
}
