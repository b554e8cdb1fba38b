//! HTTP/1.1 on a socket: reading requests (`httparse`) within size and time limits, writing
//! responses, keep-alive. Knows nothing of the endpoints: a connection hands each request to
//! a handler and writes back what it returns.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers a request may have.
pub const MAX_HEADERS: usize = 64;
/// Largest request body (GeoJSON of `/statistics`).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Socket limits of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a kept-alive connection may sit idle before it is closed.
    pub idle: Duration,
    /// How long a client may take to send one whole request once it has begun.
    pub request: Duration,
    /// How long writing a response may block.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            idle: Duration::from_secs(15),
            request: Duration::from_secs(15),
            write: Duration::from_secs(30),
        }
    }
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path as sent, before `?` (still percent-encoded).
    pub path: String,
    /// The query string after `?` (still percent-encoded), empty when none.
    pub query: String,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// The client asked to keep the connection open (HTTP/1.1 default).
    pub keep_alive: bool,
}

impl Request {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers besides `Content-Length`, `Connection` and `Date`.
    pub headers: Vec<(&'static str, String)>,
    /// The body (left out for `HEAD` and `304`).
    pub body: Cow<'static, [u8]>,
}

impl Response {
    /// A response with a body of `content_type`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Cow<'static, [u8]>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The value of a header this response has.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Why a request could not be read.
#[derive(Debug)]
enum ReadError {
    /// The peer closed or went idle between requests: close quietly.
    Closed,
    /// A malformed or oversized request: answer this status, then close.
    Reject(u16, &'static str),
    /// The socket failed: close.
    Io,
}

/// Reads requests from `stream` and writes `handle`'s responses until the client closes,
/// stays idle too long, sends a bad request, or `stopping` is set.
pub fn serve_connection(
    mut stream: TcpStream,
    timeouts: Timeouts,
    stopping: &AtomicBool,
    mut handle: impl FnMut(&Request) -> Response,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(timeouts.write));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let request = match read_request(&mut stream, &mut buf, timeouts) {
            Ok(r) => r,
            Err(ReadError::Reject(status, why)) => {
                let body = format!("{{\"error\":\"{why}\",\"status\":{status}}}\n").into_bytes();
                let resp = Response::new(status, "application/json", body);
                if write_response(&mut stream, &resp, false, false).is_ok() {
                    linger(&mut stream);
                }
                return;
            }
            Err(ReadError::Closed | ReadError::Io) => return,
        };
        let response = handle(&request);
        let keep = request.keep_alive && !stopping.load(Ordering::Relaxed);
        let head_only = request.method == "HEAD";
        if write_response(&mut stream, &response, keep, head_only).is_err() || !keep {
            return;
        }
    }
}

/// After refusing a request, reads (and drops) what the client is still sending, for a
/// moment: closing with unread bytes would reset the connection and could lose the answer.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 16384];
    let mut drained = 0usize;
    while drained < 2 * MAX_BODY_BYTES {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return;
        };
        if stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Reads one request; bytes of a pipelined next request stay in `buf`.
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeouts: Timeouts,
) -> Result<Request, ReadError> {
    // Wait (idle timeout) for the first byte, then give the whole request `request` time.
    let mut deadline: Option<Instant> =
        (!buf.is_empty()).then(|| Instant::now() + timeouts.request);
    let head_len = loop {
        if let Some(end) = find_head_end(buf) {
            if end > MAX_HEAD_BYTES {
                return Err(ReadError::Reject(431, "request head too large"));
            }
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(ReadError::Reject(431, "request head too large"));
        }
        let wait = match deadline {
            None => timeouts.idle,
            Some(d) => d
                .checked_duration_since(Instant::now())
                .filter(|w| !w.is_zero())
                .ok_or(ReadError::Reject(408, "request not received in time"))?,
        };
        match fill(stream, buf, wait) {
            Ok(0) if buf.is_empty() => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Io),
            Ok(_) => {
                deadline.get_or_insert_with(|| Instant::now() + timeouts.request);
            }
            Err(e) if is_timeout(&e) && deadline.is_none() => return Err(ReadError::Closed),
            Err(e) if is_timeout(&e) => {
                return Err(ReadError::Reject(408, "request not received in time"))
            }
            Err(_) => return Err(ReadError::Io),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ReadError::Reject(400, "malformed request")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Reject(431, "too many headers"))
        }
        Err(_) => return Err(ReadError::Reject(400, "malformed request")),
    }
    let method = parsed.method.unwrap_or("").to_string();
    let target = parsed.path.unwrap_or("");
    let http10 = parsed.version == Some(0);
    let mut header_list = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| ReadError::Reject(400, "header value is not UTF-8"))?;
        header_list.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |name: &str| {
        header_list
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if header("transfer-encoding").is_some() {
        return Err(ReadError::Reject(
            501,
            "chunked request bodies are not supported: send Content-Length",
        ));
    }
    let length = match header("content-length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ReadError::Reject(400, "invalid Content-Length"))?,
    };
    if length > MAX_BODY_BYTES {
        return Err(ReadError::Reject(413, "request body larger than 1 MiB"));
    }
    let connection = header("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let expects_continue = header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    buf.drain(..head_len);
    if length > buf.len() && expects_continue {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadError::Io)?;
    }
    let deadline = deadline.unwrap_or_else(|| Instant::now() + timeouts.request);
    while buf.len() < length {
        let wait = deadline
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
            .ok_or(ReadError::Reject(408, "request body not received in time"))?;
        match fill(stream, buf, wait) {
            Ok(0) => return Err(ReadError::Io),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                return Err(ReadError::Reject(408, "request body not received in time"))
            }
            Err(_) => return Err(ReadError::Io),
        }
    }
    let body: Vec<u8> = buf.drain(..length).collect();
    Ok(Request {
        method,
        path,
        query,
        headers: header_list,
        body,
        keep_alive,
    })
}

