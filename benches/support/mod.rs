//! Shared bench helpers: median timings for the ratio tables each bench prints.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

/// Median wall time of `runs` calls of `f`, in seconds (after one warm-up call).
pub fn median_secs<R>(runs: usize, mut f: impl FnMut() -> R) -> f64 {
    std::hint::black_box(f());
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// A rayon pool with exactly `n` threads.
pub fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .expect("thread pool")
}

/// The shared corpus: `PQ_CORPUS` when set, else `../shared/corpus` beside the checkout, if
/// present.
pub fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("PQ_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    p.is_dir().then_some(p)
}

/// The 12 scenes of `corpus/ts`, or (without the corpus) the demo series written into `tmp`.
pub fn time_series(tmp: &Path) -> Vec<PathBuf> {
    match corpus() {
        Some(c) => {
            let mut v: Vec<PathBuf> = std::fs::read_dir(c.join("ts"))
                .expect("corpus/ts is readable")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "tif"))
                .collect();
            v.sort();
            v
        }
        None => pixelquery::demo::write_scenes(&tmp.join("scenes")).expect("demo scenes"),
    }
}
