//! Servers for the STAC API tests and bench, all on 127.0.0.1:
//!
//! - [`HttpServer`]: a small HTTP/1.1 server (keep-alive, one thread per connection) around a
//!   handler, logging every request;
//! - [`files`]: a handler serving a folder with `Range` support, optionally requiring a SAS
//!   token (`sig=` in the query) or a header (`x-amz-request-payer`), as blob storage and a
//!   requester-pays bucket would;
//! - [`MockApi`]: a hand-written STAC API for what `rustac serve` does not do: `merge: true`
//!   next links, 429 with `Retry-After`, POST refused with 405, the Filter and Query
//!   extensions (requests recorded, the filter not applied), and Planetary Computer's SAS
//!   token endpoint;
//! - [`Rustac`]: a real STAC API (`rustac serve`, from PyPI in `.ci/run`'s virtual
//!   environment) loaded with collections and items, stopped by its PID when dropped.
#![allow(dead_code)] // each test binary uses a different part

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Req {
    /// `GET`, `POST`...
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string (without `?`), percent-encoded as sent.
    pub query: String,
    /// Lower-cased header names.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Req {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A query parameter, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| decode(v))
        })
    }
}

/// Percent-decodes (and `+` as space).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Resp {
    /// A JSON answer.
    pub fn json(status: u16, v: &Value) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(v).unwrap(),
        }
    }

    /// An empty answer.
    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            headers: vec![],
            body: vec![],
        }
    }
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// A running server; it lives until the process ends.
pub struct HttpServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Req>>>,
}

impl HttpServer {
    /// Serves `handler` on `127.0.0.1:{port}` (0: any free port).
    pub fn start_on(
        port: u16,
        handler: impl Fn(&Req) -> Resp + Send + Sync + 'static,
    ) -> HttpServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let shared = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = handler.clone();
                let log = shared.clone();
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = stream.set_nodelay(true);
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        HttpServer { addr, log }
    }

    /// Serves `handler` on any free port.
    pub fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> HttpServer {
        HttpServer::start_on(0, handler)
    }

    /// `http://127.0.0.1:{port}`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:{port}`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Requests received so far.
    pub fn log(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    /// Paths requested so far (with their query strings).
    pub fn paths(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .map(|r| {
                if r.query.is_empty() {
                    r.path
                } else {
                    format!("{}?{}", r.path, r.query)
                }
            })
            .collect()
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Req>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("GET").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target, String::new()),
        };
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len.min(64 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let req = Req {
            method,
            path,
            query,
            headers,
            body,
        };
        log.lock().unwrap().push(req.clone());
        let resp = handler(&req);
        let mut head = format!("HTTP/1.1 {} Status\r\n", resp.status);
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
        let out = reader.get_mut();
        if out.write_all(head.as_bytes()).is_err()
            || (req.method != "HEAD" && out.write_all(&resp.body).is_err())
            || out.flush().is_err()
        {
            return;
        }
    }
}

/// What a file server requires of requests.
#[derive(Debug, Clone, Default)]
pub struct Require {
    /// A query string holding `sig=` (an Azure SAS token), else 403.
    pub sas_token: bool,
    /// This header with this value, else 403.
    pub header: Option<(String, String)>,
}

/// `bytes=a-b` clamped to `len`.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let last: u64 = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse().ok()?
    };
    (start < len && last >= start).then(|| (start, last.min(len - 1) + 1))
}

/// A handler serving the files under `root` (URL path = path under root), with `Range`.
pub fn files(root: PathBuf, require: Require) -> impl Fn(&Req) -> Resp + Send + Sync + 'static {
    move |req: &Req| {
        if require.sas_token && !req.query.split('&').any(|p| p.starts_with("sig=")) {
            return Resp {
                status: 403,
                headers: vec![],
                body: b"<Error><Code>AuthenticationFailed</Code><Message>no SAS token</Message></Error>"
                    .to_vec(),
            };
        }
        if let Some((k, v)) = &require.header {
            if req.headers.get(k) != Some(v) {
                return Resp {
                    status: 403,
                    headers: vec![],
                    body:
                        b"<Error><Code>AccessDenied</Code><Message>requester pays</Message></Error>"
                            .to_vec(),
                };
            }
        }
        let rel = decode(req.path.trim_start_matches('/'));
        if rel.split('/').any(|p| p == "..") {
            return Resp::empty(400);
        }
        let Ok(data) = std::fs::read(root.join(&rel)) else {
            return Resp::empty(404);
        };
        let len = data.len() as u64;
        let mut headers = vec![
            ("Accept-Ranges".to_string(), "bytes".to_string()),
            ("ETag".to_string(), format!("\"{len}\"")),
        ];
        match req.headers.get("range").and_then(|r| parse_range(r, len)) {
            Some((a, b)) => {
                headers.push(("Content-Range".into(), format!("bytes {a}-{}/{len}", b - 1)));
                Resp {
                    status: 206,
                    headers,
                    body: data[a as usize..b as usize].to_vec(),
                }
            }
            None => Resp {
                status: 200,
                headers,
                body: data,
            },
        }
    }
}

