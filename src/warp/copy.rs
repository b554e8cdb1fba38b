//! Fast path 1: the target grid has the source's CRS and pixel size and sits an integer number
//! of pixels away, so every target pixel *is* a source pixel: rows are copied, bit-exact, with
//! no kernel (every kernel gives the same result on an aligned grid).

use super::validity::NodataTest;
use crate::dtype::Sample;
use crate::geo::GeoTransform;
use ndarray::{s, ArrayView2};

/// Relative tolerance on pixel sizes and offsets (in pixels) for grids to count as aligned.
const ALIGN_TOL: f64 = 1e-6;

/// Offset `(col, row)` of the target's first pixel in the source raster, when the two north-up
/// grids share pixel size and are aligned to a whole pixel.
pub(crate) fn aligned_offset(src: &GeoTransform, dst: &GeoTransform) -> Option<(i64, i64)> {
    if !(src.is_north_up() && dst.is_north_up()) {
        return None;
    }
    let same = |a: f64, b: f64| (a - b).abs() <= ALIGN_TOL * a.abs().max(b.abs());
    if !(same(src.pixel_width, dst.pixel_width) && same(src.pixel_height, dst.pixel_height)) {
        return None;
    }
    let cx = (dst.origin_x - src.origin_x) / src.pixel_width;
    let cy = (dst.origin_y - src.origin_y) / src.pixel_height;
    let (rx, ry) = (cx.round(), cy.round());
    if (cx - rx).abs() > ALIGN_TOL
        || (cy - ry).abs() > ALIGN_TOL
        || rx.abs() > 1e15
        || ry.abs() > 1e15
    {
        return None;
    }
    Some((rx as i64, ry as i64))
}

