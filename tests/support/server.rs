//! A tiny HTTP/1.1 file server on 127.0.0.1 for tests and benches: one file, `Range` support,
//! keep-alive, and programmable misbehaviour (ignore `Range`, fixed status, 500s, slowness,
//! a file that changes, malformed answers). It binds port 0 and never contacts anything.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Malformed answers to range requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hostile {
    /// Well-behaved.
    #[default]
    No,
    /// 206 without `Content-Range`.
    NoContentRange,
    /// 206 whose `Content-Range` names other bytes than asked.
    WrongContentRange,
    /// 206 with a body longer than the range (and a matching `Content-Length`).
    LongBody,
    /// 206 announcing an absurd `Content-Length`, then the right bytes and a close.
    HugeContentLength,
    /// 206 with half the bytes asked for (and a matching `Content-Length`).
    ShortBody,
    /// 206 claiming `Content-Encoding: gzip`.
    Gzip,
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Answer 200 with the whole file, whatever the `Range`.
    pub ignore_range: bool,
    /// Answer every request with this status and an empty body.
    pub status: Option<u16>,
    /// Answer the first n requests with [`Behaviour::fail_status`].
    pub fail_first: u32,
    /// Status of those failures (default 500).
    pub fail_status: u16,
    /// `Retry-After` seconds sent with those failures.
    pub retry_after: Option<u32>,
    /// Answer requests for this path with a 302 to `/moved`.
    pub redirect_from: Option<&'static str>,
    /// Wait this long before answering...
    pub delay: Duration,
    /// ...only the first n requests (`None`: all of them).
    pub delay_first: Option<u32>,
    /// After n requests, serve [`Behaviour::changed`] with a new `ETag`/`Last-Modified`.
    pub change_after: Option<u32>,
    /// The new content (default: the old one with its first byte flipped).
    pub changed: Option<Vec<u8>>,
    /// Send an `ETag`.
    pub etag: bool,
    /// Send a `Last-Modified`.
    pub last_modified: bool,
    /// Answer 412 when `If-Match` does not match the current `ETag`.
    pub honor_if_match: bool,
    /// Malformed answers.
    pub hostile: Hostile,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            ignore_range: false,
            status: None,
            fail_first: 0,
            fail_status: 500,
            retry_after: None,
            redirect_from: None,
            delay: Duration::ZERO,
            delay_first: None,
            change_after: None,
            changed: None,
            etag: true,
            last_modified: true,
            honor_if_match: true,
            hostile: Hostile::No,
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Request path.
    pub path: String,
    /// Lower-cased header names and their values.
    pub headers: HashMap<String, String>,
}

impl Logged {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

struct State {
    content: Vec<u8>,
    behaviour: Behaviour,
    requests: AtomicU32,
    bytes: AtomicU64,
    log: Mutex<Vec<Logged>>,
}

/// A running server; it lives until the process ends.
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    scheme: &'static str,
}

impl Server {
    /// Serves `content` at every path of `http://127.0.0.1:{port}/`.
    pub fn start(content: Vec<u8>, behaviour: Behaviour) -> Server {
        Server::start_with(content, behaviour, serve::<TcpStream>)
    }

    /// Like [`Server::start`], over TLS with `config` (URLs are `https://`).
    #[cfg(all(
        feature = "https",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    pub fn start_tls(
        content: Vec<u8>,
        behaviour: Behaviour,
        config: Arc<rustls::ServerConfig>,
    ) -> Server {
        let mut server = Server::start_with(content, behaviour, move |stream, state| {
            if let Ok(conn) = rustls::ServerConnection::new(config.clone()) {
                serve(rustls::StreamOwned::new(conn, stream), state);
            }
        });
        server.scheme = "https";
        server
    }

    fn start_with(
        content: Vec<u8>,
        behaviour: Behaviour,
        handle: impl Fn(TcpStream, &State) + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            content,
            behaviour,
            requests: AtomicU32::new(0),
            bytes: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let handle = Arc::new(handle);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                let handle = handle.clone();
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = stream.set_nodelay(true);
                std::thread::spawn(move || handle(stream, &state));
            }
        });
        Server {
            addr,
            state,
            scheme: "http",
        }
    }

    /// The URL of `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// `http://127.0.0.1:{port}`.
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u32 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Body bytes written so far.
    pub fn bytes_sent(&self) -> u64 {
        self.state.bytes.load(Ordering::SeqCst)
    }

    /// The requests received so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }
}

fn serve<S: Read + Write>(stream: S, state: &State) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
        state.log.lock().unwrap().push(Logged {
            path: path.clone(),
            headers: headers.clone(),
        });
        if !answer(reader.get_mut(), state, n, &path, &headers) {
            return;
        }
    }
}

