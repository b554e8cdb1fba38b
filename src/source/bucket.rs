//! Objects under an `s3://bucket/prefix`: what a warehouse in object storage needs besides
//! range reads — whole-object reads, existence checks, uploads (multipart for large ones, in
//! parallel), the conditional create its commits rely on (`If-None-Match: *`), deletes and
//! listings. Requests go through the same HTTP client, name resolution, TLS, SigV4 signing and
//! retry rules as [`super::HttpSource`].
//!
//! The conditional create answers [`Created::Exists`] on `412 Precondition Failed`. Any other
//! failure of a create (`409 ConditionalRequestConflict`, 5xx after retries, a timeout) leaves
//! its outcome unknown — a lost response can hide a write that landed — so the caller must
//! read the object back to learn whose it is.

use super::client::{self, Failure};
use super::http::{is_loopback, retry_after, RemoteOptions};
use super::retry::{Backoff, Retryable};
use super::s3::{authorization, uri_encode, CanonicalRequest, S3Config, S3Location, EMPTY_SHA256};
use super::s3_xml;
use super::{Error, Result, TransferStats};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

/// Objects larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 32 << 20;
/// Size of each uploaded part (S3's minimum is 5 MiB, its maximum 10,000 parts).
pub const PART_SIZE: usize = 16 << 20;
/// Largest object read whole (fragments are read by range; catalog files are small).
pub const MAX_WHOLE_READ: u64 = 4 << 30;
/// Largest error or XML answer read.
const MAX_ANSWER: u64 = s3_xml::MAX_DOCUMENT as u64;

/// The outcome of a conditional create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object did not exist and is now ours.
    Yes,
    /// An object of that key exists (412): another writer's, or ours from an attempt whose
    /// answer was lost.
    Exists,
}

/// An object's size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the bucket prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub modified: std::time::SystemTime,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    retries: AtomicU64,
}

