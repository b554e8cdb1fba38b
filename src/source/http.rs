//! Remote files read with HTTP range requests.
//!
//! Opening a URL costs one request: a `Range` GET for the first
//! [`readahead`](RemoteOptions::readahead) bytes, whose `Content-Range` gives the file size and
//! whose `ETag`/`Last-Modified` identify the version being read. The COG header is then parsed
//! from the [`BlockCache`]; a header larger than the read-ahead is fetched in growing steps.
//! Tile reads ([`ByteSource::read_ranges`]) are merged when close, and the merged groups are
//! fetched concurrently on a few threads. Every later request carries `If-Match` (or
//! `If-Unmodified-Since`) and every answer is checked against the first, so a file replaced
//! mid-read is an error rather than a mix of two versions. Timeouts, dropped connections and
//! 5xx answers are retried with exponential backoff; 4xx answers fail at once.

use super::cache::BlockCache;
use super::client::{self, Failure};
use super::retry::{Backoff, Retryable};
use super::{merge_ranges, ByteSource, Error, MergedRead, ResponseProblem, Result, TransferStats};
use bytes::Bytes;
use std::io::Read;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Knobs of remote sources. The defaults suit object stores reached over the internet.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Bytes fetched by the first request (the COG header normally fits). Default 64 KiB.
    pub readahead: usize,
    /// Upper bound of the read-ahead, which doubles while reads continue sequentially past
    /// what was fetched (large IFDs). Default 2 MiB.
    pub max_readahead: usize,
    /// Tile ranges closer than this are fetched by one request. Default 32 KiB.
    pub merge_gap: u64,
    /// Largest request made by merging tile ranges: longer runs of close tiles are cut (at
    /// tile boundaries) into several requests, fetched concurrently. Default 8 MiB.
    pub max_request: u64,
    /// Size of the block cache in bytes (0 disables it). Default 16 MiB.
    pub cache_bytes: usize,
    /// Requests in flight at once for scattered ranges. Default 8.
    pub concurrency: usize,
    /// Retries after a timeout, a dropped connection or a 408/500/502/504 answer. Default 4.
    pub retries: u32,
    /// Ceiling of the wait before the first retry; it doubles for each further retry, and
    /// each wait is drawn uniformly below it (full jitter). Default 200 ms.
    pub backoff: Duration,
    /// Largest ceiling of a wait between two retries. Default 5 s.
    pub max_backoff: Duration,
    /// How long throttling answers (429, 503 Slow Down) are retried before giving up.
    /// Default 30 s, or `PIXELQUERY_THROTTLE_BUDGET` (seconds) when set.
    pub throttle_budget: Duration,
    /// Time allowed to connect (including TLS). Zero means no limit. Default 10 s.
    pub connect_timeout: Duration,
    /// Time allowed for the response to start, and between two reads of its body. Zero means
    /// no limit. Default 30 s.
    pub read_timeout: Duration,
    /// Time allowed for a whole request, body included. Zero means no limit. Default 300 s.
    pub request_timeout: Duration,
    /// Region of `s3://` buckets; else `AWS_REGION`, `AWS_DEFAULT_REGION`, then `us-west-2`.
    pub s3_region: Option<String>,
    /// PEM file of root certificates to trust instead of the built-in Mozilla roots (a
    /// company's TLS-inspecting proxy, a private object store); else `SSL_CERT_FILE`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Endpoint for `s3://` URLs (path-style, e.g. `http://127.0.0.1:9000`); else
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, then AWS itself.
    pub s3_endpoint: Option<String>,
    /// Credentials for `s3://` URLs; else `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
    /// (anonymous without them).
    pub s3_credentials: Option<super::s3::Credentials>,
    /// `s3://` objects are in a requester-pays bucket (`usgs-landsat`): requests carry
    /// `x-amz-request-payer: requester` and must be signed (the transfer is billed to the
    /// credentials' account); without credentials opening fails with
    /// [`Error::RequesterPays`](super::Error::RequesterPays). Default `false`.
    pub s3_requester_pays: bool,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            readahead: 64 << 10,
            max_readahead: 2 << 20,
            merge_gap: 32 << 10,
            max_request: 8 << 20,
            cache_bytes: 16 << 20,
            concurrency: 8,
            retries: 4,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            throttle_budget: throttle_budget_from_env().unwrap_or(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            s3_region: None,
            s3_endpoint: None,
            s3_credentials: None,
            s3_requester_pays: false,
            ca_file: None,
        }
    }
}

