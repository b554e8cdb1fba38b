//! One-dimensional resampling kernels and their tap weights: bilinear (triangle), cubic
//! convolution (Keys, a = -0.5, GDAL's `cubic`) and the area-weighted box of `average`.
//!
//! Coordinates are source pixel coordinates in GDAL's corner convention: pixel `i` spans
//! `[i, i+1)` and its centre is `i + 0.5`. Weights are normalised to sum to 1 over all taps,
//! so a caller that drops invalid or out-of-range taps renormalises by the kept sum, exactly as
//! GDAL does near nodata and raster edges.

use crate::dtype::{DataType, Sample};

/// `T::from_f64(v)` (round half away from zero, saturate, NaN -> 0) without the libm `round`
/// call it costs on the baseline x86-64 target: the integer is built with casts and handed to
/// `T` as little-endian bytes. Floats convert as usual.
#[inline(always)]
pub(crate) fn to_sample<T: Sample>(v: f64) -> T {
    let (lo, hi) = match T::DTYPE {
        DataType::U8 => (0.0, 255.0),
        DataType::I8 => (-128.0, 127.0),
        DataType::U16 => (0.0, 65_535.0),
        DataType::I16 => (-32_768.0, 32_767.0),
        DataType::U32 => (0.0, 4_294_967_295.0),
        DataType::I32 => (-2_147_483_648.0, 2_147_483_647.0),
        DataType::F32 | DataType::F64 => return T::from_f64(v),
    };
    let r = if v.is_nan() { 0.0 } else { v.clamp(lo, hi) };
    let t = r as i64;
    let f = r - t as f64;
    // Branch-free: the fraction is random, a branch would mispredict half the time.
    let i = t + (f >= 0.5) as i64 - (f <= -0.5) as i64;
    let i = i.clamp(lo as i64, hi as i64);
    T::from_le_slice(&i.to_le_bytes()[..T::DTYPE.size()])
}

/// An interpolating kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interp {
    /// Triangle, radius 1.
    Bilinear,
    /// Cubic convolution with a = -0.5, radius 2.
    Cubic,
}

impl Interp {
    /// Support radius in source pixels (before scaling).
    pub(crate) fn radius(self) -> f64 {
        match self {
            Interp::Bilinear => 1.0,
            Interp::Cubic => 2.0,
        }
    }

    /// Kernel value at distance `x`.
    #[inline(always)]
    pub(crate) fn weight(self, x: f64) -> f64 {
        let a = x.abs();
        match self {
            Interp::Bilinear => (1.0 - a).max(0.0),
            Interp::Cubic => {
                if a <= 1.0 {
                    (1.5 * a - 2.5) * a * a + 1.0
                } else if a < 2.0 {
                    ((-0.5 * a + 2.5) * a - 4.0) * a + 2.0
                } else {
                    0.0
                }
            }
        }
    }

    /// Taps per axis for a kernel scale (`scale` <= 1 widens the kernel when downsampling).
    pub(crate) fn taps(self, scale: f64) -> usize {
        2 * (self.radius() / scale).ceil() as usize
    }
}

/// GDAL's kernel scale from the source-pixels-per-destination-pixel ratio: 1 when not
/// downsampling, else `1 / ratio`, snapped to `1 / n` when `ratio` is within 0.05 of an integer.
pub(crate) fn kernel_scale(src_per_dst: f64) -> f64 {
    if !(src_per_dst.is_finite()) || src_per_dst <= 1.0 {
        return 1.0;
    }
    let n = src_per_dst.round();
    if (src_per_dst - n).abs() < 0.05 {
        1.0 / n
    } else {
        1.0 / src_per_dst
    }
}

/// `x.floor()` without a libm call (the baseline x86-64 target has no `roundsd`), for finite
/// `|x| < 2^62`; callers range-check coordinates first.
#[inline(always)]
pub(crate) fn fast_floor(x: f64) -> f64 {
    let t = x as i64 as f64;
    if t > x {
        t - 1.0
    } else {
        t
    }
}

/// Weights of an interpolating kernel centred at source coordinate `s` (corner convention).
/// Fills `buf` (of length `kind.taps(scale)`) with weights summing to 1 and returns the source
/// index of the first tap.
#[inline(always)]
pub(crate) fn interp_weights(kind: Interp, s: f64, scale: f64, buf: &mut [f64]) -> isize {
    let n = buf.len();
    let r = (n / 2) as isize;
    let base = fast_floor(s - 0.5);
    let delta = s - 0.5 - base;
    let mut sum = 0.0;
    for (k, w) in buf.iter_mut().enumerate() {
        let i = k as isize - r + 1;
        *w = kind.weight((i as f64 - delta) * scale);
        sum += *w;
    }
    if sum != 0.0 && sum != 1.0 {
        let inv = 1.0 / sum;
        buf.iter_mut().for_each(|w| *w *= inv);
    }
    base as isize - r + 1
}

