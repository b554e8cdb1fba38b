//! JSON over HTTP for web APIs (STAC APIs, token endpoints): GET and POST of JSON documents on
//! the HTTP stack remote sources use (`ureq`, our resolver, rustls with graviola), with the
//! same sorting of failures. Timeouts, dropped connections, 408, 429 and 5xx answers are
//! retried with exponential backoff, waiting at least what `Retry-After` asks (seconds or an
//! HTTP date) up to [`MAX_RETRY_AFTER`]; other answers fail at once with the server's own
//! message.

use super::client::{self, Failure};
use super::http::{is_loopback, RemoteOptions};
use super::retry::full_jitter;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Longest `Retry-After` honoured; a server asking for more is an error saying so.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Largest answer read (a page of items is a few MB).
const MAX_BODY: u64 = 256 << 20;

/// Errors from talking to an API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL cannot be used.
    #[error("{url}: not a valid URL: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// HTTPS cannot be used by this build or CPU.
    #[error("{url}: HTTPS is not available: {reason}")]
    HttpsUnavailable {
        /// The URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// No connection could be made, or it broke, after every attempt.
    #[error("{url}: cannot reach the server after {attempts} attempts: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered with an error status (after every attempt, for 429 and 5xx).
    #[error("{url}: HTTP {status}{}{}", attempts_suffix(*.attempts), message_suffix(.message))]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// What the server said (its JSON `description`, `detail` or `message`, or the start
        /// of its text).
        message: Option<String>,
        /// Attempts made.
        attempts: u32,
    },
    /// The server asked to wait longer than [`MAX_RETRY_AFTER`].
    #[error("{url}: HTTP {status}: the server asks to wait {seconds} s before trying again (Retry-After)")]
    WaitTooLong {
        /// The URL.
        url: String,
        /// The status (429 or 503).
        status: u16,
        /// Seconds asked for.
        seconds: u64,
    },
    /// The answer is not JSON, or too large.
    #[error("{url}: the answer is not a JSON document: {reason}")]
    NotJson {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

fn attempts_suffix(n: u32) -> String {
    if n > 1 {
        format!(" after {n} attempts")
    } else {
        String::new()
    }
}

fn message_suffix(m: &Option<String>) -> String {
    m.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
}

/// An HTTP method of a JSON request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (parameters in the URL).
    Get,
    /// POST of a JSON body.
    Post,
}

/// One JSON request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// GET or POST.
    pub method: Method,
    /// The URL, query string included.
    pub url: String,
    /// The JSON body of a POST.
    pub body: Option<Value>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A GET of `url`.
    pub fn get(url: &str) -> Request {
        Request {
            method: Method::Get,
            url: url.to_string(),
            body: None,
            headers: Vec::new(),
        }
    }

    /// A POST of `body` to `url`.
    pub fn post(url: &str, body: Value) -> Request {
        Request {
            method: Method::Post,
            url: url.to_string(),
            body: Some(body),
            headers: Vec::new(),
        }
    }
}

/// Requests, bytes and retries of a client so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApiStats {
    /// Requests sent, retries included.
    pub requests: u64,
    /// Answer bytes received.
    pub bytes: u64,
    /// Requests retried.
    pub retries: u64,
}

/// A JSON client: one connection pool per host, shared by threads.
#[derive(Debug)]
pub struct JsonClient {
    options: RemoteOptions,
    agents: Mutex<HashMap<String, ureq::Agent>>,
    requests: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
}

/// Why one attempt failed.
enum Attempt {
    Retry(Error, Option<Duration>),
    Fail(Error),
}