/// Writes the answer to request number `n`; false when the connection must close.
fn answer(
    out: &mut impl Write,
    state: &State,
    n: u32,
    path: &str,
    headers: &HashMap<String, String>,
) -> bool {
    let b = &state.behaviour;
    if b.delay > Duration::ZERO && b.delay_first.is_none_or(|k| n <= k) {
        std::thread::sleep(b.delay);
    }
    if let Some(status) = b.status {
        return respond(out, state, status, &[], &[]);
    }
    if b.redirect_from == Some(path) {
        let location = [("Location".to_string(), "/moved".to_string())];
        return respond(out, state, 302, &location, &[]);
    }
    if n <= b.fail_first {
        let retry_after: Vec<(String, String)> = b
            .retry_after
            .map(|s| ("Retry-After".to_string(), s.to_string()))
            .into_iter()
            .collect();
        return respond(out, state, b.fail_status, &retry_after, b"boom");
    }
    let changed = b.change_after.is_some_and(|k| n > k);
    let changed_content;
    let content: &[u8] = if changed {
        changed_content = b.changed.clone().unwrap_or_else(|| {
            let mut c = state.content.clone();
            if let Some(first) = c.first_mut() {
                *first ^= 0xff;
            }
            c
        });
        &changed_content
    } else {
        &state.content
    };
    let etag = if changed { "\"v2\"" } else { "\"v1\"" };
    let modified = if changed {
        "Wed, 02 Jan 2030 00:00:00 GMT"
    } else {
        "Tue, 01 Jan 2030 00:00:00 GMT"
    };
    let mut extra: Vec<(String, String)> = vec![("Accept-Ranges".into(), "bytes".into())];
    if b.etag {
        extra.push(("ETag".into(), etag.into()));
    }
    if b.last_modified {
        extra.push(("Last-Modified".into(), modified.into()));
    }
    if b.honor_if_match && b.etag {
        if let Some(wanted) = headers.get("if-match") {
            if wanted != etag {
                return respond(out, state, 412, &extra, &[]);
            }
        }
    }
    let len = content.len() as u64;
    let range = headers.get("range").and_then(|r| parse_range(r, len));
    let Some(range) = range.filter(|_| !b.ignore_range) else {
        if headers.contains_key("range") && !b.ignore_range {
            extra.push(("Content-Range".into(), format!("bytes */{len}")));
            return respond(out, state, 416, &extra, &[]);
        }
        return respond(out, state, 200, &extra, content);
    };
    let (start, end) = (range.0 as usize, range.1 as usize);
    let content_range = |s: u64, e: u64| {
        (
            "Content-Range".to_string(),
            format!("bytes {s}-{}/{len}", e - 1),
        )
    };
    match b.hostile {
        Hostile::No => {
            extra.push(content_range(range.0, range.1));
            respond(out, state, 206, &extra, &content[start..end])
        }
        Hostile::NoContentRange => respond(out, state, 206, &extra, &content[start..end]),
        Hostile::Gzip => {
            extra.push(content_range(range.0, range.1));
            extra.push(("Content-Encoding".into(), "gzip".into()));
            respond(out, state, 206, &extra, &content[start..end])
        }
        Hostile::WrongContentRange => {
            extra.push(content_range(range.0 + 1, range.1.min(len - 1) + 1));
            respond(out, state, 206, &extra, &content[start..end])
        }
        Hostile::LongBody => {
            extra.push(content_range(range.0, range.1));
            let mut body = content[start..end].to_vec();
            body.extend_from_slice(b"trailing garbage");
            respond(out, state, 206, &extra, &body)
        }
        Hostile::ShortBody => {
            extra.push(content_range(range.0, range.1));
            let half = start + (end - start) / 2;
            respond(out, state, 206, &extra, &content[start..half])
        }
        Hostile::HugeContentLength => {
            extra.push(content_range(range.0, range.1));
            let mut head = String::from("HTTP/1.1 206 Partial Content\r\n");
            for (k, v) in &extra {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("Content-Length: 1152921504606846976\r\nConnection: close\r\n\r\n");
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(&content[start..end]);
            state
                .bytes
                .fetch_add((end - start) as u64, Ordering::SeqCst);
            false
        }
    }
}

/// `bytes=a-b` or `bytes=a-` clamped to the file; `None` if unsatisfiable or not a single range.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let last: u64 = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse().ok()?
    };
    if start >= len || last < start {
        return None;
    }
    Some((start, last.min(len - 1) + 1))
}

fn respond(
    out: &mut impl Write,
    state: &State,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> bool {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        404 => "Not Found",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    state.bytes.fetch_add(body.len() as u64, Ordering::SeqCst);
    out.write_all(&message).is_ok() && out.flush().is_ok()
}