/// `PIXELQUERY_THROTTLE_BUDGET` in seconds, when set to a number.
fn throttle_budget_from_env() -> Option<Duration> {
    let text = std::env::var("PIXELQUERY_THROTTLE_BUDGET").ok()?;
    let secs: f64 = text.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// Signs each request (S3 SigV4); see [`super::s3`].
pub(crate) trait Sign: Send + Sync + std::fmt::Debug {
    /// Headers to add to a GET of the source's URL sent now.
    fn headers(&self) -> Vec<(String, String)>;
    /// A hint for an HTTP error status, if this kind of endpoint has one.
    fn hint(&self, status: u16, headers: &ureq::http::HeaderMap) -> Option<String>;
}

/// What identifies the version of the file being read.
#[derive(Debug, Clone, PartialEq)]
struct Version {
    size: u64,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// One successful range request.
struct Fetched {
    data: Bytes,
    version: Version,
}

/// Why one attempt failed.
enum Attempt {
    /// Worth trying again (unless the schedule gives up, then this error is reported), after
    /// at least the wait the server asked for (`Retry-After`), if any.
    Retry(Error, Retryable, Option<Duration>),
    /// Trying again cannot help.
    Fail(Error),
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
    cache_hits: AtomicU64,
}

/// The request machinery, shared by opening and reading.
#[derive(Debug)]
struct Remote {
    name: String,
    url: String,
    agent: ureq::Agent,
    signer: Option<Box<dyn Sign>>,
    options: RemoteOptions,
    counters: Counters,
}

/// A file reached over HTTP(S) and read with `Range` requests.
///
/// Opening costs one request (the first [`readahead`](RemoteOptions::readahead) bytes; its
/// `Content-Range` gives the size, its `ETag`/`Last-Modified` the version). Header reads are
/// then served from a [`BlockCache`]; tile reads are merged when close and fetched
/// concurrently; every later request is conditional on the first version, so a file replaced
/// mid-read is an [`Error::Changed`]; timeouts and 5xx answers are retried with backoff.
///
/// ```no_run
/// use pixelquery::source::{ByteSource, HttpSource, RemoteOptions};
/// let src = HttpSource::open("https://example.com/scene.tif", &RemoteOptions::default())?;
/// let header = src.read_at(0, 16)?;
/// println!("{} bytes, {:?}", src.size(), src.stats());
/// # Ok::<(), pixelquery::source::Error>(())
/// ```
#[derive(Debug)]
pub struct HttpSource {
    remote: Remote,
    version: Version,
    cache: Mutex<BlockCache>,
    /// Current read-ahead window and where a sequential read would continue.
    readahead: Mutex<(usize, u64)>,
}

impl HttpSource {
    /// Opens `url` (`http://` or `https://`) with one range request for its first
    /// [`readahead`](RemoteOptions::readahead) bytes.
    pub fn open(url: &str, options: &RemoteOptions) -> Result<Self> {
        Self::open_as(url.to_string(), url.to_string(), None, options)
    }

    /// Opens `url`, naming it `name` in errors and signing requests with `signer`.
    pub(crate) fn open_as(
        name: String,
        url: String,
        signer: Option<Box<dyn Sign>>,
        options: &RemoteOptions,
    ) -> Result<Self> {
        let invalid = |reason| Error::InvalidUrl {
            url: name.clone(),
            reason,
        };
        let uri: ureq::http::Uri = url.parse().map_err(|_| invalid("unparsable"))?;
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => {}
            Some(s) if s.eq_ignore_ascii_case("https") => {
                if let Some(reason) = client::https_unavailable() {
                    return Err(Error::HttpsUnavailable { url: name, reason });
                }
            }
            _ => return Err(invalid("the scheme must be http or https")),
        }
        let loopback = is_loopback(host);
        let mut options = options.clone();
        options.readahead = options.readahead.max(1);
        options.max_readahead = options.max_readahead.max(options.readahead);
        options.concurrency = options.concurrency.max(1);
        let remote = Remote {
            agent: client::agent(&options, loopback)?,
            name,
            url,
            signer,
            options,
            counters: Counters::default(),
        };
        let first = remote.fetch(0..remote.options.readahead as u64, None)?;
        let mut cache = BlockCache::new(remote.options.cache_bytes);
        let next = first.data.len() as u64;
        cache.insert(0, first.data);
        let window = remote.options.readahead;
        Ok(Self {
            remote,
            version: first.version,
            cache: Mutex::new(cache),
            readahead: Mutex::new((window, next)),
        })
    }

    /// The URL requested (for `s3://` sources, the HTTPS URL it maps to).
    pub fn url(&self) -> &str {
        &self.remote.url
    }

    /// The `ETag` of the version being read, if the server sent one.
    pub fn etag(&self) -> Option<&str> {
        self.version.etag.as_deref()
    }

    fn cache(&self) -> MutexGuard<'_, BlockCache> {
        // A panic while holding the lock cannot leave the cache inconsistent in a way that
        // matters (worst case a block is missing), so a poisoned lock is simply taken over.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hit(&self) {
        self.remote
            .counters
            .cache_hits
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Fetches `spans` (already merged), concurrently when there are several.
    fn fetch_all(&self, spans: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let workers = self.remote.options.concurrency.min(spans.len());
        if workers <= 1 {
            return spans
                .iter()
                .map(|s| Ok(self.remote.fetch(s.clone(), Some(&self.version))?.data))
                .collect();
        }
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Vec<Mutex<Option<Result<Bytes>>>> =
            spans.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(span) = spans.get(i) else { break };
                        let r = self
                            .remote
                            .fetch(span.clone(), Some(&self.version))
                            .map(|f| f.data);
                        failed.fetch_or(r.is_err(), Ordering::Relaxed);
                        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(spans.len());
        let mut first_error = None;
        for r in results {
            match r.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok(b)) => out.push(b),
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {} // skipped after another group failed
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

impl ByteSource for HttpSource {
    fn name(&self) -> &str {
        &self.remote.name
    }

    fn size(&self) -> u64 {
        self.version.size
    }

    /// Serves the bytes from the cache, or fetches them with read-ahead: at least the current
    /// window, which doubles (up to [`max_readahead`](RemoteOptions::max_readahead)) while
    /// reads continue where the previous fetch ended, as a header parser does.
    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let end = offset.saturating_add(len as u64);
        if end > self.size() {
            return Err(self.past_end(offset, end));
        }
        if len == 0 {
            return Ok(Bytes::new());
        }
        let prefix = {
            let mut cache = self.cache();
            if let Some(hit) = cache.get(offset..end) {
                drop(cache);
                self.hit();
                return Ok(hit);
            }
            cache.prefix(offset).unwrap_or_default()
        };
        let start = offset + prefix.len() as u64;
        let fetch_end = {
            let mut ra = self.readahead.lock().unwrap_or_else(|e| e.into_inner());
            let (window, next) = *ra;
            let window = if start == next {
                window
                    .saturating_mul(2)
                    .min(self.remote.options.max_readahead)
            } else {
                self.remote.options.readahead
            };
            let fetch_end = start
                .saturating_add(window as u64)
                .max(end)
                .min(self.size());
            *ra = (window, fetch_end);
            fetch_end
        };
        let fetched = self
            .remote
            .fetch(start..fetch_end, Some(&self.version))?
            .data;
        self.cache().insert(start, fetched.clone());
        let rest = fetched.slice(..(end - start) as usize);
        if prefix.is_empty() {
            return Ok(rest);
        }
        let mut joined = Vec::with_capacity(len);
        joined.extend_from_slice(&prefix);
        joined.extend_from_slice(&rest);
        Ok(Bytes::from(joined))
    }

    fn merge_gap(&self) -> u64 {
        self.remote.options.merge_gap
    }

    /// Serves what it can from the cache, merges the rest into groups and fetches the groups
    /// concurrently (at most [`concurrency`](RemoteOptions::concurrency) requests in flight).
    fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out = vec![Bytes::new(); ranges.len()];
        let mut missing = Vec::new();
        {
            let mut cache = self.cache();
            for (i, r) in ranges.iter().enumerate() {
                if r.end > self.size() {
                    return Err(self.past_end(r.start, r.end));
                }
                if r.end <= r.start {
                    continue;
                }
                match cache.get(r.clone()) {
                    Some(hit) => {
                        out[i] = hit;
                        self.hit();
                    }
                    None => missing.push(i),
                }
            }
        }
        let wanted: Vec<Range<u64>> = missing.iter().map(|&i| ranges[i].clone()).collect();
        let plan = cap_groups(
            merge_ranges(&wanted, self.merge_gap()),
            &wanted,
            self.remote.options.max_request,
        );
        let spans: Vec<Range<u64>> = plan.iter().map(|g| g.span.clone()).collect();
        let fetched = self.fetch_all(&spans)?;
        let mut cache = self.cache();
        for (group, data) in plan.iter().zip(fetched) {
            for &m in &group.members {
                let r = &wanted[m];
                let from = (r.start - group.span.start) as usize;
                let to = (r.end - group.span.start) as usize;
                out[missing[m]] = data.slice(from..to);
            }
            cache.insert(group.span.start, data);
        }
        Ok(out)
    }

    fn stats(&self) -> Option<TransferStats> {
        let c = &self.remote.counters;
        Some(TransferStats {
            requests: c.requests.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
        })
    }
}

impl Remote {
    /// Fetches `range`, retrying what is worth retrying. `expect` is the version seen first
    /// (`None` for the opening request, which may ask past the end of a small file).
    fn fetch(&self, range: Range<u64>, expect: Option<&Version>) -> Result<Fetched> {
        let mut backoff = Backoff::new(&self.options);
        loop {
            match self.attempt(range.clone(), expect) {
                Ok(fetched) => return Ok(fetched),
                Err(Attempt::Fail(e)) => return Err(with_attempts(e, backoff.attempts())),
                Err(Attempt::Retry(e, why, asked)) => match backoff.next_wait(why, asked) {
                    Some(wait) => {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(wait);
                    }
                    None => return Err(with_attempts(e, backoff.attempts())),
                },
            }
        }
    }

    /// One request for `range`.
    fn attempt(
        &self,
        range: Range<u64>,
        expect: Option<&Version>,
    ) -> std::result::Result<Fetched, Attempt> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let (start, end) = (range.start, range.end);
        let mut request = self
            .agent
            .get(&self.url)
            .header("Range", format!("bytes={}-{}", start, end - 1));
        if let Some(v) = expect {
            match (&v.etag, &v.last_modified) {
                (Some(etag), _) if !etag.starts_with("W/") => {
                    request = request.header("If-Match", etag);
                }
                (_, Some(date)) => request = request.header("If-Unmodified-Since", date),
                _ => {}
            }
        }
        if let Some(signer) = &self.signer {
            for (name, value) in signer.headers() {
                request = request.header(name, value);
            }
        }
        let response = request
            .call()
            .map_err(|e| self.failure(client::classify(e)))?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let bad = |problem| {
            Attempt::Fail(Error::BadResponse {
                url: self.name.clone(),
                start,
                end,
                problem,
            })
        };
        let etag = header("etag");
        let last_modified = header("last-modified");
        if let Some(enc) =
            header("content-encoding").filter(|e| !e.eq_ignore_ascii_case("identity"))
        {
            return Err(bad(ResponseProblem::ContentEncoding(enc)));
        }
        match status {
            206 => {
                let content_range = header("content-range")
                    .ok_or_else(|| bad(ResponseProblem::MissingContentRange))?;
                let (from, to, total) = parse_content_range(&content_range)
                    .ok_or_else(|| bad(ResponseProblem::BadContentRange(content_range.clone())))?;
                let version = Version {
                    size: total,
                    etag,
                    last_modified,
                };
                if let Some(v) = expect {
                    self.check_same(v, &version)?;
                }
                // The opening request may ask past the end of a small file.
                let want_end = if expect.is_none() {
                    end.min(total)
                } else {
                    end
                };
                if from != start || to != want_end {
                    return Err(bad(ResponseProblem::WrongRange {
                        start: from,
                        end: to,
                    }));
                }
                let data = self.read_body(response, want_end - start, start, end)?;
                Ok(Fetched { data, version })
            }
            200 => {
                // A server that ignores Range. Fine only for a file no larger than the opening
                // request asked for: then the answer is the whole file, as asked.
                let announced = header("content-length").and_then(|v| v.parse::<u64>().ok());
                let asked = end - start;
                let whole = expect.is_none() && announced.is_none_or(|n| n <= asked);
                if !whole {
                    return Err(Attempt::Fail(Error::RangeNotSupported {
                        url: self.name.clone(),
                        status,
                        size: announced,
                    }));
                }
                let data = self
                    .read_body_upto(response, asked, range)
                    .map_err(|e| match e {
                        Attempt::Fail(Error::BadResponse {
                            problem: ResponseProblem::LongBody { .. },
                            ..
                        }) => Attempt::Fail(Error::RangeNotSupported {
                            url: self.name.clone(),
                            status,
                            size: None,
                        }),
                        other => other,
                    })?;
                let version = Version {
                    size: data.len() as u64,
                    etag,
                    last_modified,
                };
                Ok(Fetched { data, version })
            }
            416 if expect.is_none() => {
                // Asking for the start of an empty file: `Content-Range: bytes */0`.
                match header("content-range").as_deref() {
                    Some(cr) if cr.replace(' ', "").eq_ignore_ascii_case("bytes*/0") => {
                        Ok(Fetched {
                            data: Bytes::new(),
                            version: Version {
                                size: 0,
                                etag,
                                last_modified,
                            },
                        })
                    }
                    _ => Err(Attempt::Fail(self.status_error(status, headers))),
                }
            }
            412 => {
                let before = expect
                    .and_then(|v| v.etag.clone().or_else(|| v.last_modified.clone()))
                    .unwrap_or_default();
                Err(Attempt::Fail(Error::Changed {
                    url: self.name.clone(),
                    what: "precondition",
                    before,
                    after: etag.or(last_modified).unwrap_or_else(|| "412".into()),
                }))
            }
            status if Retryable::of_status(status).is_some() => {
                let why = Retryable::of_status(status).unwrap_or(Retryable::Transient);
                Err(Attempt::Retry(
                    self.status_error(status, headers),
                    why,
                    retry_after(headers),
                ))
            }
            _ => Err(Attempt::Fail(self.status_error(status, headers))),
        }
    }

    fn status_error(&self, status: u16, headers: &ureq::http::HeaderMap) -> Error {
        Error::HttpStatus {
            url: self.name.clone(),
            status,
            attempts: 1,
            hint: self.signer.as_ref().and_then(|s| s.hint(status, headers)),
        }
    }

    fn failure(&self, failure: Failure) -> Attempt {
        let url = self.name.clone();
        match failure {
            Failure::Timeout(e) => Attempt::Retry(
                Error::Timeout {
                    url,
                    attempts: 1,
                    source: Box::new(e),
                },
                Retryable::Transient,
                None,
            ),
            Failure::Transient(e) => Attempt::Retry(
                Error::Transport {
                    url,
                    attempts: 1,
                    source: Box::new(e),
                },
                Retryable::Transient,
                None,
            ),
            Failure::Fatal(e) => Attempt::Fail(Error::Transport {
                url,
                attempts: 1,
                source: Box::new(e),
            }),
        }
    }

    /// The answer must be the version first seen.
    fn check_same(&self, first: &Version, now: &Version) -> std::result::Result<(), Attempt> {
        let changed = |what, before: String, after: String| {
            Err(Attempt::Fail(Error::Changed {
                url: self.name.clone(),
                what,
                before,
                after,
            }))
        };
        if first.size != now.size {
            return changed("size", first.size.to_string(), now.size.to_string());
        }
        if let (Some(a), Some(b)) = (&first.etag, &now.etag) {
            if a != b {
                return changed("ETag", a.clone(), b.clone());
            }
        }
        if let (Some(a), Some(b)) = (&first.last_modified, &now.last_modified) {
            if a != b {
                return changed("Last-Modified", a.clone(), b.clone());
            }
        }
        Ok(())
    }

    /// Reads exactly `len` body bytes; a short body is retried, a long one is an error. The
    /// allocation is bounded by what was asked for, never by what the server announces.
    fn read_body(
        &self,
        response: ureq::http::Response<ureq::Body>,
        len: u64,
        start: u64,
        end: u64,
    ) -> std::result::Result<Bytes, Attempt> {
        let data = self.read_body_upto(response, len, start..end)?;
        if (data.len() as u64) < len {
            let problem = ResponseProblem::ShortBody {
                expected: len,
                got: data.len() as u64,
            };
            return Err(Attempt::Retry(
                Error::BadResponse {
                    url: self.name.clone(),
                    start,
                    end,
                    problem,
                },
                Retryable::Transient,
                None,
            ));
        }
        Ok(data)
    }

    /// Reads at most `limit` body bytes of the answer to a request for `range`; more is a
    /// [`ResponseProblem::LongBody`] error.
    fn read_body_upto(
        &self,
        response: ureq::http::Response<ureq::Body>,
        limit: u64,
        range: Range<u64>,
    ) -> std::result::Result<Bytes, Attempt> {
        let capacity = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut buf = Vec::new();
        buf.try_reserve_exact(capacity).map_err(|_| {
            Attempt::Fail(Error::Io {
                name: self.name.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    format!("cannot allocate {limit} bytes"),
                ),
            })
        })?;
        let read = response
            .into_body()
            .into_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut buf);
        self.counters
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        if let Err(e) = read {
            return Err(self.failure(client::classify_io(e)));
        }
        if buf.len() as u64 > limit {
            return Err(Attempt::Fail(Error::BadResponse {
                url: self.name.clone(),
                start: range.start,
                end: range.end,
                problem: ResponseProblem::LongBody { expected: limit },
            }));
        }
        Ok(Bytes::from(buf))
    }
}

