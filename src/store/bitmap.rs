//! Validity bitmaps in Arrow's layout (bit `i` of little-endian 64-bit words, 1 = valid),
//! built and joined a word at a time: the per-bit builders were the slowest step of
//! fragment writes. Also the rectangle of a tile's valid pixels, and cropping bitmaps to
//! (and expanding them from) such a rectangle.

use arrow_buffer::bit_chunk_iterator::BitChunks;
use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder, Buffer};
use std::ops::Range;

/// Packs `pred(v)` for every value into a bitmap; `None` when every value passes (the
/// common case: no bitmap needs storing).
pub fn pack_where<T: Copy>(values: &[T], pred: impl Fn(T) -> bool) -> Option<BooleanBuffer> {
    let mut words = Vec::with_capacity(values.len().div_ceil(64));
    let mut all = true;
    let chunks = values.chunks_exact(64);
    let rest = chunks.remainder();
    for chunk in chunks {
        let mut word = 0u64;
        for (j, &v) in chunk.iter().enumerate() {
            word |= (pred(v) as u64) << j;
        }
        all &= word == u64::MAX;
        words.push(word);
    }
    if !rest.is_empty() {
        let mut word = 0u64;
        for (j, &v) in rest.iter().enumerate() {
            word |= (pred(v) as u64) << j;
        }
        all &= word == (1u64 << rest.len()) - 1;
        words.push(word);
    }
    (!all).then(|| BooleanBuffer::new(Buffer::from_vec(words), 0, values.len()))
}

/// Packs a byte mask (non-zero = valid); `None` when every byte is valid.
pub fn pack_mask(mask: &[u8]) -> Option<BooleanBuffer> {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Moves bit 0 of byte i to bit 56 + i (no two partial products overlap, so no carries).
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let mut words = Vec::with_capacity(mask.len().div_ceil(64));
    let mut all = u64::MAX;
    let chunks = mask.chunks_exact(64);
    let rest = chunks.remainder();
    for chunk in chunks {
        let mut word = 0u64;
        for (k, eight) in chunk.chunks_exact(8).enumerate() {
            let x = u64::from_le_bytes(eight.try_into().unwrap_or([0; 8]));
            // High bit of each byte set when the byte is non-zero, then one bit per byte.
            let nonzero = (((x & LOW7) + LOW7) | x) & HIGH;
            word |= ((nonzero >> 7).wrapping_mul(GATHER) >> 56) << (k * 8);
        }
        all &= word;
        words.push(word);
    }
    let mut complete = all == u64::MAX;
    if !rest.is_empty() {
        let mut word = 0u64;
        for (j, &b) in rest.iter().enumerate() {
            word |= ((b != 0) as u64) << j;
        }
        complete &= word == (1u64 << rest.len()) - 1;
        words.push(word);
    }
    (!complete).then(|| BooleanBuffer::new(Buffer::from_vec(words), 0, mask.len()))
}

/// The smallest rectangle `(columns, rows)` holding every set bit of a row-major
/// `width`-wide bitmap; `None` when no bit is set.
pub(crate) fn set_rect(bits: &BooleanBuffer, width: usize) -> Option<(Range<usize>, Range<usize>)> {
    if width == 0 {
        return None;
    }
    let (bytes, offset) = (bits.values(), bits.offset());
    let (mut cols, mut rows): (Option<Range<usize>>, Option<Range<usize>>) = (None, None);
    for row in 0..bits.len() / width {
        let chunks = BitChunks::new(bytes, offset + row * width, width);
        let words = chunks
            .iter()
            .chain(std::iter::once(chunks.remainder_bits()));
        let (mut first, mut last) = (None, 0);
        for (k, word) in words.enumerate().filter(|(_, w)| *w != 0) {
            first.get_or_insert(k * 64 + word.trailing_zeros() as usize);
            last = k * 64 + 63 - word.leading_zeros() as usize;
        }
        let Some(first) = first else { continue };
        cols = Some(match cols {
            Some(c) => c.start.min(first)..c.end.max(last + 1),
            None => first..last + 1,
        });
        rows = Some(rows.map_or(row, |r| r.start)..row + 1);
    }
    Some((cols?, rows?))
}

