//! Fast path 3: any CRS pair (or rotated grids). Source coordinates come row by row from the
//! approximate transformer into contiguous buffers; the kernel loops then only gather and
//! weigh, with no projection, allocation or dynamic dispatch per pixel.

use super::approx::Approx;
use super::kernel::{box_weights, fast_floor, interp_weights, kernel_scale, to_sample, Interp};
use super::mode::ModeCounter;
use super::Resampling;
use crate::dtype::Sample;

/// Cubic convolution (a = -0.5) weights of the 4 taps around fractional offset `d` in [0, 1).
#[inline(always)]
fn cubic_coeffs(d: f64) -> [f64; 4] {
    let k = Interp::Cubic;
    [
        k.weight(1.0 + d),
        k.weight(d),
        k.weight(1.0 - d),
        k.weight(2.0 - d),
    ]
}

/// True when the `n x n` taps starting at (`fx`, `fy`) are all inside the source and valid.
#[inline]
fn all_valid(valid: &[u8], src_w: usize, src_h: usize, fx: isize, fy: isize, n: usize) -> bool {
    if fx < 0 || fy < 0 || fx as usize + n > src_w || fy as usize + n > src_h {
        return false;
    }
    (0..n).all(|k| {
        let o = (fy as usize + k) * src_w + fx as usize;
        valid[o..o + n].iter().all(|&v| v != 0)
    })
}

/// Weighted sum over the valid taps inside the source, renormalised by their weight; `None`
/// when that weight is at most `eps`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn accumulate<T: Sample>(
    src: &[T],
    valid: &[u8],
    src_w: usize,
    src_h: usize,
    fx: isize,
    fy: isize,
    wx: &[f64],
    wy: &[f64],
    eps: f64,
) -> Option<f64> {
    // Clip taps to the raster.
    let kx0 = (-fx).max(0) as usize;
    let kx1 = ((src_w as isize - fx).min(wx.len() as isize)).max(0) as usize;
    let ky0 = (-fy).max(0) as usize;
    let ky1 = ((src_h as isize - fy).min(wy.len() as isize)).max(0) as usize;
    let (mut num, mut den) = (0.0, 0.0);
    for (ky, &wyk) in wy.iter().enumerate().take(ky1).skip(ky0) {
        let off = (fy + ky as isize) as usize * src_w;
        let (mut rn, mut rd) = (0.0, 0.0);
        for (kx, &wxk) in wx.iter().enumerate().take(kx1).skip(kx0) {
            let o = off + (fx + kx as isize) as usize;
            if valid[o] != 0 {
                rn += wxk * src[o].to_f64();
                rd += wxk;
            }
        }
        num += wyk * rn;
        den += wyk * rd;
    }
    (den > eps).then(|| num / den)
}

/// Widened-kernel sample with `NX x NY` taps (fixed at compile time, so the loops unroll):
/// branch-free when all taps lie inside the source, [`accumulate`] at the edges.
#[inline(always)]
fn interp_fixed<T: Sample, const NX: usize, const NY: usize>(
    kind: Interp,
    band: &Band<'_, T>,
    x: f64,
    y: f64,
    (scx, scy): (f64, f64),
    eps: f64,
) -> Option<f64> {
    let (src, valid) = (band.src, band.valid);
    let src_h = valid.len() / band.src_w.max(1);
    let src_w = band.src_w;
    let mut wx = [0.0; NX];
    let mut wy = [0.0; NY];
    let fx = interp_weights(kind, x, scx, &mut wx);
    let fy = interp_weights(kind, y, scy, &mut wy);
    if fx < 0 || fy < 0 || fx as usize + NX > src_w || fy as usize + NY > src_h {
        return accumulate(src, valid, src_w, src_h, fx, fy, &wx, &wy, eps);
    }
    let (fx, fy) = (fx as usize, fy as usize);
    let (mut num, mut den) = (0.0, 0.0);
    for (ky, &wyk) in wy.iter().enumerate() {
        let o = (fy + ky) * src_w + fx;
        let (r, m) = (&src[o..o + NX], &valid[o..o + NX]);
        let (mut rn, mut rd) = (0.0, 0.0);
        for kx in 0..NX {
            let ok = m[kx] != 0;
            rn += wx[kx] * if ok { r[kx].to_f64() } else { 0.0 };
            rd += wx[kx] * (ok as u8 as f64);
        }
        num += wyk * rn;
        den += wyk * rd;
    }
    (den > eps).then(|| num / den)
}

