//! Ingest holds what `--memory-budget` allows, not the scene: a 6000 x 6000 x 4 u16 scene
//! (275 MiB decoded) is ingested by a child `pixelquery ingest` process with a 64 MB budget,
//! its peak resident memory (its `VmHWM`) stays within the budget plus a stated
//! constant, and queries return the source pixels bit for bit; the same scene with a budget
//! that holds it whole peaks far higher (the budget, not the scene, sets the peak) and gives
//! the same pixels. A scene in another UTM zone, warped with bilinear resampling, streams
//! within a budget smaller than its whole read, with results bit-identical to the whole read
//! on 1 and 2 threads; so does a 30 m scene resampled onto 10 m tiles. A budget too small to
//! cut one tile is one clear error naming the smallest budget that works.

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

/// Every pixel of `cog` comes back from `warehouse` unchanged, queried in strips of 1000 rows
/// (tile and block seams, edges and corners included).
fn assert_same_as_source(warehouse: &Warehouse, cog: &Cog) {
    let (width, height) = (cog.meta().width() as usize, cog.meta().height() as usize);
    for row in (0..height).step_by(1000) {
        let h = 1000.min(height - row);
        let bounds = Bounds::new(
            ORIGIN.0,
            ORIGIN.1 - (row + h) as f64 * 10.0,
            ORIGIN.0 + width as f64 * 10.0,
            ORIGIN.1 - row as f64 * 10.0,
        );
        let cube = warehouse
            .query()
            .bbox(bounds)
            .crs(32652)
            .run_native::<u16>()
            .unwrap();
        assert_eq!(cube.bands, ["B02", "B03", "B04", "B08"]);
        assert_eq!(cube.data.dim(), (1, 4, h, width));
        let source = cog
            .read_window::<u16>(
                0,
                Window::new(0, row as u32, width as u32, h as u32),
                &[0, 1, 2, 3],
            )
            .unwrap();
        assert!(
            cube.data.index_axis(ndarray::Axis(0), 0) == source,
            "rows {row}..{} differ from the source",
            row + h
        );
    }
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

    // Queries return the source pixels bit for bit, over the whole scene (in strips).
    let cog = Cog::open(&scene).unwrap();
    let warehouse = Warehouse::open(&wh).unwrap();
    assert_same_as_source(&warehouse, &cog);

    // With a budget that holds the scene whole (1 job), the peak follows the scene instead,
    // and the pixels are the same.
    let wh_whole = dir.path().join("wh-whole");
    let wh_whole_s = wh_whole.display().to_string();
    let (code, stdout, stderr, whole_peak) = run_measured(&[
        "ingest",
        &wh_whole_s,
        &scene_s,
        "--product",
        "sentinel2_l2a",
        "--memory-budget",
        "2048",
        "--jobs",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    eprintln!("peak RSS with --memory-budget 2048 --jobs 1: {whole_peak} MiB");
    // The whole read holds the 275 MiB of decoded pixels at least.
    assert!(
        whole_peak > peak + 150,
        "a budget of 2048 MB peaked at {whole_peak} MiB, one of {BUDGET_MB} MB at {peak} MiB"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["fragments"], 16 * 17 * 4, "{report}");
    assert_same_as_source(&Warehouse::open(&wh_whole).unwrap(), &cog);

    // Re-running adds nothing and creates no new version.
    let latest = warehouse.latest_version().unwrap();
    let (code, stdout, _, _) = run_measured(&["ingest", &wh_s, &scene_s, "--json"]);
    assert_eq!(code, 0);
    let again: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(again["scenes_ingested"], 0);
    assert_eq!(again["versions"], serde_json::json!([]));
    assert_eq!(
        Warehouse::open(&wh).unwrap().latest_version().unwrap(),
        latest
    );
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
        run_measured(&[
            "ingest",
            &wh,
            &scene_s,
            "--memory-budget",
            &budget,
            "--jobs",
            "2",
        ])
    };
    let (code, _, stderr, _) = ingest("wh1", 4);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--memory-budget 4 MB is too small")
            && stderr.contains("S2_small_20230611"),
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
    assert_eq!(
        code, 2,
        "one MB less than the smallest budget worked: {stderr}"
    );
    let (code, stdout, stderr, peak) = ingest("wh3", needed);
    assert_eq!(
        code, 0,
        "the budget the error named does not work: {stderr}"
    );
    assert!(stdout.contains("ingested 1 of 1 scenes"), "{stdout}");
    assert!(
        peak <= needed + OVERHEAD_MB,
        "peak RSS {peak} MiB with --memory-budget {needed}"
    );
}

/// Ingests `scene` in-process with `budget_mb` on `jobs` threads into a new warehouse on the
/// EPSG:32652 grid, bilinear; returns every band of the cube over `bounds`.
fn ingest_reprojected(
    wh: &Path,
    scene: &Path,
    budget_mb: u64,
    jobs: usize,
    bounds: Bounds,
) -> ndarray::Array4<u16> {
    ingest_in_process(wh, scene, None, budget_mb, jobs, bounds)
}

/// Like [`ingest_reprojected`], with a product profile.
fn ingest_in_process(
    wh: &Path,
    scene: &Path,
    product: Option<&str>,
    budget_mb: u64,
    jobs: usize,
    bounds: Bounds,
) -> ndarray::Array4<u16> {
    use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
    let options = IngestOptions {
        product: product.map(String::from),
        crs: Some(32652),
        resampling: pixelquery::warp::Resampling::Bilinear,
        memory_budget: budget_mb << 20,
        ..Default::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .unwrap();
    let report = pool
        .install(|| ingest(wh, &[scene.display().to_string()], &options, &Quiet))
        .unwrap();
    assert_eq!(report.scenes_ingested, 1, "{report:?}");
    let mut cube = Warehouse::open(wh)
        .unwrap()
        .query()
        .bbox(bounds)
        .crs(32652)
        .run_native::<u16>()
        .unwrap();
    assert_eq!(cube.bands, ["B04", "B08"]);
    std::mem::take(&mut cube.data)
}

#[test]
fn a_scene_from_another_utm_zone_streams_with_the_same_pixels() {
    use pixelquery::crs::Crs;
    use pixelquery::grid::GridSpec;
    use pixelquery::ingest::cut::{plan_file, CutOptions};
    use pixelquery::ingest::scene::{prepare, SceneOptions};
    let dir = tempfile::tempdir().unwrap();
    // 2400 x 2400 px of 2 u16 bands in UTM zone 51, near the zone 52 border.
    let size = 2400;
    let scene = dir.path().join("S2_z51_20230611.tif");
    let data = Array3::from_shape_fn((2, size, size), |(b, y, x)| value(b, y, x));
    let origin = (699_960.0, 4_040_040.0);
    let options = WriteOptions {
        block_size: 512,
        overviews: false,
        transform: Some(GeoTransform::north_up(origin.0, origin.1, 10.0, 10.0)),
        epsg: Some(32651),
        nodata: Some(0.0),
        band_descriptions: ["B04", "B08"].map(String::from).to_vec(),
        datetime: Some("2023:06:11 02:16:59".into()),
        ..Default::default()
    };
    write_cog(&scene, data.view(), &options).unwrap();

    // What reading the scene whole would hold, and the least any plan needs.
    let source = &pixelquery::ingest::discover(&[scene.display().to_string()], None).unwrap()[0];
    let prepared = prepare(source, None, &SceneOptions::default()).unwrap();
    let grid = GridSpec::new(32652, 0.0, 0.0, 3840.0).unwrap();
    let cut = CutOptions {
        resampling: pixelquery::warp::Resampling::Bilinear,
        threads: 2,
    };
    let units = plan_file(
        &prepared.files[0],
        &grid,
        &Crs::from_epsg(32652).unwrap(),
        &cut,
    )
    .unwrap();
    assert_eq!(units.len(), 1);
    let (whole, smallest) = (units[0].whole_peak() >> 20, units[0].smallest() >> 20);
    eprintln!("reprojected scene: whole read {whole} MiB, smallest plan {smallest} MiB");
    // A budget below the whole read (the ledger also sets aside 1 MiB of encode buffers per
    // thread) makes the scene stream.
    // Half the whole read for pixels, plus what the (compressed) fragment encoders of two
    // workers hold aside.
    let encoders = (2 * pixelquery::ingest::budget::ENCODE_PER_THREAD_COMPRESSED) >> 20;
    let budget = whole / 2 + encoders;
    assert!(
        smallest + encoders + 4 < budget,
        "smallest {smallest} MiB, budget {budget} MiB"
    );

    // The scene's footprint on the zone 52 grid, with some margin: every pixel it covers.
    let to52 = pixelquery::crs::Transformer::new(
        &Crs::from_epsg(32651).unwrap(),
        &Crs::from_epsg(32652).unwrap(),
    );
    let extent = size as f64 * 10.0;
    let b = to52
        .transform_bounds(
            &Bounds::new(origin.0, origin.1 - extent, origin.0 + extent, origin.1),
            20,
        )
        .unwrap();
    let bounds = Bounds::new(
        (b.min_x / 10.0).floor() * 10.0 - 100.0,
        (b.min_y / 10.0).floor() * 10.0 - 100.0,
        (b.max_x / 10.0).ceil() * 10.0 + 100.0,
        (b.max_y / 10.0).ceil() * 10.0 + 100.0,
    );
    let whole_cube = ingest_reprojected(&dir.path().join("whole"), &scene, 1024, 2, bounds);
    let valid = whole_cube.iter().filter(|&&v| v != 0).count();
    assert!(valid > size * size, "{valid} pixels");
    for jobs in [1, 2] {
        let streamed = ingest_reprojected(
            &dir.path().join(format!("stream{jobs}")),
            &scene,
            budget,
            jobs,
            bounds,
        );
        assert!(
            streamed == whole_cube,
            "streamed with {budget} MB on {jobs} threads differs from the whole read"
        );
    }
}

#[test]
fn a_30_m_scene_resampled_onto_10_m_tiles_streams_with_the_same_pixels() {
    use pixelquery::crs::Crs;
    use pixelquery::grid::GridSpec;
    use pixelquery::ingest::cut::{plan_file, CutOptions};
    use pixelquery::ingest::scene::{prepare, SceneOptions};
    use pixelquery::profile::ProductProfile;
    let dir = tempfile::tempdir().unwrap();
    // 800 x 800 px of 30 m: the Sentinel-2 profile puts B04 and B08 on 10 m tiles, so every
    // tile reads a third of its side from the source and the cut upsamples it (bilinear).
    let size = 800;
    let scene = dir.path().join("S2_30m_20230611.tif");
    let data = Array3::from_shape_fn((2, size, size), |(b, y, x)| value(b, y, x));
    let options = WriteOptions {
        block_size: 256,
        overviews: false,
        transform: Some(GeoTransform::north_up(ORIGIN.0, ORIGIN.1, 30.0, 30.0)),
        epsg: Some(32652),
        nodata: Some(0.0),
        band_descriptions: ["B04", "B08"].map(String::from).to_vec(),
        datetime: Some("2023:06:11 02:16:59".into()),
        ..Default::default()
    };
    write_cog(&scene, data.view(), &options).unwrap();
    let profile = ProductProfile::built_in("sentinel2_l2a").unwrap();
    let source = &pixelquery::ingest::discover(&[scene.display().to_string()], None).unwrap()[0];
    let prepared = prepare(source, Some(&profile), &SceneOptions::default()).unwrap();
    let grid = GridSpec::new(32652, 0.0, 0.0, 3840.0).unwrap();
    let cut = CutOptions {
        resampling: pixelquery::warp::Resampling::Bilinear,
        threads: 2,
    };
    let units = plan_file(
        &prepared.files[0],
        &grid,
        &Crs::from_epsg(32652).unwrap(),
        &cut,
    )
    .unwrap();
    assert_eq!(units.len(), 1);
    let (whole, smallest) = (units[0].whole_peak() >> 20, units[0].smallest() >> 20);
    eprintln!("30 m scene on 10 m tiles: whole read {whole} MiB, smallest plan {smallest} MiB");
    // Half the whole read for pixels, plus what the (compressed) fragment encoders of two
    // workers hold aside.
    let encoders = (2 * pixelquery::ingest::budget::ENCODE_PER_THREAD_COMPRESSED) >> 20;
    let budget = whole / 2 + encoders;
    assert!(
        smallest + encoders + 4 < budget,
        "smallest {smallest} MiB, budget {budget} MiB"
    );
    let extent = size as f64 * 30.0;
    let bounds = Bounds::new(ORIGIN.0, ORIGIN.1 - extent, ORIGIN.0 + extent, ORIGIN.1);
    let product = Some("sentinel2_l2a");
    let whole_cube = ingest_in_process(&dir.path().join("whole"), &scene, product, 1024, 2, bounds);
    assert_eq!(whole_cube.dim(), (1, 2, size * 3, size * 3));
    for jobs in [1, 2] {
        let wh = dir.path().join(format!("stream{jobs}"));
        let streamed = ingest_in_process(&wh, &scene, product, budget, jobs, bounds);
        assert!(
            streamed == whole_cube,
            "streamed with {budget} MB on {jobs} threads differs from the whole read"
        );
    }
}
