//! Whole-scene warps of the shared corpus (`../shared/corpus`, skipped when absent), read with
//! the COG reader through the read planner, against the corpus's own gdalwarp outputs:
//! `variants/s2_{4326,3857,32651}_deflate.tif` are `gdalwarp -r bilinear` of
//! `ts/S2L_T52_20230611_10m.tif` (see the corpus's `make_cogs.sh`).

use ndarray::Array3;
use pixelquery::cog::{Cog, Window};
use pixelquery::crs::Crs;
use pixelquery::grid::GridSpec;
use pixelquery::warp::{
    plan_read, warp, Resampling, SceneLayout, SourceRaster, TargetGrid, WarpOptions, WarpPath,
    Warped,
};
use std::path::{Path, PathBuf};

fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if p.join("ts/S2L_T52_20230611_10m.tif").is_file() {
        Some(p)
    } else {
        eprintln!("skipping: no corpus at {}", p.display());
        None
    }
}

/// Plans, reads and warps `cog` onto `target`, the way ingest does.
fn warp_cog(cog: &Cog, target: &TargetGrid, r: Resampling) -> Option<(Warped<u16>, usize)> {
    let m = cog.meta();
    let crs = Crs::from_epsg(m.epsg().unwrap()).unwrap();
    let ovr: Vec<(u32, u32)> = m.levels[1..].iter().map(|l| (l.width, l.height)).collect();
    let layout = SceneLayout {
        width: m.width(),
        height: m.height(),
        transform: m.transform().unwrap(),
        crs: &crs,
        overviews: &ovr,
    };
    let plan = plan_read(&layout, target, r).unwrap()?;
    let bands: Vec<usize> = (0..m.band_count()).collect();
    let data = cog
        .read_window::<u16>(plan.level, plan.window, &bands)
        .unwrap();
    let mask = cog.read_mask(plan.level, plan.window).unwrap();
    let src = SourceRaster::new(data.view(), plan.transform, crs)
        .with_nodata(m.nodata)
        .with_mask(mask.as_ref().map(|m| m.view()));
    Some((
        warp(&src, target, &WarpOptions::new(r)).unwrap(),
        plan.level,
    ))
}

fn read_all(cog: &Cog) -> Array3<u16> {
    let m = cog.meta();
    let bands: Vec<usize> = (0..m.band_count()).collect();
    cog.read_window::<u16>(0, Window::full(m.width(), m.height()), &bands)
        .unwrap()
}

#[test]
fn scene_onto_its_own_grid_is_a_bit_exact_copy() {
    let Some(c) = corpus() else { return };
    let cog = Cog::open(c.join("ts/S2L_T52_20230611_10m.tif")).unwrap();
    let full = read_all(&cog);
    // GDAL bench's tile-grid extent: 399360..412160 x 4029440..4040960 at 10 m.
    let utm = Crs::from_epsg(32652).unwrap();
    let t = TargetGrid::new(
        pixelquery::GeoTransform::north_up(399_360.0, 4_040_960.0, 10.0, 10.0),
        1280,
        1152,
        utm,
    );
    let (w, level) = warp_cog(&cog, &t, Resampling::Bilinear).unwrap();
    assert_eq!((w.path, level), (WarpPath::Copy, 0));
    // Scene pixel (x, y) sits at target (x + 60, y + 92).
    for b in 0..4 {
        for y in (0..1024).step_by(7) {
            for x in (0..1024).step_by(5) {
                assert_eq!(w.pixels[[b, y + 92, x + 60]], full[[b, y, x]]);
            }
        }
    }
    assert_eq!(w.pixels[[0, 0, 0]], 0);
    assert_eq!(w.valid[[0, 0, 0]], 0);
}

