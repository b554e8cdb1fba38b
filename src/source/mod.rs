//! Byte sources: where the bytes of a COG come from.
//!
//! The reader only ever asks for byte ranges through [`ByteSource`], so a remote source
//! (HTTP range requests, object stores) is one more implementation of that trait and nothing
//! else changes. Ranges that touch or nearly touch are merged into one read by
//! [`ByteSource::read_ranges`]; the merged buffer is shared, so splitting it back is free.
//!
//! [`open`] picks the source from a location string: a local path, an `http://` or
//! `https://` URL ([`HttpSource`]), or `s3://bucket/key` (mapped onto HTTPS by [`s3`]).
//! Remote host names are resolved by our own pure-Rust resolver ([`resolve`]), not by the C
//! library's `getaddrinfo`.

use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;

pub mod api;
pub mod bucket;
mod cache;
mod client;
pub(crate) mod http;
mod local;
mod memory;
pub mod resolve;
mod retry;
pub mod s3;
pub mod s3_xml;

pub use cache::BlockCache;
pub use http::{HttpSource, RemoteOptions};
pub use local::LocalFile;
pub use memory::InMemory;

/// Opens a byte source from a location: `http://` and `https://` URLs are read with HTTP range
/// requests, `s3://bucket/key` through the bucket's HTTPS endpoint, anything else is a local
/// path. Remote sources use [`RemoteOptions::default`]; see [`open_with`].
pub fn open(location: &str) -> Result<Arc<dyn ByteSource>> {
    open_with(location, &RemoteOptions::default())
}

/// Like [`open`], with explicit options for remote sources (timeouts, retries, cache, region).
pub fn open_with(location: &str, options: &RemoteOptions) -> Result<Arc<dyn ByteSource>> {
    match scheme(location) {
        Some("http") | Some("https") => Ok(Arc::new(HttpSource::open(location, options)?)),
        Some("s3") => Ok(Arc::new(s3::open(location, options)?)),
        Some("file") => Ok(Arc::new(LocalFile::open(&location["file://".len()..])?)),
        Some(other) => Err(Error::UnsupportedScheme {
            location: location.to_string(),
            scheme: other.to_string(),
        }),
        None => Ok(Arc::new(LocalFile::open(location)?)),
    }
}

/// The lower-cased scheme of `scheme://...`, or `None` for a plain path (including `C:\...`).
fn scheme(location: &str) -> Option<&str> {
    let (scheme, _) = location.split_once("://")?;
    let valid = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme).map(|s| {
        if s.eq_ignore_ascii_case("http") {
            "http"
        } else if s.eq_ignore_ascii_case("https") {
            "https"
        } else if s.eq_ignore_ascii_case("s3") {
            "s3"
        } else if s.eq_ignore_ascii_case("file") {
            "file"
        } else {
            s
        }
    })
}

/// How much a source has transferred: requests sent and body bytes received (remote sources).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransferStats {
    /// HTTP requests sent, including retries.
    pub requests: u64,
    /// Response body bytes received.
    pub bytes: u64,
    /// Requests that were retried after a timeout, a dropped connection or a 5xx answer.
    pub retries: u64,
    /// Reads served entirely from the block cache.
    pub cache_hits: u64,
}

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
    /// The location names a scheme no source handles.
    #[error("{location}: unsupported scheme {scheme}:// (use a path, http://, https:// or s3://)")]
    UnsupportedScheme {
        /// The location as given.
        location: String,
        /// Its scheme.
        scheme: String,
    },
    /// The URL cannot be parsed or lacks a host (or an `s3://` URL lacks a bucket or key).
    #[error("{url}: not a valid URL: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `https://` URL that this build or this CPU cannot reach (see `docs/remote.md`).
    #[error("{url}: HTTPS is not available: {reason}")]
    HttpsUnavailable {
        /// The URL.
        url: String,
        /// Why: the `https` feature is off, or the CPU lacks what the TLS crypto needs.
        reason: &'static str,
    },
    /// The file of trusted root certificates cannot be used.
    #[error("{path}: cannot use as TLS root certificates: {problem}")]
    CaFile {
        /// The PEM file.
        path: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The server answered with an HTTP error status (after retries, for 5xx).
    #[error("{url}: HTTP {status}{}{}{}", reason_suffix(*.status), hint_suffix(.hint), attempts_suffix(*.attempts))]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// What the user may do about it, if we know.
        hint: Option<String>,
    },
    /// An object of a requester-pays bucket, and no AWS credentials to pay with.
    #[error("{url}: the bucket is requester-pays: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the transfer is billed to that account)")]
    RequesterPays {
        /// The `s3://` URL.
        url: String,
    },
    /// The server does not honour `Range` requests, so the file would have to be downloaded whole.
    #[error("{url}: the server ignores HTTP Range requests (answered {status} with the whole file{}); remote COGs are read by range and are not downloaded whole", size_suffix(*.size))]
    RangeNotSupported {
        /// The URL.
        url: String,
        /// The status it answered with.
        status: u16,
        /// The size it announced, if any.
        size: Option<u64>,
    },
    /// The remote file changed between two reads (ETag, Last-Modified or size differ).
    #[error("{url}: the file changed while it was being read ({what}: {before} -> {after})")]
    Changed {
        /// The URL.
        url: String,
        /// Which validator changed: `ETag`, `Last-Modified`, `size` or `precondition` (412).
        what: &'static str,
        /// Value seen first.
        before: String,
        /// Value seen now.
        after: String,
    },
    /// The server's answer does not match what was asked.
    #[error("{url}: bad response to a request for bytes {start}..{end}: {problem}")]
    BadResponse {
        /// The URL.
        url: String,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// What was wrong.
        problem: ResponseProblem,
    },
    /// An answer that cannot be understood (a malformed S3 XML document, a missing header).
    #[error("{url}: bad answer: {reason}")]
    BadAnswer {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer in time (after all retries).
    #[error("{url}: timed out after {attempts} attempts ({source})")]
    Timeout {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last timeout.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request could not be made or its answer not read (after all retries).
    #[error("{url}: request failed after {attempts} attempts: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What was wrong with a server's answer to a range request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseProblem {
    /// A 206 answer without a `Content-Range` header.
    #[error("no Content-Range header")]
    MissingContentRange,
    /// A `Content-Range` header that cannot be parsed.
    #[error("unparsable Content-Range {0:?}")]
    BadContentRange(String),
    /// A `Content-Range` for other bytes than asked.
    #[error("server sent bytes {start}..{end} instead")]
    WrongRange {
        /// First byte sent.
        start: u64,
        /// One past the last byte sent.
        end: u64,
    },
    /// The body ended early.
    #[error("body has {got} bytes, expected {expected}")]
    ShortBody {
        /// Bytes expected.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The body is longer than the range.
    #[error("body is longer than the {expected} bytes asked for")]
    LongBody {
        /// Bytes expected.
        expected: u64,
    },
    /// The body is compressed in transit, so its bytes are not the file's bytes.
    #[error("unexpected Content-Encoding {0:?}")]
    ContentEncoding(String),
}

fn reason_suffix(status: u16) -> String {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

fn attempts_suffix(attempts: u32) -> String {
    if attempts > 1 {
        format!(", after {attempts} attempts")
    } else {
        String::new()
    }
}

fn size_suffix(size: Option<u64>) -> String {
    size.map(|s| format!(" of {s} bytes")).unwrap_or_default()
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

    /// Transfer counters, for sources that go over the network ([`HttpSource`]); `None` for
    /// local and in-memory sources.
    fn stats(&self) -> Option<TransferStats> {
        None
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
