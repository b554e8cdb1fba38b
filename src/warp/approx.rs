//! Fast path 3's approximate transformer: target pixel -> source pixel coordinates, exact on a
//! few points per row and linear in between, refined until the interpolation error is at most
//! `max_error` source pixels (GDAL's `GDALApproxTransform`, default 0.125 px).
//!
//! The projection runs only at the sampled points, never per pixel in the kernel loops.

use crate::crs::{Crs, Transformer};
use crate::geo::GeoTransform;

/// Exact target-pixel -> source-pixel transform: affine, CRS change, inverse affine.
#[derive(Debug, Clone)]
pub(crate) struct PixelTransform {
    dst_gt: GeoTransform,
    src_inv: GeoTransform,
    crs: Option<Transformer>,
}

impl PixelTransform {
    /// `None` when the source transform is singular.
    pub(crate) fn new(
        src_gt: &GeoTransform,
        src_crs: &Crs,
        dst_gt: &GeoTransform,
        dst_crs: &Crs,
    ) -> Option<PixelTransform> {
        let t = Transformer::new(dst_crs, src_crs);
        Some(PixelTransform {
            dst_gt: *dst_gt,
            src_inv: src_gt.inverse()?,
            crs: (!t.is_identity()).then_some(t),
        })
    }

    /// Transforms target pixel coordinates to source pixel coordinates in place; points
    /// outside the projection domain become NaN.
    pub(crate) fn exact(&self, xs: &mut [f64], ys: &mut [f64]) {
        for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
            (*x, *y) = self.dst_gt.apply(*x, *y);
        }
        if let Some(t) = &self.crs {
            // Lengths are equal by construction; a whole-batch failure leaves NaN.
            if t.transform_in_place(xs, ys).is_err() {
                xs.fill(f64::NAN);
                ys.fill(f64::NAN);
            }
        }
        for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
            (*x, *y) = self.src_inv.apply(*x, *y);
        }
    }

    fn exact1(&self, x: f64, y: f64) -> (f64, f64) {
        let (mut xs, mut ys) = ([x], [y]);
        self.exact(&mut xs, &mut ys);
        (xs[0], ys[0])
    }
}

/// The approximate transformer over rows of target pixels.
#[derive(Debug, Clone)]
pub(crate) struct Approx {
    exact: PixelTransform,
    max_error: f64,
}

impl Approx {
    /// Wraps an exact transform; `max_error <= 0` means exact everywhere.
    pub(crate) fn new(exact: PixelTransform, max_error: f64) -> Approx {
        Approx { exact, max_error }
    }

    /// Exact source coordinates of arbitrary target points, in place.
    pub(crate) fn exact_points(&self, xs: &mut [f64], ys: &mut [f64]) {
        self.exact.exact(xs, ys);
    }

    /// Source coordinates of the target points `(x0 + i, y)` for `i in 0..sx.len()`.
    pub(crate) fn row(&self, x0: f64, y: f64, sx: &mut [f64], sy: &mut [f64]) {
        let n = sx.len();
        if n == 0 {
            return;
        }
        if n <= 4 || self.max_error <= 0.0 || !self.max_error.is_finite() {
            self.exact_span(x0, y, 0, n - 1, sx, sy);
            return;
        }
        let mut xs = [x0, x0 + (n - 1) as f64];
        let mut ys = [y, y];
        self.exact.exact(&mut xs, &mut ys);
        (sx[0], sy[0]) = (xs[0], ys[0]);
        (sx[n - 1], sy[n - 1]) = (xs[1], ys[1]);
        self.refine(x0, y, 0, n - 1, sx, sy);
    }

    /// Fills the interior of `[i0, i1]` (ends already exact) by interpolation where good enough.
    fn refine(&self, x0: f64, y: f64, i0: usize, i1: usize, sx: &mut [f64], sy: &mut [f64]) {
        if i1 <= i0 + 1 {
            return;
        }
        let m = (i0 + i1) / 2;
        let (ex, ey) = self.exact.exact1(x0 + m as f64, y);
        let ends_ok = sx[i0].is_finite() && sx[i1].is_finite() && sy[i0].is_finite();
        if !(ends_ok && ex.is_finite() && ey.is_finite() && sy[i1].is_finite()) {
            // Near the edge of the projection domain: no interpolation across it.
            self.exact_span(x0, y, i0 + 1, i1 - 1, sx, sy);
            return;
        }
        let t = (m - i0) as f64 / (i1 - i0) as f64;
        let ix = sx[i0] + t * (sx[i1] - sx[i0]);
        let iy = sy[i0] + t * (sy[i1] - sy[i0]);
        if (ix - ex).abs() + (iy - ey).abs() <= self.max_error {
            let (ax, ay) = (sx[i0], sy[i0]);
            let dx = (sx[i1] - ax) / (i1 - i0) as f64;
            let dy = (sy[i1] - ay) / (i1 - i0) as f64;
            for i in i0 + 1..i1 {
                let k = (i - i0) as f64;
                sx[i] = ax + k * dx;
                sy[i] = ay + k * dy;
            }
            return;
        }
        (sx[m], sy[m]) = (ex, ey);
        self.refine(x0, y, i0, m, sx, sy);
        self.refine(x0, y, m, i1, sx, sy);
    }

    fn exact_span(&self, x0: f64, y: f64, i0: usize, i1: usize, sx: &mut [f64], sy: &mut [f64]) {
        if i1 < i0 {
            return;
        }
        for i in i0..=i1 {
            sx[i] = x0 + i as f64;
            sy[i] = y;
        }
        self.exact.exact(&mut sx[i0..=i1], &mut sy[i0..=i1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approx_stays_within_error_of_exact() {
        let src_crs = Crs::from_epsg(4326).unwrap();
        let dst_crs = Crs::from_epsg(32652).unwrap();
        // Source: 1 arc-second-ish lon/lat grid; target: 10 m UTM tile.
        let sgt = GeoTransform::north_up(127.85, 36.55, 0.0001, 0.0001);
        let dgt = GeoTransform::north_up(399_960.0, 4_040_040.0, 10.0, 10.0);
        let px = PixelTransform::new(&sgt, &src_crs, &dgt, &dst_crs).unwrap();
        let ap = Approx::new(px.clone(), 0.125);
        let n = 1024;
        let (mut ax, mut ay) = (vec![0.0; n], vec![0.0; n]);
        ap.row(0.5, 700.5, &mut ax, &mut ay);
        let mut ex: Vec<f64> = (0..n).map(|i| i as f64 + 0.5).collect();
        let mut ey = vec![700.5; n];
        px.exact(&mut ex, &mut ey);
        let worst = (0..n)
            .map(|i| (ax[i] - ex[i]).abs() + (ay[i] - ey[i]).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 0.125, "max error {worst}");
        assert!(ax.iter().all(|v| v.is_finite()));
    }
}
