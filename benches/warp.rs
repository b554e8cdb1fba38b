//! Warp speed against a memcpy floor, measured in the same run.
//!
//! Scene: `corpus/ts/S2L_T52_20230611_10m.tif` (1024x1024x4 u16, EPSG:32652, 10 m) when the
//! shared corpus is present, else a generated scene of the same size and georeferencing.
//!
//! * Kernels: each kernel on the separable path (10 m grid shifted by (3, 4) m; `average` and
//!   `mode` onto 20 m) and on the general path (into EPSG:4326), in output Mpixel/s (all 4
//!   bands), next to a memcpy of the scene's bytes (8 MiB).
//! * Scene warps, the cases `corpus/bench_gdal.sh` times for GDAL 3.6 in process (about 33 ms
//!   for the 10 m tile grid and 253 ms for EPSG:4326, both read + warp, bilinear):
//!   path 1 onto the 10 m tile grid (`-te 399360 4029440 412160 4040960`, aligned copy),
//!   path 2 onto a 20 m grid (full resolution in, average and bilinear),
//!   path 3 into EPSG:4326 (GDAL's suggested grid: 1136 x 918 at 0.000101666 deg).
//!   Each warp-only (pixels in memory) and read + warp (`Cog::read_window` of the planned
//!   window, then the warp; corpus only).
//!
//! `cargo bench --bench warp` prints criterion's figures, then the tables.

mod support;

use criterion::Criterion;
use ndarray::Array3;
use pixelquery::cog::{Cog, Window};
use pixelquery::crs::Crs;
use pixelquery::geo::GeoTransform;
use pixelquery::warp::{
    plan_read, warp, Resampling, SceneLayout, SourceRaster, TargetGrid, WarpOptions, WarpPath,
};
use std::hint::black_box;

const KERNELS: [Resampling; 5] = [
    Resampling::Nearest,
    Resampling::Bilinear,
    Resampling::Cubic,
    Resampling::Average,
    Resampling::Mode,
];

fn scene_gt() -> GeoTransform {
    GeoTransform::north_up(399_960.0, 4_040_040.0, 10.0, 10.0)
}

/// The corpus scene, or a generated one (smooth field plus a hash texture, nodata corner).
fn load() -> (Array3<u16>, Option<Cog>) {
    if let Some(c) = support::corpus() {
        let cog = Cog::open(c.join("ts/S2L_T52_20230611_10m.tif")).unwrap();
        let px = cog
            .read_window::<u16>(0, Window::full(1024, 1024), &[0, 1, 2, 3])
            .unwrap();
        return (px, Some(cog));
    }
    let px = Array3::from_shape_fn((4, 1024, 1024), |(b, y, x)| {
        if x + y < 40 {
            return 0;
        }
        let h = (x as u32).wrapping_mul(2_654_435_761) ^ (y as u32).wrapping_mul(40_503) ^ b as u32;
        (500 + 3 * x + 2 * y + 100 * b) as u16 + (h % 97) as u16
    });
    (px, None)
}

fn grid(x0: f64, y0: f64, res: f64, w: usize, h: usize, crs: &Crs) -> TargetGrid {
    TargetGrid::new(GeoTransform::north_up(x0, y0, res, res), w, h, crs.clone())
}