/// Area weights of the box `[lo, hi)` over source pixels `0..len` (GDAL `average`): the
/// covered pixels are `floor(lo)..ceil(hi)` (with a 1e-10 tolerance, clipped to the raster);
/// each weighs the length of its overlap with the box. Returns `(first, n)`; `n == 0` when the
/// box misses the raster.
pub(crate) fn box_weights(lo: f64, hi: f64, len: usize, buf: &mut Vec<f64>) -> (usize, usize) {
    buf.clear();
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if !(lo.is_finite() && hi.is_finite()) {
        return (0, 0);
    }
    let first = (lo + 1e-10).floor().max(0.0);
    let mut last = (hi - 1e-10).ceil().min(len as f64);
    if first >= len as f64 || last <= 0.0 {
        return (0, 0);
    }
    if first >= last {
        last = first + 1.0; // box thinner than the tolerance: take the pixel it is in
    }
    let (first, last) = (first as usize, last as usize);
    for i in first..last {
        let a = (i as f64).max(lo);
        let b = ((i + 1) as f64).min(hi);
        buf.push((b - a).max(0.0));
    }
    if buf.iter().all(|&w| w == 0.0) {
        buf.iter_mut().for_each(|w| *w = 1.0);
    }
    (first, last - first)
}

/// Per-output-position tap lists along one axis, clipped to the source raster: taps of
/// position `o` are source indices `start[o] .. start[o] + count[o]` with weights
/// `w[o * stride ..][..count[o]]`; the rest of each stride is zero, so a loop may run over the
/// whole stride when the source row is padded with `stride` zeros on the right.
#[derive(Debug, Clone)]
pub(crate) struct TapTable {
    pub(crate) start: Vec<usize>,
    pub(crate) count: Vec<usize>,
    pub(crate) stride: usize,
    pub(crate) w: Vec<f64>,
}

impl TapTable {
    /// Interpolating-kernel taps at source coordinates `centres` (one per output position).
    pub(crate) fn interp(kind: Interp, centres: &[f64], scale: f64, len: usize) -> TapTable {
        let stride = kind.taps(scale);
        let mut t = TapTable::empty(centres.len(), stride);
        let mut buf = vec![0.0; stride];
        for (o, &s) in centres.iter().enumerate() {
            if !s.is_finite() {
                continue;
            }
            let first = interp_weights(kind, s, scale, &mut buf);
            t.set(o, first, &buf, len);
        }
        t
    }

    /// Area-weighted box taps for output cells whose edges map to `edges` (one more than the
    /// number of output positions).
    pub(crate) fn boxes(edges: &[f64], len: usize) -> TapTable {
        let n = edges.len().saturating_sub(1);
        let mut spans = Vec::with_capacity(n);
        let mut buf = Vec::new();
        let mut stride = 1;
        for o in 0..n {
            let (first, cnt) = box_weights(edges[o], edges[o + 1], len, &mut buf);
            stride = stride.max(cnt);
            spans.push((first, buf.clone()));
        }
        let mut t = TapTable::empty(n, stride);
        for (o, (first, w)) in spans.into_iter().enumerate() {
            t.start[o] = first;
            t.count[o] = w.len();
            t.w[o * stride..o * stride + w.len()].copy_from_slice(&w);
        }
        t
    }

    fn empty(n: usize, stride: usize) -> TapTable {
        TapTable {
            start: vec![0; n],
            count: vec![0; n],
            stride,
            w: vec![0.0; n * stride],
        }
    }

    /// Stores taps `first..first+buf.len()`, dropping those outside `0..len`.
    fn set(&mut self, o: usize, first: isize, buf: &[f64], len: usize) {
        let lo = first.max(0);
        let hi = (first + buf.len() as isize).min(len as isize);
        if hi <= lo {
            return;
        }
        let skip = (lo - first) as usize;
        let cnt = (hi - lo) as usize;
        self.start[o] = lo as usize;
        self.count[o] = cnt;
        self.w[o * self.stride..o * self.stride + cnt].copy_from_slice(&buf[skip..skip + cnt]);
    }

    /// All `stride` weights of output position `o` (zero past its count) and its first index.
    #[inline(always)]
    pub(crate) fn get_padded(&self, o: usize) -> (usize, &[f64]) {
        let s = o * self.stride;
        (self.start[o], &self.w[s..s + self.stride])
    }

