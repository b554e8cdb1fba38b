//! Source pixel validity: nodata value, NaN and an optional per-pixel mask folded into one
//! byte per pixel (1 = valid), computed once per band before any kernel runs.

use crate::dtype::Sample;
use ndarray::ArrayView2;

/// How a band marks its invalid samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodataTest<T> {
    /// Nodata in the sample type, when representable in it.
    value: Option<T>,
    /// Treat NaN as invalid (float types: always; NaN never compares equal to itself).
    nan: bool,
}

impl<T: Sample> NodataTest<T> {
    /// The test for a nodata value given as `f64` (as in GDAL); a value the type cannot hold
    /// (e.g. -1 for `u16`) matches no sample.
    pub(crate) fn new(nodata: Option<f64>) -> Self {
        let value = nodata.and_then(|nd| {
            let t = T::from_f64(nd);
            (t.to_f64() == nd).then_some(t)
        });
        NodataTest {
            value,
            nan: T::DTYPE.is_float(),
        }
    }

    /// True when `v` is a valid sample.
    #[inline(always)]
    pub(crate) fn valid(&self, v: T) -> bool {
        #[allow(clippy::eq_op)] // `v == v` is false exactly for NaN
        let not_nan = !self.nan || v == v;
        not_nan && self.value.is_none_or(|nd| v != nd)
    }
}

/// Validity of one band, row-major, 1 = valid, 0 = nodata / NaN / masked.
pub(crate) fn band_validity<T: Sample>(
    band: ArrayView2<'_, T>,
    test: NodataTest<T>,
    mask: Option<ArrayView2<'_, u8>>,
) -> Vec<u8> {
    let (h, w) = band.dim();
    let mut out = vec![0u8; h * w];
    for (y, out_row) in out.chunks_exact_mut(w.max(1)).enumerate().take(h) {
        let row = band.row(y);
        match row.as_slice() {
            Some(s) => {
                for (o, &v) in out_row.iter_mut().zip(s) {
                    *o = test.valid(v) as u8;
                }
            }
            None => {
                for (o, &v) in out_row.iter_mut().zip(row.iter()) {
                    *o = test.valid(v) as u8;
                }
            }
        }
        if let Some(m) = mask {
            for (o, &mv) in out_row.iter_mut().zip(m.row(y).iter()) {
                *o &= (mv != 0) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn nodata_nan_and_mask_combine() {
        let b = array![[0u16, 5, 7], [9, 0, 3]];
        let m = array![[255u8, 255, 0], [255, 255, 255]];
        let v = band_validity(b.view(), NodataTest::new(Some(0.0)), Some(m.view()));
        assert_eq!(v, [0, 1, 0, 1, 0, 1]);
        let f = array![[f32::NAN, 1.0], [-9999.0, 2.0]];
        let v = band_validity(f.view(), NodataTest::new(Some(-9999.0)), None);
        assert_eq!(v, [0, 1, 0, 1]);
        let v = band_validity(f.view(), NodataTest::new(Some(f64::NAN)), None);
        assert_eq!(v, [0, 1, 1, 1]);
        // Unrepresentable nodata matches nothing.
        let v = band_validity(b.view(), NodataTest::new(Some(-1.0)), None);
        assert_eq!(v, [1; 6]);
    }
}
