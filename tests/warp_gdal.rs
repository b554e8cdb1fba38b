//! Warp accuracy against GDAL 3.6 (`gdalwarp`) reference outputs committed in
//! `fixtures/warp/` (made by `fixtures/warp/make_fixtures.py` from `../shared/corpus`).
//!
//! Each case warps a committed input window onto the same target grid GDAL used (`-te`, `-tr`,
//! `-r`) and compares pixels and validity masks.

use ndarray::{Array3, ArrayView2};
use pixelquery::crs::Crs;
use pixelquery::geo::GeoTransform;
use pixelquery::warp::{warp, Resampling, SourceRaster, TargetGrid, WarpOptions, WarpPath, Warped};
use pixelquery::Sample;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/warp")
}

fn cases() -> Value {
    let text = std::fs::read_to_string(dir().join("cases.json")).expect("fixtures/warp/cases.json");
    serde_json::from_str(&text).expect("valid cases.json")
}

fn gt(v: &Value) -> GeoTransform {
    let a: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    GeoTransform::from_gdal([a[0], a[1], a[2], a[3], a[4], a[5]])
}

fn read_raw<T: Sample>(file: &str, bands: usize, h: usize, w: usize) -> Array3<T> {
    let bytes = std::fs::read(dir().join(file)).unwrap();
    let size = std::mem::size_of::<T>();
    assert_eq!(bytes.len(), bands * h * w * size, "{file}");
    let v: Vec<T> = bytes.chunks_exact(size).map(T::from_le_slice).collect();
    Array3::from_shape_vec((bands, h, w), v).unwrap()
}

fn usize_of(v: &Value, k: &str) -> usize {
    v[k].as_u64().unwrap() as usize
}

/// Our warp of case `name` and GDAL's output for it.
struct Run<T> {
    ours: Warped<T>,
    gdal: Array3<T>,
    nodata: f64,
}

fn run_case<T: Sample>(name: &str) -> Run<T> {
    let all = cases();
    let case = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    let inp = &all["inputs"][case["input"].as_str().unwrap()];
    let (iw, ih, ib) = (
        usize_of(inp, "width"),
        usize_of(inp, "height"),
        usize_of(inp, "bands"),
    );
    let src_px = read_raw::<T>(inp["file"].as_str().unwrap(), ib, ih, iw);
    let nodata = inp["nodata"].as_f64().unwrap();
    let src_crs = Crs::from_epsg(inp["epsg"].as_u64().unwrap() as u32).unwrap();
    let src = SourceRaster::new(src_px.view(), gt(&inp["geotransform"]), src_crs)
        .with_nodata(Some(nodata));
    let (w, h) = (usize_of(case, "width"), usize_of(case, "height"));
    let dst_crs = Crs::from_epsg(case["epsg"].as_u64().unwrap() as u32).unwrap();
    let target = TargetGrid::new(gt(&case["geotransform"]), w, h, dst_crs);
    let r: Resampling = case["resampling"].as_str().unwrap().parse().unwrap();
    let ours = warp(&src, &target, &WarpOptions::new(r)).unwrap();
    let gdal = read_raw::<T>(case["file"].as_str().unwrap(), ib, h, w);
    Run { ours, gdal, nodata }
}

/// Comparison statistics for one band.
#[derive(Debug, Default)]
struct Stats {
    /// Pixels valid in both outputs.
    both: usize,
    /// Pixels whose validity differs.
    mask_diff: usize,
    /// Mask differences not on the edge of GDAL's valid region (3x3 neighbourhood mixed).
    mask_diff_interior: usize,
    /// Over pixels valid in both and `margin` px away from GDAL's invalid pixels:
    compared: usize,
    max_abs: f64,
    mean_abs: f64,
    /// Pixels that differ at all (same set).
    differing: usize,
}

fn neighbourhood_all(
    mask: &ArrayView2<'_, bool>,
    y: usize,
    x: usize,
    r: usize,
    want: bool,
) -> bool {
    let (h, w) = mask.dim();
    let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(h));
    let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(w));
    // Pixels near the tile border count as edge too (the reference has no context there).
    if y < r || x < r || y + r >= h || x + r >= w {
        return false;
    }
    (y0..y1).all(|yy| (x0..x1).all(|xx| mask[[yy, xx]] == want))
}

