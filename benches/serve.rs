//! `cargo bench --bench serve`: `pixelquery serve` on loopback, as a separate process (so its
//! resident memory is its own), against rio-tiler making the same tiles from the same COGs.
//!
//! Data: the 12 scenes of `corpus/ts` (`PQ_CORPUS`, default `../shared/corpus`; the demo
//! series without it) ingested into a new
//! warehouse. Layers: NDVI of one date, and the 12-month median NDVI, as 256 px Web Mercator
//! tiles at zoom 14 (about the data's 10 m), every tile that lies inside the data.
//!
//! - cold: a new server process; each tile of the set requested once, by 1, 8 or 32 clients
//!   at once (3 new processes each);
//! - warm: one server, after one pass over the tiles; each client sends its requests one
//!   after the other on a kept-alive connection (nothing is cached but opened fragments: every
//!   request queries, warps, colours and encodes its tile);
//! - the floor: `/healthz` round trips on the same connections (HTTP alone);
//! - the baseline: `benches/serve_riotiler.py` with the interpreter in `PQ_RIO_TILER_PYTHON` (a
//!   virtual environment with `pip install rio-tiler`; without it the rows say so), one
//!   process per layer, in-process calls (no HTTP), first pass cold, then warm;
//! - long life: the server with `--memory-budget 256` follows an ingest committing
//!   `PQ_BENCH_VERSIONS` (default 1000) versions, one small scene each, while 8 clients ask
//!   for tiles and points; its resident memory is sampled throughout.
//!
//! `PQ_BENCH_QUICK=1` runs fewer requests and 50 versions.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BUDGET_MB: u64 = 256;
const ZOOM: u8 = 14;

/// A `pixelquery serve` child process.
struct ServerProc {
    child: Child,
    addr: SocketAddr,
}

impl ServerProc {
    fn start(wh: &Path, extra: &[&str]) -> ServerProc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pixelquery"))
            .arg("serve")
            .arg(wh)
            .args(["--addr", "127.0.0.1:0", "--quiet"])
            .args(["--memory-budget", &BUDGET_MB.to_string()])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pixelquery serve");
        let mut first = String::new();
        BufReader::new(child.stderr.take().expect("stderr"))
            .read_line(&mut first)
            .expect("the server's first line");
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|s| s.trim().trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        ServerProc { child, addr }
    }

    /// (VmHWM, VmRSS) in MiB.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kb("VmHWM:") / 1024.0, kb("VmRSS:") / 1024.0)
    }

    /// SIGTERM, then wait.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A kept-alive HTTP/1.1 connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// GET: (status, body bytes).
    fn get(&mut self, target: &str) -> std::io::Result<(u16, usize)> {
        write!(
            self.stream,
            "GET {target} HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n"
        )?;
        self.buf.clear();
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    let n = self.stream.read(&mut chunk)?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return Ok((status, len));
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Latencies (seconds) of a run, its errors and wall time.
#[derive(Default)]
struct Run {
    latencies: Vec<f64>,
    errors: usize,
    wall: f64,
}

impl Run {
    fn merge(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.wall += other.wall;
    }

    fn pct(&self, q: f64) -> f64 {
        percentile(&self.latencies, q)
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.max(1e-9)
    }
}

fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// `clients` threads, client `k` sending `targets[k], targets[k + clients], ...` (`rounds`
/// times over its share), each on its own connection.
fn run_clients(addr: SocketAddr, clients: usize, targets: &[String], rounds: usize) -> Run {
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|k| {
            let mine: Vec<String> = targets.iter().skip(k).step_by(clients).cloned().collect();
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut run = Run::default();
                for _ in 0..rounds {
                    for t in &mine {
                        let t0 = Instant::now();
                        match conn.get(t) {
                            Ok((200, _)) => run.latencies.push(t0.elapsed().as_secs_f64()),
                            _ => {
                                run.errors += 1;
                                conn = Conn::open(addr);
                            }
                        }
                    }
                }
                run
            })
        })
        .collect();
    let mut all = Run::default();
    for t in threads {
        all.merge(t.join().expect("client thread"));
    }
    all.wall = start.elapsed().as_secs_f64();
    all
}