/// An answer read in full.
struct Answer {
    status: u16,
    /// Attempts it took (the answer of the last one).
    attempts: u32,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

/// What one request needs.
struct Request<'a> {
    method: &'a str,
    /// Key relative to the prefix; `None` addresses the bucket itself (listings).
    key: Option<&'a str>,
    query: Vec<(&'a str, String)>,
    headers: Vec<(&'a str, String)>,
    body: &'a [u8],
    /// Most body bytes accepted in the answer.
    max_answer: u64,
}

/// A bucket prefix in S3 or an S3-compatible store.
#[derive(Debug)]
pub struct Bucket {
    url: String,
    bucket: String,
    prefix: String,
    config: S3Config,
    agent: ureq::Agent,
    options: RemoteOptions,
    counters: Counters,
}

impl Bucket {
    /// `s3://bucket` or `s3://bucket/prefix`, reached as the environment says (region,
    /// endpoint, credentials: see [`super::s3`]).
    pub fn open(url: &str, options: &RemoteOptions) -> Result<Bucket> {
        let trimmed = url.trim_end_matches('/');
        // A location with a dummy key validates the bucket the same way sources do.
        let probe = format!("{trimmed}/x");
        let location = S3Location::parse(&probe)?;
        let prefix = location
            .key
            .strip_suffix('x')
            .unwrap_or("")
            .trim_end_matches('/');
        if prefix.split('/').any(|c| c == "." || c == "..") || prefix.contains("//") {
            return Err(Error::InvalidUrl {
                url: url.to_string(),
                reason: "the prefix has empty, `.` or `..` components",
            });
        }
        let config = S3Config::from_env(options);
        let (http_url, host, _) = config.object_url(&S3Location {
            bucket: location.bucket.clone(),
            key: "x".into(),
        });
        if http_url.starts_with("https://") {
            if let Some(reason) = client::https_unavailable() {
                return Err(Error::HttpsUnavailable {
                    url: url.to_string(),
                    reason,
                });
            }
        }
        let host_only = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let agent = client::agent(options, is_loopback(host_only))?;
        Ok(Bucket {
            url: trimmed.to_string(),
            bucket: location.bucket,
            prefix: prefix.to_string(),
            config,
            agent,
            options: options.clone(),
            counters: Counters::default(),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of a key (for messages).
    pub fn url_of(&self, key: &str) -> String {
        format!("{}/{key}", self.url)
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else if key.is_empty() {
            format!("{}/", self.prefix)
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Requests sent, bytes moved, retries.
    pub fn stats(&self) -> TransferStats {
        let c = &self.counters;
        TransferStats {
            requests: c.requests.load(Ordering::Relaxed),
            bytes: c.bytes_in.load(Ordering::Relaxed) + c.bytes_out.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            cache_hits: 0,
        }
    }

    /// The whole object, `None` when it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let a = self.send(Request {
            method: "GET",
            key: Some(key),
            query: vec![],
            headers: vec![],
            body: &[],
            max_answer: MAX_WHOLE_READ,
        })?;
        match a.status {
            200 => Ok(Some(a.body)),
            404 => Ok(None),
            _ => Err(self.status_error(key, &a)),
        }
    }

    /// Bytes `range` of the object (one ranged GET), `None` when it does not exist. A
    /// shorter answer (the object is smaller than the range) is an error.
    pub fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Option<Vec<u8>>> {
        let len = range.end.saturating_sub(range.start);
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let a = self.send(Request {
            method: "GET",
            key: Some(key),
            query: vec![],
            headers: vec![("range", format!("bytes={}-{}", range.start, range.end - 1))],
            body: &[],
            max_answer: len.max(MAX_ANSWER),
        })?;
        let body = match a.status {
            206 => a.body,
            // A server that ignores `Range` sends the whole object.
            200 => a
                .body
                .get(range.start as usize..)
                .map(|b| b[..b.len().min(len as usize)].to_vec())
                .unwrap_or_default(),
            404 => return Ok(None),
            416 => Vec::new(),
            _ => return Err(self.status_error(key, &a)),
        };
        if body.len() as u64 != len {
            return Err(Error::PastEnd {
                name: self.url_of(key),
                start: range.start,
                end: range.end,
                size: range.start + body.len() as u64,
            });
        }
        Ok(Some(body))
    }

    /// Whether the object exists.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let a = self.send(Request {
            method: "HEAD",
            key: Some(key),
            query: vec![],
            headers: vec![],
            body: &[],
            max_answer: 0,
        })?;
        match a.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error(key, &a)),
        }
    }

    /// Uploads an object, replacing any (large ones in parts, in parallel).
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        if bytes.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key, bytes);
        }
        let a = self.send(Request {
            method: "PUT",
            key: Some(key),
            query: vec![],
            headers: vec![],
            body: bytes,
            max_answer: MAX_ANSWER,
        })?;
        match a.status {
            200 | 201 | 204 => Ok(()),
            _ => Err(self.status_error(key, &a)),
        }
    }

    /// Creates the object only if no object has its key (`If-None-Match: *`).
    ///
    /// `Ok(Created::Exists)` on 412. Every error leaves the outcome unknown: read the object
    /// back to decide (see the module documentation).
    pub fn create(&self, key: &str, bytes: &[u8]) -> Result<Created> {
        let a = self.send(Request {
            method: "PUT",
            key: Some(key),
            query: vec![],
            headers: vec![("if-none-match", "*".into())],
            body: bytes,
            max_answer: MAX_ANSWER,
        })?;
        match a.status {
            200 | 201 | 204 => Ok(Created::Yes),
            412 => Ok(Created::Exists),
            _ => Err(self.status_error(key, &a)),
        }
    }

    /// Deletes the object (a missing one is fine).
    pub fn delete(&self, key: &str) -> Result<()> {
        let a = self.send(Request {
            method: "DELETE",
            key: Some(key),
            query: vec![],
            headers: vec![],
            body: &[],
            max_answer: MAX_ANSWER,
        })?;
        match a.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.status_error(key, &a)),
        }
    }

    /// Every object whose key starts with `prefix` (relative to the bucket prefix), page by
    /// page. Keys are returned relative to the bucket prefix.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let full = self.full_key(prefix);
        let strip = self.full_key("");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2".to_string()), ("prefix", full.clone())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let a = self.send(Request {
                method: "GET",
                key: None,
                query,
                headers: vec![],
                body: &[],
                max_answer: MAX_ANSWER,
            })?;
            if a.status != 200 {
                return Err(self.status_error(prefix, &a));
            }
            let page =
                s3_xml::parse_list(&a.body).map_err(|reason| self.bad_answer(prefix, reason))?;
            for o in page.objects {
                let Some(rel) = o.key.strip_prefix(&strip) else {
                    continue; // outside the prefix: a server that ignores `prefix`
                };
                out.push(ObjectInfo {
                    key: rel.to_string(),
                    size: o.size,
                    modified: parse_time(&o.last_modified),
                });
            }
            match page.next_token {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                Some(_) => {
                    return Err(self.bad_answer(prefix, "the listing repeats its page token".into()))
                }
                None => return Ok(out),
            }
        }
    }

    fn put_multipart(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let a = self.send(Request {
            method: "POST",
            key: Some(key),
            query: vec![("uploads", String::new())],
            headers: vec![],
            body: &[],
            max_answer: MAX_ANSWER,
        })?;
        if a.status != 200 {
            return Err(self.status_error(key, &a));
        }
        let upload = s3_xml::parse_upload_id(&a.body).map_err(|r| self.bad_answer(key, r))?;
        let result = self.upload_parts(key, &upload, bytes).and_then(|parts| {
            let body = s3_xml::complete_body(&parts);
            let a = self.send(Request {
                method: "POST",
                key: Some(key),
                query: vec![("uploadId", upload.clone())],
                headers: vec![("content-type", "application/xml".into())],
                body: body.as_bytes(),
                max_answer: MAX_ANSWER,
            })?;
            if a.status != 200 {
                return Err(self.status_error(key, &a));
            }
            s3_xml::complete_succeeded(&a.body).map_err(|r| self.bad_answer(key, r))
        });
        if result.is_err() {
            // Best effort: an abandoned upload costs storage until the bucket's lifecycle
            // rule (or this abort) removes it.
            let _ = self.send(Request {
                method: "DELETE",
                key: Some(key),
                query: vec![("uploadId", upload)],
                headers: vec![],
                body: &[],
                max_answer: MAX_ANSWER,
            });
        }
        result
    }

    /// Uploads the parts on a few threads; returns `(part number, ETag)` in order.
    fn upload_parts(&self, key: &str, upload: &str, bytes: &[u8]) -> Result<Vec<(u32, String)>> {
        let chunks: Vec<&[u8]> = bytes.chunks(PART_SIZE).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Result<String>>>> =
            chunks.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let workers = self.options.concurrency.clamp(1, 8).min(chunks.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { break };
                    let r = self
                        .send(Request {
                            method: "PUT",
                            key: Some(key),
                            query: vec![
                                ("partNumber", (i + 1).to_string()),
                                ("uploadId", upload.to_string()),
                            ],
                            headers: vec![],
                            body: chunk,
                            max_answer: MAX_ANSWER,
                        })
                        .and_then(|a| match (a.status, a.headers.get("etag")) {
                            (200, Some(etag)) => Ok(etag.to_str().unwrap_or_default().to_string()),
                            (200, None) => {
                                Err(self.bad_answer(key, "an uploaded part has no ETag".into()))
                            }
                            _ => Err(self.status_error(key, &a)),
                        });
                    let failed = r.is_err();
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    if failed {
                        next.store(chunks.len(), Ordering::Relaxed);
                        break;
                    }
                });
            }
        });
        let mut parts = Vec::with_capacity(chunks.len());
        for (i, r) in results.into_iter().enumerate() {
            match r.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok(etag)) => parts.push((i as u32 + 1, etag)),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(self.bad_answer(key, "part upload abandoned after a failure".into()))
                }
            }
        }
        Ok(parts)
    }

    fn status_error(&self, key: &str, a: &Answer) -> Error {
        let hint = s3_xml::parse_error(&a.body).map(|e| {
            if e.message.is_empty() {
                e.code
            } else {
                format!("{}: {}", e.code, e.message)
            }
        });
        Error::HttpStatus {
            url: self.url_of(key),
            status: a.status,
            attempts: a.attempts,
            hint,
        }
    }

    fn bad_answer(&self, key: &str, reason: String) -> Error {
        Error::BadAnswer {
            url: self.url_of(key),
            reason,
        }
    }

    /// Sends a request, retrying timeouts, dropped connections and 408/5xx answers a few
    /// times and throttling answers (429, 503 Slow Down) within the time budget, with
    /// exponential backoff and full jitter (see [`super::retry`]). The last answer or error
    /// is returned with the number of attempts made.
    fn send(&self, r: Request<'_>) -> Result<Answer> {
        let mut backoff = Backoff::new(&self.options);
        let name = self.url_of(r.key.unwrap_or(""));
        loop {
            let (why, asked, failure) = match self.attempt(&r) {
                Ok(mut a) => match Retryable::of_status(a.status) {
                    None => return Ok(a),
                    Some(why) => {
                        let asked = retry_after(&a.headers);
                        a.attempts = backoff.attempts();
                        (why, asked, Ok(a))
                    }
                },
                Err(Failure::Fatal(e)) => {
                    return Err(Error::Transport {
                        url: name,
                        attempts: backoff.attempts(),
                        source: Box::new(e),
                    })
                }
                Err(Failure::Timeout(e)) => (
                    Retryable::Transient,
                    None,
                    Err(Error::Timeout {
                        url: name.clone(),
                        attempts: backoff.attempts(),
                        source: Box::new(e),
                    }),
                ),
                Err(Failure::Transient(e)) => (
                    Retryable::Transient,
                    None,
                    Err(Error::Transport {
                        url: name.clone(),
                        attempts: backoff.attempts(),
                        source: Box::new(e),
                    }),
                ),
            };
            match backoff.next_wait(why, asked) {
                Some(wait) => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(wait);
                }
                None => return failure,
            }
        }
    }

    /// One request, signed now.
    fn attempt(&self, r: &Request<'_>) -> std::result::Result<Answer, Failure> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let key = r.key.map(|k| self.full_key(k)).unwrap_or_default();
        let (url, host, path) = self.config.object_url(&S3Location {
            bucket: self.bucket.clone(),
            key,
        });
        let mut query: Vec<(String, String)> = r
            .query
            .iter()
            .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
            .collect();
        query.sort();
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let full_url = if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        };
        let payload = if r.body.is_empty() {
            EMPTY_SHA256
        } else {
            "UNSIGNED-PAYLOAD"
        };
        let mut headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if let Some(credentials) = &self.config.credentials {
            let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let mut signed = vec![
                ("host".to_string(), host),
                ("x-amz-content-sha256".to_string(), payload.to_string()),
                ("x-amz-date".to_string(), amz_date.clone()),
            ];
            if let Some(token) = &credentials.session_token {
                signed.push(("x-amz-security-token".to_string(), token.clone()));
            }
            let request = CanonicalRequest {
                method: r.method,
                path: &path,
                query: &query,
                headers: &signed,
                payload_sha256: payload,
            };
            let auth = authorization(credentials, &self.config.region, &request, &amz_date);
            signed.retain(|(n, _)| n != "host"); // the client sends Host itself
            headers.extend(signed);
            headers.push(("authorization".to_string(), auth));
        }
        let mut builder = ureq::http::Request::builder()
            .method(r.method)
            .uri(&full_url);
        for (k, v) in &headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(r.body.to_vec())
            .map_err(|e| Failure::Fatal(ureq::Error::BadUri(e.to_string())))?;
        self.counters
            .bytes_out
            .fetch_add(r.body.len() as u64, Ordering::Relaxed);
        let response = self.agent.run(request).map_err(client::classify)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        if r.method != "HEAD" {
            let limit = if (200..300).contains(&status) {
                r.max_answer
            } else {
                MAX_ANSWER
            };
            let read = response
                .into_body()
                .into_reader()
                .take(limit.saturating_add(1))
                .read_to_end(&mut body);
            self.counters
                .bytes_in
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            read.map_err(client::classify_io)?;
            if body.len() as u64 > limit {
                return Err(Failure::Fatal(ureq::Error::BodyExceedsLimit(limit)));
            }
        }
        Ok(Answer {
            status,
            attempts: 1,
            headers,
            body,
        })
    }
}