fn stats<T: Sample>(run: &Run<T>, band: usize, margin: usize) -> Stats {
    let ours = run.ours.pixels.index_axis(ndarray::Axis(0), band);
    let ov = run.ours.valid.index_axis(ndarray::Axis(0), band);
    let gdal = run.gdal.index_axis(ndarray::Axis(0), band);
    let gmask = gdal.mapv(|v| v.to_f64() != run.nodata);
    let gm = gmask.view();
    let mut s = Stats::default();
    let mut sum = 0.0;
    for ((y, x), &g) in gdal.indexed_iter() {
        let ok_g = gm[[y, x]];
        let ok_o = ov[[y, x]] != 0;
        if ok_g != ok_o {
            s.mask_diff += 1;
            if neighbourhood_all(&gm, y, x, 1, ok_g) {
                s.mask_diff_interior += 1;
            }
        }
        if ok_g && ok_o {
            s.both += 1;
            if neighbourhood_all(&gm, y, x, margin, true) {
                let d = (ours[[y, x]].to_f64() - g.to_f64()).abs();
                s.compared += 1;
                s.max_abs = s.max_abs.max(d);
                sum += d;
                s.differing += (d != 0.0) as usize;
            }
        }
    }
    s.mean_abs = sum / s.compared.max(1) as f64;
    s
}

/// Mean abs difference when GDAL's output is shifted by (dx, dy) pixels.
fn shifted_mad<T: Sample>(run: &Run<T>, dx: isize, dy: isize) -> f64 {
    let ours = run.ours.pixels.index_axis(ndarray::Axis(0), 0);
    let ov = run.ours.valid.index_axis(ndarray::Axis(0), 0);
    let gdal = run.gdal.index_axis(ndarray::Axis(0), 0);
    let (h, w) = gdal.dim();
    let (mut sum, mut n) = (0.0, 0usize);
    for y in 2..h - 2 {
        for x in 2..w - 2 {
            let (gy, gx) = ((y as isize + dy) as usize, (x as isize + dx) as usize);
            let g = gdal[[gy, gx]].to_f64();
            if ov[[y, x]] != 0 && g != run.nodata {
                sum += (ours[[y, x]].to_f64() - g).abs();
                n += 1;
            }
        }
    }
    sum / n.max(1) as f64
}

/// Asserts no sub-pixel shift: GDAL's output moved by one pixel in any direction matches ours
/// clearly worse than unmoved.
fn assert_no_shift<T: Sample>(name: &str, run: &Run<T>) {
    let base = shifted_mad(run, 0, 0);
    for (dx, dy) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
        let m = shifted_mad(run, dx, dy);
        assert!(
            m > 3.0 * base && m > base + 2.0,
            "{name}: shift ({dx},{dy}) MAD {m} vs {base}"
        );
    }
}

fn report(name: &str, s: &Stats) {
    eprintln!(
        "{name:18} both {:5} compared {:5} mask_diff {:3} (interior {}) max {:6.2} mean {:.4} differing {}",
        s.both, s.compared, s.mask_diff, s.mask_diff_interior, s.max_abs, s.mean_abs, s.differing
    );
}

#[test]
fn aligned_copy_is_bit_exact() {
    let run = run_case::<u16>("aligned_near");
    assert_eq!(run.ours.path, WarpPath::Copy);
    // Bit-exact against GDAL's output: every pixel, both bands, including nodata.
    assert_eq!(run.ours.pixels, run.gdal);
    // And the valid mask is exactly "not nodata" there.
    for (v, ok) in run.ours.pixels.iter().zip(run.ours.valid.iter()) {
        assert_eq!(*ok != 0, *v != 0);
    }
    // Sanity: the fixture crosses the swath edge, so both valid and invalid pixels exist.
    let n = run.ours.valid_count();
    assert!(n > 1000 && n < run.ours.valid.len() - 1000, "{n}");
}

#[test]
fn nearest_identical_except_ties() {
    for name in ["shift_near", "l8_near", "u51_near", "ll_near"] {
        let run = run_case::<u16>(name);
        for b in 0..run.gdal.dim().0 {
            let s = stats(&run, b, 0);
            report(name, &s);
            // Same-CRS cases have no ties (offsets of 3/4 m or 5 m): identical everywhere.
            // Reprojected cases: ties are exact half-pixel hits; allow a handful.
            let allowed = if name.starts_with("shift") || name.starts_with("l8") {
                0
            } else {
                s.both / 500
            };
            assert!(s.differing <= allowed, "{name}: {s:?}");
            assert!(s.mask_diff <= allowed.max(s.both / 200), "{name}: {s:?}");
        }
    }
}