fn main() {
    let (px, cog) = load();
    let utm = Crs::from_epsg(32652).unwrap();
    let wgs = Crs::wgs84();
    let src = SourceRaster::new(px.view(), scene_gt(), utm.clone()).with_nodata(Some(0.0));
    let bytes = px.len() * 2;
    let flat: Vec<u16> = px.iter().copied().collect();
    let mut copy_dst = vec![0u16; flat.len()];
    let memcpy = |dst: &mut Vec<u16>| {
        dst.copy_from_slice(black_box(&flat));
        black_box(dst.as_ptr());
    };

    // Kernel targets.
    let shifted = grid(399_963.0, 4_040_036.0, 10.0, 1024, 1024, &utm);
    let down20 = grid(399_960.0, 4_040_040.0, 20.0, 512, 512, &utm);
    let ll = grid(
        127.882_938_583_100_97,
        36.501_482_666_763_05,
        0.000_101_666_357_983,
        1136,
        918,
        &wgs,
    );
    let kernel_target = |r: Resampling| match r {
        Resampling::Average | Resampling::Mode => &down20,
        _ => &shifted,
    };
    // Scene targets (GDAL bench grids).
    let tile10 = grid(399_360.0, 4_040_960.0, 10.0, 1280, 1152, &utm);
    let tile20 = grid(399_360.0, 4_040_960.0, 20.0, 640, 576, &utm);
    let scenes: [(&str, &TargetGrid, Resampling, WarpPath); 5] = [
        (
            "path 1: 10 m tile grid, bilinear",
            &tile10,
            Resampling::Bilinear,
            WarpPath::Copy,
        ),
        (
            "path 2: 20 m grid, average",
            &tile20,
            Resampling::Average,
            WarpPath::Separable,
        ),
        (
            "path 2: 20 m grid, bilinear",
            &tile20,
            Resampling::Bilinear,
            WarpPath::Separable,
        ),
        (
            "path 3: EPSG:4326, bilinear",
            &ll,
            Resampling::Bilinear,
            WarpPath::General,
        ),
        (
            "path 3: EPSG:4326, nearest",
            &ll,
            Resampling::Nearest,
            WarpPath::General,
        ),
    ];
    for (name, t, r, path) in &scenes {
        assert_eq!(
            warp(&src, t, &WarpOptions::new(*r)).unwrap().path,
            *path,
            "{name}"
        );
    }

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    {
        let mut g = c.benchmark_group("warp");
        g.bench_function("memcpy_scene", |b| b.iter(|| memcpy(&mut copy_dst)));
        for r in KERNELS {
            let o = WarpOptions::new(r);
            let t = kernel_target(r);
            g.bench_function(format!("separable_{r}"), |b| {
                b.iter(|| warp(&src, t, &o).unwrap())
            });
            g.bench_function(format!("general_{r}"), |b| {
                b.iter(|| warp(&src, &ll, &o).unwrap())
            });
        }
        for (name, t, r, _) in &scenes {
            let o = WarpOptions::new(*r);
            g.bench_function(name.replace([' ', ':', ','], "_"), |b| {
                b.iter(|| warp(&src, t, &o).unwrap())
            });
        }
        g.finish();
    }

    let runs = 15;
    let mc = support::median_secs(runs, || memcpy(&mut copy_dst));
    println!(
        "\nscene: {}",
        if cog.is_some() {
            "corpus ts/S2L_T52_20230611_10m.tif"
        } else {
            "generated 1024x1024x4 u16"
        }
    );
    println!(
        "memcpy of the scene ({:.1} MiB): {:.2} ms",
        bytes as f64 / (1 << 20) as f64,
        mc * 1e3
    );
    println!("\n| kernel | path | output | ms | Mpixel/s (x4 bands) | time / memcpy |");
    println!("|---|---|---|---|---|---|");
    for r in KERNELS {
        let o = WarpOptions::new(r);
        for (path, t) in [("separable", kernel_target(r)), ("general", &ll)] {
            let s = support::median_secs(runs, || warp(&src, t, &o).unwrap());
            let mpx = (t.width * t.height) as f64 / s / 1e6;
            println!(
                "| {r} | {path} | {}x{} | {:.2} | {:.0} | {:.1}x |",
                t.width,
                t.height,
                s * 1e3,
                mpx,
                s / mc
            );
        }
    }
    println!(
        "\n| scene warp | output | warp only ms | read + warp ms | time / memcpy (warp only) |"
    );
    println!("|---|---|---|---|---|");
    for (name, t, r, _) in &scenes {
        let o = WarpOptions::new(*r);
        let s = support::median_secs(runs, || warp(&src, t, &o).unwrap());
        let rw = cog.as_ref().map(|cog| {
            let ovr: Vec<(u32, u32)> = cog.meta().levels[1..]
                .iter()
                .map(|l| (l.width, l.height))
                .collect();
            let layout = SceneLayout {
                width: 1024,
                height: 1024,
                transform: scene_gt(),
                crs: &utm,
                overviews: &ovr,
            };
            support::median_secs(runs, || {
                // Full resolution as GDAL's bench does (`-ovr` default reads overviews only
                // when downsampling by 2x or more; 20 m is exactly 2x, see the row below).
                let plan = plan_read(&layout, t, *r).unwrap().unwrap();
                let (level, win) = (0, full_res_window(&plan, &layout));
                let data = cog.read_window::<u16>(level, win, &[0, 1, 2, 3]).unwrap();
                let tr = scene_gt().window(win.col_off as f64, win.row_off as f64, 1.0, 1.0);
                let s = SourceRaster::new(data.view(), tr, utm.clone()).with_nodata(Some(0.0));
                warp(&s, t, &o).unwrap()
            })
        });
        println!(
            "| {name} | {}x{} | {:.2} | {} | {:.1}x |",
            t.width,
            t.height,
            s * 1e3,
            rw.map(|v| format!("{:.2}", v * 1e3)).unwrap_or("-".into()),
            s / mc
        );
    }
    if let Some(cog) = &cog {
        // The ingest way for a 20 m product: plan picks the 20 m overview, then an aligned copy.
        let ovr: Vec<(u32, u32)> = cog.meta().levels[1..]
            .iter()
            .map(|l| (l.width, l.height))
            .collect();
        let layout = SceneLayout {
            width: 1024,
            height: 1024,
            transform: scene_gt(),
            crs: &utm,
            overviews: &ovr,
        };
        let o = WarpOptions::new(Resampling::Average);
        let mut path = None;
        let s = support::median_secs(runs, || {
            let plan = plan_read(&layout, &tile20, Resampling::Average)
                .unwrap()
                .unwrap();
            let data = cog
                .read_window::<u16>(plan.level, plan.window, &[0, 1, 2, 3])
                .unwrap();
            let s =
                SourceRaster::new(data.view(), plan.transform, utm.clone()).with_nodata(Some(0.0));
            let w = warp(&s, &tile20, &o).unwrap();
            path = Some((plan.level, w.path));
            w
        });
        println!(
            "| 20 m via planned overview (level, path) = {:?} | 640x576 | - | {:.2} | - |",
            path.unwrap(),
            s * 1e3
        );
    }
}

/// The planned window expressed at full resolution (the plan may have chosen an overview).
fn full_res_window(plan: &pixelquery::warp::ReadPlan, layout: &SceneLayout<'_>) -> Window {
    if plan.level == 0 {
        return plan.window;
    }
    let (ow, oh) = layout.overviews[plan.level - 1];
    let fx = layout.width as f64 / ow as f64;
    let fy = layout.height as f64 / oh as f64;
    let c0 = ((plan.window.col_off as f64 * fx).floor() as u32).min(layout.width);
    let r0 = ((plan.window.row_off as f64 * fy).floor() as u32).min(layout.height);
    let c1 =
        (((plan.window.col_off + plan.window.width) as f64 * fx).ceil() as u32).min(layout.width);
    let r1 =
        (((plan.window.row_off + plan.window.height) as f64 * fy).ceil() as u32).min(layout.height);
    Window::new(c0, r0, c1 - c0, r1 - r0)
}
