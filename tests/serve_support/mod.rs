//! Helpers of the `serve` tests: a demo warehouse built once per test binary, copies of it
//! for tests that commit, a server on a free port, and a plain HTTP/1.1 client.

#![allow(dead_code)]

use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use pixelquery::serve::{Running, ServeOptions, Server};
use pixelquery::store::Warehouse;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The demo series (8 dates, a cloud on 2024-07-23) ingested as `sentinel2_l2a`, built once.
pub fn demo_warehouse() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, wh) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let scenes = dir.path().join("scenes");
        pixelquery::demo::write_scenes(&scenes).unwrap();
        let wh = dir.path().join("wh");
        ingest_into(&wh, &scenes);
        (dir, wh)
    });
    wh
}

/// Ingests a folder of demo scenes into `wh` as `sentinel2_l2a` (one commit).
pub fn ingest_into(wh: &Path, scenes: &Path) {
    let options = IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    };
    ingest(wh, &[scenes.display().to_string()], &options, &Quiet).unwrap();
}

/// A private copy of the demo warehouse (for tests that commit to it).
pub fn demo_copy(into: &Path) -> PathBuf {
    let to = into.join("wh");
    copy_dir(demo_warehouse(), &to);
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A server on 127.0.0.1 (a free port) over `wh`, checking for new versions on every request.
pub fn serve(wh: &Path, options: ServeOptions) -> Running {
    let warehouse = Warehouse::open(wh).unwrap();
    let options = options
        .with_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .with_refresh(Duration::ZERO);
    Server::bind(warehouse, options).unwrap().spawn()
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Decodes a PNG body: (width, height, RGBA).
    pub fn png(&self) -> (u32, u32, Vec<u8>) {
        assert_eq!(
            self.header("content-type"),
            Some("image/png"),
            "{}",
            self.text()
        );
        let decoder = png::Decoder::new(std::io::Cursor::new(&self.body));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgba);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server that refuses the request may stop reading the body: its answer still counts.
    let _ = s.write_all(body);
    // Read the head, then Content-Length bytes (some servers keep the connection open).
    let mut raw = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let no_body = method == "HEAD"
                || head.starts_with("http/1.1 304")
                || head.starts_with("http/1.1 204");
            if no_body || raw.len() >= end + 4 + length {
                break;
            }
        }
        let n = s.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    parse_reply(&raw, method == "HEAD")
}

/// `GET target`.
pub fn get(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target, &[], b"")
}

fn parse_reply(raw: &[u8], head_only: bool) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = raw[end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .expect("Content-Length");
    if !head_only && method_has_body(status) {
        assert_eq!(body.len(), length, "body length");
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn method_has_body(status: u16) -> bool {
    status != 304 && status != 204
}

/// Web Mercator tile indices of a lon/lat at zoom `z`.
pub fn tile_of(lon: f64, lat: f64, z: u8) -> (u64, u64) {
    let n = (1u64 << z) as f64;
    let x = ((lon + 180.0) / 360.0 * n).floor() as u64;
    let y =
        ((1.0 - lat.to_radians().tan().asinh() / std::f64::consts::PI) / 2.0 * n).floor() as u64;
    (x, y)
}

/// A `pixelquery serve` child process, killed by its PID if a test ends before stopping it.
pub struct ServerProcess(pub std::process::Child);

impl ServerProcess {
    /// Sends SIGTERM and waits for the process to end.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        self.0.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
