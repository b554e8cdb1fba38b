//! Multi-sensor time series (issue #18): the demo Sentinel-2-like series plus a coarser
//! Landsat-like product (30 m, its own scale/offset and QA bits, written with the project's COG
//! writer) in one warehouse. Point, box and polygon queries over both give one time axis; the
//! Landsat steps equal its pixels resampled as `gdalwarp` would (GDAL run when installed; our
//! warp layer always) times its scale plus offset.

mod common;

use chrono::{DateTime, Utc};
use ndarray::{Array3, Axis};
use pixelquery::cog::{write_cog, Cog, Window, WriteOptions};
use pixelquery::crs::Crs;
use pixelquery::demo;
use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use pixelquery::profile::ProductProfile;
use pixelquery::query::{Period, Reducer, Region};
use pixelquery::store::Warehouse;
use pixelquery::warp::{warp, Resampling, SourceRaster, TargetGrid, WarpOptions};
use pixelquery::{Bounds, GeoTransform};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const S2: &str = "sentinel2_l2a";
const L8: &str = "landsat8_c2l2";
/// Landsat-like scenes: 30 m pixels over the demo area.
const L8_SIZE: usize = 160;
/// Upper-left corner of the Landsat-like scenes: on the 30 m lattice of the warehouse grid
/// (origin 0, tiles of 3840 m), as real Landsat scenes sit on their 30 m UTM lattice, so the
/// stored tiles hold the file's own pixels.
const L8_ORIGIN: (f64, f64) = (319_980.0, 4_160_010.0);
const L8_TIMES: [&str; 3] = [
    "2024-04-22T01:50:00Z",
    // The same solar day as a Sentinel-2 date, earlier in the day.
    "2024-06-18T01:50:00Z",
    "2024-09-10T01:50:00Z",
];
const L8_CLOUDY: usize = 2;
const QA_CLEAR: u16 = 21824;
const QA_CLOUD: u16 = 22280;

struct Fixture {
    _dir: tempfile::TempDir,
    wh: PathBuf,
    l8_files: Vec<(PathBuf, PathBuf)>,
}

fn l8_red(t: usize, x: usize, y: usize) -> u16 {
    // Reflectance 0.02..0.2 varying pixel to pixel, as DN = (refl + 0.2) / 2.75e-5.
    let refl = 0.02 + 0.18 * (((x * 7 + y * 13 + t * 5) % 23) as f64 / 22.0);
    ((refl + 0.2) / 2.75e-5).round() as u16
}

fn l8_nir(t: usize, x: usize, y: usize) -> u16 {
    let refl = 0.25 + 0.2 * (((x * 3 + y * 5 + t) % 11) as f64 / 10.0);
    ((refl + 0.2) / 2.75e-5).round() as u16
}

fn l8_cloud(t: usize, x: usize, y: usize) -> bool {
    t == L8_CLOUDY && (60..120).contains(&x) && (50..100).contains(&y)
}

fn write_l8(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).unwrap();
    let options = |band: &str, time: &str, nodata: Option<f64>| WriteOptions {
        block_size: 64,
        transform: Some(GeoTransform::north_up(L8_ORIGIN.0, L8_ORIGIN.1, 30.0, 30.0)),
        epsg: Some(32652),
        nodata,
        band_descriptions: vec![band.into()],
        metadata: vec![("ACQUISITION_DATETIME".into(), time.into())],
        ..Default::default()
    };
    let mut files = Vec::new();
    for (t, time) in L8_TIMES.iter().enumerate() {
        let stamp = &time[..10].replace('-', "");
        let mut paths = Vec::new();
        for (band, f) in [("SR_B4", l8_red as fn(_, _, _) -> u16), ("SR_B5", l8_nir)] {
            let data = Array3::from_shape_fn((1, L8_SIZE, L8_SIZE), |(_, y, x)| {
                if x < 2 {
                    0 // nodata along the western edge
                } else {
                    f(t, x, y)
                }
            });
            let path = dir.join(format!("LSIM_{stamp}_{band}.tif"));
            write_cog(&path, data.view(), &options(band, time, Some(0.0))).unwrap();
            paths.push(path);
        }
        let qa = Array3::from_shape_fn((1, L8_SIZE, L8_SIZE), |(_, y, x)| {
            if l8_cloud(t, x, y) {
                QA_CLOUD
            } else {
                QA_CLEAR
            }
        });
        let path = dir.join(format!("LSIM_{stamp}_QA_PIXEL.tif"));
        write_cog(&path, qa.view(), &options("QA_PIXEL", time, None)).unwrap();
        files.push((paths[0].clone(), paths[1].clone()));
    }
    files
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let wh = dir.path().join("wh");
        demo::write_scenes(&dir.path().join("s2")).unwrap();
        let l8_files = write_l8(&dir.path().join("l8"));
        for (product, folder) in [(S2, "s2"), (L8, "l8")] {
            let options = IngestOptions {
                product: Some(product.into()),
                ..Default::default()
            };
            let scenes = [dir.path().join(folder).display().to_string()];
            let report = ingest(&wh, &scenes, &options, &Quiet).unwrap();
            assert!(report.scenes_ingested > 0, "{product}: {report:?}");
        }
        Fixture {
            _dir: dir,
            wh,
            l8_files,
        }
    })
}

