//! Read planning: which overview level and which source pixel window one target tile needs,
//! so ingest decodes only those COG tiles.

use super::approx::PixelTransform;
use super::kernel::kernel_scale;
use super::{Error, Resampling, TargetGrid};
pub use crate::cog::Window;
use crate::crs::Crs;
use crate::geo::GeoTransform;

/// What the planner needs to know about a scene (no pixels).
#[derive(Debug, Clone, Copy)]
pub struct SceneLayout<'a> {
    /// Full-resolution width.
    pub width: u32,
    /// Full-resolution height.
    pub height: u32,
    /// Full-resolution geotransform.
    pub transform: GeoTransform,
    /// Scene CRS.
    pub crs: &'a Crs,
    /// Overview sizes `(width, height)`, finest first (COG order); level `i + 1` is
    /// `overviews[i]`, level 0 the full resolution.
    pub overviews: &'a [(u32, u32)],
}

/// The part of a scene one target tile needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadPlan {
    /// Level to read: 0 = full resolution, `i` = `overviews[i - 1]`.
    pub level: usize,
    /// Pixel window of that level, including the kernel margin, clipped to the level.
    pub window: Window,
    /// Geotransform of the window (pass it to the warp as the source transform).
    pub transform: GeoTransform,
}

/// Lattice points per side sampled on the target to find its source footprint.
const LATTICE: usize = 33;

