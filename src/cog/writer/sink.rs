//! Where encoded blocks go: a file (the output's temporary name, or a scratch file for
//! overview blocks) or memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An append-only byte store that can be copied out afterwards.
pub(super) enum Sink {
    /// Bytes in memory.
    Memory(Vec<u8>),
    /// A file created by this writer (removed on drop unless kept).
    File {
        file: std::io::BufWriter<File>,
        path: PathBuf,
        len: u64,
        keep: bool,
    },
}

impl Sink {
    pub fn memory() -> Sink {
        Sink::Memory(Vec::new())
    }

    pub fn create(path: &Path) -> std::io::Result<Sink> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Sink::File {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            len: 0,
            keep: false,
        })
    }

    pub fn len(&self) -> u64 {
        match self {
            Sink::Memory(v) => v.len() as u64,
            Sink::File { len, .. } => *len,
        }
    }

    /// Appends `bytes`; returns where they start.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<u64> {
        let at = self.len();
        match self {
            Sink::Memory(v) => v.extend_from_slice(bytes),
            Sink::File { file, len, .. } => {
                file.write_all(bytes)?;
                *len += bytes.len() as u64;
            }
        }
        Ok(at)
    }

    /// Overwrites bytes at `offset` (within what was appended).
    pub fn patch(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Memory(v) => {
                let at = offset as usize;
                v[at..at + bytes.len()].copy_from_slice(bytes);
                Ok(())
            }
            Sink::File { file, .. } => {
                file.flush()?;
                let f = file.get_mut();
                f.seek(SeekFrom::Start(offset))?;
                f.write_all(bytes)?;
                f.seek(SeekFrom::End(0))?;
                Ok(())
            }
        }
    }

    /// Copies bytes `from..` to `out`.
    pub fn copy_to(&mut self, from: u64, out: &mut Sink) -> std::io::Result<()> {
        match self {
            Sink::Memory(v) => {
                out.append(&v[from as usize..])?;
                Ok(())
            }
            Sink::File { file, len, .. } => {
                file.flush()?;
                let total = *len - from;
                let f = file.get_mut();
                f.seek(SeekFrom::Start(from))?;
                match out {
                    Sink::File {
                        file: dst, len: n, ..
                    } => {
                        dst.flush()?;
                        // `io::copy` between files uses copy_file_range where it can.
                        let copied = std::io::copy(&mut f.take(total), dst.get_mut())?;
                        *n += copied;
                    }
                    Sink::Memory(v) => {
                        f.take(total).read_to_end(v)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Flushes a file sink and keeps it (it becomes the output); memory sinks give their bytes.
    pub fn finish(mut self) -> std::io::Result<Option<Vec<u8>>> {
        match &mut self {
            Sink::Memory(v) => Ok(Some(std::mem::take(v))),
            Sink::File { file, keep, .. } => {
                file.flush()?;
                *keep = true;
                Ok(None)
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::File { path, keep, .. } = self {
            if !*keep {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
