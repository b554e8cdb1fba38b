//! Search and discovery against ingest: does finding the scenes matter next to ingesting them?
//!
//! A hand-written STAC API on 127.0.0.1 (`tests/support/stac_api.rs`) serves 1,000
//! Planetary-Computer-shaped Sentinel-2 items in 10 pages of 100; their assets are 12 scenes
//! of 1024 x 1024 px (red and NIR at 10 m, DEFLATE + predictor, SCL at 20 m) written by the
//! crate's COG writer and served over HTTP on 127.0.0.1, round-robin. Each round times, in
//! turns:
//!
//! - the search alone (every page fetched and parsed);
//! - search and discovery: duplicates, each item's assets chosen by band, scale and offset,
//!   fingerprints: everything before the first file is opened;
//! - the ingest of 12 of those items (each scene read over HTTP, cut, written, committed),
//!   into a new warehouse.
//!
//! and prints medians: discovery per item next to ingest per scene (the aim: at most 5%).
//!
//! `cargo bench --bench stac` (env `PQ_BENCH_ROUNDS`, default 5). Under `cargo test
//! --all-targets` it runs one small round.

#[path = "../tests/support/stac_api.rs"]
mod stac_api;
#[path = "../tests/support/stac_data.rs"]
mod stac_data;
mod support;

use ndarray::Array3;
use pixelquery::cog::{write_cog, WriteOptions};
use pixelquery::ingest::pipeline::{ingest_scenes, IngestOptions, Quiet};
use pixelquery::ingest::stac::{run, SearchSpec, SigningOptions};
use pixelquery::GeoTransform;
use serde_json::json;
use stac_api::{files, HttpServer, MockApi, MockSettings, Require};
use std::path::Path;
use std::time::Instant;

/// Side of a scene in 10 m pixels.
const SIDE: usize = 1024;
/// Distinct scenes the items point at.
const SCENES: usize = 12;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A Sentinel-2-like scene: red and NIR with texture (so DEFLATE works as on real data), SCL.
fn write_scene(dir: &Path, t: usize, side: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let opts = |res: f64, name: &str| WriteOptions {
        block_size: 512,
        overviews: false,
        transform: Some(GeoTransform::north_up(399_960.0, 4_040_040.0, res, res)),
        epsg: Some(32652),
        nodata: Some(0.0),
        band_descriptions: vec![name.to_string()],
        ..Default::default()
    };
    for (b, name) in ["B04", "B08"].iter().enumerate() {
        let mut state = (t * 7919 + b * 104_729 + 1) as u64;
        let px = Array3::from_shape_fn((1, side, side), |(_, y, x)| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let noise = (state >> 58) as usize;
            (800 + (x / 16 + y / 16 + t * 13 + b * 400) % 1500 + noise * 4) as u16
        });
        write_cog(
            dir.join(format!("{name}.tif")),
            px.view(),
            &opts(10.0, name),
        )
        .unwrap();
    }
    let scl = Array3::from_shape_fn((1, side / 2, side / 2), |(_, y, x)| {
        if (x / 64 + y / 64 + t).is_multiple_of(9) {
            9u8
        } else {
            4u8
        }
    });
    write_cog(dir.join("SCL.tif"), scl.view(), &opts(20.0, "SCL")).unwrap();
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (items_n, page, side, rounds) = if bench {
        (1000, 100, SIDE, env_usize("PQ_BENCH_ROUNDS", 5).max(1))
    } else {
        (30, 10, 128, 1)
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("files");
    for t in 0..SCENES {
        write_scene(&root.join(format!("scene{t:02}")), t, side);
    }
    let server = HttpServer::start(files(root.clone(), Require::default()));
    let base = chrono::DateTime::parse_from_rfc3339("2020-01-01T02:16:59Z").unwrap();
    let items: Vec<serde_json::Value> = (0..items_n)
        .map(|i| {
            let t = i % SCENES;
            let when = base + chrono::Duration::days(i as i64);
            let mut item = stac_data::pc_item(
                &format!("S2A_MSIL2A_{}_R003_T52SDG", when.format("%Y%m%dT%H%M%S")),
                0,
                if i % 2 == 0 { "03.01" } else { "05.00" },
                &format!("{}/scene{t:02}", server.base()),
            );
            item["properties"]["datetime"] = json!(when.to_rfc3339());
            item
        })
        .collect();
    let api = MockApi::start(
        &["sentinel-2-l2a"],
        items,
        MockSettings {
            page_size: page,
            matched: true,
            ..Default::default()
        },
    );
    let mut spec = SearchSpec::new(&api.url(), &["sentinel-2-l2a"]);
    spec.bands = Some(vec!["red".into(), "nir".into()]);
    spec.limit = Some(page as u32);
    let options = IngestOptions::default();
    let signing = SigningOptions::default();

    let mut search = Vec::new();
    let mut discovery = Vec::new();
    let mut ingest = Vec::new();
    let mut pages = 0;
    let mut scenes_read = 0u64;
    for round in 0..rounds {
        // The search alone.
        let mut checked = spec.clone();
        checked.check().unwrap();
        let client = pixelquery::source::api::JsonClient::new(&options.remote);
        let t = Instant::now();
        let found = pixelquery::ingest::stac::search::search(&checked, &client, &()).unwrap();
        search.push(t.elapsed().as_secs_f64());
        assert_eq!(found.items.len(), items_n);
        pages = found.pages;
        // Search and discovery: scenes ready to ingest.
        let t = Instant::now();
        let d = run::discover(&spec, &options, &signing, &()).unwrap();
        discovery.push(t.elapsed().as_secs_f64());
        let scenes = &d.groups[&Some("sentinel2_l2a".to_string())];
        assert_eq!(scenes.len(), items_n);
        // Ingest SCENES of them into a new warehouse.
        let wh = tmp.path().join(format!("wh{round}"));
        let t = Instant::now();
        let r = ingest_scenes(
            &wh,
            &scenes[..SCENES],
            &IngestOptions {
                product: Some("sentinel2_l2a".into()),
                ..IngestOptions::default()
            },
            &Quiet,
        )
        .unwrap();
        ingest.push(t.elapsed().as_secs_f64());
        assert_eq!(r.scenes_ingested, SCENES, "{r:?}");
        scenes_read = r.bytes_in / SCENES as u64;
        std::fs::remove_dir_all(&wh).unwrap();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, d, i) = (
        median(&mut search),
        median(&mut discovery),
        median(&mut ingest),
    );
    let per_item = d / items_n as f64;
    let per_scene = i / SCENES as f64;
    println!(
        "{items_n} items in {pages} pages (loopback); {SCENES} scenes of {side}x{side} px, {:.1} MB read each; medians of {rounds} rounds",
        scenes_read as f64 / 1e6
    );
    println!("| step | total | per item / scene |");
    println!("|---|---|---|");
    println!(
        "| search (all pages) | {:.1} ms | {:.3} ms per item |",
        s * 1e3,
        s / items_n as f64 * 1e3
    );
    println!(
        "| search + discovery | {:.1} ms | {:.3} ms per item |",
        d * 1e3,
        per_item * 1e3
    );
    println!(
        "| ingest of {SCENES} scenes | {:.1} ms | {:.1} ms per scene |",
        i * 1e3,
        per_scene * 1e3
    );
    println!(
        "discovery per item / ingest per scene: {:.2}% (aim: <= 5%)",
        per_item / per_scene * 100.0
    );
}
