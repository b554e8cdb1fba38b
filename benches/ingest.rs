//! Ingestion speed against its floor, measured in the same run.
//!
//! Ingest: the 12 scenes of `corpus/ts` (1024x1024x4 u16 DEFLATE COGs, EPSG:32652) into a
//! fresh warehouse (`sentinel2_l2a` profile, one commit), end to end: discovery, header
//! parsing, decoding, cutting onto the grid, fragment writes with fsync, catalog and commit.
//! Floor: decoding the same scenes (every tile of every band, `Cog::read_window`) with the
//! same threads. Write floor: writing the same number of bytes into as many new files and
//! fsyncing them, same threads. Floors and ingests alternate and medians are reported.
//! Without the corpus the demo series is used. Peak memory is the process's VmHWM.
//!
//! Full-size scene: a 10980 x 10980 x 4 u16 scene (DEFLATE + predictor 2, 1024-px blocks,
//! overviews; a Sentinel-2 tile's size) is written once by the bench into `bench-data/`
//! (git-ignored), then ingested by a child `pixelquery ingest` process with memory budgets of
//! 64, 256 and 1024 MB on 1 and 2 jobs: time per decoded MB and the child's peak resident
//! memory (its `VmHWM`) next to the budget. Floor: decoding every block of the scene once with
//! the same threads. `PQ_BENCH_BUDGETS=64,256` picks budgets; `PQ_BENCH_QUICK` runs once;
//! `PQ_BENCH_FULL_SCENE=path.tif` uses that scene instead (e.g. the issue's `gdal_translate`
//! resampling of a corpus scene to 10980 x 10980); `PQ_BENCH_FULL_SCENE=skip` skips this part.
//!
//! Then one row per warehouse setting (fragment compression none / LZ4 / ZSTD, cropped or
//! whole tiles), on 2 threads, settings taking turns: warehouse bytes against the source COG
//! bytes, ingest time per scene beside the decode floor and that setting's write floor. With
//! `PQ_BENCH_SETTINGS_FULL=1`, the same for one full-size 10980 x 10980 x 4 scene
//! (`PQ_BENCH_FULL_SCENE`, else a mosaic of the corpus scenes written once into `bench-data/`).
//!
//! Against the Python original: with `PQ_PEER_PYTHON` set to the Python of an environment
//! holding the published PixelQuery (`../shared/peers/python_pixelquery`), cold `pixelquery
//! ingest` processes over the corpus and the peer's own harness take turns, and the per-scene
//! medians and their ratio are printed (`python_original`); `PQ_BENCH_PYTHON_ONLY=1` runs
//! only that part.
//!
//! `cargo bench --bench ingest`

mod fragment_settings;
mod python_original;
mod support;

use criterion::Criterion;
use pixelquery::cog::{Cog, Window};
use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

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

/// Writes `bytes` into `files` new files and fsyncs them, with the current pool's threads:
/// what writing an ingest's output costs at the least. Returns the seconds it took; the
/// files are deleted afterwards, untimed.
fn write_floor(dir: &std::path::Path, files: usize, bytes: u64) -> f64 {
    let per_file = vec![7u8; (bytes as usize).div_ceil(files.max(1))];
    let dir = dir.join("write_floor");
    std::fs::create_dir_all(&dir).unwrap();
    let start = std::time::Instant::now();
    (0..files).into_par_iter().for_each(|i| {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.join(format!("f{i}"))).unwrap();
        f.write_all(&per_file).unwrap();
        f.sync_all().unwrap();
    });
    let secs = start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir).unwrap();
    secs
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
    if std::env::var_os("PQ_BENCH_PYTHON_ONLY").is_some() {
        python_original::run(files[0].parent().unwrap(), files.len(), tmp.path(), quick);
        return;
    }
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
    let runs = if quick { 3 } else { 9 };
    println!(
        "\n{} scenes ({})",
        files.len(),
        files[0].parent().unwrap().display()
    );
    println!(
        "| threads | decode floor / scene | write floor / scene | ingest / scene | ingest / decode floor | ingest / (decode + write floors) | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (threads, pool) in [(1, &p1), (2, &p2)] {
        // Warm-up, and the size of what an ingest writes.
        let (first, _) = pool.install(|| run_ingest(&mut counter));
        peak_rss_reset();
        // Floors and ingest alternate, so a change in machine load hits all of them alike.
        let (mut floors, mut writes, mut ingests) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            floors.push(support::median_secs(1, || {
                pool.install(|| decode_all(&files))
            }));
            writes.push(pool.install(|| write_floor(tmp.path(), first.fragments, first.bytes_out)));
            ingests.push(pool.install(|| run_ingest(&mut counter)).1);
        }
        let peak = peak_rss_mb();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (floor, write, total) = (median(floors), median(writes), median(ingests));
        let n = files.len() as f64;
        println!(
            "| {threads} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}x | {:.2}x | {:.0} MB |",
            floor / n * 1e3,
            write / n * 1e3,
            total / n * 1e3,
            total / floor,
            total / (floor + write),
            peak
        );
        eprintln!(
            "   ({} fragments, {:.1} MB written per ingest)",
            first.fragments,
            first.bytes_out as f64 / 1e6
        );
    }
    // The peer reads dates from file names, which the corpus has.
    if support::corpus().is_some() && !std::env::args().any(|a| a == "--test") {
        python_original::run(files[0].parent().unwrap(), files.len(), tmp.path(), quick);
    }
    let runs = if quick { 1 } else { 5 };
    p2.install(|| settings_table(tmp.path(), "corpus", &files, runs));
    if std::env::var_os("PQ_BENCH_SETTINGS_FULL").is_some() {
        let given = std::env::var("PQ_BENCH_FULL_SCENE")
            .ok()
            .filter(|v| v != "skip")
            .map(PathBuf::from);
        match given.or_else(|| fragment_settings::full_scene(&files)) {
            Some(scene) => {
                p2.install(|| settings_table(tmp.path(), "full scene", &[scene], runs.min(3)))
            }
            None => println!("\n(no full-size scene without the corpus)"),
        }
    }
    // `cargo test --benches` checks that the bench runs; the full-size part is a measurement.
    if !std::env::args().any(|a| a == "--test") {
        full_size::run(quick, &p1, &p2);
    }
}

