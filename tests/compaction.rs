//! Automatic compaction of an archive fed one scene at a time: a bounded number of fragments
//! per tile-band, queries bit-identical to the same scenes ingested in one commit or without
//! compaction (at every version), files pyarrow reads unaided, and a writer killed at random
//! points during ingest and compaction leaves a warehouse that verifies and completes.

mod common;

use common::run_cli;
use ndarray::Array3;
use pixelquery::cog::{write_cog, WriteOptions};
use pixelquery::store::{ChunkShape, Warehouse};
use pixelquery::GeoTransform;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Small chunks, so a few dozen small scenes cross every path: fresh fragments in 4x larger
/// chunks, copies, blocks gathered and cut into the small chunks, scene keys moved.
const CHUNK: &str = "8x8x4";
const ORIGIN: (f64, f64) = (400_000.0, 4_000_000.0);

/// `n` daily 2-band scenes of 70 x 70 px at 10 m, shifted a little each day so they cover
/// four 640 m tiles partly, with nodata edges and a hole on some days.
fn write_scenes(dir: &Path, n: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let data = Array3::<u16>::from_shape_fn((2, 70, 70), |(b, y, x)| {
                let hole = i % 5 == 3 && (20..30).contains(&x) && (10..25).contains(&y);
                if x + y < 4 || hole {
                    0
                } else {
                    (100 + 500 * b + 7 * x + 3 * y + 13 * i) as u16
                }
            });
            let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
                + chrono::Duration::days(i as i64);
            let options = WriteOptions {
                block_size: 32,
                transform: Some(GeoTransform::north_up(
                    ORIGIN.0 + 300.0 + 10.0 * (i % 4) as f64,
                    ORIGIN.1 - 300.0,
                    10.0,
                    10.0,
                )),
                epsg: Some(32652),
                nodata: Some(0.0),
                band_descriptions: vec!["B04".into(), "B08".into()],
                metadata: vec![(
                    "ACQUISITION_DATETIME".into(),
                    format!("{}T02:00:00Z", day.format("%Y-%m-%d")),
                )],
                ..Default::default()
            };
            let path = dir.join(format!("S{i:03}_{}.tif", day.format("%Y%m%d")));
            write_cog(&path, data.view(), &options).unwrap();
            path.display().to_string()
        })
        .collect()
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run_cli(args, &[]);
    assert_eq!(code, 0, "pixelquery {args:?}:\n{out}\n{err}");
    out
}

fn ingest_args<'a>(wh: &'a str, scenes: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "ingest",
        wh,
        "--product",
        "sentinel2_l2a",
        "--tile-size=640",
        "--chunk-shape",
        CHUNK,
    ];
    args.extend(scenes.iter().map(String::as_str));
    args.extend(extra);
    args
}

/// A point history, the box as a native table and its statistics, at `as_of` if given.
fn queries(wh: &str, out: &Path, as_of: Option<u64>) -> Vec<String> {
    std::fs::create_dir_all(out).unwrap();
    let point = format!("{},{}", ORIGIN.0 + 655.0, ORIGIN.1 - 645.0);
    let bbox = format!(
        "{},{},{},{}",
        ORIGIN.0 + 250.0,
        ORIGIN.1 - 1100.0,
        ORIGIN.0 + 1100.0,
        ORIGIN.1 - 250.0
    );
    let v = as_of.map(|v| v.to_string());
    let at: Vec<&str> = match &v {
        Some(v) => vec!["--as-of", v],
        None => vec![],
    };
    let csv = out.join("box.csv").display().to_string();
    let mut runs = vec![
        vec![
            "query", wh, "--point", &point, "--crs", "32652", "--bands", "red,nir",
        ],
        vec![
            "query", wh, "--bbox", &bbox, "--crs", "32652", "--bands", "red",
        ],
        vec![
            "query", wh, "--bbox", &bbox, "--crs", "32652", "--index", "ndvi", "--out", &csv,
        ],
    ];
    let mut results = Vec::new();
    for r in &mut runs {
        r.extend(&at);
        results.push(ok(r));
    }
    results.push(std::fs::read_to_string(&csv).unwrap());
    results
}

