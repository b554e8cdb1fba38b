//! Query speed against going back to the COGs, measured in the same run.
//!
//! Setup: the 12 scenes of `corpus/ts` ingested once into a temporary warehouse (the demo
//! series without the corpus). Each query runs on an open snapshot; its baseline opens the
//! 12 COGs and reads the same window (all 4 bands) with the crate's own reader.
//! Cases: one pixel's full series; one grid tile (384x384 px at 10 m); a 2x2-tile box; a
//! 64-vertex polygon (a circle) inscribed in that box, against reading the box; the
//! tile again on a snapshot loaded for that query (what one CLI run does: catalog read and
//! fragments opened, nothing reused). The floor printed beside them is writing every element
//! of an already allocated f32 array of the cube's shape on the same threads: no query
//! returning an f32 cube can be faster (a fresh cube also pays the kernel's page zeroing).
//! The native rows build the same cubes as `u16` (`Query::run_native`), against a u16 floor.
//!
//! Then one row per warehouse setting (fragment compression none / LZ4 / ZSTD, cropped or
//! whole tiles), each setting's warehouse built from the same scenes, settings and cases
//! taking turns: warehouse bytes against the COGs', a pixel's and a tile's series on an open
//! snapshot (fragments already opened and decompressed), and the tile on a new snapshot
//! (catalog read, fragments opened and decompressed: what one CLI run pays).
//!
//! Then the multi-sensor rows (issues #18, #25): a second warehouse with the same scenes plus
//! 6 dates of a 30 m Landsat-like product (4 bands, its own scale/offset) over the same area;
//! for a point, a tile and a 2x2-tile box, the red/green/blue/nir series of both products
//! (physical values, the 30 m product resampled onto 10 m while painting) against the
//! Sentinel-2 product alone (physical too), as cubes (`run`) and written to `.tif`: time per
//! time step of each and their ratio, gross (goal: <= 1.5x).
//!
//! Then the kernel rows (issue #25): a tile and a 2x2-tile box painted with nearest neighbour
//! and with bilinear and cubic kernels, at the native 10 m and at 15 m (kernels off the
//! source lattice), kernels reading the neighbour tiles across tile seams.
//!
//! `cargo bench --bench query` (`cargo bench --bench query -- multi`: the multi-sensor row only;
//! `-- kernels`: the kernel rows only)

mod fragment_settings;
mod support;

use criterion::Criterion;
use pixelquery::cog::{Cog, Window};
use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use pixelquery::query::Region;
use pixelquery::store::{Snapshot, Warehouse};
use pixelquery::{Bounds, TileId};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Reads `bounds` (grid CRS = scene CRS here) from every COG: the way users work without a cube.
fn from_cogs(files: &[PathBuf], bounds: &Bounds) -> usize {
    let mut n = 0;
    for f in files {
        let cog = Cog::open(f).unwrap();
        let m = cog.meta();
        let inv = m.transform().unwrap().inverse().unwrap();
        let (c0, r0) = inv.apply(bounds.min_x, bounds.max_y);
        let (c1, r1) = inv.apply(bounds.max_x, bounds.min_y);
        let clamp = |v: f64, max: u32| (v.round().max(0.0) as u32).min(max);
        let (c0, c1) = (
            clamp(c0, m.width()),
            clamp(c1, m.width()).max(clamp(c0, m.width()) + 1),
        );
        let (r0, r1) = (
            clamp(r0, m.height()),
            clamp(r1, m.height()).max(clamp(r0, m.height()) + 1),
        );
        let (c1, r1) = (c1.min(m.width()), r1.min(m.height()));
        let bands: Vec<usize> = (0..m.band_count()).collect();
        let w = cog
            .read_window_any(0, Window::new(c0, r0, c1 - c0, r1 - r0), &bands)
            .unwrap();
        n += w.shape().1;
    }
    n
}

