//! TIFF LZW (MSB-first codes with the early size switch), with `weezl`.

use super::{check_len, corrupt, Error};
use weezl::{decode::Decoder, BitOrder, LzwStatus};

/// Decodes LZW data into at most `expected` bytes.
pub(super) fn decode(input: &[u8], out: &mut Vec<u8>, expected: usize) -> Result<(), Error> {
    out.clear();
    out.resize(expected, 0);
    let mut decoder = Decoder::with_tiff_size_switch(BitOrder::Msb, 8);
    let (mut read, mut written) = (0usize, 0usize);
    while written < expected {
        let r = decoder.decode_bytes(&input[read..], &mut out[written..]);
        read += r.consumed_in;
        written += r.consumed_out;
        match r.status {
            Ok(LzwStatus::Ok) if r.consumed_in == 0 && r.consumed_out == 0 => break,
            Ok(LzwStatus::Ok) => {}
            Ok(LzwStatus::Done) | Ok(LzwStatus::NoProgress) => break,
            Err(e) => return Err(corrupt("LZW", e)),
        }
    }
    out.truncate(written);
    check_len("LZW", out, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_weezl_encoder() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i / 7 % 256) as u8).collect();
        let enc = weezl::encode::Encoder::with_tiff_size_switch(BitOrder::Msb, 8)
            .encode(&data)
            .unwrap();
        let mut out = Vec::new();
        decode(&enc, &mut out, data.len()).unwrap();
        assert_eq!(out, data);
        assert!(decode(&enc[..enc.len() / 2], &mut out, data.len()).is_err());
    }
}
