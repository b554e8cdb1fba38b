//! Years of data: an archive fed one scene at a time, and a pixel's history read from it.
//!
//! For each N (default 365; `PQ_LAYOUT_DATES=365,1825`), N daily STAC items are written, one per
//! day from 2019-01-01, each pointing to one of the `corpus/ts` scenes (in turn) through a
//! hard link named after its day, and ingested with one commit per item, as an archive fed
//! daily is:
//! - into a local warehouse with automatic compaction, and into one without (`--no-auto-
//!   compact`): ingest ms per scene (all, first 100, last 100), fragments per tile-band, bytes
//!   written (fragments, compaction included) against bytes kept, warehouse against COG bytes;
//! - then, on the compacted warehouse: a pixel's history (red and nir, all N dates) in the
//!   library on an open snapshot and as a `pixelquery query` process (page cache warm); a grid
//!   tile at one date; the tile's yearly median NDVI; and GDAL (Python bindings) reading the
//!   same pixel from the N COGs in one process, the baseline;
//! - with an S3 server (`PIXELQUERY_TEST_S3`, from `.ci/s3-server start`), the same ingest
//!   into `s3://` and the pixel's history as a cold CLI process, with its requests and bytes
//!   (for N up to `PQ_LAYOUT_S3_DATES`, default 365).
//!
//! Archives are fed 365 scenes at a time with a vacuum (zero retention) in between, so the
//! files merges replace do not pile up (for 1,825 dates they would be ~60 GB); each
//! warehouse is deleted once measured.
//!
//! `PQ_LAYOUT_SHAPES=32x32x16,64x64x16` ingests the local compacted archive once per chunk shape
//! and prints the query costs of each (the data behind the default shape). Needs the corpus;
//! generated data goes under `PQ_LAYOUT_DIR` (default a temporary folder) and is removed.
//!
//! ```text
//! cargo build --release && PQ_LAYOUT_DATES=365,1825 cargo bench --bench layout
//! ```

mod support;

use pixelquery::ingest::pipeline::{ingest, IngestOptions, IngestReport, Progress};
use pixelquery::query::{Period, Reducer};
use pixelquery::source::s3::Credentials;
use pixelquery::source::RemoteOptions;
use pixelquery::store::{ChunkShape, Warehouse};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// The pixel whose history is read (lon, lat), inside every corpus scene.
const POINT: (f64, f64) = (127.9407, 36.4548);

/// Times each scene's end, so per-scene costs can be told apart over a long run.
struct Stamps(Mutex<Vec<Instant>>);