/// End of the head (index after `\r\n\r\n`), if it has arrived.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Reads what is available (waiting at most `wait`) onto the end of `buf`.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> io::Result<usize> {
    stream.set_read_timeout(Some(wait))?;
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Writes a response (without its body for `HEAD` and `304`).
pub fn write_response(
    stream: &mut impl Write,
    response: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    use std::fmt::Write as _;
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        response.status,
        reason(response.status),
        response.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (name, value) in &response.headers {
        // Values are ours; a stray line break would split the header.
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    let with_body = !head_only && response.status != 304 && response.status != 204;
    let mut out = Vec::with_capacity(head.len() + if with_body { response.body.len() } else { 0 });
    out.extend_from_slice(head.as_bytes());
    if with_body {
        out.extend_from_slice(&response.body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connection served on a thread with `handle`; returns the client side.
    fn connect(timeouts: Timeouts) -> (TcpStream, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let stop = AtomicBool::new(false);
            serve_connection(s, timeouts, &stop, |r| {
                let body = format!("{} {} {} {}", r.method, r.path, r.query, r.body.len());
                Response::new(200, "text/plain", body.into_bytes())
            });
        });
        (TcpStream::connect(addr).unwrap(), server)
    }

    fn read_all(mut s: TcpStream) -> String {
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn keep_alive_pipelining_and_close() {
        let (mut c, server) = connect(Timeouts::default());
        c.write_all(b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
            .unwrap();
        let text = read_all(c);
        server.join().unwrap();
        assert!(text.contains("GET /a x=1 0"), "{text}");
        assert!(text.contains("POST /b  3"), "{text}");
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert!(text.contains("Connection: close"), "{text}");
    }

    #[test]
    fn oversized_and_malformed_requests_are_refused() {
        for (request, status) in [
            (
                format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES + 10)),
                "431",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n".to_string(),
                "413",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
                "501",
            ),
            ("GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_string(), "400"),
        ] {
            let (mut c, server) = connect(Timeouts::default());
            c.write_all(request.as_bytes()).unwrap();
            let text = read_all(c);
            server.join().unwrap();
            let start: String = text.chars().take(200).collect();
            assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{start}");
        }
    }

    #[test]
    fn slow_clients_time_out() {
        let timeouts = Timeouts {
            idle: Duration::from_millis(300),
            request: Duration::from_millis(300),
            write: Duration::from_secs(1),
        };
        // Half a request, then silence: 408.
        let (mut c, server) = connect(timeouts);
        c.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let text = read_all(c);
        server.join().unwrap();
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        // Nothing at all: closed without a word.
        let (c, server) = connect(timeouts);
        let text = read_all(c);
        server.join().unwrap();
        assert_eq!(text, "");
    }
}