/// Cuts merged groups whose span exceeds `cap` into runs of whole ranges of at most `cap`
/// bytes (a single range longer than `cap` stays one request).
fn cap_groups(plan: Vec<MergedRead>, ranges: &[Range<u64>], cap: u64) -> Vec<MergedRead> {
    let mut out = Vec::with_capacity(plan.len());
    for group in plan {
        if group.span.end - group.span.start <= cap {
            out.push(group);
            continue;
        }
        let mut current: Option<MergedRead> = None;
        for m in group.members {
            let r = ranges[m].start..ranges[m].end.max(ranges[m].start);
            match &mut current {
                Some(c) if r.end.max(c.span.end) - c.span.start <= cap => {
                    c.span.end = c.span.end.max(r.end);
                    c.members.push(m);
                }
                _ => {
                    out.extend(current.take());
                    current = Some(MergedRead {
                        span: r,
                        members: vec![m],
                    });
                }
            }
        }
        out.extend(current);
    }
    out
}

/// Sets the attempt count on errors that carry one.
fn with_attempts(mut e: Error, n: u32) -> Error {
    match &mut e {
        Error::HttpStatus { attempts, .. }
        | Error::Timeout { attempts, .. }
        | Error::Transport { attempts, .. } => *attempts = n,
        _ => {}
    }
    e
}

