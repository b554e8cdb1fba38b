//! Paths inside a local warehouse, confined to it: no symbolic link below the warehouse
//! folder is ever followed.
//!
//! A shared folder is written by other people, and a link planted in it (`fragments -> /`,
//! a fragment replaced by a link to `/etc/passwd`) must not make PixelQuery read, write or
//! delete anything outside. The rule is simple and checked on every access: each component
//! of a path below the root must be a real folder or file. The root itself may be a link
//! (or sit below one): that is where the user put the warehouse. A link found on the way is
//! refused with an error naming it.
//!
//! Reads on Linux 5.6+ are one `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)` below the
//! root: the kernel refuses any link on the way, so there is no window between check and
//! use. Elsewhere, and for writes, deletes and listings, each component is checked with
//! `lstat` first and final components are opened with `O_NOFOLLOW` (or created with
//! `O_EXCL`, which never follows): a co-writer who swaps a *folder* for a link between that
//! check and the use can still win that race. Hard links are the file itself: no escape.

use super::layout::{io_err, validate_rel_path};
use super::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a listed name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A symbolic link (never followed).
    Link,
    /// Anything else: a socket, a FIFO, a device.
    Other,
}

/// One name found below a folder by [`walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `/`-separated path relative to the root.
    pub key: String,
    /// Size in bytes (0 for links and other kinds).
    pub size: u64,
    /// Last modification (of the link itself for links).
    pub modified: SystemTime,
    /// What it is.
    pub kind: EntryKind,
}

/// The path of `key` below `root` after checking that no component below the root is a
/// symbolic link (components that do not exist yet are fine). `key` must be a relative,
/// `/`-separated path without `.` or `..`; the empty key is the root.
pub fn path(root: &Path, key: &str) -> Result<PathBuf> {
    if !key.is_empty() && !validate_rel_path(key) {
        return Err(Error::OutsideWarehouse {
            key: key.to_string(),
        });
    }
    let mut p = root.to_path_buf();
    let mut exists = true;
    for c in key.split('/').filter(|c| !c.is_empty()) {
        p.push(c);
        if exists {
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => return Err(Error::Symlink { path: p }),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => exists = false,
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
    }
    Ok(p)
}

/// Options that refuse to open a final symbolic link (`O_NOFOLLOW`, Linux).
fn no_follow(mut o: OpenOptions) -> OpenOptions {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    o
}

/// Maps an error of opening `path` to the warehouse's error (missing file, link, I/O).
fn open_error(path: &Path, e: io::Error) -> Error {
    #[cfg(target_os = "linux")]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Error::Symlink {
            path: path.to_path_buf(),
        };
    }
    if e.kind() == io::ErrorKind::NotFound {
        Error::MissingFile {
            path: path.to_path_buf(),
        }
    } else {
        io_err(path)(e)
    }
}

/// Opens `key` for reading, refusing links; [`Error::MissingFile`] when it does not exist.
///
/// On Linux 5.6 and later this is one `openat2` below the root with `RESOLVE_NO_SYMLINKS`:
/// the kernel refuses a link anywhere on the way, with no window between check and use.
/// Elsewhere (or where a sandbox refuses `openat2`) every component is checked first.
pub fn open(root: &Path, key: &str) -> Result<(PathBuf, File)> {
    #[cfg(target_os = "linux")]
    if let Some(opened) = beneath::open(root, key) {
        let p = root.join(key);
        return match opened {
            Ok(f) => Ok((p, f)),
            // Name the link: the walk finds it (or, if it is gone meanwhile, the file).
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => match path(root, key) {
                Err(e) => Err(e),
                Ok(p) => Err(Error::Symlink { path: p }),
            },
            Err(e) => Err(open_error(&p, e)),
        };
    }
    let p = path(root, key)?;
    let mut o = OpenOptions::new();
    o.read(true);
    let f = no_follow(o).open(&p).map_err(|e| open_error(&p, e))?;
    Ok((p, f))
}

/// `openat2(2)` below a folder, refusing every link on the way.
#[cfg(target_os = "linux")]
mod beneath {
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The kernel's `struct open_how` (linux/openat2.h).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }

    /// Cleared when the kernel or a sandbox refuses `openat2`: the walk is used from then on.
    static AVAILABLE: AtomicBool = AtomicBool::new(true);

    /// Opens `key` (a checked relative path) below `root` for reading; `None` when
    /// `openat2` is unavailable.
    pub fn open(root: &Path, key: &str) -> Option<io::Result<File>> {
        if !AVAILABLE.load(Ordering::Relaxed) {
            return None;
        }
        if key.is_empty() || !super::validate_rel_path(key) {
            return None;
        }
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(root);
        let dir = match dir {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        let name = CString::new(key.as_bytes()).ok()?;
        let how = OpenHow {
            flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_BENEATH,
        };
        // SAFETY: `dir` is an open descriptor, `name` a NUL-terminated string and `how` the
        // kernel's `struct open_how` (three u64) whose size is passed; all outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                name.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::E2BIG)
            ) {
                AVAILABLE.store(false, Ordering::Relaxed);
                return None;
            }
            return Some(Err(e));
        }
        // SAFETY: `fd` is a descriptor the kernel just opened for us and nothing else owns.
        Some(Ok(unsafe { File::from_raw_fd(fd as i32) }))
    }

    #[cfg(test)]
    pub fn disable() {
        AVAILABLE.store(false, Ordering::Relaxed);
    }
}

