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
mod support;

use pixelquery::cog::{Cog, Window};
use pixelquery::source::{self, TransferStats};
use server::{Behaviour, Server};
use std::path::PathBuf;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let Some(entries) = support::corpus().and_then(|c| std::fs::read_dir(c.join("ts")).ok()) else {
        println!("remote bench: no ../shared/corpus/ts beside the checkout; skipped");
        return;
    };
    let mut scenes: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tif"))
        .collect();
    scenes.sort();
    // `cargo test --all-targets` runs this too (without `--bench`): then one quick pass.
    let bench = std::env::args().any(|a| a == "--bench");
    scenes.truncate(if bench {
        env_usize("PQ_BENCH_SCENES", 3)
    } else {
        1
    });
    let runs = if bench {
        env_usize("PQ_BENCH_RUNS", 7).max(1)
    } else {
        1
    };

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

        let inspect_local = support::median_secs(runs, || Cog::open(path).unwrap());
        let inspect_http = support::median_secs(runs, || {
            Cog::from_source(source::open(&url).unwrap()).unwrap()
        });
        let decode_local = support::median_secs(runs, || decode(&Cog::open(path).unwrap()));
        let decode_http = support::median_secs(runs, || {
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
            inspect_local * 1e3,
            inspect_http * 1e3,
            inspect_http / inspect_local,
            decode_local * 1e3,
            decode_http * 1e3,
            decode_http / decode_local,
        );
    }
    println!(
        "hdr = Cog::from_source(source::open(url)); tile = full-resolution decode of all bands \
         after it; needed = sum of level-0 TileByteCounts; over% = (tile bytes - needed) / needed; \
         times are medians of {runs} cold runs (open + work), x = http / local."
    );
}
