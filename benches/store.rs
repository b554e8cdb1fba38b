//! Warehouse speed against the raw-file floor, measured in the same run:
//!
//! * write: one scene's batch (16 tiles x 4 bands of 256x256 u16 = 8 MiB, 64 fragments,
//!   fsynced, committed) against `std::fs::write` of the same pixel bytes into 64 files,
//!   with and without `sync_all` per file (the warehouse's durability);
//! * read: the full time series of one tile (24 dates x 4 bands, 12 MiB), compacted
//!   (4 fragments) and as written (96 fragments), against `std::fs::read` of the same raw
//!   bytes; both sides sum every pixel so both really touch the data.
//!
//! `cargo bench --bench store` prints criterion's figures, then a table of ratios.

use chrono::DateTime;
use criterion::Criterion;
use pixelquery::store::*;
use pixelquery::{DataType, GeoTransform, GridSpec, TileId};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TILE: u32 = 256;
const BANDS: [&str; 4] = ["B02", "B03", "B04", "B08"];
const DATES: u32 = 24;

fn grid() -> GridSpec {
    GridSpec {
        epsg: 32633,
        origin_x: 0.0,
        origin_y: 0.0,
        tile_size: 2560.0,
    }
}

fn pixels(seed: u32) -> Vec<u16> {
    // Smooth-ish reflectance-like values: compressible like real imagery, not constant.
    (0..TILE * TILE)
        .map(|i| {
            let (x, y) = (i % TILE, i / TILE);
            (1000 + (x * 7 + y * 3 + seed * 13) % 900 + (x ^ y) % 17) as u16
        })
        .collect()
}

fn fragment(tile: TileId, band: usize, dates: std::ops::Range<u32>) -> FragmentData {
    FragmentData {
        tile,
        band: BANDS[band].into(),
        product: "S2".into(),
        dtype: DataType::U16,
        nodata: Some(0.0),
        scale: 1e-4,
        offset: 0.0,
        tile_transform: GeoTransform::north_up(tile.col as f64 * 2560.0, 0.0, 10.0, 10.0),
        width: TILE,
        height: TILE,
        footprint_lonlat: vec![(15.0, 36.0), (15.1, 36.0), (15.1, 36.1), (15.0, 36.1)],
        resolution: 10.0,
        observations: dates
            .map(|d| Observation {
                time: DateTime::from_timestamp(1_700_000_000 + d as i64 * 432_000, 0).unwrap(),
                scene_id: format!("S2A_{d:04}"),
                pixels: pixels(d * 4 + band as u32).into(),
                valid: None,
            })
            .collect(),
    }
}

/// One scene cut into 16 tiles x 4 bands.
fn scene_batch() -> Vec<FragmentData> {
    (0..16)
        .flat_map(|t| (0..BANDS.len()).map(move |b| fragment(TileId::new(t % 4, t / 4), b, 0..1)))
        .collect()
}

fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_warehouse(
    base: &Path,
    compression: FragmentCompression,
    data: &[FragmentData],
) -> Duration {
    let dir = fresh_dir(base, "wh-write");
    let mut cfg = WarehouseConfig::new(grid());
    cfg.compression = compression;
    let wh = Warehouse::create(&dir, cfg).unwrap();
    let data = data.to_vec(); // the batch takes ownership; clone outside the timing
    let t = Instant::now();
    let batch = wh.begin_batch();
    for f in data {
        batch.write_fragment(f).unwrap();
    }
    batch.commit().unwrap();
    t.elapsed()
}

fn write_raw(base: &Path, data: &[FragmentData], sync: bool) -> Duration {
    let dir = fresh_dir(base, "raw-write");
    let t = Instant::now();
    for (i, f) in data.iter().enumerate() {
        let p = dir.join(format!("{i}.raw"));
        std::fs::write(&p, f.observations[0].pixels.as_bytes()).unwrap();
        if sync {
            std::fs::File::open(&p).unwrap().sync_all().unwrap();
        }
    }
    t.elapsed()
}

/// A warehouse with one tile's 24-date series of 4 bands: written as 24 batches, and a
/// compacted copy. Also the raw bytes of the same pixels, one file per fragment.
struct ReadSetup {
    loose: Snapshot,
    compacted: Snapshot,
    raw_loose: Vec<PathBuf>,
    raw_compacted: Vec<PathBuf>,
}

fn read_setup(base: &Path, compression: FragmentCompression) -> ReadSetup {
    let mut cfg = WarehouseConfig::new(grid());
    cfg.compression = compression;
    let loose = Warehouse::create(fresh_dir(base, "wh-loose"), cfg.clone()).unwrap();
    let compacted = Warehouse::create(fresh_dir(base, "wh-compact"), cfg).unwrap();
    let raw = fresh_dir(base, "raw-read");
    let (mut raw_loose, mut raw_compacted) = (vec![], vec![]);
    for d in 0..DATES {
        let b = loose.begin_batch();
        for band in 0..BANDS.len() {
            let f = fragment(TileId::new(0, 0), band, d..d + 1);
            let p = raw.join(format!("{d}-{band}.raw"));
            std::fs::write(&p, f.observations[0].pixels.as_bytes()).unwrap();
            raw_loose.push(p);
            b.write_fragment(f).unwrap();
        }
        b.commit().unwrap();
    }
    let b = compacted.begin_batch();
    for band in 0..BANDS.len() {
        let f = fragment(TileId::new(0, 0), band, 0..DATES);
        let bytes: Vec<u8> = f
            .observations
            .iter()
            .flat_map(|o| o.pixels.as_bytes().to_vec())
            .collect();
        let p = raw.join(format!("all-{band}.raw"));
        std::fs::write(&p, bytes).unwrap();
        raw_compacted.push(p);
        b.write_fragment(f).unwrap();
    }
    b.commit().unwrap();
    ReadSetup {
        loose: loose.snapshot(None).unwrap(),
        compacted: compacted.snapshot(None).unwrap(),
        raw_loose,
        raw_compacted,
    }
}