/// Fragments per (tile, band) in the latest snapshot.
fn fragments_per_tile_band(wh: &Path) -> BTreeMap<(String, String), usize> {
    let snap = Warehouse::open(wh).unwrap().snapshot(None).unwrap();
    let mut per = BTreeMap::new();
    for e in snap.fragments() {
        *per.entry((e.tile.to_string(), e.band.clone())).or_default() += 1;
    }
    per
}

/// Sum of the base-4 digits of `n`: the fragments size-tiered merging leaves for `n`
/// observations in time order.
fn digit_sum(mut n: usize) -> usize {
    let mut s = 0;
    while n > 0 {
        s += n % 4;
        n /= 4;
    }
    s
}

#[test]
fn daily_commits_merge_into_few_fragments_with_identical_answers_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = write_scenes(&dir.path().join("scenes"), 37);
    let (auto, plain, batch) = (
        dir.path().join("auto"),
        dir.path().join("plain"),
        dir.path().join("batch"),
    );
    let s = |p: &PathBuf| p.display().to_string();
    let report = ok(&ingest_args(
        &s(&auto),
        &scenes,
        &["--commit-every=1", "--json"],
    ));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(
        report["compaction_merges"].as_u64().unwrap() > 20,
        "{report}"
    );
    assert!(
        report["compaction_errors"].as_array().unwrap().is_empty(),
        "{report}"
    );
    ok(&ingest_args(
        &s(&plain),
        &scenes,
        &["--commit-every=1", "--no-auto-compact"],
    ));
    ok(&ingest_args(&s(&batch), &scenes, &[]));

    // Bounded: at most the digit sum of the observations per tile-band (37 scenes: 1+1+1+1).
    let per = fragments_per_tile_band(&auto);
    assert!(per.values().all(|&n| n <= digit_sum(37).max(4)), "{per:?}");
    assert!(fragments_per_tile_band(&plain).values().any(|&n| n == 37));
    let v = ok(&["verify", &s(&auto)]);
    assert!(v.contains(" 0 problems"), "{v}");

    // The same answers, whatever the layout.
    let expected = queries(&s(&batch), &dir.path().join("q-batch"), None);
    assert_eq!(
        queries(&s(&auto), &dir.path().join("q-auto"), None),
        expected
    );
    assert_eq!(
        queries(&s(&plain), &dir.path().join("q-plain"), None),
        expected
    );

    // Every version of the compacted warehouse answers like the uncompacted one with the
    // same scenes committed.
    let scenes_at = |wh: &Path| -> BTreeMap<u64, usize> {
        let w = Warehouse::open(wh).unwrap();
        w.history()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c.version,
                    w.snapshot(Some(c.version)).unwrap().scenes().len(),
                )
            })
            .collect()
    };
    let plain_at: BTreeMap<usize, u64> =
        scenes_at(&plain).into_iter().map(|(v, n)| (n, v)).collect();
    let mut checked = 0;
    for (version, n) in scenes_at(&auto) {
        if n == 0 || n % 6 != 1 {
            continue; // a sample of versions keeps the test short
        }
        let q = dir.path().join(format!("q-{version}"));
        assert_eq!(
            queries(&s(&auto), &q, Some(version)),
            queries(&s(&plain), &q.join("plain"), Some(plain_at[&n])),
            "version {version} ({n} scenes)"
        );
        checked += 1;
    }
    assert!(checked >= 5);

    // Vacuum with a window keeps time travel working inside it, then expires the rest.
    ok(&["vacuum", &s(&auto), "--older-than", "1h"]);
    assert_eq!(queries(&s(&auto), &dir.path().join("q-v"), None), expected);
    ok(&["vacuum", &s(&auto), "--older-than", "0"]);
    let v = ok(&["verify", &s(&auto)]);
    assert!(v.contains("0 unreferenced files, 0 problems"), "{v}");
    assert_eq!(queries(&s(&auto), &dir.path().join("q-v0"), None), expected);
}

