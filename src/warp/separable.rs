//! Fast path 2: same CRS, both grids north-up, other resolution or a sub-pixel offset.
//!
//! Source x depends only on the target column and source y only on the target row, so every
//! kernel is separable: tap tables are built once per axis, a horizontal pass filters each
//! needed source row into target columns, and a vertical pass combines rows, both over
//! contiguous slices. Validity is carried through the same passes (sum of valid weights), which
//! renormalises bilinear/cubic/average weights over valid source pixels exactly like GDAL's
//! two-dimensional formula.

use super::kernel::{kernel_scale, to_sample, Interp, TapTable};
use super::mode::ModeCounter;
use super::Resampling;
use crate::dtype::Sample;
use crate::geo::GeoTransform;
use ndarray::ArrayView2;

/// Source coordinates of target pixel centres and edges along both axes.
#[derive(Debug, Clone)]
pub(crate) struct AxisMaps {
    pub(crate) x_centres: Vec<f64>,
    pub(crate) y_centres: Vec<f64>,
    pub(crate) x_edges: Vec<f64>,
    pub(crate) y_edges: Vec<f64>,
}

impl AxisMaps {
    /// Maps for two north-up transforms in the same CRS.
    pub(crate) fn new(src: &GeoTransform, dst: &GeoTransform, w: usize, h: usize) -> AxisMaps {
        let fx = |c: f64| (dst.origin_x + c * dst.pixel_width - src.origin_x) / src.pixel_width;
        let fy = |r: f64| (dst.origin_y + r * dst.pixel_height - src.origin_y) / src.pixel_height;
        AxisMaps {
            x_centres: (0..w).map(|c| fx(c as f64 + 0.5)).collect(),
            y_centres: (0..h).map(|r| fy(r as f64 + 0.5)).collect(),
            x_edges: (0..=w).map(|c| fx(c as f64)).collect(),
            y_edges: (0..=h).map(|r| fy(r as f64)).collect(),
        }
    }

    /// Source pixels per target pixel along x and y.
    fn ratios(&self, src: &GeoTransform, dst: &GeoTransform) -> (f64, f64) {
        (
            (dst.pixel_width / src.pixel_width).abs(),
            (dst.pixel_height / src.pixel_height).abs(),
        )
    }
}

/// Per-axis plan of one separable warp, shared by all bands.
pub(crate) enum Plan {
    /// Source index per target column / row (`usize::MAX` = outside the source).
    Nearest { xi: Vec<usize>, yi: Vec<usize> },
    /// Weighted taps (bilinear, widened cubic, average).
    Weighted(Weights),
    /// GDAL's 4x4 cubic (not downsampling): cubic where all 16 taps are inside the source and
    /// valid, bilinear (renormalised) elsewhere.
    Cubic4 {
        /// The 4x4 cubic taps.
        cubic: Box<Weights>,
        /// The fallback.
        bilinear: Box<Weights>,
    },
    /// Box taps; the value is the most frequent valid sample.
    Mode { xt: TapTable, yt: TapTable },
}

/// Per-axis weighted taps and the validity rules that go with them.
pub(crate) struct Weights {
    xt: TapTable,
    yt: TapTable,
    /// For interpolating kernels, the source pixel containing each target centre per axis
    /// (`usize::MAX` outside the source): like GDAL, a target pixel is only valid when that
    /// pixel is, so interpolation never extends a valid region outwards.
    centre: Option<(Vec<usize>, Vec<usize>)>,
    /// Smallest valid-weight sum that gives a value.
    eps: f64,
}

