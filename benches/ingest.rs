//! Ingestion speed against its floor, measured in the same run.
//!
//! Ingest: the 12 scenes of `corpus/ts` (1024x1024x4 u16 DEFLATE COGs, EPSG:32652) into a
//! fresh warehouse (`sentinel2_l2a` profile, one commit), end to end: discovery, header
//! parsing, decoding, cutting onto the grid, fragment writes with fsync, catalog and commit.
//! Floor: decoding the same scenes (every tile of every band, `Cog::read_window`) with the
//! same threads. Without the corpus the demo series is used. Peak memory is the process's
//! VmHWM, reset before each ingest.
//!
//! `cargo bench --bench ingest`

mod support;

use criterion::Criterion;
use pixelquery::cog::{Cog, Window};
use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use rayon::prelude::*;
use std::path::PathBuf;

fn decode_all(files: &[PathBuf]) -> usize {
    files
        .par_iter()
        .map(|f| {
            let cog = Cog::open(f).unwrap();
            let m = cog.meta();
            let bands: Vec<usize> = (0..m.band_count()).collect();
            cog.read_window_any(0, Window::full(m.width(), m.height()), &bands)
                .unwrap()
                .shape()
                .0
        })
        .sum()
}

fn peak_rss_reset() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let files = support::time_series(tmp.path());
    let inputs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let options = IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    };
    // Ingests into a fresh warehouse and returns the report and the seconds it took;
    // deleting the warehouse afterwards is not timed.
    let run_ingest = |n: &mut usize| {
        *n += 1;
        let wh = tmp.path().join(format!("wh{n}"));
        let start = std::time::Instant::now();
        let r = ingest(&wh, &inputs, &options, &Quiet).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(r.scenes_ingested, files.len());
        let _ = std::fs::remove_dir_all(&wh);
        (r, secs)
    };
    let quick =
        std::env::args().any(|a| a == "--test") || std::env::var_os("PQ_BENCH_QUICK").is_some();
    let (p1, p2) = (support::pool(1), support::pool(2));
    let mut counter = 0;
    if !quick {
        let mut c = Criterion::default().configure_from_args().sample_size(10);
        let mut g = c.benchmark_group("ingest");
        g.bench_function("decode_floor_2t", |b| {
            b.iter(|| p2.install(|| decode_all(&files)))
        });
        g.bench_function("ingest_2t", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| p2.install(|| run_ingest(&mut counter)).1)
                    .map(std::time::Duration::from_secs_f64)
                    .sum()
            })
        });
        g.finish();
    }
    let runs = if quick { 1 } else { 7 };
    println!(
        "\n{} scenes ({})",
        files.len(),
        files[0].parent().unwrap().display()
    );
    println!("| threads | decode floor / scene | ingest / scene | ingest / floor | peak RSS |");
    println!("|---|---|---|---|---|");
    for (threads, pool) in [(1, &p1), (2, &p2)] {
        let floor = support::median_secs(runs, || pool.install(|| decode_all(&files)));
        peak_rss_reset();
        let mut report = None;
        let mut times: Vec<f64> = (0..=runs)
            .map(|_| {
                let (r, secs) = pool.install(|| run_ingest(&mut counter));
                report = Some(r);
                secs
            })
            .skip(1) // warm-up
            .collect();
        times.sort_by(f64::total_cmp);
        let total = times[times.len() / 2];
        let peak = peak_rss_mb();
        let n = files.len() as f64;
        println!(
            "| {threads} | {:.1} ms | {:.1} ms | {:.2}x | {:.0} MB |",
            floor / n * 1e3,
            total / n * 1e3,
            total / floor,
            peak
        );
        if let Some(r) = report {
            eprintln!(
                "   ({} fragments, {:.1} MB written)",
                r.fragments,
                r.bytes_out as f64 / 1e6
            );
        }
    }
}
