//! Ingest and query end to end, the way the CLI drives the library: scenes written by the
//! crate's writer (or corpus scenes when present) go in; what comes out of queries must equal
//! the source pixels read straight from the COGs.

mod common;

use ndarray::Array3;
use pixelquery::cog::{write_cog, Cog, Window, WriteOptions};
use pixelquery::ingest::discover;
use pixelquery::ingest::pipeline::{ingest, ingest_scenes, IngestOptions, Quiet};
use pixelquery::query::{Period, Reducer, Region};
use pixelquery::store::Warehouse;
use pixelquery::{Bounds, GeoTransform};
use std::path::{Path, PathBuf};

const ORIGIN: (f64, f64) = (300000.0, 4000000.0);
const SIZE: usize = 200;
const DATES: [&str; 3] = ["2023-05-01", "2023-06-01", "2023-07-01"];

fn value(t: usize, b: usize, y: usize, x: usize) -> u16 {
    if x < 3 {
        return 0; // nodata edge
    }
    (100 + t * 1000 + b * 100 + (y * 7 + x * 3) % 97) as u16
}

/// Writes 3 dates of a 4-band u16 scene (band descriptions B02..B08, nodata 0).
fn write_series(dir: &Path) -> Vec<PathBuf> {
    DATES
        .iter()
        .enumerate()
        .map(|(t, date)| {
            let data = Array3::from_shape_fn((4, SIZE, SIZE), |(b, y, x)| value(t, b, y, x));
            let path = dir.join(format!("S2_{}_10m.tif", date.replace('-', "")));
            let options = WriteOptions {
                block_size: 64,
                transform: Some(GeoTransform::north_up(ORIGIN.0, ORIGIN.1, 10.0, 10.0)),
                epsg: Some(32652),
                nodata: Some(0.0),
                band_descriptions: ["B02", "B03", "B04", "B08"].map(String::from).to_vec(),
                ..Default::default()
            };
            write_cog(&path, data.view(), &options).unwrap();
            path
        })
        .collect()
}

fn s2() -> IngestOptions {
    IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    }
}