/// Median wall times of `runs` rounds, each round timing every function once in turn (after
/// one warm-up round), so that load from other work on the machine hits them alike.
fn interleaved_medians<const N: usize>(runs: usize, mut fs: [&mut dyn FnMut(); N]) -> [f64; N] {
    for f in fs.iter_mut() {
        f();
    }
    let mut times = [(); N].map(|_| Vec::with_capacity(runs));
    for _ in 0..runs {
        for (f, t) in fs.iter_mut().zip(times.iter_mut()) {
            let start = Instant::now();
            f();
            t.push(start.elapsed().as_secs_f64());
        }
    }
    times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    })
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    // Band files only: the demo's 20 m SCL files are not part of the 10 m query.
    let files: Vec<PathBuf> = support::time_series(tmp.path())
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("_SCL_"))
        .collect();
    let inputs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let wh_path = tmp.path().join("wh");
    let options = IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    };
    ingest(&wh_path, &inputs, &options, &Quiet).unwrap();
    let wh = Warehouse::open(&wh_path).unwrap();
    let snap = wh.snapshot(None).unwrap();
    let grid = wh.config().grid;
    let scene = Cog::open(&files[0]).unwrap();
    let sb = scene.meta().bounds().unwrap();
    // A tile fully inside the scene, and the 2x2 block it starts.
    let centre = grid.tile_at((sb.min_x + sb.max_x) / 2.0, (sb.min_y + sb.max_y) / 2.0);
    let tile = grid.tile_bounds(centre);
    let tile2 = {
        let b = grid.tile_bounds(TileId::new(centre.col + 1, centre.row + 1));
        Bounds::new(tile.min_x, b.min_y, b.max_x, tile.max_y)
    };
    let point = (
        (tile.min_x + tile.max_x) / 2.0 + 5.0,
        (tile.min_y + tile.max_y) / 2.0 + 5.0,
    );
    let pt_bounds = Bounds::new(point.0 - 5.0, point.1 - 5.0, point.0 + 5.0, point.1 + 5.0);
    let shapes = Shapes {
        epsg: grid.epsg,
        point,
        tile,
        tile2,
    };
    let (wh, snap, files, epsg) = (&wh, &snap, &files, grid.epsg);
    let q_point = move || {
        wh.query()
            .on_snapshot(snap)
            .point(point.0, point.1)
            .crs(epsg)
            .run()
            .unwrap()
            .dim()
            .0
    };
    let q_box = move |b: Bounds| {
        wh.query()
            .on_snapshot(snap)
            .bbox(b)
            .crs(epsg)
            .run()
            .unwrap()
            .dim()
            .0
    };
    let q_box_new_snapshot = move |b: Bounds| {
        let snap = wh.snapshot(None).unwrap();
        wh.query()
            .on_snapshot(&snap)
            .bbox(b)
            .crs(epsg)
            .run()
            .unwrap()
            .dim()
            .0
    };
    let circle = {
        let (cx, cy) = (
            (tile2.min_x + tile2.max_x) / 2.0,
            (tile2.min_y + tile2.max_y) / 2.0,
        );
        let r = (tile2.max_x - tile2.min_x) / 2.0 - 1.0;
        let ring: Vec<(f64, f64)> = (0..=64)
            .map(|k| {
                let a = k as f64 / 64.0 * std::f64::consts::TAU;
                (cx + r * a.cos(), cy + r * a.sin())
            })
            .collect();
        Region::Polygons(vec![vec![ring]])
    };
    let q_polygon = move || {
        wh.query()
            .on_snapshot(snap)
            .region(circle.clone())
            .crs(epsg)
            .run()
            .unwrap()
            .dim()
            .0
    };
    // Elements of each case's cube, for the floor.
    let elements = |b: Bounds| {
        let (t, n, h, w) = wh
            .query()
            .on_snapshot(snap)
            .bbox(b)
            .crs(epsg)
            .run()
            .unwrap()
            .dim();
        (t * n, h * w)
    };
    let q_box_native = move |b: Bounds| {
        wh.query()
            .on_snapshot(snap)
            .bbox(b)
            .crs(epsg)
            .run_native::<u16>()
            .unwrap()
            .dim()
            .0
    };
    /// Name, query, baseline, (slabs, slab size) and bytes per element of the cube.
    type Case<'a> = (
        &'a str,
        Box<dyn Fn() -> usize + 'a>,
        Box<dyn Fn() -> usize + 'a>,
        (usize, usize),
        usize,
    );
    let cases: Vec<Case> = vec![
        (
            "point",
            Box::new(q_point),
            Box::new(move || from_cogs(files, &pt_bounds)),
            (48, 1),
            4,
        ),
        (
            "tile",
            Box::new(move || q_box(tile)),
            Box::new(move || from_cogs(files, &tile)),
            elements(tile),
            4,
        ),
        (
            "2x2 tiles",
            Box::new(move || q_box(tile2)),
            Box::new(move || from_cogs(files, &tile2)),
            elements(tile2),
            4,
        ),
        (
            "polygon in the 2x2 box",
            Box::new(q_polygon),
            Box::new(move || from_cogs(files, &tile2)),
            elements(tile2),
            4,
        ),
        (
            "tile, native u16",
            Box::new(move || q_box_native(tile)),
            Box::new(move || from_cogs(files, &tile)),
            elements(tile),
            2,
        ),
        (
            "2x2 tiles, native u16",
            Box::new(move || q_box_native(tile2)),
            Box::new(move || from_cogs(files, &tile2)),
            elements(tile2),
            2,
        ),
        (
            "tile, new snapshot",
            Box::new(move || q_box_new_snapshot(tile)),
            Box::new(move || from_cogs(files, &tile)),
            elements(tile),
            4,
        ),
    ];
    let quick =
        std::env::args().any(|a| a == "--test") || std::env::var_os("PQ_BENCH_QUICK").is_some();
    if std::env::args().skip(1).any(|a| a == "kernels") {
        kernel_table(wh, snap, &shapes, if quick { 1 } else { 21 });
        return;
    }
    if std::env::args().skip(1).any(|a| a == "multi") {
        multi_product_table(
            tmp.path(),
            &inputs,
            &sb,
            &shapes,
            if quick { 1 } else { 21 },
        );
        return;
    }
    if !quick {
        let mut c = Criterion::default().configure_from_args().sample_size(20);
        let mut g = c.benchmark_group("query");
        for (name, query, baseline, _, _) in &cases {
            g.bench_function(format!("{name}_warehouse"), |b| b.iter(query));
            g.bench_function(format!("{name}_cogs"), |b| b.iter(baseline));
        }
        g.finish();
    }
    let runs = if quick { 1 } else { 21 };
    println!(
        "\n{} scenes; times are medians of {runs} interleaved runs",
        files.len()
    );
    println!(
        "| query (12 dates x 4 bands) | warehouse | reading the COGs | speed-up | floor: writing the cube's bytes | warehouse / floor |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, query, baseline, (slabs, slab), elem_bytes) in &cases {
        // Same bytes as the cube (f32, or u16 for native cubes).
        let mut cube = vec![0u8; slabs * slab * elem_bytes];
        let slab_bytes = slab * elem_bytes;
        let [q, c, f] = interleaved_medians(
            runs,
            [
                &mut || {
                    std::hint::black_box(query());
                },
                &mut || {
                    std::hint::black_box(baseline());
                },
                &mut || {
                    cube.par_chunks_mut(slab_bytes).for_each(|s| s.fill(1));
                    std::hint::black_box(&cube);
                },
            ],
        );
        // A one-pixel cube has no meaningful write floor (thread dispatch dominates).
        let floor = if *slab > 1 {
            format!("{:.3} ms | {:.1}x", f * 1e3, q / f)
        } else {
            "- | -".to_string()
        };
        println!(
            "| {name} | {:.3} ms | {:.1} ms | {:.0}x | {floor} |",
            q * 1e3,
            c * 1e3,
            c / q,
        );
    }
    multi_product_table(tmp.path(), &inputs, &sb, &shapes, runs);
    let runs = if quick { 1 } else { 15 };
    settings_table(tmp.path(), &inputs, files, tile, point, epsg, runs);
}

