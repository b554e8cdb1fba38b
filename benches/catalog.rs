//! The commit log stays fast for years: one warehouse takes small commits (one scene, one
//! 16x16 fragment each, as a daily ingest of one small tile would) up to 10,000, and at 10,
//! 100, 1,000 and 10,000 commits this prints the time of a commit and of opening the latest
//! snapshot, next to the floor of opening it: reading the live catalog part files and decoding
//! their Parquet, measured in the same run. Rows grow with the commits (one fragment and one
//! scene each), so the floor grows too; what must stay flat is the log's share, i.e. the
//! ratio of open to floor, and the commit time.
//!
//! `cargo bench --bench catalog` (`PQ_BENCH_COMMITS=1000` for a shorter run; the warehouse is
//! written under `bench-data/catalog`, on the disk the machine has).

use chrono::DateTime;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pixelquery::store::*;
use pixelquery::{DataType, GeoTransform, GridSpec, TileId};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZE: u32 = 16;

fn grid() -> GridSpec {
    GridSpec {
        epsg: 32633,
        origin_x: 0.0,
        origin_y: 0.0,
        tile_size: 160.0,
    }
}

/// One day's commit: one scene, one fragment.
fn commit_one(wh: &Warehouse, day: u32) -> Duration {
    let time = DateTime::from_timestamp(1_600_000_000 + i64::from(day) * 86_400, 0).unwrap();
    let t = Instant::now();
    let batch = wh.begin_batch();
    batch
        .write_fragment(FragmentData {
            tile: TileId::new(0, 0),
            band: "B04".into(),
            product: "S2".into(),
            dtype: DataType::U16,
            nodata: Some(0.0),
            scale: 1e-4,
            offset: 0.0,
            tile_transform: GeoTransform::north_up(0.0, 160.0, 10.0, 10.0),
            width: SIZE,
            height: SIZE,
            footprint_lonlat: vec![(15.0, 0.0), (15.01, 0.0), (15.01, 0.01), (15.0, 0.01)],
            resolution: 10.0,
            observations: vec![Observation {
                time,
                scene_id: format!("S2_{day:05}"),
                pixels: vec![1000u16 + (day % 1000) as u16; (SIZE * SIZE) as usize].into(),
                valid: None,
            }],
        })
        .unwrap();
    batch
        .add_scene(SceneRecord {
            scene_id: format!("S2_{day:05}"),
            source: format!("/data/S2_{day:05}.tif"),
            acquired: time,
            product: "S2".into(),
            footprint_lonlat: vec![(15.0, 0.0), (15.01, 0.0), (15.01, 0.01), (15.0, 0.01)],
            cloud_cover: Some(10.0),
            fingerprint: format!("fp-{day}"),
            ..Default::default()
        })
        .unwrap();
    batch.commit().unwrap();
    t.elapsed()
}

/// Reading the live part files and decoding their Parquet: what opening costs at the least.
fn floor(wh: &Warehouse, snap: &Snapshot) -> usize {
    let mut rows = 0;
    for p in snap.parts() {
        let bytes = std::fs::read(wh.root().join(&p.path)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            rows += b.unwrap().num_rows();
        }
    }
    rows
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total: u32 = std::env::var("PQ_BENCH_COMMITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data/catalog");
    let _ = std::fs::remove_dir_all(&dir);
    let wh = Warehouse::create(&dir, WarehouseConfig::new(grid())).unwrap();
    let marks: Vec<u32> = [10, 100, 1_000, 10_000]
        .into_iter()
        .filter(|m| *m <= total)
        .collect();
    println!(
        "\n{:>8} {:>12} {:>12} {:>12} {:>10} {:>7} {:>7} {:>10}",
        "commits", "commit ms", "open ms", "floor ms", "open/floor", "parts", "rows", "log files"
    );
    let mut day = 0;
    let mut recent = Vec::new();
    for mark in marks {
        while day < mark {
            recent.push(commit_one(&wh, day));
            if recent.len() > 50 {
                recent.remove(0);
            }
            day += 1;
        }
        // Commit time: the median of the last commits before the mark (merges and
        // checkpoints included, as they happen).
        let commit = median(recent.clone());
        let (mut opens, mut floors) = (Vec::new(), Vec::new());
        let mut snap = wh.snapshot(None).unwrap();
        for _ in 0..15 {
            let t = Instant::now();
            snap = black_box(wh.snapshot(None).unwrap());
            opens.push(t.elapsed());
            let t = Instant::now();
            black_box(floor(&wh, &snap));
            floors.push(t.elapsed());
        }
        let (open, fl) = (median(opens), median(floors));
        let log_files = std::fs::read_dir(dir.join("catalog/_delta_log"))
            .unwrap()
            .count();
        println!(
            "{:>8} {:>12.2} {:>12.2} {:>12.2} {:>9.2}x {:>7} {:>7} {:>10}",
            mark,
            ms(commit),
            ms(open),
            ms(fl),
            open.as_secs_f64() / fl.as_secs_f64(),
            snap.parts().len(),
            snap.fragments().len() + snap.scenes().len(),
            log_files
        );
        assert_eq!(snap.scenes().len(), mark as usize);
    }
    println!(
        "(commit: median of the last 50 commits before the mark; open and floor: medians of 15, \
         alternating)"
    );
}
