//! The CLI on warehouses in object storage, against a real S3 server (SeaweedFS, started on
//! 127.0.0.1 by `.ci/run` through `.ci/s3-server`; the tests skip without `PIXELQUERY_TEST_S3`
//! unless `PIXELQUERY_REQUIRE_S3` is set, as CI does): the same queries as on a local folder,
//! byte for byte; four sharded writers at once; writers killed at random points.

mod common;

use common::run_cli;
use ndarray::Array3;
use pixelquery::cog::{write_cog, WriteOptions};
use pixelquery::GeoTransform;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment that points the CLI at the test server, or `None` (skip).
fn s3_env() -> Option<Vec<(&'static str, String)>> {
    let server = common::s3_server()?;
    Some(vec![
        ("AWS_ENDPOINT_URL", server.endpoint),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", server.key),
        ("AWS_SECRET_ACCESS_KEY", server.secret),
    ])
}

/// A fresh warehouse URL in the test bucket.
fn url(name: &str) -> String {
    let bucket = std::env::var("PIXELQUERY_TEST_S3_BUCKET").unwrap_or_else(|_| "pqtest".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3://{bucket}/{name}-{nanos}-{}", std::process::id())
}

fn cli(args: &[&str], env: &[(&'static str, String)]) -> (i32, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_cli(args, &env)
}

fn ok(args: &[&str], env: &[(&'static str, String)]) -> String {
    let (code, out, err) = cli(args, env);
    assert_eq!(code, 0, "pixelquery {args:?} failed:\n{out}\n{err}");
    out
}

/// Upper-left corner of the test scenes (EPSG:32652) and their side in 10 m pixels.
const ORIGIN: (f64, f64) = (400_000.0, 4_000_000.0);
const SIDE: usize = 96;

/// `n` small 4-band scenes, one per day, each shifted a little so they overlap two tiles of
/// a 640 m grid and have different contents (fingerprints).
fn write_scenes(dir: &Path, n: usize) -> Vec<PathBuf> {
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

const INGEST: [&str; 5] = [
    "--product",
    "sentinel2_l2a",
    "--bands",
    "blue,green,red,nir",
    "--tile-size=640",
];

fn ingest_args<'a>(wh: &'a str, inputs: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["ingest", wh];
    args.extend(inputs.iter().map(String::as_str));
    args.extend(INGEST);
    args.extend(extra);
    args
}

/// The queries compared between warehouses: a point table, a box as a native COG and as a
/// CSV long table, a polygon's statistics. Returns their outputs (files read back).
fn queries(wh: &str, out: &Path, env: &[(&'static str, String)]) -> Vec<Vec<u8>> {
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

#[test]
fn every_command_on_s3_gives_the_bytes_a_local_warehouse_gives() {
    let Some(env) = s3_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scenes: Vec<String> = write_scenes(&dir.path().join("scenes"), 5)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let remote = url("cli");
    let local = dir.path().join("local").display().to_string();
    // Two runs each (two commits), so compact has something to merge.
    for wh in [remote.as_str(), local.as_str()] {
        ok(&ingest_args(wh, &scenes[..3], &[]), &env);
        ok(&ingest_args(wh, &scenes[3..], &["--json"]), &env);
    }
    let expected = queries(&local, &dir.path().join("q-local"), &env);
    assert_eq!(queries(&remote, &dir.path().join("q-s3"), &env), expected);

    // Reads are ranged requests, counted.
    let (x, y) = (ORIGIN.0 + 455.0, ORIGIN.1 - 305.0);
    let (code, _, err) = cli(
        &[
            "query",
            &remote,
            "--point",
            &format!("{x},{y}"),
            "--crs",
            "32652",
            "--io-stats",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(stats["warehouse"], remote.as_str());
    assert!(stats["requests"].as_u64().unwrap() > 0, "{stats}");

    let info = ok(&["info", &remote], &env);
    assert!(info.contains("scenes      5"), "{info}");
    for wh in [remote.as_str(), local.as_str()] {
        let out = ok(&["compact", wh, "--period", "all"], &env);
        assert!(out.contains("compacted"), "{out}");
        ok(&["vacuum", wh, "--older-than", "0"], &env);
        let v = ok(&["verify", wh], &env);
        assert!(v.contains("0 unreferenced files, 0 problems"), "{v}");
    }
    // After compaction and vacuum the answers are still the same bytes.
    assert_eq!(queries(&remote, &dir.path().join("q-s3-2"), &env), expected);
    assert_eq!(
        queries(&local, &dir.path().join("q-local-2"), &env),
        expected
    );
}

#[test]
fn four_sharded_writers_ingest_twenty_four_scenes_once_each() {
    let Some(env) = s3_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scenes: Vec<String> = write_scenes(&dir.path().join("scenes"), 24)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let wh = url("shards");
    // Four processes at once, as four pods of an Indexed Job, each committing per 2 scenes.
    let children: Vec<Child> = (0..4)
        .map(|k| {
            let shard = format!("--shard={k}/4");
            let args = ingest_args(&wh, &scenes, &[&shard, "--commit-every=2", "--json"]);
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_pixelquery"));
            cmd.args(&args)
                .envs(env.iter().map(|(k, v)| (k, v.as_str())))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["scenes_found"], 6, "{report}");
        assert_eq!(report["scenes_ingested"], 6, "{report}");
        assert!(report["warehouse_transfer"]["requests"].as_u64().unwrap() > 0);
    }
    let info = ok(&["info", &wh], &env);
    assert!(info.contains("scenes      24"), "{info}");
    let v = ok(&["verify", &wh], &env);
    assert!(v.contains(" 0 problems"), "{v}");
    // Every date once at a pixel all scenes cover.
    let (x, y) = (ORIGIN.0 + 455.0, ORIGIN.1 - 305.0);
    let table = ok(
        &[
            "query",
            &wh,
            "--point",
            &format!("{x},{y}"),
            "--crs",
            "32652",
        ],
        &env,
    );
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 24, "{table}");
    let mut dates: Vec<&str> = rows
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    dates.dedup();
    assert_eq!(dates.len(), 24, "{table}");
}

/// A small deterministic generator (seeded from the clock; printed to replay).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn a_writer_killed_at_random_points_leaves_a_warehouse_that_verifies_and_completes() {
    let Some(env) = s3_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scenes: Vec<String> = write_scenes(&dir.path().join("scenes"), 12)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let seed = std::env::var("PQ_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("S3 kill test seed {seed} (set PQ_KILL_SEED to replay)");
    let mut rng = Lcg(seed);
    let spawn = |wh: &str| {
        let args = ingest_args(wh, &scenes, &["--commit-every=1"]);
        Command::new(env!("CARGO_BIN_EXE_pixelquery"))
            .args(&args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // One uninterrupted run, to spread the kills over its length.
    let timing = url("kill-timing");
    let start = Instant::now();
    assert!(spawn(&timing).wait().unwrap().success());
    let full = start.elapsed().max(Duration::from_millis(200));

    let (mut kills, mut runs) = (0, 0);
    for cycle in 0..4 {
        let wh = url(&format!("kill{cycle}"));
        for _ in 0..2 {
            let mut child = spawn(&wh);
            runs += 1;
            let delay = Duration::from_micros(rng.next() % full.as_micros() as u64);
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            child.wait().unwrap();
            // Whatever was committed is whole; a killed run's uploads are only unreferenced.
            let (code, out, err) = cli(&["verify", &wh], &env);
            if code != 0 && err.contains("not a PixelQuery warehouse") {
                continue; // killed before the warehouse existed
            }
            assert_eq!(code, 0, "after a kill at {delay:?}: {out}{err}");
        }
        // A re-run completes the work: every scene once.
        ok(&ingest_args(&wh, &scenes, &[]), &env);
        let info = ok(&["info", &wh], &env);
        assert!(info.contains("scenes      12"), "{info}");
        ok(&["vacuum", &wh, "--older-than", "0"], &env);
        let v = ok(&["verify", &wh], &env);
        assert!(v.contains("0 unreferenced files, 0 problems"), "{v}");
    }
    eprintln!("{kills} kills in {runs} runs (a full run takes {full:?})");
}