/// How the hand-written STAC API behaves.
#[derive(Debug, Clone, Default)]
pub struct MockSettings {
    /// Items per page.
    pub page_size: usize,
    /// Conformance classes besides core and item-search (e.g. the filter or query ones).
    pub conforms: Vec<String>,
    /// Answer POST /search with 405 (GET only); next links are GET then.
    pub get_only: bool,
    /// With `get_only`, still offer POST on the landing page (as some servers do).
    pub offer_post: bool,
    /// Answer the first n /search requests with 429 and this `Retry-After`.
    pub throttle_first: usize,
    /// The `Retry-After` of those answers.
    pub retry_after: String,
    /// Next links of POST searches carry only the page token with `merge: true`.
    pub merge: bool,
    /// Send `numberMatched`.
    pub matched: bool,
    /// Expiry of SAS tokens, from now.
    pub token_ttl: Duration,
}

/// Counters of the hand-written API.
#[derive(Default)]
pub struct MockCounts {
    /// /search requests.
    pub searches: AtomicUsize,
    /// Token requests.
    pub tokens: AtomicUsize,
}

/// The hand-written STAC API and SAS token endpoint.
pub struct MockApi {
    /// The server.
    pub server: HttpServer,
    /// Counters.
    pub counts: Arc<MockCounts>,
}

/// Conformance class of the Filter extension with cql2-json.
pub const FILTER: [&str; 2] = [
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
];
/// Conformance class of the Query extension.
pub const QUERY: &str = "https://api.stacspec.org/v1.0.0/item-search#query";

impl MockApi {
    /// Serves `items` of `collections` (all of them, in order, whatever the search asks but
    /// `collections`, `limit` and the page token) with `settings`.
    pub fn start(collections: &[&str], items: Vec<Value>, settings: MockSettings) -> MockApi {
        let counts = Arc::new(MockCounts::default());
        let c2 = counts.clone();
        let collections: Vec<String> = collections.iter().map(|c| c.to_string()).collect();
        let base = Arc::new(Mutex::new(String::new()));
        let b2 = base.clone();
        let server = HttpServer::start(move |req| {
            let base = b2.lock().unwrap().clone();
            mock_answer(req, &base, &collections, &items, &settings, &c2)
        });
        *base.lock().unwrap() = server.base();
        MockApi { server, counts }
    }

    /// The landing page URL.
    pub fn url(&self) -> String {
        self.server.base()
    }

    /// Bodies (POST) or query strings (GET) of the /search requests.
    pub fn searches(&self) -> Vec<Req> {
        self.server
            .log()
            .into_iter()
            .filter(|r| r.path == "/search")
            .collect()
    }
}

