//! Zstandard (TIFF compression 50000), with the pure-Rust `ruzstd`.

use super::{check_len, corrupt, Error};
use std::io::Read;

/// Decodes one zstd frame into at most `expected` bytes.
pub(super) fn decode(input: &[u8], out: &mut Vec<u8>, expected: usize) -> Result<(), Error> {
    let mut reader = input;
    let decoder =
        ruzstd::decoding::StreamingDecoder::new(&mut reader).map_err(|e| corrupt("ZSTD", e))?;
    out.clear();
    out.reserve(expected);
    decoder
        .take(expected as u64)
        .read_to_end(out)
        .map_err(|e| corrupt("ZSTD", e))?;
    check_len("ZSTD", out, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error() {
        let mut out = Vec::new();
        assert!(matches!(
            decode(b"not zstd", &mut out, 4),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn decodes_an_uncompressed_frame() {
        // Frame: magic, descriptor (single segment, 1-byte size), size 3, raw last block "abc".
        let frame = [
            0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x03, 0x19, 0x00, 0x00, b'a', b'b', b'c',
        ];
        let mut out = Vec::new();
        decode(&frame, &mut out, 3).unwrap();
        assert_eq!(out, b"abc");
    }
}
