//! Where a warehouse lives: a local folder or `s3://bucket/prefix`. A location with any other
//! scheme is an error, never a local folder named after it.

use super::storage::{LocalStorage, ObjectStorage, Storage};
use super::{Error, Result};
use crate::source::RemoteOptions;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

/// A parsed warehouse location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local folder (also `file:///path`).
    Local(PathBuf),
    /// An S3 bucket prefix, `s3://bucket/prefix`.
    S3(String),
}

impl Location {
    /// Parses a path or URL. `s3://` is object storage, `file://` and plain paths are local
    /// folders; any other `scheme://` is [`Error::UnsupportedLocation`].
    pub fn parse(location: impl AsRef<OsStr>) -> Result<Location> {
        let raw = location.as_ref();
        let Some(text) = raw.to_str() else {
            return Ok(Location::Local(PathBuf::from(raw))); // not UTF-8: a local path
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(text)));
        };
        let looks_like_scheme = scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !looks_like_scheme {
            return Ok(Location::Local(PathBuf::from(text)));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "s3" => Ok(Location::S3(format!("s3://{}", rest.trim_end_matches('/')))),
            "file" => Ok(Location::Local(PathBuf::from(rest))),
            "http" | "https" => Err(Error::UnsupportedLocation {
                location: text.to_string(),
                reason: "warehouses are local folders or s3://bucket/prefix (a bucket behind \
                         an HTTP endpoint is reached with s3:// and AWS_ENDPOINT_URL)"
                    .into(),
            }),
            other => Err(Error::UnsupportedLocation {
                location: text.to_string(),
                reason: format!(
                    "the scheme {other}:// is not supported; use a local path or s3://bucket/prefix"
                ),
            }),
        }
    }

    /// The location as people write it (a path or a URL).
    pub fn display(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::S3(url) => url.clone(),
        }
    }

    /// The storage behind the location.
    pub(crate) fn storage(&self, remote: &RemoteOptions) -> Result<Arc<dyn Storage>> {
        Ok(match self {
            Location::Local(p) => Arc::new(LocalStorage::new(p)),
            Location::S3(url) => Arc::new(ObjectStorage::new(crate::source::bucket::Bucket::open(
                url, remote,
            )?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        assert_eq!(Location::parse("wh").unwrap(), Location::Local("wh".into()));
        assert_eq!(
            Location::parse(std::path::Path::new("/data/wh")).unwrap(),
            Location::Local("/data/wh".into())
        );
        assert_eq!(
            Location::parse("file:///data/wh").unwrap(),
            Location::Local("/data/wh".into())
        );
        assert_eq!(
            Location::parse("S3://bucket/wh/").unwrap(),
            Location::S3("s3://bucket/wh".into())
        );
        for bad in [
            "gs://bucket/wh",
            "az://c/wh",
            "https://example.com/wh",
            "hdfs://n/wh",
        ] {
            let e = Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("unsupported"), "{e}");
        }
        // Not a scheme: a local path that happens to contain "://".
        assert_eq!(
            Location::parse("./a://b").unwrap(),
            Location::Local("./a://b".into())
        );
    }
}
