//! Byte sources: where the bytes of a COG come from.
//!
//! The reader only ever asks for byte ranges through [`ByteSource`], so a remote source
//! (HTTP range requests, object stores) is one more implementation of that trait and nothing
//! else changes. Ranges that touch or nearly touch are merged into one read by
//! [`ByteSource::read_ranges`]; the merged buffer is shared, so splitting it back is free.

use bytes::Bytes;
use std::ops::Range;

mod local;
mod memory;

pub use local::LocalFile;
pub use memory::InMemory;

/// Errors from reading bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{name}: {source}")]
    Io {
        /// The file or URL.
        name: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A range reaches past the end of the data.
    #[error("{name}: bytes {start}..{end} lie past the end of the file ({size} bytes)")]
    PastEnd {
        /// The file or URL.
        name: String,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// Size of the data.
        size: u64,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Random access to the bytes of one file or object.
///
/// Implementors provide [`read_at`](ByteSource::read_at), [`size`](ByteSource::size) and
/// [`name`](ByteSource::name); batching and merging come for free.
pub trait ByteSource: Send + Sync {
    /// A human-readable name (path or URL) used in error messages.
    fn name(&self) -> &str;

    /// Total size in bytes.
    fn size(&self) -> u64;

    /// Reads exactly `len` bytes starting at `offset`; a range past the end is an error.
    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes>;

    /// Largest gap (in bytes) between two ranges that is still cheaper to read through than to
    /// issue a second read. Local files use a small value, remote sources a larger one.
    fn merge_gap(&self) -> u64 {
        4096
    }

    /// Reads many ranges, merging ranges closer than [`merge_gap`](ByteSource::merge_gap)
    /// into single reads. Returns one buffer per input range, in input order.
    fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let plan = merge_ranges(ranges, self.merge_gap());
        let mut out = vec![Bytes::new(); ranges.len()];
        for group in plan {
            let len = usize::try_from(group.span.end - group.span.start)
                .map_err(|_| self.past_end(group.span.start, group.span.end))?;
            let merged = self.read_at(group.span.start, len)?;
            for idx in group.members {
                let r = &ranges[idx];
                let start = (r.start - group.span.start) as usize;
                let end = (r.end - group.span.start) as usize;
                out[idx] = merged.slice(start..end);
            }
        }
        Ok(out)
    }

    /// The error for a range that does not fit in this source.
    fn past_end(&self, start: u64, end: u64) -> Error {
        Error::PastEnd {
            name: self.name().to_string(),
            start,
            end,
            size: self.size(),
        }
    }
}

/// One read that serves several requested ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedRead {
    /// The byte span actually read.
    pub span: Range<u64>,
    /// Indices (into the request) of the ranges it serves.
    pub members: Vec<usize>,
}

/// Groups ranges so that ranges overlapping or separated by at most `max_gap` bytes are read
/// together. Empty ranges are served by the group they fall into (or one of their own).
pub fn merge_ranges(ranges: &[Range<u64>], max_gap: u64) -> Vec<MergedRead> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].start, ranges[i].end));
    let mut groups: Vec<MergedRead> = Vec::new();
    for i in order {
        let r = ranges[i].start..ranges[i].end.max(ranges[i].start);
        match groups.last_mut() {
            Some(g) if r.start <= g.span.end.saturating_add(max_gap) => {
                g.span.end = g.span.end.max(r.end);
                g.members.push(i);
            }
            _ => groups.push(MergedRead {
                span: r,
                members: vec![i],
            }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_adjacent_and_close_ranges_only() {
        let ranges = [100..200, 0..50, 200..300, 10_000..10_010, 52..60];
        let plan = merge_ranges(&ranges, 4);
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[0].span, 0..60);
        assert_eq!(plan[0].members, vec![1, 4]);
        assert_eq!(plan[1].span, 100..300);
        assert_eq!(plan[2].span, 10_000..10_010);
    }

    #[test]
    fn read_ranges_returns_input_order() {
        let src = InMemory::new("mem", (0u8..=255).collect::<Vec<_>>());
        let out = src.read_ranges(&[10..12, 0..2, 250..256]).unwrap();
        assert_eq!(&out[0][..], &[10, 11]);
        assert_eq!(&out[1][..], &[0, 1]);
        assert_eq!(&out[2][..], &[250, 251, 252, 253, 254, 255]);
    }

    #[test]
    fn past_end_is_an_error_naming_the_source() {
        let src = InMemory::new("scene.tif", vec![0u8; 10]);
        let err = src.read_at(8, 4).unwrap_err().to_string();
        assert!(err.contains("scene.tif") && err.contains("8..12"), "{err}");
    }
}