/// Creates the folder `key` below `root` and its missing parents, one at a time, refusing
/// links on the way (the root is created as `create_dir_all` does); returns its path.
pub fn create_dirs(root: &Path, key: &str) -> Result<PathBuf> {
    let p = path(root, key)?;
    fs::create_dir_all(root).map_err(io_err(root))?;
    let mut d = root.to_path_buf();
    for c in key.split('/').filter(|c| !c.is_empty()) {
        d.push(c);
        match fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Made by someone else meanwhile, or there before: it must be a folder.
                let m = fs::symlink_metadata(&d).map_err(io_err(&d))?;
                if m.file_type().is_symlink() {
                    return Err(Error::Symlink { path: d });
                }
                if !m.is_dir() {
                    return Err(io_err(&d)(io::Error::from(io::ErrorKind::NotADirectory)));
                }
            }
            Err(e) => return Err(io_err(&d)(e)),
        }
    }
    Ok(p)
}

/// Every name below the folder `prefix` (recursively, in no particular order), without
/// following links: a link is listed as a [`EntryKind::Link`] and not entered. When `prefix`
/// itself (or a folder above it) is a link, that link is the only entry. A missing folder
/// lists nothing.
pub fn walk(root: &Path, prefix: &str) -> Result<Vec<Entry>> {
    let start = match path(root, prefix) {
        Ok(p) => p,
        Err(Error::Symlink { path }) => {
            let m = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let key = key_of(root, &path).unwrap_or_default();
            return Ok(vec![Entry {
                key,
                size: 0,
                modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                kind: EntryKind::Link,
            }]);
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    walk_dir(root, &start, &mut out)?;
    Ok(out)
}

fn walk_dir(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for e in entries {
        let e = e.map_err(io_err(dir))?;
        let p = e.path();
        // `DirEntry::metadata` does not follow links.
        let m = match e.metadata() {
            Ok(m) => m,
            // Deleted while listing (a concurrent vacuum): not there any more.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(io_err(&p)(err)),
        };
        let t = m.file_type();
        if t.is_dir() {
            walk_dir(root, &p, out)?;
            continue;
        }
        // Names that are not UTF-8 cannot be keys: nothing PixelQuery writes.
        let Some(key) = key_of(root, &p) else {
            continue;
        };
        let kind = if t.is_symlink() {
            EntryKind::Link
        } else if t.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        out.push(Entry {
            key,
            size: if kind == EntryKind::File { m.len() } else { 0 },
            modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            kind,
        });
    }
    Ok(())
}

/// The `/`-separated key of a path below `root` (`None` for non-UTF-8 names).
fn key_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_below_the_root_are_refused_and_the_root_may_be_one() {
        links_are_refused();
        // The same without `openat2` (old kernels, sandboxes): the walk.
        #[cfg(target_os = "linux")]
        beneath::disable();
        links_are_refused();
    }

    fn links_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s3cr3t").unwrap();
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir_all(real.join("fragments/x0_y0")).unwrap();
        std::fs::write(real.join("fragments/x0_y0/a"), b"ok").unwrap();
        let root = d.path().join("via-link");
        symlink(&real, &root).unwrap();
        let (_, mut f) = open(&root, "fragments/x0_y0/a").unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!(s, "ok");

        symlink(
            outside.path().join("secret"),
            real.join("fragments/x0_y0/b"),
        )
        .unwrap();
        symlink(outside.path(), real.join("fragments/x9_y9")).unwrap();
        for key in [
            "fragments/x0_y0/b",
            "fragments/x9_y9/secret",
            "fragments/x9_y9",
        ] {
            let e = open(&root, key).unwrap_err();
            assert!(matches!(e, Error::Symlink { .. }), "{key}: {e}");
            let msg = e.to_string();
            assert!(
                !msg.contains("s3cr3t") && msg.contains("symbolic link"),
                "{msg}"
            );
        }
        assert!(matches!(
            create_dirs(&root, "fragments/x9_y9/B04"),
            Err(Error::Symlink { .. })
        ));
        assert!(matches!(
            open(&root, "fragments/none"),
            Err(Error::MissingFile { .. })
        ));
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b"] {
            assert!(matches!(
                path(&root, bad),
                Err(Error::OutsideWarehouse { .. })
            ));
        }

        let mut listed = walk(&root, "fragments").unwrap();
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        let kinds: Vec<(&str, EntryKind)> =
            listed.iter().map(|e| (e.key.as_str(), e.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("fragments/x0_y0/a", EntryKind::File),
                ("fragments/x0_y0/b", EntryKind::Link),
                ("fragments/x9_y9", EntryKind::Link),
            ]
        );
        let linked = walk(&root, "fragments/x9_y9").unwrap();
        assert_eq!(linked.len(), 1);
        assert_eq!(linked[0].kind, EntryKind::Link);
        assert!(walk(&root, "nothing/here").unwrap().is_empty());
        create_dirs(&root, "catalog/kind=scene").unwrap();
        assert!(real.join("catalog/kind=scene").is_dir());
    }
}