impl Plan {
    /// Builds the plan for a `src_w x src_h` source.
    pub(crate) fn new(
        resampling: Resampling,
        maps: &AxisMaps,
        src: &GeoTransform,
        dst: &GeoTransform,
        src_w: usize,
        src_h: usize,
    ) -> Plan {
        let idx = |s: f64, len: usize| {
            if s >= 0.0 && s < len as f64 {
                s as usize
            } else {
                usize::MAX
            }
        };
        match resampling {
            Resampling::Nearest => Plan::Nearest {
                xi: maps.x_centres.iter().map(|&s| idx(s, src_w)).collect(),
                yi: maps.y_centres.iter().map(|&s| idx(s, src_h)).collect(),
            },
            Resampling::Bilinear | Resampling::Cubic => {
                let (rx, ry) = maps.ratios(src, dst);
                let (scx, scy) = (kernel_scale(rx), kernel_scale(ry));
                let interp = |kind: Interp| Weights {
                    xt: TapTable::interp(kind, &maps.x_centres, scx, src_w),
                    yt: TapTable::interp(kind, &maps.y_centres, scy, src_h),
                    centre: Some((
                        maps.x_centres.iter().map(|&s| idx(s, src_w)).collect(),
                        maps.y_centres.iter().map(|&s| idx(s, src_h)).collect(),
                    )),
                    eps: if kind == Interp::Bilinear { 1e-5 } else { 1e-6 },
                };
                match resampling {
                    Resampling::Bilinear => Plan::Weighted(interp(Interp::Bilinear)),
                    _ if scx == 1.0 && scy == 1.0 => Plan::Cubic4 {
                        cubic: Box::new(interp(Interp::Cubic)),
                        bilinear: Box::new(interp(Interp::Bilinear)),
                    },
                    _ => Plan::Weighted(interp(Interp::Cubic)),
                }
            }
            Resampling::Average => Plan::Weighted(Weights {
                xt: TapTable::boxes(&maps.x_edges, src_w),
                yt: TapTable::boxes(&maps.y_edges, src_h),
                centre: None,
                eps: 1e-12,
            }),
            Resampling::Mode => Plan::Mode {
                xt: TapTable::boxes(&maps.x_edges, src_w),
                yt: TapTable::boxes(&maps.y_edges, src_h),
            },
        }
    }

    /// Warps one band into `dst` (`dst_w` wide, arriving filled with the fill value, which
    /// untouched pixels keep), writing validity into `dst_valid` (arriving all zero).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run<T: Sample>(
        &self,
        band: ArrayView2<'_, T>,
        valid: &[u8],
        dst: &mut [T],
        dst_valid: &mut [u8],
        dst_w: usize,
    ) {
        match self {
            Plan::Nearest { xi, yi } => nearest(band, valid, xi, yi, dst, dst_valid, dst_w),
            Plan::Weighted(wts) => weighted(band, valid, wts, None, dst, dst_valid, dst_w),
            Plan::Cubic4 { cubic, bilinear } => {
                // Cubic where all 16 taps are inside and valid (nearly everywhere), then
                // bilinear, pixel by pixel, for the rest.
                weighted(band, valid, cubic, Some(16.0), dst, dst_valid, dst_w);
                bilinear_rest(band, valid, bilinear, dst, dst_valid, dst_w);
            }
            Plan::Mode { xt, yt } => mode(band, valid, xt, yt, dst, dst_valid, dst_w),
        }
    }
}

/// Row `y` of a band as a slice (bands are standard layout, checked by the caller).
#[inline]
fn row<'a, T: Sample>(band: &ArrayView2<'a, T>, y: usize) -> &'a [T] {
    let w = band.ncols();
    // `band` is in standard layout (the warp entry point makes it so), so this slice exists.
    let all = band.to_slice().unwrap_or(&[]);
    &all[y * w..(y + 1) * w]
}

fn nearest<T: Sample>(
    band: ArrayView2<'_, T>,
    valid: &[u8],
    xi: &[usize],
    yi: &[usize],
    dst: &mut [T],
    dst_valid: &mut [u8],
    dst_w: usize,
) {
    let w = band.ncols();
    for (r, &sy) in yi.iter().enumerate() {
        if sy == usize::MAX {
            continue;
        }
        let src = row(&band, sy);
        let sv = &valid[sy * w..(sy + 1) * w];
        let d = &mut dst[r * dst_w..(r + 1) * dst_w];
        let dv = &mut dst_valid[r * dst_w..(r + 1) * dst_w];
        for ((o, ov), &sx) in d.iter_mut().zip(dv.iter_mut()).zip(xi) {
            if sx != usize::MAX && sv[sx] != 0 {
                *o = src[sx];
                *ov = 1;
            }
        }
    }
}

