//! Remote COG reads over loopback HTTP against the local-file path, in the same run.
//!
//! For each corpus scene (served by the crate's test server on 127.0.0.1) it prints how many
//! requests and bytes `inspect` (header only) and a full decode of the full-resolution level
//! cost, the bytes of the tiles actually needed (sum of TileByteCounts), and the median wall
//! time of each against the same work on the local file.
//!
//! `cargo bench --bench remote` (env: `PQ_BENCH_SCENES`, default 3 scenes;
//! `PQ_BENCH_RUNS`, default 7 runs per timing). Needs `../shared/corpus` beside the checkout.

#[path = "../tests/support/server.rs"]
mod server;

use pixelquery::cog::{Cog, Window};
use pixelquery::source::{self, TransferStats};
use server::{Behaviour, Server};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn decode(cog: &Cog) {
    let meta = cog.meta();
    let bands: Vec<usize> = (0..meta.band_count()).collect();
    let window = Window::full(meta.width(), meta.height());
    std::hint::black_box(cog.read_window_any(0, window, &bands).expect("decode"));
}

fn delta(a: TransferStats, b: TransferStats) -> (u64, u64) {
    (a.requests - b.requests, a.bytes - b.bytes)
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/ts");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("remote bench: no corpus at {}; skipped", dir.display());
        return;
    };
    let mut scenes: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tif"))
        .collect();
    scenes.sort();
    scenes.truncate(env_usize("PQ_BENCH_SCENES", 3));
    let runs = env_usize("PQ_BENCH_RUNS", 7).max(1);

    println!(
        "{:<28} {:>9} {:>9} | {:>9} {:>10} {:>10} {:>7} | {:>8} {:>8} {:>6} | {:>8} {:>8} {:>6}",
        "scene",
        "hdr req",
        "hdr KiB",
        "tile req",
        "tile bytes",
        "needed",
        "over%",
        "insp loc",
        "insp http",
        "x",
        "dec loc",
        "dec http",
        "x"
    );
    for path in &scenes {
        let data = std::fs::read(path).expect("read scene");
        let server = Server::start(data, Behaviour::default());
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let url = server.url(&format!("/{name}"));

        // Transfer figures, from one cold open + full decode.
        let src = source::open(&url).expect("open over http");
        let cog = Cog::from_source(src.clone()).expect("parse header over http");
        let header = src.stats().expect("remote stats");
        decode(&cog);
        let (tile_requests, tile_bytes) = delta(src.stats().unwrap(), header);
        let needed: u64 = cog.meta().levels[0].byte_counts.iter().sum();
        let overhead = 100.0 * (tile_bytes as f64 - needed as f64) / needed as f64;

        // Same pixels either way.
        let local = Cog::open(path).expect("open local");
        let meta = local.meta();
        let bands: Vec<usize> = (0..meta.band_count()).collect();
        let full = Window::full(meta.width(), meta.height());
        assert_eq!(
            format!(
                "{:?}",
                local.read_window_any(0, full, &bands).unwrap().shape()
            ),
            format!(
                "{:?}",
                cog.read_window_any(0, full, &bands).unwrap().shape()
            )
        );
        assert_eq!(local.pixel_hash().unwrap(), cog.pixel_hash().unwrap());

        let inspect_local = median(runs, || {
            std::hint::black_box(Cog::open(path).unwrap());
        });
        let inspect_http = median(runs, || {
            std::hint::black_box(Cog::from_source(source::open(&url).unwrap()).unwrap());
        });
        let decode_local = median(runs, || decode(&Cog::open(path).unwrap()));
        let decode_http = median(runs, || {
            decode(&Cog::from_source(source::open(&url).unwrap()).unwrap())
        });
        println!(
            "{:<28} {:>9} {:>9.1} | {:>9} {:>10} {:>10} {:>6.3}% | {:>7.2}ms {:>7.2}ms {:>6.1} | {:>6.1}ms {:>6.1}ms {:>6.2}",
            name,
            header.requests,
            header.bytes as f64 / 1024.0,
            tile_requests,
            tile_bytes,
            needed,
            overhead,
            ms(inspect_local),
            ms(inspect_http),
            ms(inspect_http) / ms(inspect_local),
            ms(decode_local),
            ms(decode_http),
            ms(decode_http) / ms(decode_local),
        );
    }
    println!(
        "hdr = Cog::from_source(source::open(url)); tile = full-resolution decode of all bands \
         after it; needed = sum of level-0 TileByteCounts; over% = (tile bytes - needed) / needed; \
         times are medians of {runs} cold runs (open + work), x = http / local."
    );
}
