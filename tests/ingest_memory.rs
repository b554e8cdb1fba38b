//! Ingest holds what `--memory-budget` allows, not the scene: a 6000 x 6000 x 4 u16 scene
//! (275 MiB decoded) is ingested by a child `pixelquery ingest` process with a 64 MB budget,
//! its peak resident memory (its `VmHWM`) stays within the budget plus a stated
//! constant, and queries return the source pixels bit for bit. A budget too small to cut one
//! tile is one clear error naming the smallest budget that works.

mod common;

use ndarray::Array3;
use pixelquery::cog::{write_cog, Cog, Window, WriteOptions};
use pixelquery::store::Warehouse;
use pixelquery::{Bounds, GeoTransform};
use std::path::Path;

/// What the process holds besides the budget: the binary's code and data, thread stacks,
/// the allocator's slack, the catalog and commit.
const OVERHEAD_MB: u64 = 100;
const BUDGET_MB: u64 = 64;
const SIZE: usize = 6000;
/// A Sentinel-2 tile corner, 60 px east and 36 px south of a grid tile corner (3840 m tiles
/// from 0, 0).
const ORIGIN: (f64, f64) = (399_960.0, 4_040_040.0);

/// Smooth fields with a little noise, like reflectance: compresses to a small file.
fn value(b: usize, y: usize, x: usize) -> u16 {
    let noise = ((x * 7919 + y * 104_729 + b * 31) % 13) as u16;
    1000 + (b as u16) * 500 + ((x / 7 + y / 11) % 600) as u16 + noise
}

fn write_scene(path: &Path, size: usize) {
    let data = Array3::from_shape_fn((4, size, size), |(b, y, x)| value(b, y, x));
    let options = WriteOptions {
        block_size: 1024,
        overviews: false,
        transform: Some(GeoTransform::north_up(ORIGIN.0, ORIGIN.1, 10.0, 10.0)),
        epsg: Some(32652),
        band_descriptions: ["B02", "B03", "B04", "B08"].map(String::from).to_vec(),
        datetime: Some("2023:06:11 02:16:59".into()),
        ..Default::default()
    };
    write_cog(path, data.view(), &options).unwrap();
}

/// The high-water mark of a process's resident memory (`VmHWM`), in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `pixelquery` and returns (exit code, stdout, stderr, peak resident MiB). The peak is
/// the child's own `VmHWM`, sampled every 2 ms until it exits (the rusage of a child also
/// counts the parent's memory when it was spawned, which is not the child's).
fn run_measured(args: &[&str]) -> (i32, String, String, u64) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixelquery"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pixelquery");
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
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
    (
        status.code().unwrap_or(-1),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
        peak_kib.div_ceil(1024),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn a_large_scene_is_ingested_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("S2_big_20230611.tif");
    write_scene(&scene, SIZE);
    let wh = dir.path().join("wh");
    let (wh_s, scene_s) = (wh.display().to_string(), scene.display().to_string());
    let budget = BUDGET_MB.to_string();
    let (code, stdout, stderr, peak) = run_measured(&[
        "ingest",
        &wh_s,
        &scene_s,
        "--product",
        "sentinel2_l2a",
        "--memory-budget",
        &budget,
        "--jobs",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    eprintln!("peak RSS of the ingest: {peak} MiB with --memory-budget {BUDGET_MB}");
    assert!(
        peak <= BUDGET_MB + OVERHEAD_MB,
        "peak RSS {peak} MiB > budget {BUDGET_MB} + {OVERHEAD_MB} MiB"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["scenes_ingested"], 1);
    // 6000 px starting 60 px into a tile column and 36 px into a tile row: 16 x 17 tiles of
    // 384 px, 4 bands, one observation and one fragment each.
    assert_eq!(report["tiles"], 16 * 17, "{report}");
    assert_eq!(report["tile_observations"], 16 * 17 * 4, "{report}");
    assert_eq!(report["fragments"], 16 * 17 * 4, "{report}");

    // Queries return the source pixels bit for bit: corners, block and tile seams, edges.
    let cog = Cog::open(&scene).unwrap();
    let warehouse = Warehouse::open(&wh).unwrap();
    for (col, row, w, h) in [
        (0, 0, 500, 400),
        (1000, 1010, 700, 450),
        (3000, 2990, 90, 1300),
        (5400, 5500, 600, 500),
        (0, 5990, 6000, 10),
    ] {
        let bounds = Bounds::new(
            ORIGIN.0 + col as f64 * 10.0,
            ORIGIN.1 - (row + h) as f64 * 10.0,
            ORIGIN.0 + (col + w) as f64 * 10.0,
            ORIGIN.1 - row as f64 * 10.0,
        );
        let cube = warehouse
            .query()
            .bbox(bounds)
            .crs(32652)
            .run_native::<u16>()
            .unwrap();
        assert_eq!(cube.bands, ["B02", "B03", "B04", "B08"]);
        assert_eq!(cube.data.dim(), (1, 4, h, w));
        let source = cog
            .read_window::<u16>(0, Window::new(col as u32, row as u32, w as u32, h as u32), &[0, 1, 2, 3])
            .unwrap();
        assert!(
            cube.data.index_axis(ndarray::Axis(0), 0) == source,
            "window at column {col}, row {row} differs from the source"
        );
    }

    // Re-running adds nothing and creates no new version.
    let latest = warehouse.latest_version().unwrap();
    let (code, stdout, _, _) = run_measured(&["ingest", &wh_s, &scene_s, "--json"]);
    assert_eq!(code, 0);
    let again: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(again["scenes_ingested"], 0);
    assert_eq!(again["versions"], serde_json::json!([]));
    assert_eq!(Warehouse::open(&wh).unwrap().latest_version().unwrap(), latest);

}

#[test]
fn a_budget_too_small_names_the_smallest_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("S2_small_20230611.tif");
    write_scene(&scene, 2000);
    let scene_s = scene.display().to_string();
    let ingest = |wh: &str, budget: u64| {
        let wh = dir.path().join(wh).display().to_string();
        let budget = budget.to_string();
        run_measured(&["ingest", &wh, &scene_s, "--memory-budget", &budget, "--jobs", "2"])
    };
    let (code, _, stderr, _) = ingest("wh1", 4);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--memory-budget 4 MB is too small") && stderr.contains("S2_small_20230611"),
        "{stderr}"
    );
    let needed: u64 = stderr
        .split("smallest budget that works is ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no budget in {stderr}"));
    assert!(needed > 4 && needed < BUDGET_MB, "{needed}");
    let (code, _, stderr, _) = ingest("wh2", needed - 1);
    assert_eq!(code, 2, "one MB less than the smallest budget worked: {stderr}");
    let (code, stdout, stderr, peak) = ingest("wh3", needed);
    assert_eq!(code, 0, "the budget the error named does not work: {stderr}");
    assert!(stdout.contains("ingested 1 of 1 scenes"), "{stdout}");
    assert!(peak <= needed + OVERHEAD_MB, "peak RSS {peak} MiB with --memory-budget {needed}");
}
