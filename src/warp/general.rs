//! Fast path 3: any CRS pair (or rotated grids). Source coordinates come row by row from the
//! approximate transformer into contiguous buffers; the kernel loops then only gather and
//! weigh, with no projection, allocation or dynamic dispatch per pixel.

use super::approx::Approx;
use super::kernel::{box_weights, interp_weights, kernel_scale, Interp};
use super::mode::ModeCounter;
use super::Resampling;
use crate::dtype::Sample;
use ndarray::ArrayView2;

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

/// Source coordinates for every target row, shared by all bands.
pub(crate) struct Geometry {
    w: usize,
    h: usize,
    /// Source (x, y) of target pixel centres, row-major (interpolating kernels, nearest).
    centres: Option<(Vec<f64>, Vec<f64>)>,
    /// Source (x, y) of target pixel corners, `(h + 1) x (w + 1)` (average, mode).
    corners: Option<(Vec<f64>, Vec<f64>)>,
    /// Kernel scale along x and y (1 unless downsampling).
    scale: (f64, f64),
}

impl Geometry {
    /// Samples the transform for a `w x h` target and a `src_w x src_h` source.
    pub(crate) fn new(
        approx: &Approx,
        resampling: Resampling,
        w: usize,
        h: usize,
        src_w: usize,
        src_h: usize,
    ) -> Geometry {
        let corners_needed = matches!(resampling, Resampling::Average | Resampling::Mode);
        let interp = matches!(resampling, Resampling::Bilinear | Resampling::Cubic);
        let mut g = Geometry {
            w,
            h,
            centres: None,
            corners: None,
            scale: (1.0, 1.0),
        };
        if corners_needed {
            let (mut cx, mut cy) = (vec![0.0; (w + 1) * (h + 1)], vec![0.0; (w + 1) * (h + 1)]);
            for r in 0..=h {
                let o = r * (w + 1);
                approx.row(0.0, r as f64, &mut cx[o..o + w + 1], &mut cy[o..o + w + 1]);
            }
            g.corners = Some((cx, cy));
        } else {
            let (mut sx, mut sy) = (vec![0.0; w * h], vec![0.0; w * h]);
            for r in 0..h {
                let o = r * w;
                approx.row(0.5, r as f64 + 0.5, &mut sx[o..o + w], &mut sy[o..o + w]);
            }
            if interp {
                // GDAL's scale: target pixels over the source extent they cover (clipped to
                // the source), widened kernels only when that is below 1.
                let ext = |v: &[f64], len: usize, n: usize| {
                    let (lo, hi) = v
                        .iter()
                        .filter(|x| x.is_finite())
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                            (a.min(x), b.max(x))
                        });
                    // Centres span n - 1 pixels; add one for the outer half pixels.
                    let span = (hi.min(len as f64) - lo.max(0.0)).max(0.0);
                    span * n as f64 / (n.max(2) - 1) as f64 / n.max(1) as f64
                };
                g.scale = (
                    kernel_scale(ext(&sx, src_w, w)),
                    kernel_scale(ext(&sy, src_h, h)),
                );
            }
            g.centres = Some((sx, sy));
        }
        g
    }

    /// Warps one band into `dst`, writing validity into `dst_valid`.
    pub(crate) fn run<T: Sample>(
        &self,
        resampling: Resampling,
        band: ArrayView2<'_, T>,
        valid: &[u8],
        fill: T,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        dst.fill(fill);
        dst_valid.fill(0);
        // The warp entry point hands over standard-layout bands.
        let src = band.to_slice().unwrap_or(&[]);
        let (src_h, src_w) = band.dim();
        if src.len() != src_w * src_h || src.is_empty() {
            return;
        }
        match resampling {
            Resampling::Nearest => self.nearest(src, valid, src_w, src_h, dst, dst_valid),
            Resampling::Bilinear => {
                self.interp(Interp::Bilinear, src, valid, src_w, src_h, dst, dst_valid)
            }
            Resampling::Cubic => {
                self.interp(Interp::Cubic, src, valid, src_w, src_h, dst, dst_valid)
            }
            Resampling::Average => self.average(src, valid, src_w, src_h, dst, dst_valid),
            Resampling::Mode => self.mode(src, valid, src_w, src_h, dst, dst_valid),
        }
    }

    fn nearest<T: Sample>(
        &self,
        src: &[T],
        valid: &[u8],
        src_w: usize,
        src_h: usize,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        let Some((sx, sy)) = &self.centres else {
            return;
        };
        let (fw, fh) = (src_w as f64, src_h as f64);
        for i in 0..self.w * self.h {
            let (x, y) = (sx[i], sy[i]);
            // NaN fails both comparisons.
            if x >= 0.0 && x < fw && y >= 0.0 && y < fh {
                let o = y as usize * src_w + x as usize;
                if valid[o] != 0 {
                    dst[i] = src[o];
                    dst_valid[i] = 1;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn interp<T: Sample>(
        &self,
        kind: Interp,
        src: &[T],
        valid: &[u8],
        src_w: usize,
        src_h: usize,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        let Some((sx, sy)) = &self.centres else {
            return;
        };
        let (scx, scy) = self.scale;
        let mut wx = vec![0.0; kind.taps(scx)];
        let mut wy = vec![0.0; kind.taps(scy)];
        let (fw, fh) = (src_w as f64, src_h as f64);
        let eps = if kind == Interp::Bilinear { 1e-5 } else { 1e-6 };
        // GDAL's 4x4 cubic (not downsampling) falls back to bilinear unless all 16 taps are
        // inside the source and valid.
        let cubic4 = kind == Interp::Cubic && scx == 1.0 && scy == 1.0;
        let mut bx = [0.0; 2];
        let mut by = [0.0; 2];
        for i in 0..self.w * self.h {
            let (x, y) = (sx[i], sy[i]);
            // Like GDAL: the source pixel holding the centre must be valid.
            if !(x >= 0.0 && x < fw && y >= 0.0 && y < fh)
                || valid[y as usize * src_w + x as usize] == 0
            {
                continue;
            }
            let fx = interp_weights(kind, x, scx, &mut wx);
            let fy = interp_weights(kind, y, scy, &mut wy);
            if cubic4 && !all_valid(valid, src_w, src_h, fx, fy, 4) {
                let fx = interp_weights(Interp::Bilinear, x, 1.0, &mut bx);
                let fy = interp_weights(Interp::Bilinear, y, 1.0, &mut by);
                if let Some(v) = accumulate(src, valid, src_w, src_h, fx, fy, &bx, &by, 1e-5) {
                    dst[i] = T::from_f64(v);
                    dst_valid[i] = 1;
                }
                continue;
            }
            if let Some(v) = accumulate(src, valid, src_w, src_h, fx, fy, &wx, &wy, eps) {
                dst[i] = T::from_f64(v);
                dst_valid[i] = 1;
            }
        }
    }

    /// The source box of target pixel (c, r), GDAL style: from its top-left and bottom-right
    /// corners, swapped into order when the transform flips an axis.
    #[inline]
    fn pixel_box(&self, c: usize, r: usize) -> Option<(f64, f64, f64, f64)> {
        let (cx, cy) = self.corners.as_ref()?;
        let tl = r * (self.w + 1) + c;
        let br = (r + 1) * (self.w + 1) + c + 1;
        let (x0, x1, y0, y1) = (cx[tl], cx[br], cy[tl], cy[br]);
        if !(x0.is_finite() && x1.is_finite() && y0.is_finite() && y1.is_finite()) {
            return None;
        }
        Some((x0.min(x1), x0.max(x1), y0.min(y1), y0.max(y1)))
    }

    fn average<T: Sample>(
        &self,
        src: &[T],
        valid: &[u8],
        src_w: usize,
        src_h: usize,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        let (mut wx, mut wy) = (Vec::new(), Vec::new());
        for r in 0..self.h {
            for c in 0..self.w {
                let Some((x0, x1, y0, y1)) = self.pixel_box(c, r) else {
                    continue;
                };
                let (fx, nx) = box_weights(x0, x1, src_w, &mut wx);
                let (fy, ny) = box_weights(y0, y1, src_h, &mut wy);
                if nx == 0 || ny == 0 {
                    continue;
                }
                let (mut num, mut den) = (0.0, 0.0);
                for (ky, &wyk) in wy.iter().enumerate() {
                    let off = (fy + ky) * src_w + fx;
                    for (kx, &wxk) in wx.iter().enumerate() {
                        if valid[off + kx] != 0 {
                            num += wyk * wxk * src[off + kx].to_f64();
                            den += wyk * wxk;
                        }
                    }
                }
                if den > 1e-12 {
                    let i = r * self.w + c;
                    dst[i] = T::from_f64(num / den);
                    dst_valid[i] = 1;
                }
            }
        }
    }

    fn mode<T: Sample>(
        &self,
        src: &[T],
        valid: &[u8],
        src_w: usize,
        src_h: usize,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        let (mut wx, mut wy) = (Vec::new(), Vec::new());
        let mut counter = ModeCounter::new();
        for r in 0..self.h {
            for c in 0..self.w {
                let Some((x0, x1, y0, y1)) = self.pixel_box(c, r) else {
                    continue;
                };
                let (fx, nx) = box_weights(x0, x1, src_w, &mut wx);
                let (fy, ny) = box_weights(y0, y1, src_h, &mut wy);
                counter.clear();
                for y in fy..fy + ny {
                    let off = y * src_w + fx;
                    for (&v, &ok) in src[off..off + nx].iter().zip(&valid[off..off + nx]) {
                        if ok != 0 {
                            counter.add(v);
                        }
                    }
                }
                if let Some(m) = counter.mode() {
                    let i = r * self.w + c;
                    dst[i] = m;
                    dst_valid[i] = 1;
                }
            }
        }
    }
}
