//! Validity bitmaps in Arrow's layout (bit `i` of little-endian 64-bit words, 1 = valid),
//! built and joined a word at a time: the per-bit builders were the slowest step of
//! fragment writes.

use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder, Buffer};

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

/// Joins per-observation bitmaps of `len` bits each (`None` = all valid) into one; `None`
/// when every part is all-valid.
pub(crate) fn concat(parts: &[Option<&BooleanBuffer>], len: usize) -> Option<BooleanBuffer> {
    if parts.iter().all(|p| p.is_none()) {
        return None;
    }
    let total = len * parts.len();
    if len.is_multiple_of(64) {
        // Word-aligned parts (every tile size that is a multiple of 8): whole words.
        let mut words: Vec<u64> = Vec::with_capacity(total / 64);
        for part in parts {
            match part {
                Some(bits) => words.extend(bits.bit_chunks().iter()),
                None => words.extend(std::iter::repeat_n(u64::MAX, len / 64)),
            }
        }
        return Some(BooleanBuffer::new(Buffer::from_vec(words), 0, total));
    }
    let mut builder = BooleanBufferBuilder::new(total);
    for part in parts {
        match part {
            Some(bits) => builder.append_buffer(bits),
            None => builder.append_n(len, true),
        }
    }
    Some(builder.finish())
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
    fn concat_matches_naive_for_aligned_unaligned_and_sliced_parts() {
        for len in [64, 100, 128] {
            let a: Vec<bool> = (0..len).map(|i| i % 5 != 0).collect();
            let b: Vec<bool> = (0..len).map(|i| i % 7 == 0).collect();
            let pa = BooleanBuffer::from(a.clone());
            // A part that is a slice at a non-zero offset (as read back from a fragment).
            let wide: Vec<bool> = b.iter().copied().chain(b.iter().copied()).collect();
            let pb = BooleanBuffer::from(wide).slice(len, len);
            let joined = concat(&[Some(&pa), None, Some(&pb)], len).unwrap();
            let mut expected = a.clone();
            expected.extend(std::iter::repeat_n(true, len));
            expected.extend(b.iter().copied());
            assert_eq!(joined.iter().collect::<Vec<_>>(), expected, "len {len}");
        }
        assert!(concat(&[None, None], 64).is_none());
    }
}
