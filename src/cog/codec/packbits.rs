//! PackBits run-length decoding (TIFF compression 32773).

use super::{check_len, Error};

/// Decodes PackBits data into at most `expected` bytes.
pub(super) fn decode(input: &[u8], out: &mut Vec<u8>, expected: usize) -> Result<(), Error> {
    out.clear();
    out.reserve(expected);
    let mut i = 0;
    while i < input.len() && out.len() < expected {
        let n = input[i] as i8;
        i += 1;
        if n >= 0 {
            let count = n as usize + 1;
            let end = (i + count).min(input.len());
            let take = (end - i).min(expected - out.len());
            out.extend_from_slice(&input[i..i + take]);
            i = end;
        } else if n != -128 {
            let count = (1 - n as isize) as usize;
            let Some(&b) = input.get(i) else { break };
            i += 1;
            let take = count.min(expected - out.len());
            out.resize(out.len() + take, b);
        }
    }
    check_len("PackBits", out, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_tiff_spec_example() {
        let packed = [
            0xFE, 0xAA, 0x02, 0x80, 0x00, 0x2A, 0xFD, 0xAA, 0x03, 0x80, 0x00, 0x2A, 0x22, 0xF7,
            0xAA,
        ];
        let expected = [
            0xAA, 0xAA, 0xAA, 0x80, 0x00, 0x2A, 0xAA, 0xAA, 0xAA, 0xAA, 0x80, 0x00, 0x2A, 0x22,
            0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA,
        ];
        let mut out = Vec::new();
        decode(&packed, &mut out, expected.len()).unwrap();
        assert_eq!(out, expected);
        assert!(decode(&packed[..5], &mut out, expected.len()).is_err());
    }
}
