//! A warehouse in object storage against the same warehouse on the local disk, in one run.
//!
//! The 12 scenes of `corpus/ts` (or, without the corpus, the demo series) are ingested into a
//! new local warehouse and into a new `s3://` one on a loopback S3 server; the runs take turns
//! and the median per scene is printed. Then the same queries run on both, in turns:
//! - cold: open the warehouse, take its latest snapshot and query, as one CLI process does
//!   (catalog read, fragments fetched or mapped, decompressed);
//! - warm: the query again on a snapshot already open (fragments decoded and cached).
//!
//! For the point (one pixel, 4 bands, 12 dates) and a grid tile (384 x 384 px) it prints the
//! median times, their ratio and the requests and bytes each cold query sends to the store.
//!
//! Needs an S3 server, e.g. SeaweedFS from `.ci/run`'s virtual environment:
//! ```text
//! eval "$(.ci/s3-server start /tmp/pq-s3)"; cargo bench --bench s3; .ci/s3-server stop /tmp/pq-s3
//! ```
//! (`PQ_BENCH_QUICK=1`: one round of each.) Without `PIXELQUERY_TEST_S3` it says so and stops.

mod support;

use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use pixelquery::source::s3::Credentials;
use pixelquery::source::{RemoteOptions, TransferStats};
use pixelquery::store::{OpenOptions, Warehouse};
use pixelquery::{Bounds, GridSpec};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The loopback server's settings from the variables `.ci/s3-server start` prints.
fn remote() -> Option<(RemoteOptions, String)> {
    let endpoint = std::env::var("PIXELQUERY_TEST_S3").ok()?;
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let bucket = std::env::var("PIXELQUERY_TEST_S3_BUCKET").unwrap_or_else(|_| "pqtest".into());
    let options = RemoteOptions {
        s3_endpoint: Some(endpoint),
        s3_region: Some("us-east-1".into()),
        s3_credentials: Some(Credentials {
            access_key_id: var("PIXELQUERY_TEST_S3_KEY"),
            secret_access_key: var("PIXELQUERY_TEST_S3_SECRET"),
            session_token: None,
        }),
        ..RemoteOptions::default()
    };
    Some((options, bucket))
}

/// Median of the samples.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One place a warehouse can live, with how to open it.
struct Place {
    location: String,
    open: OpenOptions,
}

impl Place {
    fn open(&self) -> Warehouse {
        Warehouse::open_with(&self.location, &self.open).expect("open warehouse")
    }
}

/// Ingests every scene into a new warehouse at `location`; seconds and the store traffic.
fn ingest_into(location: &str, inputs: &[String], remote: &RemoteOptions) -> (f64, TransferStats) {
    let options = IngestOptions {
        product: Some("sentinel2_l2a".into()),
        remote: remote.clone(),
        ..Default::default()
    };
    let start = Instant::now();
    let report = ingest(Path::new(location), inputs, &options, &Quiet).expect("ingest");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(report.scenes_ingested, inputs.len(), "every scene ingested");
    (secs, report.warehouse_transfer)
}

/// A query case: what it reads.
#[derive(Clone, Copy)]
enum Case {
    Point(f64, f64),
    Tile(Bounds),
}

impl Case {
    fn label(&self) -> &'static str {
        match self {
            Case::Point(..) => "point (4 bands x 12 dates)",
            Case::Tile(_) => "tile 384x384 (4 bands x 12 dates)",
        }
    }

    /// Runs the query on `wh`'s latest snapshot; returns the cube's sample count.
    fn run(&self, wh: &Warehouse, snap: &pixelquery::store::Snapshot, epsg: u32) -> usize {
        let q = wh.query().on_snapshot(snap).crs(epsg);
        let q = match *self {
            Case::Point(x, y) => q.point(x, y),
            Case::Tile(b) => q.bbox(b),
        };
        q.run_native::<u16>().expect("query").data.len()
    }
}

