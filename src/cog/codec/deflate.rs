//! DEFLATE (zlib stream), TIFF compression 8 and 32946, with `zune-inflate`.

use super::{check_len, corrupt, Error};
use zune_inflate::{DeflateDecoder, DeflateOptions};

/// Inflates a zlib stream of at most `expected` bytes (checksum verified).
pub(super) fn decode(input: &[u8], out: &mut Vec<u8>, expected: usize) -> Result<(), Error> {
    let options = DeflateOptions::default()
        .set_limit(expected)
        .set_size_hint(expected);
    let mut decoder = DeflateDecoder::new_with_options(input, options);
    match decoder.decode_zlib() {
        Ok(data) => {
            *out = data;
            check_len("DEFLATE", out, expected)
        }
        Err(e) => Err(corrupt("DEFLATE", format!("{:?}", e.error))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_short_streams() {
        let mut out = Vec::new();
        assert!(matches!(
            decode(&[1, 2, 3, 4], &mut out, 10),
            Err(Error::Corrupt { .. })
        ));
        // zlib stream of "abc" (stored block).
        let abc = [
            0x78, 0x01, 0x01, 0x03, 0x00, 0xfc, 0xff, b'a', b'b', b'c', 0x02, 0x4d, 0x01, 0x27,
        ];
        decode(&abc, &mut out, 3).unwrap();
        assert_eq!(out, b"abc");
        assert!(decode(&abc, &mut out, 4).is_err());
    }
}