#[test]
fn default_grid_tiles_partition_the_scene() {
    let Some(c) = corpus() else { return };
    let cog = Cog::open(c.join("ts/S2L_T52_20230611_10m.tif")).unwrap();
    let m = cog.meta();
    let crs = Crs::from_epsg(m.epsg().unwrap()).unwrap();
    let bounds = m.bounds().unwrap();
    let spec = GridSpec::default_for_scene(&crs, &bounds, None, None).unwrap();
    assert_eq!((spec.epsg, spec.tile_size), (32652, 3840.0));
    let tiles = spec.tiles_covering(&bounds, &crs).unwrap();
    assert_eq!(tiles.len(), 12);
    let full = read_all(&cog);
    let scene_valid = full.iter().filter(|&&v| v != 0).count();
    let mut tile_valid = 0;
    for t in tiles {
        let (gt, n) = spec.tile_geotransform(t, 10.0).unwrap();
        let target = TargetGrid::new(gt, n as usize, n as usize, crs.clone());
        let (w, _) = warp_cog(&cog, &target, Resampling::Nearest).unwrap();
        assert_eq!(w.path, WarpPath::Copy, "{t}");
        assert!(!w.is_empty, "{t}");
        tile_valid += w.valid_count();
    }
    // Every valid scene pixel lands in exactly one tile: no overlap, no gap.
    assert_eq!(tile_valid, scene_valid);
}

/// Warps the 10 m scene onto the grid of a corpus gdalwarp output and compares.
fn compare_with_variant(variant: &str) -> (f64, f64, usize, usize) {
    let c = corpus().unwrap();
    let scene = Cog::open(c.join("ts/S2L_T52_20230611_10m.tif")).unwrap();
    let reference = Cog::open(c.join(variant)).unwrap();
    let rm = reference.meta();
    let crs = Crs::from_epsg(rm.epsg().unwrap()).unwrap();
    let t = TargetGrid::new(
        rm.transform().unwrap(),
        rm.width() as usize,
        rm.height() as usize,
        crs,
    );
    let (w, level) = warp_cog(&scene, &t, Resampling::Bilinear).unwrap();
    assert_eq!((w.path, level), (WarpPath::General, 0));
    let g = read_all(&reference);
    let (mut sum, mut n, mut max, mut mask_diff, mut inner_diff) = (0.0, 0usize, 0.0f64, 0, 0);
    let (h, wd) = (g.dim().1, g.dim().2);
    for b in 0..4 {
        for y in 0..h {
            for x in 0..wd {
                let gv = g[[b, y, x]];
                let ok = w.valid[[b, y, x]] != 0;
                if (gv != 0) != ok {
                    mask_diff += 1;
                    // Inside GDAL's valid region (not on its edge)?
                    let inner = y > 0
                        && x > 0
                        && y + 1 < h
                        && x + 1 < wd
                        && [(0, 1), (2, 1), (1, 0), (1, 2)]
                            .iter()
                            .all(|&(dy, dx)| g[[b, y + dy - 1, x + dx - 1]] != 0);
                    inner_diff += inner as usize;
                }
                if gv != 0 && ok {
                    let d = (w.pixels[[b, y, x]] as f64 - gv as f64).abs();
                    sum += d;
                    max = max.max(d);
                    n += 1;
                }
            }
        }
    }
    eprintln!(
        "{variant}: {n} px, MAD {:.4}, max {max}, mask diff {mask_diff} (inner {inner_diff})",
        sum / n as f64
    );
    assert!(n > 3_000_000, "{variant}: {n}");
    (sum / n as f64, max, mask_diff, inner_diff)
}

// The corpus variants went through gdalwarp's COG output driver, which warps block by block;
// GDAL widens the bilinear kernel per chunk (source window vs chunk size), so its result
// depends on the chunking. Against those files we ask for a mean difference under 1 DN (the
// issue's bound) and identical masks away from the edge; against a plain gdalwarp of the whole
// scene (row sums in `fixtures/warp/cases.json`) the 32651 warp is bit-exact but for 3 pixels
// on the scene's edge.