/// Reads every observation of tile x0_y0 and sums its pixels.
fn read_series(snap: &Snapshot) -> u64 {
    let filter = FragmentFilter {
        tile: Some(TileId::new(0, 0)),
        ..Default::default()
    };
    let mut sum = 0u64;
    for e in snap.select(&filter) {
        let f = snap.read_fragment(e).unwrap();
        for k in 0..f.len() {
            sum += f
                .pixels::<u16>(k)
                .unwrap()
                .iter()
                .map(|&v| v as u64)
                .sum::<u64>();
        }
    }
    sum
}

fn read_raw(files: &[PathBuf]) -> u64 {
    let mut sum = 0u64;
    for p in files {
        let bytes = std::fs::read(p).unwrap();
        sum += bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u64)
            .sum::<u64>();
    }
    sum
}

fn median(mut f: impl FnMut() -> Duration, n: usize) -> Duration {
    let mut v: Vec<Duration> = (0..n).map(|_| f()).collect();
    v.sort();
    v[n / 2]
}

fn timed(mut f: impl FnMut() -> u64) -> impl FnMut() -> Duration {
    move || {
        let t = Instant::now();
        black_box(f());
        t.elapsed()
    }
}

fn main() {
    let base_dir =
        tempfile::tempdir_in(std::env::var("PQ_BENCH_DIR").unwrap_or("/tmp".into())).unwrap();
    let base = base_dir.path();
    let data = scene_batch();
    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args();
    let setup = read_setup(base, FragmentCompression::None);
    assert_eq!(
        read_series(&setup.compacted),
        read_raw(&setup.raw_compacted)
    );
    assert_eq!(read_series(&setup.loose), read_raw(&setup.raw_loose));
    {
        let mut g = c.benchmark_group("write_scene_8MiB");
        g.bench_function("warehouse_batch_commit", |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| write_warehouse(base, FragmentCompression::None, &data))
                    .sum()
            })
        });
        g.bench_function("warehouse_batch_commit_lz4", |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| write_warehouse(base, FragmentCompression::Lz4, &data))
                    .sum()
            })
        });
        g.bench_function("fs_write", |b| {
            b.iter_custom(|n| (0..n).map(|_| write_raw(base, &data, false)).sum())
        });
        g.bench_function("fs_write_sync_all", |b| {
            b.iter_custom(|n| (0..n).map(|_| write_raw(base, &data, true)).sum())
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("read_tile_series_12MiB");
        g.bench_function("warehouse_compacted", |b| {
            b.iter(|| read_series(&setup.compacted))
        });
        g.bench_function("raw_compacted", |b| {
            b.iter(|| read_raw(&setup.raw_compacted))
        });
        g.bench_function("warehouse_96_fragments", |b| {
            b.iter(|| read_series(&setup.loose))
        });
        g.bench_function("raw_96_files", |b| b.iter(|| read_raw(&setup.raw_loose)));
        g.finish();
    }
    c.final_summary();
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs this binary in test mode: each benchmark ran
        // once above; skip the timing table.
        return;
    }

    // Ratios, measured here in the same process (medians of 15).
    let n = 15;
    let w = median(
        || write_warehouse(base, FragmentCompression::None, &data),
        n,
    );
    let w_lz4 = median(|| write_warehouse(base, FragmentCompression::Lz4, &data), n);
    let raw = median(|| write_raw(base, &data, false), n);
    let raw_sync = median(|| write_raw(base, &data, true), n);
    let rc = median(timed(|| read_series(&setup.compacted)), n);
    let rc_raw = median(timed(|| read_raw(&setup.raw_compacted)), n);
    let rl = median(timed(|| read_series(&setup.loose)), n);
    let rl_raw = median(timed(|| read_raw(&setup.raw_loose)), n);
    let lz = read_setup(base, FragmentCompression::Lz4);
    let rc_lz4 = median(timed(|| read_series(&lz.compacted)), n);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("\nstore bench ratios (median of {n}, same run; < 1.5 is the target)");
    println!("write 64 fragments (8 MiB) + commit:     {w:>10.2?}");
    println!(
        "  vs fs::write + sync_all per file       {raw_sync:>10.2?}  ratio {:.2}",
        ratio(w, raw_sync)
    );
    println!(
        "  vs fs::write (no durability)           {raw:>10.2?}  ratio {:.2}",
        ratio(w, raw)
    );
    println!(
        "  LZ4 warehouse                          {w_lz4:>10.2?}  ratio {:.2} vs sync_all",
        ratio(w_lz4, raw_sync)
    );
    println!("read 1 tile x 24 dates x 4 bands (12 MiB), summing every pixel:");
    println!("  compacted (4 fragments)                {rc:>10.2?}  vs fs::read {rc_raw:.2?}: ratio {:.2}", ratio(rc, rc_raw));
    println!("  as written (96 fragments)              {rl:>10.2?}  vs fs::read {rl_raw:.2?}: ratio {:.2}", ratio(rl, rl_raw));
    println!("  compacted, LZ4                         {rc_lz4:>10.2?}  vs fs::read {rc_raw:.2?}: ratio {:.2}", ratio(rc_lz4, rc_raw));
}