#[test]
fn ingest_then_query_returns_the_source_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = dir.path().join("scenes");
    std::fs::create_dir_all(&scenes).unwrap();
    write_series(&scenes);
    let wh = dir.path().join("wh");
    let inputs = [scenes.display().to_string()];

    let report = ingest(&wh, &inputs, &s2(), &Quiet).unwrap();
    assert_eq!((report.scenes_found, report.scenes_ingested), (3, 3));
    assert!(report.failed.is_empty() && report.fragments > 0);
    assert_eq!(report.versions.len(), 1);

    // Re-running is a no-op.
    let again = ingest(&wh, &inputs, &s2(), &Quiet).unwrap();
    assert_eq!((again.scenes_ingested, again.skipped.len()), (0, 3));

    let warehouse = Warehouse::open(&wh).unwrap();
    // A point in the grid CRS at pixel (x=57, y=31) of the scenes.
    let (px, py) = (ORIGIN.0 + 57.5 * 10.0, ORIGIN.1 - 31.5 * 10.0);
    let cube = warehouse.query().point(px, py).crs(32652).run().unwrap();
    assert_eq!(cube.dim(), (3, 4, 1, 1));
    assert_eq!(cube.bands, ["B02", "B03", "B04", "B08"]);
    for t in 0..3 {
        for b in 0..4 {
            assert_eq!(cube.data[[t, b, 0, 0]], value(t, b, 31, 57) as f32);
        }
    }
    assert_eq!(cube.times[1].to_rfc3339(), "2023-06-01T00:00:00+00:00");

    // A box: bit-exact against the source window, nodata edge invalid.
    let bbox = Bounds::new(ORIGIN.0, ORIGIN.1 - 400.0, ORIGIN.0 + 500.0, ORIGIN.1);
    let cube = warehouse
        .query()
        .bbox(bbox)
        .crs(32652)
        .bands(&["red"])
        .run()
        .unwrap();
    assert_eq!(cube.dim(), (3, 1, 40, 50));
    assert!(cube.data[[0, 0, 5, 1]].is_nan());
    assert_eq!(cube.data[[2, 0, 39, 49]], value(2, 2, 39, 49) as f32);

    // Band math on physical values.
    let ndvi = warehouse
        .query()
        .point(px, py)
        .crs(32652)
        .index("ndvi")
        .unwrap()
        .run()
        .unwrap();
    let (nir, red) = (
        value(0, 3, 31, 57) as f32 * 1e-4,
        value(0, 2, 31, 57) as f32 * 1e-4,
    );
    assert!((ndvi.data[[0, 0, 0, 0]] - (nir - red) / (nir + red)).abs() < 1e-6);

    // Composites and time ranges.
    let med = warehouse
        .query()
        .point(px, py)
        .crs(32652)
        .bands(&["nir"])
        .composite(Reducer::Median, Period::All)
        .run()
        .unwrap();
    assert_eq!(med.data[[0, 0, 0, 0]], value(1, 3, 31, 57) as f32);
    let june = warehouse
        .query()
        .point(px, py)
        .crs(32652)
        .time(
            pixelquery::time::parse_datetime("2023-06-01").unwrap(),
            pixelquery::time::parse_datetime("2023-06-30").unwrap(),
        )
        .run()
        .unwrap();
    assert_eq!(june.times.len(), 1);

    // A monthly median NDVI whose inputs (3 months x 2 bands, ~1 MB) do not fit in a 500 kB
    // budget but whose output does: painted a month at a time, the same cube.
    let monthly = |budget: Option<u64>| {
        let q = warehouse
            .query()
            .bbox(Bounds::new(
                ORIGIN.0 + 200.0,
                ORIGIN.1 - 1200.0,
                ORIGIN.0 + 1200.0,
                ORIGIN.1 - 200.0,
            ))
            .crs(32652)
            .index("ndvi")
            .unwrap()
            .composite(Reducer::Median, Period::Month);
        match budget {
            Some(b) => q.memory_budget(b).run(),
            None => q.run(),
        }
    };
    let whole = monthly(None).unwrap();
    assert_eq!(whole.data.dim(), (3, 1, 100, 100));
    let by_month = monthly(Some(500_000)).unwrap();
    assert_eq!(by_month.times, whole.times);
    assert!(by_month
        .data
        .iter()
        .zip(whole.data.iter())
        .all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
    // When one month's inputs alone do not fit, the error says how large the cube is.
    let e = monthly(Some(250_000)).unwrap_err();
    assert!(e.to_string().contains("in memory"), "{e}");

    // Polygon clip: a triangle keeps roughly half the box.
    let tri = Region::Polygons(vec![vec![vec![
        (ORIGIN.0 + 100.0, ORIGIN.1 - 100.0),
        (ORIGIN.0 + 500.0, ORIGIN.1 - 100.0),
        (ORIGIN.0 + 100.0, ORIGIN.1 - 500.0),
        (ORIGIN.0 + 100.0, ORIGIN.1 - 100.0),
    ]]]);
    let tri_region = tri.clone();
    let clipped = warehouse
        .query()
        .region(tri)
        .crs(32652)
        .bands(&["B02"])
        .run()
        .unwrap();
    let valid = clipped.valid().iter().filter(|&&v| v).count() / 3;
    assert!(
        (700..=900).contains(&valid),
        "{valid} pixels inside the triangle"
    );

    // Native u16 cubes hold the same pixels (nodata 0 where the f32 cube has NaN).
    for region in [Region::Point(px, py), Region::BBox(bbox), tri_region] {
        let q = || warehouse.query().region(region.clone()).crs(32652);
        let native = q().run_native::<u16>().unwrap();
        assert_eq!(native.fill, 0);
        let f = q().run().unwrap();
        let n = native.to_f32();
        assert_eq!((n.dim(), &n.times, &n.bands), (f.dim(), &f.times, &f.bands));
        assert!(n
            .data
            .iter()
            .zip(f.data.iter())
            .all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
        assert_eq!(native.transform, f.transform);
    }
    let err = warehouse
        .query()
        .point(px, py)
        .crs(32652)
        .run_native::<f32>()
        .unwrap_err();
    assert!(err.to_string().contains("u16"), "{err}");
    let err = warehouse
        .query()
        .point(px, py)
        .crs(32652)
        .index("ndvi")
        .unwrap()
        .run_native::<u16>()
        .unwrap_err();
    assert!(err.to_string().contains("Query::run"), "{err}");

    // Errors name the problem.
    let err = warehouse
        .query()
        .point(px, py)
        .crs(32652)
        .bands(&["swir99"])
        .run()
        .unwrap_err();
    assert!(err.to_string().contains("swir99"), "{err}");
    let err = warehouse.query().point(0.0, 0.0).run().unwrap_err();
    assert!(err.to_string().contains("no data"), "{err}");
}

#[test]
fn scenes_discovered_once_ingest_in_batches_like_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let scenes_dir = dir.path().join("scenes");
    std::fs::create_dir_all(&scenes_dir).unwrap();
    write_series(&scenes_dir);
    let inputs = [scenes_dir.display().to_string()];
    let scenes = discover(&inputs, None).unwrap();
    assert_eq!(scenes.len(), 3);

    // Two writers, each with its own batch, into one warehouse.
    let batched = dir.path().join("batched");
    let first = ingest_scenes(&batched, &scenes[..1], &s2(), &Quiet).unwrap();
    let rest = ingest_scenes(&batched, &scenes[1..], &s2(), &Quiet).unwrap();
    assert_eq!((first.scenes_ingested, rest.scenes_ingested), (1, 2));
    assert_eq!(rest.versions, [2]);
    let again = ingest_scenes(&batched, &scenes, &s2(), &Quiet).unwrap();
    assert_eq!(again.skipped.len(), 3);

    let whole = dir.path().join("whole");
    ingest(&whole, &inputs, &s2(), &Quiet).unwrap();
    let cube = |p: &Path| {
        Warehouse::open(p)
            .unwrap()
            .query()
            .bbox(Bounds::new(
                ORIGIN.0,
                ORIGIN.1 - 500.0,
                ORIGIN.0 + 700.0,
                ORIGIN.1,
            ))
            .crs(32652)
            .run_native::<u16>()
            .unwrap()
    };
    // Native cubes: exact samples, and no NaN (which is never equal to itself).
    assert_eq!(cube(&batched), cube(&whole));
}