/// An S3 `LastModified` (`2026-11-30T17:58:17Z` or with milliseconds); the epoch when
/// unparsable, which only makes vacuum treat the object as old.
fn parse_time(s: &str) -> std::time::SystemTime {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc).into())
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_prefixes() {
        let o = RemoteOptions::default();
        let b = Bucket::open("s3://my-bucket/some/prefix/", &o).unwrap();
        assert_eq!(b.url(), "s3://my-bucket/some/prefix");
        assert_eq!(b.full_key("catalog/x"), "some/prefix/catalog/x");
        assert_eq!(b.full_key(""), "some/prefix/");
        let root = Bucket::open("s3://my-bucket", &o).unwrap();
        assert_eq!(root.full_key("a"), "a");
        assert_eq!(root.full_key(""), "");
        for bad in [
            "s3://x/a",
            "s3://my-bucket/a/../b",
            "s3://My_Bucket/a",
            "s3://my-bucket/a//b",
        ] {
            assert!(Bucket::open(bad, &o).is_err(), "{bad}");
        }
    }

    #[test]
    fn listing_times_parse() {
        let t = parse_time("2026-11-30T17:58:17.000Z");
        assert_eq!(
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            1_796_061_497
        );
        assert_eq!(parse_time("garbage"), std::time::UNIX_EPOCH);
    }
}