/// Ingests `files` once per fragment setting per round (the settings, the decode floor and
/// each setting's write floor taking turns) and prints bytes and medians per setting.
fn settings_table(tmp: &Path, name: &str, files: &[PathBuf], runs: usize) {
    use fragment_settings::{dir_bytes, file_bytes, label, SETTINGS};
    let inputs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let cog_bytes = file_bytes(files);
    let mut n = 0;
    // Ingests with a setting; the warehouse's bytes, fragments and fragment bytes, seconds.
    let mut run = |(compression, crop)| {
        n += 1;
        let wh = tmp.join(format!("settings{n}"));
        let options = IngestOptions {
            product: Some("sentinel2_l2a".into()),
            compression,
            crop,
            ..Default::default()
        };
        let start = std::time::Instant::now();
        let r = ingest(&wh, &inputs, &options, &Quiet).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(r.scenes_ingested, files.len());
        let bytes = dir_bytes(&wh);
        let _ = std::fs::remove_dir_all(&wh);
        (bytes, r.fragments, r.bytes_out, secs)
    };
    let first: Vec<_> = SETTINGS.iter().map(|&s| run(s)).collect();
    let (mut floors, mut writes, mut ingests) = (
        Vec::new(),
        vec![Vec::new(); SETTINGS.len()],
        vec![Vec::new(); SETTINGS.len()],
    );
    for _ in 0..runs {
        floors.push(support::median_secs(1, || decode_all(files)));
        for (k, &s) in SETTINGS.iter().enumerate() {
            writes[k].push(write_floor(tmp, first[k].1, first[k].2));
            ingests[k].push(run(s).3);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let floor = median(&floors);
    let scenes = files.len() as f64;
    println!(
        "\n{name}: {} scene(s), {:.1} MB of COGs; 2 threads, medians of {runs} rounds",
        files.len(),
        cog_bytes as f64 / 1e6
    );
    println!("| setting | warehouse | warehouse / COG bytes | ingest / scene | decode floor / scene | write floor / scene | ingest / (decode + write floors) |");
    println!("|---|---|---|---|---|---|---|");
    for (k, &s) in SETTINGS.iter().enumerate() {
        let (ingest, write) = (median(&ingests[k]), median(&writes[k]));
        println!(
            "| {} | {:.1} MB | {:.2}x | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}x |",
            label(s),
            first[k].0 as f64 / 1e6,
            first[k].0 as f64 / cog_bytes as f64,
            ingest / scenes * 1e3,
            floor / scenes * 1e3,
            write / scenes * 1e3,
            ingest / (floor + write),
        );
    }
}

/// The full-size scene, ingested by child processes within memory budgets.
mod full_size {
    use ndarray::Array3;
    use pixelquery::cog::{write_cog, Cog, WriteOptions};
    use pixelquery::GeoTransform;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    const SIZE: usize = 10980;

    /// Reflectance-like fields: smooth gradients and texture with a little noise.
    fn value(b: usize, y: usize, x: usize) -> u16 {
        let noise = ((x * 7919 + y * 104_729 + b * 31) % 23) as u16;
        let field = ((x / 5 + y / 9) % 900) as u16 + ((x * y) / 4096 % 300) as u16;
        800 + (b as u16) * 600 + field + noise
    }

    /// The scene: `PQ_BENCH_FULL_SCENE`, else written on first use into `bench-data/full-size/`.
    fn scene() -> PathBuf {
        if let Ok(path) = std::env::var("PQ_BENCH_FULL_SCENE") {
            return PathBuf::from(path);
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data/full-size");
        let path = dir.join("S2_full_synthetic_20230611.tif");
        if path.is_file() {
            return path;
        }
        std::fs::create_dir_all(&dir).unwrap();
        eprintln!("writing {} (once) ...", path.display());
        let start = Instant::now();
        let data = Array3::from_shape_fn((4, SIZE, SIZE), |(b, y, x)| value(b, y, x));
        let options = WriteOptions {
            block_size: 1024,
            transform: Some(GeoTransform::north_up(399_960.0, 4_040_040.0, 10.0, 10.0)),
            epsg: Some(32652),
            band_descriptions: ["B02", "B03", "B04", "B08"].map(String::from).to_vec(),
            datetime: Some("2023:06:11 02:16:59".into()),
            ..Default::default()
        };
        let tmp = dir.join("writing.tif");
        write_cog(&tmp, data.view(), &options).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        eprintln!("   written in {:.0} s", start.elapsed().as_secs_f64());
        path
    }

    /// Decodes every block of the full-resolution image once, a row of blocks at a time.
    fn decode_floor(cog: &Cog) -> f64 {
        let grid = cog.block_grid(0).unwrap();
        let start = Instant::now();
        for by in 0..grid.rows() {
            let row: Vec<(u32, u32)> = (0..grid.cols()).map(|bx| (bx, by)).collect();
            std::hint::black_box(cog.read_blocks::<u16>(0, &row, &[0, 1, 2, 3]).unwrap());
        }
        start.elapsed().as_secs_f64()
    }

    /// The high-water mark of a process's resident memory (`VmHWM`), in KiB.
    fn vm_hwm_kib(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Runs `pixelquery ingest` into a fresh warehouse: (seconds, peak RSS in MiB, fragments).
    /// The peak is the child's own `VmHWM`, sampled every 2 ms until it exits.
    fn ingest(scene: &Path, wh: &Path, budget: u64, jobs: usize) -> (f64, u64, u64) {
        use std::process::{Command, Stdio};
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pixelquery"))
            .arg("ingest")
            .arg(wh)
            .arg(scene)
            .args([
                "--product",
                "sentinel2_l2a",
                "--bands",
                "blue,green,red,nir",
            ])
            .args(["--memory-budget", &budget.to_string()])
            .args(["--jobs", &jobs.to_string(), "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
            out
        });
        let mut peak_kib = 0;
        let status = loop {
            if let Some(kib) = vm_hwm_kib(pid) {
                peak_kib = peak_kib.max(kib);
            }
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        let secs = start.elapsed().as_secs_f64();
        let out = reader.join().unwrap();
        assert!(status.success(), "ingest failed: {out}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let fragments = report["fragments"].as_u64().unwrap_or(0);
        std::fs::remove_dir_all(wh).unwrap();
        (secs, peak_kib.div_ceil(1024), fragments)
    }

    pub fn run(quick: bool, p1: &rayon::ThreadPool, p2: &rayon::ThreadPool) {
        if std::env::var("PQ_BENCH_FULL_SCENE").is_ok_and(|v| v == "skip") {
            return;
        }
        let path = scene();
        let cog = Cog::open(&path).unwrap();
        let (width, height) = (cog.meta().width() as usize, cog.meta().height() as usize);
        let decoded_mb = (width * height * 4 * 2) as f64 / 1e6;
        let budgets: Vec<u64> = std::env::var("PQ_BENCH_BUDGETS")
            .ok()
            .map(|v| v.split(',').filter_map(|b| b.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![64, 256, 1024]);
        let runs = if quick { 1 } else { 3 };
        let tmp = tempfile::tempdir_in(path.parent().unwrap()).unwrap();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "\nfull-size scene: {width}x{height}x4 u16, DEFLATE + predictor 2, 1024-px blocks, {:.0} MB on disk, {decoded_mb:.0} MB decoded; child `pixelquery ingest`, medians of {runs}",
            std::fs::metadata(&path).unwrap().len() as f64 / 1e6
        );
        println!("| jobs | --memory-budget | decode floor / MB | ingest | ingest / MB | ingest / floor | peak RSS | budget + 150 MB | fragments |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (jobs, pool) in [(1, p1), (2, p2)] {
            for &budget in &budgets {
                let (mut floors, mut times, mut peak, mut fragments) =
                    (Vec::new(), Vec::new(), 0, 0);
                // The floor and the ingest take turns, so load from other work hits both.
                for r in 0..runs {
                    floors.push(pool.install(|| decode_floor(&cog)));
                    let wh = tmp.path().join(format!("wh-{jobs}-{budget}-{r}"));
                    let (secs, rss, n) = ingest(&path, &wh, budget, jobs);
                    times.push(secs);
                    peak = peak.max(rss);
                    fragments = n;
                }
                let (floor, time) = (median(floors), median(times));
                println!(
                    "| {jobs} | {budget} MB | {:.2} ms | {time:.2} s | {:.2} ms | {:.2}x | {peak} MB | {} MB | {fragments} |",
                    floor / decoded_mb * 1e3,
                    time / decoded_mb * 1e3,
                    time / floor,
                    budget + 150
                );
            }
        }
    }
}