/// Separable weighted kernel. With `only_full = Some(n)`, writes (and marks valid) only target
/// pixels whose taps are all inside the source and valid (`n` of them), leaving the others.
fn weighted<T: Sample>(
    band: ArrayView2<'_, T>,
    valid: &[u8],
    wts: &Weights,
    only_full: Option<f64>,
    dst: &mut [T],
    dst_valid: &mut [u8],
    dst_w: usize,
) {
    let w = band.ncols();
    let (xt, yt, centre, eps) = (&wts.xt, &wts.yt, wts.centre.as_ref(), wts.eps);
    let dst_h = yt.start.len();
    // Source row holding the centre of target row r, when it matters.
    let centre_row = |r: usize| centre.map(|(_, yi)| yi[r]);
    // Horizontal results of the last `k` source rows, in a ring keyed by source row: target
    // rows move down the source, so each source row is filtered once and the working set
    // stays in cache. Row buffers are padded on the right so every column runs over the full
    // (fixed) stride.
    let k = yt.stride.max(1);
    let stride = xt.stride;
    let mut tag = vec![usize::MAX; k];
    let mut hnum = vec![0.0f64; k * dst_w];
    let mut hden = vec![0.0f64; k * dst_w];
    // Valid taps per (row, column), for `only_full`.
    let mut hcnt = vec![0.0f64; if only_full.is_some() { k * dst_w } else { 0 }];
    let mut vz = vec![0.0f64; w + stride];
    let mut vm = vec![0.0f64; w + stride];
    let full = only_full.is_some();
    // For rows without any invalid pixel (the common case) the valid weight of a column is
    // just the sum of its taps, and its valid-tap count is its tap count.
    let xsum: Vec<f64> = (0..dst_w).map(|c| xt.get(c).1.iter().sum()).collect();
    let xcount: Vec<f64> = (0..dst_w).map(|c| xt.get(c).1.len() as f64).collect();
    let mut filter_row = |y: usize, hn: &mut [f64], hd: &mut [f64], hc: &mut [f64]| {
        let src = row(&band, y);
        let sv = &valid[y * w..(y + 1) * w];
        if !sv.contains(&0) {
            for (z, &v) in vz.iter_mut().zip(src) {
                *z = v.to_f64();
            }
            match stride {
                2 => hpass_num::<2>(xt, &vz, hn),
                4 => hpass_num::<4>(xt, &vz, hn),
                _ => hpass_num_dyn(xt, &vz, hn),
            }
            hd.copy_from_slice(&xsum);
            if full {
                hc.copy_from_slice(&xcount);
            }
            return;
        }
        for ((z, m), (&v, &ok)) in vz.iter_mut().zip(vm.iter_mut()).zip(src.iter().zip(sv)) {
            *z = if ok != 0 { v.to_f64() } else { 0.0 };
            *m = ok as f64;
        }
        match stride {
            2 => hpass::<2>(xt, &vz, &vm, hn, hd),
            4 => hpass::<4>(xt, &vz, &vm, hn, hd),
            _ => hpass_dyn(xt, &vz, &vm, hn, hd),
        }
        if full {
            for (c, o) in hc.iter_mut().enumerate() {
                let (s, wts) = xt.get(c);
                *o = vm[s..s + wts.len()].iter().sum();
            }
        }
    };
    // Vertical pass over contiguous target rows.
    let mut num = vec![0.0f64; dst_w];
    let mut den = vec![0.0f64; dst_w];
    let mut cnt = vec![0.0f64; if only_full.is_some() { dst_w } else { 0 }];
    for r in 0..dst_h {
        let (s, wts) = yt.get(r);
        let cy = centre_row(r);
        if wts.is_empty() || cy == Some(usize::MAX) {
            continue;
        }
        for y in s..s + wts.len() {
            let slot = y % k;
            if tag[slot] != y {
                let hc = if full {
                    &mut hcnt[slot * dst_w..][..dst_w]
                } else {
                    &mut []
                };
                filter_row(
                    y,
                    &mut hnum[slot * dst_w..][..dst_w],
                    &mut hden[slot * dst_w..][..dst_w],
                    hc,
                );
                tag[slot] = y;
            }
        }
        num.fill(0.0);
        den.fill(0.0);
        for (j, &wk) in wts.iter().enumerate() {
            let off = ((s + j) % k) * dst_w;
            let hn = &hnum[off..off + dst_w];
            let hd = &hden[off..off + dst_w];
            for ((n, d), (&a, &b)) in num.iter_mut().zip(den.iter_mut()).zip(hn.iter().zip(hd)) {
                *n += wk * a;
                *d += wk * b;
            }
        }
        if let Some(full) = only_full {
            cnt.fill(0.0);
            for j in 0..wts.len() {
                let hc = &hcnt[((s + j) % k) * dst_w..][..dst_w];
                cnt.iter_mut().zip(hc).for_each(|(a, b)| *a += b);
            }
            let d = &mut dst[r * dst_w..(r + 1) * dst_w];
            let dv = &mut dst_valid[r * dst_w..(r + 1) * dst_w];
            for c in 0..dst_w {
                if cnt[c] == full {
                    d[c] = to_sample::<T>(num[c] / den[c]);
                    dv[c] = 1;
                }
            }
            continue;
        }
        let d = &mut dst[r * dst_w..(r + 1) * dst_w];
        let dv = &mut dst_valid[r * dst_w..(r + 1) * dst_w];
        match (centre, cy) {
            (Some((xi, _)), Some(sy)) => {
                let sv = &valid[sy * w..(sy + 1) * w];
                for (c, &sx) in xi.iter().enumerate().take(dst_w) {
                    if den[c] > eps && sx != usize::MAX && sv[sx] != 0 {
                        d[c] = to_sample::<T>(num[c] / den[c]);
                        dv[c] = 1;
                    }
                }
            }
            _ => {
                for (((o, ov), &n), &dn) in d.iter_mut().zip(dv.iter_mut()).zip(&num).zip(&den) {
                    if dn > eps {
                        *o = to_sample::<T>(n / dn);
                        *ov = 1;
                    }
                }
            }
        }
    }
}

