//! Helpers of the CLI tests against the S3 test server (`tests/s3_cli.rs`,
//! `tests/s3_faults.rs`): the environment, fresh warehouse URLs, small scenes, the ingest
//! arguments and the queries whose outputs are compared between warehouses.
#![allow(dead_code)] // each test binary uses a different part

use super::common::run_cli;
use ndarray::Array3;
use pixelquery::cog::{write_cog, WriteOptions};
use pixelquery::GeoTransform;
use std::path::{Path, PathBuf};

/// The environment that points the CLI at the test server, or `None` (skip).
pub fn s3_env() -> Option<Vec<(&'static str, String)>> {
    let server = super::common::s3_server()?;
    Some(vec![
        ("AWS_ENDPOINT_URL", server.endpoint),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", server.key),
        ("AWS_SECRET_ACCESS_KEY", server.secret),
    ])
}

/// A fresh warehouse URL in the test bucket.
pub fn url(name: &str) -> String {
    let bucket = std::env::var("PIXELQUERY_TEST_S3_BUCKET").unwrap_or_else(|_| "pqtest".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3://{bucket}/{name}-{nanos}-{}", std::process::id())
}

pub fn cli(args: &[&str], env: &[(&'static str, String)]) -> (i32, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_cli(args, &env)
}

pub fn ok(args: &[&str], env: &[(&'static str, String)]) -> String {
    let (code, out, err) = cli(args, env);
    assert_eq!(code, 0, "pixelquery {args:?} failed:\n{out}\n{err}");
    out
}

/// Upper-left corner of the test scenes (EPSG:32652) and their side in 10 m pixels.
pub const ORIGIN: (f64, f64) = (400_000.0, 4_000_000.0);
pub const SIDE: usize = 96;

/// `n` small 4-band scenes, one per day, each shifted a little so they overlap two tiles of
/// a 640 m grid and have different contents (fingerprints).
pub fn write_scenes(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let data = Array3::<u16>::from_shape_fn((4, SIDE, SIDE), |(b, y, x)| {
                if x + y < 5 {
                    0 // a nodata corner
                } else {
                    (100 + 1000 * b + 7 * x + 3 * y + 11 * i) as u16
                }
            });
            let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
                + chrono::Duration::days(i as i64);
            let options = WriteOptions {
                block_size: 64,
                transform: Some(GeoTransform::north_up(
                    ORIGIN.0 + 10.0 * (i % 3) as f64,
                    ORIGIN.1,
                    10.0,
                    10.0,
                )),
                epsg: Some(32652),
                nodata: Some(0.0),
                band_descriptions: ["B02", "B03", "B04", "B08"].map(String::from).to_vec(),
                metadata: vec![(
                    "ACQUISITION_DATETIME".into(),
                    format!("{}T02:00:00Z", day.format("%Y-%m-%d")),
                )],
                ..Default::default()
            };
            let path = dir.join(format!("S{i:02}_{}.tif", day.format("%Y%m%d")));
            write_cog(&path, data.view(), &options).unwrap();
            path
        })
        .collect()
}

pub const INGEST: [&str; 5] = [
    "--product",
    "sentinel2_l2a",
    "--bands",
    "blue,green,red,nir",
    "--tile-size=640",
];

pub fn ingest_args<'a>(wh: &'a str, inputs: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["ingest", wh];
    args.extend(inputs.iter().map(String::as_str));
    args.extend(INGEST);
    args.extend(extra);
    args
}

/// The queries compared between warehouses: a point table, a box as a native COG and as a
/// CSV long table, a polygon's statistics. Returns their outputs (files read back).
pub fn queries(wh: &str, out: &Path, env: &[(&'static str, String)]) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(out).unwrap();
    let (x, y) = (ORIGIN.0 + 455.0, ORIGIN.1 - 305.0);
    let point = format!("{x},{y}");
    let bbox = format!(
        "{},{},{},{}",
        ORIGIN.0,
        ORIGIN.1 - 800.0,
        ORIGIN.0 + 800.0,
        ORIGIN.1
    );
    let mut results =
        vec![ok(&["query", wh, "--point", &point, "--crs", "32652"], env).into_bytes()];
    for (name, extra) in [("box.tif", vec!["--dtype", "native"]), ("box.csv", vec![])] {
        let file = out.join(name);
        let file_s = file.display().to_string();
        let mut args = vec![
            "query", wh, "--bbox", &bbox, "--crs", "32652", "--out", &file_s,
        ];
        args.extend(extra);
        ok(&args, env);
        results.push(std::fs::read(&file).unwrap());
    }
    let geojson = out.join("field.geojson");
    let ring = format!(
        "[[{a},{b}],[{c},{b}],[{c},{d}],[{a},{b}]]",
        a = ORIGIN.0 + 100.0,
        b = ORIGIN.1 - 700.0,
        c = ORIGIN.0 + 700.0,
        d = ORIGIN.1 - 100.0
    );
    std::fs::write(
        &geojson,
        format!(r#"{{"type":"Polygon","coordinates":[{ring}]}}"#),
    )
    .unwrap();
    results.push(
        ok(
            &[
                "query",
                wh,
                "--geojson",
                &geojson.display().to_string(),
                "--crs",
                "32652",
                "--index",
                "ndvi",
            ],
            env,
        )
        .into_bytes(),
    );
    results
}
