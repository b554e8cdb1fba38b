//! Fast path 3: any CRS pair (or rotated grids). Source coordinates come row by row from the
//! approximate transformer into contiguous buffers; the kernel loops then only gather and
//! weigh, with no projection, allocation or dynamic dispatch per pixel.

use super::approx::Approx;
use super::kernel::{box_weights, fast_floor, kernel_scale, to_sample, Interp};
use super::mode::ModeCounter;
use super::Resampling;
use crate::dtype::Sample;

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

/// Unnormalised kernel weights at `s` and their sum; returns (first tap, sum).
#[inline(always)]
fn raw_weights(kind: Interp, s: f64, scale: f64, buf: &mut [f64]) -> (isize, f64) {
    let r = (buf.len() / 2) as isize;
    let base = fast_floor(s - 0.5);
    let delta = s - 0.5 - base;
    let mut sum = 0.0;
    for (k, w) in buf.iter_mut().enumerate() {
        let i = k as isize - r + 1;
        *w = kind.weight((i as f64 - delta) * scale);
        sum += *w;
    }
    (base as isize - r + 1, sum)
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
                let mut boxes = RowBoxes::default();
                let mut counter = ModeCounter::new();
                for r in 0..h {
                    self.approx.row(0.0, r as f64 + 1.0, &mut bx, &mut by);
                    // Box weights once per row, for every band.
                    boxes.compute((&tx, &ty, &bx, &by), w, self.src_w, self.src_h);
                    for (b, band) in bands.iter().enumerate() {
                        let o = b * plane + r * w;
                        let (d, dv) = (&mut dst[o..o + w], &mut dst_valid[o..o + w]);
                        if self.resampling == Resampling::Average {
                            self.average_row(band, &boxes, d, dv);
                        } else {
                            self.mode_row(band, &boxes, &mut counter, d, dv);
                        }
                    }
                    std::mem::swap(&mut tx, &mut bx);
                    std::mem::swap(&mut ty, &mut by);
                }
            }
            Resampling::Nearest => {
                let (mut sx, mut sy) = (vec![0.0; w], vec![0.0; w]);
                for r in 0..h {
                    self.approx.row(0.5, r as f64 + 0.5, &mut sx, &mut sy);
                    for (b, band) in bands.iter().enumerate() {
                        let o = b * plane + r * w;
                        let (d, dv) = (&mut dst[o..o + w], &mut dst_valid[o..o + w]);
                        self.nearest_row(band, &sx, &sy, d, dv);
                    }
                }
            }
            Resampling::Bilinear | Resampling::Cubic => {
                let kind = if self.resampling == Resampling::Cubic {
                    Interp::Cubic
                } else {
                    Interp::Bilinear
                };
                let mut taps = RowTaps::new(kind, self.scale, w);
                let (mut sx, mut sy) = (vec![0.0; w], vec![0.0; w]);
                for r in 0..h {
                    self.approx.row(0.5, r as f64 + 0.5, &mut sx, &mut sy);
                    taps.compute(&sx, &sy, self.src_w, self.src_h);
                    for (b, band) in bands.iter().enumerate() {
                        let o = b * plane + r * w;
                        let (d, dv) = (&mut dst[o..o + w], &mut dst_valid[o..o + w]);
                        match (taps.nx, taps.ny) {
                            (2, 2) => taps.apply::<T, 2, 2>(band, self.src_h, d, dv),
                            (2, 4) => taps.apply::<T, 2, 4>(band, self.src_h, d, dv),
                            (4, 2) => taps.apply::<T, 4, 2>(band, self.src_h, d, dv),
                            (4, 4) => taps.apply::<T, 4, 4>(band, self.src_h, d, dv),
                            (4, 6) => taps.apply::<T, 4, 6>(band, self.src_h, d, dv),
                            (6, 4) => taps.apply::<T, 6, 4>(band, self.src_h, d, dv),
                            (6, 6) => taps.apply::<T, 6, 6>(band, self.src_h, d, dv),
                            _ => taps.apply_dyn(band, self.src_h, d, dv),
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

    fn average_row<T: Sample>(
        &self,
        band: &Band<'_, T>,
        boxes: &RowBoxes,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        for (c, span) in boxes.spans.iter().enumerate() {
            let Some(Span { fx, fy, xw, yw }) = *span else {
                continue;
            };
            let (wx, wy) = (&boxes.wx[xw.0..xw.1], &boxes.wy[yw.0..yw.1]);
            let (mut num, mut den) = (0.0, 0.0);
            for (ky, &wyk) in wy.iter().enumerate() {
                let off = (fy + ky) * self.src_w + fx;
                let (r, m) = (
                    &band.src[off..off + wx.len()],
                    &band.valid[off..off + wx.len()],
                );
                let (mut rn, mut rd) = (0.0, 0.0);
                for ((&wxk, &v), &ok) in wx.iter().zip(r).zip(m) {
                    let ok = ok != 0;
                    rn += wxk * if ok { v.to_f64() } else { 0.0 };
                    rd += wxk * (ok as u8 as f64);
                }
                num += wyk * rn;
                den += wyk * rd;
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
        boxes: &RowBoxes,
        counter: &mut ModeCounter<T>,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        for (c, span) in boxes.spans.iter().enumerate() {
            let Some(Span { fx, fy, xw, yw }) = *span else {
                continue;
            };
            let nx = xw.1 - xw.0;
            counter.clear();
            for y in fy..fy + (yw.1 - yw.0) {
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

/// Interpolation taps of one target row, computed once and applied to every band.
///
/// Per pixel: the source pixel holding the centre (`usize::MAX` outside the source), the first
/// tap and the raw weights per axis with the product of their sums (for the emptiness
/// threshold), and for GDAL's 4x4 cubic the bilinear fallback's taps.
struct RowTaps {
    kind: Interp,
    scale: (f64, f64),
    nx: usize,
    ny: usize,
    eps: f64,
    centre: Vec<usize>,
    first: Vec<(isize, isize)>,
    wsum: Vec<f64>,
    wx: Vec<f64>,
    wy: Vec<f64>,
    /// Bilinear fallback of the 4x4 cubic: first tap and weights (x0, x1, y0, y1).
    bil: Vec<((isize, isize), [f64; 4])>,
}

impl RowTaps {
    fn new(kind: Interp, scale: (f64, f64), w: usize) -> RowTaps {
        let (nx, ny) = (kind.taps(scale.0), kind.taps(scale.1));
        let four = scale == (1.0, 1.0);
        RowTaps {
            kind,
            scale,
            nx,
            ny,
            eps: if kind == Interp::Bilinear { 1e-5 } else { 1e-6 },
            centre: vec![usize::MAX; w],
            first: vec![(0, 0); w],
            wsum: vec![1.0; w],
            wx: vec![0.0; w * nx],
            wy: vec![0.0; w * ny],
            bil: vec![((0, 0), [0.0; 4]); if kind == Interp::Cubic && four { w } else { 0 }],
        }
    }

    /// Taps for the row whose pixel centres map to source (`sx`, `sy`).
    fn compute(&mut self, sx: &[f64], sy: &[f64], src_w: usize, src_h: usize) {
        let (fw, fh) = (src_w as f64, src_h as f64);
        let (nx, ny) = (self.nx, self.ny);
        for (i, (&x, &y)) in sx.iter().zip(sy).enumerate() {
            // NaN fails the comparisons too.
            if !(x >= 0.0 && x < fw && y >= 0.0 && y < fh) {
                self.centre[i] = usize::MAX;
                continue;
            }
            self.centre[i] = y as usize * src_w + x as usize;
            let (fx, sxw) = raw_weights(self.kind, x, self.scale.0, &mut self.wx[i * nx..][..nx]);
            let (fy, syw) = raw_weights(self.kind, y, self.scale.1, &mut self.wy[i * ny..][..ny]);
            self.first[i] = (fx, fy);
            self.wsum[i] = sxw * syw;
            if !self.bil.is_empty() {
                let (xs, ys) = (x - 0.5, y - 0.5);
                let (bx, by) = (fast_floor(xs), fast_floor(ys));
                let (dx, dy) = (xs - bx, ys - by);
                self.bil[i] = ((bx as isize, by as isize), [1.0 - dx, dx, 1.0 - dy, dy]);
            }
        }
    }

    /// Applies the row's taps to one band (`NX x NY` taps, fixed so the loops unroll).
    fn apply<T: Sample, const NX: usize, const NY: usize>(
        &self,
        band: &Band<'_, T>,
        src_h: usize,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        let (src, valid, src_w) = (band.src, band.valid, band.src_w);
        let cubic4 = !self.bil.is_empty();
        for (i, &ci) in self.centre.iter().enumerate() {
            // Like GDAL: the source pixel holding the centre must be valid.
            if ci == usize::MAX || valid[ci] == 0 {
                continue;
            }
            let (fx, fy) = self.first[i];
            let wx: &[f64; NX] = self.wx[i * NX..][..NX].try_into().unwrap_or(&[0.0; NX]);
            let wy: &[f64; NY] = self.wy[i * NY..][..NY].try_into().unwrap_or(&[0.0; NY]);
            let inside =
                fx >= 0 && fy >= 0 && fx as usize + NX <= src_w && fy as usize + NY <= src_h;
            let v = if cubic4 {
                if inside && all_valid(valid, src_w, src_h, fx, fy, 4) {
                    // Plain 4x4 cubic convolution (weights sum to 1).
                    let o = fy as usize * src_w + fx as usize;
                    let mut acc = 0.0;
                    for (k, &wyk) in wy.iter().enumerate() {
                        let r = &src[o + k * src_w..][..NX];
                        let mut row = 0.0;
                        for (&wxk, &v) in wx.iter().zip(r) {
                            row += wxk * v.to_f64();
                        }
                        acc += wyk * row;
                    }
                    Some(acc)
                } else {
                    let ((bx, by), bw) = self.bil[i];
                    accumulate(src, valid, src_w, src_h, bx, by, &bw[..2], &bw[2..], 1e-5)
                }
            } else if inside {
                let o = fy as usize * src_w + fx as usize;
                let (mut num, mut den) = (0.0, 0.0);
                for (k, &wyk) in wy.iter().enumerate() {
                    let (r, m) = (&src[o + k * src_w..][..NX], &valid[o + k * src_w..][..NX]);
                    let (mut rn, mut rd) = (0.0, 0.0);
                    for kx in 0..NX {
                        let ok = m[kx] != 0;
                        rn += wx[kx] * if ok { r[kx].to_f64() } else { 0.0 };
                        rd += wx[kx] * (ok as u8 as f64);
                    }
                    num += wyk * rn;
                    den += wyk * rd;
                }
                (den > self.eps * self.wsum[i]).then(|| num / den)
            } else {
                accumulate(
                    src,
                    valid,
                    src_w,
                    src_h,
                    fx,
                    fy,
                    wx,
                    wy,
                    self.eps * self.wsum[i],
                )
            };
            if let Some(v) = v {
                dst[i] = to_sample::<T>(v);
                dst_valid[i] = 1;
            }
        }
    }

    /// [`RowTaps::apply`] for unusual tap counts (strong downsampling without an overview).
    fn apply_dyn<T: Sample>(
        &self,
        band: &Band<'_, T>,
        src_h: usize,
        dst: &mut [T],
        dst_valid: &mut [u8],
    ) {
        let (src, valid, src_w) = (band.src, band.valid, band.src_w);
        let (nx, ny) = (self.nx, self.ny);
        for (i, &ci) in self.centre.iter().enumerate() {
            if ci == usize::MAX || valid[ci] == 0 {
                continue;
            }
            let (fx, fy) = self.first[i];
            let (wx, wy) = (&self.wx[i * nx..][..nx], &self.wy[i * ny..][..ny]);
            let eps = self.eps * self.wsum[i];
            if let Some(v) = accumulate(src, valid, src_w, src_h, fx, fy, wx, wy, eps) {
                dst[i] = to_sample::<T>(v);
                dst_valid[i] = 1;
            }
        }
    }
}

/// Source x and y of the corners on the top and bottom edge of one target row.
type Corners<'a> = (&'a [f64], &'a [f64], &'a [f64], &'a [f64]);

/// The source box of one target pixel: first column and row, and the ranges of its x and y
/// weights in [`RowBoxes`]' flat buffers.
#[derive(Debug, Clone, Copy)]
struct Span {
    fx: usize,
    fy: usize,
    xw: (usize, usize),
    yw: (usize, usize),
}

/// Box (average / mode) weights of one target row, computed once and used by every band.
#[derive(Default)]
struct RowBoxes {
    spans: Vec<Option<Span>>,
    wx: Vec<f64>,
    wy: Vec<f64>,
    scratch: Vec<f64>,
}

impl RowBoxes {
    /// Boxes of a `w`-pixel row from its corner rows, GDAL style: each pixel's box spans its
    /// top-left and bottom-right corners, put in order when the transform flips an axis.
    fn compute(&mut self, (tx, ty, bx, by): Corners<'_>, w: usize, src_w: usize, src_h: usize) {
        self.spans.clear();
        self.wx.clear();
        self.wy.clear();
        for c in 0..w {
            let (x0, y0, x1, y1) = (tx[c], ty[c], bx[c + 1], by[c + 1]);
            if !(x0.is_finite() && x1.is_finite() && y0.is_finite() && y1.is_finite()) {
                self.spans.push(None);
                continue;
            }
            let (fx, nx) = box_weights(x0.min(x1), x0.max(x1), src_w, &mut self.scratch);
            let xw = (self.wx.len(), self.wx.len() + nx);
            self.wx.extend_from_slice(&self.scratch);
            let (fy, ny) = box_weights(y0.min(y1), y0.max(y1), src_h, &mut self.scratch);
            let yw = (self.wy.len(), self.wy.len() + ny);
            self.wy.extend_from_slice(&self.scratch);
            self.spans
                .push((nx > 0 && ny > 0).then_some(Span { fx, fy, xw, yw }));
        }
    }
}
