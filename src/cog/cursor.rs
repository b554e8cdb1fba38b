//! A `Read + Seek` view of a [`ByteSource`] for the `tiff` crate's header parser.
//!
//! The parser makes many small reads (tag entries, value arrays); they are served from
//! fixed-size blocks fetched on demand, and a read spanning several missing blocks is one
//! request. For a remote source the first block doubles as the header read-ahead.

use crate::source::ByteSource;
use bytes::Bytes;
use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;

/// Block size of the header cache; also the read-ahead for the first request.
pub(crate) const HEADER_BLOCK: u64 = 64 * 1024;

pub(crate) struct SourceCursor<'a> {
    source: &'a dyn ByteSource,
    pos: u64,
    blocks: HashMap<u64, Bytes>,
    /// Bytes presented as zero: the next-directory pointer that closes an IFD loop, so the
    /// parser sees the chain end there (GDAL does the same, with a warning).
    zeroed: Option<Range<u64>>,
}

impl<'a> SourceCursor<'a> {
    pub(crate) fn new(source: &'a dyn ByteSource) -> Self {
        Self {
            source,
            pos: 0,
            blocks: HashMap::new(),
            zeroed: None,
        }
    }

    /// Presents the bytes of `range` as zeros.
    pub(crate) fn with_zeroed(mut self, range: Option<Range<u64>>) -> Self {
        self.zeroed = range;
        self
    }

    /// Makes sure blocks `first..=last` are cached, fetching each missing run in one read.
    fn fetch(&mut self, first: u64, last: u64) -> io::Result<()> {
        let size = self.source.size();
        let mut b = first;
        while b <= last {
            if self.blocks.contains_key(&b) {
                b += 1;
                continue;
            }
            let mut end = b;
            while end < last && !self.blocks.contains_key(&(end + 1)) {
                end += 1;
            }
            let start = b * HEADER_BLOCK;
            let stop = ((end + 1) * HEADER_BLOCK).min(size);
            let data = self
                .source
                .read_at(start, (stop - start) as usize)
                .map_err(io::Error::other)?;
            for (i, blk) in (b..=end).enumerate() {
                let lo = (i as u64 * HEADER_BLOCK) as usize;
                let hi = (lo + HEADER_BLOCK as usize).min(data.len());
                self.blocks.insert(blk, data.slice(lo.min(hi)..hi));
            }
            b = end + 1;
        }
        Ok(())
    }
}

impl Read for SourceCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.source.size();
        if buf.is_empty() || self.pos >= size {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(size - self.pos);
        let first = self.pos / HEADER_BLOCK;
        let last = (self.pos + want - 1) / HEADER_BLOCK;
        self.fetch(first, last)?;
        let mut done = 0usize;
        while (done as u64) < want {
            let at = self.pos + done as u64;
            let block = &self.blocks[&(at / HEADER_BLOCK)];
            let within = (at % HEADER_BLOCK) as usize;
            if within >= block.len() {
                break;
            }
            let n = (block.len() - within).min(want as usize - done);
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        if let Some(z) = &self.zeroed {
            let (start, end) = (self.pos, self.pos + done as u64);
            let (lo, hi) = (z.start.max(start), z.end.min(end));
            if lo < hi {
                buf[(lo - start) as usize..(hi - start) as usize].fill(0);
            }
        }
        self.pos += done as u64;
        Ok(done)
    }
}

impl Seek for SourceCursor<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let size = self.source.size() as i128;
        let target = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => size + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            ));
        }
        self.pos = target.min(u64::MAX as i128) as u64;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::InMemory;

    #[test]
    fn reads_across_blocks_and_stops_at_end() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let src = InMemory::new("mem", data.clone());
        let mut c = SourceCursor::new(&src);
        c.seek(SeekFrom::Start(65_000)).unwrap();
        let mut buf = vec![0u8; 70_000];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &data[65_000..135_000]);
        c.seek(SeekFrom::End(-10)).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(&rest[..], &data[199_990..]);
        c.seek(SeekFrom::Start(1 << 40)).unwrap();
        assert_eq!(c.read(&mut buf).unwrap(), 0);
    }
}