/// Writes 6 dates of a 30 m Landsat-like product (SR_B2..SR_B5) covering `bounds`, on the
/// 30 m lattice of the grid.
fn landsat_like(dir: &Path, bounds: &Bounds, epsg: u32) -> Vec<String> {
    use pixelquery::cog::{write_cog, WriteOptions};
    std::fs::create_dir_all(dir).unwrap();
    let x0 = (bounds.min_x / 30.0).floor() * 30.0;
    let y0 = (bounds.max_y / 30.0).ceil() * 30.0;
    let w = ((bounds.max_x - x0) / 30.0).ceil() as usize;
    let h = ((y0 - bounds.min_y) / 30.0).ceil() as usize;
    let mut out = Vec::new();
    for (t, day) in ["0312", "0428", "0530", "0715", "0816", "0917"]
        .iter()
        .enumerate()
    {
        for (b, band) in ["SR_B2", "SR_B3", "SR_B4", "SR_B5"].iter().enumerate() {
            let data = ndarray::Array3::<u16>::from_shape_fn((1, h, w), |(_, y, x)| {
                8000 + ((x * 7 + y * 13 + t * 5 + b * 3) % 4000) as u16
            });
            let path = dir.join(format!("LSIM_2023{day}_{band}.tif"));
            let options = WriteOptions {
                transform: Some(pixelquery::GeoTransform::north_up(x0, y0, 30.0, 30.0)),
                epsg: Some(epsg),
                nodata: Some(0.0),
                band_descriptions: vec![band.to_string()],
                metadata: vec![(
                    "ACQUISITION_DATETIME".into(),
                    format!("2023-{}-{}T01:50:00Z", &day[..2], &day[2..]),
                )],
                ..Default::default()
            };
            write_cog(&path, data.view(), &options).unwrap();
            out.push(path.display().to_string());
        }
    }
    out
}