impl Progress for Stamps {
    fn scene_done(&self, _: &str, _: u64, _: usize) {
        self.0.lock().unwrap().push(Instant::now());
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Writes `n` daily STAC items (and the hard links they point to) into `dir`; returns the
/// item files and the COG bytes they stand for.
fn write_archive(dir: &Path, scenes: &[PathBuf], n: usize) -> (Vec<String>, u64) {
    std::fs::create_dir_all(dir.join("cogs")).unwrap();
    std::fs::create_dir_all(dir.join("items")).unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(2019, 1, 1).unwrap();
    let mut items = Vec::with_capacity(n);
    let mut bytes = 0;
    for d in 0..n {
        let day = start + chrono::Duration::days(d as i64);
        let src = &scenes[d % scenes.len()];
        let name = format!("S2L_T52_{}_10m", day.format("%Y%m%d"));
        let cog = dir.join("cogs").join(format!("{name}.tif"));
        if !cog.exists() {
            std::fs::hard_link(src, &cog)
                .or_else(|_| std::fs::copy(src, &cog).map(|_| ()))
                .unwrap();
        }
        bytes += std::fs::metadata(&cog).unwrap().len();
        let item = serde_json::json!({
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": name,
            "properties": {"datetime": format!("{}T02:15:00Z", day.format("%Y-%m-%d"))},
            "geometry": null,
            "links": [],
            "assets": {"data": {
                "href": cog.display().to_string(),
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "eo:bands": [{"name": "B02"}, {"name": "B03"}, {"name": "B04"}, {"name": "B08"}]
            }}
        });
        let file = dir.join("items").join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(&item).unwrap()).unwrap();
        items.push(file.display().to_string());
    }
    (items, bytes)
}

/// Scenes ingested between two vacuums: files that merges replaced are deleted then, so an
/// archive of years fits on a build machine's disk (they would total ~5x the warehouse).
const SEGMENT: usize = 365;

/// What one archive ingest measured (vacuums between segments not counted).
struct Fed {
    seconds: f64,
    bytes_out: u64,
    compaction_bytes: u64,
    compaction_merges: usize,
    compaction_errors: usize,
    requests: u64,
    vacuum_seconds: f64,
    per_scene_ms: Vec<f64>,
}

fn feed(location: &str, items: &[String], options: IngestOptions) -> Fed {
    let mut fed = Fed {
        seconds: 0.0,
        bytes_out: 0,
        compaction_bytes: 0,
        compaction_merges: 0,
        compaction_errors: 0,
        requests: 0,
        vacuum_seconds: 0.0,
        per_scene_ms: Vec::with_capacity(items.len()),
    };
    for (i, segment) in items.chunks(SEGMENT).enumerate() {
        if i > 0 {
            let t = Instant::now();
            let wh = Warehouse::open_with(
                location,
                &pixelquery::store::OpenOptions {
                    remote: options.remote.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
            pixelquery::store::vacuum(&wh, std::time::Duration::ZERO).expect("vacuum");
            fed.vacuum_seconds += t.elapsed().as_secs_f64();
        }
        let stamps = Stamps(Mutex::new(Vec::new()));
        let start = Instant::now();
        let report: IngestReport =
            ingest(Path::new(location), segment, &options, &stamps).expect("ingest");
        assert_eq!(report.scenes_ingested, segment.len(), "{:?}", report.failed);
        let mut t = stamps.0.into_inner().unwrap();
        t.sort();
        let mut last = start;
        fed.per_scene_ms.extend(t.into_iter().map(|s| {
            let ms = (s - last).as_secs_f64() * 1e3;
            last = s;
            ms
        }));
        fed.seconds += report.seconds;
        fed.bytes_out += report.bytes_out;
        fed.compaction_bytes += report.compaction_bytes;
        fed.compaction_merges += report.compaction_merges;
        fed.compaction_errors += report.compaction_errors.len();
        fed.requests += report.warehouse_transfer.requests;
    }
    fed
}

/// The vacuums' share of a long feed, when there were any.
fn vacuums(fed: &Fed) -> String {
    if fed.vacuum_seconds > 0.0 {
        format!(
            " (+ {:.1} s of vacuums every {SEGMENT} scenes, not counted)",
            fed.vacuum_seconds
        )
    } else {
        String::new()
    }
}

fn ingest_options(auto: bool, chunk: ChunkShape, remote: RemoteOptions) -> IngestOptions {
    IngestOptions {
        product: Some("sentinel2_l2a".into()),
        commit_every: Some(1),
        no_auto_compact: !auto,
        chunk,
        remote,
        ..Default::default()
    }
}

/// Fragments per (tile, band) of the latest snapshot: max and mean; bytes kept.
fn layout_of(wh: &Warehouse) -> (usize, f64, u64) {
    let snap = wh.snapshot(None).unwrap();
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in snap.fragments() {
        *per.entry((e.tile.to_string(), e.band.clone())).or_default() += 1;
    }
    let bytes = snap.fragments().iter().map(|e| e.bytes).sum();
    let max = per.values().copied().max().unwrap_or(0);
    let mean = per.values().sum::<usize>() as f64 / per.len().max(1) as f64;
    (max, mean, bytes)
}

/// `pixelquery` (the release build beside the bench) with `args`; milliseconds and stderr.
fn cli(args: &[&str], env: &[(&str, String)]) -> (f64, String) {
    let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/pixelquery");
    let start = Instant::now();
    let out = Command::new(&exe)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --release first)", exe.display()));
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert!(
        out.status.success(),
        "pixelquery {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (ms, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// GDAL reading the pixel from every COG in one Python process: seconds, or `None` without
/// GDAL's Python bindings.
fn gdal_pixel(cogs: &Path) -> Option<f64> {
    let script = r#"
import glob, sys, time
from osgeo import gdal, osr
files = sorted(glob.glob(sys.argv[1] + "/*.tif"))
lon, lat = float(sys.argv[2]), float(sys.argv[3])
t = time.perf_counter()
values = []
for f in files:
    ds = gdal.Open(f)
    srs = osr.SpatialReference(); srs.ImportFromWkt(ds.GetProjection())
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    wgs = osr.SpatialReference(); wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    x, y, _ = osr.CoordinateTransformation(wgs, srs).TransformPoint(lon, lat)
    gt = ds.GetGeoTransform()
    col, row = int((x - gt[0]) / gt[1]), int((y - gt[3]) / gt[5])
    values.append([ds.GetRasterBand(b).ReadAsArray(col, row, 1, 1)[0][0] for b in (3, 4)])
print(time.perf_counter() - t, len(values))
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(cogs)
        .arg(POINT.0.to_string())
        .arg(POINT.1.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Remote settings, the environment the CLI needs, and the bucket.
type S3Remote = (RemoteOptions, Vec<(&'static str, String)>, String);

fn s3_remote() -> Option<S3Remote> {
    let endpoint = std::env::var("PIXELQUERY_TEST_S3").ok()?;
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let bucket = std::env::var("PIXELQUERY_TEST_S3_BUCKET").unwrap_or_else(|_| "pqtest".into());
    let remote = RemoteOptions {
        s3_endpoint: Some(endpoint.clone()),
        s3_region: Some("us-east-1".into()),
        s3_credentials: Some(Credentials {
            access_key_id: var("PIXELQUERY_TEST_S3_KEY"),
            secret_access_key: var("PIXELQUERY_TEST_S3_SECRET"),
            session_token: None,
        }),
        ..RemoteOptions::default()
    };
    let env = vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", var("PIXELQUERY_TEST_S3_KEY")),
        ("AWS_SECRET_ACCESS_KEY", var("PIXELQUERY_TEST_S3_SECRET")),
    ];
    Some((remote, env, bucket))
}

/// The point in the grid's CRS, and the bbox of the grid tile holding it (inset a little, so
/// the box stays inside that one tile).
fn in_grid(wh: &Warehouse) -> ((f64, f64), pixelquery::Bounds) {
    let grid = wh.config().grid;
    let to_grid =
        pixelquery::crs::Transformer::new(&pixelquery::crs::Crs::wgs84(), &grid.crs().unwrap());
    let (x, y) = to_grid.transform_point(POINT.0, POINT.1).unwrap();
    let b = grid.tile_bounds(grid.tile_at(x, y));
    (
        (x, y),
        pixelquery::Bounds::new(b.min_x + 5.0, b.min_y + 5.0, b.max_x - 5.0, b.max_y - 5.0),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return; // `cargo test --benches`: nothing quick to check here.
    }
    let Some(corpus) = support::corpus() else {
        println!("layout bench: needs ../shared/corpus (the 12-date series); skipped");
        return;
    };
    let dates: Vec<usize> = std::env::var("PQ_LAYOUT_DATES")
        .unwrap_or_else(|_| "365".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let shapes: Vec<ChunkShape> = std::env::var("PQ_LAYOUT_SHAPES")
        .map(|s| {
            s.split(',')
                .map(|t| {
                    let v: Vec<u32> = t.split('x').map(|n| n.parse().unwrap()).collect();
                    ChunkShape {
                        rows: v[0],
                        cols: v[1],
                        observations: v[2],
                    }
                })
                .collect()
        })
        .unwrap_or_else(|_| vec![ChunkShape::DEFAULT]);
    let root = match std::env::var("PQ_LAYOUT_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let scenes = support::time_series(&root.path().join("demo"));
    let _ = corpus;
    let s3 = s3_remote();
    let s3_dates: usize = std::env::var("PQ_LAYOUT_S3_DATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(365);
    for &n in &dates {
        let dir = root.path().join(format!("n{n}"));
        let (items, cog_bytes) = write_archive(&dir, &scenes, n);
        println!(
            "\n== {n} dates, one commit per scene ({:.0} MB of COGs) ==",
            cog_bytes as f64 / 1e6
        );
        let point = format!("{},{}", POINT.0, POINT.1);
        let mut compacted_seconds = f64::NAN;
        for (k, &shape) in shapes.iter().enumerate() {
            let label = format!("{}x{}x{}", shape.rows, shape.cols, shape.observations);
            let wh_path = dir.join(format!("wh-{label}"));
            let loc = wh_path.display().to_string();
            let fed = feed(
                &loc,
                &items,
                ingest_options(true, shape, RemoteOptions::default()),
            );
            if k == 0 {
                compacted_seconds = fed.seconds;
            }
            let wh = Warehouse::open(&wh_path).unwrap();
            let (max_frags, mean_frags, kept) = layout_of(&wh);
            let written = fed.bytes_out + fed.compaction_bytes;
            let per = &fed.per_scene_ms;
            let first = median(per.iter().take(100).copied().collect());
            let last = median(per.iter().rev().take(100).copied().collect());
            println!("chunks {label}:");
            println!(
                "  ingest, auto-compaction: {:.1} ms/scene (median {:.1}; first 100 {first:.1}, last 100 {last:.1}: {:.2}x), {} merges{}",
                fed.seconds * 1e3 / n as f64,
                median(per.clone()),
                last / first,
                fed.compaction_merges,
                vacuums(&fed)
            );
            println!(
                "  fragments per tile-band: max {max_frags}, mean {mean_frags:.1}; written {:.0} MB, kept {:.0} MB (write amplification {:.2}); warehouse / COGs {:.2}",
                written as f64 / 1e6,
                kept as f64 / 1e6,
                written as f64 / kept.max(1) as f64,
                kept as f64 / cog_bytes as f64
            );
            // Queries on an open snapshot (the library) and as CLI processes.
            let snap = wh.snapshot(None).unwrap();
            let lib_point = support::median_secs(21, || {
                wh.query()
                    .on_snapshot(&snap)
                    .point(POINT.0, POINT.1)
                    .bands(&["red", "nir"])
                    .run_native::<u16>()
                    .unwrap()
                    .data
                    .len()
            }) * 1e3;
            let cli_point = median(
                (0..9)
                    .map(|_| {
                        cli(
                            &["query", &loc, "--point", &point, "--bands", "red,nir"],
                            &[],
                        )
                        .0
                    })
                    .collect(),
            );
            let (_, bbox) = in_grid(&wh);
            let epsg = wh.config().grid.epsg;
            let epsg_arg = epsg.to_string();
            let bbox_arg = format!(
                "{},{},{},{}",
                bbox.min_x, bbox.min_y, bbox.max_x, bbox.max_y
            );
            let day = chrono::NaiveDate::from_ymd_opt(2019, 1, 1).unwrap()
                + chrono::Duration::days(n as i64 / 2);
            let from = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
            let to = day.and_hms_opt(23, 59, 59).unwrap().and_utc();
            let one_date = format!("{}..{}", day.format("%Y-%m-%d"), day.format("%Y-%m-%d"));
            let lib_tile = support::median_secs(9, || {
                wh.query()
                    .on_snapshot(&snap)
                    .crs(epsg)
                    .bbox(bbox)
                    .time(from, to)
                    .bands(&["red", "nir"])
                    .run_native::<u16>()
                    .unwrap()
                    .data
                    .len()
            }) * 1e3;
            let cli_tile = median(
                (0..5)
                    .map(|_| {
                        cli(
                            &[
                                "query", &loc, "--bbox", &bbox_arg, "--crs", &epsg_arg, "--bands",
                                "red,nir", "--time", &one_date,
                            ],
                            &[],
                        )
                        .0
                    })
                    .collect(),
            );
            let ndvi = support::median_secs(3, || {
                wh.query()
                    .on_snapshot(&snap)
                    .crs(epsg)
                    .bbox(bbox)
                    .index("ndvi")
                    .unwrap()
                    .composite(Reducer::Median, Period::Year)
                    .run()
                    .unwrap()
                    .data
                    .len()
            }) * 1e3;
            println!(
                "  pixel history (red, nir, {n} dates): open snapshot {lib_point:.2} ms, CLI process {cli_point:.1} ms"
            );
            println!(
                "  tile at one date (red, nir, 384x384): open snapshot {lib_tile:.2} ms, CLI process {cli_tile:.1} ms; yearly median NDVI of the tile {ndvi:.0} ms"
            );
            if k == 0 {
                if let Some(g) = gdal_pixel(&dir.join("cogs")) {
                    println!(
                        "  GDAL reading the pixel from the {n} COGs in one process: {:.0} ms ({:.0}x the CLI process)",
                        g * 1e3,
                        g * 1e3 / cli_point
                    );
                }
            }
            drop((snap, wh));
            let _ = std::fs::remove_dir_all(&wh_path);
        }
        // The same archive without automatic compaction.
        let plain = dir.join("wh-no-compaction");
        let fed = feed(
            &plain.display().to_string(),
            &items,
            ingest_options(false, shapes[0], RemoteOptions::default()),
        );
        let wh = Warehouse::open(&plain).unwrap();
        let (max_frags, _, kept) = layout_of(&wh);
        let per = &fed.per_scene_ms;
        let first = median(per.iter().take(100).copied().collect());
        let last = median(per.iter().rev().take(100).copied().collect());
        let cli_point = median(
            (0..5)
                .map(|_| {
                    cli(
                        &[
                            "query",
                            &plain.display().to_string(),
                            "--point",
                            &point,
                            "--bands",
                            "red,nir",
                        ],
                        &[],
                    )
                    .0
                })
                .collect(),
        );
        println!(
            "no auto-compaction: ingest {:.1} ms/scene (first 100 {first:.1}, last 100 {last:.1}; {:.2}x with auto-compaction), {max_frags} fragments per tile-band, {:.0} MB kept; pixel history CLI process {cli_point:.1} ms",
            fed.seconds * 1e3 / n as f64,
            compacted_seconds / fed.seconds,
            kept as f64 / 1e6
        );
        drop(wh);
        let _ = std::fs::remove_dir_all(&plain);
        // Object storage (up to PQ_LAYOUT_S3_DATES dates: its server keeps what merges
        // replaced until the vacuums).
        if let Some((remote, env, bucket)) = s3.as_ref().filter(|_| n <= s3_dates) {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let url = format!("s3://{bucket}/layout-{n}-{nanos}");
            let fed = feed(
                &url,
                &items,
                ingest_options(true, shapes[0], remote.clone()),
            );
            let runs: Vec<(f64, serde_json::Value)> = (0..5)
                .map(|_| {
                    let (ms, err) = cli(
                        &[
                            "query",
                            &url,
                            "--point",
                            &point,
                            "--bands",
                            "red,nir",
                            "--io-stats",
                        ],
                        env,
                    );
                    (
                        ms,
                        serde_json::from_str(err.lines().last().unwrap_or("{}"))
                            .unwrap_or_default(),
                    )
                })
                .collect();
            let ms = median(runs.iter().map(|r| r.0).collect());
            let stats = &runs[0].1;
            let remote_wh = Warehouse::open_with(
                &url,
                &pixelquery::store::OpenOptions {
                    remote: remote.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
            let (max, mean, _) = layout_of(&remote_wh);
            println!(
                "S3: ingest {:.1} ms/scene ({} requests in all; fragments per tile-band max {max}, mean {mean:.1}; {} compaction errors); pixel history cold CLI process {ms:.0} ms, {} requests, {:.2} MB",
                fed.seconds * 1e3 / n as f64,
                fed.requests,
                fed.compaction_errors,
                stats["requests"],
                stats["bytes"].as_f64().unwrap_or(0.0) / 1e6
            );
        }
    }
}