/// Fragments that overlap in time (here two feeds of alternate days, each one commit; also
/// the flushes of one large batch) are merged by interleaving their observations: one fragment
/// per tile-band, answers identical to the scenes ingested at once without compaction.
#[test]
fn fragments_overlapping_in_time_are_interleaved() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = write_scenes(&dir.path().join("scenes"), 37);
    let (even, odd): (Vec<String>, Vec<String>) = (
        scenes.iter().step_by(2).cloned().collect(),
        scenes.iter().skip(1).step_by(2).cloned().collect(),
    );
    let (auto, single) = (dir.path().join("auto"), dir.path().join("single"));
    let s = |p: &PathBuf| p.display().to_string();
    ok(&ingest_args(&s(&auto), &even, &[]));
    ok(&ingest_args(&s(&auto), &odd, &[]));
    ok(&ingest_args(&s(&single), &scenes, &["--no-auto-compact"]));
    let per = fragments_per_tile_band(&auto);
    assert!(!per.is_empty() && per.values().all(|&n| n == 1), "{per:?}");
    let snap = Warehouse::open(&auto).unwrap().snapshot(None).unwrap();
    for e in snap.fragments() {
        let f = snap.fragment(e).unwrap();
        assert!(f.times_micros().windows(2).all(|w| w[0] <= w[1]));
    }
    assert_eq!(
        queries(&s(&auto), &dir.path().join("q-auto"), None),
        queries(&s(&single), &dir.path().join("q-single"), None)
    );
    ok(&["verify", &s(&auto)]);
}

/// pyarrow reads compacted fragments (copied, re-keyed and re-cut batches) unaided: every
/// batch, put back into each observation's window, equals what PixelQuery reads.
#[test]
fn pyarrow_reads_compacted_fragments() {
    let Some(python) = common::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let scenes = write_scenes(&dir.path().join("scenes"), 21);
    let wh = dir.path().join("wh");
    ok(&ingest_args(
        &wh.display().to_string(),
        &scenes,
        &["--commit-every=1"],
    ));
    let w = Warehouse::open(&wh).unwrap();
    let snap = w.snapshot(None).unwrap();
    let mut paths = Vec::new();
    let mut want = Vec::new();
    for e in snap.fragments() {
        let f = snap.fragment(e).unwrap();
        paths.push(wh.join(&e.path).display().to_string());
        let mut obs = Vec::new();
        for i in 0..f.len() {
            let px = f.pixels::<u16>(i).unwrap();
            let valid = f.valid_mask(i);
            let row: Vec<Option<u16>> = px
                .iter()
                .zip(valid)
                .map(|(&v, ok)| ok.then_some(v))
                .collect();
            obs.push((f.scene_id(i).to_string(), f.times_micros()[i], row));
        }
        want.push(obs);
    }
    assert!(
        snap.fragments().iter().any(|e| e.observations >= 16),
        "some blocks were gathered"
    );
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let got: serde_json::Value =
        serde_json::from_str(&common::run_python(&python, READ_WITH_PYARROW, &args)).unwrap();
    for (obs, g) in want.iter().zip(got.as_array().unwrap()) {
        assert_eq!(g["scenes"].as_array().unwrap().len(), obs.len());
        for (k, (scene, time, row)) in obs.iter().enumerate() {
            assert_eq!(g["scenes"][k], scene.as_str());
            assert_eq!(g["times"][k], *time);
            let px: Vec<Option<u16>> = g["pixels"][k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().map(|v| v as u16))
                .collect();
            assert_eq!(&px, row, "observation {k} of {scene}");
        }
    }
}