/// Bilinear (renormalised over valid taps) for the target pixels not yet valid whose centre
/// lies in a valid source pixel: the fallback of GDAL's 4x4 cubic.
fn bilinear_rest<T: Sample>(
    band: ArrayView2<'_, T>,
    valid: &[u8],
    bil: &Weights,
    dst: &mut [T],
    dst_valid: &mut [u8],
    dst_w: usize,
) {
    let w = band.ncols();
    let Some((xi, yi)) = bil.centre.as_ref() else {
        return;
    };
    for (r, &sy) in yi.iter().enumerate() {
        if sy == usize::MAX {
            continue;
        }
        let (y0, wy) = bil.yt.get(r);
        let d = &mut dst[r * dst_w..(r + 1) * dst_w];
        let dv = &mut dst_valid[r * dst_w..(r + 1) * dst_w];
        for (c, &sx) in xi.iter().enumerate().take(dst_w) {
            if dv[c] != 0 || sx == usize::MAX || valid[sy * w + sx] == 0 {
                continue;
            }
            let (x0, wx) = bil.xt.get(c);
            let (mut num, mut den) = (0.0, 0.0);
            for (j, &wyj) in wy.iter().enumerate() {
                let src = row(&band, y0 + j);
                let sv = &valid[(y0 + j) * w..(y0 + j + 1) * w];
                for (i, &wxi) in wx.iter().enumerate() {
                    if sv[x0 + i] != 0 {
                        num += wyj * wxi * src[x0 + i].to_f64();
                        den += wyj * wxi;
                    }
                }
            }
            if den > bil.eps {
                d[c] = to_sample::<T>(num / den);
                dv[c] = 1;
            }
        }
    }
}

/// Horizontal filter of one padded source row with a fixed number of taps `S`.
#[inline]
fn hpass<const S: usize>(xt: &TapTable, vz: &[f64], vm: &[f64], hn: &mut [f64], hd: &mut [f64]) {
    for (c, (n, d)) in hn.iter_mut().zip(hd.iter_mut()).enumerate() {
        let (s, wts) = xt.get_padded(c);
        let wts: &[f64; S] = wts.try_into().unwrap_or(&[0.0; S]);
        let z: &[f64; S] = vz[s..s + S].try_into().unwrap_or(&[0.0; S]);
        let m: &[f64; S] = vm[s..s + S].try_into().unwrap_or(&[0.0; S]);
        let (mut a, mut b) = (0.0, 0.0);
        for k in 0..S {
            a += wts[k] * z[k];
            b += wts[k] * m[k];
        }
        *n = a;
        *d = b;
    }
}

/// [`hpass`] for a row without invalid pixels: values only.
#[inline]
fn hpass_num<const S: usize>(xt: &TapTable, vz: &[f64], hn: &mut [f64]) {
    for (c, n) in hn.iter_mut().enumerate() {
        let (s, wts) = xt.get_padded(c);
        let wts: &[f64; S] = wts.try_into().unwrap_or(&[0.0; S]);
        let z: &[f64; S] = vz[s..s + S].try_into().unwrap_or(&[0.0; S]);
        let mut a = 0.0;
        for k in 0..S {
            a += wts[k] * z[k];
        }
        *n = a;
    }
}

/// [`hpass_num`] for any stride.
fn hpass_num_dyn(xt: &TapTable, vz: &[f64], hn: &mut [f64]) {
    for (c, n) in hn.iter_mut().enumerate() {
        let (s, wts) = xt.get_padded(c);
        *n = wts
            .iter()
            .zip(&vz[s..s + wts.len()])
            .map(|(a, b)| a * b)
            .sum();
    }
}

