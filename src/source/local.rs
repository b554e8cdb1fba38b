//! Local files read with positional reads.

use super::{ByteSource, Error, Result};
use bytes::Bytes;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A local file read with positional reads (`pread`), safe to share between threads.
#[derive(Debug)]
pub struct LocalFile {
    file: File,
    name: String,
    size: u64,
}

impl LocalFile {
    /// Opens a file for reading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let name = path.display().to_string();
        let io = |source| Error::Io {
            name: name.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory, not a file",
            )));
        }
        Ok(Self {
            file,
            name,
            size: meta.len(),
        })
    }
}

impl ByteSource for LocalFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let end = offset.saturating_add(len as u64);
        if end > self.size {
            return Err(self.past_end(offset, end));
        }
        let mut buf = vec![0u8; len];
        read_exact_at(&self.file, &mut buf, offset).map_err(|source| Error::Io {
            name: self.name.clone(),
            source,
        })?;
        Ok(Bytes::from(buf))
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_file_reads_positionally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"hello world").unwrap();
        let f = LocalFile::open(&path).unwrap();
        assert_eq!(f.size(), 11);
        assert_eq!(&f.read_at(6, 5).unwrap()[..], b"world");
        assert!(f.read_at(6, 6).is_err());
        assert!(LocalFile::open(dir.path()).is_err());
    }
}