fn mock_answer(
    req: &Req,
    base: &str,
    collections: &[String],
    items: &[Value],
    s: &MockSettings,
    counts: &MockCounts,
) -> Resp {
    let mut conforms = vec![
        "https://api.stacspec.org/v1.0.0/core".to_string(),
        "https://api.stacspec.org/v1.0.0/item-search".to_string(),
    ];
    conforms.extend(s.conforms.iter().cloned());
    match req.path.as_str() {
        "/" | "" => Resp::json(
            200,
            &json!({
                "type": "Catalog", "id": "mock", "stac_version": "1.0.0", "description": "mock",
                "conformsTo": conforms,
                "links": [
                    {"rel": "search", "href": format!("{base}/search"), "method": "GET"},
                    {"rel": "search", "href": format!("{base}/search"), "method": if s.get_only && !s.offer_post { "GET" } else { "POST" }},
                    {"rel": "data", "href": format!("{base}/collections")}
                ]
            }),
        ),
        "/collections" => Resp::json(
            200,
            &json!({"collections": collections.iter().map(|c| json!({"id": c})).collect::<Vec<_>>(), "links": []}),
        ),
        p if p.starts_with("/collections/") => {
            let id = &p["/collections/".len()..];
            if collections.iter().any(|c| c == id) {
                Resp::json(200, &json!({"id": id, "type": "Collection"}))
            } else {
                Resp::json(
                    404,
                    &json!({"code": "NotFound", "description": format!("Collection {id} does not exist.")}),
                )
            }
        }
        p if p.starts_with("/api/sas/v1/token/") => {
            counts.tokens.fetch_add(1, Ordering::SeqCst);
            let collection = &p["/api/sas/v1/token/".len()..];
            let expiry = chrono::Utc::now() + chrono::Duration::from_std(s.token_ttl).unwrap();
            Resp::json(
                200,
                &json!({
                    "msft:expiry": expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "token": format!("st=2026&se=2030&sp=rl&sv=2021&sr=c&sig={collection}-{}", counts.tokens.load(Ordering::SeqCst))
                }),
            )
        }
        "/search" => {
            let n = counts.searches.fetch_add(1, Ordering::SeqCst);
            if n < s.throttle_first {
                return Resp {
                    status: 429,
                    headers: vec![("Retry-After".into(), s.retry_after.clone())],
                    body: br#"{"code": "TooManyRequests", "description": "slow down"}"#.to_vec(),
                };
            }
            if s.get_only && req.method == "POST" {
                return Resp::empty(405);
            }
            let (wanted, token, datetime): (Vec<String>, usize, Option<String>) =
                if req.method == "POST" {
                    let b = req.json();
                    let wanted = b["collections"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|c| c.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        wanted,
                        b["token"]
                            .as_str()
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(0),
                        b["datetime"].as_str().map(str::to_string),
                    )
                } else {
                    let wanted = req
                        .param("collections")
                        .map(|c| c.split(',').map(str::to_string).collect())
                        .unwrap_or_default();
                    (
                        wanted,
                        req.param("token").and_then(|t| t.parse().ok()).unwrap_or(0),
                        req.param("datetime"),
                    )
                };
            // Datetime intervals `start/end` (open ends `..`); other criteria are not applied.
            let in_time = |i: &Value| -> bool {
                let Some(range) = &datetime else { return true };
                let Some((a, b)) = range.split_once('/') else {
                    return true;
                };
                let t = i["properties"]["datetime"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                let Some(t) = t else { return false };
                let end = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
                (a == ".." || end(a).is_some_and(|a| t >= a))
                    && (b == ".." || end(b).is_some_and(|b| t <= b))
            };
            let matching: Vec<&Value> = items
                .iter()
                .filter(|i| {
                    (wanted.is_empty()
                        || wanted.iter().any(|w| i["collection"].as_str() == Some(w)))
                        && in_time(i)
                })
                .collect();
            let size = s.page_size.max(1);
            let page: Vec<Value> = matching
                .iter()
                .skip(token)
                .take(size)
                .map(|v| (*v).clone())
                .collect();
            let mut links = vec![];
            if token + size < matching.len() {
                let next = token + size;
                links.push(if req.method == "POST" {
                    if s.merge {
                        json!({"rel": "next", "href": format!("{base}/search"), "method": "POST",
                               "body": {"token": next.to_string()}, "merge": true,
                               "headers": {"X-Page": next.to_string()}})
                    } else {
                        let mut body = req.json();
                        body["token"] = json!(next.to_string());
                        json!({"rel": "next", "href": format!("{base}/search"), "method": "POST", "body": body})
                    }
                } else {
                    let q: Vec<String> = req
                        .query
                        .split('&')
                        .filter(|kv| !kv.starts_with("token="))
                        .map(str::to_string)
                        .collect();
                    json!({"rel": "next", "href": format!("{base}/search?{}&token={next}", q.join("&"))})
                });
            }
            let mut answer = json!({"type": "FeatureCollection", "features": page, "links": links});
            if s.matched {
                answer["numberMatched"] = json!(matching.len());
            }
            Resp::json(200, &answer)
        }
        _ => Resp::json(
            404,
            &json!({"code": "NotFound", "description": "no such path"}),
        ),
    }
}

/// A `rustac serve` process; killed (by its PID) when dropped.
pub struct Rustac {
    child: std::process::Child,
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    /// The port.
    pub port: u16,
}

/// The `rustac` executable of `.ci/run`'s virtual environment (beside `PIXELQUERY_PYTHON`),
/// or `None` (the test skips, saying so) unless `PIXELQUERY_REQUIRE_PYTHON` is set.
pub fn rustac() -> Option<PathBuf> {
    let found = std::env::var_os("PIXELQUERY_PYTHON")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(|d| d.join("rustac")))
        .filter(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("PIXELQUERY_REQUIRE_PYTHON").is_some() {
            panic!("no rustac beside PIXELQUERY_PYTHON (add rustac to .ci/requirements.txt), and PIXELQUERY_REQUIRE_PYTHON is set");
        }
        eprintln!("skipped: no rustac (set PIXELQUERY_PYTHON to .ci/run's venv python, see .ci/python-env)");
    }
    found
}

/// A free port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Rustac {
    /// Starts `rustac serve` on `port` (0: a free one) with `hrefs` (collections and item
    /// collections), and waits until it answers.
    pub fn start(exe: &Path, port: u16, hrefs: &[PathBuf]) -> Rustac {
        let port = if port == 0 { free_port() } else { port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = format!("http://127.0.0.1:{port}");
            let child = std::process::Command::new(exe)
                .arg("serve")
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .args(hrefs)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start rustac serve");
            let mut server = Rustac { child, url, port };
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // exited: the port was not free yet; start again
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() && server.answers() {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(
                Instant::now() < deadline,
                "rustac serve did not start on port {port}"
            );
            drop(server);
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200")
    }
}

impl Drop for Rustac {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A STAC Collection document for `rustac serve`.
pub fn collection(id: &str) -> Value {
    json!({
        "type": "Collection", "stac_version": "1.0.0", "id": id, "description": id,
        "license": "proprietary", "links": [],
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[null, null]]}}
    })
}
