//! The map page in a real browser: Debian's Chromium, headless, driven by chromedriver's
//! WebDriver HTTP API. The page loads its tiles from the server, a click on the map charts the
//! pixel's history, and the chart's points must equal `pixelquery query --point` for the
//! clicked place. Skipped when Chromium or chromedriver is missing, unless
//! `PIXELQUERY_REQUIRE_BROWSER` is set (CI sets it). `PIXELQUERY_SCREENSHOT=FILE` keeps the
//! screenshot (the README's `docs/serve.png`).

mod common;
mod serve_support;

use pixelquery::serve::ServeOptions;
use serde_json::{json, Value};
use serve_support::*;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver with one headless Chromium session; both end when this is dropped.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Option<Browser> {
        if !(Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file()) {
            if std::env::var_os("PIXELQUERY_REQUIRE_BROWSER").is_some() {
                panic!("{CHROMIUM} or {CHROMEDRIVER} is missing and PIXELQUERY_REQUIRE_BROWSER is set (apt-get install chromium chromium-driver)");
            }
            eprintln!("skipped: no {CHROMIUM} / {CHROMEDRIVER} (apt-get install chromium chromium-driver)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        // chromedriver listens before it answers: early connections hang, so probe with a
        // short timeout until /status says ready.
        let ready = Instant::now() + Duration::from_secs(30);
        while !status_ready(addr) {
            assert!(Instant::now() < ready, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,860",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = browser.call("POST", "/session", Some(caps));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Some(browser)
    }

    /// One WebDriver command; returns its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        let r = request(self.addr, method, path, headers, body.as_bytes());
        let v = r.json();
        assert!(r.status == 200, "{method} {path}: {}", r.text());
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn script(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// A `data-` attribute of the page's body (camelCase name).
    fn body_data(&self, name: &str) -> String {
        self.script(&format!("return document.body.dataset.{name} || '';"))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits until `done` holds, failing with `what` after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Browser) -> bool) {
        let until = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; page status: {}",
                self.script("return document.getElementById('status').textContent + ' | ' + JSON.stringify(document.body.dataset);")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                &[],
                b"",
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// True when chromedriver at `addr` answers `/status` with `ready` within half a second.
fn status_ready(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let probe = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(probe.as_bytes()).is_err() {
        return false;
    }
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.contains("\"ready\":true")
}

/// Standard base64 (the screenshot).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let n = chunk.iter().filter(|&&c| c != b'=').count();
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= (if c == b'=' { 0 } else { value(c) } as u32) << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..n]);
    }
    out
}

#[test]
fn the_map_page_charts_a_clicked_pixel_like_query_point() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let wh = demo_warehouse();
    let server = serve(wh, ServeOptions::default());
    let (lon, lat) = pixelquery::demo::sample_point();
    let page = format!(
        "http://{}/?date=2024-08-27&show=index:ndvi&cmap=rdylgn&lat={lat}&lon={lon}&z=14",
        server.addr
    );
    browser.session_call("POST", "/url", Some(json!({ "url": page })));
    browser.wait_for("the page and its tiles", Duration::from_secs(60), |b| {
        b.body_data("ready") == "1" && b.body_data("tilesLoaded").parse::<u32>().unwrap_or(0) >= 4
    });
    assert_eq!(browser.body_data("tilesErrors"), "0");
    let layer = browser.body_data("layer");
    assert!(
        layer.contains("/tiles/WebMercatorQuad/{z}/{x}/{y}.png?") && layer.contains("index=ndvi"),
        "{layer}"
    );

    // A real click (WebDriver pointer actions) a little off the map's centre.
    let map = browser.session_call(
        "POST",
        "/element",
        Some(json!({"using": "css selector", "value": "#map"})),
    );
    let map_id = map[ELEMENT].as_str().unwrap().to_string();
    browser.session_call(
        "POST",
        "/actions",
        Some(json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": {ELEMENT: map_id}, "x": 23, "y": -17},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0},
            ],
        }]})),
    );
    browser.wait_for("the chart", Duration::from_secs(60), |b| {
        b.body_data("chartState") == "ready"
    });
    let clicked = browser.body_data("clicked");
    let points: Value = serde_json::from_str(&browser.body_data("chartPoints")).unwrap();
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 8, "one NDVI value per date: {points:?}");
    // The URL now holds the view and the clicked pixel, to share.
    let url = browser.script("return location.href;");
    let url = url.as_str().unwrap();
    for part in [
        "date=2024-08-27",
        "show=index%3Andvi",
        "plon=",
        "plat=",
        "z=14",
    ] {
        assert!(url.contains(part), "{url} lacks {part}");
    }

    // The same pixel through the CLI.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.json");
    let (code, _, err) = common::run_cli(
        &[
            "query",
            &wh.display().to_string(),
            "--point",
            &clicked,
            "--index",
            "ndvi",
            "--mask",
            "clouds",
            "--out",
            &out.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let rows = cli["rows"].as_array().unwrap();
    assert_eq!(rows.len(), points.len());
    for (row, point) in rows.iter().zip(points) {
        let want = json!([
            row["time"],
            row["band"],
            row.get("value").cloned().unwrap_or(Value::Null)
        ]);
        assert_eq!(point, &want, "at {clicked}");
    }
    assert!(
        points.iter().any(|p| p[2].is_null()),
        "the cloudy date is masked: {points:?}"
    );

    let shot = browser.session_call("GET", "/screenshot", None);
    let png = base64_decode(shot.as_str().unwrap());
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let info = decoder.read_info().unwrap().info().clone();
    assert!(
        info.width >= 1000 && info.height >= 700,
        "{}x{}",
        info.width,
        info.height
    );
    if let Some(path) = std::env::var_os("PIXELQUERY_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
    }
    drop(browser);
    server.stop().unwrap();
}