/// The multi-sensor rows (see the module documentation).
fn multi_product_table(
    tmp: &Path,
    inputs: &[String],
    scene: &Bounds,
    shapes: &Shapes,
    runs: usize,
) {
    let wh_path = tmp.join("wh-multi");
    for (product, files) in [
        ("sentinel2_l2a", inputs.to_vec()),
        (
            "landsat8_c2l2",
            landsat_like(&tmp.join("l8"), scene, shapes.epsg),
        ),
    ] {
        let options = IngestOptions {
            product: Some(product.into()),
            ..Default::default()
        };
        ingest(&wh_path, &files, &options, &Quiet).unwrap();
    }
    let wh = Warehouse::open(&wh_path).unwrap();
    let snap = wh.snapshot(None).unwrap();
    let bands = ["blue", "green", "red", "nir"];
    let one = ["sentinel2_l2a"];
    let both = ["sentinel2_l2a", "landsat8_c2l2"];
    let query = |region: &Region, products: &[&str]| {
        wh.query()
            .on_snapshot(&snap)
            .region(region.clone())
            .crs(shapes.epsg)
            .bands(&bands)
            .products(products)
            .physical(true)
    };
    let regions = [
        ("point", Region::Point(shapes.point.0, shapes.point.1)),
        ("tile", Region::BBox(shapes.tile)),
        ("2x2 tiles", Region::BBox(shapes.tile2)),
    ];
    println!("\nmulti-sensor queries: the Sentinel-2 scenes alone (the 12 of corpus/ts, or the demo series' 8 without the corpus), then with 6 Landsat-like 30 m scenes painted onto the 10 m grid (nearest); 4 bands by alias, physical values; medians of {runs} interleaved runs");
    println!("floor = writing every element of an allocated buffer of the two-product cube's size (a query's cube is painted into the buffer of a dropped one: see query::recycle)");
    println!("| shape | output | time steps | cube (both) | Sentinel-2 only | both products | per step: Sentinel-2 only | per step: both | both / Sentinel-2 only, per step | floor (both) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let out_dir = tmp.join("multi-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for (name, region) in &regions {
        let cube_one = query(region, &one).run().unwrap();
        let cube_both = query(region, &both).run().unwrap();
        let (t1, t2) = (cube_one.dim().0, cube_both.dim().0);
        assert!(t2 > t1, "the second product adds time steps");
        let (_, _, h, w) = cube_both.dim();
        let mb = cube_both.data.len() as f64 * 4.0 / 1e6;
        drop((cube_one, cube_both));
        let mut warm = vec![0f32; t2 * bands.len() * h * w];
        let [a, b, f] = interleaved_medians(
            runs,
            [
                &mut || {
                    std::hint::black_box(query(region, &one).run().unwrap());
                },
                &mut || {
                    std::hint::black_box(query(region, &both).run().unwrap());
                },
                &mut || {
                    warm.par_chunks_mut((h * w).max(1))
                        .for_each(|s| s.fill(f32::NAN));
                    std::hint::black_box(&warm);
                },
            ],
        );
        let floor = if h * w > 1 {
            format!("{:.3} ms", f * 1e3)
        } else {
            "-".into()
        };
        print_multi_row(name, "cube (`run`)", (t1, t2), mb, (a, b), &floor);
        if *name == "point" {
            continue;
        }
        // The same cubes written to a DEFLATE COG, window by window (`query --out x.tif`).
        let path = out_dir.join(format!("{}.tif", name.replace(' ', "_")));
        let write = |products: &[&str]| {
            let plan = query(region, products).prepare().unwrap();
            let options = pixelquery::query::export::ExportOptions::default();
            pixelquery::query::export::write_plan(&plan, &path, &options)
                .unwrap()
                .unwrap();
        };
        let [a, b] = interleaved_medians(runs, [&mut || write(&one), &mut || write(&both)]);
        print_multi_row(name, "`.tif`", (t1, t2), mb, (a, b), "-");
    }
}

/// Nearest against bilinear and cubic kernels for a tile and a 2x2-tile box, at the native
/// 10 m and at 15 m: time of each and its ratio to nearest at the same place, interleaved.
fn kernel_table(wh: &Warehouse, snap: &Snapshot, shapes: &Shapes, runs: usize) {
    use pixelquery::warp::Resampling;
    let (t, b, _, _) = wh
        .query()
        .on_snapshot(snap)
        .bbox(shapes.tile)
        .crs(shapes.epsg)
        .run()
        .unwrap()
        .dim();
    println!("\nkernels: {t} dates x {b} bands, medians of {runs} interleaved runs");
    println!("| shape | resolution | nearest | bilinear | cubic | bilinear / nearest | cubic / nearest |");
    println!("|---|---|---|---|---|---|---|");
    for (name, bounds) in [("tile", shapes.tile), ("2x2 tiles", shapes.tile2)] {
        for res in [10.0, 15.0] {
            let run = |kernel: Resampling| {
                let cube = wh
                    .query()
                    .on_snapshot(snap)
                    .bbox(bounds)
                    .crs(shapes.epsg)
                    .resolution(res)
                    .resampling(kernel)
                    .run()
                    .unwrap();
                std::hint::black_box(cube.dim());
            };
            let [n, b, c] = interleaved_medians(
                runs,
                [
                    &mut || run(Resampling::Nearest),
                    &mut || run(Resampling::Bilinear),
                    &mut || run(Resampling::Cubic),
                ],
            );
            println!(
                "| {name} | {res} m | {:.3} ms | {:.3} ms | {:.3} ms | {:.2}x | {:.2}x |",
                n * 1e3,
                b * 1e3,
                c * 1e3,
                b / n,
                c / n
            );
        }
    }
}

/// One row of the multi-sensor table.
fn print_multi_row(
    shape: &str,
    output: &str,
    (t1, t2): (usize, usize),
    mb: f64,
    (a, b): (f64, f64),
    floor: &str,
) {
    let (s1, s2) = (a / t1 as f64, b / t2 as f64);
    println!(
        "| {shape} | {output} | {t1} / {t2} | {mb:.1} MB | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.2}x | {floor} |",
        a * 1e3,
        b * 1e3,
        s1 * 1e3,
        s2 * 1e3,
        s2 / s1,
    );
}

/// The places the multi-sensor rows query, in the grid's CRS.
struct Shapes {
    epsg: u32,
    point: (f64, f64),
    tile: Bounds,
    tile2: Bounds,
}

/// Query times per fragment setting (see the module documentation).
fn settings_table(
    tmp: &Path,
    inputs: &[String],
    files: &[PathBuf],
    tile: Bounds,
    point: (f64, f64),
    epsg: u32,
    runs: usize,
) {
    use fragment_settings::{dir_bytes, file_bytes, label, SETTINGS};
    let cog_bytes = file_bytes(files);
    let warehouses: Vec<(Warehouse, Snapshot, u64)> = SETTINGS
        .iter()
        .enumerate()
        .map(|(k, &(compression, crop))| {
            let path = tmp.join(format!("settings{k}"));
            let options = IngestOptions {
                product: Some("sentinel2_l2a".into()),
                compression,
                crop,
                ..Default::default()
            };
            ingest(&path, inputs, &options, &Quiet).unwrap();
            let wh = Warehouse::open(&path).unwrap();
            let snap = wh.snapshot(None).unwrap();
            (wh, snap, dir_bytes(&path))
        })
        .collect();
    let cases = [
        "one pixel",
        "one tile, f32",
        "one tile, native u16",
        "one tile, new snapshot",
    ];
    let time = |(wh, snap, _): &(Warehouse, Snapshot, u64), case: usize| -> f64 {
        let start = Instant::now();
        let q = |s| wh.query().on_snapshot(s).crs(epsg);
        let dim = match case {
            0 => q(snap).point(point.0, point.1).run().unwrap().dim(),
            1 => q(snap).bbox(tile).run().unwrap().dim(),
            2 => q(snap).bbox(tile).run_native::<u16>().unwrap().data.dim(),
            _ => q(&wh.snapshot(None).unwrap())
                .bbox(tile)
                .run()
                .unwrap()
                .dim(),
        };
        std::hint::black_box(dim);
        start.elapsed().as_secs_f64()
    };
    let mut times = vec![vec![Vec::new(); cases.len()]; SETTINGS.len()];
    for round in 0..=runs {
        for (k, w) in warehouses.iter().enumerate() {
            for (case, samples) in times[k].iter_mut().enumerate() {
                let t = time(w, case);
                // Round 0 warms up (and opens the fragments of the open snapshots).
                if round > 0 {
                    samples.push(t);
                }
            }
        }
    }
    println!(
        "\nper setting: {} scenes, {:.1} MB of COGs; medians of {runs} interleaved runs",
        files.len(),
        cog_bytes as f64 / 1e6
    );
    println!(
        "| setting | warehouse / COG bytes | {} |",
        cases.join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(cases.len()));
    for (k, &s) in SETTINGS.iter().enumerate() {
        let cells: Vec<String> = times[k]
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                format!("{:.3} ms", t[t.len() / 2] * 1e3)
            })
            .collect();
        println!(
            "| {} | {:.2}x | {} |",
            label(s),
            warehouses[k].2 as f64 / cog_bytes as f64,
            cells.join(" | ")
        );
    }
}