/// [`hpass`] for any stride (widened kernels, average boxes).
fn hpass_dyn(xt: &TapTable, vz: &[f64], vm: &[f64], hn: &mut [f64], hd: &mut [f64]) {
    for (c, (n, d)) in hn.iter_mut().zip(hd.iter_mut()).enumerate() {
        let (s, wts) = xt.get_padded(c);
        let (mut a, mut b) = (0.0, 0.0);
        for (k, &wk) in wts.iter().enumerate() {
            a += wk * vz[s + k];
            b += wk * vm[s + k];
        }
        *n = a;
        *d = b;
    }
}

fn mode<T: Sample>(
    band: ArrayView2<'_, T>,
    valid: &[u8],
    xt: &TapTable,
    yt: &TapTable,
    dst: &mut [T],
    dst_valid: &mut [u8],
    dst_w: usize,
) {
    let w = band.ncols();
    let mut counter = ModeCounter::new();
    for r in 0..yt.start.len() {
        let (ys, ywts) = yt.get(r);
        for c in 0..dst_w {
            let (xs, xwts) = xt.get(c);
            counter.clear();
            for y in ys..ys + ywts.len() {
                let src = &row(&band, y)[xs..xs + xwts.len()];
                let sv = &valid[y * w + xs..][..xwts.len()];
                for (&v, &ok) in src.iter().zip(sv) {
                    if ok != 0 {
                        counter.add(v);
                    }
                }
            }
            if let Some(m) = counter.mode() {
                dst[r * dst_w + c] = m;
                dst_valid[r * dst_w + c] = 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn run(
        resampling: Resampling,
        src: &Array2<u16>,
        valid: &[u8],
        sgt: GeoTransform,
        dgt: GeoTransform,
        w: usize,
        h: usize,
    ) -> (Vec<u16>, Vec<u8>) {
        let maps = AxisMaps::new(&sgt, &dgt, w, h);
        let plan = Plan::new(resampling, &maps, &sgt, &dgt, src.ncols(), src.nrows());
        let mut out = vec![0u16; w * h];
        let mut ov = vec![0u8; w * h];
        plan.run(src.view(), valid, &mut out, &mut ov, w);
        (out, ov)
    }

    #[test]
    fn average_2x_is_block_mean_ignoring_nodata() {
        let src = Array2::from_shape_vec((2, 4), vec![1u16, 3, 10, 0, 5, 7, 20, 0]).unwrap();
        let valid: Vec<u8> = src.iter().map(|&v| (v != 0) as u8).collect();
        let sgt = GeoTransform::north_up(0.0, 0.0, 1.0, 1.0);
        let dgt = GeoTransform::north_up(0.0, 0.0, 2.0, 2.0);
        let (out, ov) = run(Resampling::Average, &src, &valid, sgt, dgt, 2, 1);
        assert_eq!(out, [4, 15]);
        assert_eq!(ov, [1, 1]);
        let (out, _) = run(Resampling::Mode, &src, &valid, sgt, dgt, 2, 1);
        assert_eq!(out, [1, 10]);
    }

    #[test]
    fn bilinear_half_pixel_shift_and_edge_renormalisation() {
        let src = Array2::from_shape_vec((1, 4), vec![10u16, 20, 30, 0]).unwrap();
        let valid: Vec<u8> = src.iter().map(|&v| (v != 0) as u8).collect();
        let sgt = GeoTransform::north_up(0.0, 0.0, 1.0, 1.0);
        let dgt = GeoTransform::north_up(0.5, 0.0, 1.0, 1.0);
        let (out, ov) = run(Resampling::Bilinear, &src, &valid, sgt, dgt, 4, 1);
        // Centres at 1.0, 2.0 (between pixels), 3.0 (in nodata pixel 3: invalid, as in GDAL,
        // although pixel 2 could give a value), 4.0 (outside).
        assert_eq!(out, [15, 25, 0, 0]);
        assert_eq!(ov, [1, 1, 0, 0]);
        // Centre 2.75 lies in valid pixel 2; nodata pixel 3 gets no weight.
        let dgt = GeoTransform::north_up(2.25, 0.0, 1.0, 1.0);
        let (out, ov) = run(Resampling::Bilinear, &src, &valid, sgt, dgt, 1, 1);
        assert_eq!((out[0], ov[0]), (30, 1));
    }

    #[test]
    fn nearest_upsampling() {
        let src = Array2::from_shape_vec((2, 2), vec![1u16, 2, 3, 4]).unwrap();
        let valid = vec![1u8; 4];
        let sgt = GeoTransform::north_up(0.0, 0.0, 2.0, 2.0);
        let dgt = GeoTransform::north_up(0.0, 0.0, 1.0, 1.0);
        let (out, _) = run(Resampling::Nearest, &src, &valid, sgt, dgt, 4, 4);
        assert_eq!(out, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    }
}
