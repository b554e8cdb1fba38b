//! LZMA (TIFF compression 34925). libtiff writes an xz stream whose single block runs a
//! byte-delta filter before LZMA2; `lzma-rs` handles LZMA2 and this file the xz framing and
//! the delta filter.

use super::{check_len, BoundedWriter, Error};

const XZ_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
const FILTER_DELTA: u64 = 0x03;
const FILTER_LZMA2: u64 = 0x21;

fn corrupt(reason: impl std::fmt::Display) -> Error {
    super::corrupt("LZMA", reason)
}

/// Decodes an xz stream (first block only, as libtiff writes one per strip/tile) into at
/// most `expected` bytes.
pub(super) fn decode(input: &[u8], out: &mut Vec<u8>, expected: usize) -> Result<(), Error> {
    if input.len() < 12 || input[..6] != XZ_MAGIC {
        return Err(corrupt("missing xz stream header"));
    }
    let block = &input[12..];
    let header_len = (*block.first().ok_or_else(|| corrupt("no block"))? as usize + 1) * 4;
    if block[0] == 0 || block.len() < header_len {
        return Err(corrupt("missing or truncated block header"));
    }
    let header = &block[1..header_len - 4];
    let flags = *header
        .first()
        .ok_or_else(|| corrupt("empty block header"))?;
    let filter_count = (flags & 0x03) as usize + 1;
    let mut pos = 1;
    if flags & 0x40 != 0 {
        read_vli(header, &mut pos)?; // compressed size
    }
    if flags & 0x80 != 0 {
        read_vli(header, &mut pos)?; // uncompressed size
    }
    let mut delta_distance = None;
    let mut has_lzma2 = false;
    for _ in 0..filter_count {
        let id = read_vli(header, &mut pos)?;
        let props_len = read_vli(header, &mut pos)? as usize;
        let props = header
            .get(pos..pos + props_len)
            .ok_or_else(|| corrupt("truncated filter properties"))?;
        pos += props_len;
        match (id, props) {
            (FILTER_DELTA, [d]) => delta_distance = Some(*d as usize + 1),
            (FILTER_LZMA2, [_]) => has_lzma2 = true,
            (id, _) => return Err(corrupt(format!("unsupported xz filter id {id}"))),
        }
    }
    if !has_lzma2 {
        return Err(corrupt("xz block without an LZMA2 filter"));
    }
    out.clear();
    out.reserve(expected);
    let mut data = &block[header_len..];
    let mut sink = BoundedWriter {
        out,
        limit: expected,
    };
    lzma_rs::lzma2_decompress(&mut data, &mut sink).map_err(|e| corrupt(e.to_string()))?;
    if let Some(dist) = delta_distance {
        undo_delta(out, dist);
    }
    check_len("LZMA", out, expected)
}

/// xz variable-length integer (7 bits per byte, little-endian, at most 9 bytes).
fn read_vli(buf: &[u8], pos: &mut usize) -> Result<u64, Error> {
    let mut value = 0u64;
    for i in 0..9 {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| corrupt("truncated block header"))?;
        *pos += 1;
        value |= ((b & 0x7F) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(corrupt("overlong integer in block header"))
}

/// Reverses xz's byte-delta filter: each byte adds the byte `dist` positions earlier.
fn undo_delta(buf: &mut [u8], dist: usize) {
    for i in dist..buf.len() {
        buf[i] = buf[i].wrapping_add(buf[i - dist]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lzma2_xz_round_trips_and_bounds_output() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 13) as u8).collect();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &data[..], &mut xz).unwrap();
        let mut out = Vec::new();
        decode(&xz, &mut out, data.len()).unwrap();
        assert_eq!(out, data);
        assert!(decode(&xz, &mut out, 100).is_err());
        assert!(decode(&xz[..20], &mut out, data.len()).is_err());
        assert!(decode(b"not xz at all", &mut out, 4).is_err());
    }

    #[test]
    fn delta_filter_is_undone() {
        let mut b = vec![1, 2, 1, 1, 1, 1];
        undo_delta(&mut b, 2);
        assert_eq!(b, [1, 2, 2, 3, 3, 4]);
    }
}