fn time(s: &str) -> DateTime<Utc> {
    pixelquery::time::parse_datetime(s).unwrap()
}

/// Landsat scale and offset as the painter applies them (`f32`).
fn l8_physical(dn: f64) -> f32 {
    let band = ProductProfile::built_in(L8)
        .unwrap()
        .band("red")
        .unwrap()
        .clone();
    dn as f32 * band.scale as f32 + band.offset as f32
}

/// Map coordinates (EPSG:32652) of the centre of 10 m demo pixel (`col`, `row`).
fn s2_centre(col: usize, row: usize) -> (f64, f64) {
    (
        demo::ORIGIN.0 + (col as f64 + 0.5) * 10.0,
        demo::ORIGIN.1 - (row as f64 + 0.5) * 10.0,
    )
}

/// Landsat pixel (col, row) holding map point (`x`, `y`).
fn l8_pixel((x, y): (f64, f64)) -> (usize, usize) {
    (
        ((x - L8_ORIGIN.0) / 30.0).floor() as usize,
        ((L8_ORIGIN.1 - y) / 30.0).floor() as usize,
    )
}

/// A box well inside one warehouse tile and inside the Landsat scenes, in EPSG:32652.
fn inner_box(wh: &Warehouse) -> Bounds {
    let grid = wh.config().grid;
    let (x, y) = s2_centre(200, 200);
    let tile = grid.tile_bounds(grid.tile_at(x, y));
    let b = Bounds::new(
        (tile.min_x + 300.0).max(demo::ORIGIN.0 + 300.0),
        (tile.min_y + 300.0).max(demo::ORIGIN.1 - 4500.0),
        (tile.max_x - 300.0).min(demo::ORIGIN.0 + 4500.0),
        (tile.max_y - 300.0).min(demo::ORIGIN.1 - 300.0),
    );
    // Snap to the 10 m output grid and keep it small.
    let snap = |v: f64| (v / 30.0).round() * 30.0;
    Bounds::new(
        snap(b.min_x),
        snap(b.min_y),
        snap(b.min_x) + 600.0_f64.min(b.max_x - b.min_x).max(300.0),
        snap(b.min_y) + 450.0_f64.min(b.max_y - b.min_y).max(300.0),
    )
}

/// Our warp layer's resampling of a Landsat file onto a 10 m grid (the reference GDAL is
/// checked against in `warp_gdal.rs`), as raw DNs with validity.
fn warp_reference(
    file: &Path,
    target: &GeoTransform,
    w: usize,
    h: usize,
    r: Resampling,
) -> Array3<f32> {
    let cog = Cog::open(file).unwrap();
    let data = cog
        .read_window::<u16>(0, Window::new(0, 0, L8_SIZE as u32, L8_SIZE as u32), &[0])
        .unwrap();
    let utm = Crs::from_epsg(32652).unwrap();
    let src = SourceRaster::new(
        data.view(),
        GeoTransform::north_up(L8_ORIGIN.0, L8_ORIGIN.1, 30.0, 30.0),
        utm.clone(),
    )
    .with_nodata(Some(0.0));
    let out = warp(
        &src,
        &TargetGrid::new(*target, w, h, utm),
        &WarpOptions::new(r),
    )
    .unwrap();
    let mut v = out.pixels.mapv(|d| d as f32);
    v.zip_mut_with(&out.valid, |d, &ok| {
        if ok == 0 {
            *d = f32::NAN
        }
    });
    v
}