fn main() {
    let quick =
        std::env::args().any(|a| a == "--test") || std::env::var_os("PQ_BENCH_QUICK").is_some();
    let Some((remote, bucket)) = remote() else {
        println!(
            "s3 bench: no S3 server (PIXELQUERY_TEST_S3 is not set); start one with \
             eval \"$(.ci/s3-server start /tmp/pq-s3)\"; skipped"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = support::time_series(tmp.path())
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("_SCL_"))
        .collect();
    let inputs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let scenes = inputs.len() as f64;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let local_open = OpenOptions::default();
    let s3_open = OpenOptions {
        remote: remote.clone(),
        ..OpenOptions::default()
    };

    // Ingest: local and S3 in turns, each into a new warehouse.
    let rounds = if quick { 1 } else { 3 };
    let (mut local_ingest, mut s3_ingest) = (Vec::new(), Vec::new());
    let mut s3_traffic = TransferStats::default();
    let mut last = (String::new(), String::new());
    for round in 0..rounds {
        let local = tmp.path().join(format!("wh-{round}")).display().to_string();
        let (secs, _) = ingest_into(&local, &inputs, &RemoteOptions::default());
        local_ingest.push(secs);
        let s3 = format!("s3://{bucket}/bench-{stamp}-{round}");
        let (secs, traffic) = ingest_into(&s3, &inputs, &remote);
        s3_ingest.push(secs);
        s3_traffic = traffic;
        last = (local, s3);
    }
    // Upload floor: the last local warehouse's files (fragments and catalog, the bytes an
    // S3 ingest sends) PUT into the store under a new prefix, 8 at a time, nothing else.
    let files_of = |root: &Path| -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let key = p.strip_prefix(root).unwrap().display().to_string();
                    out.push((key, std::fs::read(&p).unwrap()));
                }
            }
        }
        out
    };
    let local_files = files_of(Path::new(&last.0));
    let local_bytes: usize = local_files.iter().map(|(_, b)| b.len()).sum();
    let store = Warehouse::open_with(&last.1, &s3_open).expect("open S3 warehouse");
    let uploads = support::pool(8);
    let mut floor_times = Vec::new();
    for round in 0..rounds {
        let start = Instant::now();
        uploads.install(|| {
            use rayon::prelude::*;
            local_files.par_iter().for_each(|(key, bytes)| {
                store
                    .storage()
                    .put(&format!("floor-{round}/{key}"), bytes)
                    .expect("upload");
            })
        });
        floor_times.push(start.elapsed().as_secs_f64());
    }
    let floor_ms = median(floor_times) / scenes * 1e3;
    let (local_ms, s3_ms) = (
        median(local_ingest) / scenes * 1e3,
        median(s3_ingest) / scenes * 1e3,
    );

    let places = [
        Place {
            location: last.0,
            open: local_open,
        },
        Place {
            location: last.1,
            open: s3_open,
        },
    ];
    let probe = places[0].open();
    let grid: GridSpec = probe.config().grid;
    let scene = pixelquery::cog::Cog::open(&files[0]).unwrap();
    let sb = scene.meta().bounds().unwrap();
    let (cx, cy) = ((sb.min_x + sb.max_x) / 2.0, (sb.min_y + sb.max_y) / 2.0);
    let tile = grid.tile_bounds(grid.tile_at(cx, cy));
    let cases = [Case::Point(cx + 5.0, cy + 5.0), Case::Tile(tile)];

    println!(
        "\n{} scenes, {} threads; medians of {} rounds taking turns; S3 = {}",
        inputs.len(),
        rayon::current_num_threads(),
        if quick { 1 } else { 9 },
        std::env::var("PIXELQUERY_TEST_S3").unwrap_or_default()
    );
    println!("| step | local | S3 | S3 / local | S3 requests | S3 MB |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| ingest, per scene | {local_ms:.0} ms | {s3_ms:.0} ms | {:.2}x | {:.1} per scene | {:.1} per scene (up) |",
        s3_ms / local_ms,
        s3_traffic.requests as f64 / scenes,
        s3_traffic.bytes as f64 / scenes / 1e6,
    );
    println!(
        "| upload floor, per scene: the local warehouse's {} files ({:.1} MB) PUT 8 at a time | | {floor_ms:.0} ms | S3 ingest - local ingest = {:.2}x this floor | | |",
        local_files.len(),
        local_bytes as f64 / 1e6,
        (s3_ms - local_ms) / floor_ms,
    );
    let runs = if quick { 1 } else { 9 };
    for case in cases {
        // Cold: open, snapshot, query. Warm: the query again on the open snapshot.
        let mut cold = [Vec::new(), Vec::new()];
        let mut warm = [Vec::new(), Vec::new()];
        let (mut cold_traffic, mut warm_traffic) = (TransferStats::default(), (0, 0));
        for _ in 0..=runs {
            for (i, place) in places.iter().enumerate() {
                let start = Instant::now();
                let wh = place.open();
                let snap = wh.snapshot(None).expect("snapshot");
                std::hint::black_box(case.run(&wh, &snap, grid.epsg));
                cold[i].push(start.elapsed().as_secs_f64());
                let after_cold = wh.storage().transfer_stats();
                let start = Instant::now();
                std::hint::black_box(case.run(&wh, &snap, grid.epsg));
                warm[i].push(start.elapsed().as_secs_f64());
                if i == 1 {
                    let after_warm = wh.storage().transfer_stats();
                    warm_traffic = (
                        after_warm.requests - after_cold.requests,
                        after_warm.bytes - after_cold.bytes,
                    );
                    cold_traffic = after_cold;
                }
            }
        }
        for (kind, times) in [("cold", cold), ("warm", warm)] {
            // The first round warmed the page cache and the server; it is not counted.
            let [l, s] = times.map(|t| median(t[1..].to_vec()) * 1e3);
            let (req, bytes) = if kind == "cold" {
                (cold_traffic.requests, cold_traffic.bytes)
            } else {
                warm_traffic
            };
            let mb = format!("{:.2}", bytes as f64 / 1e6);
            println!(
                "| {} query, {kind} | {l:.2} ms | {s:.2} ms | {:.2}x | {req} | {mb} |",
                case.label(),
                s / l,
            );
        }
    }
}