    /// Taps of output position `o`: first source index and weights.
    #[inline(always)]
    pub(crate) fn get(&self, o: usize) -> (usize, &[f64]) {
        let s = o * self.stride;
        (self.start[o], &self.w[s..s + self.count[o]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_conversion_matches_sample_from_f64() {
        let mut vals = vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e300];
        for i in -70_000i64..70_000 {
            let v = i as f64 / 4.0;
            vals.extend([v, v + 1e-9, v - 1e-9, v * 65_537.0]);
        }
        fn check<T: Sample>(vals: &[f64]) {
            for &v in vals {
                assert_eq!(to_sample::<T>(v), T::from_f64(v), "{v} as {}", T::DTYPE);
            }
        }
        check::<u8>(&vals);
        check::<i8>(&vals);
        check::<u16>(&vals);
        check::<i16>(&vals);
        check::<u32>(&vals);
        check::<i32>(&vals);
        check::<f32>(&vals[5..]);
        check::<f64>(&vals[5..]);
    }

    #[test]
    fn cubic_is_interpolating_and_partition_of_unity() {
        let k = Interp::Cubic;
        assert_eq!(k.weight(0.0), 1.0);
        assert_eq!(k.weight(1.0), 0.0);
        assert_eq!(k.weight(2.0), 0.0);
        assert!((k.weight(0.5) - 0.5625).abs() < 1e-12);
        assert!((k.weight(1.5) + 0.0625).abs() < 1e-12);
        let mut buf = [0.0; 4];
        for d in [0.0, 0.1, 0.37, 0.5, 0.99] {
            let first = interp_weights(k, 10.5 + d, 1.0, &mut buf);
            assert_eq!(first, 9);
            assert!((buf.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn bilinear_weights_at_pixel_centres_and_between() {
        let mut buf = [0.0; 2];
        // Exactly on the centre of pixel 3: all weight on pixel 3.
        let first = interp_weights(Interp::Bilinear, 3.5, 1.0, &mut buf);
        assert_eq!((first, buf), (3, [1.0, 0.0]));
        // A quarter of the way from centre 3 to centre 4.
        let first = interp_weights(Interp::Bilinear, 3.75, 1.0, &mut buf);
        assert_eq!((first, buf), (3, [0.75, 0.25]));
    }

    #[test]
    fn downsampling_widens_the_kernel() {
        assert_eq!(kernel_scale(0.3), 1.0);
        assert_eq!(kernel_scale(2.02), 0.5);
        assert!((kernel_scale(2.5) - 0.4).abs() < 1e-12);
        assert_eq!(Interp::Bilinear.taps(0.5), 4);
        assert_eq!(Interp::Cubic.taps(0.5), 8);
        let mut buf = [0.0; 4];
        // 2x downsampling, output centre at source 10.0: taps 8..12, triangle of radius 2.
        let first = interp_weights(Interp::Bilinear, 10.0, 0.5, &mut buf);
        assert_eq!(first, 8);
        let expect = [0.125, 0.375, 0.375, 0.125];
        assert!(
            buf.iter().zip(expect).all(|(a, b)| (a - b).abs() < 1e-12),
            "{buf:?}"
        );
    }

    #[test]
    fn box_weights_are_overlaps() {
        let mut buf = Vec::new();
        assert_eq!(box_weights(2.5, 5.0, 10, &mut buf), (2, 3));
        assert_eq!(buf, [0.5, 1.0, 1.0]);
        assert_eq!(box_weights(-1.0, 1.5, 10, &mut buf), (0, 2));
        assert_eq!(buf, [1.0, 0.5]);
        assert_eq!(box_weights(11.0, 12.0, 10, &mut buf), (0, 0));
        // Exact pixel boundaries do not pull in neighbours.
        assert_eq!(box_weights(3.0, 6.0, 10, &mut buf), (3, 3));
        assert_eq!(buf, [1.0; 3]);
    }

    #[test]
    fn tap_table_clips_to_raster() {
        let t = TapTable::interp(Interp::Cubic, &[0.5, 5.25, 9.9], 1.0, 10);
        let (s, w) = t.get(0);
        assert_eq!((s, w.len()), (0, 3)); // tap -1 dropped
        let (s, w) = t.get(1);
        assert_eq!((s, w.len()), (3, 4));
        let (s, w) = t.get(2);
        assert_eq!((s, w.len()), (8, 2));
        let b = TapTable::boxes(&[0.0, 2.5, 5.0], 10);
        assert_eq!(b.get(0), (0, &[1.0, 1.0, 0.5][..]));
        assert_eq!(b.get(1), (2, &[0.5, 1.0, 1.0][..]));
    }
}