#[test]
fn bilinear_and_cubic_within_one_dn() {
    // The issue asks for 1 DN away from nodata edges; we match GDAL's nodata handling too
    // (renormalised bilinear, cubic falling back to bilinear near nodata), so the bound holds
    // on every pixel valid in both outputs (margin 0), and the masks are identical.
    for (name, min_compared) in [
        ("shift_bilinear", 3000),
        ("shift_cubic", 3000),
        ("l8_bilinear", 9000),
        ("l8_cubic", 9000),
        ("cubic5", 200),
    ] {
        let run = run_case::<u16>(name);
        assert_ne!(run.ours.path, WarpPath::Copy);
        for b in 0..run.gdal.dim().0 {
            let s = stats(&run, b, 0);
            report(name, &s);
            assert!(s.compared >= min_compared, "{name}: {s:?}");
            assert!(s.max_abs <= 1.0, "{name}: {s:?}");
            // Off by one only where the exact value is a rounding tie (x.5): the 30 m -> 10 m
            // case has weights in sixths, so ties are common there (3.6% of pixels).
            assert!(s.differing * 20 <= s.compared, "{name}: {s:?}");
            assert_eq!(s.mask_diff, 0, "{name}: {s:?}");
        }
    }
}

#[test]
fn downsampling_kernels_match_gdal() {
    for (name, margin, max_abs) in [
        ("avg25", 1, 1.0),
        ("bilinear20", 2, 1.0),
        ("cubic20", 3, 1.0),
    ] {
        let run = run_case::<u16>(name);
        assert_eq!(run.ours.path, WarpPath::Separable);
        for b in 0..run.gdal.dim().0 {
            let s = stats(&run, b, margin);
            report(name, &s);
            assert!(s.compared > 200, "{name}: {s:?}");
            assert!(s.max_abs <= max_abs, "{name}: {s:?}");
            assert_eq!(s.mask_diff_interior, 0, "{name}: {s:?}");
        }
    }
}

#[test]
fn mode_matches_gdal() {
    for name in ["mode30", "mode25"] {
        let run = run_case::<u8>(name);
        let s = stats(&run, 0, 0);
        report(name, &s);
        assert!(s.compared > 500, "{name}: {s:?}");
        // Same most-frequent class except where two classes tie.
        assert!(s.differing * 50 <= s.compared, "{name}: {s:?}");
        assert_eq!(s.mask_diff_interior, 0, "{name}: {s:?}");
    }
}

#[test]
fn reprojection_matches_gdal_without_shift() {
    for (name, margin) in [
        ("l8_bilinear", 1),
        ("u51_bilinear", 1),
        ("u51edge_bilinear", 1),
        ("ll_bilinear", 1),
        ("ll_cubic", 2),
    ] {
        let run = run_case::<u16>(name);
        let s = stats(&run, 0, margin);
        report(name, &s);
        assert!(s.compared > 300, "{name}: {s:?}");
        assert!(s.mean_abs < 1.0, "{name}: {s:?}");
        assert!(s.max_abs <= 1.0, "{name}: {s:?}");
        // Validity may differ from GDAL's only along the edge of the valid region (today it
        // does not differ at all).
        assert_eq!(s.mask_diff_interior, 0, "{name}: {s:?}");
        assert!(s.mask_diff * 100 <= s.both.max(1), "{name}: {s:?}");
        assert_no_shift(name, &run);
    }
    // The edge case really has an edge: part of the tile lies outside the scene.
    let run = run_case::<u16>("u51edge_bilinear");
    assert_eq!(run.ours.path, WarpPath::General);
    let n = run.ours.valid_count();
    assert!(n > 500 && n < run.ours.valid.len() - 500, "{n}");
}

/// Tie points: a few distinct pixels where our output must equal GDAL's exactly (nearest)
/// or within 1 DN (bilinear), checked by value rather than by aggregate.
#[test]
fn tie_points() {
    let near = run_case::<u16>("ll_near");
    let bil = run_case::<u16>("ll_bilinear");
    for (y, x) in [(10, 10), (10, 85), (48, 48), (85, 10), (85, 85)] {
        assert_eq!(
            near.ours.pixels[[0, y, x]],
            near.gdal[[0, y, x]],
            "near ({x},{y})"
        );
        let d = bil.ours.pixels[[0, y, x]] as i32 - bil.gdal[[0, y, x]] as i32;
        assert!(d.abs() <= 1, "bilinear ({x},{y}): {d}");
    }
}
