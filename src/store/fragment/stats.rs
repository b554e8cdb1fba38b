//! Validity of observations (their own bits, or derived from nodata and NaN) and the
//! statistics of their valid pixels, kept in fragment rows of the catalog.

use super::{FragmentData, Pixel, PixelBuffer};
use crate::dtype::Sample;
use crate::store::bitmap;
use arrow_buffer::BooleanBuffer;

/// Statistics of the valid pixels of a fragment (raw values, before scale/offset).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PixelStats {
    /// Number of valid pixels over all observations.
    pub valid_count: u64,
    /// Smallest valid value.
    pub min: Option<f64>,
    /// Largest valid value.
    pub max: Option<f64>,
    /// Mean of the valid values.
    pub mean: Option<f64>,
}

/// The observations' pixels of type `T` (the dtype was checked against the fragment's).
pub(super) fn typed<T: Pixel>(buf: &PixelBuffer) -> &[T] {
    bytemuck::try_cast_slice(buf.as_bytes()).unwrap_or(&[])
}

/// The validity of each observation's pixels (its own bits, else derived from the nodata
/// value and NaN; `None` when all are valid) and the statistics of the valid values.
pub(super) fn validity_and_stats<T: Pixel + StatSample>(
    data: &FragmentData,
) -> (Vec<Option<BooleanBuffer>>, PixelStats) {
    let nodata = data.nodata.map(T::from_f64);
    let nodata_is_nan = data.nodata.is_some_and(f64::is_nan);
    let is_float = data.dtype.is_float();
    let derives = nodata.is_some() || is_float;
    let mut acc = StatAcc::default();
    let parts = data
        .observations
        .iter()
        .map(|o| {
            let px: &[T] = typed(&o.pixels);
            let bits = match &o.valid {
                Some(bits) => Some(bits.clone()),
                // A vectorised scan first: most tiles have no nodata at all.
                None if derives
                    && px.chunks(4096).any(|c| {
                        c.iter().fold(false, |acc, &v| {
                            acc | !pixel_valid(v, nodata, nodata_is_nan, is_float)
                        })
                    }) =>
                {
                    bitmap::pack_where(px, |v| pixel_valid(v, nodata, nodata_is_nan, is_float))
                }
                None => None,
            };
            accumulate_stats(&mut acc, px, bits.as_ref());
            bits
        })
        .collect();
    (parts, acc.finish())
}

#[inline]
fn pixel_valid<T: Sample + PartialOrd>(
    v: T,
    nodata: Option<T>,
    nodata_is_nan: bool,
    is_float: bool,
) -> bool {
    // NaN is never a valid measurement (NaN != NaN, so `v == v` is the NaN test).
    #[allow(clippy::eq_op)]
    let not_nan = !is_float || v == v;
    not_nan && (nodata_is_nan || nodata != Some(v))
}

/// Min, max, mean and count of the valid values.
#[cfg(test)]
pub(super) fn pixel_stats<T: StatSample>(
    values: &[T],
    valid: Option<&BooleanBuffer>,
) -> PixelStats {
    let mut acc = StatAcc::default();
    accumulate_stats(&mut acc, values, valid);
    acc.finish()
}

/// Adds the valid values to `acc`: runs of valid values in vectorised blocks, the rest one
/// by one.
fn accumulate_stats<T: StatSample>(acc: &mut StatAcc, values: &[T], valid: Option<&BooleanBuffer>) {
    match valid {
        None => {
            for block in values.chunks(4096) {
                acc.add_block(block);
            }
        }
        Some(bits) => {
            // Runs of all-valid words go through the vectorised block path; mixed words
            // are added value by value.
            let mut run_start = 0;
            let chunks = bits.bit_chunks();
            for (i, word) in chunks.iter_padded().enumerate() {
                let start = i * 64;
                if start >= values.len() {
                    break;
                }
                let block = &values[start..(start + 64).min(values.len())];
                if word == u64::MAX && block.len() == 64 {
                    continue;
                }
                if start > run_start {
                    acc.add_block(&values[run_start..start]);
                }
                run_start = start + block.len();
                if word != 0 {
                    for (j, &v) in block.iter().enumerate() {
                        if word >> j & 1 == 1 {
                            acc.add_one(v);
                        }
                    }
                }
            }
            if values.len() > run_start {
                acc.add_block(&values[run_start..]);
            }
        }
    }
}

