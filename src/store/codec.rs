//! Compression of fragment buffers as the Arrow IPC format defines it (`BodyCompression`,
//! method `BUFFER`): each buffer is its uncompressed length as a little-endian `i64`, then one
//! LZ4 frame or one ZSTD frame of its bytes; the length `-1` marks a buffer stored as it is
//! (compression would not have made it smaller). pyarrow and arrow-rs read both codecs.
//!
//! Both directions are pure Rust: LZ4 with `lz4_flex` (as arrow-ipc does); ZSTD written by
//! this crate's own encoder ([`super::zstd_encode`]: `ruzstd`'s compresses pixels at a few
//! MB/s) and read by its own fast decoder for such frames ([`super::zstd_decode`]), with
//! `ruzstd` for any other ZSTD frame. Decompression is bounded by the size the reader expects,
//! never by what the file claims.

use arrow_ipc::CompressionType;
use std::io::{Read, Write};

/// Prefix of a buffer stored uncompressed inside a compressed record batch.
const STORED_AS_IS: i64 = -1;

/// A buffer codec of compressed fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// One LZ4 frame per buffer (`LZ4_FRAME`).
    Lz4Frame,
    /// One ZSTD frame per buffer (`ZSTD`).
    Zstd,
}

impl Codec {
    /// The IPC compression type.
    pub fn ipc_type(self) -> CompressionType {
        match self {
            Codec::Lz4Frame => CompressionType::LZ4_FRAME,
            Codec::Zstd => CompressionType::ZSTD,
        }
    }

    /// The codec of an IPC compression type; `None` for one this crate cannot read.
    pub fn from_ipc(kind: CompressionType) -> Option<Codec> {
        match kind {
            CompressionType::LZ4_FRAME => Some(Codec::Lz4Frame),
            CompressionType::ZSTD => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// Compresses the concatenation of `parts` (`len` bytes in all) into one IPC buffer:
    /// length prefix and frame, or `-1` and the bytes when the frame would not be smaller.
    /// An empty input is an empty buffer.
    pub fn compress(self, parts: &[&[u8]], len: usize) -> Vec<u8> {
        if len == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(len / 2 + 64);
        out.extend_from_slice(&(len as i64).to_le_bytes());
        let out = match self {
            Codec::Lz4Frame => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(out);
                // Writing into a Vec cannot fail.
                for p in parts {
                    let _ = encoder.write_all(p);
                }
                encoder.finish().unwrap_or_default()
            }
            Codec::Zstd => {
                let mut out = out;
                super::zstd_encode::compress(parts, len, &mut out);
                out
            }
        };
        if out.len() >= len + 8 || out.len() < 8 {
            let mut raw = Vec::with_capacity(len + 8);
            raw.extend_from_slice(&STORED_AS_IS.to_le_bytes());
            for p in parts {
                raw.extend_from_slice(p);
            }
            return raw;
        }
        out
    }

    /// The uncompressed length an IPC buffer announces: `None` for a buffer stored as it is,
    /// an error when the prefix is missing or negative.
    pub fn announced_len(buffer: &[u8]) -> Result<Option<usize>, String> {
        let prefix: [u8; 8] = buffer
            .get(..8)
            .and_then(|p| p.try_into().ok())
            .ok_or("compressed buffer shorter than its length prefix")?;
        match i64::from_le_bytes(prefix) {
            STORED_AS_IS => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| format!("negative uncompressed buffer length {n}")),
        }
    }

    /// Decompresses the frame of an IPC buffer (after its prefix) into `out`, which must be
    /// exactly the announced length: a frame that decodes to fewer or more bytes is an error.
    pub fn decompress(self, frame: &[u8], out: &mut [u8]) -> Result<(), String> {
        let short = |e: std::io::Error| format!("{self:?} frame does not decode: {e}");
        let mut probe = [0u8; 1];
        let extra = match self {
            Codec::Lz4Frame => {
                let mut decoder = lz4_flex::frame::FrameDecoder::new(frame);
                decoder.read_exact(out).map_err(short)?;
                decoder.read(&mut probe).map_err(short)?
            }
            Codec::Zstd => {
                // Frames this crate wrote decode on the fast path; others with ruzstd.
                match super::zstd_decode::decode(frame, out) {
                    Ok(super::zstd_decode::Outcome::Decoded) => return Ok(()),
                    Ok(super::zstd_decode::Outcome::Unsupported) => {}
                    Err(e) => return Err(format!("{self:?} frame does not decode: {e}")),
                }
                let mut input = frame;
                let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
                    .map_err(|e| format!("{self:?} frame does not decode: {e}"))?;
                decoder.read_exact(out).map_err(short)?;
                decoder.read(&mut probe).map_err(short)?
            }
        };
        if extra != 0 {
            return Err(format!(
                "{self:?} frame holds more than the announced {} bytes",
                out.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // Smooth 16-bit values (compressible) with a noisy low byte.
        (0..50_000u32)
            .flat_map(|i| ((1000 + (i / 97) % 300 + (i * 7919) % 5) as u16).to_le_bytes())
            .collect()
    }

    #[test]
    fn round_trips_over_split_parts() {
        let data = sample();
        let parts: Vec<&[u8]> = data.chunks(777).collect();
        for codec in [Codec::Lz4Frame, Codec::Zstd] {
            let c = codec.compress(&parts, data.len());
            assert!(c.len() < data.len() * 3 / 4, "{codec:?}: {} bytes", c.len());
            assert_eq!(Codec::announced_len(&c).unwrap(), Some(data.len()));
            let mut out = vec![0u8; data.len()];
            codec.decompress(&c[8..], &mut out).unwrap();
            assert_eq!(out, data);
            assert_eq!(Codec::from_ipc(codec.ipc_type()), Some(codec));
        }
    }

    #[test]
    fn zstd_frames_of_other_encoders_read_too() {
        // ruzstd's frames carry sequences and a checksum: the general decoder's path.
        let data = sample();
        let frame = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut out = vec![0u8; data.len()];
        Codec::Zstd.decompress(&frame, &mut out).unwrap();
        assert_eq!(out, data);
        assert!(Codec::Zstd
            .decompress(&frame, &mut vec![0; data.len() + 1])
            .is_err());
    }

    #[test]
    fn incompressible_and_empty_buffers() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for codec in [Codec::Lz4Frame, Codec::Zstd] {
            let c = codec.compress(&[&noise], noise.len());
            assert_eq!(Codec::announced_len(&c).unwrap(), None);
            assert_eq!(&c[8..], &noise[..]);
            assert!(codec.compress(&[], 0).is_empty());
        }
    }

    #[test]
    fn wrong_sizes_and_garbage_are_errors() {
        let data = sample();
        for codec in [Codec::Lz4Frame, Codec::Zstd] {
            let c = codec.compress(&[&data], data.len());
            // Announced larger or smaller than the frame holds.
            assert!(codec
                .decompress(&c[8..], &mut vec![0; data.len() + 1])
                .is_err());
            assert!(codec
                .decompress(&c[8..], &mut vec![0; data.len() - 1])
                .is_err());
            assert!(codec
                .decompress(&c[8..c.len() / 2], &mut vec![0; data.len()])
                .is_err());
            assert!(codec.decompress(b"garbage!", &mut [0; 8]).is_err());
        }
        assert!(Codec::announced_len(&[1, 2, 3]).is_err());
        assert!(Codec::announced_len(&(-2i64).to_le_bytes()).is_err());
    }
}