impl JsonClient {
    /// A client with these timeouts, retries and TLS settings.
    pub fn new(options: &RemoteOptions) -> JsonClient {
        JsonClient {
            options: options.clone(),
            agents: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// What the client has done so far.
    pub fn stats(&self) -> ApiStats {
        ApiStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    fn agent(&self, url: &str) -> Result<ureq::Agent, Error> {
        let invalid = |reason| Error::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let uri: ureq::http::Uri = url.parse().map_err(|_| invalid("unparsable"))?;
        let host = uri.host().ok_or_else(|| invalid("no host"))?.to_string();
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => {}
            Some(s) if s.eq_ignore_ascii_case("https") => {
                if let Some(reason) = client::https_unavailable() {
                    return Err(Error::HttpsUnavailable {
                        url: url.to_string(),
                        reason,
                    });
                }
            }
            _ => return Err(invalid("the scheme must be http or https")),
        }
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = agents.get(&host) {
            return Ok(a.clone());
        }
        let agent =
            client::agent(&self.options, is_loopback(&host)).map_err(|e| Error::Unreachable {
                url: url.to_string(),
                attempts: 0,
                source: Box::new(e),
            })?;
        agents.insert(host, agent.clone());
        Ok(agent)
    }

    /// Sends `request` (retrying what is worth it) and parses the JSON answer.
    pub fn send(&self, request: &Request) -> Result<Value, Error> {
        let agent = self.agent(&request.url)?;
        let attempts = self.options.retries.saturating_add(1);
        let mut delay = self.options.backoff;
        for attempt in 1..=attempts {
            match self.attempt(&agent, request) {
                Ok(v) => return Ok(v),
                Err(Attempt::Fail(e)) => return Err(counted(e, attempt)),
                Err(Attempt::Retry(e, _)) if attempt == attempts => {
                    return Err(counted(e, attempt))
                }
                Err(Attempt::Retry(e, asked)) => {
                    if let (Some(asked), Error::Status { url, status, .. }) = (asked, &e) {
                        if asked > MAX_RETRY_AFTER {
                            return Err(Error::WaitTooLong {
                                url: url.clone(),
                                status: *status,
                                seconds: asked.as_secs(),
                            });
                        }
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(full_jitter(delay).max(asked.unwrap_or_default()));
                    delay = (delay * 2).min(self.options.max_backoff);
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn attempt(&self, agent: &ureq::Agent, r: &Request) -> Result<Value, Attempt> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let url = &r.url;
        let method = match r.method {
            Method::Get => "GET",
            Method::Post => "POST",
        };
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .header("Accept", "application/geo+json, application/json");
        if r.method == Method::Post {
            builder = builder.header("Content-Type", "application/json");
        }
        for (k, v) in &r.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let body = match &r.body {
            Some(b) => serde_json::to_vec(b).unwrap_or_default(),
            None => Vec::new(),
        };
        let request = builder.body(body).map_err(|_| {
            Attempt::Fail(Error::InvalidUrl {
                url: url.clone(),
                reason: "cannot build a request for it",
            })
        })?;
        let response = agent
            .run(request)
            .map_err(|e| failure(url, client::classify(e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut bytes = Vec::new();
        let read = response
            .into_body()
            .into_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut bytes);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if let Err(e) = read {
            return Err(failure(url, client::classify_io(e)));
        }
        if bytes.len() as u64 > MAX_BODY {
            return Err(Attempt::Fail(Error::NotJson {
                url: url.clone(),
                reason: format!("larger than {} MB", MAX_BODY >> 20),
            }));
        }
        if !(200..300).contains(&status) {
            let e = Error::Status {
                url: url.clone(),
                status,
                message: server_message(&bytes),
                attempts: 1,
            };
            return Err(match status {
                408 | 429 | 500..=599 => Attempt::Retry(e, retry_after),
                _ => Attempt::Fail(e),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Attempt::Fail(Error::NotJson {
                url: url.clone(),
                reason: e.to_string(),
            })
        })
    }
}

fn failure(url: &str, f: Failure) -> Attempt {
    let unreachable = |e: ureq::Error| Error::Unreachable {
        url: url.to_string(),
        attempts: 1,
        source: Box::new(e),
    };
    match f {
        Failure::Timeout(e) | Failure::Transient(e) => Attempt::Retry(unreachable(e), None),
        Failure::Fatal(e) => Attempt::Fail(unreachable(e)),
    }
}

fn counted(mut e: Error, n: u32) -> Error {
    match &mut e {
        Error::Status { attempts, .. } | Error::Unreachable { attempts, .. } => *attempts = n,
        _ => {}
    }
    e
}

/// `Retry-After`: seconds, or an HTTP date (time from now; a date past is no wait).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

/// What an error answer says: the `description`, `detail`, `message` or `error` of a JSON
/// body (with its `code`), else the start of the text, on one line.
pub fn server_message(body: &[u8]) -> Option<String> {
    let one_line = |s: &str| -> String {
        let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
        match s.char_indices().nth(300) {
            Some((i, _)) => format!("{}...", &s[..i]),
            None => s,
        }
    };
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let text = ["description", "detail", "message", "error", "title"]
            .iter()
            .find_map(|k| match v.get(*k)? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            });
        let code = v.get("code").and_then(Value::as_str);
        return match (code, text) {
            (Some(c), Some(t)) => Some(one_line(&format!("{c}: {t}"))),
            (None, Some(t)) => Some(one_line(&t)),
            (Some(c), None) => Some(c.to_string()),
            (None, None) => Some(one_line(&v.to_string())),
        };
    }
    let text = String::from_utf8_lossy(body);
    let t = one_line(&text);
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let wait = parse_retry_after(&later).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn server_messages_are_one_line() {
        assert_eq!(
            server_message(
                br#"{"code": "BadRequest", "description": "Collection sentinel-3 not found"}"#
            )
            .as_deref(),
            Some("BadRequest: Collection sentinel-3 not found")
        );
        assert_eq!(
            server_message(br#"{"detail": [{"loc": ["bbox"], "msg": "bad"}]}"#).as_deref(),
            Some(r#"[{"loc":["bbox"],"msg":"bad"}]"#)
        );
        assert_eq!(
            server_message(b"<html>\n  Bad   gateway\n</html>").as_deref(),
            Some("<html> Bad gateway </html>")
        );
        assert_eq!(server_message(b""), None);
    }
}