/// The wait a `Retry-After: <seconds>` header asks for (the HTTP-date form is rare and
/// ignored).
pub(crate) fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// Parses `bytes FIRST-LAST/TOTAL` into `(FIRST, LAST + 1, TOTAL)`; `None` if malformed,
/// inconsistent, or with an unknown (`*`) total.
pub(crate) fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim();
    let (unit, rest) = rest.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (span, total) = rest.trim().split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let num = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (first, last, total) = (num(first)?, num(last)?, num(total)?);
    // `then`, not `then_some`: `last + 1` overflows when `last` is u64::MAX (found by fuzzing).
    (first <= last && last < total).then(|| (first, last + 1, total))
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing_is_strict() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 10, 100)));
        assert_eq!(parse_content_range("Bytes 90-99/100"), Some((90, 100, 100)));
        assert_eq!(parse_content_range("bytes 0-9/*"), None);
        assert_eq!(parse_content_range("bytes 9-0/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("bytes -1-9/100"), None);
        assert_eq!(parse_content_range("bytes 0-99999999999999999999/1"), None);
        assert_eq!(parse_content_range("items 0-9/100"), None);
        let max = u64::MAX;
        assert_eq!(parse_content_range(&format!("bytes 0-{max}/{max}")), None);
        assert_eq!(
            parse_content_range(&format!("bytes 0-{}/{max}", max - 1)),
            Some((0, max, max))
        );
        assert_eq!(parse_content_range(""), None);
    }

    #[test]
    fn long_merged_runs_are_cut_at_range_boundaries() {
        let ranges: Vec<Range<u64>> = (0..10u64).map(|i| i * 100..i * 100 + 100).collect();
        let plan = cap_groups(merge_ranges(&ranges, 0), &ranges, 250);
        let spans: Vec<_> = plan.iter().map(|g| g.span.clone()).collect();
        assert_eq!(spans, [0..200, 200..400, 400..600, 600..800, 800..1000]);
        assert_eq!(plan[1].members, [2, 3]);
        let big = [0..1000, 1000..1010];
        let plan = cap_groups(merge_ranges(&big, 0), &big, 250);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].span, 0..1000);
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && is_loopback("LOCALHOST"));
        assert!(!is_loopback("example.com") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn bad_urls_are_errors_naming_them() {
        let opts = RemoteOptions::default();
        let err = HttpSource::open("http://", &opts).unwrap_err().to_string();
        assert!(err.starts_with("http://:"), "{err}");
        let err = HttpSource::open("ftp://h/x", &opts)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ftp://h/x") && err.contains("http or https"),
            "{err}"
        );
    }
}
