//! Fast path 1: the target grid has the source's CRS and pixel size and sits an integer number
//! of pixels away, so every target pixel *is* a source pixel: rows are copied, bit-exact, with
//! no kernel (every kernel gives the same result on an aligned grid).

use crate::dtype::Sample;
use crate::geo::GeoTransform;

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

/// Copies the overlap of a `src_w`-wide source band (with its validity) into a `dst_w`-wide
/// target band whose pixel (0, 0) is source pixel `off`; target pixels outside the source keep
/// `fill` and are invalid. Invalid source pixels are written as `fill` too.
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_band<T: Sample>(
    src: &[T],
    valid: &[u8],
    src_w: usize,
    off: (i64, i64),
    fill: T,
    dst: &mut [T],
    dst_valid: &mut [u8],
    dst_w: usize,
) {
    let src_h = src.len().checked_div(src_w).unwrap_or(0);
    let dst_h = dst.len().checked_div(dst_w).unwrap_or(0);
    dst.fill(fill);
    dst_valid.fill(0);
    // Overlap in target coordinates.
    let c0 = (-off.0).clamp(0, dst_w as i64) as usize;
    let c1 = (src_w as i64 - off.0).clamp(0, dst_w as i64) as usize;
    let r0 = (-off.1).clamp(0, dst_h as i64) as usize;
    let r1 = (src_h as i64 - off.1).clamp(0, dst_h as i64) as usize;
    if c0 >= c1 || r0 >= r1 {
        return;
    }
    let sc0 = (c0 as i64 + off.0) as usize;
    let n = c1 - c0;
    for r in r0..r1 {
        let sr = (r as i64 + off.1) as usize;
        let s = &src[sr * src_w + sc0..][..n];
        let sv = &valid[sr * src_w + sc0..][..n];
        let d = &mut dst[r * dst_w + c0..][..n];
        let dv = &mut dst_valid[r * dst_w + c0..][..n];
        d.copy_from_slice(s);
        dv.copy_from_slice(sv);
        if sv.contains(&0) {
            for (x, &ok) in d.iter_mut().zip(sv) {
                if ok == 0 {
                    *x = fill;
                }
            }
        }
    }
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
        // 4x3 source, values 1..=12, pixel 6 invalid.
        let src: Vec<u16> = (1..=12).collect();
        let mut valid = vec![1u8; 12];
        valid[5] = 0;
        let mut dst = vec![0u16; 9];
        let mut dv = vec![0u8; 9];
        copy_band(&src, &valid, 4, (2, 1), 99, &mut dst, &mut dv, 3);
        assert_eq!(dst, [7, 8, 99, 11, 12, 99, 99, 99, 99]);
        assert_eq!(dv, [1, 1, 0, 1, 1, 0, 0, 0, 0]);
        copy_band(&src, &valid, 4, (-1, -1), 99, &mut dst, &mut dv, 3);
        assert_eq!(dst, [99, 99, 99, 99, 1, 2, 99, 5, 99]);
        copy_band(&src, &valid, 4, (10, 0), 99, &mut dst, &mut dv, 3);
        assert!(dv.iter().all(|&v| v == 0));
    }
}