/// `gdalwarp -r KERNEL` of a Landsat file onto the same grid, read with our COG reader;
/// `None` when GDAL is not installed.
fn gdalwarp(file: &Path, b: &Bounds, r: Resampling) -> Option<Array3<f32>> {
    let out = file.with_extension(format!("{}.{}.tif", r.name(), b.min_x));
    let status = Command::new("gdalwarp")
        .args(["-q", "-overwrite", "-co", "TILED=YES", "-r", r.name()])
        .args(["-tr", "10", "10", "-te"])
        .args([b.min_x, b.min_y, b.max_x, b.max_y].map(|v| v.to_string()))
        .arg(file)
        .arg(&out)
        .status()
        .ok()?;
    assert!(status.success(), "gdalwarp failed on {}", file.display());
    let cog = Cog::open(&out).unwrap();
    let (w, h) = (cog.meta().width(), cog.meta().height());
    let data = cog
        .read_window::<u16>(0, Window::new(0, 0, w, h), &[0])
        .unwrap();
    Some(data.mapv(|d| if d == 0 { f32::NAN } else { d as f32 }))
}

fn assert_close(got: f32, want: f32, what: &str) {
    assert!(
        (got.is_nan() && want.is_nan()) || (got - want).abs() <= 1e-6,
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn point_query_over_both_products_gives_one_time_axis() {
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    let (x, y) = s2_centre(100, 120);
    let (lx, ly) = l8_pixel((x, y));
    let cube = wh
        .query()
        .crs(32652)
        .point(x, y)
        .bands(&["red", "nir"])
        .run()
        .unwrap();
    assert_eq!(cube.dim().0, 8 + 3);
    assert!(
        cube.times.windows(2).all(|w| w[0] <= w[1]),
        "{:?}",
        cube.times
    );
    assert!(
        cube.values.physical,
        "several products imply physical values"
    );
    assert!(cube.values.describe().contains("landsat8_c2l2"));
    let l8_steps: Vec<usize> = (0..cube.dim().0)
        .filter(|&t| cube.products[t] == L8)
        .collect();
    assert_eq!(l8_steps.len(), 3);
    assert_eq!(
        (0..cube.dim().0)
            .filter(|&t| cube.products[t] == S2)
            .count(),
        8
    );
    for (k, &t) in l8_steps.iter().enumerate() {
        assert_eq!(cube.times[t], time(L8_TIMES[k]));
        assert_close(
            cube.data[[t, 0, 0, 0]],
            l8_physical(l8_red(k, lx, ly) as f64),
            "landsat red",
        );
        assert_close(
            cube.data[[t, 1, 0, 0]],
            l8_physical(l8_nir(k, lx, ly) as f64),
            "landsat nir",
        );
    }
    // Sentinel-2 steps: DN x 1e-4, the demo's own pixel.
    let s2 = wh
        .query()
        .crs(32652)
        .point(x, y)
        .bands(&["red"])
        .product(S2)
        .physical(true)
        .run()
        .unwrap();
    let s2_steps: Vec<usize> = (0..cube.dim().0)
        .filter(|&t| cube.products[t] == S2)
        .collect();
    for (k, &t) in s2_steps.iter().enumerate() {
        assert_eq!(cube.times[t], s2.times[k]);
        assert_eq!(
            cube.data[[t, 0, 0, 0]].to_bits(),
            s2.data[[k, 0, 0, 0]].to_bits()
        );
    }
    // The same through the list API and the CLI (product column, the note on units).
    let listed = wh
        .query()
        .crs(32652)
        .point(x, y)
        .bands(&["red", "nir"])
        .products(&[S2, L8])
        .run()
        .unwrap();
    assert_eq!(listed.times, cube.times);
    assert_eq!(listed.products, cube.products);
    assert_eq!(listed.data, cube.data);
    let csv = fx.wh.parent().unwrap().join("point.csv");
    let point = format!("{x},{y}");
    let (code, _, err) = common::run_cli(
        &[
            "query",
            fx.wh.to_str().unwrap(),
            "--crs",
            "EPSG:32652",
            "--point",
            &point,
            "--bands",
            "red,nir",
            "--product",
            "sentinel2_l2a,landsat8_c2l2",
            "--out",
            csv.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not harmonised"), "{err}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("time,scene,product,band,x,y,value\n"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(",landsat8_c2l2,"))
            .count(),
        6
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(",sentinel2_l2a,"))
            .count(),
        16
    );
}

#[test]
fn a_dropped_fused_cube_lends_its_memory_to_the_next_query() {
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    let (x0, y0) = demo::ORIGIN;
    let side = demo::SIZE as f64 * 10.0;
    let b = Bounds::new(x0, y0 - side, x0 + side, y0);
    let query = || {
        wh.query()
            .crs(32652)
            .bbox(b)
            .bands(&["red", "nir"])
            .physical(true)
            .run()
            .unwrap()
    };
    let first = query();
    assert!(first.products.iter().any(|p| p == L8) && first.products.iter().any(|p| p == S2));
    assert!(first.data.len() * 4 >= pixelquery::query::recycle::MIN_BYTES);
    let (address, values) = (first.data.as_ptr(), first.data.clone());
    drop(first);
    // The next cube of that size is painted into the dropped one's warm buffer, every
    // element written again (nothing of the old contents shows through).
    let second = query();
    assert_eq!(second.data.as_ptr(), address);
    assert_eq!(second.data.shape(), values.shape());
    assert!(second
        .data
        .iter()
        .zip(values.iter())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let mut third = second.clone();
    third.data.fill(-1.0);
    drop(third);
    let fourth = query();
    assert!(fourth
        .data
        .iter()
        .zip(values.iter())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn box_query_resamples_the_coarser_product_as_gdalwarp_does() {
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    let b = inner_box(&wh);
    for kernel in [
        None,
        Some(Resampling::Nearest),
        Some(Resampling::Bilinear),
        Some(Resampling::Cubic),
    ] {
        let mut q = wh.query().crs(32652).bbox(b).bands(&["red"]);
        if let Some(k) = kernel {
            q = q.resampling(k);
        }
        let cube = q.run().unwrap();
        let (_, _, h, w) = cube.dim();
        assert_eq!(cube.transform.pixel_width, 10.0);
        let kernel = kernel.unwrap_or(Resampling::Nearest);
        let l8_steps: Vec<usize> = (0..cube.dim().0)
            .filter(|&t| cube.products[t] == L8)
            .collect();
        assert_eq!(l8_steps.len(), 3);
        for (k, &t) in l8_steps.iter().enumerate() {
            let file = &fx.l8_files[k].0;
            let ours = warp_reference(file, &cube.transform, w, h, kernel);
            let gdal = gdalwarp(file, &b, kernel);
            if gdal.is_none() {
                eprintln!("gdalwarp not found; checking against the warp layer only");
            }
            let got = cube.data.index_axis(Axis(0), t);
            for y in 0..h {
                for x in 0..w {
                    let v = got[[0, y, x]];
                    let dn = ours[[0, y, x]];
                    let what = format!("{} at ({x}, {y}) of {}", kernel.name(), L8_TIMES[k]);
                    assert_close(v, l8_physical(dn as f64), &what);
                    if let Some(g) = &gdal {
                        assert_eq!(g.dim(), (1, h, w), "gdalwarp grid");
                        assert_close(
                            v,
                            l8_physical(g[[0, y, x]] as f64),
                            &format!("{what} (GDAL)"),
                        );
                    }
                }
            }
            assert!(got.iter().all(|v| !v.is_nan()), "no gaps inside the scene");
        }
    }
}

#[test]
fn downsampling_defaults_to_average() {
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    let b = inner_box(&wh);
    let cube = wh
        .query()
        .crs(32652)
        .bbox(b)
        .bands(&["red"])
        .resolution(60.0)
        .run()
        .unwrap();
    let (_, _, h, w) = cube.dim();
    let t = (0..cube.dim().0).find(|&t| cube.products[t] == L8).unwrap();
    let ours = warp_reference(
        &fx.l8_files[0].0,
        &cube.transform,
        w,
        h,
        Resampling::Average,
    );
    for y in 0..h {
        for x in 0..w {
            assert_close(
                cube.data[[t, 0, y, x]],
                l8_physical(ours[[0, y, x]] as f64),
                "average",
            );
        }
    }
}

#[test]
fn polygon_query_clips_both_products() {
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    let b = inner_box(&wh);
    let (x0, y0, x1, y1) = (b.min_x, b.min_y, b.max_x, b.max_y);
    let geojson = format!(
        r#"{{"type": "Polygon", "coordinates": [[[{x0}, {y0}], [{x1}, {y0}], [{x0}, {y1}], [{x0}, {y0}]]]}}"#
    );
    let value: serde_json::Value = serde_json::from_str(&geojson).unwrap();
    let region = Region::from_geojson(&value, "triangle").unwrap();
    let cube = wh
        .query()
        .crs(32652)
        .region(region)
        .bands(&["red"])
        .products(&[S2, L8])
        .run()
        .unwrap();
    let (_, _, h, w) = cube.dim();
    let ours = warp_reference(
        &fx.l8_files[1].0,
        &cube.transform,
        w,
        h,
        Resampling::Nearest,
    );
    let t = (0..cube.dim().0)
        .find(|&t| cube.products[t] == L8 && cube.times[t] == time(L8_TIMES[1]))
        .unwrap();
    let (mut inside, mut outside) = (0, 0);
    for y in 0..h {
        for x in 0..w {
            let (cx, cy) = cube.pixel_center(x, y);
            // Below the diagonal from (x1, y0) to (x0, y1): inside the triangle.
            let in_triangle = (cx - x0) / (x1 - x0) + (cy - y0) / (y1 - y0) < 1.0;
            let v = cube.data[[t, 0, y, x]];
            if in_triangle {
                inside += 1;
                assert_close(v, l8_physical(ours[[0, y, x]] as f64), "inside the polygon");
            } else if (cx - x0) / (x1 - x0) + (cy - y0) / (y1 - y0) > 1.05 {
                outside += 1;
                assert!(v.is_nan(), "outside the polygon at ({x}, {y}): {v}");
            }
        }
    }
    assert!(inside > 100 && outside > 100, "{inside} {outside}");
}

#[test]
fn ndvi_masks_and_composites_work_across_products() {
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    // Under the Landsat cloud on its cloudy date, and under the demo's cloud on its own.
    let (x, y) = s2_centre(240, 210);
    let (lx, ly) = l8_pixel((x, y));
    assert!(l8_cloud(L8_CLOUDY, lx, ly));
    let ndvi = wh
        .query()
        .crs(32652)
        .point(x, y)
        .index("ndvi")
        .unwrap()
        .mask_clouds(true)
        .run()
        .unwrap();
    assert_eq!(ndvi.dim().0, 11);
    let l8_ndvi = |t: usize| {
        let red = l8_physical(l8_red(t, lx, ly) as f64);
        let nir = l8_physical(l8_nir(t, lx, ly) as f64);
        (nir - red) / (nir + red)
    };
    for t in 0..ndvi.dim().0 {
        let v = ndvi.data[[t, 0, 0, 0]];
        match ndvi.products[t].as_str() {
            L8 => {
                let k = L8_TIMES
                    .iter()
                    .position(|s| time(s) == ndvi.times[t])
                    .unwrap();
                if k == L8_CLOUDY {
                    assert!(v.is_nan(), "Landsat cloud masked by its QA bits");
                } else {
                    assert!((v - l8_ndvi(k)).abs() < 1e-5, "{v} vs {}", l8_ndvi(k));
                }
            }
            S2 => {
                let cloudy = ndvi.times[t].format("%Y-%m-%d").to_string() == demo::CLOUDY_DATE;
                assert_eq!(v.is_nan(), cloudy, "Sentinel-2 cloud masked by SCL at {t}");
                if !cloudy {
                    assert!((-1.0..=1.0).contains(&v));
                }
            }
            other => panic!("unexpected product {other}"),
        }
    }

    // A monthly median over both: June holds one step of each sensor.
    let monthly = wh
        .query()
        .crs(32652)
        .point(x, y)
        .index("ndvi")
        .unwrap()
        .composite(Reducer::Median, Period::Month)
        .run()
        .unwrap();
    let june = monthly
        .times
        .iter()
        .position(|t| t.format("%Y-%m").to_string() == "2024-06")
        .unwrap();
    assert_eq!(monthly.products[june], "landsat8_c2l2+sentinel2_l2a");
    let s2_june = ndvi
        .times
        .iter()
        .position(|t| *t == time("2024-06-18T02:16:59Z"))
        .unwrap();
    let want = (ndvi.data[[s2_june, 0, 0, 0]] + l8_ndvi(1)) / 2.0;
    assert!((monthly.data[[june, 0, 0, 0]] - want).abs() < 1e-5);
    assert_eq!(monthly.scenes[june].len(), 2);

    // Solar days: within a product by default, across products when asked.
    let solar = |across: bool| {
        wh.query()
            .crs(32652)
            .point(x, y)
            .bands(&["red"])
            .group_by_solar_day(true)
            .across_products(across)
            .run()
            .unwrap()
    };
    assert_eq!(solar(false).dim().0, 11);
    let mosaic = solar(true);
    assert_eq!(mosaic.dim().0, 10);
    let day = mosaic
        .times
        .iter()
        .position(|t| *t == time(L8_TIMES[1]))
        .unwrap();
    assert_eq!(mosaic.products[day], "landsat8_c2l2+sentinel2_l2a");
    // The first valid pixel of the day wins: Landsat passed earlier.
    assert_close(
        mosaic.data[[day, 0, 0, 0]],
        l8_physical(l8_red(1, lx, ly) as f64),
        "mosaic",
    );
}

#[test]
fn products_without_a_band_fail_by_name_or_are_skipped() {
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    let (x, y) = s2_centre(100, 120);
    let q = || wh.query().crs(32652).point(x, y).bands(&["blue"]);
    // Named products: the one without "blue" is an error naming it.
    let err = q().products(&[S2, L8]).run().unwrap_err().to_string();
    assert!(err.contains("\"blue\"") && err.contains(L8), "{err}");
    // Skipped on request; without --product only the products that have the band take part.
    for cube in [
        q().products(&[S2, L8]).skip_missing(true).run().unwrap(),
        q().run().unwrap(),
    ] {
        assert_eq!(cube.dim().0, 8);
        assert!(cube.products.iter().all(|p| p == S2));
        assert!(!cube.values.physical, "one product keeps raw values");
    }
    // All bands of several products mean nothing: a clear error.
    let err = wh
        .query()
        .crs(32652)
        .point(x, y)
        .run()
        .unwrap_err()
        .to_string();
    assert!(err.contains("several products"), "{err}");
    // A band no product has.
    let err = wh
        .query()
        .crs(32652)
        .point(x, y)
        .bands(&["swir22"])
        .run()
        .unwrap_err()
        .to_string();
    assert!(err.contains("swir22"), "{err}");
    // Native cubes need one product's raw values.
    let err = wh
        .query()
        .crs(32652)
        .point(x, y)
        .bands(&["red"])
        .run_native::<u16>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("physical"), "{err}");
    // A bad kernel name is refused by name.
    assert!("lanczos".parse::<Resampling>().is_err());
}

#[test]
fn pixel_table_names_the_product_of_every_row() {
    use pixelquery::query::export::{write_plan, ExportOptions};
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    let b = inner_box(&wh);
    let query = || wh.query().crs(32652).bbox(b).bands(&["red"]);
    let cube = query().run().unwrap();
    let (t, _, h, w) = cube.dim();
    assert!(cube.products.iter().any(|p| p == S2) && cube.products.iter().any(|p| p == L8));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("pixels.csv");
    write_plan(&query().prepare().unwrap(), &csv, &ExportOptions::default())
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time,product,band,x,y,value"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), t * h * w);
    // Rows follow the cube's order: each time step's pixels, then the next step's.
    for (k, row) in rows.iter().enumerate() {
        let step = k / (h * w);
        assert_eq!(row[1], cube.products[step], "row {k}");
        assert_eq!(row[2], "red");
        let (y, x) = ((k % (h * w)) / w, k % w);
        let v = cube.data[[step, 0, y, x]];
        if v.is_nan() {
            assert_eq!(row[5], "", "row {k}");
        } else {
            assert_eq!(row[5].parse::<f32>().unwrap(), v, "row {k}");
        }
    }
}

#[test]
fn output_grid_is_the_grid_queries_paint() {
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    let b = inner_box(&wh);
    let (x, y) = s2_centre(100, 120);
    let (x0, y0, x1, y1) = (b.min_x, b.min_y, b.max_x, b.max_y);
    let geojson: serde_json::Value = serde_json::from_str(&format!(
        r#"{{"type": "Polygon", "coordinates": [[[{x0}, {y0}], [{x1}, {y0}], [{x0}, {y1}], [{x0}, {y0}]]]}}"#
    ))
    .unwrap();
    let triangle = Region::from_geojson(&geojson, "triangle").unwrap();
    type Build<'a> = Box<dyn Fn() -> pixelquery::query::Query<'a> + 'a>;
    let cases: Vec<(&str, Build)> = vec![
        (
            "box over both products",
            Box::new(|| wh.query().crs(32652).bbox(b).bands(&["red"])),
        ),
        (
            "box, Landsat only (30 m)",
            Box::new(|| wh.query().crs(32652).bbox(b).bands(&["red"]).product(L8)),
        ),
        (
            "box at 60 m",
            Box::new(|| {
                wh.query()
                    .crs(32652)
                    .bbox(b)
                    .bands(&["red"])
                    .resolution(60.0)
            }),
        ),
        (
            "point",
            Box::new(|| wh.query().crs(32652).point(x, y).bands(&["red", "nir"])),
        ),
        (
            "NDVI over a polygon",
            Box::new(|| {
                wh.query()
                    .crs(32652)
                    .region(triangle.clone())
                    .index("ndvi")
                    .unwrap()
                    .mask_clouds(true)
            }),
        ),
    ];
    for (what, build) in cases {
        let (transform, width, height) = build().output_grid().unwrap();
        let cube = build().run().unwrap();
        let (_, _, h, w) = cube.dim();
        assert_eq!((width, height), (w, h), "{what}");
        assert_eq!(transform, cube.transform, "{what}");
    }
    assert!(wh
        .query()
        .crs(32652)
        .bbox(b)
        .bands(&["thermal"])
        .output_grid()
        .is_err());
}

/// A 600 m box centred on a corner of four warehouse tiles, inside both products' scenes: its
/// pixels near the seams need samples of two to four tiles.
fn seam_box(wh: &Warehouse) -> Bounds {
    let grid = wh.config().grid;
    let (x, y) = s2_centre(256, 128);
    let corner = grid.tile_bounds(grid.tile_at(x, y));
    let (cx, cy) = (corner.min_x, corner.max_y);
    let inside = |v: f64, lo: f64, hi: f64| v - 300.0 >= lo && v + 300.0 <= hi;
    assert!(inside(cx, L8_ORIGIN.0, L8_ORIGIN.0 + L8_SIZE as f64 * 30.0));
    assert!(inside(cy, L8_ORIGIN.1 - L8_SIZE as f64 * 30.0, L8_ORIGIN.1));
    assert!(inside(
        cx,
        demo::ORIGIN.0,
        demo::ORIGIN.0 + demo::SIZE as f64 * 10.0
    ));
    assert!(inside(
        cy,
        demo::ORIGIN.1 - demo::SIZE as f64 * 10.0,
        demo::ORIGIN.1
    ));
    Bounds::new(cx - 300.0, cy - 300.0, cx + 300.0, cy + 300.0)
}

/// The Landsat red steps of `cube` (a `kernel` resampling of the seam box at 10 m) equal our
/// warp layer's resampling of each whole file exactly, and `gdalwarp`'s within 1 DN when
/// GDAL is installed.
fn assert_landsat_steps_match_whole_files(
    fx: &Fixture,
    cube: &pixelquery::query::Cube,
    b: &Bounds,
    kernel: Resampling,
) {
    let (_, _, h, w) = cube.dim();
    assert_eq!(
        (h, w),
        (
            ((b.max_y - b.min_y) / 10.0) as usize,
            ((b.max_x - b.min_x) / 10.0) as usize
        )
    );
    let l8_steps: Vec<usize> = (0..cube.dim().0)
        .filter(|&t| cube.products[t] == L8)
        .collect();
    assert_eq!(l8_steps.len(), 3);
    let scale = ProductProfile::built_in(L8)
        .unwrap()
        .band("red")
        .unwrap()
        .scale as f32;
    for (k, &t) in l8_steps.iter().enumerate() {
        let file = &fx.l8_files[k].0;
        let ours = warp_reference(file, &cube.transform, w, h, kernel);
        let gdal = gdalwarp(file, b, kernel);
        if gdal.is_none() {
            eprintln!("gdalwarp not found; checking against the warp layer only");
        }
        let got = cube.data.index_axis(Axis(0), t);
        for y in 0..h {
            for x in 0..w {
                let v = got[[0, y, x]];
                let what = format!("{} at ({x}, {y}) of {}", kernel.name(), L8_TIMES[k]);
                assert_close(v, l8_physical(ours[[0, y, x]] as f64), &what);
                if let Some(g) = &gdal {
                    let want = l8_physical(g[[0, y, x]] as f64);
                    assert!(
                        (v.is_nan() && want.is_nan()) || (v - want).abs() <= scale + 1e-6,
                        "{what}: got {v}, gdalwarp {want}"
                    );
                }
            }
        }
        assert!(got.iter().all(|v| !v.is_nan()), "no gaps at the seams");
    }
}

#[test]
fn kernels_read_across_tile_seams_as_gdalwarp_does() {
    let fx = fixture();
    let wh = Warehouse::open(&fx.wh).unwrap();
    let b = seam_box(&wh);
    for kernel in [Resampling::Bilinear, Resampling::Cubic] {
        // One product: the 30 m Landsat-like series painted at 10 m.
        let one = wh
            .query()
            .crs(32652)
            .bbox(b)
            .bands(&["red"])
            .product(L8)
            .physical(true)
            .resolution(10.0)
            .resampling(kernel);
        let cube = one.clone().run().unwrap();
        assert!(cube.products.iter().all(|p| p == L8));
        assert_landsat_steps_match_whole_files(fx, &cube, &b, kernel);
        // The same cube painted window by window (what exports do): windows cut inside
        // tiles read their neighbours' samples too.
        let plan = one.prepare().unwrap();
        let (t, _, h, w) = plan.dim();
        for (rows, cols) in [(0..h / 3, 0..w), (h / 3..h, 0..w / 2), (h / 3..h, w / 2..w)] {
            let win = pixelquery::query::CubeWindow {
                steps: 0..t,
                rows: rows.clone(),
                cols: cols.clone(),
            };
            let part = plan.chunk_f32(&win).unwrap();
            for ((s, bd, y, x), v) in part.indexed_iter() {
                let want = cube.data[[s, bd, rows.start + y, cols.start + x]];
                assert!(
                    v.to_bits() == want.to_bits(),
                    "window {win:?} at ({x}, {y}) step {s}: {v} against {want}"
                );
            }
        }
        // A box inside one tile, its north and east edges 10 m from the seams: the kernels
        // read the tiles outside the region.
        let quarter = Bounds::new(b.min_x, b.min_y, b.min_x + 290.0, b.min_y + 290.0);
        let cube = wh
            .query()
            .crs(32652)
            .bbox(quarter)
            .bands(&["red"])
            .product(L8)
            .physical(true)
            .resolution(10.0)
            .resampling(kernel)
            .run()
            .unwrap();
        assert_landsat_steps_match_whole_files(fx, &cube, &quarter, kernel);
        // Fused: both products on one time axis, the Landsat steps resampled onto 10 m.
        let fused = wh
            .query()
            .crs(32652)
            .bbox(b)
            .bands(&["red"])
            .resampling(kernel)
            .run()
            .unwrap();
        assert_eq!(fused.dim().0, 8 + 3);
        assert_landsat_steps_match_whole_files(fx, &fused, &b, kernel);
    }
}