/// Appends a `dst_w` x `dst_h` target band whose pixel (0, 0) is source pixel `off` to
/// `dst` and its validity to `dst_valid`, testing each sample's validity (nodata, NaN,
/// `mask`) on the way: one pass, straight from the (possibly strided) source view, every
/// output element written once. Pixels outside the source and invalid source pixels are
/// `fill` and invalid.
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_band<T: Sample>(
    src: ArrayView2<'_, T>,
    mask: Option<ArrayView2<'_, u8>>,
    test: NodataTest<T>,
    off: (i64, i64),
    fill: T,
    dst: &mut Vec<T>,
    dst_valid: &mut Vec<u8>,
    (dst_w, dst_h): (usize, usize),
) {
    let (src_h, src_w) = src.dim();
    // Overlap in target coordinates (empty ranges when there is none).
    let c0 = (-off.0).clamp(0, dst_w as i64) as usize;
    let c1 = (src_w as i64 - off.0).clamp(c0 as i64, dst_w as i64) as usize;
    let r0 = (-off.1).clamp(0, dst_h as i64) as usize;
    let r1 = (src_h as i64 - off.1).clamp(r0 as i64, dst_h as i64) as usize;
    let outside = |dst: &mut Vec<T>, dst_valid: &mut Vec<u8>, n: usize| {
        dst.extend(std::iter::repeat_n(fill, n));
        dst_valid.extend(std::iter::repeat_n(0u8, n));
    };
    if c0 >= c1 {
        outside(dst, dst_valid, dst_w * dst_h);
        return;
    }
    outside(dst, dst_valid, r0 * dst_w);
    let sc0 = (c0 as i64 + off.0) as usize;
    let n = c1 - c0;
    let mut row_buf: Vec<T> = Vec::new();
    let mut mask_buf: Vec<u8> = Vec::new();
    for r in r0..r1 {
        outside(dst, dst_valid, c0);
        let sr = (r as i64 + off.1) as usize;
        let row = src.slice(s![sr, sc0..sc0 + n]);
        // Rows of a standard-layout window are contiguous; anything else is gathered once.
        let s: &[T] = match row.to_slice() {
            Some(s) => s,
            None => {
                row_buf.clear();
                row_buf.extend(row.iter().copied());
                &row_buf
            }
        };
        match mask.map(|m| m.slice_move(s![sr, sc0..sc0 + n])) {
            None => {
                dst.extend(s.iter().map(|&v| if test.valid(v) { v } else { fill }));
                dst_valid.extend(s.iter().map(|&v| test.valid(v) as u8));
            }
            Some(mrow) => {
                let m: &[u8] = match mrow.to_slice() {
                    Some(m) => m,
                    None => {
                        mask_buf.clear();
                        mask_buf.extend(mrow.iter().copied());
                        &mask_buf
                    }
                };
                let ok = |(&v, &mv): (&T, &u8)| test.valid(v) & (mv != 0);
                dst.extend(s.iter().zip(m).map(|p| if ok(p) { *p.0 } else { fill }));
                dst_valid.extend(s.iter().zip(m).map(|p| ok(p) as u8));
            }
        }
        outside(dst, dst_valid, dst_w - c1);
    }
    outside(dst, dst_valid, (dst_h - r1) * dst_w);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_detection() {
        let s = GeoTransform::north_up(1000.0, 2000.0, 10.0, 10.0);
        let d = GeoTransform::north_up(1030.0, 1980.0, 10.0, 10.0);
        assert_eq!(aligned_offset(&s, &d), Some((3, 2)));
        let d = GeoTransform::north_up(970.0, 2010.0, 10.0, 10.0);
        assert_eq!(aligned_offset(&s, &d), Some((-3, -1)));
        let d = GeoTransform::north_up(1033.0, 1980.0, 10.0, 10.0);
        assert_eq!(aligned_offset(&s, &d), None);
        let d = GeoTransform::north_up(1030.0, 1980.0, 20.0, 20.0);
        assert_eq!(aligned_offset(&s, &d), None);
    }

    #[test]
    fn copies_overlap_and_masks_the_rest() {
        // 4x3 source, values 1..=12; pixel 6 is nodata, pixel 11 is masked out.
        let mut src = ndarray::Array2::from_shape_vec((3, 4), (1..=12u16).collect()).unwrap();
        src[[1, 1]] = 0;
        let mut mask = ndarray::Array2::from_elem((3, 4), 255u8);
        mask[[2, 2]] = 0;
        let test = NodataTest::new(Some(0.0));
        let fresh = || (Vec::<u16>::new(), Vec::<u8>::new());
        let (mut dst, mut dv) = fresh();
        copy_band(
            src.view(),
            None,
            test,
            (2, 1),
            99,
            &mut dst,
            &mut dv,
            (3, 3),
        );
        assert_eq!(dst, [7, 8, 99, 11, 12, 99, 99, 99, 99]);
        assert_eq!(dv, [1, 1, 0, 1, 1, 0, 0, 0, 0]);
        let (mut dst, mut dv) = fresh();
        copy_band(
            src.view(),
            None,
            test,
            (-1, -1),
            99,
            &mut dst,
            &mut dv,
            (3, 3),
        );
        assert_eq!(dst, [99, 99, 99, 99, 1, 2, 99, 5, 99]);
        let (mut dst, mut dv) = fresh();
        copy_band(
            src.view(),
            Some(mask.view()),
            test,
            (1, 1),
            99,
            &mut dst,
            &mut dv,
            (3, 3),
        );
        assert_eq!(dst, [99, 7, 8, 10, 99, 12, 99, 99, 99]);
        assert_eq!(dv, [0, 1, 1, 1, 0, 1, 0, 0, 0]);
        // A strided (column-reversed) view gives the same as its contiguous copy.
        let flipped = src.slice(s![.., ..;-1]);
        let (mut a, mut av) = fresh();
        copy_band(flipped, None, test, (0, 0), 99, &mut a, &mut av, (3, 3));
        let (mut b, mut bv) = fresh();
        copy_band(
            flipped.to_owned().view(),
            None,
            test,
            (0, 0),
            99,
            &mut b,
            &mut bv,
            (3, 3),
        );
        assert_eq!((a, av), (b, bv));
        let (mut dst, mut dv) = fresh();
        copy_band(
            src.view(),
            None,
            test,
            (10, 0),
            99,
            &mut dst,
            &mut dv,
            (3, 3),
        );
        assert!(dv.iter().all(|&v| v == 0));
        assert_eq!(dst.len(), 9);
        // Source entirely above the target: every row is outside.
        let (mut dst, mut dv) = fresh();
        copy_band(
            src.view(),
            None,
            test,
            (0, 5),
            99,
            &mut dst,
            &mut dv,
            (3, 3),
        );
        assert_eq!((dst.len(), dv.iter().filter(|&&v| v != 0).count()), (9, 0));
    }
}