/// Plans the read for warping `scene` onto `target` with `resampling`: `Ok(None)` when the
/// target does not overlap the scene.
///
/// The overview is chosen like GDAL's `gdalwarp` (`-ovr AUTO`): the coarsest level whose
/// decimation factor does not exceed the target/source resolution ratio (or is within 0.1 of
/// it), so downsampling by 2x or more reads an overview.
pub fn plan_read(
    scene: &SceneLayout<'_>,
    target: &TargetGrid,
    resampling: Resampling,
) -> Result<Option<ReadPlan>, Error> {
    if scene.width == 0 || scene.height == 0 {
        return Err(Error::EmptySource);
    }
    for &(w, h) in scene.overviews {
        if w == 0 || h == 0 || w > scene.width || h > scene.height {
            return Err(Error::Overview {
                width: w,
                height: h,
            });
        }
    }
    target.check()?;
    let px = PixelTransform::new(&scene.transform, scene.crs, &target.transform, &target.crs)
        .ok_or(Error::SingularTransform { which: "source" })?;
    let (tw, th) = (target.width as f64, target.height as f64);
    let mut xs = Vec::with_capacity(LATTICE * LATTICE);
    let mut ys = Vec::with_capacity(LATTICE * LATTICE);
    for j in 0..LATTICE {
        for i in 0..LATTICE {
            xs.push(tw * i as f64 / (LATTICE - 1) as f64);
            ys.push(th * j as f64 / (LATTICE - 1) as f64);
        }
    }
    px.exact(&mut xs, &mut ys);
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (&x, &y) in xs.iter().zip(&ys) {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    let (sw, sh) = (scene.width as f64, scene.height as f64);
    if !(x0 < sw && x1 > 0.0 && y0 < sh && y1 > 0.0) {
        return Ok(None);
    }
    let ratio = ((x1 - x0) / tw).min((y1 - y0) / th);
    let factors: Vec<(f64, f64)> = std::iter::once((1.0, 1.0))
        .chain(
            scene
                .overviews
                .iter()
                .map(|&(w, h)| (sw / w as f64, sh / h as f64)),
        )
        .collect();
    // Tolerate rounding in the sampled footprint (a 2x target must not come out as 1.9999).
    let level = choose_level(&factors, ratio * (1.0 + 1e-9));
    let (fx, fy) = factors[level];
    let (lw, lh) = if level == 0 {
        (scene.width, scene.height)
    } else {
        scene.overviews[level - 1]
    };
    let radius = match resampling {
        Resampling::Nearest | Resampling::Average | Resampling::Mode => 0.0,
        Resampling::Bilinear => 1.0,
        Resampling::Cubic => 2.0,
    };
    let margin_x = (radius / kernel_scale(ratio / fx)).ceil() + 1.0;
    let margin_y = (radius / kernel_scale(ratio / fy)).ceil() + 1.0;
    let c0 = ((x0 / fx).floor() - margin_x).clamp(0.0, lw as f64);
    let c1 = ((x1 / fx).ceil() + margin_x).clamp(0.0, lw as f64);
    let r0 = ((y0 / fy).floor() - margin_y).clamp(0.0, lh as f64);
    let r1 = ((y1 / fy).ceil() + margin_y).clamp(0.0, lh as f64);
    if c1 <= c0 || r1 <= r0 {
        return Ok(None);
    }
    // Bounded by the level size, a u32.
    let window = Window::new(c0 as u32, r0 as u32, (c1 - c0) as u32, (r1 - r0) as u32);
    let transform = scene
        .transform
        .window(0.0, 0.0, fx, fy)
        .window(c0, r0, 1.0, 1.0);
    Ok(Some(ReadPlan {
        level,
        window,
        transform,
    }))
}

/// GDAL's overview choice for a target ratio (source pixels per target pixel).
fn choose_level(factors: &[(f64, f64)], ratio: f64) -> usize {
    if ratio.is_nan() || ratio <= 1.0 {
        return 0;
    }
    let mut i = 0;
    while i + 1 < factors.len() {
        let cur = factors[i].0;
        let next = factors[i + 1].0;
        if (cur < ratio && next > ratio) || (cur - ratio).abs() < 0.1 {
            break;
        }
        i += 1;
    }
    // Walked past the target: the last level is still finer than asked, keep it; but never
    // pick a level coarser than the ratio (beyond the 0.1 tolerance).
    while i > 0 && factors[i].0 > ratio + 0.1 {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene_crs() -> Crs {
        Crs::from_epsg(32652).unwrap()
    }

    #[test]
    fn overview_choice_follows_gdal() {
        let f = [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)];
        assert_eq!(choose_level(&f, 0.5), 0);
        assert_eq!(choose_level(&f, 1.0), 0);
        assert_eq!(choose_level(&f, 1.9), 0);
        assert_eq!(choose_level(&f, 1.95), 0);
        assert_eq!(choose_level(&f, 2.0), 1);
        assert_eq!(choose_level(&f, 3.0), 1);
        assert_eq!(choose_level(&f, 4.0), 2);
        assert_eq!(choose_level(&f, 9.0), 2);
    }

    #[test]
    fn plans_window_with_margin_and_overview() {
        let crs = scene_crs();
        let scene = SceneLayout {
            width: 1024,
            height: 1024,
            transform: GeoTransform::north_up(399_960.0, 4_040_040.0, 10.0, 10.0),
            crs: &crs,
            overviews: &[(512, 512), (256, 256)],
        };
        // A 10 m tile, aligned: full resolution, window = tile + 1 px margin.
        let t = TargetGrid::new(
            GeoTransform::north_up(401_000.0, 4_038_000.0, 10.0, 10.0),
            100,
            100,
            crs.clone(),
        );
        let p = plan_read(&scene, &t, Resampling::Nearest).unwrap().unwrap();
        assert_eq!(p.level, 0);
        assert_eq!(p.window, Window::new(103, 203, 102, 102));
        assert_eq!(p.transform.origin_x, 399_960.0 + 1030.0);
        // Same footprint at 20 m: first overview, bilinear margin 2.
        let t = TargetGrid::new(
            GeoTransform::north_up(401_000.0, 4_038_000.0, 20.0, 20.0),
            50,
            50,
            crs.clone(),
        );
        let p = plan_read(&scene, &t, Resampling::Bilinear)
            .unwrap()
            .unwrap();
        assert_eq!(p.level, 1);
        assert_eq!(p.window.col_off, 52 - 2);
        assert_eq!(p.window.width, 50 + 4);
        assert_eq!(p.transform.pixel_width, 20.0);
        // Far away: nothing to read.
        let t = TargetGrid::new(
            GeoTransform::north_up(0.0, 0.0, 10.0, 10.0),
            10,
            10,
            crs.clone(),
        );
        assert_eq!(plan_read(&scene, &t, Resampling::Nearest).unwrap(), None);
    }

    #[test]
    fn plans_across_crs() {
        let crs = scene_crs();
        let scene = SceneLayout {
            width: 1024,
            height: 1024,
            transform: GeoTransform::north_up(399_960.0, 4_040_040.0, 10.0, 10.0),
            crs: &crs,
            overviews: &[],
        };
        let wgs = Crs::wgs84();
        let t = TargetGrid::new(
            GeoTransform::north_up(127.9, 36.49, 0.0001, 0.0001),
            100,
            100,
            wgs,
        );
        let p = plan_read(&scene, &t, Resampling::Cubic).unwrap().unwrap();
        assert_eq!(p.level, 0);
        // 0.01 deg is ~900 m of longitude and ~1110 m of latitude: ~90 x 111 source pixels.
        assert!((95..=105).contains(&p.window.width), "{:?}", p.window);
        assert!((115..=125).contains(&p.window.height), "{:?}", p.window);
    }

    #[test]
    fn rejects_bad_layouts() {
        let crs = scene_crs();
        let t = TargetGrid::new(
            GeoTransform::north_up(0.0, 0.0, 10.0, 10.0),
            10,
            10,
            crs.clone(),
        );
        let mut scene = SceneLayout {
            width: 0,
            height: 10,
            transform: GeoTransform::north_up(0.0, 0.0, 10.0, 10.0),
            crs: &crs,
            overviews: &[],
        };
        assert!(plan_read(&scene, &t, Resampling::Nearest).is_err());
        scene.width = 10;
        scene.overviews = &[(20, 5)];
        assert!(plan_read(&scene, &t, Resampling::Nearest).is_err());
        scene.overviews = &[];
        scene.transform = GeoTransform::from_gdal([0.0; 6]);
        assert!(plan_read(&scene, &t, Resampling::Nearest).is_err());
    }
}
