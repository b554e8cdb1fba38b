//! Undoing TIFF predictors on decoded block bytes.
//!
//! Predictor 2 (horizontal) works on native-endian integer values, so byte swapping for
//! big-endian files happens first. Predictor 3 (floating point) stores each row's bytes
//! most-significant plane first, whatever the file's byte order, and its output is native.

/// Reverses byte order of every `width`-byte sample in place (big-endian files).
pub(crate) fn swap_bytes(buf: &mut [u8], width: usize) {
    match width {
        2 => buf.chunks_exact_mut(2).for_each(|c| c.swap(0, 1)),
        4 => buf.chunks_exact_mut(4).for_each(|c| c.reverse()),
        8 => buf.chunks_exact_mut(8).for_each(|c| c.reverse()),
        _ => {}
    }
}

/// Undoes horizontal differencing: every sample becomes the sum of itself and the same band's
/// sample one pixel to the left. `row_samples` is samples per row (pixels x samples/pixel).
pub(crate) fn undo_horizontal(
    buf: &mut [u8],
    bytes_per_sample: usize,
    samples_per_pixel: usize,
    row_samples: usize,
) {
    let row_bytes = row_samples * bytes_per_sample;
    if row_bytes == 0 {
        return;
    }
    for row in buf.chunks_exact_mut(row_bytes) {
        match bytes_per_sample {
            1 => accumulate_row(row, samples_per_pixel),
            2 => match bytemuck::try_cast_slice_mut::<u8, u16>(row) {
                Ok(r) => accumulate_row(r, samples_per_pixel),
                Err(_) => accumulate_unaligned::<u16>(row, samples_per_pixel),
            },
            4 => match bytemuck::try_cast_slice_mut::<u8, u32>(row) {
                Ok(r) => accumulate_row(r, samples_per_pixel),
                Err(_) => accumulate_unaligned::<u32>(row, samples_per_pixel),
            },
            8 => match bytemuck::try_cast_slice_mut::<u8, u64>(row) {
                Ok(r) => accumulate_row(r, samples_per_pixel),
                Err(_) => accumulate_unaligned::<u64>(row, samples_per_pixel),
            },
            _ => {}
        }
    }
}

/// Integer lanes that wrap on overflow, as the predictor requires.
pub(crate) trait Wrapping: Copy + Default {
    fn wrapping_add(self, other: Self) -> Self;
}

macro_rules! wrapping {
    ($($t:ty),*) => {$(
        impl Wrapping for $t {
            #[inline(always)]
            fn wrapping_add(self, other: Self) -> Self {
                <$t>::wrapping_add(self, other)
            }
        }
    )*};
}
wrapping!(u8, u16, u32, u64);

fn accumulate_row<T: Wrapping>(row: &mut [T], spp: usize) {
    // Fixed lane counts let the compiler keep the running sums in one vector register.
    match spp {
        1 => accumulate_lanes::<T, 1>(row),
        2 => accumulate_lanes::<T, 2>(row),
        3 => accumulate_lanes::<T, 3>(row),
        4 => accumulate_lanes::<T, 4>(row),
        _ => {
            for i in spp..row.len() {
                row[i] = row[i].wrapping_add(row[i - spp]);
            }
        }
    }
}

#[inline(always)]
fn accumulate_lanes<T: Wrapping, const N: usize>(row: &mut [T]) {
    let mut acc = [T::default(); N];
    for px in row.chunks_exact_mut(N) {
        for lane in 0..N {
            acc[lane] = acc[lane].wrapping_add(px[lane]);
            px[lane] = acc[lane];
        }
    }
}

/// Misaligned rows (rare: decoders return `Vec<u8>`) go through an aligned copy.
fn accumulate_unaligned<T: Wrapping + bytemuck::Pod>(row: &mut [u8], spp: usize) {
    let mut tmp: Vec<T> = vec![T::default(); row.len() / std::mem::size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut tmp).copy_from_slice(row);
    accumulate_row(&mut tmp, spp);
    row.copy_from_slice(bytemuck::cast_slice(&tmp));
}

/// Undoes the floating-point predictor on each row in place, using `scratch` as a row buffer.
/// Like libtiff, the byte-wise differencing runs with a stride of `samples_per_pixel` bytes.
pub(crate) fn undo_floating_point(
    buf: &mut [u8],
    bytes_per_sample: usize,
    samples_per_pixel: usize,
    row_samples: usize,
    scratch: &mut Vec<u8>,
) {
    let row_bytes = row_samples * bytes_per_sample;
    if row_bytes == 0 {
        return;
    }
    scratch.resize(row_bytes, 0);
    for row in buf.chunks_exact_mut(row_bytes) {
        // 1. Byte-wise horizontal accumulation over the whole row.
        accumulate_row(row, samples_per_pixel);
        // 2. Un-shuffle: plane k holds byte k (most significant first) of every sample.
        scratch.copy_from_slice(row);
        for (s, out) in row.chunks_exact_mut(bytes_per_sample).enumerate() {
            for (k, o) in out.iter_mut().enumerate() {
                let plane = if cfg!(target_endian = "little") {
                    bytes_per_sample - 1 - k
                } else {
                    k
                };
                *o = scratch[plane * row_samples + s];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizontal_u16_four_lanes() {
        // Two rows of two pixels, 4 samples each; deltas per lane.
        let values: [u16; 16] = [1, 2, 3, 4, 1, 1, 1, 65535, 5, 6, 7, 8, 0, 0, 0, 1];
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        undo_horizontal(&mut bytes, 2, 4, 8);
        let out: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(out, [1, 2, 3, 4, 2, 3, 4, 3, 5, 6, 7, 8, 5, 6, 7, 9]);
    }

    #[test]
    fn horizontal_unaligned_matches_aligned() {
        let values: Vec<u32> = (0..30).map(|i| i * 7919).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let mut aligned = bytes.clone();
        undo_horizontal(&mut aligned, 4, 3, 30);
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        undo_horizontal(&mut shifted[1..], 4, 3, 30);
        assert_eq!(&shifted[1..], &aligned[..]);
    }

    #[test]
    fn floating_point_inverts_the_encoder() {
        let values = [1.5f32, -2.25, 1e-3, 3.0e8, 0.0, f32::MAX];
        let n = values.len();
        // Encoder: big-endian byte planes, then byte-wise differencing.
        let mut planes = vec![0u8; n * 4];
        for (s, v) in values.iter().enumerate() {
            for (k, b) in v.to_be_bytes().iter().enumerate() {
                planes[k * n + s] = *b;
            }
        }
        for i in (1..planes.len()).rev() {
            planes[i] = planes[i].wrapping_sub(planes[i - 1]);
        }
        let mut scratch = Vec::new();
        undo_floating_point(&mut planes, 4, 1, n, &mut scratch);
        let out: Vec<f32> = planes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(out, values);
    }

    #[test]
    fn swaps_each_sample() {
        let mut b = vec![1, 2, 3, 4];
        swap_bytes(&mut b, 2);
        assert_eq!(b, [2, 1, 4, 3]);
    }
}