/// Sums a block of samples exactly and fast: integers in `i64` (vectorised, exact),
/// floats in eight independent `f64` lanes.
pub(crate) trait StatSample: Sample + PartialOrd {
    fn block_sum(block: &[Self]) -> f64;
}

macro_rules! int_stat_sample {
    ($acc:ty: $($t:ty),*) => {$(
        impl StatSample for $t {
            fn block_sum(block: &[Self]) -> f64 {
                // 2^16 samples fit the accumulator: 32 bits for 8- and 16-bit samples (twice
                // the lanes of 64 bits), 64 for 32-bit ones.
                block
                    .chunks(1 << 16)
                    .map(|c| c.iter().map(|&v| v as $acc).sum::<$acc>() as f64)
                    .sum()
            }
        }
    )*};
}
int_stat_sample!(u32: u8, u16);
int_stat_sample!(i32: i8, i16);
int_stat_sample!(i64: u32, i32);

macro_rules! float_stat_sample {
    ($($t:ty),*) => {$(
        impl StatSample for $t {
            fn block_sum(block: &[Self]) -> f64 {
                // Independent lanes: no serial dependency, so the loop vectorises.
                let mut lanes = [0.0f64; 8];
                let chunks = block.chunks_exact(8);
                let rest: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
                for c in chunks {
                    for j in 0..8 {
                        lanes[j] += c[j] as f64;
                    }
                }
                lanes.iter().sum::<f64>() + rest
            }
        }
    )*};
}
float_stat_sample!(f32, f64);

#[derive(Default)]
struct StatAcc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl StatAcc {
    #[inline]
    fn add_block<T: StatSample>(&mut self, block: &[T]) {
        let Some(&first) = block.first() else {
            return;
        };
        // Sixteen independent min/max lanes so the compiler emits packed min/max.
        let mut mins = [first; 16];
        let mut maxs = [first; 16];
        let chunks = block.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..16 {
                if c[j] < mins[j] {
                    mins[j] = c[j];
                }
                if c[j] > maxs[j] {
                    maxs[j] = c[j];
                }
            }
        }
        let (mut mn, mut mx) = (first, first);
        for &v in mins.iter().chain(maxs.iter()).chain(rest) {
            if v < mn {
                mn = v;
            }
            if v > mx {
                mx = v;
            }
        }
        let sum = T::block_sum(block);
        if self.count == 0 {
            self.min = mn.to_f64();
            self.max = mx.to_f64();
        } else {
            self.min = self.min.min(mn.to_f64());
            self.max = self.max.max(mx.to_f64());
        }
        self.count += block.len() as u64;
        self.sum += sum;
    }

    #[inline]
    fn add_one<T: Sample>(&mut self, v: T) {
        let x = v.to_f64();
        if self.count == 0 {
            (self.min, self.max) = (x, x);
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        self.sum += x;
    }

    fn finish(self) -> PixelStats {
        if self.count == 0 {
            return PixelStats::default();
        }
        // Catalog statistics are finite numbers: infinite samples (valid in float bands)
        // leave the statistic they reach unknown.
        let finite = |v: f64| v.is_finite().then_some(v);
        PixelStats {
            valid_count: self.count,
            min: finite(self.min),
            max: finite(self.max),
            mean: finite(self.sum / self.count as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StatSample;

    #[test]
    fn block_sums_are_exact_at_the_extremes_of_narrow_types() {
        let n = (1 << 16) + 5;
        assert_eq!(u16::block_sum(&vec![u16::MAX; n]), n as f64 * 65535.0);
        assert_eq!(i16::block_sum(&vec![i16::MIN; n]), n as f64 * -32768.0);
        assert_eq!(i16::block_sum(&vec![i16::MAX; n]), n as f64 * 32767.0);
        assert_eq!(u8::block_sum(&vec![u8::MAX; n]), n as f64 * 255.0);
        assert_eq!(i8::block_sum(&vec![i8::MIN; n]), n as f64 * -128.0);
        assert_eq!(
            u32::block_sum(&vec![u32::MAX; n]),
            n as f64 * 4_294_967_295.0
        );
        assert_eq!(
            i32::block_sum(&[i32::MIN, 1, -2]),
            f64::from(i32::MIN) - 1.0
        );
    }
}