/// Web Mercator tiles at `z` lying wholly inside a lon/lat box.
fn tiles_inside(b: [f64; 4], z: u8) -> Vec<(u8, u64, u64)> {
    let n = (1u64 << z) as f64;
    let x = |lon: f64| (lon + 180.0) / 360.0 * n;
    let y = |lat: f64| (1.0 - lat.to_radians().tan().asinh() / std::f64::consts::PI) / 2.0 * n;
    let (x0, x1) = (x(b[0]).ceil() as u64, x(b[2]).floor() as u64);
    let (y0, y1) = (y(b[3]).ceil() as u64, y(b[1]).floor() as u64);
    let mut out = Vec::new();
    for ty in y0..y1 {
        for tx in x0..x1 {
            out.push((z, tx, ty));
        }
    }
    out
}

fn ms(s: f64) -> String {
    if s.is_nan() {
        "-".into()
    } else if s < 0.01 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

fn main() {
    let quick =
        std::env::var_os("PQ_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--test");
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenes = support::time_series(tmp.path());
    let wh = tmp.path().join("wh");
    let options = pixelquery::ingest::pipeline::IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    };
    let inputs: Vec<String> = scenes.iter().map(|p| p.display().to_string()).collect();
    pixelquery::ingest::pipeline::ingest(
        &wh,
        &inputs,
        &options,
        &pixelquery::ingest::pipeline::Quiet,
    )
    .expect("ingest the series");
    let info: serde_json::Value = {
        let server = ServerProc::start(&wh, &[]);
        let mut c = Conn::open(server.addr);
        c.get("/info").expect("info");
        let body = &c.buf[c.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        let v = serde_json::from_slice(body).expect("info JSON");
        server.stop();
        v
    };
    let bounds: Vec<f64> = serde_json::from_value(info["bounds"].clone()).expect("bounds");
    let dates: Vec<String> = serde_json::from_value(info["dates"].clone()).expect("dates");
    let tiles = tiles_inside([bounds[0], bounds[1], bounds[2], bounds[3]], ZOOM);
    assert!(!tiles.is_empty(), "no zoom {ZOOM} tile inside the data");
    let one_date = dates[dates.len() / 2].clone();
    let year = (&dates[0][..4], &dates[dates.len() - 1][..4]);
    let layers = [
        (
            "NDVI, one date",
            format!("index=ndvi&time={one_date}"),
            "one_date",
        ),
        (
            "NDVI, 12-month median",
            format!(
                "index=ndvi&time={}-01-01..{}-12-31&composite=median",
                year.0, year.1
            ),
            "median",
        ),
    ];
    println!(
        "\n{} scenes, {} zoom-{ZOOM} tiles of 256 px inside the data; one date = {one_date}; server --memory-budget {BUDGET_MB}",
        scenes.len(),
        tiles.len()
    );
    let (warm_rounds, cold_restarts) = if quick { (1, 1) } else { (4, 3) };

    // The rio-tiler baseline, one process per layer.
    // The baseline reads 4-band COGs (the corpus), not the demo's file per band.
    let rio = std::env::var_os("PQ_RIO_TILER_PYTHON")
        .map(PathBuf::from)
        .filter(|_| support::corpus().is_some());
    let mut rio_rows: Vec<(String, f64, f64, f64, f64, f64)> = Vec::new();
    let mut rio_versions = String::new();
    if let Some(python) = &rio {
        let files: Vec<String> = inputs.clone();
        let one_file = files
            .iter()
            .find(|f| f.contains(&one_date.replace('-', "")))
            .cloned()
            .unwrap_or_else(|| files[files.len() / 2].clone());
        for (name, _, key) in &layers {
            let job = serde_json::json!({
                "files": files, "one_date": one_file, "passes": 1 + warm_rounds,
                "tiles": tiles.iter().map(|t| [t.0 as u64, t.1, t.2]).collect::<Vec<_>>(),
                "layers": [key],
            });
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/serve_riotiler.py");
            let mut child = Command::new(python)
                .arg(&script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run the rio-tiler baseline");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(job.to_string().as_bytes())
                .unwrap();
            let out = child.wait_with_output().expect("rio-tiler output");
            assert!(out.status.success(), "the rio-tiler baseline failed");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("its JSON");
            let cold: Vec<f64> = serde_json::from_value(v[key]["cold"].clone()).unwrap();
            let warm: Vec<f64> = serde_json::from_value(v[key]["warm"].clone()).unwrap();
            let rate = warm.len() as f64 / warm.iter().sum::<f64>();
            rio_rows.push((
                name.to_string(),
                percentile(&cold, 0.5),
                percentile(&cold, 0.99),
                percentile(&warm, 0.5),
                percentile(&warm, 0.99),
                rate,
            ));
            rio_versions = v["versions"].to_string();
        }
    }

    println!("\n| layer | clients | cold p50 | cold p99 | warm p50 | warm p99 | warm p99 / p50 | warm tiles/s | errors | peak RSS |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut warm_p50 = Vec::new();
    for (name, params, _) in &layers {
        let targets: Vec<String> = tiles
            .iter()
            .map(|(z, x, y)| format!("/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{params}"))
            .collect();
        for clients in [1usize, 8, 32] {
            let mut cold = Run::default();
            let mut cold_rss: f64 = 0.0;
            for _ in 0..cold_restarts {
                let server = ServerProc::start(&wh, &[]);
                cold.merge(run_clients(server.addr, clients, &targets, 1));
                cold_rss = cold_rss.max(server.memory().0);
                server.stop();
            }
            let server = ServerProc::start(&wh, &[]);
            run_clients(server.addr, 1, &targets, 1);
            let rounds = (warm_rounds * if clients == 1 { 2 } else { 1 }).max(1);
            let mut warm = run_clients(server.addr, clients, &targets, rounds);
            if clients < targets.len() && clients > 1 {
                // Every client busy until the end: more rounds for few tiles per client.
                warm.merge(run_clients(server.addr, clients, &targets, rounds));
            }
            let (hwm, _) = server.memory();
            server.stop();
            if clients == 1 {
                warm_p50.push((name.to_string(), warm.pct(0.5)));
            }
            println!(
                "| {name} | {clients} | {} | {} | {} | {} | {:.1}x | {:.0} | {} | {:.0} MB |",
                ms(cold.pct(0.5)),
                ms(cold.pct(0.99)),
                ms(warm.pct(0.5)),
                ms(warm.pct(0.99)),
                warm.pct(0.99) / warm.pct(0.5),
                warm.rate(),
                cold.errors + warm.errors,
                hwm.max(cold_rss)
            );
        }
    }
    // HTTP alone.
    let server = ServerProc::start(&wh, &[]);
    let floor = run_clients(server.addr, 1, &vec!["/healthz".to_string(); 200], 1);
    server.stop();
    println!(
        "| floor: /healthz round trip | 1 | | | {} | {} | | {:.0} | {} | |",
        ms(floor.pct(0.5)),
        ms(floor.pct(0.99)),
        floor.rate(),
        floor.errors
    );
    if rio.is_none() {
        println!("| rio-tiler | - | not measured: needs the corpus (PQ_CORPUS) and PQ_RIO_TILER_PYTHON, a Python with rio-tiler | | | | | | | |");
    }
    for (name, c50, c99, w50, w99, rate) in &rio_rows {
        println!(
            "| rio-tiler: {name} | 1 (in process) | {} | {} | {} | {} | {:.1}x | {:.0} | | |",
            ms(*c50),
            ms(*c99),
            ms(*w50),
            ms(*w99),
            w99 / w50,
            rate
        );
    }
    for ((name, ours), (_, _, _, theirs, _, _)) in warm_p50.iter().zip(&rio_rows) {
        println!(
            "\nwarm p50, 1 client, {name}: rio-tiler / PixelQuery = {:.1}x",
            theirs / ours
        );
    }
    if !rio_versions.is_empty() {
        println!("baseline versions: {rio_versions}");
    }

    long_life(&wh, &dates, tmp.path(), quick);
}

/// The server follows an ingest committing one small scene per version while clients ask for
/// tiles; its resident memory is sampled every 250 ms.
fn long_life(wh: &Path, dates: &[String], tmp: &Path, quick: bool) {
    let versions: usize = std::env::var("PQ_BENCH_VERSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 50 } else { 1000 });
    // Small scenes (64 x 64 px, 4 bands) over the corpus area, one a day from 2024.
    let dir = tmp.join("versions");
    std::fs::create_dir_all(&dir).unwrap();
    let (x0, y0) = (399_960.0 + 640.0, 4_040_040.0 - 640.0);
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    for i in 0..versions {
        let day = start + chrono::Duration::days(i as i64);
        let (cx, cy) = ((i % 12) as f64, ((i / 12) % 12) as f64);
        let px = ndarray::Array3::<u16>::from_shape_fn((4, 64, 64), |(b, y, x)| {
            (500 + 800 * b + 7 * x + 3 * y + (i % 97)) as u16
        });
        let options = pixelquery::cog::WriteOptions {
            block_size: 64,
            transform: Some(pixelquery::GeoTransform::north_up(
                x0 + cx * 640.0,
                y0 - cy * 640.0,
                10.0,
                10.0,
            )),
            epsg: Some(32652),
            nodata: Some(0.0),
            band_descriptions: ["B02", "B03", "B04", "B08"].map(String::from).to_vec(),
            ..Default::default()
        };
        let path = dir.join(format!("V_{}_{i:05}.tif", day.format("%Y%m%d")));
        pixelquery::cog::write_cog(&path, px.view(), &options).expect("write a small scene");
    }
    let server = ServerProc::start(wh, &["--refresh", "0.5"]);
    let addr = server.addr;
    let (before, _) = server.memory();
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_pixelquery"))
        .arg("ingest")
        .arg(wh)
        .arg(&dir)
        .args(["--product", "sentinel2_l2a", "--commit-every", "1"])
        .args(["--date-pattern", r"_(\d{8})_"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the ingest");
    let done = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let year = &dates[0][..4];
    let center = tiles_inside([127.90, 36.42, 127.98, 36.49], ZOOM);
    let targets: Vec<String> = center
        .iter()
        .flat_map(|(z, x, y)| {
            [
                format!("/tiles/WebMercatorQuad/{z}/{x}/{y}.png?index=ndvi"),
                format!(
                    "/tiles/WebMercatorQuad/{z}/{x}/{y}.png?index=ndvi&time={year}-01-01..{year}-12-31&composite=median"
                ),
                "/point?lon=127.9407&lat=36.4548&index=ndvi".to_string(),
            ]
        })
        .collect();
    let clients: Vec<_> = (0..8)
        .map(|k| {
            let (done, requests, errors, targets) = (
                done.clone(),
                requests.clone(),
                errors.clone(),
                targets.clone(),
            );
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut i = k;
                while !done.load(Ordering::Relaxed) {
                    match conn.get(&targets[i % targets.len()]) {
                        Ok((200, _)) => {}
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            conn = Conn::open(addr);
                        }
                    }
                    requests.fetch_add(1, Ordering::Relaxed);
                    i += 8;
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    let mut max_rss: f64 = 0.0;
    let mut samples = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let (_, rss) = server.memory();
        max_rss = max_rss.max(rss);
        samples.push(rss);
        if ingest.try_wait().expect("ingest status").is_some() {
            break;
        }
    }
    let ingest_secs = t0.elapsed().as_secs_f64();
    // Let the server see the last version.
    std::thread::sleep(Duration::from_millis(1500));
    done.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let health = {
        let mut c = Conn::open(addr);
        c.get("/healthz").expect("healthz");
        let body = &c.buf[c.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        serde_json::from_slice::<serde_json::Value>(body).expect("healthz JSON")
    };
    let (hwm, rss) = server.memory();
    server.stop();
    let last_tenth = &samples[samples.len() - samples.len() / 10 - 1..];
    println!(
        "\nlong life: an ingest committed {versions} scenes, one per version, in {ingest_secs:.0} s; the server followed to version {} (--refresh 0.5) answering {} requests ({} errors) from 8 clients",
        health["version"],
        requests.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    println!(
        "server memory (MB): before {before:.0}, peak {hwm:.0} (VmHWM), sampled max {max_rss:.0}, at the end {rss:.0}, mean of the last tenth {:.0}; budget {BUDGET_MB} + 150 = {}; cache {}",
        last_tenth.iter().sum::<f64>() / last_tenth.len() as f64,
        BUDGET_MB + 150,
        health["cache"],
    );
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "resident memory through the ingest (MB): 10% {:.0}, 25% {:.0}, 50% {:.0}, 75% {:.0}, 100% {:.0}",
        at(0.1),
        at(0.25),
        at(0.5),
        at(0.75),
        at(1.0)
    );
}