/// The inverse of [`crop`] for one observation: the `width` x `height` bitmap that is `bits`
/// (`None` = all set) inside the rectangle `(cols, rows)` and unset outside it.
pub(crate) fn expand(
    bits: Option<&BooleanBuffer>,
    (width, height): (usize, usize),
    (cols, rows): (Range<usize>, Range<usize>),
) -> BooleanBuffer {
    let mut builder = BooleanBufferBuilder::new(width * height);
    builder.append_n(rows.start * width, false);
    for (k, _) in rows.clone().enumerate() {
        builder.append_n(cols.start, false);
        match bits {
            Some(b) => {
                let start = b.offset() + k * cols.len();
                builder.append_packed_range(start..start + cols.len(), b.values());
            }
            None => builder.append_n(cols.len(), true),
        }
        builder.append_n(width - cols.end, false);
    }
    builder.append_n((height - rows.end) * width, false);
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_like_arrow_for_every_length() {
        for len in [0, 1, 63, 64, 65, 130, 1000] {
            let mask: Vec<u8> = (0..len)
                .map(|i| {
                    [0u8, 1, 7, 128, 255][(i * 7 + i / 3) % 5] * (i % 11 != 0 || i > 900) as u8
                })
                .collect();
            let expected: Vec<bool> = mask.iter().map(|&b| b != 0).collect();
            match pack_mask(&mask) {
                Some(bits) => {
                    assert_eq!(bits.len(), len);
                    assert_eq!(bits.iter().collect::<Vec<_>>(), expected);
                }
                None => assert!(expected.iter().all(|&b| b), "len {len}"),
            }
            assert!(pack_mask(&vec![1u8; len]).is_none());
        }
    }

    #[test]
    fn rectangles_and_expansions_match_naive() {
        let (w, h) = (70, 9);
        let rect = |f: &dyn Fn(usize, usize) -> bool| {
            let v: Vec<bool> = (0..w * h).map(|i| f(i % w, i / w)).collect();
            BooleanBuffer::from(v)
        };
        assert_eq!(set_rect(&rect(&|_, _| false), w), None);
        assert_eq!(set_rect(&rect(&|_, _| true), w), Some((0..w, 0..h)));
        let a = rect(&|x, y| (3..66).contains(&x) && (2..7).contains(&y) && (x + y) % 3 != 0);
        assert_eq!(set_rect(&a, w), Some((3..66, 2..7)));
        // A part read back at a bit offset.
        let wide: Vec<bool> = (0..5).map(|_| false).chain(a.iter()).collect();
        let a_off = BooleanBuffer::from(wide).slice(5, w * h);
        assert_eq!(set_rect(&a_off, w), Some((3..66, 2..7)));
        let b = rect(&|x, y| x == 69 && y == 8);
        assert_eq!(set_rect(&b, w), Some((69..70, 8..9)));

        let window = (2..67, 1..8);
        let crop_one = |bits: &BooleanBuffer| {
            let mut v = Vec::new();
            for y in window.1.clone() {
                for x in window.0.clone() {
                    v.push(bits.value(y * w + x));
                }
            }
            BooleanBuffer::from(v)
        };
        // Expanding the first cropped part gives back `a` (all of a's set bits are inside).
        let first = crop_one(&a_off);
        assert_eq!(expand(Some(&first), (w, h), window.clone()), a);
        let all = BooleanBuffer::from(vec![true; window.0.len() * window.1.len()]);
        let full = expand(Some(&all), (w, h), window.clone());
        let inside = |i: usize| window.0.contains(&(i % w)) && window.1.contains(&(i / w));
        assert!(full.iter().enumerate().all(|(i, v)| v == inside(i)));
        assert_eq!(expand(None, (w, h), window.clone()), full);
    }
}