/// One band of the source: samples and validity, row-major, `src_w x src_h`.
pub(crate) struct Band<'a, T> {
    pub(crate) src: &'a [T],
    pub(crate) valid: &'a [u8],
    pub(crate) src_w: usize,
}

/// The general path for one target: streams target rows, computing each row's source
/// coordinates once and applying the kernel to every band before moving on, so no
/// per-pixel coordinate array is ever materialised.
pub(crate) struct General<'a> {
    approx: &'a Approx,
    resampling: Resampling,
    w: usize,
    h: usize,
    src_w: usize,
    src_h: usize,
    /// Kernel scale along x and y (1 unless downsampling).
    scale: (f64, f64),
}

impl<'a> General<'a> {
    /// Sets up a `w x h` target over a `src_w x src_h` source.
    pub(crate) fn new(
        approx: &'a Approx,
        resampling: Resampling,
        w: usize,
        h: usize,
        src_w: usize,
        src_h: usize,
    ) -> General<'a> {
        let mut g = General {
            approx,
            resampling,
            w,
            h,
            src_w,
            src_h,
            scale: (1.0, 1.0),
        };
        if matches!(resampling, Resampling::Bilinear | Resampling::Cubic) {
            g.scale = g.kernel_scales();
        }
        g
    }

    /// GDAL's kernel scale: target pixels over the source extent they cover (clipped to the
    /// source), from the tile's border (top, middle and bottom rows; left and right columns).
    fn kernel_scales(&self) -> (f64, f64) {
        let (w, h) = (self.w, self.h);
        let mut xs = Vec::with_capacity(3 * w + 2 * h);
        let mut ys = Vec::with_capacity(3 * w + 2 * h);
        let (mut rx, mut ry) = (vec![0.0; w], vec![0.0; w]);
        for r in [0, h / 2, h.saturating_sub(1)] {
            self.approx.row(0.5, r as f64 + 0.5, &mut rx, &mut ry);
            xs.extend_from_slice(&rx);
            ys.extend_from_slice(&ry);
        }
        let step = (h / 32).max(1);
        for r in (0..h).step_by(step) {
            for c in [0, w.saturating_sub(1)] {
                let (mut x, mut y) = ([c as f64 + 0.5], [r as f64 + 0.5]);
                self.approx.exact_points(&mut x, &mut y);
                xs.push(x[0]);
                ys.push(y[0]);
            }
        }
        let ext = |v: &[f64], len: usize, n: usize| {
            let (lo, hi) = v
                .iter()
                .filter(|x| x.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            // Centres span n - 1 pixels; the outer half pixels make it n.
            let span = (hi.min(len as f64) - lo.max(0.0)).max(0.0);
            span / (n.max(2) - 1) as f64
        };
        (
            kernel_scale(ext(&xs, self.src_w, w)),
            kernel_scale(ext(&ys, self.src_h, h)),
        )
    }

    /// Warps every band: `dst` and `dst_valid` hold all bands, (band, y, x).
    pub(crate) fn run<T: Sample>(
        &self,
        bands: &[Band<'_, T>],
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        let (w, h) = (self.w, self.h);
        let plane = w * h;
        match self.resampling {
            Resampling::Average | Resampling::Mode => {
                // Corner rows r (top) and r + 1 (bottom), rolled down the tile.
                let (mut tx, mut ty) = (vec![0.0; w + 1], vec![0.0; w + 1]);
                let (mut bx, mut by) = (vec![0.0; w + 1], vec![0.0; w + 1]);
                self.approx.row(0.0, 0.0, &mut tx, &mut ty);
                let mut scratch = BoxScratch::default();
                let mut counter = ModeCounter::new();
                for r in 0..h {
                    self.approx.row(0.0, r as f64 + 1.0, &mut bx, &mut by);
                    for (b, band) in bands.iter().enumerate() {
                        let o = b * plane + r * w;
                        let (d, dv) = (&mut dst[o..o + w], &mut dst_valid[o..o + w]);
                        let corners = (&tx[..], &ty[..], &bx[..], &by[..]);
                        if self.resampling == Resampling::Average {
                            self.average_row(band, corners, &mut scratch, d, dv);
                        } else {
                            self.mode_row(band, corners, &mut scratch, &mut counter, d, dv);
                        }
                    }
                    std::mem::swap(&mut tx, &mut bx);
                    std::mem::swap(&mut ty, &mut by);
                }
            }
            _ => {
                let (mut sx, mut sy) = (vec![0.0; w], vec![0.0; w]);
                let kind = if self.resampling == Resampling::Cubic {
                    Interp::Cubic
                } else {
                    Interp::Bilinear
                };
                let mut wx = vec![0.0; kind.taps(self.scale.0)];
                let mut wy = vec![0.0; kind.taps(self.scale.1)];
                for r in 0..h {
                    self.approx.row(0.5, r as f64 + 0.5, &mut sx, &mut sy);
                    for (b, band) in bands.iter().enumerate() {
                        let o = b * plane + r * w;
                        let (d, dv) = (&mut dst[o..o + w], &mut dst_valid[o..o + w]);
                        if self.resampling == Resampling::Nearest {
                            self.nearest_row(band, &sx, &sy, d, dv);
                        } else {
                            self.interp_row(kind, band, &sx, &sy, &mut wx, &mut wy, d, dv);
                        }
                    }
                }
            }
        }
    }

    fn nearest_row<T: Sample>(
        &self,
        band: &Band<'_, T>,
        sx: &[f64],
        sy: &[f64],
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        let (fw, fh) = (self.src_w as f64, self.src_h as f64);
        for (i, (&x, &y)) in sx.iter().zip(sy).enumerate() {
            // NaN fails both comparisons.
            if x >= 0.0 && x < fw && y >= 0.0 && y < fh {
                let o = y as usize * self.src_w + x as usize;
                if band.valid[o] != 0 {
                    dst[i] = band.src[o];
                    dst_valid[i] = 1;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn interp_row<T: Sample>(
        &self,
        kind: Interp,
        band: &Band<'_, T>,
        sx: &[f64],
        sy: &[f64],
        wx: &mut [f64],
        wy: &mut [f64],
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        let (src, valid) = (band.src, band.valid);
        let (src_w, src_h) = (self.src_w, self.src_h);
        let (scx, scy) = self.scale;
        let (fw, fh) = (src_w as f64, src_h as f64);
        let eps = if kind == Interp::Bilinear { 1e-5 } else { 1e-6 };
        // GDAL's 4-sample formulas (not downsampling): bilinear on 2x2, cubic on 4x4, the
        // cubic falling back to bilinear unless all 16 taps are inside the source and valid.
        let four = scx == 1.0 && scy == 1.0;
        let cubic4 = kind == Interp::Cubic && four;
        let mut bx = [0.0; 2];
        let mut by = [0.0; 2];
        for (i, (&x, &y)) in sx.iter().zip(sy).enumerate() {
            // Like GDAL: the source pixel holding the centre must be valid.
            if !(x >= 0.0 && x < fw && y >= 0.0 && y < fh)
                || valid[y as usize * src_w + x as usize] == 0
            {
                continue;
            }
            let v = if four {
                let (xs, ys) = (x - 0.5, y - 0.5);
                let (fx, fy) = (fast_floor(xs), fast_floor(ys));
                let (dx, dy) = (xs - fx, ys - fy);
                let (ix, iy) = (fx as isize, fy as isize);
                if cubic4 && all_valid(valid, src_w, src_h, ix - 1, iy - 1, 4) {
                    let cx = cubic_coeffs(dx);
                    let cy = cubic_coeffs(dy);
                    let o = (iy - 1) as usize * src_w + (ix - 1) as usize;
                    let mut acc = 0.0;
                    for (k, &wyk) in cy.iter().enumerate() {
                        let r = &src[o + k * src_w..o + k * src_w + 4];
                        acc += wyk
                            * (cx[0] * r[0].to_f64()
                                + cx[1] * r[1].to_f64()
                                + cx[2] * r[2].to_f64()
                                + cx[3] * r[3].to_f64());
                    }
                    Some(acc)
                } else if ix >= 0
                    && iy >= 0
                    && (ix as usize) + 1 < src_w
                    && (iy as usize) + 1 < src_h
                    && {
                        let o = iy as usize * src_w + ix as usize;
                        (valid[o] & valid[o + 1] & valid[o + src_w] & valid[o + src_w + 1]) != 0
                    }
                {
                    // All four bilinear taps inside and valid.
                    let o = iy as usize * src_w + ix as usize;
                    let top = src[o].to_f64() * (1.0 - dx) + src[o + 1].to_f64() * dx;
                    let bot =
                        src[o + src_w].to_f64() * (1.0 - dx) + src[o + src_w + 1].to_f64() * dx;
                    Some(top * (1.0 - dy) + bot * dy)
                } else {
                    let fx = interp_weights(Interp::Bilinear, x, 1.0, &mut bx);
                    let fy = interp_weights(Interp::Bilinear, y, 1.0, &mut by);
                    accumulate(src, valid, src_w, src_h, fx, fy, &bx, &by, 1e-5)
                }
            } else {
                // Widened kernels: fixed tap counts for the common scales in [0.5, 1).
                match (wx.len(), wy.len()) {
                    (2, 2) => interp_fixed::<T, 2, 2>(kind, band, x, y, self.scale, eps),
                    (2, 4) => interp_fixed::<T, 2, 4>(kind, band, x, y, self.scale, eps),
                    (4, 2) => interp_fixed::<T, 4, 2>(kind, band, x, y, self.scale, eps),
                    (4, 4) => interp_fixed::<T, 4, 4>(kind, band, x, y, self.scale, eps),
                    (4, 6) => interp_fixed::<T, 4, 6>(kind, band, x, y, self.scale, eps),
                    (6, 4) => interp_fixed::<T, 6, 4>(kind, band, x, y, self.scale, eps),
                    (6, 6) => interp_fixed::<T, 6, 6>(kind, band, x, y, self.scale, eps),
                    _ => {
                        let fx = interp_weights(kind, x, scx, wx);
                        let fy = interp_weights(kind, y, scy, wy);
                        accumulate(src, valid, src_w, src_h, fx, fy, wx, wy, eps)
                    }
                }
            };
            if let Some(v) = v {
                dst[i] = to_sample::<T>(v);
                dst_valid[i] = 1;
            }
        }
    }

    fn average_row<T: Sample>(
        &self,
        band: &Band<'_, T>,
        corners: Corners<'_>,
        scratch: &mut BoxScratch,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        for c in 0..self.w {
            let Some((fx, nx, fy, ny)) = scratch.boxes(corners, c, self.src_w, self.src_h) else {
                continue;
            };
            let (mut num, mut den) = (0.0, 0.0);
            for (ky, &wyk) in scratch.wy.iter().enumerate().take(ny) {
                let off = (fy + ky) * self.src_w + fx;
                for (kx, &wxk) in scratch.wx.iter().enumerate().take(nx) {
                    if band.valid[off + kx] != 0 {
                        num += wyk * wxk * band.src[off + kx].to_f64();
                        den += wyk * wxk;
                    }
                }
            }
            if den > 1e-12 {
                dst[c] = to_sample::<T>(num / den);
                dst_valid[c] = 1;
            }
        }
    }

    fn mode_row<T: Sample>(
        &self,
        band: &Band<'_, T>,
        corners: Corners<'_>,
        scratch: &mut BoxScratch,
        counter: &mut ModeCounter<T>,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        for c in 0..self.w {
            let Some((fx, nx, fy, ny)) = scratch.boxes(corners, c, self.src_w, self.src_h) else {
                continue;
            };
            counter.clear();
            for y in fy..fy + ny {
                let off = y * self.src_w + fx;
                let vals = &band.src[off..off + nx];
                for (&v, &ok) in vals.iter().zip(&band.valid[off..off + nx]) {
                    if ok != 0 {
                        counter.add(v);
                    }
                }
            }
            if let Some(m) = counter.mode() {
                dst[c] = m;
                dst_valid[c] = 1;
            }
        }
    }
}

/// Source x and y of the corners on the top and bottom edge of one target row.
type Corners<'a> = (&'a [f64], &'a [f64], &'a [f64], &'a [f64]);

/// Reused buffers for box (average / mode) weights.
#[derive(Default)]
struct BoxScratch {
    wx: Vec<f64>,
    wy: Vec<f64>,
}

impl BoxScratch {
    /// Box of target column `c`, GDAL style: from the pixel's top-left and bottom-right corners,
    /// put in order when the transform flips an axis. Returns `(first x, n x, first y, n y)`.
    #[inline]
    fn boxes(
        &mut self,
        (tx, ty, bx, by): Corners<'_>,
        c: usize,
        src_w: usize,
        src_h: usize,
    ) -> Option<(usize, usize, usize, usize)> {
        let (x0, y0, x1, y1) = (tx[c], ty[c], bx[c + 1], by[c + 1]);
        if !(x0.is_finite() && x1.is_finite() && y0.is_finite() && y1.is_finite()) {
            return None;
        }
        let (fx, nx) = box_weights(x0.min(x1), x0.max(x1), src_w, &mut self.wx);
        let (fy, ny) = box_weights(y0.min(y1), y0.max(y1), src_h, &mut self.wy);
        (nx > 0 && ny > 0).then_some((fx, nx, fy, ny))
    }
}