#[test]
fn a_bad_scene_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = dir.path().join("scenes");
    std::fs::create_dir_all(&scenes).unwrap();
    write_series(&scenes);
    std::fs::copy(
        common::fixtures().join("cog/broken/corrupt_deflate_tile.tif"),
        scenes.join("S2_20230801_10m.tif"),
    )
    .unwrap();
    std::fs::write(scenes.join("S2_20230901_10m.tif"), b"not a tiff").unwrap();
    let report = ingest(
        &dir.path().join("wh"),
        &[scenes.display().to_string()],
        &s2(),
        &Quiet,
    )
    .unwrap();
    assert_eq!(report.scenes_ingested, 3);
    assert_eq!(report.failed.len(), 2);
    assert!(
        report.failed.iter().any(|f| f.reason.contains("DEFLATE")),
        "{:?}",
        report.failed
    );
    assert!(
        report
            .failed
            .iter()
            .any(|f| f.reason.contains("not a TIFF")),
        "{:?}",
        report.failed
    );
}

#[test]
fn corpus_scenes_round_trip_bit_exact() {
    let Some(corpus) = common::corpus() else {
        eprintln!("no corpus; skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = ["S2L_T52_20230611_10m.tif", "S2L_T52_20230716_10m.tif"]
        .iter()
        .map(|f| corpus.join("ts").join(f).display().to_string())
        .collect();
    let report = ingest(&dir.path().join("wh"), &files, &s2(), &Quiet).unwrap();
    assert_eq!(report.scenes_ingested, 2);
    let warehouse = Warehouse::open(dir.path().join("wh")).unwrap();
    let cog = Cog::open(&files[0]).unwrap();
    let want = cog
        .read_window::<u16>(0, Window::new(100, 200, 300, 250), &[2])
        .unwrap();
    let t = cog.meta().transform().unwrap();
    let (x0, y0) = t.apply(100.0, 200.0);
    let cube = warehouse
        .query()
        .bbox(Bounds::new(x0, y0 - 2500.0, x0 + 3000.0, y0))
        .crs(32652)
        .bands(&["B04"])
        .run()
        .unwrap();
    assert_eq!(cube.dim(), (2, 1, 250, 300));
    for y in 0..250 {
        for x in 0..300 {
            let w = want[[0, y, x]];
            let got = cube.data[[0, 0, y, x]];
            if w == 0 {
                assert!(got.is_nan());
            } else {
                assert_eq!(got, w as f32, "pixel {x},{y}");
            }
        }
    }
}

#[test]
fn corpus_box_across_tiles_and_past_the_scene_edge_matches_the_cogs() {
    let Some(corpus) = common::corpus() else {
        eprintln!("no corpus; skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = ["S2L_T52_20230611_10m.tif", "S2L_T52_20230716_10m.tif"]
        .iter()
        .map(|f| corpus.join("ts").join(f).display().to_string())
        .collect();
    ingest(&dir.path().join("wh"), &files, &s2(), &Quiet).unwrap();
    let warehouse = Warehouse::open(dir.path().join("wh")).unwrap();
    // Scene pixels (700, 800) to 60 px past the right and bottom edges (1024): several grid
    // tiles, a box not aligned to them, and pixels no fragment covers.
    let (x, y, w, h) = (700usize, 800usize, 384usize, 284usize);
    let cube = {
        let cog = Cog::open(&files[0]).unwrap();
        let t = cog.meta().transform().unwrap();
        let (x0, y0) = t.apply(x as f64, y as f64);
        warehouse
            .query()
            .bbox(Bounds::new(
                x0,
                y0 - h as f64 * 10.0,
                x0 + w as f64 * 10.0,
                y0,
            ))
            .crs(32652)
            .run()
            .unwrap()
    };
    assert_eq!(cube.dim(), (2, 4, h, w));
    for (ti, file) in files.iter().enumerate() {
        let cog = Cog::open(file).unwrap();
        let (iw, ih) = (1024 - x, 1024 - y);
        let want = cog
            .read_window::<u16>(
                0,
                Window::new(x as u32, y as u32, iw as u32, ih as u32),
                &[0, 1, 2, 3],
            )
            .unwrap();
        for b in 0..4 {
            for yy in 0..h {
                for xx in 0..w {
                    let got = cube.data[[ti, b, yy, xx]];
                    let inside = xx < iw && yy < ih;
                    match inside.then(|| want[[b, yy, xx]]) {
                        Some(v) if v != 0 => assert_eq!(got, v as f32, "t{ti} b{b} ({xx}, {yy})"),
                        _ => assert!(got.is_nan(), "t{ti} b{b} ({xx}, {yy}): {got}"),
                    }
                }
            }
        }
    }
}