#[test]
fn scene_into_epsg_4326_matches_gdal() {
    if corpus().is_none() {
        return;
    }
    let (mad, _, _, inner) = compare_with_variant("variants/s2_4326_deflate.tif");
    assert!(mad < 1.0 && inner == 0, "{mad}");
}

#[test]
fn scene_into_web_mercator_matches_gdal() {
    if corpus().is_none() {
        return;
    }
    let (mad, _, _, inner) = compare_with_variant("variants/s2_3857_deflate.tif");
    assert!(mad < 0.1 && inner == 0, "{mad}");
}

#[test]
fn scene_into_neighbouring_utm_zone_matches_plain_gdalwarp() {
    let Some(c) = corpus() else { return };
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/warp/cases.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let sc = &cases["scenes"][0];
    assert_eq!(sc["name"], "utm51_bilinear");
    let g: Vec<f64> = sc["geotransform"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let t = TargetGrid::new(
        pixelquery::GeoTransform::from_gdal([g[0], g[1], g[2], g[3], g[4], g[5]]),
        sc["width"].as_u64().unwrap() as usize,
        sc["height"].as_u64().unwrap() as usize,
        Crs::from_epsg(sc["epsg"].as_u64().unwrap() as u32).unwrap(),
    );
    let cog = Cog::open(c.join("ts/S2L_T52_20230611_10m.tif")).unwrap();
    let (w, _) = warp_cog(&cog, &t, Resampling::Bilinear).unwrap();
    // Row sums per band: identical except the rows where a pixel on the scene's very edge
    // falls on the other side of the boundary (3 of 1090 rows here).
    let sums = sc["row_sums"].as_array().unwrap();
    let mut differing_rows = 0;
    for (b, band) in sums.iter().enumerate() {
        for (y, v) in band.as_array().unwrap().iter().enumerate() {
            let ours: u64 = w
                .pixels
                .slice(ndarray::s![b, y, ..])
                .iter()
                .map(|&p| p as u64)
                .sum();
            differing_rows += (ours != v.as_u64().unwrap()) as usize;
        }
    }
    assert!(differing_rows <= 4 * 4, "{differing_rows} rows differ");
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for v in w.pixels.iter() {
        h.update(v.to_le_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    eprintln!("pixels sha256 {hex}, gdalwarp {}", sc["pixels_sha256"]);
    // And within the bound of the corpus's COG-driver output.
    let (mad, _, _, inner) = compare_with_variant("variants/s2_32651_deflate.tif");
    assert!(mad < 5.0 && inner == 0, "{mad}");
}

#[test]
fn downsampling_reads_the_overview() {
    let Some(c) = corpus() else { return };
    let cog = Cog::open(c.join("ts/S2L_T52_20230611_10m.tif")).unwrap();
    let utm = Crs::from_epsg(32652).unwrap();
    // A 20 m tile: the planner picks the 20 m overview, aligned with the tile: a plain copy
    // of the overview's (GDAL AVERAGE) pixels.
    let t = TargetGrid::new(
        pixelquery::GeoTransform::north_up(399_960.0, 4_040_040.0, 20.0, 20.0),
        192,
        192,
        utm.clone(),
    );
    let (w, level) = warp_cog(&cog, &t, Resampling::Average).unwrap();
    assert_eq!((level, w.path), (1, WarpPath::Copy));
    let ovr = cog
        .read_window::<u16>(1, Window::new(0, 0, 192, 192), &[0, 1, 2, 3])
        .unwrap();
    assert_eq!(w.pixels, ovr);
    // 15 m is not 2x: full resolution, separable path.
    let t = TargetGrid::new(
        pixelquery::GeoTransform::north_up(399_960.0, 4_040_040.0, 15.0, 15.0),
        256,
        256,
        utm,
    );
    let (w, level) = warp_cog(&cog, &t, Resampling::Average).unwrap();
    assert_eq!((level, w.path), (0, WarpPath::Separable));
}