/// Reads fragment files with pyarrow alone: every record batch is one chunk for one block of
/// observations (the schema metadata says which), put back into each observation's window.
const READ_WITH_PYARROW: &str = r#"
import json, sys
import pyarrow.ipc
out = []
for path in sys.argv[1:]:
    reader = pyarrow.ipc.open_file(path)
    md = {k.decode(): v.decode() for k, v in reader.schema.metadata.items()}
    crow, ccol, _ = json.loads(md["pixelquery.chunk"])
    blocks = json.loads(md["pixelquery.blocks"])
    chunks = json.loads(md["pixelquery.chunks"])
    wc, wr, ww, wh = json.loads(md["pixelquery.window"])
    across = -(-int(md["pixelquery.width"]) // ccol)
    starts = [sum(blocks[:b]) for b in range(len(blocks))]
    n = sum(blocks)
    pixels = [[None] * (ww * wh) for _ in range(n)]
    scenes, times = [None] * n, [None] * n
    for j in range(reader.num_record_batches):
        batch = reader.get_batch(j)
        k, b = chunks[j // len(blocks)], j % len(blocks)
        cr, cc = divmod(k, across)
        ids = batch.column(1).to_pylist()
        ts = batch.column(0).cast("int64").to_pylist()
        for i, row in enumerate(batch.column(2).to_pylist()):
            o = starts[b] + i
            assert scenes[o] in (None, ids[i]) and times[o] in (None, ts[i])
            scenes[o], times[o] = ids[i], ts[i]
            for r in range(crow):
                for c in range(ccol):
                    y, x = cr * crow + r - wr, cc * ccol + c - wc
                    if 0 <= y < wh and 0 <= x < ww:
                        pixels[o][y * ww + x] = row[r * ccol + c]
    out.append({"scenes": scenes, "times": times, "pixels": pixels})
print(json.dumps(out))
"#;

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
fn a_writer_killed_during_ingest_and_compaction_leaves_a_warehouse_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = write_scenes(&dir.path().join("scenes"), 24);
    let reference = dir.path().join("reference");
    ok(&ingest_args(&reference.display().to_string(), &scenes, &[]));
    let expected = queries(
        &reference.display().to_string(),
        &dir.path().join("q-ref"),
        None,
    );
    let seed = std::env::var("PQ_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("compaction kill test seed {seed} (set PQ_KILL_SEED to replay)");
    let mut rng = Lcg(seed);
    let spawn = |wh: &str| {
        Command::new(env!("CARGO_BIN_EXE_pixelquery"))
            .args(ingest_args(wh, &scenes, &["--commit-every=1"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let timing = dir.path().join("timing").display().to_string();
    let start = Instant::now();
    assert!(spawn(&timing).wait().unwrap().success());
    let full = start.elapsed().max(Duration::from_millis(200));
    let mut kills = 0;
    for cycle in 0..3 {
        let wh = dir
            .path()
            .join(format!("kill{cycle}"))
            .display()
            .to_string();
        for _ in 0..3 {
            let mut child = spawn(&wh);
            std::thread::sleep(Duration::from_micros(rng.next() % full.as_micros() as u64));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            child.wait().unwrap();
            let (code, out, err) = run_cli(&["verify", &wh], &[]);
            if code != 0 && err.contains("not a PixelQuery warehouse") {
                continue; // killed before the warehouse existed
            }
            assert_eq!(code, 0, "after a kill: {out}{err}");
        }
        // A re-run completes the work; nothing committed was lost.
        ok(&ingest_args(&wh, &scenes, &["--commit-every=1"]));
        let info = ok(&["info", &wh]);
        assert!(info.contains("scenes      24"), "{info}");
        assert_eq!(
            queries(&wh, &dir.path().join(format!("q-{cycle}")), None),
            expected
        );
        ok(&["vacuum", &wh, "--older-than", "0"]);
        let v = ok(&["verify", &wh]);
        assert!(v.contains("0 unreferenced files, 0 problems"), "{v}");
    }
    eprintln!("{kills} kills (a full run takes {full:?})");
}

#[test]
fn chunk_shapes_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = write_scenes(&dir.path().join("scenes"), 1);
    let wh = dir.path().join("wh").display().to_string();
    for bad in ["0x8x4", "8x8", "8x8x0", "axbxc", "5000x8x4"] {
        let mut args = ingest_args(&wh, &scenes, &[]);
        let i = args.iter().position(|a| *a == CHUNK).unwrap();
        args[i] = bad;
        let (code, _, err) = run_cli(&args, &[]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("chunk"), "{bad}: {err}");
    }
    assert_eq!(
        ChunkShape::DEFAULT.fresh().rows,
        ChunkShape::DEFAULT.rows * 4
    );
}
